//! Collection evaluation: which machines of the inventory belong to which
//! collection.
//!
//! This module owns three things:
//!
//! - [`matching`]: whether one machine satisfies a collection query (the
//!   semantics of missing facts, multi-valued properties and case are
//!   documented there).
//! - [`MachineTable`]: the inventory under stable `u32` machine ids, with an
//!   inverted index of property values that full evaluation reads.
//! - [`Evaluator`]: the collections, compiled (queries parsed once, shared
//!   conditions computed once, references resolved, topologically ordered),
//!   and the member bitmap of each. It evaluates everything
//!   ([`Evaluator::evaluate_all`]), one collection and its dependents
//!   ([`Evaluator::evaluate_collection`]), one machine against every
//!   collection ([`Evaluator::machine_changed`]) or a new set of collection
//!   specs, re-evaluating only what changed ([`Evaluator::set_collections`]).
//!
//! # Membership
//!
//! A collection's members are the union of the machines matching any of its
//! queries, its direct members that are in the table, and the members of
//! the collections it includes; less the members of the collections it
//! excludes; intersected with the members of its limiting collection (no
//! limiting collection: every machine). Its *own* members
//! ([`Evaluator::own_members`]) are the same without the include rules.
//! `All Systems` has every machine; the other built-in collections are
//! defined by queries (see [`crate::model::BUILTIN_COLLECTIONS`]).
//!
//! # Invariants
//!
//! - Pure: no I/O, no clock other than timing evaluations for metrics, no
//!   global state. Results depend only on the collection specs and the
//!   table.
//! - Incremental results equal a full evaluation: after any sequence of
//!   `machine_changed`, `machine_removed`, `set_collections` and
//!   `evaluate_collection` calls that reported every table change, the
//!   member bitmaps are what `evaluate_all` would compute (the oracle tests
//!   in `tests.rs` check this against a naive reference).
//! - Never loops or panics on a bad graph: cycles and unknown references are
//!   errors, even though validation already refuses them.

mod evaluator;
pub mod matching;
mod table;

#[cfg(test)]
mod tests;

use roaring::RoaringBitmap;

pub use evaluator::Evaluator;
pub use matching::{matches, Matcher};
pub use table::MachineTable;

/// How one collection's membership changed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MembershipDelta {
    pub collection: String,
    /// Machines that became members.
    pub added: RoaringBitmap,
    /// Machines that stopped being members.
    pub removed: RoaringBitmap,
    /// Changes of the own members (see [`Evaluator::own_members`]); always
    /// empty for collections without include rules, whose own members are
    /// their members.
    pub own_added: RoaringBitmap,
    pub own_removed: RoaringBitmap,
}

impl MembershipDelta {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.own_added.is_empty()
            && self.own_removed.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("collection `{0}` is declared twice")]
    Duplicate(String),
    #[error("collection `{0}` has the name of a built-in collection")]
    BuiltinRedeclared(String),
    #[error("collection `{collection}` refers to unknown collection `{reference}`")]
    UnknownReference {
        collection: String,
        reference: String,
    },
    #[error("collections {} include, exclude or limit each other in a cycle", quoted(.collections))]
    Cycle { collections: Vec<String> },
    #[error("collection `{collection}` has an invalid query: {message}")]
    Query { collection: String, message: String },
    #[error("collection `{collection}` has an invalid evaluation interval: {message}")]
    Interval { collection: String, message: String },
    #[error("unknown collection `{0}`")]
    UnknownCollection(String),
    #[error("machine `{machine}` already has id {existing}; it cannot also have id {requested}")]
    IdConflict {
        machine: String,
        existing: u32,
        requested: u32,
    },
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
