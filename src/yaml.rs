//! A YAML tree that remembers where every node came from.
//!
//! serde_yaml reports only the first problem of a document and no position
//! for the value behind it, so manifests are read with yaml-rust2's event
//! parser into this tree first. Every later diagnostic points back into the
//! file through [`Pos`].
//!
//! Reading is bounded: nesting depth and alias expansion have hard limits, so
//! hostile input (alias bombs, 10,000-deep nesting) fails fast with a clear
//! error instead of eating memory or the stack.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Deepest nesting of mappings and sequences accepted in a manifest.
pub const MAX_DEPTH: usize = 64;
/// Most nodes a document may expand to through aliases, beyond its own.
pub const MAX_ALIAS_EXPANSION: usize = 10_000;

/// A position in a source file: byte offset for snippets, 1-based line and
/// column (in characters) for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub offset: usize,
    pub line: u32,
    pub column: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarStyle {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

/// What a scalar means under the YAML 1.2 core schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

#[derive(Debug, Clone)]
pub enum NodeKind {
    Scalar {
        text: String,
        style: ScalarStyle,
        tag: Option<String>,
    },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone)]
pub struct Node {
    pub kind: NodeKind,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

#[derive(Debug, Clone)]
pub struct Document {
    pub root: Node,
    /// Where the document's content starts (its first node).
    pub start: Pos,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
    pub help: Option<String>,
}

impl Node {
    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.kind {
            NodeKind::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.as_map()?.iter().find(|e| e.key == key)
    }

    /// The scalar's meaning; `None` for sequences and mappings.
    pub fn resolve(&self) -> Option<Resolved<'_>> {
        let NodeKind::Scalar { text, style, tag } = &self.kind else {
            return None;
        };
        if *style != ScalarStyle::Plain || tag.as_deref() == Some("str") {
            return Some(Resolved::Str(text));
        }
        Some(resolve_plain(text))
    }

    /// The scalar's text if it resolves to a string.
    pub fn as_str(&self) -> Option<&str> {
        match self.resolve()? {
            Resolved::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A short description of what the node is, for "expected X, found Y".
    pub fn describe(&self) -> &'static str {
        match self.resolve() {
            None => match self.kind {
                NodeKind::Seq(_) => "a list",
                _ => "a mapping",
            },
            Some(Resolved::Null) => "nothing (null)",
            Some(Resolved::Bool(_)) => "a boolean",
            Some(Resolved::Int(_)) | Some(Resolved::Float(_)) => "a number",
            Some(Resolved::Str(_)) => "a string",
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.resolve(), Some(Resolved::Null))
    }

    /// Nodes in this subtree, itself included.
    fn size(&self) -> usize {
        1 + match &self.kind {
            NodeKind::Scalar { .. } => 0,
            NodeKind::Seq(items) => items.iter().map(Node::size).sum(),
            NodeKind::Map(entries) => entries.iter().map(|e| e.value.size()).sum(),
        }
    }
}

fn resolve_plain(text: &str) -> Resolved<'_> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Resolved::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        _ => {}
    }
    let first = text.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return Resolved::Str(text);
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(v) = i64::from_str_radix(hex, 16) {
            return Resolved::Int(v);
        }
    } else if let Some(oct) = text.strip_prefix("0o") {
        if let Ok(v) = i64::from_str_radix(oct, 8) {
            return Resolved::Int(v);
        }
    } else if is_core_int(text) {
        if let Ok(v) = text.parse::<i64>() {
            return Resolved::Int(v);
        }
        // Out of i64 range: still a number, not a string.
        if let Ok(v) = text.parse::<f64>() {
            return Resolved::Float(v);
        }
    } else if is_core_float(text) {
        if let Ok(v) = text.parse::<f64>() {
            return Resolved::Float(v);
        }
    }
    Resolved::Str(text)
}

fn is_core_int(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn is_core_float(text: &str) -> bool {
    let s = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = all_digits(int)
        && frac.is_none_or(all_digits)
        && (!int.is_empty() || frac.is_some_and(|f| !f.is_empty()));
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exponent_ok
}

/// Maps yaml-rust2's character indexes to byte offsets.
struct Offsets<'a> {
    src: &'a str,
    /// Byte offset of every character; empty when the source is ASCII.
    char_bytes: Vec<usize>,
}

