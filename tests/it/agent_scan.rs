//! Scanning end to end: the example site applied (its security inventory
//! programs declare `scan: {catalog: mssecure.xml, type: security}`, and
//! the package ships the fixture catalog), the real site server and
//! distribution point on loopback, and agents as processes whose scan facts
//! make MS00-048 installed, missing or not applicable. The agents download
//! and verify the package, scan with the built-in engine, report patch
//! states (`POST /v1/patch-states`), and `status updates` / `status machine`
//! show the compliance — locally and through `--site`. Also: a report kept
//! while the server is down and delivered later, a scan without scan facts,
//! and the refusals of the patch-state route.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::{self, patchops, run_with_limit, Proc};
use serde_json::{json, Value};

const ENROLL: &str = "enroll-secret-for-scan-tests";
const ADMIN: &str = "admin-token-for-scan-tests";
const PRODUCTION: &str = "MS Security Updates";

/// The example site with the DP on loopback, applied to a SQLite state,
/// and the DP serving it.
struct Site {
    example: support::Site,
    _dp: Proc,
    /// The test's one clock: every agent run is at this instant unless
    /// given its own `--now` (read once, when the site is made).
    now: String,
}

impl Site {
    fn new() -> Site {
        let example = support::Site::new();
        let dp = example.apply_with_loopback_dp();
        Site {
            example,
            _dp: dp,
            now: jiff::Timestamp::now().to_string(),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.example.dir().join(p)
    }

    fn server(&self, extra: &[&str]) -> Proc {
        let mut cmd = patchops();
        cmd.args([
            "server",
            "--state",
            self.example.state(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--enroll-secret-from", "env:TEST_ENROLL"])
        .args(["--admin-token-from", "env:TEST_ADMIN"])
        .args(["--token-cache-ttl", "0s", "--refresh", "1s"])
        .args(extra)
        .env("TEST_ENROLL", ENROLL)
        .env("TEST_ADMIN", ADMIN);
        Proc::start(cmd, &support::log_file(self.example.dir(), "server"))
    }

    /// Writes a machine's inventory facts and scan facts; `sql` is the
    /// version of MS00-048's files, None for a machine without SQL Server.
    fn machine(&self, name: &str, sql: Option<&str>) {
        std::fs::write(
            self.path(&format!("{name}.facts.json")),
            json!({
                "name": name,
                "os": {"name": "Microsoft Windows XP Professional", "type": "workstation",
                       "version": "5.1.2600", "servicePack": 2},
                "architecture": "x86",
                "ip": {"address": ["10.1.9.21"], "subnet": ["10.1.9.0"]}
            })
            .to_string(),
        )
        .expect("facts");
        std::fs::write(
            self.path(&format!("{name}.scan.json")),
            scan_facts(name, sql),
        )
        .expect("scan facts");
    }

    /// `patchops agent --once --format json` for machine `name` →
    /// (exit code, report, stderr).
    fn agent(&self, server: &str, name: &str, args: &[&str]) -> (i32, Value, String) {
        let mut cmd = patchops();
        cmd.args(["agent", "--once", "--format", "json", "--server", server])
            .args(["--enroll-secret-from", "env:TEST_ENROLL"])
            .arg("--state-dir")
            .arg(self.path(&format!("agent-{name}")))
            .arg("--facts")
            .arg(self.path(&format!("{name}.facts.json")))
            .args(args)
            .args(if args.contains(&"--now") {
                vec![]
            } else {
                vec!["--now", self.now.as_str()]
            })
            .env("TEST_ENROLL", ENROLL);
        let out = run_with_limit(cmd, Duration::from_secs(120));
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!("stdout is not one JSON report ({e}):\n{stdout}\nstderr:\n{stderr}")
        });
        (out.status.code().expect("exit code"), report, stderr)
    }

    /// An agent with `--scan-facts` (the machine's file).
    fn scanning_agent(&self, server: &str, name: &str, extra: &[&str]) -> (i32, Value, String) {
        let scan = self.path(&format!("{name}.scan.json"));
        let mut args = vec!["--scan-facts", scan.to_str().expect("path")];
        args.extend_from_slice(extra);
        self.agent(server, name, &args)
    }

    /// Runs `patchops ARGS` in the test directory → (code, stdout, stderr).
    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = patchops()
            .current_dir(self.example.dir())
            .args(args)
            .env("TEST_ADMIN", ADMIN)
            .output()
            .expect("run");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `status updates --format json`, against the store or `--site`.
    fn updates(&self, site: Option<&str>) -> Value {
        let mut args = vec!["status", "updates", "--format", "json"];
        match site {
            Some(url) => args.extend(["--site", url, "--token-from", "env:TEST_ADMIN"]),
            None => args.extend(["--state", self.example.state()]),
        }
        let (code, out, err) = self.cli(&args);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).expect("json")
    }

    fn machine_status(&self, name: &str, site: Option<&str>) -> Value {
        let mut args = vec!["status", "machine", name, "--format", "json"];
        match site {
            Some(url) => args.extend(["--site", url, "--token-from", "env:TEST_ADMIN"]),
            None => args.extend(["--state", self.example.state()]),
        }
        let (code, out, err) = self.cli(&args);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).expect("json")
    }
}

