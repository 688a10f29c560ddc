//! The agent's state directory (`--state-dir`): everything the agent must
//! remember between cycles and across restarts.
//!
//! ```text
//! <state>/lock            held (flock) by the running agent
//! <state>/token           the machine's bearer token, mode 0600, never logged
//! <state>/policy.json     the last policy the server sent, with its ETag
//! <state>/history.json    per advertisement and per program: last run, result, attempts
//! <state>/queue.jsonl     the durable status queue (see `queue.rs`)
//! <state>/content/<sha256>        verified content files (single instance)
//! <state>/content/<sha256>.part   a download in progress (resumed with Range)
//! <state>/runs/<run id>/          a package tree materialized for one run
//! <state>/scans/<scan agent>.json the newest patch-state report of a scan
//!                                 agent, until the server stored it
//! ```
//!
//! Every file but the queue is written atomically: a temporary file in the
//! same directory, fsync, rename, fsync of the directory. A crash leaves the
//! old version or the new one, never half of one.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::schedule::RunRecord;
use crate::atomic_file;

/// The bearer token. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(value: String) -> Token {
        Token(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

/// The last policy received: the ETag and the document as served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPolicy {
    pub etag: Option<String>,
    pub policy: serde_json::Value,
}

/// What happened before, by advertisement and by program (`package/program`,
/// for run-first programs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct History {
    #[serde(default)]
    pub advertisements: BTreeMap<String, RunRecord>,
    #[serde(default)]
    pub programs: BTreeMap<String, RunRecord>,
}

/// The state directory.
#[derive(Debug)]
pub struct StateDir {
    root: PathBuf,
    /// Held for the life of this value: one agent per state directory.
    _lock: fs::File,
}

