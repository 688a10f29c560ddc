//! JSON and YAML inventories: a list of machines, or an object whose
//! `machines` key holds one.

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::values::{parse_addresses, parse_number, parse_timestamp};
use super::{count_lines, Collector, Limits, MAX_MACHINES};
use crate::inventory::machine::Machine;
use crate::inventory::problem::{FieldProblem, Found, ImportError, Location, Problem};
use crate::inventory::property::FREE_FORM_PREFIX as PROPERTIES_PREFIX;
use crate::inventory::validation::{excerpt, service_pack_problem};
use crate::suggest::did_you_mean;
use crate::yaml::{self, NodeKind};

/// The elements of the machine list, kept as raw text so each one's line
/// can be found, and so one bad element does not stop the others.
struct Elements<'a> {
    items: Vec<&'a RawValue>,
    /// Elements in the list, including those beyond `items`.
    total: usize,
}

impl<'de: 'a, 'a> Deserialize<'de> for Elements<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ElementsVisitor;

        impl<'de> Visitor<'de> for ElementsVisitor {
            type Value = Elements<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of machines")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                // Past the limit elements are only counted, so memory stays
                // bounded by the limit, not by the input.
                while items.len() <= MAX_MACHINES {
                    match seq.next_element::<&'de RawValue>()? {
                        Some(item) => items.push(item),
                        None => break,
                    }
                }
                let mut total = items.len();
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    total += 1;
                }
                Ok(Elements { items, total })
            }
        }

        deserializer.deserialize_seq(ElementsVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MachinesObject<'a> {
    #[serde(borrow)]
    machines: Elements<'a>,
}

pub(super) fn parse_json(text: &str, limits: Limits) -> Result<Vec<Machine>, ImportError> {
    let elements = match text.trim_start().as_bytes().first() {
        Some(b'{') => serde_json::from_str::<MachinesObject>(text).map(|o| o.machines),
        _ => serde_json::from_str::<Elements>(text),
    }
    .map_err(|e| {
        let message = e.to_string();
        // The position is reported in its own fields.
        let message = match message.rsplit_once(" at line ") {
            Some((message, _)) => message.to_owned(),
            None => message,
        };
        ImportError::Malformed {
            line: Some(e.line() as u64),
            column: Some(e.column() as u64),
            message: format!(
                "expected an array of machines or an object with a `machines` array: {message}"
            ),
        }
    })?;
    if elements.total > limits.max_machines {
        return Err(ImportError::TooManyMachines {
            limit: limits.max_machines,
        });
    }
    let mut collector = Collector::default();
    let (mut line, mut counted_to) = (1, 0);
    for (index, raw) in elements.items.iter().enumerate() {
        let offset = (raw.get().as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
        let offset = offset.clamp(counted_to, text.len());
        line += count_lines(&text.as_bytes()[counted_to..offset]);
        counted_to = offset;
        let location = Location::Element { index, line };
        // The element already parsed once as part of the array.
        let value: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
        decode_element(&mut collector, location, &value, Source::Json);
    }
    collector.finish()
}

pub(super) fn parse_yaml(text: &str, limits: Limits) -> Result<Vec<Machine>, ImportError> {
    let docs = yaml::parse_documents(text).map_err(|e| ImportError::Malformed {
        line: Some(e.pos.line.into()),
        column: Some(e.pos.column.into()),
        message: match e.help {
            Some(help) => format!("{} ({help})", e.message),
            None => e.message,
        },
    })?;
    let root = match docs.as_slice() {
        [] => return Err(ImportError::Empty),
        [doc] => &doc.root,
        [_, second, ..] => {
            return Err(ImportError::Malformed {
                line: Some(second.start.line.into()),
                column: Some(second.start.column.into()),
                message: "expected one YAML document, found more".into(),
            })
        }
    };
    let wrong_shape = |node: &yaml::Node| ImportError::Malformed {
        line: Some(node.pos.line.into()),
        column: Some(node.pos.column.into()),
        message: format!(
            "expected a list of machines or a mapping with a `machines` list, found {}",
            node.describe()
        ),
    };
    let items = match &root.kind {
        NodeKind::Seq(items) => items.as_slice(),
        NodeKind::Map(entries) => match entries.as_slice() {
            [entry] if entry.key == "machines" => match &entry.value.kind {
                NodeKind::Seq(items) => items.as_slice(),
                _ if entry.value.is_null() => &[],
                _ => return Err(wrong_shape(&entry.value)),
            },
            _ => return Err(wrong_shape(root)),
        },
        NodeKind::Scalar { .. } => return Err(wrong_shape(root)),
    };
    if items.len() > limits.max_machines {
        return Err(ImportError::TooManyMachines {
            limit: limits.max_machines,
        });
    }
    let mut collector = Collector::default();
    for (index, item) in items.iter().enumerate() {
        let location = Location::Element {
            index,
            line: item.pos.line.into(),
        };
        decode_element(&mut collector, location, &yaml_to_value(item), Source::Yaml);
    }
    collector.finish()
}

/// YAML scalars become strings with their text as written, so that
/// `version: 5.10` stays `5.10`; numeric fields parse the text.
fn yaml_to_value(node: &yaml::Node) -> Value {
    match &node.kind {
        NodeKind::Scalar { .. } if node.is_null() => Value::Null,
        NodeKind::Scalar { text, .. } => Value::String(text.clone()),
        NodeKind::Seq(items) => Value::Array(items.iter().map(yaml_to_value).collect()),
        NodeKind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|e| (e.key.clone(), yaml_to_value(&e.value)))
                .collect(),
        ),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Json,
    Yaml,
}

