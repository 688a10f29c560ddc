//! One machine's inventory: the facts collection queries test and client
//! policy is computed from. The field layout follows the query property
//! names (`os.servicePack` is `os.servicePack` here too), so an inventory
//! file reads like the queries that select from it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A machine and its facts. Every fact but the name is optional: a machine
/// that has not reported a fact simply does not match tests of it (`is
/// null` matches).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
// A valid inventory (a unit test checks it): the OpenAPI document's
// example, which the contract test sends as `wks-hq-001`.
#[schema(examples(json!({
    "name": "wks-hq-001",
    "domain": "CORP",
    "os": {
        "name": "Microsoft Windows XP Professional",
        "type": "workstation",
        "version": "5.1.2600",
        "servicePack": 2
    },
    "architecture": "x86",
    "site": "LAB",
    "installed": {"product": ["Adobe Reader 7.0", "Microsoft .NET Framework 1.1"]},
    "hardware": {"memoryMB": 512, "diskFreeMB": 11776},
    "ip": {"address": ["10.1.10.11"], "subnet": ["10.1.10.0"]},
    "lastHeartbeat": "2026-11-22T06:59:23Z",
    "properties": {"department": "HR"}
})))]
pub struct Machine {
    /// The machine's NetBIOS name; unique in the site, compared without case.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "OsFacts::is_empty")]
    pub os: OsFacts,
    /// `x86`, `x64` or `ia64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// The site code the machine is assigned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Installed::is_empty")]
    pub installed: Installed,
    #[serde(default, skip_serializing_if = "Hardware::is_empty")]
    pub hardware: Hardware,
    #[serde(default, skip_serializing_if = "IpFacts::is_empty")]
    pub ip: IpFacts,
    /// When the machine last reported (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_heartbeat: Option<jiff::Timestamp>,
    /// Free-form facts, queried as `properties.<key>`; keys are letters,
    /// digits and `_`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

#[derive(
    Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OsFacts {
    /// e.g. `Microsoft Windows XP Professional`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `workstation`, `server` or `domainController`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub os_type: Option<String>,
    /// e.g. `5.1.2600`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The service pack number; 0 for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_pack: Option<u32>,
}

impl OsFacts {
    pub fn is_empty(&self) -> bool {
        *self == OsFacts::default()
    }
}

#[derive(
    Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Installed {
    /// Installed products by name, e.g. `Office 2003`.
    #[serde(default, rename = "product", skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<String>,
}

impl Installed {
    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }
}

#[derive(
    Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    #[serde(default, rename = "memoryMB", skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    #[serde(
        default,
        rename = "diskFreeMB",
        skip_serializing_if = "Option::is_none"
    )]
    pub disk_free_mb: Option<u64>,
}

impl Hardware {
    pub fn is_empty(&self) -> bool {
        *self == Hardware::default()
    }
}

#[derive(
    Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(deny_unknown_fields)]
pub struct IpFacts {
    /// The machine's IPv4 addresses, one per adapter.
    #[serde(default, rename = "address", skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    #[schema(value_type = Vec<String>)]
    pub addresses: Vec<Ipv4Addr>,
    /// The subnets the machine is on, as network addresses (`10.1.0.0`).
    #[serde(default, rename = "subnet", skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    #[schema(value_type = Vec<String>)]
    pub subnets: Vec<Ipv4Addr>,
}

impl IpFacts {
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty() && self.subnets.is_empty()
    }
}

impl Machine {
    /// A machine with a name and no facts.
    pub fn named(name: impl Into<String>) -> Machine {
        Machine {
            name: name.into(),
            domain: None,
            os: OsFacts::default(),
            architecture: None,
            site: None,
            installed: Installed::default(),
            hardware: Hardware::default(),
            ip: IpFacts::default(),
            last_heartbeat: None,
            properties: BTreeMap::new(),
        }
    }

    /// The name as the site compares it: NetBIOS names ignore case.
    pub fn key(&self) -> String {
        machine_key(&self.name)
    }
}

/// The form in which machine names are compared and stored as keys.
pub fn machine_key(name: &str) -> String {
    name.to_ascii_lowercase()
}
