//! The site server, driven over real HTTP on loopback: registration,
//! policy with ETags, inventory and status, refusals, the admin API, and a
//! PostgreSQL restart underneath it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{self, patchops, Proc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tempfile::TempDir;

const ENROLL: &str = "enroll-secret-for-tests";
const ADMIN: &str = "admin-token-for-tests";

/// `patchops server` on `state` with the test's secrets and `extra`
/// arguments, its log in `dir`.
fn start_server(state: &str, dir: &Path, extra: &[&str]) -> Proc {
    let mut cmd = patchops();
    cmd.args(["server", "--state", state, "--listen", "127.0.0.1:0"])
        .args(["--enroll-secret-from", "env:TEST_ENROLL"])
        .args(["--admin-token-from", "env:TEST_ADMIN"])
        .args(["--token-cache-ttl", "0s", "--refresh", "1s"])
        .args(extra)
        .env("TEST_ENROLL", ENROLL)
        .env("TEST_ADMIN", ADMIN)
        .env("PATCHOPS_LOG", "debug");
    Proc::start(cmd, &support::log_file(dir, "server"))
}

fn client() -> reqwest::Client {
    support::http_client(Duration::from_secs(30))
}

/// The server's `/healthz` answer, as JSON.
async fn healthz(server: &Proc) -> Value {
    let text = client()
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("healthz")
        .text()
        .await
        .expect("text");
    serde_json::from_str(&text).expect("json")
}

async fn register(server: &Proc, name: &str) -> String {
    let response = client()
        .post(server.url("/v1/register"))
        .bearer_auth(ENROLL)
        .body(json!({ "name": name }).to_string())
        .send()
        .await
        .expect("register");
    assert_eq!(response.status(), StatusCode::OK, "register {name}");
    let body: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
    body["token"].as_str().expect("token").to_string()
}

async fn get_policy(
    server: &Proc,
    token: &str,
    etag: Option<&str>,
) -> (StatusCode, Option<String>, Value) {
    let mut request = client().get(server.url("/v1/policy")).bearer_auth(token);
    if let Some(etag) = etag {
        request = request.header("If-None-Match", etag);
    }
    let response = request.send().await.expect("policy");
    let status = response.status();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().expect("ascii").to_string());
    let bytes = response.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("json")
    };
    (status, etag, body)
}

