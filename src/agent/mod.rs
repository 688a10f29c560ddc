//! `patchops agent`: the client side of the loop (see `docs/agent.md`).
//!
//! Pure parts: [`schedule`] (when an assignment runs), the command-line
//! parser and the `canRun` rule in [`run`], manifest and path checks in
//! [`download`]. I/O at the edges: [`state`] (the state directory),
//! [`queue`] (the durable status queue), [`client`] (the site server),
//! [`download`] (distribution points), [`run`] (processes).
//!
//! One cycle ([`Agent::cycle`]): register when there is no token; send the
//! inventory at start and every heartbeat interval; poll the policy (ETag);
//! run every due assignment — accepted → downloading → downloaded → running
//! → succeeded | failed (+ retrying) | restartPending — and deliver the
//! status queue.

pub mod client;
pub mod download;
pub mod queue;
pub mod restart;
pub mod run;
pub mod schedule;
pub mod state;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::Serialize;

use crate::applicability::report::PatchStateReport;
use crate::applicability::ScanFacts;
use crate::inventory::Machine;
use crate::manifest::advertisement::RemoteDpAction;
use crate::manifest::common::Priority;
use crate::policy::{MachinePolicy, PolicyAssignment};
use crate::secret::SecretSource;
use client::{Client, ClientError, PolicyAnswer, ServedPolicy};
use queue::{Queue, RunState, StatusMessage};
use schedule::{Due, RunResult, ScheduleOptions};
use state::{History, StateDir, StoredPolicy, Token};

/// Where the machine's facts come from: the inventory record
/// ([`Scanner::scan`]) and the scan facts the applicability engine needs
/// ([`Scanner::scan_facts`]: products, service packs, file versions,
/// registry values, Windows Installer codes — `docs/scan-facts.md`).
/// [`FactsFile`] reads both from files (a simulated machine); a native
/// Windows scanner would implement this trait by asking WMI, the file
/// system and the registry for what the catalog names.
pub trait Scanner: Send + Sync {
    /// The machine's facts; `name` is the agent's machine name.
    fn scan(&self, name: &str) -> Result<Machine, String>;

    /// The machine's scan facts, for a scan program's catalog. The default:
    /// this scanner reports none (the scan fails with this message).
    fn scan_facts(&self, name: &str) -> Result<ScanFacts, String> {
        let _ = name;
        Err("this agent has no scan facts (give --scan-facts FILE)".into())
    }
}

/// Facts from a `--facts FILE` (a `Machine` in JSON or YAML, as in
/// `docs/inventory.md`) — the simulated machine — or the name alone; scan
/// facts from a `--scan-facts FILE` (`docs/scan-facts.md`), read again at
/// every scan.
#[derive(Debug, Clone)]
pub struct FactsFile {
    pub path: Option<PathBuf>,
    pub scan_facts: Option<PathBuf>,
}

/// The largest facts file read.
const MAX_FACTS_BYTES: u64 = 4 << 20;
/// The largest scan-facts file read.
const MAX_SCAN_FACTS_BYTES: u64 = 64 << 20;

