//! The applicability engine through the real binary: `catalog scan` of
//! one machine against the fixture, then `inventory scan-import` of several
//! machines and `status updates` over them (all, and one collection).

use std::path::Path;

use crate::support::{self, patchops};
use tempfile::TempDir;

fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = patchops()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fixture() -> String {
    support::repo()
        .join("tests/fixtures/mssecure.xml")
        .display()
        .to_string()
}

/// SQL Server 7.0 SP2 with MS00-048's files at `version`, and IIS 4.0 on
/// NT4 SP6a with MS01-041's IIS registry value (so MS01-033 is installed by
/// supersedence) when `iis_patched`.
fn facts(machine: &str, version: &str, iis_patched: bool) -> String {
    let dir = r"%CommonProgramFiles%\\Microsoft Shared\\Database Replication";
    let mut files = String::new();
    for f in ["replres.DLL", "xprepl.dll", "xpstar.DLL"] {
        files.push_str(&format!(
            r#"{{"location": "{dir}", "name": "{f}", "version": "{version}"}},"#
        ));
    }
    files.pop();
    let registry = if iis_patched {
        r#"{"key": "HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Hotfix\\Q299444", "value": "Installed", "data": "1"}"#
    } else {
        ""
    };
    format!(
        r#"{{"machine": "{machine}",
            "products": [
              {{"product": "SQL Server 7.0", "servicePack": "SQL Server 7.0 SP2"}},
              {{"product": "Internet Information Server 4.0", "servicePack": "Windows NT4 Service Pack 6a"}}
            ],
            "files": [{files}],
            "registry": [{registry}]}}"#
    )
}

