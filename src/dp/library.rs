//! A distribution point's content library on disk: single-instance storage
//! of files by SHA-256, a manifest per package version, and a `current`
//! pointer per package that is switched atomically.
//!
//! ```text
//! <root>/.patchops-dp                           marker: this directory is a library
//! <root>/files/<aa>/<sha256>                    content, read-only, one copy however many packages use it
//! <root>/packages/<id>/versions/<version>.json  a version's content manifest
//! <root>/packages/<id>/versions/<version>.superseded   when it stopped being current
//! <root>/packages/<id>/current                  the current version
//! <root>/tmp/                                   copies in progress (never served)
//! <root>/fingerprints.json                      each file's stat fingerprint when published
//! <root>/unfinished                             a publish or garbage collection began and has not ended
//! ```
//!
//! Publishing copies what is missing into `tmp/`, hashing while it copies;
//! a file whose bytes differ from the manifest (the source changed during the
//! copy, or the disk lied) is refused and the version is not published. Each
//! file is renamed into place once complete; the file system is flushed
//! (syncfs) before the version manifest and then `current` are written
//! (write, fsync, rename, fsync the directory): a client sees the old version
//! or the new one, never half of one, even after a power cut. Superseded versions and
//! unreferenced files stay for a grace period so that downloads in flight
//! finish, then garbage collection removes them.
//!
//! A publish or a garbage collection that is killed half-way leaves files no
//! version refers to, and on a DP whose versions are all as desired no later
//! publish would come to collect them. So both first write `unfinished`, and
//! only a garbage collection that ran to its end removes it: a plan that
//! finds it asks apply to collect.
//!
//! Each file's stat fingerprint (size, mtime, ctime, mode, inode, device) is
//! recorded in `fingerprints.json` once the file is in place (written
//! atomically, before the version manifest), and the cheap check compares
//! all of it (see [`super::fingerprint`]): any write to a file is drift. A
//! file without a recorded fingerprint (a library published by an older
//! patchops, or a lost index) is verified by hash once and then recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::fingerprint::{self, Check, Fingerprint, Index, INDEX_FORMAT};
use crate::content::ContentManifest;

pub const MARKER: &str = ".patchops-dp";
/// The library's index of fingerprints, beside `files/`.
pub const INDEX: &str = "fingerprints.json";
/// Present from the start of a publish or garbage collection until a
/// garbage collection ends.
const UNFINISHED: &str = "unfinished";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpError {
    #[error("{path} is not a patchops distribution point (no {MARKER})")]
    NotALibrary { path: String },
    #[error("{path}: the source changed while it was copied (expected SHA-256 {expected}, read {actual}); the version was not published")]
    SourceChanged {
        path: String,
        expected: String,
        actual: String,
    },
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("{path}: the content manifest is unreadable: {reason}")]
    BadManifest { path: String, reason: String },
}

fn io(path: &Path, e: &std::io::Error) -> DpError {
    DpError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// The directory name of a package in a library: 16 hex characters of the
/// SHA-256 of its name (names hold spaces and parentheses).
pub fn package_id(package: &str) -> String {
    hex::encode(&Sha256::digest(package.as_bytes())[..8])
}

/// What publishing copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PublishStats {
    pub files_copied: usize,
    pub bytes_copied: u64,
    /// Files already in the library (this or another package had them).
    pub files_present: usize,
    /// The version was already current: nothing changed.
    pub unchanged: bool,
}

/// What garbage collection removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GcStats {
    pub versions_removed: usize,
    pub files_removed: usize,
    pub bytes_removed: u64,
}

/// One problem `validate` found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "problem", rename_all = "lowercase")]
pub enum Finding {
    /// A file a version needs is not there.
    Missing {
        package: String,
        path: String,
        sha256: String,
    },
    /// A file's size (or, in a deep check, bytes) does not match its name.
    Corrupt { sha256: String, reason: String },
    /// A file no version refers to, outside any grace period.
    Extra { file: String },
}

/// What a validation found, and how much it checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Validation {
    pub findings: Vec<Finding>,
    /// Files a version refers to that were checked (hashed, when deep).
    pub files_checked: u64,
    pub bytes_checked: u64,
}

/// A version manifest in the library, whether it is current, and when it
/// stopped being current.
struct StoredVersion {
    manifest: ContentManifest,
    path: PathBuf,
    superseded: Option<SystemTime>,
    is_current: bool,
}

#[derive(Debug)]
pub struct Library {
    root: PathBuf,
    fingerprints: Mutex<Fingerprints>,
}

/// The index as read from disk (loaded on first use), and what this
/// process changed in it since it last saved.
#[derive(Debug, Default)]
struct Fingerprints {
    loaded: Option<BTreeMap<String, Fingerprint>>,
    /// `Some`: recorded (published, or verified by hash); `None`: removed.
    changes: BTreeMap<String, Option<Fingerprint>>,
}