impl<'a> Offsets<'a> {
    fn new(src: &'a str) -> Self {
        let char_bytes = if src.is_ascii() {
            Vec::new()
        } else {
            src.char_indices().map(|(b, _)| b).collect()
        };
        Offsets { src, char_bytes }
    }

    fn pos(&self, m: &Marker) -> Pos {
        let offset = if self.char_bytes.is_empty() {
            m.index().min(self.src.len())
        } else {
            self.char_bytes
                .get(m.index())
                .copied()
                .unwrap_or(self.src.len())
        };
        Pos {
            offset,
            line: m.line() as u32,
            column: m.col() as u32 + 1,
        }
    }
}

/// A field path under construction, rendered only when a problem is found.
#[derive(Debug, Clone, Default)]
pub struct FieldPath(Vec<Segment>);

#[derive(Debug, Clone)]
enum Segment {
    Key(String),
    Index(usize),
}

impl FieldPath {
    pub fn root(key: &str) -> Self {
        FieldPath(vec![Segment::Key(key.to_string())])
    }

    pub fn key(&self, key: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Key(key.to_string()));
        p
    }

    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Index(i));
        p
    }

    /// The last key, for messages about one field.
    pub fn last_key(&self) -> Option<&str> {
        self.0.iter().rev().find_map(|s| match s {
            Segment::Key(k) => Some(k.as_str()),
            Segment::Index(_) => None,
        })
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl FieldPath {
    /// The node at this path below `root` (the path's first key names the
    /// root's own entry), or the deepest node that exists on the way, so a
    /// diagnostic about a defaulted field still points at its parent.
    pub fn locate<'n>(&self, root: &'n Node) -> (&'n Node, Option<Pos>) {
        let mut node = root;
        let mut key_pos = None;
        for seg in &self.0 {
            let next = match (seg, &node.kind) {
                (Segment::Key(k), NodeKind::Map(entries)) => {
                    entries.iter().find(|e| &e.key == k).map(|e| {
                        key_pos = Some(e.key_pos);
                        &e.value
                    })
                }
                (Segment::Index(i), NodeKind::Seq(items)) => {
                    items.get(*i).inspect(|_| key_pos = None)
                }
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        (node, key_pos)
    }
}

enum Frame {
    Seq {
        pos: Pos,
        items: Vec<Node>,
        anchor: usize,
    },
    Map {
        pos: Pos,
        entries: Vec<Entry>,
        anchor: usize,
        key: Option<(String, Pos)>,
    },
}

/// Reads every document of a YAML stream. Empty documents (`---` alone) are
/// skipped. The first problem stops the file: a syntax error leaves nothing
/// trustworthy after it.
pub fn parse_documents(src: &str) -> Result<Vec<Document>, YamlError> {
    let offsets = Offsets::new(src);
    let mut parser = Parser::new_from_str(src);
    let mut docs = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut expanded = 0usize;
    let mut root: Option<Node> = None;

    loop {
        let (event, marker) = parser.next_token().map_err(|e| {
            let message = e.info().to_string();
            let help = (message == "recursion limit exceeded").then(depth_help);
            YamlError {
                pos: offsets.pos(e.marker()),
                message: syntax_message(message),
                help,
            }
        })?;
        let pos = offsets.pos(&marker);
        let node = match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                anchors.clear();
                expanded = 0;
                continue;
            }
            Event::DocumentEnd => {
                if let Some(node) = root.take() {
                    if !node.is_null() {
                        docs.push(Document {
                            start: node.pos,
                            root: node,
                        });
                    }
                }
                continue;
            }
            Event::Nothing | Event::StreamStart => continue,
            Event::SequenceStart(anchor, tag) => {
                reject_tag(tag.as_ref(), pos)?;
                push_frame(
                    &mut stack,
                    Frame::Seq {
                        pos,
                        items: Vec::new(),
                        anchor,
                    },
                    pos,
                )?;
                continue;
            }
            Event::MappingStart(anchor, tag) => {
                reject_tag(tag.as_ref(), pos)?;
                let frame = Frame::Map {
                    pos,
                    entries: Vec::new(),
                    anchor,
                    key: None,
                };
                push_frame(&mut stack, frame, pos)?;
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = stack.pop() else { continue };
                let (node, anchor) = match frame {
                    Frame::Seq { pos, items, anchor } => {
                        let pos = items.first().map_or(pos, |first| earlier(pos, first.pos));
                        (
                            Node {
                                kind: NodeKind::Seq(items),
                                pos,
                            },
                            anchor,
                        )
                    }
                    Frame::Map {
                        pos,
                        entries,
                        anchor,
                        ..
                    } => {
                        // Block mappings are marked at their first value; point at the first key.
                        let pos = entries
                            .first()
                            .map_or(pos, |first| earlier(pos, first.key_pos));
                        (
                            Node {
                                kind: NodeKind::Map(entries),
                                pos,
                            },
                            anchor,
                        )
                    }
                };
                if anchor != 0 {
                    anchors.insert(anchor, node.clone());
                }
                node
            }
            Event::Scalar(text, style, anchor, tag) => {
                let tag = scalar_tag(tag.as_ref(), pos)?;
                let style = match style {
                    TScalarStyle::SingleQuoted => ScalarStyle::SingleQuoted,
                    TScalarStyle::DoubleQuoted => ScalarStyle::DoubleQuoted,
                    TScalarStyle::Literal => ScalarStyle::Literal,
                    TScalarStyle::Folded => ScalarStyle::Folded,
                    _ => ScalarStyle::Plain,
                };
                let node = Node {
                    kind: NodeKind::Scalar { text, style, tag },
                    pos,
                };
                if anchor != 0 {
                    anchors.insert(anchor, node.clone());
                }
                node
            }
            Event::Alias(id) => {
                let Some(target) = anchors.get(&id) else {
                    return Err(YamlError {
                        pos,
                        message: "alias to an unknown anchor".into(),
                        help: None,
                    });
                };
                expanded += target.size();
                if expanded > MAX_ALIAS_EXPANSION {
                    return Err(YamlError {
                        pos,
                        message: format!(
                            "aliases expand this document to more than {MAX_ALIAS_EXPANSION} extra nodes"
                        ),
                        help: Some("this looks like an alias bomb; write the values out or use fewer aliases".into()),
                    });
                }
                let mut node = target.clone();
                node.pos = pos;
                node
            }
        };
        attach(&mut stack, &mut root, node)?;
    }
    Ok(docs)
}

