//! Package content: a source directory read safely and hashed into a
//! content manifest (every file's relative path, size, mode and SHA-256).
//! The manifest's own hash is the content *version*: a change of any file is
//! a new version.
//!
//! Reading refuses what a package-source ACL review would: sources that are
//! group- or world-writable (anyone could plant a binary that thousands of
//! machines then run), symbolic links that lead outside the source, hard
//! links with a name outside it (whoever may write that name changes the
//! content behind the review), device files, FIFOs and sockets. Each
//! refusal names the path.
//!
//! Files are hashed on all cores; a [`HashCache`] keyed on path, size,
//! modification time and inode skips files that did not change since the
//! last run.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Read buffer for hashing and copying.
pub const BUFFER: usize = 1 << 20;

/// One file of a package version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContentFile {
    /// Relative to the source root, `/`-separated.
    pub path: String,
    pub size: u64,
    /// Unix permission bits (`0o644`); content on a DP is read-only whatever
    /// this says, the agent applies it after download.
    pub mode: u32,
    pub sha256: String,
}

/// A package version: the files of its source and their hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentManifest {
    pub package: String,
    /// SHA-256 over the sorted file list (paths, sizes, modes, hashes).
    pub version: String,
    pub files: Vec<ContentFile>,
}

impl ContentManifest {
    pub fn new(package: &str, mut files: Vec<ContentFile>) -> ContentManifest {
        files.sort();
        let mut hasher = Sha256::new();
        for f in &files {
            hasher
                .update(format!("{}\0{}\0{:o}\0{}\n", f.path, f.size, f.mode, f.sha256).as_bytes());
        }
        ContentManifest {
            package: package.to_string(),
            version: hex::encode(hasher.finalize()),
            files,
        }
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error("{path}: the package source does not exist or is not a directory")]
    NotADirectory { path: String },
    #[error(
        "{path}: group- or world-writable; a package source must be writable by its owner only"
    )]
    Writable { path: String },
    #[error("{path}: symbolic link leads outside the package source")]
    LinkEscapes { path: String },
    #[error(
        "{path}: hard link with {outside} of its {links} names outside the package source; \
         copy the file instead"
    )]
    HardLinkEscapes {
        path: String,
        links: u64,
        outside: u64,
    },
    #[error("{path}: {kind} cannot be package content")]
    SpecialFile { path: String, kind: &'static str },
    #[error("{path}: symbolic link loop")]
    LinkLoop { path: String },
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
}

fn io_error(path: &Path, e: &std::io::Error) -> ContentError {
    ContentError::Io {
        path: path.display().to_string(),
        reason: e.kind().to_string(),
    }
}

/// Where each file of a source is, found and checked but not yet hashed.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: String,
    pub full: PathBuf,
    pub size: u64,
    pub mode: u32,
    pub mtime_ns: i128,
    pub inode: u64,
}

/// Walks a source directory in name order and checks every entry.
pub fn scan(root: &Path) -> Result<Vec<SourceFile>, ContentError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let shown = |p: &Path| p.display().to_string();
    let meta = fs::metadata(root).map_err(|_| ContentError::NotADirectory { path: shown(root) })?;
    if !meta.is_dir() {
        return Err(ContentError::NotADirectory { path: shown(root) });
    }
    let real_root = fs::canonicalize(root).map_err(|e| io_error(root, &e))?;
    let mut files = Vec::new();
    // Files with more than one name, by (device, inode): their link count
    // and how many of their names the walk met (not through a symlink).
    let mut linked: BTreeMap<(u64, u64), HardLinks> = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
    {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let path = e.path().map(shown).unwrap_or_else(|| shown(root));
                if e.loop_ancestor().is_some() {
                    return Err(ContentError::LinkLoop { path });
                }
                // A dangling link, or one we may not follow.
                return Err(match e.io_error() {
                    Some(io) if io.kind() == std::io::ErrorKind::NotFound => {
                        ContentError::LinkEscapes { path }
                    }
                    Some(io) => ContentError::Io {
                        path,
                        reason: io.kind().to_string(),
                    },
                    None => ContentError::Io {
                        path,
                        reason: e.to_string(),
                    },
                });
            }
        };
        let path = entry.path();
        if entry.path_is_symlink() {
            let inside = fs::canonicalize(path).is_ok_and(|t| t.starts_with(&real_root));
            if !inside {
                return Err(ContentError::LinkEscapes { path: shown(path) });
            }
        }
        let meta = entry.metadata().map_err(|e| ContentError::Io {
            path: shown(path),
            reason: e.to_string(),
        })?;
        let kind = meta.file_type();
        if meta.mode() & 0o022 != 0 {
            return Err(ContentError::Writable { path: shown(path) });
        }
        if kind.is_dir() {
            continue;
        }
        let special = if kind.is_fifo() {
            Some("a FIFO")
        } else if kind.is_socket() {
            Some("a socket")
        } else if kind.is_block_device() || kind.is_char_device() {
            Some("a device file")
        } else {
            None
        };
        if let Some(kind) = special {
            return Err(ContentError::SpecialFile {
                path: shown(path),
                kind,
            });
        }
        if meta.nlink() > 1 && !entry.path_is_symlink() {
            let seen = linked
                .entry((meta.dev(), meta.ino()))
                .or_insert_with(|| HardLinks {
                    first: files.len(),
                    links: meta.nlink(),
                    inside: 0,
                });
            seen.inside += 1;
        }
        let rel = path.strip_prefix(root).unwrap_or(path);
        let rel = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        files.push(SourceFile {
            path: rel,
            full: path.to_path_buf(),
            size: meta.len(),
            mode: meta.mode() & 0o777,
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            inode: meta.ino(),
        });
    }
    // The first file (in walk order) with a name the walk did not meet.
    let escaping = linked
        .values()
        .filter(|l| l.inside < l.links)
        .min_by_key(|l| l.first);
    if let Some(l) = escaping {
        return Err(ContentError::HardLinkEscapes {
            path: shown(&files[l.first].full),
            links: l.links,
            outside: l.links - l.inside,
        });
    }
    Ok(files)
}

