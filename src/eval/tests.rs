//! Unit tests of the matching rules, and oracle tests comparing the
//! evaluator (full and incremental) with a deliberately naive reference.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::*;
use crate::inventory::{machine_key, Machine};
use crate::manifest::collection::MembershipRule;
use crate::manifest::common::{DurationText, Interval, QueryText};
use crate::manifest::CollectionSpec;
use crate::model::BUILTIN_COLLECTIONS;
use crate::query::{
    self, compare_versions, CompareOp, Condition, Expr, Literal, PropertyKind, Test,
};

// ---------------------------------------------------------------------------
// Matching rules

fn xp() -> Machine {
    let mut m = Machine::named("WS-001");
    m.domain = Some("CORP".into());
    m.os.name = Some("Microsoft Windows XP Professional".into());
    m.os.os_type = Some("workstation".into());
    m.os.version = Some("5.1.2600".into());
    m.os.service_pack = Some(2);
    m.architecture = Some("x86".into());
    m.site = Some("LAB".into());
    m.installed.products = vec!["Office 2003".into(), "Visio 2003".into()];
    m.hardware.memory_mb = Some(512);
    m.ip.addresses = vec![Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::new(192, 168, 0, 7)];
    m.ip.subnets = vec![Ipv4Addr::new(10, 1, 2, 0)];
    m.last_heartbeat = Some("2026-11-24T02:00:00Z".parse().unwrap());
    m.properties.insert("owner".into(), "Alice".into());
    m
}

fn check(query: &str, machine: &Machine) -> bool {
    let q = query::parse(query).unwrap_or_else(|e| panic!("{query}: {}", e.message));
    let fast = matches(&q.expr, machine);
    assert_eq!(
        fast,
        reference_expr(&q.expr, machine),
        "{query} (reference)"
    );
    fast
}

#[test]
fn missing_facts_fail_every_test_but_is_null() {
    let bare = Machine::named("bare");
    for query in [
        "os.name = 'x'",
        "os.name != 'x'",
        "os.name like '%'",
        "os.name not like 'x'",
        "os.name in ('x')",
        "os.name not in ('x')",
        "os.version < '9'",
        "os.version != '1'",
        "hardware.memoryMB != 1",
        "ip.address not in subnet '10.0.0.0/8'",
        "ip.address != '1.2.3.4'",
        "installed.product != 'x'",
        "lastHeartbeat != '2026-11-24T02:00:00Z'",
        "properties.owner != 'x'",
        "os.name is not null",
    ] {
        assert!(!check(query, &bare), "{query}");
    }
    for query in [
        "os.name is null",
        "installed.product is null",
        "ip.address is null",
        "properties.owner is null",
        "not (os.name = 'x')",
        "not os.name != 'x'",
    ] {
        assert!(check(query, &bare), "{query}");
    }
}

#[test]
fn multi_valued_properties() {
    let m = xp();
    // Positive tests: any value.
    assert!(check("installed.product = 'visio 2003'", &m));
    assert!(check("installed.product like 'Office%'", &m));
    assert!(check("installed.product in ('x', 'Office 2003')", &m));
    assert!(check("ip.address in subnet '192.168.0.0/16'", &m));
    assert!(check("ip.address = '10.1.2.3'", &m));
    // Negated tests: no value matches the positive form.
    assert!(!check("installed.product != 'Office 2003'", &m));
    assert!(check("installed.product != 'Word'", &m));
    assert!(!check("installed.product not like '%2003'", &m));
    assert!(check("installed.product not like 'Word%'", &m));
    assert!(!check("installed.product not in ('Visio 2003')", &m));
    assert!(!check("ip.address not in subnet '10.0.0.0/8'", &m));
    assert!(check("ip.address not in subnet '172.16.0.0/12'", &m));
    assert!(check("ip.subnet not in subnet '192.168.0.0/16'", &m));
    assert!(!check("installed.product is null", &m));
    assert!(check("installed.product is not null", &m));
}

#[test]
fn versions_compare_numerically() {
    let m = xp();
    assert!(compare_versions("5.1.2600", "5.1.999").is_gt());
    assert!(check("os.version > '5.1.999'", &m));
    assert!(check("os.version >= '5.1.2600'", &m));
    assert!(!check("os.version < '5.1.999'", &m));
    assert!(check("os.version < '5.2'", &m));
    assert!(check("os.version = '5.1.2600.0'", &m));
    assert!(check("os.version in ('5.0', '5.01.2600')", &m));
    assert!(!check("os.version != '5.1.2600'", &m));
}

