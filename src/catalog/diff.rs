//! What changed between two catalogs: new, revised and removed bulletins,
//! and for a revised bulletin each field that changed (dates, title,
//! patches added or removed, and per patch its detection data, products,
//! download, reboot and superseders). Pure.

use std::collections::BTreeMap;

use serde::Serialize;

use super::model::*;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogDiff {
    pub old_version: Option<String>,
    pub new_version: Option<String>,
    /// IDs in the new catalog only, in its order.
    pub new_bulletins: Vec<String>,
    /// Bulletins in both whose content differs, in the new catalog's order.
    pub revised: Vec<Revised>,
    /// IDs in the old catalog only, in its order.
    pub removed: Vec<String>,
}

impl CatalogDiff {
    pub fn is_empty(&self) -> bool {
        self.new_bulletins.is_empty() && self.revised.is_empty() && self.removed.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Revised {
    pub id: String,
    pub changes: Vec<Change>,
}

/// One changed field: `dateRevised`, `title`, `patch NAME` (added or
/// removed: one side is `None`), `patch NAME: files`, ….
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

fn change(out: &mut Vec<Change>, field: &str, old: Option<String>, new: Option<String>) {
    if old != new {
        out.push(Change {
            field: field.to_string(),
            old,
            new,
        });
    }
}

fn date(d: &Option<CatalogDate>) -> Option<String> {
    d.as_ref().map(|d| d.raw.clone())
}

fn list(items: Vec<String>) -> Option<String> {
    (!items.is_empty()).then(|| items.join("; "))
}

fn files(p: &Patch) -> Option<String> {
    list(
        p.files
            .iter()
            .map(|f| {
                format!(
                    "{}\\{} {} size {} checksum {}",
                    f.location.as_deref().unwrap_or("?"),
                    f.name,
                    f.version.as_deref().unwrap_or("-"),
                    f.size.map_or("-".to_string(), |s| s.to_string()),
                    f.checksum.as_deref().unwrap_or("-")
                )
            })
            .collect(),
    )
}

fn registry(p: &Patch) -> Option<String> {
    list(
        p.registry
            .iter()
            .map(|r| {
                format!(
                    "{}\\{} = {}",
                    r.key.as_deref().unwrap_or("?"),
                    r.value_name,
                    r.expected.as_deref().unwrap_or("")
                )
            })
            .collect(),
    )
}

fn affected(p: &Patch) -> Option<String> {
    list(
        p.affected
            .iter()
            .map(|a| {
                let sps: Vec<&str> = a.service_packs.iter().map(|s| s.id.as_str()).collect();
                format!(
                    "{} [{}] fixed in {}",
                    a.product_id,
                    sps.join(","),
                    a.fixed_in_sp.as_ref().map_or("-", |f| f.raw.as_str())
                )
            })
            .collect(),
    )
}

fn msi(p: &Patch) -> Option<String> {
    p.msi.as_ref().map(|m| {
        format!(
            "{:?} patch {} for {}",
            m.install,
            m.patch_code.as_deref().unwrap_or("-"),
            m.product_codes.join(",")
        )
    })
}

fn superseded(p: &Patch) -> Option<String> {
    p.superseded_by.as_ref().map(|s| {
        s.bulletins
            .iter()
            .map(|b| format!("{} ({})", b.bulletin_id, b.patches.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Patches keyed by name and occurrence (names repeat, even within one
/// bulletin).
fn keyed(b: &Bulletin) -> BTreeMap<(String, usize), &Patch> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for p in &b.patches {
        let n = counts.entry(p.name.as_str()).or_default();
        out.insert((p.name.clone(), *n), p);
        *n += 1;
    }
    out
}

fn patch_label(name: &str, n: usize) -> String {
    if n == 0 {
        format!("patch {name}")
    } else {
        format!("patch {name} (#{})", n + 1)
    }
}

fn bulletin_changes(old: &Bulletin, new: &Bulletin) -> Vec<Change> {
    let mut out = Vec::new();
    change(
        &mut out,
        "datePosted",
        date(&old.date_posted),
        date(&new.date_posted),
    );
    change(
        &mut out,
        "dateRevised",
        date(&old.date_revised),
        date(&new.date_revised),
    );
    change(&mut out, "title", old.title.clone(), new.title.clone());
    change(
        &mut out,
        "supported",
        Some(old.supported.to_string()),
        Some(new.supported.to_string()),
    );
    change(
        &mut out,
        "severity",
        old.severity.clone(),
        new.severity.clone(),
    );
    change(
        &mut out,
        "qNumbers",
        list(old.q_numbers.clone()),
        list(new.q_numbers.clone()),
    );
    change(
        &mut out,
        "supersededBy",
        list(old.superseded_by.clone()),
        list(new.superseded_by.clone()),
    );
    let (o, n) = (keyed(old), keyed(new));
    for ((name, i), p) in &o {
        if !n.contains_key(&(name.clone(), *i)) {
            change(&mut out, &patch_label(name, *i), Some(describe(p)), None);
        }
    }
    for ((name, i), np) in &n {
        let label = patch_label(name, *i);
        let Some(op) = o.get(&(name.clone(), *i)) else {
            change(&mut out, &label, None, Some(describe(np)));
            continue;
        };
        let f = |what: &str| format!("{label}: {what}");
        change(
            &mut out,
            &f("detection"),
            Some(op.detection.to_string()),
            Some(np.detection.to_string()),
        );
        change(&mut out, &f("files"), files(op), files(np));
        change(&mut out, &f("registry"), registry(op), registry(np));
        change(&mut out, &f("windowsInstaller"), msi(op), msi(np));
        change(&mut out, &f("affected"), affected(op), affected(np));
        change(
            &mut out,
            &f("sqNumber"),
            op.sq_number.clone(),
            np.sq_number.clone(),
        );
        change(
            &mut out,
            &f("rebootRequired"),
            op.reboot_required.map(|r| r.to_string()),
            np.reboot_required.map(|r| r.to_string()),
        );
        change(
            &mut out,
            &f("downloadUrl"),
            op.download_url.clone(),
            np.download_url.clone(),
        );
        change(&mut out, &f("supersededBy"), superseded(op), superseded(np));
    }
    out
}

fn describe(p: &Patch) -> String {
    format!(
        "{} ({} files, {} registry values, detection: {})",
        p.name,
        p.files.len(),
        p.registry.len(),
        p.detection
    )
}

/// Compares two catalogs bulletin by bulletin (IDs are uppercase in both).
pub fn diff(old: &Catalog, new: &Catalog) -> CatalogDiff {
    let old_ids: BTreeMap<&str, &Bulletin> =
        old.bulletins.iter().map(|b| (b.id.as_str(), b)).collect();
    let new_ids: BTreeMap<&str, &Bulletin> =
        new.bulletins.iter().map(|b| (b.id.as_str(), b)).collect();
    let mut out = CatalogDiff {
        old_version: old.data_version.clone(),
        new_version: new.data_version.clone(),
        new_bulletins: Vec::new(),
        revised: Vec::new(),
        removed: Vec::new(),
    };
    for b in &new.bulletins {
        match old_ids.get(b.id.as_str()) {
            None => out.new_bulletins.push(b.id.clone()),
            Some(o) => {
                let changes = bulletin_changes(o, b);
                if !changes.is_empty() {
                    out.revised.push(Revised {
                        id: b.id.clone(),
                        changes,
                    });
                }
            }
        }
    }
    for b in &old.bulletins {
        if !new_ids.contains_key(b.id.as_str()) {
            out.removed.push(b.id.clone());
        }
    }
    out
}
