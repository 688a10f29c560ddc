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

    /// Formats the error with the offending line of `src` and carets under
    /// the span, for terminals and logs:
    ///
    /// ```text
    /// error: unknown property `os.nam`
    ///   |
    /// 1 | os.nam = 'x'
    ///   | ^^^^^^
    ///   = help: did you mean `os.name`?
    /// ```
    ///
    /// `src` must be the text that was parsed; a mismatched one is rendered
    /// on a best-effort basis rather than rejected.
    pub fn render(&self, src: &str) -> String {
        let offset = floor_char_boundary(src, self.offset);
        let line_start = src[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = src[offset..].find('\n').map_or(src.len(), |i| offset + i);
        let line = src[line_start..line_end].trim_end_matches('\r');
        let line_number = src[..line_start].matches('\n').count() + 1;

        let end = floor_char_boundary(src, (offset + self.len).min(line_end));
        let indent: String = src[line_start..offset]
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let carets = "^".repeat(src[offset..end].chars().count().max(1));

        let gutter = " ".repeat(line_number.to_string().len());
        let mut out = format!(
            "error: {}\n{gutter} |\n{line_number} | {line}\n{gutter} | {indent}{carets}",
            self.message
        );
        if let Some(help) = &self.help {
            out.push_str(&format!("\n{gutter} = help: {help}"));
        }
        out
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, " (help: {help})")?;
        }
        Ok(())
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

fn floor_char_boundary(s: &str, mut at: usize) -> usize {
    at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Shortens long source excerpts quoted in messages, so a huge literal does
/// not turn an error into a wall of text.
pub(super) fn excerpt(text: &str) -> String {
    const MAX_CHARS: usize = 40;
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_underlines_the_span() {
        let err =
            QueryError::new(0..6, "unknown property `os.nam`").with_help("did you mean `os.name`?");
        assert_eq!(
            err.render("os.nam = 'x'"),
            "error: unknown property `os.nam`\n  |\n1 | os.nam = 'x'\n  | ^^^^^^\n  = help: did you mean `os.name`?"
        );
    }

    #[test]
    fn render_handles_later_lines_and_end_of_input() {
        let src = "name = 'a'\nand";
        let err = QueryError::new(
            src.len()..src.len(),
            "expected a condition after `and`, found end of query",
        );
        assert_eq!(
            err.render(src),
            "error: expected a condition after `and`, found end of query\n  |\n2 | and\n  |    ^"
        );
    }

    #[test]
    fn render_survives_a_mismatched_source() {
        let err = QueryError::new(10..20, "x");
        assert!(err.render("é").contains("error: x"));
    }

    #[test]
    fn excerpt_truncates_on_char_boundaries() {
        assert_eq!(excerpt("short"), "short");
        let long = "é".repeat(50);
        assert_eq!(excerpt(&long), format!("{}…", "é".repeat(40)));
    }
}
