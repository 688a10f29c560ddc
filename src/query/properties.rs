//! Resolving the inventory properties a query names, against the one list
//! of them (`inventory::property`), for type checking and the user
//! documentation.

use std::ops::Range;

use super::ast::{Property, PropertyKind};
use super::error::QueryError;
use crate::excerpt::of as excerpt;
use crate::suggest::did_you_mean as closest;

use crate::inventory::property::{free_form_key, Fact, FACTS, FREE_FORM_PREFIX};
use PropertyKind::Text;

const FREE_FORM_PLACEHOLDER: &str = "properties.<key>";

/// Every known property and its type, for documentation. Free-form
/// properties appear once, as `properties.<key>`.
pub fn known_properties() -> impl Iterator<Item = (&'static str, PropertyKind)> {
    FACTS
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
    if let Some(def) = Fact::lookup(name) {
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
    if let Some(known) = closest(name, FACTS.iter().map(|def| def.name)) {
        return Some(known.to_owned());
    }
    // A misspelt free-form namespace, e.g. `property.owner`.
    let (namespace, key) = name.split_once('.')?;
    let free_form_namespace = FREE_FORM_PREFIX.trim_end_matches('.');
    closest(namespace, [free_form_namespace]).map(|_| format!("{FREE_FORM_PREFIX}{key}"))
}
