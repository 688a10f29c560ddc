//! Software update packages against their catalog: the catalog the sync
//! host keeps in its package's source is read (once per update type) and
//! every selection must name what it holds. A missing or unreadable catalog
//! is a warning (the selection cannot be checked); an unknown bulletin,
//! patch, Q number or product is an error with a suggestion. `missingIn`
//! selections resolve only when planned (they need the stored scan
//! results); here their products are checked. The notice must be RTF
//! within the size limits.

use std::path::Path;

use crate::diagnostic::{Diagnostic, Severity};
use crate::load::SourceFile;
use crate::manifest::{Kind, Spec};
use crate::model::Desired;
use crate::supdate::{resolve, Catalogs};
use crate::yaml::FieldPath;

use super::{locator, Entry};

pub(super) fn check(
    desired: &Desired,
    entries: &[Entry],
    files: &[SourceFile],
    repo: &Path,
    catalogs: &mut Catalogs,
    out: &mut Vec<Diagnostic>,
) {
    for entry in entries {
        if entry.manifest.kind != Kind::SoftwareUpdatePackage {
            continue;
        }
        let Spec::SoftwareUpdatePackage(spec) = &*entry.manifest.spec else {
            continue;
        };
        // Only a package that made it into the model (no duplicate).
        if !desired
            .software_update_packages
            .contains_key(&entry.manifest.metadata.name)
        {
            continue;
        }
        let at = locator(entry, files);
        let root = FieldPath::root("spec");
        if let Some(notice) = &spec.notice {
            // A missing file, a bad path or another extension is reported
            // by the field checks.
            let exists = notice.as_str().to_ascii_lowercase().ends_with(".rtf")
                && crate::load::resolve_repo_path(repo, notice.as_str()).is_ok_and(|p| p.is_file());
            if exists {
                if let Err(why) = crate::supdate::notice::read(repo, notice.as_str()) {
                    out.push(
                        at.at(
                            Severity::Error,
                            "invalid-value",
                            &root.key("notice"),
                            format!("the notice `{}` {why}", notice.as_str()),
                        )
                        .with_help("the notice is an RTF file whose text goes into client policy (at most 64 KiB, 4,000 characters of text)"),
                    );
                }
            }
        }
        match catalogs.get(repo, desired, spec.update_type) {
            Err(why) => out.push(
                at.at(
                    Severity::Warning,
                    "catalog-unavailable",
                    &root.key("updateType"),
                    format!("the updates cannot be checked: {why}"),
                )
                .with_help("validation checks the selected bulletins against the catalog the sync host keeps in its package's source"),
            ),
            Ok((_, catalog)) => {
                for p in resolve::resolve(spec, catalog, None).problems {
                    let mut path = root.key("updates").index(p.selection);
                    match p.field.split_once('[') {
                        Some((key, index)) => {
                            let i = index.trim_end_matches(']').parse().unwrap_or(0);
                            path = path.key(key).index(i);
                        }
                        None => path = path.key(&p.field),
                    }
                    out.push(
                        at.at(Severity::Error, "unknown-update", &path, p.message)
                            .with_help_opt(p.help),
                    );
                }
            }
        }
    }
}
