//! The SQLite backend.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Connection, SqlitePool};

use super::{
    check_applied, check_token_again, classify, count, decode_machine, lease_ms, machine_outcomes,
    machines_to_write, migrator, rows, version_i64, ApplyRecord, Backend, CatalogVersion, Db,
    Existing, Fail, LockHolder, LockRequest, Machine, MachineRow, Normalized, Opened, Owner,
    ReconcileAttempt, ReconcileStatus, StateInfo, StatusMessage, StoreError, StoredObject,
    StoredPatchState, StoredPolicy, SyncAttempt, SyncStatus, TokenIssue, BUSY_TIMEOUT,
    LEADER_LEASE, MIGRATIONS_TABLE, SQLITE_MIGRATIONS,
};

/// The database's clock, in epoch milliseconds.
macro_rules! now_ms {
    () => {
        "CAST(unixepoch('subsec') * 1000 AS INTEGER)"
    };
}

const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Rows per multi-row statement, well under SQLite's 32,766 bound parameters.
const UPSERT_CHUNK: usize = 500;
const DELETE_CHUNK: usize = 1000;

/// `n` copies of `row`, comma-separated.
fn placeholders(n: usize, row: &str) -> String {
    let mut s = String::with_capacity(n * (row.len() + 2));
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(row);
    }
    s
}

/// What a look at an existing database found.
struct Inspection {
    /// `Some` when the database has our migrations table: what it applied.
    applied: Option<Vec<(i64, Vec<u8>, bool)>>,
}

pub(super) async fn open(url: &str, display: &str) -> Result<Opened, StoreError> {
    let bad = |m: String| StoreError::BadUrl(format!("{display}: {m}"));
    let not_ours = |reason: String| StoreError::NotAStateStore {
        url: display.to_string(),
        reason,
    };
    let backend_err = |m: String| StoreError::Backend(format!("{display}: {m}"));
    let sql_err = |e: sqlx::Error| classify(e, display, Backend::Sqlite);

    let opts = SqliteConnectOptions::from_str(url).map_err(|e| bad(e.to_string()))?;

    // What the URL asks for (sqlx has parsed and checked the parameters).
    let rest = url.strip_prefix("sqlite:").unwrap_or(url);
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (database, params) = match rest.split_once('?') {
        Some((d, p)) => (d, p),
        None => (rest, ""),
    };
    let param = |key: &str, value: &str| {
        params
            .split('&')
            .any(|kv| kv.split_once('=') == Some((key, value)))
    };
    let memory = database == ":memory:" || param("mode", "memory");
    let mut read_only = param("mode", "ro");
    if database.is_empty() && !memory {
        return Err(bad("no database file named (use sqlite://PATH)".into()));
    }

    let mut existing = false;
    if !memory {
        let path = opts.get_filename().to_path_buf();
        match std::fs::metadata(&path) {
            Ok(meta) => {
                if meta.is_dir() {
                    return Err(not_ours("it is a directory".into()));
                }
                if !meta.is_file() {
                    return Err(not_ours("it is not a regular file".into()));
                }
                use std::os::unix::fs::PermissionsExt;
                // We may run as root, for whom EACCES never comes: the
                // permission bits say whether the file may be written.
                if meta.permissions().mode() & 0o222 == 0 || !may_write(&path) {
                    read_only = true;
                }
                // A store is made only where no file is: an empty file is
                // more likely a store lost to a truncating copy or a full
                // disk than a wish for a new one, and a new store there
                // would plan the whole site as new.
                if meta.len() == 0 {
                    return Err(not_ours(
                        "it is an empty file (0 bytes); a new store is created only where no \
                         file exists: restore the store, or remove the file to start anew"
                            .into(),
                    ));
                }
                check_header(&path).map_err(not_ours)?;
                existing = true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if read_only {
                    return Err(backend_err(
                        "there is no store there (the file does not exist, and a read-only \
                         store is never created)"
                            .into(),
                    ));
                }
                if let Some(parent) = path.parent() {
                    if !parent.as_os_str().is_empty() && !parent.is_dir() {
                        return Err(backend_err(format!(
                            "cannot create the store: the directory {} does not exist",
                            parent.display()
                        )));
                    }
                }
            }
            Err(e) => return Err(backend_err(e.to_string())),
        }
    }

    // Look before touching: a database with tables of its own but not ours
    // is refused before anything (even the journal mode) is written to it.
    let inspection = if existing {
        let look = opts.clone().read_only(true).busy_timeout(BUSY_TIMEOUT);
        let mut conn = SqliteConnection::connect_with(&look)
            .await
            .map_err(sql_err)?;
        let found = inspect(&mut conn).await;
        let _ = conn.close().await;
        let (tables, applied) = found.map_err(sql_err)?;
        if !tables.is_empty() && applied.is_none() {
            return Err(not_ours(format!(
                "it holds other tables ({}) and no {MIGRATIONS_TABLE} table; it was left untouched",
                list(&tables)
            )));
        }
        Inspection { applied }
    } else {
        Inspection { applied: None }
    };

    let up_to_date = match &inspection.applied {
        Some(applied) => {
            check_applied(applied, &migrator(SQLITE_MIGRATIONS)).map_err(backend_err)?
        }
        None => false,
    };
    if read_only && !up_to_date {
        return Err(if inspection.applied.is_some() {
            backend_err("the store's schema needs an upgrade, but it is opened read-only".into())
        } else {
            not_ours("it is empty, and opened read-only it cannot be made a store".into())
        });
    }

    let mut conn_opts = opts.busy_timeout(BUSY_TIMEOUT).foreign_keys(true);
    conn_opts = if read_only {
        conn_opts.read_only(true)
    } else {
        let o = conn_opts
            .create_if_missing(true)
            .synchronous(SqliteSynchronous::Full);
        if memory {
            o
        } else {
            o.journal_mode(SqliteJournalMode::Wal)
        }
    };
    let pool_opts = if memory {
        // One connection keeps the in-memory database alive, and is the
        // only one that sees it.
        SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        SqlitePoolOptions::new().max_connections(4)
    };
    let pool = pool_opts
        // A write that fails with SQLITE_FULL or an I/O error may be rolled
        // back by SQLite itself; sqlx's ROLLBACK then fails, and the
        // connection would stay "in a transaction" for sqlx and refuse
        // every BEGIN. Such a connection is closed rather than kept (the
        // ping first runs any rollback still queued).
        .after_release(|conn, _| {
            Box::pin(async move {
                sqlx::Connection::ping(&mut *conn).await?;
                Ok(!sqlx::Connection::is_in_transaction(conn))
            })
        })
        .acquire_timeout(BUSY_TIMEOUT * 2)
        .connect_with(conn_opts)
        .await
        .map_err(sql_err)?;

    if !read_only && !up_to_date {
        if let Err(e) = migrate(&pool, display).await {
            pool.close().await;
            return Err(e);
        }
    }
    Ok(Opened {
        db: Db::Sqlite(pool),
        read_only,
    })
}

