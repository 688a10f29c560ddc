//! The wire shape of manifests: what users write in YAML, with serde and
//! schemars derives. These types are boundary types; [`crate::model`] holds
//! their validated meaning.
//!
//! Every field has a documented default (`#[serde(default…)]`), so a
//! manifest read back out through serde is in canonical form: every default
//! filled in, which is what later plans compare.

pub mod advertisement;
pub mod collection;
pub mod common;
pub mod distribution_point;
pub mod package;
pub mod site;
pub mod software_update_package;
pub mod sync_host;

use std::sync::OnceLock;

use schemars::generate::SchemaSettings;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use advertisement::AdvertisementSpec;
pub use collection::CollectionSpec;
pub use common::Metadata;
pub use distribution_point::DistributionPointSpec;
pub use package::PackageSpec;
pub use site::SiteSpec;
pub use software_update_package::SoftwareUpdatePackageSpec;
pub use sync_host::SyncHostSpec;

/// The only API version this release reads.
pub const API_VERSION: &str = "patchops/v1";

fn default_true() -> bool {
    true
}

macro_rules! kinds {
    ($($kind:ident => $spec:ty, $stem:literal, $doc:literal;)*) => {
        /// The kinds of object a site is made of.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Kind { $($kind),* }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$kind),*];

            pub fn as_str(self) -> &'static str {
                match self { $(Kind::$kind => stringify!($kind)),* }
            }

            /// The file name of the kind's JSON Schema under `schemas/`.
            pub fn schema_file(self) -> &'static str {
                match self { $(Kind::$kind => concat!($stem, ".schema.json")),* }
            }

            fn description(self) -> &'static str {
                match self { $(Kind::$kind => $doc),* }
            }

            fn spec_schema(self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                match self { $(Kind::$kind => generator.subschema_for::<$spec>()),* }
            }
        }

        /// A manifest's spec, by kind.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum Spec { $($kind($spec)),* }

        impl Spec {
            pub fn kind(&self) -> Kind {
                match self { $(Spec::$kind(_) => Kind::$kind),* }
            }

            /// Deserializes a spec that passed the kind's schema check.
            pub fn from_value(kind: Kind, value: Value) -> Result<Spec, serde_json::Error> {
                Ok(match kind { $(Kind::$kind => Spec::$kind(serde_json::from_value(value)?)),* })
            }
        }
    };
}

kinds! {
    Site => SiteSpec, "site", "The SMS site: its code, its server and the settings of its clients. One per repository.";
    DistributionPoint => DistributionPointSpec, "distribution-point", "A distribution point: a content library clients download package content from.";
    Collection => CollectionSpec, "collection", "A collection of machines, from queries, direct members and other collections.";
    Package => PackageSpec, "package", "A package: source content on distribution points and the programs that run it.";
    Advertisement => AdvertisementSpec, "advertisement", "An advertisement: offers a package's program to a collection, optionally on a mandatory schedule.";
    SyncHost => SyncHostSpec, "sync-host", "The sync host: fetches update catalogs (MSSecure.XML, the Office update database) into the inventory tools' packages.";
    SoftwareUpdatePackage => SoftwareUpdatePackageSpec, "software-update-package", "A software update package, as made by the Distribute Software Updates wizard.";
}

impl std::str::FromStr for Kind {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Kind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or(())
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One object of the site as written: kind, metadata and spec.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub api_version: &'static str,
    pub kind: Kind,
    pub metadata: Metadata,
    /// Boxed: kinds' specs differ in size by several times, and a site
    /// holds 100,000 manifests while it is validated.
    pub spec: Box<Spec>,
}

/// The JSON Schema of one kind's manifest (draft 2020-12), as written to
/// `schemas/` and used by `validate` itself, so editors and the CLI agree.
pub fn kind_schema(kind: Kind) -> &'static Value {
    static SCHEMAS: OnceLock<Vec<Value>> = OnceLock::new();
    let all = SCHEMAS.get_or_init(|| Kind::ALL.iter().map(|k| build_kind_schema(*k)).collect());
    &all[Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0)]
}

fn build_kind_schema(kind: Kind) -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator();
    let metadata = generator.subschema_for::<Metadata>();
    let spec = kind.spec_schema(&mut generator);
    let defs = generator.take_definitions(true);
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": kind.as_str(),
        "description": kind.description(),
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": false,
        "properties": {
            "apiVersion": { "const": API_VERSION, "description": "The manifest format's version." },
            "kind": { "const": kind.as_str() },
            "metadata": metadata,
            "spec": spec,
        },
        "$defs": defs,
    })
}

/// One schema for files that mix kinds: it picks the kind's schema by `kind`.
pub fn combined_schema() -> Value {
    let branches: Vec<Value> = Kind::ALL
        .iter()
        .map(|k| {
            json!({
                "if": { "properties": { "kind": { "const": k.as_str() } }, "required": ["kind"] },
                "then": { "$ref": k.schema_file() },
            })
        })
        .collect();
    let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "patchops manifest",
        "description": "Any patchops manifest; the `kind` field selects its schema.",
        "type": "object",
        "required": ["apiVersion", "kind"],
        "properties": {
            "apiVersion": { "const": API_VERSION },
            "kind": { "enum": kinds },
        },
        "allOf": branches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A struct's `Default` (used when the whole field is omitted) must
    /// agree with its fields' own serde defaults (used when one is omitted).
    #[test]
    fn struct_defaults_match_field_defaults() {
        fn check<T: Default + Serialize + serde::de::DeserializeOwned>(name: &str) {
            let from_default = serde_json::to_value(T::default()).unwrap();
            let from_empty: T = serde_json::from_value(serde_json::json!({})).unwrap();
            assert_eq!(
                from_default,
                serde_json::to_value(from_empty).unwrap(),
                "{name}"
            );
        }
        check::<site::ClientPolicySettings>("ClientPolicySettings");
        check::<sync_host::SyncCommand>("SyncCommand");
        check::<software_update_package::InstallAgent>("InstallAgent");
        check::<software_update_package::Notification>("Notification");
        check::<software_update_package::Ohotfix>("Ohotfix");
    }
}
