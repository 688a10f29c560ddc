//! Which catalog a software update package draws from, and what its update
//! selection means in that catalog: the patch files, their download URLs and
//! the command line each is installed with. Pure: the catalog is read by the
//! caller.

use std::collections::BTreeMap;

use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use crate::catalog::{Bulletin, Catalog, Patch};
use crate::manifest::software_update_package::{
    MissingIn, OfficeInstallType, Ohotfix, SoftwareUpdatePackageSpec, UiLevel, UpdateSelection,
};
use crate::manifest::sync_host::CatalogType;
use crate::model::Desired;
use crate::suggest::did_you_mean;

/// Where a package's catalog is, relative to the repository root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogLocation {
    /// e.g. `packages/security-inventory-tool/mssecure.xml`.
    pub path: String,
    /// The sync host that fetches it.
    pub sync_host: String,
    /// The package whose source receives it.
    pub package: String,
}

/// The catalog of `update_type`: the first sync host (by name) that syncs a
/// catalog of that type names a package; the catalog is `mssecure.xml` or
/// `invcif.xml` in that package's source. `Err` says why there is none.
pub fn catalog_location(
    desired: &Desired,
    update_type: CatalogType,
) -> Result<CatalogLocation, String> {
    let file = crate::sync::file_name(update_type);
    for (host, sh) in &desired.sync_hosts {
        for c in &sh.spec.catalogs {
            if c.catalog_type != update_type {
                continue;
            }
            let Some(package) = desired.packages.get(&c.package) else {
                return Err(format!(
                    "sync host `{host}` puts the {} catalog into package `{}`, which is not declared",
                    crate::sync::kind_name(update_type),
                    c.package
                ));
            };
            let Some(source) = &package.spec.source else {
                return Err(format!(
                    "package `{}` has no source to hold the catalog",
                    c.package
                ));
            };
            let dir = source.as_str().trim_end_matches('/');
            return Ok(CatalogLocation {
                path: format!("{dir}/{file}"),
                sync_host: host.clone(),
                package: c.package.clone(),
            });
        }
    }
    Err(format!(
        "no sync host fetches a {} catalog (`{file}`); declare one in a SyncHost's `catalogs`",
        crate::sync::kind_name(update_type)
    ))
}

/// One file of a resolved package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedFile {
    /// Index of the selection in `spec.updates`.
    pub selection: usize,
    pub bulletin: String,
    /// The catalog's patch name.
    pub patch: String,
    /// The file's name in the source directory.
    pub file_name: String,
    /// Where the catalog says to download it.
    pub download_url: Option<String>,
    /// What the program runs.
    pub command_line: String,
    /// The program's name in the package.
    pub program_name: String,
}

/// A selection that does not match the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectionProblem {
    /// Index of the selection in `spec.updates`.
    pub selection: usize,
    /// The field below `spec.updates[i]`: `bulletin`, `qNumbers[0]`, …
    pub field: String,
    pub message: String,
    pub help: Option<String>,
}

/// What a package's selection resolves to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    pub files: Vec<ResolvedFile>,
    pub problems: Vec<SelectionProblem>,
    /// What each selection resolved to (selections with problems left out).
    pub selections: Vec<SelectionOutcome>,
}

/// Digits of a Q or KB number: `Q835732`, `KB835732` and `835732` are one.
fn q_digits(q: &str) -> &str {
    let t = q.trim();
    let upper = t.to_ascii_uppercase();
    if upper.starts_with("KB") {
        &t[2..]
    } else if upper.starts_with('Q') {
        &t[1..]
    } else {
        t
    }
}

/// What the stored scan results say about one collection's members: the
/// input of `missingIn` selections, made from the store by the caller.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectionMissing {
    /// The collection's members now (over the stored inventory).
    pub members: u64,
    /// Members with stored patch states.
    pub scanned: u64,
    /// Bulletin (upper case) → product (`""`: none named) → the members
    /// (numbered by the caller) on which it is missing.
    pub missing: BTreeMap<String, BTreeMap<String, RoaringBitmap>>,
}

/// [`CollectionMissing`] by collection name.
pub type MissingStates = BTreeMap<String, CollectionMissing>;

