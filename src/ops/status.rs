//! `patchops status …`: how advertisements are doing, what one machine
//! is up to and how compliant machines are with each bulletin, from the store (applied site, inventory, policies, status
//! messages). Targeting is evaluated afresh from the applied site and the
//! inventory, so it agrees with what the site server serves.

use std::collections::BTreeMap;

use serde::Serialize;

use super::impact::targets;
use super::OpError;
use crate::applicability::{Counts, Status};
use crate::eval::{Evaluator, MachineTable};
use crate::inventory::machine_key;
use crate::plan::applied_site;
use crate::records::{AssignmentState, StatusMessage, StoredPatchState};
use crate::site::Site;

/// States an agent reports while an assignment is under way.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdvertisementStatus {
    pub name: String,
    pub package: String,
    pub program: String,
    pub collection: String,
    /// Machines the advertisement targets now.
    pub targeted: u64,
    /// Targeted machines that reported anything about it.
    pub received: u64,
    pub in_progress: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub restart_pending: u64,
    /// Each reporting machine's newest message (with `advertisement NAME`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub machines: Vec<MachineReport>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineReport {
    pub machine: String,
    pub advertisement: String,
    /// Whether the advertisement still targets the machine.
    pub targeted: bool,
    pub state: String,
    pub exit_code: Option<i32>,
    pub message: String,
    /// RFC 3339.
    pub at: String,
}

impl MachineReport {
    fn of(m: &StatusMessage, targeted: bool) -> MachineReport {
        MachineReport {
            machine: m.machine_key.clone(),
            advertisement: m.advertisement.clone(),
            targeted,
            state: m.state.to_string(),
            exit_code: m.exit_code,
            message: m.message.clone(),
            at: time(m.at_ms),
        }
    }
}

fn time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// Loads the applied site and the inventory and evaluates the targets.
async fn targeting(
    store: &Site,
) -> Result<(crate::plan::AppliedSite, MachineTable, Evaluator), OpError> {
    let objects = store.objects().await?;
    let applied = applied_site(&objects).map_err(|e| OpError::Input(e.to_string()))?;
    let mut table = MachineTable::new();
    for (id, machine) in store.machines().await? {
        table
            .insert_with_id(id, machine)
            .map_err(|e| OpError::Input(e.to_string()))?;
    }
    let mut evaluator =
        Evaluator::from_desired(&applied.desired).map_err(|e| OpError::Input(e.to_string()))?;
    evaluator.evaluate_all(&table);
    Ok((applied, table, evaluator))
}