#[test]
fn numbers_addresses_and_times() {
    let m = xp();
    assert!(check("os.servicePack = 2", &m));
    assert!(check("os.servicePack >= 1.5", &m));
    assert!(!check("os.servicePack in (1, 3)", &m));
    assert!(check(
        "hardware.memoryMB > 256 and hardware.memoryMB <= 512",
        &m
    ));
    assert!(!check("hardware.diskFreeMB < 100000", &m));
    assert!(check("ip.subnet = '10.1.2.0'", &m));
    assert!(check("ip.subnet in subnet '10.1.0.0/16'", &m));
    assert!(!check("ip.subnet in subnet '10.2.0.0/16'", &m));
    assert!(check("lastHeartbeat >= '2026-11-24T03:00:00+01:00'", &m));
    assert!(check("lastHeartbeat = '2026-11-24T03:00:00+01:00'", &m));
    assert!(check("lastHeartbeat < '2026-11-24T02:00:00.5Z'", &m));
    assert!(!check("lastHeartbeat > '2026-11-24T02:00:00Z'", &m));
}

#[test]
fn text_ignores_case_and_like_follows_wql() {
    let m = xp();
    assert!(check("os.type = 'WORKSTATION'", &m));
    assert!(check("site = 'lab'", &m));
    assert!(check("site in ('x', 'Lab')", &m));
    assert!(check("name = 'ws-001'", &m));
    assert!(check("domain != 'lab'", &m));
    assert!(check("os.name like 'microsoft windows%'", &m));
    assert!(check("os.name like '%XP%'", &m));
    assert!(check("os.name like '%professional'", &m));
    assert!(check("os.name like 'Microsoft Windows _P%'", &m));
    assert!(check("os.name like '%[wx]P Pro%'", &m));
    assert!(!check("os.name like 'Windows%'", &m));
    assert!(check("os.name not like '%Server%'", &m));
    assert!(check("properties.OWNER = 'alice'", &m));
    assert!(check("properties.owner like 'a%'", &m));
    assert!(!check("properties.team = 'x'", &m));
    let mut odd = Machine::named("Kelvin");
    odd.os.name = Some("Ünïcode ÄB".into());
    assert!(check("os.name like 'ü%'", &odd));
    assert!(check("os.name like '%äb'", &odd));
    assert!(!check("os.name = 'ünïcode äb'", &odd));
}

#[test]
fn boolean_structure() {
    let m = xp();
    assert!(check(
        "os.name like 'Microsoft Windows%' and os.version >= '5.1.2600' and not (os.type = 'domainController' or ip.address in subnet '10.9.0.0/16')",
        &m
    ));
    assert!(check("os.type = 'server' or site = 'LAB'", &m));
    assert!(!check("os.type = 'server' and site = 'LAB'", &m));
    assert!(!check("not site = 'LAB'", &m));
}

#[test]
fn hand_built_ill_typed_tests_are_false() {
    let m = xp();
    let condition = |name: &str, kind, test| {
        Expr::Condition(Condition {
            property: query::Property {
                name: name.into(),
                kind,
                multi_valued: false,
            },
            test,
        })
    };
    let less = Test::Compare {
        op: CompareOp::Lt,
        value: Literal::String("z".into()),
    };
    assert!(!matches(
        &condition("site", PropertyKind::Text, less.clone()),
        &m
    ));
    assert!(!matches(
        &condition(
            "no.such",
            PropertyKind::Text,
            Test::IsNull { negated: true }
        ),
        &m
    ));
    assert!(matches(
        &condition(
            "no.such",
            PropertyKind::Text,
            Test::IsNull { negated: false }
        ),
        &m
    ));
    assert!(matches(&Expr::And(vec![]), &m));
    assert!(!matches(&Expr::Or(vec![]), &m));
}

// ---------------------------------------------------------------------------
// The naive reference

#[derive(Debug, Clone)]
enum RefVal {
    Text(String),
    Num(f64),
    Addr(Ipv4Addr),
    Time(jiff::Timestamp),
}