impl Library {
    /// Opens a library, creating it (and its marker) in an empty or missing
    /// directory.
    pub fn create(root: &Path) -> Result<Library, DpError> {
        for dir in ["files", "packages", "tmp"] {
            fs::create_dir_all(root.join(dir)).map_err(|e| io(&root.join(dir), &e))?;
        }
        let marker = root.join(MARKER);
        if !marker.exists() {
            fs::write(&marker, "{\"format\": \"patchops-dp/v1\"}\n")
                .map_err(|e| io(&marker, &e))?;
        }
        Ok(Library {
            root: root.to_path_buf(),
            fingerprints: Mutex::default(),
        })
    }

    /// Opens an existing library.
    pub fn open(root: &Path) -> Result<Library, DpError> {
        if !root.join(MARKER).is_file() {
            return Err(DpError::NotALibrary {
                path: root.display().to_string(),
            });
        }
        Ok(Library {
            root: root.to_path_buf(),
            fingerprints: Mutex::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root
            .join("files")
            .join(&sha256[..2.min(sha256.len())])
            .join(sha256)
    }

    fn package_dir(&self, package: &str) -> PathBuf {
        self.root.join("packages").join(package_id(package))
    }

    /// The current version's name, if any, without reading its manifest
    /// (a plan asks this of every package on every DP): the pointer, and
    /// that the manifest it names is a file. [`Library::current`] reads it.
    pub fn current_version(&self, package: &str) -> Result<Option<String>, DpError> {
        let dir = self.package_dir(package);
        let pointer = dir.join("current");
        let version = match fs::read_to_string(&pointer) {
            Ok(v) => v.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&pointer, &e)),
        };
        let manifest = dir.join("versions").join(format!("{version}.json"));
        match fs::metadata(&manifest) {
            Ok(meta) if meta.is_file() => Ok(Some(version)),
            Ok(_) => Err(DpError::BadManifest {
                path: manifest.display().to_string(),
                reason: "not a file".into(),
            }),
            Err(e) => Err(io(&manifest, &e)),
        }
    }

