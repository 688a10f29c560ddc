//! The continuous reconcile of `patchops server --manifests`, driven through
//! the real binary: edits applied by themselves, invalid manifests kept out,
//! DP drift corrected, failover between two servers on one PostgreSQL
//! database, and status messages kept exactly once across a SIGKILL.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{self, git, patchops, Proc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tempfile::TempDir;

const ENROLL: &str = "enroll-secret-for-tests";
const INTERVAL: &str = "2s";
/// The leader lease at that interval (2/3 of it).
const LEASE_MS: i64 = 1333;

/// `patchops server` on `state`, run in `cwd` (its log there too), with
/// the test's secret and `extra` arguments.
fn start_server(state: &str, cwd: &Path, extra: &[&str]) -> Proc {
    let mut cmd = patchops();
    cmd.current_dir(cwd)
        .args(["server", "--state", state, "--listen", "127.0.0.1:0"])
        .args(["--enroll-secret-from", "env:TEST_ENROLL"])
        .args(["--token-cache-ttl", "0s", "--refresh", "1s"])
        .args(extra)
        .env("TEST_ENROLL", ENROLL)
        .env("PATCHOPS_LOG", "info,patchops=debug");
    Proc::start(cmd, &support::log_file(cwd, "server"))
}

fn client() -> reqwest::Client {
    support::http_client(Duration::from_secs(10))
}