impl StateDir {
    /// Creates the directory (mode 0700) when missing and takes its lock.
    pub fn open(root: &Path) -> Result<StateDir, String> {
        let reason = |what: &str, p: &Path, e: io::Error| format!("{what} {}: {e}", p.display());
        fs::create_dir_all(root).map_err(|e| reason("cannot create", root, e))?;
        let _ = fs::set_permissions(root, fs::Permissions::from_mode(0o700));
        for sub in ["content", "runs", "scans"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(|e| reason("cannot create", &dir, e))?;
        }
        let lock_path = root.join("lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| reason("cannot open", &lock_path, e))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor we own; no memory is shared.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(format!(
                "another agent is using the state directory {} (its lock is held)",
                root.display()
            ));
        }
        Ok(StateDir {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn queue_path(&self) -> PathBuf {
        self.root.join("queue.jsonl")
    }

    pub fn content_dir(&self) -> PathBuf {
        self.root.join("content")
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    pub fn token(&self) -> io::Result<Option<Token>> {
        match fs::read_to_string(self.root.join("token")) {
            Ok(text) if !text.trim().is_empty() => Ok(Some(Token(text.trim().to_string()))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Saves the token with mode 0600 (set at creation, never wider).
    pub fn save_token(&self, token: &Token) -> io::Result<()> {
        atomic_file::write(&self.root.join("token"), token.0.as_bytes(), 0o600)
    }

    pub fn clear_token(&self) -> io::Result<()> {
        match fs::remove_file(self.root.join("token")) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The last policy; None when there is none or it cannot be read (a
    /// policy is always fetched again then).
    pub fn policy(&self) -> Option<StoredPolicy> {
        let bytes = fs::read(self.root.join("policy.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn save_policy(&self, policy: &StoredPolicy) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(policy).map_err(io::Error::other)?;
        atomic_file::write(&self.root.join("policy.json"), &bytes, 0o600)
    }

    /// The run history; empty when there is none. A history that cannot be
    /// read is an error: running everything again would be worse.
    pub fn history(&self) -> Result<History, String> {
        let path = self.root.join("history.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not a run history: {e}", path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(History::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    pub fn save_history(&self, history: &History) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(history).map_err(io::Error::other)?;
        atomic_file::write(&self.root.join("history.json"), &bytes, 0o600)
    }

    fn scan_path(&self, scan_agent: &str) -> PathBuf {
        self.root.join("scans").join(format!("{scan_agent}.json"))
    }

    /// Saves a scan agent's newest patch-state report (atomically; it
    /// replaces an undelivered older one, which the server would replace
    /// anyway).
    pub fn save_scan_report(&self, scan_agent: &str, body: &[u8]) -> io::Result<()> {
        atomic_file::write(&self.scan_path(scan_agent), body, 0o600)
    }

    /// The reports waiting for the server: (scan agent, body), by name.
    pub fn scan_reports(&self) -> Result<Vec<(String, Vec<u8>)>, String> {
        let dir = self.root.join("scans");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(agent) = name.strip_suffix(".json") else {
                continue;
            };
            if agent.starts_with('.') {
                continue; // a temporary file of an interrupted write
            }
            let body = fs::read(entry.path())
                .map_err(|e| format!("cannot read {}: {e}", entry.path().display()))?;
            out.push((agent.to_string(), body));
        }
        out.sort();
        Ok(out)
    }

    /// Removes a delivered report — unless a newer scan replaced it since
    /// (its body differs): that one is still to be sent.
    pub fn remove_scan_report(&self, scan_agent: &str, delivered: &[u8]) -> io::Result<()> {
        let path = self.scan_path(scan_agent);
        match fs::read(&path) {
            Ok(current) if current != delivered => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            _ => {}
        }
        fs::remove_file(&path)?;
        atomic_file::sync_dir(&self.root.join("scans"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_file_is_private_and_not_in_debug() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        assert_eq!(state.token().unwrap(), None);
        let token = Token::new("secret-token-value".into());
        state.save_token(&token).unwrap();
        let mode = fs::metadata(dir.path().join("token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(state.token().unwrap(), Some(token.clone()));
        assert!(!format!("{token:?} {state:?}").contains("secret-token-value"));
        state.clear_token().unwrap();
        assert_eq!(state.token().unwrap(), None);
    }

    #[test]
    fn one_agent_per_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let _first = StateDir::open(dir.path()).unwrap();
        let second = StateDir::open(dir.path()).unwrap_err();
        assert!(second.contains("another agent"), "{second}");
    }

    #[test]
    fn scan_reports_wait_until_removed_and_a_newer_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        assert!(state.scan_reports().unwrap().is_empty());
        state
            .save_scan_report("patchops-mssecure", b"{\"a\":1}")
            .unwrap();
        state
            .save_scan_report("patchops-office", b"{\"b\":1}")
            .unwrap();
        let pending = state.scan_reports().unwrap();
        assert_eq!(
            pending,
            vec![
                ("patchops-mssecure".to_string(), b"{\"a\":1}".to_vec()),
                ("patchops-office".to_string(), b"{\"b\":1}".to_vec())
            ]
        );
        // Reopened (a restart): still there.
        drop(state);
        let state = StateDir::open(dir.path()).unwrap();
        assert_eq!(state.scan_reports().unwrap().len(), 2);
        // A newer scan replaced the one delivered: it stays.
        state
            .save_scan_report("patchops-mssecure", b"{\"a\":2}")
            .unwrap();
        state
            .remove_scan_report("patchops-mssecure", b"{\"a\":1}")
            .unwrap();
        assert_eq!(state.scan_reports().unwrap().len(), 2);
        state
            .remove_scan_report("patchops-mssecure", b"{\"a\":2}")
            .unwrap();
        state
            .remove_scan_report("patchops-office", b"{\"b\":1}")
            .unwrap();
        assert!(state.scan_reports().unwrap().is_empty());
    }

    #[test]
    fn policy_and_history_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        assert!(state.policy().is_none());
        let policy = StoredPolicy {
            etag: Some("\"1-abc\"".into()),
            policy: serde_json::json!({"format": "patchops-policy/v1"}),
        };
        state.save_policy(&policy).unwrap();
        assert_eq!(state.policy(), Some(policy));
        let mut history = History::default();
        history.advertisements.insert(
            "A".into(),
            RunRecord {
                attempts: 2,
                ..RunRecord::default()
            },
        );
        state.save_history(&history).unwrap();
        assert_eq!(state.history().unwrap(), history);
        // No temporary files are left behind.
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
