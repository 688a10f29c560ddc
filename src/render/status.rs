//! `patchops status …` for people: the site, distribution points,
//! advertisements, one machine and update compliance, as text with every
//! untrusted value escaped. (JSON is the status types serialized.)

use std::fmt::Write as _;

use crate::ops::status::{
    AdvertisementStatus, DpStatus, MachineStatus, ReconcileView, SiteStatus, UpdatesStatus,
};
use crate::untrusted::{line, shown};

/// One or two lines above a report: the site's manifests are not what it
/// serves.
fn banner_lines(r: &ReconcileView) -> String {
    let mut out = String::new();
    let what = match r.status.as_str() {
        "error" => format!(
            "reconcile failing since {} ({} failed in a row)",
            shown(&r.since),
            r.failures
        ),
        _ => format!("drift detected since {} (not corrected)", shown(&r.since)),
    };
    let detail = match r.problems.first() {
        Some(first) if r.problems.len() > 1 => {
            format!(
                "{} (and {} more)",
                line(&first.to_string()),
                r.problems.len() - 1
            )
        }
        Some(first) => line(&first.to_string()).into_owned(),
        None => line(r.message.as_deref().unwrap_or_default()).into_owned(),
    };
    let _ = writeln!(out, "! {what}: {detail}");
    let kept = r.last_apply.as_ref().map_or(String::new(), |a| {
        format!(" (last apply: serial {} at {})", a.serial, shown(&a.at))
    });
    let _ = writeln!(
        out,
        "! the applied state is kept and served{kept}; see `patchops status site`\n"
    );
    out
}

pub fn site(s: &SiteStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "site {}, applied state at serial {}",
        shown(s.site.as_deref().unwrap_or("(not applied yet)")),
        s.serial
    );
    match &s.reconcile {
        None => {
            let _ = writeln!(
                out,
                "reconcile: never (no server runs with --manifests on this store)"
            );
        }
        Some(r) => {
            let failures = if r.failures > 0 {
                format!(", {} failed in a row", r.failures)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "reconcile: {} since {}{failures}",
                shown(&r.status),
                shown(&r.since)
            );
            if r.problems.is_empty() {
                if let Some(message) = &r.message {
                    let _ = writeln!(out, "  {}", shown(message));
                }
            } else {
                let _ = writeln!(
                    out,
                    "  the manifests are invalid; the applied state is kept:"
                );
                for p in &r.problems {
                    let _ = writeln!(out, "  {}", shown(&p.to_string()));
                }
            }
            let commit = r.revision.as_deref().map_or(String::new(), |c| {
                format!(" (commit {})", shown(super::short_hash(c)))
            });
            let _ = writeln!(
                out,
                "  last attempt:   {}, {}{commit}, by {} pid {}",
                shown(&r.last_attempt),
                shown(&r.result),
                shown(&r.host),
                r.pid
            );
            let _ = writeln!(
                out,
                "  last success:   {}",
                shown(r.last_success.as_deref().unwrap_or("never"))
            );
            match &r.last_apply {
                Some(a) => {
                    let commit = a.revision.as_deref().map_or(String::new(), |c| {
                        format!(" (commit {})", shown(super::short_hash(c)))
                    });
                    let _ = writeln!(
                        out,
                        "  last apply:     serial {} at {}{commit}",
                        a.serial,
                        shown(&a.at)
                    );
                }
                None => {
                    let _ = writeln!(out, "  last apply:     none by a server");
                }
            }
        }
    }
    if !s.distribution_points.is_empty() {
        let _ = writeln!(out, "content validation:");
        for dp in &s.distribution_points {
            let _ = writeln!(out, "  {}: {}", shown(&dp.name), validation_summary(dp));
        }
    }
    match &s.leader {
        Some(l) if l.live => {
            let _ = writeln!(
                out,
                "leader: {} pid {} (since {}, lease until {})",
                shown(&l.host),
                l.pid,
                shown(&l.since),
                shown(&l.expires_at)
            );
        }
        Some(l) => {
            let _ = writeln!(
                out,
                "leader: none (the lease of {} pid {} ran out at {})",
                shown(&l.host),
                l.pid,
                shown(&l.expires_at)
            );
        }
        None => {
            let _ = writeln!(out, "leader: none");
        }
    }
    out
}

