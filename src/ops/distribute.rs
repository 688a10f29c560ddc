//! Package content on distribution points: what a plan must copy (content
//! versions that a DP does not hold whole) and, in apply, copying it —
//! packages in sending-priority order, each DP's current pointer switched
//! only once every file of the version is there and verified.
//!
//! This is level-triggered: the plan compares each DP with the desired
//! versions every time, so an interrupted distribution, a deleted file or a
//! flipped byte (with `--validate`) simply shows up in the next plan and is
//! put right by the next apply.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::OpError;
use crate::content::{self, ContentManifest, HashCache};
use crate::dp::library::{Finding, Library};
use crate::manifest::common::Priority;
use crate::model::Desired;

/// Superseded versions and unreferenced files stay this long on a DP, so
/// that downloads in flight finish.
pub const GC_GRACE: Duration = Duration::from_secs(3600);

/// Where the hash cache of a manifest directory lives (hidden, so it is
/// never read as a manifest; add `.patchops/` to `.gitignore`).
pub fn cache_path(dir: &Path) -> PathBuf {
    dir.join(".patchops").join("hash-cache.json")
}

/// Reads package sources for one plan: the hash cache is loaded once and
/// saved once, and a source directory that several packages share is
/// scanned once.
pub struct SourceReader {
    dir: PathBuf,
    cache: HashCache,
    scanned: HashMap<PathBuf, ContentManifest>,
}

impl SourceReader {
    /// Sources under the manifest directory `dir`, with its hash cache.
    pub fn new(dir: &Path) -> SourceReader {
        SourceReader {
            dir: dir.to_path_buf(),
            cache: HashCache::load(&cache_path(dir)),
            scanned: HashMap::new(),
        }
    }

    /// The content manifest of `package`, whose source is `source`
    /// (relative to the manifest directory).
    fn manifest(
        &mut self,
        package: &str,
        source: &str,
    ) -> Result<ContentManifest, content::ContentError> {
        let root = self.dir.join(source);
        if let Some(seen) = self.scanned.get(&root) {
            return Ok(ContentManifest {
                package: package.to_string(),
                ..seen.clone()
            });
        }
        let (manifest, _) = content::manifest(package, &root, &mut self.cache)?;
        self.scanned.insert(root, manifest.clone());
        Ok(manifest)
    }

    /// Keeps the hashes for the next run. The cache only saves work; a
    /// read-only checkout just hashes again.
    pub fn save(&self) {
        let _ = self.cache.save(&cache_path(&self.dir));
    }
}

/// The content manifest of every package that has a source.
pub fn package_content(
    sources: &mut SourceReader,
    desired: &Desired,
) -> Result<BTreeMap<String, ContentManifest>, OpError> {
    let mut out = BTreeMap::new();
    for (name, package) in &desired.packages {
        let Some(source) = &package.spec.source else {
            continue;
        };
        let manifest = sources.manifest(name, source.as_str()).map_err(|e| {
            OpError::Input(format!(
                "package `{name}`: unsafe or unreadable source: {e}"
            ))
        })?;
        out.insert(name.clone(), manifest);
    }
    Ok(out)
}

/// The content manifest of each software update package in `ready` (only
/// a Ready package is distributed: every file present and verified).
pub fn update_content(
    sources: &mut SourceReader,
    desired: &Desired,
    ready: &[String],
) -> Result<BTreeMap<String, ContentManifest>, OpError> {
    let mut out = BTreeMap::new();
    for name in ready {
        let Some(sup) = desired.software_update_packages.get(name) else {
            continue;
        };
        let manifest = sources
            .manifest(name, sup.spec.source.as_str())
            .map_err(|e| {
                OpError::Input(format!(
                    "software update package `{name}`: unsafe or unreadable source: {e}"
                ))
            })?;
        out.insert(name.clone(), manifest);
    }
    Ok(out)
}

/// One package version to put on one distribution point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    pub dp: String,
    /// The DP's content library directory.
    pub path: String,
    pub package: String,
    pub priority: Priority,
    /// The package's source directory.
    pub source: String,
    /// Files and bytes the DP lacks.
    pub files_to_copy: usize,
    pub bytes_to_copy: u64,
    /// Files copied at once (the DP's `maxConcurrentTransfers`).
    #[serde(default = "default_transfers")]
    pub transfers: u32,
    /// Why: `new version`, `first version`, `missing or damaged files`.
    pub reason: String,
    pub content: ContentManifest,
    /// A software update package rather than a package.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub update_package: bool,
}

