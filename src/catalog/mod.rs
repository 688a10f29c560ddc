//! Update catalogs: the normalized model ([`model`]), the readers of
//! MSSecure.XML ([`mssecure`]) and of the Office update catalog
//! ([`office`]) behind one trait, and the diff of two catalogs ([`diff`]).
//!
//! Pure: readers take bytes (the CLI reads the file) and return a
//! [`Loaded`] catalog with the problems found, or a [`CatalogError`] when
//! the file as a whole cannot be trusted (then nothing is loaded).

pub mod diff;
pub mod model;
pub mod mssecure;
pub mod office;
mod xml;

use serde::Serialize;

pub use diff::{diff, CatalogDiff};
pub use model::*;
pub use mssecure::MsSecureReader;
pub use office::OfficeReader;

/// Largest catalog read, in bytes. MSSecure.XML of 2001 is under 1 MB; the
/// last ones were a few MB.
pub const MAX_CATALOG_BYTES: usize = 256 << 20;
/// Deepest element nesting accepted (MSSecure.XML nests 7 deep).
pub const MAX_DEPTH: usize = 64;
/// Longest attribute value accepted, in bytes (the longest in the
/// fixture is about 2 KB).
pub const MAX_VALUE_BYTES: usize = 64 << 10;

/// Reads one catalog format.
pub trait CatalogReader {
    /// The format this reader reads.
    fn kind(&self) -> CatalogKind;
    /// Reads a whole catalog. Problems confined to one bulletin leave the
    /// rest loaded and are listed in [`Loaded::problems`]; anything that
    /// makes the file untrustworthy is an error and loads nothing.
    fn read(&self, bytes: &[u8]) -> Result<Loaded, CatalogError>;
}

/// A catalog and what was wrong with parts of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Loaded {
    pub catalog: Catalog,
    /// Bad bulletins (errors; the bulletin was left out) and warnings
    /// (tolerated quirks such as duplicate IDs), in file order.
    pub problems: Vec<Problem>,
}

impl Loaded {
    /// IDs (or `line N` when the ID is missing) of the bulletins left out.
    pub fn bad_bulletins(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in &self.problems {
            if p.severity == ProblemSeverity::Error {
                let b = p
                    .bulletin
                    .clone()
                    .unwrap_or_else(|| format!("line {}", p.line));
                if !out.contains(&b) {
                    out.push(b);
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProblemSeverity {
    /// The bulletin it names was not loaded.
    Error,
    /// Tolerated; everything was loaded.
    Warning,
}

/// A problem with one part of a catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    pub severity: ProblemSeverity,
    /// The bulletin concerned, when there is one.
    pub bulletin: Option<String>,
    /// The element and attribute, e.g. `FileChg@FileChangeID`.
    pub field: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            ProblemSeverity::Error => "error",
            ProblemSeverity::Warning => "warning",
        };
        write!(f, "{sev}: line {}, column {}", self.line, self.column)?;
        if let Some(b) = &self.bulletin {
            write!(f, ": bulletin {b}")?;
        }
        write!(f, ": {}: {}", self.field, self.message)
    }
}

/// Why a catalog was not loaded at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("the catalog is empty")]
    Empty,
    #[error("the catalog is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("line {line}, column {column}: byte 0x{byte:02X} is not UTF-8; catalogs are read as UTF-8 only")]
    NotUtf8 { line: u32, column: u32, byte: u8 },
    #[error("line {line}, column {column}: document type declaration refused: catalogs use no DTD, and entity declarations can expand without bound (XML bomb) or read other files")]
    Doctype { line: u32, column: u32 },
    #[error("line {line}, column {column}: the root element is <{found}>; expected <{expected}>")]
    WrongRoot {
        line: u32,
        column: u32,
        found: String,
        expected: String,
    },
    #[error("line {line}, column {column}: not an update catalog: the root element is <{found}>; expected <BulletinDatastore> (MSSecure.XML) or <OfficeUpdateCatalog>")]
    UnknownKind {
        line: u32,
        column: u32,
        found: String,
    },
    #[error("no root element: the catalog holds no XML element")]
    NoRoot,
    #[error("line {line}, column {column}: the catalog ends inside <{element}> (opened at line {open_line}); it is truncated")]
    Truncated {
        line: u32,
        column: u32,
        element: String,
        open_line: u32,
    },
    #[error("line {line}, column {column}: elements nested deeper than {limit} levels")]
    TooDeep {
        line: u32,
        column: u32,
        limit: usize,
    },
    #[error("line {line}, column {column}: {field}: value of {len} bytes is over the limit of {limit} bytes")]
    ValueTooLong {
        line: u32,
        column: u32,
        field: String,
        len: usize,
        limit: usize,
    },
    #[error("line {line}, column {column}: {field}: {message}")]
    Invalid {
        line: u32,
        column: u32,
        field: String,
        message: String,
    },
    #[error("line {line}, column {column}: malformed XML: {message}")]
    Syntax {
        line: u32,
        column: u32,
        message: String,
    },
}

/// The format of a catalog, from its root element (nothing else is read
/// beyond it).
pub fn detect_kind(bytes: &[u8]) -> Result<CatalogKind, CatalogError> {
    let (name, line, column) = xml::root_name(bytes)?;
    match name.as_str() {
        mssecure::ROOT => Ok(CatalogKind::Security),
        office::ROOT => Ok(CatalogKind::Office),
        _ => Err(CatalogError::UnknownKind {
            line,
            column,
            found: name,
        }),
    }
}

/// The reader of a format.
pub fn reader(kind: CatalogKind) -> Box<dyn CatalogReader> {
    match kind {
        CatalogKind::Security => Box::new(MsSecureReader),
        CatalogKind::Office => Box::new(OfficeReader),
    }
}

/// Detects the format and reads the catalog.
pub fn read_any(bytes: &[u8]) -> Result<Loaded, CatalogError> {
    reader(detect_kind(bytes)?).read(bytes)
}

#[cfg(test)]
mod tests;
