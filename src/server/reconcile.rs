//! The continuous reconcile loop of `patchops server --manifests DIR`.
//!
//! One server of a site leads (the leader lease in the store, see
//! [`lead`]); only the leader reconciles. A reconcile is a plan of the
//! manifests against the store and, with `--drift correct`, an apply of that
//! plan — the same two operations as `patchops plan` and `apply`, with their
//! guarantees: the apply lock serializes applies, and a sealed plan applies
//! only to the serial it was made against, so two servers that both believe
//! they lead still cannot apply one change twice.
//!
//! A reconcile runs when the manifests change (notify events, debounced), on
//! every `--interval` (after a `git` fetch with `--git-pull`; this also
//! catches drift of the DPs' content, which every plan re-checks), at once
//! when this server becomes the leader, and at once after a schedule
//! (`schedules`: the sync host's, the packages' `updateDistributionPoints`)
//! wrote or found new content. A failed one is retried with exponential
//! backoff, capped at the interval. Invalid manifests change nothing: the
//! applied state stays, and the error is shown in `/healthz` and the metrics
//! until a reconcile succeeds.
//!
//! The leader also records every outcome in the store
//! ([`Store::record_reconcile`], written only while it holds the lease):
//! status, the error with each invalid file and line, since when, the last
//! success and the last apply. `patchops status site` and the banner of
//! `status advertisements` read it, locally or through `--site`.
//!
//! Side effects are level-triggered: a step cut short (SIGKILL) leaves either
//! the previous state or the new one (apply is one transaction), and DP
//! content that did not arrive is planned again by the next reconcile. On
//! SIGTERM the step in flight finishes and the lease is released, so that
//! another server takes over at once.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::AppState;
use crate::ops::{self, Actor, OpError};
use crate::plan::PlanOptions;
use crate::records::{
    LockRequest, ReconcileAttempt, ReconcileProblem, ReconcileResult, ReconcileState,
};
use crate::store::{Store, LEADER_LEASE};

/// Quiet time after the last file event before a reconcile.
const DEBOUNCE: Duration = Duration::from_millis(500);
/// The first retry after a failure; doubled per failure, capped at the interval.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// What to do with differences between the manifests and the site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Drift {
    /// Plan only; report the drift.
    Detect,
    /// Apply the plan (the default).
    Correct,
}

/// How the reconciler runs.
#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    /// The manifest directory.
    pub manifests: PathBuf,
    /// Clone into / fetch the manifest directory from this repository
    /// before each scheduled reconcile.
    pub git_pull: Option<String>,
    pub interval: Duration,
    pub drift: Drift,
    /// Time-outs and retries of the scheduled catalog downloads.
    pub fetch: crate::sync::FetchOptions,
}

/// The results a reconcile ends with, as counted in the metrics.
pub const RESULTS: &[ReconcileResult] = ReconcileResult::ALL;

/// What the reconciler shows: leadership, the last outcome, the counters.
#[derive(Default)]
pub struct Status {
    pub leader: AtomicBool,
    /// Epoch ms of the last successful reconcile (0: none yet).
    pub last_success_ms: AtomicI64,
    counts: [std::sync::atomic::AtomicU64; 5],
    outcome: Mutex<Outcome>,
}

#[derive(Debug, Clone, Default)]
struct Outcome {
    /// `pending`, `ok`, `drift` or `error`.
    status: &'static str,
    message: Option<String>,
    /// Epoch ms since when this status holds.
    since_ms: i64,
}

/// The `reconcile` member of `/healthz`.
// Named apart from the `/healthz` body (`api::Health`): two schemas of one
// name would leave only one in the document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ReconcileHealth)]
pub struct Health {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub since: String,
    #[serde(rename = "lastSuccess")]
    pub last_success: Option<String>,
}

impl Status {
    fn record(&self, result: &'static str, status: &'static str, message: Option<String>) {
        if let Some(i) = RESULTS.iter().position(|r| r.as_str() == result) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        let now = super::now_ms();
        if status != "error" {
            self.last_success_ms.store(now, Ordering::Relaxed);
        }
        if let Ok(mut o) = self.outcome.lock() {
            if o.status != status || o.message != message {
                *o = Outcome {
                    status,
                    message,
                    since_ms: now,
                };
            }
        }
    }

