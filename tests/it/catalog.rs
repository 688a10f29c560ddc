//! `patchops catalog` on the real fixtures and on broken catalogs.
//!
//! Counts are checked against an independent reader (Python's
//! `xml.etree.ElementTree`). Every directory under `tests/bad-catalogs/`
//! holds one broken `catalog.xml`; `patchops catalog inspect` must print
//! exactly its `expected.txt` (exit code, stderr, the counts line and the
//! problems). `UPDATE_EXPECT=1 cargo test --test catalog` rewrites the
//! expectations; review the diff before committing it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{patchops, repo};
use sha2::Digest;

/// Runs with a time limit; output goes through files, since a catalog's
/// JSON is larger than a pipe's buffer.
fn run_with_limit(mut cmd: Command, limit: Duration) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = cmd
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("binary runs");
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("command did not finish within {limit:?}: {cmd:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::process::Output {
        status,
        stdout: fs::read(&out_path).unwrap(),
        stderr: fs::read(&err_path).unwrap(),
    }
}

/// The fixtures, vendored from the project's shared fixtures
/// (`../shared/fixtures/`, see `tests/fixtures/SOURCES.md`) so that a
/// checkout alone runs every test.
fn fixtures() -> PathBuf {
    repo().join("tests/fixtures")
}

/// Where the project keeps its shared fixtures: `PATCHOPS_SHARED_FIXTURES`,
/// else `shared/fixtures` beside the checkout or beside the directory that
/// holds it (a git worktree under `wt/`).
fn shared_fixtures() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PATCHOPS_SHARED_FIXTURES") {
        return Some(PathBuf::from(dir));
    }
    let root = repo();
    ["../shared/fixtures", "../../shared/fixtures"]
        .iter()
        .map(|rel| root.join(rel))
        .find(|dir| dir.is_dir())
}

/// The sha256 that `tests/fixtures/SOURCES.md` records for each fixture
/// (its `## name` section's `| sha256 |` row).
fn recorded_digests() -> BTreeMap<String, String> {
    let text = fs::read_to_string(fixtures().join("SOURCES.md")).expect("SOURCES.md");
    let mut digests = BTreeMap::new();
    let mut section = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("## ") {
            section = Some(name.trim().to_string());
        } else if let (Some(name), Some(row)) = (&section, line.strip_prefix("| sha256 |")) {
            let digest = row.trim().trim_end_matches('|').trim().trim_matches('`');
            digests.insert(name.clone(), digest.to_string());
        }
    }
    digests
}

/// The vendored copies are the recorded files, whether or not the shared
/// fixtures are at hand: nothing here passes without checking.
#[test]
fn every_vendored_fixture_matches_its_recorded_digest() {
    let digests = recorded_digests();
    assert!(
        digests.contains_key("mssecure.xml"),
        "SOURCES.md records no sha256 for mssecure.xml: {digests:?}"
    );
    for (name, want) in &digests {
        let bytes = fs::read(fixtures().join(name)).unwrap_or_else(|e| {
            panic!("tests/fixtures/{name} (recorded in SOURCES.md) is missing: {e}")
        });
        let got = hex::encode(sha2::Sha256::digest(&bytes));
        assert_eq!(&got, want, "tests/fixtures/{name} is not the recorded file");
    }
}

#[test]
fn every_shared_fixture_is_vendored_unchanged() {
    let shared = shared_fixtures().unwrap_or_else(|| {
        panic!(
            "the shared fixtures are not found (shared/fixtures beside the checkout); \
             set PATCHOPS_SHARED_FIXTURES to their directory"
        )
    });
    let mut compared = 0;
    for entry in fs::read_dir(&shared).expect("shared fixtures") {
        let path = entry.expect("entry").path();
        let vendored = fixtures().join(path.file_name().expect("name"));
        assert_eq!(
            fs::read(&path).expect("shared fixture"),
            fs::read(&vendored).unwrap_or_default(),
            "{} must be vendored as {} (copy it)",
            path.display(),
            vendored.display()
        );
        compared += 1;
    }
    assert!(compared > 0, "{} is empty", shared.display());
}

