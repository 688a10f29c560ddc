//! The command line: argument parsing and one thin function per command.
//! Each command calls into the library and returns an [`Outcome`]: the exit
//! code of a command that ran to its end, or the [`Failure`] that stopped
//! it, which [`main`] reports (once, in one format) and maps to its exit
//! code.

mod agent;
mod apply;
mod catalog;
mod dp;
mod inventory;
mod plan;
mod schema;
mod server;
mod state;
mod status;
mod sync;
mod updates;
mod validate;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::render::Style;

/// Exit codes, documented in README.md.
pub mod exit {
    /// Success; the manifests are valid.
    pub const OK: u8 = 0;
    /// Invalid input, or the command failed.
    pub const FAILED: u8 = 1;
    /// Wrong usage (clap's own exit code).
    pub const USAGE: u8 = 2;
    /// `plan --detailed-exitcode`: the plan has changes.
    pub const CHANGES: u8 = 2;
}

#[derive(Debug, Parser)]
#[command(
    name = "patchops",
    version,
    about = "Patch management the way SMS 2003 ran it, as a declarative GitOps reconciler"
)]
pub struct Cli {
    /// When to use colour and Unicode in human output.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    color: Color,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check every manifest under DIR and report every problem at once.
    Validate {
        /// The directory that holds the site's manifests.
        dir: PathBuf,
        /// Treat the patch-process lints (warnings) as errors.
        #[arg(long)]
        strict: bool,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Show what applying the manifests in DIR would change in the state.
    Plan(plan::Args),
    /// Apply a saved plan exactly, or plan DIR, show it and ask.
    Apply(apply::Args),
    /// Release the apply lock left by a process that is gone.
    ForceUnlock {
        /// The lock ID, as the error of a blocked apply shows it.
        id: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// List the applies recorded in the state (newest first).
    History {
        /// How many to show.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Distribution points: validate content, serve it over HTTP.
    #[command(subcommand)]
    Dp(dp::Command),
    /// Update catalogs (MSSecure.XML, Office): inspect and diff.
    #[command(subcommand)]
    Catalog(catalog::Command),
    /// Machines and their facts.
    #[command(subcommand)]
    Inventory(inventory::InventoryCommand),
    /// Agent credentials of machines.
    #[command(subcommand)]
    Machine(inventory::MachineCommand),
    /// Run the site server: the agents' API, client policy, the admin API.
    Server(server::Args),
    /// How advertisements and machines are doing, from agents' reports.
    #[command(subcommand)]
    Status(status::Command),
    /// Run the client agent: register, report inventory, poll policy, run
    /// what is due, report status.
    Agent(agent::Args),
    /// Inspect the objects in the state.
    #[command(subcommand)]
    State(state::Command),
    /// Fetch, verify and store the sync hosts' catalogs into their
    /// packages' sources (`sync status`: how each catalog fares).
    Sync(sync::Args),
    /// Software update packages: download and verify their update files.
    #[command(subcommand)]
    Updates(updates::Command),
    /// Write the JSON Schema of every kind (for editors and CI).
    Schema {
        /// The directory to write the schemas to.
        #[arg(long, default_value = "schemas")]
        out: PathBuf,
        /// Also write the field reference (Markdown) to this file.
        #[arg(long)]
        docs: Option<PathBuf>,
        /// Write nothing; fail if the files are missing or stale.
        #[arg(long)]
        check: bool,
    },
}

/// Where the state lives.
#[derive(Debug, Clone, clap::Args)]
pub struct StateArgs {
    /// The state store: `sqlite://FILE` (created when missing) or
    /// `postgres://USER@HOST/DB`.
    #[arg(
        long = "state",
        env = "PATCHOPS_STATE",
        default_value = "sqlite://patchops.db",
        value_name = "URL"
    )]
    pub url: String,
    /// Work through a running site server instead of opening the store:
    /// its URL (`http://HOST:PORT`). Needs --token-from.
    #[arg(
        long,
        env = "PATCHOPS_SITE",
        value_name = "URL",
        conflicts_with = "url"
    )]
    pub site: Option<String>,
    /// The site server's admin token, by reference: `env:NAME` or
    /// `file:PATH`.
    #[arg(
        long,
        env = "PATCHOPS_TOKEN_FROM",
        value_name = "REF",
        requires = "site"
    )]
    pub token_from: Option<crate::secret::SecretSource>,
}

impl StateArgs {
    /// Opens the local store, or the site server behind `--site`.
    pub async fn open(&self) -> Result<crate::site::Site, crate::ops::OpError> {
        use crate::site::Site;
        match &self.site {
            None => Ok(Site::Local(crate::store::Store::open(&self.url).await?)),
            Some(site) => {
                let Some(source) = &self.token_from else {
                    return Err(crate::ops::OpError::Input(
                        "--site needs --token-from env:NAME (the server's admin token)".into(),
                    ));
                };
                let token = source
                    .read()
                    .map_err(|e| crate::ops::OpError::Input(format!("--token-from: {e}")))?;
                Ok(Site::Remote(crate::remote::RemoteSite::new(site, token)?))
            }
        }
    }
}

