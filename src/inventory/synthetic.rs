//! Deterministic synthetic inventories and collections, for benchmarks and
//! tests: a site `LAB` of Windows 2000 / XP / Server 2003 machines on
//! `10.x.y.0/24` subnets, and collections with the queries such a site
//! uses. The same `(n, seed)` always gives the same data.

use std::net::Ipv4Addr;

use super::Machine;
use crate::manifest::collection::MembershipRule;
use crate::manifest::common::{DurationText, Interval, QueryText};
use crate::manifest::CollectionSpec;

/// A small linear congruential generator (Knuth's MMIX constants).
struct Lcg(u64);

impl Lcg {
    fn new(seed: u64) -> Lcg {
        let mut lcg = Lcg(seed ^ 0x9E37_79B9_7F4A_7C15);
        lcg.next();
        lcg
    }

    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The name of the `i`-th synthetic machine.
pub fn synthetic_machine_name(i: usize) -> String {
    format!("PC{i:06}")
}

const PRODUCTS: &[&str] = &[
    "Office 2003",
    "Office XP",
    "Visio 2003",
    "Project 2003",
    "Adobe Reader 7",
    "Java Runtime 1.4",
    "Java Runtime 1.5",
    "SQL Server 2000",
    "SQL Server 2005",
    "Exchange Server 2003",
    "IIS 6.0",
    "Internet Explorer 6",
    "Internet Explorer 7",
    "Windows Media Player 10",
    "McAfee VirusScan 8.0",
    "Symantec AntiVirus 10",
    "SMS Advanced Client",
    "WinZip 9",
    ".NET Framework 1.1",
    ".NET Framework 2.0",
];

const DEPARTMENTS: &[&str] = &[
    "finance",
    "engineering",
    "sales",
    "support",
    "hr",
    "it",
    "legal",
    "marketing",
];

const MEMORY_MB: &[u64] = &[256, 512, 512, 1024, 1024, 2048, 4096];

/// `n` machines: about 70 % XP workstations, 15 % Windows 2000
/// Professional, 12 % Server 2003 (some domain controllers), 3 % Windows
/// 2000 Server; a few facts missing here and there.
pub fn synthetic_machines(n: usize, seed: u64) -> Vec<Machine> {
    let mut rng = Lcg::new(seed);
    (0..n).map(|i| synthetic_machine(&mut rng, i)).collect()
}

fn synthetic_machine(rng: &mut Lcg, i: usize) -> Machine {
    let mut m = Machine::named(synthetic_machine_name(i));
    let roll = rng.below(100);
    let (os, os_type, version, max_sp) = match roll {
        0..70 => (
            "Microsoft Windows XP Professional",
            "workstation",
            "5.1.2600",
            3,
        ),
        70..85 => (
            "Microsoft Windows 2000 Professional",
            "workstation",
            "5.0.2195",
            5,
        ),
        85..97 => (
            "Microsoft Windows Server 2003, Standard Edition",
            if rng.chance(20) {
                "domainController"
            } else {
                "server"
            },
            "5.2.3790",
            3,
        ),
        _ => (
            "Microsoft(R) Windows(R) 2000 Server",
            "server",
            "5.0.2195",
            5,
        ),
    };
    m.domain = Some(if rng.chance(90) { "CORP" } else { "LAB" }.to_owned());
    m.os.name = Some(os.to_owned());
    m.os.os_type = Some(os_type.to_owned());
    m.os.version = Some(version.to_owned());
    if rng.chance(97) {
        m.os.service_pack = Some(rng.below(max_sp + 1) as u32);
    }
    let x64 = version == "5.2.3790" && rng.chance(30);
    m.architecture = Some(if x64 { "x64" } else { "x86" }.to_owned());
    m.site = Some("LAB".to_owned());
    let products = 1 + rng.below(5);
    for _ in 0..products {
        let product = rng.pick(PRODUCTS);
        if !m.installed.products.iter().any(|p| p == product) {
            m.installed.products.push((*product).to_owned());
        }
    }
    if rng.chance(98) {
        m.hardware.memory_mb = Some(*rng.pick(MEMORY_MB));
        m.hardware.disk_free_mb = Some(500 + rng.below(80_000));
    }
    let (x, y) = (rng.below(20) as u8, rng.below(256) as u8);
    m.ip.subnets.push(Ipv4Addr::new(10, x, y, 0));
    m.ip.addresses
        .push(Ipv4Addr::new(10, x, y, 1 + rng.below(254) as u8));
    if os_type != "workstation" && rng.chance(30) {
        // A second adapter on a management network.
        let z = rng.below(4) as u8;
        m.ip.subnets.push(Ipv4Addr::new(192, 168, z, 0));
        m.ip.addresses
            .push(Ipv4Addr::new(192, 168, z, 1 + rng.below(254) as u8));
    }
    if rng.chance(95) {
        let base = jiff::Timestamp::from_second(1_795_917_600).expect("valid"); // 2026-11-29
        let ago = jiff::SignedDuration::from_secs(rng.below(30 * 86_400) as i64);
        m.last_heartbeat = base.checked_sub(ago).ok();
    }
    m.properties
        .insert("department".to_owned(), (*rng.pick(DEPARTMENTS)).to_owned());
    if rng.chance(50) {
        m.properties.insert(
            "location".to_owned(),
            format!("building {}", 1 + rng.below(6)),
        );
    }
    m
}

fn query(text: String) -> MembershipRule {
    MembershipRule::Query(QueryText(text))
}

fn spec(membership: Vec<MembershipRule>) -> CollectionSpec {
    CollectionSpec {
        comment: String::new(),
        limiting_collection: None,
        membership,
        evaluation: None,
        purpose: Default::default(),
    }
}

/// `n` collections named `Collection 0000`, `Collection 0001`, ...: about
/// 80 % query collections (patch levels, products, subnets, departments,
/// hardware, stale clients), 5 % direct membership over
/// [`synthetic_machine_name`]s, the rest built from earlier collections with
/// include, exclude and limiting rules (so the graph is acyclic). Some
/// carry an evaluation interval.
pub fn synthetic_collections(n: usize, seed: u64) -> Vec<(String, CollectionSpec)> {
    let mut rng = Lcg::new(seed.wrapping_add(1));
    let mut out: Vec<(String, CollectionSpec)> = Vec::with_capacity(n);
    for i in 0..n {
        let roll = rng.below(100);
        let mut spec = if roll < 80 || i < 10 {
            spec(vec![query(synthetic_query(&mut rng))])
        } else if roll < 85 {
            let count = 5 + rng.below(50);
            let names = (0..count)
                .map(|_| synthetic_machine_name(rng.below(100_000) as usize))
                .collect();
            spec(vec![MembershipRule::Direct(names)])
        } else {
            let earlier = |rng: &mut Lcg| out[rng.below(out.len() as u64) as usize].0.clone();
            let mut membership = Vec::new();
            match rng.below(3) {
                0 => membership.push(MembershipRule::Include(vec![
                    earlier(&mut rng),
                    earlier(&mut rng),
                ])),
                1 => {
                    membership.push(query(synthetic_query(&mut rng)));
                    membership.push(MembershipRule::Exclude(vec![earlier(&mut rng)]));
                }
                _ => {
                    membership.push(MembershipRule::Include(vec![earlier(&mut rng)]));
                    membership.push(MembershipRule::Exclude(vec![earlier(&mut rng)]));
                }
            }
            let mut spec = spec(membership);
            if rng.chance(50) {
                spec.limiting_collection = Some(earlier(&mut rng));
            }
            spec
        };
        if rng.chance(20) {
            spec.limiting_collection = Some(
                (*rng.pick(&[
                    "All Windows Workstations",
                    "All Windows Servers",
                    "All Systems",
                ]))
                .to_owned(),
            );
        }
        if rng.chance(25) {
            spec.evaluation = Some(Interval {
                every: DurationText((*rng.pick(&["1h", "4h", "1d", "7d"])).to_owned()),
                start: None,
            });
        }
        out.push((format!("Collection {i:04}"), spec));
    }
    out
}

fn synthetic_query(rng: &mut Lcg) -> String {
    let product = rng.pick(PRODUCTS);
    let department = rng.pick(DEPARTMENTS);
    match rng.below(12) {
        0 => format!(
            "os.type = 'workstation' and os.version >= '5.1' and os.servicePack < {}",
            1 + rng.below(3)
        ),
        1 => format!("installed.product = '{product}'"),
        2 => format!(
            "installed.product like '{}%' and os.type != 'workstation'",
            &product[..product.len().min(6)]
        ),
        3 => format!("ip.subnet in subnet '10.{}.0.0/16'", rng.below(20)),
        4 => format!(
            "ip.address in subnet '10.{}.{}.0/24' or ip.address in subnet '10.{}.{}.0/24'",
            rng.below(20),
            rng.below(256),
            rng.below(20),
            rng.below(256)
        ),
        5 => format!("properties.department = '{department}' and os.name like '%XP%'"),
        6 => format!(
            "hardware.memoryMB < {} or hardware.diskFreeMB < {}",
            *rng.pick(MEMORY_MB),
            1_000 + rng.below(5_000)
        ),
        7 => format!(
            "lastHeartbeat < '2026-11-{:02}T00:00:00Z' or lastHeartbeat is null",
            1 + rng.below(28)
        ),
        8 => format!("name like 'PC0{}%'", rng.below(10)),
        9 => format!(
            "os.version in ('5.0.2195', '5.2.3790') and not installed.product = '{product}'"
        ),
        10 => format!(
            "os.name like 'Microsoft Windows Server 2003%' and architecture = 'x64' and properties.department in ('{department}', 'it')"
        ),
        _ => format!(
            "installed.product not in ('{product}', 'Office 2003') and properties.location like '%{}'",
            1 + rng.below(6)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_valid() {
        assert_eq!(synthetic_machines(50, 7), synthetic_machines(50, 7));
        assert_ne!(synthetic_machines(50, 7), synthetic_machines(50, 8));
        let collections = synthetic_collections(300, 3);
        assert_eq!(collections, synthetic_collections(300, 3));
        for (name, spec) in &collections {
            for rule in &spec.membership {
                if let MembershipRule::Query(text) = rule {
                    crate::query::parse(text.as_str())
                        .unwrap_or_else(|e| panic!("{name}: {text:?}: {}", e.message));
                }
            }
        }
        let evaluator =
            crate::eval::Evaluator::new(collections.iter().map(|(n, s)| (n.as_str(), s)));
        assert!(evaluator.is_ok(), "{:?}", evaluator.err());
    }
}