const MACHINE_KEYS: &[&str] = &[
    "name",
    "domain",
    "os",
    "architecture",
    "site",
    "installed",
    "hardware",
    "ip",
    "lastHeartbeat",
    "properties",
];
const OS_KEYS: &[&str] = &["name", "type", "version", "servicePack"];
const INSTALLED_KEYS: &[&str] = &["product"];
const HARDWARE_KEYS: &[&str] = &["memoryMB", "diskFreeMB"];
const IP_KEYS: &[&str] = &["address", "subnet"];

fn decode_element(collector: &mut Collector, location: Location, value: &Value, source: Source) {
    let Value::Object(map) = value else {
        let expected = match source {
            Source::Json => "a machine (an object)",
            Source::Yaml => "a machine (a mapping)",
        };
        collector.problem(Problem::new(location, expected, describe(value, source)));
        return;
    };
    let mut decoder = Decoder {
        source,
        problems: Vec::new(),
    };
    let machine = decoder.machine(map);
    collector.machine(location, machine, decoder.problems);
}

fn describe(value: &Value, source: Source) -> Found {
    Found::Described(
        match value {
            Value::Null => return Found::Nothing,
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "text",
            Value::Array(_) => "a list",
            Value::Object(_) if source == Source::Json => "an object",
            Value::Object(_) => "a mapping",
        }
        .into(),
    )
}

/// Reads the serde shape of [`Machine`] from a JSON value, reporting every
/// bad field instead of the first, with the query property names.
struct Decoder {
    source: Source,
    problems: Vec<FieldProblem>,
}