/// Runs our migrations. Two processes creating one new store at once may
/// collide (one finds the other's tables): the loser tries again.
async fn migrate(pool: &SqlitePool, display: &str) -> Result<(), StoreError> {
    let migrator = migrator(SQLITE_MIGRATIONS);
    let mut last = None;
    for attempt in 0..3u64 {
        match migrator.run(pool).await {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50 * (attempt + 1))).await;
    }
    Err(match last {
        Some(e) => migrate_error(e, display, Backend::Sqlite),
        None => StoreError::Backend(format!("{display}: migration failed")),
    })
}

pub(super) fn migrate_error(
    e: sqlx::migrate::MigrateError,
    display: &str,
    backend: Backend,
) -> StoreError {
    use sqlx::migrate::MigrateError as M;
    match e {
        M::Execute(e) => classify(e, display, backend),
        M::ExecuteMigration(e, v) => match classify(e, display, backend) {
            StoreError::Backend(m) => StoreError::Backend(format!("schema migration {v}: {m}")),
            other => other,
        },
        M::VersionMissing(v) => StoreError::Backend(format!(
            "{display}: its schema is at version {v}, newer than this patchops knows: upgrade patchops"
        )),
        other => StoreError::Backend(format!("{display}: {other}")),
    }
}

fn list(names: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut s = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(", and {} more", names.len() - SHOWN));
    }
    s
}

/// Whether this process may write the file (beyond the permission bits:
/// ownership, ACLs, a read-only mount).
fn may_write(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// Checks, without opening it as a database, that a non-empty file starts
/// with the SQLite header.
fn check_header(path: &Path) -> Result<(), String> {
    let mut head = [0u8; 16];
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read it: {e}")),
        }
    }
    if got == head.len() && &head == SQLITE_HEADER {
        Ok(())
    } else {
        Err("it is not a SQLite database file; it was left untouched".into())
    }
}

async fn inspect(
    conn: &mut SqliteConnection,
) -> Result<(Vec<String>, Option<Vec<(i64, Vec<u8>, bool)>>), sqlx::Error> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') \
         AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await?;
    let applied = if tables.iter().any(|t| t == MIGRATIONS_TABLE) {
        Some(
            sqlx::query_as::<_, (i64, Vec<u8>, bool)>(
                "SELECT version, checksum, success FROM patchops_migrations ORDER BY version",
            )
            .fetch_all(&mut *conn)
            .await?,
        )
    } else {
        None
    };
    Ok((tables, applied))
}

pub(super) async fn info(pool: &SqlitePool) -> Result<StateInfo, Fail> {
    let row: Option<(String, i64, Option<String>, String)> = sqlx::query_as(
        "SELECT store_id, serial, site, created_at FROM patchops_state WHERE id = 1",
    )
    .fetch_optional(pool)
    .await?;
    let (store_id, serial, site, created_at) =
        row.ok_or_else(|| Fail::Data("the state row is missing".into()))?;
    Ok(StateInfo {
        store_id,
        serial,
        site,
        created_at,
    })
}

pub(super) async fn objects(pool: &SqlitePool) -> Result<Vec<StoredObject>, Fail> {
    let rows: Vec<SqliteRow> = sqlx::query(
        "SELECT kind, name, spec, spec_hash, metadata, owner, file, commit_id, \
         created_serial, updated_serial FROM patchops_objects ORDER BY kind, name",
    )
    .fetch_all(pool)
    .await?;
    rows.iter().map(rows::object).collect()
}

pub(super) async fn object(
    pool: &SqlitePool,
    kind: &str,
    name: &str,
) -> Result<Option<StoredObject>, Fail> {
    let row: Option<SqliteRow> = sqlx::query(
        "SELECT kind, name, spec, spec_hash, metadata, owner, file, commit_id, \
         created_serial, updated_serial FROM patchops_objects WHERE kind = ?1 AND name = ?2",
    )
    .bind(kind)
    .bind(name)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(rows::object).transpose()
}

