//! Distribution under faults, with the real binary: SIGKILL at 20 random
//! moments while content is copied, and a write error in the middle of a
//! copy. A DP must never show half a version: its current pointer names a
//! version whose every file is there and intact, and a later apply
//! converges.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{patchops, Lcg};
use serde_json::Value;

const SITE: &str = "apiVersion: patchops/v1\nkind: Site\nmetadata: {name: LAB}\nspec: {siteCode: LAB, siteServer: sms01}\n---\napiVersion: patchops/v1\nkind: DistributionPoint\nmetadata: {name: dp-hq}\nspec: {path: dp/dp-hq, url: 'http://dp-hq:8080'}\n---\napiVersion: patchops/v1\nkind: Package\nmetadata: {name: Big}\nspec:\n  source: content\n  priority: high\n  distributionPoints: [dp-hq]\n  programs: [{name: Install, commandLine: setup.exe}]\n";

/// A site with one package of `files` files of `size` bytes; `version`
/// changes every file.
fn write_site(dir: &Path, files: usize, size: usize, version: u8) {
    fs::create_dir_all(dir.join("content")).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(dir.join("content"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(dir.join("site.yaml"), SITE).unwrap();
    for i in 0..files {
        let mut bytes = vec![version; size];
        bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let path = dir.join("content").join(format!("file{i:04}.bin"));
        fs::write(&path, bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    }
}

fn cmd(dir: &Path) -> Command {
    let mut c = patchops();
    c.current_dir(dir).env(
        "PATCHOPS_STATE",
        format!("sqlite://{}", dir.join("state.db").display()),
    );
    c
}

/// Deep validation of the DP; extra files (copies of a version that was
/// never made current) are allowed, nothing else.
fn assert_no_half_version(dir: &Path, context: &str) {
    if !dir.join("dp/dp-hq/.patchops-dp").exists() {
        return;
    }
    let out = cmd(dir)
        .args(["dp", "validate", "--format", "json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{context}: {}", String::from_utf8_lossy(&out.stderr)));
    for finding in report[0]["findings"].as_array().unwrap() {
        assert_eq!(finding["problem"], "extra", "{context}: {finding}");
    }
}

#[test]
fn sigkill_during_distribution_never_shows_half_a_version() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut rng = Lcg::from_env("PATCHOPS_FAULT_SEED");
    write_site(root, 64, 256 * 1024, 1);
    let start = Instant::now();
    let first = cmd(root)
        .args(["apply", ".", "--auto-approve"])
        .output()
        .unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let full_ms = (start.elapsed().as_millis() as u64).max(50);

    for i in 0..20u8 {
        write_site(root, 64, 256 * 1024, 2 + i % 2);
        let mut child = cmd(root)
            .args(["apply", ".", "--auto-approve", "--lock-timeout", "30s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = rng.next() % (full_ms * 3 / 2);
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
        assert_no_half_version(root, &format!("kill {i} after {delay} ms"));
    }
    let out = cmd(root)
        .args(["apply", ".", "--auto-approve", "--lock-timeout", "30s"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let clean = cmd(root).args(["dp", "validate"]).output().unwrap();
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );
    let plan = cmd(root)
        .args(["plan", ".", "--detailed-exitcode"])
        .output()
        .unwrap();
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&plan.stdout)
    );
}

#[test]
fn a_write_error_mid_copy_keeps_the_previous_version() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_site(root, 4, 64 * 1024, 1);
    let first = cmd(root)
        .args(["apply", ".", "--auto-approve"])
        .output()
        .unwrap();
    assert!(first.status.success());
    let current = fs::read_dir(root.join("dp/dp-hq/packages"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("current");
    let before = fs::read_to_string(&current).unwrap();

    // The new version has a file larger than the process may write: the
    // copy fails half-way, as on a full disk.
    write_site(root, 4, 64 * 1024, 2);
    let big = root.join("content/big.bin");
    fs::write(&big, vec![7u8; 4 * 1024 * 1024]).unwrap();
    fs::set_permissions(&big, fs::Permissions::from_mode(0o644)).unwrap();
    let mut apply = cmd(root);
    apply.args(["apply", ".", "--auto-approve", "--color", "never"]);
    // SAFETY: between fork and exec only async-signal-safe calls: signal and setrlimit.
    unsafe {
        apply.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 1024 * 1024,
                rlim_max: 1024 * 1024,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = apply.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("distributing `Big` to dp-hq") && err.contains("File too large"),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(&current).unwrap(),
        before,
        "the previous version is still current"
    );
    assert_no_half_version(root, "after the write error");
    assert_eq!(
        fs::read_dir(root.join("dp/dp-hq/tmp")).unwrap().count(),
        0,
        "no partial copy left behind"
    );

    // Without the limit, the next apply converges.
    let out = cmd(root)
        .args(["apply", ".", "--auto-approve"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(fs::read_to_string(&current).unwrap(), before);
    assert!(cmd(root)
        .args(["dp", "validate"])
        .output()
        .unwrap()
        .status
        .success());
}

/// A distribution that fails half-way leaves files no version refers to.
/// When the manifests then go back to the version the DP holds, no version
/// is copied there: the plan still says the DP is to be cleaned up, and the
/// apply collects the files.
#[test]
fn an_interrupted_distribution_is_cleaned_up_when_nothing_else_is_copied() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_site(root, 4, 64 * 1024, 1);
    let first = cmd(root)
        .args(["apply", ".", "--auto-approve"])
        .output()
        .unwrap();
    assert!(first.status.success());

    // Version 2 is planned, then one of its files goes before the apply:
    // the other three are copied, the version is never made current.
    write_site(root, 4, 64 * 1024, 2);
    let saved = cmd(root)
        .args(["plan", ".", "--out", "v2.plan.json"])
        .output()
        .unwrap();
    assert!(saved.status.success());
    fs::remove_file(root.join("content/file0003.bin")).unwrap();
    let failed = cmd(root).args(["apply", "v2.plan.json"]).output().unwrap();
    assert_eq!(
        failed.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
    let left = cmd(root).args(["dp", "validate"]).output().unwrap();
    let left = String::from_utf8_lossy(&left.stdout).to_string();
    assert_eq!(left.matches("extra: files/").count(), 3, "{left}");

    // Back to version 1, which is current on the DP: nothing to copy.
    write_site(root, 4, 64 * 1024, 1);
    let plan = cmd(root)
        .args(["plan", ".", "--format", "json"])
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(json["distribution"], serde_json::json!([]), "{json}");
    assert_eq!(json["cleanup"][0]["dp"], "dp-hq", "{json}");
    assert_eq!(json["cleanup"][0]["reason"], "interrupted distribution");
    let human = cmd(root)
        .args(["plan", ".", "--color", "never"])
        .output()
        .unwrap();
    let human = String::from_utf8_lossy(&human.stdout).to_string();
    assert!(
        human.contains("Distribution points to clean up:")
            && human.contains("~ dp-hq: interrupted distribution"),
        "{human}"
    );

    let out = cmd(root)
        .args(["apply", ".", "--auto-approve"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let clean = cmd(root).args(["dp", "validate"]).output().unwrap();
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );
    let again = cmd(root)
        .args(["plan", ".", "--detailed-exitcode"])
        .output()
        .unwrap();
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
}

/// A file someone put in the library that no version refers to: the cheap
/// plan does not look for it, `plan --validate` finds it and
/// `apply --validate` removes it.
#[test]
fn a_stray_file_is_found_and_removed_by_a_validating_apply() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_site(root, 2, 4096, 1);
    assert!(cmd(root)
        .args(["apply", ".", "--auto-approve"])
        .output()
        .unwrap()
        .status
        .success());
    let name = "ab".repeat(32);
    let stray = root.join("dp/dp-hq/files/ab").join(&name);
    fs::create_dir_all(stray.parent().unwrap()).unwrap();
    fs::write(&stray, b"not published").unwrap();

    let cheap = cmd(root)
        .args(["plan", ".", "--detailed-exitcode"])
        .output()
        .unwrap();
    assert_eq!(cheap.status.code(), Some(0));
    let deep = cmd(root)
        .args(["plan", ".", "--validate", "--format", "json"])
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&deep.stdout).unwrap();
    assert_eq!(
        json["cleanup"][0]["reason"], "files no version refers to",
        "{json}"
    );
    let validate = cmd(root).args(["dp", "validate"]).output().unwrap();
    let told = String::from_utf8_lossy(&validate.stdout).to_string();
    assert!(told.contains(&format!("extra: files/ab/{name}")), "{told}");
    assert!(told.contains("`patchops apply --validate`"), "{told}");

    let out = cmd(root)
        .args(["apply", ".", "--auto-approve", "--validate"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stray.exists(), "the stray file is collected");
    assert!(cmd(root)
        .args(["dp", "validate"])
        .output()
        .unwrap()
        .status
        .success());
}
