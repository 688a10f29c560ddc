use std::path::PathBuf;

use super::{block_on, exit, report_error, with_store, Format, StateArgs};
use crate::dp::library::{Finding, Library};
use crate::ops::OpError;
use crate::render::untrusted::shown;
use crate::render::Style;

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

pub fn run(command: Command, style: Style) -> u8 {
    match command {
        Command::Validate {
            names,
            quick,
            format,
            state,
        } => validate(&names, !quick, format, &state, style),
        Command::Serve {
            dp,
            path,
            listen,
            connections,
            state,
        } => serve(dp, path, listen, connections.limits(), &state, style),
    }
}

/// Name → library path of every distribution point in the state.
async fn dp_paths(store: &crate::site::Site) -> Result<Vec<(String, String)>, OpError> {
    let mut out = Vec::new();
    for o in store.objects().await? {
        if o.kind != "DistributionPoint" {
            continue;
        }
        let spec: serde_json::Value = serde_json::from_str(&o.spec).unwrap_or_default();
        if let Some(path) = spec["path"].as_str() {
            out.push((o.name.clone(), path.to_string()));
        }
    }
    Ok(out)
}

fn validate(names: &[String], deep: bool, format: Format, state: &StateArgs, style: Style) -> u8 {
    let dps = match block_on(with_store(state, async |store| dp_paths(store).await)) {
        Ok(dps) => dps,
        Err(e) => {
            report_error(&e, style);
            return exit::FAILED;
        }
    };
    for name in names {
        if !dps.iter().any(|(n, _)| n == name) {
            report_error(
                &OpError::Input(format!("no distribution point `{name}` in the state")),
                style,
            );
            return exit::FAILED;
        }
    }
    let mut report = Vec::new();
    let mut problems = 0;
    for (name, path) in dps
        .iter()
        .filter(|(n, _)| names.is_empty() || names.contains(n))
    {
        let findings =
            match Library::open(std::path::Path::new(path)).and_then(|lib| lib.validate(deep)) {
                Ok(f) => f,
                Err(e) => {
                    report_error(&OpError::Input(format!("{name}: {e}")), style);
                    return exit::FAILED;
                }
            };
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
                    println!("{name} ({path}): ok");
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
                    println!("{name} ({path}): {line}");
                }
            }
            if problems > 0 {
                println!("{problems} problems; `patchops apply` repairs missing and corrupt content (plan with --validate to see it)");
            }
        }
    }
    if problems == 0 {
        exit::OK
    } else {
        exit::FAILED
    }
}

fn serve(
    dp: Option<String>,
    path: Option<PathBuf>,
    listen: std::net::SocketAddr,
    limits: crate::http_server::ConnectionLimits,
    state: &StateArgs,
    style: Style,
) -> u8 {
    let root = match (dp, path) {
        (_, Some(path)) => path,
        (Some(name), None) => {
            match block_on(with_store(state, async |store| dp_paths(store).await)) {
                Ok(dps) => match dps.into_iter().find(|(n, _)| *n == name) {
                    Some((_, p)) => PathBuf::from(p),
                    None => {
                        report_error(
                            &OpError::Input(format!("no distribution point `{name}` in the state")),
                            style,
                        );
                        return exit::FAILED;
                    }
                },
                Err(e) => {
                    report_error(&e, style);
                    return exit::FAILED;
                }
            }
        }
        (None, None) => {
            report_error(
                &OpError::Input("give --dp NAME or --path DIR".into()),
                style,
            );
            return exit::FAILED;
        }
    };
    let config = crate::dp::serve::ServeConfig {
        root: root.clone(),
        connections: limits,
    };
    let shutdown = super::shutdown_signal();
    let Some(runtime) = super::server_runtime(style) else {
        return exit::FAILED;
    };
    let result = runtime.block_on(crate::dp::serve::serve(
        config,
        listen,
        |addr| println!("serving {} on http://{addr}", root.display()),
        shutdown,
    ));
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            report_error(&OpError::Input(e.to_string()), style);
            exit::FAILED
        }
    }
}
