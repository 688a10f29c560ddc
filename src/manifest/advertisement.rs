use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{DurationText, Priority, TimeText};

/// An advertisement: offers one program of a package to a collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AdvertisementSpec {
    /// The package whose program is advertised.
    pub package: String,
    /// The program, by its name in the package.
    pub program: String,
    /// The collection the program is offered to.
    pub collection: String,
    /// What the advertisement is for.
    #[serde(default)]
    pub comment: String,
    /// Offer it to the members of the collection's subcollections (those it
    /// includes) as well.
    #[serde(default = "super::default_true")]
    pub include_subcollections: bool,
    /// When the advertisement becomes available; none: as soon as applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_after: Option<TimeText>,
    /// When the advertisement expires; none: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<TimeText>,
    /// Mandatory assignments. With none the advertisement is optional: users
    /// may run it, nothing runs it for them.
    #[serde(default)]
    pub schedule: Vec<Assignment>,
    /// Let users run the program on their own, independently of the
    /// assignments.
    #[serde(default = "super::default_true")]
    pub allow_users_to_run_independently: bool,
    /// Whether a program that already ran runs again at the next assignment.
    #[serde(default)]
    pub rerun: Rerun,
    /// Assignments stay mandatory over slow (remote) links.
    #[serde(default)]
    pub mandatory_over_slow_links: bool,
    /// Priority of the advertisement.
    #[serde(default)]
    pub priority: Priority,
    /// What the client does when its distribution point is local.
    #[serde(default)]
    pub local_distribution_point: LocalDpAction,
    /// What the client does when only remote distribution points have the
    /// content.
    #[serde(default)]
    pub remote_distribution_point: RemoteDpAction,
}

/// One mandatory assignment: either `start` (with an optional `every` for a
/// recurring one) or `event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Assignment {
    /// Run at this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<TimeText>,
    /// Then again every interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<DurationText>,
    /// Run when this happens instead of at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<AssignmentEvent>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum AssignmentEvent {
    /// As soon as the client receives the policy.
    AsSoonAsPossible,
    /// At the next user logon.
    Logon,
    /// At the next user logoff.
    Logoff,
}

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
pub enum Rerun {
    /// Never rerun a program that already ran.
    Never,
    /// Always rerun at each assignment.
    Always,
    /// Rerun if the previous attempt failed (the SMS default).
    #[default]
    IfFailed,
    /// Rerun if the previous attempt succeeded.
    IfSucceeded,
}

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
pub enum LocalDpAction {
    /// Run the program from the distribution point.
    RunFromDistributionPoint,
    /// Download the content first, then run it locally.
    #[default]
    DownloadAndRun,
}

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
pub enum RemoteDpAction {
    /// Do not run the program.
    #[default]
    DoNotRun,
    /// Run the program from the remote distribution point.
    RunFromDistributionPoint,
    /// Download the content from the remote distribution point, then run it.
    DownloadAndRun,
}
