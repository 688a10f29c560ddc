//! What the server keeps in memory: the applied site, the inventory, the
//! evaluated memberships and every machine's served policy. The store is
//! the truth; this index is rebuilt from it at start and whenever the
//! applied state changes, and kept current machine by machine as
//! inventory arrives.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use roaring::RoaringBitmap;

use crate::eval::{EvalError, Evaluator, MachineTable};
use crate::inventory::{machine_key, Machine};
use crate::plan::AppliedSite;
use crate::policy::{self, MachinePolicy, PolicySite};
use crate::records::StoredPolicy;

/// One machine's policy as served. Its version and hash are known from
/// the start; the body is rendered when first asked for (most polls are
/// answered 304 from the ETag alone) and then kept for that version.
#[derive(Debug, Clone)]
pub struct Served {
    pub version: u64,
    pub hash: String,
    /// The quoted ETag, e.g. `"7-3fa4…"`.
    pub etag: String,
    body: OnceLock<Bytes>,
}

impl Served {
    fn new(version: u64, hash: String) -> Served {
        let short = hash.rsplit(':').next().unwrap_or(&hash);
        let etag = format!("\"{version}-{}\"", &short[..short.len().min(16)]);
        Served {
            version,
            hash,
            etag,
            body: OnceLock::new(),
        }
    }

    /// What the store keeps of a policy: its version and hash. The body is
    /// derived (from the applied site and the inventory), so it is not
    /// stored.
    fn to_stored(&self, machine_id: u32) -> StoredPolicy {
        StoredPolicy {
            machine_id,
            version: self.version,
            hash: self.hash.clone(),
            body: String::new(),
        }
    }
}

/// An advertisement and the collection members it targets.
struct Target {
    name: String,
    collection: String,
    include_subcollections: bool,
}

pub struct SiteIndex {
    pub serial: i64,
    table: MachineTable,
    evaluator: Evaluator,
    policy_site: PolicySite,
    targets: Vec<Target>,
    served: HashMap<u32, Served>,
    pub last_full_evaluation: Duration,
    /// When each collection with an evaluation schedule was last evaluated.
    evaluated_at: HashMap<String, Instant>,
}

impl SiteIndex {
    /// Evaluates every collection and computes every policy. `stored` are
    /// the policies persisted before: a machine whose policy is unchanged
    /// keeps its version. Returns the index and the policies to persist
    /// (new or changed).
    pub fn build(
        applied: &AppliedSite,
        serial: i64,
        machines: Vec<(u32, Machine)>,
        stored: Vec<StoredPolicy>,
    ) -> Result<(SiteIndex, Vec<StoredPolicy>), EvalError> {
        let started = Instant::now();
        let mut table = MachineTable::new();
        for (id, machine) in machines {
            table.insert_with_id(id, machine)?;
        }
        // Software update packages reach policy as packages and advertisements.
        let view = crate::supdate::policy::policy_view(
            &applied.desired,
            &applied.content,
            &applied.updates,
        );
        let mut evaluator = Evaluator::new(
            applied
                .desired
                .collections
                .iter()
                .map(|(name, c)| (name.as_str(), &c.spec)),
        )?;
        evaluator.evaluate_all(&table);
        let last_full_evaluation = started.elapsed();
        let mut index = SiteIndex {
            serial,
            table,
            evaluator,
            policy_site: view.policy_site(),
            targets: targets_of(&view.site),
            served: HashMap::new(),
            last_full_evaluation,
            evaluated_at: HashMap::new(),
        };
        let names: Vec<String> = index
            .evaluator
            .collection_names()
            .filter(|name| index.evaluator.evaluation_interval(name).is_some())
            .map(str::to_string)
            .collect();
        for name in names {
            index.evaluated_at.insert(name, started);
        }
        let previous: HashMap<u32, StoredPolicy> =
            stored.into_iter().map(|p| (p.machine_id, p)).collect();
        // Hashing every policy is the bulk of the work: `all_policies` does
        // it on every core without rendering a body.
        let targets: BTreeMap<String, RoaringBitmap> = index
            .target_sets()
            .into_iter()
            .filter_map(|(name, members)| Some((name.to_string(), members?.clone())))
            .collect();
        let digests = policy::all_policies(
            &index.policy_site,
            index
                .table
                .ids()
                .iter()
                .filter_map(|id| index.table.get(id).map(|m| (id, m))),
            &targets,
        );
        let mut changed = Vec::new();
        for (id, digest) in digests {
            let before = previous.get(&id);
            let version =
                policy::next_version(before.map(|p| (p.version, p.hash.as_str())), &digest.hash);
            let served = Served::new(version, digest.hash);
            if before.is_none_or(|p| p.hash != served.hash) {
                changed.push(served.to_stored(id));
            }
            index.served.insert(id, served);
        }
        Ok((index, changed))
    }

