//! Errors that point back into the query text.

use std::fmt;
use std::ops::Range;

/// Why a query was rejected, and where.
///
/// `offset`/`len` is a byte range inside the parsed source. It is never empty
/// except at the end of the input, where `offset == src.len()` and `len == 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub offset: usize,
    pub len: usize,
    pub message: String,
    pub help: Option<String>,
}

impl QueryError {
    pub(super) fn new(span: Range<usize>, message: impl Into<String>) -> Self {
        Self {
            offset: span.start,
            len: span.end.saturating_sub(span.start),
            message: message.into(),
            help: None,
        }
    }

    pub(super) fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub(super) fn with_optional_help(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }
}

/// Shows the message only; `help` is for renderers that print it apart.
impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for QueryError {}

/// A problem found inside a literal's value (a like pattern, a CIDR, a
/// timestamp...). `range` is relative to the unescaped value; the parser
/// maps it back onto the source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LiteralError {
    pub range: Range<usize>,
    pub message: String,
    pub help: Option<String>,
}

impl LiteralError {
    pub(super) fn new(range: Range<usize>, message: impl Into<String>) -> Self {
        Self {
            range,
            message: message.into(),
            help: None,
        }
    }

    pub(super) fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// The byte range of the character starting at `at` in `s`, or an empty
/// range at the end of `s`; lets validators point at one whole character.
pub(super) fn char_range(s: &str, at: usize) -> Range<usize> {
    let len = s
        .get(at..)
        .and_then(|rest| rest.chars().next())
        .map_or(0, char::len_utf8);
    at..at + len
}
