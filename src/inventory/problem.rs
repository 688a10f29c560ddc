//! What an inventory import reports: every problem, each with where it is,
//! the property, the value found and what was expected.

use std::fmt;

use super::validation::excerpt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("the inventory is {bytes} bytes; at most {limit} bytes are accepted")]
    TooLarge { bytes: usize, limit: usize },
    #[error("the inventory lists more than {limit} machines")]
    TooManyMachines { limit: usize },
    #[error("the inventory is empty")]
    Empty,
    #[error("the inventory lists no machines")]
    NoMachines,
    /// The file could not be read as its format at all.
    #[error("{}", at_line(*line, *column, message))]
    Malformed {
        line: Option<u64>,
        column: Option<u64>,
        message: String,
    },
    /// Rows that were read but are wrong. `omitted` counts the problems
    /// beyond [`MAX_PROBLEMS`](super::MAX_PROBLEMS) that are not listed.
    #[error("{}", list_problems(problems, *omitted))]
    Invalid {
        problems: Vec<Problem>,
        omitted: usize,
    },
}

fn at_line(line: Option<u64>, column: Option<u64>, message: &str) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("line {l}, column {c}: {message}"),
        (Some(l), None) => format!("line {l}: {message}"),
        _ => message.to_owned(),
    }
}

fn list_problems(problems: &[Problem], omitted: usize) -> String {
    let mut lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
    if omitted > 0 {
        lines.push(format!("… and {omitted} more problems"));
    }
    lines.join("\n")
}

/// Where in the file a problem is. Lines are 1-based; CSV rows count data
/// rows from 1 (the header is not a row); JSON and YAML elements are
/// indexes into the machine list, from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Header { line: u64, column: Option<usize> },
    Row { row: usize, line: u64 },
    Element { index: usize, line: u64 },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Header { line, column } => {
                write!(f, "header (line {line})")?;
                if let Some(column) = column {
                    write!(f, ", column {column}")?;
                }
                Ok(())
            }
            Location::Row { row, line } => write!(f, "row {row} (line {line})"),
            Location::Element { index, line } => write!(f, "element {index} (line {line})"),
        }
    }
}

/// What was found where something else was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Nothing,
    /// The value itself, already cut to a readable length with control
    /// characters escaped.
    Value(String),
    /// A description, such as `a list` or `14 cells`.
    Described(String),
}

impl Found {
    pub(super) fn value(text: &str) -> Found {
        Found::Value(excerpt(text))
    }
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Nothing => f.write_str("nothing"),
            Found::Value(v) => write!(f, "`{v}`"),
            Found::Described(d) => f.write_str(d),
        }
    }
}

/// One thing wrong with one fact of a machine. `field` is the query
/// property name (`os.type`, `properties.owner`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: String,
    pub expected: String,
    pub found: Found,
    /// A suggestion or a pointer to related rows, e.g. `did you mean …?`.
    pub hint: Option<String>,
}

impl FieldProblem {
    pub(super) fn new(field: impl Into<String>, expected: impl Into<String>, found: Found) -> Self {
        FieldProblem {
            field: field.into(),
            expected: expected.into(),
            found,
            hint: None,
        }
    }

    pub(super) fn hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: ", self.field)?;
        write_expected(f, &self.expected, &self.found, self.hint.as_deref())
    }
}

fn write_expected(
    f: &mut fmt::Formatter<'_>,
    expected: &str,
    found: &Found,
    hint: Option<&str>,
) -> fmt::Result {
    write!(f, "expected {expected}, found {found}")?;
    if let Some(hint) = hint {
        write!(f, " ({hint})")?;
    }
    Ok(())
}

/// One problem in an inventory file. `field` is absent for problems with a
/// whole row or element (a ragged CSV row, a JSON element that is not an
/// object) or the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub location: Location,
    pub field: Option<String>,
    pub expected: String,
    pub found: Found,
    pub hint: Option<String>,
}

impl Problem {
    pub(super) fn new(location: Location, expected: impl Into<String>, found: Found) -> Self {
        Problem {
            location,
            field: None,
            expected: expected.into(),
            found,
            hint: None,
        }
    }

    pub(super) fn in_field(location: Location, problem: FieldProblem) -> Self {
        Problem {
            location,
            field: Some(problem.field),
            expected: problem.expected,
            found: problem.found,
            hint: problem.hint,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.location)?;
        if let Some(field) = &self.field {
            write!(f, ", field `{field}`")?;
        }
        f.write_str(": ")?;
        write_expected(f, &self.expected, &self.found, self.hint.as_deref())
    }
}