    /// How many reconciles ended with each of [`RESULTS`].
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        RESULTS
            .iter()
            .zip(&self.counts)
            .map(|(r, c)| (r.as_str(), c.load(Ordering::Relaxed)))
            .collect()
    }

    pub fn health(&self) -> Health {
        let o = self.outcome.lock().map(|o| o.clone()).unwrap_or_default();
        let last = self.last_success_ms.load(Ordering::Relaxed);
        let leader = self.leader.load(Ordering::Relaxed);
        let (status, message) = match o.status {
            "" | "pending" if !leader => ("follower", None),
            "" => ("pending", None),
            s => (s, o.message),
        };
        Health {
            status,
            message,
            since: crate::records::rfc3339_from_epoch_ms(o.since_ms),
            last_success: (last > 0).then(|| crate::records::rfc3339_from_epoch_ms(last)),
        }
    }
}

/// Runs the reconciler until `stop` turns true; then finishes the step in
/// flight and releases the leader lease.
pub async fn run(
    state: Arc<AppState>,
    status: Arc<Status>,
    config: ReconcileConfig,
    mut stop: watch::Receiver<bool>,
) {
    let (lead_stop_tx, lead_stop_rx) = watch::channel(false);
    let (leader_tx, mut leader_rx) = watch::channel(false);
    let lease_id = uuid::Uuid::new_v4().to_string();
    let leader_task = tokio::spawn(lead(
        state.store.clone(),
        lease_id.clone(),
        config.interval,
        status.clone(),
        leader_tx,
        lead_stop_rx,
    ));

    let (events_tx, mut events) = mpsc::unbounded_channel::<()>();
    // Kept alive for as long as the loop runs.
    let mut watcher: Option<notify::RecommendedWatcher> = None;
    let mut next_due = Instant::now();
    let mut debounce: Option<Instant> = None;
    let mut failures: u32 = 0;
    let mut schedules = Arc::new(tokio::sync::Mutex::new(
        super::schedules::Schedules::default(),
    ));
    let mut next_schedule = Instant::now();
    // The schedule step in flight (at most one), beside the reconciles.
    let mut in_flight: Option<tokio::task::JoinHandle<(bool, Duration)>> = None;
    let far = || Instant::now() + Duration::from_secs(365 * 24 * 3600);
    loop {
        if watcher.is_none() && config.manifests.is_dir() {
            watcher = watch_dir(&config.manifests, events_tx.clone());
        }
        let leading = *leader_rx.borrow();
        let wake = if leading {
            let due = debounce.map_or(next_due, |d| d.min(next_due));
            if in_flight.is_none() {
                due.min(next_schedule)
            } else {
                due
            }
        } else {
            far()
        };
        tokio::select! {
            _ = stop.changed() => break,
            done = async { in_flight.as_mut().expect("guarded").await }, if in_flight.is_some() => {
                in_flight = None;
                let (reconcile_now, next_in) = done.unwrap_or((false, config.interval));
                next_schedule = Instant::now() + next_in;
                if reconcile_now {
                    next_due = Instant::now();
                }
                continue;
            }
            changed = leader_rx.changed() => {
                if changed.is_err() {
                    break;
                }
                if *leader_rx.borrow_and_update() {
                    tracing::info!("this server leads: reconciling");
                    next_due = Instant::now();
                    next_schedule = Instant::now();
                    schedules = Arc::new(tokio::sync::Mutex::new(super::schedules::Schedules::default()));
                    schedules.lock().await.start_leading(super::now_ms());
                } else {
                    tracing::warn!("this server no longer leads: reconciling stops");
                    if let Some(task) = in_flight.take() {
                        task.abort();
                    }
                }
                continue;
            }
            Some(()) = events.recv() => {
                debounce = Some(Instant::now() + DEBOUNCE);
                continue;
            }
            () = tokio::time::sleep_until(wake) => {}
        }
        if *stop.borrow() {
            break;
        }
        if in_flight.is_none() && next_schedule <= Instant::now() && *leader_rx.borrow() {
            in_flight = Some(tokio::spawn(run_schedules(
                state.clone(),
                config.clone(),
                schedules.clone(),
                super::schedules::Leading {
                    lease_id: lease_id.clone(),
                    repair: config.drift == Drift::Correct,
                },
            )));
        }
        let now = Instant::now();
        let scheduled = next_due <= now;
        if !scheduled && debounce.is_none_or(|d| d > now) {
            continue;
        }
        debounce = None;
        let ok = step(&state, &status, &config, &lease_id, scheduled).await;
        if ok {
            failures = 0;
            next_due = Instant::now() + config.interval;
        } else {
            failures = failures.saturating_add(1);
            next_due = Instant::now() + backoff(failures, config.interval);
        }
    }
    drop(watcher);
    if let Some(task) = in_flight {
        // Its writes are atomic; a cut download is simply made again.
        task.abort();
        let _ = task.await;
    }
    let _ = lead_stop_tx.send(true);
    let _ = leader_task.await;
}

