//! Whether a software update package can be distributed: every file it
//! resolves to is in its source directory and verified.
//!
//! "Verified" means: the file's size and SHA-256 equal what the download
//! recorded in the lock (`.patchops/updates.json` at the repository root)
//! when it had fetched the file and checked it. MSSecure.XML carries no
//! checksum of the download itself (its file checks describe installed
//! files), so the lock is the reference; a file put into the source by hand
//! is "unverified" until `patchops updates download` has recorded it. The
//! generated `ohotfix.ini` must hold exactly the expected text.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::authenticode::TrustStore;

/// The lock file, relative to the repository root.
pub const LOCK_FILE: &str = ".patchops/updates.json";
pub const LOCK_FORMAT: &str = "patchops-updates/v1";

/// What the downloads recorded: per package, per file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub format: String,
    #[serde(default)]
    pub packages: BTreeMap<String, BTreeMap<String, LockedFile>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockedFile {
    pub size: u64,
    pub sha256: String,
    /// Where it was downloaded from (after any mirror mapping).
    pub url: String,
}

impl Lock {
    /// The lock under `dir`; missing or unreadable: empty (nothing verified).
    pub fn load(dir: &Path) -> Lock {
        std::fs::read(dir.join(LOCK_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<Lock>(&b).ok())
            .filter(|l| l.format == LOCK_FORMAT)
            .unwrap_or_default()
    }

    pub fn save(&mut self, dir: &Path) -> Result<(), String> {
        self.format = LOCK_FORMAT.to_string();
        let path = dir.join(LOCK_FILE);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let mut text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        text.push('\n');
        crate::sync::write_atomically(&path, text.as_bytes()).map_err(|e| e.to_string())
    }
}

/// Readiness of one software update package, as plans show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateReadiness {
    pub package: String,
    pub ready: bool,
    /// Files the package needs (patches and generated files).
    pub files: usize,
    /// Files not in the source directory.
    #[serde(default)]
    pub missing: Vec<String>,
    /// Files present but not verified, each with the reason.
    #[serde(default)]
    pub unverified: Vec<Unverified>,
    /// Why the package is not ready, in one sentence (none when ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// What each selection resolved to, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selections: Vec<super::resolve::SelectionOutcome>,
    /// What the signature checks reported without refusing a file (e.g.
    /// an expired certificate), each prefixed with its file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unverified {
    pub file: String,
    pub why: String,
}

impl UpdateReadiness {
    /// A package whose files cannot even be listed (no catalog, bad
    /// selection).
    pub fn unresolved(package: &str, why: String) -> UpdateReadiness {
        UpdateReadiness {
            package: package.to_string(),
            ready: false,
            files: 0,
            missing: Vec::new(),
            unverified: Vec::new(),
            why: Some(why),
            selections: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// A file a package needs: a patch (checked against the lock) or a
/// generated file (checked against its expected content).
pub enum Needed<'a> {
    Patch(&'a str),
    Generated { name: &'a str, content: &'a str },
}

/// SHA-256 (lowercase hex) and size of a file, read in blocks.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// Largest update file whose signature is checked (the download's own
/// limit).
pub const MAX_SIGNED_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Reads a whole file (bounded) for its signature check; its size and
/// SHA-256 too.
pub fn read_file(path: &Path) -> std::io::Result<(u64, String, Vec<u8>)> {
    let meta = std::fs::metadata(path)?;
    if meta.len() > MAX_SIGNED_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_SIGNED_FILE_BYTES} bytes"
        )));
    }
    let bytes = std::fs::read(path)?;
    let sha = hex::encode(Sha256::digest(&bytes));
    Ok((bytes.len() as u64, sha, bytes))
}

/// Checks every needed file of `package` in `source`; with `trust`
/// (`verifySignature`), each patch's Authenticode signature too.
pub fn check(
    package: &str,
    source: &Path,
    needed: &[Needed<'_>],
    lock: &Lock,
    trust: Option<&TrustStore>,
) -> UpdateReadiness {
    let locked = lock.packages.get(package);
    let mut missing = Vec::new();
    let mut unverified = Vec::new();
    let mut notes = Vec::new();
    for n in needed {
        match n {
            Needed::Patch(name) => {
                let path = source.join(name);
                if !path.is_file() {
                    missing.push(name.to_string());
                    continue;
                }
                let Some(entry) = locked.and_then(|l| l.get(*name)) else {
                    unverified.push(Unverified {
                        file: name.to_string(),
                        why: format!("not recorded by a download (no entry in {LOCK_FILE})"),
                    });
                    continue;
                };
                let read = match trust {
                    None => hash_file(&path).map(|(size, sha)| (size, sha, None)),
                    Some(_) => read_file(&path).map(|(size, sha, b)| (size, sha, Some(b))),
                };
                match read {
                    Err(e) => unverified.push(Unverified {
                        file: name.to_string(),
                        why: format!("cannot be read: {e}"),
                    }),
                    Ok((size, _, _)) if size != entry.size => unverified.push(Unverified {
                        file: name.to_string(),
                        why: format!("is {size} bytes; the download recorded {}", entry.size),
                    }),
                    Ok((_, sha, _)) if sha != entry.sha256 => unverified.push(Unverified {
                        file: name.to_string(),
                        why: "its SHA-256 differs from the one recorded at download (changed or damaged)".into(),
                    }),
                    Ok((_, _, Some(bytes))) => {
                        let trust = trust.expect("read whole only with a trust store");
                        match super::signature::check(name, &bytes, trust) {
                            Ok(v) => notes.extend(v.notes.iter().map(|n| format!("{name}: {n}"))),
                            Err(why) => unverified.push(Unverified {
                                file: name.to_string(),
                                why,
                            }),
                        }
                    }
                    Ok(_) => {}
                }
            }
            Needed::Generated { name, content } => match std::fs::read(source.join(name)) {
                Err(_) => missing.push(name.to_string()),
                Ok(b) if b != content.as_bytes() => unverified.push(Unverified {
                    file: name.to_string(),
                    why: "differs from the generated content (the download writes it)".into(),
                }),
                Ok(_) => {}
            },
        }
    }
    let why = match (missing.len(), unverified.len()) {
        (0, 0) => None,
        (m, 0) => Some(format!("{m} file(s) to download")),
        (0, u) => Some(format!("{u} file(s) not verified")),
        (m, u) => Some(format!("{m} file(s) to download, {u} not verified")),
    };
    UpdateReadiness {
        package: package.to_string(),
        ready: why.is_none(),
        files: needed.len(),
        missing,
        unverified,
        why,
        selections: Vec::new(),
        notes,
    }
}