fn reference_values(m: &Machine, property: &str) -> Vec<RefVal> {
    let text = |s: &Option<String>| s.iter().map(|s| RefVal::Text(s.clone())).collect();
    match property.to_ascii_lowercase().as_str() {
        "name" => vec![RefVal::Text(m.name.clone())],
        "domain" => text(&m.domain),
        "os.name" => text(&m.os.name),
        "os.type" => text(&m.os.os_type),
        "os.version" => text(&m.os.version),
        "os.servicepack" => {
            m.os.service_pack
                .iter()
                .map(|n| RefVal::Num(f64::from(*n)))
                .collect()
        }
        "architecture" => text(&m.architecture),
        "site" => text(&m.site),
        "installed.product" => m
            .installed
            .products
            .iter()
            .map(|p| RefVal::Text(p.clone()))
            .collect(),
        "hardware.memorymb" => m
            .hardware
            .memory_mb
            .iter()
            .map(|n| RefVal::Num(*n as f64))
            .collect(),
        "hardware.diskfreemb" => m
            .hardware
            .disk_free_mb
            .iter()
            .map(|n| RefVal::Num(*n as f64))
            .collect(),
        "ip.address" => m.ip.addresses.iter().map(|a| RefVal::Addr(*a)).collect(),
        "ip.subnet" => m.ip.subnets.iter().map(|a| RefVal::Addr(*a)).collect(),
        "lastheartbeat" => m.last_heartbeat.iter().map(|t| RefVal::Time(*t)).collect(),
        other => match other.strip_prefix("properties.") {
            Some(key) => m
                .properties
                .iter()
                .filter(|(k, _)| k.to_ascii_lowercase() == key)
                .map(|(_, v)| RefVal::Text(v.clone()))
                .collect(),
            None => Vec::new(),
        },
    }
}

fn literal_equals(kind: PropertyKind, value: &RefVal, literal: &Literal) -> bool {
    compare_literal(kind, value, literal) == Some(std::cmp::Ordering::Equal)
}

fn compare_literal(
    kind: PropertyKind,
    value: &RefVal,
    literal: &Literal,
) -> Option<std::cmp::Ordering> {
    match (kind, value, literal) {
        (PropertyKind::Text, RefVal::Text(v), Literal::String(l)) => {
            Some(v.to_ascii_lowercase().cmp(&l.to_ascii_lowercase()))
        }
        (PropertyKind::Version, RefVal::Text(v), Literal::String(l)) => {
            Some(compare_versions(v, l))
        }
        (PropertyKind::Number, RefVal::Num(v), Literal::Number(l)) => v.partial_cmp(l),
        (PropertyKind::Address, RefVal::Addr(v), Literal::String(l)) => {
            let l: Ipv4Addr = l.parse().ok()?;
            Some(v.cmp(&l))
        }
        (PropertyKind::Time, RefVal::Time(v), Literal::String(l)) => {
            let l: jiff::Timestamp = l.parse().ok()?;
            Some(v.cmp(&l))
        }
        _ => None,
    }
}

type ValueTest = Box<dyn Fn(&RefVal) -> bool>;

fn reference_condition(c: &Condition, m: &Machine) -> bool {
    let values = reference_values(m, &c.property.name);
    let kind = c.property.kind;
    if let Test::IsNull { negated } = c.test {
        return values.is_empty() != negated;
    }
    if values.is_empty() {
        return false;
    }
    let (negated, positive): (bool, ValueTest) = match &c.test {
        Test::IsNull { .. } => unreachable!(),
        Test::Compare { op, value } => {
            if kind == PropertyKind::Text && op.is_ordering() {
                return false;
            }
            let op = *op;
            let value = value.clone();
            let wanted = move |o: std::cmp::Ordering| match op {
                CompareOp::Eq | CompareOp::Ne => o.is_eq(),
                CompareOp::Lt => o.is_lt(),
                CompareOp::Le => o.is_le(),
                CompareOp::Gt => o.is_gt(),
                CompareOp::Ge => o.is_ge(),
            };
            (
                op == CompareOp::Ne,
                Box::new(move |v| compare_literal(kind, v, &value).is_some_and(wanted)),
            )
        }
        Test::In {
            values: list,
            negated,
        } => {
            let list = list.clone();
            (
                *negated,
                Box::new(move |v| list.iter().any(|l| literal_equals(kind, v, l))),
            )
        }
        Test::Like { pattern, negated } => {
            let pattern = pattern.clone();
            (
                *negated,
                Box::new(move |v| matches!(v, RefVal::Text(t) if pattern.matches(t))),
            )
        }
        Test::InSubnet { network, negated } => {
            let network = *network;
            (
                *negated,
                Box::new(move |v| matches!(v, RefVal::Addr(a) if network.contains(*a))),
            )
        }
    };
    let any = values.iter().any(positive);
    if negated {
        !any
    } else {
        any
    }
}

fn reference_expr(e: &Expr, m: &Machine) -> bool {
    match e {
        Expr::Or(list) => list.iter().any(|e| reference_expr(e, m)),
        Expr::And(list) => list.iter().all(|e| reference_expr(e, m)),
        Expr::Not(inner) => !reference_expr(inner, m),
        Expr::Condition(c) => reference_condition(c, m),
    }
}

