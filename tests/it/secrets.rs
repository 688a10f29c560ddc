//! Secrets given on the command line never reach what patchops records or
//! prints: the audit log, the lock record, `history`, error messages.

use std::path::Path;
use std::process::Output;

use crate::support::{copy_dir, patchops, repo, text};
use sqlx::{Connection, PgConnection};

const PASSWORD: &str = "Pw-leak-4711";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `url` with `PASSWORD` as the password of its user (the test server
/// trusts every local connection, so any password is accepted).
fn with_password(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (user, host) = rest.split_once('@').unwrap();
    format!("{scheme}://{user}:{PASSWORD}@{host}")
}

fn run(dir: &Path, args: &[&str]) -> Output {
    patchops()
        .current_dir(dir)
        .env_remove("PATCHOPS_STATE")
        .env("PATCHOPS_ACTOR", "tester")
        .args(args)
        .output()
        .unwrap()
}

/// Every text column of the history and lock tables, as one string.
async fn raw_audit_tables(url: &str) -> String {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let mut all = String::new();
    for table in ["patchops_history", "patchops_lock"] {
        let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT row_to_json(t)::text FROM {table} t"
        )))
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for (row,) in rows {
            all.push_str(&row);
            all.push('\n');
        }
    }
    all
}

#[test]
fn postgres_password_never_reaches_history_or_the_lock() {
    let rt = runtime();
    let (url, _db) = rt.block_on(patchops::store::testing::fresh_postgres_url());
    let secret_url = with_password(&url);
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("examples/site"), &dir.path().join("site"));

    // Both spellings of the option are recorded redacted.
    let applied = run(
        dir.path(),
        &["apply", "site", "--state", &secret_url, "--auto-approve"],
    );
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    let state_flag = format!("--state={secret_url}");
    let history = run(dir.path(), &["history", &state_flag]);
    assert!(history.status.success(), "{}", text(&history.stderr));
    let shown = text(&history.stdout);
    assert!(shown.contains("postgres:***@"), "{shown}");
    assert!(!shown.contains(PASSWORD), "{shown}");

    // A lock recorded by an apply with the password on its command line
    // (held by this live test process), then met by another apply.
    let store = rt
        .block_on(patchops::store::Store::open(&secret_url))
        .map(patchops::site::Site::Local)
        .unwrap();
    let actor = patchops::ops::Actor::current(
        ["patchops", "apply", "site", "--state", &secret_url].map(String::from),
    );
    let held = rt
        .block_on(patchops::ops::lock::acquire(
            &store,
            &actor,
            std::time::Duration::ZERO,
        ))
        .unwrap();
    let raw = rt.block_on(raw_audit_tables(&url));
    assert!(raw.contains("postgres:***@"), "{raw}");
    assert!(!raw.contains(PASSWORD), "{raw}");

    let blocked = run(
        dir.path(),
        &["apply", "site", "--state", &secret_url, "--auto-approve"],
    );
    assert_eq!(blocked.status.code(), Some(1));
    let err = text(&blocked.stderr);
    assert!(err.contains("the state is locked by"), "{err}");
    assert!(err.contains("postgres:***@"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
    rt.block_on(held.release()).unwrap();
}
