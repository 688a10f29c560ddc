//! The command line: argument parsing and one thin function per command.
//! Commands call into the library and map results to exit codes; all
//! printing happens here and in [`crate::render`].

mod schema;
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

pub fn main() -> ExitCode {
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
    let code = match cli.command {
        Command::Validate {
            dir,
            strict,
            format,
        } => validate::run(&dir, strict, format, style),
        Command::Schema { out, docs, check } => schema::run(&out, docs.as_deref(), check, style),
    };
    ExitCode::from(code)
}