/// Members by machine key, per collection, and own members.
struct Reference {
    members: BTreeMap<String, BTreeSet<String>>,
    own: BTreeMap<String, BTreeSet<String>>,
}

fn reference_evaluate(machines: &[Machine], collections: &[(String, CollectionSpec)]) -> Reference {
    let mut specs: BTreeMap<String, CollectionSpec> = collections.iter().cloned().collect();
    for builtin in BUILTIN_COLLECTIONS {
        let membership = match builtin.query {
            Some(q) => vec![MembershipRule::Query(QueryText(q.into()))],
            None => vec![MembershipRule::Query(QueryText("name is not null".into()))],
        };
        specs.insert(builtin.name.into(), spec(None, membership));
    }
    fn eval(
        name: &str,
        specs: &BTreeMap<String, CollectionSpec>,
        machines: &[Machine],
        with_includes: bool,
        memo: &mut BTreeMap<String, BTreeSet<String>>,
    ) -> BTreeSet<String> {
        if with_includes {
            if let Some(done) = memo.get(name) {
                return done.clone();
            }
        }
        let spec = &specs[name];
        let mut set = BTreeSet::new();
        let mut excluded = BTreeSet::new();
        for rule in &spec.membership {
            match rule {
                MembershipRule::Query(text) => {
                    let q = query::parse(text.as_str()).unwrap();
                    for m in machines {
                        if reference_expr(&q.expr, m) {
                            set.insert(m.key());
                        }
                    }
                }
                MembershipRule::Direct(names) => {
                    for n in names {
                        if machines.iter().any(|m| m.key() == machine_key(n)) {
                            set.insert(machine_key(n));
                        }
                    }
                }
                MembershipRule::Include(names) if with_includes => {
                    for n in names {
                        set.extend(eval(n, specs, machines, true, memo));
                    }
                }
                MembershipRule::Include(_) => {}
                MembershipRule::Exclude(names) => {
                    for n in names {
                        excluded.extend(eval(n, specs, machines, true, memo));
                    }
                }
            }
        }
        let limit = match &spec.limiting_collection {
            Some(l) => eval(l, specs, machines, true, memo),
            None => machines.iter().map(Machine::key).collect(),
        };
        let result: BTreeSet<String> = set
            .difference(&excluded)
            .filter(|k| limit.contains(*k))
            .cloned()
            .collect();
        if with_includes {
            memo.insert(name.to_owned(), result.clone());
        }
        result
    }
    let mut memo = BTreeMap::new();
    let mut own = BTreeMap::new();
    for name in specs.keys() {
        eval(name, &specs, machines, true, &mut memo);
        own.insert(name.clone(), eval(name, &specs, machines, false, &mut memo));
    }
    Reference { members: memo, own }
}

fn spec(limiting: Option<String>, membership: Vec<MembershipRule>) -> CollectionSpec {
    CollectionSpec {
        comment: String::new(),
        limiting_collection: limiting,
        membership,
        evaluation: None,
        purpose: Default::default(),
    }
}

fn names(table: &MachineTable, bitmap: &roaring::RoaringBitmap) -> BTreeSet<String> {
    bitmap
        .iter()
        .map(|id| table.get(id).expect("member in table").key())
        .collect()
}

fn assert_matches_reference(
    evaluator: &Evaluator,
    table: &MachineTable,
    collections: &[(String, CollectionSpec)],
) {
    let machines: Vec<Machine> = table
        .ids()
        .iter()
        .map(|id| table.get(id).unwrap().clone())
        .collect();
    let reference = reference_evaluate(&machines, collections);
    for (name, expected) in &reference.members {
        let got = evaluator.members(name).expect("collection exists");
        assert_eq!(&names(table, got), expected, "members of {name}");
        let own = evaluator.own_members(name).unwrap();
        assert_eq!(
            &names(table, own),
            &reference.own[name],
            "own members of {name}"
        );
    }
    assert_eq!(
        evaluator.collection_names().count(),
        reference.members.len()
    );
    for id in table.ids() {
        let key = table.get(id).unwrap().key();
        let expected: Vec<&str> = reference
            .members
            .iter()
            .filter(|(_, set)| set.contains(&key))
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(
            evaluator.collections_of(id),
            expected,
            "collections of {key}"
        );
    }
}

fn evaluated(table: &MachineTable, collections: &[(String, CollectionSpec)]) -> Evaluator {
    let mut evaluator = Evaluator::new(collections.iter().map(|(n, s)| (n.as_str(), s))).unwrap();
    evaluator.evaluate_all(table);
    evaluator
}