struct HardLinks {
    /// Index in the walk's files of the first name met.
    first: usize,
    links: u64,
    inside: u64,
}

/// Hashes of files that did not change since they were last hashed.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct HashCache {
    entries: BTreeMap<String, CachedHash>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CachedHash {
    size: u64,
    mtime_ns: i128,
    inode: u64,
    sha256: String,
}

impl HashCache {
    /// Reads a cache file; a missing or unreadable one is an empty cache
    /// (it only ever saves work).
    pub fn load(path: &Path) -> HashCache {
        fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Writes the cache atomically (temp file, rename).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, serde_json::to_vec(self).unwrap_or_default())?;
        fs::rename(tmp, path)
    }

    fn get(&self, f: &SourceFile) -> Option<&str> {
        let key = f.full.to_string_lossy();
        self.entries
            .get(key.as_ref())
            .filter(|c| c.size == f.size && c.mtime_ns == f.mtime_ns && c.inode == f.inode)
            .map(|c| c.sha256.as_str())
    }
}

/// Reads and hashes a source directory into a content manifest, using and
/// updating `cache`. Returns the manifest and how many files were read.
pub fn manifest(
    package: &str,
    root: &Path,
    cache: &mut HashCache,
) -> Result<(ContentManifest, usize), ContentError> {
    let files = scan(root)?;
    let todo: Vec<SourceFile> = files
        .iter()
        .filter(|f| cache.get(f).is_none())
        .cloned()
        .collect();
    let read = todo.len();
    let hashed = crate::load::par_map(todo, |f| hash_file(&f.full).map(|h| (f, h)));
    for result in hashed {
        let (f, sha256) = result?;
        cache.entries.insert(
            f.full.to_string_lossy().into_owned(),
            CachedHash {
                size: f.size,
                mtime_ns: f.mtime_ns,
                inode: f.inode,
                sha256,
            },
        );
    }
    let content = files
        .iter()
        .map(|f| ContentFile {
            path: f.path.clone(),
            size: f.size,
            mode: f.mode,
            sha256: cache.get(f).unwrap_or_default().to_string(),
        })
        .collect();
    Ok((ContentManifest::new(package, content), read))
}

/// SHA-256 of a file's bytes, lowercase hex.
pub fn hash_file(path: &Path) -> Result<String, ContentError> {
    let mut file = fs::File::open(path).map_err(|e| io_error(path, &e))?;
    hash_reader(&mut file).map_err(|e| io_error(path, &e))
}

thread_local! {
    /// One read buffer per thread: sources are often thousands of small
    /// files, and a fresh megabyte for each would cost more than the hashing.
    static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; BUFFER]);
}

/// SHA-256 of everything `reader` yields, lowercase hex.
pub fn hash_reader(reader: &mut dyn Read) -> std::io::Result<String> {
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        let mut hasher = Sha256::new();
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hex::encode(hasher.finalize()))
    })
}

/// What the state records of a package's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContentSummary {
    pub version: String,
    pub files: usize,
    pub bytes: u64,
}

