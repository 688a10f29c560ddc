//! Query matching: whether one machine's inventory satisfies a query.
//!
//! Queries are compiled once into a [`Matcher`] (literals lower-cased,
//! addresses and timestamps parsed, `like` patterns classified), so testing
//! a machine allocates nothing.
//!
//! # Semantics
//!
//! - A missing fact (a property the machine has not reported, or a
//!   multi-valued property with no values) makes every test of it false
//!   except `is null`, which is true. This includes the negated tests: `!=`,
//!   `not like`, `not in (...)` and `not in subnet` are false on a missing
//!   fact, as in SQL. `not (...)` is plain boolean negation of its operand,
//!   so `not (os.name = 'x')` is true when `os.name` is missing.
//! - Multi-valued properties (`installed.product`, `ip.address`,
//!   `ip.subnet`): a positive test (`=`, `<`, `like`, `in`, `in subnet`, ...)
//!   is true if any value satisfies it; a negated test (`!=`, `not like`,
//!   `not in`, `not in subnet`) is true if the machine has at least one
//!   value and no value satisfies the positive form. So
//!   `installed.product != 'Office 2003'` means "has products, none of them
//!   Office 2003". `is null` is true when there are no values.
//! - Text `=`, `!=` and `in` ignore ASCII case, as WQL does; `like` ignores
//!   case as [`LikePattern::matches`] does. Versions compare with
//!   [`compare_versions`], numbers as `f64`, addresses as [`Ipv4Addr`],
//!   times as instants.
//! - `properties.<key>` facts are text; the key is compared without ASCII
//!   case, like every property name. (Should a machine report two keys that
//!   differ only in case, the property has both values, as a multi-valued
//!   property would.)
//! - A test that the type checker would refuse (only possible in a
//!   hand-built tree, e.g. `like` on a number) is false; so is a
//!   timestamp literal that the checker accepts but that does not name an
//!   instant jiff can represent.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::net::Ipv4Addr;

use jiff::Timestamp;

use crate::inventory::property::{free_form_key, Fact};
use crate::inventory::Machine;
use crate::query::{
    compare_versions, CompareOp, Condition, Expr, Ipv4Net, LikePattern, Literal, PropertyKind,
    Query, Test,
};

/// Whether `machine` satisfies `expr`. Compiles the expression on every
/// call; to test many machines, build a [`Matcher`] once.
pub fn matches(expr: &Expr, machine: &Machine) -> bool {
    Matcher::from_expr(expr).matches(machine)
}

/// A compiled query, ready to test machines.
#[derive(Debug, Clone)]
pub struct Matcher {
    expr: CompiledExpr,
    conditions: Conditions,
}

impl Matcher {
    pub fn new(query: &Query) -> Matcher {
        Matcher::from_expr(&query.expr)
    }

    pub fn from_expr(expr: &Expr) -> Matcher {
        let mut conditions = Conditions::default();
        let expr = CompiledExpr::compile(expr, &mut conditions);
        Matcher { expr, conditions }
    }

    /// Whether `machine` satisfies the query.
    pub fn matches(&self, machine: &Machine) -> bool {
        self.expr
            .eval(&mut |i| self.conditions.list[i].matches(machine))
    }
}

/// The distinct conditions of one or more queries, by canonical text, so a
/// condition shared by many collections is computed once.
#[derive(Debug, Clone, Default)]
pub(crate) struct Conditions {
    pub(crate) list: Vec<CompiledCondition>,
    by_text: HashMap<String, usize>,
}

impl Conditions {
    fn intern(&mut self, condition: &Condition) -> usize {
        let text = condition.to_string();
        if let Some(&i) = self.by_text.get(&text) {
            return i;
        }
        let i = self.list.len();
        self.list.push(CompiledCondition::compile(condition));
        self.by_text.insert(text, i);
        i
    }
}

/// A boolean combination of interned conditions.
#[derive(Debug, Clone)]
pub(crate) enum CompiledExpr {
    Or(Vec<CompiledExpr>),
    And(Vec<CompiledExpr>),
    Not(Box<CompiledExpr>),
    Condition(usize),
}

