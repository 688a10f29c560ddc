//! Software update packages (`docs/software-updates.md`): the selection
//! resolved against the synced catalog ([`resolve`]), the files' readiness
//! ([`readiness`]) and their download ([`download`]).

pub mod download;
pub mod notice;
pub mod policy;
pub mod readiness;
pub mod resolve;
pub mod signature;

use std::collections::BTreeMap;
use std::path::Path;

use crate::catalog::Catalog;
use crate::manifest::software_update_package::SoftwareUpdatePackageSpec;
use crate::manifest::sync_host::CatalogType;
use crate::model::Desired;

use readiness::{Lock, Needed, UpdateReadiness};
use resolve::{CatalogLocation, CollectionMissing, MissingStates, ResolvedFile, SelectionOutcome};

/// The generated Ohotfix settings file of Office client packages.
pub const OHOTFIX_INI: &str = "ohotfix.ini";

/// Largest catalog read (the sync host's own limit is larger; a catalog in
/// a manifest repository this big is a mistake).
const MAX_CATALOG_BYTES: u64 = 64 * 1024 * 1024;

/// Reads and parses the catalog of `update_type` from the repository.
pub fn load_catalog(
    dir: &Path,
    desired: &Desired,
    update_type: CatalogType,
) -> Result<(CatalogLocation, Catalog), String> {
    let location = resolve::catalog_location(desired, update_type)?;
    let path = crate::load::resolve_repo_path(dir, &location.path)
        .map_err(|e| format!("catalog path `{}`: {e}", location.path))?;
    let meta = std::fs::metadata(&path).map_err(|_| {
        format!(
            "the {} catalog `{}` is not there: run `patchops sync` on sync host `{}` (it writes the catalog into package `{}`), or copy the catalog there",
            crate::sync::kind_name(update_type),
            location.path,
            location.sync_host,
            location.package
        )
    })?;
    if meta.len() > MAX_CATALOG_BYTES {
        return Err(format!(
            "the catalog `{}` is larger than {MAX_CATALOG_BYTES} bytes",
            location.path
        ));
    }
    let bytes = std::fs::read(&path).map_err(|e| format!("reading `{}`: {e}", location.path))?;
    let loaded = crate::catalog::read_any(&bytes)
        .map_err(|e| format!("the catalog `{}` cannot be read: {e}", location.path))?;
    Ok((location, loaded.catalog))
}

/// Catalogs read once per run, by update type: validation reads them, and
/// a plan goes on with what validation read.
#[derive(Debug, Default)]
pub struct Catalogs {
    cache: BTreeMap<u8, Result<(CatalogLocation, Catalog), String>>,
}

impl Catalogs {
    pub fn get(
        &mut self,
        dir: &Path,
        desired: &Desired,
        update_type: CatalogType,
    ) -> &Result<(CatalogLocation, Catalog), String> {
        let key = match update_type {
            CatalogType::Security => 0,
            CatalogType::Office => 1,
        };
        self.cache
            .entry(key)
            .or_insert_with(|| load_catalog(dir, desired, update_type))
    }
}

