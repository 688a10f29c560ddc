//! Loopback ports fixed before the process that listens on them starts:
//! for a process restarted on the same address (e2e's server, which the
//! agents must find again; server.rs's private PostgreSQL), a URL
//! committed before its DP exists (e2e), or an address where nothing
//! listens (a server that is down). Every other server binds port 0 and
//! prints the address it got, which `Proc::start` reads.
//!
//! Binding port 0 and closing it is no reservation: the kernel may give
//! the same port to the next bind of port 0 (another test's server)
//! before the child binds it. So ports here come from below the kernel's
//! ephemeral range, which port-0 binds never use, and each is held by a
//! locked file for the life of the test process, so no two tests, nor two
//! test processes at once (`.ci/shifted-clock` runs the suite for several
//! dates in parallel), get the same port.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::sync::Mutex;

/// How many ports below the ephemeral range are candidates.
const CANDIDATES: u16 = 8192;

/// The lock files held: closing one would release its port.
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// A loopback port that nothing listens on, and that no other caller in
/// any test process gets while this one runs.
pub fn reserved_port() -> u16 {
    let end = ephemeral_start();
    let start = end.saturating_sub(CANDIDATES).max(1024);
    let dir = std::env::temp_dir().join("patchops-test-ports");
    std::fs::create_dir_all(&dir).expect("port lock directory");
    let mut held = HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for port in start..end {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(port.to_string()))
            .expect("port lock file");
        // A lock is per open file, so this process's own held ports are
        // refused here too.
        // SAFETY: flock on a descriptor this function owns.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        // Something outside the tests may use the port.
        if locked && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            held.push(file);
            return port;
        }
    }
    panic!("no free loopback port in {start}..{end}");
}

/// The first port of the kernel's ephemeral range (Linux's default when
/// it cannot be read).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}