/// A distribution point whose garbage apply collects though no version is
/// copied to it: a publish or garbage collection there was interrupted, or
/// (`plan --validate`) files no version refers to were found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cleanup {
    pub dp: String,
    /// The DP's content library directory.
    pub path: String,
    /// `interrupted distribution` or `files no version refers to`.
    pub reason: String,
}

/// What a plan does to DP content: versions to copy, and DPs to collect
/// garbage on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContentPlan {
    pub distribution: Vec<Distribution>,
    pub cleanup: Vec<Cleanup>,
}

/// Content to put on DPs: name, content, DPs, priority, source, and
/// whether it is a software update package.
type Distributable<'a> = (
    &'a String,
    &'a ContentManifest,
    &'a [String],
    Priority,
    &'a str,
    bool,
);

/// What each DP lacks of the desired versions, and which DPs that lack
/// nothing still hold garbage to collect. `deep` re-hashes the DP's files
/// instead of trusting names and sizes (`plan --validate`).
pub fn plan_distribution(
    dir: &Path,
    desired: &Desired,
    content: &BTreeMap<String, ContentManifest>,
    updates: &BTreeMap<String, ContentManifest>,
    deep: bool,
) -> Result<ContentPlan, OpError> {
    let mut out = Vec::new();
    let mut damaged: BTreeMap<String, Vec<Finding>> = BTreeMap::new();
    // One library per DP path: its fingerprint index is read once.
    let mut libraries: BTreeMap<String, Option<Library>> = BTreeMap::new();
    let mut items: Vec<Distributable<'_>> = Vec::new();
    for (name, package) in &desired.packages {
        if let (Some(manifest), Some(source)) = (content.get(name), &package.spec.source) {
            let dps = package.spec.distribution_points.as_slice();
            items.push((
                name,
                manifest,
                dps,
                package.spec.priority,
                source.as_str(),
                false,
            ));
        }
    }
    for (name, sup) in &desired.software_update_packages {
        if let Some(manifest) = updates.get(name) {
            let dps = sup.spec.distribution_points.as_slice();
            items.push((
                name,
                manifest,
                dps,
                sup.spec.priority,
                sup.spec.source.as_str(),
                true,
            ));
        }
    }
    for (name, manifest, dps, priority, source, update_package) in items {
        for dp_name in dps {
            let Some(dp) = desired.distribution_points.get(dp_name) else {
                continue;
            };
            if !dp.spec.enabled {
                continue;
            }
            let library = libraries
                .entry(dp.spec.path.clone())
                .or_insert_with(|| Library::open(Path::new(&dp.spec.path)).ok());
            let current = library
                .as_ref()
                .and_then(|l| l.current_version(name).ok().flatten());
            let missing: Vec<&content::ContentFile> = match &library {
                None => manifest.files.iter().collect(),
                Some(lib) => manifest
                    .files
                    .iter()
                    .filter(|f| !lib.has_file(&f.sha256, f.size))
                    .collect(),
            };
            let mut reason = match (&library, &current) {
                (None, _) => "distribution point is new",
                (_, None) => "first version on this distribution point",
                (_, Some(current)) if *current != manifest.version => "new version",
                _ if !missing.is_empty() => "missing or damaged files",
                _ => "",
            };
            let mut files = missing.len();
            let mut bytes: u64 = missing.iter().map(|f| f.size).sum();
            if deep {
                if let Some(lib) = &library {
                    let findings = damaged
                        .entry(dp.spec.path.clone())
                        .or_insert_with(|| lib.validate(true).unwrap_or_default());
                    let corrupt: Vec<&content::ContentFile> = manifest
                        .files
                        .iter()
                        .filter(|f| findings.iter().any(|d| matches!(d, Finding::Corrupt { sha256, .. } if sha256 == &f.sha256)))
                        // Counted once: the cheap check may have seen it already.
                        .filter(|f| !missing.iter().any(|m| m.sha256 == f.sha256))
                        .collect();
                    if !corrupt.is_empty() {
                        reason = "damaged files (deep validation)";
                        files += corrupt.len();
                        bytes += corrupt.iter().map(|f| f.size).sum::<u64>();
                    }
                }
            }
            if reason.is_empty() {
                continue;
            }
            out.push(Distribution {
                dp: dp_name.clone(),
                path: dp.spec.path.clone(),
                package: name.clone(),
                priority,
                source: dir.join(source).display().to_string(),
                transfers: dp.spec.max_concurrent_transfers,
                files_to_copy: files,
                bytes_to_copy: bytes,
                reason: reason.to_string(),
                content: manifest.clone(),
                update_package,
            });
        }
    }
    for library in libraries.values().flatten() {
        // Files without a fingerprint that were verified by hash are
        // recorded, so the next plan trusts them. A read-only DP only
        // costs the hash again.
        let _ = library.save_index();
    }
    // A DP a version is copied to is collected after it anyway.
    let mut cleanup = Vec::new();
    for (dp_name, dp) in &desired.distribution_points {
        if !dp.spec.enabled || out.iter().any(|d| d.path == dp.spec.path) {
            continue;
        }
        if cleanup.iter().any(|c: &Cleanup| c.path == dp.spec.path) {
            continue;
        }
        let library = match libraries.remove(&dp.spec.path) {
            Some(library) => library,
            None => Library::open(Path::new(&dp.spec.path)).ok(),
        };
        let Some(library) = library else { continue };
        let reason = if library.unfinished() {
            "interrupted distribution"
        } else if deep
            && damaged
                .remove(&dp.spec.path)
                .unwrap_or_else(|| library.validate(true).unwrap_or_default())
                .iter()
                .any(|f| matches!(f, Finding::Extra { .. }))
        {
            "files no version refers to"
        } else {
            continue;
        };
        cleanup.push(Cleanup {
            dp: dp_name.clone(),
            path: dp.spec.path.clone(),
            reason: reason.to_string(),
        });
    }
    // Sending priority: high before medium before low.
    out.sort_by(|a, b| {
        (std::cmp::Reverse(a.priority), &a.package, &a.dp).cmp(&(
            std::cmp::Reverse(b.priority),
            &b.package,
            &b.dp,
        ))
    });
    Ok(ContentPlan {
        distribution: out,
        cleanup,
    })
}