/// Every advertisement's counts; with `only`, that advertisement with
/// each reporting machine's newest message.
pub async fn advertisements(
    store: &Site,
    only: Option<&str>,
) -> Result<Vec<AdvertisementStatus>, OpError> {
    let (applied, table, evaluator) = targeting(store).await?;
    if let Some(name) = only {
        if !applied.desired.advertisements.contains_key(name) {
            let names = applied.desired.advertisements.keys().map(String::as_str);
            let hint = crate::suggest::did_you_mean(name, names)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Err(OpError::Input(format!(
                "no advertisement `{name}` in the applied site{hint}"
            )));
        }
    }
    let targets = targets(&applied.desired, &evaluator);
    let latest = store.latest_status(only).await?;
    let mut by_ad: BTreeMap<&str, Vec<&StatusMessage>> = BTreeMap::new();
    for m in &latest {
        by_ad.entry(m.advertisement.as_str()).or_default().push(m);
    }
    let mut out = Vec::new();
    for (name, ad) in &applied.desired.advertisements {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let members = targets.get(name);
        let is_targeted = |machine: &str| {
            table
                .id_of(machine)
                .is_some_and(|id| members.is_some_and(|m| m.contains(id)))
        };
        let mut status = AdvertisementStatus {
            name: name.clone(),
            package: ad.spec.package.clone(),
            program: ad.spec.program.clone(),
            collection: ad.spec.collection.clone(),
            targeted: members.map_or(0, |m| m.len()),
            received: 0,
            in_progress: 0,
            succeeded: 0,
            failed: 0,
            restart_pending: 0,
            machines: Vec::new(),
        };
        for m in by_ad.get(name.as_str()).into_iter().flatten() {
            let targeted = is_targeted(&m.machine_key);
            if only.is_some() {
                status.machines.push(MachineReport::of(m, targeted));
            }
            if !targeted {
                continue;
            }
            status.received += 1;
            match m.state {
                AssignmentState::Succeeded => status.succeeded += 1,
                AssignmentState::Failed => status.failed += 1,
                AssignmentState::RestartPending => status.restart_pending += 1,
                AssignmentState::Accepted
                | AssignmentState::Downloading
                | AssignmentState::Downloaded
                | AssignmentState::Running
                | AssignmentState::Retrying => status.in_progress += 1,
            }
        }
        out.push(status);
    }
    Ok(out)
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineStatus {
    pub name: String,
    pub os: Option<String>,
    pub addresses: Vec<String>,
    pub last_heartbeat: Option<String>,
    /// No heartbeat for more than twice the site's heartbeat interval.
    pub stale: bool,
    pub policy_version: Option<u64>,
    pub collections: Vec<String>,
    pub assignments: Vec<String>,
    /// Newest first.
    pub messages: Vec<MachineReport>,
    /// The machine's patch states, from its scans.
    pub patch_states: MachinePatches,
}

/// One machine's patch states: its scans, the counts and every state.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MachinePatches {
    /// One per scan agent, with the time of the scan stored.
    pub scans: Vec<ScanTime>,
    /// States by status (one per bulletin and product).
    pub counts: Counts,
    /// By bulletin, then product.
    pub states: Vec<MachinePatchState>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanTime {
    pub scan_agent: String,
    /// RFC 3339.
    pub scan_time: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MachinePatchState {
    pub bulletin: String,
    pub product: Option<String>,
    pub title: Option<String>,
    pub q_numbers: Vec<String>,
    pub status: String,
    pub reboot: String,
    pub patch: Option<String>,
    pub reason: String,
    pub scan_agent: String,
    /// RFC 3339.
    pub scan_time: String,
}

impl MachinePatches {
    /// The pure part: one machine's stored rows.
    pub fn of(rows: &[StoredPatchState]) -> MachinePatches {
        let mut scans: BTreeMap<&str, i64> = BTreeMap::new();
        let mut counts = Counts::default();
        let mut states = Vec::with_capacity(rows.len());
        for r in rows {
            let newest = scans.entry(r.scan_agent.as_str()).or_insert(r.scan_time_ms);
            *newest = (*newest).max(r.scan_time_ms);
            if let Some(status) = Status::parse(&r.status) {
                counts.add(status);
            }
            states.push(MachinePatchState {
                bulletin: r.bulletin.clone(),
                product: r.product.clone(),
                title: r.title.clone(),
                q_numbers: r.q_numbers.clone(),
                status: r.status.clone(),
                reboot: r.reboot.clone(),
                patch: r.patch.clone(),
                reason: r.reason.clone(),
                scan_agent: r.scan_agent.clone(),
                scan_time: time(r.scan_time_ms),
            });
        }
        MachinePatches {
            scans: scans
                .into_iter()
                .map(|(agent, ms)| ScanTime {
                    scan_agent: agent.to_string(),
                    scan_time: time(ms),
                })
                .collect(),
            counts,
            states,
        }
    }
}

/// One machine: its facts, memberships, assignments, policy version and
/// newest status messages.
pub async fn machine(store: &Site, name: &str) -> Result<MachineStatus, OpError> {
    let (applied, table, evaluator) = targeting(store).await?;
    let key = machine_key(name);
    let Some(id) = table.id_of(&key) else {
        return Err(OpError::Input(format!(
            "no machine `{name}` in the inventory"
        )));
    };
    let machine = table
        .get(id)
        .cloned()
        .ok_or_else(|| OpError::Input(format!("no machine `{name}` in the inventory")))?;
    let targets = targets(&applied.desired, &evaluator);
    let assignments: Vec<String> = targets
        .iter()
        .filter(|(_, members)| members.contains(id))
        .map(|(ad, _)| ad.clone())
        .collect();
    let heartbeat_secs = applied
        .desired
        .site
        .as_ref()
        .and_then(|s| {
            crate::units::parse_duration(s.spec.client_policy.heartbeat_interval.as_str()).ok()
        })
        .map_or(86_400, |d| d.as_secs() as i64);
    let stale = heartbeat_stale(
        machine.last_heartbeat,
        heartbeat_secs,
        jiff::Timestamp::now(),
    );
    let policy_version = store.policy(id).await?.map(|p| p.version);
    let messages = store
        .status_for_machine(&key, 20)
        .await?
        .iter()
        .map(|m| MachineReport::of(m, assignments.contains(&m.advertisement)))
        .collect();
    let patch_states = MachinePatches::of(&store.patch_states(Some(&key)).await?);
    Ok(MachineStatus {
        name: machine.name.clone(),
        os: machine.os.name.clone(),
        addresses: machine.ip.addresses.iter().map(|a| a.to_string()).collect(),
        last_heartbeat: machine.last_heartbeat.map(|t| t.to_string()),
        stale,
        policy_version,
        collections: evaluator
            .collections_of(id)
            .into_iter()
            .map(str::to_string)
            .collect(),
        assignments,
        messages,
        patch_states,
    })
}

/// One bulletin's compliance over the scanned machines.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateStatus {
    pub bulletin: String,
    pub title: Option<String>,
    pub q_numbers: Vec<String>,
    /// Machines by their state for the bulletin (a machine counts once:
    /// its products' states combine as missing over unknown over
    /// installed over not applicable).
    #[serde(flatten)]
    pub counts: Counts,
    /// installed / (installed + missing), in percent; `None` when no
    /// machine needs the bulletin.
    pub percent_compliant: Option<f64>,
    /// The scan agents whose states these are.
    pub scan_agents: Vec<String>,
    /// The newest scan time among the machines' states (RFC 3339).
    pub last_scan: String,
}

/// The scans behind `status updates`, per scan agent.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanSummary {
    pub scan_agent: String,
    /// Machines with states from this scan agent.
    pub machines: u64,
    /// The oldest and newest scan time (RFC 3339).
    pub oldest_scan: String,
    pub newest_scan: String,
}