fn fixture_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(fixtures())
        .expect("tests/fixtures exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("xml")))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no XML fixture found");
    files
}

fn inspect_json(file: &Path) -> serde_json::Value {
    let mut cmd = patchops();
    cmd.args(["catalog", "inspect"])
        .arg(file)
        .args(["--format", "json"]);
    let out = run_with_limit(cmd, Duration::from_secs(60));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// What Python's ElementTree finds, as JSON.
fn python(file: &Path, script: &str) -> serde_json::Value {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(file)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python printed JSON")
}

const COUNTS_PY: &str = r#"
import json, sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
if root.tag == "BulletinDatastore":
    bulletins = root.find("Bulletins").findall("Bulletin")
    patches = [p for b in bulletins for p in b.iter("Patch")]
    products = {p.get("ProductID").strip() for p in root.find("Products").findall("Product")}
    sps = {s.get("ServicePackID").strip() for s in root.find("ServicePacks").findall("ServicePack")}
else:
    bulletins = root.find("Updates").findall("Update")
    patches = [p for b in bulletins for p in b.findall("Patch")]
    products = {p.get("ProductID").strip() for p in root.find("Products").findall("Product")}
    sps = {s.get("ServicePackID").strip() for s in root.iter("ServicePack") if s.get("Name") is not None}
print(json.dumps({"bulletins": len(bulletins), "patches": len(patches),
                  "products": len(products), "servicePacks": len(sps)}))
"#;

#[test]
fn counts_match_an_independent_reader_on_every_fixture() {
    for file in fixture_files() {
        let ours = inspect_json(&file);
        let theirs = python(&file, COUNTS_PY);
        for key in ["bulletins", "patches", "products", "servicePacks"] {
            assert_eq!(
                ours["counts"][key],
                theirs[key],
                "{}: {key}",
                file.display()
            );
        }
        assert_eq!(ours["counts"]["badBulletins"], 0, "{}", file.display());
    }
}

fn mssecure() -> serde_json::Value {
    inspect_json(&fixtures().join("mssecure.xml"))
}

fn bulletin<'a>(doc: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    doc["catalog"]["bulletins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id)
        .unwrap_or_else(|| panic!("bulletin {id}"))
}

#[test]
fn fixture_header_and_every_bulletin_id_and_patch_name_agree_with_python() {
    let doc = mssecure();
    assert_eq!(doc["kind"], "security");
    assert_eq!(doc["dataVersion"], "1.0.1.148");
    assert_eq!(doc["lastUpdated"]["raw"], "10/04/2001");
    assert_eq!(doc["lastUpdated"]["date"], "2001-10-04");
    let theirs = python(
        &fixtures().join("mssecure.xml"),
        r#"
import json, sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
print(json.dumps([[b.get("BulletinID").strip().upper(), b.get("Title").strip(),
                   [p.get("PatchName").strip() for p in b.iter("Patch")]]
                  for b in root.find("Bulletins").findall("Bulletin")]))
"#,
    );
    let ours: Vec<serde_json::Value> = doc["catalog"]["bulletins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let names: Vec<_> = b["patches"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].clone())
                .collect();
            serde_json::json!([b["id"], b["title"], names])
        })
        .collect();
    assert_eq!(serde_json::Value::Array(ours), theirs);
}

