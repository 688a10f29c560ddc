//! Client policy for a large inventory (target of the policy issue: the
//! hashes of 100,000 machines' policies, 200 advertisements each targeting
//! 10 % of them, in < 5 s).
//!
//! The site and machines are generated here with a fixed LCG: 10
//! distribution points with /16 boundaries (plus one without), 100 packages
//! with content and two programs each (a quarter restricted to platforms,
//! a tenth running another program first), 200 advertisements. Each figure
//! is the median of three runs.
//!
//! Run: `cargo bench --bench policy`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use patchops::content::ContentSummary;
use patchops::inventory::Machine;
use patchops::manifest::common::Metadata;
use patchops::model::{Desired, Object, Origin};
use patchops::policy::{self, PolicySite};
use roaring::RoaringBitmap;
use serde_json::json;

const MACHINES: u32 = 100_000;
const ADVERTISEMENTS: usize = 200;
const PACKAGES: usize = 100;
const DPS: usize = 10;
const RUNS: usize = 3;

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
}

fn object<S: serde::de::DeserializeOwned>(name: &str, spec: serde_json::Value) -> Object<S> {
    Object {
        metadata: Metadata {
            name: name.into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        },
        spec: serde_json::from_value(spec).expect("valid spec"),
        origin: Origin {
            file: "bench.yaml".into(),
            line: 1,
        },
    }
}

/// `variant` changes the command line of package 0's programs.
fn generate_site(variant: &str) -> (Desired, BTreeMap<String, ContentSummary>) {
    let mut d = Desired {
        site: Some(object(
            "LAB",
            json!({"siteCode": "LAB", "siteServer": "sms01"}),
        )),
        ..Desired::default()
    };
    for i in 0..DPS {
        d.distribution_points.insert(
            format!("dp-{i:02}"),
            object(
                &format!("dp-{i:02}"),
                json!({"path": format!("dp/{i}"), "url": format!("http://dp-{i:02}.lab.example:8080"),
                       "boundaries": [format!("10.{i}.0.0/16")]}),
            ),
        );
    }
    d.distribution_points.insert(
        "dp-central".into(),
        object(
            "dp-central",
            json!({"path": "dp/central", "url": "http://dp-central.lab.example:8080"}),
        ),
    );
    let mut content = BTreeMap::new();
    for i in 0..PACKAGES {
        let name = format!("Package {i:03}");
        let mut install = json!({"name": "Install", "commandLine": if i == 0 { format!("setup0.exe /quiet {variant}") } else { format!("setup{i}.exe /quiet") },
            "runWith": "administrativeRights", "canRun": "whetherOrNotUserLoggedOn", "maxRunTime": "2h"});
        if i % 4 == 0 {
            install["platforms"] = json!(["x86-windows-xp", "x86-windows-server-2003"]);
        }
        if i % 10 == 5 {
            install["runAnotherProgramFirst"] =
                json!({"package": "Package 000", "program": "Check"});
        }
        let dps = [
            format!("dp-{:02}", i % DPS),
            format!("dp-{:02}", (i + 3) % DPS),
            "dp-central".to_string(),
        ];
        d.packages.insert(
            name.clone(),
            object(
                &name,
                json!({"source": format!("packages/{i}"), "distributionPoints": dps,
                       "programs": [install, {"name": "Check", "commandLine": if i == 0 { format!("check.cmd {variant}") } else { "check.cmd".to_string() }}]}),
            ),
        );
        content.insert(
            name,
            ContentSummary {
                version: format!("{:064x}", i + 1),
                files: 10 + i,
                bytes: 1_000_000 + i as u64,
            },
        );
    }
    for i in 0..ADVERTISEMENTS {
        let name = format!("Advertisement {i:03}");
        d.advertisements.insert(
            name.clone(),
            object(
                &name,
                json!({"package": format!("Package {:03}", i % PACKAGES), "program": "Install",
                       "collection": format!("Collection {i}"), "availableAfter": "2026-11-24T02:00:00Z",
                       "schedule": [{"start": "2026-11-25T02:00:00", "every": "1d"}],
                       "priority": "high"}),
            ),
        );
    }
    (d, content)
}

