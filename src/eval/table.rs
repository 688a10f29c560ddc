//! The inventory as the evaluator sees it: machines under stable `u32` ids,
//! and an inverted index from property values to the machines that have
//! them, kept up to date on every change.

use std::collections::HashMap;

use roaring::RoaringBitmap;

use super::matching::{facts, Key, PropId};
use super::EvalError;
use crate::inventory::{machine_key, Machine};

/// Machines by id and by key ([`machine_key`] of the name). Ids are stable:
/// updating a machine keeps its id, and ids of removed machines are not
/// handed out again by [`insert_or_update`](Self::insert_or_update).
#[derive(Debug, Clone, Default)]
pub struct MachineTable {
    machines: HashMap<u32, Machine>,
    by_key: HashMap<String, u32>,
    ids: RoaringBitmap,
    next_id: u32,
    pub(crate) index: Index,
}

impl MachineTable {
    pub fn new() -> MachineTable {
        MachineTable::default()
    }

    /// Adds the machine, or replaces the one with the same key (keeping its
    /// id). Returns the id and the machine it replaced.
    pub fn insert_or_update(&mut self, machine: Machine) -> (u32, Option<Machine>) {
        let key = machine.key();
        let id = match self.by_key.get(&key) {
            Some(&id) => id,
            None => {
                let id = self.fresh_id();
                self.by_key.insert(key, id);
                id
            }
        };
        (id, self.put(id, machine))
    }

    /// Adds or replaces the machine under an id the caller chose (the store
    /// assigns ids). Replacing a machine of another name renames it. Fails
    /// if another id already holds a machine of this name.
    pub fn insert_with_id(
        &mut self,
        id: u32,
        machine: Machine,
    ) -> Result<Option<Machine>, EvalError> {
        let key = machine.key();
        if let Some(&existing) = self.by_key.get(&key) {
            if existing != id {
                return Err(EvalError::IdConflict {
                    machine: machine.name,
                    existing,
                    requested: id,
                });
            }
        }
        if let Some(old) = self.machines.get(&id) {
            let old_key = old.key();
            if old_key != key {
                self.by_key.remove(&old_key);
            }
        }
        self.by_key.insert(key, id);
        self.next_id = self.next_id.max(id.saturating_add(1));
        Ok(self.put(id, machine))
    }

    /// Removes the machine with this name (compared without case); its id.
    pub fn remove(&mut self, name: &str) -> Option<u32> {
        let id = self.by_key.remove(&machine_key(name))?;
        if let Some(old) = self.machines.remove(&id) {
            self.index.remove(id, &old);
        }
        self.ids.remove(id);
        Some(id)
    }

    pub fn get(&self, id: u32) -> Option<&Machine> {
        self.machines.get(&id)
    }

    /// The id of the machine with this name (compared without case).
    pub fn id_of(&self, name: &str) -> Option<u32> {
        match self.by_key.get(name) {
            Some(&id) => Some(id),
            None => self.by_key.get(&machine_key(name)).copied(),
        }
    }

    /// Every id in the table.
    pub fn ids(&self) -> &RoaringBitmap {
        &self.ids
    }

    pub fn len(&self) -> usize {
        self.machines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.machines.is_empty()
    }

    fn put(&mut self, id: u32, machine: Machine) -> Option<Machine> {
        if let Some(old) = self.machines.get(&id) {
            self.index.remove(id, old);
        }
        self.index.add(id, &machine);
        self.ids.insert(id);
        self.machines.insert(id, machine)
    }

    fn fresh_id(&mut self) -> u32 {
        let mut id = self.next_id;
        if self.ids.contains(id) {
            // Only after ids up to u32::MAX were given explicitly.
            id = (0..=u32::MAX)
                .find(|i| !self.ids.contains(*i))
                .expect("fewer than 2^32 machines");
        }
        self.next_id = self.next_id.max(id.saturating_add(1));
        id
    }
}

/// For every property, the machines that have a value, and for every value
/// the machines that have it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Index {
    props: HashMap<PropId, Postings>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Postings {
    /// Machines with at least one value.
    pub(crate) any: RoaringBitmap,
    pub(crate) values: HashMap<Key, RoaringBitmap>,
}

impl Index {
    pub(crate) fn get(&self, prop: &PropId) -> Option<&Postings> {
        self.props.get(prop)
    }

    fn add(&mut self, id: u32, machine: &Machine) {
        facts(machine, |prop, key| {
            let postings = self.props.entry(prop).or_default();
            postings.any.insert(id);
            postings.values.entry(key).or_default().insert(id);
        });
    }

    fn remove(&mut self, id: u32, machine: &Machine) {
        facts(machine, |prop, key| {
            let Some(postings) = self.props.get_mut(&prop) else {
                return;
            };
            postings.any.remove(id);
            if let Some(ids) = postings.values.get_mut(&key) {
                ids.remove(id);
                if ids.is_empty() {
                    postings.values.remove(&key);
                }
            }
            if postings.any.is_empty() {
                self.props.remove(&prop);
            }
        });
    }
}