impl CompiledExpr {
    pub(crate) fn compile(expr: &Expr, conditions: &mut Conditions) -> CompiledExpr {
        match expr {
            Expr::Or(operands) => CompiledExpr::Or(
                operands
                    .iter()
                    .map(|e| CompiledExpr::compile(e, conditions))
                    .collect(),
            ),
            Expr::And(operands) => CompiledExpr::And(
                operands
                    .iter()
                    .map(|e| CompiledExpr::compile(e, conditions))
                    .collect(),
            ),
            Expr::Not(inner) => {
                CompiledExpr::Not(Box::new(CompiledExpr::compile(inner, conditions)))
            }
            Expr::Condition(condition) => CompiledExpr::Condition(conditions.intern(condition)),
        }
    }

    /// Evaluates with `condition(i)` giving the value of condition `i`.
    pub(crate) fn eval(&self, condition: &mut impl FnMut(usize) -> bool) -> bool {
        match self {
            CompiledExpr::Or(operands) => operands.iter().any(|e| e.eval(condition)),
            CompiledExpr::And(operands) => operands.iter().all(|e| e.eval(condition)),
            CompiledExpr::Not(inner) => !inner.eval(condition),
            CompiledExpr::Condition(i) => condition(*i),
        }
    }
}

/// Inventory properties, resolved from their canonical names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum PropId {
    Fact(Fact),
    /// `properties.<key>`, the key in ASCII lower case.
    Free(Box<str>),
    /// A name no machine has (only in hand-built trees): always missing.
    Unknown,
}

impl PropId {
    fn resolve(name: &str) -> PropId {
        if let Some(def) = Fact::lookup(name) {
            return PropId::Fact(def.fact);
        }
        match free_form_key(name) {
            Some(key) if !key.is_empty() => PropId::Free(key.to_ascii_lowercase().into()),
            _ => PropId::Unknown,
        }
    }

    /// Text properties other than versions are indexed by their ASCII
    /// lower-case value; versions keep their spelling (non-numeric version
    /// components compare with case).
    fn folds_case(&self) -> bool {
        !matches!(
            self,
            PropId::Fact(Fact::OsVersion)
                | PropId::Fact(Fact::OsServicePack)
                | PropId::Fact(Fact::MemoryMb)
                | PropId::Fact(Fact::DiskFreeMb)
                | PropId::Fact(Fact::Address)
                | PropId::Fact(Fact::Subnet)
                | PropId::Fact(Fact::LastHeartbeat)
        )
    }
}

/// One value of a property.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Val<'a> {
    /// Text and versions.
    Text(&'a str),
    Num(f64),
    Addr(Ipv4Addr),
    Time(Timestamp),
}

/// What a machine has for one property, tested against a predicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    /// No value.
    Null,
    /// Values, none satisfying the predicate.
    NoMatch,
    /// At least one value satisfies the predicate.
    Match,
}

fn text(s: &Option<String>) -> Option<Val<'_>> {
    s.as_deref().map(Val::Text)
}

fn one(value: Option<Val<'_>>, test: &mut impl FnMut(Val<'_>) -> bool) -> Presence {
    match value {
        None => Presence::Null,
        Some(v) if test(v) => Presence::Match,
        Some(_) => Presence::NoMatch,
    }
}

fn many<'a>(
    values: impl Iterator<Item = Val<'a>>,
    test: &mut impl FnMut(Val<'_>) -> bool,
) -> Presence {
    let mut seen = false;
    for v in values {
        if test(v) {
            return Presence::Match;
        }
        seen = true;
    }
    if seen {
        Presence::NoMatch
    } else {
        Presence::Null
    }
}

/// Tests the machine's values of `prop` with `test`, stopping at the first
/// that satisfies it.
pub(crate) fn presence(
    machine: &Machine,
    prop: &PropId,
    mut test: impl FnMut(Val<'_>) -> bool,
) -> Presence {
    let t = &mut test;
    match prop {
        PropId::Fact(Fact::Name) => one(Some(Val::Text(&machine.name)), t),
        PropId::Fact(Fact::Domain) => one(text(&machine.domain), t),
        PropId::Fact(Fact::OsName) => one(text(&machine.os.name), t),
        PropId::Fact(Fact::OsType) => one(text(&machine.os.os_type), t),
        PropId::Fact(Fact::OsVersion) => one(text(&machine.os.version), t),
        PropId::Fact(Fact::OsServicePack) => {
            one(machine.os.service_pack.map(|n| Val::Num(f64::from(n))), t)
        }
        PropId::Fact(Fact::Architecture) => one(text(&machine.architecture), t),
        PropId::Fact(Fact::Site) => one(text(&machine.site), t),
        PropId::Fact(Fact::Product) => {
            many(machine.installed.products.iter().map(|p| Val::Text(p)), t)
        }
        // u64 → f64 rounds above 2^53, which no memory or disk size reaches.
        PropId::Fact(Fact::MemoryMb) => {
            one(machine.hardware.memory_mb.map(|n| Val::Num(n as f64)), t)
        }
        PropId::Fact(Fact::DiskFreeMb) => {
            one(machine.hardware.disk_free_mb.map(|n| Val::Num(n as f64)), t)
        }
        PropId::Fact(Fact::Address) => many(machine.ip.addresses.iter().map(|a| Val::Addr(*a)), t),
        PropId::Fact(Fact::Subnet) => many(machine.ip.subnets.iter().map(|a| Val::Addr(*a)), t),
        PropId::Fact(Fact::LastHeartbeat) => one(machine.last_heartbeat.map(Val::Time), t),
        PropId::Free(key) => many(
            machine
                .properties
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| Val::Text(v)),
            t,
        ),
        PropId::Unknown => Presence::Null,
    }
}

