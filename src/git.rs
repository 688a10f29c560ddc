//! The git commit a manifest directory is at, and whether its tree is dirty,
//! for plans and the audit log. Asks the `git` command; a directory outside
//! git (or a machine without git) has no commit, which is not an error.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Revision {
    /// The full commit hash of HEAD.
    pub commit: Option<String>,
    /// Uncommitted changes (tracked or untracked) under the directory.
    pub dirty: Option<bool>,
}

pub fn revision(dir: &Path) -> Revision {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let Some(commit) = git(&["rev-parse", "--verify", "--quiet", "HEAD"]).filter(|c| !c.is_empty())
    else {
        return Revision::default();
    };
    let dirty = git(&[
        "status",
        "--porcelain",
        "--untracked-files=normal",
        "--",
        ".",
    ])
    .map(|s| !s.is_empty());
    Revision {
        commit: Some(commit),
        dirty,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_directory_has_no_revision() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(revision(dir.path()), Revision::default());
    }

    #[test]
    fn commit_and_dirtiness_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let ok = Command::new("git")
                .arg("-C")
                .arg(dir.path())
                .args(args)
                .output()
                .map(|o| o.status.success());
            assert_eq!(ok.ok(), Some(true), "git {args:?}");
        };
        run(&["init", "-q"]);
        std::fs::write(dir.path().join("a.yaml"), "a: 1\n").unwrap();
        run(&["add", "."]);
        run(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-qm",
            "one",
        ]);
        let clean = revision(dir.path());
        assert_eq!(clean.commit.as_ref().map(String::len), Some(40));
        assert_eq!(clean.dirty, Some(false));
        std::fs::write(dir.path().join("a.yaml"), "a: 2\n").unwrap();
        assert_eq!(revision(dir.path()).dirty, Some(true));
    }
}
