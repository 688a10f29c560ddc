//! Package content on distribution points, through the real binary: apply
//! distributes the example's packages; drift is reported by `dp validate`
//! and `plan` and repaired by `apply`; unsafe sources are refused.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::support::{text, Site};
use serde_json::Value;

/// Files of the library of a DP, by content hash.
fn blobs(site: &Site, dp: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for shard in fs::read_dir(site.path(&format!("dp/{dp}/files"))).unwrap() {
        for f in fs::read_dir(shard.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out.sort();
    out
}

#[test]
fn apply_distributes_content_in_priority_order_and_validates_clean() {
    let site = Site::new();
    let plan: Value =
        serde_json::from_str(&site.ok(&["plan", "site", "--format", "json"])).unwrap();
    let steps: Vec<(String, String, u64)> = plan["distribution"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["package"].as_str().unwrap().to_string(),
                d["dp"].as_str().unwrap().to_string(),
                d["files_to_copy"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        vec![
            // README.txt and the example's invcif.xml.
            ("MS Office Updates".into(), "dp-branch".into(), 2),
            ("MS Office Updates".into(), "dp-hq".into(), 2),
            // README.txt, scan.cmd and the example's mssecure.xml.
            ("MS Security Updates".into(), "dp-branch".into(), 3),
            ("MS Security Updates".into(), "dp-hq".into(), 3),
        ]
    );
    let out = site.ok(&["apply", "site", "--auto-approve", "--color", "never"]);
    assert!(
        out.contains("Distributed \"MS Security Updates\" to dp-hq: 3 files"),
        "{out}"
    );
    // Single instance: the two packages share no files, five files in all.
    assert_eq!(blobs(&site, "dp-hq").len(), 5);
    let validated = site.ok(&["dp", "validate"]);
    assert!(
        validated.contains("dp-hq (dp/dp-hq): ok")
            && validated.contains("dp-branch (dp/dp-branch): ok"),
        "{validated}"
    );
    // Content on a DP is read-only.
    for blob in blobs(&site, "dp-hq") {
        assert_eq!(
            fs::metadata(&blob).unwrap().permissions().mode() & 0o777,
            0o444
        );
    }
    let again = site.run(&["plan", "site", "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));
}

#[test]
fn higher_priority_packages_are_sent_first() {
    let site = Site::new();
    let path = site.path("site/security/package.yaml");
    let yaml = fs::read_to_string(&path).unwrap();
    fs::write(
        &path,
        yaml.replacen("priority: medium", "priority: high", 1),
    )
    .unwrap();
    let plan: Value =
        serde_json::from_str(&site.ok(&["plan", "site", "--format", "json"])).unwrap();
    let order: Vec<&str> = plan["distribution"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["package"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        vec![
            "MS Security Updates",
            "MS Security Updates",
            "MS Office Updates",
            "MS Office Updates"
        ]
    );
}

#[test]
fn a_source_change_is_a_new_package_version() {
    let site = Site::new();
    site.ok(&["apply", "site", "--auto-approve"]);
    fs::write(
        site.path("site/packages/security-inventory-tool/README.txt"),
        "The Security Update Inventory Tool, revised.\n",
    )
    .unwrap();
    fs::set_permissions(
        site.path("site/packages/security-inventory-tool/README.txt"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let plan: Value =
        serde_json::from_str(&site.ok(&["plan", "site", "--format", "json"])).unwrap();
    let changed: Vec<&str> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(changed, vec!["MS Security Updates"]);
    assert!(plan["changes"][0]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["path"] == "spec.content.version"));
    let reasons: Vec<&str> = plan["distribution"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, vec!["new version", "new version"]);
    site.ok(&["apply", "site", "--auto-approve"]);
    assert_eq!(
        blobs(&site, "dp-hq").len(),
        // 5 files of the first versions (the old README.txt among them)
        // and the new README.txt.
        6,
        "the old version's files stay for their grace period"
    );
    assert!(site.ok(&["dp", "validate", "dp-hq"]).contains("ok"));
}

#[test]
fn drift_is_reported_and_repaired() {
    let site = Site::new();
    site.ok(&["apply", "site", "--auto-approve"]);
    let blobs = blobs(&site, "dp-hq");
    // A deleted file, a flipped byte (same size), an extra file.
    fs::remove_file(&blobs[0]).unwrap();
    fs::set_permissions(&blobs[1], fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = fs::read(&blobs[1]).unwrap();
    bytes[0] ^= 0x20;
    fs::write(&blobs[1], &bytes).unwrap();
    fs::create_dir_all(site.path("dp/dp-hq/files/00")).unwrap();
    fs::write(site.path("dp/dp-hq/files/00/0000"), "stray").unwrap();

    let report = site.run(&["dp", "validate", "dp-hq", "--format", "json"]);
    assert_eq!(report.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    let problems: Vec<&str> = report[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["problem"].as_str().unwrap())
        .collect();
    assert_eq!(problems, vec!["missing", "corrupt", "extra"]);

    // A cheap plan sees the missing file and (by its fingerprint) the flipped
    // byte; a deep one finds the flipped byte by hash too, and counts each
    // file once.
    let cheap: Value =
        serde_json::from_str(&site.ok(&["plan", "site", "--format", "json"])).unwrap();
    let cheap = cheap["distribution"].as_array().unwrap().clone();
    assert_eq!(cheap.len(), 1);
    assert_eq!(cheap[0]["reason"], "missing or damaged files");
    assert_eq!(cheap[0]["files_to_copy"], 2, "{cheap:?}");
    site.ok(&["plan", "site", "--validate", "--out", "repair.json"]);
    let deep: Value =
        serde_json::from_str(&fs::read_to_string(site.path("repair.json")).unwrap()).unwrap();
    let deep = deep["distribution"].as_array().unwrap();
    assert_eq!(deep.len(), 1);
    assert_eq!(
        (&deep[0]["reason"], &deep[0]["files_to_copy"]),
        (&cheap[0]["reason"], &cheap[0]["files_to_copy"]),
        "{deep:?}"
    );
    site.ok(&["apply", "repair.json"]);
    assert!(site
        .ok(&["dp", "validate", "dp-hq"])
        .contains("dp-hq (dp/dp-hq): ok"));
}

#[test]
fn unsafe_sources_are_refused_with_their_path() {
    let site = Site::new();
    let source = site.path("site/packages/security-inventory-tool/scan.cmd");
    fs::set_permissions(&source, fs::Permissions::from_mode(0o666)).unwrap();
    let out = site.run(&["plan", "site", "--color", "never"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("package `MS Security Updates`: unsafe or unreadable source")
            && err.contains("scan.cmd: group- or world-writable"),
        "{err}"
    );
    fs::set_permissions(&source, fs::Permissions::from_mode(0o644)).unwrap();
    // Inside the repository, outside the package's source.
    std::os::unix::fs::symlink(
        "../../site.yaml",
        site.path("site/packages/security-inventory-tool/x.exe"),
    )
    .unwrap();
    let err = text(&site.run(&["plan", "site", "--color", "never"]).stderr);
    assert!(
        err.contains("x.exe: symbolic link leads outside the package source"),
        "{err}"
    );
    // Out of the repository altogether: refused when the manifests are read.
    fs::remove_file(site.path("site/packages/security-inventory-tool/x.exe")).unwrap();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("x.exe"), "x").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("x.exe"),
        site.path("site/packages/security-inventory-tool/x.exe"),
    )
    .unwrap();
    let out = text(&site.run(&["plan", "site", "--color", "never"]).stdout);
    assert!(
        out.contains("symbolic link points outside the manifest directory"),
        "{out}"
    );
}

#[test]
fn a_hard_linked_file_in_a_package_source_is_refused() {
    let site = Site::new();
    let source = site.path("site/packages/security-inventory-tool");
    // Its other name is outside the package source (here the site's own
    // manifest): whoever may write that name changes the content.
    fs::hard_link(site.path("site/site.yaml"), source.join("x.exe")).unwrap();
    let out = site.run(&["plan", "site", "--color", "never"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("x.exe: hard link with 1 of its 2 names outside the package source"),
        "{err}"
    );
    // Both names inside the source: content like any other file.
    fs::remove_file(source.join("x.exe")).unwrap();
    fs::hard_link(source.join("scan.cmd"), source.join("scan-copy.cmd")).unwrap();
    site.ok(&["plan", "site", "--color", "never"]);
}
