//! Crash safety of apply, with the real binary: SIGKILL at 20 random
//! moments of applying a large plan, on SQLite and on PostgreSQL. After each
//! kill the state must hold exactly the old objects or exactly the new ones;
//! a final run converges.

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{patchops, Lcg};

const OBJECTS: usize = 3_000;
const KILLS: usize = 20;

fn cmd(dir: &std::path::Path, state: &str) -> Command {
    let mut c = patchops();
    c.current_dir(dir).env("PATCHOPS_STATE", state);
    c
}

/// kind/name → hash, as the state holds them, and the serial.
fn snapshot(dir: &std::path::Path, state: &str) -> (BTreeMap<String, String>, i64) {
    let out = cmd(dir, state)
        .args(["state", "list", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let objects: BTreeMap<String, String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                format!(
                    "{}/{}",
                    r["kind"].as_str().unwrap(),
                    r["name"].as_str().unwrap()
                ),
                r["hash"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let history = cmd(dir, state)
        .args(["history", "--format", "json", "--limit", "1"])
        .output()
        .unwrap();
    let rows: Value = serde_json::from_slice(&history.stdout).unwrap();
    let serial = rows
        .as_array()
        .unwrap()
        .first()
        .map_or(0, |r| r["serial"].as_i64().unwrap());
    (objects, serial)
}

fn kill_during_apply(state: &str, dir: &std::path::Path) {
    let mut rng = Lcg::from_env("PATCHOPS_FAULT_SEED");

    // Two versions of the site that differ in every collection.
    let versions = [dir.join("a"), dir.join("b")];
    patchops::fixtures::generate_site(&versions[0], OBJECTS, "(first)").unwrap();
    patchops::fixtures::generate_site(&versions[1], OBJECTS, "(second)").unwrap();

    // Each version applied uninterrupted into scratch stores: what "old"
    // and "new" look like, and how long an apply takes.
    let mut expected = Vec::new();
    let mut full_ms = 50;
    for (i, version) in versions.iter().enumerate() {
        let scratch = format!("sqlite://{}", dir.join(format!("scratch-{i}.db")).display());
        let start = Instant::now();
        let full = cmd(dir, &scratch)
            .args([
                "apply",
                version.file_name().unwrap().to_str().unwrap(),
                "--auto-approve",
            ])
            .output()
            .unwrap();
        assert!(
            full.status.success(),
            "{}",
            String::from_utf8_lossy(&full.stderr)
        );
        full_ms = full_ms.max(start.elapsed().as_millis() as u64);
        expected.push(snapshot(dir, &scratch).0);
    }
    assert_ne!(expected[0], expected[1]);

    let mut applied_kills = 0;
    let mut last_serial = 0;
    for i in 0..KILLS {
        let target = &versions[i % 2];
        let mut child = cmd(dir, state)
            .args([
                "apply",
                target.file_name().unwrap().to_str().unwrap(),
                "--auto-approve",
                "--lock-timeout",
                "30s",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = rng.next() % (full_ms * 3 / 2);
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.success() {
            applied_kills += 1;
        }
        let (objects, serial) = snapshot(dir, state);
        let consistent = objects.is_empty() || objects == expected[0] || objects == expected[1];
        assert!(
            consistent,
            "kill {i} after {delay} ms left {} objects that are neither version",
            objects.len()
        );
        assert!(serial >= last_serial, "the serial never goes back");
        assert_eq!(
            objects.is_empty(),
            serial == 0,
            "objects exist exactly when something was applied"
        );
        last_serial = serial;
    }
    eprintln!("{applied_kills} of {KILLS} applies finished before their kill");

    // Converge: apply b to the end, then nothing is left to do.
    let out = cmd(dir, state)
        .args(["apply", "b", "--auto-approve", "--lock-timeout", "30s"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan = cmd(dir, state)
        .args(["plan", "b", "--detailed-exitcode"])
        .output()
        .unwrap();
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&plan.stdout)
    );
    let (objects, _) = snapshot(dir, state);
    assert_eq!(objects.len(), OBJECTS);
}

#[test]
fn sigkill_during_apply_on_sqlite_leaves_old_or_new() {
    let dir = tempfile::tempdir().unwrap();
    let state = format!("sqlite://{}", dir.path().join("state.db").display());
    kill_during_apply(&state, dir.path());
}

#[test]
fn sigkill_during_apply_on_postgres_leaves_old_or_new() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (state, _dropper) = rt.block_on(patchops::store::testing::fresh_postgres_url());
    kill_during_apply(&state, dir.path());
}
