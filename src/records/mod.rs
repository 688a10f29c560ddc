//! The site's record vocabulary: what the store keeps and the admin API,
//! the remote client, the server and ops exchange (objects, audit records,
//! the lock, agents' status, patch states, catalog versions, reconciles,
//! DP validations). A leaf: it depends on nothing else of the crate, so any
//! layer may speak it without reaching the database.

mod columns;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A closed set of values stored and sent as text: each variant's text is
/// its serde name, its database value and what `as_str` gives, written once.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| UnknownValue {
                    what: $what,
                    value: s.to_string(),
                    expected: $name::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "),
                })
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownValue;
            fn try_from(s: String) -> Result<Self, UnknownValue> {
                s.parse()
            }
        }
    };
}

/// A stored or received text that is none of its closed set's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?} (expected one of: {expected})")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
    pub expected: String,
}

/// Who manages an object: patchops (it is reconciled) or nobody
/// (`patchops state unmanage`: kept in state, never changed or destroyed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    Patchops,
    Unmanaged,
}

impl Owner {
    /// The text stored in the database: `patchops` or `unmanaged`.
    pub fn as_str(self) -> &'static str {
        match self {
            Owner::Patchops => "patchops",
            Owner::Unmanaged => "unmanaged",
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Owner {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl FromStr for Owner {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "patchops" => Ok(Owner::Patchops),
            "unmanaged" => Ok(Owner::Unmanaged),
            other => Err(format!(
                "unknown owner {other:?} (expected \"patchops\" or \"unmanaged\")"
            )),
        }
    }
}

/// What [`Store::info`] reports about a store as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct StateInfo {
    /// A random UUID made when the store was created; never changes.
    pub store_id: String,
    /// 0 for a new store; +1 with every state change.
    pub serial: i64,
    /// The site code, once an apply has set it.
    pub site: Option<String>,
    /// RFC 3339 UTC, when the store was created.
    pub created_at: String,
}

/// One object as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct StoredObject {
    pub kind: String,
    pub name: String,
    /// Canonical JSON text, stored verbatim.
    pub spec: String,
    pub spec_hash: String,
    /// JSON text.
    pub metadata: String,
    #[sqlx(try_from = "String")]
    pub owner: Owner,
    pub file: Option<String>,
    #[sqlx(rename = "commit_id")]
    pub commit: Option<String>,
    pub created_serial: i64,
    pub updated_serial: i64,
}

/// An object to create or replace. An upsert sets the owner to
/// [`Owner::Patchops`]; on replace, `created_serial` is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewObject {
    pub kind: String,
    pub name: String,
    pub spec: String,
    pub spec_hash: String,
    pub metadata: String,
    pub file: Option<String>,
    pub commit: Option<String>,
}

/// One change of a [`Store::commit`]. Changes apply in order: when one
/// commit names the same object more than once, the result is as if each
/// change had been applied in turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Change {
    Upsert(NewObject),
    /// Deleting an object that is not there is not an error.
    Delete {
        kind: String,
        name: String,
    },
}

/// One audit record: what an apply (or another state change) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct ApplyRecord {
    /// Assigned by the store; ignored on write.
    pub id: Option<i64>,
    /// The serial the change produced; set by the store on write.
    pub serial: i64,
    pub started_at: String,
    pub finished_at: String,
    pub actor: String,
    pub host: String,
    pub command: String,
    #[sqlx(rename = "commit_id")]
    pub commit: Option<String>,
    pub dirty: bool,
    pub plan_hash: String,
    pub added: i64,
    pub changed: i64,
    pub destroyed: i64,
    /// JSON text.
    pub changes: String,
}

/// Who asks for the apply lock, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRequest {
    /// A unique id for this holding (e.g. a UUID); used to renew, unlock and
    /// take over.
    pub id: String,
    pub holder: String,
    pub host: String,
    pub pid: u32,
    pub command: String,
    pub lease: Duration,
}

/// Who holds the apply lock. Times are RFC 3339 UTC, by the database's clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct LockHolder {
    pub id: String,
    pub holder: String,
    pub host: String,
    #[sqlx(try_from = "i64")]
    pub pid: u32,
    pub command: String,
    #[sqlx(rename = "acquired_ms", try_from = "columns::EpochMs")]
    pub acquired_at: String,
    #[sqlx(rename = "expires_ms", try_from = "columns::EpochMs")]
    pub expires_at: String,
}

/// What [`Store::upsert_machines`] did with one machine (in the order given).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MachineRecord {
    /// Assigned by the store when the machine was first stored; never
    /// changes, never reused for another machine.
    pub id: u32,
    pub name: String,
    /// Whether the stored facts differed (always true for a new machine).
    pub changed: bool,
}

/// One machine's client policy as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct StoredPolicy {
    #[sqlx(try_from = "i64")]
    pub machine_id: u32,
    /// At most `i64::MAX` (the stored type); a larger one is refused.
    #[sqlx(try_from = "i64")]
    pub version: u64,
    pub hash: String,
    pub body: String,
}

