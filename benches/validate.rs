//! `validate` on a generated site of 10,000 manifests (the [manifests]
//! issue's target: < 1 s), beside a baseline that only parses the same files
//! with serde_yaml, so the figure can be read as a ratio on a noisy machine.
//!
//! Run: `cargo bench --bench validate`

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};

/// Writes a site of `n` manifests: a tenth collections, a tenth packages
/// (three programs each, with content), the rest advertisements, spread
/// over files of 10 documents.
fn generate_site(dir: &Path, n: usize) {
    fs::write(
        dir.join("site.yaml"),
        "apiVersion: patchops/v1\nkind: Site\nmetadata: {name: LAB}\nspec: {siteCode: LAB, siteServer: sms01}\n---\napiVersion: patchops/v1\nkind: DistributionPoint\nmetadata: {name: dp-hq}\nspec: {path: dp/dp-hq, url: 'http://dp-hq:8080', boundaries: [10.1.0.0/16]}\n",
    )
    .unwrap();
    fs::create_dir_all(dir.join("packages/content")).unwrap();
    let collections = n / 10;
    let packages = n / 10;
    let advertisements = n - collections - packages - 2;
    let mut docs: Vec<String> = Vec::with_capacity(n);
    for i in 0..collections {
        docs.push(format!(
            "apiVersion: patchops/v1\nkind: Collection\nmetadata: {{name: Collection {i}}}\nspec:\n  comment: Machines of department {i}\n  limitingCollection: All Systems\n  membership:\n    - query: os.name like 'Microsoft Windows%' and properties.department = 'dept-{i}' and os.version >= '5.1.2600'\n    - direct: [wks-{i}-01, wks-{i}-02]\n  evaluation: {{every: 1d}}\n"
        ));
    }
    for i in 0..packages {
        docs.push(format!(
            "apiVersion: patchops/v1\nkind: Package\nmetadata: {{name: Package {i}}}\nspec:\n  version: '1.{i}'\n  manufacturer: Contoso\n  source: packages/content\n  priority: high\n  distributionPoints: [dp-hq]\n  programs:\n    - {{name: Install, commandLine: setup.exe /quiet, runMode: hidden, canRun: whetherOrNotUserLoggedOn, runWith: administrativeRights, maxRunTime: 1h}}\n    - {{name: Repair, commandLine: setup.exe /repair, maxRunTime: 30m}}\n    - {{name: Remove, commandLine: setup.exe /uninstall, afterRunning: restart}}\n"
        ));
    }
    for i in 0..advertisements {
        docs.push(format!(
            "apiVersion: patchops/v1\nkind: Advertisement\nmetadata: {{name: Advertisement {i}}}\nspec:\n  package: Package {}\n  program: Install\n  collection: Collection {}\n  schedule:\n    - {{start: 2026-11-24T02:00:00Z, every: 7d}}\n  rerun: always\n  priority: medium\n",
            i % packages,
            i % collections
        ));
    }
    for (f, chunk) in docs.chunks(10).enumerate() {
        let mut text = String::new();
        for doc in chunk {
            let _ = write!(text, "---\n{doc}");
        }
        fs::write(dir.join(format!("m{f:05}.yaml")), text).unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    generate_site(dir.path(), 10_000);
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