/// `patchops status updates`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdatesStatus {
    /// The collection the machines were limited to, when one was given.
    pub collection: Option<String>,
    /// Machines with stored patch states (in the collection, when given).
    pub machines: u64,
    /// Per scan agent: machines and the range of scan times.
    pub scans: Vec<ScanSummary>,
    /// By bulletin ID.
    pub bulletins: Vec<UpdateStatus>,
}

/// Combines one machine's states of a bulletin.
fn combine(a: Status, b: Status) -> Status {
    let rank = |s: Status| match s {
        Status::Missing => 3,
        Status::Unknown => 2,
        Status::Installed => 1,
        Status::NotApplicable => 0,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// Per-bulletin compliance from the stored patch states, of the members
/// of `collection` when given (evaluated afresh from the applied site and
/// the inventory, as the other status commands do).
pub async fn updates(store: &Site, collection: Option<&str>) -> Result<UpdatesStatus, OpError> {
    let states = store.patch_states(None).await?;
    let members: Option<std::collections::HashSet<String>> = match collection {
        None => None,
        Some(name) => {
            let (_, table, evaluator) = targeting(store).await?;
            let Some(bitmap) = evaluator.members(name) else {
                let names = evaluator.collection_names();
                let hint = crate::suggest::did_you_mean(name, names)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                return Err(OpError::Input(format!(
                    "no collection `{name}` in the applied site{hint}"
                )));
            };
            Some(
                bitmap
                    .iter()
                    .filter_map(|id| table.get(id).map(|m| machine_key(&m.name)))
                    .collect(),
            )
        }
    };
    Ok(summarize(&states, members.as_ref(), collection))
}

/// The pure part of [`updates`].
pub fn summarize(
    states: &[StoredPatchState],
    members: Option<&std::collections::HashSet<String>>,
    collection: Option<&str>,
) -> UpdatesStatus {
    // (bulletin, machine) → combined status; bulletin → title, Q numbers.
    let mut per: BTreeMap<&str, BTreeMap<&str, Status>> = BTreeMap::new();
    let mut info: BTreeMap<&str, &StoredPatchState> = BTreeMap::new();
    let mut agents: BTreeMap<&str, (std::collections::BTreeSet<&str>, i64)> = BTreeMap::new();
    // scan agent → machine → newest scan time.
    let mut scans: BTreeMap<&str, BTreeMap<&str, i64>> = BTreeMap::new();
    let mut machines = std::collections::BTreeSet::new();
    for s in states {
        if members.is_some_and(|m| !m.contains(&s.machine_key)) {
            continue;
        }
        let Some(status) = Status::parse(&s.status) else {
            continue;
        };
        machines.insert(s.machine_key.as_str());
        info.entry(s.bulletin.as_str()).or_insert(s);
        let (set, last) = agents
            .entry(s.bulletin.as_str())
            .or_insert_with(|| (Default::default(), i64::MIN));
        set.insert(s.scan_agent.as_str());
        *last = (*last).max(s.scan_time_ms);
        let t = scans
            .entry(s.scan_agent.as_str())
            .or_default()
            .entry(s.machine_key.as_str())
            .or_insert(s.scan_time_ms);
        *t = (*t).max(s.scan_time_ms);
        per.entry(s.bulletin.as_str())
            .or_default()
            .entry(s.machine_key.as_str())
            .and_modify(|e| *e = combine(*e, status))
            .or_insert(status);
    }
    let bulletins = per
        .into_iter()
        .map(|(bulletin, by_machine)| {
            let mut counts = Counts::default();
            for status in by_machine.values() {
                counts.add(*status);
            }
            let first = info[bulletin];
            let (set, last) = &agents[bulletin];
            UpdateStatus {
                bulletin: bulletin.to_string(),
                title: first.title.clone(),
                q_numbers: first.q_numbers.clone(),
                percent_compliant: counts.percent_compliant(),
                counts,
                scan_agents: set.iter().map(|a| a.to_string()).collect(),
                last_scan: time(*last),
            }
        })
        .collect();
    let scans = scans
        .into_iter()
        .map(|(agent, by_machine)| {
            let oldest = by_machine.values().copied().min().unwrap_or_default();
            let newest = by_machine.values().copied().max().unwrap_or_default();
            ScanSummary {
                scan_agent: agent.to_string(),
                machines: by_machine.len() as u64,
                oldest_scan: time(oldest),
                newest_scan: time(newest),
            }
        })
        .collect();
    UpdatesStatus {
        collection: collection.map(str::to_string),
        machines: machines.len() as u64,
        scans,
        bulletins,
    }
}

/// `patchops status site`: the applied state and the reconcile outcome.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SiteStatus {
    /// The site code, once an apply has set it.
    pub site: Option<String>,
    /// The applied state's serial (what the site servers serve).
    pub serial: i64,
    /// The last reconcile of `patchops server --manifests`; None when no
    /// server ever reconciled this store.
    pub reconcile: Option<ReconcileView>,
    /// Who holds the leader lease (reconciles), as stored.
    pub leader: Option<LeaderView>,
    /// Each applied distribution point and its content validation.
    pub distribution_points: Vec<DpStatus>,
}

/// The stored reconcile outcome, times in RFC 3339.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileView {
    /// `ok`, `drift` or `error`.
    pub status: String,
    /// `applied`, `unchanged`, `drift`, `invalid` or `failed`.
    pub result: String,
    pub message: Option<String>,
    /// Each error of invalid manifests, with its file and line.
    pub problems: Vec<crate::records::ReconcileProblem>,
    /// The commit of the manifests the last reconcile read.
    pub revision: Option<String>,
    pub last_attempt: String,
    /// Since when `status` holds.
    pub since: String,
    /// Failed reconciles since the last good one.
    pub failures: u32,
    pub last_success: Option<String>,
    pub last_apply: Option<LastApply>,
    /// The server that recorded it.
    pub host: String,
    pub pid: u32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastApply {
    pub at: String,
    pub serial: i64,
    pub revision: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderView {
    pub host: String,
    pub pid: u32,
    pub since: String,
    pub expires_at: String,
    /// Whether the lease still runs (else no server leads now).
    pub live: bool,
}

impl ReconcileView {
    pub fn of(r: &crate::records::ReconcileStatus) -> ReconcileView {
        ReconcileView {
            status: r.status.to_string(),
            result: r.result.to_string(),
            message: r.message.clone(),
            problems: r.problems.clone(),
            revision: r.revision.clone(),
            last_attempt: time(r.attempt_ms),
            since: time(r.since_ms),
            failures: r.failures,
            last_success: r.last_success_ms.map(time),
            last_apply: match (r.last_apply_ms, r.last_apply_serial) {
                (Some(at), Some(serial)) => Some(LastApply {
                    at: time(at),
                    serial,
                    revision: r.last_apply_revision.clone(),
                }),
                _ => None,
            },
            host: r.host.clone(),
            pid: r.pid,
        }
    }
}

/// Whether a machine's heartbeat is stale at `now`: none yet, or older than
/// two heartbeat intervals. Pure (the caller reads the clock).
pub fn heartbeat_stale(
    last_heartbeat: Option<jiff::Timestamp>,
    heartbeat_secs: i64,
    now: jiff::Timestamp,
) -> bool {
    last_heartbeat.is_none_or(|t| now.as_second() - t.as_second() > 2 * heartbeat_secs)
}

/// Whether a lease that runs out at `expires_at` (RFC 3339) still runs at
/// `now`; an unreadable time is not live. Pure.
pub fn lease_live(expires_at: &str, now: jiff::Timestamp) -> bool {
    expires_at.parse::<jiff::Timestamp>().is_ok_and(|t| t > now)
}

/// `patchops status dp`: one distribution point and its scheduled deep
/// content validation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DpStatus {
    pub name: String,
    /// The content library's directory.
    pub path: String,
    pub enabled: bool,
    /// The validation's period (`validation.every`); None when it is off
    /// (`validation.enabled: false`, or the DP is disabled).
    pub validation_every: Option<String>,
    /// The last validation the leading server recorded.
    pub last_validation: Option<DpValidationView>,
    /// When the next one is due: one period after the last one started;
    /// None when validation is off or the DP was never validated.
    pub next_validation: Option<String>,
    /// Whether one is due now (never validated counts): the leading
    /// server runs it at its next schedule check.
    pub validation_due: bool,
}

/// A stored validation, times in RFC 3339.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DpValidationView {
    pub started: String,
    pub finished: String,
    /// `ok`, `problems` or `failed`.
    pub outcome: String,
    pub files_checked: u64,
    pub bytes_checked: u64,
    pub problems: u64,
    /// The first problems (at most 20; `problems` counts them all).
    pub problem_files: Vec<crate::records::DpProblem>,
    pub message: Option<String>,
    /// Damaged files removed for the reconcile to copy again.
    pub repaired: u64,
    /// The server that validated.
    pub host: String,
    pub pid: u32,
}

