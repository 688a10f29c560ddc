//! The streaming XML layer both readers share: limits, UTF-8, refusal of
//! DTDs, the root check, truncation, and attribute values normalized as a
//! conforming parser does (entities resolved, literal newlines and tabs
//! turned into spaces). Elements are handed to the reader one at a time;
//! nothing keeps the whole document.

use std::borrow::Cow;

use quick_xml::errors::{Error as XmlError, SyntaxError};
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use super::{CatalogError, MAX_CATALOG_BYTES, MAX_DEPTH, MAX_VALUE_BYTES};

/// One start tag, with its attributes normalized.
pub(crate) struct Element<'e> {
    pub name: &'e str,
    /// Byte offset of its `<` in the source.
    pub offset: usize,
    attrs: Vec<(&'e str, Cow<'e, str>)>,
}

impl Element<'_> {
    /// The attribute's value as written (normalized, not trimmed).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// Trimmed value; empty when absent.
    pub fn trimmed(&self, key: &str) -> &str {
        self.get(key).map(str::trim).unwrap_or("")
    }
}

pub(crate) enum Item<'e> {
    Open(Element<'e>),
    Close { name: &'e str },
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(src: &[u8], offset: usize) -> (u32, u32) {
    let offset = offset.min(src.len());
    let before = &src[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let column = before[line_start..]
        .iter()
        .filter(|&&b| (b & 0xC0) != 0x80)
        .count()
        + 1;
    (clamp(line), clamp(column))
}

fn clamp(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Size, emptiness, BOM and UTF-8 checks; the text to parse.
fn prelude(bytes: &[u8]) -> Result<&str, CatalogError> {
    if bytes.len() > MAX_CATALOG_BYTES {
        return Err(CatalogError::TooLarge {
            size: bytes.len(),
            limit: MAX_CATALOG_BYTES,
        });
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(CatalogError::Empty);
    }
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let (line, column) = line_col(bytes, at);
        CatalogError::NotUtf8 {
            line,
            column,
            byte: bytes[at],
        }
    })
}

fn syntax(src: &str, offset: usize, message: String) -> CatalogError {
    let (line, column) = line_col(src.as_bytes(), offset);
    CatalogError::Syntax {
        line,
        column,
        message,
    }
}

fn element<'e>(
    src: &str,
    e: &'e BytesStart<'_>,
    offset: usize,
) -> Result<Element<'e>, CatalogError> {
    let name = e.name().into_inner();
    let mut attrs = Vec::new();
    for attr in e.attributes() {
        let attr = attr.map_err(|err| syntax(src, offset, format!("in <{name}>: {err}")))?;
        let key = attr.key.into_inner();
        if attr.value.len() > MAX_VALUE_BYTES {
            let (line, column) = line_col(src.as_bytes(), offset);
            return Err(CatalogError::ValueTooLong {
                line,
                column,
                field: format!("{name}@{key}"),
                len: attr.value.len(),
                limit: MAX_VALUE_BYTES,
            });
        }
        let value = attr
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|err| syntax(src, offset, format!("<{name}> {key}: {err}")))?;
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        offset,
        attrs,
    })
}

