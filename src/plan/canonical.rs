//! The canonical form of each desired object: what the state stores and
//! what plans compare. Two manifests that mean the same thing have the same
//! canonical form — defaults filled in, durations and times in one
//! spelling, queries in canonical text, set-like lists sorted — so an
//! unchanged site plans to "No changes" however it is written.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::content::ContentManifest;
use crate::content::ContentSummary;
use crate::manifest::advertisement::Assignment;
use crate::manifest::collection::MembershipRule;
use crate::manifest::common::{DurationText, Interval, TimeText};
use crate::manifest::software_update_package::UpdateAdvertisement;
use crate::manifest::{Kind, Metadata};
use crate::model::{Desired, Object, Origin};
use crate::units::{self, ScheduleTime};
use std::collections::BTreeMap;

/// One object as the state holds it. The canonical content is kept as
/// compact JSON text: that is what the state stores and what the hash is
/// taken over, and it is parsed only for objects that change.
#[derive(Debug, Clone, PartialEq)]
pub struct CanonicalObject {
    pub kind: Kind,
    pub name: String,
    /// `{"labels":…,"annotations":…}`, canonical JSON text.
    pub metadata: String,
    /// The spec, canonical JSON text.
    pub spec: String,
    /// SHA-256 of the canonical text of metadata and spec.
    pub hash: String,
    pub origin: Option<Origin>,
}

impl CanonicalObject {
    pub fn new(
        kind: Kind,
        name: String,
        metadata: String,
        spec: String,
        origin: Option<Origin>,
    ) -> Self {
        let hash = object_hash(&metadata, &spec);
        CanonicalObject {
            kind,
            name,
            metadata,
            spec,
            hash,
            origin,
        }
    }
}

