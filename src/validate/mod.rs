//! `validate`: manifests directory → desired site, with every problem found
//! in one run.
//!
//! The pipeline: [`load`](crate::load) reads and parses the files;
//! [`document`] turns each YAML document into a typed manifest (envelope,
//! literal secrets, schema); duplicates are refused while the [`Desired`]
//! model is built; [`fields`] checks what each value means (durations, times,
//! queries, paths, URLs); [`references`] checks names between objects and
//! cycles; [`lints`] checks the patch process (warnings, errors with
//! `--strict`).

mod document;
mod fields;
mod lints;
mod references;
mod scan;
mod updates;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::diagnostic::{self, Diagnostic, Severity};
use crate::load::{self, SourceFile};
use crate::manifest::{Kind, Manifest, Spec};
use crate::model::{builtin_collection, Desired, Object, Origin};
use crate::yaml::{FieldPath, Node, NodeKind, Pos};

pub use document::is_secret_key;

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Process lints are errors rather than warnings.
    pub strict: bool,
}

/// What validation found.
#[derive(Debug)]
pub struct Report {
    /// The objects that were read without errors. Complete only when
    /// [`Report::is_valid`].
    pub desired: Desired,
    pub diagnostics: Vec<Diagnostic>,
    /// The manifest files read, for source snippets.
    pub files: Vec<SourceFile>,
    /// Documents found, valid or not.
    pub documents: usize,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    pub fn warnings(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count()
    }

    pub fn is_valid(&self) -> bool {
        self.errors() == 0
    }
}

/// What reading one file's documents found.
struct FileOutcome {
    source: SourceFile,
    entries: Vec<(Manifest, Node)>,
    declared: Vec<(Kind, String)>,
    diagnostics: Vec<Diagnostic>,
    documents: usize,
}

/// One manifest with what is needed to point into its file.
struct Entry {
    manifest: Manifest,
    file: usize,
    root: Node,
}

/// Points diagnostics about one manifest at the right place of its file.
struct Locator<'a> {
    file: &'a SourceFile,
    root: &'a Node,
    object: String,
}

impl Locator<'_> {
    /// A diagnostic at the value of `path` (or its nearest existing parent).
    fn at(
        &self,
        severity: Severity,
        code: &'static str,
        path: &FieldPath,
        message: impl Into<String>,
    ) -> Diagnostic {
        let (node, _) = path.locate(self.root);
        self.base(severity, code, message)
            .at(node.pos, span_len(node))
            .with_path(path.to_string())
    }

    /// A diagnostic at the key of `path`, for problems with the field itself.
    fn at_key(
        &self,
        severity: Severity,
        code: &'static str,
        path: &FieldPath,
        message: impl Into<String>,
    ) -> Diagnostic {
        let (node, key) = path.locate(self.root);
        let pos = key.unwrap_or(node.pos);
        self.base(severity, code, message)
            .at(pos, 1)
            .with_path(path.to_string())
    }

    /// A diagnostic at a byte range inside the string value of `path`
    /// (a query), exact when the scalar's source text is the value verbatim.
    fn inside(
        &self,
        code: &'static str,
        path: &FieldPath,
        offset: usize,
        len: usize,
        message: String,
    ) -> Diagnostic {
        let (node, _) = path.locate(self.root);
        let base = self
            .base(Severity::Error, code, message)
            .with_path(path.to_string());
        if let NodeKind::Scalar { text, style, .. } = &node.kind {
            let quote = usize::from(matches!(
                style,
                crate::yaml::ScalarStyle::SingleQuoted | crate::yaml::ScalarStyle::DoubleQuoted
            ));
            let start = node.pos.offset + quote;
            if self
                .file
                .text
                .get(start..)
                .is_some_and(|s| s.starts_with(text.as_str()))
                && !text.contains('\n')
            {
                let prefix = text.get(..offset.min(text.len())).unwrap_or("");
                let pos = Pos {
                    offset: start + prefix.len(),
                    line: node.pos.line,
                    column: node.pos.column + quote as u32 + prefix.chars().count() as u32,
                };
                return base.at(pos, len.max(1));
            }
            let column = text
                .get(..offset.min(text.len()))
                .map_or(offset, |p| p.chars().count())
                + 1;
            return base
                .at(node.pos, span_len(node))
                .with_help(format!("at character {column} of the value"));
        }
        base.at(node.pos, 1)
    }

    fn base(
        &self,
        severity: Severity,
        code: &'static str,
        message: impl Into<String>,
    ) -> Diagnostic {
        let mut d = Diagnostic::error(code, message)
            .in_file(self.file.path.clone())
            .with_object(self.object.clone());
        d.severity = severity;
        d
    }
}

