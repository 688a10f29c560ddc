//! Reader tests on the real fixture and on small built catalogs.

use super::*;

fn fixture() -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mssecure.xml");
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

const OFFICE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<OfficeUpdateCatalog DataVersion="2.2.0.31" LastDataUpdate="2004/03/09">
  <Products>
    <Product ProductID="OXP" Name="Office XP Professional " Family="Office XP" CurrentVersion="na">
      <ProductCode Code="{90280409-6000-11d3-8cfe-0050048383c9}"/>
    </Product>
    <Product ProductID="O2K" Name="Office 2000"><ProductCode Code="{00000409-78E1-11D2-B60F-006097C998E7}"/></Product>
  </Products>
  <ServicePacks><ServicePack ServicePackID="OXP-SP2" Name="Office XP SP2"/></ServicePacks>
  <Updates>
    <Update UpdateID="ms04-009 " Title="Outlook" DatePosted="2004/03/09" Severity="Important">
      <QNumber QNumber="KB828040 "/><QNumber QNumber="KB828040"/>
      <Patch Name="client.exe" Install="Client" PatchCode="{AAAAAAAA-0000-0000-0000-000000000001}" Reboot="No" SupersededBy="MS03-050, MS02-031">
        <Target ProductID="OXP" FixedInSP="3"><ServicePack ServicePackID="OXP-SP2"/></Target>
      </Patch>
      <Patch Name="admin.exe" Install="Admin" PatchCode="{AAAAAAAA-0000-0000-0000-000000000002}">
        <Target ProductID="OXP"/><Target ProductID="O2K"/>
      </Patch>
      <Patch Name="nodetect.exe"><Target ProductID="O2K"/></Patch>
      <Patch Name="files.exe"><Target ProductID="O2K"/><File Name="a.dll" Location="%ProgramFiles%" Version="9.0.1" Size="12"/></Patch>
    </Update>
  </Updates>
</OfficeUpdateCatalog>
"#;

#[test]
fn office_catalog_reads_msi_detection_and_install_types() {
    assert_eq!(detect_kind(OFFICE.as_bytes()), Ok(CatalogKind::Office));
    let loaded = read_any(OFFICE.as_bytes()).expect("loads");
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let c = &loaded.catalog;
    assert_eq!(c.kind, CatalogKind::Office);
    assert_eq!(c.data_version.as_deref(), Some("2.2.0.31"));
    assert_eq!(c.products.len(), 2);
    assert_eq!(c.products["OXP"].name, "Office XP Professional");
    assert_eq!(c.products["OXP"].current_version, None);
    let b = &c.bulletins[0];
    assert_eq!(b.id, "MS04-009");
    assert_eq!(b.q_numbers, vec!["KB828040"]);
    assert_eq!(b.superseded_by, vec!["MS03-050", "MS02-031"]);
    let [client, admin, none, files] = &b.patches[..] else {
        panic!("four patches")
    };
    let msi = client.msi.as_ref().unwrap();
    assert_eq!(msi.install, InstallType::Client);
    assert_eq!(
        msi.product_codes,
        vec!["{90280409-6000-11D3-8CFE-0050048383C9}"]
    );
    assert_eq!(client.detection, Detection::Msi);
    assert_eq!(client.reboot_required, Some(false));
    assert_eq!(client.affected[0].service_packs[0].name, "Office XP SP2");
    assert_eq!(
        client.affected[0].fixed_in_sp.as_ref().unwrap().level,
        Some(3)
    );
    let msi = admin.msi.as_ref().unwrap();
    assert_eq!(msi.install, InstallType::Admin);
    assert_eq!(msi.product_codes.len(), 2);
    assert_eq!(none.detection, Detection::None);
    assert_eq!(files.detection, Detection::Files);
    assert_eq!(files.files[0].size, Some(12));
}

#[test]
fn detect_kind_by_root() {
    assert_eq!(detect_kind(&fixture()), Ok(CatalogKind::Security));
    assert!(matches!(
        detect_kind(b"<rss/>"),
        Err(CatalogError::UnknownKind { .. })
    ));
    assert_eq!(detect_kind(b""), Err(CatalogError::Empty));
    // The wrong reader for a format refuses it by its root.
    assert!(matches!(
        MsSecureReader.read(OFFICE.as_bytes()),
        Err(CatalogError::WrongRoot { .. })
    ));
}

#[test]
fn fixture_detection_data_is_complete() {
    let loaded = load();
    let b = loaded.catalog.bulletin("MS98-002").unwrap();
    let p = &b.patches[0];
    assert_eq!(p.detection, Detection::Both);
    let f = &p.files[0];
    assert_eq!(f.name, "SCHANNEL.DLL");
    assert_eq!(f.location.as_deref(), Some("%windir%\\system32"));
    assert_eq!(f.checksum.as_deref(), Some("198299"));
    assert!(f.command.is_some());
    let r = &p.registry[0];
    assert_eq!(r.value_name, "Installed");
    assert_eq!(r.value_type.as_deref(), Some("0x10001"));
    assert!(r.key.as_deref().unwrap().starts_with("HKLM\\"));
    // FixedInSP 75 reads as the service pack the product lists.
    let ms00_076 = loaded.catalog.bulletin("MS00-076").unwrap();
    let fixed: Vec<&FixedInSp> = ms00_076
        .patches
        .iter()
        .flat_map(|p| &p.affected)
        .filter_map(|a| a.fixed_in_sp.as_ref())
        .filter(|f| f.raw == "75")
        .collect();
    assert!(!fixed.is_empty());
    assert!(fixed
        .iter()
        .all(|f| f.service_pack.as_ref().is_some_and(|s| s.id == "75")));
    // Every patch without files or registry is "none", never assumed installed.
    for p in loaded.catalog.bulletins.iter().flat_map(|b| &b.patches) {
        if p.files.is_empty() && p.registry.is_empty() {
            assert_eq!(p.detection, Detection::None);
        }
    }
}

#[test]
fn diff_reports_patch_level_changes() {
    let old = load().catalog;
    let mut new = old.clone();
    new.bulletins[1].patches[0].files[0].version = Some("9.9.9.9".into());
    new.bulletins[1].patches[0].registry.clear();
    new.bulletins[1].patches[0].detection = Detection::Files;
    new.bulletins.remove(0);
    let d = diff(&old, &new);
    assert_eq!(d.removed, vec!["MS98-001"]);
    assert!(d.new_bulletins.is_empty());
    assert_eq!(d.revised.len(), 1);
    let fields: Vec<&str> = d.revised[0]
        .changes
        .iter()
        .map(|c| c.field.as_str())
        .collect();
    assert_eq!(
        fields,
        vec![
            "patch ssl-fixi.exe: detection",
            "patch ssl-fixi.exe: files",
            "patch ssl-fixi.exe: registry"
        ]
    );
}
