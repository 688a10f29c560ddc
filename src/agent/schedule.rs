//! When an assignment runs. Pure: the assignment, its history and the time
//! come in, a [`Due`] goes out.
//!
//! Rules (each has a test below):
//! * Outside `[availableAfter, expiresAt)` nothing runs; before
//!   `availableAfter` the assignment is due at it if a schedule entry has
//!   passed by then, else at the first entry after it.
//! * Times with an offset are instants; without one they are the client's
//!   local time (the `tz` of [`ScheduleOptions`]).
//! * Occurrences: `asSoonAsPossible` once (at `availableAfter`, or at once);
//!   `start` once; `start` + `everySeconds` at every multiple from `start`.
//!   `logon` / `logoff` events never fire unattended (no interactive
//!   sessions are watched).
//! * An occurrence at or before `now` that is later than the last run makes
//!   the assignment due now, if it never ran or `rerun` allows it:
//!   `always`; `ifFailed` after a failure; `ifSucceeded` after a success
//!   (a pending restart counts as success); `never` not once it ran.
//! * A failed run is retried after `retry_delay` up to `max_attempts` runs
//!   in all, when `rerun` is `always` or `ifFailed`.
//! * Optional advertisements (no schedule) do not run unattended; with
//!   `run_optional` they run once, like `asSoonAsPossible`.

use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::manifest::advertisement::{AssignmentEvent, Rerun};
use crate::policy::{MachinePolicy, PolicyAssignment, PolicyProgram, PolicySchedule};

/// When an assignment should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    Now,
    At(Timestamp),
    Never,
}

/// The outcome of a run, as the history remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RunResult {
    Succeeded,
    Failed,
    RestartPending,
}

impl RunResult {
    pub fn succeeded(self) -> bool {
        matches!(self, RunResult::Succeeded | RunResult::RestartPending)
    }
}

/// One advertisement's (or program's) history on this machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<RunResult>,
    /// Consecutive failed runs (0 after a success).
    #[serde(default)]
    pub attempts: u32,
}

