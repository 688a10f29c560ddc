//! A machine's patch-state report: what an agent's scan sends the site
//! server (`POST /v1/patch-states`, `docs/server.md`). Pure data and its
//! checks; the server stores it as [`StoredPatchState`] rows, replacing the
//! machine's previous states of the same scan agent.

use serde::{Deserialize, Serialize};

use super::{PatchState, Reboot, Status};
use crate::records::StoredPatchState;

impl PatchState<'_> {
    /// This state as the store holds it, for `machine`.
    pub fn stored(&self, machine: &str) -> StoredPatchState {
        StoredPatchState {
            machine_key: crate::inventory::machine_key(machine),
            bulletin: self.bulletin.to_string(),
            product: self.product.map(str::to_string),
            q_numbers: self.q_numbers.to_vec(),
            title: self.title.map(str::to_string),
            status: self.status.as_str().to_string(),
            reboot: self.reboot.as_str().to_string(),
            scan_agent: self.scan_agent.to_string(),
            scan_time_ms: self.scan_time.as_millisecond(),
            patch: self.patch.map(str::to_string),
            reason: self.reason.to_string(),
        }
    }
}

/// The scan agents a report may name (one per catalog type).
pub const SCAN_AGENTS: &[&str] = &["patchops-mssecure", "patchops-office"];

/// The most states one report may hold.
pub const MAX_STATES: usize = 20_000;

/// One scan of one machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(examples(json!({
    "machine": "wks-hq-001",
    "scanAgent": "patchops-mssecure",
    "scanTime": "2026-11-24T03:00:00Z",
    "states": [
        {
            "bulletin": "MS08-067",
            "product": "Windows XP",
            "qNumbers": ["958644"],
            "status": "missing",
            "reboot": "required",
            "reason": "file version lower than required"
        }
    ]
})))]
pub struct PatchStateReport {
    /// The machine's name; must be the reporting token's machine.
    pub machine: String,
    /// `patchops-mssecure` or `patchops-office`.
    pub scan_agent: String,
    /// When the engine ran (RFC 3339).
    pub scan_time: String,
    /// One per (bulletin, product).
    pub states: Vec<ReportedState>,
}

/// One (bulletin, product) state of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReportedState {
    pub bulletin: String,
    /// Absent: the machine has none of the bulletin's products.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub q_numbers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// `installed`, `missing`, `notApplicable` or `unknown`.
    pub status: String,
    /// `required`, `notRequired` or `unknown`.
    pub reboot: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    #[serde(default)]
    pub reason: String,
}

