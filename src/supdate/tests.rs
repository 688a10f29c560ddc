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
        None,
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
        None,
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
    let view = policy_view(&desired, &content, &Default::default());
    assert!(!view.site.packages.contains_key(name));
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
            notice: Some("Save your work.".into()),
        },
    )]
    .into_iter()
    .collect();
    let view = policy_view(&desired, &content, &builds);
    let package = &view.site.packages[name].spec;
    assert_eq!(package.programs.len(), 2);
    assert_eq!(
        package.programs[1]
            .run_another_program_first
            .as_ref()
            .map(|f| f.program.as_str()),
        Some("a")
    );
    assert_eq!(package.distribution_points, ["dp-hq", "dp-branch"]);
    let ad = &view.site.advertisements[name].spec;
    assert_eq!(ad.program, "b");
    assert_eq!(ad.collection, "MS Security Updates (Pre-production)");
    assert_eq!(ad.schedule.len(), 1);
    assert_eq!(view.content[name].files, 2);

    // The installation agent settings and the notification go with every
    // program, the notice with the advertised one.
    let first = &view.installs[name]["a"];
    let last = &view.installs[name]["b"];
    assert_eq!(first.notice, None);
    assert_eq!(last.notice.as_deref(), Some("Save your work."));
    let agent = &last.install_agent;
    assert!(agent.inventory_after_install);
    assert_eq!(
        agent.postpone_restart,
        crate::manifest::software_update_package::PostponeRestart::Servers
    );
    assert_eq!(agent.countdown_seconds, 300);
    assert_eq!(last.notification.allow_postpone_seconds, Some(86_400));
    assert!(last.notification.prompt_user);
    // … and reach the machine's policy.
    let site = view.policy_site();
    let machine: crate::inventory::Machine =
        serde_json::from_value(serde_json::json!({ "name": "wks-test-01" })).unwrap();
    let policy = crate::policy::machine_policy(&site, &machine, &[name]);
    let p = &policy.assignments[0].program;
    assert_eq!(
        p.install_agent.as_ref().map(|a| a.countdown_seconds),
        Some(300)
    );
    assert_eq!(p.notice.as_deref(), Some("Save your work."));
    assert_eq!(policy.programs[0].notice, None);
    assert!(policy.programs[0].install_agent.is_some());
}

fn state(
    machine: &str,
    bulletin: &str,
    product: Option<&str>,
    status: &str,
) -> crate::records::StoredPatchState {
    crate::records::StoredPatchState {
        machine_key: machine.into(),
        bulletin: bulletin.into(),
        product: product.map(str::to_string),
        q_numbers: vec![],
        title: None,
        status: status.into(),
        reboot: "unknown".into(),
        scan_agent: "test".into(),
        scan_time_ms: 0,
        patch: None,
        reason: String::new(),
    }
}

fn members(list: &[&str]) -> std::collections::BTreeMap<String, Vec<String>> {
    [(
        "Servers".to_string(),
        list.iter().map(|s| s.to_string()).collect(),
    )]
    .into_iter()
    .collect()
}

#[test]
fn patches_are_selected_by_name_with_suggestions() {
    let cat = fixture();
    let r = resolve(
        &spec(serde_json::json!([
            {"patch": " q299687_w2k_sp3_x86_EN.exe "},
            {"patch": "exc1001.exe", "products": ["Excel 2002"]},
        ])),
        &cat,
        None,
    );
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let files: Vec<(&str, &str)> = r
        .files
        .iter()
        .map(|f| (f.bulletin.as_str(), f.file_name.as_str()))
        .collect();
    assert_eq!(
        files,
        [
            ("MS01-036", "Q299687_W2K_SP3_x86_en.EXE"),
            ("MS01-050", "exc1001.exe")
        ]
    );
    assert_eq!(r.selections[0].selected, "patch q299687_w2k_sp3_x86_EN.exe");
    // A re-released patch is one file, installed as the newest bulletin's.
    assert!(
        r.selections[0].notes[0].contains("also listed by MS01-011, MS01-024"),
        "{:?}",
        r.selections[0].notes
    );

    let r = resolve(
        &spec(serde_json::json!([
            {"patch": "Q299687_W2K_SP3_x86_en.EXX"},
            {"patch": "Q299687_W2K_SP3_x86_en.EXE", "products": ["Windows 2000 Serve"]},
        ])),
        &cat,
        None,
    );
    let got: Vec<(usize, &str, Option<&str>)> = r
        .problems
        .iter()
        .map(|p| (p.selection, p.field.as_str(), p.help.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (
                0,
                "patch",
                Some("did you mean `Q299687_W2K_SP3_x86_en.EXE`?")
            ),
            (
                1,
                "products[0]",
                Some("did you mean `Windows 2000 Server`?")
            ),
        ]
    );
    assert!(r.files.is_empty());
}

