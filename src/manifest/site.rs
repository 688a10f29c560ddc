use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::DurationText;

/// The SMS site: one per repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SiteSpec {
    /// The three-character site code (letters and digits), e.g. `LAB`.
    pub site_code: String,
    /// The site server's host name.
    pub site_server: String,
    /// What the site is for.
    #[serde(default)]
    pub comment: String,
    /// The parent site's code in a hierarchy; none for a central site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_site_code: Option<String>,
    /// Settings every client of the site receives.
    #[serde(default)]
    pub client_policy: ClientPolicySettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientPolicySettings {
    /// How often clients ask for new policy (SMS's policy polling interval).
    #[serde(default = "default_polling_interval")]
    pub polling_interval: DurationText,
    /// Spread of each poll, so that thousands of clients do not poll at once.
    #[serde(default = "default_polling_jitter")]
    pub jitter: DurationText,
    /// How often clients report a heartbeat (discovery data).
    #[serde(default = "default_heartbeat_interval")]
    pub heartbeat_interval: DurationText,
}

impl Default for ClientPolicySettings {
    fn default() -> Self {
        ClientPolicySettings {
            polling_interval: default_polling_interval(),
            jitter: default_polling_jitter(),
            heartbeat_interval: default_heartbeat_interval(),
        }
    }
}

fn default_polling_interval() -> DurationText {
    DurationText("60m".into())
}

fn default_polling_jitter() -> DurationText {
    DurationText("5m".into())
}

fn default_heartbeat_interval() -> DurationText {
    DurationText("1d".into())
}
