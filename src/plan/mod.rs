//! Plans: desired objects against the objects the state holds → the
//! changes an apply would make, with their field-level differences and the
//! dependents each change touches. Pure: no I/O, no clock.
//!
//! Safety rules live here, so that a plan that would do harm is refused
//! before anyone can apply it: protected objects are never deleted, objects
//! patchops does not own are never deleted, and a plan deleting more than 10
//! objects or more than half of them needs `allow_destroy`.

pub mod canonical;
mod dependents;
mod diff;
mod from_state;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::manifest::Kind;
use crate::model::{Desired, Origin};

pub use canonical::{canonical_objects, object_hash, CanonicalObject};
pub use diff::{field_changes, FieldChange};
#[cfg(test)]
pub(crate) use from_state::testing;
pub use from_state::{applied_site, AppliedSite, FromStateError};

/// Deletions above this count need `allow_destroy`.
pub const MAX_DELETIONS: usize = 10;
/// Deleting more than this share of the managed objects needs `allow_destroy`.
pub const MAX_DELETION_SHARE: f64 = 0.5;

/// An object the state holds, its content as the canonical JSON text the
/// state stores (parsed only when it changes). Borrowed from the stored
/// rows, so that planning copies no object it does not change.
#[derive(Debug, Clone, PartialEq)]
pub struct ActualObject<'a> {
    pub kind: Kind,
    pub name: Cow<'a, str>,
    pub metadata: Cow<'a, str>,
    pub spec: Cow<'a, str>,
    pub hash: Cow<'a, str>,
    /// Created by patchops (only these may be deleted by a plan).
    pub managed: bool,
}

impl ActualObject<'_> {
    fn side(&self) -> Side {
        Side::parse(&self.metadata, &self.spec, &self.hash)
    }

    /// Whether the stored content still has the stored hash. Not so when
    /// the store was edited behind patchops (or damaged): the hash, which
    /// plans compare, then says "unchanged" while what is served differs.
    fn matches_its_hash(&self) -> bool {
        object_hash(&self.metadata, &self.spec) == self.hash
    }
}

impl Side {
    /// From canonical JSON text; text that does not parse (a damaged state)
    /// becomes a string value, so it still shows and still differs.
    fn parse(metadata: &str, spec: &str, hash: &str) -> Side {
        let value =
            |t: &str| serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_string()));
        Side {
            metadata: value(metadata),
            spec: value(spec),
            hash: hash.to_string(),
        }
    }

    fn is_protected(&self) -> bool {
        self.metadata["annotations"][crate::model::PROTECT_ANNOTATION] == "true"
    }
}

#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Only these objects (`--target KIND/NAME`); empty: all.
    pub targets: Vec<(Kind, String)>,
    /// Let the plan delete more than the guard allows.
    pub allow_destroy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    /// An object the state holds but patchops does not own, now declared in
    /// the manifests: patchops takes it over (and updates it if it differs).
    Adopt,
    Delete,
}

/// One side of a change: the object's canonical content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub metadata: Value,
    pub spec: Value,
    pub hash: String,
}

/// An object the change touches without changing it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dependent {
    pub kind: Kind,
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub kind: Kind,
    pub name: String,
    pub action: Action,
    /// Where the desired object is declared (none for deletions).
    pub origin: Option<Origin>,
    pub before: Option<Side>,
    pub after: Option<Side>,
    pub fields: Vec<FieldChange>,
    pub dependents: Vec<Dependent>,
    /// The stored object's content does not match its stored hash (the
    /// store was changed behind patchops): the update rewrites it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stored_object_corrupt: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// In apply order: creations and updates by kind (sites, distribution
    /// points, packages, collections, advertisements, sync hosts, software
    /// update packages), then deletions in the reverse order.
    pub changes: Vec<Change>,
    /// Objects in the state that patchops does not own and the manifests do
    /// not declare: left alone.
    pub unmanaged: Vec<(Kind, String)>,
    /// Objects in both, identical.
    pub unchanged: usize,
}

impl Plan {
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            match c.action {
                Action::Create => s.add += 1,
                Action::Update | Action::Adopt => s.change += 1,
                Action::Delete => s.destroy += 1,
            }
        }
        s
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Why a plan is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("the plan would delete protected objects: {}", list(.0))]
    Protected(Vec<(Kind, String)>),
    #[error("the plan would delete {deletions} of {managed} managed objects, more than the guard allows (more than {MAX_DELETIONS} objects or more than half of them)")]
    TooManyDeletions { deletions: usize, managed: usize },
    #[error("--target {0}: no such object in the manifests or the state")]
    UnknownTarget(String),
}

