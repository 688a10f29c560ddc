//! The patch process's own rules, from how SMS 2003 sites were run: warnings
//! by default, errors with `--strict`.
//!
//! - `expedited-outside-preproduction`: an expedited program runs at once on
//!   every member; it is for test clients only.
//! - `production-without-exclude`: a production collection must exclude its
//!   pre-production collection, or test clients get everything twice.
//! - `inventory-tool-collections`: an inventory tool (a package that
//!   receives a catalog or scans for a software update package) needs its
//!   three collections: production, pre-production and sync host.
//! - `empty-collection`, `content-without-dp`, `rerun-never-recurring`:
//!   objects that can do nothing as written.

use std::collections::BTreeSet;

use crate::diagnostic::{Diagnostic, Severity};
use crate::load::SourceFile;
use crate::manifest::advertisement::Rerun;
use crate::manifest::collection::{CollectionPurpose, MembershipRule};
use crate::manifest::Spec;
use crate::model::Desired;
use crate::yaml::FieldPath;

use super::{locator, Entry};

pub(super) fn check(
    desired: &Desired,
    entries: &[Entry],
    files: &[SourceFile],
    out: &mut Vec<Diagnostic>,
) {
    let purpose = |name: &str| {
        desired
            .collections
            .get(name)
            .map_or(CollectionPurpose::General, |c| c.spec.purpose)
    };
    let inventory_tools = inventory_tools(desired);
    let spec = FieldPath::root("spec");
    for entry in entries {
        let at = locator(entry, files);
        let warn = |code, path: &FieldPath, message: String, help: &str| {
            at.at(Severity::Warning, code, path, message)
                .with_help(help.to_string())
        };
        match &*entry.manifest.spec {
            Spec::Advertisement(ad) => {
                let program = desired
                    .packages
                    .get(&ad.package)
                    .and_then(|p| p.spec.programs.iter().find(|x| x.name == ad.program));
                if program.is_some_and(|p| p.expedited)
                    && purpose(&ad.collection) != CollectionPurpose::PreProduction
                {
                    out.push(warn(
                        "expedited-outside-preproduction",
                        &spec.key("collection"),
                        format!("expedited program `{}` is advertised to `{}`, which is not a pre-production collection", ad.program, ad.collection),
                        "expedited programs run at once on every member: advertise them to a collection with `purpose: preProduction`",
                    ));
                }
                if ad.rerun == Rerun::Never && ad.schedule.iter().any(|a| a.every.is_some()) {
                    out.push(warn(
                        "rerun-never-recurring",
                        &spec.key("rerun"),
                        "a recurring assignment with `rerun: never` runs only once".into(),
                        "use `rerun: always` for programs that run on every recurrence (scans), or drop `every`",
                    ));
                }
            }
            Spec::Collection(c) => {
                if c.membership.is_empty() {
                    out.push(warn(
                        "empty-collection",
                        &spec,
                        format!(
                            "collection `{}` has no membership rules and will stay empty",
                            entry.manifest.metadata.name
                        ),
                        "add `membership` rules: `query`, `direct`, `include`",
                    ));
                }
                let excludes_pre = c
                    .spec_excludes()
                    .any(|name| purpose(name) == CollectionPurpose::PreProduction);
                if c.purpose == CollectionPurpose::Production && !excludes_pre {
                    out.push(warn(
                        "production-without-exclude",
                        &spec.key("purpose"),
                        format!("production collection `{}` does not exclude a pre-production collection", entry.manifest.metadata.name),
                        "add `- exclude: [NAME]` naming its collection with `purpose: preProduction`, so test clients are not targeted twice",
                    ));
                }
            }
            Spec::Package(p) => {
                if p.source.is_some() && p.distribution_points.is_empty() {
                    out.push(warn(
                        "content-without-dp",
                        &spec.key("source"),
                        format!(
                            "package `{}` has content but no distribution points",
                            entry.manifest.metadata.name
                        ),
                        "list the distribution points that should hold it in `distributionPoints`",
                    ));
                }
                if inventory_tools.contains(entry.manifest.metadata.name.as_str()) {
                    let missing = missing_tool_collections(desired, &entry.manifest.metadata.name);
                    if !missing.is_empty() {
                        out.push(warn(
                            "inventory-tool-collections",
                            &FieldPath::root("metadata").key("name"),
                            format!("inventory tool `{}` lacks its {}", entry.manifest.metadata.name, collections_phrase(&missing)),
                            "an inventory tool is advertised to a production collection (`purpose: production`) that excludes a pre-production collection (`purpose: preProduction`), and its sync program to a sync host collection (`purpose: syncHost`)",
                        ));
                    }
                }
            }
            _ => {}
        }
    }
}

trait Excludes {
    fn spec_excludes(&self) -> impl Iterator<Item = &str>;
}

impl Excludes for crate::manifest::CollectionSpec {
    fn spec_excludes(&self) -> impl Iterator<Item = &str> {
        self.membership
            .iter()
            .flat_map(|rule| match rule {
                MembershipRule::Exclude(names) => names.as_slice(),
                _ => &[],
            })
            .map(String::as_str)
    }
}

/// Packages that act as inventory tools: they receive a catalog from a sync
/// host or scan for a software update package.
fn inventory_tools(desired: &Desired) -> BTreeSet<&str> {
    let mut tools: BTreeSet<&str> = BTreeSet::new();
    for host in desired.sync_hosts.values() {
        tools.extend(host.spec.catalogs.iter().map(|c| c.package.as_str()));
    }
    for sup in desired.software_update_packages.values() {
        tools.insert(sup.spec.inventory_program.package.as_str());
    }
    tools
}

/// Which of the three collections an inventory tool lacks.
fn missing_tool_collections(desired: &Desired, package: &str) -> Vec<&'static str> {
    let targets: Vec<&str> = desired
        .advertisements
        .values()
        .filter(|a| a.spec.package == package)
        .map(|a| a.spec.collection.as_str())
        .collect();
    let with_purpose = |purpose: CollectionPurpose| -> Vec<&crate::model::Object<crate::manifest::CollectionSpec>> {
        targets.iter().filter_map(|t| desired.collections.get(*t)).filter(|c| c.spec.purpose == purpose).collect()
    };
    let production = with_purpose(CollectionPurpose::Production);
    let is_pre = |name: &str| {
        desired
            .collections
            .get(name)
            .is_some_and(|c| c.spec.purpose == CollectionPurpose::PreProduction)
    };
    let has_pre = !with_purpose(CollectionPurpose::PreProduction).is_empty()
        || production
            .iter()
            .any(|c| c.spec.spec_excludes().any(is_pre));
    let mut missing = Vec::new();
    if production.is_empty() {
        missing.push("production");
    }
    if !has_pre {
        missing.push("pre-production");
    }
    if with_purpose(CollectionPurpose::SyncHost).is_empty() {
        missing.push("sync host");
    }
    missing
}

/// `production collection`, `production and sync host collections`,
/// `production, pre-production and sync host collections`.
fn collections_phrase(missing: &[&str]) -> String {
    match missing {
        [one] => format!("{one} collection"),
        [rest @ .., last] => format!("{} and {last} collections", rest.join(", ")),
        [] => String::new(),
    }
}
