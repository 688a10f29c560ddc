//! Authenticode verification speed: `authenticode::verify` over a signed
//! PE file of 64 MiB (a 1 KiB image with 64 MiB of appended data, which
//! the image digest covers as it covers an installer's payload), beside
//! the bare digest of the same bytes in the same run (SHA-256 and SHA-1:
//! 2001 hotfixes are signed with SHA-1). Verifying costs one pass of the
//! digest plus a fixed part (the CMS, the RSA signature, the chain), which
//! the last line measures on a 1 KiB file.
//!
//! `cargo bench --bench authenticode` — the figure to watch is the ratio to
//! the bare digest (≈ 1). `BENCH_SECONDS` changes how long each
//! measurement runs (default 3); `BENCH_MIB` the file's size (default 64).

use std::hint::black_box;
use std::time::{Duration, Instant};

use patchops::authenticode::testing::{sign, tiny_pe, SignOptions, TestSigner};
use patchops::authenticode::{verify, DigestAlg, TrustStore};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/authenticode/");

/// Mean seconds per run of `f` over about `seconds`.
fn measure(name: &str, bytes: usize, seconds: f64, mut f: impl FnMut()) -> f64 {
    f();
    let mut runs = 0u32;
    let mut best = Duration::MAX;
    let start = Instant::now();
    while runs < 3 || start.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
        runs += 1;
    }
    let mean = start.elapsed().as_secs_f64() / f64::from(runs);
    println!(
        "{name:<44} {runs:>6} runs  mean {:>9.3} ms  best {:>9.3} ms  {:>8.1} MB/s",
        mean * 1e3,
        best.as_secs_f64() * 1e3,
        bytes as f64 / 1e6 / mean,
    );
    mean
}

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}{name}")).expect("test material")
}

fn main() {
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) { 0.1 } else { 3.0 });
    let mib: usize = std::env::var("BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        // A debug build (`cargo test --all-targets` runs benches) is ~50×
        // slower at hashing: a smoke run there.
        .unwrap_or(if cfg!(debug_assertions) { 2 } else { 64 });
    let signer = TestSigner::new(
        &read("signer.key"),
        &[&read("signer.pem"), &read("pca.pem")],
    );
    let trust = TrustStore::from_pem(read("root.pem").as_bytes()).expect("root");
    let now: jiff::Timestamp = "2026-11-25T00:00:00Z".parse().expect("time");

    let mut image = tiny_pe(b"\xc3", false);
    // Not zeros: nothing may shortcut a run of equal bytes.
    let mut x: u32 = 0x1234_5678;
    image.extend((0..mib << 20).map(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u8
    }));
    let small = tiny_pe(b"\xc3", false);
    println!(
        "a signed PE file of {} MiB; machine: {} cores",
        mib,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for alg in [DigestAlg::Sha256, DigestAlg::Sha1] {
        let opts = SignOptions {
            digest: alg,
            ..SignOptions::default()
        };
        let file = sign(&image, &signer, &opts);
        let checked = verify(&file, &trust, now).expect("the bench file verifies");
        assert_eq!(checked.digest, alg);
        let bare = measure(
            &format!("{} of the bytes (baseline)", alg.name()),
            file.len(),
            seconds,
            || {
                black_box(alg.digest(&[black_box(&file)]));
            },
        );
        let full = measure(
            &format!("verify, {} signature", alg.name()),
            file.len(),
            seconds,
            || {
                black_box(verify(black_box(&file), &trust, now).is_ok());
            },
        );
        println!("  verify / bare digest: {:.2}", full / bare);
        let tiny = sign(&small, &signer, &opts);
        measure(
            &format!("verify, {} signature, 1 KiB file", alg.name()),
            tiny.len(),
            seconds.min(1.0),
            || {
                black_box(verify(black_box(&tiny), &trust, now).is_ok());
            },
        );
    }
}
