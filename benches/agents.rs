//! The agent load simulator: 10,000 agents, simulated in this one process
//! (tokio), against the real `patchops server` release binary on loopback.
//!
//! `cargo bench --bench agents` — targets: p99 < 100 ms for every kind of
//! request, no errors, the server's peak resident memory (VmHWM) < 1 GiB.
//! The process exits non-zero when a target is missed or when the store
//! does not hold every status message exactly once.
//!
//! The bench applies the example site (plus two collections and two
//! advertisements of its own, so that policies carry several assignments)
//! and imports 10,000 synthetic machines (`fixtures::synthetic`). Then
//! every agent, as a task of its own:
//!
//! 1. registers (`POST /v1/register`, the enrollment secret → a token);
//! 2. reports its inventory (`POST /v1/inventory`);
//! 3. fetches its policy (`GET /v1/policy` → 200 and an ETag);
//! 4. reports a run of every assignment (`POST /v1/status`: accepted,
//!    downloading, downloaded, running, succeeded, each with its
//!    idempotency key);
//! 5. for each further round: polls with `If-None-Match` (→ 304) and
//!    reports the round's runs;
//! 6. one agent in ten then sends its last batch again, as an agent does
//!    whose answer was lost: the server must count it as duplicates.
//!
//! Agents start at a steady rate (default 250 a second, so 10,000 within
//! 40 s, about 2,500 requests a second offered; `--rate 0` starts them all
//! at once, a closed loop that keeps the bound of requests in flight busy:
//! the server's saturation). Requests are bounded to a number in flight (a
//! semaphore; the client keeps as many keep-alive connections). Each request's latency is the
//! time from sending to having read the whole answer. Afterwards the bench
//! reads every machine's status messages back from the store and checks
//! that each sent key was stored once and nothing else was.
//!
//! Arguments (after `--`) or environment:
//! `--quick` / `SIM_QUICK=1` (300 agents, 2 rounds: a smoke run),
//! `--agents N` / `SIM_AGENTS` (default 10,000), `--rounds N` /
//! `SIM_ROUNDS` (polling rounds after the first, default 3),
//! `--concurrency N` / `SIM_CONCURRENCY` (requests in flight, default
//! 256), `--rate N` / `SIM_RATE` (agents started per second, 0: all at
//! once; default 250), `--postgres [URL]` / `SIM_POSTGRES=URL` (a fresh database on that
//! PostgreSQL server, default `PATCHOPS_TEST_POSTGRES` or
//! `postgres://postgres@127.0.0.1:5432`; without it, a SQLite file).

// The simulator borrows a few of the integration tests' helpers, not all.
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use patchops::fixtures::synthetic::synthetic_machines;
use patchops::inventory::Machine;
use patchops::store::Store;
use support::{copy_dir, patchops, run_with_limit, Proc};

const ENROLL_SECRET: &str = "sim-enroll-secret";
/// Every agent reports these states for each run of an assignment.
const RUN_STATES: &[&str] = &[
    "accepted",
    "downloading",
    "downloaded",
    "running",
    "succeeded",
];

/// Collections and advertisements added to the example site, so that the
/// synthetic machines get more than one assignment and their DPs differ.
const EXTRA_SITE: &str = r#"apiVersion: patchops/v1
kind: Collection
metadata:
  name: Office Workstations
spec:
  comment: Workstations with Office 2003 or Office XP.
  limitingCollection: All Windows Workstations
  membership:
    - query: installed.product in ('Office 2003', 'Office XP')
---
apiVersion: patchops/v1
kind: Collection
metadata:
  name: Finance and HQ
spec:
  comment: The finance department, and every machine at headquarters.
  limitingCollection: All Systems
  membership:
    - query: properties.department = 'finance' or ip.address in subnet '10.1.0.0/16'
---
apiVersion: patchops/v1
kind: Advertisement
metadata:
  name: Office Scan (workstations)
spec:
  package: MS Office Updates
  program: Office Updates Tool
  collection: Office Workstations
  comment: Scan Office installations every day.
  schedule:
    - { start: 2026-11-24T04:00:00Z, every: 1d }
  rerun: always
  allowUsersToRunIndependently: false
  remoteDistributionPoint: downloadAndRun