/// Scan facts (`docs/scan-facts.md`): SQL Server 7.0 SP2 with MS00-048's
/// three files at `sql`'s version (2000.11.20.0 is the fix), or no product.
fn scan_facts(machine: &str, sql: Option<&str>) -> String {
    let Some(version) = sql else {
        return json!({"machine": machine}).to_string();
    };
    let dir = r"%CommonProgramFiles%\Microsoft Shared\Database Replication";
    let files: Vec<Value> = ["replres.DLL", "xprepl.dll", "xpstar.DLL"]
        .iter()
        .map(|f| json!({"location": dir, "name": f, "version": version}))
        .collect();
    json!({
        "machine": machine,
        "products": [{"product": "SQL Server 7.0", "servicePack": "SQL Server 7.0 SP2"}],
        "files": files
    })
    .to_string()
}

fn bulletin<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["bulletins"]
        .as_array()
        .expect("bulletins")
        .iter()
        .find(|b| b["bulletin"] == id)
        .unwrap_or_else(|| panic!("no {id} in {doc}"))
}

fn counts(b: &Value) -> (u64, u64, u64, u64) {
    let n = |k: &str| b[k].as_u64().unwrap_or_else(|| panic!("{k} in {b}"));
    (
        n("installed"),
        n("missing"),
        n("notApplicable"),
        n("unknown"),
    )
}

