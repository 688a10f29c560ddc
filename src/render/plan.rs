//! Plans for people: a header naming the state and source, one block per
//! change (each changed field, with lists and mappings as a unified diff of
//! their YAML made with `similar`), the dependents each change touches, and
//! Terraform's summary line.

use std::fmt::Write as _;

use serde_json::Value;
use similar::{ChangeTag, TextDiff};

use super::Style;
use crate::ops::planfile::SavedPlan;
use crate::plan::{Action, Change, FieldChange};
use crate::untrusted::{line, shown};

/// Dependents listed per change before "and N more".
const MAX_DEPENDENTS_SHOWN: usize = 5;

struct Paint(Style);

impl Paint {
    fn wrap(&self, code: &str, text: &str) -> String {
        match self.0 {
            Style::Color => format!("\x1b[{code}m{text}\x1b[0m"),
            Style::Plain => text.to_string(),
        }
    }
    fn green(&self, t: &str) -> String {
        self.wrap("32", t)
    }
    fn red(&self, t: &str) -> String {
        self.wrap("31", t)
    }
    fn yellow(&self, t: &str) -> String {
        self.wrap("33", t)
    }
    fn bold(&self, t: &str) -> String {
        self.wrap("1", t)
    }
    fn dim(&self, t: &str) -> String {
        self.wrap("2", t)
    }
}

pub fn human(plan: &SavedPlan, style: Style) -> String {
    let p = Paint(style);
    let mut out = String::new();
    let revision = match (&plan.source.revision.commit, plan.source.revision.dirty) {
        (Some(c), Some(true)) => format!(" @ {} (uncommitted changes)", super::short_hash(c)),
        (Some(c), _) => format!(" @ {}", super::short_hash(c)),
        (None, _) => " (not in git)".to_string(),
    };
    let _ = writeln!(
        out,
        "{}",
        p.bold(&format!(
            "Plan for site {} from {}{revision}",
            shown(plan.site.as_deref().unwrap_or("(none)")),
            shown(&plan.source.dir)
        ))
    );
    let _ = writeln!(
        out,
        "{}",
        p.dim(&format!(
            "State: {} (serial {})",
            shown(&plan.state.url),
            plan.state.serial
        ))
    );
    if !plan.targets.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            p.yellow(&format!(
                "Targeted: {} (other changes are not shown)",
                line(&plan.targets.join(", "))
            ))
        );
    }
    out.push('\n');
    for change in &plan.changes {
        change_block(&mut out, change, &p);
    }
    if !plan.distribution.is_empty() {
        let _ = writeln!(out, "{}", p.bold("Content to distribute:"));
        for d in &plan.distribution {
            let _ = writeln!(
                out,
                "{} {} → {}: {} files, {} to copy ({}; version {})",
                p.green("→"),
                shown(&d.package),
                shown(&d.dp),
                d.files_to_copy,
                bytes(d.bytes_to_copy),
                shown(&d.reason),
                shown(super::short_hash(&d.content.version))
            );
        }
        out.push('\n');
    }
    if !plan.cleanup.is_empty() {
        let _ = writeln!(out, "{}", p.bold("Distribution points to clean up:"));
        for c in &plan.cleanup {
            let _ = writeln!(
                out,
                "{} {}: {}; files no version refers to are removed",
                p.yellow("~"),
                shown(&c.dp),
                shown(&c.reason)
            );
        }
        out.push('\n');
    }
    if !plan.updates.is_empty() {
        let _ = writeln!(out, "{}", p.bold("Software update packages:"));
        for u in &plan.updates {
            if u.ready {
                let _ = writeln!(
                    out,
                    "{} {}: ready ({} files present and verified)",
                    p.green("✓"),
                    shown(&u.package),
                    u.files
                );
                selections(&mut out, u);
                for n in &u.notes {
                    let _ = writeln!(out, "    note: {}", shown(n));
                }
                continue;
            }
            let _ = writeln!(
                out,
                "{} {}: not ready: {} (not distributed)",
                p.yellow("!"),
                shown(&u.package),
                shown(u.why.as_deref().unwrap_or("unknown"))
            );
            for m in &u.missing {
                let _ = writeln!(out, "    missing: {}", shown(m));
            }
            for v in &u.unverified {
                let _ = writeln!(out, "    unverified: {}: {}", shown(&v.file), shown(&v.why));
            }
            selections(&mut out, u);
        }
        if plan.updates.iter().any(|u| !u.ready) {
            let _ = writeln!(
                out,
                "{}",
                p.dim("  `patchops updates download DIR` fetches and verifies the missing files")
            );
        }
        out.push('\n');
    }
    if let Some(impact) = plan.impact.as_ref().filter(|i| !i.is_empty()) {
        impact_block(&mut out, impact, &p);
    }
    for name in &plan.unmanaged {
        let _ = writeln!(
            out,
            "{} {} is not managed by patchops: left alone",
            p.dim("·"),
            shown(name)
        );
    }
    if (!plan.changes.is_empty() || !plan.unmanaged.is_empty()) && !out.ends_with("\n\n") {
        out.push('\n');
    }
    out.push_str(&summary_line(plan, &p));
    out
}