/// The collections that `missingIn` selections name, sorted, once each.
pub fn missing_in_collections(desired: &Desired) -> Vec<String> {
    let mut out: Vec<String> = desired
        .software_update_packages
        .values()
        .flat_map(|s| s.spec.updates.iter())
        .filter_map(|u| u.missing_in.as_ref().map(|m| m.collection.clone()))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The input of `missingIn` selections: for each collection, its members
/// (machine keys) and which bulletin is missing on which of them for which
/// product, from the stored patch states (rows of other machines are
/// ignored). Pure.
pub fn missing_states(
    members: &BTreeMap<String, Vec<String>>,
    states: &[crate::records::StoredPatchState],
) -> MissingStates {
    let mut out = MissingStates::new();
    // Machine key → its number (per collection: the index in its sorted
    // member list).
    for (collection, keys) in members {
        let mut keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut cm = CollectionMissing {
            members: keys.len() as u64,
            ..CollectionMissing::default()
        };
        let mut scanned = roaring::RoaringBitmap::new();
        for s in states {
            let Ok(id) = keys.binary_search(&s.machine_key.as_str()) else {
                continue;
            };
            scanned.insert(id as u32);
            if s.status != "missing" {
                continue;
            }
            cm.missing
                .entry(s.bulletin.to_ascii_uppercase())
                .or_default()
                .entry(s.product.clone().unwrap_or_default())
                .or_default()
                .insert(id as u32);
        }
        cm.scanned = scanned.len();
        out.insert(collection.clone(), cm);
    }
    out
}

/// The files of one package, or why they cannot be listed.
pub fn package_files(
    spec: &SoftwareUpdatePackageSpec,
    catalogs: &mut Catalogs,
    dir: &Path,
    desired: &Desired,
    missing: &MissingStates,
) -> Result<(Vec<ResolvedFile>, Vec<SelectionOutcome>), String> {
    let (_, catalog) = catalogs
        .get(dir, desired, spec.update_type)
        .as_ref()
        .map_err(Clone::clone)?;
    let resolution = resolve::resolve(spec, catalog, Some(missing));
    if let Some(p) = resolution.problems.first() {
        return Err(format!(
            "spec.updates[{}].{}: {}",
            p.selection, p.field, p.message
        ));
    }
    Ok((resolution.files, resolution.selections))
}

/// Readiness of every software update package of `desired`, by name;
/// `missing` resolves `missingIn` selections ([`missing_states`]).
pub fn readiness_all(
    dir: &Path,
    desired: &Desired,
    missing: &MissingStates,
    catalogs: &mut Catalogs,
) -> Vec<UpdateReadiness> {
    let lock = Lock::load(dir);
    desired
        .software_update_packages
        .iter()
        .map(|(name, sup)| {
            let (files, selections) =
                match package_files(&sup.spec, catalogs, dir, desired, missing) {
                    Ok(f) => f,
                    Err(why) => return UpdateReadiness::unresolved(name, why),
                };
            if files.is_empty() {
                let mut r = UpdateReadiness::unresolved(
                    name,
                    "the selection resolves to no update file: nothing to distribute".into(),
                );
                r.selections = selections;
                return r;
            }
            let Ok(source) = crate::load::resolve_repo_path(dir, sup.spec.source.as_str()) else {
                return UpdateReadiness::unresolved(name, "the source path is invalid".into());
            };
            let ini = resolve::ohotfix_ini(&office_ohotfix(&sup.spec));
            let mut needed: Vec<Needed<'_>> =
                files.iter().map(|f| Needed::Patch(&f.file_name)).collect();
            if resolve::needs_ohotfix(&sup.spec) {
                needed.push(Needed::Generated {
                    name: OHOTFIX_INI,
                    content: &ini,
                });
            }
            let trust = match signature::package_trust(dir, &sup.spec) {
                Ok(t) => t,
                Err(why) => return UpdateReadiness::unresolved(name, why),
            };
            let mut r = readiness::check(name, &source, &needed, &lock, trust.as_ref());
            r.selections = selections;
            r
        })
        .collect()
}

fn office_ohotfix(
    spec: &SoftwareUpdatePackageSpec,
) -> crate::manifest::software_update_package::Ohotfix {
    spec.office
        .as_ref()
        .map(|o| o.ohotfix.clone())
        .unwrap_or_default()
}

/// What each Ready package in `content` was built into: its content
/// version and one program per file (Office client packages: one
/// `ohotfix.exe` program).
pub fn builds(
    dir: &Path,
    desired: &Desired,
    content: &BTreeMap<String, crate::content::ContentManifest>,
    missing: &MissingStates,
    catalogs: &mut Catalogs,
) -> BTreeMap<String, policy::UpdateBuild> {
    let mut out = BTreeMap::new();
    for (name, manifest) in content {
        let Some(sup) = desired.software_update_packages.get(name) else {
            continue;
        };
        let Ok((files, _)) = package_files(&sup.spec, catalogs, dir, desired, missing) else {
            continue;
        };
        let programs = if resolve::needs_ohotfix(&sup.spec) {
            vec![policy::UpdateProgram {
                name: "Office updates (Ohotfix)".into(),
                command_line: "ohotfix.exe".into(),
            }]
        } else {
            files
                .iter()
                .map(|f| policy::UpdateProgram {
                    name: f.program_name.clone(),
                    command_line: f.command_line.clone(),
                })
                .collect()
        };
        let summary = crate::content::ContentSummary::of(manifest);
        // Validation refused an unreadable notice; none is carried then.
        let notice = sup
            .spec
            .notice
            .as_ref()
            .and_then(|n| notice::read(dir, n.as_str()).ok());
        out.insert(
            name.clone(),
            policy::UpdateBuild {
                version: summary.version,
                files: summary.files,
                bytes: summary.bytes,
                programs,
                notice,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests;