/// Runs an async operation on a small runtime: commands are short-lived and
/// mostly wait on the database.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(future),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(i32::from(exit::FAILED));
        }
    }
}

/// The runtime of a long-running server: every core, unlike the
/// short-lived commands.
fn server_runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| input_failure(format!("cannot start the async runtime: {e}")))
}

/// SIGTERM (service managers) or Ctrl-C.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

/// Opens the store, runs `f`, and closes the store whatever happened (on
/// SQLite, closing folds the write-ahead log back into the file).
async fn with_store<T>(
    state: &StateArgs,
    f: impl AsyncFnOnce(&crate::site::Site) -> Result<T, crate::ops::OpError>,
) -> Result<T, crate::ops::OpError> {
    let store = state.open().await?;
    let result = f(&store).await;
    store.close().await;
    result
}

/// What a command returns: `Ok` with the exit code of a command that ran
/// to its end ([`exit::OK`]; [`exit::FAILED`] when what it printed is a
/// failing verdict, such as invalid manifests or a distribution point that
/// fails validation; 2 for `plan --detailed-exitcode` with changes), or the
/// [`Failure`] that stopped it.
type Outcome = Result<u8, Failure>;

/// Why a command could not do its work; [`main`] reports it.
#[derive(Debug)]
enum Failure {
    /// An operation failed (exit code 1).
    Op(crate::ops::OpError),
    /// A failure already phrased as a diagnostic (exit code 1).
    Diagnostic(crate::diagnostic::Diagnostic),
    /// A failure of the catalog and update tools, printed as one line
    /// `error: MESSAGE` (their documented form; exit code 1).
    Line(String),
    /// Arguments that cannot work together (exit code 2, as clap's own).
    Usage(String),
}

impl From<crate::ops::OpError> for Failure {
    fn from(error: crate::ops::OpError) -> Failure {
        Failure::Op(error)
    }
}

/// A failure of the command's input (a file it cannot read, a value it
/// cannot use), described by `message`.
fn input_failure(message: impl std::fmt::Display) -> Failure {
    Failure::Op(crate::ops::OpError::Input(message.to_string()))
}

/// See [`Failure::Line`].
fn line_failure(message: impl std::fmt::Display) -> Failure {
    Failure::Line(message.to_string())
}

/// Prints a failure for people, with its help, and gives its exit code.
fn report(failure: Failure, style: Style) -> u8 {
    use crate::diagnostic::Diagnostic;
    let (diagnostic, code) = match failure {
        Failure::Op(crate::ops::OpError::Invalid(report)) => {
            print!("{}", crate::render::human(&report, style));
            return exit::FAILED;
        }
        Failure::Op(error) => (
            Diagnostic::error("failed", error.to_string()).with_help_opt(error.help()),
            exit::FAILED,
        ),
        Failure::Diagnostic(diagnostic) => (diagnostic, exit::FAILED),
        Failure::Line(message) => {
            eprintln!("error: {}", crate::untrusted::text(&message));
            return exit::FAILED;
        }
        Failure::Usage(message) => (Diagnostic::error("usage", message), exit::USAGE),
    };
    eprint!("{}", crate::render::one(&diagnostic, style));
    code
}

pub fn main() -> ExitCode {
    // Before any HTTP client exists (reqwest needs a TLS provider).
    crate::tls::install_default_provider();
    let cli = Cli::parse();
    let style = match cli.color {
        Color::Always => Style::Color,
        Color::Never => Style::Plain,
        Color::Auto
            if std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() =>
        {
            Style::Color
        }
        Color::Auto => Style::Plain,
    };
    let outcome = match cli.command {
        Command::Validate {
            dir,
            strict,
            format,
        } => validate::run(&dir, strict, format, style),
        Command::Plan(args) => plan::run(args, style),
        Command::Apply(args) => apply::run(args, style),
        Command::ForceUnlock { id, state } => state::force_unlock(&id, &state),
        Command::History {
            limit,
            format,
            state,
        } => state::history(limit, format, &state),
        Command::State(command) => state::run(command),
        Command::Dp(command) => dp::run(command),
        Command::Catalog(command) => catalog::run(command),
        Command::Inventory(command) => inventory::run_inventory(command),
        Command::Machine(command) => inventory::run_machine(command),
        Command::Server(args) => server::run(args),
        Command::Status(command) => status::run(command),
        Command::Sync(args) => sync::run(args, style),
        Command::Updates(command) => updates::run(command),
        Command::Agent(args) => agent::run(args),
        Command::Schema { out, docs, check } => schema::run(&out, docs.as_deref(), check),
    };
    ExitCode::from(outcome.unwrap_or_else(|failure| report(failure, style)))
}