/// What one selection resolved to, and why: shown in plans.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectionOutcome {
    /// Index in `spec.updates`.
    pub selection: usize,
    /// The selection in words, e.g. `missingIn Pilot`.
    pub selected: String,
    /// One line per bulletin it resolved to, e.g. `MS01-036: missing on
    /// 12 of 40 members (1 file)`.
    #[serde(default)]
    pub updates: Vec<String>,
    /// Anything to know: nothing scanned, bulletins the catalog lacks, …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Resolves every selection of `spec` against `catalog`. A bulletin, patch,
/// Q number or product the catalog does not have is a problem with a
/// suggestion; matching ignores case and surrounding white space.
/// `missingIn` selections resolve from `missing` (the stored scan
/// results); without it (offline validation) they resolve to nothing, and
/// only their products are checked. A file selected twice is listed once,
/// with the first selection's command line.
pub fn resolve(
    spec: &SoftwareUpdatePackageSpec,
    catalog: &Catalog,
    missing: Option<&MissingStates>,
) -> Resolution {
    let mut out = Resolution::default();
    let mut seen: Vec<String> = Vec::new();
    for (i, sel) in spec.updates.iter().enumerate() {
        let before = out.problems.len();
        let mut outcome = SelectionOutcome {
            selection: i,
            ..SelectionOutcome::default()
        };
        // (bulletin, its patches, why it was chosen)
        let picked: Vec<(&Bulletin, Vec<&Patch>, String)> = if let Some(id) = &sel.bulletin {
            let id = id.trim();
            outcome.selected = format!("bulletin {id}");
            let Some(bulletin) = catalog.bulletin(id) else {
                let ids = catalog.bulletins.iter().map(|b| b.id.as_str());
                out.problems.push(SelectionProblem {
                    selection: i,
                    field: "bulletin".into(),
                    message: format!(
                        "bulletin `{id}` is not in the {} catalog",
                        kind_word(spec.update_type)
                    ),
                    help: Some(match did_you_mean(id, ids) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => {
                            "check the ID against `patchops catalog inspect` of the catalog".into()
                        }
                    }),
                });
                continue;
            };
            let patches = select_patches(i, sel, bulletin, &mut out.problems);
            if out.problems.len() > before {
                continue;
            }
            if patches.is_empty() {
                out.problems.push(SelectionProblem {
                    selection: i,
                    field: "bulletin".into(),
                    message: format!(
                        "no patch of bulletin `{}` matches the selection's filters",
                        bulletin.id
                    ),
                    help: Some("loosen `qNumbers`, `products` or `language`".into()),
                });
                continue;
            }
            vec![(bulletin, patches, "selected".to_string())]
        } else if let Some(name) = &sel.patch {
            let name = name.trim();
            outcome.selected = format!("patch {name}");
            let picked =
                select_by_patch(i, sel, name, catalog, &mut out.problems, &mut outcome.notes);
            if out.problems.len() > before {
                continue;
            }
            picked
        } else if let Some(m) = &sel.missing_in {
            outcome.selected = format!("missingIn {}", m.collection);
            check_products(i, sel, catalog, &mut out.problems);
            if out.problems.len() > before {
                continue;
            }
            match missing {
                None => {
                    outcome.notes.push(
                        "resolved when planned, from the stored scan results of the collection's members"
                            .into(),
                    );
                    Vec::new()
                }
                Some(states) => {
                    let empty = CollectionMissing::default();
                    let cm = states.get(&m.collection).unwrap_or(&empty);
                    select_missing(sel, m, cm, catalog, &mut outcome.notes)
                }
            }
        } else {
            continue;
        };
        for (bulletin, patches, why) in picked {
            let mut count = 0;
            for patch in patches {
                let file_name = file_name(patch);
                let key = file_name.to_ascii_lowercase();
                if seen.contains(&key) {
                    continue; // the same file for several products or selections
                }
                seen.push(key);
                count += 1;
                let command_line = sel
                    .command_line
                    .clone()
                    .unwrap_or_else(|| default_command_line(spec, &file_name));
                let program_name = match &sel.program_name {
                    Some(p) => format!("{p} ({file_name})"),
                    None => format!("{} ({file_name})", bulletin.id),
                };
                out.files.push(ResolvedFile {
                    selection: i,
                    bulletin: bulletin.id.clone(),
                    patch: patch.name.clone(),
                    file_name,
                    download_url: patch.download_url.clone(),
                    command_line,
                    program_name,
                });
            }
            let files = match count {
                0 => "no new file: selected already".to_string(),
                1 => "1 file".to_string(),
                n => format!("{n} files"),
            };
            outcome
                .updates
                .push(format!("{}: {why} ({files})", bulletin.id));
        }
        out.selections.push(outcome);
    }
    out
}

