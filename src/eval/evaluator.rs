//! The compiled collection graph and its member bitmaps.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use roaring::{MultiOps, RoaringBitmap};

use super::matching::{CompiledCondition, CompiledExpr, CompiledTest, Conditions};
use super::table::MachineTable;
use super::{EvalError, MembershipDelta};
use crate::inventory::machine_key;
use crate::manifest::collection::MembershipRule;
use crate::manifest::CollectionSpec;
use crate::model::BUILTIN_COLLECTIONS;

/// Collections compiled for evaluation, with their current members.
///
/// Built with [`Evaluator::new`]; members are empty until
/// [`evaluate_all`](Self::evaluate_all). The incremental operations keep the
/// members equal to a full evaluation provided the caller reports every
/// change of the table ([`machine_changed`](Self::machine_changed) after an
/// insert or update, [`machine_removed`](Self::machine_removed) after a
/// removal).
#[derive(Debug, Clone)]
pub struct Evaluator {
    /// In topological order: every node's dependencies come before it.
    nodes: Vec<Node>,
    by_name: HashMap<String, usize>,
    conditions: Conditions,
    last_total: Duration,
}

#[derive(Debug, Clone)]
struct Node {
    name: String,
    /// What membership depends on, to detect changed specs; None for
    /// built-in collections, which never change.
    source: Option<(Option<String>, Vec<MembershipRule>)>,
    /// Every machine (`All Systems`).
    all: bool,
    queries: Vec<CompiledExpr>,
    /// Direct members by key ([`machine_key`]).
    direct: HashSet<String>,
    include: Vec<usize>,
    exclude: Vec<usize>,
    limiting: Option<usize>,
    interval: Option<Duration>,
    members: RoaringBitmap,
    /// Members ignoring include rules; only for nodes with include rules.
    own: Option<RoaringBitmap>,
    last_evaluation: Duration,
}

impl Node {
    fn dependencies(&self) -> impl Iterator<Item = usize> + '_ {
        self.include
            .iter()
            .chain(&self.exclude)
            .chain(&self.limiting)
            .copied()
    }
}

/// A collection before its references are resolved.
struct Declared<'a> {
    name: String,
    spec: Option<&'a CollectionSpec>,
    builtin_query: Option<Option<&'static str>>,
}

