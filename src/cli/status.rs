//! `patchops status advertisements | advertisement NAME | machine NAME |
//! updates`.

use std::fmt::Write as _;

use super::{block_on, exit, report_error, with_store, Format, StateArgs};
use crate::ops::status::{self, AdvertisementStatus, MachineStatus, UpdatesStatus};
use crate::render::Style;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Every advertisement: targeted, received, in progress, succeeded,
    /// failed, restart pending.
    Advertisements {
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        state: StateArgs,
    },
    /// One advertisement, with each machine's newest message.
    Advertisement {
        name: String,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        state: StateArgs,
    },
    /// One machine: facts, collections, assignments, policy version,
    /// heartbeat and newest messages.
    Machine {
        name: String,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Every bulletin's compliance from the stored patch states (see
    /// `inventory scan-import`): machines installed, missing, not
    /// applicable, unknown, and % compliant.
    Updates {
        /// Only the machines of this collection.
        #[arg(long)]
        collection: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        state: StateArgs,
    },
}

pub fn run(command: Command, style: Style) -> u8 {
    let result = match command {
        Command::Advertisements { format, state } => block_on(with_store(&state, async |store| {
            status::advertisements(store, None).await
        }))
        .map(|list| print_advertisements(&list, format, false)),
        Command::Advertisement {
            name,
            format,
            state,
        } => block_on(with_store(&state, async |store| {
            status::advertisements(store, Some(&name)).await
        }))
        .map(|list| print_advertisements(&list, format, true)),
        Command::Machine {
            name,
            format,
            state,
        } => block_on(with_store(&state, async |store| {
            status::machine(store, &name).await
        }))
        .map(|m| print_machine(&m, format)),
        Command::Updates {
            collection,
            format,
            state,
        } => block_on(with_store(&state, async |store| {
            status::updates(store, collection.as_deref()).await
        }))
        .map(|u| print_updates(&u, format)),
    };
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            report_error(&e, style);
            exit::FAILED
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn print_advertisements(list: &[AdvertisementStatus], format: Format, one: bool) {
    if format == Format::Json {
        if one {
            if let Some(first) = list.first() {
                println!("{}", json(first));
            }
        } else {
            println!("{}", json(&list));
        }
        return;
    }
    let mut out = String::new();
    let width = list.iter().map(|a| a.name.len()).max().unwrap_or(0).max(13);
    let _ = writeln!(
        out,
        "{:width$}  {:>8}  {:>8}  {:>11}  {:>9}  {:>6}  {:>7}",
        "ADVERTISEMENT", "TARGETED", "RECEIVED", "IN PROGRESS", "SUCCEEDED", "FAILED", "RESTART"
    );
    for a in list {
        let _ = writeln!(
            out,
            "{:width$}  {:>8}  {:>8}  {:>11}  {:>9}  {:>6}  {:>7}",
            a.name, a.targeted, a.received, a.in_progress, a.succeeded, a.failed, a.restart_pending
        );
    }
    if one {
        for a in list {
            let _ = writeln!(
                out,
                "\n{} → {} / {} on collection {}",
                a.name, a.package, a.program, a.collection
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
                    format!(": {}", m.message)
                };
                let _ = writeln!(
                    out,
                    "  {}  {}{exit}  {}{text}{gone}",
                    m.machine, m.state, m.at
                );
            }
        }
    }
    print!("{out}");
}

fn print_machine(m: &MachineStatus, format: Format) {
    if format == Format::Json {
        println!("{}", json(m));
        return;
    }
    let mut out = String::new();
    let _ = writeln!(out, "{}", m.name);
    let _ = writeln!(
        out,
        "  os:             {}",
        m.os.as_deref().unwrap_or("(unknown)")
    );
    let _ = writeln!(out, "  addresses:      {}", m.addresses.join(", "));
    let stale = if m.stale { " (stale)" } else { "" };
    let _ = writeln!(
        out,
        "  last heartbeat: {}{stale}",
        m.last_heartbeat.as_deref().unwrap_or("never")
    );
    let _ = writeln!(
        out,
        "  policy version: {}",
        m.policy_version
            .map_or("none yet".to_string(), |v| v.to_string())
    );
    let _ = writeln!(out, "  collections:    {}", m.collections.join(", "));
    let _ = writeln!(out, "  assignments:    {}", m.assignments.join(", "));
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
                r.at, r.advertisement, r.state, r.message
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
            .map(|s| format!("{} at {}", s.scan_agent, s.scan_time))
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
                s.bulletin,
                s.status,
                s.product.as_deref().unwrap_or("-"),
                s.reason
            );
        }
    }
    print!("{out}");
}

fn print_updates(u: &UpdatesStatus, format: Format) {
    if format == Format::Json {
        println!("{}", json(u));
        return;
    }
    let mut out = String::new();
    let scope = u
        .collection
        .as_deref()
        .map_or(String::new(), |c| format!(" in collection {c}"));
    let _ = writeln!(out, "{} scanned machines{scope}", u.machines);
    for s in &u.scans {
        let range = if s.oldest_scan == s.newest_scan {
            format!("at {}", s.newest_scan)
        } else {
            format!("from {} to {}", s.oldest_scan, s.newest_scan)
        };
        let _ = writeln!(
            out,
            "  {}: {} machines, scanned {range}",
            s.scan_agent, s.machines
        );
    }
    let _ = writeln!(
        out,
        "{:10}  {:>9}  {:>7}  {:>14}  {:>7}  {:>9}  TITLE",
        "BULLETIN", "INSTALLED", "MISSING", "NOT APPLICABLE", "UNKNOWN", "COMPLIANT"
    );
    for b in &u.bulletins {
        let c = &b.counts;
        let pct = b
            .percent_compliant
            .map_or("-".to_string(), |p| format!("{p:.1}%"));
        let _ = writeln!(
            out,
            "{:10}  {:>9}  {:>7}  {:>14}  {:>7}  {:>9}  {}",
            b.bulletin,
            c.installed,
            c.missing,
            c.not_applicable,
            c.unknown,
            pct,
            b.title.as_deref().unwrap_or("")
        );
    }
    print!("{out}");
}