fn run_of<'a>(report: &'a Value, advertisement: &str) -> &'a Value {
    report["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .find(|r| r["advertisement"] == advertisement)
        .unwrap_or_else(|| panic!("no run of {advertisement}: {report}"))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_report_patch_states_and_status_shows_compliance() {
    let site = Site::new();
    let server = site.server(&[]);
    site.machine("wks-a", Some("2000.11.20.0"));
    site.machine("wks-b", Some("2000.11.19.0"));
    site.machine("wks-c", None);

    for name in ["wks-a", "wks-b", "wks-c"] {
        let (code, report, stderr) = site.scanning_agent(&server.base, name, &[]);
        assert_eq!(code, 0, "{report}\n{stderr}");
        assert_eq!(report["errors"], json!([]), "{report}");
        let run = run_of(&report, PRODUCTION);
        assert_eq!(run["state"], "succeeded", "{report}");
        let message = run["message"].as_str().unwrap();
        assert!(
            message.contains("patch states from mssecure.xml"),
            "{message}"
        );
        assert_eq!(report["scansDelivered"], 1, "{report}");
        assert_eq!(report["scansQueued"], 0, "{report}");
        // Nothing waits in the state directory once delivered.
        let pending = std::fs::read_dir(site.path(&format!("agent-{name}/scans")))
            .unwrap()
            .count();
        assert_eq!(pending, 0);
    }
    assert_eq!(
        metric(&server.base, "patchops_patch_state_reports_total").await,
        3
    );

    // Compliance over the three machines.
    let all = site.updates(None);
    assert_eq!(all["machines"], 3, "{all}");
    let scans = all["scans"].as_array().expect("scans");
    assert_eq!(scans.len(), 1, "{all}");
    assert_eq!(scans[0]["scanAgent"], "patchops-mssecure");
    assert_eq!(scans[0]["machines"], 3);
    let b = bulletin(&all, "MS00-048");
    assert_eq!(counts(b), (1, 1, 1, 0), "{b}");
    assert_eq!(b["percentCompliant"].as_f64(), Some(50.0), "{b}");
    assert_eq!(b["scanAgents"], json!(["patchops-mssecure"]));
    assert!(b["lastScan"].as_str().unwrap().ends_with('Z'), "{b}");
    // A bulletin none of them has: not applicable everywhere, no %.
    let b = bulletin(&all, "MS98-001");
    assert_eq!(counts(b), (0, 0, 3, 0), "{b}");
    assert!(b["percentCompliant"].is_null());

    // One machine's patch state.
    let m = site.machine_status("wks-b", None);
    let p = &m["patchStates"];
    assert_eq!(p["scans"][0]["scanAgent"], "patchops-mssecure", "{m}");
    assert!(p["counts"]["missing"].as_u64().unwrap() >= 1, "{p}");
    let state = p["states"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["bulletin"] == "MS00-048" && s["product"] == "SQL Server 7.0")
        .unwrap_or_else(|| panic!("MS00-048 in {p}"));
    assert_eq!(state["status"], "missing");
    assert!(
        state["reason"].as_str().unwrap().contains("2000.11.19.0"),
        "{state}"
    );
    let (code, human, err) = site.cli(&[
        "status",
        "machine",
        "WKS-B",
        "--state",
        site.example.state(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(human.contains("patch states:"), "{human}");
    assert!(
        human.contains("scanned by patchops-mssecure at "),
        "{human}"
    );
    assert!(human.contains("MS00-048    missing"), "{human}");
    let c = site.machine_status("wks-c", None);
    assert_eq!(c["patchStates"]["counts"]["missing"], 0, "{c}");
    assert_eq!(c["patchStates"]["counts"]["installed"], 0, "{c}");

    // The same through the server (`--site`): updates and one machine.
    assert_eq!(site.updates(Some(&server.base)), all);
    let remote = site.machine_status("wks-b", Some(&server.base));
    assert_eq!(remote["patchStates"], m["patchStates"]);
    assert_eq!(remote["messages"], m["messages"]);

    // `inventory scan-import --site`: a fourth machine, evaluated here,
    // stored by the server; it counts at once.
    std::fs::write(
        site.path("wks-d.scan.json"),
        scan_facts("wks-d", Some("2000.11.20.0")),
    )
    .unwrap();
    let catalog = support::repo().join("tests/fixtures/mssecure.xml");
    let (code, out, err) = site.cli(&[
        "inventory",
        "scan-import",
        "--catalog",
        catalog.to_str().unwrap(),
        "--facts",
        "wks-d.scan.json",
        "--site",
        &server.base,
        "--token-from",
        "env:TEST_ADMIN",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["machines"], 1);
    let all = site.updates(Some(&server.base));
    assert_eq!(all["machines"], 4, "{all}");
    assert_eq!(counts(bulletin(&all, "MS00-048")), (2, 1, 1, 0));
    assert_eq!(site.updates(None), all);
    // A wrong admin token changes nothing and says why.
    let (code, _, err) = site.cli(&[
        "status",
        "updates",
        "--site",
        &server.base,
        "--token-from",
        "env:NOT_SET_ANYWHERE",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("NOT_SET_ANYWHERE"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_made_while_the_server_is_down_is_delivered_later() {
    let site = Site::new();
    site.machine("wks-b", Some("2000.11.19.0"));
    let server = site.server(&[]);
    // The test's one clock: the site's `now`, and a week after it (the scan
    // advertisement recurs weekly: a week always holds one recurrence).
    let first: jiff::Timestamp = site.now.parse().unwrap();
    let first = first.round(jiff::Unit::Second).unwrap();
    let later = (first + jiff::SignedDuration::from_hours(7 * 24)).to_string();
    let first = first.to_string();
    let (code, report, stderr) = site.scanning_agent(&server.base, "wks-b", &["--now", &first]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["scansDelivered"], 1, "{report}");
    assert_eq!(
        counts(bulletin(&site.updates(None), "MS00-048")),
        (0, 1, 0, 0)
    );
    drop(server);

    // A week later the machine is patched; the server is down. The scan
    // runs (the package comes from the cache, the DP is still up) and its
    // report waits in the state directory.
    site.machine("wks-b", Some("2000.11.20.0"));
    let dead = format!("http://127.0.0.1:{}", support::reserved_port());
    let (code, report, _) = site.scanning_agent(&dead, "wks-b", &["--now", &later]);
    assert_eq!(code, 0);
    assert_eq!(
        run_of(&report, PRODUCTION)["state"],
        "succeeded",
        "{report}"
    );
    assert_eq!(report["scansDelivered"], 0, "{report}");
    assert_eq!(report["scansQueued"], 1, "{report}");
    let errors = report["errors"].to_string();
    assert!(errors.contains("the scan report is kept"), "{errors}");
    assert!(site
        .path("agent-wks-b/scans/patchops-mssecure.json")
        .is_file());
    // The store still holds the old scan.
    assert_eq!(
        counts(bulletin(&site.updates(None), "MS00-048")),
        (0, 1, 0, 0)
    );

    // The server is back: the next cycle delivers the kept report once.
    let server = site.server(&[]);
    let (code, report, _) = site.scanning_agent(&server.base, "wks-b", &["--now", &later]);
    assert_eq!(code, 0);
    assert_eq!(report["runs"], json!([]), "nothing is due again: {report}");
    assert_eq!(report["scansDelivered"], 1, "{report}");
    assert!(!site
        .path("agent-wks-b/scans/patchops-mssecure.json")
        .exists());
    let all = site.updates(None);
    assert_eq!(counts(bulletin(&all, "MS00-048")), (1, 0, 0, 0));
    assert_eq!(all["machines"], 1);
    assert!(all["scans"][0]["newestScan"]
        .as_str()
        .unwrap()
        .starts_with(later.trim_end_matches('Z')));
    let (_, report, _) = site.scanning_agent(&server.base, "wks-b", &["--now", &later]);
    assert_eq!(report["scansDelivered"], 0, "{report}");
    assert_eq!(
        metric(&server.base, "patchops_patch_state_reports_total").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_without_scan_facts_fails_and_says_why() {
    let site = Site::new();
    site.machine("wks-e", Some("2000.11.20.0"));
    let server = site.server(&[]);
    // No --scan-facts: the scan program fails, nothing is reported.
    let (code, report, _) = site.agent(&server.base, "wks-e", &[]);
    assert_eq!(code, 0);
    let run = run_of(&report, PRODUCTION);
    assert!(
        run["state"] == "failed" || run["state"] == "retrying",
        "{report}"
    );
    let message = run["message"].as_str().unwrap();
    assert!(message.contains("scan failed"), "{message}");
    assert!(message.contains("--scan-facts"), "{message}");
    assert_eq!(report["scansDelivered"], 0);
    assert_eq!(site.updates(None)["machines"], 0);

    // Scan facts of another machine: a configuration error, exit 1.
    let other = site.path("other.scan.json");
    std::fs::write(&other, scan_facts("wks-zz", None)).unwrap();
    let out = patchops()
        .args([
            "agent",
            "--once",
            "--format",
            "json",
            "--server",
            &server.base,
        ])
        .args(["--enroll-secret-from", "env:TEST_ENROLL", "--state-dir"])
        .arg(site.path("agent-wks-e"))
        .arg("--facts")
        .arg(site.path("wks-e.facts.json"))
        .arg("--scan-facts")
        .arg(&other)
        .env("TEST_ENROLL", ENROLL)
        .output()
        .expect("agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(stderr.contains("the file describes \"wks-zz\""), "{stderr}");
}

/// Registers `name` and returns its token.
async fn register(base: &str, name: &str) -> String {
    patchops::tls::install_default_provider();
    let answer: Value = reqwest::Client::new()
        .post(format!("{base}/v1/register"))
        .bearer_auth(ENROLL)
        .header("content-type", "application/json")
        .body(json!({"name": name}).to_string())
        .send()
        .await
        .expect("register")
        .text()
        .await
        .map(|t| serde_json::from_str(&t).expect("json"))
        .expect("text");
    answer["token"].as_str().expect("token").to_string()
}

async fn post(base: &str, token: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    patchops::tls::install_default_provider();
    let mut request = reqwest::Client::new()
        .post(format!("{base}/v1/patch-states"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.expect("post");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn state(bulletin: &str, status: &str) -> Value {
    json!({"bulletin": bulletin, "product": "SQL Server 7.0", "qNumbers": ["Q266766"],
           "status": status, "reboot": "required", "reason": "test"})
}

fn report_of(machine: &str, states: Vec<Value>) -> Vec<u8> {
    json!({"machine": machine, "scanAgent": "patchops-mssecure",
           "scanTime": "2026-11-25T02:00:00Z", "states": states})
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_patch_state_route_refuses_bad_reports_and_stores_nothing() {
    let site = Site::new();
    let server = site.server(&["--max-body", "65536"]);
    let base = server.base.as_str();
    let token = register(base, "wks-f").await;
    register(base, "wks-g").await;

    let (code, body) = post(
        base,
        Some(&token),
        report_of("wks-f", vec![state("MS00-048", "missing")]),
    )
    .await;
    assert_eq!(
        (code, &body),
        (200, &json!({"machine": "wks-f", "stored": 1}))
    );
    let stored = || site.machine_status("wks-f", None)["patchStates"]["states"].clone();
    let before = stored();
    assert_eq!(before.as_array().unwrap().len(), 1);

    // Malformed JSON; an unknown field; a half-bad report (the first state
    // good, the second not): 400 naming the problem, nothing stored.
    let (code, body) = post(base, Some(&token), b"{\"machine\": ".to_vec()).await;
    assert_eq!(code, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid patch-state report"),
        "{body}"
    );
    let mut extra: Value = serde_json::from_slice(&report_of("wks-f", vec![])).unwrap();
    extra["catalogVersion"] = json!(3);
    let (code, body) = post(base, Some(&token), extra.to_string().into_bytes()).await;
    assert_eq!(code, 400);
    assert!(
        body["error"].as_str().unwrap().contains("catalogVersion"),
        "{body}"
    );
    let half = report_of(
        "wks-f",
        vec![state("MS00-048", "installed"), state("MS01-041", "patched")],
    );
    let (code, body) = post(base, Some(&token), half).await;
    assert_eq!(code, 400);
    let error = body["error"].as_str().unwrap();
    assert!(
        error.starts_with("states[1].status: expected installed"),
        "{error}"
    );
    let (code, body) = post(
        base,
        Some(&token),
        report_of("wks-f", vec![state("MS00-048", "installed")]).replace_agent("patchops-wsus"),
    )
    .await;
    assert_eq!(code, 400);
    assert!(
        body["error"].as_str().unwrap().starts_with("scanAgent:"),
        "{body}"
    );
    assert_eq!(stored(), before);

    // Another machine's states: 403. No token: 401.
    let (code, body) = post(
        base,
        Some(&token),
        report_of("wks-g", vec![state("MS00-048", "installed")]),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("another machine"));
    let (code, _) = post(base, None, report_of("wks-f", vec![])).await;
    assert_eq!(code, 401);
    assert_eq!(
        site.machine_status("wks-g", None)["patchStates"]["states"],
        json!([])
    );

    // Over --max-body: 413, nothing stored.
    let many: Vec<Value> = (0..2000)
        .map(|i| state(&format!("MS{i:05}"), "missing"))
        .collect();
    let big = report_of("wks-f", many);
    assert!(big.len() > 65536);
    let (code, _) = post(base, Some(&token), big).await;
    assert_eq!(code, 413);
    assert_eq!(stored(), before);
    assert_eq!(metric(base, "patchops_patch_state_reports_total").await, 1);

    // An empty report replaces the machine's states with none.
    let (code, body) = post(base, Some(&token), report_of("wks-f", vec![])).await;
    assert_eq!((code, &body["stored"]), (200, &json!(0)));
    assert_eq!(stored(), json!([]));
}

/// Rewrites the scan agent of a report body.
trait ReplaceAgent {
    fn replace_agent(self, agent: &str) -> Vec<u8>;
}

impl ReplaceAgent for Vec<u8> {
    fn replace_agent(self, agent: &str) -> Vec<u8> {
        let mut v: Value = serde_json::from_slice(&self).unwrap();
        v["scanAgent"] = json!(agent);
        v.to_string().into_bytes()
    }
}
