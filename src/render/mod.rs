//! Output for people and for tools, over the same results: diagnostics
//! with source snippets (miette) or as JSON with a stable shape.

pub mod catalog;
pub mod plan;
pub mod progress;
pub mod status;
pub mod sync;
use crate::untrusted;

use std::sync::Arc;

use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, ThemeCharacters, ThemeStyles,
};
use serde::Serialize;

use crate::diagnostic::{Diagnostic, Severity};
use crate::load::SourceFile;
use crate::validate::Report;

/// The first 12 characters of a commit or a content hash: enough to tell
/// versions apart in a report.
pub fn short_hash(hash: &str) -> &str {
    hash.char_indices()
        .nth(12)
        .map_or(hash, |(end, _)| &hash[..end])
}

/// How diagnostics are drawn for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Unicode box drawing and colours, for terminals.
    Color,
    /// Plain ASCII, for logs and CI.
    Plain,
}

/// One diagnostic as miette sees it: the message, and a label in its file.
#[derive(Debug)]
struct Shown<'a> {
    diagnostic: &'a Diagnostic,
    /// The file's text with its control characters escaped, so a snippet
    /// cannot carry a terminal escape.
    source: Option<NamedSource<Arc<str>>>,
    /// The diagnostic's span in that escaped text.
    span: Option<(usize, usize)>,
}

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&untrusted::text(&self.diagnostic.message))
    }
}

impl std::error::Error for Shown<'_> {}

impl miette::Diagnostic for Shown<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn std::fmt::Display + 'b>> {
        Some(Box::new(self.diagnostic.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diagnostic.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn std::fmt::Display + 'b>> {
        self.diagnostic
            .help
            .as_ref()
            .map(|h| Box::new(untrusted::text(h)) as Box<dyn std::fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let (offset, len) = self.span?;
        self.source.as_ref()?;
        let label = self
            .diagnostic
            .path
            .as_deref()
            .map_or_else(|| "here".to_string(), |p| untrusted::line(p).into_owned());
        Some(Box::new(std::iter::once(LabeledSpan::new(
            Some(label),
            offset,
            len,
        ))))
    }
}

/// Every diagnostic with its snippet, then a summary line.
pub fn human(report: &Report, style: Style) -> String {
    let handler = handler(style);
    let mut out = String::new();
    for d in &report.diagnostics {
        out.push_str(&render_one(&handler, d, &report.files));
    }
    out.push_str(&summary(report));
    out.push('\n');
    out
}

fn handler(style: Style) -> GraphicalReportHandler {
    let theme = match style {
        Style::Color => GraphicalTheme::unicode(),
        Style::Plain => GraphicalTheme {
            characters: ThemeCharacters::ascii(),
            styles: ThemeStyles::none(),
        },
    };
    GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_links(false)
}

fn render_one(handler: &GraphicalReportHandler, d: &Diagnostic, files: &[SourceFile]) -> String {
    let source = d
        .file
        .as_ref()
        .and_then(|f| files.iter().find(|s| &s.path == f))
        .filter(|s| !s.text.is_empty() && d.span.is_some());
    let escaped = source.map(|s| escaped_source(&s.text, d.span));
    let shown = Shown {
        diagnostic: d,
        span: escaped.as_ref().and_then(|(_, span)| *span),
        source: escaped.map(|(text, _)| NamedSource::new(location_name(d), text)),
    };
    let mut text = String::new();
    if handler.render_report(&mut text, &shown).is_err() || shown.source.is_none() {
        // Without a snippet, still say where.
        text = format!("{}\n", one_line(d));
    }
    text.push('\n');
    text
}

/// `error[code] file:line:col path: message (help: …)`, like the
/// diagnostic's `Display`, with the file name and field path escaped as one
/// line each: a file name holding a newline cannot start a line of its own.
fn one_line(d: &Diagnostic) -> String {
    use std::fmt::Write as _;
    let mut out = format!("{}[{}]", d.severity, d.code);
    let location = d.location();
    if !location.is_empty() {
        let _ = write!(out, " {}", untrusted::line(&location));
    }
    if let Some(path) = &d.path {
        let _ = write!(out, " {}", untrusted::line(path));
    }
    let _ = write!(out, ": {}", untrusted::text(&d.message));
    if let Some(help) = &d.help {
        let _ = write!(out, " (help: {})", untrusted::text(help));
    }
    out
}

/// The file's text with its control characters escaped (line breaks
/// kept), and `span` moved to the same characters in it.
fn escaped_source(
    text: &Arc<str>,
    span: Option<(usize, usize)>,
) -> (Arc<str>, Option<(usize, usize)>) {
    let escaped = untrusted::text(text);
    if matches!(escaped, std::borrow::Cow::Borrowed(_)) {
        return (Arc::clone(text), span);
    }
    let moved = span.and_then(|(offset, len)| {
        let before = text.get(..offset)?;
        let inside = text.get(offset..offset + len)?;
        let start = untrusted::text(before).len();
        Some((start, untrusted::text(inside).len()))
    });
    (Arc::from(escaped.into_owned()), moved)
}

fn location_name(d: &Diagnostic) -> String {
    let file = untrusted::line(d.file.as_deref().unwrap_or(""));
    match &d.object {
        Some(object) => format!("{file} ({})", untrusted::line(object)),
        None => file.into_owned(),
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

pub fn summary(report: &Report) -> String {
    let scope = format!(
        "{} in {}",
        plural(report.documents, "manifest"),
        plural(report.files.len(), "file")
    );
    match (report.errors(), report.warnings()) {
        (0, 0) => format!("valid: {scope}"),
        (0, w) => format!("valid with {}: {scope}", plural(w, "warning")),
        (e, 0) => format!("invalid: {} in {scope}", plural(e, "error")),
        (e, w) => format!(
            "invalid: {} and {} in {scope}",
            plural(e, "error"),
            plural(w, "warning")
        ),
    }
}

/// The JSON document `validate --format json` prints. Its shape is part of
/// the CLI's contract (see docs/validate-json.md).
#[derive(Serialize)]
struct JsonReport<'a> {
    valid: bool,
    errors: usize,
    warnings: usize,
    manifests: usize,
    files: usize,
    diagnostics: &'a [Diagnostic],
}

pub fn json(report: &Report) -> String {
    let doc = JsonReport {
        valid: report.is_valid(),
        errors: report.errors(),
        warnings: report.warnings(),
        manifests: report.documents,
        files: report.files.len(),
        diagnostics: &report.diagnostics,
    };
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")) + "\n"
}

/// A single diagnostic for the CLI's own failures (no report).
pub fn one(d: &Diagnostic, style: Style) -> String {
    render_one(&handler(style), d, &[])
}

#[cfg(test)]
mod tests {
    #[test]
    fn short_hash_keeps_twelve_characters_and_never_splits_one() {
        assert_eq!(super::short_hash("0123456789abcdef"), "0123456789ab");
        assert_eq!(super::short_hash("abc"), "abc");
        assert_eq!(super::short_hash(&"é".repeat(20)), "é".repeat(12));
    }
}