fn assert_same_members(a: &Evaluator, b: &Evaluator) {
    let names_a: Vec<&str> = a.collection_names().collect();
    let names_b: Vec<&str> = b.collection_names().collect();
    assert_eq!(names_a, names_b);
    for name in names_a {
        assert_eq!(a.members(name), b.members(name), "members of {name}");
        assert_eq!(
            a.own_members(name),
            b.own_members(name),
            "own members of {name}"
        );
    }
}

// ---------------------------------------------------------------------------
// Random inventories and collection graphs

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn maybe<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        if self.chance(20) {
            None
        } else {
            Some(self.pick(items).clone())
        }
    }
}

fn random_machine(rng: &mut Rng, index: usize) -> Machine {
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let name = if rng.chance(50) {
        format!("M{index}")
    } else {
        format!("m{index}")
    };
    let mut m = Machine::named(name);
    m.domain = rng.maybe(&s(&["CORP", "corp", "LAB"]));
    m.os.name = rng.maybe(&s(&[
        "Microsoft Windows XP Professional",
        "Microsoft Windows 2000 Professional",
        "Microsoft Windows Server 2003, Enterprise Edition",
        "MICROSOFT WINDOWS XP PROFESSIONAL",
    ]));
    m.os.os_type = rng.maybe(&s(&[
        "workstation",
        "server",
        "domainController",
        "Workstation",
    ]));
    m.os.version = rng.maybe(&s(&[
        "5.0.2195",
        "5.1.2600",
        "5.2.3790",
        "5.1",
        "5.1.999",
        "5.01.2600",
    ]));
    m.os.service_pack = rng.maybe(&[0, 1, 2, 3, 4]);
    m.architecture = rng.maybe(&s(&["x86", "x64", "X86"]));
    m.site = rng.maybe(&s(&["LAB", "lab", "HQ"]));
    let products = s(&[
        "Office 2003",
        "office 2003",
        "Visio 2003",
        "SQL Server 2000",
    ]);
    for _ in 0..rng.below(3) {
        m.installed.products.push(rng.pick(&products).clone());
    }
    m.hardware.memory_mb = rng.maybe(&[256, 512, 1024, 2048]);
    m.hardware.disk_free_mb = rng.maybe(&[100, 1024, 50_000]);
    for _ in 0..rng.below(3) {
        let a = Ipv4Addr::new(
            10,
            rng.below(2) as u8,
            rng.below(2) as u8,
            1 + rng.below(2) as u8,
        );
        m.ip.addresses.push(a);
    }
    for _ in 0..rng.below(3) {
        m.ip.subnets
            .push(Ipv4Addr::new(10, rng.below(2) as u8, rng.below(2) as u8, 0));
    }
    m.last_heartbeat = rng
        .maybe(&[
            "2026-11-20T00:00:00Z",
            "2026-11-21T10:00:00Z",
            "2026-11-24T02:00:00Z",
        ])
        .map(|t| t.parse().unwrap());
    if rng.chance(60) {
        m.properties.insert(
            rng.pick(&["owner", "Owner"]).to_string(),
            rng.pick(&["alice", "Bob", "ALICE"]).to_string(),
        );
    }
    if rng.chance(40) {
        m.properties.insert(
            "dept".into(),
            rng.pick(&["eng", "Ops", "sales"]).to_string(),
        );
    }
    m
}

const CONDITIONS: &[&str] = &[
    "os.type = 'workstation'",
    "os.type != 'server'",
    "os.type in ('server', 'domainController')",
    "os.type not in ('workstation')",
    "os.type is null",
    "os.type is not null",
    "os.name like 'Microsoft Windows%'",
    "os.name like '%XP%'",
    "os.name not like '%Server%'",
    "os.name like 'microsoft windows 2000 professional'",
    "os.name like '%200_ %'",
    "os.name like '%[x]p%'",
    "os.name = 'microsoft windows xp professional'",
    "os.version >= '5.1'",
    "os.version < '5.1.2600'",
    "os.version = '5.1.0'",
    "os.version != '5.1'",
    "os.version in ('5.0.2195', '5.2.3790')",
    "os.version is null",
    "os.servicePack >= 2",
    "os.servicePack = 0",
    "os.servicePack != 1",
    "os.servicePack in (1, 3)",
    "architecture = 'x86'",
    "site = 'lab'",
    "site not in ('HQ')",
    "domain like 'C%'",
    "installed.product = 'office 2003'",
    "installed.product != 'Visio 2003'",
    "installed.product like '%server%'",
    "installed.product not in ('Visio 2003', 'Office 2003')",
    "installed.product is null",
    "hardware.memoryMB > 300",
    "hardware.diskFreeMB <= 1024",
    "hardware.diskFreeMB is null",
    "ip.address in subnet '10.0.0.0/16'",
    "ip.address not in subnet '10.1.0.0/16'",
    "ip.address = '10.0.1.2'",
    "ip.address != '10.0.0.1'",
    "ip.subnet in ('10.0.0.0', '10.1.1.0')",
    "ip.subnet != '10.0.0.0'",
    "ip.address is not null",
    "lastHeartbeat >= '2026-11-21T10:00:00Z'",
    "lastHeartbeat < '2026-11-21T12:00:00+02:00'",
    "lastHeartbeat != '2026-11-20T00:00:00Z'",
    "properties.owner = 'ALICE'",
    "properties.Owner != 'bob'",
    "properties.dept like 'e%'",
    "properties.dept is null",
    "name like 'm1%'",
    "name = 'M3'",
    "name in ('m2', 'M5', 'm7')",
];