impl Scanner for FactsFile {
    fn scan(&self, name: &str) -> Result<Machine, String> {
        let Some(path) = &self.path else {
            return Ok(bare_machine(name));
        };
        let shown = path.display();
        let len = std::fs::metadata(path)
            .map_err(|e| format!("--facts {shown}: {e}"))?
            .len();
        if len > MAX_FACTS_BYTES {
            return Err(format!(
                "--facts {shown}: larger than {MAX_FACTS_BYTES} bytes"
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("--facts {shown}: {e}"))?;
        let mut machine: Machine =
            serde_yaml::from_str(&text).map_err(|e| format!("--facts {shown}: {e}"))?;
        if !machine.name.eq_ignore_ascii_case(name) {
            return Err(format!(
                "--facts {shown}: the file describes {:?}, the agent is {name:?}",
                machine.name
            ));
        }
        machine.name = name.to_string();
        crate::inventory::canonicalize_machine(&mut machine);
        crate::inventory::validate_machine(&machine).map_err(|problems| {
            let each: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            format!("--facts {shown}: {}", each.join("; "))
        })?;
        Ok(machine)
    }

    fn scan_facts(&self, name: &str) -> Result<ScanFacts, String> {
        let Some(path) = &self.scan_facts else {
            return Err(
                "no scan facts: this agent has no native scanner; give --scan-facts FILE".into(),
            );
        };
        let shown = path.display();
        let format = crate::applicability::FactsFormat::from_path(path).ok_or_else(|| {
            format!("--scan-facts {shown}: unknown format (expected a .json, .yaml or .yml file)")
        })?;
        let len = std::fs::metadata(path)
            .map_err(|e| format!("--scan-facts {shown}: {e}"))?
            .len();
        if len > MAX_SCAN_FACTS_BYTES {
            return Err(format!(
                "--scan-facts {shown}: larger than {MAX_SCAN_FACTS_BYTES} bytes"
            ));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("--scan-facts {shown}: {e}"))?;
        let facts = crate::applicability::parse_facts(&text, format)
            .map_err(|e| format!("--scan-facts {shown}: {e}"))?;
        if !facts.machine.eq_ignore_ascii_case(name) {
            return Err(format!(
                "--scan-facts {shown}: the file describes {:?}, the agent is {name:?}",
                facts.machine
            ));
        }
        Ok(facts)
    }
}

fn bare_machine(name: &str) -> Machine {
    // The smallest valid machine: its name.
    serde_json::from_value(serde_json::json!({ "name": name })).unwrap_or_else(|_| unreachable!())
}

/// The agent's configuration (the command line's options).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The site server, `http://host:port`.
    pub server: String,
    pub enroll_secret: SecretSource,
    pub state_dir: PathBuf,
    /// The machine name; default: the facts file's, else the host name.
    pub name: Option<String>,
    pub facts: Option<PathBuf>,
    /// The machine's scan facts (`docs/scan-facts.md`), for scan programs.
    pub scan_facts: Option<PathBuf>,
    /// Run after a program asked for a restart (exit code 3010), instead
    /// of restarting: parsed like command lines, no shell.
    pub restart_hook: Option<String>,
    /// Whether a user is logged on, for `canRun` (default: no one).
    pub user_logged_on: bool,
    /// Run optional advertisements (no schedule) once.
    pub run_optional: bool,
    /// The time limit of each request to the site server.
    pub timeout: Duration,
    /// The time limit of each content download request.
    pub download_timeout: Duration,
    pub retry_delay: Duration,
    /// A fixed clock, for tests.
    pub now: Option<Timestamp>,
    /// For an `https://` server and DPs: trust only the CA certificates of
    /// this PEM file instead of the system's.
    pub ca_file: Option<PathBuf>,
}

impl AgentConfig {
    pub fn new(server: &str, enroll_secret: SecretSource, state_dir: &Path) -> AgentConfig {
        AgentConfig {
            server: server.to_string(),
            enroll_secret,
            state_dir: state_dir.to_path_buf(),
            name: None,
            facts: None,
            scan_facts: None,
            restart_hook: None,
            user_logged_on: false,
            run_optional: false,
            timeout: Duration::from_secs(30),
            download_timeout: Duration::from_secs(3600),
            retry_delay: Duration::from_secs(600),
            now: None,
            ca_file: None,
        }
    }
}

/// What one cycle did, for people and for `--format json`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CycleReport {
    pub machine: String,
    /// A token was issued in this cycle.
    pub registered: bool,
    pub inventory_sent: bool,
    /// The inventory was sent again after an install whose program asks
    /// for it (`installAgent.inventoryAfterInstall`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub inventory_after_install: bool,
    /// `new` (with `policyVersion`), `unchanged`, `kept` (an error kept the
    /// previous one) or `none`.
    pub policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<u64>,
    pub runs: Vec<RunReport>,
    /// Status messages delivered, and still queued.
    pub delivered: usize,
    pub queued: usize,
    /// Patch-state reports (scans) delivered, and still waiting for the
    /// server.
    pub scans_delivered: usize,
    pub scans_queued: usize,
    /// The next time an assignment is due, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_due: Option<String>,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub advertisement: String,
    /// The last state reported, or `waiting` (not run: `canRun`).
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub message: String,
}

/// A running agent.
pub struct Agent {
    config: AgentConfig,
    name: String,
    state: StateDir,
    queue: Queue,
    client: Client,
    downloads: reqwest::Client,
    scanner: Box<dyn Scanner>,
    restart_hook: Option<Vec<String>>,
    schedule: ScheduleOptions,
    last_inventory: Option<Instant>,
    /// An install that asks for an inventory afterwards succeeded.
    inventory_wanted: std::sync::atomic::AtomicBool,
    stop: Option<tokio::sync::watch::Receiver<bool>>,
}

