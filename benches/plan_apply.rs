//! plan and apply with 10,000 and 100,000 objects, on SQLite and
//! PostgreSQL, through the real binary (targets: at 10,000 a no-change
//! plan < 1 s, applying 10,000 new objects < 5 s, peak memory < 200 MB; at
//! 100,000 a no-change plan < 2 s and < 400 MB — plan cost linear in the
//! site's size).
//!
//! Each figure is the median of three runs; `validate` on the same tree is
//! printed beside them as the floor every plan pays. Peak memory is the
//! child process's maximum resident set size (wait4).
//!
//! Run: `cargo bench --bench plan_apply` (PostgreSQL on 127.0.0.1:5432, or
//! PATCHOPS_TEST_POSTGRES). `PATCHOPS_BENCH_OBJECTS=100000` runs one size;
//! `PATCHOPS_BENCH_KEEP=DIR` generates the sites in DIR and keeps them (for
//! a profiler).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SIZES: [usize; 2] = [10_000, 100_000];
const RUNS: usize = 3;

struct Measured {
    time: Duration,
    max_rss_kb: i64,
}

/// Runs the binary to completion; its wall time and peak memory. The child
/// is reaped with wait4 (for its rusage), not with `Child::wait`.
#[allow(clippy::zombie_processes)]
fn measure(dir: &Path, state: &str, args: &[&str], expect_code: i32) -> Measured {
    let start = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_patchops"))
        .current_dir(dir)
        .env("PATCHOPS_STATE", state)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("patchops runs");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, which std has not reaped.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert!(pid > 0, "wait4 failed");
    let time = start.elapsed();
    assert!(libc::WIFEXITED(status), "{args:?} was killed");
    assert_eq!(libc::WEXITSTATUS(status), expect_code, "{args:?} exit code");
    Measured {
        time,
        max_rss_kb: usage.ru_maxrss,
    }
}

fn median(mut values: Vec<Measured>) -> Measured {
    values.sort_by_key(|m| m.time);
    values.swap_remove(values.len() / 2)
}

fn backend(name: &str, objects: usize, dir: &Path, fresh_state: &mut dyn FnMut() -> String) {
    let validate = median(
        (0..RUNS)
            .map(|_| measure(dir, "unused", &["validate", "site"], 0))
            .collect(),
    );
    let mut applies = Vec::new();
    let mut plans = Vec::new();
    for _ in 0..RUNS {
        let state = fresh_state();
        applies.push(measure(
            dir,
            &state,
            &["apply", "site", "--auto-approve"],
            0,
        ));
        plans.push(measure(
            dir,
            &state,
            &["plan", "site", "--detailed-exitcode"],
            0,
        ));
    }
    let (apply, plan) = (median(applies), median(plans));
    let mb = |kb: i64| kb as f64 / 1024.0;
    println!("{name:<10} validate {:>7.0} ms {:>6.1} MB | no-change plan {:>7.0} ms {:>6.1} MB | apply {objects} new {:>7.0} ms {:>6.1} MB",
        validate.time.as_secs_f64() * 1e3, mb(validate.max_rss_kb),
        plan.time.as_secs_f64() * 1e3, mb(plan.max_rss_kb),
        apply.time.as_secs_f64() * 1e3, mb(apply.max_rss_kb));
}

fn main() {
    // `cargo test --benches` runs this with --test-ish flags: only bench on `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let sizes: Vec<usize> = match std::env::var("PATCHOPS_BENCH_OBJECTS") {
        Ok(list) => list
            .split(',')
            .map(|n| n.trim().parse().expect("PATCHOPS_BENCH_OBJECTS: numbers"))
            .collect(),
        Err(_) => SIZES.to_vec(),
    };
    let temp = tempfile::tempdir().unwrap();
    let root = match std::env::var_os("PATCHOPS_BENCH_KEEP") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => temp.path().to_path_buf(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut droppers = Vec::new();
    for objects in sizes {
        let dir = root.join(objects.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        patchops::fixtures::generate_site(&dir.join("site"), objects, "a").unwrap();
        println!(
            "{objects} objects, median of {RUNS} runs, wall time and peak RSS of the patchops process"
        );
        let mut n = 0;
        let sqlite_dir = dir.clone();
        backend("sqlite", objects, &dir, &mut || {
            n += 1;
            format!(
                "sqlite://{}",
                sqlite_dir.join(format!("state-{n}.db")).display()
            )
        });
        backend("postgres", objects, &dir, &mut || {
            let (url, dropper) = rt.block_on(patchops::store::testing::fresh_postgres_url());
            droppers.push(dropper);
            url
        });
    }
}