/// Each applied DP (by name) with its stored validation and next due
/// time at `now_ms`. Pure.
pub fn dp_statuses(
    dps: &BTreeMap<String, crate::model::Object<crate::manifest::DistributionPointSpec>>,
    validations: &[crate::records::DpValidation],
    now_ms: i64,
) -> Vec<DpStatus> {
    dps.iter()
        .map(|(name, dp)| {
            let last = validations.iter().find(|v| &v.dp == name);
            let every = (dp.spec.enabled && dp.spec.validation.enabled)
                .then(|| crate::units::parse_duration(dp.spec.validation.every.as_str()).ok())
                .flatten();
            let next_ms = match (every, last) {
                (Some(every), Some(last)) => Some(
                    last.started_ms
                        .saturating_add(i64::try_from(every.as_millis()).unwrap_or(i64::MAX / 2)),
                ),
                _ => None,
            };
            DpStatus {
                name: name.clone(),
                path: dp.spec.path.clone(),
                enabled: dp.spec.enabled,
                validation_every: every
                    .map(|e| crate::plan::canonical::canonical_duration(e.as_secs())),
                last_validation: last.map(|v| DpValidationView {
                    started: time(v.started_ms),
                    finished: time(v.finished_ms),
                    outcome: v.outcome.to_string(),
                    files_checked: v.files_checked,
                    bytes_checked: v.bytes_checked,
                    problems: v.problems,
                    problem_files: v.problem_files.clone(),
                    message: v.message.clone(),
                    repaired: v.repaired,
                    host: v.host.clone(),
                    pid: v.pid,
                }),
                next_validation: next_ms.map(time),
                validation_due: every.is_some() && next_ms.is_none_or(|n| n <= now_ms),
            }
        })
        .collect()
}

