//! Every machine's policy at once, as digests: what a plan compares.
//!
//! The targets are inverted into one list of advertisement indices per
//! machine (no strings). Each assignment's JSON depends on the machine only
//! through which of its distribution points are local, so it is serialized
//! once per (advertisement, local pattern) per thread and the bytes are
//! streamed into each machine's hash; the hash equals
//! [`MachinePolicy::hash`](super::MachinePolicy::hash) of the same policy.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use roaring::RoaringBitmap;
use sha2::{Digest, Sha256};

use super::{
    fingerprint, machine_platform_mask, platform_allows, sha256_text, PolicySite, ResolvedAd,
};
use crate::inventory::Machine;

/// One machine's policy, reduced to what comparisons need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDigest {
    /// [`MachinePolicy::hash`](super::MachinePolicy::hash).
    pub hash: String,
    /// By advertisement name.
    pub assignments: Vec<AssignmentDigest>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentDigest {
    pub advertisement: Arc<str>,
    /// The first 16 bytes of the SHA-256 of the assignment's JSON followed
    /// by the JSON of each program of its run-first chain (in `programs`
    /// order): it changes when anything the agent runs for it changes.
    pub fingerprint: [u8; 16],
}

/// The digest of every machine's policy, in the order `machines` gives
/// them. `targets` maps advertisement names to the ids of the machines they
/// target; ids not among `machines` and unknown advertisements are ignored.
pub fn all_policies<'m>(
    site: &PolicySite,
    machines: impl Iterator<Item = (u32, &'m Machine)>,
    targets: &BTreeMap<String, RoaringBitmap>,
) -> Vec<(u32, PolicyDigest)> {
    let machines: Vec<(u32, &Machine)> = machines.collect();
    let mut ids: Vec<u32> = machines.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    let lists = invert(site, &ids, targets);

    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 16);
    let chunk = machines.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = machines
            .chunks(chunk)
            .map(|part| {
                let (ids, lists) = (&ids, &lists);
                scope.spawn(move || {
                    let mut worker = Worker::new(site);
                    part.iter()
                        .map(|(id, machine)| {
                            // Every id is in `ids`.
                            let rank = ids.binary_search(id).unwrap_or(0);
                            (*id, worker.digest(machine, lists.of(rank)))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("policy worker panicked"))
            .collect()
    })
}

/// Advertisement indices per machine (by rank in the sorted ids), in
/// advertisement order: compressed rows.
struct AdLists {
    offsets: Vec<u32>,
    ads: Vec<u32>,
}

impl AdLists {
    fn of(&self, rank: usize) -> &[u32] {
        &self.ads[self.offsets[rank] as usize..self.offsets[rank + 1] as usize]
    }
}

fn invert(site: &PolicySite, ids: &[u32], targets: &BTreeMap<String, RoaringBitmap>) -> AdLists {
    // Only advertisements that can yield an assignment, in index order.
    let mut wanted: Vec<(u32, &RoaringBitmap)> = targets
        .iter()
        .filter_map(|(name, bitmap)| {
            let index = *site.ad_index.get(name)?;
            site.ads[index as usize].resolved.as_ref()?;
            Some((index, bitmap))
        })
        .collect();
    wanted.sort_unstable_by_key(|(index, _)| *index);
    // Ranks of each advertisement's machines: a merge of two sorted lists.
    let ranked: Vec<(u32, Vec<u32>)> = wanted
        .into_iter()
        .map(|(index, bitmap)| {
            let mut ranks = Vec::with_capacity(bitmap.len().min(ids.len() as u64) as usize);
            let mut at = 0usize;
            for id in bitmap {
                while at < ids.len() && ids[at] < id {
                    at += 1;
                }
                if at == ids.len() {
                    break;
                }
                if ids[at] == id {
                    ranks.push(at as u32);
                }
            }
            (index, ranks)
        })
        .collect();
    let mut offsets = vec![0u32; ids.len() + 1];
    for (_, ranks) in &ranked {
        for r in ranks {
            offsets[*r as usize + 1] += 1;
        }
    }
    for i in 1..offsets.len() {
        offsets[i] += offsets[i - 1];
    }
    let mut fill = offsets.clone();
    let mut ads = vec![0u32; offsets[ids.len()] as usize];
    for (index, ranks) in &ranked {
        for r in ranks {
            let slot = &mut fill[*r as usize];
            ads[*slot as usize] = *index;
            *slot += 1;
        }
    }
    AdLists { offsets, ads }
}

/// One thread's state: reused buffers and the serialized fragments.
struct Worker<'s> {
    site: &'s PolicySite,
    local: Vec<bool>,
    deps: Vec<u32>,
    /// (advertisement, local pattern of its DPs) → JSON and fingerprint.
    assignments: HashMap<(u32, u64), (Vec<u8>, [u8; 16])>,
    /// (program, local pattern of its DPs) → JSON.
    programs: HashMap<(u32, u64), Vec<u8>>,
}

impl<'s> Worker<'s> {
    fn new(site: &'s PolicySite) -> Self {
        Worker {
            site,
            local: Vec::new(),
            deps: Vec::new(),
            assignments: HashMap::new(),
            programs: HashMap::new(),
        }
    }

    fn digest(&mut self, machine: &Machine, ads: &[u32]) -> PolicyDigest {
        let site = self.site;
        self.local.clear();
        self.local
            .extend(site.dps.iter().map(|dp| dp.is_local(&machine.ip.addresses)));
        let platforms = machine_platform_mask(machine);
        let mut hasher = Sha256::new();
        hasher.update(&site.header);
        hasher.update(br#""assignments":["#);
        self.deps.clear();
        let mut assignments = Vec::with_capacity(ads.len());
        for &index in ads {
            let Some(ad) = &site.ads[index as usize].resolved else {
                continue;
            };
            if !platform_allows(ad.platforms, platforms) {
                continue;
            }
            if !assignments.is_empty() {
                hasher.update(b",");
            }
            let fingerprint = self.with_assignment(index, ad, |json| hasher.update(json));
            assignments.push(AssignmentDigest {
                advertisement: site.ads[index as usize].name.clone(),
                fingerprint,
            });
            self.deps.extend_from_slice(&ad.deps);
        }
        hasher.update(br#"],"programs":["#);
        self.deps.sort_unstable();
        self.deps.dedup();
        for i in 0..self.deps.len() {
            if i > 0 {
                hasher.update(b",");
            }
            let program = self.deps[i];
            self.with_program(program, |json| hasher.update(json));
        }
        hasher.update(b"]}");
        PolicyDigest {
            hash: sha256_text(&hasher.finalize()),
            assignments,
        }
    }

    /// Calls `f` with the assignment's JSON; returns its fingerprint.
    fn with_assignment(&mut self, index: u32, ad: &ResolvedAd, f: impl FnOnce(&[u8])) -> [u8; 16] {
        let Some(pattern) = pattern(&ad.relevant_dps, &self.local) else {
            let (json, fp) = self.render_assignment(ad);
            f(&json);
            return fp;
        };
        if !self.assignments.contains_key(&(index, pattern)) {
            let rendered = self.render_assignment(ad);
            self.assignments.insert((index, pattern), rendered);
        }
        let (json, fp) = &self.assignments[&(index, pattern)];
        f(json);
        *fp
    }

    fn render_assignment(&self, ad: &ResolvedAd) -> (Vec<u8>, [u8; 16]) {
        let site = self.site;
        // Serializing our own types cannot fail.
        let json = serde_json::to_vec(&site.render_assignment(ad, &self.local)).unwrap_or_default();
        let mut hasher = Sha256::new();
        hasher.update(&json);
        for &dep in &ad.deps {
            hasher.update(
                serde_json::to_vec(&site.render_program(dep, &self.local)).unwrap_or_default(),
            );
        }
        (json, fingerprint(hasher))
    }

    /// Calls `f` with the program's JSON.
    fn with_program(&mut self, program: u32, f: impl FnOnce(&[u8])) {
        let site = self.site;
        let render = |local: &[bool]| {
            serde_json::to_vec(&site.render_program(program, local)).unwrap_or_default()
        };
        match pattern(&site.programs[program as usize].dps, &self.local) {
            None => f(&render(&self.local)),
            Some(p) => f(self
                .programs
                .entry((program, p))
                .or_insert_with(|| render(&self.local))),
        }
    }
}

/// Which of `dps` are local, as bits; None with more than 64 (not cached).
fn pattern(dps: &[u32], local: &[bool]) -> Option<u64> {
    if dps.len() > 64 {
        return None;
    }
    Some(dps.iter().enumerate().fold(0u64, |bits, (i, dp)| {
        bits | (u64::from(local[*dp as usize]) << i)
    }))
}
