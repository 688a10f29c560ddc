//! `patchops server`: runs the site server until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{exit, input_failure, Failure, Outcome, StateArgs};
use crate::ops::OpError;
use crate::secret::SecretSource;
use crate::server::reconcile::{Drift, ReconcileConfig};
use crate::server::{serve, ServerConfig};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    state: StateArgs,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443", value_name = "ADDR")]
    listen: SocketAddr,
    /// The enrollment secret agents register with: `env:NAME` or `file:PATH`.
    #[arg(long, value_name = "REF")]
    enroll_secret_from: SecretSource,
    /// The admin token for `plan|apply --site` (`env:NAME` or `file:PATH`);
    /// without it the admin API is off.
    #[arg(long, value_name = "REF")]
    admin_token_from: Option<SecretSource>,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    max_body: usize,
    /// How often to check the store for a new applied state, new
    /// inventory, and its health (e.g. 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    refresh: Duration,
    /// How long a checked agent token is trusted before it is checked
    /// again; a revocation takes effect within this time (0s: every request).
    #[arg(long, default_value = "10s", value_parser = parse_duration_or_zero)]
    token_cache_ttl: Duration,
    /// Reconcile the site continuously from this manifest directory: plan
    /// on every change and every --interval, and apply (--drift correct).
    /// With several servers on one store, one leads and reconciles.
    #[arg(long, value_name = "DIR")]
    manifests: Option<PathBuf>,
    /// Clone or fetch the manifest directory from this git repository on
    /// every interval, before planning (needs --manifests).
    #[arg(long, value_name = "URL", requires = "manifests")]
    git_pull: Option<String>,
    /// How often to reconcile without a file change (catches DP drift,
    /// runs DP update schedules, pulls git); also bounds the failover time.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    interval: Duration,
    /// `correct`: apply what differs; `detect`: only report it.
    #[arg(long, value_enum, default_value_t = Drift::Correct)]
    drift: Drift,
    #[command(flatten)]
    connections: ConnectionArgs,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// The connection limits of a patchops HTTP server (`server`, `dp serve`).
#[derive(Debug, clap::Args)]
pub(super) struct ConnectionArgs {
    /// How long a client may take to send a request's headers (at most
    /// 30s); an idle keep-alive connection is closed after it too.
    #[arg(long, default_value = "10s", value_parser = parse_header_timeout)]
    header_timeout: Duration,
    /// How long a client may take to send a request's body.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    body_timeout: Duration,
    /// How many connections are served at once; more wait until one closes.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// After SIGTERM or Ctrl-C, how long requests in flight may take to
    /// finish before their connections are dropped.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    shutdown_deadline: Duration,
}

impl ConnectionArgs {
    pub(super) fn limits(&self) -> crate::http_server::ConnectionLimits {
        crate::http_server::ConnectionLimits {
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            max_connections: self.max_connections as usize,
            shutdown_deadline: self.shutdown_deadline,
        }
    }
}

/// A header timeout: a slow client must not hold a connection long.
fn parse_header_timeout(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d > Duration::from_secs(30) {
        return Err("at most 30s".into());
    }
    Ok(d)
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::units::parse_duration(text)
}

/// A duration that may be zero (`0s`: off).
fn parse_duration_or_zero(text: &str) -> Result<Duration, String> {
    if matches!(text.trim(), "0" | "0s") {
        return Ok(Duration::ZERO);
    }
    parse_duration(text)
}

pub fn run(args: Args) -> Outcome {
    init_logging(args.log_format);
    let enroll_secret = args
        .enroll_secret_from
        .read()
        .map_err(|e| input_failure(format!("--enroll-secret-from: {e}")))?;
    let admin_token = args
        .admin_token_from
        .as_ref()
        .map(|s| s.read())
        .transpose()
        .map_err(|e| input_failure(format!("--admin-token-from: {e}")))?;
    if args.state.site.is_some() {
        return Err(Failure::Usage(
            "a server needs its own store: give --state, not --site".into(),
        ));
    }
    let config = ServerConfig {
        listen: args.listen,
        enroll_secret,
        admin_token,
        max_body: args.max_body,
        refresh: args.refresh,
        token_cache_ttl: args.token_cache_ttl,
        connections: args.connections.limits(),
        reconcile: args.manifests.map(|manifests| ReconcileConfig {
            manifests,
            git_pull: args.git_pull,
            interval: args.interval,
            drift: args.drift,
            fetch: crate::sync::FetchOptions::default(),
        }),
    };
    let runtime = super::server_runtime()?;
    runtime.block_on(async {
        // The server holds the site's store itself.
        let store = args.state.open().await?.local("server")?.clone();
        serve(
            store,
            config,
            |addr| {
                // Tests and scripts read the bound address (with port 0) here.
                println!("listening on http://{addr}");
                use std::io::Write;
                let _ = std::io::stdout().flush();
            },
            super::shutdown_signal(),
        )
        .await
        .map_err(|e| OpError::Input(e.to_string()))
    })?;
    Ok(exit::OK)
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PATCHOPS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
