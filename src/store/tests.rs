//! Store tests. Each body runs on both backends: SQLite (a file in a fresh
//! temporary directory) and PostgreSQL (a fresh database, dropped after).

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::*;
use crate::inventory::Machine;
use crate::records::*;

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => { $(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}", dir.path().join("patchops.db").display());
                super::$name(&url).await;
            }

            #[tokio::test]
            async fn postgres() {
                let (url, _db) = super::super::testing::fresh_postgres_url().await;
                super::$name(&url).await;
            }
        }
    )* };
}

both_backends!(
    round_trip,
    stale_commit_writes_nothing,
    bulk_commit,
    changes_apply_in_order,
    set_owner_bumps_serial,
    history_newest_first,
    lock_semantics,
    lock_race_has_one_winner,
    leader_lease_is_apart_from_the_apply_lock,
    concurrent_commits_one_wins,
    failing_commit_leaves_nothing,
    foreign_database_refused,
    read_only_store,
    ping_answers,
    machines_round_trip,
    machine_batch_failure_writes_nothing,
    machines_bulk,
    tokens_round_trip,
    policies_round_trip,
    policies_bulk,
    status_exactly_once,
    status_batches_in_one_commit,
    issued_tokens_replace_old_ones,
    latest_status_per_machine_and_advertisement,
    version_1_store_is_upgraded,
    catalog_versions_round_trip,
    sync_status_counts_failures,
    patch_states_replace_per_machine,
    patch_states_replace_per_scan_agent,
    reconcile_status_only_from_the_leader,
    dp_validations_only_from_the_leader,
    inventory_serial_moves_with_machines_only,
    write_tx_is_all_or_nothing,
    version_6_status_messages_are_kept,
);

fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite")
}