/// One DP's validation in a line: the last outcome, the problems, when the
/// next is due.
fn validation_summary(dp: &DpStatus) -> String {
    let last = match &dp.last_validation {
        None => "never validated".to_string(),
        Some(v) => {
            let what = match v.outcome.as_str() {
                "ok" => "ok".to_string(),
                "problems" if v.repaired > 0 => {
                    format!(
                        "{} problem(s), {} file(s) removed for repair",
                        v.problems, v.repaired
                    )
                }
                "problems" => format!("{} problem(s)", v.problems),
                other => format!(
                    "{}: {}",
                    shown(other),
                    line(v.message.as_deref().unwrap_or(""))
                ),
            };
            format!(
                "{what} at {} ({} files, {})",
                shown(&v.finished),
                v.files_checked,
                crate::render::plan::bytes(v.bytes_checked)
            )
        }
    };
    let next = match (&dp.validation_every, &dp.next_validation) {
        (None, _) if !dp.enabled => "off (the distribution point is disabled)".to_string(),
        (None, _) => "off".to_string(),
        (Some(_), _) if dp.validation_due => "due now".to_string(),
        (Some(every), Some(next)) => format!("{} (every {})", shown(next), shown(every)),
        (Some(every), None) => format!("every {}", shown(every)),
    };
    format!("{last}; next: {next}")
}

pub fn dps(dps: &[DpStatus]) -> String {
    let mut out = String::new();
    if dps.is_empty() {
        let _ = writeln!(out, "no distribution points in the applied site");
    }
    for dp in dps {
        let state = if dp.enabled { "" } else { " (disabled)" };
        let _ = writeln!(out, "{}{state}  {}", shown(&dp.name), shown(&dp.path));
        let _ = writeln!(out, "  validation: {}", validation_summary(dp));
        if let Some(v) = &dp.last_validation {
            let _ = writeln!(
                out,
                "  last: started {}, finished {}, by {} pid {}",
                shown(&v.started),
                shown(&v.finished),
                shown(&v.host),
                v.pid
            );
            for p in &v.problem_files {
                let detail = p
                    .detail
                    .as_deref()
                    .map_or(String::new(), |d| format!(": {}", line(d)));
                let _ = writeln!(out, "    {} {}{detail}", p.problem, shown(&p.file));
            }
            let listed = v.problem_files.len() as u64;
            if v.problems > listed {
                let _ = writeln!(out, "    … and {} more", v.problems - listed);
            }
        }
    }
    out
}

pub fn advertisements(
    list: &[AdvertisementStatus],
    banner: Option<&ReconcileView>,
    one: bool,
) -> String {
    let mut out = banner.map(banner_lines).unwrap_or_default();
    let width = list
        .iter()
        .map(|a| line(&a.name).chars().count())
        .max()
        .unwrap_or(0)
        .max(13);
    let _ = writeln!(
        out,
        "{:width$}  {:>8}  {:>8}  {:>11}  {:>9}  {:>6}  {:>7}",
        "ADVERTISEMENT", "TARGETED", "RECEIVED", "IN PROGRESS", "SUCCEEDED", "FAILED", "RESTART"
    );
    for a in list {
        let _ = writeln!(
            out,
            "{:width$}  {:>8}  {:>8}  {:>11}  {:>9}  {:>6}  {:>7}",
            shown(&a.name),
            a.targeted,
            a.received,
            a.in_progress,
            a.succeeded,
            a.failed,
            a.restart_pending
        );
    }
    if one {
        for a in list {
            let _ = writeln!(
                out,
                "\n{} → {} / {} on collection {}",
                shown(&a.name),
                shown(&a.package),
                shown(&a.program),
                shown(&a.collection)
            );
            if a.machines.is_empty() {
                let _ = writeln!(out, "  no machine has reported yet");
            }
            for m in &a.machines {
                let exit = m
                    .exit_code
                    .map(|c| format!(" (exit {c})"))
                    .unwrap_or_default();
                let gone = if m.targeted {
                    ""
                } else {
                    " [no longer targeted]"
                };
                let text = if m.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", shown(&m.message))
                };
                let _ = writeln!(
                    out,
                    "  {}  {}{exit}  {}{text}{gone}",
                    shown(&m.machine),
                    shown(&m.state),
                    shown(&m.at)
                );
            }
        }
    }
    out
}