/// One status message from an agent. `key` is its idempotency key: a
/// message whose key the store already holds is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct StatusMessage {
    pub key: String,
    /// The machine's key (lowercase name); stored lowercased.
    pub machine_key: String,
    pub advertisement: String,
    #[schema(value_type = String)]
    #[sqlx(try_from = "String")]
    pub state: AssignmentState,
    pub exit_code: Option<i32>,
    pub message: String,
    /// When it happened on the machine, epoch milliseconds.
    pub at_ms: i64,
    /// When the site server received it, epoch milliseconds.
    pub received_ms: i64,
}

text_enum! {
    /// Where an agent stands with one assignment, as it reports it.
    AssignmentState, "assignment state" {
        Accepted = "accepted",
        Downloading = "downloading",
        Downloaded = "downloaded",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Retrying = "retrying",
        RestartPending = "restartPending",
    }
}

/// One stored patch state: a machine's state for one (bulletin,
/// product), as an applicability scan found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct StoredPatchState {
    /// Lowercase machine name.
    pub machine_key: String,
    pub bulletin: String,
    /// `None` when the machine has none of the bulletin's products.
    #[sqlx(try_from = "columns::EmptyIsNone")]
    pub product: Option<String>,
    #[sqlx(try_from = "columns::CommaList")]
    pub q_numbers: Vec<String>,
    pub title: Option<String>,
    /// `installed`, `missing`, `notApplicable` or `unknown`.
    pub status: String,
    /// `required`, `notRequired` or `unknown`.
    pub reboot: String,
    pub scan_agent: String,
    pub scan_time_ms: i64,
    pub patch: Option<String>,
    pub reason: String,
}

/// One verified version of a catalog (the sync host's download).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct CatalogVersion {
    /// Assigned by the store (increasing); ignored on write.
    pub id: Option<i64>,
    pub url: String,
    /// The catalog type (`security`, `office`).
    pub kind: String,
    /// Lowercase hex SHA-256 of `bytes`.
    pub sha256: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// When it was fetched, epoch milliseconds.
    pub fetched_ms: i64,
    /// The content's length in bytes.
    #[sqlx(try_from = "i64")]
    pub size: u64,
    /// The content. Empty in the listings of [`Store::catalog_versions`].
    #[serde(skip)]
    #[sqlx(default)]
    pub bytes: Vec<u8>,
    /// A readable summary of this version.
    pub summary: String,
    /// What changed since the previous version (readable lines).
    pub diff: String,
}

/// One attempt to synchronize a catalog, for [`Store::record_sync_attempt`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncAttempt {
    pub url: String,
    pub kind: String,
    /// When it was made, epoch milliseconds.
    pub at_ms: i64,
    /// None: it succeeded (unchanged or a new version). Some: why it failed
    /// (never a secret).
    pub error: Option<String>,
    /// When the next attempt is due, epoch milliseconds.
    pub next_attempt_ms: i64,
}

/// The synchronization status of one catalog URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    pub url: String,
    pub kind: String,
    pub last_attempt_ms: i64,
    pub last_success_ms: Option<i64>,
    /// The error of the last attempt; None when it succeeded.
    pub last_error: Option<String>,
    /// Failed attempts since the last success.
    #[sqlx(try_from = "i64")]
    pub consecutive_failures: u32,
    pub next_attempt_ms: i64,
}

/// The outcome of one reconcile by the leading site server, for
/// [`Store::record_reconcile`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileAttempt {
    /// `ok`, `drift` or `error`.
    pub status: ReconcileState,
    /// `applied`, `unchanged`, `drift`, `invalid` or `failed`.
    pub result: ReconcileResult,
    /// What drifted, or why it failed (never a secret); None when ok.
    pub message: Option<String>,
    /// The errors of invalid manifests, each where it is.
    pub problems: Vec<ReconcileProblem>,
    /// The git commit of the manifests reconciled, when they are a clone.
    pub revision: Option<String>,
    /// The serial an apply produced (result `applied` only).
    pub applied_serial: Option<i64>,
    /// When it ended, epoch milliseconds.
    pub at_ms: i64,
    /// The server that reconciled.
    pub host: String,
    pub pid: u32,
}

text_enum! {
    /// How the site stands after a reconcile: in step, drifted, or failing.
    ReconcileState, "reconcile status" { Ok = "ok", Drift = "drift", Error = "error" }
}
text_enum! {
    /// What one reconcile did, as counted in the metrics.
    ReconcileResult, "reconcile result" {
        Applied = "applied",
        Unchanged = "unchanged",
        Drift = "drift",
        Invalid = "invalid",
        Failed = "failed",
    }
}

