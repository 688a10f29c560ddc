//! The stat fingerprint of a published DP file, and the cheap drift check
//! that compares it.
//!
//! A file's size alone misses a byte flipped in place. Any write to a file,
//! and any `chmod`, `chown` or `touch`, changes its ctime, which no user can
//! set back; a file replaced by another has another inode. So the library
//! records each file's size, mtime, ctime, mode, inode and device when it
//! publishes the file, and the cheap check (plans, apply, the server's drift
//! check) compares all of them: any change is drift, repaired by copying the
//! file again. Only a deep validation re-hashes.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use serde::{Deserialize, Serialize};

/// What `stat` says about a file, as recorded when it was published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub mode: u32,
    pub inode: u64,
    pub device: u64,
}

fn nanos(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

impl Fingerprint {
    pub fn of(meta: &std::fs::Metadata) -> Fingerprint {
        Fingerprint {
            size: meta.len(),
            mtime_ns: nanos(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: nanos(meta.ctime(), meta.ctime_nsec()),
            mode: meta.mode(),
            inode: meta.ino(),
            device: meta.dev(),
        }
    }
}

/// The fingerprints of a library's files, by SHA-256: the library's index
/// (`<root>/fingerprints.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    pub format: String,
    pub files: BTreeMap<String, Fingerprint>,
}

pub const INDEX_FORMAT: &str = "patchops-dp-fingerprints/v1";

/// What the cheap check concludes about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The file is what was published.
    Unchanged,
    /// Missing, not a regular file, or changed since it was published.
    Drifted(String),
    /// The right size, but no fingerprint was recorded (a library published
    /// before fingerprints were): verify it by hash once, then record it.
    Unrecorded,
}

/// Compares a file's current fingerprint (None: missing or not a regular
/// file) with the recorded one and the size its manifest expects.
pub fn check(
    expected_size: u64,
    recorded: Option<&Fingerprint>,
    actual: Option<&Fingerprint>,
) -> Check {
    let Some(actual) = actual else {
        return Check::Drifted("missing".into());
    };
    if actual.size != expected_size {
        return Check::Drifted(format!("size {} instead of {expected_size}", actual.size));
    }
    let Some(recorded) = recorded else {
        return Check::Unrecorded;
    };
    let mut changed = Vec::new();
    if recorded.size != actual.size {
        changed.push("size");
    }
    if recorded.mtime_ns != actual.mtime_ns {
        changed.push("mtime");
    }
    if recorded.ctime_ns != actual.ctime_ns {
        changed.push("ctime");
    }
    if recorded.mode != actual.mode {
        changed.push("mode");
    }
    if recorded.inode != actual.inode || recorded.device != actual.device {
        changed.push("inode");
    }
    if changed.is_empty() {
        Check::Unchanged
    } else {
        Check::Drifted(format!(
            "changed since it was published ({})",
            changed.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published() -> Fingerprint {
        Fingerprint {
            size: 4,
            mtime_ns: 1_000,
            ctime_ns: 2_000,
            mode: 0o100444,
            inode: 42,
            device: 7,
        }
    }

    #[test]
    fn an_untouched_file_is_unchanged() {
        assert_eq!(
            check(4, Some(&published()), Some(&published())),
            Check::Unchanged
        );
    }

    #[test]
    fn a_same_size_write_is_drift() {
        // What a byte flipped in place leaves: same size, new mtime and ctime.
        let written = Fingerprint {
            mtime_ns: 5_000,
            ctime_ns: 5_000,
            mode: 0o100644,
            ..published()
        };
        assert_eq!(
            check(4, Some(&published()), Some(&written)),
            Check::Drifted("changed since it was published (mtime, ctime, mode)".into())
        );
    }

    #[test]
    fn a_write_with_mtime_set_back_is_drift_by_its_ctime() {
        let touched_back = Fingerprint {
            ctime_ns: 9_000,
            ..published()
        };
        assert_eq!(
            check(4, Some(&published()), Some(&touched_back)),
            Check::Drifted("changed since it was published (ctime)".into())
        );
    }

    #[test]
    fn a_replaced_file_is_drift_by_its_inode() {
        let replaced = Fingerprint {
            inode: 43,
            ..published()
        };
        assert!(matches!(
            check(4, Some(&published()), Some(&replaced)),
            Check::Drifted(r) if r.contains("inode")
        ));
        let moved = Fingerprint {
            device: 8,
            ..published()
        };
        assert!(matches!(
            check(4, Some(&published()), Some(&moved)),
            Check::Drifted(r) if r.contains("inode")
        ));
    }

    #[test]
    fn missing_and_wrong_size_are_drift_recorded_or_not() {
        assert_eq!(
            check(4, Some(&published()), None),
            Check::Drifted("missing".into())
        );
        assert_eq!(check(4, None, None), Check::Drifted("missing".into()));
        let longer = Fingerprint {
            size: 5,
            ..published()
        };
        assert_eq!(
            check(4, None, Some(&longer)),
            Check::Drifted("size 5 instead of 4".into())
        );
    }

    #[test]
    fn a_file_without_a_fingerprint_is_unrecorded() {
        assert_eq!(check(4, None, Some(&published())), Check::Unrecorded);
    }
}