/// A property value as an index key: text in ASCII lower case (except
/// versions), numbers by their bits, addresses as `u32`, times in
/// nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    Text(Box<str>),
    Num(u64),
    Addr(u32),
    Time(i128),
}

impl Key {
    fn of(prop: &PropId, value: Val<'_>) -> Key {
        match value {
            Val::Text(s) if prop.folds_case() => Key::Text(s.to_ascii_lowercase().into()),
            Val::Text(s) => Key::Text(s.into()),
            Val::Num(n) => Key::Num(n.to_bits()),
            Val::Addr(a) => Key::Addr(u32::from(a)),
            Val::Time(t) => Key::Time(t.as_nanosecond()),
        }
    }

    pub(crate) fn val(&self) -> Val<'_> {
        match self {
            Key::Text(s) => Val::Text(s),
            Key::Num(bits) => Val::Num(f64::from_bits(*bits)),
            Key::Addr(a) => Val::Addr(Ipv4Addr::from(*a)),
            Key::Time(ns) => {
                Val::Time(Timestamp::from_nanosecond(*ns).expect("keys are made from timestamps"))
            }
        }
    }
}

/// Every (property, value) of a machine, for the inventory index.
pub(crate) fn facts(machine: &Machine, mut each: impl FnMut(PropId, Key)) {
    const ALL: &[PropId] = &[
        PropId::Fact(Fact::Name),
        PropId::Fact(Fact::Domain),
        PropId::Fact(Fact::OsName),
        PropId::Fact(Fact::OsType),
        PropId::Fact(Fact::OsVersion),
        PropId::Fact(Fact::OsServicePack),
        PropId::Fact(Fact::Architecture),
        PropId::Fact(Fact::Site),
        PropId::Fact(Fact::Product),
        PropId::Fact(Fact::MemoryMb),
        PropId::Fact(Fact::DiskFreeMb),
        PropId::Fact(Fact::Address),
        PropId::Fact(Fact::Subnet),
        PropId::Fact(Fact::LastHeartbeat),
    ];
    for prop in ALL {
        let mut keys = Vec::new();
        presence(machine, prop, |v| {
            keys.push(Key::of(prop, v));
            false
        });
        for key in keys {
            each(prop.clone(), key);
        }
    }
    for (key, value) in &machine.properties {
        let prop = PropId::Free(key.to_ascii_lowercase().into());
        let key = Key::of(&prop, Val::Text(value));
        each(prop, key);
    }
}

/// One condition, compiled.
#[derive(Debug, Clone)]
pub(crate) struct CompiledCondition {
    pub(crate) prop: PropId,
    pub(crate) test: CompiledTest,
}

#[derive(Debug, Clone)]
pub(crate) enum CompiledTest {
    IsNull {
        negated: bool,
    },
    /// The positive form of the test; `negated` for `!=`, `not like`,
    /// `not in` and `not in subnet`.
    Pred {
        pred: Pred,
        negated: bool,
    },
}