impl Evaluator {
    /// Compiles the declared collections and the built-in ones. Fails on a
    /// duplicate name, a declared collection named like a built-in one, an
    /// unknown reference, a cycle, an invalid query or interval.
    pub fn new<'a>(
        collections: impl IntoIterator<Item = (&'a str, &'a CollectionSpec)>,
    ) -> Result<Evaluator, EvalError> {
        let mut declared: Vec<Declared<'a>> = BUILTIN_COLLECTIONS
            .iter()
            .map(|b| Declared {
                name: b.name.to_owned(),
                spec: None,
                builtin_query: Some(b.query),
            })
            .collect();
        let mut index: HashMap<String, usize> = declared
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name.clone(), i))
            .collect();
        for (name, spec) in collections {
            if let Some(&i) = index.get(name) {
                return Err(if declared[i].spec.is_none() {
                    EvalError::BuiltinRedeclared(name.to_owned())
                } else {
                    EvalError::Duplicate(name.to_owned())
                });
            }
            index.insert(name.to_owned(), declared.len());
            declared.push(Declared {
                name: name.to_owned(),
                spec: Some(spec),
                builtin_query: None,
            });
        }

        // Dependencies by declaration index.
        let mut deps: Vec<Vec<usize>> = Vec::with_capacity(declared.len());
        for d in &declared {
            let mut list = Vec::new();
            if let Some(spec) = d.spec {
                for reference in references(spec) {
                    let &j = index
                        .get(reference)
                        .ok_or_else(|| EvalError::UnknownReference {
                            collection: d.name.clone(),
                            reference: reference.to_owned(),
                        })?;
                    list.push(j);
                }
            }
            deps.push(list);
        }
        let order = topological_order(&deps).map_err(|stuck| EvalError::Cycle {
            collections: {
                let mut names: Vec<String> = stuck
                    .into_iter()
                    .map(|i| declared[i].name.clone())
                    .collect();
                names.sort();
                names
            },
        })?;
        let mut position = vec![0; declared.len()];
        for (at, &i) in order.iter().enumerate() {
            position[i] = at;
        }

        let mut conditions = Conditions::default();
        let mut nodes = Vec::with_capacity(declared.len());
        for &i in &order {
            nodes.push(compile_node(
                &declared[i],
                &index,
                &position,
                &mut conditions,
            )?);
        }
        let by_name = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        Ok(Evaluator {
            nodes,
            by_name,
            conditions,
            last_total: Duration::ZERO,
        })
    }

    /// The collections of a desired site (see [`new`](Self::new)).
    pub fn from_desired(desired: &crate::model::Desired) -> Result<Evaluator, EvalError> {
        Evaluator::new(
            desired
                .collections
                .iter()
                .map(|(name, object)| (name.as_str(), &object.spec)),
        )
    }

    /// Evaluates every collection against the table, in dependency order.
    pub fn evaluate_all(&mut self, table: &MachineTable) {
        let dirty = vec![true; self.nodes.len()];
        self.evaluate_dirty(&dirty, table, false);
    }

    /// Re-evaluates one collection and, transitively, the collections that
    /// include, exclude or are limited by it (for scheduled evaluation).
    /// Returns the collections whose members changed.
    pub fn evaluate_collection(
        &mut self,
        name: &str,
        table: &MachineTable,
    ) -> Result<Vec<MembershipDelta>, EvalError> {
        let &start = self
            .by_name
            .get(name)
            .ok_or_else(|| EvalError::UnknownCollection(name.to_owned()))?;
        let mut dirty = vec![false; self.nodes.len()];
        dirty[start] = true;
        self.spread(&mut dirty);
        Ok(self.evaluate_dirty(&dirty, table, true))
    }

    /// Replaces the collections. Collections whose membership rules or
    /// limiting collection are unchanged, and none of whose dependencies
    /// changed, keep their members; the others are evaluated. Returns the
    /// changes, including removed collections (all their members removed)
    /// and new ones (all their members added), sorted by name. On error the
    /// evaluator is unchanged.
    pub fn set_collections<'a>(
        &mut self,
        collections: impl IntoIterator<Item = (&'a str, &'a CollectionSpec)>,
        table: &MachineTable,
    ) -> Result<Vec<MembershipDelta>, EvalError> {
        let mut new = Evaluator::new(collections)?;
        let mut dirty = vec![false; new.nodes.len()];
        for i in 0..new.nodes.len() {
            let deps_dirty = new.nodes[i].dependencies().any(|d| dirty[d]);
            let old = self
                .by_name
                .get(&new.nodes[i].name)
                .map(|&j| &self.nodes[j]);
            let node = &mut new.nodes[i];
            if let Some(old) = old {
                // Diffs are against the old members even when re-evaluated.
                node.members = old.members.clone();
                node.own = (!node.include.is_empty())
                    .then(|| old.own.as_ref().unwrap_or(&old.members).clone());
                node.last_evaluation = old.last_evaluation;
            }
            dirty[i] = deps_dirty || old.is_none_or(|old| old.source != node.source);
        }
        let mut deltas = new.evaluate_dirty(&dirty, table, true);
        for old in &self.nodes {
            if !new.by_name.contains_key(&old.name) && !old.members.is_empty() {
                deltas.push(MembershipDelta {
                    collection: old.name.clone(),
                    removed: old.members.clone(),
                    ..MembershipDelta::default()
                });
            }
        }
        deltas.sort_by(|a, b| a.collection.cmp(&b.collection));
        *self = new;
        Ok(deltas)
    }

    /// Re-evaluates one machine (inserted or updated in `table`) against
    /// every collection, in dependency order, touching no other machine's
    /// membership. Returns the collections whose membership of this machine
    /// changed (each delta holds only `id`), in dependency order. A machine
    /// no longer in the table is treated as removed.
    pub fn machine_changed(&mut self, table: &MachineTable, id: u32) -> Vec<MembershipDelta> {
        let Some(machine) = table.get(id) else {
            return self.machine_removed(id);
        };
        let key = machine.key();
        // 0: not computed yet, 1: false, 2: true.
        let mut known = vec![0u8; self.conditions.list.len()];
        let conditions = &self.conditions.list;
        let mut condition = |i: usize| match known[i] {
            0 => {
                let value = conditions[i].matches(machine);
                known[i] = 1 + u8::from(value);
                value
            }
            k => k == 2,
        };
        let mut deltas = Vec::new();
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            let contains = |j: &usize| self.nodes[*j].members.contains(id);
            let base = node.all
                || node.direct.contains(&key)
                || node.queries.iter().any(|q| q.eval(&mut condition));
            let kept =
                !node.exclude.iter().any(contains) && node.limiting.as_ref().is_none_or(contains);
            let member = (base || node.include.iter().any(contains)) && kept;
            let own_member = base && kept;

            let node = &mut self.nodes[i];
            let mut delta = MembershipDelta::default();
            set_bit(
                &mut node.members,
                id,
                member,
                &mut delta.added,
                &mut delta.removed,
            );
            if let Some(own) = &mut node.own {
                set_bit(
                    own,
                    id,
                    own_member,
                    &mut delta.own_added,
                    &mut delta.own_removed,
                );
            }
            if !delta.is_empty() {
                delta.collection = node.name.clone();
                deltas.push(delta);
            }
        }
        deltas
    }

    /// Drops a machine removed from the table from every collection.
    /// Returns the collections it left, in dependency order.
    pub fn machine_removed(&mut self, id: u32) -> Vec<MembershipDelta> {
        let mut deltas = Vec::new();
        for node in &mut self.nodes {
            let mut delta = MembershipDelta::default();
            set_bit(
                &mut node.members,
                id,
                false,
                &mut delta.added,
                &mut delta.removed,
            );
            if let Some(own) = &mut node.own {
                set_bit(own, id, false, &mut delta.own_added, &mut delta.own_removed);
            }
            if !delta.is_empty() {
                delta.collection = node.name.clone();
                deltas.push(delta);
            }
        }
        deltas
    }

    /// The members of a collection; None for an unknown name.
    pub fn members(&self, name: &str) -> Option<&RoaringBitmap> {
        self.node(name).map(|n| &n.members)
    }

    /// The members a collection has without its include rules (what an
    /// advertisement with `includeSubcollections: false` targets). For a
    /// collection without include rules, the same as [`members`](Self::members).
    pub fn own_members(&self, name: &str) -> Option<&RoaringBitmap> {
        self.node(name)
            .map(|n| n.own.as_ref().unwrap_or(&n.members))
    }

    /// The collections a machine belongs to, sorted by name.
    pub fn collections_of(&self, id: u32) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .nodes
            .iter()
            .filter(|n| n.members.contains(id))
            .map(|n| n.name.as_str())
            .collect();
        names.sort_unstable();
        names
    }

    /// Every collection name, built-in ones included, in dependency order.
    pub fn collection_names(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|n| n.name.as_str())
    }

    /// How often the collection is to be re-evaluated (its `evaluation`
    /// interval); None for unknown names and collections without one.
    pub fn evaluation_interval(&self, name: &str) -> Option<Duration> {
        self.node(name)?.interval
    }

    /// How long the collection's latest evaluation took (zero before the
    /// first, and for collections kept unchanged by `set_collections`, the
    /// time of their latest actual evaluation).
    pub fn last_evaluation(&self, name: &str) -> Option<Duration> {
        self.node(name).map(|n| n.last_evaluation)
    }

    /// How long the latest `evaluate_all`, `evaluate_collection` or
    /// `set_collections` took in all.
    pub fn last_total(&self) -> Duration {
        self.last_total
    }

    fn node(&self, name: &str) -> Option<&Node> {
        self.by_name.get(name).map(|&i| &self.nodes[i])
    }

    /// Marks every node that depends, transitively, on a dirty one.
    fn spread(&self, dirty: &mut [bool]) {
        for i in 0..self.nodes.len() {
            if !dirty[i] && self.nodes[i].dependencies().any(|d| dirty[d]) {
                dirty[i] = true;
            }
        }
    }

    /// Evaluates the dirty nodes in order; with `diff`, returns how each
    /// one's members changed.
    fn evaluate_dirty(
        &mut self,
        dirty: &[bool],
        table: &MachineTable,
        diff: bool,
    ) -> Vec<MembershipDelta> {
        let started = Instant::now();
        let mut cache = ConditionCache::new(self.conditions.list.len());
        let mut deltas = Vec::new();
        for (i, _) in dirty.iter().enumerate().filter(|(_, &d)| d) {
            let node_started = Instant::now();
            let (members, own) = self.evaluate_node(i, table, &mut cache);
            let node = &mut self.nodes[i];
            node.last_evaluation = node_started.elapsed();
            if diff {
                let mut delta = MembershipDelta {
                    collection: node.name.clone(),
                    added: &members - &node.members,
                    removed: &node.members - &members,
                    ..MembershipDelta::default()
                };
                if let Some(new_own) = &own {
                    let old_own = node.own.as_ref().unwrap_or(&node.members);
                    delta.own_added = new_own - old_own;
                    delta.own_removed = old_own - new_own;
                }
                if !delta.is_empty() {
                    deltas.push(delta);
                }
            }
            node.members = members;
            node.own = own;
        }
        self.last_total = started.elapsed();
        deltas
    }

    /// Members and own members of node `i`, whose dependencies are current.
    fn evaluate_node(
        &self,
        i: usize,
        table: &MachineTable,
        cache: &mut ConditionCache,
    ) -> (RoaringBitmap, Option<RoaringBitmap>) {
        let node = &self.nodes[i];
        let mut base = if node.all {
            table.ids().clone()
        } else {
            RoaringBitmap::new()
        };
        for query in &node.queries {
            base |= expr_bitmap(query, &self.conditions.list, table, cache);
        }
        for key in &node.direct {
            if let Some(id) = table.id_of(key) {
                base.insert(id);
            }
        }
        let mut own = (!node.include.is_empty()).then(|| base.clone());
        for &j in &node.include {
            base |= &self.nodes[j].members;
        }
        for b in std::iter::once(&mut base).chain(own.as_mut()) {
            for &j in &node.exclude {
                *b -= &self.nodes[j].members;
            }
            if let Some(l) = node.limiting {
                *b &= &self.nodes[l].members;
            }
        }
        (base, own)
    }
}