---
apiVersion: patchops/v1
kind: Advertisement
metadata:
  name: Security Scan (finance and HQ)
spec:
  package: MS Security Updates
  program: Security Updates Tool (expedited)
  collection: Finance and HQ
  comment: Finance and headquarters scan twice a day.
  schedule:
    - { start: 2026-11-24T05:00:00Z, every: 12h }
  rerun: always
  allowUsersToRunIndependently: false
  localDistributionPoint: downloadAndRun
  remoteDistributionPoint: downloadAndRun
"#;

struct Options {
    agents: usize,
    rounds: usize,
    concurrency: usize,
    /// Agents started per second; 0: all at once (a closed loop that keeps
    /// `concurrency` requests in flight, the server's saturation).
    rate: usize,
    /// A PostgreSQL server's URL; none: SQLite.
    postgres: Option<String>,
}

fn options() -> Options {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let number = |name: &str, text: &str| -> usize {
        text.parse().unwrap_or_else(|_| {
            eprintln!("agents: {name} takes a number, not {text:?}");
            std::process::exit(2)
        })
    };
    let quick = env("SIM_QUICK").is_some_and(|v| v != "0");
    let mut o = Options {
        agents: if quick { 300 } else { 10_000 },
        rounds: if quick { 2 } else { 3 },
        concurrency: 256,
        rate: 250,
        postgres: env("SIM_POSTGRES"),
    };
    if let Some(v) = env("SIM_AGENTS") {
        o.agents = number("SIM_AGENTS", &v);
    }
    if let Some(v) = env("SIM_ROUNDS") {
        o.rounds = number("SIM_ROUNDS", &v);
    }
    if let Some(v) = env("SIM_CONCURRENCY") {
        o.concurrency = number("SIM_CONCURRENCY", &v);
    }
    if let Some(v) = env("SIM_RATE") {
        o.rate = number("SIM_RATE", &v);
    }
    let mut args = std::env::args().skip(1).peekable();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next().unwrap_or_else(|| {
                eprintln!("agents: {name} needs a value");
                std::process::exit(2)
            })
        };
        match arg.as_str() {
            // `cargo bench` passes `--bench` to every bench binary.
            "--bench" => {}
            "--quick" => {
                o.agents = 300;
                o.rounds = 2;
            }
            "--agents" => o.agents = number("--agents", &value("--agents")),
            "--rounds" => o.rounds = number("--rounds", &value("--rounds")),
            "--concurrency" => o.concurrency = number("--concurrency", &value("--concurrency")),
            "--rate" => o.rate = number("--rate", &value("--rate")),
            "--postgres" => {
                o.postgres = Some(match args.peek() {
                    Some(next) if !next.starts_with("--") => args.next().unwrap_or_default(),
                    _ => patchops::store::testing::postgres_base(),
                })
            }
            other => {
                eprintln!(
                    "agents: unknown argument {other:?} (expected --quick, --agents N, \
                     --rounds N, --concurrency N, --rate N, --postgres [URL])"
                );
                std::process::exit(2)
            }
        }
    }
    if o.agents == 0 || o.concurrency == 0 {
        eprintln!("agents: --agents and --concurrency must be at least 1");
        std::process::exit(2)
    }
    o
}

