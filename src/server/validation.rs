//! The distribution points' scheduled deep content validation
//! (`DistributionPoint.spec.validation`), run by the leading server beside
//! its other schedules (see [`super::schedules`]).
//!
//! A validation re-hashes every file of the DP's content library
//! ([`Library::validate_counted`]) without holding the apply lock, so that
//! hashing a large DP never blocks an apply. A publish or a garbage
//! collection running meanwhile can make files look missing or
//! unreferenced for a moment; so what it found is checked again under the
//! apply lock ([`Library::recheck`]), and only what still holds is
//! recorded. With `--drift correct` the damaged files, and those no version
//! refers to, are then removed (under the same lock), and the reconcile
//! that follows at once copies the damaged ones again; with `--drift
//! detect` they are only reported.
//!
//! The result of each DP is stored ([`Store::record_dp_validation`], only
//! while this server holds the leader lease) and read back by `status dp`,
//! `status site` and, for the next due time, by the schedule itself: the
//! period counts from the last validation's start, whoever ran it, so a
//! new leader does not validate again what its predecessor just did. A DP
//! never validated is due at once.

use std::path::Path;
use std::time::Duration;

use crate::dp::library::{DpError, Finding, Library, Validation};
use crate::model::Desired;
use crate::ops::{self, Actor};
use crate::records::{DpOutcome, DpProblem, DpProblemKind, DpValidation, MAX_DP_PROBLEM_FILES};
use crate::store::Store;

/// How long a validation with findings waits for the apply lock to check
/// them again; when an apply holds it longer, the DP is tried again later.
const LOCK_WAIT: Duration = Duration::from_secs(30);
/// When a DP could not be validated for a reason that passes (no library
/// yet, the apply lock busy, the result not stored), the soonest retry.
pub const RETRY: Duration = Duration::from_secs(300);

/// One DP's validation schedule: its name, library path, period, and
/// whether any package is distributed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    pub dp: String,
    pub path: String,
    pub every_ms: i64,
    pub has_content: bool,
}

/// The DPs that are validated on a schedule: enabled, with
/// `validation.enabled`, and a period that parses. Pure.
pub fn scheduled(desired: &Desired) -> Vec<Scheduled> {
    desired
        .distribution_points
        .iter()
        .filter(|(_, dp)| dp.spec.enabled && dp.spec.validation.enabled)
        .filter_map(|(name, dp)| {
            let every = crate::units::parse_duration(dp.spec.validation.every.as_str()).ok()?;
            let has_content = desired
                .packages
                .values()
                .any(|p| p.spec.source.is_some() && p.spec.distribution_points.contains(name))
                || desired
                    .software_update_packages
                    .values()
                    .any(|p| p.spec.distribution_points.contains(name));
            Some(Scheduled {
                dp: name.clone(),
                path: dp.spec.path.clone(),
                every_ms: i64::try_from(every.as_millis()).unwrap_or(i64::MAX / 2),
                has_content,
            })
        })
        .collect()
}

/// When a DP's next validation is due: one period after the last one
/// started; a DP never validated is due at once (`i64::MIN`). A retry
/// time (a validation that could not run or be stored) holds it back until
/// then. Pure.
pub fn next_due_ms(last_started_ms: Option<i64>, every_ms: i64, retry_at_ms: Option<i64>) -> i64 {
    let due = last_started_ms.map_or(i64::MIN, |s| s.saturating_add(every_ms));
    retry_at_ms.map_or(due, |r| due.max(r))
}

/// What validating one DP came to.
#[derive(Debug)]
pub enum Validated {
    /// Validated and recorded (`stored`: false when this server no longer
    /// leads and the store refused the write).
    Done {
        validation: DpValidation,
        stored: bool,
    },
    /// Not validated now, for a reason that passes; try again later.
    Later(String),
}