impl Agent {
    /// Checks the configuration and opens the state directory. Errors are
    /// configuration errors (exit code 1).
    pub fn new(config: AgentConfig) -> Result<Agent, String> {
        let facts = FactsFile {
            path: config.facts.clone(),
            scan_facts: config.scan_facts.clone(),
        };
        let name = match (&config.name, &config.facts) {
            (Some(n), _) => n.clone(),
            (None, Some(_)) => {
                // The facts file names the machine.
                let text =
                    std::fs::read_to_string(config.facts.as_ref().unwrap_or(&PathBuf::new()))
                        .map_err(|e| format!("--facts: {e}"))?;
                let m: Machine =
                    serde_yaml::from_str(&text).map_err(|e| format!("--facts: {e}"))?;
                m.name
            }
            (None, None) => {
                crate::host::short_name().ok_or("cannot read the host name; give --name")?
            }
        };
        if name.is_empty() {
            return Err("the machine name is empty; give --name".into());
        }
        // Read the facts once now: a broken file is a configuration error.
        facts.scan(&name)?;
        if config.scan_facts.is_some() {
            facts.scan_facts(&name)?;
        }
        let restart_hook = config
            .restart_hook
            .as_deref()
            .map(crate::command_line::parse)
            .transpose()
            .map_err(|e| format!("--restart-hook: {e}"))?;
        let client =
            Client::with_ca_file(&config.server, config.timeout, config.ca_file.as_deref())?;
        let downloads = crate::tls::client_builder(config.ca_file.as_deref())
            .map_err(|e| format!("--ca-file: {e}"))?
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .timeout(config.download_timeout)
            .redirect(crate::tls::content_redirects(5))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let state = StateDir::open(&config.state_dir)?;
        let queue = Queue::new(&state.queue_path());
        let schedule = ScheduleOptions {
            run_optional: config.run_optional,
            retry_delay: config.retry_delay,
            max_attempts: 3,
            tz: jiff::tz::TimeZone::system(),
        };
        Ok(Agent {
            config,
            name,
            state,
            queue,
            client,
            downloads,
            scanner: Box::new(facts),
            restart_hook,
            schedule,
            last_inventory: None,
            inventory_wanted: std::sync::atomic::AtomicBool::new(false),
            stop: None,
        })
    }

    /// Replaces the facts source (a scanner).
    pub fn with_scanner(mut self, scanner: Box<dyn Scanner>) -> Agent {
        self.scanner = scanner;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn now(&self) -> Timestamp {
        self.config.now.unwrap_or_else(Timestamp::now)
    }

    fn stopping(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| *s.borrow())
    }

    /// Registers with the enrollment secret and saves the token.
    async fn register(&self) -> Result<Token, String> {
        let secret = self
            .config
            .enroll_secret
            .read()
            .map_err(|e| format!("--enroll-secret-from: {e}"))?;
        let token = self
            .client
            .register(&self.name, &secret)
            .await
            .map_err(|e| e.to_string())?;
        self.state
            .save_token(&token)
            .map_err(|e| format!("cannot save the token: {e}"))?;
        tracing::info!(machine = %self.name, "registered");
        Ok(token)
    }

    /// Calls the server with the token; on 401 registers again, once.
    async fn authed<T>(
        &self,
        call: impl AsyncFn(&Client, &Token) -> Result<T, ClientError>,
    ) -> Result<T, String> {
        self.authed_send(call).await.map_err(|e| e.text)
    }

    /// [`Agent::authed`], saying whether the server refused the request
    /// itself ([`SendError::refused`]).
    async fn authed_send<T>(
        &self,
        call: impl AsyncFn(&Client, &Token) -> Result<T, ClientError>,
    ) -> Result<T, SendError> {
        let token = match self.state.token() {
            Ok(Some(t)) => t,
            Ok(None) => self.register().await.map_err(SendError::other)?,
            Err(e) => return Err(SendError::other(format!("cannot read the token: {e}"))),
        };
        match call(&self.client, &token).await {
            Err(ClientError::Unauthorized { .. }) => {
                tracing::warn!("the server refused the token; registering again");
                let _ = self.state.clear_token();
                let token = self.register().await.map_err(SendError::other)?;
                call(&self.client, &token).await.map_err(SendError::of)
            }
            other => other.map_err(SendError::of),
        }
    }

    /// The stored policy, if any and readable.
    fn stored_policy(&self) -> Option<(Option<String>, ServedPolicy)> {
        let stored = self.state.policy()?;
        let policy = serde_json::from_value(stored.policy).ok()?;
        Some((stored.etag, policy))
    }

    /// One cycle.
    pub async fn cycle(&mut self) -> CycleReport {
        let mut report = CycleReport {
            machine: self.name.clone(),
            policy: "none".into(),
            ..CycleReport::default()
        };

        // Registration.
        match self.state.token() {
            Ok(Some(_)) => {}
            Ok(None) => match self.register().await {
                Ok(_) => report.registered = true,
                Err(e) => report.errors.push(e),
            },
            Err(e) => report.errors.push(format!("cannot read the token: {e}")),
        }

        let stored = self.stored_policy();
        let heartbeat = stored
            .as_ref()
            .map_or(86_400, |(_, p)| p.policy.client.heartbeat_interval_seconds);

        // Inventory at start and every heartbeat.
        let inventory_due = self
            .last_inventory
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(heartbeat.max(60)));
        if inventory_due && report.errors.is_empty() {
            match self.scanner.scan(&self.name) {
                Ok(machine) => match self
                    .authed(async |c, t| c.inventory(t, &machine).await)
                    .await
                {
                    Ok(()) => {
                        report.inventory_sent = true;
                        self.last_inventory = Some(Instant::now());
                    }
                    Err(e) => report.errors.push(e),
                },
                Err(e) => report.errors.push(e),
            }
        }

