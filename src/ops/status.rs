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
use crate::store::{StatusMessage, Store, StoredPatchState};

/// States an agent reports while an assignment is under way.
const IN_PROGRESS: &[&str] = &[
    "accepted",
    "downloading",
    "downloaded",
    "running",
    "retrying",
];

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
            state: m.state.clone(),
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
    store: &Store,
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
    store: &Store,
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
            match m.state.as_str() {
                "succeeded" => status.succeeded += 1,
                "failed" => status.failed += 1,
                "restartPending" => status.restart_pending += 1,
                s if IN_PROGRESS.contains(&s) => status.in_progress += 1,
                _ => {}
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
}

/// One machine: its facts, memberships, assignments, policy version and
/// newest status messages.
pub async fn machine(store: &Store, name: &str) -> Result<MachineStatus, OpError> {
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
    let now = jiff::Timestamp::now();
    let stale = machine
        .last_heartbeat
        .is_none_or(|t| now.as_second() - t.as_second() > 2 * heartbeat_secs);
    let policy_version = store.policy(id).await?.map(|p| p.version);
    let messages = store
        .status_for_machine(&key, 20)
        .await?
        .iter()
        .map(|m| MachineReport::of(m, assignments.contains(&m.advertisement)))
        .collect();
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
}

/// `patchops status updates`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdatesStatus {
    /// The collection the machines were limited to, when one was given.
    pub collection: Option<String>,
    /// Machines with stored patch states (in the collection, when given).
    pub machines: u64,
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
pub async fn updates(store: &Store, collection: Option<&str>) -> Result<UpdatesStatus, OpError> {
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
            UpdateStatus {
                bulletin: bulletin.to_string(),
                title: first.title.clone(),
                q_numbers: first.q_numbers.clone(),
                percent_compliant: counts.percent_compliant(),
                counts,
            }
        })
        .collect();
    UpdatesStatus {
        collection: collection.map(str::to_string),
        machines: machines.len() as u64,
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
    pub problems: Vec<crate::store::ReconcileProblem>,
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
    pub fn of(r: &crate::store::ReconcileStatus) -> ReconcileView {
        ReconcileView {
            status: r.status.clone(),
            result: r.result.clone(),
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

/// The applied state, the stored reconcile outcome and the leader.
pub async fn site(store: &Store) -> Result<SiteStatus, OpError> {
    let info = store.info().await?;
    let reconcile = store.reconcile_status().await?;
    let leader = store
        .lease_holder(crate::store::LEADER_LEASE)
        .await?
        .map(|h| {
            let live = h
                .expires_at
                .parse::<jiff::Timestamp>()
                .is_ok_and(|t| t > jiff::Timestamp::now());
            LeaderView {
                host: h.host,
                pid: h.pid,
                since: h.acquired_at,
                expires_at: h.expires_at,
                live,
            }
        });
    Ok(SiteStatus {
        site: info.site,
        serial: info.serial,
        reconcile: reconcile.as_ref().map(ReconcileView::of),
        leader,
    })
}

/// The reconcile outcome when it needs attention (`error` or `drift`),
/// for the banner of `status advertisements`.
pub async fn reconcile_attention(store: &Store) -> Result<Option<ReconcileView>, OpError> {
    Ok(store
        .reconcile_status()
        .await?
        .filter(|r| r.status != "ok")
        .as_ref()
        .map(ReconcileView::of))
}