pub(super) async fn commit(
    pool: &SqlitePool,
    expected: i64,
    site: Option<&str>,
    plan: &Normalized<'_>,
    record: &ApplyRecord,
) -> Result<i64, Fail> {
    // IMMEDIATE: take the write lock first, so that two writers never both
    // read and then fail to upgrade (the busy timeout covers the wait).
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let new = bump(&mut tx, Some(expected), site).await?;
    // Multi-row statements: one round trip to the SQLite thread per chunk,
    // not per row. Full chunks share one cached prepared statement.
    for chunk in plan.deletes.chunks(DELETE_CHUNK) {
        let sql = format!(
            "DELETE FROM patchops_objects WHERE (kind, name) IN (VALUES {})",
            placeholders(chunk.len(), "(?, ?)")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (kind, name) in chunk {
            q = q.bind(*kind).bind(*name);
        }
        q.execute(&mut *tx).await?;
    }
    for chunk in plan.upserts.chunks(UPSERT_CHUNK) {
        let sql = format!(
            "INSERT INTO patchops_objects (kind, name, spec, spec_hash, metadata, owner, file, \
             commit_id, created_serial, updated_serial) VALUES {} \
             ON CONFLICT (kind, name) DO UPDATE SET spec = excluded.spec, \
             spec_hash = excluded.spec_hash, metadata = excluded.metadata, owner = excluded.owner, \
             file = excluded.file, commit_id = excluded.commit_id, \
             updated_serial = excluded.updated_serial",
            placeholders(chunk.len(), "(?, ?, ?, ?, ?, 'patchops', ?, ?, ?, ?)")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for o in chunk {
            q = q
                .bind(o.kind.as_str())
                .bind(o.name.as_str())
                .bind(o.spec.as_str())
                .bind(o.spec_hash.as_str())
                .bind(o.metadata.as_str())
                .bind(o.file.as_deref())
                .bind(o.commit.as_deref())
                .bind(new)
                .bind(new);
        }
        q.execute(&mut *tx).await?;
    }
    insert_record(&mut tx, new, record).await?;
    tx.commit().await?;
    Ok(new)
}

/// Adds one to the serial (when it is still `expected`, if given) and sets
/// the site (when given); returns the new serial.
async fn bump(
    conn: &mut SqliteConnection,
    expected: Option<i64>,
    site: Option<&str>,
) -> Result<i64, Fail> {
    let new: Option<i64> = sqlx::query_scalar(
        "UPDATE patchops_state SET serial = serial + 1, site = COALESCE(?1, site) \
         WHERE id = 1 AND (?2 IS NULL OR serial = ?2) AND serial < 9223372036854775807 \
         RETURNING serial",
    )
    .bind(site)
    .bind(expected)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(new) = new {
        return Ok(new);
    }
    let actual: Option<i64> = sqlx::query_scalar("SELECT serial FROM patchops_state WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await?;
    Err(match (actual, expected) {
        (None, _) => Fail::Data("the state row is missing".into()),
        (Some(actual), Some(expected)) if actual != expected => Fail::Stale { expected, actual },
        (Some(_), _) => Fail::Data("the serial cannot go higher".into()),
    })
}

async fn insert_record(
    conn: &mut SqliteConnection,
    serial: i64,
    r: &ApplyRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO patchops_history (serial, started_at, finished_at, actor, host, command, \
         commit_id, dirty, plan_hash, added, changed, destroyed, changes) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )
    .bind(serial)
    .bind(r.started_at.as_str())
    .bind(r.finished_at.as_str())
    .bind(r.actor.as_str())
    .bind(r.host.as_str())
    .bind(r.command.as_str())
    .bind(r.commit.as_deref())
    .bind(r.dirty)
    .bind(r.plan_hash.as_str())
    .bind(r.added)
    .bind(r.changed)
    .bind(r.destroyed)
    .bind(r.changes.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn history(pool: &SqlitePool, limit: i64) -> Result<Vec<ApplyRecord>, Fail> {
    let rows: Vec<SqliteRow> = sqlx::query(
        "SELECT id, serial, started_at, finished_at, actor, host, command, commit_id, dirty, \
         plan_hash, added, changed, destroyed, changes \
         FROM patchops_history ORDER BY id DESC LIMIT ?1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(rows::record).collect()
}

pub(super) async fn set_owner(
    pool: &SqlitePool,
    kind: &str,
    name: &str,
    owner: Owner,
    record: &ApplyRecord,
) -> Result<bool, Fail> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let current: Option<String> =
        sqlx::query_scalar("SELECT owner FROM patchops_objects WHERE kind = ?1 AND name = ?2")
            .bind(kind)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
    match current {
        None => return Ok(false),
        Some(c) if c == owner.as_str() => return Ok(true),
        Some(_) => {}
    }
    let new = bump(&mut tx, None, None).await?;
    sqlx::query(
        "UPDATE patchops_objects SET owner = ?1, updated_serial = ?2 WHERE kind = ?3 AND name = ?4",
    )
    .bind(owner.as_str())
    .bind(new)
    .bind(kind)
    .bind(name)
    .execute(&mut *tx)
    .await?;
    insert_record(&mut tx, new, record).await?;
    tx.commit().await?;
    Ok(true)
}

pub(super) async fn try_lock(
    pool: &SqlitePool,
    name: &str,
    req: &LockRequest,
) -> Result<bool, Fail> {
    let got: Option<String> = sqlx::query_scalar(concat!(
        "INSERT INTO patchops_lock (name, id, holder, host, pid, command, acquired_ms, expires_ms) \
         VALUES (?7, ?1, ?2, ?3, ?4, ?5, ",
        now_ms!(),
        ", ",
        now_ms!(),
        " + ?6) \
         ON CONFLICT (name) DO UPDATE SET id = excluded.id, holder = excluded.holder, \
         host = excluded.host, pid = excluded.pid, command = excluded.command, \
         acquired_ms = CASE WHEN patchops_lock.id = excluded.id \
             THEN patchops_lock.acquired_ms ELSE excluded.acquired_ms END, \
         expires_ms = excluded.expires_ms \
         WHERE patchops_lock.expires_ms <= excluded.acquired_ms OR patchops_lock.id = excluded.id \
         RETURNING id"
    ))
    .bind(req.id.as_str())
    .bind(req.holder.as_str())
    .bind(req.host.as_str())
    .bind(i64::from(req.pid))
    .bind(req.command.as_str())
    .bind(lease_ms(req.lease))
    .bind(name)
    .fetch_optional(pool)
    .await?;
    Ok(got.is_some())
}

pub(super) async fn take_over_lock(
    pool: &SqlitePool,
    name: &str,
    previous_id: &str,
    req: &LockRequest,
) -> Result<bool, Fail> {
    let done = sqlx::query(concat!(
        "UPDATE patchops_lock SET id = ?1, holder = ?2, host = ?3, pid = ?4, command = ?5, \
         acquired_ms = ",
        now_ms!(),
        ", expires_ms = ",
        now_ms!(),
        " + ?6 WHERE name = ?8 AND id = ?7"
    ))
    .bind(req.id.as_str())
    .bind(req.holder.as_str())
    .bind(req.host.as_str())
    .bind(i64::from(req.pid))
    .bind(req.command.as_str())
    .bind(lease_ms(req.lease))
    .bind(previous_id)
    .bind(name)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn renew_lock(
    pool: &SqlitePool,
    name: &str,
    id: &str,
    lease_ms: i64,
) -> Result<bool, Fail> {
    let done = sqlx::query(concat!(
        "UPDATE patchops_lock SET expires_ms = ",
        now_ms!(),
        " + ?1 WHERE name = ?3 AND id = ?2"
    ))
    .bind(lease_ms)
    .bind(id)
    .bind(name)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn unlock(pool: &SqlitePool, name: &str, id: &str) -> Result<bool, Fail> {
    let done = sqlx::query("DELETE FROM patchops_lock WHERE name = ?2 AND id = ?1")
        .bind(id)
        .bind(name)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn lock_holder(pool: &SqlitePool, name: &str) -> Result<Option<LockHolder>, Fail> {
    let row: Option<SqliteRow> = sqlx::query(
        "SELECT id, holder, host, pid, command, acquired_ms, expires_ms \
         FROM patchops_lock WHERE name = ?1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(rows::lock_holder).transpose()
}

pub(super) async fn ping(pool: &SqlitePool) -> Result<(), Fail> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

pub(super) async fn upsert_machines(
    tx: &mut SqliteConnection,
    rows: &[MachineRow],
    now_ms: i64,
) -> Result<Vec<(u32, bool)>, Fail> {
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(UPSERT_CHUNK) {
        let sql = format!(
            "SELECT key, id, facts FROM machines WHERE key IN ({})",
            placeholders(chunk.len(), "?")
        );
        let mut q = sqlx::query_as::<_, (String, i64, String)>(AssertSqlSafe(sql));
        for r in chunk {
            q = q.bind(r.key.as_str());
        }
        let existing: Existing = q
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|(k, id, f)| (k, (id, f)))
            .collect();
        let (updates, inserts) = machines_to_write(chunk, &existing);
        if !updates.is_empty() {
            let sql = format!(
                "UPDATE machines SET name = u.column2, facts = u.column3, updated_ms = ? \
                 FROM (VALUES {}) AS u WHERE machines.key = u.column1",
                placeholders(updates.len(), "(?, ?, ?)")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now_ms);
            for r in &updates {
                q = q
                    .bind(r.key.as_str())
                    .bind(r.name.as_str())
                    .bind(r.facts.as_str());
            }
            q.execute(&mut *tx).await?;
        }
        let mut written = HashMap::with_capacity(inserts.len());
        if !inserts.is_empty() {
            // BEGIN IMMEDIATE: no other writer can have added one since the look.
            let sql = format!(
                "INSERT INTO machines (key, name, facts, updated_ms) VALUES {} RETURNING key, id",
                placeholders(inserts.len(), "(?, ?, ?, ?)")
            );
            let mut q = sqlx::query_as::<_, (String, i64)>(AssertSqlSafe(sql));
            for r in &inserts {
                q = q
                    .bind(r.key.as_str())
                    .bind(r.name.as_str())
                    .bind(r.facts.as_str())
                    .bind(now_ms);
            }
            written.extend(q.fetch_all(&mut *tx).await?);
        }
        out.extend(machine_outcomes(chunk, &existing, &written)?);
    }
    Ok(out)
}

/// The inventory serial: bumped whenever a machine is added, changed or
/// removed (by triggers).
pub(super) async fn inventory_version(conn: &mut SqliteConnection) -> Result<i64, Fail> {
    Ok(
        sqlx::query_scalar("SELECT serial FROM inventory_serial WHERE id = 1")
            .fetch_one(conn)
            .await?,
    )
}

pub(super) async fn machines(pool: &SqlitePool) -> Result<Vec<(u32, Machine)>, Fail> {
    let rows: Vec<(i64, String, Option<i64>)> =
        sqlx::query_as("SELECT id, facts, last_heartbeat_ms FROM machines ORDER BY id")
            .fetch_all(pool)
            .await?;
    rows.iter()
        .map(|(id, facts, hb)| decode_machine(*id, facts, *hb))
        .collect()
}

pub(super) async fn machine(
    conn: &mut SqliteConnection,
    key: &str,
) -> Result<Option<(u32, Machine)>, Fail> {
    let row: Option<(i64, String, Option<i64>)> =
        sqlx::query_as("SELECT id, facts, last_heartbeat_ms FROM machines WHERE key = ?1")
            .bind(key)
            .fetch_optional(conn)
            .await?;
    row.map(|(id, facts, hb)| decode_machine(id, &facts, hb))
        .transpose()
}

pub(super) async fn remove_machines(pool: &SqlitePool, keys: &[String]) -> Result<usize, Fail> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut removed = 0;
    for chunk in keys.chunks(DELETE_CHUNK) {
        let sql = format!(
            "DELETE FROM machines WHERE key IN ({}) RETURNING id",
            placeholders(chunk.len(), "?")
        );
        let mut q = sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql));
        for k in chunk {
            q = q.bind(k.as_str());
        }
        let ids = q.fetch_all(&mut *tx).await?;
        removed += ids.len();
        delete_policies(&mut tx, &ids).await?;
    }
    tx.commit().await?;
    Ok(removed)
}

/// Deletes the policies of these machines; returns how many.
async fn delete_policies(conn: &mut SqliteConnection, ids: &[i64]) -> Result<usize, Fail> {
    let mut removed = 0;
    for chunk in ids.chunks(DELETE_CHUNK) {
        let sql = format!(
            "DELETE FROM policies WHERE machine_id IN ({})",
            placeholders(chunk.len(), "?")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for id in chunk {
            q = q.bind(*id);
        }
        removed += count(q.execute(&mut *conn).await?.rows_affected());
    }
    Ok(removed)
}

pub(super) async fn touch_heartbeat(pool: &SqlitePool, id: u32, now_ms: i64) -> Result<bool, Fail> {
    let done = sqlx::query(
        "UPDATE machines SET last_heartbeat_ms = MAX(COALESCE(last_heartbeat_ms, ?1), ?1) \
         WHERE id = ?2",
    )
    .bind(now_ms)
    .bind(i64::from(id))
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn add_machine_token(
    pool: &SqlitePool,
    machine_key: &str,
    token_hash: &str,
    now_ms: i64,
) -> Result<(), Fail> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    insert_token(&mut tx, machine_key, token_hash, now_ms).await?;
    tx.commit().await?;
    Ok(())
}

/// Issues tokens as [`TokenIssue`] plans them: every named machine's live
/// tokens revoked, then every hash added.
pub(super) async fn issue_machine_tokens(
    tx: &mut SqliteConnection,
    issue: &TokenIssue<'_>,
    now_ms: i64,
) -> Result<(), Fail> {
    for keys in issue.machines.chunks(UPSERT_CHUNK) {
        let sql = format!(
            "UPDATE machine_tokens SET revoked_ms = ? \
             WHERE revoked_ms IS NULL AND machine_key IN ({})",
            placeholders(keys.len(), "?")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now_ms);
        for key in keys {
            q = q.bind(*key);
        }
        q.execute(&mut *tx).await?;
    }
    for row in &issue.rows {
        let done = sqlx::query(
            "INSERT INTO machine_tokens (token_hash, machine_key, created_ms, revoked_ms) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (token_hash) DO NOTHING",
        )
        .bind(row.hash)
        .bind(row.machine_key)
        .bind(now_ms)
        .bind(row.superseded.then_some(now_ms))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            let (key, revoked): (String, Option<i64>) = sqlx::query_as(
                "SELECT machine_key, revoked_ms FROM machine_tokens WHERE token_hash = ?1",
            )
            .bind(row.hash)
            .fetch_one(&mut *tx)
            .await?;
            check_token_again(row.machine_key, &key, revoked)?;
        }
    }
    Ok(())
}

async fn insert_token(
    conn: &mut SqliteConnection,
    machine_key: &str,
    token_hash: &str,
    now_ms: i64,
) -> Result<(), Fail> {
    let done = sqlx::query(
        "INSERT INTO machine_tokens (token_hash, machine_key, created_ms) VALUES (?1, ?2, ?3) \
         ON CONFLICT (token_hash) DO NOTHING",
    )
    .bind(token_hash)
    .bind(machine_key)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        let (key, revoked): (String, Option<i64>) = sqlx::query_as(
            "SELECT machine_key, revoked_ms FROM machine_tokens WHERE token_hash = ?1",
        )
        .bind(token_hash)
        .fetch_one(&mut *conn)
        .await?;
        check_token_again(machine_key, &key, revoked)?;
    }
    Ok(())
}

pub(super) async fn has_live_token(
    conn: &mut SqliteConnection,
    machine_key: &str,
) -> Result<bool, Fail> {
    let found: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM machine_tokens WHERE machine_key = ?1 AND revoked_ms IS NULL LIMIT 1",
    )
    .bind(machine_key)
    .fetch_optional(conn)
    .await?;
    Ok(found.is_some())
}

pub(super) async fn machine_for_token(
    pool: &SqlitePool,
    token_hash: &str,
) -> Result<Option<String>, Fail> {
    Ok(sqlx::query_scalar(
        "SELECT machine_key FROM machine_tokens WHERE token_hash = ?1 AND revoked_ms IS NULL",
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await?)
}

pub(super) async fn revoke_machine_tokens(
    pool: &SqlitePool,
    machine_key: &str,
    now_ms: i64,
) -> Result<usize, Fail> {
    let done = sqlx::query(
        "UPDATE machine_tokens SET revoked_ms = ?1 WHERE machine_key = ?2 AND revoked_ms IS NULL",
    )
    .bind(now_ms)
    .bind(machine_key)
    .execute(pool)
    .await?;
    Ok(count(done.rows_affected()))
}

pub(super) async fn policies(pool: &SqlitePool) -> Result<Vec<StoredPolicy>, Fail> {
    let rows: Vec<SqliteRow> =
        sqlx::query("SELECT machine_id, version, hash, body FROM policies ORDER BY machine_id")
            .fetch_all(pool)
            .await?;
    rows.iter().map(rows::policy).collect()
}

pub(super) async fn policy(
    pool: &SqlitePool,
    machine_id: u32,
) -> Result<Option<StoredPolicy>, Fail> {
    let row: Option<SqliteRow> =
        sqlx::query("SELECT machine_id, version, hash, body FROM policies WHERE machine_id = ?1")
            .bind(i64::from(machine_id))
            .fetch_optional(pool)
            .await?;
    row.as_ref().map(rows::policy).transpose()
}

pub(super) async fn put_policies(
    tx: &mut SqliteConnection,
    policies: &[StoredPolicy],
    now_ms: i64,
) -> Result<usize, Fail> {
    let mut written = 0;
    for chunk in policies.chunks(UPSERT_CHUNK) {
        let sql = format!(
            "INSERT INTO policies (machine_id, version, hash, body, updated_ms) VALUES {} \
             ON CONFLICT (machine_id) DO UPDATE SET version = excluded.version, \
             hash = excluded.hash, body = excluded.body, updated_ms = excluded.updated_ms \
             WHERE policies.version IS NOT excluded.version OR policies.hash IS NOT excluded.hash \
             OR policies.body IS NOT excluded.body",
            placeholders(chunk.len(), "(?, ?, ?, ?, ?)")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for p in chunk {
            q = q
                .bind(i64::from(p.machine_id))
                .bind(version_i64(p.version))
                .bind(p.hash.as_str())
                .bind(p.body.as_str())
                .bind(now_ms);
        }
        written += count(q.execute(&mut *tx).await?.rows_affected());
    }
    Ok(written)
}

pub(super) async fn remove_policies(pool: &SqlitePool, ids: &[i64]) -> Result<usize, Fail> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let removed = delete_policies(&mut tx, ids).await?;
    tx.commit().await?;
    Ok(removed)
}

/// Batches of status messages in one transaction; how many of each batch
/// were newly stored.
pub(super) async fn insert_status(
    tx: &mut SqliteConnection,
    batches: &[(&[StatusMessage], Vec<String>)],
) -> Result<Vec<usize>, Fail> {
    let mut out = Vec::with_capacity(batches.len());
    for (msgs, machine_keys) in batches {
        let mut inserted = 0;
        for (chunk, keys) in msgs
            .chunks(UPSERT_CHUNK)
            .zip(machine_keys.chunks(UPSERT_CHUNK))
        {
            let sql = format!(
                "INSERT INTO status_messages (key, machine_key, advertisement, state, exit_code, \
                 message, at_ms, received_ms) VALUES {} ON CONFLICT (machine_key, key) DO NOTHING",
                placeholders(chunk.len(), "(?, ?, ?, ?, ?, ?, ?, ?)")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (m, key) in chunk.iter().zip(keys) {
                q = q
                    .bind(m.key.as_str())
                    .bind(key.as_str())
                    .bind(m.advertisement.as_str())
                    .bind(m.state.as_str())
                    .bind(m.exit_code)
                    .bind(m.message.as_str())
                    .bind(m.at_ms)
                    .bind(m.received_ms);
            }
            inserted += count(q.execute(&mut *tx).await?.rows_affected());
        }
        out.push(inserted);
    }
    Ok(out)
}

/// The newest message of every (machine, advertisement), optionally of
/// one advertisement only.
pub(super) async fn latest_status(
    pool: &SqlitePool,
    advertisement: Option<&str>,
) -> Result<Vec<StatusMessage>, Fail> {
    let rows: Vec<SqliteRow> = sqlx::query(
        "SELECT key, machine_key, advertisement, state, exit_code, message, at_ms, received_ms \
         FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY machine_key, advertisement \
                 ORDER BY at_ms DESC, received_ms DESC, key DESC) AS newest \
               FROM status_messages WHERE ?1 IS NULL OR advertisement = ?1) AS latest \
         WHERE newest = 1 ORDER BY advertisement, machine_key",
    )
    .bind(advertisement)
    .fetch_all(pool)
    .await?;
    rows.iter().map(rows::status).collect()
}

pub(super) async fn status_for_machine(
    pool: &SqlitePool,
    machine_key: &str,
    limit: i64,
) -> Result<Vec<StatusMessage>, Fail> {
    let rows: Vec<SqliteRow> = sqlx::query(
        "SELECT key, machine_key, advertisement, state, exit_code, message, at_ms, received_ms \
         FROM status_messages WHERE machine_key = ?1 \
         ORDER BY at_ms DESC, received_ms DESC, key LIMIT ?2",
    )
    .bind(machine_key)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(rows::status).collect()
}

pub(super) async fn put_catalog_version(
    pool: &SqlitePool,
    v: &CatalogVersion,
) -> Result<i64, Fail> {
    let size = i64::try_from(v.bytes.len())
        .map_err(|_| Fail::Invalid("the catalog is too large to store".into()))?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO catalog_versions (url, kind, sha256, etag, last_modified, fetched_ms, size, \
         bytes, summary, diff) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING id",
    )
    .bind(v.url.as_str())
    .bind(v.kind.as_str())
    .bind(v.sha256.as_str())
    .bind(v.etag.as_deref())
    .bind(v.last_modified.as_deref())
    .bind(v.fetched_ms)
    .bind(size)
    .bind(v.bytes.as_slice())
    .bind(v.summary.as_str())
    .bind(v.diff.as_str())
    .fetch_one(pool)
    .await?;
    Ok(id)
}

const CATALOG_COLUMNS: &str =
    "id, url, kind, sha256, etag, last_modified, fetched_ms, size, summary, diff";

pub(super) async fn latest_catalog(
    pool: &SqlitePool,
    url: &str,
) -> Result<Option<CatalogVersion>, Fail> {
    let row: Option<SqliteRow> = sqlx::query(AssertSqlSafe(format!(
        "SELECT {CATALOG_COLUMNS}, bytes FROM catalog_versions WHERE url = ?1 \
         ORDER BY id DESC LIMIT 1"
    )))
    .bind(url)
    .fetch_optional(pool)
    .await?;
    row.as_ref()
        .map(|r| rows::catalog_version(r, true))
        .transpose()
}

pub(super) async fn catalog_versions(
    pool: &SqlitePool,
    url: &str,
    limit: i64,
) -> Result<Vec<CatalogVersion>, Fail> {
    let rows: Vec<SqliteRow> = sqlx::query(AssertSqlSafe(format!(
        "SELECT {CATALOG_COLUMNS} FROM catalog_versions WHERE url = ?1 \
         ORDER BY id DESC LIMIT ?2"
    )))
    .bind(url)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| rows::catalog_version(r, false))
        .collect()
}

const SYNC_STATUS_COLUMNS: &str = "url, kind, last_attempt_ms, last_success_ms, last_error, \
     consecutive_failures, next_attempt_ms";

pub(super) async fn record_sync_attempt(
    pool: &SqlitePool,
    a: &SyncAttempt,
) -> Result<SyncStatus, Fail> {
    // One statement: atomic on both backends.
    let row: SqliteRow = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO catalog_sync_status ({SYNC_STATUS_COLUMNS}) \
         VALUES (?1, ?2, ?3, \
                 CASE WHEN ?4 IS NULL THEN ?3 ELSE NULL END, \
                 ?4, CASE WHEN ?4 IS NULL THEN 0 ELSE 1 END, ?5) \
         ON CONFLICT (url) DO UPDATE SET \
           kind = excluded.kind, \
           last_attempt_ms = excluded.last_attempt_ms, \
           last_success_ms = CASE WHEN excluded.last_error IS NULL \
             THEN excluded.last_attempt_ms ELSE catalog_sync_status.last_success_ms END, \
           last_error = excluded.last_error, \
           consecutive_failures = CASE WHEN excluded.last_error IS NULL \
             THEN 0 ELSE catalog_sync_status.consecutive_failures + 1 END, \
           next_attempt_ms = excluded.next_attempt_ms \
         RETURNING {SYNC_STATUS_COLUMNS}"
    )))
    .bind(a.url.as_str())
    .bind(a.kind.as_str())
    .bind(a.at_ms)
    .bind(a.error.as_deref())
    .bind(a.next_attempt_ms)
    .fetch_one(pool)
    .await?;
    rows::sync_status(&row)
}

