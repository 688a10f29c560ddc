//! The processes a test starts and must not leave behind: servers and
//! distribution points, each killed (and reaped) when its guard drops.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A running server process (`patchops server`, `patchops dp serve`),
/// killed on drop.
pub struct Proc {
    pub child: Child,
    /// The URL it printed once bound, `http://127.0.0.1:PORT`.
    pub base: String,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stderr in `log` and reads the URL on the first
    /// line it prints once bound (`listening on URL`, `serving DIR on
    /// URL`): a server given port 0 says which port it got.
    pub fn start(mut cmd: Command, log: &Path) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .expect("start");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("first line");
        let mut proc = Proc {
            child,
            base: String::new(),
            log: log.to_path_buf(),
        };
        match line.split_whitespace().find(|w| w.starts_with("http://")) {
            Some(base) => proc.base = base.to_string(),
            // Dropping the guard kills what did start.
            None => panic!("no URL in {line:?}:\n{}", proc.log()),
        }
        proc
    }

    /// `path` (`/healthz`) on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What the process wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits (up to `within`) for the process to end.
    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: signals our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                start.elapsed() < within,
                "no exit within {within:?} after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The logs of `procs`, one after the other: what a failed wait shows.
pub fn logs(procs: &[&Proc]) -> String {
    procs
        .iter()
        .map(|p| p.log())
        .collect::<Vec<_>>()
        .join("\n-----\n")
}

/// `dir/NAME-N.log`, N new in this test process: a log file no other
/// server of the test writes.
pub fn log_file(dir: &Path, name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    dir.join(format!("{name}-{}.log", N.fetch_add(1, Ordering::Relaxed)))
}
