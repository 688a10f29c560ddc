//! The SQLite backend.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Sqlite, SqlitePool};

use super::transaction::TokenRow;
use super::{
    check_applied, classify, migrator, Backend, Db, Existing, NewObject, Opened, StoreError,
    BUSY_TIMEOUT, MIGRATIONS_TABLE, SQLITE_MIGRATIONS,
};

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

/// The first few of some table names, for a message.
pub(super) fn list(names: &[String]) -> String {
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

type Pool = SqlitePool;
type Conn = SqliteConnection;

/// The database's clock, in epoch milliseconds.
const NOW_MS: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

/// Text is ordered by its bytes already (the BINARY collation).
const BYTE_ORDER: &str = "";

const MACHINE_CHUNK: usize = UPSERT_CHUNK;

/// IMMEDIATE: take the write lock first, so that two writers never both
/// read and then fail to upgrade (the busy timeout covers the wait).
async fn begin_write(pool: &Pool) -> Result<sqlx::Transaction<'static, Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

/// The write lock, taken by [`begin_write`], covers the state row.
async fn lock_state(_conn: &mut Conn) -> Result<(), sqlx::Error> {
    Ok(())
}

super::sql::shared_queries!();

// The multi-row writes: one round trip to the SQLite thread per chunk,
// not per row. Full chunks share one cached prepared statement.

async fn delete_objects(conn: &mut Conn, keys: &[(&str, &str)]) -> Result<(), sqlx::Error> {
    for chunk in keys.chunks(DELETE_CHUNK) {
        let sql = format!(
            "DELETE FROM patchops_objects WHERE (kind, name) IN (VALUES {})",
            placeholders(chunk.len(), "(?, ?)")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (kind, name) in chunk {
            q = q.bind(*kind).bind(*name);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

async fn upsert_objects(
    conn: &mut Conn,
    objects: &[&NewObject],
    serial: i64,
) -> Result<(), sqlx::Error> {
    for chunk in objects.chunks(UPSERT_CHUNK) {
        let sql = format!(
            "INSERT INTO patchops_objects ({OBJECT_COLUMNS}) VALUES {} {UPSERT_OBJECT_SET}",
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
                .bind(serial)
                .bind(serial);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// What the store holds for a chunk's keys (the write lock, held since
/// `BEGIN IMMEDIATE`, keeps it so until commit).
async fn stored_machines(conn: &mut Conn, chunk: &[MachineRow]) -> Result<Existing, sqlx::Error> {
    let sql = format!(
        "SELECT key, id, facts FROM machines WHERE key IN ({})",
        placeholders(chunk.len(), "?")
    );
    let mut q = sqlx::query_as::<_, (String, i64, String)>(AssertSqlSafe(sql));
    for r in chunk {
        q = q.bind(r.key.as_str());
    }
    let found = q.fetch_all(&mut *conn).await?;
    Ok(found.into_iter().map(|(k, id, f)| (k, (id, f))).collect())
}

async fn update_machines(
    conn: &mut Conn,
    rows: &[&MachineRow],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE machines SET name = u.column2, facts = u.column3, updated_ms = ? \
         FROM (VALUES {}) AS u WHERE machines.key = u.column1",
        placeholders(rows.len(), "(?, ?, ?)")
    );
    let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now_ms);
    for r in rows {
        q = q
            .bind(r.key.as_str())
            .bind(r.name.as_str())
            .bind(r.facts.as_str());
    }
    q.execute(&mut *conn).await?;
    Ok(())
}

/// Inserts new machines; key -> id. No other writer can have added one
/// since [`stored_machines`] looked (the write lock).
async fn insert_machines(
    conn: &mut Conn,
    rows: &[&MachineRow],
    now_ms: i64,
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let sql = format!(
        "INSERT INTO machines (key, name, facts, updated_ms) VALUES {} RETURNING key, id",
        placeholders(rows.len(), "(?, ?, ?, ?)")
    );
    let mut q = sqlx::query_as::<_, (String, i64)>(AssertSqlSafe(sql));
    for r in rows {
        q = q
            .bind(r.key.as_str())
            .bind(r.name.as_str())
            .bind(r.facts.as_str())
            .bind(now_ms);
    }
    Ok(q.fetch_all(&mut *conn).await?.into_iter().collect())
}

/// Deletes machines by key; the ids of those deleted.
async fn delete_machines(conn: &mut Conn, keys: &[String]) -> Result<Vec<i64>, sqlx::Error> {
    let mut ids = Vec::new();
    for chunk in keys.chunks(DELETE_CHUNK) {
        let sql = format!(
            "DELETE FROM machines WHERE key IN ({}) RETURNING id",
            placeholders(chunk.len(), "?")
        );
        let mut q = sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql));
        for k in chunk {
            q = q.bind(k.as_str());
        }
        ids.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(ids)
}

/// Deletes the policies of these machines; returns how many.
async fn delete_policies(conn: &mut Conn, ids: &[i64]) -> Result<usize, sqlx::Error> {
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

pub(super) async fn put_policies(
    conn: &mut Conn,
    policies: &[StoredPolicy],
    now_ms: i64,
) -> Result<usize, Fail> {
    let mut written = 0;
    for chunk in policies.chunks(UPSERT_CHUNK) {
        let sql = format!(
            "INSERT INTO policies ({POLICY_COLUMNS}, updated_ms) VALUES {} {UPSERT_POLICY_SET}",
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
        written += count(q.execute(&mut *conn).await?.rows_affected());
    }
    Ok(written)
}

/// Inserts one batch of status messages (`keys`: their machine keys, as
/// stored); how many were new.
async fn insert_status_rows(
    conn: &mut Conn,
    msgs: &[StatusMessage],
    keys: &[String],
) -> Result<usize, Fail> {
    let mut inserted = 0;
    for (chunk, keys) in msgs.chunks(UPSERT_CHUNK).zip(keys.chunks(UPSERT_CHUNK)) {
        let sql = format!(
            "INSERT INTO status_messages ({STATUS_COLUMNS}) VALUES {} \
             ON CONFLICT (machine_key, key) DO NOTHING",
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
        inserted += count(q.execute(&mut *conn).await?.rows_affected());
    }
    Ok(inserted)
}

/// Revokes the live tokens of these machines.
async fn revoke_tokens_of(conn: &mut Conn, keys: &[&str], now_ms: i64) -> Result<(), Fail> {
    for keys in keys.chunks(UPSERT_CHUNK) {
        let sql = format!(
            "UPDATE machine_tokens SET revoked_ms = ? \
             WHERE revoked_ms IS NULL AND machine_key IN ({})",
            placeholders(keys.len(), "?")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now_ms);
        for key in keys {
            q = q.bind(*key);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Adds issued tokens one by one (SQLite's statements are cheap: no round
/// trip to a server), each checked when its hash is stored already.
async fn insert_issued_tokens(
    conn: &mut Conn,
    rows: &[TokenRow<'_>],
    now_ms: i64,
) -> Result<(), Fail> {
    for row in rows {
        let done = sqlx::query(
            "INSERT INTO machine_tokens (token_hash, machine_key, created_ms, revoked_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (token_hash) DO NOTHING",
        )
        .bind(row.hash)
        .bind(row.machine_key)
        .bind(now_ms)
        .bind(row.superseded.then_some(now_ms))
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() == 0 {
            let (key, revoked): (String, Option<i64>) = sqlx::query_as(
                "SELECT machine_key, revoked_ms FROM machine_tokens WHERE token_hash = $1",
            )
            .bind(row.hash)
            .fetch_one(&mut *conn)
            .await?;
            check_token_again(row.machine_key, &key, revoked)?;
        }
    }
    Ok(())
}

/// Deletes the machines' patch states (of one scan agent, when given).
async fn delete_patch_states(
    conn: &mut Conn,
    machines: &[String],
    scan_agent: Option<&str>,
) -> Result<(), sqlx::Error> {
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
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

async fn upsert_patch_states(
    conn: &mut Conn,
    states: &[&StoredPatchState],
) -> Result<usize, sqlx::Error> {
    let mut written = 0;
    for chunk in states.chunks(UPSERT_CHUNK) {
        let sql = format!(
            "INSERT INTO patch_states ({PATCH_STATE_COLUMNS}) VALUES {} {UPSERT_PATCH_STATE_SET}",
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
        written += count(q.execute(&mut *conn).await?.rows_affected());
    }
    Ok(written)
}