fn record(command: &str, n: i64) -> ApplyRecord {
    ApplyRecord {
        id: None,
        serial: 0,
        started_at: format!("2026-03-21T10:00:{n:02}Z"),
        finished_at: format!("2026-03-21T10:01:{n:02}Z"),
        actor: "alice".into(),
        host: "ws01".into(),
        command: command.into(),
        commit: Some(format!("c0ffee{n}")),
        dirty: n % 2 == 1,
        plan_hash: format!("sha256:{n}"),
        added: n,
        changed: 2 * n,
        destroyed: 3 * n,
        changes: format!(r#"[{{"n":{n}}}]"#),
    }
}

fn new_object(kind: &str, name: &str, spec: &str) -> NewObject {
    NewObject {
        kind: kind.into(),
        name: name.into(),
        spec: spec.into(),
        spec_hash: format!("h:{}", spec.len()),
        metadata: format!(r#"{{"name":"{name}"}}"#),
        file: Some(format!("manifests/{name}.yaml")),
        commit: Some("abc123".into()),
    }
}

fn stored(o: &NewObject, owner: Owner, created: i64, updated: i64) -> StoredObject {
    StoredObject {
        kind: o.kind.clone(),
        name: o.name.clone(),
        spec: o.spec.clone(),
        spec_hash: o.spec_hash.clone(),
        metadata: o.metadata.clone(),
        owner,
        file: o.file.clone(),
        commit: o.commit.clone(),
        created_serial: created,
        updated_serial: updated,
    }
}

fn lock_request(id: &str, lease: Duration) -> LockRequest {
    LockRequest {
        id: id.into(),
        holder: format!("holder-of-{id}"),
        host: "ws01".into(),
        pid: 4242,
        command: "patchops apply".into(),
        lease,
    }
}

fn up(o: &NewObject) -> Change {
    Change::Upsert(o.clone())
}

fn del(kind: &str, name: &str) -> Change {
    Change::Delete {
        kind: kind.into(),
        name: name.into(),
    }
}

/// Runs raw SQL against the database behind `url` (creating a SQLite file).
async fn exec_raw(url: &str, sql: &str) {
    if is_sqlite(url) {
        let opts = SqliteConnectOptions::from_str(url)
            .expect("sqlite url")
            .create_if_missing(true);
        let mut c = SqliteConnection::connect_with(&opts)
            .await
            .expect("connect");
        sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(&mut c)
            .await
            .expect("raw sql");
        c.close().await.expect("close");
    } else {
        let mut c = PgConnection::connect(url).await.expect("connect");
        sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(&mut c)
            .await
            .expect("raw sql");
        c.close().await.expect("close");
    }
}

/// An hour passes for every stored lease: each expires an hour earlier.
/// Leases run on the database's clock, so a test moves their expiry
/// instead of waiting for it.
async fn let_leases_expire(url: &str) {
    exec_raw(
        url,
        "UPDATE patchops_lock SET expires_ms = expires_ms - 3600000",
    )
    .await;
}

fn sqlite_path(url: &str) -> std::path::PathBuf {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    std::path::PathBuf::from(rest.split('?').next().unwrap_or(rest))
}

async fn round_trip(url: &str) {
    let store = Store::open(url).await.expect("open");
    let expected_backend = if is_sqlite(url) {
        Backend::Sqlite
    } else {
        Backend::Postgres
    };
    assert_eq!(store.backend(), expected_backend);
    assert!(!store.is_read_only());

    let info = store.info().await.expect("info");
    assert_eq!(info.serial, 0);
    assert_eq!(info.site, None);
    let id = uuid::Uuid::parse_str(&info.store_id).expect("store id is a UUID");
    assert_eq!(id.get_version_num(), 4, "{}", info.store_id);
    assert_eq!(info.created_at.len(), 20, "{}", info.created_at);
    assert!(info.created_at.ends_with('Z'));
    assert!(store.objects().await.expect("objects").is_empty());

    // Odd but valid text is stored verbatim.
    let tricky = "{\"q\":\"it's \\\"quoted\\\"\",\"u\":\"Grüße ✓ 🚀\",\"nl\":\"a\\nb\"}\n\t  ";
    let a = new_object("Package", "b-pkg", r#"{"x":1}"#);
    let b = new_object("Collection", "zeta", r#"{"members":[]}"#);
    let c = new_object("Package", "a-pkg", tricky);
    let upper = new_object("Package", "Zed", "{}");
    let mut bare = new_object("Package", "bare", "");
    bare.file = None;
    bare.commit = None;
    bare.metadata = String::new();
    let serial = store
        .commit(
            0,
            Some("S01"),
            &[up(&a), up(&b), up(&c), up(&upper), up(&bare)],
            &record("apply", 1),
        )
        .await
        .expect("commit");
    assert_eq!(serial, 1);

    let info1 = store.info().await.expect("info");
    assert_eq!(info1.serial, 1);
    assert_eq!(info1.site.as_deref(), Some("S01"));
    assert_eq!(info1.store_id, info.store_id);
    assert_eq!(info1.created_at, info.created_at);

    // Byte order: "Zed" < "a-pkg" < "b-pkg" < "bare".
    let all = store.objects().await.expect("objects");
    assert_eq!(
        all,
        vec![
            stored(&b, Owner::Patchops, 1, 1),
            stored(&upper, Owner::Patchops, 1, 1),
            stored(&c, Owner::Patchops, 1, 1),
            stored(&a, Owner::Patchops, 1, 1),
            stored(&bare, Owner::Patchops, 1, 1),
        ]
    );
    assert_eq!(
        store.object("Package", "a-pkg").await.expect("object"),
        Some(stored(&c, Owner::Patchops, 1, 1))
    );
    assert_eq!(store.object("Package", "nope").await.expect("object"), None);
    assert_eq!(
        store.object("Collection", "b-pkg").await.expect("object"),
        None
    );

    // Update one (created_serial kept), delete another; the site stays.
    let a2 = new_object("Package", "b-pkg", r#"{"x":2}"#);
    let serial = store
        .commit(
            1,
            None,
            &[up(&a2), del("Collection", "zeta")],
            &record("apply", 2),
        )
        .await
        .expect("commit 2");
    assert_eq!(serial, 2);
    assert_eq!(
        store.object("Package", "b-pkg").await.expect("object"),
        Some(stored(&a2, Owner::Patchops, 1, 2))
    );
    assert_eq!(
        store.object("Collection", "zeta").await.expect("object"),
        None
    );
    let info2 = store.info().await.expect("info");
    assert_eq!(info2.site.as_deref(), Some("S01"));
    let before = store.objects().await.expect("objects");
    assert_eq!(before.len(), 4);
    store.close().await;

    // A second open sees the same store.
    let again = Store::open(url).await.expect("reopen");
    let info3 = again.info().await.expect("info");
    assert_eq!(info3.store_id, info.store_id);
    assert_eq!(info3.serial, 2);
    assert_eq!(again.objects().await.expect("objects"), before);
    let clone = again.clone();
    assert_eq!(clone.info().await.expect("info").serial, 2);
}

async fn stale_commit_writes_nothing(url: &str) {
    let store = Store::open(url).await.expect("open");
    let a = new_object("Package", "a", "{}");
    store
        .commit(0, Some("S01"), &[up(&a)], &record("apply", 1))
        .await
        .expect("commit");
    let before = store.objects().await.expect("objects");

    let b = new_object("Package", "b", "{}");
    let err = store
        .commit(
            0,
            Some("XXX"),
            &[up(&b), del("Package", "a")],
            &record("apply", 2),
        )
        .await
        .expect_err("stale");
    assert_eq!(
        err,
        StoreError::Stale {
            expected: 0,
            actual: 1
        }
    );
    assert!(err.to_string().contains("plan again"), "{err}");
    let err = store
        .commit(7, None, &[up(&b)], &record("apply", 3))
        .await
        .expect_err("stale");
    assert_eq!(
        err,
        StoreError::Stale {
            expected: 7,
            actual: 1
        }
    );

    let info = store.info().await.expect("info");
    assert_eq!(info.serial, 1);
    assert_eq!(info.site.as_deref(), Some("S01"));
    assert_eq!(store.objects().await.expect("objects"), before);
    assert_eq!(store.history(10).await.expect("history").len(), 1);
}

async fn bulk_commit(url: &str) {
    const N: usize = 10_000;
    let store = Store::open(url).await.expect("open");
    let spec = format!(r#"{{"payload":"{}"}}"#, "x".repeat(200));
    let changes: Vec<Change> = (0..N)
        .map(|i| Change::Upsert(new_object("Package", &format!("pkg-{i:05}"), &spec)))
        .collect();
    let started = Instant::now();
    let serial = store
        .commit(0, Some("S01"), &changes, &record("apply", 1))
        .await
        .expect("bulk upsert");
    let upsert_time = started.elapsed();
    assert_eq!(serial, 1);
    let all = store.objects().await.expect("objects");
    assert_eq!(all.len(), N);
    assert_eq!(all[0].name, "pkg-00000");
    assert_eq!(all[N - 1].name, "pkg-09999");
    assert!(all.iter().all(|o| o.spec == spec && o.created_serial == 1));

    let deletes: Vec<Change> = all.iter().map(|o| del(&o.kind, &o.name)).collect();
    let started = Instant::now();
    let serial = store
        .commit(1, None, &deletes, &record("destroy", 2))
        .await
        .expect("bulk delete");
    let delete_time = started.elapsed();
    assert_eq!(serial, 2);
    assert!(store.objects().await.expect("objects").is_empty());
    eprintln!(
        "{}: {N} upserts in {upsert_time:?}, {N} deletes in {delete_time:?}",
        store.backend()
    );
    // Bounds with room to spare: tests run unoptimised (SQLite takes about
    // 0.1 s each here, 0.04 s optimised), beside other tests on 2 cores.
    let bound = Duration::from_secs(if is_sqlite(url) { 1 } else { 4 });
    assert!(upsert_time < bound, "{upsert_time:?}");
    assert!(delete_time < bound, "{delete_time:?}");
}

async fn changes_apply_in_order(url: &str) {
    let store = Store::open(url).await.expect("open");
    let a1 = new_object("Package", "a", r#"{"v":1}"#);
    let a2 = new_object("Package", "a", r#"{"v":2}"#);
    let b1 = new_object("Package", "b", r#"{"v":1}"#);
    let b2 = new_object("Package", "b", r#"{"v":2}"#);
    let s = store
        .commit(
            0,
            None,
            &[
                up(&a1),
                del("Package", "a"),
                up(&a2),
                up(&b1),
                up(&b2),
                del("Package", "ghost"),
            ],
            &record("apply", 1),
        )
        .await
        .expect("commit");
    assert_eq!(s, 1);
    assert_eq!(
        store.objects().await.expect("objects"),
        vec![
            stored(&a2, Owner::Patchops, 1, 1),
            stored(&b2, Owner::Patchops, 1, 1)
        ]
    );

    // Delete then re-create: a new object (created now); upsert then delete: gone.
    let a3 = new_object("Package", "a", r#"{"v":3}"#);
    let b3 = new_object("Package", "b", r#"{"v":3}"#);
    let s = store
        .commit(
            1,
            None,
            &[del("Package", "a"), up(&a3), up(&b3), del("Package", "b")],
            &record("apply", 2),
        )
        .await
        .expect("commit");
    assert_eq!(s, 2);
    assert_eq!(
        store.objects().await.expect("objects"),
        vec![stored(&a3, Owner::Patchops, 2, 2)]
    );

    // An empty commit is still a state change.
    assert_eq!(
        store
            .commit(2, None, &[], &record("apply", 3))
            .await
            .expect("commit"),
        3
    );
}

async fn set_owner_bumps_serial(url: &str) {
    let store = Store::open(url).await.expect("open");
    let a = new_object("Package", "a", "{}");
    store
        .commit(0, Some("S01"), &[up(&a)], &record("apply", 1))
        .await
        .expect("commit");

    let unmanage = record("state unmanage", 2);
    assert!(store
        .set_owner("Package", "a", Owner::Unmanaged, &unmanage)
        .await
        .expect("set_owner"));
    let info = store.info().await.expect("info");
    assert_eq!(info.serial, 2);
    assert_eq!(info.site.as_deref(), Some("S01"));
    assert_eq!(
        store.object("Package", "a").await.expect("object"),
        Some(stored(&a, Owner::Unmanaged, 1, 2))
    );
    let history = store.history(1).await.expect("history");
    assert_eq!(history[0].command, "state unmanage");
    assert_eq!(history[0].serial, 2);

    // The same owner again: nothing to do, nothing written.
    assert!(store
        .set_owner("Package", "a", Owner::Unmanaged, &unmanage)
        .await
        .expect("set_owner"));
    assert_eq!(store.info().await.expect("info").serial, 2);
    // No such object.
    assert!(!store
        .set_owner("Package", "nope", Owner::Unmanaged, &unmanage)
        .await
        .expect("set_owner"));
    assert_eq!(store.info().await.expect("info").serial, 2);
    assert_eq!(store.history(10).await.expect("history").len(), 2);

    // A plan made before the unmanage is stale.
    let err = store
        .commit(1, None, &[up(&a)], &record("apply", 3))
        .await
        .expect_err("stale");
    assert_eq!(
        err,
        StoreError::Stale {
            expected: 1,
            actual: 2
        }
    );

    // An upsert makes it ours again.
    store
        .commit(2, None, &[up(&a)], &record("apply", 4))
        .await
        .expect("commit");
    assert_eq!(
        store.object("Package", "a").await.expect("object"),
        Some(stored(&a, Owner::Patchops, 1, 3))
    );
}

async fn history_newest_first(url: &str) {
    let store = Store::open(url).await.expect("open");
    assert!(store.history(10).await.expect("history").is_empty());
    for n in 1..=3 {
        let o = new_object("Package", &format!("p{n}"), "{}");
        store
            .commit(n - 1, None, &[up(&o)], &record("apply", n))
            .await
            .expect("commit");
    }
    let history = store.history(10).await.expect("history");
    assert_eq!(history.len(), 3);
    for (got, n) in history.iter().zip([3i64, 2, 1]) {
        let mut want = record("apply", n);
        want.serial = n;
        want.id = got.id;
        assert_eq!(got, &want);
        assert!(got.id.is_some());
    }
    assert!(history[0].id > history[1].id && history[1].id > history[2].id);
    let two = store.history(2).await.expect("history");
    assert_eq!(two, history[..2].to_vec());
    assert!(store.history(0).await.expect("history").is_empty());
}

fn assert_rfc3339(s: &str) {
    let b = s.as_bytes();
    assert_eq!(b.len(), 20, "{s}");
    assert!(
        b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && b[16] == b':'
            && b[19] == b'Z',
        "{s}"
    );
}

async fn lock_semantics(url: &str) {
    let store = Store::open(url).await.expect("open");
    let minute = Duration::from_secs(60);
    let r1 = lock_request("L1", minute);
    let r2 = lock_request("L2", minute);
    assert_eq!(store.lock_holder().await.expect("holder"), None);

    assert_eq!(store.try_lock(&r1).await.expect("lock"), Ok(()));
    let holder = store
        .try_lock(&r2)
        .await
        .expect("lock")
        .expect_err("held by L1");
    assert_eq!(holder.id, "L1");
    assert_eq!(holder.holder, "holder-of-L1");
    assert_eq!(holder.host, "ws01");
    assert_eq!(holder.pid, 4242);
    assert_eq!(holder.command, "patchops apply");
    assert_rfc3339(&holder.acquired_at);
    assert_rfc3339(&holder.expires_at);
    assert!(holder.expires_at > holder.acquired_at);
    assert_eq!(
        store.lock_holder().await.expect("holder"),
        Some(holder.clone())
    );
    // The holder itself may take it again (the lease is renewed).
    assert_eq!(store.try_lock(&r1).await.expect("lock"), Ok(()));

    assert!(store.renew_lock("L1", minute).await.expect("renew"));
    assert!(!store.renew_lock("L2", minute).await.expect("renew"));

    // Take-over is a compare-and-swap on the id.
    assert!(!store
        .take_over_lock("nobody", &r2)
        .await
        .expect("take over"));
    assert_eq!(
        store.lock_holder().await.expect("holder").map(|h| h.id),
        Some("L1".into())
    );
    assert!(store.take_over_lock("L1", &r2).await.expect("take over"));
    assert_eq!(
        store.lock_holder().await.expect("holder").map(|h| h.id),
        Some("L2".into())
    );
    assert!(!store.take_over_lock("L1", &r1).await.expect("take over"));
    assert!(!store.renew_lock("L1", minute).await.expect("renew"));
    assert!(!store.unlock("L1").await.expect("unlock"));
    assert!(store.unlock("L2").await.expect("unlock"));
    assert!(!store.unlock("L2").await.expect("unlock"));
    assert_eq!(store.lock_holder().await.expect("holder"), None);
    assert!(!store.take_over_lock("L2", &r1).await.expect("take over"));

    // An expired lease is taken over by the next try_lock.
    let short = lock_request("S", minute);
    assert_eq!(store.try_lock(&short).await.expect("lock"), Ok(()));
    let_leases_expire(url).await;
    assert_eq!(store.try_lock(&r1).await.expect("lock"), Ok(()));
    assert_eq!(
        store.lock_holder().await.expect("holder").map(|h| h.id),
        Some("L1".into())
    );
    assert!(!store.renew_lock("S", minute).await.expect("renew"));

    // An expired lease not taken over can still be renewed by its holder.
    assert!(store.unlock("L1").await.expect("unlock"));
    assert_eq!(store.try_lock(&short).await.expect("lock"), Ok(()));
    let_leases_expire(url).await;
    assert!(store.renew_lock("S", minute).await.expect("renew"));
    assert!(store.try_lock(&r1).await.expect("lock").is_err());
    assert!(store.unlock("S").await.expect("unlock"));

    // A huge lease does not overflow.
    let forever = lock_request("F", Duration::MAX);
    assert_eq!(store.try_lock(&forever).await.expect("lock"), Ok(()));
    assert!(store.renew_lock("F", Duration::MAX).await.expect("renew"));
    assert!(store.unlock("F").await.expect("unlock"));
}

async fn leader_lease_is_apart_from_the_apply_lock(url: &str) {
    let store = Store::open(url).await.expect("open");
    let minute = Duration::from_secs(60);
    let (a, b) = (lock_request("A", minute), lock_request("B", minute));
    assert!(store.try_lease(LEADER_LEASE, &a).await.expect("lease"));
    assert!(!store.try_lease(LEADER_LEASE, &b).await.expect("lease"));
    // The apply lock is another row: free, and its holder is not the leader.
    assert_eq!(store.lock_holder().await.expect("holder"), None);
    assert_eq!(store.try_lock(&b).await.expect("lock"), Ok(()));
    assert_eq!(
        store
            .lease_holder(LEADER_LEASE)
            .await
            .expect("holder")
            .map(|h| h.id),
        Some("A".into())
    );
    assert!(store
        .renew_lease(LEADER_LEASE, "A", minute)
        .await
        .expect("renew"));
    assert!(!store
        .renew_lease(LEADER_LEASE, "B", minute)
        .await
        .expect("renew"));
    // Unlocking the apply lock leaves the lease; releasing the lease frees it.
    assert!(store.unlock("B").await.expect("unlock"));
    assert!(!store
        .release_lease(LEADER_LEASE, "B")
        .await
        .expect("release"));
    assert!(store
        .release_lease(LEADER_LEASE, "A")
        .await
        .expect("release"));
    assert!(store.try_lease(LEADER_LEASE, &b).await.expect("lease"));
    // An expired lease goes to the next candidate.
    let short = lock_request("S", minute);
    assert!(store
        .release_lease(LEADER_LEASE, "B")
        .await
        .expect("release"));
    assert!(store.try_lease(LEADER_LEASE, &short).await.expect("lease"));
    let_leases_expire(url).await;
    assert!(store.try_lease(LEADER_LEASE, &a).await.expect("lease"));
    assert!(!store
        .renew_lease(LEADER_LEASE, "S", minute)
        .await
        .expect("renew"));
}

async fn lock_race_has_one_winner(url: &str) {
    let s1 = Store::open(url).await.expect("open");
    let s2 = Store::open(url).await.expect("open");
    let minute = Duration::from_secs(60);
    let (r1, r2) = (lock_request("A", minute), lock_request("B", minute));
    let (a, b) = tokio::join!(s1.try_lock(&r1), s2.try_lock(&r2));
    let (a, b) = (a.expect("lock a"), b.expect("lock b"));
    assert!(a.is_ok() != b.is_ok(), "exactly one wins: {a:?} {b:?}");
    let winner = if a.is_ok() { "A" } else { "B" };
    let loser_saw = a.err().or(b.err()).expect("a loser");
    assert_eq!(loser_saw.id, winner);
}

async fn concurrent_commits_one_wins(url: &str) {
    let s1 = Store::open(url).await.expect("open");
    let s2 = Store::open(url).await.expect("open");
    let c1: Vec<Change> = (0..500)
        .map(|i| up(&new_object("Package", &format!("one-{i}"), "{}")))
        .collect();
    let c2: Vec<Change> = (0..500)
        .map(|i| up(&new_object("Package", &format!("two-{i}"), "{}")))
        .collect();
    let (rec1, rec2) = (record("apply", 1), record("apply", 2));
    let (r1, r2) = tokio::join!(
        s1.commit(0, None, &c1, &rec1),
        s2.commit(0, None, &c2, &rec2)
    );
    let (ok, stale) = match (r1, r2) {
        (Ok(s), Err(e)) => ((s, "one"), e),
        (Err(e), Ok(s)) => ((s, "two"), e),
        other => panic!("exactly one commit must win: {other:?}"),
    };
    assert_eq!(ok.0, 1);
    assert_eq!(
        stale,
        StoreError::Stale {
            expected: 0,
            actual: 1
        }
    );
    let all = s1.objects().await.expect("objects");
    assert_eq!(all.len(), 500);
    assert!(all.iter().all(|o| o.name.starts_with(ok.1)));
    assert_eq!(s2.history(10).await.expect("history").len(), 1);
}

async fn failing_commit_leaves_nothing(url: &str) {
    let store = Store::open(url).await.expect("open");
    let a = new_object("Package", "a", r#"{"v":1}"#);
    store
        .commit(0, Some("S01"), &[up(&a)], &record("apply", 1))
        .await
        .expect("commit");
    // A trigger makes the database refuse one row in the middle of a commit.
    if is_sqlite(url) {
        exec_raw(
            url,
            "CREATE TRIGGER boom BEFORE INSERT ON patchops_objects WHEN NEW.name = 'boom' \
             BEGIN SELECT RAISE(ABORT, 'boom refused'); END;",
        )
        .await;
    } else {
        exec_raw(
            url,
            "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.name = 'boom' THEN RAISE EXCEPTION 'boom refused'; END IF; RETURN NEW; END $$; \
             CREATE TRIGGER boom BEFORE INSERT ON patchops_objects FOR EACH ROW EXECUTE FUNCTION boom();",
        )
        .await;
    }
    let before = store.objects().await.expect("objects");
    let mut changes = vec![del("Package", "a")];
    changes.extend((0..3000).map(|i| up(&new_object("Package", &format!("p{i:04}"), "{}"))));
    changes.insert(1500, up(&new_object("Package", "boom", "{}")));
    let err = store
        .commit(1, Some("XXX"), &changes, &record("apply", 2))
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, StoreError::Backend(m) if m.contains("boom refused")),
        "{err:?}"
    );
    let info = store.info().await.expect("info");
    assert_eq!(info.serial, 1);
    assert_eq!(info.site.as_deref(), Some("S01"));
    assert_eq!(store.objects().await.expect("objects"), before);
    assert_eq!(store.history(10).await.expect("history").len(), 1);
    // And the store still works.
    assert_eq!(
        store
            .commit(1, None, &changes[..10], &record("apply", 3))
            .await
            .expect("commit"),
        2
    );
}

async fn foreign_database_refused(url: &str) {
    exec_raw(
        url,
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT); \
         INSERT INTO customers (id, name) VALUES (1, 'acme');",
    )
    .await;
    let bytes = is_sqlite(url).then(|| std::fs::read(sqlite_path(url)).expect("read"));
    let err = Store::open(url).await.expect_err("foreign");
    assert!(
        matches!(&err, StoreError::NotAStateStore { reason, .. } if reason.contains("customers")),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("not a patchops state store"),
        "{err}"
    );
    if let Some(bytes) = bytes {
        assert_eq!(std::fs::read(sqlite_path(url)).expect("read"), bytes);
    }
    // Another sqlx application's database is not ours either.
    exec_raw(
        url,
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY);",
    )
    .await;
    let err = Store::open(url).await.expect_err("foreign");
    assert!(matches!(err, StoreError::NotAStateStore { .. }), "{err:?}");
    // Nothing of ours was created.
    let probe = "CREATE TABLE patchops_state (x INTEGER);";
    exec_raw(url, probe).await;
}

async fn read_only_store(url: &str) {
    let store = Store::open(url).await.expect("open");
    let a = new_object("Package", "a", "{}");
    store
        .commit(0, Some("S01"), &[up(&a)], &record("apply", 1))
        .await
        .expect("commit");
    let objects = store.objects().await.expect("objects");
    store.close().await;
    drop(store);

    let mut bytes = None;
    if is_sqlite(url) {
        use std::os::unix::fs::PermissionsExt;
        let path = sqlite_path(url);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).expect("chmod");
        bytes = Some(std::fs::read(&path).expect("read"));
    } else {
        let db = url.rsplit('/').next().expect("db name");
        exec_raw(
            url,
            &format!("ALTER DATABASE {db} SET default_transaction_read_only = on"),
        )
        .await;
    }

    let ro = Store::open(url).await.expect("open read-only");
    assert!(ro.is_read_only());
    assert_eq!(ro.info().await.expect("info").serial, 1);
    assert_eq!(ro.objects().await.expect("objects"), objects);
    assert_eq!(ro.history(5).await.expect("history").len(), 1);
    assert_eq!(ro.lock_holder().await.expect("holder"), None);
    let read_only = StoreError::ReadOnly {
        url: ro.display_url(),
    };
    let b = new_object("Package", "b", "{}");
    assert_eq!(
        ro.commit(1, None, &[up(&b)], &record("apply", 2)).await,
        Err(read_only.clone())
    );
    assert_eq!(
        ro.set_owner(
            "Package",
            "a",
            Owner::Unmanaged,
            &record("state unmanage", 2)
        )
        .await,
        Err(read_only.clone())
    );
    let r = lock_request("L", Duration::from_secs(60));
    assert_eq!(ro.try_lock(&r).await, Err(read_only.clone()));
    assert_eq!(ro.take_over_lock("x", &r).await, Err(read_only.clone()));
    assert_eq!(
        ro.renew_lock("L", Duration::from_secs(1)).await,
        Err(read_only.clone())
    );
    assert_eq!(ro.unlock("L").await, Err(read_only.clone()));
    assert!(read_only.to_string().contains("read-only"));
    ro.close().await;
    if let Some(bytes) = bytes {
        assert_eq!(std::fs::read(sqlite_path(url)).expect("read"), bytes);
    }
}

// ---- Site server tables --------------------------------------------------

/// A machine with a few facts; `n` varies them.
fn machine(name: &str, n: u32) -> Machine {
    let mut m = Machine::named(name);
    m.domain = Some("CORP".into());
    m.os.name = Some("Microsoft Windows XP Professional".into());
    m.os.service_pack = Some(n % 4);
    m.architecture = Some("x86".into());
    m.hardware.memory_mb = Some(512 + u64::from(n));
    m.ip.addresses = vec![std::net::Ipv4Addr::new(
        10,
        1,
        (n / 250) as u8,
        (n % 250) as u8,
    )];
    m.properties.insert("dept".into(), format!("d{}", n % 7));
    m
}

fn policy(machine_id: u32, version: u64, body: &str) -> StoredPolicy {
    StoredPolicy {
        machine_id,
        version,
        hash: format!("sha256:{}:{version}", body.len()),
        body: body.into(),
    }
}

fn status(key: &str, machine_key: &str, at_ms: i64) -> StatusMessage {
    StatusMessage {
        key: key.into(),
        machine_key: machine_key.into(),
        advertisement: "ADV00001".into(),
        state: AssignmentState::Succeeded,
        exit_code: Some(0),
        message: format!("message {key}"),
        at_ms,
        received_ms: at_ms + 5,
    }
}

const T0: i64 = 1_774_085_400_000;

async fn ping_answers(url: &str) {
    let store = Store::open(url).await.expect("open");
    store.ping().await.expect("ping");
    let clone = store.clone();
    clone.ping().await.expect("ping clone");
}

async fn machines_round_trip(url: &str) {
    let store = Store::open(url).await.expect("open");
    assert!(store.machines().await.expect("machines").is_empty());
    assert_eq!(store.machine_count().await.expect("count"), 0);

    let batch = vec![machine("PC01", 1), machine("pc02", 2), machine("Srv-03", 3)];
    let recs = store.upsert_machines(&batch, T0).await.expect("upsert");
    assert_eq!(store.machine_count().await.expect("count"), 3);
    let names: Vec<&str> = recs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["PC01", "pc02", "Srv-03"]);
    assert!(recs.iter().all(|r| r.changed), "{recs:?}");
    let ids: Vec<u32> = recs.iter().map(|r| r.id).collect();
    assert!(ids[0] >= 1 && ids[0] < ids[1] && ids[1] < ids[2], "{ids:?}");

    let all = store.machines().await.expect("machines");
    assert_eq!(
        all,
        batch
            .iter()
            .cloned()
            .zip(&ids)
            .map(|(m, id)| (*id, m))
            .collect::<Vec<_>>()
    );
    // By key, without case.
    assert_eq!(
        store.machine("pc01").await.expect("machine"),
        Some((ids[0], batch[0].clone()))
    );
    assert_eq!(
        store.machine("SRV-03").await.expect("machine"),
        Some((ids[2], batch[2].clone()))
    );
    assert_eq!(store.machine("nope").await.expect("machine"), None);

    // The same facts again: unchanged, same ids. One changed, one renamed
    // (case only: same machine), one new.
    let same = store.upsert_machines(&batch, T0 + 1).await.expect("upsert");
    assert_eq!(same.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
    assert!(same.iter().all(|r| !r.changed), "{same:?}");
    let mut changed = machine("PC01", 1);
    changed.os.service_pack = Some(3);
    let renamed = machine("PC02", 2);
    let batch2 = vec![
        batch[2].clone(),
        changed.clone(),
        renamed.clone(),
        machine("PC04", 4),
    ];
    let recs2 = store
        .upsert_machines(&batch2, T0 + 2)
        .await
        .expect("upsert");
    let flags: Vec<(u32, bool)> = recs2.iter().map(|r| (r.id, r.changed)).collect();
    assert_eq!(
        flags[..3],
        [(ids[2], false), (ids[0], true), (ids[1], true)]
    );
    // Updates take no id: the new machine gets the next one.
    assert!(recs2[3].changed && recs2[3].id == ids[2] + 1, "{recs2:?}");
    assert_eq!(
        store.machine("pc02").await.expect("machine"),
        Some((ids[1], renamed.clone()))
    );
    assert_eq!(store.machines().await.expect("machines").len(), 4);

    // Heartbeats: recorded, never backwards; unknown ids are false.
    let at = jiff::Timestamp::from_millisecond(T0 + 10_000).expect("ts");
    assert!(store
        .touch_heartbeat(ids[0], T0 + 10_000)
        .await
        .expect("hb"));
    assert!(store.touch_heartbeat(ids[0], T0 + 5_000).await.expect("hb"));
    assert!(!store.touch_heartbeat(999_999, T0).await.expect("hb"));
    let (_, m) = store
        .machine("pc01")
        .await
        .expect("machine")
        .expect("there");
    assert_eq!(m.last_heartbeat, Some(at));
    // A heartbeat does not count as a change of facts.
    let recs3 = store
        .upsert_machines(std::slice::from_ref(&changed), T0 + 3)
        .await
        .expect("upsert");
    assert!(!recs3[0].changed);

    // Removal takes the machine's policy with it; ids are never reused.
    store
        .put_policies(&[policy(ids[1], 1, "{}"), policy(ids[0], 1, "{}")], T0)
        .await
        .expect("policies");
    let removed = store
        .remove_machines(&["PC02".into(), "pc02".into(), "ghost".into()])
        .await
        .expect("remove");
    assert_eq!(removed, 1);
    assert_eq!(store.machine("pc02").await.expect("machine"), None);
    assert_eq!(store.policy(ids[1]).await.expect("policy"), None);
    assert!(store.policy(ids[0]).await.expect("policy").is_some());
    let back = store
        .upsert_machines(&[renamed], T0 + 4)
        .await
        .expect("upsert");
    assert!(back[0].changed && back[0].id == recs2[3].id + 1, "{back:?}");
    assert_eq!(store.remove_machines(&[]).await.expect("remove"), 0);
}

async fn machine_batch_failure_writes_nothing(url: &str) {
    let store = Store::open(url).await.expect("open");
    let first = vec![machine("keep-1", 1), machine("keep-2", 2)];
    store.upsert_machines(&first, T0).await.expect("upsert");
    let before = store.machines().await.expect("machines");

    // A batch that names one machine twice (without case) is refused.
    let dup = vec![machine("new-1", 1), machine("NEW-1", 2)];
    let err = store.upsert_machines(&dup, T0).await.expect_err("dup");
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert!(err.to_string().contains("more than once"), "{err}");
    assert_eq!(store.machines().await.expect("machines"), before);

    // A database constraint broken late in a large batch (a machine with
    // an empty name, in the last chunk): the earlier chunks, which changed
    // and added machines, are rolled back too.
    let mut big: Vec<Machine> = (0..5_000)
        .map(|i| machine(&format!("m{i:05}"), i))
        .collect();
    let mut changed = first[0].clone();
    changed.domain = Some("OTHER".into());
    big.insert(0, changed);
    big.push(Machine::named(""));
    let err = store
        .upsert_machines(&big, T0 + 1)
        .await
        .expect_err("fails");
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert_eq!(store.machines().await.expect("machines"), before);

    // Policies: a duplicate id or a version out of range writes nothing.
    let err = store
        .put_policies(
            &[policy(1, 1, "a"), policy(2, 1, "b"), policy(1, 2, "c")],
            T0,
        )
        .await
        .expect_err("dup");
    assert!(err.to_string().contains("two policies"), "{err}");
    let err = store
        .put_policies(&[policy(1, 1, "a"), policy(2, u64::MAX, "b")], T0)
        .await
        .expect_err("too large");
    assert!(err.to_string().contains("too large"), "{err}");
    assert!(store.policies().await.expect("policies").is_empty());
}

async fn machines_bulk(url: &str) {
    const N: u32 = 20_000;
    let store = Store::open(url).await.expect("open");
    let batch: Vec<Machine> = (0..N).map(|i| machine(&format!("WS{i:05}"), i)).collect();

    let started = Instant::now();
    let recs = store.upsert_machines(&batch, T0).await.expect("upsert");
    let insert_time = started.elapsed();
    assert_eq!(recs.len(), N as usize);
    assert!(recs.iter().all(|r| r.changed));
    assert!(recs.windows(2).all(|w| w[0].id < w[1].id));

    let started = Instant::now();
    let again = store.upsert_machines(&batch, T0 + 1).await.expect("upsert");
    let unchanged_time = started.elapsed();
    assert!(again.iter().all(|r| !r.changed));
    assert_eq!(
        again.iter().map(|r| r.id).collect::<Vec<_>>(),
        recs.iter().map(|r| r.id).collect::<Vec<_>>()
    );

    // Every tenth machine changes.
    let mut next = batch.clone();
    for m in next.iter_mut().step_by(10) {
        m.properties.insert("patched".into(), "yes".into());
    }
    let started = Instant::now();
    let third = store.upsert_machines(&next, T0 + 2).await.expect("upsert");
    let tenth_time = started.elapsed();
    assert_eq!(
        third.iter().filter(|r| r.changed).count(),
        (N as usize).div_ceil(10)
    );
    assert!(third[0].changed && !third[1].changed);
    // The updates took no ids.
    let extra = store
        .upsert_machines(&[machine("WS-EXTRA", 0)], T0 + 3)
        .await
        .expect("upsert");
    assert_eq!(extra[0].id, recs[N as usize - 1].id + 1);
    assert_eq!(
        store
            .remove_machines(&["ws-extra".into()])
            .await
            .expect("remove"),
        1
    );

    let started = Instant::now();
    let all = store.machines().await.expect("machines");
    let read_time = started.elapsed();
    assert_eq!(all.len(), N as usize);
    assert_eq!(all[0].1, next[0]);
    assert_eq!(all[N as usize - 1].1, next[N as usize - 1]);

    let keys: Vec<String> = batch.iter().map(Machine::key).collect();
    let started = Instant::now();
    assert_eq!(
        store.remove_machines(&keys).await.expect("remove"),
        N as usize
    );
    let remove_time = started.elapsed();
    assert!(store.machines().await.expect("machines").is_empty());
    eprintln!(
        "{}: {N} machines: insert {insert_time:?}, unchanged {unchanged_time:?}, \
         10% changed {tenth_time:?}, read {read_time:?}, remove {remove_time:?}",
        store.backend()
    );
    // Room to spare: unoptimised, beside other tests on 2 cores.
    let bound = Duration::from_secs(if is_sqlite(url) { 10 } else { 20 });
    for t in [
        insert_time,
        unchanged_time,
        tenth_time,
        read_time,
        remove_time,
    ] {
        assert!(t < bound, "{t:?}");
    }
}

async fn tokens_round_trip(url: &str) {
    let store = Store::open(url).await.expect("open");
    let h1 = "a".repeat(64);
    let h2 = "b".repeat(64);
    let h3 = "c".repeat(64);
    store.add_machine_token("PC01", &h1, T0).await.expect("add");
    store.add_machine_token("pc01", &h2, T0).await.expect("add");
    store.add_machine_token("pc02", &h3, T0).await.expect("add");
    // Again, for the same machine: idempotent.
    store
        .add_machine_token("pc01", &h1, T0 + 1)
        .await
        .expect("again");
    assert_eq!(
        store
            .machine_for_token(&h1)
            .await
            .expect("lookup")
            .as_deref(),
        Some("pc01")
    );
    assert_eq!(
        store
            .machine_for_token(&h3)
            .await
            .expect("lookup")
            .as_deref(),
        Some("pc02")
    );
    assert_eq!(
        store.machine_for_token("unknown").await.expect("lookup"),
        None
    );

    // The same hash for another machine is refused, without showing it.
    let err = store
        .add_machine_token("pc02", &h1, T0)
        .await
        .expect_err("taken");
    assert!(err.to_string().contains("another machine"), "{err}");
    assert!(!format!("{err} {err:?}").contains(&h1), "{err:?}");

    assert_eq!(
        store
            .revoke_machine_tokens("PC01", T0 + 2)
            .await
            .expect("revoke"),
        2
    );
    assert_eq!(
        store
            .revoke_machine_tokens("pc01", T0 + 3)
            .await
            .expect("revoke"),
        0
    );
    assert_eq!(store.machine_for_token(&h1).await.expect("lookup"), None);
    assert_eq!(store.machine_for_token(&h2).await.expect("lookup"), None);
    assert_eq!(
        store
            .machine_for_token(&h3)
            .await
            .expect("lookup")
            .as_deref(),
        Some("pc02")
    );
    // A revoked token stays revoked.
    let err = store
        .add_machine_token("pc01", &h1, T0 + 4)
        .await
        .expect_err("revoked");
    assert!(err.to_string().contains("revoked"), "{err}");
    assert!(!format!("{err} {err:?}").contains(&h1), "{err:?}");
    assert_eq!(store.machine_for_token(&h1).await.expect("lookup"), None);
    // A new token for the machine works.
    store
        .add_machine_token("pc01", &h3.replace('c', "d"), T0 + 5)
        .await
        .expect("add");
    assert_eq!(
        store
            .machine_for_token(&"d".repeat(64))
            .await
            .expect("lookup")
            .as_deref(),
        Some("pc01")
    );
}

async fn policies_round_trip(url: &str) {
    let store = Store::open(url).await.expect("open");
    assert!(store.policies().await.expect("policies").is_empty());
    let p = [
        policy(7, 1, r#"{"ads":["A"]}"#),
        policy(3, 1, "{}"),
        policy(u32::MAX, i64::MAX as u64, "Grüße ✓\n"),
    ];
    assert_eq!(store.put_policies(&p, T0).await.expect("put"), 3);
    assert_eq!(
        store.policies().await.expect("policies"),
        vec![p[1].clone(), p[0].clone(), p[2].clone()]
    );
    assert_eq!(store.policy(7).await.expect("policy"), Some(p[0].clone()));
    assert_eq!(store.policy(8).await.expect("policy"), None);

    // The same again writes nothing; a new version writes one.
    assert_eq!(store.put_policies(&p, T0 + 1).await.expect("put"), 0);
    let p7 = policy(7, 2, r#"{"ads":["A","B"]}"#);
    assert_eq!(
        store
            .put_policies(&[p7.clone(), p[1].clone()], T0 + 2)
            .await
            .expect("put"),
        1
    );
    assert_eq!(store.policy(7).await.expect("policy"), Some(p7));

    assert_eq!(store.remove_policies(&[7, 7, 99]).await.expect("remove"), 1);
    assert_eq!(store.policy(7).await.expect("policy"), None);
    assert_eq!(store.remove_policies(&[]).await.expect("remove"), 0);
    assert_eq!(store.put_policies(&[], T0).await.expect("put"), 0);
    assert_eq!(store.policies().await.expect("policies").len(), 2);
}

async fn policies_bulk(url: &str) {
    const N: u32 = 20_000;
    let store = Store::open(url).await.expect("open");
    let body = format!(r#"{{"advertisements":["{}"]}}"#, "ADV00001".repeat(20));
    let batch: Vec<StoredPolicy> = (1..=N).map(|id| policy(id, 1, &body)).collect();
    let started = Instant::now();
    assert_eq!(
        store.put_policies(&batch, T0).await.expect("put"),
        N as usize
    );
    let put_time = started.elapsed();

    let started = Instant::now();
    assert_eq!(store.put_policies(&batch, T0 + 1).await.expect("put"), 0);
    let same_time = started.elapsed();

    let next: Vec<StoredPolicy> = (1..=N).map(|id| policy(id, 2, &body)).collect();
    let started = Instant::now();
    assert_eq!(
        store.put_policies(&next, T0 + 2).await.expect("put"),
        N as usize
    );
    let update_time = started.elapsed();

    let started = Instant::now();
    let all = store.policies().await.expect("policies");
    let read_time = started.elapsed();
    assert_eq!(all, next);

    // Status messages in bulk too.
    let msgs: Vec<StatusMessage> = (0..N)
        .map(|i| {
            status(
                &format!("k{i}"),
                &format!("ws{:05}", i % 1000),
                T0 + i64::from(i),
            )
        })
        .collect();
    let started = Instant::now();
    assert_eq!(
        store.insert_status(&msgs).await.expect("status"),
        N as usize
    );
    let status_time = started.elapsed();
    assert_eq!(store.insert_status(&msgs).await.expect("status"), 0);
    eprintln!(
        "{}: {N} policies: put {put_time:?}, unchanged {same_time:?}, update {update_time:?}, \
         read {read_time:?}; {N} status messages: {status_time:?}",
        store.backend()
    );
    let bound = Duration::from_secs(if is_sqlite(url) { 10 } else { 20 });
    for t in [put_time, same_time, update_time, read_time, status_time] {
        assert!(t < bound, "{t:?}");
    }
}

async fn status_exactly_once(url: &str) {
    let store = Store::open(url).await.expect("open");
    let mut failed = status("k3", "PC01", T0 + 30);
    failed.state = AssignmentState::Failed;
    failed.exit_code = Some(-2_147_024_894);
    let mut running = status("k2", "pc01", T0 + 20);
    running.exit_code = None;
    running.message = String::new();
    let batch = vec![
        status("k1", "pc01", T0 + 10),
        running.clone(),
        status("k1", "pc01", T0 + 99), // the same key again in the batch
        status("other", "pc02", T0),
    ];
    assert_eq!(store.insert_status(&batch).await.expect("insert"), 3);
    // A retry of a delivered batch, with one new message.
    let retry = vec![
        status("k1", "pc01", T0 + 10),
        running.clone(),
        failed.clone(),
    ];
    assert_eq!(store.insert_status(&retry).await.expect("insert"), 1);
    assert_eq!(store.insert_status(&retry).await.expect("insert"), 0);
    assert_eq!(store.insert_status(&[]).await.expect("insert"), 0);
    // Keys are per machine: pc02's "k1" is not pc01's.
    assert_eq!(
        store
            .insert_status(&[status("k1", "PC02", T0 + 1)])
            .await
            .expect("insert"),
        1
    );

    let mut lowered = failed.clone();
    lowered.machine_key = "pc01".into();
    let got = store.status_for_machine("PC01", 10).await.expect("status");
    assert_eq!(
        got,
        vec![lowered.clone(), running, status("k1", "pc01", T0 + 10)]
    );
    assert_eq!(
        store.status_for_machine("pc01", 1).await.expect("status"),
        vec![lowered]
    );
    assert!(store
        .status_for_machine("pc01", 0)
        .await
        .expect("status")
        .is_empty());
    assert!(store
        .status_for_machine("nope", 10)
        .await
        .expect("status")
        .is_empty());
    assert_eq!(
        store
            .status_for_machine("pc02", 10)
            .await
            .expect("status")
            .len(),
        2
    );
}

/// Several callers' batches in one transaction: counted per batch, a key
/// stored by an earlier batch is a duplicate in a later one.
async fn status_batches_in_one_commit(url: &str) {
    let store = Store::open(url).await.expect("open");
    assert_eq!(
        store
            .insert_status(&[status("a1", "pc01", T0)])
            .await
            .expect("insert"),
        1
    );
    let first = vec![status("a1", "pc01", T0), status("a2", "pc01", T0 + 1)];
    let second = vec![
        status("b1", "PC02", T0 + 2),
        status("a2", "pc01", T0 + 1), // stored by the first batch just now
        status("b2", "pc02", T0 + 3),
    ];
    let empty: Vec<StatusMessage> = Vec::new();
    let counts = store
        .insert_status_batches(&[&first, &empty, &second])
        .await
        .expect("insert");
    assert_eq!(counts, vec![1, 0, 2]);
    assert_eq!(
        store.insert_status_batches(&[]).await.expect("insert"),
        Vec::<usize>::new()
    );
    let keys = |msgs: Vec<StatusMessage>| {
        let mut k: Vec<String> = msgs.into_iter().map(|m| m.key).collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(store.status_for_machine("pc01", 10).await.expect("status")),
        ["a1", "a2"]
    );
    assert_eq!(
        keys(store.status_for_machine("pc02", 10).await.expect("status")),
        ["b1", "b2"]
    );
}

/// Registrations in one transaction: each revokes its machine's tokens
/// and adds its own; a refused one leaves the whole call unwritten.
async fn issued_tokens_replace_old_ones(url: &str) {
    let store = Store::open(url).await.expect("open");
    let hash = |c: char| c.to_string().repeat(64);
    store
        .add_machine_token("pc01", &hash('a'), T0)
        .await
        .expect("add");
    store
        .add_machine_token("pc02", &hash('b'), T0)
        .await
        .expect("add");
    store
        .issue_machine_tokens(
            &[
                ("PC01".to_string(), hash('c')),
                ("pc03".to_string(), hash('d')),
                // The same machine twice: the later token wins.
                ("pc01".to_string(), hash('e')),
            ],
            T0 + 1,
        )
        .await
        .expect("issue");
    let owner = |h: String| {
        let store = &store;
        async move { store.machine_for_token(&h).await.expect("lookup") }
    };
    assert_eq!(owner(hash('a')).await, None);
    assert_eq!(owner(hash('c')).await, None);
    assert_eq!(owner(hash('e')).await.as_deref(), Some("pc01"));
    assert_eq!(owner(hash('d')).await.as_deref(), Some("pc03"));
    assert_eq!(owner(hash('b')).await.as_deref(), Some("pc02"));

    // The second pair names a token of another machine: nothing is written,
    // not even the first pair's revocation.
    let err = store
        .issue_machine_tokens(
            &[
                ("pc02".to_string(), hash('f')),
                ("pc04".to_string(), hash('d')),
            ],
            T0 + 2,
        )
        .await
        .expect_err("taken");
    assert!(err.to_string().contains("another machine"), "{err}");
    assert!(!format!("{err} {err:?}").contains(&hash('d')), "{err:?}");
    assert_eq!(owner(hash('b')).await.as_deref(), Some("pc02"));
    assert_eq!(owner(hash('f')).await, None);
    assert_eq!(owner(hash('d')).await.as_deref(), Some("pc03"));
}

/// A store made by a patchops that knew only migration 1 is upgraded at
/// open, its state kept.
/// Makes the store at `url` with the first `version` migrations only, as
/// an older patchops left it.
async fn store_at_version(url: &str, version: usize) {
    let migrations = if is_sqlite(url) {
        &SQLITE_MIGRATIONS[..version]
    } else {
        &POSTGRES_MIGRATIONS[..version]
    };
    if is_sqlite(url) {
        let opts = SqliteConnectOptions::from_str(url)
            .expect("sqlite url")
            .create_if_missing(true);
        let mut c = SqliteConnection::connect_with(&opts)
            .await
            .expect("connect");
        migrator(migrations).run(&mut c).await.expect("migrate");
        c.close().await.expect("close");
    } else {
        let mut c = PgConnection::connect(url).await.expect("connect");
        migrator(migrations).run(&mut c).await.expect("migrate");
        c.close().await.expect("close");
    }
}

async fn version_1_store_is_upgraded(url: &str) {
    store_at_version(url, 1).await;
    exec_raw(url, "UPDATE patchops_state SET serial = 5, site = 'S01'").await;
    let store = Store::open(url).await.expect("open");
    let info = store.info().await.expect("info");
    assert_eq!((info.serial, info.site.as_deref()), (5, Some("S01")));
    let recs = store
        .upsert_machines(&[machine("PC01", 1)], T0)
        .await
        .expect("upsert");
    assert_eq!(recs[0].id, 1);
}

// ---- SQLite only -------------------------------------------------------

#[tokio::test]
async fn garbage_file_is_not_a_store_and_stays_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("patchops.db");
    let mut garbage: Vec<u8> = b"#!/bin/sh\necho this is not a database\n".repeat(40);
    garbage.extend((0..=255u8).cycle().take(5000));
    std::fs::write(&path, &garbage).expect("write");
    let url = format!("sqlite://{}", path.display());
    let err = Store::open(&url).await.expect_err("garbage");
    assert!(matches!(err, StoreError::NotAStateStore { .. }), "{err:?}");
    assert!(
        err.to_string().contains("is not a patchops state store"),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).expect("read"), garbage);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");

    // A SQLite header followed by garbage: refused too, also unchanged.
    let mut fake = b"SQLite format 3\0".to_vec();
    fake.extend(std::iter::repeat_n(0xA5u8, 8192));
    std::fs::write(&path, &fake).expect("write");
    let err = Store::open(&url).await.expect_err("corrupt");
    assert!(matches!(err, StoreError::NotAStateStore { .. }), "{err:?}");
    assert_eq!(std::fs::read(&path).expect("read"), fake);

    // A directory.
    let err = Store::open(&format!("sqlite://{}", dir.path().display()))
        .await
        .expect_err("dir");
    assert!(matches!(err, StoreError::NotAStateStore { .. }), "{err:?}");
}

#[tokio::test]
async fn sqlite_mode_ro_url_refuses_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("patchops.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::open(&url).await.expect("open");
    store
        .commit(
            0,
            None,
            &[up(&new_object("Package", "a", "{}"))],
            &record("apply", 1),
        )
        .await
        .expect("commit");
    store.close().await;

    let ro = Store::open(&format!("{url}?mode=ro"))
        .await
        .expect("open ro");
    assert!(ro.is_read_only());
    assert_eq!(ro.objects().await.expect("objects").len(), 1);
    let err = ro
        .commit(1, None, &[], &record("apply", 2))
        .await
        .expect_err("read-only");
    assert!(matches!(err, StoreError::ReadOnly { .. }), "{err:?}");

    // Read-only never creates.
    let missing = format!(
        "sqlite://{}?mode=ro",
        dir.path().join("missing.db").display()
    );
    assert!(Store::open(&missing).await.is_err());
    assert!(!dir.path().join("missing.db").exists());
}

#[tokio::test]
async fn sqlite_new_file_and_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A new file in an existing directory is created, WAL mode.
    let path = dir.path().join("new.db");
    let store = Store::open(&format!("sqlite:{}", path.display()))
        .await
        .expect("open");
    assert!(path.exists());
    store.close().await;
    let mut c = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("connect");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut c)
        .await
        .expect("pragma");
    assert_eq!(mode, "wal");
    c.close().await.expect("close");

    // An empty (0-byte) file is not made a store: it is refused, by name,
    // and left as it was.
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").expect("write");
    let err = Store::open(&format!("sqlite://{}", empty.display()))
        .await
        .expect_err("empty file");
    assert!(
        matches!(err, StoreError::NotAStateStore { .. })
            && err.to_string().contains(&empty.display().to_string())
            && err.to_string().contains("empty file (0 bytes)"),
        "{err}"
    );
    assert_eq!(std::fs::metadata(&empty).expect("kept").len(), 0);

    // A missing directory is a clear error.
    let err = Store::open(&format!(
        "sqlite://{}/no/such/dir/x.db",
        dir.path().display()
    ))
    .await
    .expect_err("no dir");
    assert!(err.to_string().contains("does not exist"), "{err}");

    // In memory: each open is a store of its own.
    let m1 = Store::open("sqlite::memory:").await.expect("memory");
    let m2 = Store::open("sqlite::memory:").await.expect("memory");
    m1.commit(
        0,
        None,
        &[up(&new_object("Package", "a", "{}"))],
        &record("apply", 1),
    )
    .await
    .expect("commit");
    assert_eq!(m1.objects().await.expect("objects").len(), 1);
    assert!(m2.objects().await.expect("objects").is_empty());
    assert_ne!(
        m1.info().await.expect("info").store_id,
        m2.info().await.expect("info").store_id
    );
}

// ---- PostgreSQL only ---------------------------------------------------

#[tokio::test]
async fn unreachable_postgres_fails_fast() {
    let started = Instant::now();
    let err = Store::open("postgres://postgres@127.0.0.1:1/x")
        .await
        .expect_err("unreachable");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "cannot reach the state store postgres://postgres@127.0.0.1:1/x: connection refused"
    );

    let err = Store::open("postgres://postgres:hunter2@127.0.0.1:1/x")
        .await
        .expect_err("unreachable");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("postgres:***@127.0.0.1:1/x"), "{shown}");
}

#[tokio::test]
async fn postgres_password_never_shown() {
    let (url, _db) = testing::fresh_postgres_url().await;
    // Trust authentication ignores the password, so this opens.
    let with_password = url.replacen("://postgres@", "://postgres:s3cr%40t-pw@", 1);
    assert_ne!(with_password, url, "test URL has no user: {url}");
    let store = Store::open(&with_password).await.expect("open");
    let shown = store.display_url();
    assert!(shown.contains("postgres:***@"), "{shown}");
    for text in [shown, format!("{store:?}")] {
        assert!(!text.contains("s3cr"), "{text}");
        assert!(!text.contains("t-pw"), "{text}");
    }
    // A database that does not exist: unreachable, with the reason.
    let missing = testing::with_database(&with_password, "patchops_no_such_db");
    let err = Store::open(&missing).await.expect_err("no such database");
    assert!(
        matches!(&err, StoreError::Unreachable { reason, .. } if reason.contains("does not exist")),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("s3cr"), "{err:?}");
}

#[tokio::test]
async fn postgres_nul_byte_is_an_error_not_a_panic() {
    let (url, _db) = testing::fresh_postgres_url().await;
    let store = Store::open(&url).await.expect("open");
    let err = store
        .commit(
            0,
            None,
            &[up(&new_object("Package", "a", "{\"x\":\"\0\"}"))],
            &record("apply", 1),
        )
        .await
        .expect_err("NUL");
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert_eq!(store.info().await.expect("info").serial, 0);
}

/// The server drops every connection (as a restart does): the pool notices
/// on the next use and connects again.
#[tokio::test]
async fn postgres_pool_recovers_after_connections_are_killed() {
    let (url, db) = testing::fresh_postgres_url().await;
    let store = Store::open(&url).await.expect("open");
    store
        .upsert_machines(&[machine("PC01", 1)], T0)
        .await
        .expect("upsert");
    // Several pooled connections, all idle now.
    let (a, b, c) = tokio::join!(store.ping(), store.machines(), store.policies());
    a.expect("ping");
    b.expect("machines");
    c.expect("policies");

    let admin = testing::with_database(&url, "postgres");
    let mut conn = PgConnection::connect(&admin).await.expect("admin");
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
    )
    .bind(db.name())
    .fetch_all(&mut conn)
    .await
    .expect("terminate");
    conn.close().await.expect("close");
    assert!(!killed.is_empty());

    let started = Instant::now();
    store.ping().await.expect("ping after the kill");
    assert_eq!(store.machines().await.expect("machines").len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A database that goes away after open: an error within the connect
/// timeout, never a hang.
#[tokio::test]
async fn postgres_gone_database_fails_fast() {
    let (url, db) = testing::fresh_postgres_url().await;
    let store = Store::open(&url).await.expect("open");
    store.ping().await.expect("ping");
    let admin = testing::with_database(&url, "postgres");
    let mut conn = PgConnection::connect(&admin).await.expect("admin");
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE {} WITH (FORCE)",
        db.name()
    )))
    .execute(&mut conn)
    .await
    .expect("drop");
    conn.close().await.expect("close");

    let started = Instant::now();
    let err = store.ping().await.expect_err("gone");
    assert!(
        started.elapsed() < CONNECT_TIMEOUT + Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    let err = store.machines().await.expect_err("gone");
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
}

// ---- No database -------------------------------------------------------

#[tokio::test]
async fn bad_urls() {
    for url in [
        "",
        "patchops.db",
        "mysql://root@localhost/x",
        "http://example.invalid/",
        "sqlite://x.db?bogus=1",
        "sqlite://",
        "SQLite://x.db",
        "postgres://u@host:notaport/db",
    ] {
        let err = Store::open(url).await.expect_err(url);
        assert!(matches!(err, StoreError::BadUrl(_)), "{url}: {err:?}");
        assert!(err.to_string().starts_with("bad state store URL"), "{err}");
    }
    let err = Store::open("mysql://root:pw123@localhost/x")
        .await
        .expect_err("bad");
    assert!(!format!("{err} {err:?}").contains("pw123"), "{err:?}");
}

#[test]
fn rfc3339_rendering() {
    assert_eq!(rfc3339_from_epoch_ms(0), "1970-01-01T00:00:00Z");
    assert_eq!(
        rfc3339_from_epoch_ms(951_782_400_000),
        "2000-02-29T00:00:00Z"
    );
    assert_eq!(
        rfc3339_from_epoch_ms(1_774_085_405_999),
        "2026-03-21T09:30:05Z"
    );
    assert_eq!(rfc3339_from_epoch_ms(-1), "1969-12-31T23:59:59Z");
    // Never panics.
    let _ = rfc3339_from_epoch_ms(i64::MAX);
    let _ = rfc3339_from_epoch_ms(i64::MIN);
}

#[test]
fn owner_text() {
    assert_eq!(Owner::Patchops.as_str(), "patchops");
    assert_eq!("unmanaged".parse::<Owner>(), Ok(Owner::Unmanaged));
    assert!("root".parse::<Owner>().is_err());
}

#[test]
fn test_database_url() {
    assert_eq!(
        testing::with_database("postgres://postgres@127.0.0.1:5432", "t1"),
        "postgres://postgres@127.0.0.1:5432/t1"
    );
    assert_eq!(
        testing::with_database("postgres://u:p/w@h:1/old?sslmode=disable", "t1"),
        "postgres://u:p/w@h:1/t1?sslmode=disable"
    );
}

async fn latest_status_per_machine_and_advertisement(url: &str) {
    let store = Store::open(url).await.expect("open");
    let message = |key: &str, machine: &str, ad: &str, state: &str, at: i64| StatusMessage {
        advertisement: ad.into(),
        state: state.parse().expect("a state"),
        ..status(key, machine, T0 + at)
    };
    store
        .insert_status(&[
            message("a1", "pc01", "ADV-A", "running", 10),
            message("a2", "pc01", "ADV-A", "succeeded", 20),
            message("a3", "pc02", "ADV-A", "failed", 5),
            message("b1", "pc01", "ADV-B", "downloading", 30),
            // Arrives late, but happened first: not the newest.
            message("a0", "pc02", "ADV-A", "accepted", 1),
        ])
        .await
        .expect("insert");
    let summary = |v: Vec<StatusMessage>| {
        v.into_iter()
            .map(|m| format!("{} {} {}", m.advertisement, m.machine_key, m.state))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        summary(store.latest_status(None).await.expect("latest")),
        [
            "ADV-A pc01 succeeded",
            "ADV-A pc02 failed",
            "ADV-B pc01 downloading"
        ]
    );
    assert_eq!(
        summary(store.latest_status(Some("ADV-B")).await.expect("latest")),
        ["ADV-B pc01 downloading"]
    );
    assert!(store
        .latest_status(Some("none"))
        .await
        .expect("latest")
        .is_empty());
}

fn catalog(url: &str, n: u8, fetched_ms: i64) -> CatalogVersion {
    let bytes: Vec<u8> = (0..=255u8).chain([0, n]).collect();
    CatalogVersion {
        id: None,
        url: url.into(),
        kind: "security".into(),
        sha256: format!("{n:064x}"),
        etag: n.is_multiple_of(2).then(|| format!("\"v{n}\"")),
        last_modified: Some("Tue, 14 Nov 2006 18:00:00 GMT".into()),
        fetched_ms,
        size: bytes.len() as u64,
        bytes,
        summary: format!("MS06-0{n:02} rev 1\n"),
        diff: format!("+ MS06-0{n:02} rev 1\n"),
    }
}

async fn catalog_versions_round_trip(url: &str) {
    let store = Store::open(url).await.unwrap();
    let a = "http://catalog/mssecure.xml";
    let b = "http://catalog/invcif.xml";
    assert_eq!(store.latest_catalog(a).await.unwrap(), None);
    assert!(store.catalog_versions(a, 10).await.unwrap().is_empty());

    let v1 = catalog(a, 1, 1_000);
    let v2 = catalog(a, 2, 2_000);
    let other = catalog(b, 3, 3_000);
    let id1 = store.put_catalog_version(&v1).await.unwrap();
    let id2 = store.put_catalog_version(&v2).await.unwrap();
    let id3 = store.put_catalog_version(&other).await.unwrap();
    assert!(id1 < id2 && id2 < id3);

    // The newest, with its bytes (binary, NUL included, round-trips).
    let latest = store.latest_catalog(a).await.unwrap().unwrap();
    assert_eq!(
        latest,
        CatalogVersion {
            id: Some(id2),
            ..v2.clone()
        }
    );
    assert_eq!(
        store.latest_catalog(b).await.unwrap().unwrap().id,
        Some(id3)
    );

    // Listings: newest first, limited, without bytes.
    let list = store.catalog_versions(a, 10).await.unwrap();
    assert_eq!(
        list,
        vec![
            CatalogVersion {
                id: Some(id2),
                bytes: Vec::new(),
                ..v2.clone()
            },
            CatalogVersion {
                id: Some(id1),
                bytes: Vec::new(),
                ..v1.clone()
            },
        ]
    );
    assert_eq!(store.catalog_versions(a, 1).await.unwrap().len(), 1);
    assert!(store.catalog_versions(a, 0).await.unwrap().is_empty());
    assert_eq!(list[0].size, 258);
    store.close().await;

    // Kept across reopening.
    let store = Store::open(url).await.unwrap();
    assert_eq!(
        store.latest_catalog(a).await.unwrap().unwrap().id,
        Some(id2)
    );
    store.close().await;
}

async fn sync_status_counts_failures(url: &str) {
    let store = Store::open(url).await.unwrap();
    assert!(store.sync_status().await.unwrap().is_empty());
    let a = "http://catalog/mssecure.xml";
    let attempt = |at_ms: i64, error: Option<&str>, next: i64| SyncAttempt {
        url: a.into(),
        kind: "security".into(),
        at_ms,
        error: error.map(str::to_string),
        next_attempt_ms: next,
    };

    // A first attempt that fails: no success yet.
    let s = store
        .record_sync_attempt(&attempt(1_000, Some("connection refused"), 61_000))
        .await
        .unwrap();
    assert_eq!(
        s,
        SyncStatus {
            url: a.into(),
            kind: "security".into(),
            last_attempt_ms: 1_000,
            last_success_ms: None,
            last_error: Some("connection refused".into()),
            consecutive_failures: 1,
            next_attempt_ms: 61_000,
        }
    );
    // A success clears the error and the count.
    let s = store
        .record_sync_attempt(&attempt(2_000, None, 86_402_000))
        .await
        .unwrap();
    assert_eq!(s.last_success_ms, Some(2_000));
    assert_eq!(s.last_error, None);
    assert_eq!(s.consecutive_failures, 0);
    // Failures count up and keep the last success.
    for (i, at) in [3_000, 4_000, 5_000].into_iter().enumerate() {
        let s = store
            .record_sync_attempt(&attempt(at, Some("HTTP 500"), at + 60_000))
            .await
            .unwrap();
        assert_eq!(s.consecutive_failures, i as u32 + 1);
        assert_eq!(s.last_success_ms, Some(2_000));
        assert_eq!(s.last_attempt_ms, at);
    }
    let b = SyncAttempt {
        url: "http://catalog/invcif.xml".into(),
        kind: "office".into(),
        ..attempt(6_000, None, 7_000)
    };
    store.record_sync_attempt(&b).await.unwrap();
    let all = store.sync_status().await.unwrap();
    assert_eq!(
        all.iter().map(|s| s.url.as_str()).collect::<Vec<_>>(),
        vec!["http://catalog/invcif.xml", a]
    );
    assert_eq!(all[1].consecutive_failures, 3);
    assert_eq!(all[1].last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(all[1].next_attempt_ms, 65_000);
    store.close().await;
}

static Q_NUMBERS: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(|| vec!["Q300972".into(), "Q216453 (FP98)".into()]);

fn patch_state<'a>(
    bulletin: &'a str,
    product: Option<&'a str>,
    status: crate::applicability::Status,
) -> crate::applicability::PatchState<'a> {
    crate::applicability::PatchState {
        bulletin,
        q_numbers: &Q_NUMBERS,
        title: Some("Unchecked buffer"),
        product,
        status,
        reboot: crate::applicability::Reboot::Required,
        scan_agent: "patchops-mssecure",
        scan_time: jiff::Timestamp::from_millisecond(T0).unwrap(),
        patch: product.map(|_| "Q300972i.exe"),
        reason: "idq.dll not found".into(),
        superseded_by: &[],
        supported: true,
    }
}

async fn patch_states_replace_per_machine(url: &str) {
    use crate::applicability::Status;
    let store = Store::open(url).await.unwrap();
    assert!(store.patch_states(None).await.unwrap().is_empty());
    let pc01 = vec![
        patch_state(
            "MS01-033",
            Some("Internet Information Server 4.0"),
            Status::Missing,
        ),
        patch_state("MS01-033", Some("Index Server 2.0"), Status::Installed),
        patch_state("MS98-001", None, Status::NotApplicable),
        // A repeated key keeps the first row.
        patch_state("MS98-001", None, Status::Unknown),
    ];
    assert_eq!(put_patch_states(&store, "PC01", &pc01).await.unwrap(), 3);
    assert_eq!(
        put_patch_states(
            &store,
            "pc02",
            &[patch_state("MS01-033", None, Status::NotApplicable)]
        )
        .await
        .unwrap(),
        1
    );
    let got = store.patch_states(Some("pc01")).await.unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0], pc01[1].stored("PC01"));
    assert_eq!(got[0].machine_key, "pc01");
    assert_eq!(got[0].q_numbers, vec!["Q300972", "Q216453 (FP98)"]);
    assert_eq!(got[2].product, None);
    assert_eq!(got[2].status, "notApplicable");
    assert_eq!(store.patch_states(None).await.unwrap().len(), 4);

    // A new scan replaces all of the machine's states, not the others'.
    let rescan = vec![patch_state(
        "MS01-033",
        Some("Internet Information Server 4.0"),
        Status::Installed,
    )];
    assert_eq!(put_patch_states(&store, "pc01", &rescan).await.unwrap(), 1);
    let got = store.patch_states(Some("PC01")).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].status, "installed");
    assert_eq!(store.patch_states(Some("pc02")).await.unwrap().len(), 1);

    // A batch of machines in one transaction; a row of another machine
    // refuses the whole batch.
    let rows = vec![rescan[0].stored("pc03"), rescan[0].stored("pc04")];
    let machines = vec!["PC03".to_string(), "pc04".to_string()];
    assert_eq!(
        store.replace_patch_states(&machines, &rows).await.unwrap(),
        2
    );
    let stray = vec![rescan[0].stored("pc05")];
    assert!(store.replace_patch_states(&machines, &stray).await.is_err());
    assert_eq!(store.patch_states(None).await.unwrap().len(), 4);
}

