//! `validate` on a generated site of 10,000 manifests (the [manifests]
//! issue's target: < 1 s), beside a baseline that only parses the same files
//! with serde_yaml, so the figure can be read as a ratio on a noisy machine.
//!
//! Run: `cargo bench --bench validate`

use std::fs;

use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    patchops::fixtures::generate_site(dir.path(), 10_000, "a").unwrap();
    let report =
        patchops::validate::validate_dir(dir.path(), patchops::validate::Options { strict: true })
            .unwrap();
    assert!(
        report.is_valid(),
        "generated site must be valid: {:?}",
        &report.diagnostics[..report.diagnostics.len().min(3)]
    );
    assert_eq!(report.documents, 10_000);

    let mut group = c.benchmark_group("validate-10k-manifests");
    group.sample_size(10);
    group.bench_function("patchops validate --strict", |b| {
        b.iter(|| {
            patchops::validate::validate_dir(
                dir.path(),
                patchops::validate::Options { strict: true },
            )
            .unwrap()
        })
    });
    group.bench_function("baseline: read + serde_yaml parse only", |b| {
        b.iter(|| {
            let mut values = 0usize;
            for entry in fs::read_dir(dir.path()).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                    continue;
                }
                let text = fs::read_to_string(&path).unwrap();
                for doc in serde_yaml::Deserializer::from_str(&text) {
                    let v: serde_yaml::Value = serde::Deserialize::deserialize(doc).unwrap();
                    values += usize::from(!v.is_null());
                }
            }
            values
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