/// What one distribution step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distributed {
    pub dp: String,
    pub package: String,
    pub files_copied: usize,
    pub bytes_copied: u64,
}

/// Copies each planned version to its DP and makes it current, in the
/// planned (priority) order; then collects garbage past its grace period on
/// those DPs and the `cleanup` ones. `progress` hears each step's start and
/// each file's bytes.
pub fn distribute(
    steps: &[Distribution],
    cleanup: &[Cleanup],
    progress: &(dyn Fn(Progress<'_>) + Sync),
) -> Result<Vec<Distributed>, OpError> {
    let mut done = Vec::new();
    let mut touched: Vec<&str> = Vec::new();
    for step in steps {
        progress(Progress::Step(step));
        let fail = |e: crate::dp::library::DpError| {
            OpError::Input(format!(
                "distributing `{}` to {}: {e}",
                step.package, step.dp
            ))
        };
        let library = Library::create(Path::new(&step.path)).map_err(fail)?;
        if step.reason.starts_with("damaged") {
            // Files a deep validation found damaged go, so they are copied again.
            let damaged = library.validate(true).map_err(fail)?;
            library.remove_damage(&damaged).map_err(fail)?;
        }
        let stats = library
            .publish(
                Path::new(&step.source),
                &step.content,
                step.transfers as usize,
                &|bytes| progress(Progress::Bytes(bytes)),
            )
            .map_err(fail)?;
        if !touched.contains(&step.path.as_str()) {
            touched.push(&step.path);
        }
        done.push(Distributed {
            dp: step.dp.clone(),
            package: step.package.clone(),
            files_copied: stats.files_copied,
            bytes_copied: stats.bytes_copied,
        });
    }
    for c in cleanup {
        if !touched.contains(&c.path.as_str()) {
            touched.push(&c.path);
        }
    }
    // Once per distribution point, after all its versions are current.
    for path in touched {
        let library = Library::open(Path::new(path)).map_err(|e| OpError::Input(e.to_string()))?;
        library
            .gc(GC_GRACE, SystemTime::now())
            .map_err(|e| OpError::Input(format!("collecting garbage on {path}: {e}")))?;
    }
    Ok(done)
}

fn default_transfers() -> u32 {
    4
}

pub enum Progress<'a> {
    Step(&'a Distribution),
    Bytes(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two packages with one source directory: scanned once, and each
    /// manifest names its own package with the same version.
    #[test]
    fn a_shared_source_gives_each_package_its_own_manifest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("content")).unwrap();
        std::fs::write(dir.path().join("content/setup.cmd"), "@echo off\r\n").unwrap();
        let mut sources = SourceReader::new(dir.path());
        let a = sources.manifest("A", "content").unwrap();
        std::fs::write(dir.path().join("content/late.txt"), "after the scan").unwrap();
        let b = sources.manifest("B", "content").unwrap();
        assert_eq!((a.package.as_str(), b.package.as_str()), ("A", "B"));
        assert_eq!(a.version, b.version);
        assert_eq!(b.files.len(), 1, "one scan per directory per plan");
        let next = SourceReader::new(dir.path())
            .manifest("B", "content")
            .unwrap();
        assert_eq!(next.files.len(), 2);
    }
}