/// Replaces one machine's patch states with an engine's states, as a scan
/// of that machine writes them.
async fn put_patch_states(
    store: &Store,
    machine: &str,
    states: &[crate::applicability::PatchState<'_>],
) -> Result<usize, StoreError> {
    let rows: Vec<StoredPatchState> = states.iter().map(|s| s.stored(machine)).collect();
    store
        .replace_patch_states(&[machine_key(machine)], &rows)
        .await
}

async fn patch_states_replace_per_scan_agent(url: &str) {
    use crate::applicability::Status;
    let store = Store::open(url).await.unwrap();
    let office = |bulletin: &str, product: Option<&str>, status: Status| {
        let mut row = patch_state(bulletin, product, status).stored("pc01");
        row.bulletin = bulletin.to_string();
        row.scan_agent = "patchops-office".into();
        row
    };
    let security = |bulletin: &'static str, product: Option<&'static str>, status: Status| {
        patch_state(bulletin, product, status).stored("pc01")
    };
    let pc01 = vec!["pc01".to_string()];
    // A security scan, then an Office scan of the same machine.
    let rows = vec![
        security(
            "MS01-033",
            Some("Internet Information Server 4.0"),
            Status::Missing,
        ),
        security("MS03-050", None, Status::NotApplicable),
    ];
    assert_eq!(
        store
            .replace_scan_states(&pc01, "patchops-mssecure", &rows)
            .await
            .unwrap(),
        2
    );
    // The Office catalog names MS03-050 too: its row stands, over the
    // security scan's (same machine, bulletin and product).
    let rows = vec![
        office("MS03-050", None, Status::NotApplicable),
        office("OFF-001", Some("Office XP"), Status::Installed),
    ];
    assert_eq!(
        store
            .replace_scan_states(&pc01, "patchops-office", &rows)
            .await
            .unwrap(),
        2
    );
    let got = store.patch_states(Some("pc01")).await.unwrap();
    let agents: Vec<(&str, &str)> = got
        .iter()
        .map(|r| (r.bulletin.as_str(), r.scan_agent.as_str()))
        .collect();
    assert_eq!(
        agents,
        vec![
            ("MS01-033", "patchops-mssecure"),
            ("MS03-050", "patchops-office"),
            ("OFF-001", "patchops-office"),
        ]
    );
    // A new security scan replaces only the security states.
    let rows = vec![security(
        "MS01-033",
        Some("Internet Information Server 4.0"),
        Status::Installed,
    )];
    assert_eq!(
        store
            .replace_scan_states(&pc01, "patchops-mssecure", &rows)
            .await
            .unwrap(),
        1
    );
    let got = store.patch_states(Some("pc01")).await.unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].status, "installed");
    assert_eq!(got[2].bulletin, "OFF-001");
    // A row of another scan agent in the report refuses it whole.
    let mixed = vec![
        security(
            "MS01-033",
            Some("Internet Information Server 4.0"),
            Status::Missing,
        ),
        office("OFF-001", Some("Office XP"), Status::Missing),
    ];
    let e = store
        .replace_scan_states(&pc01, "patchops-mssecure", &mixed)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("scan agent `patchops-office`"),
        "{e}"
    );
    assert_eq!(store.patch_states(Some("pc01")).await.unwrap(), got);
    // An empty report leaves the machine none of that agent's states.
    store
        .replace_scan_states(&pc01, "patchops-office", &[])
        .await
        .unwrap();
    let got = store.patch_states(Some("pc01")).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].scan_agent, "patchops-mssecure");
}