fn earlier(a: Pos, b: Pos) -> Pos {
    if b.offset < a.offset {
        b
    } else {
        a
    }
}

fn depth_help() -> String {
    format!("manifests nest at most {MAX_DEPTH} levels deep")
}

fn syntax_message(info: String) -> String {
    if info == "recursion limit exceeded" {
        "nesting is too deep".into()
    } else {
        format!("invalid YAML: {info}")
    }
}

fn push_frame(stack: &mut Vec<Frame>, frame: Frame, pos: Pos) -> Result<(), YamlError> {
    if stack.len() >= MAX_DEPTH {
        return Err(YamlError {
            pos,
            message: "nesting is too deep".into(),
            help: Some(depth_help()),
        });
    }
    stack.push(frame);
    Ok(())
}

fn reject_tag(tag: Option<&Tag>, pos: Pos) -> Result<(), YamlError> {
    match tag {
        None => Ok(()),
        Some(t) if is_core_tag(t, "map") || is_core_tag(t, "seq") => Ok(()),
        Some(t) => Err(unsupported_tag(t, pos)),
    }
}

fn scalar_tag(tag: Option<&Tag>, pos: Pos) -> Result<Option<String>, YamlError> {
    match tag {
        None => Ok(None),
        Some(t) if is_core_tag(t, "str") => Ok(Some("str".into())),
        Some(t) => Err(unsupported_tag(t, pos)),
    }
}

fn is_core_tag(tag: &Tag, name: &str) -> bool {
    matches!(tag.handle.as_str(), "!!" | "tag:yaml.org,2002:") && tag.suffix == name
}

fn unsupported_tag(tag: &Tag, pos: Pos) -> YamlError {
    YamlError {
        pos,
        message: format!("unsupported YAML tag `{}{}`", tag.handle, tag.suffix),
        help: Some("manifests use plain YAML values; only `!!str` is accepted".into()),
    }
}

