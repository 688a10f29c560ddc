use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CanRun, Interval, RepoPath, SecretRef};

/// The sync host: the machine that fetches update catalogs (MSSecure.XML,
/// the Office update database) into the inventory tools' packages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SyncHostSpec {
    /// The machine that runs the synchronization.
    pub host: String,
    /// How often the catalogs are synchronized.
    #[serde(default = "default_schedule")]
    pub schedule: Interval,
    /// Run without prompting anyone.
    #[serde(default = "super::default_true")]
    pub unattended: bool,
    /// When the synchronization may run, relative to user logons.
    #[serde(default = "default_can_run")]
    pub can_run: CanRun,
    /// The options of the sync command line (`/s /unattend /site /code
    /// /target /package`); unset values come from the site and the
    /// catalog's package.
    #[serde(default)]
    pub command: SyncCommand,
    /// The catalogs to fetch.
    #[serde(default)]
    pub catalogs: Vec<Catalog>,
    /// The proxy between the sync host and the catalogs; none: a direct
    /// connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<Proxy>,
    /// TLS for `https://` catalogs and update downloads; none: the system's
    /// trusted certificate authorities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<SyncTls>,
}

/// Which certificate authorities the sync host trusts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SyncTls {
    /// A PEM file of CA certificates in the repository: trusted instead of
    /// the system's certificate store (for servers whose certificate a
    /// private CA issued).
    pub ca_file: RepoPath,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SyncCommand {
    /// `/s`: run silently.
    #[serde(default = "super::default_true")]
    pub silent: bool,
    /// `/site`: the site server; none: the Site's `siteServer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_server: Option<String>,
    /// `/code`: the site code; none: the Site's `siteCode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_code: Option<String>,
    /// `/target`: where the catalog is written; none: the catalog package's
    /// source directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RepoPath>,
    /// `/package`: the SMS package ID to refresh (e.g. `LAB00012`); none:
    /// the catalog's package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Catalog {
    /// Which catalog this is.
    #[serde(rename = "type")]
    pub catalog_type: CatalogType,
    /// Where it is downloaded from (`http://`, `https://` or `file://`).
    pub url: String,
    /// The package whose source receives the catalog; its distribution
    /// points are refreshed after each change.
    pub package: String,
    /// The catalog's pinned SHA-256 (64 hexadecimal digits): content with
    /// another hash is refused. A catalog needs `sha256` or `signature`;
    /// unverified content is never used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A detached signature fetched beside the catalog: HMAC-SHA256 of the
    /// catalog's bytes under a shared key, written as 64 hexadecimal digits
    /// (optionally prefixed `hmac-sha256:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<CatalogSignature>,
}

/// Where a catalog's detached signature is, and the key that checks it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CatalogSignature {
    /// Where the signature is downloaded from (`http://`, `https://` or
    /// `file://`), through the same proxy as the catalog.
    pub url: String,
    /// Where the HMAC key comes from: `{env: NAME}` or `{file: PATH}`.
    pub key_from: SecretRef,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
    utoipa::ToSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum CatalogType {
    /// MSSecure.XML, the security update catalog.
    Security,
    /// The Office update database (Invcif).
    Office,
}

/// A proxy: unauthenticated with `url` alone, authenticated with `username`
/// and `passwordFrom`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Proxy {
    /// `http://host:port`, without credentials.
    pub url: String,
    /// Use HTTP 1.1 through the proxy.
    #[serde(default = "super::default_true")]
    pub http11: bool,
    /// For an authenticated proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Where the password comes from: `{env: NAME}` or `{file: PATH}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_from: Option<SecretRef>,
}

impl Default for SyncCommand {
    /// The same values as each field's own default.
    fn default() -> Self {
        SyncCommand {
            silent: true,
            site_server: None,
            site_code: None,
            target: None,
            package_id: None,
        }
    }
}

fn default_schedule() -> Interval {
    Interval {
        every: super::common::DurationText("1d".into()),
        start: None,
    }
}

fn default_can_run() -> CanRun {
    CanRun::WhetherOrNotUserLoggedOn
}
