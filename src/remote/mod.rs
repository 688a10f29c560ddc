//! A store behind a running site server: every store operation that plan,
//! apply and status need, as calls to the server's admin API
//! (`POST /v1/admin/store`, [`wire`]). `patchops plan|apply --site URL`
//! works through this exactly as against a local store — the same serial
//! checks, the same lock — while the server applies the commit to its own
//! database and recomputes client policy at once.

pub mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::inventory::Machine;
use crate::records::{
    ApplyRecord, Change, DpValidation, LockHolder, LockRequest, MachineRecord, Owner,
    ReconcileStatus, StateInfo, StatusMessage, StoredObject, StoredPatchState, StoredPolicy,
};
use crate::secret::Secret;
use crate::store::{machine_rows, patch_state_batch, Fail, StoreError};
pub use wire::{Call, Reply, MAX_PART_BODY, PATH};

/// A site server's admin API, as a client. Cheap to clone.
#[derive(Clone)]
pub struct RemoteSite {
    /// `http://host:port`, without a trailing slash.
    base: String,
    token: Arc<Secret>,
    http: reqwest::Client,
}

impl std::fmt::Debug for RemoteSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not derived: the token stays out of it.
        f.debug_struct("RemoteSite")
            .field("url", &self.base)
            .finish()
    }
}

/// How long one admin call may take. A commit of a large site is a few
/// seconds; a server that does not answer in this time is treated as down.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