fn set_bit(
    bitmap: &mut RoaringBitmap,
    id: u32,
    value: bool,
    added: &mut RoaringBitmap,
    removed: &mut RoaringBitmap,
) {
    if value {
        if bitmap.insert(id) {
            added.insert(id);
        }
    } else if bitmap.remove(id) {
        removed.insert(id);
    }
}

/// Every collection named by the spec's limiting, include and exclude rules.
fn references(spec: &CollectionSpec) -> impl Iterator<Item = &str> {
    let rules = spec.membership.iter().flat_map(|rule| match rule {
        MembershipRule::Include(names) | MembershipRule::Exclude(names) => names.as_slice(),
        MembershipRule::Query(_) | MembershipRule::Direct(_) => &[],
    });
    spec.limiting_collection
        .iter()
        .chain(rules)
        .map(String::as_str)
}

/// Kahn's algorithm; on a cycle, the nodes that could not be ordered.
fn topological_order(deps: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); deps.len()];
    for (i, list) in deps.iter().enumerate() {
        for &d in list {
            dependents[d].push(i);
        }
    }
    let mut ready: VecDeque<usize> = (0..deps.len()).filter(|&i| waiting[i] == 0).collect();
    let mut order = Vec::with_capacity(deps.len());
    while let Some(i) = ready.pop_front() {
        order.push(i);
        for &j in &dependents[i] {
            waiting[j] -= 1;
            if waiting[j] == 0 {
                ready.push_back(j);
            }
        }
    }
    if order.len() == deps.len() {
        Ok(order)
    } else {
        Err((0..deps.len()).filter(|&i| waiting[i] > 0).collect())
    }
}

