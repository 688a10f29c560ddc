//! `patchops inventory import`, `patchops inventory scan-import` and
//! `patchops machine revoke`.

use std::path::PathBuf;

use super::{block_on, exit, report_error, with_store, Format, StateArgs};
use crate::inventory::{machine_key, parse_inventory, InventoryFormat};
use crate::ops::OpError;
use crate::render::Style;

#[derive(Debug, clap::Subcommand)]
pub enum InventoryCommand {
    /// Add or update machines from a CSV, JSON or YAML file (all or nothing).
    Import {
        /// The inventory file (.csv, .json, .yaml or .yml).
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Evaluate machines' scan facts against a catalog and store their
    /// patch states (each machine's states replace its previous ones), for
    /// `status updates`.
    ScanImport {
        /// MSSecure.XML or an Office update catalog.
        #[arg(long)]
        catalog: PathBuf,
        /// A scan-facts file, or a directory of them (.json, .yaml, .yml;
        /// not recursive).
        #[arg(long)]
        facts: PathBuf,
        /// Machines per transaction.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
        batch: u32,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        state: StateArgs,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum MachineCommand {
    /// Revoke every agent token of a machine; it must register again.
    Revoke {
        name: String,
        #[command(flatten)]
        state: StateArgs,
    },
}

pub fn run_inventory(command: InventoryCommand, style: Style) -> u8 {
    let (file, format, state) = match command {
        InventoryCommand::Import {
            file,
            format,
            state,
        } => (file, format, state),
        InventoryCommand::ScanImport {
            catalog,
            facts,
            batch,
            format,
            state,
        } => return scan_import(&catalog, &facts, batch as usize, format, &state, style),
    };
    let machines = match read(&file) {
        Ok(m) => m,
        Err(e) => {
            report_error(&e, style);
            return exit::FAILED;
        }
    };
    let result = block_on(with_store(&state, async |store| {
        let now = jiff::Timestamp::now().as_millisecond();
        Ok(store.upsert_machines(&machines, now).await?)
    }));
    match result {
        Ok(records) => {
            let changed = records.iter().filter(|r| r.changed).count();
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::json!({
                        "file": file.display().to_string(),
                        "machines": records.len(),
                        "changed": changed,
                        "unchanged": records.len() - changed,
                    })
                ),
                Format::Human => println!(
                    "Imported {} machines from {}: {changed} added or changed, {} unchanged.",
                    records.len(),
                    file.display(),
                    records.len() - changed
                ),
            }
            exit::OK
        }
        Err(e) => {
            report_error(&e, style);
            exit::FAILED
        }
    }
}

fn read(file: &std::path::Path) -> Result<Vec<crate::inventory::Machine>, OpError> {
    let format = InventoryFormat::from_path(file).ok_or_else(|| {
        OpError::Input(format!(
            "{}: unknown inventory format (expected a .csv, .json, .yaml or .yml file)",
            file.display()
        ))
    })?;
    let text = std::fs::read_to_string(file)
        .map_err(|e| OpError::Input(format!("cannot read {}: {e}", file.display())))?;
    parse_inventory(&text, format)
        .map_err(|e| OpError::Input(format!("{}: nothing was imported:\n{e}", file.display())))
}

pub fn run_machine(command: MachineCommand, style: Style) -> u8 {
    let MachineCommand::Revoke { name, state } = command;
    let key = machine_key(&name);
    let result = block_on(with_store(&state, async |store| {
        let now = jiff::Timestamp::now().as_millisecond();
        Ok(store.revoke_machine_tokens(&key, now).await?)
    }));
    match result {
        Ok(0) => {
            report_error(
                &OpError::Input(format!("{name} has no active token")),
                style,
            );
            exit::FAILED
        }
        Ok(n) => {
            println!("Revoked {n} token(s) of {name}; it must register again.");
            exit::OK
        }
        Err(e) => {
            report_error(&e, style);
            exit::FAILED
        }
    }
}

/// The scan-facts files: the file itself, or a directory's `.json`,
/// `.yaml` and `.yml` files in name order.
fn facts_files(path: &std::path::Path) -> Result<Vec<PathBuf>, OpError> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| OpError::Input(format!("{shown}: {e}")))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| OpError::Input(format!("{shown}: {e}")))? {
        let p = entry
            .map_err(|e| OpError::Input(format!("{shown}: {e}")))?
            .path();
        if p.is_file() && crate::applicability::FactsFormat::from_path(&p).is_some() {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(OpError::Input(format!(
            "{shown}: no .json, .yaml or .yml scan-facts file"
        )));
    }
    Ok(files)
}

fn scan_import(
    catalog: &std::path::Path,
    facts: &std::path::Path,
    batch: usize,
    format: Format,
    state: &StateArgs,
    style: Style,
) -> u8 {
    use crate::applicability::{Counts, Engine};

    // Everything is read and evaluated before the store is touched: a bad
    // file imports nothing.
    let prepared = (|| -> Result<_, OpError> {
        let loaded = super::catalog::load(catalog).map_err(OpError::Input)?;
        let mut all = Vec::new();
        for f in facts_files(facts)? {
            all.push(super::catalog::read_facts(&f).map_err(OpError::Input)?);
        }
        let mut seen = std::collections::HashSet::new();
        for f in &all {
            if !seen.insert(machine_key(&f.machine)) {
                return Err(OpError::Input(format!(
                    "machine `{}` has more than one scan-facts file",
                    f.machine
                )));
            }
        }
        Ok((loaded, all))
    })();
    let (loaded, all) = match prepared {
        Ok(p) => p,
        Err(e) => {
            report_error(&e, style);
            return exit::FAILED;
        }
    };
    super::catalog::report_bad_bulletins(catalog, &loaded);
    let engine = Engine::new(&loaded.catalog);
    // Each machine's states of this catalog's scan agent are replaced; a
    // scan with the other catalog type keeps its own.
    let agent = crate::applicability::scan_agent(loaded.catalog.kind);
    let now = jiff::Timestamp::now();
    let mut counts = Counts::default();
    let result = block_on(with_store(state, async |store| {
        let mut written = 0;
        for chunk in all.chunks(batch) {
            let mut rows = Vec::new();
            let mut machines = Vec::with_capacity(chunk.len());
            for f in chunk {
                let states = engine.evaluate(f, now);
                for s in &states {
                    counts.add(s.status);
                }
                rows.extend(states.iter().map(|s| s.stored(&f.machine)));
                machines.push(machine_key(&f.machine));
            }
            written += store.replace_scan_states(&machines, agent, &rows).await?;
        }
        Ok(written)
    }));
    match result {
        Ok(written) => {
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::json!({
                        "catalog": catalog.display().to_string(),
                        "machines": all.len(),
                        "states": written,
                        "counts": counts,
                    })
                ),
                Format::Human => println!(
                    "Scanned {} machines against {}: {written} patch states stored \
                     ({} installed, {} missing, {} not applicable, {} unknown).",
                    all.len(),
                    catalog.display(),
                    counts.installed,
                    counts.missing,
                    counts.not_applicable,
                    counts.unknown
                ),
            }
            exit::OK
        }
        Err(e) => {
            report_error(&e, style);
            exit::FAILED
        }
    }
}
