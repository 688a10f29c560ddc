//! Reads a manifest directory: every `*.yaml`/`*.yml` file below it, in a
//! deterministic order, hidden files and directories skipped.
//!
//! This is the only module of the manifest layer that touches the file
//! system. Each file is read with hard limits (size, binary content, UTF-8)
//! and parsed into [`yaml::Document`]s; a file's problem becomes a
//! diagnostic and the other files are still read.

use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::diagnostic::Diagnostic;
use crate::yaml::{self, Pos};

/// Largest manifest file read. Ten thousand manifests fit in a few
/// megabytes; anything larger is a mistake or an attack.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// A manifest file: its path relative to the manifest directory (with `/`)
/// and its text, kept for source snippets in diagnostics.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: String,
    pub text: Arc<str>,
}

/// One parsed file: its documents, or the problem that stopped it.
#[derive(Debug)]
pub struct ParsedFile {
    pub source: SourceFile,
    pub documents: Result<Vec<yaml::Document>, Box<Diagnostic>>,
}

/// What reading a directory found.
#[derive(Debug, Default)]
pub struct Loaded {
    pub files: Vec<ParsedFile>,
    /// Problems that belong to no parsed file (unreadable entries, symlink
    /// loops, links out of the directory).
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads every manifest file under `root`.
pub fn load_dir(root: &Path) -> Result<Loaded, Diagnostic> {
    let (files, diagnostics) = load_dir_with(root, |file| file)?;
    Ok(Loaded { files, diagnostics })
}

/// Reads every manifest file under `root` and hands each parsed file to
/// `each` as soon as it is parsed, on the reading threads, in file order:
/// what `each` keeps is all that stays in memory (a parsed tree is many
/// times the size of its text). The second value holds the problems that
/// belong to no parsed file.
pub fn load_dir_with<R: Send>(
    root: &Path,
    each: impl Fn(ParsedFile) -> R + Sync,
) -> Result<(Vec<R>, Vec<Diagnostic>), Diagnostic> {
    let canonical_root = fs::canonicalize(root).map_err(|e| {
        Diagnostic::error(
            "unreadable",
            format!(
                "cannot read manifest directory {}: {}",
                root.display(),
                io_reason(&e)
            ),
        )
    })?;
    if !canonical_root.is_dir() {
        return Err(Diagnostic::error(
            "unreadable",
            format!("{} is not a directory", root.display()),
        )
        .with_help("give the directory that holds the site's manifests"));
    }
    let mut diagnostics = Vec::new();
    let mut outside = Vec::new();
    let walker = walkdir::WalkDir::new(&canonical_root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| {
            if entry.depth() > 0 && entry.file_name().to_string_lossy().starts_with('.') {
                return false;
            }
            if entry.path_is_symlink() {
                let inside =
                    fs::canonicalize(entry.path()).is_ok_and(|t| t.starts_with(&canonical_root));
                if !inside {
                    outside.push(entry.path().to_path_buf());
                    return false;
                }
            }
            true
        });
    let mut manifest_paths = Vec::new();
    for entry in walker {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                let path = err
                    .path()
                    .map(|p| relative(&canonical_root, p))
                    .unwrap_or_default();
                let diagnostic = if err.loop_ancestor().is_some() {
                    Diagnostic::error("symlink-loop", "symbolic link loop")
                        .with_help("remove the link that points back into its own parent directory")
                } else {
                    let reason = err.io_error().map_or_else(|| err.to_string(), io_reason);
                    Diagnostic::error("unreadable", format!("cannot read: {reason}"))
                };
                diagnostics.push(diagnostic.in_file(path));
                continue;
            }
        };
        if !entry.file_type().is_file() || !is_manifest_name(entry.path()) {
            continue;
        }
        manifest_paths.push((
            entry.path().to_path_buf(),
            relative(&canonical_root, entry.path()),
        ));
    }
    let files = par_map(manifest_paths, |(full, path)| each(read_file(&full, path)));
    for link in outside {
        // A dangling link or one to a file outside the tree: the same answer.
        diagnostics.push(
            Diagnostic::error(
                "path-escapes",
                "symbolic link points outside the manifest directory",
            )
            .in_file(relative(&canonical_root, &link))
            .with_help("manifests and package sources must live inside the repository"),
        );
    }
    crate::diagnostic::sort(&mut diagnostics);
    Ok((files, diagnostics))
}

/// `items.map(f)` over all cores, in order. Manifest trees are thousands of
/// small files; reading and parsing them is the bulk of `validate`.
pub fn par_map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    par_map_with(items, workers, 64, f)
}

