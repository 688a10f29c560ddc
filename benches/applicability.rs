//! Applicability speed: the whole real MSSecure.XML fixture (231
//! bulletins, 393 patches) evaluated for 10,000 generated machines.
//! Target: < 2 s for all of them.
//!
//! Machines are generated deterministically (no randomness between runs):
//! each has two to five of the catalog's (product, service pack) pairs and,
//! for every patch of those products, the patch's files (at the catalog's
//! version or one older) and registry values, each present or not — so
//! every detection path runs. Measured beside two baselines in the same
//! run: iterating the facts (every file and registry string touched), and
//! the naive evaluation that indexes the catalog again for each machine
//! (`applicability::evaluate`).
//!
//! `cargo bench --bench applicability`. `BENCH_MACHINES` changes the
//! machine count (default 10,000), `BENCH_RUNS` the runs (default 3).

use std::hint::black_box;
use std::time::{Duration, Instant};

use patchops::applicability::facts::{FileFact, ProductFact, RegistryFact};
use patchops::applicability::{self, Counts, Engine, ScanFacts};
use patchops::catalog::{self, Catalog};

/// A small deterministic generator (SplitMix64).
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 0
    }
}

fn older(version: &str) -> String {
    let mut parts: Vec<String> = version.split(['.', ',']).map(str::to_string).collect();
    if let Some(last) = parts.last_mut() {
        if let Ok(n) = last.parse::<u64>() {
            *last = n.saturating_sub(1).to_string();
        }
    }
    parts.join(".")
}

fn machines(c: &Catalog, n: usize) -> Vec<ScanFacts> {
    // Every (product name, service pack name) the catalog lists.
    let mut pairs: Vec<(String, String)> = Vec::new();
    for b in &c.bulletins {
        for p in &b.patches {
            for a in &p.affected {
                for sp in &a.service_packs {
                    let pair = (a.product.clone(), sp.name.clone());
                    if !pairs.contains(&pair) {
                        pairs.push(pair);
                    }
                }
            }
        }
    }
    let mut g = Gen(2001);
    (0..n)
        .map(|i| {
            let mut facts = ScanFacts {
                machine: format!("wks-{i:05}"),
                ..ScanFacts::default()
            };
            for _ in 0..2 + g.below(4) {
                let (product, sp) = &pairs[g.below(pairs.len())];
                facts.products.push(ProductFact {
                    product: product.clone(),
                    service_pack: Some(sp.clone()),
                });
            }
            for b in &c.bulletins {
                for p in &b.patches {
                    let mine = p
                        .affected
                        .iter()
                        .any(|a| facts.products.iter().any(|f| f.product == a.product));
                    if !mine {
                        continue;
                    }
                    for f in &p.files {
                        if g.below(8) == 0 {
                            continue; // not on the machine
                        }
                        let version = f.version.as_deref().map(|v| {
                            if g.coin() {
                                v.to_string()
                            } else {
                                older(v)
                            }
                        });
                        facts.files.push(FileFact {
                            location: f.location.clone(),
                            name: Some(f.name.clone()),
                            version,
                            ..FileFact::default()
                        });
                    }
                    for r in &p.registry {
                        if let (Some(key), true) = (&r.key, g.coin()) {
                            facts.registry.push(RegistryFact {
                                key: key.clone(),
                                value: r.value_name.clone(),
                                data: r.expected.clone(),
                            });
                        }
                    }
                }
            }
            facts
        })
        .collect()
}

fn measure(name: &str, runs: u32, mut f: impl FnMut() -> Counts) -> Counts {
    let mut best = Duration::MAX;
    let mut total = Duration::ZERO;
    let mut last = Counts::default();
    for _ in 0..runs {
        let t = Instant::now();
        last = black_box(f());
        let e = t.elapsed();
        best = best.min(e);
        total += e;
    }
    println!(
        "{name:<44} mean {:>9.1} ms  best {:>9.1} ms",
        total.as_secs_f64() * 1e3 / f64::from(runs),
        best.as_secs_f64() * 1e3
    );
    last
}

fn main() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mssecure.xml");
    let bytes = std::fs::read(&path).expect("the fixture");
    let cat = catalog::read_any(&bytes)
        .expect("the fixture loads")
        .catalog;
    let n: usize = std::env::var("BENCH_MACHINES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let runs: u32 = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let t = Instant::now();
    let all = machines(&cat, n);
    let files: usize = all.iter().map(|m| m.files.len()).sum();
    let regs: usize = all.iter().map(|m| m.registry.len()).sum();
    println!(
        "{n} machines generated in {:.1} s: {:.1} products, {:.1} files, {:.1} registry values per machine",
        t.elapsed().as_secs_f64(),
        all.iter().map(|m| m.products.len()).sum::<usize>() as f64 / n as f64,
        files as f64 / n as f64,
        regs as f64 / n as f64,
    );
    let now = jiff::Timestamp::now();

    measure("baseline: iterate the facts", runs, || {
        let mut c = Counts::default();
        for m in &all {
            let mut bytes = m.machine.len();
            for f in &m.files {
                bytes += f.name.as_deref().map_or(0, str::len);
                bytes += f.version.as_deref().map_or(0, str::len);
            }
            for r in &m.registry {
                bytes += r.key.len() + r.value.len();
            }
            c.installed += bytes as u64;
        }
        c
    });
    let naive_n = (n / 10).max(1);
    measure(
        &format!("naive: evaluate() per machine (1/10: {naive_n})"),
        runs,
        || {
            let mut c = Counts::default();
            for m in &all[..naive_n] {
                for s in applicability::evaluate(&cat, m, now) {
                    c.add(s.status);
                }
            }
            c
        },
    );
    let engine = Engine::new(&cat);
    let counts = measure("Engine::evaluate, 1 thread", runs, || {
        let mut c = Counts::default();
        for m in &all {
            for s in engine.evaluate(m, now) {
                c.add(s.status);
            }
        }
        c
    });
    measure("Engine::evaluate, 2 threads", runs, || {
        let half = all.len().div_ceil(2);
        std::thread::scope(|scope| {
            let parts: Vec<_> = all
                .chunks(half)
                .map(|chunk| {
                    let engine = &engine;
                    scope.spawn(move || {
                        let mut c = Counts::default();
                        for m in chunk {
                            for s in engine.evaluate(m, now) {
                                c.add(s.status);
                            }
                        }
                        c
                    })
                })
                .collect();
            let mut c = Counts::default();
            for p in parts {
                let p = p.join().expect("thread");
                c.installed += p.installed;
                c.missing += p.missing;
                c.not_applicable += p.not_applicable;
                c.unknown += p.unknown;
            }
            c
        })
    });
    println!(
        "states: {} installed, {} missing, {} not applicable, {} unknown",
        counts.installed, counts.missing, counts.not_applicable, counts.unknown
    );
}