impl ContentSummary {
    /// The summary of a content manifest.
    pub fn of(m: &ContentManifest) -> ContentSummary {
        ContentSummary {
            version: m.version.clone(),
            files: m.files.len(),
            bytes: m.total_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn source() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(dir.path().join("bin")).unwrap();
        fs::write(dir.path().join("bin/scan.exe"), b"MZ scanner").unwrap();
        fs::write(dir.path().join("readme.txt"), b"hello\n").unwrap();
        for p in ["bin", "bin/scan.exe", "readme.txt"] {
            let mode = if p == "bin" { 0o755 } else { 0o644 };
            fs::set_permissions(dir.path().join(p), fs::Permissions::from_mode(mode)).unwrap();
        }
        dir
    }

    #[test]
    fn hashes_files_into_a_versioned_manifest() {
        let dir = source();
        let mut cache = HashCache::default();
        let (m, read) = manifest("Tool", dir.path(), &mut cache).unwrap();
        assert_eq!(read, 2);
        assert_eq!(
            m.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            vec!["bin/scan.exe", "readme.txt"]
        );
        assert_eq!(
            m.files[1].sha256,
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
        assert_eq!((m.files[1].size, m.files[1].mode), (6, 0o644));
        // Unchanged: same version, nothing read again.
        let (again, read) = manifest("Tool", dir.path(), &mut cache).unwrap();
        assert_eq!((again.version.clone(), read), (m.version.clone(), 0));
        // A changed byte is a new version.
        fs::write(dir.path().join("readme.txt"), b"hellO\n").unwrap();
        let (changed, read) = manifest("Tool", dir.path(), &mut cache).unwrap();
        assert_eq!(read, 1);
        assert_ne!(changed.version, m.version);
    }

    #[test]
    fn the_cache_survives_a_round_trip() {
        let dir = source();
        let mut cache = HashCache::default();
        manifest("Tool", dir.path(), &mut cache).unwrap();
        let file = dir.path().join("cache.json");
        cache.save(&file).unwrap();
        let mut loaded = HashCache::load(&file);
        fs::remove_file(&file).unwrap();
        assert_eq!(manifest("Tool", dir.path(), &mut loaded).unwrap().1, 0);
    }

    #[test]
    fn unsafe_sources_are_refused_by_path() {
        let dir = source();
        let writable = dir.path().join("readme.txt");
        fs::set_permissions(&writable, fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(
            scan(dir.path()).unwrap_err(),
            ContentError::Writable {
                path: writable.display().to_string()
            }
        );
        fs::set_permissions(&writable, fs::Permissions::from_mode(0o644)).unwrap();

        let group_dir = dir.path().join("bin");
        fs::set_permissions(&group_dir, fs::Permissions::from_mode(0o775)).unwrap();
        assert!(matches!(
            scan(dir.path()).unwrap_err(),
            ContentError::Writable { .. }
        ));
        fs::set_permissions(&group_dir, fs::Permissions::from_mode(0o755)).unwrap();

        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), b"x").unwrap();
        let link = dir.path().join("escape");
        std::os::unix::fs::symlink(outside.path().join("secret"), &link).unwrap();
        assert_eq!(
            scan(dir.path()).unwrap_err(),
            ContentError::LinkEscapes {
                path: link.display().to_string()
            }
        );
        fs::remove_file(&link).unwrap();

        // A link inside the source is content like any file.
        std::os::unix::fs::symlink("readme.txt", dir.path().join("alias.txt")).unwrap();
        assert_eq!(scan(dir.path()).unwrap().len(), 3);

        // A hard link whose other name is outside: its content can change
        // through that name. Both names inside: content like any file.
        let linked = dir.path().join("linked.txt");
        fs::set_permissions(
            outside.path().join("secret"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        fs::hard_link(outside.path().join("secret"), &linked).unwrap();
        assert_eq!(
            scan(dir.path()).unwrap_err(),
            ContentError::HardLinkEscapes {
                path: linked.display().to_string(),
                links: 2,
                outside: 1
            }
        );
        fs::remove_file(outside.path().join("secret")).unwrap();
        fs::hard_link(&linked, dir.path().join("bin/linked-too.txt")).unwrap();
        assert_eq!(scan(dir.path()).unwrap().len(), 5);
        fs::remove_file(dir.path().join("bin/linked-too.txt")).unwrap();
        fs::remove_file(&linked).unwrap();

        let fifo = dir.path().join("pipe");
        let c = std::ffi::CString::new(fifo.display().to_string()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert_eq!(
            scan(dir.path()).unwrap_err(),
            ContentError::SpecialFile {
                path: fifo.display().to_string(),
                kind: "a FIFO"
            }
        );
    }

    #[test]
    fn a_missing_source_is_named() {
        let err = scan(Path::new("/nonexistent/source")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/nonexistent/source: the package source does not exist or is not a directory"
        );
    }
}
