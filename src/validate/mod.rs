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
use std::sync::{Arc, OnceLock};

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
    /// The update catalogs read while checking software update packages,
    /// for the plan that follows.
    pub catalogs: crate::supdate::Catalogs,
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
    /// Each manifest with its document's index and position.
    entries: Vec<(Manifest, usize, Pos)>,
    declared: Vec<(Kind, String)>,
    /// The package sources the file's documents declare.
    sources: Vec<String>,
    diagnostics: Vec<Diagnostic>,
    documents: usize,
}

/// The YAML trees of one file's documents, parsed again only when a
/// diagnostic needs a position inside them: a tree is many times the size
/// of its text, and a valid site needs none after reading.
type Trees = Arc<OnceLock<Vec<Node>>>;

/// One manifest with what is needed to point into its file.
struct Entry {
    manifest: Manifest,
    file: usize,
    /// Its document's index in the file, and where it starts.
    document: usize,
    pos: Pos,
    trees: Trees,
}

/// Points diagnostics about one manifest at the right place of its file.
struct Locator<'a> {
    file: &'a SourceFile,
    entry: &'a Entry,
    object: String,
}

impl Locator<'_> {
    /// The manifest's YAML tree (parsed again from the kept text, which
    /// parsed before, so the same tree).
    fn root(&self) -> Option<&Node> {
        self.entry
            .trees
            .get_or_init(|| {
                crate::yaml::parse_documents(&self.file.text)
                    .map(|docs| docs.into_iter().map(|d| d.root).collect())
                    .unwrap_or_default()
            })
            .get(self.entry.document)
    }

    /// The node at `path` (or its nearest existing parent) and the
    /// position of its key, if it has one.
    fn locate(&self, path: &FieldPath) -> (Option<&Node>, Option<Pos>) {
        match self.root() {
            Some(root) => {
                let (node, key) = path.locate(root);
                (Some(node), key)
            }
            None => (None, None),
        }
    }

    /// A diagnostic at the value of `path` (or its nearest existing parent).
    fn at(
        &self,
        severity: Severity,
        code: &'static str,
        path: &FieldPath,
        message: impl Into<String>,
    ) -> Diagnostic {
        let (node, _) = self.locate(path);
        let (pos, len) = node.map_or((self.entry.pos, 1), |n| (n.pos, span_len(n)));
        self.base(severity, code, message)
            .at(pos, len)
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
        let (node, key) = self.locate(path);
        let pos = key.unwrap_or(node.map_or(self.entry.pos, |n| n.pos));
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
        let base = self
            .base(Severity::Error, code, message)
            .with_path(path.to_string());
        let Some(node) = self.locate(path).0 else {
            return base.at(self.entry.pos, 1);
        };
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
    // Each file is read into manifests as it is parsed, and its trees
    // are dropped then.
    let (read, mut diagnostics) = load::load_dir_with(root, |parsed| {
        let mut out = FileOutcome {
            source: parsed.source,
            entries: Vec::new(),
            declared: Vec::new(),
            sources: Vec::new(),
            diagnostics: Vec::new(),
            documents: 0,
        };
        match parsed.documents {
            Err(d) => out.diagnostics.push(*d),
            Ok(docs) => {
                out.documents = docs.len();
                for (index, doc) in docs.iter().enumerate() {
                    out.declared.extend(declared_name(&doc.root));
                    out.sources.extend(declared_source(&doc.root));
                    if let Some(manifest) = document::read(&out.source, doc, &mut out.diagnostics) {
                        out.entries.push((manifest, index, doc.root.pos));
                    }
                }
            }
        }
        out
    })?;
    // Package content is not manifests, even where it is YAML: files
    // below a declared source (declared by any file) are left out.
    let sources: BTreeSet<String> = read
        .iter()
        .flat_map(|outcome| outcome.sources.iter().cloned())
        .collect();
    let read = read
        .into_iter()
        .filter(|outcome| !is_under_any(&outcome.source.path, &sources));

    let read: Vec<FileOutcome> = read.collect();
    // Sized once: at 100,000 manifests, growing by doubling would hold
    // two copies of the list at its largest.
    let mut files = Vec::with_capacity(read.len());
    let mut entries = Vec::with_capacity(read.iter().map(|o| o.entries.len()).sum());
    let mut documents = 0;
    // Every object the files declare, valid or not: a reference to an
    // object with its own errors is not reported again as dangling.
    let mut declared = BTreeSet::new();
    for outcome in read {
        let index = files.len();
        documents += outcome.documents;
        declared.extend(outcome.declared);
        diagnostics.extend(outcome.diagnostics);
        let trees = Trees::default();
        entries.extend(
            outcome
                .entries
                .into_iter()
                .map(|(manifest, document, pos)| Entry {
                    manifest,
                    file: index,
                    document,
                    pos,
                    trees: trees.clone(),
                }),
        );
        files.push(outcome.source);
    }

    let repo = root.to_path_buf();
    let desired = build_desired(&entries, &files, &mut diagnostics);
    // Each manifest on its own, on every core; the results are kept in
    // manifest order, so the report is the same as from one core.
    let per_entry = load::par_map(entries.iter().collect(), |entry| {
        let mut found = Vec::new();
        let locator = locator(entry, &files);
        fields::check(&entry.manifest, &locator, &repo, &mut found);
        references::check(&entry.manifest, &desired, &declared, &locator, &mut found);
        found
    });
    diagnostics.extend(per_entry.into_iter().flatten());
    references::check_cycles(&desired, &entries, &files, &mut diagnostics);
    lints::check(&desired, &entries, &files, &mut diagnostics);
    let mut catalogs = crate::supdate::Catalogs::default();
    updates::check(
        &desired,
        &entries,
        &files,
        &repo,
        &mut catalogs,
        &mut diagnostics,
    );
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
        catalogs,
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
        entry,
        object: format!("{}/{}", entry.manifest.kind, entry.manifest.metadata.name),
    }
}

/// The source directory a package document declares (normalized), so
/// that YAML files inside package content are not read as manifests.
fn declared_source(root: &Node) -> Option<String> {
    let kind = root.get("kind").and_then(|k| k.value.as_str());
    if !matches!(kind, Some("Package" | "SoftwareUpdatePackage")) {
        return None;
    }
    root.get("spec")
        .and_then(|s| s.value.get("source"))
        .and_then(|s| s.value.as_str())
        .and_then(normalize_relative)
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

/// Whether `file` lies below one of `dirs`: each of its parent
/// directories looked up, so the cost does not grow with the sources.
fn is_under_any(file: &str, dirs: &BTreeSet<String>) -> bool {
    file.match_indices('/')
        .any(|(i, _)| dirs.contains(&file[..i]))
}

/// Files the objects, refusing a second object of the same kind and name.
fn build_desired(entries: &[Entry], files: &[SourceFile], out: &mut Vec<Diagnostic>) -> Desired {
    let mut desired = Desired::default();
    let mut seen: BTreeMap<(Kind, &str), Origin> = BTreeMap::new();
    for entry in entries {
        let m = &entry.manifest;
        let origin = Origin {
            file: files[entry.file].path.clone(),
            line: entry.pos.line,
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
        match &*m.spec {
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
        let sources = BTreeSet::from(["packages/tool".to_string()]);
        assert!(is_under_any("packages/tool/x.yaml", &sources));
        assert!(is_under_any("packages/tool/sub/x.yaml", &sources));
        assert!(!is_under_any("packages/tool2/x.yaml", &sources));
        assert!(!is_under_any("packages/tool", &sources));
    }
}
