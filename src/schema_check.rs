//! Checks a YAML tree against a kind's JSON Schema and reports every
//! mismatch with its position, instead of serde's first error.
//!
//! The schema is the one `patchops schema` writes for editors, so the CLI and
//! the editor can never disagree about what is valid. The checker supports
//! the subset of JSON Schema that schemars emits for our types (`$ref`,
//! `type`, `properties`, `required`, `additionalProperties`, `items`, `enum`,
//! `const`, `oneOf`/`anyOf`, `minimum`/`maximum`, `format` of integers), and
//! produces, for a valid tree, the JSON value serde reads the typed manifest
//! from. Plain YAML numbers are accepted where a string is expected
//! (`version: 2.0` means the text `2.0`).

use serde_json::{Map, Value};

use crate::suggest::{did_you_mean, one_of};
use crate::yaml::{FieldPath, Node, NodeKind, Pos, Resolved};

/// A mismatch between the tree and the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub code: &'static str,
    pub pos: Pos,
    /// Bytes to underline from `pos`.
    pub len: usize,
    pub path: String,
    pub message: String,
    pub help: Option<String>,
}

/// The path to the node being checked, borrowed from the callers' stack
/// frames: nothing is allocated unless a problem is reported.
#[derive(Clone, Copy)]
enum Trail<'a> {
    Root(&'a FieldPath),
    Key(&'a Trail<'a>, &'a str),
    Index(&'a Trail<'a>, usize),
}

impl Trail<'_> {
    fn to_path(self) -> FieldPath {
        match self {
            Trail::Root(p) => p.clone(),
            Trail::Key(parent, k) => parent.to_path().key(k),
            Trail::Index(parent, i) => parent.to_path().index(i),
        }
    }

    fn last_key(&self) -> Option<&str> {
        match self {
            Trail::Root(p) => p.last_key(),
            Trail::Key(_, k) => Some(k),
            Trail::Index(parent, _) => parent.last_key(),
        }
    }
}

/// Checks `node` against `schema`; `root` holds the `$defs` that `$ref`s
/// point into. Returns the JSON value when no problem was found in it.
/// `is_reported` marks keys already reported elsewhere (literal secrets),
/// which are then not reported again as unknown fields.
pub fn check(
    node: &Node,
    schema: &Value,
    root: &Value,
    path: &FieldPath,
    is_reported: &dyn Fn(&str) -> bool,
    problems: &mut Vec<Problem>,
) -> Option<Value> {
    Checker {
        root,
        is_reported,
        problems,
    }
    .check(node, schema, &Trail::Root(path))
}

struct Checker<'a> {
    root: &'a Value,
    is_reported: &'a dyn Fn(&str) -> bool,
    problems: &'a mut Vec<Problem>,
}

impl<'a> Checker<'a> {
    fn report(
        &mut self,
        node_pos: Pos,
        len: usize,
        path: &Trail<'_>,
        code: &'static str,
        message: String,
        help: Option<String>,
    ) {
        self.problems.push(Problem {
            code,
            pos: node_pos,
            len,
            path: path.to_path().to_string(),
            message,
            help,
        });
    }