/// Every applied DP, or the one named, with its last validation.
pub async fn dps(store: &Site, only: Option<&str>) -> Result<Vec<DpStatus>, OpError> {
    let objects = store.objects().await?;
    let applied = applied_site(&objects).map_err(|e| OpError::Input(e.to_string()))?;
    let mut dps = applied.desired.distribution_points;
    if let Some(name) = only {
        if !dps.contains_key(name) {
            let hint = crate::suggest::did_you_mean(name, dps.keys().map(String::as_str))
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Err(OpError::Input(format!(
                "no distribution point `{name}` in the applied site{hint}"
            )));
        }
        dps.retain(|n, _| n == name);
    }
    let validations = store.dp_validations().await?;
    Ok(dp_statuses(
        &dps,
        &validations,
        jiff::Timestamp::now().as_millisecond(),
    ))
}

/// The applied state, the stored reconcile outcome and the leader.
pub async fn site(store: &Site) -> Result<SiteStatus, OpError> {
    let info = store.info().await?;
    let reconcile = store.reconcile_status().await?;
    let leader = store
        .lease_holder(crate::store::LEADER_LEASE)
        .await?
        .map(|h| {
            let live = lease_live(&h.expires_at, jiff::Timestamp::now());
            LeaderView {
                host: h.host,
                pid: h.pid,
                since: h.acquired_at,
                expires_at: h.expires_at,
                live,
            }
        });
    let distribution_points = dps(store, None).await?;
    Ok(SiteStatus {
        site: info.site,
        serial: info.serial,
        reconcile: reconcile.as_ref().map(ReconcileView::of),
        leader,
        distribution_points,
    })
}

