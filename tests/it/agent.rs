//! `patchops agent` against the real site server and a real distribution
//! point (both as processes on loopback), and against a stub server that
//! misbehaves. Programs are shell scripts (`sh run.sh`): these are Linux
//! test machines, not Windows clients.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{self, patchops, run_with_limit, Proc};
use serde_json::{json, Value};
use tempfile::TempDir;

const ENROLL: &str = "enroll-secret-for-agent-tests";

/// The program every package of the test site runs. It records that it
/// ran, and the environment decides how it ends.
const RUN_SH: &str = r#"#!/bin/sh
if [ -n "$AGENT_TEST_MARKER" ]; then echo "$PATCHOPS_ADVERTISEMENT" >> "$AGENT_TEST_MARKER"; fi
if [ -n "$AGENT_TEST_SLEEP" ]; then sleep "$AGENT_TEST_SLEEP"; fi
if [ -n "$AGENT_TEST_NUL" ]; then printf 'before\000after\033[2J\n'; fi
code="${AGENT_TEST_EXIT:-0}"
if [ "$code" -gt 255 ]; then echo "$code" > "$PATCHOPS_EXIT_CODE_FILE"; exit 0; fi
exit "$code"
"#;

/// The example site, copied, with programs that run on Linux, short run
/// time limits and DP URLs on loopback; applied to a SQLite state.
struct Site {
    example: support::Site,
    dp: Proc,
    /// The test's one clock: every agent run is at this instant unless
    /// given its own `--now` (read once, when the site is made).
    now: String,
}

