//! Load on the site server's hot path: agents polling an unchanged policy
//! (`GET /v1/policy` with `If-None-Match` → 304), measured by a load
//! generator on loopback against the release binary.
//!
//! `cargo bench --bench server` — target: ≥ 5,000 requests/s with p99 <
//! 50 ms on a 2-core machine. The generator shares the machine with the
//! server, so the figure is a floor.
//!
//! Environment: `BENCH_MACHINES` (registered agents, default 1000),
//! `BENCH_CONCURRENCY` (connections, default 32), `BENCH_SECONDS`
//! (default 10).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let machines = env_or("BENCH_MACHINES", 1000);
    let concurrency = env_or("BENCH_CONCURRENCY", 32);
    let seconds = env_or("BENCH_SECONDS", 10) as u64;
    let bin = env!("CARGO_BIN_EXE_patchops");
    let dir = tempfile::TempDir::new().expect("tmp");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let state = format!("sqlite://{}", dir.path().join("bench.db").display());

    // The example site, applied, with its inventory.
    copy_dir(&root.join("examples/site"), &dir.path().join("site"));
    run(Command::new(bin).current_dir(dir.path()).args([
        "apply",
        "site",
        "--auto-approve",
        "--state",
        &state,
    ]));
    run(Command::new(bin)
        .args(["inventory", "import"])
        .arg(root.join("examples/inventory.csv"))
        .args(["--state", &state]));

    let mut server = Command::new(bin)
        .args(["server", "--state", &state, "--listen", "127.0.0.1:0"])
        .args(["--enroll-secret-from", "env:BENCH_ENROLL"])
        .env("BENCH_ENROLL", "bench")
        .env("PATCHOPS_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("server");
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("address");
    let base = line.trim().trim_start_matches("listening on ").to_string();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let report = runtime.block_on(load(&base, machines, concurrency, seconds));
    let _ = server.kill();
    let _ = server.wait();

    println!(
        "server: {} registered agents, {concurrency} connections, {seconds} s",
        machines
    );
    println!(
        "  {} requests: {:.0} requests/s (target ≥ 5000); {} not 304",
        report.requests, report.per_second, report.errors
    );
    println!(
        "  latency p50 {:.2} ms, p99 {:.2} ms (target < 50 ms), max {:.2} ms",
        report.p50_ms, report.p99_ms, report.max_ms
    );
}

struct Report {
    requests: usize,
    per_second: f64,
    errors: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

async fn load(base: &str, machines: usize, concurrency: usize, seconds: u64) -> Report {
    patchops::tls::install_default_provider();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    // Register the agents and learn each one's ETag.
    let mut agents: Vec<(String, String)> = Vec::with_capacity(machines);
    for i in 0..machines {
        let body = format!("{{\"name\":\"wks-bench-{i:05}\"}}");
        let response = client
            .post(format!("{base}/v1/register"))
            .bearer_auth("bench")
            .body(body)
            .send()
            .await
            .expect("register");
        let json: serde_json::Value =
            serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
        let token = json["token"].as_str().expect("token").to_string();
        let response = client
            .get(format!("{base}/v1/policy"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("policy");
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .expect("etag")
            .to_string();
        agents.push((token, etag));
    }
    let agents = Arc::new(agents);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (client, agents, stop, url) = (
            client.clone(),
            agents.clone(),
            stop.clone(),
            format!("{base}/v1/policy"),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(100_000);
            let mut errors = 0;
            let mut i = worker;
            while !stop.load(Ordering::Relaxed) {
                let (token, etag) = &agents[i % agents.len()];
                i += concurrency;
                let t = Instant::now();
                let response = client
                    .get(&url)
                    .bearer_auth(token)
                    .header("If-None-Match", etag)
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status() == reqwest::StatusCode::NOT_MODIFIED => {
                        let _ = r.bytes().await;
                    }
                    _ => errors += 1,
                }
                latencies.push(t.elapsed());
            }
            (latencies, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await.expect("worker");
        all.extend(latencies);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Report {
        requests: all.len(),
        per_second: all.len() as f64 / elapsed,
        errors,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: all.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