impl CompiledCondition {
    fn compile(condition: &Condition) -> CompiledCondition {
        let prop = PropId::resolve(&condition.property.name);
        let kind = condition.property.kind;
        let test = match &condition.test {
            Test::IsNull { negated } => CompiledTest::IsNull { negated: *negated },
            Test::Compare { op, value } => {
                let (op, negated) = match op {
                    CompareOp::Ne => (CompareOp::Eq, true),
                    op => (*op, false),
                };
                CompiledTest::Pred {
                    pred: Pred::compare(kind, op, value),
                    negated,
                }
            }
            Test::In { values, negated } => CompiledTest::Pred {
                pred: Pred::one_of(kind, values),
                negated: *negated,
            },
            Test::Like { pattern, negated } => CompiledTest::Pred {
                pred: match kind {
                    PropertyKind::Text => Pred::Like(FastLike::compile(pattern)),
                    _ => Pred::Never,
                },
                negated: *negated,
            },
            Test::InSubnet { network, negated } => CompiledTest::Pred {
                pred: match kind {
                    PropertyKind::Address => Pred::Subnet(*network),
                    _ => Pred::Never,
                },
                negated: *negated,
            },
        };
        CompiledCondition { prop, test }
    }

    pub(crate) fn matches(&self, machine: &Machine) -> bool {
        match &self.test {
            CompiledTest::IsNull { negated } => {
                let has = presence(machine, &self.prop, |_| true) != Presence::Null;
                has == *negated
            }
            CompiledTest::Pred { pred, negated } => {
                match presence(machine, &self.prop, |v| pred.test(v)) {
                    Presence::Null => false,
                    Presence::Match => !negated,
                    Presence::NoMatch => *negated,
                }
            }
        }
    }
}

/// A positive test of one value.
#[derive(Debug, Clone)]
pub(crate) enum Pred {
    Never,
    /// ASCII lower-case literals.
    TextIn(Vec<Box<str>>),
    Like(FastLike),
    /// `op` is never `Ne`.
    VersionCmp(CompareOp, Box<str>),
    VersionIn(Vec<Box<str>>),
    NumCmp(CompareOp, f64),
    NumIn(Vec<f64>),
    AddrIn(Vec<Ipv4Addr>),
    Subnet(Ipv4Net),
    TimeCmp(CompareOp, Timestamp),
    TimeIn(Vec<Timestamp>),
}

fn text_literal(value: &Literal) -> Option<&str> {
    match value {
        Literal::String(s) => Some(s),
        Literal::Number(_) => None,
    }
}

fn timestamp(value: &Literal) -> Option<Timestamp> {
    text_literal(value)?.parse().ok()
}

impl Pred {
    fn compare(kind: PropertyKind, op: CompareOp, value: &Literal) -> Pred {
        let ordering = op.is_ordering();
        let pred = match (kind, value) {
            (PropertyKind::Text, Literal::String(s)) if !ordering => {
                Some(Pred::TextIn(vec![s.to_ascii_lowercase().into()]))
            }
            (PropertyKind::Version, Literal::String(s)) => {
                Some(Pred::VersionCmp(op, s.as_str().into()))
            }
            (PropertyKind::Number, Literal::Number(n)) => Some(Pred::NumCmp(op, *n)),
            (PropertyKind::Address, Literal::String(s)) if !ordering => {
                s.parse().ok().map(|a| Pred::AddrIn(vec![a]))
            }
            (PropertyKind::Time, value) => timestamp(value).map(|t| Pred::TimeCmp(op, t)),
            _ => None,
        };
        pred.unwrap_or(Pred::Never)
    }

    fn one_of(kind: PropertyKind, values: &[Literal]) -> Pred {
        match kind {
            PropertyKind::Text => Pred::TextIn(
                values
                    .iter()
                    .filter_map(text_literal)
                    .map(|s| s.to_ascii_lowercase().into())
                    .collect(),
            ),
            PropertyKind::Version => Pred::VersionIn(
                values
                    .iter()
                    .filter_map(text_literal)
                    .map(Into::into)
                    .collect(),
            ),
            PropertyKind::Number => Pred::NumIn(
                values
                    .iter()
                    .filter_map(|v| match v {
                        Literal::Number(n) => Some(*n),
                        Literal::String(_) => None,
                    })
                    .collect(),
            ),
            PropertyKind::Address => Pred::AddrIn(
                values
                    .iter()
                    .filter_map(text_literal)
                    .filter_map(|s| s.parse().ok())
                    .collect(),
            ),
            PropertyKind::Time => Pred::TimeIn(values.iter().filter_map(timestamp).collect()),
        }
    }

