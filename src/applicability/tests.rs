//! Engine tests on real bulletins of the fixture, with machines built to
//! be installed, missing, not applicable and superseded for each.

use super::facts::{FileFact, ProductFact, RegistryFact};
use super::*;
use crate::catalog::{self, Catalog};

fn catalog() -> Catalog {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mssecure.xml");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    catalog::read_any(&bytes)
        .expect("the fixture loads")
        .catalog
}

fn t0() -> jiff::Timestamp {
    "2001-10-05T12:00:00Z".parse().expect("time")
}

fn machine(products: &[(&str, Option<&str>)]) -> ScanFacts {
    ScanFacts {
        machine: "PC01".into(),
        products: products
            .iter()
            .map(|(p, sp)| ProductFact {
                product: (*p).into(),
                service_pack: sp.map(str::to_string),
            })
            .collect(),
        ..ScanFacts::default()
    }
}

/// Adds the files (at the catalog's versions) and registry values (with
/// the expected data) that show the patch installed.
fn install(c: &Catalog, facts: &mut ScanFacts, bulletin: &str, patch: &str) {
    let b = c.bulletin(bulletin).expect("bulletin");
    let p = b.patches.iter().find(|p| p.name == patch).expect("patch");
    for f in &p.files {
        facts.files.push(FileFact {
            location: f.location.clone(),
            name: Some(f.name.clone()),
            version: f.version.clone(),
            ..FileFact::default()
        });
    }
    for r in &p.registry {
        facts.registry.push(RegistryFact {
            key: r.key.clone().expect("key"),
            value: r.value_name.clone(),
            data: r.expected.clone(),
        });
    }
}

fn state<'a, 'c>(
    states: &'a [PatchState<'c>],
    bulletin: &str,
    product: Option<&str>,
) -> &'a PatchState<'c> {
    states
        .iter()
        .find(|s| s.bulletin == bulletin && s.product == product)
        .unwrap_or_else(|| panic!("no state for {bulletin} / {product:?}: {states:#?}"))
}

fn status_of(
    c: &Catalog,
    facts: &ScanFacts,
    bulletin: &str,
    product: Option<&str>,
) -> (Status, String) {
    let states = evaluate(c, facts, t0());
    let s = state(&states, bulletin, product);
    (s.status, s.reason.to_string())
}

const NTW: &str = "Windows NT Workstation 4.0";
const NTS: &str = "Windows NT Server 4.0";
const IIS4: &str = "Internet Information Server 4.0";

const SQL7: &str = "SQL Server 7.0";

#[test]
fn files_detection_installed_missing_not_applicable() {
    // MS00-048 s70918i.exe: SQL Server 7.0 SP1/SP2, FixedInSP 56 (the
    // ServicePackID of SQL Server 7.0 SP3); three files at 2000.11.20.0.
    let c = catalog();
    let sp2 = Some("SQL Server 7.0 SP2");
    let mut m = machine(&[(SQL7, sp2)]);
    install(&c, &mut m, "MS00-048", "s70918i.exe");
    let (s, r) = status_of(&c, &m, "MS00-048", Some(SQL7));
    assert_eq!(s, Status::Installed, "{r}");

    // A newer version, written with commas as one path, still counts.
    let mut newer = m.clone();
    newer.files[1] = FileFact {
        path: Some("%COMMONPROGRAMFILES%/Microsoft Shared/Database Replication/XPREPL.DLL".into()),
        version: Some("2000,80,223,0".into()),
        ..FileFact::default()
    };
    assert_eq!(
        status_of(&c, &newer, "MS00-048", Some(SQL7)).0,
        Status::Installed
    );

    // An older version: missing, and the reason says which file.
    let mut older = m.clone();
    older.files[1].version = Some("2000.11.19.9".into());
    let (s, r) = status_of(&c, &older, "MS00-048", Some(SQL7));
    assert_eq!(s, Status::Missing);
    assert!(
        r.contains("xprepl.dll is 2000.11.19.9, needs 2000.11.20.0"),
        "{r}"
    );

    // A file absent: missing.
    let mut absent = m.clone();
    absent.files.remove(0);
    let (s, r) = status_of(&c, &absent, "MS00-048", Some(SQL7));
    assert_eq!(s, Status::Missing);
    assert!(r.contains("not found"), "{r}");

    // SP3 is the FixedInSP service pack: not applicable; Gold is not listed.
    let (s, r) = status_of(
        &c,
        &machine(&[(SQL7, Some("SQL Server 7.0 SP3"))]),
        "MS00-048",
        Some(SQL7),
    );
    assert_eq!(s, Status::NotApplicable);
    assert!(r.contains("fixed in SQL Server 7.0 SP3"), "{r}");
    let (s, r) = status_of(
        &c,
        &machine(&[(SQL7, Some(" sql server 7.0 gold "))]),
        "MS00-048",
        Some(SQL7),
    );
    assert_eq!(s, Status::NotApplicable);
    assert!(r.contains("not an affected service pack"), "{r}");

    // No affected product at all: one not-applicable state without product.
    let states = evaluate(
        &c,
        &machine(&[("Windows 2000 Professional", Some("Windows 2000 Gold"))]),
        t0(),
    );
    let s = state(&states, "MS00-048", None);
    assert_eq!(s.status, Status::NotApplicable);
    assert_eq!(
        states.iter().filter(|s| s.bulletin == "MS00-048").count(),
        1
    );
}