/// Reads the document and calls `f` for every element start and end, in
/// order. `expected_root` is checked before `f` sees anything.
pub(crate) fn scan(
    bytes: &[u8],
    expected_root: &str,
    mut f: impl FnMut(Item<'_>) -> Result<(), CatalogError>,
) -> Result<(), CatalogError> {
    let src = prelude(bytes)?;
    // The offsets quick-xml reports are into `src`, which may start after a
    // BOM; line/column use `src` as well, where a BOM is no character.
    let mut reader = Reader::from_str(src);
    reader.config_mut().check_comments = true;
    let mut stack: Vec<(&str, usize)> = Vec::new();
    let mut root_seen = false;
    loop {
        let offset = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = reader.read_event().map_err(|e| {
            let at = usize::try_from(reader.error_position()).unwrap_or(usize::MAX);
            xml_error(src, at, &stack, e)
        })?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                if stack.is_empty() {
                    let el = element(src, e, offset)?;
                    if root_seen {
                        return Err(syntax(
                            src,
                            offset,
                            format!("<{}> after the root element has ended", el.name),
                        ));
                    }
                    root_seen = true;
                    if el.name != expected_root {
                        let (line, column) = line_col(src.as_bytes(), offset);
                        return Err(CatalogError::WrongRoot {
                            line,
                            column,
                            found: el.name.to_string(),
                            expected: expected_root.to_string(),
                        });
                    }
                }
                if stack.len() >= MAX_DEPTH {
                    let (line, column) = line_col(src.as_bytes(), offset);
                    return Err(CatalogError::TooDeep {
                        line,
                        column,
                        limit: MAX_DEPTH,
                    });
                }
                let el = element(src, e, offset)?;
                // The name borrowed from the source, so it outlives the event.
                let name = &src[offset + 1..offset + 1 + el.name.len()];
                f(Item::Open(el))?;
                if empty {
                    f(Item::Close { name })?;
                } else {
                    stack.push((name, offset));
                }
            }
            Event::End(_) => {
                // quick-xml checks that the name matches the open element.
                if let Some((name, _)) = stack.pop() {
                    f(Item::Close { name })?;
                }
            }
            Event::Text(t) => {
                if stack.is_empty() && !t.bytes().all(|b| b.is_ascii_whitespace()) {
                    return Err(syntax(
                        src,
                        offset,
                        "text outside the root element".to_string(),
                    ));
                }
            }
            Event::CData(_) => {
                if stack.is_empty() {
                    return Err(syntax(src, offset, "CDATA outside the root element".into()));
                }
            }
            Event::GeneralRef(r) => {
                if stack.is_empty() {
                    return Err(syntax(src, offset, "text outside the root element".into()));
                }
                if !r.is_char_ref() {
                    let name = r.to_string();
                    if !matches!(name.as_str(), "lt" | "gt" | "amp" | "apos" | "quot") {
                        return Err(syntax(
                            src,
                            offset,
                            format!("undefined entity &{name}; (catalogs use only the five predefined entities)"),
                        ));
                    }
                } else if r.resolve_char_ref().is_err() {
                    return Err(syntax(src, offset, "invalid character reference".into()));
                }
            }
            Event::DocType(_) => {
                let (line, column) = line_col(src.as_bytes(), offset);
                return Err(CatalogError::Doctype { line, column });
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => {
                if let Some((name, open)) = stack.last() {
                    let (line, column) = line_col(src.as_bytes(), src.len());
                    let (open_line, _) = line_col(src.as_bytes(), *open);
                    return Err(CatalogError::Truncated {
                        line,
                        column,
                        element: name.to_string(),
                        open_line,
                    });
                }
                if !root_seen {
                    return Err(CatalogError::NoRoot);
                }
                return Ok(());
            }
        }
    }
}

fn xml_error(src: &str, at: usize, stack: &[(&str, usize)], e: XmlError) -> CatalogError {
    let unclosed = matches!(
        e,
        XmlError::Syntax(
            SyntaxError::UnclosedTag
                | SyntaxError::UnclosedComment
                | SyntaxError::UnclosedCData
                | SyntaxError::UnclosedPI
                | SyntaxError::UnclosedXmlDecl
                | SyntaxError::UnclosedDoctype
                | SyntaxError::UnclosedDoubleQuotedAttributeValue
                | SyntaxError::UnclosedSingleQuotedAttributeValue
        )
    );
    if unclosed {
        if let Some((name, open)) = stack.last() {
            let (line, column) = line_col(src.as_bytes(), src.len());
            let (open_line, _) = line_col(src.as_bytes(), *open);
            return CatalogError::Truncated {
                line,
                column,
                element: name.to_string(),
                open_line,
            };
        }
    }
    syntax(src, at, e.to_string())
}

/// The root element's name and position; reads only up to it.
pub(crate) fn root_name(bytes: &[u8]) -> Result<(String, u32, u32), CatalogError> {
    let src = prelude(bytes)?;
    let mut reader = Reader::from_str(src);
    loop {
        let offset = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = reader.read_event().map_err(|e| {
            let at = usize::try_from(reader.error_position()).unwrap_or(usize::MAX);
            xml_error(src, at, &[], e)
        })?;
        match event {
            Event::Start(e) | Event::Empty(e) => {
                let name = e.name().into_inner().to_string();
                let (line, column) = line_col(src.as_bytes(), offset);
                return Ok((name, line, column));
            }
            Event::DocType(_) => {
                let (line, column) = line_col(src.as_bytes(), offset);
                return Err(CatalogError::Doctype { line, column });
            }
            Event::Text(t) if !t.bytes().all(|b| b.is_ascii_whitespace()) => {
                return Err(syntax(src, offset, "text before the root element".into()));
            }
            Event::Eof => return Err(CatalogError::NoRoot),
            _ => {}
        }
    }
}