/// The wait before the next try after `failures` (≥ 1) failed reconciles
/// in a row: [`FIRST_BACKOFF`], doubled per failure, at most `interval`.
fn backoff(failures: u32, interval: Duration) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << failures.saturating_sub(1).min(20))
        .min(interval)
}

/// Runs the due schedules (sync hosts, DP updates); returns whether a
/// reconcile should follow at once and when to look again.
async fn run_schedules(
    state: Arc<AppState>,
    config: ReconcileConfig,
    schedules: Arc<tokio::sync::Mutex<super::schedules::Schedules>>,
    leading: super::schedules::Leading,
) -> (bool, Duration) {
    let max_wait = config.interval;
    let result = schedules
        .lock()
        .await
        .run_due(
            &state.store,
            &config.manifests,
            &config.fetch,
            &leading,
            super::now_ms(),
            max_wait,
        )
        .await;
    match result {
        Ok(ran) => {
            for (host, outcomes) in &ran.synced {
                for o in outcomes {
                    let next = crate::records::rfc3339_from_epoch_ms(o.next_attempt_ms);
                    match &o.outcome {
                        crate::sync::Outcome::Unchanged { restored, .. } => tracing::info!(
                            sync_host = %host, url = %o.url, restored, next = %next,
                            "scheduled sync: catalog unchanged"
                        ),
                        crate::sync::Outcome::Updated {
                            version_id, sha256, ..
                        } => {
                            tracing::info!(
                                sync_host = %host, url = %o.url, version = version_id,
                                sha256 = %sha256, next = %next,
                                "scheduled sync: new catalog version written"
                            )
                        }
                        crate::sync::Outcome::Refused { error, .. }
                        | crate::sync::Outcome::Failed { error, .. } => tracing::warn!(
                            sync_host = %host, url = %o.url,
                            failures = o.consecutive_failures, next = %next,
                            "scheduled sync failed: {error}"
                        ),
                    }
                    let result = match o.outcome {
                        crate::sync::Outcome::Unchanged { .. } => "unchanged",
                        crate::sync::Outcome::Updated { .. } => "updated",
                        crate::sync::Outcome::Refused { .. } => "refused",
                        crate::sync::Outcome::Failed { .. } => "failed",
                    };
                    state.metrics.count_sync(result);
                }
            }
            state
                .metrics
                .set_dp_validations(&ran.validation_scheduled, &ran.validations);
            for (v, stored) in &ran.validated {
                if !stored {
                    tracing::warn!(dp = %v.dp, "not recording the validation: this server no longer leads");
                    continue;
                }
                let ms = v.finished_ms - v.started_ms;
                match v.outcome.as_str() {
                    "ok" => tracing::info!(
                        dp = %v.dp, files = v.files_checked, bytes = v.bytes_checked, ms,
                        "content validation: ok"
                    ),
                    "problems" => tracing::warn!(
                        dp = %v.dp, files = v.files_checked, problems = v.problems,
                        repaired = v.repaired, ms,
                        "content validation found problems: {}",
                        v.problem_files
                            .iter()
                            .map(|p| format!("{} {}", p.problem, p.file))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    _ => tracing::warn!(
                        dp = %v.dp, ms,
                        "content validation failed: {}",
                        v.message.as_deref().unwrap_or("")
                    ),
                }
            }
            for (dp, why) in &ran.validation_later {
                tracing::info!(dp = %dp, "content validation postponed: {why}");
            }
            for package in &ran.changed_packages {
                tracing::info!(
                    package = %package,
                    "updateDistributionPoints: the source changed; refreshing the distribution points"
                );
            }
            // Tests wait for this line to know a check ran, instead of
            // sleeping.
            tracing::debug!(
                next_in_ms = ran.next_in.as_millis() as u64,
                "schedules checked"
            );
            (ran.wants_reconcile(), ran.next_in)
        }
        Err(e) => {
            tracing::warn!("schedules: {e}");
            (false, max_wait)
        }
    }
}

/// One reconcile; true when it succeeded (also when it found drift only).
async fn step(
    state: &Arc<AppState>,
    status: &Status,
    config: &ReconcileConfig,
    lease_id: &str,
    pull: bool,
) -> bool {
    tracing::debug!(pull, "reconcile started");
    let started = std::time::Instant::now();
    let store = state.store.clone();
    let cfg = config.clone();
    let handle = tokio::runtime::Handle::current();
    // Planning hashes content and applying copies it: blocking work, kept off
    // the runtime's workers that serve the agents.
    let outcome = tokio::task::spawn_blocking(move || {
        handle.block_on(async {
            if pull {
                if let Some(url) = &cfg.git_pull {
                    git_pull(url, &cfg.manifests).map_err(Failure::Failed)?;
                }
            }
            reconcile_once(&store, &cfg).await
        })
    })
    .await
    .unwrap_or_else(|e| Err(Failure::Failed(format!("the reconcile task failed: {e}"))));
    // A git remote's password never reaches a log, /healthz or the store.
    let outcome = match (outcome, &config.git_pull) {
        (Err(Failure::Failed(m)), Some(url)) => {
            Err(Failure::Failed(crate::secret::scrub_url_password(m, url)))
        }
        (outcome, _) => outcome,
    };
    let ms = started.elapsed().as_millis() as u64;
    let manifests = config.manifests.clone();
    let revision = tokio::task::spawn_blocking(move || crate::git::revision(&manifests).commit)
        .await
        .unwrap_or(None);
    let mut problems = Vec::new();
    let mut applied_serial = None;
    let (ok, result, shown, message) = match outcome {
        Ok(Done::Unchanged) => {
            tracing::debug!(ms, "reconciled: no changes");
            (true, ReconcileResult::Unchanged, ReconcileState::Ok, None)
        }
        Ok(Done::Applied { serial, what }) => {
            tracing::info!(serial, ms, "reconciled: applied {what}");
            applied_serial = Some(serial);
            if let Err(e) = super::rebuild(state).await {
                tracing::warn!(error = %e, "cannot reload the site after the apply");
            }
            (true, ReconcileResult::Applied, ReconcileState::Ok, None)
        }
        Ok(Done::Drift(what)) => {
            tracing::warn!(ms, "drift detected (not corrected): {what}");
            (
                true,
                ReconcileResult::Drift,
                ReconcileState::Drift,
                Some(what),
            )
        }
        Err(Failure::Invalid(message, found)) => {
            tracing::warn!(
                ms,
                "the manifests are invalid; the applied state is kept: {message}"
            );
            problems = found;
            (
                false,
                ReconcileResult::Invalid,
                ReconcileState::Error,
                Some(message),
            )
        }
        Err(Failure::Failed(message)) => {
            tracing::warn!(ms, "reconcile failed: {message}");
            (
                false,
                ReconcileResult::Failed,
                ReconcileState::Error,
                Some(message),
            )
        }
    };
    status.record(result.as_str(), shown.as_str(), message.clone());
    let attempt = ReconcileAttempt {
        status: shown,
        result,
        message,
        problems,
        revision,
        applied_serial,
        at_ms: super::now_ms(),
        host: ops::host_name(),
        pid: std::process::id(),
    };
    match state.store.record_reconcile(lease_id, &attempt).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!("not recording the reconcile: this server no longer leads"),
        Err(e) => tracing::warn!(error = %e, "cannot record the reconcile in the store"),
    }
    ok
}

