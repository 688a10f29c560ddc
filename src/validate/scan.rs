//! Scan programs against their package's source: the catalog a program's
//! `scan` names must be in the source (a warning when it is not, unless a
//! sync host delivers that catalog there), and be a catalog of the declared
//! type (an error).

use std::io::Read;
use std::path::Path;

use crate::catalog::{detect_kind, CatalogKind};
use crate::diagnostic::{Diagnostic, Severity};
use crate::load::SourceFile;
use crate::manifest::sync_host::CatalogType;
use crate::manifest::Spec;
use crate::model::Desired;
use crate::yaml::FieldPath;

use super::{locator, repo_path, Entry};

/// How much of a catalog is read to find its root element.
const HEAD_BYTES: u64 = 64 << 10;

pub(super) fn check(
    desired: &Desired,
    entries: &[Entry],
    files: &[SourceFile],
    repo: &Path,
    out: &mut Vec<Diagnostic>,
) {
    for entry in entries {
        let Spec::Package(spec) = &*entry.manifest.spec else {
            continue;
        };
        let name = &entry.manifest.metadata.name;
        let Some(source) = &spec.source else { continue };
        let Ok(dir) = repo_path(repo, source.as_str()) else {
            continue;
        };
        let at = locator(entry, files);
        for (i, program) in spec.programs.iter().enumerate() {
            let Some(scan) = &program.scan else { continue };
            if super::fields::scan_catalog_path(&scan.catalog).is_err() {
                continue; // reported by `fields`
            }
            let path = FieldPath::root("spec")
                .key("programs")
                .index(i)
                .key("scan")
                .key("catalog");
            let file = dir.join(&scan.catalog);
            if !file.is_file() {
                if delivered_by_sync_host(desired, name, scan.catalog_type, &scan.catalog) {
                    continue;
                }
                out.push(
                    at.at(
                        Severity::Warning,
                        "scan-catalog-missing",
                        &path,
                        format!(
                            "the catalog `{}` is not in the package's source `{}`: agents that run `{}` will fail their scan",
                            scan.catalog,
                            source.as_str(),
                            program.name
                        ),
                    )
                    .with_help("add the catalog to the source, or let a sync host deliver it (`SyncHost` `catalogs[].package`)"),
                );
                continue;
            }
            let kind = read_head(&file).and_then(|head| {
                detect_kind(&head).map_err(|e| format!("it is not an update catalog: {e}"))
            });
            let expected = match scan.catalog_type {
                CatalogType::Security => CatalogKind::Security,
                CatalogType::Office => CatalogKind::Office,
            };
            let problem = match kind {
                Ok(k) if k == expected => None,
                Ok(k) => Some(format!(
                    "`{}` is {} catalog, not {} one (`type: {}`)",
                    scan.catalog,
                    kind_phrase(k),
                    kind_phrase(expected),
                    type_text(scan.catalog_type)
                )),
                Err(e) => Some(format!("`{}`: {e}", scan.catalog)),
            };
            if let Some(message) = problem {
                out.push(
                    at.at(Severity::Error, "scan-catalog-type", &path, message)
                        .with_help("`type: security` scans with MSSecure.XML, `type: office` with the Office update database"),
                );
            }
        }
    }
}

/// Whether a sync host writes a catalog of this type, under this file
/// name, into the package's source.
fn delivered_by_sync_host(
    desired: &Desired,
    package: &str,
    catalog_type: CatalogType,
    file: &str,
) -> bool {
    desired.sync_hosts.values().any(|host| {
        host.spec.command.target.is_none()
            && host.spec.catalogs.iter().any(|c| {
                c.package == package
                    && c.catalog_type == catalog_type
                    && crate::sync::file_name(catalog_type) == file
            })
    })
}

fn read_head(file: &Path) -> Result<Vec<u8>, String> {
    let mut head = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(HEAD_BYTES).read_to_end(&mut head))
        .map_err(|e| format!("cannot read it: {e}"))?;
    // A character cut at the end of the head is not an encoding error.
    if let Err(e) = std::str::from_utf8(&head) {
        if e.error_len().is_none() {
            head.truncate(e.valid_up_to());
        }
    }
    Ok(head)
}

fn kind_phrase(kind: CatalogKind) -> &'static str {
    match kind {
        CatalogKind::Security => "an MSSecure.XML (security)",
        CatalogKind::Office => "an Office update",
    }
}

fn type_text(t: CatalogType) -> &'static str {
    match t {
        CatalogType::Security => "security",
        CatalogType::Office => "office",
    }
}