fn list(objects: &[(Kind, String)]) -> String {
    objects
        .iter()
        .map(|(k, n)| format!("{k}/{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Refusal {
    pub fn help(&self) -> &'static str {
        match self {
            Refusal::Protected(_) => "set the annotation `patchops/protect: \"false\"` and apply that first, if the deletion is really meant",
            Refusal::TooManyDeletions { .. } => "check that the directory is the right one; if the deletions are meant, add --allow-destroy",
            Refusal::UnknownTarget(_) => "targets are KIND/NAME, e.g. --target \"Collection/MS Security Updates\"",
        }
    }
}

/// Apply order of kinds: what others refer to comes first.
pub fn apply_rank(kind: Kind) -> u8 {
    match kind {
        Kind::Site => 0,
        Kind::DistributionPoint => 1,
        Kind::Package => 2,
        Kind::Collection => 3,
        Kind::Advertisement => 4,
        Kind::SyncHost => 5,
        Kind::SoftwareUpdatePackage => 6,
    }
}

/// The plan from `desired` (canonical, with the model it came from, for
/// dependents) to `actual`.
pub fn plan(
    desired: &[CanonicalObject],
    model: &Desired,
    actual: &[ActualObject<'_>],
    options: &PlanOptions,
) -> Result<Plan, Refusal> {
    use std::collections::HashMap;
    let actual_by_key: HashMap<(Kind, &str), &ActualObject<'_>> =
        actual.iter().map(|a| ((a.kind, &*a.name), a)).collect();
    let desired_keys: std::collections::HashSet<(Kind, &str)> =
        desired.iter().map(|d| (d.kind, d.name.as_str())).collect();

    for (kind, name) in &options.targets {
        if !desired_keys.contains(&(*kind, name.as_str()))
            && !actual_by_key.contains_key(&(*kind, name.as_str()))
        {
            return Err(Refusal::UnknownTarget(format!("{kind}/{name}")));
        }
    }
    let targeted = |kind: Kind, name: &str| {
        options.targets.is_empty() || options.targets.iter().any(|(k, n)| *k == kind && n == name)
    };

    let mut changes = Vec::new();
    let mut unchanged = 0;
    for d in desired {
        if !targeted(d.kind, &d.name) {
            continue;
        }
        let (action, before) = match actual_by_key.get(&(d.kind, d.name.as_str())) {
            None => (Action::Create, None),
            // Equal text means an equal hash, so comparing the text (no
            // hashing) also proves the stored hash true.
            Some(a)
                if a.managed
                    && a.hash == d.hash
                    && a.spec == d.spec
                    && a.metadata == d.metadata =>
            {
                unchanged += 1;
                continue;
            }
            Some(a) => (
                if a.managed {
                    Action::Update
                } else {
                    Action::Adopt
                },
                Some(a.side()),
            ),
        };
        let after = Side::parse(&d.metadata, &d.spec, &d.hash);
        let fields = match &before {
            Some(b) => field_changes(b, &after),
            None => Vec::new(),
        };
        let dependents = match action {
            Action::Create => Vec::new(),
            _ => dependents::of(model, d.kind, &d.name),
        };
        let stored_object_corrupt = actual_by_key
            .get(&(d.kind, d.name.as_str()))
            .is_some_and(|a| !a.matches_its_hash());
        changes.push(Change {
            kind: d.kind,
            name: d.name.clone(),
            action,
            origin: d.origin.clone(),
            before,
            after: Some(after),
            fields,
            dependents,
            stored_object_corrupt,
        });
    }

    let mut deletions = Vec::new();
    let mut unmanaged = Vec::new();
    let mut protected = Vec::new();
    for a in actual {
        if desired_keys.contains(&(a.kind, &*a.name)) || !targeted(a.kind, &a.name) {
            continue;
        }
        if !a.managed {
            unmanaged.push((a.kind, a.name.to_string()));
            continue;
        }
        let before = a.side();
        if before.is_protected() {
            protected.push((a.kind, a.name.to_string()));
        }
        deletions.push(Change {
            kind: a.kind,
            name: a.name.to_string(),
            action: Action::Delete,
            origin: None,
            before: Some(before),
            after: None,
            fields: Vec::new(),
            dependents: dependents::of(model, a.kind, &a.name),
            stored_object_corrupt: !a.matches_its_hash(),
        });
    }
    if !protected.is_empty() {
        return Err(Refusal::Protected(protected));
    }
    let managed = actual.iter().filter(|a| a.managed).count();
    let too_many = deletions.len() > MAX_DELETIONS
        || (managed > 0 && deletions.len() as f64 > managed as f64 * MAX_DELETION_SHARE);
    if too_many && !options.allow_destroy {
        return Err(Refusal::TooManyDeletions {
            deletions: deletions.len(),
            managed,
        });
    }

    changes.sort_by(|a, b| (apply_rank(a.kind), &a.name).cmp(&(apply_rank(b.kind), &b.name)));
    deletions.sort_by(|a, b| {
        (std::cmp::Reverse(apply_rank(a.kind)), &a.name)
            .cmp(&(std::cmp::Reverse(apply_rank(b.kind)), &b.name))
    });
    changes.extend(deletions);
    Ok(Plan {
        changes,
        unmanaged,
        unchanged,
    })
}

#[cfg(test)]
mod tests;