async fn reconcile_status_only_from_the_leader(url: &str) {
    let store = Store::open(url).await.expect("open");
    assert_eq!(store.reconcile_status().await.expect("read"), None);
    let attempt = |status: &str, result: &str, at_ms: i64| ReconcileAttempt {
        status: status.parse().expect("a status"),
        result: result.parse().expect("a result"),
        message: (status != "ok").then(|| format!("{result} at {at_ms}")),
        problems: Vec::new(),
        revision: Some(format!("rev-{at_ms}")),
        applied_serial: (result == "applied").then_some(at_ms / 1000),
        at_ms,
        host: "sms01".into(),
        pid: 4242,
    };
    // Without the leader lease nothing is written.
    assert!(!store
        .record_reconcile("A", &attempt("ok", "applied", 1_000))
        .await
        .expect("record"));
    assert_eq!(store.reconcile_status().await.expect("read"), None);
    let minute = Duration::from_secs(60);
    assert!(store
        .try_lease(LEADER_LEASE, &lock_request("A", minute))
        .await
        .expect("lease"));
    assert!(store
        .record_reconcile("A", &attempt("ok", "applied", 1_000))
        .await
        .expect("record"));
    let r = store.reconcile_status().await.expect("read").expect("row");
    assert_eq!((r.status.as_str(), r.result.as_str()), ("ok", "applied"));
    assert_eq!(
        (r.since_ms, r.failures, r.last_success_ms),
        (1_000, 0, Some(1_000))
    );
    assert_eq!(
        (r.last_apply_ms, r.last_apply_serial),
        (Some(1_000), Some(1))
    );
    assert_eq!(r.last_apply_revision.as_deref(), Some("rev-1000"));
    assert_eq!((r.host.as_str(), r.pid), ("sms01", 4242));

    // Unchanged: still ok since the first; the last apply stays.
    store
        .record_reconcile("A", &attempt("ok", "unchanged", 2_000))
        .await
        .expect("record");
    // Two invalid ones: error since the first of them, counted; the last
    // success and apply are kept.
    let mut invalid = attempt("error", "invalid", 3_000);
    invalid.problems = vec![ReconcileProblem {
        code: "yaml-syntax".into(),
        message: "did not find expected node content".into(),
        file: Some("office/package.yaml".into()),
        line: Some(3),
        column: Some(11),
        path: None,
    }];
    store.record_reconcile("A", &invalid).await.expect("record");
    store
        .record_reconcile("A", &attempt("error", "failed", 4_000))
        .await
        .expect("record");
    let r = store.reconcile_status().await.expect("read").expect("row");
    assert_eq!((r.status.as_str(), r.result.as_str()), ("error", "failed"));
    assert_eq!(r.message.as_deref(), Some("failed at 4000"));
    assert_eq!((r.attempt_ms, r.since_ms, r.failures), (4_000, 3_000, 2));
    assert_eq!(r.last_success_ms, Some(2_000));
    assert_eq!(
        (r.last_apply_ms, r.last_apply_serial),
        (Some(1_000), Some(1))
    );
    assert_eq!(r.last_apply_revision.as_deref(), Some("rev-1000"));
    assert_eq!(r.revision.as_deref(), Some("rev-4000"));
    assert!(r.problems.is_empty(), "the last attempt's problems only");
    store.record_reconcile("A", &invalid).await.expect("record");
    let r = store.reconcile_status().await.expect("read").expect("row");
    assert_eq!(r.problems, invalid.problems);
    assert_eq!(
        r.problems[0].to_string(),
        "error[yaml-syntax] office/package.yaml:3:11: did not find expected node content"
    );

    // Another server that does not lead writes nothing.
    assert!(!store
        .record_reconcile("B", &attempt("ok", "applied", 5_000))
        .await
        .expect("record"));
    // Fixed: ok again, failures cleared, a new apply.
    store
        .record_reconcile("A", &attempt("ok", "applied", 6_000))
        .await
        .expect("record");
    let r = store.reconcile_status().await.expect("read").expect("row");
    assert_eq!(
        (r.status.as_str(), r.since_ms, r.failures),
        ("ok", 6_000, 0)
    );
    assert_eq!(r.message, None);
    assert_eq!(
        (r.last_apply_serial, r.last_success_ms),
        (Some(6), Some(6_000))
    );

    // An expired lease is no leadership.
    assert!(store
        .release_lease(LEADER_LEASE, "A")
        .await
        .expect("release"));
    assert!(store
        .try_lease(LEADER_LEASE, &lock_request("S", Duration::from_secs(60)))
        .await
        .expect("lease"));
    let_leases_expire(url).await;
    assert!(!store
        .record_reconcile("S", &attempt("error", "failed", 7_000))
        .await
        .expect("record"));
    let r = store.reconcile_status().await.expect("read").expect("row");
    assert_eq!(r.attempt_ms, 6_000);
}

