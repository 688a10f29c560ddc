//! Catalog parsing speed: MSSecure.XML (the real 2001 fixture, 858,713
//! bytes) read repeatedly from memory by `MsSecureReader`, beside two
//! baselines over the same bytes in the same run: quick-xml's raw event
//! loop (every attribute iterated, nothing kept) and a byte scan counting
//! `<` (what `wc`-like tools cost).
//!
//! `cargo bench --bench catalog` — target: ≥ 100 MB/s. `BENCH_SECONDS`
//! changes how long each measurement runs (default 3).

use std::hint::black_box;
use std::time::{Duration, Instant};

use patchops::catalog::{CatalogReader, MsSecureReader};
use quick_xml::events::Event;
use quick_xml::Reader;

fn measure(name: &str, bytes: &[u8], seconds: f64, mut f: impl FnMut(&[u8]) -> usize) {
    // Warm up.
    for _ in 0..3 {
        black_box(f(bytes));
    }
    let mut runs = 0u32;
    let mut best = Duration::MAX;
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        black_box(f(black_box(bytes)));
        best = best.min(t.elapsed());
        runs += 1;
    }
    let total = start.elapsed();
    let mb = bytes.len() as f64 * f64::from(runs) / 1e6;
    println!(
        "{name:<34} {runs:>6} runs  mean {:>8.3} ms  best {:>8.3} ms  {:>8.1} MB/s (best {:.1} MB/s)",
        total.as_secs_f64() * 1e3 / f64::from(runs),
        best.as_secs_f64() * 1e3,
        mb / total.as_secs_f64(),
        bytes.len() as f64 / 1e6 / best.as_secs_f64(),
    );
}

fn main() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mssecure.xml");
    let bytes = std::fs::read(&path).expect("the fixture");
    let seconds = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let loaded = MsSecureReader.read(&bytes).expect("the fixture loads");
    println!(
        "{}: {} bytes, {} bulletins, {} patches",
        path.display(),
        bytes.len(),
        loaded.catalog.bulletins.len(),
        loaded.catalog.patch_count()
    );
    measure("MsSecureReader::read", &bytes, seconds, |b| {
        MsSecureReader
            .read(b)
            .map_or(0, |l| l.catalog.bulletins.len())
    });
    measure("baseline: quick-xml events+attrs", &bytes, seconds, |b| {
        let text = std::str::from_utf8(b).expect("UTF-8");
        let mut reader = Reader::from_str(text);
        let mut n = 0usize;
        loop {
            match reader.read_event() {
                Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                    for a in e.attributes() {
                        n += a.map_or(0, |a| a.value.len());
                    }
                }
                Ok(Event::Eof) | Err(_) => break,
                _ => {}
            }
        }
        n
    });
    measure("baseline: byte scan (count '<')", &bytes, seconds, |b| {
        memchr::memchr_iter(b'<', b).count()
    });
}