    /// The current version of a package, if any.
    pub fn current(&self, package: &str) -> Result<Option<ContentManifest>, DpError> {
        let dir = self.package_dir(package);
        let pointer = dir.join("current");
        let version = match fs::read_to_string(&pointer) {
            Ok(v) => v.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&pointer, &e)),
        };
        read_manifest(&dir.join("versions").join(format!("{version}.json"))).map(Some)
    }

    /// Makes `manifest` the current version of its package, copying from
    /// `source` the files the library does not hold yet, at most `transfers`
    /// at a time. `on_file` is called with the bytes of each file copied
    /// (for progress).
    pub fn publish(
        &self,
        source: &Path,
        manifest: &ContentManifest,
        transfers: usize,
        on_file: &(dyn Fn(u64) + Sync),
    ) -> Result<PublishStats, DpError> {
        let previous = self.current(&manifest.package).ok().flatten();
        if previous
            .as_ref()
            .is_some_and(|p| p.version == manifest.version)
            && self.has_all(manifest)
        {
            self.save_index()?;
            return Ok(PublishStats {
                unchanged: true,
                ..PublishStats::default()
            });
        }
        self.begin_change()?;
        let mut stats = PublishStats::default();
        let mut needed: BTreeMap<&str, &crate::content::ContentFile> = BTreeMap::new();
        for f in &manifest.files {
            needed.entry(f.sha256.as_str()).or_insert(f);
        }
        let missing: Vec<&crate::content::ContentFile> = needed
            .values()
            .copied()
            .filter(|f| !self.blob_ok(&f.sha256, f.size))
            .collect();
        stats.files_present = needed.len() - missing.len();
        let copied = crate::load::par_map_with(missing, transfers.max(1), 2, |f| {
            let (bytes, fingerprint) = self.copy_in(&source.join(&f.path), &f.sha256)?;
            self.record(&f.sha256, Some(fingerprint));
            on_file(bytes);
            Ok::<u64, DpError>(bytes)
        });
        let mut failed = None;
        for result in copied {
            match result {
                Ok(bytes) => {
                    stats.bytes_copied += bytes;
                    stats.files_copied += 1;
                }
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if stats.files_copied > 0 {
            self.sync_files()?;
        }
        // The files that are in place are recorded even if another failed,
        // so that the next publish trusts them without hashing.
        self.save_index()?;
        if let Some(e) = failed {
            return Err(e);
        }

        let dir = self.package_dir(&manifest.package);
        let versions = dir.join("versions");
        fs::create_dir_all(&versions).map_err(|e| io(&versions, &e))?;
        let text = serde_json::to_vec_pretty(manifest).unwrap_or_default();
        write_atomic(
            &versions.join(format!("{}.json", manifest.version)),
            &text,
            0o444,
        )?;
        let _ = fs::remove_file(versions.join(format!("{}.superseded", manifest.version)));
        if let Some(previous) = previous.filter(|p| p.version != manifest.version) {
            // The grace period of the superseded version starts now. The
            // time is written in the marker, read from this process's clock
            // like the `now` that `gc` is given: the file's mtime is another
            // clock (the file system's; copies and restores change it). It
            // is written before the switch: killed between the two, the
            // previous version is still current (which `gc` checks first)
            // rather than superseded without a time, which `gc` would take
            // as long expired.
            write_atomic(
                &versions.join(format!("{}.superseded", previous.version)),
                jiff::Timestamp::now().to_string().as_bytes(),
                0o444,
            )?;
        }
        write_atomic(&dir.join("current"), manifest.version.as_bytes(), 0o444)?;
        Ok(stats)
    }

    /// Flushes every file written to the library's file system, so that the
    /// files of a version are on disk before the version is published.
    fn sync_files(&self) -> Result<(), DpError> {
        use std::os::fd::AsRawFd;
        let dir = self.root.join("files");
        let handle = File::open(&dir).map_err(|e| io(&dir, &e))?;
        // SAFETY: syncfs on a valid open descriptor.
        if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
            return Err(io(&dir, &std::io::Error::last_os_error()));
        }
        Ok(())
    }

    fn has_all(&self, manifest: &ContentManifest) -> bool {
        manifest
            .files
            .iter()
            .all(|f| self.blob_ok(&f.sha256, f.size))
    }

    /// A file is in the library as it was published: its stat fingerprint
    /// is the recorded one (the cheap check that plans make;
    /// `validate(true)` re-hashes). Call [`Library::save_index`] afterwards
    /// to keep what files without a fingerprint were verified to be.
    pub fn has_file(&self, sha256: &str, size: u64) -> bool {
        self.blob_ok(sha256, size)
    }

    fn blob_ok(&self, sha256: &str, size: u64) -> bool {
        self.blob_check(sha256, size) == Check::Unchanged
    }

    /// The cheap check of one file: its fingerprint against the recorded
    /// one. A file without a recorded fingerprint is hashed; if its bytes
    /// are right its fingerprint is recorded (saved by [`Library::save_index`]),
    /// so it is hashed once only.
    fn blob_check(&self, sha256: &str, size: u64) -> Check {
        let path = self.blob_path(sha256);
        let stat = |p: &Path| {
            fs::symlink_metadata(p)
                .ok()
                .filter(fs::Metadata::is_file)
                .map(|m| Fingerprint::of(&m))
        };
        let actual = stat(&path);
        let recorded = self.recorded(sha256);
        match fingerprint::check(size, recorded.as_ref(), actual.as_ref()) {
            Check::Unrecorded => {
                match crate::content::hash_file(&path) {
                    Ok(hash) if hash == sha256 => {
                        // Recorded only if nothing changed the file while it
                        // was hashed.
                        if let Some(now) = stat(&path).filter(|now| Some(now) == actual.as_ref()) {
                            self.record(sha256, Some(now));
                        }
                        Check::Unchanged
                    }
                    Ok(hash) => Check::Drifted(format!("its bytes hash to {hash}")),
                    Err(e) => Check::Drifted(e.to_string()),
                }
            }
            other => other,
        }
    }

    /// The recorded fingerprint of a file (the index is read on first use;
    /// an unreadable index counts as empty: every file is verified again).
    fn recorded(&self, sha256: &str) -> Option<Fingerprint> {
        let mut state = self.fingerprints.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(change) = state.changes.get(sha256) {
            return *change;
        }
        if state.loaded.is_none() {
            state.loaded = Some(self.read_index());
        }
        state.loaded.as_ref().and_then(|l| l.get(sha256).copied())
    }

    fn record(&self, sha256: &str, fingerprint: Option<Fingerprint>) {
        let mut state = self.fingerprints.lock().unwrap_or_else(|e| e.into_inner());
        state.changes.insert(sha256.to_string(), fingerprint);
    }

    fn read_index(&self) -> BTreeMap<String, Fingerprint> {
        fs::read(self.root.join(INDEX))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Index>(&bytes).ok())
            .filter(|index| index.format == INDEX_FORMAT)
            .map(|index| index.files)
            .unwrap_or_default()
    }

    /// Writes what this process recorded into the index (atomically: temp
    /// file and rename). The index is read again first so that entries
    /// another process recorded meanwhile stay; an entry lost to a race
    /// only costs one more hash, never a missed change.
    pub fn save_index(&self) -> Result<(), DpError> {
        let mut state = self.fingerprints.lock().unwrap_or_else(|e| e.into_inner());
        if state.changes.is_empty() {
            return Ok(());
        }
        let mut files = self.read_index();
        for (sha256, change) in &state.changes {
            match change {
                Some(f) => files.insert(sha256.clone(), *f),
                None => files.remove(sha256),
            };
        }
        let index = Index {
            format: INDEX_FORMAT.to_string(),
            files,
        };
        let text = serde_json::to_vec(&index).unwrap_or_default();
        write_atomic(&self.root.join(INDEX), &text, 0o644)?;
        state.loaded = Some(index.files);
        state.changes.clear();
        Ok(())
    }

    /// Copies one file into the library through `tmp/`, checking its hash.
    /// Returns the bytes copied and the fingerprint of the file in place.
    fn copy_in(&self, from: &Path, sha256: &str) -> Result<(u64, Fingerprint), DpError> {
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{sha256}.{}", uuid::Uuid::new_v4().simple()));
        let result = (|| {
            let mut src = File::open(from).map_err(|e| io(from, &e))?;
            let mut dst = File::create(&tmp).map_err(|e| io(&tmp, &e))?;
            // The kernel copies (copy_file_range); then the copy itself is
            // hashed, which checks what the DP will serve, not just what
            // was read.
            let bytes = std::io::copy(&mut src, &mut dst).map_err(|e| io(&tmp, &e))?;
            drop(dst);
            let mut written = File::open(&tmp).map_err(|e| io(&tmp, &e))?;
            let actual = crate::content::hash_reader(&mut written).map_err(|e| io(&tmp, &e))?;
            if actual != sha256 {
                return Err(DpError::SourceChanged {
                    path: from.display().to_string(),
                    expected: sha256.to_string(),
                    actual,
                });
            }
            // Made durable all at once by `sync_files` before the version
            // that needs it is published: one flush instead of one per file.
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o444))
                .map_err(|e| io(&tmp, &e))?;
            let target = self.blob_path(sha256);
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(|e| io(parent, &e))?;
            }
            fs::rename(&tmp, &target).map_err(|e| io(&target, &e))?;
            // Taken after the rename, which changes the file's ctime.
            let meta = fs::symlink_metadata(&target).map_err(|e| io(&target, &e))?;
            Ok((bytes, Fingerprint::of(&meta)))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Every version manifest of every package, with whether it is current
    /// and when it was superseded.
    fn versions(&self) -> Result<Vec<StoredVersion>, DpError> {
        let mut out = Vec::new();
        let packages = self.root.join("packages");
        let Ok(entries) = fs::read_dir(&packages) else {
            return Ok(out);
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            let current = fs::read_to_string(dir.join("current"))
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            let Ok(versions) = fs::read_dir(dir.join("versions")) else {
                continue;
            };
            for v in versions.flatten() {
                let path = v.path();
                if path.extension().and_then(|e| e.to_str()) != Some("json") {
                    continue;
                }
                let manifest = read_manifest(&path)?;
                let superseded = superseded_at(&path.with_extension("superseded"));
                let is_current = manifest.version == current;
                out.push(StoredVersion {
                    manifest,
                    path,
                    superseded,
                    is_current,
                });
            }
        }
        Ok(out)
    }

    /// Removes versions superseded longer than `grace` ago, files no
    /// remaining version refers to, and copies in `tmp/` older than `grace`.
    /// Run it only under the apply lock: a publish in progress has files in
    /// place before its version manifest.
    pub fn gc(&self, grace: Duration, now: SystemTime) -> Result<GcStats, DpError> {
        self.begin_change()?;
        let expired = |t: SystemTime| now.duration_since(t).is_ok_and(|age| age > grace);
        let mut stats = GcStats::default();
        let mut keep: BTreeSet<String> = BTreeSet::new();
        for StoredVersion {
            manifest,
            path,
            superseded,
            is_current,
        } in self.versions()?
        {
            let stale = !is_current && superseded.is_none_or(expired);
            if stale {
                fs::remove_file(&path).map_err(|e| io(&path, &e))?;
                let _ = fs::remove_file(path.with_extension("superseded"));
                stats.versions_removed += 1;
            } else {
                keep.extend(manifest.files.into_iter().map(|f| f.sha256));
            }
        }
        // Files are kept by the versions that refer to them (whose grace
        // protects downloads in flight); a file no version refers to is garbage.
        for (name, path, meta) in self.blobs()? {
            if !keep.contains(&name) {
                fs::remove_file(&path).map_err(|e| io(&path, &e))?;
                self.record(&name, None);
                stats.files_removed += 1;
                stats.bytes_removed += meta.len();
            }
        }
        self.save_index()?;
        if let Ok(entries) = fs::read_dir(self.root.join("tmp")) {
            for e in entries.flatten() {
                if e.metadata().and_then(|m| m.modified()).is_ok_and(expired) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        let unfinished = self.root.join(UNFINISHED);
        match fs::remove_file(&unfinished) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&unfinished, &e)),
            _ => {}
        }
        Ok(stats)
    }

    /// Whether a publish or garbage collection began here and no garbage
    /// collection ended since: files no version refers to may be left.
    pub fn unfinished(&self) -> bool {
        self.root.join(UNFINISHED).exists()
    }

    /// Marks the library as changing (durably, before the first file is
    /// written), unless it is marked already.
    fn begin_change(&self) -> Result<(), DpError> {
        let path = self.root.join(UNFINISHED);
        if path.exists() {
            return Ok(());
        }
        write_atomic(
            &path,
            b"a publish or garbage collection began and has not ended\n",
            0o644,
        )
    }

    /// Every file under `files/`: its name, path and metadata.
    fn blobs(&self) -> Result<Vec<(String, PathBuf, fs::Metadata)>, DpError> {
        let mut out = Vec::new();
        for entry in walkdir::WalkDir::new(self.root.join("files"))
            .min_depth(2)
            .max_depth(2)
            .sort_by_file_name()
        {
            let entry = entry.map_err(|e| DpError::Io {
                path: self.root.join("files").display().to_string(),
                reason: e.to_string(),
            })?;
            let meta = entry.metadata().map_err(|e| DpError::Io {
                path: entry.path().display().to_string(),
                reason: e.to_string(),
            })?;
            if meta.is_file() {
                out.push((
                    entry.file_name().to_string_lossy().into_owned(),
                    entry.path().to_path_buf(),
                    meta,
                ));
            }
        }
        Ok(out)
    }

    /// Checks every version's files: missing, wrong size, and with `deep`
    /// wrong content (re-hashed on all cores); and files nothing refers to.
    pub fn validate(&self, deep: bool) -> Result<Vec<Finding>, DpError> {
        self.validate_counted(deep).map(|v| v.findings)
    }

    /// [`Library::validate`], with how many files (and bytes) it checked.
    pub fn validate_counted(&self, deep: bool) -> Result<Validation, DpError> {
        let mut checked = Validation::default();
        let mut findings = Vec::new();
        let mut referenced: BTreeMap<String, u64> = BTreeMap::new();
        for StoredVersion { manifest, .. } in self.versions()? {
            for f in &manifest.files {
                referenced.insert(f.sha256.clone(), f.size);
                if !self.blob_path(&f.sha256).is_file() {
                    findings.push(Finding::Missing {
                        package: manifest.package.clone(),
                        path: f.path.clone(),
                        sha256: f.sha256.clone(),
                    });
                }
            }
        }
        let blobs = self.blobs()?;
        let mut to_hash = Vec::new();
        for (name, path, meta) in blobs {
            if referenced.contains_key(&name) {
                checked.files_checked += 1;
                checked.bytes_checked += meta.len();
            }
            match referenced.get(&name) {
                None => findings.push(Finding::Extra {
                    file: format!("files/{}/{name}", &name[..2.min(name.len())]),
                }),
                Some(size) if *size != meta.len() => findings.push(Finding::Corrupt {
                    sha256: name,
                    reason: format!("size {} instead of {size}", meta.len()),
                }),
                Some(_) if deep => to_hash.push((name, path)),
                Some(size) => {
                    // The cheap check: a file changed since it was published
                    // (a file without a fingerprint is left to a deep check).
                    let recorded = self.recorded(&name);
                    if let Check::Drifted(reason) =
                        fingerprint::check(*size, recorded.as_ref(), Some(&Fingerprint::of(&meta)))
                    {
                        findings.push(Finding::Corrupt {
                            sha256: name,
                            reason,
                        });
                    }
                }
            }
        }
        for (name, actual) in crate::load::par_map(to_hash, |(name, path)| {
            let actual = crate::content::hash_file(&path).map_err(|e| DpError::Io {
                path: path.display().to_string(),
                reason: e.to_string(),
            });
            (name, actual)
        }) {
            let actual = actual?;
            if actual != name {
                findings.push(Finding::Corrupt {
                    sha256: name,
                    reason: format!("its bytes hash to {actual}"),
                });
            }
        }
        findings.sort();
        findings.dedup();
        checked.findings = findings;
        Ok(checked)
    }

    /// Which of `findings` (of an earlier [`Library::validate_counted`])
    /// still hold: a missing file still referenced and still absent, a
    /// corrupt one still referenced and still of the wrong size or bytes
    /// (hashed again), an extra one still there and still unreferenced. Run
    /// under the apply lock, it tells real problems from a publish or a
    /// garbage collection that ran while the library was hashed.
    pub fn recheck(&self, findings: &[Finding]) -> Result<Vec<Finding>, DpError> {
        let mut referenced: BTreeMap<String, u64> = BTreeMap::new();
        let mut needed: BTreeSet<(String, String, String)> = BTreeSet::new();
        for StoredVersion { manifest, .. } in self.versions()? {
            for f in &manifest.files {
                referenced.insert(f.sha256.clone(), f.size);
                needed.insert((manifest.package.clone(), f.path.clone(), f.sha256.clone()));
            }
        }
        let mut out = Vec::new();
        for finding in findings {
            let holds = match finding {
                Finding::Missing {
                    package,
                    path,
                    sha256,
                } => {
                    needed.contains(&(package.clone(), path.clone(), sha256.clone()))
                        && !self.blob_path(sha256).is_file()
                }
                Finding::Corrupt { sha256, .. } => {
                    let path = self.blob_path(sha256);
                    match (referenced.get(sha256), fs::symlink_metadata(&path)) {
                        (Some(size), Ok(meta)) if meta.is_file() => {
                            meta.len() != *size
                                || crate::content::hash_file(&path)
                                    .map_or(true, |actual| &actual != sha256)
                        }
                        _ => false,
                    }
                }
                Finding::Extra { file } => {
                    let name = Path::new(file)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    self.root.join(file).is_file() && !referenced.contains_key(&name)
                }
            };
            if holds {
                out.push(finding.clone());
            }
        }
        Ok(out)
    }

    /// Removes corrupt files, so that the next publish copies them again,
    /// and extra ones. Run it under the apply lock, on findings that still
    /// hold ([`Library::recheck`]): a publish in progress has files in place
    /// before its version manifest.
    pub fn remove_damage(&self, findings: &[Finding]) -> Result<usize, DpError> {
        let mut removed = 0;
        for f in findings {
            let (path, sha256) = match f {
                Finding::Corrupt { sha256, .. } => (self.blob_path(sha256), sha256.as_str()),
                Finding::Extra { file } => (
                    self.root.join(file),
                    file.rsplit('/').next().unwrap_or_default(),
                ),
                Finding::Missing { .. } => continue,
            };
            match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&path, &e)),
                _ => {}
            }
            self.record(sha256, None);
            removed += 1;
        }
        self.save_index()?;
        Ok(removed)
    }
}