        // Policy.
        let mut policy = stored.as_ref().map(|(_, p)| p.clone());
        let etag = stored.as_ref().and_then(|(e, _)| e.clone());
        if report.errors.is_empty() || policy.is_some() {
            match self
                .authed(async |c, t| c.policy(t, etag.as_deref()).await)
                .await
            {
                Ok(PolicyAnswer::NotModified) if policy.is_some() => {
                    report.policy = "unchanged".into();
                }
                Ok(PolicyAnswer::NotModified) => {
                    report
                        .errors
                        .push("policy: 304 without a policy held".into());
                }
                Ok(PolicyAnswer::New {
                    etag,
                    raw,
                    policy: p,
                }) => {
                    if let Err(e) = self.state.save_policy(&StoredPolicy { etag, policy: raw }) {
                        report.errors.push(format!("cannot save the policy: {e}"));
                    }
                    report.policy = "new".into();
                    policy = Some(*p);
                }
                Err(e) => {
                    if policy.is_some() {
                        report.policy = "kept".into();
                        report
                            .errors
                            .push(format!("{e} (the previous policy is kept)"));
                    } else {
                        report.errors.push(e);
                    }
                }
            }
        }
        report.policy_version = policy.as_ref().map(|p| p.version);

        // Assignments.
        if let Some(served) = &policy {
            match self.state.history() {
                Ok(mut history) => {
                    self.run_due(&served.policy, &mut history, &mut report)
                        .await;
                }
                Err(e) => report.errors.push(e),
            }
        }