/// One error of invalid manifests, where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileProblem {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    /// The field, as a path from the document root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl fmt::Display for ReconcileProblem {
    /// One line: `error[code] file:line:col path: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error[{}]", self.code)?;
        if let Some(file) = &self.file {
            write!(f, " {file}")?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
                if let Some(column) = self.column {
                    write!(f, ":{column}")?;
                }
            }
        }
        if let Some(path) = &self.path {
            write!(f, " {path}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The last reconcile of the site, as the leader recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileStatus {
    /// `ok`, `drift` or `error`.
    #[schema(value_type = String)]
    #[sqlx(try_from = "String")]
    pub status: ReconcileState,
    /// The last reconcile's result (see [`ReconcileAttempt::result`]).
    #[schema(value_type = String)]
    #[sqlx(try_from = "String")]
    pub result: ReconcileResult,
    pub message: Option<String>,
    #[sqlx(try_from = "columns::JsonText")]
    pub problems: Vec<ReconcileProblem>,
    pub revision: Option<String>,
    /// The last reconcile, epoch milliseconds.
    pub attempt_ms: i64,
    /// Since when `status` holds, epoch milliseconds.
    pub since_ms: i64,
    /// Failed reconciles since the last good one.
    #[sqlx(try_from = "i64")]
    pub failures: u32,
    /// The last reconcile that ended `ok` or `drift`.
    pub last_success_ms: Option<i64>,
    /// The last reconcile that applied a change: when, the serial it made,
    /// and the commit of the manifests.
    pub last_apply_ms: Option<i64>,
    pub last_apply_serial: Option<i64>,
    pub last_apply_revision: Option<String>,
    /// The server that recorded it.
    pub host: String,
    #[sqlx(try_from = "i64")]
    pub pid: u32,
}

/// One deep content validation of a distribution point by the leading
/// site server, for [`Store::record_dp_validation`] and as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct DpValidation {
    /// The distribution point's name.
    pub dp: String,
    /// Its content library's directory.
    pub path: String,
    /// When the validation began and ended, epoch milliseconds.
    pub started_ms: i64,
    pub finished_ms: i64,
    /// `ok`, `problems` or `failed` (see [`DP_VALIDATION_OUTCOMES`]).
    #[schema(value_type = String)]
    #[sqlx(try_from = "String")]
    pub outcome: DpOutcome,
    /// Files hashed and their bytes.
    #[sqlx(try_from = "i64")]
    pub files_checked: u64,
    #[sqlx(try_from = "i64")]
    pub bytes_checked: u64,
    /// How many problems were found; `problem_files` lists the first
    /// [`MAX_DP_PROBLEM_FILES`].
    #[sqlx(try_from = "i64")]
    pub problems: u64,
    #[sqlx(try_from = "columns::JsonText")]
    pub problem_files: Vec<DpProblem>,
    /// Why the validation failed (outcome `failed`).
    pub message: Option<String>,
    /// Damaged files removed so that the next reconcile copies them again.
    #[sqlx(try_from = "i64")]
    pub repaired: u64,
    /// The server that validated.
    pub host: String,
    #[sqlx(try_from = "i64")]
    pub pid: u32,
}

/// One problem a deep validation found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DpProblem {
    /// `missing`, `corrupt` or `extra`.
    #[schema(value_type = String)]
    pub problem: DpProblemKind,
    /// The file: a package's path for a missing file, else the library's
    /// `files/…` path.
    pub file: String,
    /// The package of a missing file, or why a file is corrupt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

text_enum! {
    /// What a deep validation can end with.
    DpOutcome, "DP validation outcome" { Ok = "ok", Problems = "problems", Failed = "failed" }
}
/// Every outcome, in the order metrics list them.
pub const DP_VALIDATION_OUTCOMES: &[DpOutcome] = DpOutcome::ALL;
text_enum! {
    /// What is wrong with one file of a distribution point.
    DpProblemKind, "DP problem" { Missing = "missing", Corrupt = "corrupt", Extra = "extra" }
}
/// The most problem files kept per validation (the count says how many
/// there were): a DP whose disk failed must not make a row of megabytes.
pub const MAX_DP_PROBLEM_FILES: usize = 20;

/// Epoch milliseconds as RFC 3339 UTC text, to the second
/// (`2026-03-21T09:30:00Z`); instants beyond what a calendar date can say
/// are clamped to the first or last one.
pub fn rfc3339_from_epoch_ms(ms: i64) -> String {
    use jiff::Timestamp;
    let second = ms
        .div_euclid(1000)
        .clamp(Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
    Timestamp::from_second(second)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_enums_round_trip_and_name_unknown_values() {
        for outcome in DpOutcome::ALL {
            assert_eq!(outcome.as_str().parse::<DpOutcome>(), Ok(*outcome));
            let json = serde_json::to_string(outcome).unwrap();
            assert_eq!(json, format!("\"{outcome}\""));
        }
        let err = "fine".parse::<DpOutcome>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown DP validation outcome \"fine\" (expected one of: ok, problems, failed)"
        );
    }
}