fn change_block(out: &mut String, change: &Change, p: &Paint) {
    let (mark, verb) = match change.action {
        Action::Create => (p.green("+"), p.green("create")),
        Action::Update => (p.yellow("~"), p.yellow("update")),
        Action::Adopt => (p.yellow("~"), p.yellow("adopt")),
        Action::Delete => (p.red("-"), p.red("delete")),
    };
    let origin = change
        .origin
        .as_ref()
        .map(|o| p.dim(&format!("  ({})", line(&o.to_string()))))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{mark} {verb} {} \"{}\"{origin}",
        change.kind,
        shown(&change.name)
    );
    if change.stored_object_corrupt {
        let _ = writeln!(
            out,
            "    {} the stored object does not match its hash: the state was changed outside patchops{}",
            p.red("!"),
            if change.action == Action::Delete {
                ""
            } else {
                "; apply rewrites it"
            }
        );
    }
    for field in &change.fields {
        field_lines(out, field, p);
    }
    let detailed =
        change.stored_object_corrupt || !change.fields.is_empty() || !change.dependents.is_empty();
    if !change.dependents.is_empty() {
        let shown: Vec<String> = change
            .dependents
            .iter()
            .take(MAX_DEPENDENTS_SHOWN)
            .map(|d| format!("{} \"{}\" ({})", d.kind, shown(&d.name), shown(&d.reason)))
            .collect();
        let more = change.dependents.len().saturating_sub(MAX_DEPENDENTS_SHOWN);
        let _ = writeln!(out, "    {} {}", p.dim("touches:"), shown.join("; "));
        if more > 0 {
            let _ = writeln!(out, "    {}", p.dim(&format!("and {more} more")));
        }
    }
    if detailed {
        out.push('\n');
    }
}

/// One changed field: `path: before → after` for plain values; for lists
/// and mappings, a unified diff of their YAML.
fn field_lines(out: &mut String, field: &FieldChange, p: &Paint) {
    let structured = |v: &Option<Value>| matches!(v, Some(Value::Array(_) | Value::Object(_)));
    let (mark, painted_path) = match (&field.before, &field.after) {
        (None, _) => (p.green("+"), p.green(&line(&field.path))),
        (_, None) => (p.red("-"), p.red(&line(&field.path))),
        _ => (p.yellow("~"), p.yellow(&line(&field.path))),
    };
    if !structured(&field.before) && !structured(&field.after) {
        let show = |v: &Option<Value>| {
            v.as_ref().map_or_else(
                || "(none)".to_string(),
                |v| line(&v.to_string()).into_owned(),
            )
        };
        let _ = writeln!(
            out,
            "    {mark} {painted_path}: {} → {}",
            show(&field.before),
            show(&field.after)
        );
        return;
    }
    let _ = writeln!(out, "    {mark} {painted_path}:");
    for line in diff_lines(field.before.as_ref(), field.after.as_ref()) {
        let painted = match line.chars().next() {
            Some('+') => p.green(&line),
            Some('-') => p.red(&line),
            _ => p.dim(&line),
        };
        let _ = writeln!(out, "        {painted}");
    }
}

/// Unified diff lines (with `similar`) of two values' YAML.
pub fn diff_lines(before: Option<&Value>, after: Option<&Value>) -> Vec<String> {
    let yaml = |v: Option<&Value>| -> String {
        v.map(|v| serde_yaml::to_string(v).unwrap_or_default())
            .unwrap_or_default()
    };
    let (old, new) = (yaml(before), yaml(after));
    let diff = TextDiff::from_lines(&old, &new);
    let mut lines = Vec::new();
    for group in diff.grouped_ops(3) {
        if !lines.is_empty() {
            lines.push("…".to_string());
        }
        for op in group {
            for change in diff.iter_changes(&op) {
                let sign = match change.tag() {
                    ChangeTag::Delete => '-',
                    ChangeTag::Insert => '+',
                    ChangeTag::Equal => ' ',
                };
                lines.push(format!(
                    "{sign} {}",
                    line(change.value().trim_end_matches('\n'))
                ));
            }
        }
    }
    lines
}

