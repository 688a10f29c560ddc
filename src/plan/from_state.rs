//! The inverse of [`canonical_objects`](super::canonical_objects): the site
//! as the state holds it, read back into the model. The site server serves
//! policy from what was *applied*, not from whatever the manifests say now,
//! and a plan compares the policy of the applied site with the policy of the
//! desired one.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::content::ContentSummary;
use crate::manifest::{Kind, Metadata, PackageSpec};
use crate::model::{Desired, Object, Origin};
use crate::records::{Owner, StoredObject};

/// The applied site and the content version of each package with content.
#[derive(Debug, Clone, Default)]
pub struct AppliedSite {
    pub desired: Desired,
    pub content: BTreeMap<String, ContentSummary>,
    /// What each Ready software update package was built into.
    pub updates: BTreeMap<String, crate::supdate::policy::UpdateBuild>,
}

/// Why a stored object could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the state holds {kind} `{name}` in a form this patchops cannot read: {reason}")]
pub struct FromStateError {
    pub kind: String,
    pub name: String,
    pub reason: String,
}

/// Rebuilds the site from stored objects. Objects released with `state
/// unmanage` are left out: patchops no longer acts on them.
pub fn applied_site(objects: &[StoredObject]) -> Result<AppliedSite, FromStateError> {
    let mut site = AppliedSite::default();
    for stored in objects.iter().filter(|o| o.owner == Owner::Patchops) {
        let error = |reason: String| FromStateError {
            kind: stored.kind.clone(),
            name: stored.name.clone(),
            reason,
        };
        let kind: Kind = stored
            .kind
            .parse()
            .map_err(|()| error("unknown kind".to_string()))?;
        let desired = &mut site.desired;
        match kind {
            Kind::Site => desired.site = Some(object(stored).map_err(error)?),
            Kind::DistributionPoint => insert(&mut desired.distribution_points, stored)?,
            Kind::Collection => insert(&mut desired.collections, stored)?,
            Kind::Advertisement => insert(&mut desired.advertisements, stored)?,
            Kind::SyncHost => insert(&mut desired.sync_hosts, stored)?,
            Kind::SoftwareUpdatePackage => {
                let with_build: Object<UpdatesWithBuild> = object(stored).map_err(error)?;
                if let Some(build) = with_build.spec.build {
                    site.updates.insert(stored.name.clone(), build);
                }
                desired.software_update_packages.insert(
                    stored.name.clone(),
                    Object {
                        metadata: with_build.metadata,
                        spec: with_build.spec.spec,
                        origin: with_build.origin,
                    },
                );
            }
            Kind::Package => {
                let with_content: Object<PackageWithContent> = object(stored).map_err(error)?;
                if let Some(c) = with_content.spec.content {
                    site.content.insert(
                        stored.name.clone(),
                        ContentSummary {
                            version: c.version,
                            files: c.files,
                            bytes: c.bytes,
                        },
                    );
                }
                desired.packages.insert(
                    stored.name.clone(),
                    Object {
                        metadata: with_content.metadata,
                        spec: with_content.spec.spec,
                        origin: with_content.origin,
                    },
                );
            }
        }
    }
    Ok(site)
}

#[derive(Deserialize)]
struct PackageWithContent {
    #[serde(flatten)]
    spec: PackageSpec,
    #[serde(default)]
    content: Option<StoredContent>,
}

#[derive(Deserialize)]
struct UpdatesWithBuild {
    #[serde(flatten)]
    spec: crate::manifest::SoftwareUpdatePackageSpec,
    #[serde(default)]
    build: Option<crate::supdate::policy::UpdateBuild>,
}

#[derive(Deserialize)]
struct StoredContent {
    version: String,
    files: usize,
    bytes: u64,
}

#[derive(Deserialize)]
struct StoredMetadata {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

fn insert<S: DeserializeOwned>(
    map: &mut BTreeMap<String, Object<S>>,
    stored: &StoredObject,
) -> Result<(), FromStateError> {
    let object = object(stored).map_err(|reason| FromStateError {
        kind: stored.kind.clone(),
        name: stored.name.clone(),
        reason,
    })?;
    map.insert(stored.name.clone(), object);
    Ok(())
}

fn object<S: DeserializeOwned>(stored: &StoredObject) -> Result<Object<S>, String> {
    let spec: S = serde_json::from_str(&stored.spec).map_err(|e| format!("spec: {e}"))?;
    let meta: StoredMetadata =
        serde_json::from_str(&stored.metadata).map_err(|e| format!("metadata: {e}"))?;
    Ok(Object {
        metadata: Metadata {
            name: stored.name.clone(),
            labels: meta.labels,
            annotations: meta.annotations,
        },
        spec,
        origin: Origin {
            file: stored.file.clone().unwrap_or_else(|| "(state)".to_string()),
            line: 0,
        },
    })
}

/// The example site, validated, with a made-up content version per
/// package; and canonical objects as the store would hold them.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::BTreeMap;

    use crate::content::ContentManifest;
    use crate::plan::CanonicalObject;
    use crate::records::{Owner, StoredObject};
    use crate::validate::{validate_dir, Options, Report};

    pub(crate) fn example_site() -> (Report, BTreeMap<String, ContentManifest>) {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/site");
        let report = validate_dir(&root, Options::default()).expect("example loads");
        assert!(report.is_valid());
        let content = report
            .desired
            .packages
            .keys()
            .map(|name| {
                let manifest = ContentManifest {
                    package: name.clone(),
                    version: format!("{:064x}", name.len()),
                    files: Vec::new(),
                };
                (name.clone(), manifest)
            })
            .collect();
        (report, content)
    }

    pub(crate) fn stored(objects: &[CanonicalObject]) -> Vec<StoredObject> {
        objects
            .iter()
            .map(|o| StoredObject {
                kind: o.kind.as_str().to_string(),
                name: o.name.clone(),
                spec: o.spec.clone(),
                spec_hash: o.hash.clone(),
                metadata: o.metadata.clone(),
                owner: Owner::Patchops,
                file: None,
                commit: None,
                created_serial: 1,
                updated_serial: 1,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{example_site, stored};
    use super::*;
    use crate::plan::canonical_objects;

    /// Reading the state back and canonicalizing again gives the same
    /// objects: nothing of the applied site is lost on the way.
    #[test]
    fn the_example_site_round_trips_through_the_state() {
        let (report, content) = example_site();
        let canonical = canonical_objects(&report.desired, &content, &Default::default());
        let applied = applied_site(&stored(&canonical)).expect("reads back");
        assert_eq!(applied.content.len(), content.len());
        let again = canonical_objects(&applied.desired, &content, &Default::default());
        let hashes = |v: &[crate::plan::CanonicalObject]| {
            v.iter()
                .map(|o| (o.kind, o.name.clone(), o.hash.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(hashes(&again), hashes(&canonical));
    }

    #[test]
    fn unreadable_objects_are_named() {
        let mut objects = stored(&[]);
        objects.push(StoredObject {
            kind: "Collection".into(),
            name: "Broken".into(),
            spec: r#"{"membership": 3}"#.into(),
            spec_hash: String::new(),
            metadata: "{}".into(),
            owner: Owner::Patchops,
            file: None,
            commit: None,
            created_serial: 1,
            updated_serial: 1,
        });
        let err = applied_site(&objects).unwrap_err();
        assert_eq!(
            (err.kind.as_str(), err.name.as_str()),
            ("Collection", "Broken")
        );
        assert!(
            err.reason.starts_with("spec: invalid type"),
            "{}",
            err.reason
        );
    }
}
