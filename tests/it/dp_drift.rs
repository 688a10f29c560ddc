//! A byte flipped in a DP file without changing its size, through the real
//! binary: seen by a plain `plan` (the file's stat fingerprint changed),
//! repaired by a plain `apply`, reported by `server --drift detect` and
//! corrected by `server --drift correct`; a library without fingerprints
//! (published by an older patchops) is verified by hash once.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{self, patchops, Proc, Site};
use serde_json::Value;

/// The files of a DP's library, sorted.
fn blobs(dir: &Path, dp: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for shard in fs::read_dir(dir.join(format!("dp/{dp}/files"))).expect("files") {
        for f in fs::read_dir(shard.expect("shard").path()).expect("shard") {
            out.push(f.expect("file").path());
        }
    }
    out.sort();
    out
}

/// Flips one byte of `path` in place: same size, new mode and mtime.
fn flip_a_byte(path: &Path) -> Vec<u8> {
    let original = fs::read(path).expect("read");
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut bytes = original.clone();
    bytes[0] ^= 0x20;
    fs::write(path, &bytes).expect("write");
    original
}

fn planned_distribution(site: &Site) -> Vec<Value> {
    let plan: Value =
        serde_json::from_str(&site.ok(&["plan", "site", "--format", "json"])).expect("json");
    plan["distribution"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_same_size_byte_flip_is_seen_by_plan_and_repaired_by_apply() {
    let site = Site::new();
    let dir = site.dir();
    site.ok(&["apply", "site", "--auto-approve"]);
    assert!(
        planned_distribution(&site).is_empty(),
        "nothing to distribute"
    );
    let blob = blobs(dir, "dp-hq")[0].clone();
    let original = flip_a_byte(&blob);

    let distribution = planned_distribution(&site);
    assert!(
        distribution
            .iter()
            .any(|d| d["dp"] == "dp-hq" && d["reason"] == "missing or damaged files"),
        "a plain plan sees the flipped byte: {distribution:?}"
    );
    // The cheap `dp validate` sees it too.
    let out = site.run(&["dp", "validate", "dp-hq", "--quick"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    site.ok(&["apply", "site", "--auto-approve"]);
    assert_eq!(fs::read(&blob).expect("read"), original, "copied again");
    assert!(
        planned_distribution(&site).is_empty(),
        "repaired and recorded"
    );
    assert!(site.ok(&["dp", "validate", "dp-hq"]).contains("ok"));
}

#[test]
fn a_library_without_fingerprints_is_verified_by_hash_once() {
    let site = Site::new();
    let dir = site.dir();
    site.ok(&["apply", "site", "--auto-approve"]);
    let index = dir.join("dp/dp-hq/fingerprints.json");
    // A library published before fingerprints were recorded.
    fs::remove_file(&index).expect("remove the index");
    assert!(
        planned_distribution(&site).is_empty(),
        "right bytes: no drift"
    );
    assert!(index.is_file(), "the verified files were recorded");

    // Unrecorded and corrupt: the hash finds it.
    fs::remove_file(&index).expect("remove the index");
    let original = flip_a_byte(&blobs(dir, "dp-hq")[0]);
    assert!(!planned_distribution(&site).is_empty(), "the hash sees it");
    site.ok(&["apply", "site", "--auto-approve"]);
    assert_eq!(fs::read(&blobs(dir, "dp-hq")[0]).expect("read"), original);
}

/// A running `patchops server` (killed on drop, by its [`Proc`]).
struct Server {
    proc: Proc,
}

impl Server {
    fn start(site: &Site, drift: &str) -> Server {
        let dir = site.dir();
        let mut cmd = patchops();
        cmd.current_dir(dir)
            .args(["server", "--state", site.state(), "--listen", "127.0.0.1:0"])
            .args(["--enroll-secret-from", "env:TEST_ENROLL"])
            .args(["--manifests", "site", "--interval", "1s", "--drift", drift])
            .env("TEST_ENROLL", "enroll-secret-for-tests");
        let proc = Proc::start(cmd, &dir.join(format!("server-{drift}.log")));
        Server { proc }
    }

    async fn reconcile_status(&self) -> String {
        let client = support::http_client(Duration::from_secs(10));
        let Ok(response) = client.get(self.proc.url("/healthz")).send().await else {
            return String::new();
        };
        let bytes = response.bytes().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        body["reconcile"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Polls `check` every 100 ms until it holds; panics with the log after
    /// `within`.
    async fn wait_until<F, Fut>(&self, within: Duration, what: &str, check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        support::wait_until(within, what, || self.proc.log(), check).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_drift_detect_reports_a_same_size_byte_flip() {
    let site = Site::new();
    let dir = site.dir();
    site.ok(&["apply", "site", "--auto-approve"]);
    let server = Server::start(&site, "detect");
    server
        .wait_until(Duration::from_secs(30), "no drift at first", || async {
            server.reconcile_status().await == "ok"
        })
        .await;
    let blob = blobs(dir, "dp-hq")[0].clone();
    let flipped = {
        flip_a_byte(&blob);
        fs::read(&blob).expect("read")
    };
    server
        .wait_until(Duration::from_secs(30), "drift reported", || async {
            server.reconcile_status().await == "drift"
        })
        .await;
    assert_eq!(fs::read(&blob).expect("read"), flipped, "detect only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_drift_correct_repairs_a_same_size_byte_flip() {
    let site = Site::new();
    let dir = site.dir();
    let server = Server::start(&site, "correct");
    server
        .wait_until(Duration::from_secs(30), "the first apply", || async {
            server.reconcile_status().await == "ok" && dir.join("dp/dp-hq/files").is_dir()
        })
        .await;
    let blob = blobs(dir, "dp-hq")[0].clone();
    let original = flip_a_byte(&blob);
    server
        .wait_until(
            Duration::from_secs(30),
            "the flipped file copied again",
            || async { fs::read(&blob).is_ok_and(|bytes| bytes == original) },
        )
        .await;
}