/// Validates one DP at `now_ms` (the caller's clock; the end time adds the
/// elapsed time to it) and records the result under `lease_id`.
pub async fn validate_dp(
    store: &Store,
    dp: &Scheduled,
    lease_id: &str,
    repair: bool,
    now_ms: i64,
) -> Validated {
    let started = std::time::Instant::now();
    let path = dp.path.clone();
    let first = tokio::task::spawn_blocking(move || -> Result<(Library, Validation), DpError> {
        let library = Library::open(Path::new(&path))?;
        let validation = library.validate_counted(true)?;
        Ok((library, validation))
    })
    .await
    .unwrap_or_else(|e| {
        Err(DpError::Io {
            path: dp.path.clone(),
            reason: format!("the validation task failed: {e}"),
        })
    });
    let mut repaired = 0;
    let outcome = match first {
        Err(DpError::NotALibrary { .. }) if !dp.has_content => Ok(Validation::default()),
        Err(DpError::NotALibrary { path }) => {
            // Most likely the first distribution has not happened yet.
            return Validated::Later(format!("{path} holds no content library yet"));
        }
        Err(e) => Err(e.to_string()),
        Ok((_, validation)) if validation.findings.is_empty() => Ok(validation),
        Ok((library, mut validation)) => {
            let actor = Actor {
                name: "patchops server (content validation)".to_string(),
                host: ops::host_name(),
                pid: std::process::id(),
                command: format!("validate distribution point {}", dp.dp),
            };
            let site = crate::site::Site::Local(store.clone());
            let held = match ops::lock::acquire(&site, &actor, LOCK_WAIT).await {
                Ok(held) => held,
                Err(e) => return Validated::Later(format!("cannot check the findings again: {e}")),
            };
            let found = std::mem::take(&mut validation.findings);
            let checked = tokio::task::spawn_blocking(move || {
                let confirmed = library.recheck(&found)?;
                let removed = if repair {
                    library.remove_damage(&confirmed)?
                } else {
                    0
                };
                Ok::<_, DpError>((confirmed, removed))
            })
            .await
            .unwrap_or_else(|e| {
                Err(DpError::Io {
                    path: dp.path.clone(),
                    reason: format!("the validation task failed: {e}"),
                })
            });
            let _ = held.release().await;
            match checked {
                Ok((confirmed, removed)) => {
                    validation.findings = confirmed;
                    repaired = removed;
                    Ok(validation)
                }
                Err(e) => Err(e.to_string()),
            }
        }
    };
    let elapsed = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX / 2);
    let mut record = DpValidation {
        dp: dp.dp.clone(),
        path: dp.path.clone(),
        started_ms: now_ms,
        finished_ms: now_ms.saturating_add(elapsed),
        outcome: DpOutcome::Failed,
        files_checked: 0,
        bytes_checked: 0,
        problems: 0,
        problem_files: Vec::new(),
        message: None,
        repaired: repaired as u64,
        host: ops::host_name(),
        pid: std::process::id(),
    };
    match outcome {
        Ok(v) => {
            record.outcome = if v.findings.is_empty() {
                DpOutcome::Ok
            } else {
                DpOutcome::Problems
            };
            record.files_checked = v.files_checked;
            record.bytes_checked = v.bytes_checked;
            record.problems = v.findings.len() as u64;
            record.problem_files = v
                .findings
                .iter()
                .take(MAX_DP_PROBLEM_FILES)
                .map(problem)
                .collect();
        }
        Err(message) => {
            record.outcome = DpOutcome::Failed;
            record.message = Some(message);
        }
    }
    match store.record_dp_validation(lease_id, &record).await {
        Ok(stored) => Validated::Done {
            validation: record,
            stored,
        },
        Err(e) => Validated::Later(format!("cannot store the validation: {e}")),
    }
}

/// A finding as the store keeps it.
pub fn problem(finding: &Finding) -> DpProblem {
    match finding {
        Finding::Missing {
            package,
            path,
            sha256,
        } => DpProblem {
            problem: DpProblemKind::Missing,
            file: path.clone(),
            detail: Some(format!("package `{package}`, SHA-256 {sha256}")),
        },
        Finding::Corrupt { sha256, reason } => DpProblem {
            problem: DpProblemKind::Corrupt,
            file: format!("files/{}/{sha256}", &sha256[..2.min(sha256.len())]),
            detail: Some(reason.clone()),
        },
        Finding::Extra { file } => DpProblem {
            problem: DpProblemKind::Extra,
            file: file.clone(),
            detail: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dp_never_validated_is_due_at_once_then_one_period_after_its_start() {
        let day = 86_400_000;
        assert_eq!(next_due_ms(None, 7 * day, None), i64::MIN);
        assert_eq!(next_due_ms(Some(1_000), 7 * day, None), 1_000 + 7 * day);
        // A retry holds a due DP back, never brings one forward.
        assert_eq!(next_due_ms(None, 7 * day, Some(5_000)), 5_000);
        assert_eq!(
            next_due_ms(Some(1_000), 7 * day, Some(5_000)),
            1_000 + 7 * day
        );
    }
}