enum Done {
    Unchanged,
    Applied { serial: i64, what: String },
    Drift(String),
}

enum Failure {
    /// The manifests do not validate: a summary, and every error where it is.
    Invalid(String, Vec<ReconcileProblem>),
    Failed(String),
}

async fn reconcile_once(store: &Store, config: &ReconcileConfig) -> Result<Done, Failure> {
    let site = crate::site::Site::Local(store.clone());
    let request = ops::plan::Request {
        dir: &config.manifests,
        options: PlanOptions::default(),
        sign_key: None,
        validate_content: false,
    };
    let plan = ops::plan::make(&site, &request)
        .await
        .map_err(|e| match e {
            OpError::Invalid(report) => {
                Failure::Invalid(invalid_message(&report), invalid_problems(&report))
            }
            e => Failure::Failed(e.to_string()),
        })?;
    if plan.is_empty() {
        return Ok(Done::Unchanged);
    }
    let mut what = format!(
        "{} to add, {} to change, {} to destroy, {} distribution step(s)",
        plan.summary.add,
        plan.summary.change,
        plan.summary.destroy,
        plan.distribution.len()
    );
    if !plan.cleanup.is_empty() {
        what += &format!(", {} DP(s) to clean up", plan.cleanup.len());
    }
    if config.drift == Drift::Detect {
        return Ok(Done::Drift(what));
    }
    let actor = Actor {
        name: "patchops server".to_string(),
        host: ops::host_name(),
        pid: std::process::id(),
        command: format!("patchops server --manifests {}", config.manifests.display()),
    };
    let applied = ops::apply::apply(
        &site,
        &plan,
        &actor,
        config.interval.min(Duration::from_secs(60)),
        false,
        &|_| {},
    )
    .await
    .map_err(|e| Failure::Failed(e.to_string()))?;
    Ok(Done::Applied {
        serial: applied.serial,
        what,
    })
}