    /// Whether one value satisfies the test.
    pub(crate) fn test(&self, value: Val<'_>) -> bool {
        match (self, value) {
            (Pred::TextIn(literals), Val::Text(s)) => {
                literals.iter().any(|l| l.eq_ignore_ascii_case(s))
            }
            (Pred::Like(like), Val::Text(s)) => like.matches(s),
            (Pred::VersionCmp(op, literal), Val::Text(s)) => {
                holds(*op, compare_versions(s, literal))
            }
            (Pred::VersionIn(literals), Val::Text(s)) => literals
                .iter()
                .any(|l| compare_versions(s, l) == Ordering::Equal),
            (Pred::NumCmp(op, literal), Val::Num(n)) => {
                n.partial_cmp(literal).is_some_and(|o| holds(*op, o))
            }
            (Pred::NumIn(literals), Val::Num(n)) => literals.contains(&n),
            (Pred::AddrIn(literals), Val::Addr(a)) => literals.contains(&a),
            (Pred::Subnet(network), Val::Addr(a)) => network.contains(a),
            (Pred::TimeCmp(op, literal), Val::Time(t)) => holds(*op, t.cmp(literal)),
            (Pred::TimeIn(literals), Val::Time(t)) => literals.contains(&t),
            _ => false,
        }
    }

    /// Index keys that may satisfy the test when it can be answered by
    /// lookups instead of a scan of every distinct value.
    pub(crate) fn lookup_keys(&self, prop: &PropId) -> Option<Vec<Key>> {
        match self {
            Pred::TextIn(literals) if prop.folds_case() => {
                Some(literals.iter().map(|l| Key::Text(l.clone())).collect())
            }
            Pred::AddrIn(literals) => {
                Some(literals.iter().map(|a| Key::Addr(u32::from(*a))).collect())
            }
            Pred::Never => Some(Vec::new()),
            _ => None,
        }
    }
}

fn holds(op: CompareOp, ordering: Ordering) -> bool {
    match op {
        CompareOp::Eq => ordering == Ordering::Equal,
        CompareOp::Ne => ordering != Ordering::Equal,
        CompareOp::Lt => ordering == Ordering::Less,
        CompareOp::Le => ordering != Ordering::Greater,
        CompareOp::Gt => ordering == Ordering::Greater,
        CompareOp::Ge => ordering != Ordering::Less,
    }
}

/// A `like` pattern with a fast path for the common shapes (`abc`, `abc%`,
/// `%abc`, `%abc%` with ASCII literal text) tested on ASCII text; anything
/// else goes to [`LikePattern::matches`].
#[derive(Debug, Clone)]
pub(crate) struct FastLike {
    shape: Shape,
    pattern: LikePattern,
}

#[derive(Debug, Clone)]
enum Shape {
    Exact(Box<str>),
    Prefix(Box<str>),
    Suffix(Box<str>),
    Contains(Box<str>),
    General,
}

impl FastLike {
    fn compile(pattern: &LikePattern) -> FastLike {
        let source = pattern.source();
        let (leading, rest) = match source.strip_prefix('%') {
            Some(rest) => (true, rest),
            None => (false, source),
        };
        let (trailing, core) = match rest.strip_suffix('%') {
            Some(core) => (true, core),
            None => (false, rest),
        };
        let plain = core.is_ascii() && !core.contains(['%', '_', '[']);
        let core: Box<str> = core.into();
        let shape = match (plain, leading, trailing) {
            (false, _, _) => Shape::General,
            (true, false, false) => Shape::Exact(core),
            (true, false, true) => Shape::Prefix(core),
            (true, true, false) => Shape::Suffix(core),
            (true, true, true) => Shape::Contains(core),
        };
        FastLike {
            shape,
            pattern: pattern.clone(),
        }
    }

    fn matches(&self, text: &str) -> bool {
        if !text.is_ascii() {
            return self.pattern.matches(text);
        }
        let t = text.as_bytes();
        match &self.shape {
            Shape::Exact(core) => t.eq_ignore_ascii_case(core.as_bytes()),
            Shape::Prefix(core) => t
                .get(..core.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(core.as_bytes())),
            Shape::Suffix(core) => t
                .len()
                .checked_sub(core.len())
                .is_some_and(|at| t[at..].eq_ignore_ascii_case(core.as_bytes())),
            Shape::Contains(core) => {
                core.is_empty()
                    || t.windows(core.len())
                        .any(|w| w.eq_ignore_ascii_case(core.as_bytes()))
            }
            Shape::General => self.pattern.matches(text),
        }
    }
}