/// The hash of an object's canonical content: SHA-256 of
/// `{"metadata":METADATA,"spec":SPEC}`.
pub fn object_hash(metadata: &str, spec: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"{\"metadata\":");
    hasher.update(metadata.as_bytes());
    hasher.update(b",\"spec\":");
    hasher.update(spec.as_bytes());
    hasher.update(b"}");
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// Every object of the desired site in canonical form, in apply order
/// (kind rank, then name).
///
/// `content` holds the content version of each package with a source: it
/// is part of the package's canonical form, so a change of its files is a
/// change of the package.
pub fn canonical_objects(
    desired: &Desired,
    content: &BTreeMap<String, ContentManifest>,
    updates: &BTreeMap<String, crate::supdate::policy::UpdateBuild>,
) -> Vec<CanonicalObject> {
    let mut out = Vec::with_capacity(desired.len());
    if let Some(site) = &desired.site {
        let mut spec = site.spec.clone();
        let policy = &mut spec.client_policy;
        duration(&mut policy.polling_interval);
        duration(&mut policy.jitter);
        duration(&mut policy.heartbeat_interval);
        out.push(object(Kind::Site, site, &spec));
    }
    for dp in desired.distribution_points.values() {
        let mut spec = dp.spec.clone();
        spec.boundaries.sort();
        spec.boundaries.dedup();
        duration(&mut spec.validation.every);
        out.push(object(Kind::DistributionPoint, dp, &spec));
    }
    // The three kinds a large site is made of are canonicalized on every
    // core: each object is serialized and hashed on its own.
    let packages = crate::load::par_map(desired.packages.values().collect(), |package| {
        let mut spec = package.spec.clone();
        sort_names(&mut spec.distribution_points);
        if let Some(update) = &mut spec.update_distribution_points {
            interval(update);
        }
        for program in &mut spec.programs {
            if let Some(max) = &mut program.max_run_time {
                duration(max);
            }
            program.platforms.sort();
            program.platforms.dedup();
            if let Some(letter) = &mut program.drive_letter {
                *letter = letter.to_ascii_uppercase();
            }
        }
        let with_content = PackageWithContent {
            spec: &spec,
            content: content.get(package.name()).map(ContentSummary::of),
        };
        object(Kind::Package, package, &with_content)
    });
    out.extend(packages);
    let collections = crate::load::par_map(desired.collections.values().collect(), |collection| {
        let mut spec = collection.spec.clone();
        for rule in &mut spec.membership {
            match rule {
                MembershipRule::Query(q) => {
                    if let Ok(parsed) = crate::query::parse(q.as_str()) {
                        q.0 = parsed.to_string();
                    }
                }
                MembershipRule::Direct(names) => {
                    // Machine names are case-insensitive (NetBIOS).
                    for n in names.iter_mut() {
                        *n = n.to_ascii_lowercase();
                    }
                    sort_names(names);
                }
                MembershipRule::Include(names) | MembershipRule::Exclude(names) => {
                    sort_names(names)
                }
            }
        }
        if let Some(evaluation) = &mut spec.evaluation {
            interval(evaluation);
        }
        object(Kind::Collection, collection, &spec)
    });
    out.extend(collections);
    let advertisements = crate::load::par_map(desired.advertisements.values().collect(), |ad| {
        let mut spec = ad.spec.clone();
        time_opt(&mut spec.available_after);
        time_opt(&mut spec.expires_at);
        assignments(&mut spec.schedule);
        object(Kind::Advertisement, ad, &spec)
    });
    out.extend(advertisements);
    for host in desired.sync_hosts.values() {
        let mut spec = host.spec.clone();
        interval(&mut spec.schedule);
        spec.catalogs.sort_by_key(|c| c.catalog_type);
        out.push(object(Kind::SyncHost, host, &spec));
    }
    for sup in desired.software_update_packages.values() {
        let mut spec = sup.spec.clone();
        sort_names(&mut spec.distribution_points);
        for update in &mut spec.updates {
            if let Some(b) = &mut update.bulletin {
                *b = b.to_ascii_uppercase();
            }
            if let Some(m) = &mut update.missing_in {
                m.severities.sort_unstable();
                m.severities.dedup();
            }
            sort_names(&mut update.q_numbers);
            sort_names(&mut update.products);
        }
        duration(&mut spec.install_agent.countdown);
        duration(&mut spec.install_agent.max_run_time);
        if let Some(postpone) = &mut spec.notification.allow_postpone {
            duration(postpone);
        }
        if let Some(UpdateAdvertisement {
            available_after,
            expires_at,
            schedule,
            ..
        }) = &mut spec.advertisement
        {
            time_opt(available_after);
            time_opt(expires_at);
            assignments(schedule);
        }
        let with_build = UpdatesWithBuild {
            spec: &spec,
            build: updates.get(sup.name()),
        };
        out.push(object(Kind::SoftwareUpdatePackage, sup, &with_build));
    }
    out
}

/// A package's canonical form: its spec and its content version.
#[derive(Serialize)]
struct PackageWithContent<'a> {
    #[serde(flatten)]
    spec: &'a crate::manifest::PackageSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<ContentSummary>,
}

/// A software update package's canonical form: its spec and, once Ready,
/// what it was built into (content version and programs).
#[derive(Serialize)]
struct UpdatesWithBuild<'a> {
    #[serde(flatten)]
    spec: &'a crate::manifest::SoftwareUpdatePackageSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    build: Option<&'a crate::supdate::policy::UpdateBuild>,
}

fn object<S: Clone, C: Serialize>(kind: Kind, object: &Object<S>, spec: &C) -> CanonicalObject {
    CanonicalObject::new(
        kind,
        object.metadata.name.clone(),
        metadata(&object.metadata),
        // Serializing our own types to a string cannot fail.
        serde_json::to_string(spec).unwrap_or_default(),
        Some(object.origin.clone()),
    )
}

fn metadata(m: &Metadata) -> String {
    #[derive(Serialize)]
    struct Canonical<'a> {
        labels: &'a std::collections::BTreeMap<String, String>,
        annotations: &'a std::collections::BTreeMap<String, String>,
    }
    serde_json::to_string(&Canonical {
        labels: &m.labels,
        annotations: &m.annotations,
    })
    .unwrap_or_default()
}

