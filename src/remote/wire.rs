//! The admin API's wire format (`POST /v1/admin/store`): the calls the
//! client sends ([`Call`]) and the answers the server's `admin` module
//! serialises ([`Reply`], [`WireError`]). The store's own error type is not
//! the wire format: a [`WireError`] is made from it on the server and turned
//! back into one by the client.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::inventory::Machine;
use crate::records::{ApplyRecord, Change, LockHolder, LockRequest, Owner};
use crate::store::StoreError;

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
    MachineCount,
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
        rows: Vec<crate::records::StoredPatchState>,
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
    Err(WireError),
}

/// A store's error on the wire: what went wrong, by kind, with the server's
/// store URL (never a password: the store has masked it already).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
#[schema(as = StoreError)]
pub enum WireError {
    /// The URL is malformed or of an unknown scheme.
    BadUrl(String),
    Unreachable {
        url: String,
        reason: String,
    },
    NotAStateStore {
        url: String,
        reason: String,
    },
    ReadOnly {
        url: String,
    },
    Stale {
        expected: i64,
        actual: i64,
    },
    /// Any other database error (message only).
    Backend(String),
}

impl From<StoreError> for WireError {
    fn from(e: StoreError) -> WireError {
        match e {
            StoreError::BadUrl(m) => WireError::BadUrl(m),
            StoreError::Unreachable { url, reason } => WireError::Unreachable { url, reason },
            StoreError::NotAStateStore { url, reason } => WireError::NotAStateStore { url, reason },
            StoreError::ReadOnly { url } => WireError::ReadOnly { url },
            StoreError::Stale { expected, actual } => WireError::Stale { expected, actual },
            StoreError::Backend(m) => WireError::Backend(m),
        }
    }
}

impl From<WireError> for StoreError {
    fn from(e: WireError) -> StoreError {
        match e {
            WireError::BadUrl(m) => StoreError::BadUrl(m),
            WireError::Unreachable { url, reason } => StoreError::Unreachable { url, reason },
            WireError::NotAStateStore { url, reason } => StoreError::NotAStateStore { url, reason },
            WireError::ReadOnly { url } => StoreError::ReadOnly { url },
            WireError::Stale { expected, actual } => StoreError::Stale { expected, actual },
            WireError::Backend(m) => StoreError::Backend(m),
        }
    }
}

/// The lock answer: taken, or who holds it.
pub type TryLockReply = Result<(), LockHolder>;