impl PatchStateReport {
    /// The report of one evaluation (every state has the same scan agent
    /// and time; `scan_agent` is used when there are no states).
    pub fn of(
        machine: &str,
        scan_agent: &str,
        scan_time: jiff::Timestamp,
        states: &[PatchState<'_>],
    ) -> PatchStateReport {
        PatchStateReport {
            machine: machine.to_string(),
            scan_agent: scan_agent.to_string(),
            scan_time: scan_time.to_string(),
            states: states
                .iter()
                .map(|s| ReportedState {
                    bulletin: s.bulletin.to_string(),
                    product: s.product.map(str::to_string),
                    q_numbers: s.q_numbers.to_vec(),
                    title: s.title.map(str::to_string),
                    status: s.status.as_str().to_string(),
                    reboot: s.reboot.as_str().to_string(),
                    patch: s.patch.map(str::to_string),
                    reason: s.reason.to_string(),
                })
                .collect(),
        }
    }

    /// Checks every field; the error names the first bad one
    /// (`states[3].status: …`). Returns the scan time in epoch ms.
    pub fn check(&self) -> Result<i64, String> {
        text("machine", &self.machine, 1, 63)?;
        if !SCAN_AGENTS.contains(&self.scan_agent.as_str()) {
            return Err(format!(
                "scanAgent: expected one of {}, not {:?}",
                SCAN_AGENTS.join(", "),
                excerpt(&self.scan_agent)
            ));
        }
        let at: jiff::Timestamp = self.scan_time.parse().map_err(|_| {
            format!(
                "scanTime: expected an RFC 3339 time, not {:?}",
                excerpt(&self.scan_time)
            )
        })?;
        if self.states.len() > MAX_STATES {
            return Err(format!(
                "states: at most {MAX_STATES} states a report, this one has {}",
                self.states.len()
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, s) in self.states.iter().enumerate() {
            s.check().map_err(|e| format!("states[{i}].{e}"))?;
            if !seen.insert((s.bulletin.as_str(), s.product.as_deref().unwrap_or(""))) {
                return Err(format!(
                    "states[{i}]: bulletin {} is reported twice for {}",
                    s.bulletin,
                    s.product.as_deref().unwrap_or("no product")
                ));
            }
        }
        Ok(at.as_millisecond())
    }

    /// The store's rows, under `machine_key` (the authenticated machine).
    pub fn rows(&self, machine_key: &str, scan_time_ms: i64) -> Vec<StoredPatchState> {
        self.states
            .iter()
            .map(|s| StoredPatchState {
                machine_key: machine_key.to_string(),
                bulletin: s.bulletin.clone(),
                product: s.product.clone(),
                q_numbers: s.q_numbers.clone(),
                title: s.title.clone(),
                status: s.status.clone(),
                reboot: s.reboot.clone(),
                scan_agent: self.scan_agent.clone(),
                scan_time_ms,
                patch: s.patch.clone(),
                reason: s.reason.clone(),
            })
            .collect()
    }
}

impl ReportedState {
    fn check(&self) -> Result<(), String> {
        check_state_fields(
            &self.bulletin,
            self.product.as_deref(),
            &self.q_numbers,
            self.title.as_deref(),
            &self.status,
            &self.reboot,
            self.patch.as_deref(),
            &self.reason,
        )
    }
}

/// The checks of one stored row (the admin API's import).
pub fn check_stored(row: &StoredPatchState) -> Result<(), String> {
    text("machineKey", &row.machine_key, 1, 63)?;
    if !SCAN_AGENTS.contains(&row.scan_agent.as_str()) {
        return Err(format!(
            "scan_agent: expected one of {}, not {:?}",
            SCAN_AGENTS.join(", "),
            excerpt(&row.scan_agent)
        ));
    }
    check_state_fields(
        &row.bulletin,
        row.product.as_deref(),
        &row.q_numbers,
        row.title.as_deref(),
        &row.status,
        &row.reboot,
        row.patch.as_deref(),
        &row.reason,
    )
}

#[allow(clippy::too_many_arguments)]
fn check_state_fields(
    bulletin: &str,
    product: Option<&str>,
    q_numbers: &[String],
    title: Option<&str>,
    status: &str,
    reboot: &str,
    patch: Option<&str>,
    reason: &str,
) -> Result<(), String> {
    text("bulletin", bulletin, 1, 64)?;
    if let Some(p) = product {
        text("product", p, 1, 256)?;
    }
    if q_numbers.len() > 64 {
        return Err("qNumbers: more than 64".into());
    }
    for q in q_numbers {
        text("qNumbers", q, 1, 32)?;
    }
    if let Some(t) = title {
        text("title", t, 0, 1024)?;
    }
    if Status::parse(status).is_none() {
        return Err(format!(
            "status: expected installed, missing, notApplicable or unknown, not {:?}",
            excerpt(status)
        ));
    }
    if !["required", "notRequired", "unknown"].contains(&reboot) {
        return Err(format!(
            "reboot: expected required, notRequired or unknown, not {:?}",
            excerpt(reboot)
        ));
    }
    debug_assert_eq!(Reboot::parse(reboot).as_str(), reboot);
    if let Some(p) = patch {
        text("patch", p, 1, 256)?;
    }
    text("reason", reason, 0, 1024)
}

/// A text field of `min..=max` bytes without control characters.
fn text(field: &str, value: &str, min: usize, max: usize) -> Result<(), String> {
    if value.len() < min || value.len() > max {
        return Err(if min > 0 && value.is_empty() {
            format!("{field}: must not be empty")
        } else {
            format!("{field}: at most {max} bytes, this one has {}", value.len())
        });
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{field}: contains control characters"));
    }
    Ok(())
}

/// A caller's value, cut short for an error message.
fn excerpt(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> PatchStateReport {
        PatchStateReport {
            machine: "wks-1".into(),
            scan_agent: "patchops-mssecure".into(),
            scan_time: "2026-11-25T02:00:00Z".into(),
            states: vec![ReportedState {
                bulletin: "MS01-041".into(),
                product: Some("Windows NT Server 4.0".into()),
                q_numbers: vec!["Q298012".into()],
                title: Some("Malformed RPC Request".into()),
                status: "missing".into(),
                reboot: "required".into(),
                patch: Some("Q298012i.exe".into()),
                reason: "rpcrt4.dll is 4.0.1381.7100, needs 4.0.1381.7120".into(),
            }],
        }
    }

    #[test]
    fn a_good_report_passes_and_becomes_rows() {
        let r = report();
        let at = r.check().unwrap();
        let rows = r.rows("wks-1", at);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].scan_agent, "patchops-mssecure");
        assert_eq!(rows[0].status, "missing");
        assert_eq!(rows[0].scan_time_ms, at);
    }

    #[test]
    fn bad_fields_are_named() {
        let mut r = report();
        r.scan_agent = "wsus".into();
        assert!(r.check().unwrap_err().starts_with("scanAgent:"));
        let mut r = report();
        r.scan_time = "yesterday".into();
        assert!(r.check().unwrap_err().starts_with("scanTime:"));
        let mut r = report();
        r.states[0].status = "patched".into();
        let e = r.check().unwrap_err();
        assert!(e.starts_with("states[0].status:"), "{e}");
        let mut r = report();
        r.states[0].bulletin.clear();
        assert_eq!(
            r.check().unwrap_err(),
            "states[0].bulletin: must not be empty"
        );
        let mut r = report();
        r.states[0].reason = "x".repeat(2000);
        assert!(r
            .check()
            .unwrap_err()
            .starts_with("states[0].reason: at most"));
        let mut r = report();
        r.states.push(r.states[0].clone());
        assert!(r.check().unwrap_err().contains("reported twice"));
        let mut r = report();
        r.states = vec![r.states[0].clone(); MAX_STATES + 1];
        assert!(r.check().unwrap_err().starts_with("states: at most"));
    }
}
