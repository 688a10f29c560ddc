//! `patchops agent`: one cycle (`--once`) or cycles until SIGTERM/Ctrl-C.

use std::path::PathBuf;
use std::time::Duration;

use super::{exit, input_failure, Format, Outcome};
use crate::agent::{Agent, AgentConfig, CycleReport};
use crate::secret::SecretSource;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The site server's URL (`http://HOST:PORT`, or `https://` through a
    /// TLS-terminating reverse proxy).
    #[arg(long, value_name = "URL")]
    server: String,
    /// For `https://`: trust only the CA certificates in this PEM file
    /// (a private CA) instead of the system's certificate store.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// The enrollment secret, by reference: `env:NAME` or `file:PATH`
    /// (read only when the agent registers).
    #[arg(long, value_name = "REF")]
    enroll_secret_from: SecretSource,
    /// The agent's state directory (token, policy, history, status queue,
    /// content cache).
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// The machine name (default: the facts file's, else the host name).
    #[arg(long)]
    name: Option<String>,
    /// The machine's facts: a JSON or YAML inventory record (default: the
    /// name alone).
    #[arg(long, value_name = "FILE")]
    facts: Option<PathBuf>,
    /// The machine's scan facts for scan programs: products, service
    /// packs, file versions, registry values (JSON or YAML,
    /// docs/scan-facts.md); read at every scan.
    #[arg(long, value_name = "FILE")]
    scan_facts: Option<PathBuf>,
    /// Run one cycle and exit (for tests and cron).
    #[arg(long)]
    once: bool,
    /// Run this command (no shell; quoting as for command lines) when a
    /// program exits with 3010; the agent never restarts the machine.
    #[arg(long, value_name = "CMD")]
    restart_hook: Option<String>,
    /// Consider a user logged on (for programs' `canRun`); default: no one.
    #[arg(long)]
    user_logged_on: bool,
    /// Run optional advertisements (those without a schedule) once.
    #[arg(long)]
    run_optional: bool,
    /// Time limit of each request to the server (e.g. 30s).
    #[arg(long, default_value = "30s", value_parser = crate::units::parse_duration)]
    timeout: Duration,
    /// Time limit of each content download.
    #[arg(long, default_value = "1h", value_parser = crate::units::parse_duration)]
    download_timeout: Duration,
    /// Wait before retrying a failed program (e.g. 10m).
    #[arg(long, default_value = "10m", value_parser = crate::units::parse_duration)]
    retry_delay: Duration,
    /// A fixed clock (RFC 3339), for tests.
    #[arg(long, hide = true)]
    now: Option<jiff::Timestamp>,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

pub fn run(args: Args) -> Outcome {
    init_logging();
    let format = args.format;
    let once = args.once;
    let config = AgentConfig {
        server: args.server,
        enroll_secret: args.enroll_secret_from,
        state_dir: args.state_dir,
        name: args.name,
        facts: args.facts,
        scan_facts: args.scan_facts,
        restart_hook: args.restart_hook,
        user_logged_on: args.user_logged_on,
        run_optional: args.run_optional,
        timeout: args.timeout,
        download_timeout: args.download_timeout,
        retry_delay: args.retry_delay,
        now: args.now,
        ca_file: args.ca_file,
    };
    let agent = Agent::new(config).map_err(input_failure)?;
    let emit = move |report: &CycleReport| print_report(report, format);
    if once {
        let mut agent = agent;
        let report = super::block_on(agent.cycle());
        emit(&report);
        return Ok(exit::OK);
    }
    let runtime = super::server_runtime()?;
    runtime.block_on(agent.run_until(super::shutdown_signal(), emit));
    Ok(exit::OK)
}

fn print_report(report: &CycleReport, format: Format) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if format == Format::Json {
        let _ = writeln!(out, "{}", serde_json::to_string(report).unwrap_or_default());
        let _ = out.flush();
        return;
    }
    let version = report
        .policy_version
        .map(|v| format!(" (version {v})"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{}: registered {}, inventory {}, policy {}{version}",
        report.machine,
        if report.registered { "now" } else { "before" },
        if report.inventory_sent {
            "sent"
        } else {
            "not sent"
        },
        report.policy
    );
    for r in &report.runs {
        let code = r
            .exit_code
            .map(|c| format!(" [exit {c}]"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {}: {}{code} {}",
            r.advertisement, r.state, r.message
        );
    }
    let _ = writeln!(
        out,
        "status: {} delivered, {} queued",
        report.delivered, report.queued
    );
    if report.scans_delivered + report.scans_queued > 0 {
        let _ = writeln!(
            out,
            "patch states: {} scan reports delivered, {} waiting",
            report.scans_delivered, report.scans_queued
        );
    }
    if let Some(next) = &report.next_due {
        let _ = writeln!(out, "next due: {next}");
    }
    for e in &report.errors {
        let _ = writeln!(out, "error: {e}");
    }
    let _ = out.flush();
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PATCHOPS_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