async fn dp_validations_only_from_the_leader(url: &str) {
    let store = Store::open(url).await.expect("open");
    assert_eq!(store.dp_validations().await.expect("read"), vec![]);
    let validation = |dp: &str, outcome: &str, started_ms: i64, problems: usize| DpValidation {
        dp: dp.into(),
        path: format!("/srv/{dp}"),
        started_ms,
        finished_ms: started_ms + 1_500,
        outcome: outcome.parse().expect("an outcome"),
        files_checked: 7,
        bytes_checked: 5_000_000_000,
        problems: problems as u64,
        problem_files: (0..problems)
            .map(|i| DpProblem {
                problem: DpProblemKind::Corrupt,
                file: format!("files/ab/{i:064}"),
                detail: Some(format!("its bytes hash to {i}")),
            })
            .collect(),
        message: (outcome == "failed").then(|| "permission denied".into()),
        repaired: 0,
        host: "sms01".into(),
        pid: 4242,
    };
    // Without the leader lease nothing is written.
    assert!(!store
        .record_dp_validation("A", &validation("dp-hq", "ok", 1_000, 0))
        .await
        .expect("record"));
    assert!(store
        .try_lease(LEADER_LEASE, &lock_request("A", Duration::from_secs(60)))
        .await
        .expect("lease"));
    let hq = validation("dp-hq", "ok", 1_000, 0);
    assert!(store.record_dp_validation("A", &hq).await.expect("record"));
    // Many problems: all counted, the first 20 kept.
    let branch = validation("dp-branch", "problems", 2_000, 25);
    assert!(store
        .record_dp_validation("A", &branch)
        .await
        .expect("record"));
    let rows = store.dp_validations().await.expect("read");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].dp, "dp-branch", "by name");
    assert_eq!(rows[0].problems, 25);
    assert_eq!(
        rows[0].problem_files,
        branch.problem_files[..MAX_DP_PROBLEM_FILES]
    );
    assert_eq!(rows[0].bytes_checked, 5_000_000_000);
    assert_eq!(rows[1], hq);
    // The next validation of a DP replaces its row.
    let failed = validation("dp-hq", "failed", 3_000, 0);
    store
        .record_dp_validation("A", &failed)
        .await
        .expect("record");
    let rows = store.dp_validations().await.expect("read");
    assert_eq!((rows.len(), &rows[1]), (2, &failed));
    // Another server writes nothing.
    assert!(!store
        .record_dp_validation("B", &validation("dp-hq", "ok", 4_000, 0))
        .await
        .expect("record"));
    assert_eq!(store.dp_validations().await.expect("read")[1], failed);
}