fn random_query(rng: &mut Rng, depth: usize) -> String {
    if depth == 0 || rng.chance(40) {
        return rng.pick(CONDITIONS).to_string();
    }
    match rng.below(3) {
        0 => format!("not ({})", random_query(rng, depth - 1)),
        1 => format!(
            "({}) and ({})",
            random_query(rng, depth - 1),
            random_query(rng, depth - 1)
        ),
        _ => format!(
            "({}) or ({})",
            random_query(rng, depth - 1),
            random_query(rng, depth - 1)
        ),
    }
}

fn random_collection(rng: &mut Rng, earlier: &[String], machines: usize) -> CollectionSpec {
    let reference = |rng: &mut Rng| -> String {
        if earlier.is_empty() || rng.chance(25) {
            rng.pick(BUILTIN_COLLECTIONS).name.to_owned()
        } else {
            rng.pick(earlier).clone()
        }
    };
    let limiting = rng.chance(30).then(|| reference(rng));
    let mut membership = Vec::new();
    for _ in 0..rng.below(4) {
        let rule = match rng.below(5) {
            0 | 1 => MembershipRule::Query(QueryText(random_query(rng, 3))),
            2 => MembershipRule::Direct(
                (0..1 + rng.below(3))
                    .map(|_| {
                        // Some names are absent from the inventory.
                        let i = rng.below(machines + 3);
                        if rng.chance(50) {
                            format!("m{i}")
                        } else {
                            format!("M{i}")
                        }
                    })
                    .collect(),
            ),
            3 => MembershipRule::Include((0..1 + rng.below(2)).map(|_| reference(rng)).collect()),
            _ => MembershipRule::Exclude((0..1 + rng.below(2)).map(|_| reference(rng)).collect()),
        };
        membership.push(rule);
    }
    spec(limiting, membership)
}

fn random_collections(rng: &mut Rng, n: usize, machines: usize) -> Vec<(String, CollectionSpec)> {
    let mut names = Vec::new();
    let mut out = Vec::new();
    for i in 0..n {
        let spec = random_collection(rng, &names, machines);
        let name = format!("C{i}");
        names.push(name.clone());
        out.push((name, spec));
    }
    out
}

fn random_table(rng: &mut Rng, n: usize) -> MachineTable {
    let mut table = MachineTable::new();
    for i in 0..n {
        table.insert_or_update(random_machine(rng, i));
    }
    table
}