pub(super) async fn sync_status(pool: &SqlitePool) -> Result<Vec<SyncStatus>, Fail> {
    let rows: Vec<SqliteRow> = sqlx::query(AssertSqlSafe(format!(
        "SELECT {SYNC_STATUS_COLUMNS} FROM catalog_sync_status ORDER BY url"
    )))
    .fetch_all(pool)
    .await?;
    rows.iter().map(rows::sync_status).collect()
}

pub(super) async fn replace_patch_states(
    pool: &SqlitePool,
    machines: &[String],
    scan_agent: Option<&str>,
    states: &[&StoredPatchState],
) -> Result<usize, Fail> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    for chunk in machines.chunks(DELETE_CHUNK) {
        let sql = format!(
            "DELETE FROM patch_states WHERE machine_key IN ({}) AND (? IS NULL OR scan_agent = ?)",
            placeholders(chunk.len(), "?")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for m in chunk {
            q = q.bind(m.as_str());
        }
        q = q.bind(scan_agent).bind(scan_agent);
        q.execute(&mut *tx).await?;
    }
    let mut written = 0;
    for chunk in states.chunks(UPSERT_CHUNK) {
        let sql = format!(
            "INSERT INTO patch_states (machine_key, bulletin, product, q_numbers, title, status, reboot, scan_agent, scan_time_ms, patch, reason) VALUES {} \
             ON CONFLICT (machine_key, bulletin, product) DO UPDATE SET q_numbers = excluded.q_numbers, \
             title = excluded.title, status = excluded.status, reboot = excluded.reboot, \
             scan_agent = excluded.scan_agent, scan_time_ms = excluded.scan_time_ms, \
             patch = excluded.patch, reason = excluded.reason",
            placeholders(chunk.len(), "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for s in chunk {
            q = q
                .bind(s.machine_key.as_str())
                .bind(s.bulletin.as_str())
                .bind(s.product.as_deref().unwrap_or(""))
                .bind(s.q_numbers.join(","))
                .bind(s.title.as_deref())
                .bind(s.status.as_str())
                .bind(s.reboot.as_str())
                .bind(s.scan_agent.as_str())
                .bind(s.scan_time_ms)
                .bind(s.patch.as_deref())
                .bind(s.reason.as_str());
        }
        written += count(q.execute(&mut *tx).await?.rows_affected());
    }
    tx.commit().await?;
    Ok(written)
}

pub(super) async fn patch_states(
    pool: &SqlitePool,
    machine_key: Option<&str>,
) -> Result<Vec<StoredPatchState>, Fail> {
    let rows: Vec<SqliteRow> = sqlx::query(
        "SELECT machine_key, bulletin, product, q_numbers, title, status, reboot, scan_agent, scan_time_ms, patch, reason FROM patch_states WHERE ?1 IS NULL OR machine_key = ?1 \
         ORDER BY machine_key, bulletin, product",
    )
    .bind(machine_key)
    .fetch_all(pool)
    .await?;
    rows.iter().map(rows::patch_state).collect()
}

const RECONCILE_COLUMNS: &str = "status, result, message, problems, revision, attempt_ms, \
     since_ms, failures, last_success_ms, last_apply_ms, last_apply_serial, \
     last_apply_revision, host, pid";

pub(super) async fn record_reconcile(
    pool: &SqlitePool,
    lease_id: &str,
    a: &ReconcileAttempt,
    problems: &str,
) -> Result<bool, Fail> {
    // One statement, written only while `lease_id` holds the leader lease.
    let done = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO reconcile_status (id, {RECONCILE_COLUMNS}) \
         SELECT 1, ?1, ?2, ?3, ?4, ?5, ?6, ?6, \
                CASE WHEN ?1 = 'error' THEN 1 ELSE 0 END, \
                CASE WHEN ?1 = 'error' THEN NULL ELSE ?6 END, \
                CASE WHEN ?7 IS NULL THEN NULL ELSE ?6 END, ?7, \
                CASE WHEN ?7 IS NULL THEN NULL ELSE ?5 END, ?8, ?9 \
         WHERE EXISTS (SELECT 1 FROM patchops_lock WHERE name = ?10 AND id = ?11 \
                       AND expires_ms > {now}) \
         ON CONFLICT (id) DO UPDATE SET \
           status = excluded.status, result = excluded.result, message = excluded.message, \
           problems = excluded.problems, revision = excluded.revision, \
           attempt_ms = excluded.attempt_ms, \
           since_ms = CASE WHEN reconcile_status.status = excluded.status \
             THEN reconcile_status.since_ms ELSE excluded.since_ms END, \
           failures = CASE WHEN excluded.status = 'error' \
             THEN reconcile_status.failures + 1 ELSE 0 END, \
           last_success_ms = COALESCE(excluded.last_success_ms, reconcile_status.last_success_ms), \
           last_apply_ms = COALESCE(excluded.last_apply_ms, reconcile_status.last_apply_ms), \
           last_apply_serial = COALESCE(excluded.last_apply_serial, reconcile_status.last_apply_serial), \
           last_apply_revision = CASE WHEN excluded.last_apply_serial IS NULL \
             THEN reconcile_status.last_apply_revision ELSE excluded.last_apply_revision END, \
           host = excluded.host, pid = excluded.pid",
        now = now_ms!()
    )))
    .bind(a.status.as_str())
    .bind(a.result.as_str())
    .bind(a.message.as_deref())
    .bind(problems)
    .bind(a.revision.as_deref())
    .bind(a.at_ms)
    .bind(a.applied_serial)
    .bind(a.host.as_str())
    .bind(i64::from(a.pid))
    .bind(LEADER_LEASE)
    .bind(lease_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn reconcile_status(pool: &SqlitePool) -> Result<Option<ReconcileStatus>, Fail> {
    let row: Option<SqliteRow> = sqlx::query(AssertSqlSafe(format!(
        "SELECT {RECONCILE_COLUMNS} FROM reconcile_status WHERE id = 1"
    )))
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(rows::reconcile_status).transpose()
}

pub(super) async fn record_dp_validation(
    pool: &SqlitePool,
    lease_id: &str,
    v: &super::DpValidation,
    problem_files: &str,
) -> Result<bool, Fail> {
    use super::dp_validation_sql::{bind_dp_validation, record};
    let sql = record(now_ms!());
    let done = bind_dp_validation!(
        sqlx::query(AssertSqlSafe(sql)),
        v,
        problem_files,
        LEADER_LEASE,
        lease_id
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn dp_validations(pool: &SqlitePool) -> Result<Vec<super::DpValidation>, Fail> {
    let rows: Vec<SqliteRow> = sqlx::query(AssertSqlSafe(super::dp_validation_sql::all("dp")))
        .fetch_all(pool)
        .await?;
    rows.iter().map(rows::dp_validation).collect()
}
