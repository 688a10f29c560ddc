//! Crash safety of apply, with the real binary: 20 SIGKILLs while applying
//! a large plan, on SQLite and on PostgreSQL — a quarter aimed inside the
//! commit (the store shows the apply's write transaction open), a quarter
//! inside distribution (the apply reports copying), the rest at random
//! moments. After each kill the state must hold exactly the old objects or
//! exactly the new ones; most aimed kills must land where they were aimed;
//! a final run converges.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{patchops, Lcg};
use serde_json::Value;

const OBJECTS: usize = 3_000;
const KILLS: usize = 20;

fn cmd(dir: &std::path::Path, state: &str) -> Command {
    let mut c = patchops();
    c.current_dir(dir).env("PATCHOPS_STATE", state);
    c
}

/// kind/name → hash, as the state holds them, and the serial.
fn snapshot(dir: &std::path::Path, state: &str) -> (BTreeMap<String, String>, i64) {
    let out = cmd(dir, state)
        .args(["state", "list", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let objects: BTreeMap<String, String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                format!(
                    "{}/{}",
                    r["kind"].as_str().unwrap(),
                    r["name"].as_str().unwrap()
                ),
                r["hash"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let history = cmd(dir, state)
        .args(["history", "--format", "json", "--limit", "1"])
        .output()
        .unwrap();
    let rows: Value = serde_json::from_slice(&history.stdout).unwrap();
    let serial = rows
        .as_array()
        .unwrap()
        .first()
        .map_or(0, |r| r["serial"].as_i64().unwrap());
    (objects, serial)
}

#[derive(Debug, Clone, Copy)]
enum Aim {
    /// While the store shows the apply's write transaction open.
    Commit,
    /// Once the apply reports that it copies content to a DP.
    Distribution,
    /// After this many milliseconds.
    Random(u64),
}

/// The lines a child writes, as they come.
fn lines(from: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line starting with `prefix`; false at the deadline or when
/// the child closed the stream without one.
fn wait_line(lines: &mpsc::Receiver<String>, prefix: &str, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.starts_with(prefix) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

/// Sees another connection's write transaction in the store: on SQLite a
/// write lock that `BEGIN IMMEDIATE` cannot take at once, on PostgreSQL a
/// session of the binary whose transaction has written.
enum WriteProbe {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl WriteProbe {
    async fn open(state: &str) -> WriteProbe {
        use sqlx::Connection;
        if state.starts_with("sqlite:") {
            let opts: sqlx::sqlite::SqliteConnectOptions = state.parse().unwrap();
            let conn = sqlx::SqliteConnection::connect_with(&opts.busy_timeout(Duration::ZERO))
                .await
                .unwrap();
            WriteProbe::Sqlite(conn)
        } else {
            WriteProbe::Postgres(sqlx::PgConnection::connect(state).await.unwrap())
        }
    }

    async fn writer_open(&mut self) -> bool {
        match self {
            WriteProbe::Sqlite(conn) => {
                match sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await {
                    Ok(_) => {
                        sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await.unwrap();
                        false
                    }
                    Err(_) => true,
                }
            }
            WriteProbe::Postgres(conn) => sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() \
                 AND application_name = 'patchops' AND backend_xid IS NOT NULL)",
            )
            .fetch_one(&mut *conn)
            .await
            .unwrap(),
        }
    }

    /// Polls until a writer is seen; false at the deadline.
    async fn wait_for_writer(&mut self, deadline: Instant) -> bool {
        while Instant::now() < deadline {
            if self.writer_open().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        false
    }

    async fn close(self) {
        use sqlx::Connection;
        let _ = match self {
            WriteProbe::Sqlite(conn) => conn.close().await,
            WriteProbe::Postgres(conn) => conn.close().await,
        };
    }
}

fn kill_during_apply(state: &str, dir: &std::path::Path) {
    let mut rng = Lcg::from_env("PATCHOPS_FAULT_SEED");

    // Two versions of the site that differ in every collection.
    let versions = [dir.join("a"), dir.join("b")];
    patchops::fixtures::generate_site(&versions[0], OBJECTS, "(first)").unwrap();
    patchops::fixtures::generate_site(&versions[1], OBJECTS, "(second)").unwrap();
    // … and in their packages' content, so that each apply distributes.
    std::fs::write(
        versions[1].join("packages/content/setup.cmd"),
        "@echo off\r\nrem second\r\n",
    )
    .unwrap();

    // Each version applied uninterrupted into scratch stores: what "old"
    // and "new" look like, and how long an apply takes.
    let mut expected = Vec::new();
    let mut full_ms = 50;
    for (i, version) in versions.iter().enumerate() {
        let scratch = format!("sqlite://{}", dir.join(format!("scratch-{i}.db")).display());
        let start = Instant::now();
        let full = cmd(dir, &scratch)
            .args([
                "apply",
                version.file_name().unwrap().to_str().unwrap(),
                "--auto-approve",
            ])
            .output()
            .unwrap();
        assert!(
            full.status.success(),
            "{}",
            String::from_utf8_lossy(&full.stderr)
        );
        full_ms = full_ms.max(start.elapsed().as_millis() as u64);
        expected.push(snapshot(dir, &scratch).0);
    }
    assert_ne!(expected[0], expected[1]);

    // Kills aim in turn at the commit (once the store shows the apply's
    // write transaction open), at distribution (once the apply reports
    // copying) and, twice in four, at a random moment.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Opened once the store exists (the first apply makes it).
    let mut probe: Option<WriteProbe> = None;
    let mut in_commit = 0;
    let mut in_distribution = 0;
    let mut applied_kills = 0;
    let mut last_serial = 0;
    let mut current: Option<usize> = None;
    for i in 0..KILLS {
        // Always the version the state does not hold: there is work to do.
        let target = current.map_or(0, |c| 1 - c);
        let aim = match i % 4 {
            0 => Aim::Commit,
            1 => Aim::Distribution,
            _ => Aim::Random(rng.next() % (full_ms * 3 / 2)),
        };
        let mut child = cmd(dir, state)
            .args([
                "apply",
                versions[target].file_name().unwrap().to_str().unwrap(),
                "--auto-approve",
                "--lock-timeout",
                "30s",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut aimed = false;
        match aim {
            Aim::Commit => {
                // The plan is printed with the lock held; the next write
                // transaction is the commit.
                if wait_line(&stdout, "Plan: ", deadline) {
                    let probe = match &mut probe {
                        Some(p) => p,
                        None => probe.insert(rt.block_on(WriteProbe::open(state))),
                    };
                    aimed = rt.block_on(probe.wait_for_writer(deadline));
                }
            }
            Aim::Distribution => aimed = wait_line(&stderr, "distributing ", deadline),
            Aim::Random(delay) => std::thread::sleep(Duration::from_millis(delay)),
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.success() {
            applied_kills += 1;
        }
        let (objects, serial) = snapshot(dir, state);
        let holds = expected.iter().position(|e| *e == objects);
        assert!(
            objects.is_empty() || holds.is_some(),
            "kill {i} ({aim:?}) left {} objects that are neither version",
            objects.len()
        );
        assert!(serial >= last_serial, "the serial never goes back");
        assert_eq!(
            objects.is_empty(),
            serial == 0,
            "objects exist exactly when something was applied"
        );
        let committed = serial > last_serial;
        match aim {
            Aim::Commit if aimed && !committed => in_commit += 1,
            Aim::Distribution if aimed && committed && !status.success() => in_distribution += 1,
            _ => {}
        }
        last_serial = serial;
        current = holds;
    }
    eprintln!(
        "{in_commit} kills inside the commit, {in_distribution} inside distribution, \
         {applied_kills} of {KILLS} applies finished before their kill"
    );
    // A kill aimed at either lands there at least three times in five.
    let aimed_at_each = KILLS / 4;
    assert!(
        in_commit * 5 >= aimed_at_each * 3,
        "only {in_commit} of {aimed_at_each} kills aimed at the commit landed inside it"
    );
    assert!(
        in_distribution * 5 >= aimed_at_each * 3,
        "only {in_distribution} of {aimed_at_each} kills aimed at distribution landed inside it"
    );
    if let Some(probe) = probe {
        rt.block_on(probe.close());
    }

    // Converge: apply b to the end, then nothing is left to do.
    let out = cmd(dir, state)
        .args(["apply", "b", "--auto-approve", "--lock-timeout", "30s"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan = cmd(dir, state)
        .args(["plan", "b", "--detailed-exitcode"])
        .output()
        .unwrap();
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&plan.stdout)
    );
    let (objects, _) = snapshot(dir, state);
    assert_eq!(objects.len(), OBJECTS);
}

#[test]
fn sigkill_during_apply_on_sqlite_leaves_old_or_new() {
    let dir = tempfile::tempdir().unwrap();
    let state = format!("sqlite://{}", dir.path().join("state.db").display());
    kill_during_apply(&state, dir.path());
}

#[test]
fn sigkill_during_apply_on_postgres_leaves_old_or_new() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (state, _dropper) = rt.block_on(patchops::store::testing::fresh_postgres_url());
    kill_during_apply(&state, dir.path());
}