fn compile_node(
    declared: &Declared<'_>,
    index: &HashMap<String, usize>,
    position: &[usize],
    conditions: &mut Conditions,
) -> Result<Node, EvalError> {
    let name = declared.name.clone();
    let mut node = Node {
        name: name.clone(),
        source: None,
        all: false,
        queries: Vec::new(),
        direct: HashSet::new(),
        include: Vec::new(),
        exclude: Vec::new(),
        limiting: None,
        interval: None,
        members: RoaringBitmap::new(),
        own: None,
        last_evaluation: Duration::ZERO,
    };
    let query_error = |e: crate::query::QueryError| EvalError::Query {
        collection: name.clone(),
        message: e.message,
    };
    let resolve = |reference: &str| position[index[reference]];
    if let Some(builtin) = declared.builtin_query {
        match builtin {
            None => node.all = true,
            Some(text) => {
                let query = crate::query::parse(text).map_err(query_error)?;
                node.queries
                    .push(CompiledExpr::compile(&query.expr, conditions));
            }
        }
        return Ok(node);
    }
    let Some(spec) = declared.spec else {
        return Ok(node);
    };
    node.source = Some((spec.limiting_collection.clone(), spec.membership.clone()));
    node.limiting = spec.limiting_collection.as_deref().map(resolve);
    for rule in &spec.membership {
        match rule {
            MembershipRule::Query(text) => {
                let query = crate::query::parse(text.as_str()).map_err(query_error)?;
                node.queries
                    .push(CompiledExpr::compile(&query.expr, conditions));
            }
            MembershipRule::Direct(names) => {
                node.direct.extend(names.iter().map(|n| machine_key(n)));
            }
            MembershipRule::Include(names) => node.include.extend(names.iter().map(|n| resolve(n))),
            MembershipRule::Exclude(names) => node.exclude.extend(names.iter().map(|n| resolve(n))),
        }
    }
    if let Some(interval) = &spec.evaluation {
        let every = crate::units::parse_duration(interval.every.as_str()).map_err(|message| {
            EvalError::Interval {
                collection: name.clone(),
                message,
            }
        })?;
        node.interval = Some(every);
    }
    Ok(node)
}