fn sort_names(names: &mut Vec<String>) {
    names.sort();
    names.dedup();
}

fn interval(i: &mut Interval) {
    duration(&mut i.every);
    time_opt(&mut i.start);
}

fn assignments(schedule: &mut [Assignment]) {
    for a in schedule {
        time_opt(&mut a.start);
        if let Some(every) = &mut a.every {
            duration(every);
        }
    }
}

fn duration(d: &mut DurationText) {
    if let Ok(parsed) = units::parse_duration(d.as_str()) {
        d.0 = canonical_duration(parsed.as_secs());
    }
}

fn time_opt(t: &mut Option<TimeText>) {
    if let Some(t) = t {
        t.0 = canonical_time(t.as_str());
    }
}

/// A time in its one spelling: an instant in UTC (`2026-11-24T02:00:00Z`),
/// a local time without offset (`2026-11-24T02:00:00`); text that is not a
/// time is returned as it is.
pub fn canonical_time(text: &str) -> String {
    match units::parse_time(text) {
        Ok(ScheduleTime::Instant(ts)) => ts.to_string(),
        Ok(ScheduleTime::Local(dt)) => dt.to_string(),
        Err(_) => text.to_string(),
    }
}

/// Seconds as the largest units that divide them: 3600 → `1h`, 5400 →
/// `1h30m`, 604800 → `7d`.
pub fn canonical_duration(mut secs: u64) -> String {
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_have_one_spelling() {
        assert_eq!(canonical_duration(3600), "1h");
        assert_eq!(canonical_duration(5400), "1h30m");
        assert_eq!(canonical_duration(7 * 86_400), "7d");
        assert_eq!(canonical_duration(90), "1m30s");
    }

    /// Packages, collections and advertisements are made on every core
    /// from 64 objects on; the list stays in apply order (kind rank, then
    /// name) and equal to making each object alone.
    #[test]
    fn a_large_site_comes_out_in_apply_order() {
        let dir = tempfile::tempdir().unwrap();
        crate::fixtures::generate_site(dir.path(), 2_000, "a").unwrap();
        let report = crate::validate::validate_dir(dir.path(), Default::default()).unwrap();
        assert!(report.is_valid());
        let desired = &report.desired;
        assert!(desired.advertisements.len() > 1_000 && desired.collections.len() > 100);
        let objects = canonical_objects(desired, &BTreeMap::new(), &BTreeMap::new());
        assert_eq!(objects.len(), desired.len());
        let keys: Vec<(u8, &str)> = objects
            .iter()
            .map(|o| (crate::plan::apply_rank(o.kind), o.name.as_str()))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        let ad = &desired.advertisements.values().last().unwrap();
        let alone = object(Kind::Advertisement, ad, &{
            let mut spec = ad.spec.clone();
            time_opt(&mut spec.available_after);
            time_opt(&mut spec.expires_at);
            assignments(&mut spec.schedule);
            spec
        });
        let made = objects.iter().find(|o| o.name == alone.name).unwrap();
        assert_eq!(made.hash, alone.hash);
    }

    #[test]
    fn hash_covers_metadata_and_spec() {
        let a = object_hash(r#"{"labels":{}}"#, r#"{"x":1}"#);
        let b = object_hash(r#"{"labels":{"a":"b"}}"#, r#"{"x":1}"#);
        let c = object_hash(r#"{"labels":{}}"#, r#"{"x":2}"#);
        assert!(a != b && a != c && a.starts_with("sha256:"));
        let whole = serde_json::json!({"metadata": {"labels": {}}, "spec": {"x": 1}}).to_string();
        assert_eq!(
            a,
            format!("sha256:{}", hex::encode(Sha256::digest(whole.as_bytes())))
        );
    }
}
