//! Rows as the database returns them, decoded by `sqlx::FromRow`, where
//! the stored form differs from the store's types: times in epoch
//! milliseconds shown as RFC 3339, JSON text, a missing product stored as
//! the empty text, Q numbers as one comma-separated text.

use super::{
    machine_id, rfc3339_from_epoch_ms, DpValidation, Fail, LockHolder, Machine, ReconcileStatus,
    StoredPatchState,
};

/// A `patchops_lock` row.
#[derive(sqlx::FromRow)]
pub(crate) struct LockRow {
    id: String,
    holder: String,
    host: String,
    #[sqlx(try_from = "i64")]
    pid: u32,
    command: String,
    acquired_ms: i64,
    expires_ms: i64,
}

impl From<LockRow> for LockHolder {
    fn from(r: LockRow) -> Self {
        LockHolder {
            id: r.id,
            holder: r.holder,
            host: r.host,
            pid: r.pid,
            command: r.command,
            acquired_at: rfc3339_from_epoch_ms(r.acquired_ms),
            expires_at: rfc3339_from_epoch_ms(r.expires_ms),
        }
    }
}

/// A `machines` row as read: its facts (JSON) and the heartbeat recorded
/// beside them.
#[derive(sqlx::FromRow)]
pub(crate) struct MachineRowRead {
    id: i64,
    facts: String,
    last_heartbeat_ms: Option<i64>,
}

impl MachineRowRead {
    /// The machine, with the later of its facts' and the recorded heartbeat.
    pub(crate) fn decode(self) -> Result<(u32, Machine), Fail> {
        let id = machine_id(self.id)?;
        let mut m: Machine = serde_json::from_str(&self.facts)
            .map_err(|e| Fail::Data(format!("machine {id}: unreadable facts: {e}")))?;
        let recorded = self
            .last_heartbeat_ms
            .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok());
        if let Some(ts) = recorded {
            if m.last_heartbeat.is_none_or(|t| t < ts) {
                m.last_heartbeat = Some(ts);
            }
        }
        Ok((id, m))
    }
}

/// A `patch_states` row.
#[derive(sqlx::FromRow)]
pub(crate) struct PatchStateRow {
    machine_key: String,
    bulletin: String,
    /// Empty when the machine has none of the bulletin's products (the
    /// column is part of the key, so never NULL).
    product: String,
    /// Comma-separated.
    q_numbers: String,
    title: Option<String>,
    status: String,
    reboot: String,
    scan_agent: String,
    scan_time_ms: i64,
    patch: Option<String>,
    reason: String,
}

impl From<PatchStateRow> for StoredPatchState {
    fn from(r: PatchStateRow) -> Self {
        StoredPatchState {
            machine_key: r.machine_key,
            bulletin: r.bulletin,
            product: (!r.product.is_empty()).then_some(r.product),
            q_numbers: r
                .q_numbers
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            title: r.title,
            status: r.status,
            reboot: r.reboot,
            scan_agent: r.scan_agent,
            scan_time_ms: r.scan_time_ms,
            patch: r.patch,
            reason: r.reason,
        }
    }
}

/// The `reconcile_status` row.
#[derive(sqlx::FromRow)]
pub(crate) struct ReconcileRow {
    status: String,
    result: String,
    message: Option<String>,
    /// JSON text.
    problems: String,
    revision: Option<String>,
    attempt_ms: i64,
    since_ms: i64,
    failures: i64,
    last_success_ms: Option<i64>,
    last_apply_ms: Option<i64>,
    last_apply_serial: Option<i64>,
    last_apply_revision: Option<String>,
    host: String,
    pid: i64,
}

impl TryFrom<ReconcileRow> for ReconcileStatus {
    type Error = Fail;
    fn try_from(r: ReconcileRow) -> Result<Self, Fail> {
        Ok(ReconcileStatus {
            status: r.status,
            result: r.result,
            message: r.message,
            problems: serde_json::from_str(&r.problems)
                .map_err(|e| Fail::Data(format!("reconcile problems: {e}")))?,
            revision: r.revision,
            attempt_ms: r.attempt_ms,
            since_ms: r.since_ms,
            failures: u32::try_from(r.failures).unwrap_or(u32::MAX),
            last_success_ms: r.last_success_ms,
            last_apply_ms: r.last_apply_ms,
            last_apply_serial: r.last_apply_serial,
            last_apply_revision: r.last_apply_revision,
            host: r.host,
            pid: u32::try_from(r.pid).unwrap_or(0),
        })
    }
}

/// A `dp_validations` row.
#[derive(sqlx::FromRow)]
pub(crate) struct ValidationRow {
    dp: String,
    path: String,
    started_ms: i64,
    finished_ms: i64,
    outcome: String,
    files_checked: i64,
    bytes_checked: i64,
    problems: i64,
    /// JSON text.
    problem_files: String,
    message: Option<String>,
    repaired: i64,
    host: String,
    pid: i64,
}

impl TryFrom<ValidationRow> for DpValidation {
    type Error = Fail;
    fn try_from(r: ValidationRow) -> Result<Self, Fail> {
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(DpValidation {
            dp: r.dp,
            path: r.path,
            started_ms: r.started_ms,
            finished_ms: r.finished_ms,
            outcome: r.outcome,
            files_checked: count(r.files_checked),
            bytes_checked: count(r.bytes_checked),
            problems: count(r.problems),
            problem_files: serde_json::from_str(&r.problem_files)
                .map_err(|e| Fail::Data(format!("validation problems: {e}")))?,
            message: r.message,
            repaired: count(r.repaired),
            host: r.host,
            pid: u32::try_from(r.pid).unwrap_or(0),
        })
    }
}