    fn resolve<'s>(&self, schema: &'s Value) -> &'s Value
    where
        'a: 's,
    {
        let mut schema = schema;
        // Bounded: our schemas never chain more than a few references.
        for _ in 0..16 {
            let Some(reference) = keyword(schema, "$ref").and_then(Value::as_str) else {
                break;
            };
            let Some(name) = reference.strip_prefix("#/$defs/") else {
                break;
            };
            match keyword(self.root, "$defs").and_then(|d| d.get(name)) {
                Some(target) => schema = target,
                None => break,
            }
        }
        schema
    }

    fn check(&mut self, node: &Node, schema: &Value, path: &Trail<'_>) -> Option<Value> {
        let schema = self.resolve(schema);
        // `true` (or `{}`) accepts anything.
        let Some(object) = schema.as_object().filter(|o| !o.is_empty()) else {
            return Some(to_json(node));
        };
        // The keywords that decide how a node is checked, in one pass over
        // the schema object rather than a hashed lookup each: this runs on
        // every node of every manifest.
        let (mut constant, mut choices, mut branches, mut types) = (None, None, None, None);
        for (keyword, value) in object {
            match keyword.as_str() {
                "const" => constant = Some(value),
                "enum" => choices = value.as_array(),
                "oneOf" => branches = value.as_array(),
                "anyOf" if branches.is_none() => branches = value.as_array(),
                "type" => types = Some(value),
                _ => {}
            }
        }
        if let Some(expected) = constant {
            return self.check_const(node, expected, path);
        }
        if let Some(values) = string_choices(choices, branches, self) {
            return self.check_choice(node, &values, path);
        }
        if let Some(branches) = branches {
            return self.check_branches(node, branches, path);
        }
        // `type` is one name or a list of them (`["string", "null"]`).
        let type_names: &[Value] = match types {
            Some(Value::Array(ts)) => ts,
            Some(t @ Value::String(_)) => std::slice::from_ref(t),
            _ => return Some(to_json(node)),
        };
        let names = || type_names.iter().filter_map(Value::as_str);
        if node.is_null() && names().any(|t| t == "null") {
            return Some(Value::Null);
        }
        let main = names().find(|t| *t != "null").unwrap_or("null");
        match main {
            "object" => self.check_object(node, schema, path),
            "array" => self.check_array(node, schema, path),
            "string" => self.check_string(node, schema, path),
            "boolean" => self.check_bool(node, path),
            "integer" => self.check_integer(node, schema, path),
            "number" => match node.resolve() {
                Some(Resolved::Int(i)) => Some(Value::from(i)),
                Some(Resolved::Float(f)) => serde_json::Number::from_f64(f).map(Value::Number),
                _ => self.type_mismatch(node, "a number", path),
            },
            _ => self.type_mismatch(node, "nothing (null)", path),
        }
    }

    fn type_mismatch(&mut self, node: &Node, expected: &str, path: &Trail<'_>) -> Option<Value> {
        let found = node.describe();
        let help = match (expected, node.as_str()) {
            ("a boolean", Some(s))
                if matches!(
                    s.to_lowercase().as_str(),
                    "yes" | "no" | "on" | "off" | "true" | "false"
                ) =>
            {
                Some("write `true` or `false`, without quotes".to_string())
            }
            ("a list", _) if !matches!(node.kind, NodeKind::Map(_)) => {
                Some("write a list as `[a, b]` or as `- a` lines".to_string())
            }
            _ => None,
        };
        self.report(
            node.pos,
            scalar_len(node),
            path,
            "invalid-type",
            format!("expected {expected}, found {found}"),
            help,
        );
        None
    }

    fn check_const(&mut self, node: &Node, expected: &Value, path: &Trail<'_>) -> Option<Value> {
        let actual = to_json(node);
        if &actual == expected {
            return Some(actual);
        }
        let shown = expected
            .as_str()
            .map_or_else(|| expected.to_string(), str::to_string);
        let help = (path.last_key() == Some("apiVersion"))
            .then(|| "this release reads `patchops/v1` manifests".to_string());
        self.report(
            node.pos,
            scalar_len(node),
            path,
            "invalid-value",
            format!("expected `{shown}`"),
            help,
        );
        None
    }

    fn check_choice(&mut self, node: &Node, values: &[&str], path: &Trail<'_>) -> Option<Value> {
        let text = match node.resolve() {
            Some(Resolved::Str(s)) => s,
            _ => {
                self.report(
                    node.pos,
                    scalar_len(node),
                    path,
                    "invalid-type",
                    format!(
                        "expected one of {}, found {}",
                        one_of(values.iter().copied()),
                        node.describe()
                    ),
                    None,
                );
                return None;
            }
        };
        if values.contains(&text) {
            return Some(Value::String(text.to_string()));
        }
        let field = path.last_key().unwrap_or("value");
        let help =
            did_you_mean(text, values.iter().copied()).map(|s| format!("did you mean `{s}`?"));
        self.report(
            node.pos,
            scalar_len(node),
            path,
            "invalid-value",
            format!(
                "unknown value `{text}` for `{field}`; expected one of {}",
                one_of(values.iter().copied())
            ),
            help,
        );
        None
    }

    fn check_branches(
        &mut self,
        node: &Node,
        branches: &[Value],
        path: &Trail<'_>,
    ) -> Option<Value> {
        // `Option<T>`: null, or T.
        let non_null: Vec<&Value> = branches
            .iter()
            .filter(|b| keyword(self.resolve(b), "type").and_then(Value::as_str) != Some("null"))
            .collect();
        if non_null.len() < branches.len() && node.is_null() {
            return Some(Value::Null);
        }
        if non_null.len() == 1 {
            return self.check(node, non_null[0], path);
        }
        // Externally tagged enums: a mapping with exactly one of the tags.
        let tags: Option<Vec<(&str, &Value)>> = non_null
            .iter()
            .map(|b| {
                let b = self.resolve(b);
                let required = keyword(b, "required")?.as_array()?;
                let [tag] = required.as_slice() else {
                    return None;
                };
                Some((tag.as_str()?, b))
            })
            .collect();
        if let Some(tags) = tags {
            let names = || one_of(tags.iter().map(|(t, _)| *t));
            let Some(entries) = node.as_map() else {
                return self.type_mismatch(
                    node,
                    &format!("a mapping with one of {}", names()),
                    path,
                );
            };
            let known: Vec<_> = entries
                .iter()
                .filter(|e| tags.iter().any(|(t, _)| *t == e.key))
                .collect();
            match known.as_slice() {
                [entry] if entries.len() == 1 => {
                    let branch = tags
                        .iter()
                        .find(|(t, _)| *t == entry.key)
                        .map(|(_, b)| *b)?;
                    return self.check(node, branch, path);
                }
                [] => {
                    let first = entries.first();
                    let (pos, len, help) = match first {
                        Some(e) => (
                            e.key_pos,
                            e.key.len(),
                            did_you_mean(&e.key, tags.iter().map(|(t, _)| *t))
                                .map(|s| format!("did you mean `{s}`?")),
                        ),
                        None => (node.pos, 1, None),
                    };
                    self.report(
                        pos,
                        len,
                        path,
                        "invalid-value",
                        format!("expected one of {}", names()),
                        help,
                    );
                }
                _ => {
                    let found = one_of(entries.iter().map(|e| e.key.as_str()));
                    self.report(
                        node.pos,
                        1,
                        path,
                        "invalid-value",
                        format!("expected exactly one of {}, found {found}", names()),
                        Some("write each rule as its own list item".to_string()),
                    );
                }
            }
            return None;
        }
        // Anything else: the first branch that fits, or the closest one's problems.
        let mut best: Option<Vec<Problem>> = None;
        for branch in non_null {
            let mut scratch = Vec::new();
            let value = Checker {
                root: self.root,
                is_reported: self.is_reported,
                problems: &mut scratch,
            }
            .check(node, branch, path);
            if value.is_some() && scratch.is_empty() {
                return value;
            }
            if best.as_ref().is_none_or(|b| scratch.len() < b.len()) {
                best = Some(scratch);
            }
        }
        self.problems.extend(best.unwrap_or_default());
        None
    }

    fn check_object(&mut self, node: &Node, schema: &Value, path: &Trail<'_>) -> Option<Value> {
        let Some(entries) = node.as_map() else {
            return self.type_mismatch(node, "a mapping", path);
        };
        let empty = Map::new();
        let properties = keyword(schema, "properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let additional = keyword(schema, "additionalProperties");
        let required = keyword(schema, "required").and_then(Value::as_array);
        let mut out = Map::new();
        let mut ok = true;
        for entry in entries {
            let field_path = Trail::Key(path, &entry.key);
            let field_schema = match properties.get(&entry.key) {
                Some(s) => s,
                None => match additional {
                    Some(s) if s.is_object() => s,
                    Some(Value::Bool(true)) => &Value::Bool(true),
                    _ => {
                        ok = false;
                        if !(self.is_reported)(&entry.key) {
                            let help =
                                did_you_mean(&entry.key, properties.keys().map(String::as_str))
                                    .map(|s| format!("did you mean `{s}`?"))
                                    .unwrap_or_else(|| {
                                        format!(
                                            "fields allowed here: {}",
                                            one_of(properties.keys().map(String::as_str))
                                        )
                                    });
                            self.report(
                                entry.key_pos,
                                entry.key.len(),
                                &field_path,
                                "unknown-field",
                                format!("unknown field `{}`", entry.key),
                                Some(help),
                            );
                        }
                        continue;
                    }
                },
            };
            let required = required.is_some_and(|r| r.iter().any(|v| *v == entry.key));
            // An explicit null for an optional field means "the default".
            if entry.value.is_null() && !required && !accepts_null(self.resolve(field_schema), self)
            {
                continue;
            }
            match self.check(&entry.value, field_schema, &field_path) {
                Some(v) => {
                    out.insert(entry.key.clone(), v);
                }
                None => ok = false,
            }
        }
        for name in keyword(schema, "required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !entries.iter().any(|e| e.key == name) {
                ok = false;
                self.report(
                    node.pos,
                    1,
                    &Trail::Key(path, name),
                    "missing-field",
                    format!("missing required field `{name}`"),
                    None,
                );
            }
        }
        ok.then_some(Value::Object(out))
    }

    fn check_array(&mut self, node: &Node, schema: &Value, path: &Trail<'_>) -> Option<Value> {
        let NodeKind::Seq(items) = &node.kind else {
            return self.type_mismatch(node, "a list", path);
        };
        let item_schema = keyword(schema, "items").unwrap_or(&Value::Bool(true));
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.check(item, item_schema, &Trail::Index(path, i)) {
                Some(v) => out.push(v),
                None => ok = false,
            }
        }
        if let Some(min) = keyword(schema, "minItems").and_then(Value::as_u64) {
            if (items.len() as u64) < min {
                ok = false;
                self.report(
                    node.pos,
                    1,
                    path,
                    "invalid-value",
                    format!("expected at least {min} item(s)"),
                    None,
                );
            }
        }
        ok.then_some(Value::Array(out))
    }

    fn check_string(&mut self, node: &Node, schema: &Value, path: &Trail<'_>) -> Option<Value> {
        let text = match (&node.kind, node.resolve()) {
            (_, Some(Resolved::Str(s))) => s.to_string(),
            (NodeKind::Scalar { text, .. }, Some(Resolved::Int(_) | Resolved::Float(_))) => {
                text.clone()
            }
            _ => return self.type_mismatch(node, "a string", path),
        };
        if let Some(min) = keyword(schema, "minLength").and_then(Value::as_u64) {
            if (text.chars().count() as u64) < min {
                self.report(
                    node.pos,
                    scalar_len(node),
                    path,
                    "invalid-value",
                    "expected a non-empty string".into(),
                    None,
                );
                return None;
            }
        }
        Some(Value::String(text))
    }

    fn check_bool(&mut self, node: &Node, path: &Trail<'_>) -> Option<Value> {
        match node.resolve() {
            Some(Resolved::Bool(b)) => Some(Value::Bool(b)),
            _ => self.type_mismatch(node, "a boolean", path),
        }
    }

    fn check_integer(&mut self, node: &Node, schema: &Value, path: &Trail<'_>) -> Option<Value> {
        let i = match (node.resolve(), &node.kind) {
            (Some(Resolved::Int(i)), _) => i,
            // A whole number too large for any field.
            (Some(Resolved::Float(_)), NodeKind::Scalar { text, .. })
                if text
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b'-' || b == b'+') =>
            {
                self.report(
                    node.pos,
                    scalar_len(node),
                    path,
                    "invalid-value",
                    format!("the number {text} is too large"),
                    None,
                );
                return None;
            }
            _ => return self.type_mismatch(node, "a whole number", path),
        };
        let (format_min, format_max) = match keyword(schema, "format").and_then(Value::as_str) {
            Some("uint8") => (0, u8::MAX as i64),
            Some("uint16") => (0, u16::MAX as i64),
            Some("uint32") | Some("uint") => (0, u32::MAX as i64),
            Some("uint64") => (0, i64::MAX),
            Some("int32") => (i32::MIN as i64, i32::MAX as i64),
            _ => (i64::MIN, i64::MAX),
        };
        let min = keyword(schema, "minimum")
            .and_then(Value::as_i64)
            .unwrap_or(i64::MIN)
            .max(format_min);
        let max = keyword(schema, "maximum")
            .and_then(Value::as_i64)
            .unwrap_or(i64::MAX)
            .min(format_max);
        if i < min || i > max {
            let range = if max == i64::MAX {
                format!("at least {min}")
            } else {
                format!("between {min} and {max}")
            };
            self.report(
                node.pos,
                scalar_len(node),
                path,
                "invalid-value",
                format!("expected a whole number {range}, found {i}"),
                None,
            );
            return None;
        }
        Some(Value::from(i))
    }
}