/// The blast radius: collections whose members change, and client policy.
fn impact_block(out: &mut String, impact: &crate::ops::impact::SiteImpact, p: &Paint) {
    let _ = writeln!(
        out,
        "{}",
        p.bold(&format!(
            "Machines (of {} in the inventory):",
            impact.machines
        ))
    );
    for m in &impact.memberships {
        let _ = writeln!(
            out,
            "{} collection {}: {} → {} members (+{} −{}){}",
            p.yellow("~"),
            shown(&m.collection),
            m.before,
            m.after,
            m.added,
            m.removed,
            samples(&m.added_sample, m.added, &m.removed_sample, m.removed)
        );
    }
    let policy = &impact.policy;
    let _ = writeln!(
        out,
        "{} client policy changes on {} of {}",
        p.yellow("~"),
        policy.machines_changed,
        machines(policy.machines as u64)
    );
    for (sign, paint, entries) in [
        (
            "+",
            Paint::green as fn(&Paint, &str) -> String,
            &policy.assignments_added,
        ),
        ("-", Paint::red, &policy.assignments_removed),
        ("~", Paint::yellow, &policy.assignments_changed),
    ] {
        for (ad, impact) in entries {
            let verb = match sign {
                "+" => "offered to",
                "-" => "withdrawn from",
                _ => "changed on",
            };
            let _ = writeln!(
                out,
                "    {} {}: {verb} {} ({}{})",
                paint(p, sign),
                shown(ad),
                machines(impact.machines as u64),
                line(&impact.sample.join(", ")),
                if impact.machines > impact.sample.len() {
                    ", …"
                } else {
                    ""
                }
            );
        }
    }
    out.push('\n');
}

fn machines(n: u64) -> String {
    if n == 1 {
        "1 machine".to_string()
    } else {
        format!("{n} machines")
    }
}

fn samples(added: &[String], n_added: u64, removed: &[String], n_removed: u64) -> String {
    let list = |names: &[String], n: u64| {
        let more = if n as usize > names.len() {
            ", …"
        } else {
            ""
        };
        format!("{}{more}", line(&names.join(", ")))
    };
    match (added.is_empty(), removed.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!(": +{}", list(added, n_added)),
        (true, false) => format!(": −{}", list(removed, n_removed)),
        (false, false) => format!(": +{}; −{}", list(added, n_added), list(removed, n_removed)),
    }
}

fn summary_line(plan: &SavedPlan, p: &Paint) -> String {
    if plan.is_empty() {
        return format!(
            "{}\n",
            p.green("No changes. The site matches the manifests.")
        );
    }
    let s = &plan.summary;
    let content = if plan.distribution.is_empty() {
        String::new()
    } else {
        let files: usize = plan.distribution.iter().map(|d| d.files_to_copy).sum();
        let total: u64 = plan.distribution.iter().map(|d| d.bytes_to_copy).sum();
        format!(
            " Content: {} package versions to distribute ({files} files, {}).",
            plan.distribution.len(),
            bytes(total)
        )
    };
    let content = if plan.cleanup.is_empty() {
        content
    } else {
        format!(
            "{content} {} distribution point(s) to clean up.",
            plan.cleanup.len()
        )
    };
    let machines = match &plan.impact {
        Some(i) if i.policy.machines_changed > 0 => format!(
            " Client policy: {} change.",
            machines(i.policy.machines_changed as u64)
        ),
        _ => String::new(),
    };
    format!(
        "{}\n",
        p.bold(&format!(
            "Plan: {} to add, {} to change, {} to destroy.{content}{machines}",
            s.add, s.change, s.destroy
        ))
    )
}

/// A byte count for people: `512 B`, `3.4 KB`, `1.2 MB`, `2.0 GB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// What the `missingIn` and `patch` selections of a package resolved to
/// (a `bulletin` selection says it itself).
fn selections(out: &mut String, u: &crate::supdate::readiness::UpdateReadiness) {
    for sel in &u.selections {
        if sel.selected.starts_with("bulletin ") && sel.notes.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "    updates[{}] {}: {} bulletin(s)",
            sel.selection,
            shown(&sel.selected),
            sel.updates.len()
        );
        for update in &sel.updates {
            let _ = writeln!(out, "      {}", shown(update));
        }
        for note in &sel.notes {
            let _ = writeln!(out, "      note: {}", shown(note));
        }
    }
}
