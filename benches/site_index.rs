//! The site server's in-memory index at scale: loading a site of 100,000
//! machines and 1,000 collections (every collection evaluated, every
//! machine's policy rendered and hashed), and one machine's inventory
//! change → its updated policy (re-evaluation of that machine against
//! every collection, its policy recomputed and rendered).
//!
//! `cargo bench --bench site_index` — targets: policies for 100,000
//! machines < 5 s; one machine's change → updated policy < 10 ms.
//! `BENCH_MACHINES` and `BENCH_COLLECTIONS` change the size.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use patchops::content::ContentSummary;
use patchops::fixtures::synthetic::{synthetic_collections, synthetic_machines};
use patchops::manifest::{AdvertisementSpec, DistributionPointSpec, Metadata, PackageSpec};
use patchops::model::{Desired, Object, Origin};
use patchops::plan::AppliedSite;
use patchops::server::SiteIndex;
use serde_json::json;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn object<S>(name: &str, spec: S) -> Object<S> {
    Object {
        metadata: Metadata {
            name: name.to_string(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        },
        spec,
        origin: Origin {
            file: "bench".into(),
            line: 1,
        },
    }
}

/// 1,000 collections, 20 packages of two programs on two DPs, and 200
/// advertisements, each offering a program to one collection.
fn site(collections: usize) -> AppliedSite {
    let mut desired = Desired::default();
    for (name, spec) in synthetic_collections(collections, 7) {
        desired
            .collections
            .insert(name.clone(), object(&name, spec));
    }
    for (name, boundary) in [("dp-hq", "10.0.0.0/9"), ("dp-branch", "10.128.0.0/9")] {
        let spec: DistributionPointSpec = serde_json::from_value(json!({
            "path": format!("dp/{name}"),
            "url": format!("http://{name}.corp.example:8080"),
            "boundaries": [boundary],
        }))
        .expect("dp");
        desired
            .distribution_points
            .insert(name.into(), object(name, spec));
    }
    let mut content = BTreeMap::new();
    for p in 0..20 {
        let name = format!("Package {p:02}");
        let spec: PackageSpec = serde_json::from_value(json!({
            "source": format!("packages/p{p}"),
            "distributionPoints": ["dp-hq", "dp-branch"],
            "programs": [
                {"name": "Install", "commandLine": format!("setup{p}.exe /q"), "maxRunTime": "1h"},
                {"name": "Scan", "commandLine": format!("scan{p}.exe /cache"), "canRun": "whetherOrNotUserLoggedOn"},
            ],
        }))
        .expect("package");
        content.insert(
            name.clone(),
            ContentSummary {
                version: format!("{p:064x}"),
                files: 10,
                bytes: 10_000_000,
            },
        );
        desired.packages.insert(name.clone(), object(&name, spec));
    }
    let names: Vec<String> = desired.collections.keys().cloned().collect();
    for a in 0..200 {
        let name = format!("Advertisement {a:03}");
        let spec: AdvertisementSpec = serde_json::from_value(json!({
            "package": format!("Package {:02}", a % 20),
            "program": if a % 2 == 0 { "Install" } else { "Scan" },
            "collection": names[(a * 37) % names.len()],
            "schedule": [{"start": "2026-11-24T02:00:00Z", "every": "7d"}],
        }))
        .expect("advertisement");
        desired
            .advertisements
            .insert(name.clone(), object(&name, spec));
    }
    AppliedSite {
        desired,
        content,
        updates: Default::default(),
    }
}

fn main() {
    let n = env_or("BENCH_MACHINES", 100_000);
    let collections = env_or("BENCH_COLLECTIONS", 1_000);
    let applied = site(collections);
    let machines: Vec<_> = synthetic_machines(n, 11)
        .into_iter()
        .enumerate()
        .map(|(i, m)| (i as u32 + 1, m))
        .collect();

    let started = Instant::now();
    let (mut index, changed) =
        SiteIndex::build(&applied, 1, machines.clone(), Vec::new()).expect("builds");
    let build = started.elapsed();
    println!(
        "site index: {n} machines, {collections} collections, 200 advertisements; {} new policies",
        changed.len()
    );
    println!(
        "  load: {:.2} s (evaluation {:.2} s; every machine's policy computed and hashed, on all cores) — target < 5 s",
        build.as_secs_f64(),
        index.last_full_evaluation.as_secs_f64()
    );

    // A body is rendered the first time an agent asks for it (200), then
    // kept for that version.
    let names: Vec<String> = machines
        .iter()
        .take(1000)
        .map(|(_, m)| m.name.clone())
        .collect();
    let t = Instant::now();
    let mut bytes = 0;
    for name in &names {
        bytes += index.body_of(name).map_or(0, |b| b.len());
    }
    let first = t.elapsed();
    println!(
        "  first policy request: {:.3} ms per machine (render + JSON, {} bytes on average)",
        first.as_secs_f64() * 1000.0 / names.len() as f64,
        bytes / names.len()
    );

    // One machine changes at a time: a new product, then a move to another
    // subnet, so memberships and DP order both move.
    let mut times: Vec<Duration> = Vec::with_capacity(1000);
    let mut new_versions = 0;
    for k in 0..1000usize {
        let (id, mut machine) = machines[(k * 7919) % machines.len()].clone();
        if k % 2 == 0 {
            machine.installed.products.push("Office 2003".into());
        } else if let Some(address) = machine.ip.addresses.first_mut() {
            *address = std::net::Ipv4Addr::from(u32::from(*address) ^ 0x0080_0000);
        }
        let t = Instant::now();
        let update = index.machine_changed(id, machine);
        times.push(t.elapsed());
        new_versions += usize::from(update.is_some());
    }
    times.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  one machine's change → updated policy: median {:.3} ms, p99 {:.3} ms, max {:.3} ms ({new_versions} of 1000 got a new version) — target < 10 ms",
        ms(times[times.len() / 2]),
        ms(times[times.len() * 99 / 100]),
        ms(times[times.len() - 1])
    );
}