        // Inventory after install, so compliance is current.
        if self
            .inventory_wanted
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            match self.scanner.scan(&self.name) {
                Ok(machine) => match self
                    .authed(async |c, t| c.inventory(t, &machine).await)
                    .await
                {
                    Ok(()) => {
                        report.inventory_sent = true;
                        report.inventory_after_install = true;
                        self.last_inventory = Some(Instant::now());
                    }
                    Err(e) => report.errors.push(format!("inventory after install: {e}")),
                },
                Err(e) => report.errors.push(format!("inventory after install: {e}")),
            }
        }

        // Status.
        let delivered = self
            .queue
            .deliver(
                async |batch: &[StatusMessage]| {
                    self.authed_send(async |c, t| c.status(t, batch).await)
                        .await
                },
                |e: &SendError| e.refused,
            )
            .await;
        match delivered {
            Ok(n) => report.delivered = n,
            Err(e) => report.errors.push(format!("status not delivered: {e}")),
        }
        report.queued = self.queue.pending().map(|p| p.len()).unwrap_or(0);

        // Patch states: each scan agent's newest report, until stored.
        match self.state.scan_reports() {
            Ok(pending) => {
                for (agent, body) in pending {
                    match self
                        .authed(async |c, t| c.patch_states(t, &body).await)
                        .await
                    {
                        Ok(()) => match self.state.remove_scan_report(&agent, &body) {
                            Ok(()) => report.scans_delivered += 1,
                            Err(e) => report
                                .errors
                                .push(format!("cannot remove a delivered scan report: {e}")),
                        },
                        Err(e) => {
                            report.scans_queued += 1;
                            report
                                .errors
                                .push(format!("{e} (the scan report is kept and sent again)"));
                        }
                    }
                }
            }
            Err(e) => report.errors.push(e),
        }
        for e in &report.errors {
            tracing::warn!("{e}");
        }
        report
    }

    async fn run_due(
        &self,
        policy: &MachinePolicy,
        history: &mut History,
        report: &mut CycleReport,
    ) {
        let mut order: Vec<&PolicyAssignment> = policy.assignments.iter().collect();
        order.sort_by_key(|a| match a.priority {
            Priority::High => 0,
            Priority::Medium => 1,
            Priority::Low => 2,
        });
        let mut next: Option<Timestamp> = None;
        for assignment in order {
            if self.stopping() {
                break;
            }
            let record = history.advertisements.get(&assignment.advertisement);
            match schedule::due(assignment, record, self.now(), &self.schedule) {
                Due::Now => {
                    let run = self.execute(policy, assignment, history).await;
                    report.runs.push(run);
                }
                Due::At(t) => next = Some(next.map_or(t, |n| n.min(t))),
                Due::Never => {}
            }
        }
        // After the runs: retries and next occurrences.
        for assignment in &policy.assignments {
            let record = history.advertisements.get(&assignment.advertisement);
            if let Due::At(t) = schedule::due(assignment, record, self.now(), &self.schedule) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        report.next_due = next.map(|t| t.to_string());
    }

    /// Runs one assignment through every state; returns what happened.
    async fn execute(
        &self,
        policy: &MachinePolicy,
        assignment: &PolicyAssignment,
        history: &mut History,
    ) -> RunReport {
        let mut run = Run {
            agent: self,
            id: uuid::Uuid::new_v4().simple().to_string(),
            advertisement: &assignment.advertisement,
            step: 0,
            errors: Vec::new(),
        };
        let work = self.state.runs_dir().join(&run.id);
        let result = self
            .execute_in(policy, assignment, history, &mut run, &work)
            .await;
        let _ = std::fs::remove_dir_all(&work);
        let mut out = match result {
            Ok(r) => r,
            Err(waiting) => RunReport {
                advertisement: assignment.advertisement.clone(),
                state: "waiting".into(),
                exit_code: None,
                message: waiting,
            },
        };
        if !run.errors.is_empty() {
            out.message = format!("{} ({})", out.message, run.errors.join("; "));
        }
        out
    }

    async fn execute_in(
        &self,
        policy: &MachinePolicy,
        assignment: &PolicyAssignment,
        history: &mut History,
        run: &mut Run<'_>,
        work: &Path,
    ) -> Result<RunReport, String> {
        let program = &assignment.program;
        let chain = match schedule::run_order(policy, program) {
            Ok(c) => c,
            Err(e) => return Ok(self.fail(assignment, history, run, None, &e)),
        };
        for step in &chain {
            run::can_run(step.program.can_run, self.config.user_logged_on)
                .map_err(|w| format!("{}/{}: {w}", step.program.package, step.program.program))?;
        }
        let steps: Vec<_> = chain
            .iter()
            .filter(|s| {
                schedule::step_needed(s, history.programs.get(&schedule::program_key(s.program)))
            })
            .collect();
        run.push(
            RunState::Accepted,
            None,
            &format!(
                "{}/{} (runWith {}, afterRunning {})",
                program.package,
                program.program,
                enum_text(&program.run_with),
                enum_text(&program.after_running)
            ),
        );

        // Content, every file verified before anything runs.
        let mut dirs = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let p = step.program;
            let dir = work.join(format!("{i}"));
            if let Err(e) = std::fs::create_dir_all(&dir) {
                let e = format!("cannot create {}: {e}", dir.display());
                return Ok(self.fail(assignment, history, run, None, &e));
            }
            if let Some(content) = &p.content {
                run.push(
                    RunState::Downloading,
                    None,
                    &format!(
                        "{}: version {} ({} files, {} bytes)",
                        p.package, content.version, content.files, content.bytes
                    ),
                );
                let dps: Vec<_> = p
                    .distribution_points
                    .iter()
                    .filter(|d| {
                        d.local || assignment.remote_distribution_point != RemoteDpAction::DoNotRun
                    })
                    .collect();
                let cache = self.state.content_dir();
                let fetched = match download::fetch(&self.downloads, content, &dps, &cache).await {
                    Ok(f) => f,
                    Err(e) => return Ok(self.fail(assignment, history, run, None, &e.to_string())),
                };
                if let Err(e) = download::materialize(&fetched.manifest, &cache, &dir) {
                    return Ok(self.fail(assignment, history, run, None, &e));
                }
                run.push(
                    RunState::Downloaded,
                    None,
                    &format!(
                        "{}: {} files verified from {} ({} from the cache)",
                        p.package,
                        fetched.manifest.files.len(),
                        fetched.dp,
                        fetched.cached
                    ),
                );
            }
            dirs.push(dir);
        }

        // Run, run-first programs first.
        let mut restart = false;
        let mut scanned = None;
        for (i, (step, dir)) in steps.iter().zip(&dirs).enumerate() {
            let p = step.program;
            if let Some(scan) = &p.scan {
                run.push(
                    RunState::Running,
                    None,
                    &format!(
                        "{}/{}: scanning with {} ({}) by the built-in engine; the command line is not run",
                        p.package,
                        p.program,
                        scan.catalog,
                        enum_text(&scan.catalog_type)
                    ),
                );
                let key = schedule::program_key(p);
                let previous = history.programs.get(&key).cloned().unwrap_or_default();
                match self.scan(p, dir).await {
                    Ok(summary) => {
                        history
                            .programs
                            .insert(key, previous.after(self.now(), RunResult::Succeeded));
                        scanned = Some(summary);
                    }
                    Err(e) => {
                        history
                            .programs
                            .insert(key, previous.after(self.now(), RunResult::Failed));
                        let e = format!("{}/{}: scan failed: {e}", p.package, p.program);
                        return Ok(self.fail(assignment, history, run, None, &e));
                    }
                }
                continue;
            }
            run.push(
                RunState::Running,
                None,
                &format!(
                    "{}/{}: {} (runWith {}, afterRunning {})",
                    p.package,
                    p.program,
                    p.command_line,
                    enum_text(&p.run_with),
                    enum_text(&p.after_running)
                ),
            );
            let argv = match crate::command_line::parse(&p.command_line) {
                Ok(a) => a,
                Err(e) => return Ok(self.fail(assignment, history, run, None, &e)),
            };
            let code_file = work.join(format!("exit-code-{i}"));
            let log = work.join(format!("output-{i}.log"));
            let max = Duration::from_secs(p.max_run_time_seconds.max(1));
            let outcome = {
                let (argv, dir, log, code_file) =
                    (argv.clone(), dir.clone(), log.clone(), code_file.clone());
                let advertisement = assignment.advertisement.clone();
                tokio::task::spawn_blocking(move || {
                    let code_text = code_file.display().to_string();
                    run::run_blocking(
                        &argv,
                        &dir,
                        max,
                        &log,
                        &[
                            (run::EXIT_CODE_FILE_VAR, code_text.as_str()),
                            ("PATCHOPS_ADVERTISEMENT", advertisement.as_str()),
                        ],
                    )
                })
                .await
                .unwrap_or_else(|e| run::Outcome::NotStarted(e.to_string()))
            };
            let tail = run::output_tail(&log, 1000);
            let with_output = |m: String| {
                if tail.is_empty() {
                    m
                } else {
                    format!("{m}; output: {tail}")
                }
            };
            let key = schedule::program_key(p);
            let (code, failure) = match outcome {
                run::Outcome::Exited(status) => {
                    let code = run::exit_code(status, &code_file);
                    match code {
                        0 => (Some(0), None),
                        run::EXIT_RESTART_REQUIRED => (Some(code), None),
                        c => (
                            Some(c),
                            Some(with_output(format!(
                                "{}/{} exited with {c}",
                                p.package, p.program
                            ))),
                        ),
                    }
                }
                run::Outcome::Signalled(sig) => (
                    None,
                    Some(with_output(format!(
                        "{}/{} was killed by signal {sig}",
                        p.package, p.program
                    ))),
                ),
                run::Outcome::TimedOut(max) => (
                    None,
                    Some(format!(
                        "{}/{} was killed after exceeding its maximum run time of {} s",
                        p.package,
                        p.program,
                        max.as_secs()
                    )),
                ),
                run::Outcome::NotStarted(e) => (None, Some(e)),
            };
            let previous = history.programs.get(&key).cloned().unwrap_or_default();
            let now = self.now();
            if let Some(failure) = failure {
                history
                    .programs
                    .insert(key, previous.after(now, RunResult::Failed));
                return Ok(self.fail(assignment, history, run, code, &failure));
            }
            let result = if code == Some(run::EXIT_RESTART_REQUIRED) {
                restart = true;
                RunResult::RestartPending
            } else {
                RunResult::Succeeded
            };
            history.programs.insert(key, previous.after(now, result));
        }

        let record = history
            .advertisements
            .get(&assignment.advertisement)
            .cloned()
            .unwrap_or_default();
        if restart::inventory_after_install(program) {
            self.inventory_wanted
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if restart {
            let role = restart::Role::of(
                self.scanner
                    .scan(&self.name)
                    .ok()
                    .and_then(|m| m.os.os_type)
                    .as_deref(),
            );
            let message = match restart::decide(program, role) {
                restart::Decision::Postpone(why) => why,
                restart::Decision::RunHook(env) => {
                    let hook = self.run_restart_hook(assignment, work, env).await;
                    format!(
                        "restart required (exit code 3010); the agent does not restart the machine: {hook}"
                    )
                }
            };
            history.advertisements.insert(
                assignment.advertisement.clone(),
                record.after(self.now(), RunResult::RestartPending),
            );
            self.save_history(history, run);
            run.push(
                RunState::RestartPending,
                Some(run::EXIT_RESTART_REQUIRED),
                &message,
            );
            return Ok(run.report(
                RunState::RestartPending,
                Some(run::EXIT_RESTART_REQUIRED),
                message,
            ));
        }
        history.advertisements.insert(
            assignment.advertisement.clone(),
            record.after(self.now(), RunResult::Succeeded),
        );
        self.save_history(history, run);
        let mut message = format!(
            "{}/{} succeeded (runWith {}, afterRunning {})",
            program.package,
            program.program,
            enum_text(&program.run_with),
            enum_text(&program.after_running)
        );
        if let Some(summary) = scanned {
            message = format!("{message}: {summary}");
        }
        run.push(RunState::Succeeded, Some(0), &message);
        Ok(run.report(RunState::Succeeded, Some(0), message))
    }

    /// A scan program: the catalog from the verified content in `dir`,
    /// the scanner's scan facts, the applicability engine; the report is
    /// saved (durably) for delivery. Returns a summary for the status.
    async fn scan(&self, p: &crate::policy::PolicyProgram, dir: &Path) -> Result<String, String> {
        let Some(scan) = &p.scan else {
            return Err("the program has no scan".into());
        };
        if p.content.is_none() {
            return Err("the program has no content to take the catalog from".into());
        }
        let relative = download::safe_relative(&scan.catalog)
            .map_err(|_| format!("unsafe catalog path {:?}", scan.catalog))?;
        let file = dir.join(relative);
        let facts = self.scanner.scan_facts(&self.name)?;
        let (catalog_name, expected) = (scan.catalog.clone(), scan.catalog_type);
        let name = self.name.clone();
        let now = self.now();
        let evaluated = tokio::task::spawn_blocking(move || -> Result<_, String> {
            let loaded = read_catalog(&file, &catalog_name, expected)?;
            let engine = crate::applicability::Engine::new(&loaded.catalog);
            let states = engine.evaluate(&facts, now);
            let counts = crate::applicability::Counts::of(&states);
            let agent = crate::applicability::scan_agent(loaded.catalog.kind);
            let report = PatchStateReport::of(&name, agent, now, &states);
            let body = serde_json::to_vec(&report).map_err(|e| e.to_string())?;
            Ok((agent, body, counts, states.len(), loaded.problems.len()))
        })
        .await
        .map_err(|e| format!("the scan stopped: {e}"))??;
        let (agent, body, counts, n, problems) = evaluated;
        self.state
            .save_scan_report(agent, &body)
            .map_err(|e| format!("cannot save the scan report: {e}"))?;
        let left_out = if problems > 0 {
            format!("; the catalog has {problems} problems (see `patchops catalog inspect`)")
        } else {
            String::new()
        };
        Ok(format!(
            "{n} patch states from {} ({} installed, {} missing, {} not applicable, {} unknown){left_out}",
            scan.catalog, counts.installed, counts.missing, counts.not_applicable, counts.unknown
        ))
    }

    /// Records a failure (and a retry, when one follows).
    fn fail(
        &self,
        assignment: &PolicyAssignment,
        history: &mut History,
        run: &mut Run<'_>,
        code: Option<i32>,
        message: &str,
    ) -> RunReport {
        let record = history
            .advertisements
            .get(&assignment.advertisement)
            .cloned()
            .unwrap_or_default()
            .after(self.now(), RunResult::Failed);
        let retry = schedule::will_retry(assignment, &record, &self.schedule);
        history
            .advertisements
            .insert(assignment.advertisement.clone(), record.clone());
        self.save_history(history, run);
        run.push(RunState::Failed, code, message);
        if retry {
            let at = self
                .now()
                .checked_add(self.schedule.retry_delay)
                .unwrap_or(self.now());
            run.push(
                RunState::Retrying,
                code,
                &format!(
                    "attempt {} of {} failed; next attempt at {at}",
                    record.attempts, self.schedule.max_attempts
                ),
            );
            return run.report(RunState::Retrying, code, message.to_string());
        }
        run.report(RunState::Failed, code, message.to_string())
    }

    fn save_history(&self, history: &History, run: &mut Run<'_>) {
        if let Err(e) = self.state.save_history(history) {
            run.errors.push(format!("cannot save the run history: {e}"));
        }
    }

    /// Runs the restart hook with `PATCHOPS_ADVERTISEMENT`, `env` and,
    /// when the program has a notice, `PATCHOPS_NOTICE_FILE`.
    async fn run_restart_hook(
        &self,
        assignment: &PolicyAssignment,
        work: &Path,
        mut env: Vec<(&'static str, String)>,
    ) -> String {
        let Some(argv) = self.restart_hook.clone() else {
            return "no restart hook configured".into();
        };
        let dir = self.state.root().to_path_buf();
        let log = work.join("restart-hook.log");
        env.insert(
            0,
            ("PATCHOPS_ADVERTISEMENT", assignment.advertisement.clone()),
        );
        if let Some(notice) = &assignment.program.notice {
            let path = work.join("notice.txt");
            match std::fs::write(&path, notice) {
                Ok(()) => env.push((restart::NOTICE_FILE_VAR, path.display().to_string())),
                Err(e) => tracing::warn!("cannot write the notice for the restart hook: {e}"),
            }
        }
        let outcome = tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            run::run_blocking(&argv, &dir, Duration::from_secs(300), &log, &env)
        })
        .await
        .unwrap_or_else(|e| run::Outcome::NotStarted(e.to_string()));
        match outcome {
            run::Outcome::Exited(0) => "the restart hook ran".into(),
            run::Outcome::Exited(c) => format!("the restart hook exited with {c}"),
            run::Outcome::Signalled(s) => format!("the restart hook was killed by signal {s}"),
            run::Outcome::TimedOut(_) => "the restart hook timed out".into(),
            run::Outcome::NotStarted(e) => format!("the restart hook did not start: {e}"),
        }
    }

    /// How long to wait before the next cycle: the polling interval ±
    /// jitter, sooner when an assignment is due earlier.
    pub fn next_wait(&self, report: &CycleReport) -> Duration {
        let client = self.stored_policy().map(|(_, p)| p.policy.client);
        let (interval, jitter) = client.map_or((300, 0), |c| {
            (c.polling_interval_seconds.max(10), c.jitter_seconds)
        });
        let random = uuid::Uuid::new_v4().as_u128() as u64;
        let span = jitter.saturating_mul(2).saturating_add(1);
        let secs = (interval + random % span).saturating_sub(jitter).max(5);
        let mut wait = Duration::from_secs(secs);
        if let Some(due) = report
            .next_due
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok())
        {
            let until = due.duration_since(self.now()).as_secs().max(1) as u64;
            wait = wait.min(Duration::from_secs(until));
        }
        wait
    }

    /// Runs cycles until `shutdown` resolves (a cycle in flight, and the
    /// program it runs, is finished first); `emit` sees each report.
    pub async fn run_until(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        mut emit: impl FnMut(&CycleReport),
    ) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(true);
        });
        self.stop = Some(rx.clone());
        loop {
            let report = self.cycle().await;
            emit(&report);
            if *rx.borrow() {
                return;
            }
            let wait = self.next_wait(&report);
            let mut stop = rx.clone();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

/// Reads a scan program's catalog from its verified content; it must be
/// of the declared type.
fn read_catalog(
    file: &Path,
    shown: &str,
    expected: crate::manifest::sync_host::CatalogType,
) -> Result<crate::catalog::Loaded, String> {
    use crate::catalog::CatalogKind;
    use crate::manifest::sync_host::CatalogType;
    let meta = std::fs::metadata(file).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!("the catalog {shown} is not in the package's content")
        } else {
            format!("the catalog {shown}: {e}")
        }
    })?;
    if meta.len() > crate::catalog::MAX_CATALOG_BYTES as u64 {
        return Err(format!(
            "the catalog {shown} is {} bytes; the limit is {} bytes",
            meta.len(),
            crate::catalog::MAX_CATALOG_BYTES
        ));
    }
    let bytes = std::fs::read(file).map_err(|e| format!("the catalog {shown}: {e}"))?;
    let loaded =
        crate::catalog::read_any(&bytes).map_err(|e| format!("the catalog {shown}: {e}"))?;
    let matches = matches!(
        (loaded.catalog.kind, expected),
        (CatalogKind::Security, CatalogType::Security) | (CatalogKind::Office, CatalogType::Office)
    );
    if !matches {
        return Err(format!(
            "the catalog {shown} is {} catalog, but the program declares `type: {}`",
            match loaded.catalog.kind {
                CatalogKind::Security => "a security (MSSecure.XML)",
                CatalogKind::Office => "an Office",
            },
            enum_text(&expected)
        ));
    }
    Ok(loaded)
}

