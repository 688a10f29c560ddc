//! A store behind a running site server: every [`Store`](super::Store)
//! operation that plan and apply need, as calls to the server's admin API
//! (`POST /v1/admin/store`). `patchops plan|apply --site URL` works through
//! this exactly as against a local store — the same serial checks, the same
//! lock — while the server applies the commit to its own database and
//! recomputes client policy at once. The reads of `patchops status` go the
//! same way.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{ApplyRecord, Change, LockHolder, LockRequest, Owner, StoreError};
use crate::inventory::Machine;
use crate::secret::Secret;

/// The admin API path.
pub const PATH: &str = "/v1/admin/store";

/// One store operation, as sent to the server.
// Each variant's fields are camelCase by its own `rename_all` (not the
// container's `rename_all_fields`, which the OpenAPI derive does not read).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "op", rename_all = "camelCase")]
#[schema(examples(json!({"op": "info"}), json!({"op": "history", "limit": 10})))]
pub enum Call {
    Info,
    Objects,
    #[serde(rename_all = "camelCase")]
    Object {
        kind: String,
        name: String,
    },
    #[serde(rename_all = "camelCase")]
    Commit {
        expected_serial: i64,
        site: Option<String>,
        changes: Vec<Change>,
        record: ApplyRecord,
    },
    #[serde(rename_all = "camelCase")]
    History {
        limit: u32,
    },
    #[serde(rename_all = "camelCase")]
    SetOwner {
        kind: String,
        name: String,
        owner: Owner,
        record: ApplyRecord,
    },
    #[serde(rename_all = "camelCase")]
    TryLock {
        request: WireLock,
    },
    #[serde(rename_all = "camelCase")]
    TakeOverLock {
        previous_id: String,
        request: WireLock,
    },
    #[serde(rename_all = "camelCase")]
    RenewLock {
        id: String,
        lease_ms: u64,
    },
    #[serde(rename_all = "camelCase")]
    Unlock {
        id: String,
    },
    LockHolder,
    Machines,
    #[serde(rename_all = "camelCase")]
    UpsertMachines {
        machines: Vec<Machine>,
    },
    #[serde(rename_all = "camelCase")]
    RevokeMachine {
        key: String,
    },
    /// One machine's stored policy (version and hash), by machine id.
    #[serde(rename_all = "camelCase")]
    Policy {
        machine_id: u32,
    },
    /// The newest status message of every (machine, advertisement).
    #[serde(rename_all = "camelCase")]
    LatestStatus {
        advertisement: Option<String>,
    },
    /// One machine's newest status messages.
    #[serde(rename_all = "camelCase")]
    StatusForMachine {
        key: String,
        limit: u32,
    },
    /// The stored patch states, of one machine (lowercase key) when given.
    #[serde(rename_all = "camelCase")]
    PatchStates {
        machine: Option<String>,
    },
    /// Replaces the machines' patch states (of one scan agent when given).
    #[serde(rename_all = "camelCase")]
    ReplacePatchStates {
        machines: Vec<String>,
        scan_agent: Option<String>,
        rows: Vec<super::StoredPatchState>,
    },
    /// Who holds a lease (the reconcile leader).
    #[serde(rename_all = "camelCase")]
    LeaseHolder {
        name: String,
    },
    /// The recorded reconcile outcome.
    ReconcileStatus,
    /// The last deep validation of every distribution point.
    DpValidations,
}

/// The largest body of machines or patch states one call sends (half the
/// server's default `--max-body` of 1 MiB): a bigger import is sent in
/// parts.
pub const MAX_PART_BODY: usize = 512 << 10;

/// A [`LockRequest`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WireLock {
    pub id: String,
    pub holder: String,
    pub host: String,
    pub pid: u32,
    pub command: String,
    pub lease_ms: u64,
}

impl From<&LockRequest> for WireLock {
    fn from(r: &LockRequest) -> WireLock {
        WireLock {
            id: r.id.clone(),
            holder: r.holder.clone(),
            host: r.host.clone(),
            pid: r.pid,
            command: r.command.clone(),
            lease_ms: r.lease.as_millis() as u64,
        }
    }
}

impl From<WireLock> for LockRequest {
    fn from(w: WireLock) -> LockRequest {
        LockRequest {
            id: w.id,
            holder: w.holder,
            host: w.host,
            pid: w.pid,
            command: w.command,
            lease: Duration::from_millis(w.lease_ms),
        }
    }
}

/// The answer to a [`Call`]: its result, or the store's error.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Reply<T> {
    Ok(T),
    Err(StoreError),
}

/// The lock answer: taken, or who holds it.
pub type TryLockReply = Result<(), LockHolder>;

pub(crate) struct Remote {
    /// `http://host:port`, without a trailing slash.
    base: String,
    token: Secret,
    http: reqwest::Client,
}

/// How long one admin call may take. A commit of a large site is a few
/// seconds; a server that does not answer in this time is treated as down.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

impl Remote {
    pub(crate) fn new(url: &str, token: Secret) -> Result<Remote, StoreError> {
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
        Ok(Remote { base, token, http })
    }

    pub(crate) fn url(&self) -> &str {
        &self.base
    }

    pub(crate) async fn call<T: DeserializeOwned>(&self, call: &Call) -> Result<T, StoreError> {
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
            Ok(Reply::Err(e)) => Err(e),
            Err(_) => Err(unreachable(format!(
                "unexpected answer ({status}): {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ))),
        }
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
