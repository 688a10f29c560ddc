//! A plan's blast radius on the machines: how each collection's membership
//! and how client policy would change if the plan were applied, computed
//! over the inventory in the store. The applied site (read back from the
//! state) and the desired site are each evaluated in full; nothing is
//! written.

use std::collections::BTreeMap;

use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use crate::content::ContentSummary;
use crate::eval::{EvalError, Evaluator, MachineTable};
use crate::inventory::Machine;
use crate::model::Desired;
use crate::plan::AppliedSite;
use crate::policy::{all_policies, blast_radius, BlastRadius, PolicyDigest};

/// At most this many machine names per membership change.
const SAMPLE: usize = 5;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SiteImpact {
    /// Machines in the inventory the impact was computed over.
    pub machines: usize,
    /// Collections whose members change, by name.
    pub memberships: Vec<MembershipChange>,
    pub policy: BlastRadius,
}

impl SiteImpact {
    /// The impact of applying a site that is already applied: nothing
    /// changes on any of the inventory's `machines`.
    pub fn unchanged(machines: usize) -> SiteImpact {
        SiteImpact {
            machines,
            memberships: Vec::new(),
            policy: BlastRadius {
                machines,
                ..BlastRadius::default()
            },
        }
    }

    pub fn is_empty(&self) -> bool {
        self.memberships.is_empty() && self.policy.machines_changed == 0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MembershipChange {
    pub collection: String,
    pub before: u64,
    pub after: u64,
    pub added: u64,
    pub removed: u64,
    /// The first few added machines, by name.
    pub added_sample: Vec<String>,
    pub removed_sample: Vec<String>,
}

/// Membership and policy changes between the applied site and the desired
/// one, over `machines`.
pub fn site_impact(
    machines: Vec<(u32, Machine)>,
    applied: &AppliedSite,
    desired: &Desired,
    content: &BTreeMap<String, ContentSummary>,
    updates: &BTreeMap<String, crate::supdate::policy::UpdateBuild>,
) -> Result<SiteImpact, EvalError> {
    let mut table = MachineTable::new();
    for (id, machine) in machines {
        table.insert_with_id(id, machine)?;
    }
    let before = evaluate(&applied.desired, &table)?;
    let after = evaluate(desired, &table)?;

    let names = |id: u32| table.get(id).map(|m| m.name.clone()).unwrap_or_default();
    let sample = |set: &RoaringBitmap| {
        let mut out: Vec<String> = set.iter().map(names).collect();
        out.sort();
        out.truncate(SAMPLE);
        out
    };
    let empty = RoaringBitmap::new();
    let mut collections: Vec<&str> = before
        .collection_names()
        .chain(after.collection_names())
        .collect();
    collections.sort_unstable();
    collections.dedup();
    let mut memberships = Vec::new();
    for name in collections {
        let old = before.members(name).unwrap_or(&empty);
        let new = after.members(name).unwrap_or(&empty);
        if old == new {
            continue;
        }
        let added = new - old;
        let removed = old - new;
        memberships.push(MembershipChange {
            collection: name.to_string(),
            before: old.len(),
            after: new.len(),
            added: added.len(),
            removed: removed.len(),
            added_sample: sample(&added),
            removed_sample: sample(&removed),
        });
    }

    let digests = |site: &Desired,
                   content: &BTreeMap<String, ContentSummary>,
                   updates: &BTreeMap<String, crate::supdate::policy::UpdateBuild>,
                   evaluator: &Evaluator|
     -> Vec<(u32, PolicyDigest)> {
        let view = crate::supdate::policy::policy_view(site, content, updates);
        let policy_site = view.policy_site();
        let targets = targets(&view.site, evaluator);
        all_policies(
            &policy_site,
            table
                .ids()
                .iter()
                .filter_map(|id| table.get(id).map(|m| (id, m))),
            &targets,
        )
    };
    let old = digests(
        &applied.desired,
        &applied.content,
        &applied.updates,
        &before,
    );
    let new = digests(desired, content, updates, &after);
    let policy = blast_radius(
        old.iter().map(|(id, d)| (machine_name(&table, *id), d)),
        new.iter().map(|(id, d)| (machine_name(&table, *id), d)),
    );
    Ok(SiteImpact {
        machines: table.len(),
        memberships,
        policy,
    })
}

fn machine_name(table: &MachineTable, id: u32) -> &str {
    table.get(id).map_or("", |m| m.name.as_str())
}

fn evaluate(site: &Desired, table: &MachineTable) -> Result<Evaluator, EvalError> {
    let mut evaluator = Evaluator::new(
        site.collections
            .iter()
            .map(|(name, c)| (name.as_str(), &c.spec)),
    )?;
    evaluator.evaluate_all(table);
    Ok(evaluator)
}

/// The machines each advertisement targets: its collection's members, or
/// with `includeSubcollections: false` only those not added by includes.
pub fn targets(site: &Desired, evaluator: &Evaluator) -> BTreeMap<String, RoaringBitmap> {
    site.advertisements
        .iter()
        .filter_map(|(name, ad)| {
            let members = if ad.spec.include_subcollections {
                evaluator.members(&ad.spec.collection)
            } else {
                evaluator.own_members(&ad.spec.collection)
            }?;
            Some((name.clone(), members.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testing::{example_site, stored};
    use crate::plan::{applied_site, canonical_objects};

    /// A no-change plan reports [`SiteImpact::unchanged`] without
    /// evaluating either site; evaluating both in full gives the same.
    #[test]
    fn the_impact_of_the_applied_site_is_unchanged_on_every_machine() {
        let (report, content) = example_site();
        let canonical = canonical_objects(&report.desired, &content, &Default::default());
        let applied = applied_site(&stored(&canonical)).expect("reads back");
        let machines: Vec<(u32, Machine)> = crate::fixtures::synthetic::synthetic_machines(300, 5)
            .into_iter()
            .enumerate()
            .map(|(i, m)| (i as u32 + 1, m))
            .collect();
        let summaries = content
            .iter()
            .map(|(name, m)| (name.clone(), ContentSummary::of(m)))
            .collect();
        let full = site_impact(
            machines,
            &applied,
            &report.desired,
            &summaries,
            &BTreeMap::new(),
        )
        .expect("evaluates");
        assert!(full.policy.machines > 0);
        assert_eq!(full, SiteImpact::unchanged(300));
    }
}
