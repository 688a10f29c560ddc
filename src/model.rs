//! The desired site: every object of the manifests, validated, by kind and
//! name. This is what plans compare with the state; it holds no YAML and no
//! positions beyond each object's origin.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::manifest::{
    AdvertisementSpec, CollectionSpec, DistributionPointSpec, Kind, Metadata, PackageSpec,
    SiteSpec, SoftwareUpdatePackageSpec, SyncHostSpec,
};

/// Where an object was declared: its file (relative to the manifest
/// directory) and the line its document starts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Origin {
    pub file: String,
    pub line: u32,
}

/// `FILE:LINE`, the file name escaped: origins are written into messages
/// ("first declared at …") that are printed as text, where a newline in a
/// file name would start a forged line. (Escaping is idempotent, so a
/// printer escaping the whole again changes nothing.)
impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", crate::untrusted::shown(&self.file), self.line)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Object<S> {
    pub metadata: Metadata,
    pub spec: S,
    #[serde(skip)]
    pub origin: Origin,
}

impl<S> Object<S> {
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// `patchops/protect: "true"`: no plan may delete it.
    pub fn is_protected(&self) -> bool {
        self.metadata
            .annotations
            .get(PROTECT_ANNOTATION)
            .is_some_and(|v| v == "true")
    }
}

pub const PROTECT_ANNOTATION: &str = "patchops/protect";

/// The whole desired site, in canonical (name) order within each kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Desired {
    pub site: Option<Object<SiteSpec>>,
    pub distribution_points: BTreeMap<String, Object<DistributionPointSpec>>,
    pub collections: BTreeMap<String, Object<CollectionSpec>>,
    pub packages: BTreeMap<String, Object<PackageSpec>>,
    pub advertisements: BTreeMap<String, Object<AdvertisementSpec>>,
    pub sync_hosts: BTreeMap<String, Object<SyncHostSpec>>,
    pub software_update_packages: BTreeMap<String, Object<SoftwareUpdatePackageSpec>>,
}

impl Desired {
    /// How many objects of every kind.
    pub fn len(&self) -> usize {
        usize::from(self.site.is_some())
            + self.distribution_points.len()
            + self.collections.len()
            + self.packages.len()
            + self.advertisements.len()
            + self.sync_hosts.len()
            + self.software_update_packages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a collection of that name exists, declared or built in.
    pub fn has_collection(&self, name: &str) -> bool {
        self.collections.contains_key(name) || builtin_collection(name).is_some()
    }

    /// Whether an object of `kind` named `name` exists.
    pub fn contains(&self, kind: Kind, name: &str) -> bool {
        match kind {
            Kind::Site => self.site.as_ref().is_some_and(|s| s.name() == name),
            Kind::DistributionPoint => self.distribution_points.contains_key(name),
            Kind::Collection => self.collections.contains_key(name),
            Kind::Package => self.packages.contains_key(name),
            Kind::Advertisement => self.advertisements.contains_key(name),
            Kind::SyncHost => self.sync_hosts.contains_key(name),
            Kind::SoftwareUpdatePackage => self.software_update_packages.contains_key(name),
        }
    }

    /// Names of every object of `kind`.
    pub fn names(&self, kind: Kind) -> Vec<&str> {
        fn keys<S>(m: &BTreeMap<String, Object<S>>) -> Vec<&str> {
            m.keys().map(String::as_str).collect()
        }
        match kind {
            Kind::Site => self.site.iter().map(|s| s.name()).collect(),
            Kind::DistributionPoint => keys(&self.distribution_points),
            Kind::Collection => keys(&self.collections),
            Kind::Package => keys(&self.packages),
            Kind::Advertisement => keys(&self.advertisements),
            Kind::SyncHost => keys(&self.sync_hosts),
            Kind::SoftwareUpdatePackage => keys(&self.software_update_packages),
        }
    }
}

/// A collection every site has without declaring it, and the query that
/// defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinCollection {
    pub name: &'static str,
    /// None: every machine.
    pub query: Option<&'static str>,
}

pub const BUILTIN_COLLECTIONS: &[BuiltinCollection] = &[
    BuiltinCollection {
        name: "All Systems",
        query: None,
    },
    BuiltinCollection {
        name: "All Windows Workstations",
        query: Some("os.type = 'workstation'"),
    },
    BuiltinCollection {
        name: "All Windows Servers",
        query: Some("os.type in ('server', 'domainController')"),
    },
    BuiltinCollection {
        name: "All Windows 2000 Systems",
        query: Some("os.version >= '5.0' and os.version < '5.1'"),
    },
    BuiltinCollection {
        name: "All Windows XP Systems",
        query: Some("os.type = 'workstation' and os.version >= '5.1' and os.version < '5.2'"),
    },
    BuiltinCollection {
        name: "All Windows Server 2003 Systems",
        query: Some("os.type != 'workstation' and os.version >= '5.2' and os.version < '6.0'"),
    },
];

pub fn builtin_collection(name: &str) -> Option<&'static BuiltinCollection> {
    BUILTIN_COLLECTIONS.iter().find(|b| b.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_collection_queries_parse() {
        for builtin in BUILTIN_COLLECTIONS {
            if let Some(query) = builtin.query {
                crate::query::parse(query)
                    .unwrap_or_else(|e| panic!("{}: {}", builtin.name, e.message));
            }
        }
    }
}