/// The reconcile outcome when it needs attention (`error` or `drift`),
/// for the banner of `status advertisements`.
pub async fn reconcile_attention(store: &Site) -> Result<Option<ReconcileView>, OpError> {
    Ok(store
        .reconcile_status()
        .await?
        .filter(|r| r.status != crate::records::ReconcileState::Ok)
        .as_ref()
        .map(ReconcileView::of))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dp(yaml_spec: &str) -> crate::model::Object<crate::manifest::DistributionPointSpec> {
        crate::model::Object {
            metadata: serde_json::from_str(r#"{"name":"x"}"#).unwrap(),
            spec: serde_json::from_str(yaml_spec).unwrap(),
            origin: crate::model::Origin {
                file: "dp.yaml".into(),
                line: 1,
            },
        }
    }

    #[test]
    fn a_dps_next_validation_is_one_period_after_the_last_start() {
        let mut dps = BTreeMap::new();
        dps.insert(
            "A".to_string(),
            dp(r#"{"path":"/a","url":"http://a/","validation":{"every":"1d"}}"#),
        );
        dps.insert("B".to_string(), dp(r#"{"path":"/b","url":"http://b/"}"#));
        dps.insert(
            "C".to_string(),
            dp(r#"{"path":"/c","url":"http://c/","validation":{"enabled":false}}"#),
        );
        dps.insert(
            "D".to_string(),
            dp(r#"{"path":"/d","url":"http://d/","enabled":false}"#),
        );
        let day = 86_400_000;
        let t0 = 1_800_000_000_000;
        let validation = |name: &str| crate::records::DpValidation {
            dp: name.into(),
            path: "/".into(),
            started_ms: t0,
            finished_ms: t0 + 1_000,
            outcome: crate::records::DpOutcome::Ok,
            files_checked: 1,
            bytes_checked: 1,
            problems: 0,
            problem_files: vec![],
            message: None,
            repaired: 0,
            host: "h".into(),
            pid: 1,
        };
        let stored = [validation("A"), validation("C")];
        let at = |now| dp_statuses(&dps, &stored, now);
        let before = at(t0 + day - 1);
        let [a, b, c, d] = &before[..] else {
            panic!("{before:?}")
        };
        assert_eq!(a.validation_every.as_deref(), Some("1d"));
        assert_eq!(a.next_validation, Some(time(t0 + day)));
        assert!(!a.validation_due);
        assert!(at(t0 + day)[0].validation_due);
        // The default period; never validated: due, with no time.
        assert_eq!(b.validation_every.as_deref(), Some("7d"));
        assert_eq!(
            (b.next_validation.as_deref(), b.validation_due),
            (None, true)
        );
        // Off: the last result is still shown, nothing is due.
        assert_eq!(
            (c.validation_every.as_deref(), c.validation_due),
            (None, false)
        );
        assert!(c.last_validation.is_some() && c.next_validation.is_none());
        assert_eq!((d.enabled, d.validation_due), (false, false));
    }

    fn row(machine: &str, bulletin: &str, status: &str, agent: &str, at: i64) -> StoredPatchState {
        StoredPatchState {
            machine_key: machine.into(),
            bulletin: bulletin.into(),
            product: (status != "notApplicable").then(|| "SQL Server 7.0".into()),
            q_numbers: vec!["Q266766".into()],
            title: Some("t".into()),
            status: status.into(),
            reboot: "required".into(),
            scan_agent: agent.into(),
            scan_time_ms: at,
            patch: None,
            reason: "r".into(),
        }
    }

    const DAY: i64 = 86_400_000;

    #[test]
    fn a_heartbeat_is_stale_after_two_intervals() {
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let now = t("2031-01-01T12:00:00Z");
        let hour = 3600;
        assert!(heartbeat_stale(None, hour, now), "never seen");
        assert!(!heartbeat_stale(Some(t("2031-01-01T10:00:00Z")), hour, now));
        assert!(heartbeat_stale(Some(t("2031-01-01T09:59:59Z")), hour, now));
    }

    #[test]
    fn a_lease_is_live_until_it_expires() {
        let now = "2031-01-01T12:00:00Z".parse().unwrap();
        assert!(lease_live("2031-01-01T12:00:01Z", now));
        assert!(!lease_live("2031-01-01T12:00:00Z", now));
        assert!(!lease_live("not a time", now));
    }

    #[test]
    fn updates_show_scan_agents_and_scan_times() {
        let t0 = 1_764_000_000_000;
        let rows = vec![
            row("a", "MS00-048", "installed", "patchops-mssecure", t0),
            row("b", "MS00-048", "missing", "patchops-mssecure", t0 + DAY),
            row(
                "c",
                "MS00-048",
                "notApplicable",
                "patchops-mssecure",
                t0 + 2 * DAY,
            ),
            row("a", "OFF-1", "missing", "patchops-office", t0 + 3 * DAY),
        ];
        let u = summarize(&rows, None, None);
        assert_eq!(u.machines, 3);
        assert_eq!(u.scans.len(), 2);
        assert_eq!(u.scans[0].scan_agent, "patchops-mssecure");
        assert_eq!(u.scans[0].machines, 3);
        assert_eq!(u.scans[0].oldest_scan, time(t0));
        assert_eq!(u.scans[0].newest_scan, time(t0 + 2 * DAY));
        assert_eq!(u.scans[1].machines, 1);
        let b = &u.bulletins[0];
        assert_eq!(b.bulletin, "MS00-048");
        assert_eq!(b.percent_compliant, Some(50.0));
        assert_eq!(b.scan_agents, vec!["patchops-mssecure"]);
        assert_eq!(b.last_scan, time(t0 + 2 * DAY));
        // Limited to members: the scans are those of the members.
        let members = ["b".to_string()].into_iter().collect();
        let u = summarize(&rows, Some(&members), Some("C"));
        assert_eq!(u.machines, 1);
        assert_eq!(u.scans.len(), 1);
        assert_eq!(u.scans[0].newest_scan, time(t0 + DAY));
    }

    #[test]
    fn one_machine_s_patches() {
        let t0 = 1_764_000_000_000;
        let rows = vec![
            row("a", "MS00-048", "missing", "patchops-mssecure", t0),
            row("a", "MS98-001", "notApplicable", "patchops-mssecure", t0),
            row("a", "OFF-1", "installed", "patchops-office", t0 + DAY),
        ];
        let p = MachinePatches::of(&rows);
        assert_eq!(p.scans.len(), 2);
        assert_eq!(p.scans[1].scan_agent, "patchops-office");
        assert_eq!(p.scans[1].scan_time, time(t0 + DAY));
        assert_eq!(
            (
                p.counts.installed,
                p.counts.missing,
                p.counts.not_applicable
            ),
            (1, 1, 1)
        );
        assert_eq!(p.states[0].status, "missing");
        assert_eq!(p.states[1].product, None);
        assert!(MachinePatches::of(&[]).scans.is_empty());
    }
}