fn main() {
    let o = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::TempDir::new().expect("tmp");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));

    // The store: a SQLite file, or a fresh PostgreSQL database (dropped at
    // the end by its guard).
    let (state, _dropper, backend) = match &o.postgres {
        None => (
            format!("sqlite://{}", dir.path().join("sim.db").display()),
            None,
            "SQLite (file, WAL, synchronous=FULL)",
        ),
        Some(base) => {
            // The helper reads the server's URL from the environment; it is
            // set before the simulation starts any task.
            std::env::set_var("PATCHOPS_TEST_POSTGRES", base);
            let (url, dropper) = runtime.block_on(patchops::store::testing::fresh_postgres_url());
            (url, Some(dropper), "PostgreSQL (loopback)")
        }
    };

    // The site, applied.
    let prepare = Instant::now();
    copy_dir(&root.join("examples/site"), &dir.path().join("site"));
    std::fs::write(dir.path().join("site/simulation.yaml"), EXTRA_SITE).expect("write site");
    let mut apply = patchops();
    apply
        .current_dir(dir.path())
        .args(["apply", "site", "--auto-approve", "--state", &state]);
    check(apply, "apply the site");

    // The inventory: the example's machines and the synthetic ones.
    let machines = synthetic_machines(o.agents, 7);
    let file = dir.path().join("machines.json");
    std::fs::write(&file, serde_json::to_vec(&machines).expect("json")).expect("write inventory");
    let mut import = patchops();
    import
        .args(["inventory", "import"])
        .arg(&file)
        .args(["--state", &state]);
    check(import, "import the inventory");
    let prepared = prepare.elapsed();

    // The server.
    let log = dir.path().join("server.log");
    let mut cmd = patchops();
    cmd.args(["server", "--state", &state, "--listen", "127.0.0.1:0"])
        .args(["--enroll-secret-from", "env:SIM_ENROLL_SECRET"])
        .env("SIM_ENROLL_SECRET", ENROLL_SECRET)
        // `SIM_SERVER_LOG=info` shows the server's reloads in the report.
        .env(
            "PATCHOPS_LOG",
            std::env::var("SIM_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
        );
    let started = Instant::now();
    let mut server = Proc::start(cmd, &log);
    let server_start = started.elapsed();
    let base = server.base.clone();
    let pid = server.child.id();
    let rss_loaded = proc_status_kib(pid, "VmRSS:");

    let machines = Arc::new(machines);
    let outcome = runtime.block_on(simulate(&base, machines.clone(), &o));
    let hwm = proc_status_kib(pid, "VmHWM:");
    let cpu = proc_cpu_seconds(pid);
    let own_cpu = own_cpu_seconds();

    // Stop the server as an operator would, so that it closes the store.
    // SAFETY: a plain signal to the child this process started.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    let _ = server.child.wait();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let reloads = log_text.matches("site reloaded").count();
    if reloads > 0 {
        println!("the server reloaded the site {reloads} times during the run");
    }

    // What the store holds: every sent key once, nothing else.
    let stored = runtime.block_on(stored_status(&state, &machines, &outcome.sent_keys));
    drop(runtime);

    let report = Report {
        o: &o,
        backend,
        outcome: &outcome,
        stored: &stored,
        prepared,
        server_start,
        rss_loaded,
        hwm,
        cpu,
        own_cpu,
    };
    let passed = report.print();
    if !outcome.errors.is_empty() || !passed {
        let warnings: Vec<&str> = log_text.lines().rev().take(20).collect();
        if !warnings.is_empty() {
            println!("\nthe server's last log lines:");
            for line in warnings.iter().rev() {
                println!("  {line}");
            }
        }
    }
    if !passed {
        std::process::exit(1);
    }
}

/// Runs a preparation step, failing the bench with its output.
fn check(cmd: Command, what: &str) {
    let out = run_with_limit(cmd, Duration::from_secs(600));
    if !out.status.success() {
        eprintln!(
            "agents: cannot {what}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::process::exit(1);
    }
}

/// A field of `/proc/<pid>/status`, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The process's user + system CPU time so far, in seconds.
fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses); utime and
    // stime are the 14th and 15th fields of the whole line.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks / hz as f64)
}

/// This process's user + system CPU time so far, in seconds.
fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// The kinds of request an agent makes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    Register,
    Inventory,
    PolicyFull,
    PolicyNotModified,
    Status,
    StatusResent,
}

const KINDS: &[(Kind, &str)] = &[
    (Kind::Register, "POST /v1/register"),
    (Kind::Inventory, "POST /v1/inventory"),
    (Kind::PolicyFull, "GET /v1/policy → 200"),
    (Kind::PolicyNotModified, "GET /v1/policy → 304"),
    (Kind::Status, "POST /v1/status"),
    (Kind::StatusResent, "POST /v1/status (resent)"),
];

