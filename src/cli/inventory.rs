//! `patchops inventory import` and `patchops machine revoke`.

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
    let InventoryCommand::Import {
        file,
        format,
        state,
    } = command;
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