/// Patches by their catalog name or file name, over every bulletin,
/// narrowed by `products` and `language`.
fn select_by_patch<'a>(
    i: usize,
    sel: &UpdateSelection,
    name: &str,
    catalog: &'a Catalog,
    problems: &mut Vec<SelectionProblem>,
    notes: &mut Vec<String>,
) -> Vec<(&'a Bulletin, Vec<&'a Patch>, String)> {
    let mut picked: Vec<(&Bulletin, Vec<&Patch>, String)> = Vec::new();
    for b in &catalog.bulletins {
        let patches: Vec<&Patch> = b
            .patches
            .iter()
            .filter(|p| {
                p.name.trim().eq_ignore_ascii_case(name) || file_name(p).eq_ignore_ascii_case(name)
            })
            .collect();
        if !patches.is_empty() {
            picked.push((b, patches, format!("patch {name}")));
        }
    }
    if picked.is_empty() {
        let mut names: Vec<&str> = catalog
            .bulletins
            .iter()
            .flat_map(|b| b.patches.iter().map(|p| p.name.trim()))
            .filter(|n| !n.is_empty())
            .collect();
        names.sort_unstable();
        names.dedup();
        problems.push(SelectionProblem {
            selection: i,
            field: "patch".into(),
            message: format!("no patch `{name}` in the catalog"),
            help: Some(match did_you_mean(name, names.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "check the name against `patchops catalog inspect --format json` of the catalog (its patches' `name`)"
                    .into(),
            }),
        });
        return picked;
    }
    if !sel.products.is_empty() {
        let all: Vec<&str> = picked
            .iter()
            .flat_map(|(_, ps, _)| {
                ps.iter()
                    .flat_map(|p| p.affected.iter().map(|a| a.product.as_str()))
            })
            .collect();
        for (pi, product) in sel.products.iter().enumerate() {
            let product = product.trim();
            if !all.iter().any(|a| a.eq_ignore_ascii_case(product)) {
                problems.push(SelectionProblem {
                    selection: i,
                    field: format!("products[{pi}]"),
                    message: format!("patch `{name}` is not for product `{product}`"),
                    help: Some(match did_you_mean(product, all.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("its products: {}", dedup(all.clone()).join(", ")),
                    }),
                });
            }
        }
        for (_, ps, _) in &mut picked {
            ps.retain(|p| for_products(p, &sel.products));
        }
    }
    if let Some(language) = &sel.language {
        let lang = language.trim().to_ascii_lowercase();
        for (_, ps, _) in &mut picked {
            ps.retain(|p| patch_language(p).is_none_or(|l| l == lang));
        }
    }
    picked.retain(|(_, ps, _)| !ps.is_empty());
    // The same patch listed by several bulletins (a re-release) is one
    // file: it is installed as the newest bulletin's.
    if picked.len() > 1 {
        let newest = picked
            .iter()
            .enumerate()
            .max_by_key(|(i, (b, _, _))| (bulletin_date(&b.id), *i))
            .map(|(i, _)| i)
            .map(|i| picked.remove(i));
        notes.push(format!(
            "patch `{name}` is also listed by {}; it is installed as {}'s",
            picked
                .iter()
                .map(|(b, _, _)| b.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            newest.as_ref().map_or("", |(b, _, _)| b.id.as_str())
        ));
        picked = newest.into_iter().collect();
    }
    if picked.is_empty() && problems.iter().all(|p| p.selection != i) {
        problems.push(SelectionProblem {
            selection: i,
            field: "patch".into(),
            message: format!("patch `{name}` does not match the selection's filters"),
            help: Some("loosen `products` or `language`".into()),
        });
    }
    picked
}

/// `MS01-036` → (2001, 36), for ordering bulletins by age (`MS98-…` is
/// older than `MS00-…`); other IDs sort first.
fn bulletin_date(id: &str) -> (u32, u32) {
    let b = id.as_bytes();
    if b.len() == 8 && b[..2].eq_ignore_ascii_case(b"MS") && b[4] == b'-' {
        if let (Ok(y), Ok(n)) = (id[2..4].parse::<u32>(), id[5..].parse::<u32>()) {
            return (if y >= 90 { 1900 + y } else { 2000 + y }, n);
        }
    }
    (0, 0)
}

fn for_products(p: &Patch, products: &[String]) -> bool {
    products.is_empty()
        || p.affected.iter().any(|a| {
            products
                .iter()
                .any(|w| a.product.eq_ignore_ascii_case(w.trim()))
        })
}

/// `products` of a `missingIn` selection must be products of the catalog.
fn check_products(
    i: usize,
    sel: &UpdateSelection,
    catalog: &Catalog,
    problems: &mut Vec<SelectionProblem>,
) {
    if sel.products.is_empty() {
        return;
    }
    let mut all: Vec<&str> = catalog.products.values().map(|p| p.name.as_str()).collect();
    all.extend(catalog.bulletins.iter().flat_map(|b| {
        b.patches
            .iter()
            .flat_map(|p| p.affected.iter().map(|a| a.product.as_str()))
    }));
    let all = dedup(all);
    for (pi, product) in sel.products.iter().enumerate() {
        let product = product.trim();
        if !all.iter().any(|a| a.eq_ignore_ascii_case(product)) {
            problems.push(SelectionProblem {
                selection: i,
                field: format!("products[{pi}]"),
                message: format!("the catalog has no product `{product}`"),
                help: Some(match did_you_mean(product, all.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => {
                        "check the name against `patchops catalog inspect` of the catalog".into()
                    }
                }),
            });
        }
    }
}

/// The bulletins missing on at least one member, in catalog order, each
/// with the patches for the products it is missing for (narrowed by
/// `products`, `language` and the severities).
fn select_missing<'a>(
    sel: &UpdateSelection,
    m: &MissingIn,
    cm: &CollectionMissing,
    catalog: &'a Catalog,
    notes: &mut Vec<String>,
) -> Vec<(&'a Bulletin, Vec<&'a Patch>, String)> {
    let mut picked = Vec::new();
    if cm.members == 0 {
        notes.push(format!(
            "collection `{}` has no members in the stored inventory: nothing is selected",
            m.collection
        ));
        return picked;
    }
    if cm.scanned == 0 {
        notes.push(format!(
            "none of the {} members of collection `{}` has stored scan results: nothing is selected (import scans with `patchops inventory scan-import`)",
            cm.members, m.collection
        ));
        return picked;
    }
    if cm.scanned < cm.members {
        notes.push(format!(
            "{} of the {} members have no stored scan results; their missing updates are not known",
            cm.members - cm.scanned,
            cm.members
        ));
    }
    let mut unknown: Vec<&str> = cm
        .missing
        .keys()
        .filter(|b| catalog.bulletin(b).is_none())
        .map(String::as_str)
        .collect();
    unknown.sort_unstable();
    if !unknown.is_empty() {
        notes.push(format!(
            "missing per the stored scans but not in the catalog (scanned against another version; not selected): {}",
            unknown.join(", ")
        ));
    }
    let mut unrated = 0usize;
    for bulletin in &catalog.bulletins {
        let Some(by_product) = cm.missing.get(&bulletin.id.to_ascii_uppercase()) else {
            continue;
        };
        if !m.severities.is_empty() {
            let rated = bulletin.severity.as_deref().and_then(|s| {
                m.severities
                    .iter()
                    .find(|w| s.trim().eq_ignore_ascii_case(w.as_str()))
            });
            if rated.is_none() {
                if bulletin.severity.is_none() {
                    unrated += 1;
                }
                continue;
            }
        }
        let mut members = RoaringBitmap::new();
        let mut products: Vec<&str> = Vec::new();
        for (product, who) in by_product {
            if !sel.products.is_empty()
                && !sel
                    .products
                    .iter()
                    .any(|w| w.trim().eq_ignore_ascii_case(product))
            {
                continue;
            }
            if who.is_empty() {
                continue;
            }
            members |= who;
            products.push(product);
        }
        if members.is_empty() {
            continue;
        }
        let mut patches: Vec<&Patch> = bulletin
            .patches
            .iter()
            .filter(|p| {
                products.iter().any(|w| {
                    w.is_empty() || p.affected.iter().any(|a| a.product.eq_ignore_ascii_case(w))
                })
            })
            .collect();
        if let Some(language) = &sel.language {
            let lang = language.trim().to_ascii_lowercase();
            patches.retain(|p| patch_language(p).is_none_or(|l| l == lang));
        }
        let why = format!("missing on {} of {} members", members.len(), cm.members);
        if patches.is_empty() {
            notes.push(format!(
                "{}: {why}, but no patch of it matches the selection's filters",
                bulletin.id
            ));
            continue;
        }
        picked.push((bulletin, patches, why));
    }
    if unrated > 0 {
        notes.push(format!(
            "{unrated} missing bulletin(s) have no severity rating in the catalog and are left out by `severities`"
        ));
    }
    if picked.is_empty() {
        notes.push(format!(
            "no selectable update is missing on the {} scanned members of collection `{}`",
            cm.scanned, m.collection
        ));
    }
    picked
}

