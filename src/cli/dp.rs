use std::path::PathBuf;

use super::{block_on, exit, input_failure, with_store, Format, Outcome, StateArgs};
use crate::dp::library::{Finding, Library};
use crate::untrusted::shown;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Re-hash every file on distribution points and report missing, corrupt
    /// and extra content (exit 1 when anything is wrong).
    Validate {
        /// Distribution points by name (as applied to the state); none: all.
        names: Vec<String>,
        /// Only check names and sizes (fast); the default re-hashes.
        #[arg(long)]
        quick: bool,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Serve a distribution point's content over HTTP.
    Serve {
        /// The distribution point, by name (its path comes from the state).
        #[arg(long, conflicts_with = "path", required_unless_present = "path")]
        dp: Option<String>,
        /// Or the content library directory itself.
        #[arg(long)]
        path: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        #[command(flatten)]
        connections: super::server::ConnectionArgs,
        #[command(flatten)]
        state: StateArgs,
    },
}

pub fn run(command: Command) -> Outcome {
    match command {
        Command::Validate {
            names,
            quick,
            format,
            state,
        } => validate(&names, !quick, format, &state),
        Command::Serve {
            dp,
            path,
            listen,
            connections,
            state,
        } => serve(dp, path, listen, connections.limits(), &state),
    }
}

fn validate(names: &[String], deep: bool, format: Format, state: &StateArgs) -> Outcome {
    let dps = block_on(with_store(state, async |store| {
        crate::ops::state::dp_library_paths(store).await
    }))?;
    if let Some(name) = names
        .iter()
        .find(|name| !dps.iter().any(|(n, _)| n == *name))
    {
        return Err(no_such_dp(name));
    }
    let mut report = Vec::new();
    let mut problems = 0;
    for (name, path) in dps
        .iter()
        .filter(|(n, _)| names.is_empty() || names.contains(n))
    {
        let findings = Library::open(std::path::Path::new(path))
            .and_then(|lib| lib.validate(deep))
            .map_err(|e| input_failure(format!("{name}: {e}")))?;
        problems += findings.len();
        report.push((name.clone(), path.clone(), findings));
    }
    match format {
        Format::Json => {
            let doc: Vec<_> = report.iter().map(|(n, p, f)| serde_json::json!({"dp": n, "path": p, "deep": deep, "findings": f})).collect();
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        Format::Human => {
            for (name, path, findings) in &report {
                if findings.is_empty() {
                    println!("{} ({}): ok", shown(name), shown(path));
                }
                for f in findings {
                    let line = match f {
                        Finding::Missing {
                            package,
                            path,
                            sha256,
                        } => format!("missing: {} of {package:?} ({sha256})", shown(path)),
                        Finding::Corrupt { sha256, reason } => {
                            format!("corrupt: {}: {}", shown(sha256), shown(reason))
                        }
                        // Whoever writes to the DP's share names these files.
                        Finding::Extra { file } => format!("extra: {}", shown(file)),
                    };
                    println!("{} ({}): {line}", shown(name), shown(path));
                }
            }
            if problems > 0 {
                println!("{problems} problems; `patchops apply --validate` copies missing and corrupt content again and removes extra files (`patchops plan --validate` shows what it will do)");
            }
        }
    }
    Ok(if problems == 0 {
        exit::OK
    } else {
        exit::FAILED
    })
}

fn no_such_dp(name: &str) -> super::Failure {
    input_failure(format!(
        "no distribution point `{}` in the state",
        shown(name)
    ))
}

fn serve(
    dp: Option<String>,
    path: Option<PathBuf>,
    listen: std::net::SocketAddr,
    limits: crate::http_server::ConnectionLimits,
    state: &StateArgs,
) -> Outcome {
    let root = match (dp, path) {
        (_, Some(path)) => path,
        (Some(name), None) => {
            let dps = block_on(with_store(state, async |store| {
                crate::ops::state::dp_library_paths(store).await
            }))?;
            match dps.into_iter().find(|(n, _)| *n == name) {
                Some((_, p)) => PathBuf::from(p),
                None => return Err(no_such_dp(&name)),
            }
        }
        (None, None) => return Err(input_failure("give --dp NAME or --path DIR")),
    };
    let config = crate::dp::serve::ServeConfig {
        root: root.clone(),
        connections: limits,
    };
    let shutdown = super::shutdown_signal();
    let runtime = super::server_runtime()?;
    runtime
        .block_on(crate::dp::serve::serve(
            config,
            listen,
            |addr| println!("serving {} on http://{addr}", root.display()),
            shutdown,
        ))
        .map_err(input_failure)?;
    Ok(exit::OK)
}