#[test]
fn unsupported_file_checks_are_unknown() {
    // MS98-012 pptpfixi.exe checks ndiswan.sys with command `u`
    // ("unsupported"): the file cannot decide, whatever its version.
    let c = catalog();
    let mut m = machine(&[(NTW, Some("Windows NT4 Service Pack 3"))]);
    install(&c, &mut m, "MS98-012", "pptpfixi.exe");
    let (s, r) = status_of(&c, &m, "MS98-012", Some(NTW));
    assert_eq!(s, Status::Unknown, "{r}");
    // SP4 (ServicePackID 4, the FixedInSP) has the fix.
    let (s, r) = status_of(
        &c,
        &machine(&[(NTW, Some("Windows NT4 Service Pack 4"))]),
        "MS98-012",
        Some(NTW),
    );
    assert_eq!(s, Status::NotApplicable);
    assert!(r.contains("fixed in Windows NT4 Service Pack 4"), "{r}");
}

#[test]
fn one_state_per_bulletin_and_product() {
    // MS00-045 q261255.exe affects IE 5.01 and Outlook Express 5.01: two
    // states, one per product, both decided by the same patch.
    let c = catalog();
    let gold = Some("Internet Explorer 5.01 Gold");
    let mut m = machine(&[
        ("Internet Explorer 5.01", gold),
        ("Outlook Express 5.01", gold),
    ]);
    let states = evaluate(&c, &m, t0());
    let mine: Vec<_> = states.iter().filter(|s| s.bulletin == "MS00-045").collect();
    assert_eq!(mine.len(), 2);
    assert!(mine.iter().all(|s| s.status == Status::Missing));
    assert!(mine.iter().all(|s| s.patch == Some("q261255.exe")));
    install(&c, &mut m, "MS00-045", "q261255.exe");
    let states = evaluate(&c, &m, t0());
    assert_eq!(
        state(&states, "MS00-045", Some("Internet Explorer 5.01")).status,
        Status::Installed
    );
    assert_eq!(
        state(&states, "MS00-045", Some("Outlook Express 5.01")).status,
        Status::Installed
    );
}

#[test]
fn registry_detection() {
    // MS99-013 fix2450i.exe: IIS 4.0 on NT4 SP5, registry
    // Hotfix\Q232449\Installed = 1; FixedInSP 7 = NT4 SP6a.
    let c = catalog();
    let sp5 = Some("Windows NT4 Service Pack 5");
    let mut m = machine(&[(IIS4, sp5)]);
    install(&c, &mut m, "MS99-013", "fix2450i.exe");
    let (s, r) = status_of(&c, &m, "MS99-013", Some(IIS4));
    assert_eq!(s, Status::Installed, "{r}");

    // The key spelled long and in another case still matches.
    let mut long = machine(&[(IIS4, sp5)]);
    long.registry.push(RegistryFact {
        key:
            "HKEY_LOCAL_MACHINE\\software\\microsoft\\windows nt\\currentversion\\hotfix\\q232449\\"
                .into(),
        value: "installed".into(),
        data: Some("1".into()),
    });
    assert_eq!(
        status_of(&c, &long, "MS99-013", Some(IIS4)).0,
        Status::Installed
    );

    // Wrong data, or no value: missing.
    let mut wrong = m.clone();
    wrong.registry[0].data = Some("0".into());
    assert_eq!(
        status_of(&c, &wrong, "MS99-013", Some(IIS4)).0,
        Status::Missing
    );
    assert_eq!(
        status_of(&c, &machine(&[(IIS4, sp5)]), "MS99-013", Some(IIS4)).0,
        Status::Missing
    );

    // NT4 SP6a (ServicePackID 7) has the fix.
    let (s, r) = status_of(&c, &machine(&[(IIS4, Some("7"))]), "MS99-013", Some(IIS4));
    assert_eq!(s, Status::NotApplicable);
    assert!(r.contains("Windows NT4 Service Pack 6a"), "{r}");
}