    /// Takes in one machine's new inventory (its store id is `id`):
    /// re-evaluates that machine only and recomputes its policy. Returns
    /// the policy to persist when it changed.
    pub fn machine_changed(&mut self, id: u32, machine: Machine) -> Option<StoredPolicy> {
        if let Err(e) = self.table.insert_with_id(id, machine) {
            // The store assigns ids and keys one to one; this cannot happen
            // short of a damaged store.
            tracing::error!(error = %e, "inventory update not applied");
            return None;
        }
        self.evaluator.machine_changed(&self.table, id);
        let previous = self.served.get(&id).map(|s| StoredPolicy {
            machine_id: id,
            version: s.version,
            hash: s.hash.clone(),
            body: String::new(),
        });
        self.refresh_policy(id, previous.as_ref())
    }

    /// Recomputes one machine's policy; keeps it (and its version) when
    /// the hash is unchanged. Returns the policy to persist when it changed.
    fn refresh_policy(&mut self, id: u32, previous: Option<&StoredPolicy>) -> Option<StoredPolicy> {
        let targets = self.target_sets();
        let (served, changed) = self.compute(id, previous, &targets)?;
        drop(targets);
        let stored = changed.then(|| served.to_stored(id));
        self.served.insert(id, served);
        stored
    }

    /// The members each advertisement targets, in `targets` order.
    fn target_sets(&self) -> Vec<(&str, Option<&RoaringBitmap>)> {
        self.targets
            .iter()
            .map(|t| {
                let members = if t.include_subcollections {
                    self.evaluator.members(&t.collection)
                } else {
                    self.evaluator.own_members(&t.collection)
                };
                (t.name.as_str(), members)
            })
            .collect()
    }

    /// One machine's policy as served, and whether it differs from
    /// `previous` (a new version to persist).
    fn compute(
        &self,
        id: u32,
        previous: Option<&StoredPolicy>,
        targets: &[(&str, Option<&RoaringBitmap>)],
    ) -> Option<(Served, bool)> {
        let machine = self.table.get(id)?;
        let ads: Vec<&str> = targets
            .iter()
            .filter(|(_, members)| members.is_some_and(|m| m.contains(id)))
            .map(|(name, _)| *name)
            .collect();
        let policy = policy::machine_policy(&self.policy_site, machine, &ads);
        let hash = policy.hash();
        let version = policy::next_version(previous.map(|p| (p.version, p.hash.as_str())), &hash);
        let changed = previous.is_none_or(|p| p.hash != hash);
        if !changed {
            if let Some(current) = self.served.get(&id) {
                return Some((current.clone(), false));
            }
        }
        let served = Served::new(version, hash);
        let _ = served.body.set(render(&machine.name, &policy, version));
        Some((served, changed))
    }

