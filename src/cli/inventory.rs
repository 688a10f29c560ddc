//! `patchops inventory import`, `patchops inventory scan-import` and
//! `patchops machine revoke`.

use std::path::PathBuf;

use super::{block_on, exit, input_failure, with_store, Format, Outcome, StateArgs};
use crate::inventory::{machine_key, parse_inventory, InventoryFormat};
use crate::ops::OpError;
use crate::untrusted::shown;

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

pub fn run_inventory(command: InventoryCommand) -> Outcome {
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
        } => return scan_import(&catalog, &facts, batch as usize, format, &state),
    };
    let machines = read(&file)?;
    let records = block_on(with_store(&state, async |store| {
        let now = jiff::Timestamp::now().as_millisecond();
        Ok(store.upsert_machines(&machines, now).await?)
    }))?;
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
    Ok(exit::OK)
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

pub fn run_machine(command: MachineCommand) -> Outcome {
    let MachineCommand::Revoke { name, state } = command;
    let key = machine_key(&name);
    let revoked = block_on(with_store(&state, async |store| {
        let now = jiff::Timestamp::now().as_millisecond();
        Ok(store.revoke_machine_tokens(&key, now).await?)
    }))?;
    if revoked == 0 {
        return Err(input_failure(format!(
            "{} has no active token",
            shown(&name)
        )));
    }
    println!(
        "Revoked {revoked} token(s) of {}; it must register again.",
        shown(&name)
    );
    Ok(exit::OK)
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
) -> Outcome {
    use crate::ops::scan_import;

    // Everything is read and checked before the store is touched: a bad
    // file imports nothing.
    let loaded = super::catalog::load(catalog).map_err(input_failure)?;
    let mut all = Vec::new();
    for f in facts_files(facts)? {
        all.push(super::catalog::read_facts(&f).map_err(input_failure)?);
    }
    scan_import::check_distinct(&all)?;
    super::catalog::report_bad_bulletins(catalog, &loaded);
    let now = jiff::Timestamp::now();
    let scan_import::Imported {
        states: written,
        counts,
    } = block_on(with_store(state, async |store| {
        scan_import::import(store, &loaded.catalog, &all, batch, now).await
    }))?;
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
    Ok(exit::OK)
}