#[test]
fn quirks_of_the_fixture_are_normalized() {
    let doc = mssecure();
    // Trailing spaces trimmed: titles, patch names, Q numbers, products.
    let ms98_001 = bulletin(&doc, "MS98-001");
    assert_eq!(
        ms98_001["title"],
        "Disabling Creation of Local Groups on a Domain by Non-Administrative Users"
    );
    // Empty Summary → null; dates raw and parsed.
    assert!(ms98_001["summary"].is_null());
    assert_eq!(ms98_001["datePosted"]["date"], "1998-06-01");
    // SBID="0" and SBID="" both mean no superseder.
    let p = &ms98_001["patches"][0];
    assert_eq!(p["name"], "CREATALS_x86.exe");
    assert!(p["supersededBy"].is_null());
    assert_eq!(p["rebootRequired"], true);
    // No FileChg/RegChg: unknown, check manually — never "installed".
    assert_eq!(p["detection"], "none");
    let ssl = &bulletin(&doc, "MS98-002")["patches"][0];
    assert!(ssl["supersededBy"].is_null());
    assert!(ssl["sqNumber"].is_null());
    assert_eq!(ssl["detection"], "both");
    assert_eq!(ssl["registry"][0]["valueName"], "Installed");
    assert_eq!(ssl["registry"][0]["expected"], "1");
    let ms98_006 = bulletin(&doc, "MS98-006");
    assert!(ms98_006["patches"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "ftpfix3i.exe"));
    // Q numbers trimmed and deduplicated (MS01-029 lists Q296139 three times).
    let q = bulletin(&doc, "MS01-029")["qNumbers"].as_array().unwrap();
    assert_eq!(q.iter().filter(|q| *q == "Q296139").count(), 1);
    let q = bulletin(&doc, "MS01-015")["qNumbers"].as_array().unwrap();
    assert!(q.iter().any(|q| q == "Q286045"));
    // The one unsupported bulletin.
    assert_eq!(bulletin(&doc, "MS99-008")["supported"], false);
    let unsupported = doc["catalog"]["bulletins"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["supported"] == false)
        .count();
    assert_eq!(unsupported, 1);
    // Products: trailing space trimmed, `na` → null, AvailableSP outside
    // AvailableSPs still counted.
    let products = &doc["catalog"]["products"];
    assert_eq!(
        products["99"]["name"],
        "FrontPage 97 Personal Web Server 1.0"
    );
    assert!(products["4"]["currentVersion"].is_null());
    assert_eq!(products["104"]["currentVersion"], "5,5,0,6330");
    assert!(!products["26"]["availableSps"]
        .as_array()
        .unwrap()
        .is_empty());
    // Duplicate ProductFamilyID: the first wins ("Office", not "Outlook").
    let families: Vec<String> = products
        .as_object()
        .unwrap()
        .values()
        .flat_map(|p| p["families"].as_array().unwrap().clone())
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    assert!(!families.iter().any(|f| f == "Outlook"));
    // Severity "NA" → null.
    assert!(ms98_001["severity"].is_null());
    // Literal newlines in attributes become spaces; &quot; is unescaped.
    let issue = bulletin(&doc, "MS98-005")["issue"].as_str().unwrap();
    assert!(!issue.contains('\n'));
    let issue = bulletin(&doc, "MS98-004")["issue"].as_str().unwrap();
    assert!(issue.contains("\"Microsoft DataShape Provider\""));
    // Non-ASCII survives.
    let summary = bulletin(&doc, "MS00-004")["summary"].as_str().unwrap();
    assert!(summary.contains("Microsoft® Windows NT 4.0"));
    // Duplicate IDs are warnings, not errors.
    let problems = doc["problems"].as_array().unwrap();
    assert!(problems
        .iter()
        .any(|p| p["field"] == "FileChange@FileChangeID"
            && p["message"].as_str().unwrap().contains("177")));
    assert!(problems.iter().all(|p| p["severity"] == "warning"));
    // Files resolve to their folder; size "v" and "na" → null.
    let files: Vec<&serde_json::Value> = doc["catalog"]["bulletins"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["patches"].as_array().unwrap())
        .flat_map(|p| p["files"].as_array().unwrap())
        .collect();
    assert!(files
        .iter()
        .all(|f| f["version"] != "na" && f["size"] != "na"));
    assert!(files.iter().any(|f| f["location"] == "%windir%\\system32"));
    // Superseded patches name their superseders.
    assert_eq!(bulletin(&doc, "MS98-004")["supersededBy"][0], "MS99-025");
}