/// The inventory serial moves when a machine is added, changed or removed,
/// and not for a heartbeat or an upsert that changes nothing.
async fn inventory_serial_moves_with_machines_only(url: &str) {
    let store = Store::open(url).await.expect("open");
    let start = store.inventory_version().await.expect("serial");
    let recs = store
        .upsert_machines(&[machine("PC01", 1), machine("PC02", 2)], T0)
        .await
        .expect("upsert");
    let added = store.inventory_version().await.expect("serial");
    assert!(added > start);
    store
        .touch_heartbeat(recs[0].id, T0 + 5)
        .await
        .expect("heartbeat");
    store
        .upsert_machines(&[machine("PC01", 1)], T0 + 6)
        .await
        .expect("same facts");
    assert_eq!(store.inventory_version().await.expect("serial"), added);
    store
        .upsert_machines(&[machine("PC01", 3)], T0 + 7)
        .await
        .expect("new facts");
    let changed = store.inventory_version().await.expect("serial");
    assert!(changed > added);
    store
        .remove_machines(&["pc02".into()])
        .await
        .expect("remove");
    assert!(store.inventory_version().await.expect("serial") > changed);
}

/// Writes of every kind in one `WriteTx`: none is visible before the
/// commit, none after a drop, all after a commit.
async fn write_tx_is_all_or_nothing(url: &str) {
    let store = Store::open(url).await.expect("open");
    let serial = store.inventory_version().await.expect("serial");
    for commit in [false, true] {
        let mut tx = store.begin_writes().await.expect("begin");
        let counts = tx
            .insert_status_batches(&[&[status("k1", "pc01", T0)]])
            .await
            .expect("status");
        assert_eq!(counts, vec![1]);
        tx.issue_machine_tokens(&[("PC01".into(), "hash-1".into())], T0)
            .await
            .expect("tokens");
        let recs = tx
            .upsert_machines(&[machine("PC01", 1)], T0)
            .await
            .expect("machines");
        assert!(tx.inventory_version().await.expect("own serial") > serial);
        tx.put_policies(&[policy(recs[0].id, 1, "{}")], T0)
            .await
            .expect("policies");
        if commit {
            tx.commit().await.expect("commit");
        } else {
            drop(tx);
        }
        let machine = store.machine("pc01").await.expect("machine");
        let token = store.machine_for_token("hash-1").await.expect("token");
        let messages = store.status_for_machine("pc01", 10).await.expect("status");
        let policies = store.policies().await.expect("policies");
        assert_eq!(machine.is_some(), commit);
        assert_eq!(token.is_some(), commit);
        assert_eq!(messages.len(), usize::from(commit));
        assert_eq!(policies.len(), usize::from(commit));
        assert_eq!(
            store.inventory_version().await.expect("serial") > serial,
            commit
        );
    }
}