impl Site {
    fn new() -> Site {
        let example = support::Site::new();
        let site = example.path("site");
        for package in ["security", "office"] {
            let path = site.join(package).join("package.yaml");
            let text = std::fs::read_to_string(&path).expect("package");
            let text: String = text
                .lines()
                // Scan programs are tested in agent_scan.rs; here every
                // program runs its command line.
                .filter(|l| !l.trim_start().starts_with("scan:"))
                .map(|l| {
                    if let Some(i) = l.find("commandLine:") {
                        format!("{}commandLine: sh run.sh", &l[..i])
                    } else {
                        l.replace("maxRunTime: 1h", "maxRunTime: 4s")
                            .replace("maxRunTime: 30m", "maxRunTime: 4s")
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            std::fs::write(&path, text).expect("write");
        }
        for source in ["security-inventory-tool", "office-inventory-tool"] {
            let path = site.join("packages").join(source).join("run.sh");
            std::fs::write(&path, RUN_SH).expect("run.sh");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("mode");
        }
        let dp = example.apply_with_loopback_dp();
        std::fs::write(
            example.path("facts.json"),
            json!({
                "name": "wks-test-01",
                "domain": "CORP",
                "os": {"name": "Microsoft Windows XP Professional", "type": "workstation",
                       "version": "5.1.2600", "servicePack": 2},
                "architecture": "x86",
                "site": "LAB",
                "installed": {"product": ["Microsoft Office Professional Edition 2003"]},
                "ip": {"address": ["10.1.9.11"], "subnet": ["10.1.9.0"]}
            })
            .to_string(),
        )
        .expect("facts");
        Site {
            example,
            dp,
            now: jiff::Timestamp::now().to_string(),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.example.dir().join(p)
    }

    fn server(&self) -> Proc {
        let mut cmd = patchops();
        cmd.args([
            "server",
            "--state",
            self.example.state(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--enroll-secret-from", "env:TEST_ENROLL"])
        .args(["--token-cache-ttl", "0s", "--refresh", "1s"])
        .env("TEST_ENROLL", ENROLL);
        Proc::start(cmd, &support::log_file(self.example.dir(), "server"))
    }

    /// `patchops agent --once --format json` → (exit code, report, stderr).
    fn agent(&self, server: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, Value, String) {
        self.agent_as("agent", "facts.json", server, args, env)
    }

    /// [`Site::agent`] with its own state directory and facts file.
    fn agent_as(
        &self,
        state_dir: &str,
        facts: &str,
        server: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (i32, Value, String) {
        let mut cmd = patchops();
        cmd.args(["agent", "--once", "--format", "json", "--server", server])
            .args(["--enroll-secret-from", "env:TEST_ENROLL"])
            .arg("--state-dir")
            .arg(self.path(state_dir))
            .arg("--facts")
            .arg(self.path(facts))
            .args(args)
            .args(self.now_unless_given(args))
            .env("TEST_ENROLL", ENROLL)
            .env("AGENT_TEST_MARKER", self.path("ran.txt"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = run_with_limit(cmd, Duration::from_secs(90));
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!("stdout is not one JSON report ({e}):\n{stdout}\nstderr:\n{stderr}")
        });
        (out.status.code().expect("exit code"), report, stderr)
    }

    /// `--now` at the test's instant, unless `args` name their own.
    fn now_unless_given<'a>(&'a self, args: &[&str]) -> Vec<&'a str> {
        if args.contains(&"--now") {
            vec![]
        } else {
            vec!["--now", &self.now]
        }
    }

    fn ran(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("ran.txt"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// A counter of the server's `/metrics`.
async fn metric(base: &str, name: &str) -> u64 {
    patchops::tls::install_default_provider();
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

fn runs(report: &Value) -> Vec<Value> {
    report["runs"].as_array().cloned().unwrap_or_default()
}

fn states(report: &Value) -> Vec<String> {
    runs(report)
        .iter()
        .map(|r| r["state"].as_str().unwrap_or_default().to_string())
        .collect()
}

const PRE_PRODUCTION: &str = "MS Security Updates (Pre-production)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_downloads_verifies_runs_and_reports() {
    let site = Site::new();
    let server = site.server();
    let (code, report, stderr) = site.agent(&server.base, &[], &[]);
    assert_eq!(code, 0, "{report}\n{stderr}");
    assert_eq!(report["machine"], "wks-test-01");
    assert_eq!(report["registered"], true);
    assert_eq!(report["inventorySent"], true);
    assert_eq!(report["policy"], "new");
    assert_eq!(report["errors"], json!([]), "{report}");
    let done = runs(&report);
    let pre = done
        .iter()
        .find(|r| r["advertisement"] == PRE_PRODUCTION)
        .unwrap_or_else(|| panic!("the pre-production advertisement ran: {report}"));
    assert_eq!(pre["state"], "succeeded", "{report}");
    assert_eq!(pre["exitCode"], 0);
    assert!(states(&report).iter().all(|s| s == "succeeded"), "{report}");
    // The programs really ran, once each.
    let mut ran = site.ran();
    ran.sort();
    let mut names: Vec<String> = done
        .iter()
        .map(|r| r["advertisement"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(ran, names);
    // accepted, downloading, downloaded, running, succeeded: five each.
    let delivered = report["delivered"].as_u64().unwrap();
    assert_eq!(delivered, 5 * done.len() as u64, "{report}");
    assert_eq!(report["queued"], 0);
    assert_eq!(
        metric(&server.base, "patchops_status_messages_total").await,
        delivered
    );
    assert_eq!(
        metric(&server.base, "patchops_registrations_total").await,
        1
    );

    // The token is private and never printed.
    let token_path = site.path("agent/token");
    let mode = std::fs::metadata(&token_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&token_path).unwrap();
    assert!(!report.to_string().contains(token.trim()) && !stderr.contains(token.trim()));
    // The content cache holds verified files; the work directory is gone.
    assert!(
        std::fs::read_dir(site.path("agent/content"))
            .unwrap()
            .count()
            > 0
    );
    assert_eq!(
        std::fs::read_dir(site.path("agent/runs")).unwrap().count(),
        0
    );

    // A second cycle: 304, nothing due, nothing sent twice.
    let (code, again, _) = site.agent(&server.base, &[], &[]);
    assert_eq!(code, 0);
    assert_eq!(again["policy"], "unchanged", "{again}");
    assert_eq!(again["registered"], false);
    assert_eq!(runs(&again).len(), 0, "{again}");
    assert!(again["nextDue"].is_string(), "{again}");
    assert_eq!(
        metric(&server.base, "patchops_status_messages_total").await,
        delivered
    );
    drop(site.dp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_file_on_the_dp_is_refused_and_nothing_runs() {
    let site = Site::new();
    let server = site.server();
    // Same sizes, other bytes: only the hashes can tell.
    for entry in walk(&site.path("dp/dp-hq/files")) {
        let len = std::fs::metadata(&entry).unwrap().len() as usize;
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&entry, vec![b'#'; len]).unwrap();
    }
    let (code, report, stderr) = site.agent(&server.base, &[], &[]);
    assert_eq!(
        code, 0,
        "a failed program is status, not an agent failure: {stderr}"
    );
    assert!(!runs(&report).is_empty(), "{report}");
    for run in runs(&report) {
        let message = run["message"].as_str().unwrap();
        assert!(
            ["failed", "retrying"].contains(&run["state"].as_str().unwrap()),
            "{run}"
        );
        assert!(message.contains("hash mismatch"), "{message}");
        assert!(message.contains("dp-hq: "), "{message}");
        if run["advertisement"] == PRE_PRODUCTION {
            // Its remote action is downloadAndRun: the remote DP was
            // tried too (nothing listens there).
            assert!(message.contains("dp-branch: "), "{report}");
        }
    }
    assert!(site.ran().is_empty(), "nothing ran: {:?}", site.ran());
    // The tampered download was deleted, not cached.
    let cached: Vec<_> = walk(&site.path("agent/content"));
    assert!(cached.is_empty(), "{cached:?}");
    assert!(metric(&server.base, "patchops_status_messages_total").await > 0);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_3010_is_restart_pending_and_runs_the_hook() {
    let site = Site::new();
    let server = site.server();
    let marker = site.path("restart-requested.txt");
    let hook = format!(
        "sh -c \"echo $PATCHOPS_ADVERTISEMENT >> '{}'\"",
        marker.display()
    );
    let (code, report, stderr) = site.agent(
        &server.base,
        &["--restart-hook", &hook],
        &[("AGENT_TEST_EXIT", "3010")],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(!runs(&report).is_empty());
    for run in runs(&report) {
        assert_eq!(run["state"], "restartPending", "{run}");
        assert_eq!(run["exitCode"], 3010);
        assert!(
            run["message"]
                .as_str()
                .unwrap()
                .contains("restart hook ran"),
            "{run}"
        );
    }
    let hooked = std::fs::read_to_string(&marker).expect("the hook ran");
    assert_eq!(hooked.lines().count(), runs(&report).len(), "{hooked}");
    assert!(hooked.contains(PRE_PRODUCTION));
}

/// The example's software update package, made runnable here: one update
/// (MS01-036) installed by `sh run.sh`, its files put into the source by
/// hand (`download: false`) and recorded, advertised to All Systems as
/// soon as possible; then applied again so it is distributed and in policy.
/// Its installation agent settings stay the example's: servers postpone
/// the restart, a 5-minute countdown, then restart; users are prompted and
/// may postpone by 24 hours; inventory after install.
fn with_runnable_update_package(site: &Site) {
    let manifest = site.path("site/software-updates/security-2026-11.yaml");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let start = text.find("  updates:\n").expect("updates");
    let end = text.find("  source:").expect("source");
    let text = format!(
        "{}  updates:\n    - {{ bulletin: MS01-036, commandLine: sh run.sh }}\n{}",
        &text[..start],
        &text[end..]
    )
    .replace("download: true", "download: false")
    // The stand-in update is not a signed Windows executable.
    .replace("verifySignature: true", "verifySignature: false")
    .replace(
        "collection: MS Security Updates (Pre-production)",
        "collection: All Systems",
    )
    .replace(
        "- { start: 2026-11-26T02:00:00Z }",
        "- { event: asSoonAsPossible }",
    );
    std::fs::write(&manifest, text).expect("write");
    let source = site.path("site/sources/security-2026-11");
    std::fs::create_dir_all(&source).expect("source");
    std::fs::write(
        source.join("Q299687_W2K_SP3_x86_en.EXE"),
        "a stand-in update\n",
    )
    .expect("file");
    std::fs::write(source.join("run.sh"), RUN_SH).expect("run.sh");
    std::fs::copy(
        support::repo().join("tests/fixtures/mssecure.xml"),
        site.path("site/packages/security-inventory-tool/mssecure.xml"),
    )
    .expect("catalog");
    for args in [
        vec![
            "updates",
            "download",
            "site",
            "--state",
            site.example.state(),
        ],
        vec![
            "apply",
            "site",
            "--auto-approve",
            "--state",
            site.example.state(),
        ],
    ] {
        let out = patchops()
            .current_dir(site.example.dir())
            .args(&args)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

const UPDATE_PACKAGE: &str = "Security Updates 2026-11";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_installs_postpone_the_restart_on_servers_and_run_the_hook_on_workstations() {
    let site = Site::new();
    with_runnable_update_package(&site);
    let server = site.server();
    let hooked = site.path("hook.txt");
    let hook_sh = site.path("hook.sh");
    std::fs::write(
        &hook_sh,
        format!(
            "echo \"$PATCHOPS_ADVERTISEMENT|$PATCHOPS_RESTART_COUNTDOWN_SECONDS|$PATCHOPS_AFTER_COUNTDOWN|$PATCHOPS_PROMPT_USER|$PATCHOPS_ALLOW_POSTPONE_SECONDS|${{PATCHOPS_NOTICE_FILE:+$(cat \"$PATCHOPS_NOTICE_FILE\")}}\" >> '{}'\n",
            hooked.display()
        ),
    )
    .expect("hook");
    let hook = format!("sh {}", hook_sh.display());
    let hook_lines = || -> Vec<String> {
        std::fs::read_to_string(&hooked)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(UPDATE_PACKAGE))
            .map(str::to_string)
            .collect()
    };
    let update_run = |report: &Value| -> Value {
        runs(report)
            .into_iter()
            .find(|r| r["advertisement"] == UPDATE_PACKAGE)
            .unwrap_or_else(|| panic!("the update package did not run: {report}"))
    };
    let inventories = "patchops_http_requests_total{route=\"/v1/inventory\",status=\"200\"}";

    // A server: the restart is postponed, the hook does not run for it.
    std::fs::write(
        site.path("server-facts.json"),
        json!({
            "name": "srv-test-01",
            "os": {"name": "Microsoft Windows Server 2003, Standard Edition", "type": "server",
                   "version": "5.2.3790", "servicePack": 1},
            "architecture": "x86",
            "ip": {"address": ["10.1.9.12"], "subnet": ["10.1.9.0"]}
        })
        .to_string(),
    )
    .expect("facts");
    let (code, report, stderr) = site.agent_as(
        "agent-srv",
        "server-facts.json",
        &server.base,
        &["--restart-hook", &hook],
        &[("AGENT_TEST_EXIT", "3010")],
    );
    assert_eq!(code, 0, "{stderr}");
    let run = update_run(&report);
    assert_eq!(run["state"], "restartPending", "{run}");
    assert_eq!(run["exitCode"], 3010);
    let message = run["message"].as_str().unwrap();
    assert!(
        message
            .starts_with("restart postponed (postponeRestart: servers; this machine is a server)"),
        "{message}"
    );
    assert_eq!(hook_lines(), Vec::<String>::new());
    // The inventory went at start and again after the install.
    assert_eq!(report["inventoryAfterInstall"], true, "{report}");
    assert_eq!(metric(&server.base, inventories).await, 2);

    // A workstation: the hook runs with the countdown, what comes after
    // it, the notification and the notice.
    let (code, report, stderr) = site.agent(
        &server.base,
        &["--restart-hook", &hook],
        &[("AGENT_TEST_EXIT", "3010")],
    );
    assert_eq!(code, 0, "{stderr}");
    let run = update_run(&report);
    assert_eq!(run["state"], "restartPending", "{run}");
    assert!(
        run["message"]
            .as_str()
            .unwrap()
            .contains("the restart hook ran"),
        "{run}"
    );
    assert_eq!(
        hook_lines(),
        [format!(
            "{UPDATE_PACKAGE}|300|restart|1|86400|Contoso IT installs the November 2026 security updates. Save your work: your computer may restart."
        )]
    );
    assert_eq!(report["inventoryAfterInstall"], true, "{report}");
    assert_eq!(metric(&server.base, inventories).await, 4);
    drop(site.dp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_over_its_max_run_time_is_killed() {
    let site = Site::new();
    let server = site.server();
    let started = Instant::now();
    let (code, report, stderr) = site.agent(&server.base, &[], &[("AGENT_TEST_SLEEP", "60")]);
    assert_eq!(code, 0, "{stderr}");
    let n = runs(&report).len();
    assert!(n > 0);
    // 4 s each, not 60.
    assert!(
        started.elapsed() < Duration::from_secs(10 * n as u64),
        "{:?}",
        started.elapsed()
    );
    for run in runs(&report) {
        assert_eq!(run["state"], "retrying", "rerun: always retries: {run}");
        assert!(
            run["message"]
                .as_str()
                .unwrap()
                .contains("exceeding its maximum run time of 4 s"),
            "{run}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_queued_while_the_server_is_down_are_stored_exactly_once() {
    let site = Site::new();
    let server = site.server();
    // One clock for every run: the site's now, and a week after it.
    let now: jiff::Timestamp = site.now.parse().unwrap();
    let week_later = (now + jiff::SignedDuration::from_hours(7 * 24)).to_string();
    let (code, first, _) = site.agent(&server.base, &[], &[]);
    assert_eq!((code, first["queued"].as_u64()), (0, Some(0)), "{first}");
    assert!(!runs(&first).is_empty(), "{first}");
    let dead = server.base.clone();
    drop(server);

    // A week later the weekly schedules are due again; the server is down.
    let later = ["--now", week_later.as_str()];
    let (code, offline, _) = site.agent(&dead, &later, &[]);
    assert_eq!(code, 0, "{offline}");
    assert_eq!(offline["policy"], "kept", "{offline}");
    let errors = offline["errors"].to_string();
    assert!(errors.contains("cannot reach the server"), "{errors}");
    assert!(!runs(&offline).is_empty(), "{offline}");
    let queued = offline["queued"].as_u64().unwrap();
    assert_eq!(queued, 5 * runs(&offline).len() as u64);
    let queue = site.path("agent/queue.jsonl");
    let saved = std::fs::read(&queue).unwrap();
    assert_eq!(saved.iter().filter(|b| **b == b'\n').count() as u64, queued);

    // The server is back (a new process, same store).
    let server = site.server();
    let (code, back, _) = site.agent(&server.base, &later, &[]);
    assert_eq!(code, 0);
    assert_eq!(runs(&back).len(), 0, "nothing is due again: {back}");
    assert_eq!(
        (back["delivered"].as_u64(), back["queued"].as_u64()),
        (Some(queued), Some(0))
    );
    assert_eq!(
        metric(&server.base, "patchops_status_messages_total").await,
        queued
    );

    // A crash between the server's answer and the removal: sent again,
    // stored once.
    std::fs::write(&queue, &saved).unwrap();
    let (_, again, _) = site.agent(&server.base, &later, &[]);
    assert_eq!(again["delivered"].as_u64(), Some(queued));
    assert_eq!(
        metric(&server.base, "patchops_status_messages_total").await,
        queued
    );
    assert_eq!(
        metric(&server.base, "patchops_status_duplicates_total").await,
        queued
    );
}

// ---------------------------------------------------------------------------
// A stub server that misbehaves on purpose.

mod stub {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use axum::body::Body;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::Response;
    use axum::routing::{get, post};
    use axum::Router;

    pub const VALID: usize = 0;
    pub const MALFORMED: usize = 1;
    pub const OVERSIZE: usize = 2;
    pub const HANG: usize = 3;
    pub const UNAUTHORIZED_ONCE: usize = 4;

    #[derive(Default)]
    pub struct Stub {
        pub mode: AtomicUsize,
        pub registrations: AtomicUsize,
        pub refused: AtomicUsize,
    }

    pub const POLICY: &str = r#"{"machine":"wks-test-01","version":1,"format":"patchops-policy/v1","client":{"pollingIntervalSeconds":60,"jitterSeconds":0,"heartbeatIntervalSeconds":600},"assignments":[],"programs":[]}"#;

    async fn register(State(s): State<Arc<Stub>>) -> Response {
        let n = s.registrations.fetch_add(1, Ordering::SeqCst);
        Response::new(Body::from(format!(
            r#"{{"machine":"wks-test-01","token":"t{n}"}}"#
        )))
    }

    async fn ok() -> Response {
        Response::new(Body::from(r#"{"accepted":0,"duplicates":0}"#))
    }

    async fn policy(State(s): State<Arc<Stub>>, headers: HeaderMap) -> Response {
        match s.mode.load(Ordering::SeqCst) {
            MALFORMED => Response::new(Body::from("{\"machine\": \"wks-test-01\", \"vers")),
            OVERSIZE => Response::new(Body::from(vec![b' '; 17 << 20])),
            HANG => {
                tokio::time::sleep(Duration::from_secs(120)).await;
                Response::new(Body::from(POLICY))
            }
            UNAUTHORIZED_ONCE
                if headers
                    .get("authorization")
                    .is_some_and(|v| v.as_bytes() == b"Bearer t0") =>
            {
                s.refused.fetch_add(1, Ordering::SeqCst);
                let mut r = Response::new(Body::from(r#"{"error":"revoked"}"#));
                *r.status_mut() = StatusCode::UNAUTHORIZED;
                r
            }
            _ => {
                let mut r = Response::new(Body::from(POLICY));
                r.headers_mut().insert("etag", "\"1-abc\"".parse().unwrap());
                r
            }
        }
    }

    pub async fn start() -> (String, Arc<Stub>) {
        let stub = Arc::new(Stub::default());
        let app = Router::new()
            .route("/v1/register", post(register))
            .route("/v1/inventory", post(ok))
            .route("/v1/status", post(ok))
            .route("/v1/policy", get(policy))
            .with_state(stub.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}"), stub)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_server_is_a_clear_error_and_the_policy_is_kept() {
    use std::sync::atomic::Ordering;
    let (base, stub) = stub::start().await;
    let dir = TempDir::new().unwrap();
    let agent = |mode: usize| {
        stub.mode.store(mode, Ordering::SeqCst);
        let mut cmd = patchops();
        cmd.args(["agent", "--once", "--format", "json", "--server", &base])
            .args([
                "--enroll-secret-from",
                "env:TEST_ENROLL",
                "--name",
                "wks-test-01",
            ])
            .args(["--timeout", "2s"])
            .arg("--state-dir")
            .arg(dir.path().join("agent"))
            .env("TEST_ENROLL", ENROLL);
        let started = Instant::now();
        let out = tokio::task::block_in_place(|| run_with_limit(cmd, Duration::from_secs(60)));
        let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
        (out.status.code(), report, started.elapsed())
    };
    let (code, report, _) = agent(stub::VALID);
    assert_eq!(
        (code, report["policy"].as_str()),
        (Some(0), Some("new")),
        "{report}"
    );

    let (code, report, _) = agent(stub::MALFORMED);
    assert_eq!(
        (code, report["policy"].as_str()),
        (Some(0), Some("kept")),
        "{report}"
    );
    assert!(
        report["errors"]
            .to_string()
            .contains("policy: malformed answer"),
        "{report}"
    );

    let (code, report, _) = agent(stub::OVERSIZE);
    assert_eq!(
        (code, report["policy"].as_str()),
        (Some(0), Some("kept")),
        "{report}"
    );
    assert!(
        report["errors"]
            .to_string()
            .contains("larger than 16777216 bytes"),
        "{report}"
    );

    let (code, report, took) = agent(stub::HANG);
    assert_eq!(
        (code, report["policy"].as_str()),
        (Some(0), Some("kept")),
        "{report}"
    );
    assert!(
        report["errors"]
            .to_string()
            .contains("did not answer within 2 s"),
        "{report}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");

    // The stored policy is still the good one.
    let stored: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("agent/policy.json")).unwrap())
            .unwrap();
    assert_eq!(stored["etag"], "\"1-abc\"");

    // A 401 re-registers once and retries.
    let (code, report, _) = agent(stub::UNAUTHORIZED_ONCE);
    assert_eq!(code, Some(0));
    assert_eq!(stub.refused.load(Ordering::SeqCst), 1, "{report}");
    assert_eq!(stub.registrations.load(Ordering::SeqCst), 2);
    assert_eq!(report["errors"], json!([]), "{report}");
}

#[test]
fn configuration_errors_exit_1() {
    let dir = TempDir::new().unwrap();
    let out = patchops()
        .args(["agent", "--once", "--server", "http://127.0.0.1:9"])
        .args(["--enroll-secret-from", "env:NOPE", "--facts"])
        .arg(dir.path().join("missing.json"))
        .arg("--state-dir")
        .arg(dir.path().join("agent"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--facts"));
    let out = patchops()
        .args(["agent", "--once", "--server", "ftp://x", "--name", "a"])
        .args(["--enroll-secret-from", "env:NOPE", "--state-dir"])
        .arg(dir.path().join("agent"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = patchops()
        .args([
            "agent",
            "--once",
            "--server",
            "http://127.0.0.1:9",
            "--name",
            "a",
        ])
        .args([
            "--enroll-secret-from",
            "env:NOPE",
            "--restart-hook",
            "\"unterminated",
        ])
        .arg("--state-dir")
        .arg(dir.path().join("agent"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_once_it_loops_until_sigterm() {
    let (base, _stub) = stub::start().await;
    let dir = TempDir::new().unwrap();
    let mut child = patchops()
        .args(["agent", "--format", "json", "--server", &base])
        .args([
            "--enroll-secret-from",
            "env:TEST_ENROLL",
            "--name",
            "wks-test-01",
        ])
        .arg("--state-dir")
        .arg(dir.path().join("agent"))
        .env("TEST_ENROLL", ENROLL)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let first = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let report: Value = serde_json::from_str(first.trim()).expect("a report per cycle");
    assert_eq!(report["policy"], "new");
    // SAFETY: signals the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no exit on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The server behind a TLS-terminating forwarder whose certificate a
/// private CA issued: the agent refuses it (clear errors for an untrusted
/// CA, another host's certificate and an expired one) until `--ca-file`
/// names the CA; then it registers, downloads and runs over https.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_server_is_trusted_only_with_its_ca_file() {
    let site = Site::new();
    let server = site.server();
    let backend: std::net::SocketAddr = server
        .base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("server address");
    let ca = support::TestCa::new();
    let ca_file = site.path("private-ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let ca_arg = ca_file.to_str().unwrap().to_string();
    let front = |names: &[&str], expired: bool| {
        let addr = support::tls_forwarder(backend, &ca.issue(names, expired));
        format!("https://127.0.0.1:{}", addr.port())
    };
    let good = front(&["127.0.0.1", "localhost"], false);
    let errors = |report: &Value| report["errors"].to_string();

    // The system's roots do not hold the private CA: refused, nothing sent.
    let (code, report, stderr) =
        tokio::task::block_in_place(|| site.agent(&good, &["--timeout", "5s"], &[]));
    assert_eq!(code, 0, "{report}\n{stderr}");
    assert_eq!(report["registered"], false, "{report}");
    assert!(
        errors(&report).contains("certificate is not trusted"),
        "{report}"
    );
    assert!(errors(&report).contains("--ca-file"), "{report}");
    assert_eq!(
        metric(&server.base, "patchops_registrations_total").await,
        0
    );

    // Trusted CA, but a certificate for another host, or an expired one.
    for (url, expected) in [
        (
            front(&["dp.other.example"], false),
            "not valid for this host name",
        ),
        (front(&["127.0.0.1"], true), "has expired"),
    ] {
        let (code, report, _) = tokio::task::block_in_place(|| {
            site.agent(&url, &["--timeout", "5s", "--ca-file", &ca_arg], &[])
        });
        assert_eq!(code, 0);
        assert_eq!(report["registered"], false, "{report}");
        assert!(errors(&report).contains(expected), "{expected}: {report}");
    }

    // With the CA file: registered over https, policy, runs, status.
    let (code, report, stderr) =
        tokio::task::block_in_place(|| site.agent(&good, &["--ca-file", &ca_arg], &[]));
    assert_eq!(code, 0, "{report}\n{stderr}");
    assert_eq!(report["registered"], true, "{report}");
    assert_eq!(report["policy"], "new", "{report}");
    assert_eq!(report["errors"], json!([]), "{report}");
    assert!(!runs(&report).is_empty(), "{report}");
    assert!(states(&report).iter().all(|s| s == "succeeded"), "{report}");
    assert_eq!(
        metric(&server.base, "patchops_registrations_total").await,
        1
    );

    // A CA file that holds no certificate is a configuration error.
    let bad = site.path("not-a-ca.pem");
    std::fs::write(&bad, "hello\n").unwrap();
    let mut cmd = patchops();
    cmd.args(["agent", "--once", "--server", &good])
        .args(["--enroll-secret-from", "env:TEST_ENROLL"])
        .arg("--state-dir")
        .arg(site.path("agent"))
        .arg("--facts")
        .arg(site.path("facts.json"))
        .arg("--ca-file")
        .arg(&bad)
        .env("TEST_ENROLL", ENROLL);
    let out = run_with_limit(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not-a-ca.pem"), "{stderr}");
    assert!(stderr.contains("holds no certificate"), "{stderr}");
    drop(site.dp);
}

/// Defect 3.6: a program that printed a NUL and failed made a status
/// message PostgreSQL cannot store; the server answered 503 and the agent
/// sent it again forever, blocking its queue. Now the agent makes the
/// output storable, and drops a message the server refuses as invalid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_printing_a_nul_and_failing_is_stored_on_postgresql_and_the_queue_empties() {
    let site = Site::new();
    let (state, _db) = patchops::store::testing::fresh_postgres_url().await;
    let out = patchops()
        .current_dir(site.example.dir())
        .args(["apply", "site", "--auto-approve", "--state", &state])
        .output()
        .expect("apply");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cmd = patchops();
    cmd.args(["server", "--state", &state, "--listen", "127.0.0.1:0"])
        .args(["--enroll-secret-from", "env:TEST_ENROLL"])
        .args(["--token-cache-ttl", "0s", "--refresh", "1s"])
        .env("TEST_ENROLL", ENROLL);
    let server = Proc::start(cmd, &site.path("server-pg.log"));

    let env = [("AGENT_TEST_NUL", "1"), ("AGENT_TEST_EXIT", "1")];
    let (_, report, stderr) = site.agent(&server.base, &[], &env);
    assert!(!runs(&report).is_empty(), "{report}");
    assert!(
        states(&report)
            .iter()
            .all(|s| s == "failed" || s == "retrying"),
        "{report}"
    );
    assert_eq!(report["queued"], 0, "{report}\n{stderr}");
    assert!(report["delivered"].as_u64().unwrap() > 0, "{report}");
    let store = patchops::store::Store::open(&state).await.expect("store");
    let stored = store
        .status_for_machine("wks-test-01", 1000)
        .await
        .expect("status");
    let output: Vec<_> = stored
        .iter()
        .filter(|m| m.message.contains("before"))
        .collect();
    assert!(!output.is_empty(), "{stored:?}");
    for m in &output {
        assert_eq!(m.exit_code, Some(1));
        assert!(
            m.message.contains("before\u{FFFD}after\u{1b}[2J"),
            "{:?}",
            m.message
        );
    }

    // A message the server refuses (queued by an agent without the
    // sanitizing, here written into the queue) is dropped with a warning;
    // the good one behind it is delivered.
    let queue = site.path("agent/queue.jsonl");
    let line = |key: &str, message: &str| {
        json!({"key": key, "advertisement": PRE_PRODUCTION, "state": "failed",
               "exitCode": 1, "message": message, "at": "2026-11-25T00:00:00Z"})
        .to_string()
    };
    std::fs::write(
        &queue,
        format!(
            "{}\n{}\n",
            line("old/1-failed", "a\0b"),
            line("old/2-failed", "fine")
        ),
    )
    .expect("queue");
    let (_, report, stderr) = site.agent(&server.base, &[], &[]);
    assert_eq!(report["queued"], 0, "{report}\n{stderr}");
    assert!(
        stderr.contains("dropping a status message the server refused")
            && stderr.contains("old/1-failed"),
        "{stderr}"
    );
    let stored = store
        .status_for_machine("wks-test-01", 1000)
        .await
        .expect("status");
    let keys: Vec<&str> = stored.iter().map(|m| m.key.as_str()).collect();
    assert!(
        keys.contains(&"old/2-failed") && !keys.contains(&"old/1-failed"),
        "{keys:?}"
    );
    drop(server);
}