async fn post(server: &Proc, path: &str, token: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let response = client()
        .post(server.url(path))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .expect("post");
    let status = response.status();
    let bytes = response.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A state with the example site applied, and its inventory imported.
fn applied_example(dir: &Path) -> String {
    let state = format!("sqlite://{}", dir.join("site.db").display());
    support::apply_example(dir, &state);
    state
}

fn assignment_names(policy: &Value) -> Vec<String> {
    policy["assignments"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x["advertisement"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_then_policy_then_304() {
    let dir = TempDir::new().expect("tmp");
    let state = applied_example(dir.path());
    let server = start_server(&state, dir.path(), &[]);

    let token = register(&server, "wks-test-01").await;
    let (status, etag, body) = get_policy(&server, &token, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["machine"], "wks-test-01");
    let names = assignment_names(&body);
    assert!(
        names.iter().any(|n| n.contains("Pre-production")),
        "the pre-production client gets the expedited advertisement: {names:?}"
    );
    let etag = etag.expect("an ETag");
    let (status, again, body) = get_policy(&server, &token, Some(&etag)).await;
    assert_eq!(
        (status, again.as_deref(), body),
        (StatusCode::NOT_MODIFIED, Some(etag.as_str()), Value::Null)
    );
    // A stale ETag gets the body again.
    let (status, _, _) = get_policy(&server, &token, Some("\"0-stale\"")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_per_machine_and_revocable() {
    let dir = TempDir::new().expect("tmp");
    let state = applied_example(dir.path());
    let server = start_server(&state, dir.path(), &[]);

    // Wrong or missing credentials.
    let (status, body) = post(
        &server,
        "/v1/register",
        "wrong",
        json!({"name": "x"}).to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "wrong enrollment secret");
    let response = client()
        .get(server.url("/v1/policy"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (status, _, _) = get_policy(&server, "not-a-token", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let a = register(&server, "wks-test-01").await;
    let b = register(&server, "sms01").await;
    let (_, _, policy_a) = get_policy(&server, &a, None).await;
    let (_, _, policy_b) = get_policy(&server, &b, None).await;
    assert_eq!(policy_a["machine"], "wks-test-01");
    assert_eq!(policy_b["machine"], "sms01");
    assert_ne!(assignment_names(&policy_a), assignment_names(&policy_b));

    // A's token cannot speak for B.
    let (status, body) = post(
        &server,
        "/v1/inventory",
        &a,
        json!({"name": "sms01", "os": {"name": "Microsoft Windows XP Professional"}})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Revoked: refused at once (the test server does not cache tokens).
    let out = patchops()
        .args(["machine", "revoke", "WKS-TEST-01", "--state", &state])
        .output()
        .expect("revoke");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, _, _) = get_policy(&server, &a, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = get_policy(&server, &b, None).await;
    assert_eq!(status, StatusCode::OK, "other machines are not affected");
    // Registering again gives a working token.
    let again = register(&server, "wks-test-01").await;
    assert_eq!(get_policy(&server, &again, None).await.0, StatusCode::OK);
    assert!(
        !server.log().contains(&again),
        "tokens never appear in logs"
    );
    assert!(
        !server.log().contains(ENROLL),
        "secrets never appear in logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_changes_policy_of_that_machine() {
    let dir = TempDir::new().expect("tmp");
    let state = applied_example(dir.path());
    let server = start_server(&state, dir.path(), &[]);
    let token = register(&server, "wks-new-01").await;
    let (_, etag, before) = get_policy(&server, &token, None).await;
    let version = before["version"].as_u64().expect("version");

    // Office 2003 installed: the machine joins the Office collection.
    let machine = json!({
        "name": "wks-new-01",
        "domain": "CORP",
        "os": {"name": "Microsoft Windows XP Professional", "type": "workstation", "version": "5.1.2600", "servicePack": 2},
        "architecture": "x86",
        "site": "LAB",
        "installed": {"product": ["Microsoft Office 2003"]},
        "ip": {"address": ["10.1.4.20"], "subnet": ["10.1.4.0"]}
    });
    let (status, body) = post(
        &server,
        "/v1/inventory",
        &token,
        machine.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, after) = get_policy(&server, &token, etag.as_deref()).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the policy changed, so the old ETag no longer matches"
    );
    assert_eq!(after["version"].as_u64(), Some(version + 1));
    assert!(
        assignment_names(&after).len() > assignment_names(&before).len(),
        "{after}"
    );

    // The same inventory again: same version.
    let (status, _) = post(
        &server,
        "/v1/inventory",
        &token,
        machine.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, same) = get_policy(&server, &token, None).await;
    assert_eq!(same["version"].as_u64(), Some(version + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_refused_and_change_nothing() {
    let dir = TempDir::new().expect("tmp");
    let state = applied_example(dir.path());
    let server = start_server(&state, dir.path(), &["--max-body", "4096"]);
    let token = register(&server, "wks-test-01").await;

    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        ("/v1/inventory", b"{not json".to_vec(), StatusCode::BAD_REQUEST, "invalid inventory"),
        ("/v1/inventory", json!({"name": "wks-test-01", "os": {"type": "toaster"}}).to_string().into_bytes(), StatusCode::BAD_REQUEST, "os.type"),
        ("/v1/inventory", json!({"name": "wks-test-01", "colour": "blue"}).to_string().into_bytes(), StatusCode::BAD_REQUEST, "unknown field `colour`"),
        ("/v1/inventory", vec![b' '; 10_000], StatusCode::PAYLOAD_TOO_LARGE, ""),
        ("/v1/status", json!({"messages": [{"key": "k1", "advertisement": "a", "state": "exploded", "at": "2026-11-25T00:00:00Z"}]}).to_string().into_bytes(), StatusCode::BAD_REQUEST, "messages[0]: `state` must be one of"),
        ("/v1/status", json!({"messages": [
            {"key": "good-1", "advertisement": "a", "state": "succeeded", "exitCode": 0, "at": "2026-11-25T00:00:00Z"},
            {"key": "bad-2", "advertisement": "a", "state": "failed", "at": "yesterday"}
        ]}).to_string().into_bytes(), StatusCode::BAD_REQUEST, "messages[1]: `at` must be an RFC 3339 time"),
        ("/v1/status", b"[]".to_vec(), StatusCode::BAD_REQUEST, "invalid status batch"),
        ("/v1/register", json!({"name": "bad name with spaces"}).to_string().into_bytes(), StatusCode::BAD_REQUEST, "name"),
    ];
    for (path, body, expected, message) in cases {
        let secret = if path == "/v1/register" {
            ENROLL
        } else {
            token.as_str()
        };
        let (status, answer) = post(&server, path, secret, body).await;
        assert_eq!(status, expected, "{path}: {answer}");
        if !message.is_empty() {
            let error = answer["error"].as_str().unwrap_or_default();
            assert!(
                error.contains(message),
                "{path}: {error:?} should mention {message:?}"
            );
        }
    }
    // Nothing of the refused batch was stored: the good message of it is
    // new when sent alone, and a duplicate the second time.
    let good = json!({"messages": [{"key": "good-1", "advertisement": "a", "state": "succeeded", "exitCode": 0, "at": "2026-11-25T00:00:00Z"}]}).to_string();
    let (status, body) = post(&server, "/v1/status", &token, good.clone().into_bytes()).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"accepted": 1, "duplicates": 0}))
    );
    let (_, body) = post(&server, "/v1/status", &token, good.into_bytes()).await;
    assert_eq!(body, json!({"accepted": 0, "duplicates": 1}));
    // The server is still up, and says so.
    let health = client()
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    let metrics = client()
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("patchops_http_requests_total{route=\"/v1/inventory\",status=\"400\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("patchops_status_duplicates_total 1"),
        "{metrics}"
    );
}

fn run_ok(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> String {
    let mut cmd = patchops();
    cmd.current_dir(cwd).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the state holds, without the per-store parts (ids, times).
fn state_objects(state: &str, cwd: &Path) -> Value {
    let text = run_ok(
        &["state", "list", "--format", "json", "--state", state],
        cwd,
        &[],
    );
    serde_json::from_str(&text).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_plan_and_apply_equal_local() {
    let dir = TempDir::new().expect("tmp");
    let site = dir.path().join("site");
    support::copy_dir(&support::repo().join("examples/site"), &site);
    let local = format!("sqlite://{}", dir.path().join("local.db").display());
    let served = format!("sqlite://{}", dir.path().join("served.db").display());
    let server = start_server(&served, dir.path(), &[]);
    let env = [("ADMIN_TOKEN", ADMIN)];
    let remote: Vec<&str> = vec!["--site", &server.base, "--token-from", "env:ADMIN_TOKEN"];

    let mut local_plan = vec!["plan", "site", "--format", "json", "--state", &local];
    let mut remote_plan = vec!["plan", "site", "--format", "json"];
    remote_plan.extend(&remote);
    let a: Value = serde_json::from_str(&run_ok(&local_plan, dir.path(), &env)).expect("json");
    let b: Value = serde_json::from_str(&run_ok(&remote_plan, dir.path(), &env)).expect("json");
    assert_eq!(a["changes"], b["changes"]);
    assert_eq!(a["summary"], b["summary"]);

    let mut apply_remote = vec!["apply", "site", "--auto-approve"];
    apply_remote.extend(&remote);
    run_ok(
        &["apply", "site", "--auto-approve", "--state", &local],
        dir.path(),
        &env,
    );
    run_ok(&apply_remote, dir.path(), &env);
    let strip = |mut v: Value| {
        for o in v.as_array_mut().into_iter().flatten() {
            if let Some(o) = o.as_object_mut() {
                o.retain(|k, _| ["kind", "name", "specHash", "owner"].contains(&k.as_str()));
            }
        }
        v
    };
    assert_eq!(
        strip(state_objects(&local, dir.path())),
        strip(state_objects(&served, dir.path()))
    );

    // Both now plan to no changes.
    local_plan.push("--detailed-exitcode");
    remote_plan.push("--detailed-exitcode");
    run_ok(&local_plan, dir.path(), &env);
    run_ok(&remote_plan, dir.path(), &env);

    // The server serves policy from what was applied through it.
    let token = register(&server, "sms01").await;
    let (status, _, policy) = get_policy(&server, &token, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!assignment_names(&policy).is_empty(), "{policy}");

    // Inventory imported through the server is served at once.
    let inventory = support::repo().join("examples/inventory.csv");
    let mut import = vec!["inventory", "import", inventory.to_str().expect("path")];
    import.extend(&remote);
    let out = run_ok(&import, dir.path(), &env);
    assert!(out.contains("Imported 302 machines"), "{out}");
    let health = healthz(&server).await;
    assert_eq!(
        health["machines"], 302,
        "sms01 was registered before and is in the file"
    );

    // An inventory bigger than the server's request limit (1 MiB) is sent
    // in parts, and every machine lands.
    let big = dir.path().join("big-inventory.json");
    let machines = patchops::fixtures::synthetic::synthetic_machines(6_000, 7);
    std::fs::write(&big, serde_json::to_vec(&machines).expect("json")).expect("write");
    assert!(std::fs::metadata(&big).expect("size").len() > 2 << 20);
    let mut import = vec!["inventory", "import", big.to_str().expect("path")];
    import.extend(&remote);
    let out = run_ok(&import, dir.path(), &env);
    assert!(out.contains("Imported 6000 machines"), "{out}");
    let health = healthz(&server).await;
    assert_eq!(health["machines"], 302 + 6_000);
    // A machine named twice is refused before anything is sent: no part
    // can see the whole file.
    let twice = dir.path().join("twice.json");
    let mut dup = machines[..3].to_vec();
    dup.push(machines[0].clone());
    std::fs::write(&twice, serde_json::to_vec(&dup).expect("json")).expect("write");
    let out = patchops()
        .current_dir(dir.path())
        .args(["inventory", "import", twice.to_str().expect("path")])
        .args(&remote)
        .envs(env.iter().copied())
        .output()
        .expect("import");
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nothing was imported") && stderr.contains("not already in the inventory"),
        "{stderr}"
    );

    // A wrong admin token is refused, and the state is untouched.
    let out = patchops()
        .current_dir(dir.path())
        .args([
            "plan",
            "site",
            "--site",
            &server.base,
            "--token-from",
            "env:ADMIN_TOKEN",
        ])
        .env("ADMIN_TOKEN", "wrong")
        .output()
        .expect("plan");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused the admin token"), "{stderr}");
    assert!(
        !stderr.contains("wrong"),
        "the token is not echoed: {stderr}"
    );
}

/// A PostgreSQL instance of this test's own, so that restarting it
/// disturbs no other test.
struct PrivatePostgres {
    dir: TempDir,
    port: u16,
    bin: PathBuf,
}

impl PrivatePostgres {
    fn start() -> PrivatePostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed under /usr/lib/postgresql")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())
            .expect("initdb");
        let dir = TempDir::new().expect("tmp");
        let port = support::reserved_port();
        let pg = PrivatePostgres { dir, port, bin };
        let data = pg.data();
        std::fs::create_dir(&data).expect("data dir");
        pg.chown(&data);
        pg.chown(pg.dir.path());
        let out = pg
            .as_postgres(&pg.bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.ctl("start");
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// initdb and postgres refuse to run as root: run them as `postgres`.
    fn as_postgres(&self, program: &Path) -> Command {
        if is_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        }
    }

    fn chown(&self, path: &Path) {
        if is_root() {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(path)
                .status()
                .expect("chown");
            assert!(status.success());
        }
    }

    fn ctl(&self, action: &str) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .as_postgres(&self.bin.join("pg_ctl"))
            .args(["-D"])
            .arg(self.data())
            .args(["-o", &options, "-w", "-t", "30", "-m", "fast"])
            .arg("-l")
            .arg(self.dir.path().join("pg.log"))
            .arg(action)
            .output()
            .expect("pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .as_postgres(&self.bin.join("pg_ctl"))
            .args(["-D"])
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

async fn health(server: &Proc) -> StatusCode {
    match client().get(server.url("/healthz")).send().await {
        Ok(r) => r.status(),
        Err(e) => panic!("the server itself must keep answering: {e}"),
    }
}

async fn wait_for(server: &Proc, want: StatusCode, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if health(server).await == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "healthz never became {want}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_gives_503_then_recovers() {
    let pg = PrivatePostgres::start();
    let dir = TempDir::new().expect("tmp");
    let site = dir.path().join("site");
    support::copy_dir(&support::repo().join("examples/site"), &site);
    run_ok(
        &["apply", "site", "--auto-approve", "--state", &pg.url()],
        dir.path(),
        &[],
    );
    let server = start_server(&pg.url(), dir.path(), &[]);
    let token = register(&server, "wks-test-01").await;
    wait_for(&server, StatusCode::OK, Duration::from_secs(10)).await;

    pg.ctl("stop");
    wait_for(
        &server,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(15),
    )
    .await;
    // Writes are refused with 503, not a hang or a crash.
    let started = Instant::now();
    let batch = json!({"messages": [{"key": "during-outage", "advertisement": "a", "state": "running", "at": "2026-11-25T00:00:00Z"}]});
    let (status, body) = post(
        &server,
        "/v1/status",
        &token,
        batch.to_string().into_bytes(),
    )
    .await;
    assert!(status == StatusCode::SERVICE_UNAVAILABLE, "{status} {body}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "refused in bounded time"
    );

    pg.ctl("start");
    wait_for(&server, StatusCode::OK, Duration::from_secs(30)).await;
    let (status, body) = post(
        &server,
        "/v1/status",
        &token,
        batch.to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"accepted": 1, "duplicates": 0}))
    );
    let (status, _, _) = get_policy(&server, &token, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_commands_show_what_agents_reported() {
    let dir = TempDir::new().expect("tmp");
    let state = applied_example(dir.path());
    let server = start_server(&state, dir.path(), &[]);
    let token = register(&server, "wks-test-01").await;
    let batch = json!({"messages": [
        {"key": "m1", "advertisement": "MS Security Updates (Pre-production)", "state": "running", "at": "2026-11-25T02:00:00Z"},
        {"key": "m2", "advertisement": "MS Security Updates (Pre-production)", "state": "succeeded", "exitCode": 0, "at": "2026-11-25T02:01:00Z"},
        {"key": "m3", "advertisement": "MS Office Updates (Pre-production)", "state": "failed", "exitCode": 1603, "message": "fatal error during installation", "at": "2026-11-25T02:02:00Z"},
        {"key": "m4", "advertisement": "MS Security Updates", "state": "succeeded", "at": "2026-11-25T02:03:00Z"}
    ]});
    let (status, body) = post(
        &server,
        "/v1/status",
        &token,
        batch.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let all: Value = serde_json::from_str(&run_ok(
        &[
            "status",
            "advertisements",
            "--format",
            "json",
            "--state",
            &state,
        ],
        dir.path(),
        &[],
    ))
    .expect("json");
    let row = |name: &str| {
        all.as_array()
            .expect("list")
            .iter()
            .find(|a| a["name"] == name)
            .cloned()
            .expect(name)
    };
    let pre = row("MS Security Updates (Pre-production)");
    assert_eq!(
        (
            &pre["targeted"],
            &pre["received"],
            &pre["succeeded"],
            &pre["inProgress"]
        ),
        (&json!(1), &json!(1), &json!(1), &json!(0))
    );
    let office = row("MS Office Updates (Pre-production)");
    assert_eq!(
        (&office["failed"], &office["succeeded"]),
        (&json!(1), &json!(0))
    );
    // wks-test-01 is not in production's collection: its report is not counted there.
    let production = row("MS Security Updates");
    assert_eq!(
        (&production["targeted"], &production["received"]),
        (&json!(301), &json!(0))
    );

    let one: Value = serde_json::from_str(&run_ok(
        &[
            "status",
            "advertisement",
            "MS Security Updates",
            "--format",
            "json",
            "--state",
            &state,
        ],
        dir.path(),
        &[],
    ))
    .expect("json");
    assert_eq!(one["machines"][0]["machine"], "wks-test-01");
    assert_eq!(one["machines"][0]["targeted"], false);

    let machine: Value = serde_json::from_str(&run_ok(
        &[
            "status",
            "machine",
            "WKS-TEST-01",
            "--format",
            "json",
            "--state",
            &state,
        ],
        dir.path(),
        &[],
    ))
    .expect("json");
    assert_eq!(machine["policyVersion"], 1);
    assert_eq!(
        machine["assignments"],
        json!([
            "MS Office Updates (Pre-production)",
            "MS Security Updates (Pre-production)"
        ])
    );
    assert_eq!(machine["messages"].as_array().map(Vec::len), Some(4));
    assert_eq!(machine["messages"][0]["state"], "succeeded", "newest first");

    let human = run_ok(
        &["status", "advertisements", "--state", &state],
        dir.path(),
        &[],
    );
    assert!(human.starts_with("ADVERTISEMENT"), "{human}");
}

/// Many agents writing at once: their writes are committed in groups, and
/// each is still answered for itself — every registration's token works
/// (one machine registering several times at once keeps exactly one),
/// every inventory report moves its own machine's policy, and status
/// batches that overlap are stored once, counted per batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_each_whole_and_once() {
    let dir = TempDir::new().expect("tmp");
    let state = applied_example(dir.path());
    let server = std::sync::Arc::new(start_server(&state, dir.path(), &[]));
    const N: usize = 40;

    // One machine registers five times at once: one is enrolled, four are
    // refused (the re-registration rule).
    let mut twice = Vec::new();
    for _ in 0..5 {
        let server = server.clone();
        twice.push(tokio::spawn(async move {
            let body = json!({ "name": "wks-burst-dup" }).to_string().into_bytes();
            post(&server, "/v1/register", ENROLL, body).await
        }));
    }
    let mut agents = Vec::new();
    for i in 0..N {
        let server = server.clone();
        agents.push(tokio::spawn(async move {
            let name = format!("wks-burst-{i:02}");
            let token = register(&server, &name).await;
            let (_, _, before) = get_policy(&server, &token, None).await;
            let office = i % 2 == 0;
            let machine = json!({
                "name": name,
                "os": {"name": "Microsoft Windows XP Professional", "type": "workstation",
                       "version": "5.1.2600", "servicePack": 2},
                "site": "LAB",
                "installed": {"product": if office { vec!["Microsoft Office 2003"] } else { vec![] }},
                "ip": {"address": [format!("10.2.7.{}", i + 1)], "subnet": ["10.2.7.0"]}
            });
            let batch = |keys: &[&str]| {
                let messages: Vec<Value> = keys
                    .iter()
                    .map(|k| {
                        json!({"key": format!("{name}/{k}"), "advertisement": "MS Security Updates",
                               "state": "accepted", "at": "2026-11-25T02:00:00Z"})
                    })
                    .collect();
                json!({ "messages": messages }).to_string().into_bytes()
            };
            let (inventory, first, second) = tokio::join!(
                post(&server, "/v1/inventory", &token, machine.to_string().into_bytes()),
                post(&server, "/v1/status", &token, batch(&["k1", "k2", "k3"])),
                post(&server, "/v1/status", &token, batch(&["k2", "k3", "k4"])),
            );
            assert_eq!(inventory.0, StatusCode::OK, "{}", inventory.1);
            assert_eq!((first.0, second.0), (StatusCode::OK, StatusCode::OK));
            let accepted = first.1["accepted"].as_u64().unwrap() + second.1["accepted"].as_u64().unwrap();
            let duplicates =
                first.1["duplicates"].as_u64().unwrap() + second.1["duplicates"].as_u64().unwrap();
            assert_eq!((accepted, duplicates), (4, 2), "{name}: {first:?} {second:?}");
            let (_, _, after) = get_policy(&server, &token, None).await;
            let names = assignment_names(&after);
            assert!(assignment_names(&before).is_empty(), "{name}: {before}");
            assert!(names.iter().any(|n| n == "MS Security Updates"), "{name}: {after}");
            assert_eq!(
                names.iter().any(|n| n == "MS Office Updates"),
                office,
                "{name}: {after}"
            );
        }));
    }
    for agent in agents {
        agent.await.expect("agent");
    }
    let mut tokens = Vec::new();
    for registration in twice {
        match registration.await.expect("register") {
            (StatusCode::OK, body) => tokens.push(body["token"].as_str().unwrap().to_string()),
            (StatusCode::CONFLICT, _) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(tokens.len(), 1, "exactly one of the five is enrolled");
    assert_eq!(
        get_policy(&server, &tokens[0], None).await.0,
        StatusCode::OK
    );

    // Each machine's four keys once in the store.
    for name in ["wks-burst-00", "wks-burst-07"] {
        let machine: Value = serde_json::from_str(&run_ok(
            &[
                "status", "machine", name, "--format", "json", "--state", &state,
            ],
            dir.path(),
            &[],
        ))
        .expect("json");
        assert_eq!(
            machine["messages"].as_array().map(Vec::len),
            Some(4),
            "{machine}"
        );
    }
}

fn status_body(key: &str, advertisement: &str, message: &str) -> Vec<u8> {
    json!({"messages": [{"key": key, "advertisement": advertisement, "state": "failed",
        "exitCode": 1, "message": message, "at": "2026-11-25T00:00:00Z"}]})
    .to_string()
    .into_bytes()
}

/// Defects 3.5 and 3.6: control characters in `key` and `advertisement`
/// were stored (and printed raw), and a NUL in a message made PostgreSQL
/// fail the write: 503 forever for that agent's queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_with_control_characters_or_nul_is_400_on_postgresql_not_503() {
    let (state, _db) = patchops::store::testing::fresh_postgres_url().await;
    let dir = TempDir::new().expect("tmp");
    support::apply_example(dir.path(), &state);
    let server = start_server(&state, dir.path(), &[]);
    let token = register(&server, "wks-test-01").await;
    let cases = [
        (
            status_body("k-nul", "a", "before\0after"),
            "`message` must not contain NUL",
        ),
        (
            status_body("k\u{1b}[2J", "a", ""),
            "messages[0]: `key` must not contain control",
        ),
        (
            status_body("k\r", "a", ""),
            "`key` must not contain control",
        ),
        (
            status_body("k-adv", "a\u{7}", ""),
            "`advertisement` must not contain control",
        ),
        (
            status_body("k-adv0", "a\0", ""),
            "`advertisement` must not contain control",
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = post(&server, "/v1/status", &token, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(expected),
            "{error:?} should say {expected:?}"
        );
    }
    // Free text in a message is stored as sent (escaped when printed).
    let body = status_body("k-esc", "a", "line 1\n\u{1b}[31mred\u{1b}[0m\r\tend");
    let (status, answer) = post(&server, "/v1/status", &token, body).await;
    assert_eq!(
        (status, answer),
        (StatusCode::OK, json!({"accepted": 1, "duplicates": 0}))
    );
    assert_eq!(health(&server).await, StatusCode::OK);
}

/// Defect 3.7: after a short disk-full the SQLite store kept failing
/// writes (`attempted to call begin_with at non-zero transaction depth`)
/// for up to a minute, while `/healthz` said it was up. A real full disk:
/// a small tmpfs (the tests run as root; a failed mount fails the test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_recovers_at_once_after_a_short_disk_full() {
    let dir = TempDir::new().expect("tmp");
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).expect("mount point");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&disk)
        .output()
        .expect("mount runs");
    assert!(
        mounted.status.success(),
        "this test needs to mount a small tmpfs (run as root): {}",
        String::from_utf8_lossy(&mounted.stderr)
    );
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(disk.clone());
    let state = format!("sqlite://{}", disk.join("site.db").display());
    support::apply_example(dir.path(), &state);
    let server = start_server(&state, dir.path(), &[]);
    let token = register(&server, "wks-test-01").await;
    let send = |key: String| {
        let token = token.clone();
        let server = &server;
        async move {
            let body = status_body(&key, "a", &"x".repeat(4000));
            post(server, "/v1/status", &token, body).await
        }
    };
    assert_eq!(send("before".into()).await.0, StatusCode::OK);

    // The disk fills up.
    let filler = disk.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).expect("filler");
        let block = vec![0u8; 64 << 10];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    let mut refused = 0;
    for i in 0..20 {
        let (status, answer) = send(format!("full-{i}")).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            refused += 1;
        } else {
            assert_eq!(status, StatusCode::OK, "{answer}");
        }
    }
    assert!(
        refused > 0,
        "the full disk refused no write\n{}",
        server.log()
    );
    assert_eq!(
        health(&server).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "a store that refuses writes is down"
    );
    let metrics = client()
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("patchops_store_up 0\n"), "{metrics}");

    // Space is back: the very next writes succeed, and health follows.
    std::fs::remove_file(&filler).expect("free the disk");
    for i in 0..10 {
        let (status, answer) = send(format!("after-{i}")).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "write {i} after space was freed: {answer}\n{}",
            server.log()
        );
    }
    assert_eq!(health(&server).await, StatusCode::OK);
    let metrics = client()
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("patchops_store_up 1\n"), "{metrics}");
    drop(server);
}

/// Registration with the enrollment secret took over an enrolled
/// machine: the old agent's token was revoked without a word. Now a
/// machine with a live token is refused (409) until an operator revokes it.
async fn re_registration_needs_a_revoke(state: &str, dir: &Path) {
    let server = start_server(state, dir, &[]);
    let first = register(&server, "wks-test-01").await;

    for name in ["wks-test-01", "WKS-TEST-01"] {
        let (status, body) = post(
            &server,
            "/v1/register",
            ENROLL,
            json!({ "name": name }).to_string().into_bytes(),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{name}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("enrolled already") && error.contains("patchops machine revoke"),
            "{error}"
        );
    }
    assert_eq!(
        get_policy(&server, &first, None).await.0,
        StatusCode::OK,
        "the enrolled agent keeps its token"
    );

    // Two registrations of one new name at once: one token, one 409.
    let attempt = || {
        post(
            &server,
            "/v1/register",
            ENROLL,
            json!({ "name": "wks-race-01" }).to_string().into_bytes(),
        )
    };
    let (a, b) = tokio::join!(attempt(), attempt());
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::CONFLICT],
        "{a:?} {b:?}"
    );

    // Revoked by an operator: the next registration is enrolled.
    let out = patchops()
        .args(["machine", "revoke", "wks-test-01", "--state", state])
        .output()
        .expect("revoke");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        get_policy(&server, &first, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let second = register(&server, "wks-test-01").await;
    assert_ne!(second, first);
    assert_eq!(get_policy(&server, &second, None).await.0, StatusCode::OK);
    assert_eq!(health(&server).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_an_enrolled_machine_is_refused_until_it_is_revoked() {
    let dir = TempDir::new().expect("tmp");
    let state = applied_example(dir.path());
    re_registration_needs_a_revoke(&state, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_an_enrolled_machine_is_refused_until_it_is_revoked_on_postgresql() {
    let (state, _db) = patchops::store::testing::fresh_postgres_url().await;
    let dir = TempDir::new().expect("tmp");
    support::apply_example(dir.path(), &state);
    re_registration_needs_a_revoke(&state, dir.path()).await;
}

/// Status messages are program output and may hold ESC, BEL and CR (the
/// server refuses only NUL in them): `status machine` and `status
/// advertisement` print them escaped, locally and through `--site`, and
/// `--format json` keeps them as they were sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_escapes_in_status_messages_are_printed_escaped() {
    let dir = TempDir::new().expect("tmp");
    let state = applied_example(dir.path());
    let server = start_server(&state, dir.path(), &[]);
    let token = register(&server, "wks-test-01").await;
    let hostile = "done\x1b]0;owned\x07\r\x1b[2K\n  MS Office Updates  succeeded\u{202e}";
    let batch = json!({"messages": [
        {"key": "esc1", "advertisement": "MS Security Updates (Pre-production)", "state": "failed", "exitCode": 1, "message": hostile, "at": "2026-11-25T02:00:00Z"}
    ]});
    let (status, body) = post(
        &server,
        "/v1/status",
        &token,
        batch.to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"accepted": 1, "duplicates": 0}))
    );
    let escaped = "done\\x1b]0;owned\\x07\\r\\x1b[2K\\n  MS Office Updates  succeeded\\u{202e}";
    let env = [("ADMIN_TOKEN", ADMIN)];
    let local = ["--state", state.as_str()];
    let remote = [
        "--site",
        server.base.as_str(),
        "--token-from",
        "env:ADMIN_TOKEN",
    ];
    for place in [&local[..], &remote[..]] {
        for command in [
            &["status", "machine", "wks-test-01"][..],
            &[
                "status",
                "advertisement",
                "MS Security Updates (Pre-production)",
            ][..],
        ] {
            let args: Vec<&str> = command.iter().chain(place).copied().collect();
            let out = run_ok(&args, dir.path(), &env);
            for c in out.chars() {
                assert!(
                    c == '\n' || !patchops::untrusted::is_unsafe(c),
                    "{args:?}: raw {c:?} in:\n{out}"
                );
            }
            let lines: Vec<&str> = out.lines().filter(|l| l.contains("done")).collect();
            assert_eq!(lines.len(), 1, "{args:?}: one line for the message:\n{out}");
            assert!(
                lines[0].contains("failed (exit 1)") && lines[0].ends_with(escaped),
                "{args:?}: {out}"
            );
            assert!(
                !out.lines()
                    .any(|l| l.trim_start().starts_with("MS Office Updates  succeeded")),
                "{args:?}: a forged line:\n{out}"
            );
        }
        let args: Vec<&str> = ["status", "machine", "wks-test-01", "--format", "json"]
            .iter()
            .chain(place)
            .copied()
            .collect();
        let machine: Value = serde_json::from_str(&run_ok(&args, dir.path(), &env)).expect("json");
        assert_eq!(
            machine["messages"][0]["message"], hostile,
            "{args:?}: stored as sent"
        );
    }
}