    /// Re-evaluates each collection whose evaluation schedule (`evaluation:
    /// {every: …}`) is due at `now`, with its dependents, and recomputes the
    /// policy of every machine whose membership changed. Inventory changes
    /// are already evaluated as they arrive; the schedule is the periodic
    /// full check a site expects. Returns the collections evaluated and the
    /// policies to persist.
    pub fn evaluate_due(&mut self, now: Instant) -> (Vec<String>, Vec<StoredPolicy>) {
        let due: Vec<String> = self
            .evaluated_at
            .iter()
            .filter(|(name, at)| {
                self.evaluator
                    .evaluation_interval(name)
                    .is_some_and(|every| now.saturating_duration_since(**at) >= every)
            })
            .map(|(name, _)| name.clone())
            .collect();
        let mut affected = RoaringBitmap::new();
        for name in &due {
            match self.evaluator.evaluate_collection(name, &self.table) {
                Ok(deltas) => {
                    for d in deltas {
                        affected |= &d.added;
                        affected |= &d.removed;
                        affected |= &d.own_added;
                        affected |= &d.own_removed;
                    }
                }
                Err(e) => {
                    tracing::warn!(collection = %name, error = %e, "scheduled evaluation failed")
                }
            }
            self.evaluated_at.insert(name.clone(), now);
        }
        let mut changed = Vec::new();
        for id in &affected {
            let previous = self.served.get(&id).map(|s| s.to_stored(id));
            if let Some(p) = self.refresh_policy(id, previous.as_ref()) {
                changed.push(p);
            }
        }
        (due, changed)
    }

    pub fn id_of(&self, name: &str) -> Option<u32> {
        self.table.id_of(&machine_key(name))
    }

    pub fn policy_of(&self, name: &str) -> Option<&Served> {
        self.served.get(&self.id_of(name)?)
    }

    /// The body of a machine's served policy, rendered on first use.
    pub fn body_of(&self, name: &str) -> Option<Bytes> {
        let id = self.id_of(name)?;
        let served = self.served.get(&id)?;
        let body = served.body.get_or_init(|| {
            let targets = self.target_sets();
            let ads: Vec<&str> = targets
                .iter()
                .filter(|(_, members)| members.is_some_and(|m| m.contains(id)))
                .map(|(name, _)| *name)
                .collect();
            match self.table.get(id) {
                Some(machine) => {
                    let policy = policy::machine_policy(&self.policy_site, machine, &ads);
                    render(&machine.name, &policy, served.version)
                }
                None => Bytes::new(),
            }
        });
        Some(body.clone())
    }

    pub fn machines(&self) -> usize {
        self.table.len()
    }

    pub fn policies(&self) -> usize {
        self.served.len()
    }

    pub fn collections(&self) -> usize {
        self.evaluator.collection_names().count()
    }
}

fn targets_of(desired: &crate::model::Desired) -> Vec<Target> {
    desired
        .advertisements
        .iter()
        .map(|(name, ad)| Target {
            name: name.clone(),
            collection: ad.spec.collection.clone(),
            include_subcollections: ad.spec.include_subcollections,
        })
        .collect()
}

