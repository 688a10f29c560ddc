use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Interval, QueryText};

/// A collection of machines, evaluated from its membership rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CollectionSpec {
    /// What the collection is for.
    #[serde(default)]
    pub comment: String,
    /// Members are limited to the members of this collection (declared or
    /// built in, e.g. `All Systems`). None: every machine in the inventory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limiting_collection: Option<String>,
    /// The rules, applied in order: queries, direct members and includes add
    /// machines; excludes remove them afterwards.
    #[serde(default)]
    pub membership: Vec<MembershipRule>,
    /// How often the collection is re-evaluated against the inventory.
    /// None: only when the collection or the inventory changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Interval>,
    /// The collection's role in the patch process, used by `validate
    /// --strict` to check the three-collection pattern of the inventory tools.
    #[serde(default)]
    pub purpose: CollectionPurpose,
}

/// One membership rule: exactly one of its forms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum MembershipRule {
    /// Machines whose inventory matches the query.
    Query(QueryText),
    /// Machines named directly (SMS direct membership rules).
    Direct(Vec<String>),
    /// Every member of these collections.
    Include(Vec<String>),
    /// No member of these collections, whatever the other rules say.
    Exclude(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CollectionPurpose {
    /// No particular role.
    #[default]
    General,
    /// The machines an inventory tool or update is deployed to in production.
    Production,
    /// Test clients that receive a deployment first.
    PreProduction,
    /// The machine that synchronizes an update catalog.
    SyncHost,
}