impl RunRecord {
    /// The record after a run that ended at `at` with `result`.
    pub fn after(&self, at: Timestamp, result: RunResult) -> RunRecord {
        RunRecord {
            last_run: Some(at),
            result: Some(result),
            attempts: if result.succeeded() {
                0
            } else {
                self.attempts.saturating_add(1)
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScheduleOptions {
    /// Run optional advertisements (no schedule) once, unattended.
    pub run_optional: bool,
    pub retry_delay: Duration,
    /// Runs in all for one failure streak (the first run included).
    pub max_attempts: u32,
    /// The client's time zone, for times without an offset.
    pub tz: TimeZone,
}

impl Default for ScheduleOptions {
    fn default() -> Self {
        ScheduleOptions {
            run_optional: false,
            retry_delay: Duration::from_secs(600),
            max_attempts: 3,
            tz: TimeZone::UTC,
        }
    }
}

/// Parses a policy time: RFC 3339 with offset, or a civil time in `tz`.
pub fn parse_time(text: &str, tz: &TimeZone) -> Option<Timestamp> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Some(t);
    }
    let civil: jiff::civil::DateTime = text.parse().ok()?;
    tz.to_timestamp(civil).ok()
}

/// Whether the failed run may be retried.
pub fn will_retry(
    assignment: &PolicyAssignment,
    record: &RunRecord,
    opts: &ScheduleOptions,
) -> bool {
    record.result == Some(RunResult::Failed)
        && matches!(assignment.rerun, Rerun::Always | Rerun::IfFailed)
        && record.attempts > 0
        && record.attempts < opts.max_attempts
}

/// When `assignment` should run, given its history.
pub fn due(
    assignment: &PolicyAssignment,
    record: Option<&RunRecord>,
    now: Timestamp,
    opts: &ScheduleOptions,
) -> Due {
    let time = |t: &Option<String>| t.as_deref().map(|t| parse_time(t, &opts.tz));
    let available = match time(&assignment.available_after) {
        Some(None) => return Due::Never, // unreadable: never guess
        Some(Some(t)) => Some(t),
        None => None,
    };
    let expires = match time(&assignment.expires_at) {
        Some(None) => return Due::Never,
        Some(Some(t)) => Some(t),
        None => None,
    };
    if expires.is_some_and(|e| now >= e) {
        return Due::Never;
    }
    let within = |t: Timestamp| {
        if expires.is_some_and(|e| t >= e) {
            Due::Never
        } else {
            Due::At(t)
        }
    };

    let entries: Vec<Entry> = if assignment.schedule.is_empty() {
        if opts.run_optional {
            vec![Entry::Once(available.unwrap_or(Timestamp::MIN))]
        } else {
            return Due::Never;
        }
    } else {
        assignment
            .schedule
            .iter()
            .filter_map(|s| Entry::from_policy(s, available, &opts.tz))
            .collect()
    };
    if entries.is_empty() {
        return Due::Never;
    }

    if let Some(available) = available.filter(|a| now < *a) {
        if entries.iter().any(|e| e.latest(available).is_some()) {
            return within(available);
        }
        return match entries.iter().filter_map(|e| e.next_after(available)).min() {
            Some(t) => within(t),
            None => Due::Never,
        };
    }

    let may_rerun = |record: &RunRecord| match (assignment.rerun, record.result) {
        (_, None) => true,
        (Rerun::Always, _) => true,
        (Rerun::Never, _) => false,
        (Rerun::IfFailed, Some(r)) => !r.succeeded(),
        (Rerun::IfSucceeded, Some(r)) => r.succeeded(),
    };
    let last_run = record.and_then(|r| r.last_run);
    let latest = entries.iter().filter_map(|e| e.latest(now)).max();
    if let Some(latest) = latest {
        let missed = last_run.is_none_or(|last| last < latest);
        if missed && record.is_none_or(may_rerun) {
            return Due::Now;
        }
    }

    let mut candidates = Vec::new();
    if let Some(record) = record.filter(|r| will_retry(assignment, r, opts)) {
        let at = record
            .last_run
            .and_then(|l| l.checked_add(opts.retry_delay).ok())
            .unwrap_or(now);
        if at <= now {
            return Due::Now;
        }
        candidates.push(at);
    }
    if record.is_none_or(may_rerun) {
        candidates.extend(entries.iter().filter_map(|e| e.next_after(now)));
    }
    match candidates.into_iter().min() {
        Some(t) => within(t),
        None => Due::Never,
    }
}

/// One schedule entry as occurrences.
#[derive(Debug, Clone, Copy)]
enum Entry {
    Once(Timestamp),
    Every { start: Timestamp, every: i64 },
}

impl Entry {
    fn from_policy(
        s: &PolicySchedule,
        available: Option<Timestamp>,
        tz: &TimeZone,
    ) -> Option<Entry> {
        match (s.event, &s.start) {
            (Some(AssignmentEvent::AsSoonAsPossible), _) => {
                Some(Entry::Once(available.unwrap_or(Timestamp::MIN)))
            }
            (Some(_), _) => None, // logon / logoff: not watched
            (None, Some(start)) => {
                let start = parse_time(start, tz)?;
                match s.every_seconds {
                    Some(every) if every > 0 => Some(Entry::Every {
                        start,
                        every: i64::try_from(every).ok()?,
                    }),
                    _ => Some(Entry::Once(start)),
                }
            }
            (None, None) => None,
        }
    }

    /// The latest occurrence at or before `t`.
    fn latest(self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Entry::Once(at) => (at <= t).then_some(at),
            Entry::Every { start, every } => {
                if start > t {
                    return None;
                }
                let elapsed = t.as_second() - start.as_second();
                let k = elapsed / every;
                Timestamp::from_second(start.as_second() + k * every).ok()
            }
        }
    }

    /// The first occurrence after `t`.
    fn next_after(self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Entry::Once(at) => (at > t).then_some(at),
            Entry::Every { start, every } => {
                if start > t {
                    return Some(start);
                }
                let elapsed = t.as_second() - start.as_second();
                let k = elapsed / every + 1;
                Timestamp::from_second(start.as_second().checked_add(k.checked_mul(every)?)?).ok()
            }
        }
    }
}

/// A program and whether it must run although it succeeded before.
#[derive(Debug, Clone, Copy)]
pub struct ChainStep<'a> {
    pub program: &'a PolicyProgram,
    /// `runFirst.alwaysRun` for run-first programs; true for the
    /// assignment's own program.
    pub always_run: bool,
}

/// The programs to run for `program`, in order: the deepest run-first
/// program first, the program itself last. A run-first program missing
/// from the policy's `programs`, or a cycle, is an error.
pub fn run_order<'a>(
    policy: &'a MachinePolicy,
    program: &'a PolicyProgram,
) -> Result<Vec<ChainStep<'a>>, String> {
    let mut chain = vec![ChainStep {
        program,
        always_run: true,
    }];
    let mut next = program.run_first.as_ref();
    while let Some(first) = next {
        let Some(found) = policy
            .programs
            .iter()
            .find(|p| p.package == first.package && p.program == first.program)
        else {
            return Err(format!(
                "the run-first program {}/{} is not in the policy",
                first.package, first.program
            ));
        };
        if chain
            .iter()
            .any(|s| s.program.package == found.package && s.program.program == found.program)
        {
            return Err(format!(
                "the run-first chain of {}/{} has a cycle",
                program.package, program.program
            ));
        }
        chain.push(ChainStep {
            program: found,
            always_run: first.always_run,
        });
        next = found.run_first.as_ref();
    }
    chain.reverse();
    Ok(chain)
}

