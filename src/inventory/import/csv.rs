//! CSV inventories: a header row of property names, one machine a row.

use std::collections::HashMap;

use super::values::{parse_addresses, parse_number, parse_service_pack, parse_timestamp};
use super::{Collector, Limits, MAX_PROBLEMS};
use crate::inventory::machine::Machine;
use crate::inventory::problem::{FieldProblem, Found, ImportError, Location, Problem};
use crate::inventory::property::{
    free_form_key, Fact, FACTS, FREE_FORM_PREFIX as PROPERTIES_PREFIX, MULTI_VALUE_SEPARATOR,
};
use crate::inventory::validation::key_problem;
use crate::suggest::did_you_mean;

/// A header cell: a fixed property (spelled as the query language spells
/// it) or a free-form one.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Column {
    Known(Fact),
    Property(String),
}

impl Column {
    fn name(&self) -> String {
        match self {
            Column::Known(fact) => fact.name().to_owned(),
            Column::Property(key) => format!("{PROPERTIES_PREFIX}{key}"),
        }
    }
}

pub(super) fn parse_csv(text: &str, limits: Limits) -> Result<Vec<Machine>, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let header = match records.next() {
        Some(record) => record.map_err(csv_error)?,
        None => return Err(ImportError::Empty),
    };
    let header_line = header.position().map_or(1, csv::Position::line);
    let columns = parse_header(&header, header_line)?;

    let mut collector = Collector::default();
    for (index, record) in records.enumerate() {
        let row = index + 1;
        if row > limits.max_machines {
            return Err(ImportError::TooManyMachines {
                limit: limits.max_machines,
            });
        }
        let record = record.map_err(csv_error)?;
        let line = record.position().map_or(0, csv::Position::line);
        let location = Location::Row { row, line };
        if record.len() != columns.len() {
            collector.problem(Problem::new(
                location,
                format!("{} cells, as in the header", columns.len()),
                Found::Described(format!("{}", record.len())),
            ));
            continue;
        }
        let mut machine = Machine::named(String::new());
        let mut problems = Vec::new();
        for (column, cell) in columns.iter().zip(record.iter()) {
            if !cell.is_empty() {
                set_cell(&mut machine, column, cell, &mut problems);
            }
        }
        collector.machine(location, machine, problems);
    }
    collector.finish()
}

fn csv_error(e: csv::Error) -> ImportError {
    let line = e.position().map(csv::Position::line);
    let message = match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "the inventory is not UTF-8 text".to_owned(),
        _ => format!("unreadable CSV: {e}"),
    };
    ImportError::Malformed {
        line,
        column: None,
        message,
    }
}

/// Maps header cells to columns. Row problems under a wrong header would
/// mostly be noise, so a bad header is reported alone.
fn parse_header(header: &csv::StringRecord, line: u64) -> Result<Vec<Column>, ImportError> {
    let mut columns = Vec::new();
    let mut problems = Vec::new();
    let mut first_column_of: HashMap<String, usize> = HashMap::new();
    for (index, cell) in header.iter().enumerate() {
        let location = Location::Header {
            line,
            column: Some(index + 1),
        };
        match parse_column(cell) {
            Ok(column) => {
                let name = column.name();
                if let Some(first) = first_column_of.get(&name.to_ascii_lowercase()) {
                    problems.push(Problem {
                        hint: Some(format!("also column {first}")),
                        ..Problem::new(location, "each property once", Found::value(cell))
                    });
                } else {
                    first_column_of.insert(name.to_ascii_lowercase(), index + 1);
                }
                columns.push(column);
            }
            Err((expected, hint)) => {
                let found = if cell.is_empty() {
                    Found::Nothing
                } else {
                    Found::value(cell)
                };
                problems.push(Problem {
                    hint,
                    ..Problem::new(location, expected, found)
                });
            }
        }
    }
    if !columns.contains(&Column::Known(Fact::Name)) && problems.is_empty() {
        problems.push(Problem {
            hint: Some("every machine needs a name".into()),
            ..Problem::new(
                Location::Header { line, column: None },
                "a `name` column",
                Found::Described("none".into()),
            )
        });
    }
    if problems.is_empty() {
        Ok(columns)
    } else {
        let omitted = problems.len().saturating_sub(MAX_PROBLEMS);
        problems.truncate(MAX_PROBLEMS);
        Err(ImportError::Invalid { problems, omitted })
    }
}

/// A header cell as a column, matched without case; or what was expected
/// and a suggestion.
fn parse_column(cell: &str) -> Result<Column, (String, Option<String>)> {
    if let Some(def) = Fact::lookup(cell) {
        return Ok(Column::Known(def.fact));
    }
    if let Some(key) = free_form_key(cell) {
        return match key_problem(key) {
            None => Ok(Column::Property(key.to_owned())),
            Some(expected) => Err((format!("`{PROPERTIES_PREFIX}` and {expected}"), None)),
        };
    }
    let suggestion = did_you_mean(cell, FACTS.iter().map(|def| def.name))
        .map(str::to_owned)
        .or_else(|| {
            // A misspelt free-form namespace: `property.owner`.
            let (namespace, key) = cell.split_once('.')?;
            did_you_mean(namespace, ["properties"]).map(|_| format!("{PROPERTIES_PREFIX}{key}"))
        });
    Err((
        "a property name such as `os.type` or `properties.<key>`".into(),
        suggestion.map(|s| format!("did you mean `{s}`?")),
    ))
}

fn set_cell(machine: &mut Machine, column: &Column, cell: &str, problems: &mut Vec<FieldProblem>) {
    let field = column.name();
    let prop = match column {
        Column::Property(key) => {
            machine.properties.insert(key.clone(), cell.to_owned());
            return;
        }
        Column::Known(prop) => *prop,
    };
    let text = || Some(cell.to_owned());
    match prop {
        Fact::Name => machine.name = cell.to_owned(),
        Fact::Domain => machine.domain = text(),
        Fact::OsName => machine.os.name = text(),
        Fact::OsType => machine.os.os_type = text(),
        Fact::OsVersion => machine.os.version = text(),
        Fact::OsServicePack => machine.os.service_pack = parse_service_pack(&field, cell, problems),
        Fact::Architecture => machine.architecture = text(),
        Fact::Site => machine.site = text(),
        Fact::Product => {
            machine.installed.products = split_values(cell).map(str::to_owned).collect()
        }
        Fact::MemoryMb => machine.hardware.memory_mb = parse_number(&field, cell, problems),
        Fact::DiskFreeMb => machine.hardware.disk_free_mb = parse_number(&field, cell, problems),
        Fact::Address => {
            machine.ip.addresses = parse_addresses(&field, split_values(cell), problems)
        }
        Fact::Subnet => machine.ip.subnets = parse_addresses(&field, split_values(cell), problems),
        Fact::LastHeartbeat => machine.last_heartbeat = parse_timestamp(&field, cell, problems),
    }
}

/// The values of a multi-valued cell; a trailing or doubled `;` adds none.
fn split_values(cell: &str) -> impl Iterator<Item = &str> {
    cell.split(MULTI_VALUE_SEPARATOR)
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

// ------------------------------------------------- typed values from text