// ---------------------------------------------------------------------------
// Oracle tests

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn full_evaluation_matches_the_reference(seed in any::<u64>(), machines in 0usize..40, collections in 0usize..12) {
        let mut rng = Rng(seed);
        let table = random_table(&mut rng, machines);
        let specs = random_collections(&mut rng, collections, machines);
        let evaluator = evaluated(&table, &specs);
        assert_matches_reference(&evaluator, &table, &specs);
    }

    #[test]
    fn machine_changes_match_a_fresh_evaluation(seed in any::<u64>(), machines in 1usize..30, collections in 1usize..10, steps in 1usize..25) {
        let mut rng = Rng(seed);
        let mut table = random_table(&mut rng, machines);
        let specs = random_collections(&mut rng, collections, machines);
        let mut evaluator = evaluated(&table, &specs);
        let mut next = machines;
        for _ in 0..steps {
            let before = evaluator.clone();
            let (id, deltas) = match rng.below(4) {
                0 => {
                    // A new machine.
                    let (id, _) = table.insert_or_update(random_machine(&mut rng, next));
                    next += 1;
                    (id, evaluator.machine_changed(&table, id))
                }
                1 => {
                    let i = rng.below(next);
                    match table.remove(&format!("m{i}")) {
                        Some(id) => (id, evaluator.machine_removed(id)),
                        None => continue,
                    }
                }
                _ => {
                    // New facts for an existing (or re-added) machine.
                    let i = rng.below(next);
                    let (id, _) = table.insert_or_update(random_machine(&mut rng, i));
                    (id, evaluator.machine_changed(&table, id))
                }
            };
            // Deltas hold only this machine and explain the change exactly.
            for name in evaluator.collection_names() {
                let delta = deltas.iter().find(|d| d.collection == name);
                let mut expected = before.members(name).unwrap().clone();
                if let Some(d) = delta {
                    prop_assert!(d.added.iter().chain(d.removed.iter()).all(|x| x == id));
                    expected |= &d.added;
                    expected -= &d.removed;
                }
                prop_assert_eq!(&expected, evaluator.members(name).unwrap(), "{}", name);
            }
        }
        let fresh = evaluated(&table, &specs);
        assert_same_members(&evaluator, &fresh);
        assert_matches_reference(&evaluator, &table, &specs);
    }

    #[test]
    fn set_collections_matches_a_fresh_evaluation(seed in any::<u64>(), machines in 0usize..30, collections in 1usize..12) {
        let mut rng = Rng(seed);
        let table = random_table(&mut rng, machines);
        let specs = random_collections(&mut rng, collections, machines);
        let mut evaluator = evaluated(&table, &specs);
        // Change a few specs (references stay to earlier collections), drop
        // the last ones, add new ones.
        let mut changed: Vec<(String, CollectionSpec)> = Vec::new();
        let keep = collections - rng.below(3).min(collections);
        for (name, spec) in specs.iter().take(keep) {
            let earlier: Vec<String> = changed.iter().map(|(n, _)| n.clone()).collect();
            let spec = if rng.chance(30) {
                random_collection(&mut rng, &earlier, machines)
            } else {
                spec.clone()
            };
            changed.push((name.clone(), spec));
        }
        for i in 0..rng.below(3) {
            let earlier: Vec<String> = changed.iter().map(|(n, _)| n.clone()).collect();
            changed.push((format!("New{i}"), random_collection(&mut rng, &earlier, machines)));
        }
        let before = evaluator.clone();
        let deltas = evaluator
            .set_collections(changed.iter().map(|(n, s)| (n.as_str(), s)), &table)
            .unwrap();
        let fresh = evaluated(&table, &changed);
        assert_same_members(&evaluator, &fresh);
        assert_matches_reference(&evaluator, &table, &changed);
        // The deltas explain every change.
        let mut all_names: BTreeSet<&str> = before.collection_names().collect();
        all_names.extend(evaluator.collection_names());
        let empty = roaring::RoaringBitmap::new();
        for name in all_names {
            let old = before.members(name).unwrap_or(&empty);
            let new = evaluator.members(name).unwrap_or(&empty);
            let delta = deltas.iter().find(|d| d.collection == name);
            let (added, removed) = delta.map_or((empty.clone(), empty.clone()), |d| (d.added.clone(), d.removed.clone()));
            prop_assert_eq!(&added, &(new - old), "added to {}", name);
            prop_assert_eq!(&removed, &(old - new), "removed from {}", name);
        }
    }

    #[test]
    fn evaluate_collection_after_table_changes_catches_up(seed in any::<u64>(), machines in 1usize..30, collections in 1usize..10) {
        let mut rng = Rng(seed);
        let mut table = random_table(&mut rng, machines);
        let specs = random_collections(&mut rng, collections, machines);
        let mut evaluator = evaluated(&table, &specs);
        for i in 0..machines {
            table.insert_or_update(random_machine(&mut rng, i));
        }
        // Re-evaluating every root (collections nothing depends on first is
        // not needed: dependents are re-evaluated too) catches up.
        for builtin in BUILTIN_COLLECTIONS {
            evaluator.evaluate_collection(builtin.name, &table).unwrap();
        }
        for (name, _) in &specs {
            evaluator.evaluate_collection(name, &table).unwrap();
        }
        assert_same_members(&evaluator, &evaluated(&table, &specs));
    }
}

// ---------------------------------------------------------------------------
// Evaluator errors and bookkeeping

