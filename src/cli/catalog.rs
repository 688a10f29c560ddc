//! `patchops catalog inspect FILE`, `patchops catalog diff OLD NEW` and
//! `patchops catalog scan --catalog FILE --facts FILE`.

use std::path::{Path, PathBuf};

use super::{exit, line_failure, Format, Outcome};
use crate::applicability::{self, ScanFacts};
use crate::catalog::{self, Loaded, MAX_CATALOG_BYTES};
use crate::render;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show what a catalog holds: version, counts, every bulletin with its
    /// patches and detection data, and the problems found.
    Inspect {
        /// MSSecure.XML or an Office update catalog.
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Show the bulletins NEW adds, revises and removes compared with OLD.
    Diff {
        old: PathBuf,
        new: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Evaluate one machine's scan facts against a catalog: each
    /// bulletin's state (installed, missing, not applicable, unknown) per
    /// affected product the machine has.
    Scan {
        /// MSSecure.XML or an Office update catalog.
        #[arg(long)]
        catalog: PathBuf,
        /// The machine's scan facts (.json, .yaml or .yml; see
        /// docs/scan-facts.md).
        #[arg(long)]
        facts: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
}

pub fn run(command: Command) -> Outcome {
    match command {
        Command::Inspect { file, format } => {
            let loaded = load(&file).map_err(line_failure)?;
            match format {
                Format::Json => println!("{}", render::catalog::inspect_json(&file, &loaded)),
                Format::Human => print!("{}", render::catalog::inspect_human(&file, &loaded)),
            }
        }
        Command::Diff { old, new, format } => {
            let (o, n) = (
                load(&old).map_err(line_failure)?,
                load(&new).map_err(line_failure)?,
            );
            for (file, l) in [(&old, &o), (&new, &n)] {
                for p in &l.problems {
                    if p.severity == catalog::ProblemSeverity::Error {
                        eprintln!("{}", render::catalog::problem_line(file, p));
                    }
                }
            }
            let d = catalog::diff(&o.catalog, &n.catalog);
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&d).expect("a diff serializes")
                ),
                Format::Human => print!("{}", render::catalog::diff_human(&d)),
            }
        }
        Command::Scan {
            catalog,
            facts,
            format,
        } => {
            let loaded = load(&catalog).map_err(line_failure)?;
            let facts = read_facts(&facts).map_err(line_failure)?;
            report_bad_bulletins(&catalog, &loaded);
            let now = jiff::Timestamp::now();
            let states = applicability::evaluate(&loaded.catalog, &facts, now);
            match format {
                Format::Json => println!(
                    "{}",
                    render::catalog::scan_json(&loaded.catalog, &facts, now, &states)
                ),
                Format::Human => print!("{}", render::catalog::scan_human(&facts, &states)),
            }
        }
    }
    Ok(exit::OK)
}

/// Prints the bulletins left out of a catalog (they are not evaluated).
pub(super) fn report_bad_bulletins(file: &Path, loaded: &Loaded) {
    for p in &loaded.problems {
        if p.severity == catalog::ProblemSeverity::Error {
            eprintln!("{}", render::catalog::problem_line(file, p));
        }
    }
}

/// Reads one machine's scan facts; the error names the file.
pub(super) fn read_facts(file: &Path) -> Result<ScanFacts, String> {
    let name = file.display();
    let format = applicability::FactsFormat::from_path(file).ok_or_else(|| {
        format!("{name}: unknown scan-facts format (expected a .json, .yaml or .yml file)")
    })?;
    let text = std::fs::read_to_string(file).map_err(|e| format!("{name}: {e}"))?;
    applicability::parse_facts(&text, format).map_err(|e| format!("{name}: {e}"))
}

/// Reads and parses a catalog; the error names the file.
pub(super) fn load(file: &Path) -> Result<Loaded, String> {
    let name = file.display();
    let meta = std::fs::metadata(file).map_err(|e| format!("{name}: {e}"))?;
    if meta.len() > MAX_CATALOG_BYTES as u64 {
        return Err(format!(
            "{name}: the catalog is {} bytes; the limit is {MAX_CATALOG_BYTES} bytes",
            meta.len()
        ));
    }
    let bytes = std::fs::read(file).map_err(|e| format!("{name}: {e}"))?;
    catalog::read_any(&bytes).map_err(|e| format!("{name}: {e}"))
}