fn span_len(node: &Node) -> usize {
    match &node.kind {
        NodeKind::Scalar { text, .. } if !text.contains('\n') => text.len().max(1),
        _ => 1,
    }
}

/// Validates the manifests under `root`. `Err` only when the directory
/// itself cannot be read.
pub fn validate_dir(root: &Path, options: Options) -> Result<Report, Diagnostic> {
    let loaded = load::load_dir(root)?;
    let mut diagnostics = loaded.diagnostics;
    let sources = declared_sources(&loaded.files);

    // Package content is not manifests, even where it is YAML.
    let parsed: Vec<load::ParsedFile> = loaded
        .files
        .into_iter()
        .filter(|f| !sources.iter().any(|s| is_under(&f.source.path, s)))
        .collect();
    let read = load::par_map(parsed, |parsed| {
        let mut out = FileOutcome {
            source: parsed.source,
            entries: Vec::new(),
            declared: Vec::new(),
            diagnostics: Vec::new(),
            documents: 0,
        };
        match parsed.documents {
            Err(d) => out.diagnostics.push(*d),
            Ok(docs) => {
                out.documents = docs.len();
                for doc in docs {
                    out.declared.extend(declared_name(&doc.root));
                    if let Some(manifest) = document::read(&out.source, &doc, &mut out.diagnostics)
                    {
                        out.entries.push((manifest, doc.root));
                    }
                }
            }
        }
        out
    });

    let mut files = Vec::with_capacity(read.len());
    let mut entries = Vec::new();
    let mut documents = 0;
    // Every object the files declare, valid or not: a reference to an
    // object with its own errors is not reported again as dangling.
    let mut declared = BTreeSet::new();
    for outcome in read {
        let index = files.len();
        documents += outcome.documents;
        declared.extend(outcome.declared);
        diagnostics.extend(outcome.diagnostics);
        entries.extend(outcome.entries.into_iter().map(|(manifest, root)| Entry {
            manifest,
            file: index,
            root,
        }));
        files.push(outcome.source);
    }

    let repo = root.to_path_buf();
    let desired = build_desired(&entries, &files, &mut diagnostics);
    for entry in &entries {
        let locator = locator(entry, &files);
        fields::check(&entry.manifest, &locator, &repo, &mut diagnostics);
        references::check(
            &entry.manifest,
            &desired,
            &declared,
            &locator,
            &mut diagnostics,
        );
    }
    references::check_cycles(&desired, &entries, &files, &mut diagnostics);
    lints::check(&desired, &entries, &files, &mut diagnostics);
    updates::check(&desired, &entries, &files, &repo, &mut diagnostics);
    scan::check(&desired, &entries, &files, &repo, &mut diagnostics);

    if documents == 0 && diagnostics.is_empty() {
        diagnostics.push(
            Diagnostic::error("no-manifests", format!("no manifests found in {}", root.display()))
                .with_help("manifests are `*.yaml` or `*.yml` files with `apiVersion: patchops/v1`; hidden directories are skipped"),
        );
    } else if desired.site.is_none() && entries.iter().all(|e| e.manifest.kind != Kind::Site) {
        diagnostics.push(
            Diagnostic::error("missing-site", "no Site manifest")
                .with_help("declare the site once: `kind: Site` with `siteCode` and `siteServer`"),
        );
    }
    if options.strict {
        for d in &mut diagnostics {
            d.severity = Severity::Error;
        }
    }
    diagnostic::sort(&mut diagnostics);
    Ok(Report {
        desired,
        diagnostics,
        files,
        documents,
    })
}

fn declared_name(root: &Node) -> Option<(Kind, String)> {
    let kind = root.get("kind")?.value.as_str()?.parse().ok()?;
    let name = root.get("metadata")?.value.get("name")?.value.as_str()?;
    Some((kind, name.to_string()))
}

fn locator<'a>(entry: &'a Entry, files: &'a [SourceFile]) -> Locator<'a> {
    Locator {
        file: &files[entry.file],
        root: &entry.root,
        object: format!("{}/{}", entry.manifest.kind, entry.manifest.metadata.name),
    }
}

/// Source directories that packages declare, so that YAML files inside
/// package content are not read as manifests.
fn declared_sources(files: &[load::ParsedFile]) -> Vec<String> {
    let mut out = Vec::new();
    for file in files {
        let Ok(docs) = &file.documents else { continue };
        for doc in docs {
            let kind = doc.root.get("kind").and_then(|k| k.value.as_str());
            if !matches!(kind, Some("Package" | "SoftwareUpdatePackage")) {
                continue;
            }
            let source = doc
                .root
                .get("spec")
                .and_then(|s| s.value.get("source"))
                .and_then(|s| s.value.as_str());
            if let Some(source) = source.and_then(normalize_relative) {
                out.push(source);
            }
        }
    }
    out
}

