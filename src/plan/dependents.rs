//! What a change touches without changing it: the advertisements of a
//! changed package, everything that targets a changed collection (directly
//! or through collections that include, exclude or are limited by it), the
//! packages stored on a changed distribution point.

use std::collections::{BTreeSet, VecDeque};

use crate::manifest::collection::MembershipRule;
use crate::manifest::Kind;
use crate::model::Desired;

use super::Dependent;

pub fn of(model: &Desired, kind: Kind, name: &str) -> Vec<Dependent> {
    let mut out = BTreeSet::new();
    let mut add = |kind: Kind, n: &str, reason: String| {
        out.insert(Dependent {
            kind,
            name: n.to_string(),
            reason,
        });
    };
    match kind {
        Kind::Package => {
            for ad in model
                .advertisements
                .values()
                .filter(|a| a.spec.package == name)
            {
                add(
                    Kind::Advertisement,
                    ad.name(),
                    "advertises a program of it".into(),
                );
            }
            for sup in model
                .software_update_packages
                .values()
                .filter(|s| s.spec.inventory_program.package == name)
            {
                add(
                    Kind::SoftwareUpdatePackage,
                    sup.name(),
                    "scans with it".into(),
                );
            }
            for host in model
                .sync_hosts
                .values()
                .filter(|h| h.spec.catalogs.iter().any(|c| c.package == name))
            {
                add(
                    Kind::SyncHost,
                    host.name(),
                    "writes a catalog into it".into(),
                );
            }
        }
        Kind::DistributionPoint => {
            for p in model
                .packages
                .values()
                .filter(|p| p.spec.distribution_points.iter().any(|d| d == name))
            {
                add(Kind::Package, p.name(), "is stored on it".into());
            }
            for s in model
                .software_update_packages
                .values()
                .filter(|s| s.spec.distribution_points.iter().any(|d| d == name))
            {
                add(
                    Kind::SoftwareUpdatePackage,
                    s.name(),
                    "is stored on it".into(),
                );
            }
        }
        Kind::Collection => {
            // Collections whose membership depends on this one, transitively.
            let mut affected = BTreeSet::from([name.to_string()]);
            let mut queue = VecDeque::from([name.to_string()]);
            while let Some(current) = queue.pop_front() {
                for c in model.collections.values() {
                    if affected.contains(c.name()) || !depends_on(&c.spec, &current) {
                        continue;
                    }
                    add(
                        Kind::Collection,
                        c.name(),
                        format!("its membership depends on `{current}`"),
                    );
                    affected.insert(c.name().to_string());
                    queue.push_back(c.name().to_string());
                }
            }
            for ad in model
                .advertisements
                .values()
                .filter(|a| affected.contains(&a.spec.collection))
            {
                add(
                    Kind::Advertisement,
                    ad.name(),
                    format!("targets `{}`: its machines' policy", ad.spec.collection),
                );
            }
            for sup in model.software_update_packages.values() {
                if let Some(ad) = sup
                    .spec
                    .advertisement
                    .as_ref()
                    .filter(|ad| affected.contains(&ad.collection))
                {
                    add(
                        Kind::SoftwareUpdatePackage,
                        sup.name(),
                        format!("is advertised to `{}`", ad.collection),
                    );
                }
            }
        }
        Kind::Site | Kind::Advertisement | Kind::SyncHost | Kind::SoftwareUpdatePackage => {}
    }
    out.into_iter().collect()
}

fn depends_on(spec: &crate::manifest::CollectionSpec, other: &str) -> bool {
    spec.limiting_collection.as_deref() == Some(other)
        || spec.membership.iter().any(|r| match r {
            MembershipRule::Include(n) | MembershipRule::Exclude(n) => n.iter().any(|x| x == other),
            _ => false,
        })
}