#[test]
fn graph_errors() {
    let query = |q: &str| MembershipRule::Query(QueryText(q.into()));
    let include = |n: &str| MembershipRule::Include(vec![n.into()]);
    let build = |specs: &[(&str, CollectionSpec)]| {
        Evaluator::new(specs.iter().map(|(n, s)| (*n, s))).map(|_| ())
    };

    let a = spec(None, vec![include("B")]);
    let b = spec(Some("A".into()), vec![]);
    assert_eq!(
        build(&[("A", a.clone()), ("B", b)]),
        Err(EvalError::Cycle {
            collections: vec!["A".into(), "B".into()]
        })
    );
    let own = spec(None, vec![MembershipRule::Exclude(vec!["A".into()])]);
    assert!(matches!(build(&[("A", own)]), Err(EvalError::Cycle { .. })));
    assert_eq!(
        build(&[("A", a)]),
        Err(EvalError::UnknownReference {
            collection: "A".into(),
            reference: "B".into()
        })
    );
    assert_eq!(
        build(&[("All Systems", spec(None, vec![]))]),
        Err(EvalError::BuiltinRedeclared("All Systems".into()))
    );
    assert_eq!(
        build(&[("A", spec(None, vec![])), ("A", spec(None, vec![]))]),
        Err(EvalError::Duplicate("A".into()))
    );
    let err = build(&[("A", spec(None, vec![query("os.nme = 'x'")]))]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "collection `A` has an invalid query: unknown property `os.nme`"
    );
    let mut every = spec(None, vec![]);
    every.evaluation = Some(Interval {
        every: DurationText("1 day".into()),
        start: None,
    });
    assert!(matches!(
        build(&[("A", every)]),
        Err(EvalError::Interval { .. })
    ));
}

#[test]
fn intervals_timings_and_lookups() {
    let mut daily = spec(
        None,
        vec![MembershipRule::Query(QueryText("site = 'LAB'".into()))],
    );
    daily.evaluation = Some(Interval {
        every: DurationText("1d".into()),
        start: None,
    });
    let specs = [("Daily".to_owned(), daily)];
    let mut table = MachineTable::new();
    let (id, _) = table.insert_or_update(xp());
    let mut evaluator = evaluated(&table, &specs);
    assert_eq!(
        evaluator.evaluation_interval("Daily"),
        Some(std::time::Duration::from_secs(86_400))
    );
    assert_eq!(evaluator.evaluation_interval("All Systems"), None);
    assert!(evaluator.last_evaluation("Daily").is_some());
    assert!(evaluator.last_evaluation("Nope").is_none());
    assert_eq!(
        evaluator.collections_of(id),
        vec![
            "All Systems",
            "All Windows Workstations",
            "All Windows XP Systems",
            "Daily"
        ]
    );
    assert!(matches!(
        evaluator.evaluate_collection("Nope", &table),
        Err(EvalError::UnknownCollection(_))
    ));
    // A move out of the site shows in the delta of that machine only.
    let mut moved = xp();
    moved.site = Some("HQ".into());
    table.insert_or_update(moved);
    let deltas = evaluator.machine_changed(&table, id);
    assert_eq!(deltas.len(), 1);
    assert_eq!(deltas[0].collection, "Daily");
    assert_eq!(deltas[0].removed.iter().collect::<Vec<_>>(), vec![id]);
}

#[test]
fn table_ids_are_stable_and_caller_given_ids_are_checked() {
    let mut table = MachineTable::new();
    let (a, prev) = table.insert_or_update(Machine::named("A"));
    assert!(prev.is_none());
    let (b, _) = table.insert_or_update(Machine::named("B"));
    let (again, prev) = table.insert_or_update(Machine::named("a"));
    assert_eq!((again, prev.map(|m| m.name)), (a, Some("A".into())));
    assert_eq!(table.id_of("A"), Some(a));
    assert_eq!(table.remove("b"), Some(b));
    assert_eq!(table.remove("b"), None);
    let (c, _) = table.insert_or_update(Machine::named("C"));
    assert_ne!(c, b, "ids of removed machines are not reused");
    assert_eq!(table.insert_with_id(100, Machine::named("D")), Ok(None));
    assert!(matches!(
        table.insert_with_id(101, Machine::named("d")),
        Err(EvalError::IdConflict { existing: 100, .. })
    ));
    // Replacing under the same id with another name renames.
    table.insert_with_id(100, Machine::named("E")).unwrap();
    assert_eq!(table.id_of("d"), None);
    assert_eq!(table.id_of("e"), Some(100));
    let (next, _) = table.insert_or_update(Machine::named("F"));
    assert_eq!(next, 101);
    assert_eq!(table.len(), 4);
    assert_eq!(table.ids().len(), 4);
}