/// [`par_map`] with at most `workers` threads, in parallel only from
/// `min_items` items on.
pub fn par_map_with<T: Send, R: Send>(
    items: Vec<T>,
    workers: usize,
    min_items: usize,
    f: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    if workers < 2 || items.len() < min_items.max(2) {
        return items.into_iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(workers);
    let mut chunks: Vec<Vec<T>> = Vec::with_capacity(workers);
    let mut items = items.into_iter();
    loop {
        let next: Vec<T> = items.by_ref().take(chunk).collect();
        if next.is_empty() {
            break;
        }
        chunks.push(next);
    }
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|c| scope.spawn(move || c.into_iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

fn is_manifest_name(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// `path` relative to `root`, with `/` separators.
pub fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("/")
}

fn io_reason(e: &std::io::Error) -> String {
    // The OS message without Rust's " (os error N)" suffix.
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Reads and parses one file, within the limits.
pub fn read_file(full_path: &Path, path: String) -> ParsedFile {
    let empty = |path: &str| SourceFile {
        path: path.to_string(),
        text: Arc::from(""),
    };
    let fail = |d: Diagnostic, source: SourceFile| ParsedFile {
        documents: Err(Box::new(d.in_file(source.path.clone()))),
        source,
    };
    let bytes = match read_bounded(full_path) {
        Ok(bytes) => bytes,
        Err(d) => return fail(d, empty(&path)),
    };
    let text = match decode(&bytes) {
        Ok(text) => text,
        Err(d) => return fail(d, empty(&path)),
    };
    let source = SourceFile {
        path,
        text: Arc::from(text),
    };
    match yaml::parse_documents(&source.text) {
        Ok(documents) => ParsedFile {
            source,
            documents: Ok(documents),
        },
        Err(e) => {
            let d = Diagnostic::error("yaml-syntax", e.message)
                .at(e.pos, 1)
                .with_help_opt(e.help);
            fail(d, source)
        }
    }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, Diagnostic> {
    let file = fs::File::open(path)
        .map_err(|e| Diagnostic::error("unreadable", format!("cannot read: {}", io_reason(&e))))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Diagnostic::error("unreadable", format!("cannot read: {}", io_reason(&e))))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Diagnostic::error("file-too-large", format!("file is larger than {} MiB", MAX_FILE_BYTES / (1024 * 1024)))
            .with_help("split the manifests into several files; a manifest file this large is almost certainly not a manifest"));
    }
    Ok(bytes)
}

fn decode(bytes: &[u8]) -> Result<String, Diagnostic> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Some(nul) = bytes.iter().position(|b| *b == 0) {
        let (line, column) = line_col(&bytes[..nul]);
        return Err(Diagnostic::error("binary-file", "binary file: it contains a NUL byte")
            .at(Pos { offset: 0, line, column }, 0)
            .with_help("only UTF-8 text files are read as manifests; move binary files out of the manifest tree or into a package source"));
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.to_string()),
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let (line, column) = line_col(good);
            Err(Diagnostic::error(
                "invalid-utf8",
                format!("invalid UTF-8 (byte 0x{:02X})", bytes[e.valid_up_to()]),
            )
            .at(
                Pos {
                    offset: 0,
                    line,
                    column,
                },
                0,
            )
            .with_help("save the file as UTF-8"))
        }
    }
}

/// Line and column just after `prefix` (valid UTF-8 text before a problem).
fn line_col(prefix: &[u8]) -> (u32, u32) {
    let text = String::from_utf8_lossy(prefix);
    let line = text.matches('\n').count() as u32 + 1;
    let column = text.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
    (line, column)
}

/// Where a path given in a manifest lands, or why it may not be used:
/// absolute paths and paths that climb out of the repository are refused,
/// and so are existing paths whose symbolic links lead out of it.
pub fn resolve_repo_path(root: &Path, given: &str) -> Result<PathBuf, String> {
    if given.is_empty() {
        return Err("the path is empty".into());
    }
    let path = Path::new(given);
    if path.is_absolute()
        || given.starts_with('/')
        || given.starts_with('\\')
        || given.contains(':')
    {
        return Err(
            "expected a path relative to the repository root, found an absolute path".into(),
        );
    }
    let mut depth = 0i32;
    for component in path.components() {
        match component {
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return Err("the path leaves the repository".into());
                }
            }
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    let joined = root.join(path);
    if let (Ok(real), Ok(real_root)) = (fs::canonicalize(&joined), fs::canonicalize(root)) {
        if !real.starts_with(&real_root) {
            return Err("the path leads out of the repository through a symbolic link".into());
        }
    }
    Ok(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_paths_stay_inside() {
        let root = Path::new("/nonexistent-root");
        assert!(resolve_repo_path(root, "packages/tool").is_ok());
        assert!(resolve_repo_path(root, "a/../b").is_ok());
        assert_eq!(
            resolve_repo_path(root, "../etc").unwrap_err(),
            "the path leaves the repository"
        );
        assert_eq!(
            resolve_repo_path(root, "a/../../etc").unwrap_err(),
            "the path leaves the repository"
        );
        assert!(resolve_repo_path(root, "/etc/passwd")
            .unwrap_err()
            .contains("absolute"));
        assert!(resolve_repo_path(root, "C:\\x")
            .unwrap_err()
            .contains("absolute"));
    }

    #[test]
    fn decode_reports_position_of_bad_bytes() {
        let d = decode(b"a: 1\nb: \xff\n").unwrap_err();
        assert_eq!(
            (d.code, d.line, d.column),
            ("invalid-utf8", Some(2), Some(4))
        );
        let d = decode(b"a: 1\x00").unwrap_err();
        assert_eq!(d.code, "binary-file");
        assert_eq!(decode(b"\xEF\xBB\xBFa: 1").unwrap(), "a: 1");
    }
}