/// What one agent did.
#[derive(Default)]
struct AgentRun {
    latencies: Vec<(Kind, Duration)>,
    errors: Vec<String>,
    /// Keys of the status messages it sent (each once).
    sent: Vec<String>,
    /// Messages it sent a second time.
    resent: usize,
    /// What the server answered: newly stored, and duplicates.
    accepted: usize,
    duplicates: usize,
    /// Polls that found a new policy (the policy changed between polls).
    policy_changes: usize,
    assignments: usize,
}

struct Outcome {
    elapsed: Duration,
    latencies: HashMap<Kind, Vec<Duration>>,
    errors: Vec<String>,
    sent_keys: HashMap<String, Vec<String>>,
    sent: usize,
    resent: usize,
    accepted: usize,
    duplicates: usize,
    policy_changes: usize,
    assignments: usize,
}

struct Agent {
    client: reqwest::Client,
    base: String,
    gate: Arc<tokio::sync::Semaphore>,
    run: AgentRun,
}

/// An answer: status, ETag, body.
type Answer = (reqwest::StatusCode, Option<String>, Vec<u8>);

impl Agent {
    /// Sends one request when a slot is free; records its latency. An
    /// answer that is not 2xx or 304 is an error.
    async fn send(&mut self, kind: Kind, request: reqwest::RequestBuilder) -> Option<Answer> {
        let _slot = self.gate.acquire().await.expect("semaphore");
        let started = Instant::now();
        let result = async {
            let response = request.send().await?;
            let status = response.status();
            let etag = response
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, etag, body.to_vec()))
        }
        .await;
        self.run.latencies.push((kind, started.elapsed()));
        match result {
            Ok((status, etag, body))
                if status.is_success() || status == reqwest::StatusCode::NOT_MODIFIED =>
            {
                Some((status, etag, body))
            }
            Ok((status, _, body)) => {
                self.run.errors.push(format!(
                    "{kind:?}: {status}: {}",
                    String::from_utf8_lossy(&body)
                ));
                None
            }
            Err(e) => {
                self.run.errors.push(format!("{kind:?}: {e}"));
                None
            }
        }
    }

    fn error(&mut self, text: String) {
        self.run.errors.push(text);
    }
}

async fn simulate(base: &str, machines: Arc<Vec<Machine>>, o: &Options) -> Outcome {
    patchops::tls::install_default_provider();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(o.concurrency)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let gate = Arc::new(tokio::sync::Semaphore::new(o.concurrency));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(machines.len());
    for i in 0..machines.len() {
        let agent = Agent {
            client: client.clone(),
            base: base.to_string(),
            gate: gate.clone(),
            run: AgentRun::default(),
        };
        let (machines, rounds) = (machines.clone(), o.rounds);
        // Agent i starts at i / rate seconds.
        let start =
            (o.rate > 0).then(|| started + Duration::from_secs_f64(i as f64 / o.rate as f64));
        tasks.push(tokio::spawn(async move {
            if let Some(start) = start {
                tokio::time::sleep_until(start.into()).await;
            }
            live(agent, &machines[i], i, rounds).await
        }));
    }
    let mut outcome = Outcome {
        elapsed: Duration::ZERO,
        latencies: HashMap::new(),
        errors: Vec::new(),
        sent_keys: HashMap::new(),
        sent: 0,
        resent: 0,
        accepted: 0,
        duplicates: 0,
        policy_changes: 0,
        assignments: 0,
    };
    for (task, machine) in tasks.into_iter().zip(machines.iter()) {
        let run = match task.await {
            Ok(run) => run,
            Err(e) => {
                outcome
                    .errors
                    .push(format!("{}: the agent task failed: {e}", machine.name));
                continue;
            }
        };
        for (kind, latency) in run.latencies {
            outcome.latencies.entry(kind).or_default().push(latency);
        }
        outcome.errors.extend(
            run.errors
                .into_iter()
                .map(|e| format!("{}: {e}", machine.name)),
        );
        outcome.sent += run.sent.len();
        outcome.resent += run.resent;
        outcome.accepted += run.accepted;
        outcome.duplicates += run.duplicates;
        outcome.policy_changes += run.policy_changes;
        outcome.assignments += run.assignments;
        outcome
            .sent_keys
            .insert(machine.name.to_lowercase(), run.sent);
    }
    outcome.elapsed = started.elapsed();
    outcome
}

