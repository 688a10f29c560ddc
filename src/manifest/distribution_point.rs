use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::DurationText;

/// A distribution point: a content library that the site server writes and
/// clients download from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DistributionPointSpec {
    /// The content library's root directory on the site server (local or
    /// mounted). Absolute, or relative to the directory patchops runs in.
    pub path: String,
    /// Where clients download from (`http://` or `https://`), as they will
    /// be told in their policy.
    pub url: String,
    /// What the distribution point is for.
    #[serde(default)]
    pub comment: String,
    /// Subnets (CIDR, e.g. `10.1.0.0/16`) for which this distribution point
    /// is local; clients elsewhere treat it as remote (SMS's protected
    /// distribution point boundaries). Empty: local to every client.
    #[serde(default)]
    pub boundaries: Vec<String>,
    /// Most files copied to this distribution point at once.
    #[serde(default = "default_max_concurrent_transfers")]
    pub max_concurrent_transfers: u32,
    /// A disabled distribution point keeps its content but is offered to no
    /// client.
    #[serde(default = "super::default_true")]
    pub enabled: bool,
    /// Deep content validation on a schedule (as SMS/ConfigMgr's content
    /// validation): the leading site server re-hashes every file of the
    /// library and records what it found (`status dp`).
    #[serde(default)]
    pub validation: Validation,
}

/// The schedule of a distribution point's deep content validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Validation {
    /// How long after the last validation the next one is due.
    #[serde(default = "default_validation_every")]
    pub every: DurationText,
    /// `false`: never validated on a schedule (`dp validate --deep` and
    /// `apply --validate` still check it).
    #[serde(default = "super::default_true")]
    pub enabled: bool,
}

impl Default for Validation {
    fn default() -> Self {
        Validation {
            every: default_validation_every(),
            enabled: true,
        }
    }
}

fn default_validation_every() -> DurationText {
    DurationText("7d".into())
}

fn default_max_concurrent_transfers() -> u32 {
    4
}