fn kind_word(t: CatalogType) -> &'static str {
    match t {
        CatalogType::Security => "security",
        CatalogType::Office => "Office",
    }
}

fn select_patches<'a>(
    i: usize,
    sel: &UpdateSelection,
    bulletin: &'a Bulletin,
    problems: &mut Vec<SelectionProblem>,
) -> Vec<&'a Patch> {
    let mut patches: Vec<&Patch> = bulletin.patches.iter().collect();
    if !sel.q_numbers.is_empty() {
        let known: Vec<&str> = bulletin
            .q_numbers
            .iter()
            .map(|q| q.as_str())
            .chain(
                bulletin
                    .patches
                    .iter()
                    .filter_map(|p| p.sq_number.as_deref()),
            )
            .collect();
        let mut wanted = Vec::new();
        for (qi, q) in sel.q_numbers.iter().enumerate() {
            let digits = q_digits(q);
            if known.iter().any(|k| q_digits(k) == digits) {
                wanted.push(digits);
            } else {
                let digits_known: Vec<&str> = known.iter().map(|k| q_digits(k)).collect();
                problems.push(SelectionProblem {
                    selection: i,
                    field: format!("qNumbers[{qi}]"),
                    message: format!("bulletin `{}` has no Q number `{}`", bulletin.id, q.trim()),
                    help: Some(match did_you_mean(digits, digits_known.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("its Q numbers: {}", digits_known.join(", ")),
                    }),
                });
            }
        }
        // A patch that names a Q number (as its own or in its file name) is
        // kept when it names a wanted one; patches that name none stay.
        let names_q = |p: &Patch, q: &str| {
            p.sq_number.as_deref().is_some_and(|s| q_digits(s) == q) || p.name.contains(q)
        };
        if patches.iter().any(|p| wanted.iter().any(|q| names_q(p, q))) {
            patches.retain(|p| wanted.iter().any(|q| names_q(p, q)));
        }
    }
    if !sel.products.is_empty() {
        let mut wanted = Vec::new();
        for (pi, product) in sel.products.iter().enumerate() {
            let product = product.trim();
            let all: Vec<&str> = bulletin
                .patches
                .iter()
                .flat_map(|p| p.affected.iter().map(|a| a.product.as_str()))
                .collect();
            if all.iter().any(|a| a.eq_ignore_ascii_case(product)) {
                wanted.push(product);
            } else {
                problems.push(SelectionProblem {
                    selection: i,
                    field: format!("products[{pi}]"),
                    message: format!(
                        "no patch of bulletin `{}` is for product `{product}`",
                        bulletin.id
                    ),
                    help: Some(match did_you_mean(product, all.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("its products: {}", dedup(all).join(", ")),
                    }),
                });
            }
        }
        patches.retain(|p| {
            p.affected
                .iter()
                .any(|a| wanted.iter().any(|w| a.product.eq_ignore_ascii_case(w)))
        });
    }
    if let Some(language) = &sel.language {
        // The security catalog carries no language per patch; the file
        // name or URL does for most (`_en`, `eng`, `en-us`). Patches that
        // name no language stay.
        let lang = language.trim().to_ascii_lowercase();
        patches.retain(|p| match patch_language(p) {
            None => true,
            Some(l) => l == lang,
        });
    }
    patches
}