fn machines() -> Vec<Machine> {
    let mut lcg = Lcg(7);
    (0..MACHINES)
        .map(|i| {
            let mut m = Machine::named(format!("WKS{i:06}"));
            let r = lcg.next();
            m.ip.addresses = vec![Ipv4Addr::new(
                10,
                (r % 12) as u8,
                (r >> 8) as u8,
                (r >> 16) as u8,
            )];
            m.architecture = Some("x86".into());
            m.os.version = Some(["5.0.2195", "5.1.2600", "5.2.3790"][(r % 3) as usize].into());
            m
        })
        .collect()
}

fn targets() -> BTreeMap<String, RoaringBitmap> {
    let mut lcg = Lcg(11);
    (0..ADVERTISEMENTS)
        .map(|i| {
            let bitmap: RoaringBitmap = (0..MACHINES)
                .filter(|_| lcg.next().is_multiple_of(10))
                .collect();
            (format!("Advertisement {i:03}"), bitmap)
        })
        .collect()
}

fn median<T>(mut run: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..RUNS {
        let start = Instant::now();
        let out = run();
        times.push(start.elapsed());
        last = Some(out);
    }
    times.sort();
    (times[RUNS / 2], last.expect("runs"))
}

fn main() {
    let (desired, content) = generate_site("v1");
    let machines = machines();
    let targets = targets();
    let pairs: usize = targets.values().map(|b| b.len() as usize).sum();
    println!(
        "{MACHINES} machines, {ADVERTISEMENTS} advertisements, {pairs} targeting pairs, {} threads",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let (t_site, site) = median(|| PolicySite::new(&desired, &content));
    println!("PolicySite::new: {t_site:.2?}");

    let (t_all, digests) = median(|| {
        policy::all_policies(
            &site,
            machines.iter().enumerate().map(|(i, m)| (i as u32, m)),
            &targets,
        )
    });
    let assignments: usize = digests.iter().map(|(_, d)| d.assignments.len()).sum();
    println!(
        "all_policies (hash + digests): {t_all:.2?} — {assignments} assignments ({:.0} ns per assignment)",
        t_all.as_nanos() as f64 / assignments as f64
    );

    // Baseline: the same hashes by building and serializing each machine's
    // full MachinePolicy (what serving does), on a sample.
    let names: Vec<Vec<&str>> = {
        let mut lists = vec![Vec::new(); MACHINES as usize];
        for (name, bitmap) in &targets {
            for id in bitmap {
                lists[id as usize].push(name.as_str());
            }
        }
        lists
    };
    const SAMPLE: usize = 10_000;
    let (t_one, bytes) = median(|| {
        let mut bytes = 0;
        for (i, m) in machines.iter().take(SAMPLE).enumerate() {
            let p = policy::machine_policy(&site, m, &names[i]);
            let json = p.to_json();
            bytes += json.len();
            black_box(p.hash());
            assert_eq!(p.hash(), digests[i].1.hash);
        }
        bytes
    });
    println!(
        "machine_policy + to_json + hash, {SAMPLE} machines (one thread): {t_one:.2?} — {:.1} µs per machine, {} bytes per policy on average",
        t_one.as_secs_f64() * 1e6 / SAMPLE as f64,
        bytes / SAMPLE
    );

    // Blast radius of a change to package 0 (its Check program is every
    // tenth package's run-first program).
    let (desired2, content2) = generate_site("v2");
    let site2 = PolicySite::new(&desired2, &content2);
    let digests2 = policy::all_policies(
        &site2,
        machines.iter().enumerate().map(|(i, m)| (i as u32, m)),
        &targets,
    );
    let (t_radius, radius) = median(|| {
        policy::blast_radius(
            digests
                .iter()
                .map(|(i, d)| (machines[*i as usize].name.as_str(), d)),
            digests2
                .iter()
                .map(|(i, d)| (machines[*i as usize].name.as_str(), d)),
        )
    });
    println!(
        "blast_radius: {t_radius:.2?} — {} machines changed, {} advertisements changed",
        radius.machines_changed,
        radius.assignments_changed.len()
    );
    let total = t_site + t_all;
    println!("total (site + all_policies): {total:.2?} (target < 5 s)");
}