/// Bitmaps of the conditions computed so far in one evaluation.
struct ConditionCache {
    bitmaps: Vec<Option<RoaringBitmap>>,
}

impl ConditionCache {
    fn new(len: usize) -> ConditionCache {
        ConditionCache {
            bitmaps: vec![None; len],
        }
    }

    fn get(
        &mut self,
        i: usize,
        conditions: &[CompiledCondition],
        table: &MachineTable,
    ) -> &RoaringBitmap {
        self.bitmaps[i].get_or_insert_with(|| condition_bitmap(&conditions[i], table))
    }
}

/// The machines satisfying one condition, from the table's index: each
/// distinct value of the property is tested once.
fn condition_bitmap(condition: &CompiledCondition, table: &MachineTable) -> RoaringBitmap {
    let postings = table.index.get(&condition.prop);
    match (&condition.test, postings) {
        (CompiledTest::IsNull { negated: true }, Some(p)) => p.any.clone(),
        (CompiledTest::IsNull { negated: false }, Some(p)) => table.ids() - &p.any,
        (CompiledTest::IsNull { negated: true }, None) => RoaringBitmap::new(),
        (CompiledTest::IsNull { negated: false }, None) => table.ids().clone(),
        (CompiledTest::Pred { .. }, None) => RoaringBitmap::new(),
        (CompiledTest::Pred { pred, negated }, Some(p)) => {
            let positive = match pred.lookup_keys(&condition.prop) {
                Some(keys) => keys.iter().filter_map(|k| p.values.get(k)).union(),
                None => p
                    .values
                    .iter()
                    .filter(|(key, _)| pred.test(key.val()))
                    .map(|(_, ids)| ids)
                    .union(),
            };
            if *negated {
                &p.any - positive
            } else {
                positive
            }
        }
    }
}

fn expr_bitmap(
    expr: &CompiledExpr,
    conditions: &[CompiledCondition],
    table: &MachineTable,
    cache: &mut ConditionCache,
) -> RoaringBitmap {
    match expr {
        CompiledExpr::Condition(i) => cache.get(*i, conditions, table).clone(),
        CompiledExpr::Not(inner) => table.ids() - expr_bitmap(inner, conditions, table, cache),
        CompiledExpr::Or(operands) => {
            let mut acc = RoaringBitmap::new();
            for operand in operands {
                match operand {
                    CompiledExpr::Condition(i) => acc |= cache.get(*i, conditions, table),
                    other => acc |= expr_bitmap(other, conditions, table, cache),
                }
            }
            acc
        }
        CompiledExpr::And(operands) => {
            let Some((first, rest)) = operands.split_first() else {
                return table.ids().clone();
            };
            let mut acc = expr_bitmap(first, conditions, table, cache);
            for operand in rest {
                if acc.is_empty() {
                    break;
                }
                match operand {
                    CompiledExpr::Condition(i) => acc &= cache.get(*i, conditions, table),
                    CompiledExpr::Not(inner) => match &**inner {
                        CompiledExpr::Condition(i) => acc -= cache.get(*i, conditions, table),
                        other => acc -= expr_bitmap(other, conditions, table, cache),
                    },
                    other => acc &= expr_bitmap(other, conditions, table, cache),
                }
            }
            acc
        }
    }
}
