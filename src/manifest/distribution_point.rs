use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
}

fn default_max_concurrent_transfers() -> u32 {
    4
}