impl RemoteSite {
    /// A client of the site server at `url` (`http://HOST:PORT`), with
    /// its admin token.
    pub fn new(url: &str, token: Secret) -> Result<RemoteSite, StoreError> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(StoreError::BadUrl(format!(
                "{url}: expected the site server's URL, http://HOST:PORT"
            )));
        }
        let http = crate::tls::client_builder(None)
            .map_err(|e| StoreError::BadUrl(format!("{base}: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(CALL_TIMEOUT)
            .build()
            .map_err(|e| StoreError::BadUrl(format!("{base}: {e}")))?;
        Ok(RemoteSite {
            base,
            token: Arc::new(token),
            http,
        })
    }

    /// The server's URL (it holds no secret).
    pub fn url(&self) -> &str {
        &self.base
    }

    async fn call<T: DeserializeOwned>(&self, call: &Call) -> Result<T, StoreError> {
        let unreachable = |reason: String| StoreError::Unreachable {
            url: self.base.clone(),
            reason,
        };
        let token = String::from_utf8_lossy(self.token.expose()).into_owned();
        let body = serde_json::to_vec(call).map_err(|e| StoreError::Backend(e.to_string()))?;
        let response = self
            .http
            .post(format!("{}{PATH}", self.base))
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| unreachable(request_reason(&e)))?;
        if let Some(target) = crate::tls::redirect_target(&response) {
            return Err(unreachable(format!(
                "the server answered a redirect to {target}; patchops does not follow \
                 redirects for the site API (give --site the final URL if it is the site server)"
            )));
        }
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| unreachable(request_reason(&e)))?;
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(unreachable(format!(
                "the server refused the admin token ({status}): check --token-from"
            )));
        }
        if status == reqwest::StatusCode::PAYLOAD_TOO_LARGE {
            return Err(unreachable(
                "the server refused the request as too large (413): raise its --max-body"
                    .to_string(),
            ));
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(unreachable(
                "the server has no admin API (start it with --admin-token-from)".to_string(),
            ));
        }
        match serde_json::from_slice::<Reply<T>>(&bytes) {
            Ok(Reply::Ok(value)) => Ok(value),
            Ok(Reply::Err(e)) => Err(e.into()),
            Err(_) => Err(unreachable(format!(
                "unexpected answer ({status}): {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ))),
        }
    }
    /// What a store's refusal of a batch (checked here, before any part is
    /// sent) says, as the store would say it.
    fn refused(&self, fail: Fail) -> StoreError {
        let message = match fail {
            Fail::Invalid(m) | Fail::Data(m) => m,
            other => format!("{other:?}"),
        };
        StoreError::Backend(format!("{}: {message}", self.base))
    }

    /// The error of an operation the admin API does not offer.
    pub fn unsupported(&self, op: &str) -> StoreError {
        StoreError::Backend(format!(
            "{}: `{op}` is not available through a site server; use --state",
            self.base
        ))
    }

    pub async fn info(&self) -> Result<StateInfo, StoreError> {
        self.call(&Call::Info).await
    }

    pub async fn objects(&self) -> Result<Vec<StoredObject>, StoreError> {
        self.call(&Call::Objects).await
    }

    pub async fn object(&self, kind: &str, name: &str) -> Result<Option<StoredObject>, StoreError> {
        let (kind, name) = (kind.to_string(), name.to_string());
        self.call(&Call::Object { kind, name }).await
    }

    pub async fn commit(
        &self,
        expected_serial: i64,
        site: Option<&str>,
        changes: &[Change],
        record: &ApplyRecord,
    ) -> Result<i64, StoreError> {
        self.call(&Call::Commit {
            expected_serial,
            site: site.map(str::to_string),
            changes: changes.to_vec(),
            record: record.clone(),
        })
        .await
    }

    pub async fn history(&self, limit: u32) -> Result<Vec<ApplyRecord>, StoreError> {
        self.call(&Call::History { limit }).await
    }

    pub async fn set_owner(
        &self,
        kind: &str,
        name: &str,
        owner: Owner,
        record: &ApplyRecord,
    ) -> Result<bool, StoreError> {
        self.call(&Call::SetOwner {
            kind: kind.to_string(),
            name: name.to_string(),
            owner,
            record: record.clone(),
        })
        .await
    }

    pub async fn try_lock(&self, req: &LockRequest) -> Result<Result<(), LockHolder>, StoreError> {
        self.call(&Call::TryLock {
            request: req.into(),
        })
        .await
    }

    pub async fn take_over_lock(
        &self,
        previous_id: &str,
        req: &LockRequest,
    ) -> Result<bool, StoreError> {
        self.call(&Call::TakeOverLock {
            previous_id: previous_id.to_string(),
            request: req.into(),
        })
        .await
    }

    pub async fn renew_lock(&self, id: &str, lease: Duration) -> Result<bool, StoreError> {
        self.call(&Call::RenewLock {
            id: id.to_string(),
            lease_ms: lease.as_millis() as u64,
        })
        .await
    }

    pub async fn unlock(&self, id: &str) -> Result<bool, StoreError> {
        self.call(&Call::Unlock { id: id.to_string() }).await
    }

    pub async fn lock_holder(&self) -> Result<Option<LockHolder>, StoreError> {
        self.call(&Call::LockHolder).await
    }

    pub async fn lease_holder(&self, name: &str) -> Result<Option<LockHolder>, StoreError> {
        let name = name.to_string();
        self.call(&Call::LeaseHolder { name }).await
    }

    /// Whether the server (and its store) answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.info().await.map(|_| ())
    }

    /// Machines, refused whole as a store refuses the batch, then sent in
    /// parts (the server stamps its own time).
    pub async fn upsert_machines(
        &self,
        machines: &[Machine],
    ) -> Result<Vec<MachineRecord>, StoreError> {
        machine_rows(machines).map_err(|e| self.refused(e))?;
        upsert_machines_in_parts(self, machines).await
    }

    pub async fn machine_count(&self) -> Result<usize, StoreError> {
        self.call(&Call::MachineCount).await
    }

    pub async fn machines(&self) -> Result<Vec<(u32, Machine)>, StoreError> {
        self.call(&Call::Machines).await
    }

    pub async fn revoke_machine_tokens(&self, machine_key: &str) -> Result<usize, StoreError> {
        let key = machine_key.to_string();
        self.call(&Call::RevokeMachine { key }).await
    }

    pub async fn policy(&self, machine_id: u32) -> Result<Option<StoredPolicy>, StoreError> {
        self.call(&Call::Policy { machine_id }).await
    }

    pub async fn latest_status(
        &self,
        advertisement: Option<&str>,
    ) -> Result<Vec<StatusMessage>, StoreError> {
        let advertisement = advertisement.map(str::to_string);
        self.call(&Call::LatestStatus { advertisement }).await
    }

    pub async fn status_for_machine(
        &self,
        machine_key: &str,
        limit: u32,
    ) -> Result<Vec<StatusMessage>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = crate::inventory::machine_key(machine_key);
        self.call(&Call::StatusForMachine { key, limit }).await
    }

    /// Patch states, checked as a store checks the batch, then sent in
    /// groups of machines.
    pub async fn replace_states(
        &self,
        machines: &[String],
        scan_agent: Option<&str>,
        rows: &[StoredPatchState],
    ) -> Result<usize, StoreError> {
        let (keys, unique) =
            patch_state_batch(machines, scan_agent, rows).map_err(|e| self.refused(e))?;
        replace_states_in_parts(self, &keys, scan_agent, &unique).await
    }

    pub async fn patch_states(
        &self,
        machine: Option<&str>,
    ) -> Result<Vec<StoredPatchState>, StoreError> {
        let machine = machine.map(crate::inventory::machine_key);
        self.call(&Call::PatchStates { machine }).await
    }

    pub async fn reconcile_status(&self) -> Result<Option<ReconcileStatus>, StoreError> {
        self.call(&Call::ReconcileStatus).await
    }

    pub async fn dp_validations(&self) -> Result<Vec<DpValidation>, StoreError> {
        self.call(&Call::DpValidations).await
    }
}

