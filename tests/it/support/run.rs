//! Running the `patchops` binary (and git) from a test.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub fn patchops() -> Command {
    Command::new(env!("CARGO_BIN_EXE_patchops"))
}

/// A command's output as text (lossy: a test shows what it got).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command, killing it if it takes longer than `limit`: a hang is a
/// failure, not a stuck CI run. Output is read while the command runs, so
/// a command that prints more than a pipe holds does not block.
pub fn run_with_limit(mut cmd: Command, limit: Duration) -> Output {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("command did not finish within {limit:?}: {cmd:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Runs `cmd` (for a minute at most), which must succeed; its standard
/// output.
pub fn run_ok(cmd: Command) -> String {
    let shown = format!("{cmd:?}");
    let out = run_with_limit(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{shown} failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// In `cwd`, `patchops validate DIR --format json ARGS…` → (exit code,
/// JSON report).
pub fn run_validate(cwd: &Path, dir: &Path, args: &[String]) -> (i32, serde_json::Value) {
    let mut cmd = patchops();
    cmd.current_dir(cwd)
        .arg("validate")
        .arg(dir)
        .args(["--format", "json"])
        .args(args);
    let out = run_with_limit(cmd, Duration::from_secs(20));
    let code = out.status.code().expect("exited normally, not by a signal");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, json)
}

/// One line per diagnostic: `error[code] file:line:col path: message (help: …)`.
pub fn render_diagnostics(report: &serde_json::Value) -> String {
    let mut out = String::new();
    for d in report["diagnostics"].as_array().expect("diagnostics") {
        let s = |k: &str| d[k].as_str().map(str::to_string);
        let n = |k: &str| d[k].as_u64();
        out.push_str(&format!(
            "{}[{}]",
            s("severity").unwrap(),
            s("code").unwrap()
        ));
        match (s("file"), n("line"), n("column")) {
            (Some(f), Some(l), Some(c)) => out.push_str(&format!(" {f}:{l}:{c}")),
            (Some(f), _, _) => out.push_str(&format!(" {f}")),
            _ => {}
        }
        if let Some(p) = s("path") {
            out.push_str(&format!(" {p}"));
        }
        out.push_str(&format!(": {}", s("message").unwrap()));
        if let Some(h) = s("help") {
            out.push_str(&format!(" (help: {h})"));
        }
        out.push('\n');
    }
    out
}

/// Runs git in `dir` with a test identity; its trimmed standard output.
/// Fails the test when git fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