/// Whether a run-first program runs: always when asked to, else only if it
/// has not succeeded on this machine before.
pub fn step_needed(step: &ChainStep<'_>, record: Option<&RunRecord>) -> bool {
    step.always_run
        || !record
            .and_then(|r| r.result)
            .is_some_and(RunResult::succeeded)
}

/// The key of a program in the history: `package/program`.
pub fn program_key(program: &PolicyProgram) -> String {
    format!("{}/{}", program.package, program.program)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::advertisement::{LocalDpAction, RemoteDpAction};
    use crate::manifest::common::{CanRun, Priority};
    use crate::manifest::package::{AfterRunning, DriveMode, RunMode, RunWith};
    use crate::policy::{ClientSettings, RunFirst};

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn program(name: &str) -> PolicyProgram {
        PolicyProgram {
            package: "P".into(),
            program: name.into(),
            command_line: "sh run.sh".into(),
            comment: String::new(),
            run_mode: RunMode::Hidden,
            after_running: AfterRunning::NoAction,
            max_run_time_seconds: 60,
            estimated_disk_space_bytes: None,
            can_run: CanRun::WhetherOrNotUserLoggedOn,
            run_with: RunWith::AdministrativeRights,
            allow_user_interaction: false,
            drive_mode: DriveMode::Unc,
            drive_letter: None,
            reconnect_at_logon: false,
            suppress_notifications: false,
            expedited: false,
            removal: None,
            run_first: None,
            content: None,
            distribution_points: vec![],
            scan: None,
            install_agent: None,
            notification: None,
            notice: None,
        }
    }

    fn assignment(schedule: Vec<PolicySchedule>, rerun: Rerun) -> PolicyAssignment {
        PolicyAssignment {
            advertisement: "A".into(),
            mandatory: !schedule.is_empty(),
            available_after: None,
            expires_at: None,
            schedule,
            rerun,
            allow_users_to_run_independently: false,
            mandatory_over_slow_links: false,
            priority: Priority::Medium,
            local_distribution_point: LocalDpAction::DownloadAndRun,
            remote_distribution_point: RemoteDpAction::DownloadAndRun,
            program: program("Install"),
        }
    }

    fn asap() -> PolicySchedule {
        PolicySchedule {
            start: None,
            every_seconds: None,
            event: Some(AssignmentEvent::AsSoonAsPossible),
        }
    }

    fn at(start: &str, every: Option<u64>) -> PolicySchedule {
        PolicySchedule {
            start: Some(start.into()),
            every_seconds: every,
            event: None,
        }
    }

    fn ran(when: &str, result: RunResult, attempts: u32) -> RunRecord {
        RunRecord {
            last_run: Some(t(when)),
            result: Some(result),
            attempts,
        }
    }

    const WEEK: u64 = 7 * 86400;

    #[test]
    fn as_soon_as_possible_runs_once() {
        let opts = ScheduleOptions::default();
        let a = assignment(vec![asap()], Rerun::Always);
        let now = t("2026-11-25T10:00:00Z");
        assert_eq!(due(&a, None, now, &opts), Due::Now);
        let after = ran("2026-11-25T10:00:00Z", RunResult::Succeeded, 0);
        assert_eq!(due(&a, Some(&after), now, &opts), Due::Never);
    }

    #[test]
    fn recurring_schedules_run_at_each_occurrence() {
        let opts = ScheduleOptions::default();
        let a = assignment(vec![at("2026-11-23T02:00:00Z", Some(WEEK))], Rerun::Always);
        // Not yet started.
        assert_eq!(
            due(&a, None, t("2026-11-20T00:00:00Z"), &opts),
            Due::At(t("2026-11-23T02:00:00Z"))
        );
        // Started, never ran: now.
        let now = t("2026-11-25T10:00:00Z");
        assert_eq!(due(&a, None, now, &opts), Due::Now);
        // Ran after the latest occurrence: the next one.
        let done = ran("2026-11-23T02:05:00Z", RunResult::Succeeded, 0);
        assert_eq!(
            due(&a, Some(&done), now, &opts),
            Due::At(t("2026-11-30T02:00:00Z"))
        );
        // A week later the next occurrence has passed: now.
        assert_eq!(
            due(&a, Some(&done), t("2026-12-01T03:00:00Z"), &opts),
            Due::Now
        );
    }

    #[test]
    fn civil_times_are_the_clients_local_time() {
        let opts = ScheduleOptions {
            tz: TimeZone::fixed(jiff::tz::offset(2)),
            ..ScheduleOptions::default()
        };
        let a = assignment(vec![at("2026-11-25T12:00:00", None)], Rerun::Always);
        // 12:00 at +02:00 is 10:00Z.
        assert_eq!(
            due(&a, None, t("2026-11-25T09:00:00Z"), &opts),
            Due::At(t("2026-11-25T10:00:00Z"))
        );
        assert_eq!(due(&a, None, t("2026-11-25T10:00:00Z"), &opts), Due::Now);
    }

    #[test]
    fn available_after_and_expires_at_bound_every_run() {
        let opts = ScheduleOptions::default();
        let mut a = assignment(vec![asap()], Rerun::Always);
        a.available_after = Some("2026-11-26T00:00:00Z".into());
        a.expires_at = Some("2026-11-27T00:00:00Z".into());
        assert_eq!(
            due(&a, None, t("2026-11-25T00:00:00Z"), &opts),
            Due::At(t("2026-11-26T00:00:00Z"))
        );
        assert_eq!(due(&a, None, t("2026-11-26T01:00:00Z"), &opts), Due::Now);
        assert_eq!(due(&a, None, t("2026-11-27T00:00:00Z"), &opts), Due::Never);
        // A recurring schedule whose next occurrence is after expiry.
        let mut b = assignment(vec![at("2026-11-20T02:00:00Z", Some(WEEK))], Rerun::Always);
        b.expires_at = Some("2026-11-26T00:00:00Z".into());
        let done = ran("2026-11-20T03:00:00Z", RunResult::Succeeded, 0);
        assert_eq!(
            due(&b, Some(&done), t("2026-11-25T00:00:00Z"), &opts),
            Due::Never
        );
        // An occurrence before availability runs when it becomes available.
        let mut c = assignment(vec![at("2026-11-20T02:00:00Z", None)], Rerun::Always);
        c.available_after = Some("2026-11-22T00:00:00Z".into());
        assert_eq!(
            due(&c, None, t("2026-11-21T00:00:00Z"), &opts),
            Due::At(t("2026-11-22T00:00:00Z"))
        );
        // Unreadable times: never guess.
        let mut d = assignment(vec![asap()], Rerun::Always);
        d.expires_at = Some("soon".into());
        assert_eq!(due(&d, None, t("2026-11-21T00:00:00Z"), &opts), Due::Never);
    }

    #[test]
    fn rerun_decides_whether_a_new_occurrence_runs_again() {
        let opts = ScheduleOptions {
            max_attempts: 1, // no retries here
            ..ScheduleOptions::default()
        };
        let schedule = vec![at("2026-11-01T02:00:00Z", Some(WEEK))];
        let now = t("2026-11-25T10:00:00Z"); // the latest occurrence: 2026-11-22
        let ok = ran("2026-11-15T03:00:00Z", RunResult::Succeeded, 0);
        let failed = ran("2026-11-15T03:00:00Z", RunResult::Failed, 1);
        let restart = ran("2026-11-15T03:00:00Z", RunResult::RestartPending, 0);
        let case = |rerun, record: &RunRecord| {
            due(
                &assignment(schedule.clone(), rerun),
                Some(record),
                now,
                &opts,
            )
        };
        assert_eq!(case(Rerun::Always, &ok), Due::Now);
        assert_eq!(case(Rerun::Always, &failed), Due::Now);
        assert_eq!(case(Rerun::Never, &ok), Due::Never);
        assert_eq!(case(Rerun::Never, &failed), Due::Never);
        assert_eq!(case(Rerun::IfFailed, &ok), Due::Never);
        assert_eq!(case(Rerun::IfFailed, &failed), Due::Now);
        assert_eq!(case(Rerun::IfSucceeded, &ok), Due::Now);
        assert_eq!(case(Rerun::IfSucceeded, &restart), Due::Now);
        assert_eq!(case(Rerun::IfSucceeded, &failed), Due::Never);
        // Never ran: every rerun setting runs it.
        for rerun in [
            Rerun::Never,
            Rerun::Always,
            Rerun::IfFailed,
            Rerun::IfSucceeded,
        ] {
            assert_eq!(
                due(&assignment(schedule.clone(), rerun), None, now, &opts),
                Due::Now
            );
        }
    }

    #[test]
    fn failures_are_retried_a_bounded_number_of_times() {
        let opts = ScheduleOptions::default(); // 10 minutes, 3 runs in all
        let a = assignment(vec![asap()], Rerun::IfFailed);
        let failed_once = ran("2026-11-25T10:00:00Z", RunResult::Failed, 1);
        assert_eq!(
            due(&a, Some(&failed_once), t("2026-11-25T10:05:00Z"), &opts),
            Due::At(t("2026-11-25T10:10:00Z"))
        );
        assert_eq!(
            due(&a, Some(&failed_once), t("2026-11-25T10:10:00Z"), &opts),
            Due::Now
        );
        assert!(will_retry(&a, &failed_once, &opts));
        let failed_thrice = ran("2026-11-25T10:20:00Z", RunResult::Failed, 3);
        assert!(!will_retry(&a, &failed_thrice, &opts));
        assert_eq!(
            due(&a, Some(&failed_thrice), t("2026-11-25T12:00:00Z"), &opts),
            Due::Never
        );
        // rerun never: no retry.
        let b = assignment(vec![asap()], Rerun::Never);
        assert_eq!(
            due(&b, Some(&failed_once), t("2026-11-25T12:00:00Z"), &opts),
            Due::Never
        );
        // A success resets the streak.
        assert_eq!(
            failed_once
                .after(t("2026-11-25T10:10:00Z"), RunResult::Succeeded)
                .attempts,
            0
        );
        assert_eq!(
            failed_once
                .after(t("2026-11-25T10:10:00Z"), RunResult::Failed)
                .attempts,
            2
        );
    }

    #[test]
    fn optional_advertisements_and_events_do_not_run_unattended() {
        let now = t("2026-11-25T10:00:00Z");
        let optional = assignment(vec![], Rerun::Always);
        assert_eq!(
            due(&optional, None, now, &ScheduleOptions::default()),
            Due::Never
        );
        let opts = ScheduleOptions {
            run_optional: true,
            ..ScheduleOptions::default()
        };
        assert_eq!(due(&optional, None, now, &opts), Due::Now);
        let once = ran("2026-11-25T10:00:00Z", RunResult::Succeeded, 0);
        assert_eq!(due(&optional, Some(&once), now, &opts), Due::Never);
        let logon = PolicySchedule {
            start: None,
            every_seconds: None,
            event: Some(AssignmentEvent::Logon),
        };
        assert_eq!(
            due(&assignment(vec![logon], Rerun::Always), None, now, &opts),
            Due::Never
        );
    }

    #[test]
    fn run_first_programs_run_first_and_once_unless_always() {
        let mut main = program("Install");
        main.run_first = Some(RunFirst {
            package: "P".into(),
            program: "Check".into(),
            always_run: false,
        });
        let mut check = program("Check");
        check.run_first = Some(RunFirst {
            package: "P".into(),
            program: "Prepare".into(),
            always_run: true,
        });
        let policy = MachinePolicy {
            format: crate::policy::POLICY_FORMAT.into(),
            site_code: None,
            client: ClientSettings {
                polling_interval_seconds: 60,
                jitter_seconds: 0,
                heartbeat_interval_seconds: 60,
            },
            assignments: vec![],
            programs: vec![check.clone(), program("Prepare")],
        };
        let order = run_order(&policy, &main).unwrap();
        let names: Vec<_> = order.iter().map(|s| s.program.program.as_str()).collect();
        assert_eq!(names, ["Prepare", "Check", "Install"]);
        assert!(order[0].always_run && !order[1].always_run && order[2].always_run);
        let ok = ran("2026-11-25T10:00:00Z", RunResult::Succeeded, 0);
        let failed = ran("2026-11-25T10:00:00Z", RunResult::Failed, 1);
        assert!(!step_needed(&order[1], Some(&ok)));
        assert!(step_needed(&order[1], Some(&failed)));
        assert!(step_needed(&order[1], None));
        assert!(step_needed(&order[0], Some(&ok)));

        // Missing and cyclic chains are refused.
        let mut lonely = program("X");
        lonely.run_first = Some(RunFirst {
            package: "P".into(),
            program: "Nowhere".into(),
            always_run: true,
        });
        assert!(run_order(&policy, &lonely)
            .unwrap_err()
            .contains("not in the policy"));
        let mut cyclic = policy.clone();
        let mut prepare = program("Prepare");
        prepare.run_first = Some(RunFirst {
            package: "P".into(),
            program: "Check".into(),
            always_run: true,
        });
        cyclic.programs = vec![check, prepare];
        assert!(run_order(&cyclic, &main).unwrap_err().contains("cycle"));
    }
}