/// The first errors of an invalid report, one line each.
fn invalid_message(report: &crate::validate::Report) -> String {
    let errors: Vec<String> = report
        .diagnostics
        .iter()
        .filter(|d| d.severity == crate::diagnostic::Severity::Error)
        .map(|d| d.to_string())
        .collect();
    let mut message = format!("the manifests are invalid ({} error(s))", errors.len());
    for e in errors.iter().take(5) {
        message.push_str("; ");
        message.push_str(e);
    }
    message
}

/// The errors of an invalid report, where they are (at most 100: the
/// summary says how many there are).
fn invalid_problems(report: &crate::validate::Report) -> Vec<ReconcileProblem> {
    report
        .diagnostics
        .iter()
        .filter(|d| d.severity == crate::diagnostic::Severity::Error)
        .take(100)
        .map(|d| ReconcileProblem {
            code: d.code.to_string(),
            message: d.message.clone(),
            file: d.file.clone(),
            line: d.line,
            column: d.column,
            path: d.path.clone(),
        })
        .collect()
}

/// Clones `url` into `dir` (absent or empty), or fetches it and checks its
/// head out: the repository is the truth, local edits are overwritten.
fn git_pull(url: &str, dir: &Path) -> Result<(), String> {
    let git = |args: &[&std::ffi::OsStr]| -> Result<(), String> {
        let out = std::process::Command::new("git")
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .map_err(|e| format!("cannot run git: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "git {}: {}",
                args.first()
                    .map(|a| a.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    let os = std::ffi::OsStr::new;
    if dir.join(".git").exists() {
        git(&[
            os("-C"),
            dir.as_os_str(),
            os("fetch"),
            os("--quiet"),
            os(url),
            os("HEAD"),
        ])?;
        git(&[
            os("-C"),
            dir.as_os_str(),
            os("reset"),
            os("--hard"),
            os("--quiet"),
            os("FETCH_HEAD"),
        ])
    } else {
        let empty = std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none());
        if !empty {
            return Err(format!(
                "--git-pull: {} exists and is not a git clone",
                dir.display()
            ));
        }
        git(&[os("clone"), os("--quiet"), os(url), dir.as_os_str()])?;
        // The hash cache plans write must not make the clone dirty.
        use std::io::Write;
        let _ = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(dir.join(".git/info/exclude"))
            .and_then(|mut f| f.write_all(b"/.patchops/\n"));
        Ok(())
    }
}

/// Watches `dir` recursively; every event that may change what a plan reads
/// sends a `()`. Hidden entries (`.git`, `.patchops`, editors' swap files)
/// and reads are ignored, so planning never triggers itself.
fn watch_dir(dir: &Path, tx: mpsc::UnboundedSender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let root = dir.to_path_buf();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else {
            // An overflow or a watch error: reconcile to be safe.
            let _ = tx.send(());
            return;
        };
        if matches!(
            event.kind,
            EventKind::Access(_)
                | EventKind::Modify(notify::event::ModifyKind::Metadata(
                    notify::event::MetadataKind::AccessTime
                ))
        ) {
            return;
        }
        if event.paths.iter().any(|p| relevant(&root, p)) {
            let _ = tx.send(());
        }
    })
    .map_err(|e| tracing::warn!(error = %e, "cannot watch the manifests; reconciling on the interval only"))
    .ok()?;
    match watcher.watch(dir, RecursiveMode::Recursive) {
        Ok(()) => Some(watcher),
        Err(e) => {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the manifests; reconciling on the interval only");
            None
        }
    }
}

fn relevant(root: &Path, path: &Path) -> bool {
    let rel = path.strip_prefix(root).unwrap_or(path);
    !rel.components().any(|c| {
        let name = c.as_os_str().to_string_lossy();
        name.starts_with('.') || name.ends_with('~')
    })
}

/// Holds the leader lease while this server runs: tries to take it (or
/// renews it) every `interval / 6`; the lease lasts `2/3 × interval`, so a
/// dead leader's lease runs out and a follower takes over within one
/// interval. Publishes leadership on `leader`; releases the lease on stop.
async fn lead(
    store: Store,
    id: String,
    interval: Duration,
    status: Arc<Status>,
    leader: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let lease = (interval * 2 / 3).max(Duration::from_millis(600));
    let every = (interval / 6).max(Duration::from_millis(100));
    let request = LockRequest {
        id,
        holder: "patchops server".to_string(),
        host: ops::host_name(),
        pid: std::process::id(),
        command: "patchops server".to_string(),
        lease,
    };
    let mut last_held: Option<Instant> = None;
    loop {
        let asked = Instant::now();
        match store.try_lease(LEADER_LEASE, &request).await {
            Ok(true) => last_held = Some(asked),
            Ok(false) => last_held = None,
            Err(e) => tracing::warn!(error = %e, "cannot renew the leader lease"),
        }
        // Without an answer, lead only while the lease surely runs.
        let leading = last_held.is_some_and(|t| t.elapsed() < lease / 2);
        status.leader.store(leading, Ordering::Relaxed);
        leader.send_if_modified(|l| std::mem::replace(l, leading) != leading);
        tokio::select! {
            _ = stop.changed() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
    status.leader.store(false, Ordering::Relaxed);
    let _ = leader.send(false);
    if last_held.is_some() {
        match store.release_lease(LEADER_LEASE, &request.id).await {
            Ok(_) => tracing::info!("leader lease released"),
            Err(e) => tracing::warn!(error = %e, "cannot release the leader lease; it expires"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_reconciles_back_off_doubling_up_to_the_interval() {
        let interval = Duration::from_secs(30);
        let waits: Vec<u64> = (1..=7).map(|f| backoff(f, interval).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff(u32::MAX, interval), interval);
        assert_eq!(
            backoff(1, Duration::from_millis(500)),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn hidden_and_backup_paths_are_ignored() {
        let root = Path::new("/m");
        assert!(relevant(root, Path::new("/m/office/package.yaml")));
        assert!(relevant(root, Path::new("/m/site.yaml.tmp")));
        assert!(!relevant(root, Path::new("/m/.git/index")));
        assert!(!relevant(root, Path::new("/m/.patchops/hash-cache.json")));
        assert!(!relevant(root, Path::new("/m/office/.package.yaml.swp")));
        assert!(!relevant(root, Path::new("/m/site.yaml~")));
    }

    #[test]
    fn a_git_remote_password_is_scrubbed() {
        let url = "https://bob:s3cr%40t@git.example/site.git";
        let message =
            "git clone: fatal: unable to access 'https://bob:s3cr%40t@git.example/site.git/': \
                       could not resolve host; s3cr@t";
        let scrubbed = crate::secret::scrub_url_password(message.to_string(), url);
        assert!(!scrubbed.contains("s3cr"), "{scrubbed}");
        assert!(scrubbed.contains("bob:***@git.example"), "{scrubbed}");
    }

    #[test]
    fn status_shows_errors_until_a_success() {
        let s = Status::default();
        s.leader.store(true, Ordering::Relaxed);
        assert_eq!(s.health().status, "pending");
        s.record("invalid", "error", Some("bad".into()));
        let h = s.health();
        assert_eq!((h.status, h.message.as_deref()), ("error", Some("bad")));
        assert!(h.last_success.is_none());
        s.record("applied", "ok", None);
        let h = s.health();
        assert_eq!((h.status, h.message), ("ok", None));
        assert!(h.last_success.is_some());
        let counts = s.counts();
        assert!(counts.contains(&("invalid", 1)) && counts.contains(&("applied", 1)));
    }
}
