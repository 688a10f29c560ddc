//! What the server keeps in memory: the applied site, the inventory, the
//! evaluated memberships and every machine's served policy. The store is
//! the truth; this index is rebuilt from it at start and whenever the
//! applied state changes, and kept current machine by machine as
//! inventory arrives.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use roaring::RoaringBitmap;

use crate::eval::{EvalError, Evaluator, MachineTable};
use crate::inventory::{machine_key, Machine};
use crate::plan::AppliedSite;
use crate::policy::{self, MachinePolicy, PolicySite};
use crate::store::StoredPolicy;

/// One machine's policy as served: the body is rendered once per version.
#[derive(Debug, Clone)]
pub struct Served {
    pub version: u64,
    pub hash: String,
    /// The quoted ETag, e.g. `"7-3fa4…"`.
    pub etag: String,
    pub body: Bytes,
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
            policy_site: PolicySite::new(&applied.desired, &applied.content),
            targets: targets_of(applied),
            served: HashMap::new(),
            last_full_evaluation,
        };
        let previous: HashMap<u32, StoredPolicy> =
            stored.into_iter().map(|p| (p.machine_id, p)).collect();
        let mut changed = Vec::new();
        let ids: Vec<u32> = index.table.ids().iter().collect();
        for id in ids {
            if let Some(update) = index.refresh_policy(id, previous.get(&id)) {
                changed.push(update);
            }
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
    /// the hash is unchanged.
    fn refresh_policy(&mut self, id: u32, previous: Option<&StoredPolicy>) -> Option<StoredPolicy> {
        let machine = self.table.get(id)?;
        let ads: Vec<&str> = self
            .targets
            .iter()
            .filter(|t| self.targets_machine(t, id))
            .map(|t| t.name.as_str())
            .collect();
        let policy = policy::machine_policy(&self.policy_site, machine, &ads);
        let hash = policy.hash();
        let version = policy::next_version(
            previous.map(|p| (p.version, p.hash.as_str())),
            &hash,
        );
        let changed = previous.is_none_or(|p| p.hash != hash);
        if !changed && self.served.contains_key(&id) {
            return None;
        }
        let body = render(&machine.name, &policy, version);
        let short = hash.rsplit(':').next().unwrap_or(&hash);
        let etag = format!("\"{version}-{}\"", &short[..short.len().min(16)]);
        self.served.insert(
            id,
            Served {
                version,
                hash: hash.clone(),
                etag,
                body: Bytes::from(body.clone()),
            },
        );
        changed.then_some(StoredPolicy {
            machine_id: id,
            version,
            hash,
            body,
        })
    }

    fn targets_machine(&self, target: &Target, id: u32) -> bool {
        let members = if target.include_subcollections {
            self.evaluator.members(&target.collection)
        } else {
            self.evaluator.own_members(&target.collection)
        };
        members.is_some_and(|m: &RoaringBitmap| m.contains(id))
    }

    pub fn id_of(&self, name: &str) -> Option<u32> {
        self.table.id_of(&machine_key(name))
    }

    pub fn policy_of(&self, name: &str) -> Option<&Served> {
        self.served.get(&self.id_of(name)?)
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

fn targets_of(applied: &AppliedSite) -> Vec<Target> {
    applied
        .desired
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
fn render(machine: &str, policy: &MachinePolicy, version: u64) -> String {
    #[derive(serde::Serialize)]
    struct Document<'a> {
        machine: &'a str,
        version: u64,
        #[serde(flatten)]
        policy: &'a MachinePolicy,
    }
    serde_json::to_string(&Document {
        machine,
        version,
        policy,
    })
    .unwrap_or_default()
}
