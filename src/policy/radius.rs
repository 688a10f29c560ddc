//! Blast radius: which assignments a change adds, removes or changes, on
//! one machine and across the site.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::{MachinePolicy, PolicyDigest};

/// At most this many machine names per entry of a [`BlastRadius`].
pub const SAMPLE_MACHINES: usize = 5;

/// One machine's assignment changes, by advertisement name (sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// In both, with a different program, content, distribution points,
    /// advertisement setting or run-first program.
    pub changed: Vec<String>,
}

impl PolicyDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// The assignment changes from `old` to `new`.
pub fn diff(old: &MachinePolicy, new: &MachinePolicy) -> PolicyDiff {
    old.digest().diff(&new.digest())
}

impl PolicyDigest {
    /// The assignment changes from `self` (old) to `new`.
    pub fn diff(&self, new: &PolicyDigest) -> PolicyDiff {
        let old: BTreeMap<&str, &[u8; 16]> = self
            .assignments
            .iter()
            .map(|a| (&*a.advertisement, &a.fingerprint))
            .collect();
        let new: BTreeMap<&str, &[u8; 16]> = new
            .assignments
            .iter()
            .map(|a| (&*a.advertisement, &a.fingerprint))
            .collect();
        let mut out = PolicyDiff::default();
        for (name, fp) in &new {
            match old.get(name) {
                None => out.added.push(name.to_string()),
                Some(old_fp) if old_fp != fp => out.changed.push(name.to_string()),
                Some(_) => {}
            }
        }
        for name in old.keys() {
            if !new.contains_key(name) {
                out.removed.push(name.to_string());
            }
        }
        out
    }
}

/// The site-wide effect of a change on client policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlastRadius {
    /// Machines with a new policy.
    pub machines: usize,
    /// Machines whose policy hash differs (client settings included), that
    /// appear or that disappear.
    pub machines_changed: usize,
    /// By advertisement name.
    pub assignments_added: BTreeMap<String, Impact>,
    pub assignments_removed: BTreeMap<String, Impact>,
    pub assignments_changed: BTreeMap<String, Impact>,
}

/// How many machines an entry touches, and the first few by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Impact {
    pub machines: usize,
    /// At most [`SAMPLE_MACHINES`], the smallest names.
    pub sample: Vec<String>,
}

impl Impact {
    pub(super) fn add(&mut self, machine: &str) {
        self.machines += 1;
        if self.sample.len() == SAMPLE_MACHINES
            && self
                .sample
                .last()
                .is_some_and(|last| last.as_str() <= machine)
        {
            return;
        }
        let at = self.sample.partition_point(|m| m.as_str() < machine);
        self.sample.insert(at, machine.to_string());
        self.sample.truncate(SAMPLE_MACHINES);
    }
}

/// Compares the digests of every machine before and after a change, by
/// machine name (in any order; give each machine once).
pub fn blast_radius<'a>(
    old: impl IntoIterator<Item = (&'a str, &'a PolicyDigest)>,
    new: impl IntoIterator<Item = (&'a str, &'a PolicyDigest)>,
) -> BlastRadius {
    let mut old: HashMap<&str, &PolicyDigest> = old.into_iter().collect();
    let empty = PolicyDigest {
        hash: String::new(),
        assignments: Vec::new(),
    };
    let mut out = BlastRadius::default();
    let record =
        |out: &mut BlastRadius, machine: &str, before: &PolicyDigest, after: &PolicyDigest| {
            out.machines_changed += 1;
            let d = before.diff(after);
            for (names, map) in [
                (d.added, &mut out.assignments_added),
                (d.removed, &mut out.assignments_removed),
                (d.changed, &mut out.assignments_changed),
            ] {
                for name in names {
                    map.entry(name).or_default().add(machine);
                }
            }
        };
    for (machine, after) in new {
        out.machines += 1;
        match old.remove(machine) {
            Some(before) if before.hash == after.hash => {}
            Some(before) => record(&mut out, machine, before, after),
            None => record(&mut out, machine, &empty, after),
        }
    }
    for (machine, before) in old {
        record(&mut out, machine, before, &empty);
    }
    out
}
