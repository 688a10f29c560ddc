//! Operations: what one command does, start to finish, over the library's
//! pure parts and the store. The CLI parses arguments and calls one of these
//! (cargo's `ops` pattern); printing stays in the CLI.

pub mod apply;
pub mod distribute;
pub mod impact;
pub mod lock;
pub mod plan;
pub mod planfile;
pub mod scan_import;
pub mod state;
pub mod status;

use crate::ops::planfile::PlanFileError;
use crate::plan::Refusal;
use crate::records::LockHolder;
use crate::store::StoreError;
use crate::validate::Report;

/// Who runs an operation, recorded in locks and the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub host: String,
    pub pid: u32,
    /// The command line, for lock holders and the audit log, with every
    /// password an argument carries replaced by `***`.
    pub command: String,
}

impl Actor {
    /// `PATCHOPS_ACTOR`, else the user name; the host's name. `argv` is the
    /// command line as given; it is redacted here, where it is recorded, so
    /// no lock record or audit entry ever holds a password.
    pub fn current(argv: impl IntoIterator<Item = String>) -> Actor {
        let command = redacted_command_line(argv);
        let name = ["PATCHOPS_ACTOR", "USER", "LOGNAME"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "unknown".to_string());
        Actor {
            name,
            host: host_name(),
            pid: std::process::id(),
            command,
        }
    }
}

/// `argv` joined by spaces, each argument that holds a URL (`--state
/// postgres://user:PASS@host/db`, `--state=…`, a git remote) shown with its
/// passwords masked as [`crate::secret::display_url`] masks them.
pub fn redacted_command_line(argv: impl IntoIterator<Item = String>) -> String {
    argv.into_iter()
        .map(|arg| {
            if arg.contains("://") || arg.to_ascii_lowercase().contains("password=") {
                crate::secret::display_url(&arg)
            } else {
                arg
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The host an audit record names (`localhost` when it has no name).
pub fn host_name() -> String {
    crate::host::name().unwrap_or_else(|| "localhost".to_string())
}

/// Why an operation did not complete. Every variant leaves the state as it
/// was.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("the manifests are invalid")]
    Invalid(Box<Report>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("plan refused: {0}")]
    Refused(#[from] Refusal),
    #[error(transparent)]
    PlanFile(#[from] PlanFileError),
    #[error("the plan is stale: it was made against serial {planned} of the state, which is now at serial {current}{}", if *.fingerprint_only { " with different objects" } else { "" })]
    Stale {
        planned: i64,
        current: i64,
        fingerprint_only: bool,
    },
    #[error("the plan was made for another state store ({planned}); this store is {current}")]
    OtherStore { planned: String, current: String },
    #[error("the state belongs to site {state}; the plan is for site {planned}")]
    OtherSite { state: String, planned: String },
    #[error("the state is locked by {} on {} (pid {}, `{}`) since {}; lock ID {}", .0.holder, .0.host, .0.pid, .0.command, .0.acquired_at, .0.id)]
    Locked(Box<LockHolder>),
    #[error("{0}")]
    NotApproved(String),
    #[error("{0}")]
    Input(String),
}

impl OpError {
    pub fn help(&self) -> Option<String> {
        Some(match self {
            OpError::Refused(r) => r.help().to_string(),
            OpError::Stale { .. } => "run `patchops plan` again and apply the new plan".to_string(),
            OpError::Locked(h) => format!(
                "wait for it (--lock-timeout 5m), or if that process is gone: `patchops force-unlock {}`",
                h.id
            ),
            OpError::PlanFile(PlanFileError::Tampered) => "make a new plan; never edit a saved plan".to_string(),
            OpError::OtherStore { .. } | OpError::OtherSite { .. } => {
                "check --state (or PATCHOPS_STATE) and the manifest directory".to_string()
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::redacted_command_line;

    fn redacted(args: &[&str]) -> String {
        redacted_command_line(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn every_url_bearing_argument_is_redacted() {
        assert_eq!(
            redacted(&[
                "patchops",
                "apply",
                "--state",
                "postgres://ops:S3cret@db/site",
                "--state=postgres://ops:S3cret@db/site",
                "postgres://db/site?sslmode=require&password=S3cret",
                "--manifests=https://git:tok3n@git.example/site.git",
            ]),
            "patchops apply --state postgres://ops:***@db/site \
             --state=postgres://ops:***@db/site \
             postgres://db/site?sslmode=require&password=*** \
             --manifests=https://git:***@git.example/site.git"
        );
    }

    #[test]
    fn arguments_without_credentials_are_kept() {
        let args = [
            "patchops",
            "apply",
            "site",
            "--state",
            "sqlite://state.db",
            "--message",
            "ops@corp: weekly",
        ];
        assert_eq!(redacted(&args), args.join(" "));
    }
}