/// `a/./b/../c/` → `a/c`; None for paths that are absolute or climb out.
fn normalize_relative(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    if path.starts_with('/') {
        return None;
    }
    for part in path.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn is_under(file: &str, dir: &str) -> bool {
    file.strip_prefix(dir)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Files the objects, refusing a second object of the same kind and name.
fn build_desired(entries: &[Entry], files: &[SourceFile], out: &mut Vec<Diagnostic>) -> Desired {
    let mut desired = Desired::default();
    let mut seen: BTreeMap<(Kind, &str), Origin> = BTreeMap::new();
    for entry in entries {
        let m = &entry.manifest;
        let origin = Origin {
            file: files[entry.file].path.clone(),
            line: entry.root.pos.line,
        };
        let locator = locator(entry, files);
        let name_path = FieldPath::root("metadata").key("name");
        if let Some(first) = seen.get(&(m.kind, m.metadata.name.as_str())) {
            out.push(
                locator
                    .at(
                        Severity::Error,
                        "duplicate-name",
                        &name_path,
                        format!("{} `{}` is declared twice", m.kind, m.metadata.name),
                    )
                    .with_help(format!(
                        "it is first declared at {first}; names are unique within a kind"
                    )),
            );
            continue;
        }
        if m.kind == Kind::Collection && builtin_collection(&m.metadata.name).is_some() {
            out.push(
                locator
                    .at(
                        Severity::Error,
                        "duplicate-name",
                        &name_path,
                        format!("`{}` is a built-in collection", m.metadata.name),
                    )
                    .with_help(
                        "refer to built-in collections without declaring them; choose another name",
                    ),
            );
            continue;
        }
        seen.insert((m.kind, m.metadata.name.as_str()), origin.clone());
        let metadata = m.metadata.clone();
        let name = metadata.name.clone();
        match &m.spec {
            Spec::Site(spec) => {
                if let Some(existing) = &desired.site {
                    out.push(
                        locator
                            .at(
                                Severity::Error,
                                "duplicate-site",
                                &name_path,
                                format!("a second Site `{name}`; a repository describes one site"),
                            )
                            .with_help(format!(
                                "the site `{}` is declared at {}",
                                existing.name(),
                                existing.origin
                            )),
                    );
                    continue;
                }
                desired.site = Some(Object {
                    metadata,
                    spec: spec.clone(),
                    origin,
                });
            }
            Spec::DistributionPoint(spec) => {
                desired.distribution_points.insert(
                    name,
                    Object {
                        metadata,
                        spec: spec.clone(),
                        origin,
                    },
                );
            }
            Spec::Collection(spec) => {
                desired.collections.insert(
                    name,
                    Object {
                        metadata,
                        spec: spec.clone(),
                        origin,
                    },
                );
            }
            Spec::Package(spec) => {
                desired.packages.insert(
                    name,
                    Object {
                        metadata,
                        spec: spec.clone(),
                        origin,
                    },
                );
            }
            Spec::Advertisement(spec) => {
                desired.advertisements.insert(
                    name,
                    Object {
                        metadata,
                        spec: spec.clone(),
                        origin,
                    },
                );
            }
            Spec::SyncHost(spec) => {
                desired.sync_hosts.insert(
                    name,
                    Object {
                        metadata,
                        spec: spec.clone(),
                        origin,
                    },
                );
            }
            Spec::SoftwareUpdatePackage(spec) => {
                desired.software_update_packages.insert(
                    name,
                    Object {
                        metadata,
                        spec: spec.clone(),
                        origin,
                    },
                );
            }
        }
    }
    desired
}

/// Where a repository path from a manifest lands; used by the checks that
/// look at the file system (existence of sources and notices).
fn repo_path(repo: &Path, given: &str) -> Result<PathBuf, String> {
    load::resolve_repo_path(repo, given)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_source_paths() {
        assert_eq!(
            normalize_relative("packages/./tool/"),
            Some("packages/tool".into())
        );
        assert_eq!(normalize_relative("a/../b"), Some("b".into()));
        assert_eq!(normalize_relative("../x"), None);
        assert_eq!(normalize_relative("/abs"), None);
        assert!(is_under("packages/tool/x.yaml", "packages/tool"));
        assert!(!is_under("packages/tool2/x.yaml", "packages/tool"));
    }
}