/// A schema keyword. Schema objects hold a handful of keywords: scanning
/// them compares a few short strings, where a lookup hashes the name
/// (SipHash, in serde_json's map), several times for every node checked.
fn keyword<'s>(schema: &'s Value, name: &str) -> Option<&'s Value> {
    let object = schema.as_object()?;
    if object.len() > 8 {
        return object.get(name);
    }
    object
        .iter()
        .find(|(key, _)| key.as_str() == name)
        .map(|(_, value)| value)
}

fn accepts_null(schema: &Value, checker: &Checker<'_>) -> bool {
    match keyword(schema, "type") {
        Some(Value::String(t)) => t == "null",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "null"),
        _ => keyword(schema, "anyOf")
            .or_else(|| keyword(schema, "oneOf"))
            .and_then(Value::as_array)
            .is_some_and(|bs| {
                bs.iter().any(|b| {
                    keyword(checker.resolve(b), "type").and_then(Value::as_str) == Some("null")
                })
            }),
    }
}

/// The allowed strings of an enum, whether schemars wrote it as `enum` or as
/// `oneOf` of documented `const`s.
/// The strings a schema allows, when it allows only strings: its `enum`, or
/// `oneOf`/`anyOf` branches that are each a `const` or an `enum`.
fn string_choices<'s>(
    choices: Option<&'s Vec<Value>>,
    branches: Option<&'s Vec<Value>>,
    checker: &Checker<'s>,
) -> Option<Vec<&'s str>> {
    if let Some(values) = choices {
        return values.iter().map(Value::as_str).collect();
    }
    let mut out = Vec::new();
    for b in branches? {
        let b = checker.resolve(b);
        if let Some(c) = keyword(b, "const").and_then(Value::as_str) {
            out.push(c);
        } else if let Some(values) = keyword(b, "enum").and_then(Value::as_array) {
            for v in values {
                out.push(v.as_str()?);
            }
        } else {
            return None;
        }
    }
    Some(out)
}

