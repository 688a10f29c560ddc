//! Reader tests on the real fixture and on small built catalogs.

use super::*;

fn fixture() -> Vec<u8> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/mssecure.xml");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load() -> Loaded {
    MsSecureReader.read(&fixture()).expect("the fixture loads")
}

#[test]
fn fixture_counts() {
    let loaded = load();
    let c = &loaded.catalog;
    for p in &loaded.problems {
        eprintln!("{p}");
    }
    assert_eq!(c.bulletins.len(), 231);
    assert_eq!(c.patch_count(), 393);
    assert_eq!(c.products.len(), 104);
    assert_eq!(c.service_packs.len(), 128);
    assert!(loaded.bad_bulletins().is_empty());
}
