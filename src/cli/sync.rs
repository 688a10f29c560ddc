//! `patchops sync DIR` and `patchops sync status`.

use std::path::PathBuf;
use std::time::Duration;

use super::{block_on, exit, with_store, Failure, Format, StateArgs};
use crate::diagnostic::Diagnostic;
use crate::ops::OpError;
use crate::records::rfc3339_from_epoch_ms;
use crate::render::{self, Style};
use crate::sync::{self, CatalogOutcome, FetchOptions, SyncOptions};
use crate::validate::{validate_dir, Options};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The directory that holds the site's manifests.
    #[arg(required = true)]
    dir: Option<PathBuf>,
    /// Only this sync host (its name or its `host`); default: every one.
    #[arg(long)]
    host: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Run as the scheduler does (SyncXML's `/unattend`): never prompt;
    /// exit 0 only when every catalog is unchanged or updated.
    #[arg(long)]
    unattended: bool,
    /// Attempts per download (connection errors, time-outs and 5xx answers
    /// are tried again).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    attempts: u32,
    /// The delay before the second attempt; it doubles with each attempt
    /// (jittered), up to 60 s. `500ms`, `2s`, `1m`.
    #[arg(long, default_value = "2s", value_parser = parse_delay)]
    retry_delay: Duration,
    /// How long connecting may take.
    #[arg(long, default_value = "10s", value_parser = parse_delay)]
    connect_timeout: Duration,
    /// How long one download may take in all.
    #[arg(long, default_value = "5m", value_parser = parse_delay)]
    timeout: Duration,
    #[command(flatten)]
    state: StateArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Each catalog's synchronization status: last attempt, last success,
    /// last error, failures in a row, next attempt, newest version.
    Status {
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        state: StateArgs,
    },
}

/// `500ms`, or a duration as manifests write it (`30s`, `5m`, `1h`).
fn parse_delay(text: &str) -> Result<Duration, String> {
    if let Some(ms) = text.strip_suffix("ms") {
        return ms
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| format!("invalid duration `{text}`"));
    }
    crate::units::parse_duration(text)
}

pub fn run(args: Args, style: Style) -> super::Outcome {
    if let Some(Command::Status { format, state }) = args.command {
        return status(format, &state);
    }
    let Some(dir) = args.dir.clone() else {
        return Err(Failure::Usage(
            "give the manifests directory: patchops sync DIR".into(),
        ));
    };
    let report = validate_dir(&dir, Options::default()).map_err(Failure::Diagnostic)?;
    if !report.is_valid() {
        // The findings go to stderr: stdout is the sync report.
        eprint!("{}", render::human(&report, style));
        return Ok(exit::FAILED);
    }
    let desired = &report.desired;
    let hosts: Vec<_> = desired
        .sync_hosts
        .values()
        .filter(|h| {
            args.host
                .as_deref()
                .is_none_or(|want| h.name() == want || h.spec.host.eq_ignore_ascii_case(want))
        })
        .collect();
    if hosts.is_empty() {
        let what = match &args.host {
            Some(h) => format!("there is no SyncHost `{h}` in {}", dir.display()),
            None => format!("there is no SyncHost in {}", dir.display()),
        };
        return Err(Failure::Diagnostic(
            Diagnostic::error("failed", what).with_help_opt(Some(
                "declare one (kind: SyncHost) with its catalogs".into(),
            )),
        ));
    }
    let options = FetchOptions {
        connect_timeout: args.connect_timeout,
        timeout: args.timeout,
        attempts: args.attempts,
        base_delay: args.retry_delay,
        ..FetchOptions::default()
    };
    let all = block_on(with_store(&args.state, async |site| {
        let store = site.local("sync")?;
        let mut all = Vec::new();
        for host in &hosts {
            // A proxy that cannot be set up fails every catalog of the host.
            let fetcher = sync::host_fetcher(&dir, &host.spec, &options)
                .map_err(|e| OpError::Input(format!("sync host `{}`: {e}", host.name())))?;
            let outcomes = sync::sync_once(
                store,
                &dir,
                desired,
                &host.spec,
                &fetcher,
                &SyncOptions {
                    now_ms: crate::server::now_ms(),
                    verifier: &sync::verifications_from_manifest,
                    summarize: None,
                },
            )
            .await;
            all.push((host.name().to_string(), outcomes));
        }
        Ok(all)
    }))?;
    let ok = all.iter().all(|(_, o)| o.iter().all(CatalogOutcome::is_ok));
    match args.format {
        Format::Json => {
            let hosts: Vec<_> = all
                .iter()
                .map(|(name, catalogs)| serde_json::json!({"name": name, "catalogs": catalogs}))
                .collect();
            let doc = serde_json::json!({"ok": ok, "unattended": args.unattended, "hosts": hosts});
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        Format::Human => {
            for (name, outcomes) in &all {
                println!("sync host {name}: {} catalog(s)", outcomes.len());
                for o in outcomes {
                    print!("{}", render::sync::catalog_outcome(o));
                }
            }
        }
    }
    Ok(if ok { exit::OK } else { exit::FAILED })
}

fn status(format: Format, state: &StateArgs) -> super::Outcome {
    let rows = block_on(with_store(state, async |site| {
        let store = site.local("sync status")?;
        let statuses = store.sync_status().await?;
        let mut rows = Vec::with_capacity(statuses.len());
        for s in statuses {
            let latest = store.catalog_versions(&s.url, 1).await?.into_iter().next();
            rows.push((s, latest));
        }
        Ok(rows)
    }))?;
    match format {
        Format::Json => {
            let doc: Vec<_> = rows
                .iter()
                .map(|(s, v)| {
                    let mut value = serde_json::to_value(s).unwrap_or_default();
                    if let Some(obj) = value.as_object_mut() {
                        obj.insert(
                            "nextAttemptAt".into(),
                            rfc3339_from_epoch_ms(s.next_attempt_ms).into(),
                        );
                        obj.insert(
                            "latestVersion".into(),
                            match v {
                                Some(v) => serde_json::json!({
                                    "id": v.id, "sha256": v.sha256, "size": v.size,
                                    "fetchedAt": rfc3339_from_epoch_ms(v.fetched_ms),
                                }),
                                None => serde_json::Value::Null,
                            },
                        );
                    }
                    value
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        Format::Human => {
            if rows.is_empty() {
                println!("no catalog has been synchronized yet (patchops sync DIR)");
            }
            for (s, v) in &rows {
                println!("{} {}", s.kind, s.url);
                println!(
                    "  last attempt {}",
                    rfc3339_from_epoch_ms(s.last_attempt_ms)
                );
                match s.last_success_ms {
                    Some(ms) => println!("  last success {}", rfc3339_from_epoch_ms(ms)),
                    None => println!("  last success never"),
                }
                if let Some(e) = &s.last_error {
                    println!(
                        "  last error   {e} ({} failure(s) in a row)",
                        s.consecutive_failures
                    );
                }
                println!(
                    "  next attempt {}",
                    rfc3339_from_epoch_ms(s.next_attempt_ms)
                );
                if let Some(v) = v {
                    println!(
                        "  version      {} (sha256 {}, {} bytes, fetched {})",
                        v.id.unwrap_or_default(),
                        render::short_hash(&v.sha256),
                        v.size,
                        rfc3339_from_epoch_ms(v.fetched_ms)
                    );
                }
            }
        }
    }
    Ok(exit::OK)
}