/// A store of schema v6 (status keys unique across machines) is upgraded
/// with every message kept, and then takes another machine's key.
async fn version_6_status_messages_are_kept(url: &str) {
    store_at_version(url, 6).await;
    exec_raw(
        url,
        "INSERT INTO status_messages (key, machine_key, advertisement, state, exit_code, \
         message, at_ms, received_ms) VALUES \
         ('run-1/1-accepted', 'pc01', 'Ad', 'accepted', NULL, '', 10, 11), \
         ('run-1/1-failed', 'pc01', 'Ad', 'failed', 1603, 'exit 1603', 20, 21)",
    )
    .await;
    let store = Store::open(url).await.expect("open");
    let kept = store.status_for_machine("pc01", 10).await.expect("status");
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0].exit_code, Some(1603));
    assert_eq!(kept[0].message, "exit 1603");
    let again = store
        .insert_status(&[
            status("run-1/1-accepted", "pc01", 10),
            status("run-1/1-accepted", "pc02", 10),
        ])
        .await
        .expect("insert");
    assert_eq!(again, 1, "pc01's key is a duplicate, pc02's is new");
}

/// The serial is bumped beside the machines table that changed, even by a
/// session whose search_path does not name the store's schema.
#[tokio::test]
async fn postgres_inventory_serial_ignores_the_search_path() {
    let (url, _db) = super::testing::fresh_postgres_url().await;
    let store = Store::open(&url).await.expect("open");
    let before = store.inventory_version().await.expect("serial");
    let mut c = PgConnection::connect(&url).await.expect("connect");
    sqlx::raw_sql(
        "SET search_path TO pg_catalog; \
         INSERT INTO public.machines (key, name, facts, updated_ms) \
         VALUES ('pc09', 'PC09', '{\"name\":\"PC09\"}', 1)",
    )
    .execute(&mut c)
    .await
    .expect("an insert from another search_path");
    c.close().await.expect("close");
    assert!(store.inventory_version().await.expect("serial") > before);
}