async fn healthz(server: &Proc) -> (StatusCode, Value) {
    let Ok(response) = client().get(server.url("/healthz")).send().await else {
        return (StatusCode::SERVICE_UNAVAILABLE, Value::Null);
    };
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn metrics(server: &Proc) -> String {
    client()
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// How many reconciles this server has counted with `result`.
async fn reconciles(server: &Proc, result: &str) -> u64 {
    let prefix = format!("patchops_reconcile_total{{result=\"{result}\"}} ");
    metrics(server)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or(0)
}

/// When the leader lease in a SQLite store runs out (epoch ms), if held.
async fn leader_lease_expiry(conn: &mut sqlx::SqliteConnection) -> Option<i64> {
    sqlx::query_scalar("SELECT expires_ms FROM patchops_lock WHERE name = 'leader'")
        .fetch_optional(conn)
        .await
        .expect("the leader lease")
}

fn run_json(args: &[&str], cwd: &Path) -> Value {
    let out = patchops()
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// The audit records, newest first.
fn history(state: &str, cwd: &Path) -> Vec<Value> {
    run_json(&["history", "--format", "json", "--state", state], cwd)
        .as_array()
        .cloned()
        .expect("a list")
}

/// Waits (polling every 100 ms) until `check` holds; panics with `what`
/// and the servers' logs after `within`.
async fn wait_until<F, Fut>(within: Duration, what: &str, servers: &[&Proc], check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    support::wait_until(within, what, || support::logs(servers), check).await;
}

/// Writes `text` to `path` the way editors save: a temporary file in the
/// same directory, then a rename over the original.
fn atomic_write(path: &Path, text: &str) {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).expect("write temp");
    std::fs::rename(&tmp, path).expect("rename");
}

fn example_site(dir: &Path) -> PathBuf {
    let site = dir.join("site");
    support::copy_dir(&support::repo().join("examples/site"), &site);
    site
}

/// The office package with another comment (one field changed).
fn office_with_comment(site: &Path, comment: &str) -> String {
    let original =
        std::fs::read_to_string(support::repo().join("examples/site/office/package.yaml"))
            .expect("read");
    let _ = site;
    original.replacen(
        "  comment: Office Inventory Tool, with the Office update database it scans with.",
        &format!("  comment: {comment}"),
        1,
    )
}

fn office_comment(state: &str, cwd: &Path) -> String {
    let office = run_json(
        &[
            "state",
            "show",
            "Package/MS Office Updates",
            "--format",
            "json",
            "--state",
            state,
        ],
        cwd,
    );
    office["spec"]["comment"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_applies_edits_keeps_state_on_invalid_manifests_and_corrects_dp_drift() {
    let dir = TempDir::new().expect("tmp");
    let cwd = dir.path();
    let site = example_site(cwd);
    let state = format!("sqlite://{}", cwd.join("site.db").display());
    let server = start_server(
        &state,
        cwd,
        &["--manifests", "site", "--interval", INTERVAL],
    );

    // The example site is applied by the server itself.
    wait_until(
        Duration::from_secs(30),
        "the first apply",
        &[&server],
        || async {
            let (_, h) = healthz(&server).await;
            h["reconcile"]["status"] == "ok" && h["serial"].as_i64() >= Some(1)
        },
    )
    .await;
    let (code, h) = healthz(&server).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(h["leader"], true, "{h}");
    let records = history(&state, cwd);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["actor"], "patchops server");
    assert!(cwd.join("dp/dp-hq").is_dir(), "content distributed");

    // An edit (temp file + rename) is applied once, within seconds.
    let package = site.join("office/package.yaml");
    atomic_write(&package, &office_with_comment(&site, "first edit"));
    wait_until(
        Duration::from_secs(10),
        "the edit applied",
        &[&server],
        || async { history(&state, cwd).len() == 2 },
    )
    .await;
    assert_eq!(office_comment(&state, cwd), "first edit");

    // An invalid edit changes nothing and shows in /healthz and the metrics.
    atomic_write(
        &package,
        "apiVersion: patchops/v1\nkind: Package\nmetadata: [\n",
    );
    wait_until(
        Duration::from_secs(10),
        "the error shown",
        &[&server],
        || async { healthz(&server).await.1["reconcile"]["status"] == "error" },
    )
    .await;
    let (code, h) = healthz(&server).await;
    assert_eq!(code, StatusCode::OK, "agents are still served: {h}");
    let message = h["reconcile"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("invalid"), "{h}");
    assert!(h["reconcile"]["since"].is_string(), "{h}");
    assert!(h["reconcile"]["lastSuccess"].is_string(), "{h}");
    let text = metrics(&server).await;
    assert!(
        text.lines().any(|l| l
            .strip_prefix("patchops_reconcile_total{result=\"invalid\"} ")
            .is_some_and(|n| n != "0")),
        "{text}"
    );
    assert!(text.contains("patchops_reconcile_last_success_timestamp "));
    assert!(text.contains("patchops_leader 1\n"), "{text}");
    // Retried (with backoff) and still refused: the state stays as it was.
    let refused = reconciles(&server, "invalid").await;
    wait_until(
        Duration::from_secs(10),
        "the invalid site retried",
        &[&server],
        || async { reconciles(&server, "invalid").await > refused },
    )
    .await;
    assert_eq!(history(&state, cwd).len(), 2);
    assert_eq!(office_comment(&state, cwd), "first edit");

    // Fixing it recovers.
    atomic_write(&package, &office_with_comment(&site, "fixed"));
    wait_until(
        Duration::from_secs(10),
        "the fix applied",
        &[&server],
        || async { history(&state, cwd).len() == 3 },
    )
    .await;
    assert_eq!(office_comment(&state, cwd), "fixed");
    wait_until(
        Duration::from_secs(5),
        "the status ok",
        &[&server],
        || async { healthz(&server).await.1["reconcile"]["status"] == "ok" },
    )
    .await;

    // DP drift: a library removed by hand is distributed again on the next
    // interval, without a state change.
    std::fs::remove_dir_all(cwd.join("dp/dp-branch")).expect("remove");
    wait_until(
        Duration::from_secs(10),
        "the DP repaired",
        &[&server],
        || async { cwd.join("dp/dp-branch").is_dir() },
    )
    .await;
    // No file event and no change: the next interval's reconcile applies
    // nothing.
    let quiet = reconciles(&server, "unchanged").await;
    wait_until(
        Duration::from_secs(10),
        "a quiet interval reconciled",
        &[&server],
        // One whole reconcile after the one that repaired the DP.
        || async { reconciles(&server, "unchanged").await > quiet + 1 },
    )
    .await;
    assert_eq!(
        history(&state, cwd).len(),
        3,
        "exactly one apply per change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_detect_plans_only() {
    let dir = TempDir::new().expect("tmp");
    let cwd = dir.path();
    example_site(cwd);
    let state = format!("sqlite://{}", cwd.join("site.db").display());
    let server = start_server(
        &state,
        cwd,
        &[
            "--manifests",
            "site",
            "--interval",
            INTERVAL,
            "--drift",
            "detect",
        ],
    );
    wait_until(
        Duration::from_secs(30),
        "drift reported",
        &[&server],
        || async { healthz(&server).await.1["reconcile"]["status"] == "drift" },
    )
    .await;
    let (_, h) = healthz(&server).await;
    assert!(
        h["reconcile"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("to add"),
        "{h}"
    );
    assert!(history(&state, cwd).is_empty(), "nothing applied");
    assert!(!cwd.join("dp/dp-hq").exists(), "nothing distributed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_between_two_servers_on_postgres_without_double_apply() {
    let (state, _db) = patchops::store::testing::fresh_postgres_url().await;
    let dir = TempDir::new().expect("tmp");
    let cwd = dir.path();
    let site = example_site(cwd);
    let args = ["--manifests", "site", "--interval", INTERVAL];
    let mut a = start_server(&state, cwd, &args);
    wait_until(Duration::from_secs(30), "A applies", &[&a], || async {
        let (_, h) = healthz(&a).await;
        h["leader"] == true && h["reconcile"]["status"] == "ok"
    })
    .await;
    let b = start_server(&state, cwd, &args);
    // Exactly one leads, for several lease periods: until the store shows
    // A's lease renewed three lease lengths past where it was once B had
    // asked for it, every look finds A leading and B following.
    let mut db = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&state)
            .await
            .expect("the store")
    };
    let mut first_expiry = None;
    let start = Instant::now();
    loop {
        let ((_, ha), (_, hb)) = tokio::join!(healthz(&a), healthz(&b));
        assert_eq!(ha["leader"], true, "{ha}");
        assert_eq!(hb["leader"], false, "{hb}");
        // B has asked for the lease once it follows.
        if hb["reconcile"]["status"] == "follower" {
            let expiry: i64 =
                sqlx::query_scalar("SELECT expires_ms FROM patchops_lock WHERE name = 'leader'")
                    .fetch_one(&mut db)
                    .await
                    .expect("the leader lease");
            let first = *first_expiry.get_or_insert(expiry);
            if expiry - first >= 3 * LEASE_MS {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "A's lease not renewed for three lease periods\n{}\n-----\n{}",
            a.log(),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(db);
    assert_eq!(history(&state, cwd).len(), 1);

    // The leader dies; the follower leads within one interval.
    a.kill();
    let killed = Instant::now();
    wait_until(Duration::from_secs(5), "B leads", &[&a, &b], || async {
        healthz(&b).await.1["leader"] == true
    })
    .await;
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_millis(2500),
        "takeover took {took:?}"
    );

    // It applies the next change, exactly once.
    atomic_write(
        &site.join("office/package.yaml"),
        &office_with_comment(&site, "after failover"),
    );
    wait_until(Duration::from_secs(10), "B applies", &[&b], || async {
        history(&state, cwd).len() == 2
    })
    .await;
    // A restarted server follows; nothing is applied twice, not while it
    // starts nor in B's next reconciles.
    let a2 = start_server(&state, cwd, &args);
    wait_until(Duration::from_secs(10), "A2 follows", &[&a2], || async {
        healthz(&a2).await.1["reconcile"]["status"] == "follower"
    })
    .await;
    let reconciled = reconciles(&b, "unchanged").await;
    wait_until(
        Duration::from_secs(10),
        "B reconciled with A2 up",
        &[&b],
        || async { reconciles(&b, "unchanged").await > reconciled },
    )
    .await;
    let records = history(&state, cwd);
    assert_eq!(records.len(), 2, "{records:?}");
    let (_, h2) = healthz(&a2).await;
    assert_eq!(h2["leader"], false, "{h2}");
    assert_eq!(office_comment(&state, cwd), "after failover");

    // SIGTERM: the leader releases the lease and the other takes over at once.
    let mut b = b;
    let status = b.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status:?}\n{}", b.log());
    assert!(b.log().contains("leader lease released"), "{}", b.log());
    let stopped = Instant::now();
    wait_until(Duration::from_secs(3), "A2 leads", &[&a2], || async {
        healthz(&a2).await.1["leader"] == true
    })
    .await;
    assert!(
        stopped.elapsed() < Duration::from_secs(1),
        "{:?}",
        stopped.elapsed()
    );
    assert_eq!(history(&state, cwd).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_survives_sigkill_and_restart_exactly_once() {
    let dir = TempDir::new().expect("tmp");
    let cwd = dir.path();
    example_site(cwd);
    let db = cwd.join("site.db");
    let state = format!("sqlite://{}", db.display());
    let args = ["--manifests", "site", "--interval", INTERVAL];
    let server = start_server(&state, cwd, &args);
    let base = Arc::new(Mutex::new(server.base.clone()));
    let response = client()
        .post(server.url("/v1/register"))
        .bearer_auth(ENROLL)
        .body(json!({ "name": "wks-kill-01" }).to_string())
        .send()
        .await
        .expect("register");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
    let token = body["token"].as_str().expect("token").to_string();

    // An agent: batches with unique keys; an unacknowledged batch is sent
    // again (to whichever server answers) until it is acknowledged.
    const BATCHES: usize = 120;
    const PER_BATCH: usize = 5;
    let acknowledged = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let agent = {
        let base = base.clone();
        let acknowledged = acknowledged.clone();
        tokio::spawn(async move {
            patchops::tls::install_default_provider();
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client");
            let mut resent = 0;
            for b in 0..BATCHES {
                let messages: Vec<Value> = (0..PER_BATCH)
                    .map(|m| {
                        json!({"key": format!("b{b}-m{m}"), "advertisement": "MS Security Updates",
                               "state": "succeeded", "at": "2026-11-25T02:00:00Z"})
                    })
                    .collect();
                let body = json!({ "messages": messages }).to_string();
                loop {
                    let url = format!("{}/v1/status", base.lock().expect("base"));
                    let sent = client
                        .post(url)
                        .bearer_auth(&token)
                        .body(body.clone())
                        .send()
                        .await;
                    if matches!(&sent, Ok(r) if r.status() == StatusCode::OK) {
                        acknowledged.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        break;
                    }
                    resent += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            resent
        })
    };

    // Kill the server three times while the agent posts (each time once
    // it has stored 20 more batches), and restart it.
    let mut server = server;
    for kill in 1..=3 {
        let stored = || acknowledged.load(std::sync::atomic::Ordering::SeqCst);
        wait_until(
            Duration::from_secs(60),
            "the agent's batches stored",
            &[&server],
            || async { stored() >= 20 * kill },
        )
        .await;
        assert!(stored() < BATCHES, "the agent finished before the kill");
        server.kill();
        server = start_server(&state, cwd, &args);
        *base.lock().expect("base") = server.base.clone();
    }
    let resent = tokio::time::timeout(Duration::from_secs(120), agent)
        .await
        .expect("the agent finishes")
        .expect("agent task");
    assert!(resent > 0, "the kills interrupted the agent");
    wait_until(
        Duration::from_secs(20),
        "the site applied",
        &[&server],
        || async { healthz(&server).await.1["reconcile"]["status"] == "ok" },
    )
    .await;
    server.kill();

    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the store");
    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM status_messages ORDER BY key")
        .fetch_all(&mut conn)
        .await
        .expect("keys");
    let mut want: Vec<String> = (0..BATCHES)
        .flat_map(|b| (0..PER_BATCH).map(move |m| format!("b{b}-m{m}")))
        .collect();
    want.sort();
    assert_eq!(
        keys.len(),
        BATCHES * PER_BATCH,
        "nothing lost, nothing twice"
    );
    assert_eq!(keys, want);
    // The reconciles of the restarted servers applied the site once.
    assert_eq!(history(&state, cwd).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_pull_clones_then_fetches_every_interval() {
    let dir = TempDir::new().expect("tmp");
    let cwd = dir.path();
    // The "remote": a repository holding the example site.
    let origin = example_site(cwd);
    git(&origin, &["init", "--quiet"]);
    git(&origin, &["add", "."]);
    git(&origin, &["commit", "--quiet", "-m", "site"]);
    let state = format!("sqlite://{}", cwd.join("site.db").display());
    let url = origin.display().to_string();
    let server = start_server(
        &state,
        cwd,
        &[
            "--manifests",
            "checkout",
            "--git-pull",
            &url,
            "--interval",
            INTERVAL,
        ],
    );
    wait_until(
        Duration::from_secs(30),
        "the clone applied",
        &[&server],
        || async { history(&state, cwd).len() == 1 },
    )
    .await;
    let records = history(&state, cwd);
    assert!(records[0]["commit"].is_string(), "{records:?}");
    assert_eq!(records[0]["dirty"], false, "{records:?}");

    std::fs::write(
        origin.join("office/package.yaml"),
        office_with_comment(&origin, "from git"),
    )
    .expect("write");
    git(&origin, &["commit", "--quiet", "-am", "office comment"]);
    wait_until(
        Duration::from_secs(10),
        "the commit applied",
        &[&server],
        || async { history(&state, cwd).len() == 2 },
    )
    .await;
    assert_eq!(office_comment(&state, cwd), "from git");
}

/// SIGTERM while a reconcile is in flight: the step finishes (here: its
/// apply, which waits for the apply lock the test holds) before the server
/// exits, and the lease is released after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_reconcile_in_flight() {
    use sqlx::Connection;
    let dir = TempDir::new().expect("tmp");
    let cwd = dir.path();
    example_site(cwd);
    let db = cwd.join("site.db");
    let state = format!("sqlite://{}", db.display());
    assert!(history(&state, cwd).is_empty(), "the store is created");
    let mut conn = sqlx::SqliteConnection::connect(&state)
        .await
        .expect("open the store");
    // Another host's apply holds the lock (no takeover: not this host).
    sqlx::query(
        "INSERT INTO patchops_lock (name, id, holder, host, pid, command, acquired_ms, expires_ms) \
         VALUES ('apply', 'held-by-the-test', 'patchops apply', 'elsewhere.example', 1, \
                 'patchops apply', 0, 9000000000000)",
    )
    .execute(&mut conn)
    .await
    .expect("take the apply lock");
    let mut server = start_server(&state, cwd, &["--manifests", "site", "--interval", "10s"]);
    wait_until(
        Duration::from_secs(20),
        "a reconcile started",
        &[&server],
        || async { server.log().contains("reconcile started") },
    )
    .await;
    let pid = libc::pid_t::try_from(server.child.id()).expect("pid");
    // SAFETY: signals our own child process.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    // The server waits for its step: once the signal is handled, it still
    // renews its leader lease (so it runs), and nothing is applied yet.
    wait_until(
        Duration::from_secs(10),
        "the signal handled",
        &[&server],
        || async { server.log().contains("shutting down") },
    )
    .await;
    let at_signal = leader_lease_expiry(&mut conn)
        .await
        .expect("the server leads");
    let start = Instant::now();
    while leader_lease_expiry(&mut conn)
        .await
        .is_some_and(|e| e <= at_signal)
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the lease not renewed after the signal:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        server.child.try_wait().expect("wait").is_none(),
        "exited with the reconcile in flight:\n{}",
        server.log()
    );
    assert!(history(&state, cwd).is_empty());
    sqlx::query("DELETE FROM patchops_lock WHERE id = 'held-by-the-test'")
        .execute(&mut conn)
        .await
        .expect("release the apply lock");
    conn.close().await.expect("close");
    let status = server.terminate(Duration::from_secs(20));
    let log = server.log();
    assert!(status.success(), "{status:?}\n{log}");
    let records = history(&state, cwd);
    assert_eq!(records.len(), 1, "the step in flight finished: {log}");
    assert_eq!(records[0]["actor"], "patchops server");
    assert!(cwd.join("dp/dp-hq").is_dir(), "and distributed");
    let applied = log.find("reconciled: applied").expect(&log);
    let released = log.find("leader lease released").expect(&log);
    assert!(applied < released, "{log}");
    assert!(log.contains("shutting down"), "{log}");
    // Its outcome was recorded before the lease went.
    let site = run_json(
        &["status", "site", "--format", "json", "--state", &state],
        cwd,
    );
    assert_eq!(site["reconcile"]["status"], "ok", "{site}");
    assert_eq!(site["reconcile"]["lastApply"]["serial"], 1, "{site}");
    assert_eq!(site["leader"], Value::Null, "{site}");
}

/// A failing `--git-pull` is an error in `/healthz`, the log and `status
/// site`, none of which shows the remote's password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_git_pull_is_recorded_without_the_password() {
    let dir = TempDir::new().expect("tmp");
    let cwd = dir.path();
    let state = format!("sqlite://{}", cwd.join("site.db").display());
    // Nothing listens on port 9.
    let url = "http://bob:pw-e2e-s3cret@127.0.0.1:9/site.git";
    let server = start_server(
        &state,
        cwd,
        &[
            "--manifests",
            "checkout",
            "--git-pull",
            url,
            "--interval",
            INTERVAL,
        ],
    );
    wait_until(
        Duration::from_secs(20),
        "the failure recorded",
        &[&server],
        || async {
            run_json(
                &["status", "site", "--format", "json", "--state", &state],
                cwd,
            )["reconcile"]["status"]
                == "error"
        },
    )
    .await;
    let site = run_json(
        &["status", "site", "--format", "json", "--state", &state],
        cwd,
    );
    let r = &site["reconcile"];
    assert_eq!(r["result"], "failed", "{site}");
    assert!(
        r["lastApply"].is_null() && r["lastSuccess"].is_null(),
        "{site}"
    );
    let message = r["message"].as_str().unwrap_or_default();
    assert!(message.contains("git clone"), "{site}");
    let (_, h) = healthz(&server).await;
    let shown = format!("{site}{h}{}", server.log());
    assert!(
        shown.contains("bob:***@") || !shown.contains("bob:"),
        "{shown}"
    );
    assert!(!shown.contains("pw-e2e-s3cret"), "{shown}");
}
