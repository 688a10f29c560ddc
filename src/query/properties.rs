//! The registry of inventory properties a query may test. This table is the
//! single source for type checking and for the user documentation.

use std::ops::Range;

use super::ast::{Property, PropertyKind};
use super::error::{excerpt, QueryError};
use crate::suggest::did_you_mean as closest;

use PropertyKind::{Address, Number, Text, Time, Version};

const PROPERTIES: &[PropertyDef] = &[
    PropertyDef::new("name", Text),
    PropertyDef::new("domain", Text),
    PropertyDef::new("os.name", Text),
    PropertyDef::new("os.type", Text).values(&["workstation", "server", "domainController"]),
    PropertyDef::new("os.version", Version),
    PropertyDef::new("os.servicePack", Number),
    PropertyDef::new("architecture", Text).values(&["x86", "x64", "ia64"]),
    PropertyDef::new("site", Text),
    PropertyDef::new("installed.product", Text).multi_valued(),
    PropertyDef::new("hardware.memoryMB", Number),
    PropertyDef::new("hardware.diskFreeMB", Number),
    PropertyDef::new("ip.address", Address).multi_valued(),
    PropertyDef::new("ip.subnet", Address).multi_valued(),
    PropertyDef::new("lastHeartbeat", Time),
];

/// Free-form text properties from a machine's inventory, e.g. `properties.owner`.
const FREE_FORM_PREFIX: &str = "properties.";
const FREE_FORM_PLACEHOLDER: &str = "properties.<key>";

struct PropertyDef {
    name: &'static str,
    kind: PropertyKind,
    multi_valued: bool,
    /// The only values `=`, `!=` and `in` accept; empty when any value goes.
    values: &'static [&'static str],
}

impl PropertyDef {
    const fn new(name: &'static str, kind: PropertyKind) -> Self {
        Self {
            name,
            kind,
            multi_valued: false,
            values: &[],
        }
    }

    const fn values(self, values: &'static [&'static str]) -> Self {
        Self { values, ..self }
    }

    const fn multi_valued(self) -> Self {
        Self {
            multi_valued: true,
            ..self
        }
    }
}

/// Every known property and its type, for documentation. Free-form
/// properties appear once, as `properties.<key>`.
pub fn known_properties() -> impl Iterator<Item = (&'static str, PropertyKind)> {
    PROPERTIES
        .iter()
        .map(|def| (def.name, def.kind))
        .chain(std::iter::once((FREE_FORM_PLACEHOLDER, Text)))
}

/// A property found in the registry, with what type checking needs to know.
pub(super) struct Resolved {
    pub property: Property,
    pub allowed_values: &'static [&'static str],
}

/// Looks `name` up, ignoring case as WQL does, and returns the canonical
/// spelling. `span` is where `name` appears in the query, for errors.
pub(super) fn resolve(name: &str, span: Range<usize>) -> Result<Resolved, QueryError> {
    if let Some(def) = PROPERTIES
        .iter()
        .find(|def| def.name.eq_ignore_ascii_case(name))
    {
        return Ok(Resolved {
            property: Property {
                name: def.name.to_owned(),
                kind: def.kind,
                multi_valued: def.multi_valued,
            },
            allowed_values: def.values,
        });
    }
    match free_form_key(name) {
        Some(key) => resolve_free_form(key, span),
        None => Err(unknown(name, span)),
    }
}

fn free_form_key(name: &str) -> Option<&str> {
    let (prefix, key) = name.split_at_checked(FREE_FORM_PREFIX.len())?;
    prefix.eq_ignore_ascii_case(FREE_FORM_PREFIX).then_some(key)
}

fn resolve_free_form(key: &str, span: Range<usize>) -> Result<Resolved, QueryError> {
    if key.is_empty() {
        return Err(
            QueryError::new(span, format!("missing key after `{FREE_FORM_PREFIX}`")).with_help(
                format!("name the inventory property, e.g. `{FREE_FORM_PREFIX}owner`"),
            ),
        );
    }
    if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(
            QueryError::new(span, format!("invalid property key `{}`", excerpt(key)))
                .with_help("keys may contain only letters, digits and `_`"),
        );
    }
    Ok(Resolved {
        property: Property {
            name: format!("{FREE_FORM_PREFIX}{key}"),
            kind: Text,
            multi_valued: false,
        },
        allowed_values: &[],
    })
}

fn unknown(name: &str, span: Range<usize>) -> QueryError {
    let help = match suggestion(name) {
        Some(suggestion) => format!("did you mean `{suggestion}`?"),
        None => {
            let names: Vec<&str> = known_properties().map(|(name, _)| name).collect();
            format!("known properties are {}", names.join(", "))
        }
    };
    QueryError::new(span, format!("unknown property `{}`", excerpt(name))).with_help(help)
}

fn suggestion(name: &str) -> Option<String> {
    if let Some(known) = closest(name, PROPERTIES.iter().map(|def| def.name)) {
        return Some(known.to_owned());
    }
    // A misspelt free-form namespace, e.g. `property.owner`.
    let (namespace, key) = name.split_once('.')?;
    let free_form_namespace = FREE_FORM_PREFIX.trim_end_matches('.');
    closest(namespace, [free_form_namespace]).map(|_| format!("{FREE_FORM_PREFIX}{key}"))
}