/// One agent's life: register, inventory, policy, status, then rounds of
/// polls and status.
async fn live(mut agent: Agent, machine: &Machine, index: usize, rounds: usize) -> AgentRun {
    let base = agent.base.clone();
    let name = machine.name.clone();
    // Register.
    let request = agent
        .client
        .post(format!("{base}/v1/register"))
        .bearer_auth(ENROLL_SECRET)
        .body(format!("{{\"name\":\"{name}\"}}"));
    let Some((_, _, body)) = agent.send(Kind::Register, request).await else {
        return agent.run;
    };
    let token = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) => match v["token"].as_str() {
            Some(t) => t.to_string(),
            None => {
                agent.error("register: no token in the answer".into());
                return agent.run;
            }
        },
        Err(e) => {
            agent.error(format!("register: {e}"));
            return agent.run;
        }
    };

    // Inventory: the machine's facts, a little less disk free than the
    // imported copy says (so the facts really change).
    let mut facts = machine.clone();
    facts.hardware.disk_free_mb = facts.hardware.disk_free_mb.map(|mb| mb.saturating_sub(10));
    let request = agent
        .client
        .post(format!("{base}/v1/inventory"))
        .bearer_auth(&token)
        .body(serde_json::to_vec(&facts).expect("json"));
    if agent.send(Kind::Inventory, request).await.is_none() {
        return agent.run;
    }

    // The first poll: the whole policy.
    let request = agent
        .client
        .get(format!("{base}/v1/policy"))
        .bearer_auth(&token);
    let Some((status, etag, body)) = agent.send(Kind::PolicyFull, request).await else {
        return agent.run;
    };
    let Some(mut etag) = etag.filter(|_| status == reqwest::StatusCode::OK) else {
        agent.error(format!("policy: expected 200 with an ETag, got {status}"));
        return agent.run;
    };
    let mut advertisements = match assignments_of(&body) {
        Ok(a) => a,
        Err(e) => {
            agent.error(format!("policy: {e}"));
            return agent.run;
        }
    };
    agent.run.assignments = advertisements.len();

    let mut last_batch = String::new();
    for round in 0..=rounds {
        if round > 0 {
            let request = agent
                .client
                .get(format!("{base}/v1/policy"))
                .bearer_auth(&token)
                .header("If-None-Match", &etag);
            let Some((status, new_etag, body)) = agent.send(Kind::PolicyNotModified, request).await
            else {
                return agent.run;
            };
            if status == reqwest::StatusCode::OK {
                // The policy changed meanwhile: take the new one.
                agent.run.policy_changes += 1;
                match (new_etag, assignments_of(&body)) {
                    (Some(e), Ok(a)) => {
                        etag = e;
                        advertisements = a;
                    }
                    _ => {
                        agent.error("policy: a changed policy without an ETag".into());
                        return agent.run;
                    }
                }
            }
        }
        let (batch, keys) = status_batch(&name, &advertisements, round);
        if keys.is_empty() {
            continue;
        }
        let request = agent
            .client
            .post(format!("{base}/v1/status"))
            .bearer_auth(&token)
            .body(batch.clone());
        let Some((_, _, body)) = agent.send(Kind::Status, request).await else {
            return agent.run;
        };
        match counts(&body) {
            Some((accepted, duplicates)) => {
                agent.run.accepted += accepted;
                agent.run.duplicates += duplicates;
                if accepted != keys.len() {
                    agent.error(format!(
                        "status: {accepted} of {} new messages accepted",
                        keys.len()
                    ));
                }
            }
            None => agent.error("status: unexpected answer".into()),
        }
        agent.run.sent.extend(keys);
        last_batch = batch;
    }

    // One agent in ten lost the answer to its last batch and sends it again.
    if index.is_multiple_of(10) && !last_batch.is_empty() {
        let n = advertisements.len() * RUN_STATES.len();
        let request = agent
            .client
            .post(format!("{base}/v1/status"))
            .bearer_auth(&token)
            .body(last_batch);
        if let Some((_, _, body)) = agent.send(Kind::StatusResent, request).await {
            agent.run.resent += n;
            match counts(&body) {
                Some((accepted, duplicates)) => {
                    agent.run.accepted += accepted;
                    agent.run.duplicates += duplicates;
                    if accepted != 0 || duplicates != n {
                        agent.error(format!(
                            "resent status: expected 0 accepted, {n} duplicates; got {accepted}, {duplicates}"
                        ));
                    }
                }
                None => agent.error("resent status: unexpected answer".into()),
            }
        }
    }
    agent.run
}

