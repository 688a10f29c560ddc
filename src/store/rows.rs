//! How stored rows that are the store's own (not records) are read.

use super::{machine_id, Fail, Machine};

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