#[test]
fn catalog_scan_shows_each_state() {
    let dir = TempDir::new().expect("tmp");
    std::fs::write(
        dir.path().join("pc01.json"),
        facts("PC01", "2000.11.20.0", true),
    )
    .unwrap();
    let catalog = fixture();
    let (code, out, err) = run(
        dir.path(),
        &[
            "catalog",
            "scan",
            "--catalog",
            &catalog,
            "--facts",
            "pc01.json",
            "--format",
            "json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(doc["machine"], "PC01");
    let states = doc["states"].as_array().expect("states");
    let find = |b: &str, p: &str| {
        states
            .iter()
            .find(|s| s["bulletin"] == b && s["product"] == p)
            .unwrap_or_else(|| panic!("{b} {p}"))
            .clone()
    };
    let s = find("MS00-048", "SQL Server 7.0");
    assert_eq!(s["status"], "installed");
    assert_eq!(s["scanAgent"], "patchops-mssecure");
    assert_eq!(s["qNumbers"][0], "Q266766");
    assert_eq!(s["reboot"], "required");
    let s = find("MS01-033", "Internet Information Server 4.0");
    assert_eq!(s["status"], "installed");
    assert_eq!(s["reason"], "superseded by MS01-041, which is installed");
    assert_eq!(
        find("MS98-004", "Internet Information Server 4.0")["status"],
        "unknown"
    );
    assert_eq!(
        find("MS99-013", "Internet Information Server 4.0")["status"],
        "notApplicable"
    );
    assert_eq!(
        find("MS00-014", "SQL Server 7.0")["status"],
        "notApplicable"
    );

    // Human: a table and a summary.
    let (code, out, err) = run(
        dir.path(),
        &[
            "catalog",
            "scan",
            "--catalog",
            &catalog,
            "--facts",
            "pc01.json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("BULLETIN  Q "), "{out}");
    assert!(out.contains("MS00-048  Q266766  SQL Server 7.0"), "{out}");
    assert!(out.contains("PC01: "), "{out}");
    assert!(out.contains("% compliant"), "{out}");

    // Bad facts: a clear error naming the file and the field.
    std::fs::write(dir.path().join("bad.yaml"), "machine: PC02\nprodukts: []\n").unwrap();
    let (code, _, err) = run(
        dir.path(),
        &[
            "catalog",
            "scan",
            "--catalog",
            &catalog,
            "--facts",
            "bad.yaml",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("bad.yaml") && err.contains("unknown field `produkts`"),
        "{err}"
    );
}

fn updates(dir: &Path, state: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["status", "updates", "--format", "json", "--state", state];
    args.extend_from_slice(extra);
    let (code, out, err) = run(dir, &args);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).expect("json")
}

fn bulletin<'a>(doc: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    doc["bulletins"]
        .as_array()
        .expect("bulletins")
        .iter()
        .find(|b| b["bulletin"] == id)
        .unwrap_or_else(|| panic!("{id}"))
}

#[test]
fn scan_import_feeds_status_updates() {
    let dir = TempDir::new().expect("tmp");
    support::copy_dir(
        &support::repo().join("examples/site"),
        &dir.path().join("site"),
    );
    let state = format!("sqlite://{}", dir.path().join("s.db").display());
    let inventory = support::repo().join("examples/inventory.csv");
    let (code, _, err) = run(
        dir.path(),
        &[
            "inventory",
            "import",
            inventory.to_str().expect("path"),
            "--state",
            &state,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(
        dir.path(),
        &["apply", "site", "--auto-approve", "--state", &state],
    );
    assert_eq!(code, 0, "{err}");

    // Three machines: patched, old files, old files without the IIS fix.
    let scans = dir.path().join("scans");
    std::fs::create_dir(&scans).unwrap();
    std::fs::write(
        scans.join("a.json"),
        facts("wks-test-01", "2000.11.20.0", true),
    )
    .unwrap();
    std::fs::write(scans.join("b.json"), facts("sms01", "2000.11.19.0", true)).unwrap();
    std::fs::write(scans.join("c.json"), facts("dc01", "2000.11.19.0", false)).unwrap();
    std::fs::write(scans.join("notes.txt"), "ignored").unwrap();
    let catalog = fixture();
    let (code, out, err) = run(
        dir.path(),
        &[
            "inventory",
            "scan-import",
            "--catalog",
            &catalog,
            "--facts",
            "scans",
            "--state",
            &state,
            "--batch",
            "2",
            "--format",
            "json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(doc["machines"], 3);

    let all = updates(dir.path(), &state, &[]);
    assert_eq!(all["machines"], 3);
    let b = bulletin(&all, "MS00-048");
    assert_eq!(
        (
            &b["installed"],
            &b["missing"],
            &b["notApplicable"],
            &b["unknown"]
        ),
        (&1.into(), &2.into(), &0.into(), &0.into())
    );
    let pct = b["percentCompliant"].as_f64().expect("pct");
    assert!((pct - 100.0 / 3.0).abs() < 1e-9, "{pct}");
    let b = bulletin(&all, "MS01-033");
    assert_eq!((&b["installed"], &b["missing"]), (&2.into(), &1.into()));
    let b = bulletin(&all, "MS98-004");
    assert_eq!(b["unknown"], 3);
    assert!(b["percentCompliant"].is_null());
    let b = bulletin(&all, "MS98-001");
    assert_eq!(b["notApplicable"], 3);

    // One collection: only its member.
    let pre = updates(
        dir.path(),
        &state,
        &["--collection", "MS Security Updates (Pre-production)"],
    );
    assert_eq!(pre["machines"], 1);
    assert_eq!(bulletin(&pre, "MS00-048")["installed"], 1);
    assert_eq!(bulletin(&pre, "MS00-048")["missing"], 0);

    // A rescan replaces the machine's states.
    std::fs::write(scans.join("c.json"), facts("dc01", "2000.11.20.0", false)).unwrap();
    let (code, out, err) = run(
        dir.path(),
        &[
            "inventory",
            "scan-import",
            "--catalog",
            &catalog,
            "--facts",
            scans.join("c.json").to_str().expect("path"),
            "--state",
            &state,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Scanned 1 machines against "), "{out}");
    let all = updates(dir.path(), &state, &[]);
    assert_eq!(bulletin(&all, "MS00-048")["installed"], 2);

    // Human output and an unknown collection.
    let (code, out, err) = run(dir.path(), &["status", "updates", "--state", &state]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("3 scanned machines\n"), "{out}");
    assert!(out.contains("MS00-048"), "{out}");
    // Bulletins that apply to none of the machines are left out unless
    // asked for, and counted.
    let not_anywhere: Vec<&serde_json::Value> = all["bulletins"]
        .as_array()
        .expect("bulletins")
        .iter()
        .filter(|b| b["installed"] == 0 && b["missing"] == 0 && b["unknown"] == 0)
        .collect();
    assert!(!not_anywhere.is_empty());
    let hidden = not_anywhere[0]["bulletin"].as_str().expect("id");
    assert!(!out.contains(&format!("\n{hidden} ")), "{out}");
    assert!(
        out.contains(&format!(
            "{} more bulletins apply to none of these machines",
            not_anywhere.len()
        )),
        "{out}"
    );
    let (code, out, err) = run(
        dir.path(),
        &["status", "updates", "--all", "--state", &state],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("\n{hidden} ")), "{out}");
    assert!(!out.contains("more bulletins"), "{out}");
    let (code, _, err) = run(
        dir.path(),
        &[
            "status",
            "updates",
            "--state",
            &state,
            "--collection",
            "MS Security Update",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("no collection `MS Security Update`"), "{err}");
}