/// The advertisements a policy assigns.
fn assignments_of(body: &[u8]) -> Result<Vec<String>, String> {
    let policy: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let assignments = policy["assignments"]
        .as_array()
        .ok_or("no `assignments` list")?;
    assignments
        .iter()
        .map(|a| {
            a["advertisement"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| "an assignment without `advertisement`".to_string())
        })
        .collect()
}

/// One round's status messages (a run of every assignment) and their keys.
fn status_batch(machine: &str, advertisements: &[String], round: usize) -> (String, Vec<String>) {
    let at = jiff::Timestamp::now().to_string();
    let mut keys = Vec::new();
    let mut messages = Vec::new();
    for advertisement in advertisements {
        for (step, state) in RUN_STATES.iter().enumerate() {
            let key = format!("{machine}/{advertisement}/r{round}/{step}-{state}");
            let mut message = serde_json::json!({
                "key": key,
                "advertisement": advertisement,
                "state": state,
                "message": "",
                "at": at,
            });
            if *state == "succeeded" {
                message["exitCode"] = 0.into();
            }
            messages.push(message);
            keys.push(key);
        }
    }
    let batch = serde_json::json!({ "messages": messages }).to_string();
    (batch, keys)
}

/// `{"accepted": n, "duplicates": m}`.
fn counts(body: &[u8]) -> Option<(usize, usize)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some((
        v["accepted"].as_u64()? as usize,
        v["duplicates"].as_u64()? as usize,
    ))
}

/// What the store holds, compared with what was sent.
struct Stored {
    messages: usize,
    missing: usize,
    unexpected: usize,
    problem: Option<String>,
}

async fn stored_status(
    url: &str,
    machines: &[Machine],
    sent: &HashMap<String, Vec<String>>,
) -> Stored {
    let mut stored = Stored {
        messages: 0,
        missing: 0,
        unexpected: 0,
        problem: None,
    };
    let store = match Store::open(url).await {
        Ok(s) => s,
        Err(e) => {
            stored.problem = Some(format!("cannot open the store: {e}"));
            return stored;
        }
    };
    for machine in machines {
        let key = machine.name.to_lowercase();
        let messages = match store.status_for_machine(&key, 1_000_000).await {
            Ok(m) => m,
            Err(e) => {
                stored.problem = Some(format!("cannot read {key}'s status: {e}"));
                break;
            }
        };
        stored.messages += messages.len();
        let expected: HashSet<&str> = sent
            .get(&key)
            .map(|k| k.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let found: HashSet<&str> = messages.iter().map(|m| m.key.as_str()).collect();
        // A key is stored once (it is the table's key); a second row
        // under one key would show as fewer distinct keys than rows.
        stored.unexpected += messages.len() - found.len();
        stored.unexpected += found.difference(&expected).count();
        stored.missing += expected.difference(&found).count();
    }
    store.close().await;
    stored
}

struct Report<'a> {
    o: &'a Options,
    backend: &'a str,
    outcome: &'a Outcome,
    stored: &'a Stored,
    prepared: Duration,
    server_start: Duration,
    rss_loaded: Option<u64>,
    hwm: Option<u64>,
    cpu: Option<f64>,
    own_cpu: f64,
}

const P99_TARGET_MS: f64 = 100.0;
const HWM_TARGET_KIB: u64 = 1024 * 1024;

