//! Pieces that several kinds share: metadata, references to secrets, and the
//! string-typed values (durations, times, paths, queries) whose meaning is
//! checked when the manifests are lowered into the model.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// Every manifest's `metadata`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    /// The object's name, unique within its kind. SMS names such as
    /// `MS Security Updates (Pre-production)` are fine: spaces and
    /// parentheses are allowed.
    pub name: String,
    /// Free-form labels for people and tools.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Free-form annotations. `patchops/protect: "true"` makes the object
    /// undeletable by a plan.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident, $schema_name:literal, $description:literal $(, $pattern:literal)?) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                $schema_name.into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                #[allow(unused_mut)]
                let mut schema = json_schema!({ "type": "string", "description": $description });
                $(schema.insert("pattern".into(), $pattern.into());)?
                schema
            }
        }
    };
}

text_type!(
    /// A duration: `30s`, `5m`, `60m`, `1h30m`, `1d`, `7d`, `2w`.
    DurationText,
    "Duration",
    "A duration: a number and a unit (s, m, h, d, w), repeated: 30s, 5m, 1h30m, 1d, 7d.",
    "^([0-9]+[smhdw])+$"
);
text_type!(
    /// A point in time: RFC 3339 with an offset for one instant everywhere,
    /// or without an offset for the same wall-clock time in each client's
    /// own time zone (SMS's "local time" as opposed to GMT).
    TimeText,
    "Time",
    "RFC 3339 time. With an offset (2026-11-24T02:00:00Z) it is one instant everywhere; without (2026-11-24T02:00:00) it is that wall-clock time in each client's own time zone."
);
text_type!(
    /// A path relative to the manifest repository's root.
    RepoPath,
    "RepoPath",
    "A path relative to the root of the manifest repository; it may not leave the repository."
);
text_type!(
    /// A collection query, e.g. `os.name like 'Microsoft Windows%'`.
    QueryText,
    "Query",
    "A collection query over inventory properties, e.g. os.name like 'Microsoft Windows%' and os.version >= '5.1.2600'."
);
text_type!(
    /// A disk size: `500KB`, `50MB`, `2GB`.
    SizeText,
    "Size",
    "A size with a unit: 500KB, 50MB, 2GB.",
    "^[0-9]+ ?(KB|MB|GB)$"
);

/// Where a secret comes from. The secret itself never appears in a
/// manifest, a plan, the state or a log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum SecretRef {
    /// The name of an environment variable of the process that needs it.
    Env(String),
    /// A file on the machine that needs it; its content, less a trailing
    /// newline, is the secret.
    File(String),
}

/// Sending priority of content and advertisements.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
    utoipa::ToSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Priority {
    Low,
    #[default]
    Medium,
    High,
}

/// When a program may run, relative to user logons.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
    utoipa::ToSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum CanRun {
    /// Only while a user is logged on (the SMS default).
    #[default]
    OnlyWhenUserLoggedOn,
    /// Whether or not a user is logged on.
    WhetherOrNotUserLoggedOn,
    /// Only while no user is logged on.
    OnlyWhenNoUserLoggedOn,
}

/// A repeating interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Interval {
    /// How often.
    pub every: DurationText,
    /// The first time; without it, counted from when the object is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<TimeText>,
}