fn attach(stack: &mut [Frame], root: &mut Option<Node>, node: Node) -> Result<(), YamlError> {
    match stack.last_mut() {
        None => *root = Some(node),
        Some(Frame::Seq { items, .. }) => items.push(node),
        Some(Frame::Map { entries, key, .. }) => match key.take() {
            None => {
                let text = match &node.kind {
                    NodeKind::Scalar { text, .. } => text.clone(),
                    _ => {
                        return Err(YamlError {
                            pos: node.pos,
                            message: "mapping keys must be plain strings".into(),
                            help: None,
                        })
                    }
                };
                if let Some(previous) = entries.iter().find(|e| e.key == text) {
                    return Err(YamlError {
                        pos: node.pos,
                        message: format!(
                            "duplicate key `{text}` (first at line {})",
                            previous.key_pos.line
                        ),
                        help: Some("a key may appear once in a mapping".into()),
                    });
                }
                *key = Some((text, node.pos));
            }
            Some((k, key_pos)) => entries.push(Entry {
                key: k,
                key_pos,
                value: node,
            }),
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> Node {
        let mut docs = parse_documents(src).expect("parses");
        assert_eq!(docs.len(), 1);
        docs.remove(0).root
    }

    #[test]
    fn positions_are_one_based_columns_and_byte_offsets() {
        let src = "kind: Säte\nspec:\n  é: x\n";
        let root = one(src);
        let spec = root.get("spec").unwrap();
        assert_eq!((spec.key_pos.line, spec.key_pos.column), (2, 1));
        let e = spec.value.get("é").unwrap();
        assert_eq!((e.key_pos.line, e.key_pos.column), (3, 3));
        assert_eq!(&src[e.value.pos.offset..e.value.pos.offset + 1], "x");
        assert_eq!(root.pos.line, 1);
    }

    #[test]
    fn core_schema_resolution() {
        let root = one("a: 1\nb: '1'\nc: yes\nd: true\ne: ~\nf: 1.5\ng: 0x10\nh: 1e3\ni: 5.1.2600\nj: !!str 7\n");
        let r = |k: &str| root.get(k).unwrap().value.resolve().unwrap();
        assert_eq!(r("a"), Resolved::Int(1));
        assert_eq!(r("b"), Resolved::Str("1"));
        assert_eq!(r("c"), Resolved::Str("yes"));
        assert_eq!(r("d"), Resolved::Bool(true));
        assert_eq!(r("e"), Resolved::Null);
        assert_eq!(r("f"), Resolved::Float(1.5));
        assert_eq!(r("g"), Resolved::Int(16));
        assert_eq!(r("h"), Resolved::Float(1000.0));
        assert_eq!(r("i"), Resolved::Str("5.1.2600"));
        assert_eq!(r("j"), Resolved::Str("7"));
    }

    #[test]
    fn empty_documents_are_skipped() {
        let docs = parse_documents("---\n---\na: 1\n---\n").unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].start.line, 3);
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err = parse_documents("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.message, "duplicate key `a` (first at line 1)");
        assert_eq!(err.pos.line, 3);
    }

    #[test]
    fn aliases_expand_within_budget() {
        let root = one("x: &a [1, 2]\ny: *a\n");
        let NodeKind::Seq(items) = &root.get("y").unwrap().value.kind else {
            panic!()
        };
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn alias_bomb_fails_fast() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            src.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = parse_documents(&src).unwrap_err();
        assert!(err.message.contains("aliases expand"), "{err:?}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let src = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let err = parse_documents(&src).unwrap_err();
        assert_eq!(err.message, "nesting is too deep");
        let block: String = (0..100)
            .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
            .collect();
        let err = parse_documents(&block).unwrap_err();
        assert_eq!(err.message, "nesting is too deep");
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse_documents("a: b: c\n").unwrap_err();
        assert!(
            err.message.starts_with("invalid YAML: mapping values"),
            "{err:?}"
        );
        assert_eq!((err.pos.line, err.pos.column), (1, 5));
    }

    #[test]
    fn custom_tags_are_refused() {
        let err = parse_documents("a: !secret x\n").unwrap_err();
        assert_eq!(err.message, "unsupported YAML tag `!secret`");
    }
}