fn dedup(mut v: Vec<&str>) -> Vec<&str> {
    v.sort_unstable();
    v.dedup();
    v
}

/// The language a patch's file name or URL names, as a Windows language
/// code (`enu`, `deu`, …), when it names one of the common ones.
fn patch_language(p: &Patch) -> Option<&'static str> {
    const CODES: [(&str, &str, &str); 6] = [
        ("enu", "_en", "/en-us/"),
        ("deu", "_de", "/de/"),
        ("fra", "_fr", "/fr/"),
        ("jpn", "_ja", "/ja/"),
        ("esn", "_es", "/es/"),
        ("ita", "_it", "/it/"),
    ];
    let name = p.name.to_ascii_lowercase();
    let url = p
        .download_url
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    CODES.iter().find_map(|(code, suffix, path)| {
        let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s);
        (stem.ends_with(suffix) || url.contains(path)).then_some(*code)
    })
}

/// The file a patch is saved as: its name when that is a file name (has an
/// extension), else the last segment of its download URL when that is one,
/// else the name with `.exe`.
pub fn file_name(p: &Patch) -> String {
    let name = p.name.trim();
    let safe = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    };
    if has_extension(name) && safe(name) {
        return name.to_string();
    }
    if let Some(url) = &p.download_url {
        let path = url.split(['?', '#']).next().unwrap_or_default();
        let last = path.rsplit('/').next().unwrap_or_default();
        let lower = last.to_ascii_lowercase();
        if safe(last) && [".exe", ".msi", ".msp"].iter().any(|e| lower.ends_with(e)) {
            return last.to_string();
        }
    }
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{}.exe",
        if cleaned.is_empty() {
            "patch"
        } else {
            &cleaned
        }
    )
}