fn scalar_len(node: &Node) -> usize {
    match &node.kind {
        NodeKind::Scalar { text, .. } => text.len().max(1),
        _ => 1,
    }
}

/// The node as JSON, for schema-free values (labels, annotations).
pub fn to_json(node: &Node) -> Value {
    match &node.kind {
        NodeKind::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        NodeKind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|e| (e.key.clone(), to_json(&e.value)))
                .collect(),
        ),
        NodeKind::Scalar { .. } => match node.resolve() {
            Some(Resolved::Null) | None => Value::Null,
            Some(Resolved::Bool(b)) => Value::Bool(b),
            Some(Resolved::Int(i)) => Value::from(i),
            Some(Resolved::Float(f)) => {
                serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
            }
            Some(Resolved::Str(s)) => Value::String(s.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{kind_schema, Kind};
    use crate::yaml::parse_documents;

    fn problems(kind: Kind, spec_yaml: &str) -> Vec<String> {
        let doc = parse_documents(spec_yaml).unwrap().remove(0);
        let root = kind_schema(kind);
        let mut out = Vec::new();
        check(
            &doc.root,
            &root["properties"]["spec"],
            root,
            &FieldPath::root("spec"),
            &|_| false,
            &mut out,
        );
        out.iter()
            .map(|p| format!("{}:{} {} {}", p.pos.line, p.pos.column, p.path, p.message))
            .collect()
    }

    #[test]
    fn reports_every_problem_in_one_pass() {
        let got = problems(
            Kind::Package,
            "priority: urgent\nprograms:\n  - name: a\n    comandLine: x\n    runMode: 3\n  - name: b\n    commandLine: y\n    expedited: yes\n",
        );
        assert_eq!(
            got,
            vec![
                "1:11 spec.priority unknown value `urgent` for `priority`; expected one of `low`, `medium`, `high`",
                "4:5 spec.programs[0].comandLine unknown field `comandLine`",
                "5:14 spec.programs[0].runMode expected one of `normal`, `minimized`, `maximized`, `hidden`, found a number",
                "3:5 spec.programs[0].commandLine missing required field `commandLine`",
                "8:16 spec.programs[1].expedited expected a boolean, found a string",
            ]
        );
    }

    #[test]
    fn numbers_are_accepted_as_text_and_null_means_default() {
        let doc = parse_documents("version: 2.10\ncomment:\nprograms: []\n")
            .unwrap()
            .remove(0);
        let root = kind_schema(Kind::Package);
        let mut out = Vec::new();
        let value = check(
            &doc.root,
            &root["properties"]["spec"],
            root,
            &FieldPath::root("spec"),
            &|_| false,
            &mut out,
        )
        .unwrap();
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(value["version"], "2.10");
        assert!(value.get("comment").is_none());
    }

    #[test]
    fn tagged_rules_need_exactly_one_tag() {
        let got = problems(
            Kind::Collection,
            "membership:\n  - query: \"name = 'a'\"\n    direct: [b]\n  - qurey: x\n",
        );
        assert_eq!(
            got,
            vec![
                "2:5 spec.membership[0] expected exactly one of `query`, `direct`, `include`, `exclude`, found `query`, `direct`",
                "4:5 spec.membership[1] expected one of `query`, `direct`, `include`, `exclude`",
            ]
        );
    }

    #[test]
    fn integers_are_range_checked() {
        let got = problems(
            Kind::DistributionPoint,
            "path: /x\nurl: http://x\nmaxConcurrentTransfers: -1\n",
        );
        assert_eq!(got, vec!["3:25 spec.maxConcurrentTransfers expected a whole number between 0 and 4294967295, found -1"]);
    }
}
