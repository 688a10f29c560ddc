//! `patchops catalog inspect | diff | scan` output: text for people, JSON
//! for tools.

use std::fmt::Write as _;
use std::path::Path;

use crate::applicability::{Counts, PatchState, ScanFacts};
use crate::catalog::{self, Catalog, CatalogDiff, Loaded, Problem};

pub fn scan_json(
    c: &Catalog,
    facts: &ScanFacts,
    now: jiff::Timestamp,
    states: &[PatchState],
) -> String {
    let doc = serde_json::json!({
        "machine": facts.machine,
        "catalog": {"kind": c.kind, "dataVersion": c.data_version},
        "scanTime": now,
        "counts": Counts::of(states),
        "states": states,
    });
    serde_json::to_string_pretty(&doc).expect("states serialize")
}

pub fn scan_human(facts: &ScanFacts, states: &[PatchState]) -> String {
    let mut out = String::new();
    let shown: Vec<&PatchState> = states.iter().filter(|s| s.product.is_some()).collect();
    let q = |s: &PatchState| s.q_numbers.first().cloned().unwrap_or_else(|| "-".into());
    let wb = shown
        .iter()
        .map(|s| s.bulletin.len())
        .max()
        .unwrap_or(0)
        .max(8);
    let wq = shown.iter().map(|s| q(s).len()).max().unwrap_or(0).max(2);
    let wp = shown
        .iter()
        .map(|s| s.product.map_or(0, str::len))
        .max()
        .unwrap_or(0)
        .max(7);
    let _ = writeln!(
        out,
        "{:wb$}  {:wq$}  {:wp$}  {:14}  {:12}  REASON",
        "BULLETIN", "Q", "PRODUCT", "STATUS", "REBOOT"
    );
    for s in &shown {
        let flag = if s.supported {
            ""
        } else {
            " [unsupported bulletin]"
        };
        let _ = writeln!(
            out,
            "{:wb$}  {:wq$}  {:wp$}  {:14}  {:12}  {}{flag}",
            s.bulletin,
            q(s),
            s.product.unwrap_or("-"),
            s.status.to_string(),
            s.reboot.as_str(),
            s.reason
        );
    }
    let c = Counts::of(states);
    let none = states.len() - shown.len();
    let _ = writeln!(
        out,
        "\n{}: {} installed, {} missing, {} not applicable ({none} bulletins for products it does not have), {} unknown{}",
        facts.machine,
        c.installed,
        c.missing,
        c.not_applicable,
        c.unknown,
        c.percent_compliant()
            .map_or(String::new(), |p| format!("; {p:.1}% compliant"))
    );
    out
}

/// `FILE:LINE:COL: severity: [bulletin ID: ]field: message`.
pub fn problem_line(file: &Path, p: &Problem) -> String {
    let sev = match p.severity {
        catalog::ProblemSeverity::Error => "error",
        catalog::ProblemSeverity::Warning => "warning",
    };
    let bulletin = p
        .bulletin
        .as_deref()
        .map_or(String::new(), |b| format!("bulletin {b}: "));
    format!(
        "{}:{}:{}: {sev}: {bulletin}{}: {}",
        file.display(),
        p.line,
        p.column,
        p.field,
        p.message
    )
}

pub fn inspect_json(file: &Path, loaded: &Loaded) -> String {
    let c = &loaded.catalog;
    let doc = serde_json::json!({
        "file": file.display().to_string(),
        "kind": c.kind,
        "dataVersion": c.data_version,
        "lastUpdated": c.last_updated,
        "counts": counts(loaded),
        "badBulletins": loaded.bad_bulletins(),
        "problems": loaded.problems,
        "catalog": c,
    });
    serde_json::to_string_pretty(&doc).expect("a catalog serializes")
}

fn counts(loaded: &Loaded) -> serde_json::Value {
    let c = &loaded.catalog;
    serde_json::json!({
        "bulletins": c.bulletins.len(),
        "patches": c.patch_count(),
        "products": c.products.len(),
        "servicePacks": c.service_packs.len(),
        "badBulletins": loaded.bad_bulletins().len(),
        "warnings": loaded.problems.iter().filter(|p| p.severity == catalog::ProblemSeverity::Warning).count(),
    })
}