#[test]
fn missing_in_a_collection_selects_what_its_members_lack() {
    let cat = fixture();
    let s = spec(serde_json::json!([{"missingIn": {"collection": "Servers"}}]));
    // Offline (validation): nothing resolves, nothing is wrong.
    let r = resolve(&s, &cat, None);
    assert!(r.problems.is_empty() && r.files.is_empty());
    assert!(r.selections[0].notes[0].contains("resolved when planned"));

    let states = [
        state("srv1", "MS01-036", Some("Windows 2000 Server"), "missing"),
        state(
            "srv2",
            "MS01-036",
            Some("Windows 2000 Advanced Server"),
            "missing",
        ),
        state("srv3", "MS01-036", Some("Windows 2000 Server"), "installed"),
        state(
            "srv1",
            "MS01-027",
            Some("Internet Explorer 5.01"),
            "notApplicable",
        ),
        // Not a member: ignored.
        state("wks9", "MS01-050", Some("Excel 2002"), "missing"),
        // Scanned against another catalog version.
        state("srv3", "MS99-999", None, "missing"),
    ];
    let missing = super::missing_states(&members(&["srv1", "srv2", "srv3", "srv4"]), &states);
    let r = resolve(&s, &cat, Some(&missing));
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let files: Vec<&str> = r.files.iter().map(|f| f.file_name.as_str()).collect();
    assert_eq!(files, ["Q299687_W2K_SP3_x86_en.EXE"]);
    let outcome = &r.selections[0];
    assert_eq!(outcome.selected, "missingIn Servers");
    assert_eq!(
        outcome.updates,
        ["MS01-036: missing on 2 of 4 members (1 file)"]
    );
    assert!(
        outcome
            .notes
            .iter()
            .any(|n| n.contains("1 of the 4 members have no stored scan results")),
        "{:?}",
        outcome.notes
    );
    assert!(
        outcome
            .notes
            .iter()
            .any(|n| n.contains("not in the catalog") && n.contains("MS99-999")),
        "{:?}",
        outcome.notes
    );

    // A product filter that leaves nothing; an unknown product.
    let only_excel = spec(serde_json::json!([
        {"missingIn": {"collection": "Servers"}, "products": ["Excel 2002"]}
    ]));
    let r = resolve(&only_excel, &cat, Some(&missing));
    assert!(r.files.is_empty());
    let bad = spec(serde_json::json!([
        {"missingIn": {"collection": "Servers"}, "products": ["Exel 2002"]}
    ]));
    let r = resolve(&bad, &cat, Some(&missing));
    assert_eq!(r.problems[0].field, "products[0]");
    assert_eq!(
        r.problems[0].help.as_deref(),
        Some("did you mean `Excel 2002`?")
    );

    // Severities: the fixture rates no bulletin, so a filter leaves them
    // all out and says so; a rated one is kept.
    let critical = spec(serde_json::json!([
        {"missingIn": {"collection": "Servers", "severities": ["critical"]}}
    ]));
    let r = resolve(&critical, &cat, Some(&missing));
    assert!(r.files.is_empty());
    assert!(r.selections[0]
        .notes
        .iter()
        .any(|n| n.contains("no severity rating")));
    let mut rated = cat.clone();
    for b in &mut rated.bulletins {
        if b.id == "MS01-036" {
            b.severity = Some("Critical".into());
        }
    }
    let r = resolve(&critical, &rated, Some(&missing));
    assert_eq!(r.files.len(), 1);
}

#[test]
fn missing_in_without_scans_selects_nothing_and_says_why() {
    let cat = fixture();
    let s = spec(serde_json::json!([{"missingIn": {"collection": "Servers"}}]));
    let missing = super::missing_states(&members(&["srv1", "srv2"]), &[]);
    let r = resolve(&s, &cat, Some(&missing));
    assert!(r.problems.is_empty() && r.files.is_empty());
    assert!(
        r.selections[0].notes[0]
            .contains("none of the 2 members of collection `Servers` has stored scan results"),
        "{:?}",
        r.selections[0].notes
    );
    let missing = super::missing_states(&members(&[]), &[]);
    let r = resolve(&s, &cat, Some(&missing));
    assert!(r.selections[0].notes[0].contains("has no members"));
}

#[test]
fn a_file_selected_twice_is_listed_once() {
    let cat = fixture();
    let r = resolve(
        &spec(serde_json::json!([
            {"bulletin": "MS01-036"},
            {"patch": "Q299687_W2K_SP3_x86_en.EXE", "commandLine": "other"},
        ])),
        &cat,
        None,
    );
    assert_eq!(r.files.len(), 1);
    assert!(r.files[0].command_line.ends_with("-q -z"));
    assert_eq!(
        r.selections[1].updates,
        ["MS01-036: patch Q299687_W2K_SP3_x86_en.EXE (no new file: selected already)"]
    );
}
