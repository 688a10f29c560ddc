//! Distribution point throughput, each figure beside a baseline measured in
//! the same run on the same disk (targets of the [dp] issue):
//! - first distribution of N files / B bytes vs `cp -r` of the same source
//!   (target ≥ 80 % of cp's throughput);
//! - a re-run with no changes: bytes copied (target 0) and time (< 1 s);
//! - `dp validate` (deep) vs `sha256sum` over the same files (≥ 80 %);
//! - serving a 1 GiB file with `dp serve`, read by curl on loopback, vs
//!   curl reading it from a static file server (`python3 -m http.server`)
//!   on loopback (≥ 80 %), with `cat` from the page cache for scale.
//!
//! Run: `cargo bench --bench distribute` (defaults: 10,000 files, 1 GiB;
//! PATCHOPS_BENCH_FILES and PATCHOPS_BENCH_MB scale it).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn timed(mut cmd: Command) -> Duration {
    let start = Instant::now();
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed()
}

fn patchops(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_patchops"));
    c.current_dir(dir).env(
        "PATCHOPS_STATE",
        format!("sqlite://{}", dir.join("state.db").display()),
    );
    c
}

fn sh(script: &str, dir: &Path) -> Command {
    let mut c = Command::new("sh");
    c.current_dir(dir).args(["-c", script]);
    c
}

fn drop_dir(path: &Path) {
    if path.exists() {
        let _ = Command::new("chmod").args(["-R", "u+w"]).arg(path).status();
        fs::remove_dir_all(path).expect("clean up");
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let files = env_or("PATCHOPS_BENCH_FILES", 10_000) as usize;
    let total = env_or("PATCHOPS_BENCH_MB", 1024) << 20;
    let size = (total / files as u64).max(1) as usize;
    // On the disk the repository is on (target/), not a tmpfs.
    let work = tempfile::tempdir_in(Path::new(env!("CARGO_MANIFEST_DIR")).join("target")).unwrap();
    let dir = work.path();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    let content = dir.join("content");
    fs::create_dir(&content).unwrap();
    fs::set_permissions(&content, fs::Permissions::from_mode(0o755)).unwrap();
    let mut block = vec![0u8; size];
    for i in 0..files {
        for (j, b) in block.iter_mut().enumerate().step_by(4096) {
            *b = (i.wrapping_mul(31) ^ j) as u8;
        }
        block[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let p = content.join(format!("f{i:05}.bin"));
        fs::write(&p, &block).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    }
    fs::write(
        dir.join("site.yaml"),
        "apiVersion: patchops/v1\nkind: Site\nmetadata: {name: LAB}\nspec: {siteCode: LAB, siteServer: sms01}\n---\napiVersion: patchops/v1\nkind: DistributionPoint\nmetadata: {name: dp}\nspec: {path: dp, url: 'http://127.0.0.1:8080', maxConcurrentTransfers: 2}\n---\napiVersion: patchops/v1\nkind: Package\nmetadata: {name: Big}\nspec: {source: content, distributionPoints: [dp], programs: [{name: Install, commandLine: setup.exe}]}\n",
    )
    .unwrap();
    let mb = total as f64 / (1 << 20) as f64;
    println!("{files} files, {mb:.0} MiB ({size} bytes each); same disk; warm page cache for all");

    // cp -r, then sync, as the baseline of a durable copy.
    // Each timed step starts with nothing left to write back.
    let settle = || {
        let _ = Command::new("sync").status();
    };
    settle();
    let cp = timed(sh("cp -r content cp-copy && sync", dir));
    drop_dir(&dir.join("cp-copy"));
    settle();
    let first = timed({
        // Durable like cp + sync: the apply flushes before it publishes.
        let mut c = patchops(dir);
        c.args(["apply", ".", "--auto-approve"]);
        c
    });
    let rate = |d: Duration| mb / d.as_secs_f64();
    println!(
        "first distribution: patchops apply {:.2} s ({:.0} MiB/s) vs cp -r + sync {:.2} s ({:.0} MiB/s): {:.0} % of cp",
        first.as_secs_f64(),
        rate(first),
        cp.as_secs_f64(),
        rate(cp),
        100.0 * cp.as_secs_f64() / first.as_secs_f64()
    );

    let rerun_start = Instant::now();
    let out = patchops(dir)
        .args(["apply", ".", "--auto-approve"])
        .output()
        .unwrap();
    let rerun = rerun_start.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("No changes"), "{text}");
    println!(
        "re-run with no changes: {:.3} s, 0 bytes copied ({})",
        rerun.as_secs_f64(),
        text.trim().lines().last().unwrap_or("")
    );

    let validate = timed({
        let mut c = patchops(dir);
        c.args(["dp", "validate", "dp"]);
        c
    });
    let sha = timed(sh(
        "find dp/files -type f -print0 | xargs -0 sha256sum > /dev/null",
        dir,
    ));
    println!(
        "dp validate (deep): {:.2} s vs sha256sum {:.2} s: {:.0} % of sha256sum's throughput",
        validate.as_secs_f64(),
        sha.as_secs_f64(),
        100.0 * sha.as_secs_f64() / validate.as_secs_f64()
    );

    // Serving one large file.
    let big = 1u64 << 30;
    drop_dir(&dir.join("dp"));
    fs::remove_dir_all(&content).unwrap();
    fs::create_dir(&content).unwrap();
    fs::set_permissions(&content, fs::Permissions::from_mode(0o755)).unwrap();
    let big_path = content.join("big.bin");
    {
        use std::io::Write;
        let mut f = fs::File::create(&big_path).unwrap();
        let chunk: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
        for _ in 0..(big >> 20) {
            f.write_all(&chunk).unwrap();
        }
    }
    fs::set_permissions(&big_path, fs::Permissions::from_mode(0o644)).unwrap();
    let out = patchops(dir)
        .args(["apply", ".", "--auto-approve"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let sha = fs::read_dir(dir.join("dp/files"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let sha = fs::read_dir(sha)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .to_string_lossy()
        .into_owned();
    let mut server = patchops(dir)
        .args(["dp", "serve", "--path", "dp", "--listen", "127.0.0.1:18931"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let disk = timed(sh(
        &format!("cat dp/files/{}/{sha} > /dev/null", &sha[..2]),
        dir,
    ));
    let curl = timed(sh(
        &format!("curl -sf -o /dev/null http://127.0.0.1:18931/files/{sha}"),
        dir,
    ));
    let _ = server.kill();
    let _ = server.wait();
    // A static file server on loopback as the baseline: Python's.
    let mut python = Command::new("python3")
        .current_dir(dir.join("dp"))
        .args(["-m", "http.server", "18932", "--bind", "127.0.0.1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let static_server = timed(sh(
        &format!(
            "curl -sf -o /dev/null http://127.0.0.1:18932/files/{}/{sha}",
            &sha[..2]
        ),
        dir,
    ));
    let _ = python.kill();
    let _ = python.wait();
    let gib = big as f64 / (1 << 20) as f64;
    println!(
        "serving 1 GiB: curl from dp serve {:.2} s ({:.0} MiB/s) vs curl from python3 -m http.server {:.2} s ({:.0} MiB/s): {:.0} % of the static server; cat from page cache {:.0} MiB/s",
        curl.as_secs_f64(),
        gib / curl.as_secs_f64(),
        static_server.as_secs_f64(),
        gib / static_server.as_secs_f64(),
        100.0 * static_server.as_secs_f64() / curl.as_secs_f64(),
        gib / disk.as_secs_f64()
    );
}