fn has_extension(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".exe", ".msi", ".msp"].iter().any(|e| lower.ends_with(e))
}

/// The command line a file is installed with when its selection gives none.
///
/// Security updates, by installer generation (recognized from the file
/// name): `KB…`-named packages (the update.exe installer) run
/// `/quiet /norestart`; `Q…` hotfixes (`Q299553_W2K_SP3_x86_en.EXE`,
/// `Q305399i.exe`, `Q307195engi386.EXE`; hotfix.exe) run `-q -z`; anything
/// else is an IExpress package (Internet Explorer, Office and server
/// product fixes) and runs `/q:a /r:n`. Office client installs run
/// `ohotfix.exe`, which reads the generated `ohotfix.ini` beside it;
/// administrative installs run the patch itself with `/q:a /r:n` against
/// the administrative installation point the package's program is run on.
pub fn default_command_line(spec: &SoftwareUpdatePackageSpec, file_name: &str) -> String {
    match spec.update_type {
        CatalogType::Office => match spec.office.as_ref().map(|o| o.install_type) {
            Some(OfficeInstallType::Administrative) => format!("{file_name} /q:a /r:n"),
            _ => "ohotfix.exe".to_string(),
        },
        CatalogType::Security => {
            let lower = file_name.to_ascii_lowercase();
            let switches = if lower.starts_with("kb")
                || lower.contains("-kb")
                || lower.starts_with("windows")
            {
                "/quiet /norestart"
            } else if lower.starts_with('q') && lower[1..].starts_with(|c: char| c.is_ascii_digit())
            {
                "-q -z"
            } else {
                "/q:a /r:n"
            };
            format!("{file_name} {switches}")
        }
    }
}

/// Whether a package needs a generated `ohotfix.ini` (Office client installs).
pub fn needs_ohotfix(spec: &SoftwareUpdatePackageSpec) -> bool {
    spec.update_type == CatalogType::Office
        && spec.office.as_ref().map(|o| o.install_type) != Some(OfficeInstallType::Administrative)
}

/// The `ohotfix.ini` of an Office client package: deterministic, CRLF
/// line ends (Ohotfix is a Windows program).
pub fn ohotfix_ini(settings: &Ohotfix) -> String {
    let level = |l: UiLevel| match l {
        UiLevel::Q => "q",
        UiLevel::Qn => "qn",
        UiLevel::Qb => "qb",
        UiLevel::Qr => "qr",
        UiLevel::Qf => "qf",
    };
    format!(
        "[OHotfix]\r\nShowSuccessDialog={}\r\nOHotfixUILevel={}\r\nMsiUILevel={}\r\n",
        u8::from(settings.show_success_dialog),
        level(settings.ohotfix_ui_level),
        level(settings.msi_ui_level)
    )
}
