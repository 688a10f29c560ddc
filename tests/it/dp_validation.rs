//! Scheduled deep content validation of distribution points
//! (`DistributionPoint.spec.validation`), through the real binary and the
//! real server: a file whose bytes rotted while its stat fingerprint stayed
//! the one recorded (the cheap check of every plan cannot see it) is found
//! by the leader's validation, stored, shown by `status dp`, `status site`
//! and `/metrics`; `--drift detect` only reports it, `--drift correct`
//! copies it again; `apply --validate` repairs it from the CLI; a follower
//! validates nothing until it leads (on PostgreSQL).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{self, copy_dir, patchops, Proc};
use serde_json::{json, Value};
use tempfile::TempDir;

/// The example site, dp-hq validated every second and dp-branch never.
fn example_site() -> TempDir {
    let dir = TempDir::new().expect("tmp");
    let site = dir.path().join("site");
    copy_dir(&support::repo().join("examples/site"), &site);
    let dps = site.join("distribution-points.yaml");
    let text = fs::read_to_string(&dps)
        .expect("dps")
        .replace(
            "  boundaries: [10.1.0.0/16]\n",
            "  boundaries: [10.1.0.0/16]\n  validation: {every: 1s}\n",
        )
        .replace(
            "  maxConcurrentTransfers: 2\n",
            "  maxConcurrentTransfers: 2\n  validation: {enabled: false}\n",
        );
    assert_eq!(text.matches("validation:").count(), 2, "{text}");
    fs::write(&dps, text).expect("write");
    dir
}

fn sqlite(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("state.db").display())
}