impl Report<'_> {
    /// Prints the figures; whether every target was met.
    fn print(&self) -> bool {
        let (o, out) = (self.o, self.outcome);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let requests: usize = out.latencies.values().map(Vec::len).sum();
        println!(
            "agents: {} agents, {} rounds after the first, at most {} requests in flight, {}, store {}",
            o.agents,
            o.rounds,
            o.concurrency,
            if o.rate > 0 {
                format!("{} agents started per second", o.rate)
            } else {
                "all started at once (closed loop)".to_string()
            },
            self.backend
        );
        println!(
            "  prepared (apply + import) in {:.1} s; server up in {:.2} s (RSS {:.0} MiB)",
            self.prepared.as_secs_f64(),
            self.server_start.as_secs_f64(),
            self.rss_loaded.unwrap_or(0) as f64 / 1024.0
        );
        println!(
            "  {:<28} {:>8} {:>9} {:>9} {:>9} {:>9}",
            "request", "count", "p50 ms", "p99 ms", "max ms", "mean ms"
        );
        let mut worst_p99: f64 = 0.0;
        let mut all: Vec<Duration> = Vec::with_capacity(requests);
        for (kind, label) in KINDS {
            let Some(samples) = out.latencies.get(kind) else {
                continue;
            };
            let mut s = samples.clone();
            s.sort_unstable();
            let p99 = ms(percentile(&s, 0.99));
            worst_p99 = worst_p99.max(p99);
            println!(
                "  {:<28} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                label,
                s.len(),
                ms(percentile(&s, 0.50)),
                p99,
                ms(*s.last().unwrap_or(&Duration::ZERO)),
                ms(s.iter().sum::<Duration>()) / s.len().max(1) as f64
            );
            all.extend(s);
        }
        all.sort_unstable();
        println!(
            "  {:<28} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            "all",
            all.len(),
            ms(percentile(&all, 0.50)),
            ms(percentile(&all, 0.99)),
            ms(*all.last().unwrap_or(&Duration::ZERO)),
            ms(all.iter().sum::<Duration>()) / all.len().max(1) as f64
        );
        println!(
            "  {} requests in {:.2} s: {:.0} requests/s; {} assignments in all ({:.2} per agent); {} policies changed between polls",
            requests,
            out.elapsed.as_secs_f64(),
            requests as f64 / out.elapsed.as_secs_f64().max(1e-9),
            out.assignments,
            out.assignments as f64 / o.agents as f64,
            out.policy_changes
        );
        println!(
            "  status: {} messages sent, {} of them again; the server answered {} accepted, {} duplicates",
            out.sent, out.resent, out.accepted, out.duplicates
        );
        let st = self.stored;
        println!(
            "  store: {} status messages of the agents; {} sent keys missing, {} unexpected rows{}",
            st.messages,
            st.missing,
            st.unexpected,
            st.problem
                .as_ref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default()
        );
        println!(
            "  server: peak RSS (VmHWM) {}; CPU {}",
            self.hwm
                .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
                .unwrap_or_else(|| "unknown".into()),
            self.cpu
                .map(|c| format!("{c:.1} s"))
                .unwrap_or_else(|| "unknown".into())
        );
        println!(
            "  load generator (this process, sharing the cores): CPU {:.1} s",
            self.own_cpu
        );
        println!("  errors: {}", out.errors.len());
        for e in out.errors.iter().take(10) {
            println!("    {e}");
        }

        let exactly_once = st.problem.is_none()
            && st.missing == 0
            && st.unexpected == 0
            && st.messages == out.sent
            && out.accepted == out.sent
            && out.duplicates == out.resent;
        let checks = [
            (
                format!(
                    "p99 < {P99_TARGET_MS} ms for every request kind (worst {worst_p99:.2} ms)"
                ),
                worst_p99 < P99_TARGET_MS,
            ),
            ("no errors".to_string(), out.errors.is_empty()),
            (
                "server peak RSS < 1 GiB".to_string(),
                self.hwm.is_some_and(|k| k < HWM_TARGET_KIB),
            ),
            (
                "every status message stored exactly once".to_string(),
                exactly_once,
            ),
        ];
        let mut passed = true;
        for (what, ok) in &checks {
            println!("  [{}] {what}", if *ok { "ok" } else { "MISSED" });
            passed &= ok;
        }
        passed
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