fn request_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection refused or unreachable".into()
    } else {
        // reqwest's Display carries the URL, which holds no secret here.
        e.to_string()
    }
}

/// Machines through a site server: sent in parts whose JSON stays under
/// [`MAX_PART_BODY`] bytes, each part one transaction on the
/// server; a machine over the limit is sent alone. A part that fails stops
/// the import, and its error says how many machines the parts before it
/// stored (importing again is safe: an unchanged machine is not written).
async fn upsert_machines_in_parts(
    api: &RemoteSite,
    machines: &[Machine],
) -> Result<Vec<MachineRecord>, StoreError> {
    let mut records = Vec::with_capacity(machines.len());
    let mut start = 0;
    let mut size = 0usize;
    for (i, machine) in machines.iter().enumerate() {
        let bytes = serde_json::to_vec(machine).map_or(0, |v| v.len() + 1);
        if i > start && size + bytes > MAX_PART_BODY {
            records.extend(
                send_machines(api, &machines[start..i], records.len(), machines.len()).await?,
            );
            start = i;
            size = 0;
        }
        size += bytes;
    }
    if start < machines.len() {
        records
            .extend(send_machines(api, &machines[start..], records.len(), machines.len()).await?);
    }
    Ok(records)
}

async fn send_machines(
    api: &RemoteSite,
    part: &[Machine],
    stored: usize,
    total: usize,
) -> Result<Vec<MachineRecord>, StoreError> {
    let call = Call::UpsertMachines {
        machines: part.to_vec(),
    };
    api.call(&call).await.map_err(|e| {
        if stored == 0 {
            return e;
        }
        let note = format!(
            "{stored} of {total} machines were stored before this part failed; \
             importing again is safe"
        );
        match e {
            StoreError::Unreachable { url, reason } => StoreError::Unreachable {
                url,
                reason: format!("{reason} ({note})"),
            },
            StoreError::Backend(message) => StoreError::Backend(format!("{message} ({note})")),
            other => other,
        }
    })
}

/// Patch states through a site server: the machines are sent in groups
/// whose rows stay under [`MAX_PART_BODY`] bytes (the server's
/// request limit), each group one transaction on the server. A single
/// machine over the limit is sent alone.
async fn replace_states_in_parts(
    api: &RemoteSite,
    keys: &[String],
    scan_agent: Option<&str>,
    rows: &[&StoredPatchState],
) -> Result<usize, StoreError> {
    let mut by_machine: BTreeMap<&str, Vec<StoredPatchState>> = BTreeMap::new();
    for k in keys {
        by_machine.entry(k.as_str()).or_default();
    }
    for r in rows {
        by_machine
            .entry(r.machine_key.as_str())
            .or_default()
            .push((*r).clone());
    }
    let mut written = 0;
    let mut machines: Vec<String> = Vec::new();
    let mut group: Vec<StoredPatchState> = Vec::new();
    let mut size = 0usize;
    for (machine, states) in by_machine {
        let bytes: usize = 64
            + machine.len()
            + states
                .iter()
                .map(|s| serde_json::to_vec(s).map_or(0, |v| v.len() + 1))
                .sum::<usize>();
        if !machines.is_empty() && size + bytes > MAX_PART_BODY {
            written += send_states(api, &mut machines, scan_agent, &mut group).await?;
            size = 0;
        }
        size += bytes;
        machines.push(machine.to_string());
        group.extend(states);
    }
    if !machines.is_empty() {
        written += send_states(api, &mut machines, scan_agent, &mut group).await?;
    }
    Ok(written)
}

async fn send_states(
    api: &RemoteSite,
    machines: &mut Vec<String>,
    scan_agent: Option<&str>,
    rows: &mut Vec<StoredPatchState>,
) -> Result<usize, StoreError> {
    let call = Call::ReplacePatchStates {
        machines: std::mem::take(machines),
        scan_agent: scan_agent.map(str::to_string),
        rows: std::mem::take(rows),
    };
    api.call(&call).await
}