/// The served document: the policy with its version.
fn render(machine: &str, policy: &MachinePolicy, version: u64) -> Bytes {
    #[derive(serde::Serialize)]
    struct Document<'a> {
        machine: &'a str,
        version: u64,
        #[serde(flatten)]
        policy: &'a MachinePolicy,
    }
    Bytes::from(
        serde_json::to_vec(&Document {
            machine,
            version,
            policy,
        })
        .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::ContentSummary;
    use crate::inventory::parse_inventory;
    use crate::inventory::InventoryFormat;
    use crate::validate::{validate_dir, Options};

    fn example() -> (AppliedSite, Vec<(u32, Machine)>) {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let report = validate_dir(&root.join("examples/site"), Options::default()).expect("loads");
        let content = report
            .desired
            .packages
            .keys()
            .map(|name| {
                let summary = ContentSummary {
                    version: format!("{:064x}", name.len()),
                    files: 1,
                    bytes: 1,
                };
                (name.clone(), summary)
            })
            .collect();
        let text = std::fs::read_to_string(root.join("examples/inventory.csv")).expect("csv");
        let machines = parse_inventory(&text, InventoryFormat::Csv).expect("parses");
        let machines = machines
            .into_iter()
            .enumerate()
            .map(|(i, m)| (i as u32 + 1, m))
            .collect();
        (
            AppliedSite {
                desired: report.desired,
                content,
                updates: Default::default(),
            },
            machines,
        )
    }

    fn assignments(index: &SiteIndex, name: &str) -> Vec<String> {
        let body = index.body_of(name).expect("served");
        let doc: serde_json::Value = serde_json::from_slice(&body).expect("json");
        doc["assignments"]
            .as_array()
            .expect("assignments")
            .iter()
            .map(|a| a["advertisement"].as_str().expect("name").to_string())
            .collect()
    }

    #[test]
    fn every_machine_gets_its_policy_and_versions_survive_a_rebuild() {
        let (applied, machines) = example();
        let n = machines.len();
        let (index, changed) =
            SiteIndex::build(&applied, 1, machines.clone(), vec![]).expect("builds");
        assert_eq!(
            (index.machines(), index.policies(), changed.len()),
            (n, n, n)
        );
        assert!(changed.iter().all(|p| p.version == 1));
        assert_eq!(
            assignments(&index, "wks-test-01"),
            [
                "MS Office Updates (Pre-production)",
                "MS Security Updates (Pre-production)"
            ]
        );
        assert_eq!(
            assignments(&index, "sms01"),
            [
                "MS Office Updates Sync",
                "MS Security Updates",
                "MS Security Updates Sync"
            ]
        );
        // Rebuilt over the stored policies: nothing to persist, same versions.
        let (again, changed_again) =
            SiteIndex::build(&applied, 1, machines, changed).expect("builds");
        assert!(changed_again.is_empty());
        assert_eq!(again.policy_of("sms01").map(|s| s.version), Some(1));
    }

    #[test]
    fn one_machine_change_touches_only_that_machine() {
        let (applied, machines) = example();
        let (mut index, _) =
            SiteIndex::build(&applied, 1, machines.clone(), vec![]).expect("builds");
        let before: HashMap<String, String> = machines
            .iter()
            .map(|(_, m)| {
                (
                    m.name.clone(),
                    index.policy_of(&m.name).expect("served").etag.clone(),
                )
            })
            .collect();
        let (id, mut machine) = machines
            .iter()
            .find(|(_, m)| {
                m.name.starts_with("wks-")
                    && !m
                        .installed
                        .products
                        .iter()
                        .any(|p| p.starts_with("Microsoft Office"))
            })
            .cloned()
            .expect("a machine without Office");
        let name = machine.name.clone();
        machine
            .installed
            .products
            .push("Microsoft Office XP Professional".into());
        let update = index
            .machine_changed(id, machine.clone())
            .expect("its policy changes");
        assert_eq!((update.machine_id, update.version), (id, 2));
        assert!(assignments(&index, &name).contains(&"MS Office Updates".to_string()));
        for (other, etag) in &before {
            if *other != name {
                assert_eq!(
                    &index.policy_of(other).expect("served").etag,
                    etag,
                    "{other}"
                );
            }
        }
        // The same facts again: no new version.
        assert_eq!(index.machine_changed(id, machine), None);
    }

    #[test]
    fn scheduled_evaluation_runs_only_due_collections() {
        let (applied, machines) = example();
        let (mut index, _) = SiteIndex::build(&applied, 1, machines, vec![]).expect("builds");
        let (evaluated, changed) = index.evaluate_due(Instant::now());
        assert!(evaluated.is_empty(), "nothing is due yet: {evaluated:?}");
        assert!(changed.is_empty());
        // The example's production collections are evaluated daily.
        let tomorrow = Instant::now() + Duration::from_secs(86_400);
        let (mut evaluated, changed) = index.evaluate_due(tomorrow);
        evaluated.sort();
        assert_eq!(evaluated, ["MS Office Updates", "MS Security Updates"]);
        assert!(
            changed.is_empty(),
            "the inventory did not change, so no policy does"
        );
        let (evaluated, _) = index.evaluate_due(tomorrow + Duration::from_secs(60));
        assert!(evaluated.is_empty(), "not due again for a day");
    }
}