fn run(dir: &Path, state: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = patchops();
    cmd.current_dir(dir).env("PATCHOPS_STATE", state).args(args);
    let out = support::run_with_limit(cmd, Duration::from_secs(120));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run_ok(dir: &Path, state: &str, args: &[&str]) -> String {
    let (code, stdout, stderr) = run(dir, state, args);
    assert_eq!(code, 0, "{args:?}:\n{stdout}{stderr}");
    stdout
}

fn dp_status(dir: &Path, state: &str, dp: &str) -> Value {
    serde_json::from_str(&run_ok(
        dir,
        state,
        &["status", "dp", dp, "--format", "json"],
    ))
    .expect("json")
}

fn planned_distribution(dir: &Path, state: &str, validate: bool) -> Vec<Value> {
    let mut args = vec!["plan", "site", "--format", "json"];
    if validate {
        args.push("--validate");
    }
    let plan: Value = serde_json::from_str(&run_ok(dir, state, &args)).expect("json");
    plan["distribution"].as_array().cloned().unwrap_or_default()
}

/// The largest file of a DP's library (a package's content, not an empty
/// one).
fn a_blob(dir: &Path, dp: &str) -> PathBuf {
    let mut files = Vec::new();
    for shard in fs::read_dir(dir.join(format!("dp/{dp}/files"))).expect("files") {
        for f in fs::read_dir(shard.expect("shard").path()).expect("shard") {
            let path = f.expect("file").path();
            files.push((fs::metadata(&path).expect("stat").len(), path));
        }
    }
    files.sort();
    files.pop().expect("a file").1
}

/// Changes a DP file's bytes (same size) and records its new stat as the
/// published fingerprint: bit rot under an unchanged inode, which only a
/// deep validation sees (no user can set a file's ctime back, so the
/// fingerprint index is what the test rewrites). Returns the original
/// bytes.
fn rot(blob: &Path) -> Vec<u8> {
    let original = fs::read(blob).expect("read");
    let mode_before = fs::metadata(blob).expect("stat").mode();
    fs::set_permissions(blob, fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut bytes = original.clone();
    bytes[0] ^= 0x20;
    fs::write(blob, &bytes).expect("write");
    fs::set_permissions(blob, fs::Permissions::from_mode(mode_before & 0o777)).expect("chmod");
    let library = blob.parent().and_then(Path::parent).and_then(Path::parent);
    let index_path = library.expect("library").join("fingerprints.json");
    let mut index: Value =
        serde_json::from_slice(&fs::read(&index_path).expect("index")).expect("json");
    let meta = fs::symlink_metadata(blob).expect("stat");
    let name = blob
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        index["files"].get(&name).is_some(),
        "recorded when published"
    );
    index["files"][&name] = json!({
        "size": meta.len(),
        "mtime_ns": meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        "ctime_ns": meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        "mode": meta.mode(),
        "inode": meta.ino(),
        "device": meta.dev(),
    });
    fs::write(&index_path, index.to_string()).expect("write index");
    original
}

/// A running `patchops server --manifests site` (killed on drop, by its
/// [`Proc`]).
struct Server {
    proc: Proc,
}

impl Server {
    fn start(dir: &Path, state: &str, drift: &str, name: &str) -> Server {
        let mut cmd = patchops();
        cmd.current_dir(dir)
            .args(["server", "--state", state, "--listen", "127.0.0.1:0"])
            .args(["--enroll-secret-from", "env:TEST_ENROLL"])
            .args(["--manifests", "site", "--interval", "1s", "--drift", drift])
            .env("TEST_ENROLL", "enroll-secret-for-tests");
        let proc = Proc::start(cmd, &dir.join(format!("server-{name}.log")));
        Server { proc }
    }

    /// The server's log, without terminal colours.
    fn log(&self) -> String {
        let text = self.proc.log();
        let mut out = String::with_capacity(text.len());
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    async fn get(&self, path: &str) -> String {
        let client = support::http_client(Duration::from_secs(10));
        match client.get(self.proc.url(path)).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    async fn leads(&self) -> bool {
        let health: Value = serde_json::from_str(&self.get("/healthz").await).unwrap_or_default();
        health["leader"] == true
    }

    fn kill(&mut self) {
        self.proc.kill();
    }
}

/// Polls `check` until it holds; panics with the servers' logs after
/// `within`.
async fn wait_until<F, Fut>(within: Duration, what: &str, servers: &[&Server], check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let logs = || {
        servers
            .iter()
            .map(|s| s.log())
            .collect::<Vec<_>>()
            .join("\n-----\n")
    };
    support::wait_until(within, what, logs, check).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_validation_finds_rot_the_cheap_check_misses_and_apply_validate_repairs_it() {
    let site = example_site();
    let dir = site.path();
    let state = sqlite(dir);
    run_ok(dir, &state, &["apply", "site", "--auto-approve"]);
    let before = dp_status(dir, &state, "dp-hq");
    assert_eq!(before["lastValidation"], Value::Null, "{before}");
    assert_eq!(before["validationDue"], true, "never validated: due");
    assert_eq!(before["validationEvery"], "1s");

    let server = Server::start(dir, &state, "detect", "detect");
    wait_until(
        Duration::from_secs(30),
        "a first, clean validation",
        &[&server],
        || async { dp_status(dir, &state, "dp-hq")["lastValidation"]["outcome"] == "ok" },
    )
    .await;
    let clean = dp_status(dir, &state, "dp-hq");
    assert!(
        clean["lastValidation"]["filesChecked"].as_u64() > Some(0),
        "{clean}"
    );
    assert!(clean["nextValidation"].is_string(), "{clean}");

    let blob = a_blob(dir, "dp-hq");
    let original = rot(&blob);
    let rotten = fs::read(&blob).expect("read");
    assert!(
        planned_distribution(dir, &state, false).is_empty(),
        "the cheap check cannot see it"
    );
    wait_until(
        Duration::from_secs(30),
        "the rot found and stored",
        &[&server],
        || async { dp_status(dir, &state, "dp-hq")["lastValidation"]["outcome"] == "problems" },
    )
    .await;
    let found = dp_status(dir, &state, "dp-hq");
    let last = &found["lastValidation"];
    assert_eq!(last["problems"], 1, "{found}");
    assert_eq!(last["repaired"], 0, "detect only reports");
    let name = blob.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(last["problemFiles"][0]["problem"], "corrupt");
    assert!(
        last["problemFiles"][0]["file"]
            .as_str()
            .unwrap_or_default()
            .ends_with(&name),
        "{found}"
    );
    assert_eq!(
        fs::read(&blob).expect("read"),
        rotten,
        "detect changes nothing"
    );

    // Shown to people, and in the metrics.
    let human = run_ok(dir, &state, &["status", "dp", "dp-hq"]);
    assert!(human.contains("dp-hq  dp/dp-hq"), "{human}");
    assert!(human.contains("1 problem(s) at "), "{human}");
    assert!(
        human.contains(&format!(
            "corrupt files/{}/{name}: its bytes hash to ",
            &name[..2]
        )),
        "{human}"
    );
    let site_status = run_ok(dir, &state, &["status", "site"]);
    assert!(
        site_status.contains("content validation:\n"),
        "{site_status}"
    );
    assert!(
        site_status.contains("  dp-hq: 1 problem(s) at "),
        "{site_status}"
    );
    assert!(
        site_status.contains("  dp-branch: never validated; next: off\n"),
        "{site_status}"
    );
    let site_json: Value = serde_json::from_str(&run_ok(
        dir,
        &state,
        &["status", "site", "--format", "json"],
    ))
    .expect("json");
    assert_eq!(
        site_json["distributionPoints"].as_array().map(Vec::len),
        Some(2)
    );
    let metrics = server.get("/metrics").await;
    assert!(
        metrics.contains("patchops_dp_validation_problems{dp=\"dp-hq\"} 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("patchops_dp_validation_last_timestamp_seconds{dp=\"dp-hq\"} "));
    assert!(
        metrics.contains("patchops_dp_validation_outcome{dp=\"dp-hq\",outcome=\"problems\"} 1\n")
    );
    assert!(
        !metrics.contains("dp=\"dp-branch\""),
        "not validated: {metrics}"
    );
    drop(server);

    // A saved plan's distribution is fixed: --validate is refused, nothing changes.
    run_ok(dir, &state, &["plan", "site", "--out", "plan.json"]);
    let (code, _, stderr) = run(dir, &state, &["apply", "plan.json", "--validate"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("plan --validate"), "{stderr}");
    assert_eq!(fs::read(&blob).expect("read"), rotten);

    // apply --validate hashes the DP and copies the file again.
    let applied = run_ok(
        dir,
        &state,
        &["apply", "site", "--validate", "--auto-approve"],
    );
    assert!(
        applied.contains("damaged files (deep validation)"),
        "{applied}"
    );
    assert_eq!(fs::read(&blob).expect("read"), original, "repaired");
    assert!(
        planned_distribution(dir, &state, true).is_empty(),
        "{applied}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_dp_refuses_an_unknown_name() {
    let site = example_site();
    let dir = site.path();
    let state = sqlite(dir);
    run_ok(dir, &state, &["apply", "site", "--auto-approve"]);
    let (code, stdout, stderr) = run(dir, &state, &["status", "dp", "dp-hqq"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stderr
            .contains("no distribution point `dp-hqq` in the applied site (did you mean `dp-hq`?)"),
        "{stderr}"
    );
    let list: Value =
        serde_json::from_str(&run_ok(dir, &state, &["status", "dp", "--format", "json"]))
            .expect("json");
    let names: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(names, ["dp-branch", "dp-hq"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_only_the_leader_validates_and_drift_correct_repairs() {
    let (state, _db) = patchops::store::testing::fresh_postgres_url().await;
    let site = example_site();
    let dir = site.path();
    run_ok(dir, &state, &["apply", "site", "--auto-approve"]);
    let blob = a_blob(dir, "dp-hq");
    let original = rot(&blob);

    let a = Server::start(dir, &state, "correct", "a");
    wait_until(Duration::from_secs(30), "A leads", &[&a], || async {
        a.leads().await
    })
    .await;
    let b = Server::start(dir, &state, "correct", "b");
    wait_until(
        Duration::from_secs(30),
        "the rot found, removed and copied again",
        &[&a, &b],
        || async { fs::read(&blob).is_ok_and(|bytes| bytes == original) },
    )
    .await;
    let a_pid = a.proc.child.id();
    let stored = dp_status(dir, &state, "dp-hq");
    assert_eq!(stored["lastValidation"]["pid"], a_pid, "{stored}");
    // Validated every second by A; B follows and validates nothing.
    wait_until(
        Duration::from_secs(30),
        "a clean validation after the repair",
        &[&a],
        || async { dp_status(dir, &state, "dp-hq")["lastValidation"]["outcome"] == "ok" },
    )
    .await;
    assert!(
        a.log().contains("content validation found problems"),
        "{}",
        a.log()
    );
    assert!(a.log().contains("repaired=1"), "{}", a.log());
    assert!(!b.leads().await);
    assert!(!b.log().contains("content validation"), "{}", b.log());
    let b_metrics = b.get("/metrics").await;
    assert!(b_metrics.contains("patchops_leader 0\n"), "{b_metrics}");
    assert!(!b_metrics.contains("patchops_dp_validation"), "{b_metrics}");
    assert!(a
        .get("/metrics")
        .await
        .contains("patchops_dp_validation_problems{dp=\"dp-hq\"} 0\n"));

    // The leader dies: B leads and takes the schedule over.
    let mut a = a;
    a.kill();
    let b_pid = b.proc.child.id();
    wait_until(
        Duration::from_secs(30),
        "B validates once it leads",
        &[&b],
        || async { dp_status(dir, &state, "dp-hq")["lastValidation"]["pid"] == b_pid },
    )
    .await;
    assert!(b
        .get("/metrics")
        .await
        .contains("patchops_dp_validation_problems{dp=\"dp-hq\"} 0\n"));
}