fn read_manifest(path: &Path) -> Result<ContentManifest, DpError> {
    let bytes = fs::read(path).map_err(|e| io(path, &e))?;
    serde_json::from_slice(&bytes).map_err(|e| DpError::BadManifest {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Write to a temporary file, fsync, rename over the target, fsync the
/// directory: readers see the old content or the new, never a mix.
/// When a version stopped being current: the time its marker holds, or
/// (a marker written without one) the marker's mtime; `None` without a
/// marker.
fn superseded_at(marker: &Path) -> Option<SystemTime> {
    let text = fs::read_to_string(marker).ok()?;
    match text.trim().parse::<jiff::Timestamp>() {
        Ok(at) => SystemTime::UNIX_EPOCH.checked_add(Duration::from_nanos(
            u64::try_from(at.as_nanosecond()).ok()?,
        )),
        Err(_) => fs::metadata(marker).and_then(|m| m.modified()).ok(),
    }
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), DpError> {
    crate::atomic_file::write(path, bytes, mode).map_err(|e| io(path, &e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{manifest, HashCache};

    fn source(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        for (path, bytes) in files {
            let p = dir.path().join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, bytes).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        }
        dir
    }

    fn content(package: &str, dir: &Path) -> ContentManifest {
        manifest(package, dir, &mut HashCache::default()).unwrap().0
    }

    fn no_progress(_: u64) {}

    #[test]
    fn files_are_stored_once_across_packages() {
        let dp = tempfile::tempdir().unwrap();
        let lib = Library::create(dp.path()).unwrap();
        let a = source(&[("shared.dll", b"same bytes"), ("a.exe", b"a")]);
        let b = source(&[("lib/shared.dll", b"same bytes"), ("b.exe", b"b")]);
        let first = lib
            .publish(a.path(), &content("A", a.path()), 4, &no_progress)
            .unwrap();
        assert_eq!((first.files_copied, first.bytes_copied), (2, 11));
        let second = lib
            .publish(b.path(), &content("B", b.path()), 4, &no_progress)
            .unwrap();
        assert_eq!((second.files_copied, second.files_present), (1, 1));
        assert_eq!(lib.blobs().unwrap().len(), 3);
        assert_eq!(lib.current("B").unwrap().unwrap().files.len(), 2);
        // Publishing the same version again copies nothing.
        assert!(
            lib.publish(b.path(), &content("B", b.path()), 4, &no_progress)
                .unwrap()
                .unchanged
        );
    }

    #[test]
    fn a_new_version_replaces_the_current_pointer_atomically() {
        let dp = tempfile::tempdir().unwrap();
        let lib = Library::create(dp.path()).unwrap();
        let src = source(&[("tool.exe", b"v1")]);
        let v1 = content("Tool", src.path());
        lib.publish(src.path(), &v1, 4, &no_progress).unwrap();
        fs::write(src.path().join("tool.exe"), b"v2").unwrap();
        let v2 = content("Tool", src.path());
        lib.publish(src.path(), &v2, 4, &no_progress).unwrap();
        assert_eq!(lib.current("Tool").unwrap().unwrap().version, v2.version);
        assert_eq!(
            lib.current_version("Tool").unwrap(),
            Some(v2.version.clone())
        );
        assert_eq!(lib.current_version("Other").unwrap(), None);
        // Nothing half-written is left beside the pointer.
        let dir = lib.package_dir("Tool");
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names.iter().filter(|n| n.starts_with('.')).count(),
            0,
            "{names:?}"
        );
        // The old version stays readable during its grace period.
        assert!(dir
            .join("versions")
            .join(format!("{}.json", v1.version))
            .is_file());
        assert!(lib.blob_path(&v1.files[0].sha256).is_file());
        // A pointer to a manifest that is gone is an error, not a version.
        fs::remove_file(dir.join("versions").join(format!("{}.json", v2.version))).unwrap();
        assert!(lib.current_version("Tool").is_err());
    }

    #[test]
    fn a_source_changed_during_the_copy_is_not_published() {
        let dp = tempfile::tempdir().unwrap();
        let lib = Library::create(dp.path()).unwrap();
        let src = source(&[("tool.exe", b"original")]);
        let planned = content("Tool", src.path());
        fs::write(src.path().join("tool.exe"), b"tampered").unwrap();
        let err = lib
            .publish(src.path(), &planned, 4, &no_progress)
            .unwrap_err();
        assert!(matches!(err, DpError::SourceChanged { .. }), "{err}");
        assert!(lib.current("Tool").unwrap().is_none());
        assert_eq!(
            fs::read_dir(dp.path().join("tmp")).unwrap().count(),
            0,
            "no partial copy left"
        );
    }

    /// A publish that fails half-way leaves the files it copied, which no
    /// version refers to: the library says so until a garbage collection
    /// ends, and that collection takes them.
    #[test]
    fn an_interrupted_publish_is_marked_until_a_collection_ends() {
        let dp = tempfile::tempdir().unwrap();
        let lib = Library::create(dp.path()).unwrap();
        let src = source(&[("a.exe", b"aaaa"), ("b.exe", b"bbbb")]);
        let planned = content("Tool", src.path());
        let sha = |p: &str| {
            planned
                .files
                .iter()
                .find(|f| f.path == p)
                .unwrap()
                .sha256
                .clone()
        };
        assert!(!lib.unfinished(), "a new library has nothing unfinished");
        fs::remove_file(src.path().join("b.exe")).unwrap();
        lib.publish(src.path(), &planned, 1, &no_progress)
            .unwrap_err();
        assert!(lib.current("Tool").unwrap().is_none());
        assert!(lib.unfinished());
        assert_eq!(
            lib.validate(false).unwrap(),
            vec![Finding::Extra {
                file: format!("files/{}/{}", &sha("a.exe")[..2], sha("a.exe"))
            }]
        );
        // Reopened (another process), the mark is still there.
        let lib = Library::open(dp.path()).unwrap();
        assert!(lib.unfinished());
        let stats = lib
            .gc(Duration::from_secs(3600), SystemTime::now())
            .unwrap();
        assert_eq!(stats.files_removed, 1);
        assert!(!lib.unfinished());
        assert_eq!(lib.validate(false).unwrap(), vec![]);
    }

    /// The previous version's superseded time is written before the switch.
    #[test]
    fn a_publish_leaves_the_previous_version_superseded_at_a_time() {
        let dp = tempfile::tempdir().unwrap();
        let lib = Library::create(dp.path()).unwrap();
        let src = source(&[("tool.exe", b"v1")]);
        let v1 = content("Tool", src.path());
        lib.publish(src.path(), &v1, 4, &no_progress).unwrap();
        assert!(lib.unfinished(), "published, not yet collected");
        fs::write(src.path().join("tool.exe"), b"v2").unwrap();
        lib.publish(src.path(), &content("Tool", src.path()), 4, &no_progress)
            .unwrap();
        let marker = lib
            .package_dir("Tool")
            .join("versions")
            .join(format!("{}.superseded", v1.version));
        let at: jiff::Timestamp = fs::read_to_string(marker).unwrap().trim().parse().unwrap();
        assert!(at <= jiff::Timestamp::now());
        // Within the grace period, gc keeps v1 and ends the unfinished mark.
        let stats = lib
            .gc(Duration::from_secs(3600), SystemTime::now())
            .unwrap();
        assert_eq!(stats.versions_removed, 0);
        assert!(!lib.unfinished());
    }

    /// The grace period is counted from the time the marker holds, on the
    /// clock `gc` is given: an old mtime (a copy, a restore, a file system
    /// clock that disagrees) removes nothing early.
    #[test]
    fn the_superseded_time_is_the_markers_not_its_mtime() {
        let dp = tempfile::tempdir().unwrap();
        let lib = Library::create(dp.path()).unwrap();
        let src = source(&[("tool.exe", b"v1")]);
        let v1 = content("Tool", src.path());
        lib.publish(src.path(), &v1, 4, &no_progress).unwrap();
        fs::write(src.path().join("tool.exe"), b"v2").unwrap();
        lib.publish(src.path(), &content("Tool", src.path()), 4, &no_progress)
            .unwrap();
        let marker = lib
            .package_dir(&v1.package)
            .join("versions")
            .join(format!("{}.superseded", v1.version));
        let year_ago = SystemTime::now() - Duration::from_secs(365 * 24 * 3600);
        File::open(&marker).unwrap().set_modified(year_ago).unwrap();
        let grace = Duration::from_secs(3600);
        assert_eq!(
            lib.gc(grace, SystemTime::now()).unwrap(),
            GcStats::default()
        );
        assert!(lib.blob_path(&v1.files[0].sha256).exists());
    }

    #[test]
    fn gc_keeps_versions_in_their_grace_period() {
        let dp = tempfile::tempdir().unwrap();
        let lib = Library::create(dp.path()).unwrap();
        let src = source(&[("tool.exe", b"v1")]);
        let v1 = content("Tool", src.path());
        lib.publish(src.path(), &v1, 4, &no_progress).unwrap();
        fs::write(src.path().join("tool.exe"), b"v2").unwrap();
        lib.publish(src.path(), &content("Tool", src.path()), 4, &no_progress)
            .unwrap();
        let grace = Duration::from_secs(3600);
        assert_eq!(
            lib.gc(grace, SystemTime::now()).unwrap(),
            GcStats::default()
        );
        let later = SystemTime::now() + Duration::from_secs(7200);
        let stats = lib.gc(grace, later).unwrap();
        assert_eq!(
            (
                stats.versions_removed,
                stats.files_removed,
                stats.bytes_removed
            ),
            (1, 1, 2)
        );
        assert!(!lib.blob_path(&v1.files[0].sha256).exists());
        assert_eq!(lib.validate(true).unwrap(), vec![]);
    }

    #[test]
    fn validate_reports_drift_and_publish_repairs_it() {
        let dp = tempfile::tempdir().unwrap();
        let lib = Library::create(dp.path()).unwrap();
        let src = source(&[("a.exe", b"aaaa"), ("b.dll", b"bbbb"), ("c.txt", b"cccc")]);
        let m = content("Tool", src.path());
        lib.publish(src.path(), &m, 4, &no_progress).unwrap();
        let sha = |p: &str| m.files.iter().find(|f| f.path == p).unwrap().sha256.clone();
        // Deleted, flipped byte (same size), extra file.
        fs::remove_file(lib.blob_path(&sha("a.exe"))).unwrap();
        let flipped = lib.blob_path(&sha("b.dll"));
        fs::set_permissions(&flipped, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&flipped, b"bbbB").unwrap();
        fs::create_dir_all(dp.path().join("files/ff")).unwrap();
        fs::write(dp.path().join("files/ff/ffff"), b"stray").unwrap();

        let cheap = lib.validate(false).unwrap();
        assert_eq!(
            cheap.len(),
            3,
            "the cheap check sees the missing file, the extra one and, by its \
             fingerprint, the same-size write: {cheap:?}"
        );
        let deep = lib.validate(true).unwrap();
        assert_eq!(
            deep,
            vec![
                Finding::Missing {
                    package: "Tool".into(),
                    path: "a.exe".into(),
                    sha256: sha("a.exe")
                },
                Finding::Corrupt {
                    sha256: sha("b.dll"),
                    reason: format!("its bytes hash to {}", hex::encode(Sha256::digest(b"bbbB")))
                },
                Finding::Extra {
                    file: "files/ff/ffff".into()
                },
            ]
        );
        // The corrupt file and the extra one go; the missing one is copied.
        assert_eq!(lib.remove_damage(&deep).unwrap(), 2);
        assert!(!dp.path().join("files/ff/ffff").exists());
        let repaired = lib.publish(src.path(), &m, 4, &no_progress).unwrap();
        assert_eq!(repaired.files_copied, 2);
        assert_eq!(lib.validate(true).unwrap(), vec![]);
    }

    #[test]
    fn a_recheck_keeps_only_findings_that_still_hold() {
        let dp = tempfile::tempdir().unwrap();
        let lib = Library::create(dp.path()).unwrap();
        let src = source(&[("a.exe", b"aaaa"), ("b.dll", b"bbbb")]);
        let m = content("Tool", src.path());
        lib.publish(src.path(), &m, 4, &no_progress).unwrap();
        let sha = |p: &str| m.files.iter().find(|f| f.path == p).unwrap().sha256.clone();
        let flipped = lib.blob_path(&sha("b.dll"));
        fs::set_permissions(&flipped, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&flipped, b"bbbB").unwrap();
        let corrupt = Finding::Corrupt {
            sha256: sha("b.dll"),
            reason: "r".into(),
        };
        // What a validation saw while a publish or GC ran: a file not yet
        // there, a file not yet referenced, a file since put right.
        let passing = vec![
            Finding::Missing {
                package: "Tool".into(),
                path: "a.exe".into(),
                sha256: sha("a.exe"),
            },
            Finding::Extra {
                file: format!("files/{}/{}", &sha("a.exe")[..2], sha("a.exe")),
            },
            Finding::Corrupt {
                sha256: sha("a.exe"),
                reason: "r".into(),
            },
        ];
        let mut all = passing.clone();
        all.push(corrupt.clone());
        assert_eq!(lib.recheck(&all).unwrap(), vec![corrupt]);
    }

    #[test]
    fn a_directory_without_the_marker_is_not_a_library() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Library::open(dir.path()),
            Err(DpError::NotALibrary { .. })
        ));
    }
}
