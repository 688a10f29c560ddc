//! Reading an inventory file (CSV, JSON or YAML) into machines.
//!
//! Importing is all or nothing: a file with one bad row imports nothing, so
//! a half-read inventory never shrinks a collection by accident. Every
//! problem found is reported at once (up to a cap), each with where it is,
//! the property, the value found and what was expected, because inventory
//! files are usually exported by another tool and fixed in bulk.

mod csv;
mod document;
#[cfg(test)]
mod tests;
mod values;

use std::collections::HashMap;
use std::path::Path;

use super::machine::Machine;
use super::problem::{FieldProblem, Found, ImportError, Location, Problem};
use super::validation::{canonicalize_machine, validate_machine};
use csv::parse_csv;
use document::{parse_json, parse_yaml};

/// Largest inventory accepted, in bytes. Big enough for a million machines
/// in CSV; beyond it parsing would hold too much memory on the site server.
pub const MAX_INVENTORY_BYTES: usize = 64 << 20;
/// Most machines one inventory may list.
pub const MAX_MACHINES: usize = 1_000_000;
/// Problems listed in an [`ImportError`]; the rest are only counted, since
/// a file with thousands of problems is usually wrong in one systematic way.
pub const MAX_PROBLEMS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InventoryFormat {
    Csv,
    Json,
    Yaml,
}

impl InventoryFormat {
    /// The format a file's extension names (`.csv`, `.json`, `.yaml`,
    /// `.yml`, in any case).
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(InventoryFormat::Csv),
            "json" => Some(InventoryFormat::Json),
            "yaml" | "yml" => Some(InventoryFormat::Yaml),
            _ => None,
        }
    }
}

/// Reads an inventory. Returns every machine, or every problem found (up to
/// [`MAX_PROBLEMS`]) and no machines.
pub fn parse_inventory(text: &str, format: InventoryFormat) -> Result<Vec<Machine>, ImportError> {
    parse_with_limits(text, format, Limits::DEFAULT)
}

/// Like [`parse_inventory`], for input not yet known to be UTF-8.
pub fn parse_inventory_bytes(
    bytes: &[u8],
    format: InventoryFormat,
) -> Result<Vec<Machine>, ImportError> {
    check_size(bytes.len(), Limits::DEFAULT)?;
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let good = &bytes[..e.valid_up_to()];
        ImportError::Malformed {
            line: Some(count_lines(good) + 1),
            column: None,
            message: "the inventory is not UTF-8 text".into(),
        }
    })?;
    parse_inventory(text, format)
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    max_bytes: usize,
    pub(super) max_machines: usize,
}

impl Limits {
    const DEFAULT: Limits = Limits {
        max_bytes: MAX_INVENTORY_BYTES,
        max_machines: MAX_MACHINES,
    };
}

fn check_size(bytes: usize, limits: Limits) -> Result<(), ImportError> {
    if bytes > limits.max_bytes {
        return Err(ImportError::TooLarge {
            bytes,
            limit: limits.max_bytes,
        });
    }
    Ok(())
}

fn parse_with_limits(
    text: &str,
    format: InventoryFormat,
    limits: Limits,
) -> Result<Vec<Machine>, ImportError> {
    check_size(text.len(), limits)?;
    // Spreadsheet programs write a byte-order mark in front of CSV exports.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(ImportError::Empty);
    }
    match format {
        InventoryFormat::Csv => parse_csv(text, limits),
        InventoryFormat::Json => parse_json(text, limits),
        InventoryFormat::Yaml => parse_yaml(text, limits),
    }
}

pub(super) fn count_lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Gathers machines and problems row by row, and finds duplicate names,
/// which no single row can see.
#[derive(Default)]
pub(super) struct Collector {
    machines: Vec<Machine>,
    problems: Vec<Problem>,
    omitted: usize,
    first_row_of: HashMap<String, Location>,
}

impl Collector {
    pub(super) fn problem(&mut self, problem: Problem) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(problem);
        } else {
            self.omitted += 1;
        }
    }

    /// Adds a decoded machine with the problems decoding found, after
    /// canonicalizing and validating it.
    pub(super) fn machine(
        &mut self,
        location: Location,
        mut machine: Machine,
        mut problems: Vec<FieldProblem>,
    ) {
        canonicalize_machine(&mut machine);
        if let Err(more) = validate_machine(&machine) {
            // A fact that could not be decoded is absent from `machine`;
            // saying so again ("found nothing") would only repeat it.
            let undecoded: Vec<String> = problems.iter().map(|p| p.field.clone()).collect();
            problems.extend(more.into_iter().filter(|p| !undecoded.contains(&p.field)));
        }
        if !machine.name.is_empty() {
            if let Some(first) = self.first_row_of.get(&machine.key()) {
                problems.push(
                    FieldProblem::new(
                        "name",
                        "a name not already in the inventory (names ignore case)",
                        Found::value(&machine.name),
                    )
                    .hint(Some(format!("also in {first}"))),
                );
            } else {
                self.first_row_of.insert(machine.key(), location);
            }
        }
        for problem in problems {
            self.problem(Problem::in_field(location, problem));
        }
        if self.problems.is_empty() {
            self.machines.push(machine);
        }
    }

    pub(super) fn finish(self) -> Result<Vec<Machine>, ImportError> {
        if !self.problems.is_empty() {
            return Err(ImportError::Invalid {
                problems: self.problems,
                omitted: self.omitted,
            });
        }
        if self.machines.is_empty() {
            return Err(ImportError::NoMachines);
        }
        Ok(self.machines)
    }
}
