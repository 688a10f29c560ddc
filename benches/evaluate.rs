//! Collection evaluation on a synthetic site: 1,000 collections × 100,000
//! machines (targets: full evaluation < 2 s; one machine's change through
//! `machine_changed` < 10 ms).
//!
//! Printed beside the figures: a baseline that tests every machine with a
//! compiled per-machine matcher for the first query collections, scaled to
//! all of them, i.e. what a plain scan would cost on this machine.
//!
//! Run: `cargo bench --bench evaluate`

use std::time::{Duration, Instant};

use patchops::eval::{Evaluator, MachineTable, Matcher};
use patchops::fixtures::synthetic::{synthetic_collections, synthetic_machines};
use patchops::manifest::collection::MembershipRule;

const MACHINES: usize = 100_000;
const COLLECTIONS: usize = 1_000;
const FULL_RUNS: usize = 5;
const CHANGES: usize = 1_000;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at]
}

fn main() {
    // `cargo test --benches` runs this without --bench: only bench on `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let machines = synthetic_machines(MACHINES, 1);
    let collections = synthetic_collections(COLLECTIONS, 1);

    let started = Instant::now();
    let mut table = MachineTable::new();
    for m in machines.iter().cloned() {
        table.insert_or_update(m);
    }
    let load = started.elapsed();

    let started = Instant::now();
    let mut evaluator = Evaluator::new(collections.iter().map(|(n, s)| (n.as_str(), s))).unwrap();
    let compile = started.elapsed();

    let mut fulls = Vec::new();
    for _ in 0..FULL_RUNS {
        let started = Instant::now();
        evaluator.evaluate_all(&table);
        fulls.push(started.elapsed());
    }
    fulls.sort();
    let full = fulls[fulls.len() / 2];
    let memberships: u64 = evaluator
        .collection_names()
        .map(|n| evaluator.members(n).unwrap().len())
        .sum();
    let slowest = evaluator
        .collection_names()
        .map(|n| (evaluator.last_evaluation(n).unwrap(), n.to_owned()))
        .max()
        .unwrap();

    // Baseline: a plain per-machine scan of the first query collections.
    let queries: Vec<Matcher> = collections
        .iter()
        .flat_map(|(_, s)| &s.membership)
        .filter_map(|rule| match rule {
            MembershipRule::Query(text) => Some(Matcher::new(
                &patchops::query::parse(text.as_str()).unwrap(),
            )),
            _ => None,
        })
        .take(20)
        .collect();
    let started = Instant::now();
    let mut hits = 0usize;
    for matcher in &queries {
        hits += machines.iter().filter(|m| matcher.matches(m)).count();
    }
    let scan = started.elapsed();
    std::hint::black_box(hits);
    let scan_all = scan.mul_f64(COLLECTIONS as f64 / queries.len() as f64);

    // One machine's change: new facts for a random machine.
    let replacements = synthetic_machines(CHANGES, 2);
    let mut rng = 12345u64;
    let mut changed = Vec::with_capacity(CHANGES);
    let mut with_update = Vec::with_capacity(CHANGES);
    let mut moved = 0usize;
    for (i, mut m) in replacements.into_iter().enumerate() {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let target = ((rng >> 33) as usize + i) % MACHINES;
        m.name = machines[target].name.clone();
        let started = Instant::now();
        let (id, _) = table.insert_or_update(m);
        let updated = started.elapsed();
        let started = Instant::now();
        let deltas = evaluator.machine_changed(&table, id);
        let evaluated = started.elapsed();
        moved += usize::from(!deltas.is_empty());
        changed.push(evaluated);
        with_update.push(updated + evaluated);
    }
    changed.sort();
    with_update.sort();

    // The incremental result equals a fresh evaluation.
    let mut fresh = Evaluator::new(collections.iter().map(|(n, s)| (n.as_str(), s))).unwrap();
    fresh.evaluate_all(&table);
    for name in fresh.collection_names() {
        assert_eq!(fresh.members(name), evaluator.members(name), "{name}");
    }

    // Changing 10 collection specs.
    let mut edited = collections.clone();
    for (_, spec) in edited.iter_mut().step_by(COLLECTIONS / 10) {
        spec.membership
            .push(MembershipRule::Direct(vec!["PC000001".into()]));
    }
    let started = Instant::now();
    let deltas = evaluator
        .set_collections(edited.iter().map(|(n, s)| (n.as_str(), s)), &table)
        .unwrap();
    let set = started.elapsed();

    println!(
        "{MACHINES} machines, {COLLECTIONS} collections (+{} built in), {memberships} memberships",
        evaluator.collection_names().count() - COLLECTIONS
    );
    println!("load table (index included)     {}", ms(load));
    println!("compile collections             {}", ms(compile));
    println!(
        "full evaluation (median of {FULL_RUNS})  {}   [runs: {}]",
        ms(full),
        fulls.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ")
    );
    println!(
        "  slowest collection            {} ({})",
        ms(slowest.0),
        slowest.1
    );
    println!(
        "baseline: per-machine scan      {} for {} query collections → {} for {COLLECTIONS}",
        ms(scan),
        queries.len(),
        ms(scan_all)
    );
    println!(
        "machine_changed ({CHANGES} changes)  median {}  p99 {}  max {}  ({moved} changed membership)",
        us(percentile(&changed, 0.5)),
        us(percentile(&changed, 0.99)),
        us(*changed.last().unwrap())
    );
    println!(
        "  with the table update         median {}  p99 {}",
        us(percentile(&with_update, 0.5)),
        us(percentile(&with_update, 0.99))
    );
    println!(
        "set_collections, 10 specs edited  {} ({} deltas)",
        ms(set),
        deltas.len()
    );
}