#[test]
fn no_detection_data_is_unknown_never_installed() {
    // MS98-004: IIS 4.0 on NT4 SP3..SP6a, no detection data.
    let c = catalog();
    let mut m = machine(&[(IIS4, Some("Windows NT4 Service Pack 6a"))]);
    // Even with every file and key the catalog knows of, it stays unknown.
    install(&c, &mut m, "MS01-033", "Q300972i.exe");
    let (s, r) = status_of(&c, &m, "MS98-004", Some(IIS4));
    assert_eq!(s, Status::Unknown);
    assert!(r.contains("check manually"), "{r}");
    // Not applicable still wins when the service pack is not affected.
    let (s, _) = status_of(
        &c,
        &machine(&[(IIS4, Some("Windows NT4 Service Pack 4"))]),
        "MS99-013",
        Some(IIS4),
    );
    assert_eq!(s, Status::NotApplicable);
}

#[test]
fn supersedence_installs_the_superseded() {
    // MS01-033 Q300972i.exe (IIS 4.0, NT4 SP6a) is superseded by MS01-041
    // Q299444I.exe.
    let c = catalog();
    let sp6a = Some("Windows NT4 Service Pack 6a");
    let bare = machine(&[(IIS4, sp6a)]);
    assert_eq!(
        status_of(&c, &bare, "MS01-033", Some(IIS4)).0,
        Status::Missing
    );

    let mut superseded = bare.clone();
    install(&c, &mut superseded, "MS01-041", "Q299444I.exe");
    let states = evaluate(&c, &superseded, t0());
    let s = state(&states, "MS01-033", Some(IIS4));
    assert_eq!(s.status, Status::Installed);
    assert_eq!(s.reason, "superseded by MS01-041, which is installed");
    assert_eq!(
        state(&states, "MS01-041", Some(IIS4)).status,
        Status::Installed
    );

    // MS01-041's IIS files are all "change if exists": with none of them
    // on the machine, its registry value alone decides, and MS01-033
    // follows.
    let mut registry_only = bare.clone();
    registry_only.registry.push(RegistryFact {
        key: "HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Hotfix\\Q299444".into(),
        value: "Installed".into(),
        data: Some("1".into()),
    });
    let states = evaluate(&c, &registry_only, t0());
    assert_eq!(
        state(&states, "MS01-041", Some(IIS4)).status,
        Status::Installed
    );
    assert_eq!(
        state(&states, "MS01-033", Some(IIS4)).status,
        Status::Installed
    );

    // Installed itself: the reason is its own detection.
    let mut own = bare.clone();
    install(&c, &mut own, "MS01-033", "Q300972i.exe");
    let (s, r) = status_of(&c, &own, "MS01-033", Some(IIS4));
    assert_eq!(s, Status::Installed);
    assert!(!r.contains("superseded"), "{r}");
}

#[test]
fn unsupported_bulletin_is_flagged_unknown() {
    // MS99-008 is Supported="No".
    let c = catalog();
    let mut m = machine(&[(NTS, Some("Windows NT4 Service Pack 4"))]);
    install(&c, &mut m, "MS99-008", "ScrnSav-fix");
    let states = evaluate(&c, &m, t0());
    let s = state(&states, "MS99-008", Some(NTS));
    assert_eq!(s.status, Status::Unknown);
    assert!(!s.supported);
    assert!(s.reason.contains("unsupported"), "{}", s.reason);
}

#[test]
fn service_pack_not_reported_or_unknown() {
    let c = catalog();
    let (s, r) = status_of(&c, &machine(&[(NTW, None)]), "MS98-012", Some(NTW));
    assert_eq!(s, Status::Unknown);
    assert!(r.contains("not reported"), "{r}");
    let (s, r) = status_of(&c, &machine(&[(NTW, Some("SP9"))]), "MS98-012", Some(NTW));
    assert_eq!(s, Status::Unknown);
    assert!(r.contains("`SP9`"), "{r}");
}

#[test]
fn products_by_name_or_id() {
    let c = catalog();
    let id = c
        .products
        .values()
        .find(|p| p.name == SQL7)
        .map(|p| p.id.clone())
        .expect("product");
    assert_eq!(id, "29");
    let by_id = machine(&[(id.as_str(), Some("SQL Server 7.0 SP2"))]);
    let by_name = machine(&[("  sql SERVER 7.0 ", Some("SQL Server 7.0 SP2"))]);
    let a = evaluate(&c, &by_id, t0());
    let b = evaluate(&c, &by_name, t0());
    assert_eq!(a, b);
    assert_eq!(state(&a, "MS00-048", Some(SQL7)).status, Status::Missing);
}