/// One assignment's run: its id and the status messages it queues.
struct Run<'a> {
    agent: &'a Agent,
    id: String,
    advertisement: &'a str,
    step: u32,
    errors: Vec<String>,
}

impl Run<'_> {
    fn push(&mut self, state: RunState, code: Option<i32>, message: &str) {
        self.step += 1;
        let m = StatusMessage::new(
            &self.id,
            self.step,
            self.advertisement,
            state,
            code,
            message,
            self.agent.now(),
        );
        tracing::info!(advertisement = %self.advertisement, state = state.as_str(), "{message}");
        if let Err(e) = self.agent.queue.push(&[m]) {
            self.errors
                .push(format!("cannot queue a status message: {e}"));
        }
    }

    fn report(&self, state: RunState, exit_code: Option<i32>, message: String) -> RunReport {
        RunReport {
            advertisement: self.advertisement.to_string(),
            state: state.as_str().to_string(),
            exit_code,
            message,
        }
    }
}

/// The camelCase name of a policy enum value.
fn enum_text<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A request that failed, and whether the server refused it as invalid.
#[derive(Debug)]
struct SendError {
    text: String,
    /// The server answered 4xx other than 401 (a token problem, handled
    /// by registering again), 404 and 405 (a wrong URL or proxy, not the
    /// request), 408 and 429 (try later): the same request would be
    /// refused again.
    refused: bool,
}

impl SendError {
    fn of(e: ClientError) -> SendError {
        let refused = matches!(
            e,
            ClientError::Status { status, .. }
                if (400..500).contains(&status) && ![401, 404, 405, 408, 429].contains(&status)
        );
        SendError {
            text: e.to_string(),
            refused,
        }
    }

    fn other(text: String) -> SendError {
        SendError {
            text,
            refused: false,
        }
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}