pub fn machine(m: &MachineStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", shown(&m.name));
    let _ = writeln!(
        out,
        "  os:             {}",
        shown(m.os.as_deref().unwrap_or("(unknown)"))
    );
    let _ = writeln!(out, "  addresses:      {}", line(&m.addresses.join(", ")));
    let stale = if m.stale { " (stale)" } else { "" };
    let _ = writeln!(
        out,
        "  last heartbeat: {}{stale}",
        shown(m.last_heartbeat.as_deref().unwrap_or("never"))
    );
    let _ = writeln!(
        out,
        "  policy version: {}",
        m.policy_version
            .map_or("none yet".to_string(), |v| v.to_string())
    );
    let _ = writeln!(out, "  collections:    {}", line(&m.collections.join(", ")));
    let _ = writeln!(out, "  assignments:    {}", line(&m.assignments.join(", ")));
    if m.messages.is_empty() {
        let _ = writeln!(out, "  no status messages yet");
    } else {
        let _ = writeln!(out, "  newest messages:");
        for r in &m.messages {
            let exit = r
                .exit_code
                .map(|c| format!(" (exit {c})"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "    {}  {}  {}{exit}  {}",
                shown(&r.at),
                shown(&r.advertisement),
                shown(&r.state),
                shown(&r.message)
            );
        }
    }
    let p = &m.patch_states;
    if p.scans.is_empty() {
        let _ = writeln!(out, "  patch states:   not scanned yet");
    } else {
        let scans: Vec<String> = p
            .scans
            .iter()
            .map(|s| format!("{} at {}", shown(&s.scan_agent), shown(&s.scan_time)))
            .collect();
        let c = &p.counts;
        let _ = writeln!(
            out,
            "  patch states:   {} installed, {} missing, {} not applicable, {} unknown (scanned by {})",
            c.installed,
            c.missing,
            c.not_applicable,
            c.unknown,
            scans.join(", ")
        );
        for s in p
            .states
            .iter()
            .filter(|s| s.status == "missing" || s.status == "unknown")
        {
            let _ = writeln!(
                out,
                "    {:10}  {:8}  {}: {}",
                shown(&s.bulletin),
                shown(&s.status),
                shown(s.product.as_deref().unwrap_or("-")),
                shown(&s.reason)
            );
        }
    }
    out
}

pub fn updates(u: &UpdatesStatus, all: bool) -> String {
    let mut out = String::new();
    let scope = u
        .collection
        .as_deref()
        .map_or(String::new(), |c| format!(" in collection {}", shown(c)));
    let _ = writeln!(out, "{} scanned machines{scope}", u.machines);
    for s in &u.scans {
        let range = if s.oldest_scan == s.newest_scan {
            format!("at {}", shown(&s.newest_scan))
        } else {
            format!(
                "from {} to {}",
                shown(&s.oldest_scan),
                shown(&s.newest_scan)
            )
        };
        let _ = writeln!(
            out,
            "  {}: {} machines, scanned {range}",
            shown(&s.scan_agent),
            s.machines
        );
    }
    let _ = writeln!(
        out,
        "{:10}  {:>9}  {:>7}  {:>14}  {:>7}  {:>9}  TITLE",
        "BULLETIN", "INSTALLED", "MISSING", "NOT APPLICABLE", "UNKNOWN", "COMPLIANT"
    );
    // A catalog lists hundreds of bulletins for products a site does not
    // run: by default only those that apply to some scanned machine.
    let mut hidden = 0usize;
    for b in &u.bulletins {
        let c = &b.counts;
        if !all && c.installed + c.missing + c.unknown == 0 {
            hidden += 1;
            continue;
        }
        let pct = b
            .percent_compliant
            .map_or("-".to_string(), |p| format!("{p:.1}%"));
        let _ = writeln!(
            out,
            "{:10}  {:>9}  {:>7}  {:>14}  {:>7}  {:>9}  {}",
            shown(&b.bulletin),
            c.installed,
            c.missing,
            c.not_applicable,
            c.unknown,
            pct,
            shown(b.title.as_deref().unwrap_or(""))
        );
    }
    if hidden > 0 {
        let _ = writeln!(
            out,
            "{hidden} more bulletins apply to none of these machines (not applicable on all of them); --all lists them"
        );
    }
    out
}