#[test]
fn diff_of_a_catalog_with_itself_is_empty_and_edits_show_up() {
    let dir = tempfile::tempdir().unwrap();
    let text = fs::read_to_string(fixtures().join("mssecure.xml")).unwrap();
    let edited = text
        .replacen(
            "DateRevised=\"1999/03/24\"",
            "DateRevised=\"2001/10/05\"",
            1,
        )
        .replacen(
            "<Bulletin BulletinID=\"MS98-002\"",
            "<Bulletin BulletinID=\"MS01-051\"",
            1,
        );
    let new = dir.path().join("new.xml");
    fs::write(&new, edited).unwrap();
    let run = |a: &Path, b: &Path| {
        let mut cmd = patchops();
        cmd.args(["catalog", "diff"])
            .arg(a)
            .arg(b)
            .args(["--format", "json"]);
        let out = run_with_limit(cmd, Duration::from_secs(60));
        assert_eq!(out.status.code(), Some(0));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let old = fixtures().join("mssecure.xml");
    let same = run(&old, &old);
    assert_eq!(same["newBulletins"], serde_json::json!([]));
    assert_eq!(same["revised"], serde_json::json!([]));
    assert_eq!(same["removed"], serde_json::json!([]));
    let d = run(&old, &new);
    assert_eq!(d["newBulletins"], serde_json::json!(["MS01-051"]));
    assert_eq!(d["removed"], serde_json::json!(["MS98-002"]));
    assert_eq!(d["revised"][0]["id"], "MS98-001");
    assert_eq!(d["revised"][0]["changes"][0]["field"], "dateRevised");
    assert_eq!(d["revised"][0]["changes"][0]["new"], "2001/10/05");
}

/// stdout lines worth pinning: the counts line and the problems.
fn summary(stdout: &str) -> String {
    let mut out = String::new();
    let mut lines = stdout.lines();
    lines.next();
    if let Some(counts) = lines.next() {
        out.push_str(counts);
        out.push('\n');
    }
    let mut in_problems = false;
    for line in stdout.lines() {
        if line == "Problems:" {
            in_problems = true;
        } else if in_problems {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn bad_catalogs_fail_or_report_exactly_what_is_expected() {
    let root = repo().join("tests/bad-catalogs");
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut cases: Vec<_> = fs::read_dir(&root)
        .expect("tests/bad-catalogs exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 20,
        "the corpus has {} cases; it must keep at least 20",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let mut cmd = patchops();
        cmd.current_dir(case)
            .args(["catalog", "inspect", "catalog.xml"]);
        let out = run_with_limit(cmd, Duration::from_secs(20));
        let code = out.status.code().expect("exited normally, not by a signal");
        assert!(code == 0 || code == 1, "{}: exit {code}", case.display());
        let actual = format!(
            "exit: {code}\n{}{}",
            String::from_utf8_lossy(&out.stderr),
            summary(&String::from_utf8_lossy(&out.stdout))
        );
        let expected_path = case.join("expected.txt");
        if update {
            fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "--- {}\nexpected:\n{expected}\nactual:\n{actual}",
                case.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_hundred_megabytes_of_garbage_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.xml");
    // Deterministic pseudo-random bytes (xorshift), 100 MiB.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut data = vec![0u8; 100 << 20];
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    fs::write(&path, &data).unwrap();
    let start = std::time::Instant::now();
    let mut cmd = patchops();
    cmd.args(["catalog", "inspect"]).arg(&path);
    let out = run_with_limit(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("garbage.xml: line 1, column "), "{stderr}");
    assert!(stderr.contains("not UTF-8"), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(10));

    // 100 MiB of well-formed-looking but wrong text (valid UTF-8).
    let text: Vec<u8> = data.iter().map(|b| b'a' + (b % 26)).collect();
    fs::write(&path, &text).unwrap();
    let mut cmd = patchops();
    cmd.args(["catalog", "inspect"]).arg(&path);
    let out = run_with_limit(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("text before the root element"), "{stderr}");
}
