use std::path::Path;

use super::resolve::{self, default_command_line, ohotfix_ini, resolve};
use crate::catalog::{self, Catalog};
use crate::manifest::software_update_package::{Ohotfix, SoftwareUpdatePackageSpec};

fn fixture() -> Catalog {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mssecure.xml");
    catalog::read_any(&std::fs::read(path).expect("fixture"))
        .expect("reads")
        .catalog
}

fn spec(updates: serde_json::Value) -> SoftwareUpdatePackageSpec {
    serde_json::from_value(serde_json::json!({
        "updateType": "security",
        "inventoryProgram": {"package": "p", "program": "q"},
        "updates": updates,
        "source": "sources/x",
    }))
    .expect("spec")
}

#[test]
fn resolves_real_bulletins_by_id_q_number_and_product() {
    let cat = fixture();
    let r = resolve(
        &spec(serde_json::json!([
            {"bulletin": " ms01-036 "},
            {"bulletin": "MS01-027", "qNumbers": ["299618"]},
            {"bulletin": "MS01-050", "products": ["excel 2002"]},
        ])),
        &cat,
    );
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let names: Vec<(&str, &str)> = r
        .files
        .iter()
        .map(|f| (f.file_name.as_str(), f.command_line.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            (
                "Q299687_W2K_SP3_x86_en.EXE",
                "Q299687_W2K_SP3_x86_en.EXE -q -z"
            ),
            ("q299618.exe", "q299618.exe -q -z"),
            // `xl2002` is no file name: the URL's last segment is.
            ("exc1001.exe", "exc1001.exe /q:a /r:n"),
        ]
    );
    assert_eq!(r.files[0].bulletin, "MS01-036");
    assert!(r.files[0].program_name.starts_with("MS01-036"));
}

#[test]
fn unknown_ids_suggest_the_closest() {
    let cat = fixture();
    let r = resolve(
        &spec(serde_json::json!([
            {"bulletin": "MS01-036"},
            {"bulletin": "ms01-0366"},
            {"bulletin": "MS01-027", "qNumbers": ["299619"]},
            {"bulletin": "MS01-050", "products": ["Excel 202"]},
        ])),
        &cat,
    );
    let got: Vec<(usize, &str, Option<&str>)> = r
        .problems
        .iter()
        .map(|p| (p.selection, p.field.as_str(), p.help.as_deref()))
        .collect();
    assert_eq!(got[0].0, 1);
    assert_eq!(got[0].1, "bulletin");
    assert_eq!(got[0].2, Some("did you mean `MS01-036`?"));
    assert_eq!((got[1].0, got[1].1), (2, "qNumbers[0]"));
    assert!(got[1].2.unwrap().contains("did you mean"), "{got:?}");
    assert_eq!((got[2].0, got[2].1), (3, "products[0]"));
    assert_eq!(got[2].2, Some("did you mean `Excel 2002`?"));
    // The good selection still resolves.
    assert_eq!(r.files.len(), 1);
}

#[test]
fn default_command_lines_follow_the_installer() {
    let s = spec(serde_json::json!([]));
    assert_eq!(
        default_command_line(&s, "WindowsXP-KB835732-x86-ENU.exe"),
        "WindowsXP-KB835732-x86-ENU.exe /quiet /norestart"
    );
    assert_eq!(
        default_command_line(&s, "Q305399i.exe"),
        "Q305399i.exe -q -z"
    );
    assert_eq!(
        default_command_line(&s, "isahf63.exe"),
        "isahf63.exe /q:a /r:n"
    );
    let mut office = s.clone();
    office.update_type = crate::manifest::sync_host::CatalogType::Office;
    assert_eq!(default_command_line(&office, "x.msp"), "ohotfix.exe");
    assert!(resolve::needs_ohotfix(&office));
}

#[test]
fn ohotfix_ini_is_quiet_by_default() {
    assert_eq!(
        ohotfix_ini(&Ohotfix::default()),
        "[OHotfix]\r\nShowSuccessDialog=0\r\nOHotfixUILevel=q\r\nMsiUILevel=q\r\n"
    );
}

#[test]
fn mirror_keeps_path_and_query() {
    assert_eq!(
        super::download::mirrored(
            "http://download.microsoft.com/a/b.exe?x=1",
            "http://127.0.0.1:9/"
        )
        .unwrap(),
        "http://127.0.0.1:9/a/b.exe?x=1"
    );
}

#[test]
fn advertised_builds_become_a_package_and_an_advertisement_for_policy() {
    use super::policy::{policy_view, UpdateBuild, UpdateProgram};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let report = crate::validate::validate_dir(&root.join("examples/site"), Default::default())
        .expect("loads");
    let desired = report.desired;
    let content = Default::default();
    let name = "Security Updates 2026-11";
    // Not built (not Ready): nothing is added.
    let (view, _) = policy_view(&desired, &content, &Default::default());
    assert!(!view.packages.contains_key(name));
    let program = |n: &str| UpdateProgram {
        name: n.into(),
        command_line: format!("{n}.exe -q -z"),
    };
    let builds = [(
        name.to_string(),
        UpdateBuild {
            version: "ab".repeat(32),
            files: 2,
            bytes: 10,
            programs: vec![program("a"), program("b")],
        },
    )]
    .into_iter()
    .collect();
    let (view, view_content) = policy_view(&desired, &content, &builds);
    let package = &view.packages[name].spec;
    assert_eq!(package.programs.len(), 2);
    assert_eq!(
        package.programs[1]
            .run_another_program_first
            .as_ref()
            .map(|f| f.program.as_str()),
        Some("a")
    );
    assert_eq!(package.distribution_points, ["dp-hq", "dp-branch"]);
    let ad = &view.advertisements[name].spec;
    assert_eq!(ad.program, "b");
    assert_eq!(ad.collection, "MS Security Updates (Pre-production)");
    assert_eq!(ad.schedule.len(), 1);
    assert_eq!(view_content[name].files, 2);
}