fn header(file: &Path, c: &Catalog, loaded: &Loaded, out: &mut String) {
    let date = c
        .last_updated
        .as_ref()
        .map_or("-".to_string(), |d| match d.date {
            Some(p) => format!("{} ({p})", d.raw),
            None => d.raw.clone(),
        });
    let _ = writeln!(
        out,
        "{}: {} catalog, data version {}, updated {date}",
        file.display(),
        c.kind,
        c.data_version.as_deref().unwrap_or("-"),
    );
    let warnings = loaded
        .problems
        .iter()
        .filter(|p| p.severity == catalog::ProblemSeverity::Warning)
        .count();
    let _ = writeln!(
        out,
        "{} bulletins, {} patches, {} products, {} service packs; {} bad bulletins, {warnings} warnings",
        c.bulletins.len(),
        c.patch_count(),
        c.products.len(),
        c.service_packs.len(),
        loaded.bad_bulletins().len(),
    );
}

pub fn inspect_human(file: &Path, loaded: &Loaded) -> String {
    let c = &loaded.catalog;
    let mut out = String::new();
    header(file, c, loaded, &mut out);
    for b in &c.bulletins {
        let date =
            |d: &Option<catalog::CatalogDate>| d.as_ref().map_or("-".into(), |d| d.raw.clone());
        let _ = writeln!(
            out,
            "\n{}  {}  posted {}, revised {}{}",
            b.id,
            b.title.as_deref().unwrap_or("(no title)"),
            date(&b.date_posted),
            date(&b.date_revised),
            if b.supported { "" } else { "  [not supported]" }
        );
        if !b.q_numbers.is_empty() {
            let _ = writeln!(out, "  Q numbers: {}", b.q_numbers.join(", "));
        }
        if !b.superseded_by.is_empty() {
            let _ = writeln!(out, "  superseded by: {}", b.superseded_by.join(", "));
        }
        for p in &b.patches {
            let reboot = match p.reboot_required {
                Some(true) => ", reboot",
                Some(false) => ", no reboot",
                None => "",
            };
            let _ = writeln!(
                out,
                "  patch {}{}{reboot}; detection: {}",
                p.name,
                p.sq_number
                    .as_deref()
                    .map_or(String::new(), |q| format!(" ({q})")),
                p.detection
            );
            for a in &p.affected {
                let sps: Vec<&str> = a.service_packs.iter().map(|s| s.name.as_str()).collect();
                let _ = writeln!(
                    out,
                    "    product {}{}{}",
                    a.product,
                    if sps.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", sps.join(", "))
                    },
                    a.fixed_in_sp
                        .as_ref()
                        .map_or(String::new(), |f| format!(", FixedInSP {}", f.raw))
                );
            }
            for f in &p.files {
                let _ = writeln!(
                    out,
                    "    file {}\\{} version {} size {} checksum {}",
                    f.location.as_deref().unwrap_or("?"),
                    f.name,
                    f.version.as_deref().unwrap_or("-"),
                    f.size.map_or("-".into(), |s| s.to_string()),
                    f.checksum.as_deref().unwrap_or("-"),
                );
            }
            for r in &p.registry {
                let _ = writeln!(
                    out,
                    "    registry {}\\{} = {}",
                    r.key.as_deref().unwrap_or("?"),
                    r.value_name,
                    r.expected.as_deref().unwrap_or("(any)"),
                );
            }
            if let Some(m) = &p.msi {
                let _ = writeln!(
                    out,
                    "    msi {:?} patch {} for {}",
                    m.install,
                    m.patch_code.as_deref().unwrap_or("-"),
                    if m.product_codes.is_empty() {
                        "-".to_string()
                    } else {
                        m.product_codes.join(", ")
                    }
                );
            }
            if let Some(s) = &p.superseded_by {
                let by: Vec<String> = s
                    .bulletins
                    .iter()
                    .map(|b| format!("{} ({})", b.bulletin_id, b.patches.join(", ")))
                    .collect();
                let _ = writeln!(out, "    superseded by {}", by.join("; "));
            }
        }
    }
    if !loaded.problems.is_empty() {
        let _ = writeln!(out, "\nProblems:");
        for p in &loaded.problems {
            let _ = writeln!(out, "{}", problem_line(file, p));
        }
    }
    out
}

pub fn diff_human(d: &CatalogDiff) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "data version {} → {}: {} new, {} revised, {} removed",
        d.old_version.as_deref().unwrap_or("-"),
        d.new_version.as_deref().unwrap_or("-"),
        d.new_bulletins.len(),
        d.revised.len(),
        d.removed.len()
    );
    for id in &d.new_bulletins {
        let _ = writeln!(out, "+ {id}");
    }
    for r in &d.revised {
        let _ = writeln!(out, "~ {}", r.id);
        for c in &r.changes {
            let _ = writeln!(
                out,
                "    {}: {} → {}",
                c.field,
                c.old.as_deref().unwrap_or("(none)"),
                c.new.as_deref().unwrap_or("(none)")
            );
        }
    }
    for id in &d.removed {
        let _ = writeln!(out, "- {id}");
    }
    out
}