impl Decoder {
    fn machine(&mut self, map: &Map<String, Value>) -> Machine {
        let mut m = Machine::named(String::new());
        for (key, value) in map {
            match key.as_str() {
                "name" => m.name = self.text("name", value).unwrap_or_default(),
                "domain" => m.domain = self.text("domain", value),
                "architecture" => m.architecture = self.text("architecture", value),
                "site" => m.site = self.text("site", value),
                "lastHeartbeat" => {
                    m.last_heartbeat = self
                        .text("lastHeartbeat", value)
                        .and_then(|t| parse_timestamp("lastHeartbeat", &t, &mut self.problems));
                }
                "os" => {
                    for (key, value) in self.object("os", value) {
                        match key.as_str() {
                            "name" => m.os.name = self.text("os.name", value),
                            "type" => m.os.os_type = self.text("os.type", value),
                            "version" => m.os.version = self.text("os.version", value),
                            "servicePack" => {
                                m.os.service_pack =
                                    self.number("os.servicePack", value).and_then(|n| {
                                        u32::try_from(n)
                                            .map_err(|_| {
                                                self.problems.push(service_pack_problem(n))
                                            })
                                            .ok()
                                    });
                            }
                            _ => self.unknown("os", key, OS_KEYS),
                        }
                    }
                }
                "installed" => {
                    for (key, value) in self.object("installed", value) {
                        match key.as_str() {
                            "product" => {
                                m.installed.products = self.list("installed.product", value);
                            }
                            _ => self.unknown("installed", key, INSTALLED_KEYS),
                        }
                    }
                }
                "hardware" => {
                    for (key, value) in self.object("hardware", value) {
                        match key.as_str() {
                            "memoryMB" => {
                                m.hardware.memory_mb = self.number("hardware.memoryMB", value);
                            }
                            "diskFreeMB" => {
                                m.hardware.disk_free_mb = self.number("hardware.diskFreeMB", value);
                            }
                            _ => self.unknown("hardware", key, HARDWARE_KEYS),
                        }
                    }
                }
                "ip" => {
                    for (key, value) in self.object("ip", value) {
                        let field = format!("ip.{key}");
                        let texts = match key.as_str() {
                            "address" | "subnet" => self.list(&field, value),
                            _ => {
                                self.unknown("ip", key, IP_KEYS);
                                continue;
                            }
                        };
                        let addresses = parse_addresses(
                            &field,
                            texts.iter().map(String::as_str),
                            &mut self.problems,
                        );
                        if key == "address" {
                            m.ip.addresses = addresses;
                        } else {
                            m.ip.subnets = addresses;
                        }
                    }
                }
                "properties" => {
                    for (key, value) in self.object("properties", value) {
                        let field = format!("{PROPERTIES_PREFIX}{}", excerpt(key));
                        if let Some(text) = self.text(&field, value) {
                            m.properties.insert(key.clone(), text);
                        }
                    }
                }
                _ => self.unknown("", key, MACHINE_KEYS),
            }
        }
        m
    }

    fn text(&mut self, field: &str, value: &Value) -> Option<String> {
        match value {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => {
                self.problems.push(FieldProblem::new(
                    field,
                    "text",
                    describe(other, self.source),
                ));
                None
            }
        }
    }

    fn number(&mut self, field: &str, value: &Value) -> Option<u64> {
        match value {
            Value::Null => None,
            Value::Number(n) => {
                let whole = n.as_u64();
                if whole.is_none() {
                    self.problems.push(FieldProblem::new(
                        field,
                        "a whole number",
                        Found::value(&n.to_string()),
                    ));
                }
                whole
            }
            Value::String(s) if self.source == Source::Yaml => {
                parse_number(field, s, &mut self.problems)
            }
            other => {
                let found = match other {
                    Value::String(s) => Found::Described(format!("the text `{}`", excerpt(s))),
                    other => describe(other, self.source),
                };
                self.problems
                    .push(FieldProblem::new(field, "a whole number", found));
                None
            }
        }
    }

    fn list(&mut self, field: &str, value: &Value) -> Vec<String> {
        match value {
            Value::Null => Vec::new(),
            Value::Array(items) => items.iter().filter_map(|v| self.text(field, v)).collect(),
            other => {
                self.problems.push(FieldProblem::new(
                    field,
                    "a list",
                    describe(other, self.source),
                ));
                Vec::new()
            }
        }
    }

    fn object<'v>(
        &mut self,
        field: &str,
        value: &'v Value,
    ) -> impl Iterator<Item = (&'v String, &'v Value)> {
        let map = match value {
            Value::Object(map) => Some(map),
            Value::Null => None,
            other => {
                let expected = match self.source {
                    Source::Json => "an object",
                    Source::Yaml => "a mapping",
                };
                self.problems.push(FieldProblem::new(
                    field,
                    expected,
                    describe(other, self.source),
                ));
                None
            }
        };
        map.into_iter().flatten()
    }

    fn unknown(&mut self, parent: &str, key: &str, known: &[&'static str]) {
        let field = if parent.is_empty() {
            excerpt(key)
        } else {
            format!("{parent}.{}", excerpt(key))
        };
        let hint = did_you_mean(key, known.iter().copied()).map(|s| format!("did you mean `{s}`?"));
        self.problems.push(
            FieldProblem::new(
                field,
                format!("one of {}", known.join(", ")),
                Found::Described("an unknown field".into()),
            )
            .hint(hint),
        );
    }
}