#[test]
fn every_bulletin_has_a_state_and_fields_are_filled() {
    let c = catalog();
    let m = machine(&[
        (NTS, Some("Windows NT4 Service Pack 6a")),
        (IIS4, Some("Windows NT4 Service Pack 6a")),
    ]);
    let states = evaluate(&c, &m, t0());
    for b in &c.bulletins {
        assert!(states.iter().any(|s| s.bulletin == b.id), "{}", b.id);
    }
    let s = state(&states, "MS01-041", Some(NTS));
    assert_eq!(s.scan_agent, "patchops-mssecure");
    assert_eq!(s.scan_time, t0());
    assert_eq!(s.q_numbers, vec!["Q298012", "Q299444"]);
    assert_eq!(s.reboot, Reboot::Required);
    assert_eq!(s.superseded_by, vec!["MS01-044"]);
    assert!(s.title.is_some());
    let counts = Counts::of(&states);
    assert!(counts.missing > 0 && counts.not_applicable > 0 && counts.unknown > 0);
}

const OFFICE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<OfficeUpdateCatalog DataVersion="2.2.0.31" LastDataUpdate="2004/03/09">
  <Products>
    <Product ProductID="OXP" Name="Office XP Professional" Family="Office XP">
      <ProductCode Code="{90280409-6000-11d3-8cfe-0050048383c9}"/>
    </Product>
    <Product ProductID="O2K" Name="Office 2000"><ProductCode Code="{00000409-78E1-11D2-B60F-006097C998E7}"/></Product>
  </Products>
  <ServicePacks><ServicePack ServicePackID="OXP-SP2" Name="Office XP SP2"/></ServicePacks>
  <Updates>
    <Update UpdateID="MS04-009" Title="Outlook" DatePosted="2004/03/09">
      <QNumber QNumber="KB828040"/>
      <Patch Name="client.exe" Install="Client" PatchCode="{AAAAAAAA-0000-0000-0000-000000000001}" Reboot="No">
        <Target ProductID="OXP" FixedInSP="3"><ServicePack ServicePackID="OXP-SP2"/></Target>
      </Patch>
      <Patch Name="o2k.exe" Install="Client" PatchCode="{AAAAAAAA-0000-0000-0000-000000000002}">
        <Target ProductID="O2K"/>
      </Patch>
    </Update>
  </Updates>
</OfficeUpdateCatalog>
"#;

#[test]
fn office_patches_by_windows_installer_codes() {
    let c = catalog::read_any(OFFICE.as_bytes()).expect("loads").catalog;
    let mut m = machine(&[("office xp professional", Some("Office XP SP2"))]);
    // Office 2000 known by its product code only (no service pack listed,
    // so none needs reporting).
    m.msi.products = vec!["{00000409-78e1-11d2-b60f-006097c998e7}".into()];
    let states = evaluate(&c, &m, t0());
    let s = state(&states, "MS04-009", Some("Office XP Professional"));
    assert_eq!(
        (s.status, s.scan_agent),
        (Status::Missing, "patchops-office")
    );
    assert_eq!(s.reboot, Reboot::NotRequired);
    assert_eq!(
        state(&states, "MS04-009", Some("Office 2000")).status,
        Status::Missing
    );
    m.msi.patches = vec!["{aaaaaaaa-0000-0000-0000-000000000001}".into()];
    let states = evaluate(&c, &m, t0());
    let s = state(&states, "MS04-009", Some("Office XP Professional"));
    assert_eq!(s.status, Status::Installed, "{}", s.reason);
    assert_eq!(
        state(&states, "MS04-009", Some("Office 2000")).status,
        Status::Missing
    );
}

#[test]
fn supersedence_is_transitive() {
    // MS01-033 Q300972i.exe ← MS01-041 Q299444I.exe ← MS01-044
    // q301625i.exe, all for IIS 4.0 on NT4 SP6a. Only MS01-044 is in.
    let c = catalog();
    let mut m = machine(&[(IIS4, Some("Windows NT4 Service Pack 6a"))]);
    install(&c, &mut m, "MS01-044", "q301625i.exe");
    let states = evaluate(&c, &m, t0());
    let s = state(&states, "MS01-044", Some(IIS4));
    assert_eq!(s.status, Status::Installed, "{}", s.reason);
    assert!(!s.reason.contains("superseded"), "{}", s.reason);
    let s = state(&states, "MS01-041", Some(IIS4));
    assert_eq!(
        (s.status, s.reason.as_ref()),
        (
            Status::Installed,
            "superseded by MS01-044, which is installed"
        )
    );
    let s = state(&states, "MS01-033", Some(IIS4));
    assert_eq!(
        (s.status, s.reason.as_ref()),
        (
            Status::Installed,
            "superseded by MS01-041, which is installed"
        )
    );
}
