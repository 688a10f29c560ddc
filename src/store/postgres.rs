//! The PostgreSQL backend.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection, PgPool};

use super::sqlite::migrate_error;
use super::{
    check_applied, check_token_again, classify, count, decode_machine, lease_ms, machine_outcomes,
    machines_to_write, migrator, rows, version_i64, ApplyRecord, Backend, CatalogVersion, Db,
    Existing, Fail, LockHolder, LockRequest, Machine, MachineRow, Normalized, Opened, Owner,
    ReconcileAttempt, ReconcileStatus, StateInfo, StatusMessage, StoreError, StoredObject,
    StoredPatchState, StoredPolicy, SyncAttempt, SyncStatus, TokenIssue, CHUNK, CONNECT_TIMEOUT,
    LEADER_LEASE, MIGRATIONS_TABLE, POSTGRES_MIGRATIONS,
};

/// The database's clock, in epoch milliseconds (`clock_timestamp()`, not
/// `now()`, which stands still for a whole transaction).
macro_rules! now_ms {
    () => {
        "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
    };
}

pub(super) async fn open(url: &str, display: &str) -> Result<Opened, StoreError> {
    let opts = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::BadUrl(format!("{display}: {e}")))?
        .application_name("patchops");

    // One connection of our own to look, and to migrate; a pool after.
    let mut conn =
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&opts)).await {
            Err(_) => {
                return Err(StoreError::Unreachable {
                    url: display.to_string(),
                    reason: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
                })
            }
            Ok(Err(e)) => {
                return Err(match classify(e, display, Backend::Postgres) {
                    // Whatever stops a first connection means we cannot reach it.
                    StoreError::Backend(m) => StoreError::Unreachable {
                        url: display.to_string(),
                        reason: m
                            .strip_prefix(&format!("{display}: "))
                            .map(str::to_string)
                            .unwrap_or(m),
                    },
                    other => other,
                });
            }
            Ok(Ok(c)) => c,
        };
    let prepared = prepare(&mut conn, display).await;
    let _ = conn.close().await;
    let read_only = prepared?;

    // Connections are made when needed; each idle one is pinged before use
    // (`test_before_acquire`), so connections killed by a server restart are
    // dropped and replaced, and no acquire (connecting included) waits past
    // CONNECT_TIMEOUT: an unreachable database is an error, not a hang.
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .test_before_acquire(true)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_lazy_with(opts);
    Ok(Opened {
        db: Db::Postgres(pool),
        read_only,
    })
}

/// Checks that the database is ours (or empty), and migrates it unless the
/// session is read-only. Returns whether it is read-only.
async fn prepare(conn: &mut PgConnection, display: &str) -> Result<bool, StoreError> {
    let sql_err = |e: sqlx::Error| classify(e, display, Backend::Postgres);
    let backend_err = |m: String| StoreError::Backend(format!("{display}: {m}"));

    let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()::text")
        .fetch_one(&mut *conn)
        .await
        .map_err(sql_err)?;
    if schema.is_none() {
        return Err(backend_err(
            "no schema to hold the store: no schema named in search_path exists".into(),
        ));
    }
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
         ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(sql_err)?;
    let read_only: String = sqlx::query_scalar("SELECT current_setting('transaction_read_only')")
        .fetch_one(&mut *conn)
        .await
        .map_err(sql_err)?;
    let read_only = read_only == "on";

    let applied = if tables.iter().any(|t| t == MIGRATIONS_TABLE) {
        Some(
            sqlx::query_as::<_, (i64, Vec<u8>, bool)>(
                "SELECT version, checksum, success FROM patchops_migrations ORDER BY version",
            )
            .fetch_all(&mut *conn)
            .await
            .map_err(sql_err)?,
        )
    } else {
        None
    };
    if !tables.is_empty() && applied.is_none() {
        const SHOWN: usize = 5;
        let mut names = tables
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if tables.len() > SHOWN {
            names.push_str(&format!(", and {} more", tables.len() - SHOWN));
        }
        return Err(StoreError::NotAStateStore {
            url: display.to_string(),
            reason: format!(
                "its schema {} holds other tables ({names}) and no {MIGRATIONS_TABLE} table; \
                 it was left untouched",
                schema.unwrap_or_default()
            ),
        });
    }
    let migrator = migrator(POSTGRES_MIGRATIONS);
    let up_to_date = match &applied {
        Some(applied) => check_applied(applied, &migrator).map_err(backend_err)?,
        None => false,
    };
    if up_to_date {
        return Ok(read_only);
    }
    if read_only {
        return Err(if applied.is_some() {
            backend_err("the store's schema needs an upgrade, but the database is read-only".into())
        } else {
            StoreError::NotAStateStore {
                url: display.to_string(),
                reason: "it is empty, and read-only it cannot be made a store".into(),
            }
        });
    }
    migrator
        .run(&mut *conn)
        .await
        .map_err(|e| migrate_error(e, display, Backend::Postgres))?;
    Ok(false)
}

pub(super) async fn info(pool: &PgPool) -> Result<StateInfo, Fail> {
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

pub(super) async fn objects(pool: &PgPool) -> Result<Vec<StoredObject>, Fail> {
    // COLLATE "C": byte order, as on SQLite, whatever the database's locale.
    let rows: Vec<PgRow> = sqlx::query(
        "SELECT kind, name, spec, spec_hash, metadata, owner, file, commit_id, \
         created_serial, updated_serial FROM patchops_objects \
         ORDER BY kind COLLATE \"C\", name COLLATE \"C\"",
    )
    .fetch_all(pool)
    .await?;
    rows.iter().map(rows::object).collect()
}

pub(super) async fn object(
    pool: &PgPool,
    kind: &str,
    name: &str,
) -> Result<Option<StoredObject>, Fail> {
    let row: Option<PgRow> = sqlx::query(
        "SELECT kind, name, spec, spec_hash, metadata, owner, file, commit_id, \
         created_serial, updated_serial FROM patchops_objects WHERE kind = $1 AND name = $2",
    )
    .bind(kind)
    .bind(name)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(rows::object).transpose()
}

pub(super) async fn commit(
    pool: &PgPool,
    expected: i64,
    site: Option<&str>,
    plan: &Normalized<'_>,
    record: &ApplyRecord,
) -> Result<i64, Fail> {
    let mut tx = pool.begin().await?;
    // The row lock this UPDATE takes serialises concurrent commits; the loser
    // re-reads the row, finds another serial and matches nothing.
    let new = bump(&mut tx, Some(expected), site).await?;
    for chunk in plan.deletes.chunks(CHUNK) {
        let kinds: Vec<&str> = chunk.iter().map(|(k, _)| *k).collect();
        let names: Vec<&str> = chunk.iter().map(|(_, n)| *n).collect();
        sqlx::query(
            "DELETE FROM patchops_objects o USING UNNEST($1::text[], $2::text[]) AS d(kind, name) \
             WHERE o.kind = d.kind AND o.name = d.name",
        )
        .bind(kinds)
        .bind(names)
        .execute(&mut *tx)
        .await?;
    }
    for chunk in plan.upserts.chunks(CHUNK) {
        let col =
            |f: fn(&super::NewObject) -> &str| chunk.iter().map(|o| f(o)).collect::<Vec<&str>>();
        let opt = |f: fn(&super::NewObject) -> Option<&str>| {
            chunk.iter().map(|o| f(o)).collect::<Vec<Option<&str>>>()
        };
        sqlx::query(
            "INSERT INTO patchops_objects (kind, name, spec, spec_hash, metadata, owner, file, \
             commit_id, created_serial, updated_serial) \
             SELECT k, n, s, h, m, 'patchops', f, c, $8, $8 \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                         $6::text[], $7::text[]) AS u(k, n, s, h, m, f, c) \
             ON CONFLICT (kind, name) DO UPDATE SET spec = EXCLUDED.spec, \
             spec_hash = EXCLUDED.spec_hash, metadata = EXCLUDED.metadata, owner = EXCLUDED.owner, \
             file = EXCLUDED.file, commit_id = EXCLUDED.commit_id, \
             updated_serial = EXCLUDED.updated_serial",
        )
        .bind(col(|o| &o.kind))
        .bind(col(|o| &o.name))
        .bind(col(|o| &o.spec))
        .bind(col(|o| &o.spec_hash))
        .bind(col(|o| &o.metadata))
        .bind(opt(|o| o.file.as_deref()))
        .bind(opt(|o| o.commit.as_deref()))
        .bind(new)
        .execute(&mut *tx)
        .await?;
    }
    insert_record(&mut tx, new, record).await?;
    tx.commit().await?;
    Ok(new)
}

/// Adds one to the serial (when it is still `expected`, if given) and sets
/// the site (when given); returns the new serial.
async fn bump(
    conn: &mut PgConnection,
    expected: Option<i64>,
    site: Option<&str>,
) -> Result<i64, Fail> {
    let new: Option<i64> = sqlx::query_scalar(
        "UPDATE patchops_state SET serial = serial + 1, site = COALESCE($1, site) \
         WHERE id = 1 AND ($2::bigint IS NULL OR serial = $2) AND serial < 9223372036854775807 \
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
    conn: &mut PgConnection,
    serial: i64,
    r: &ApplyRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO patchops_history (serial, started_at, finished_at, actor, host, command, \
         commit_id, dirty, plan_hash, added, changed, destroyed, changes) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
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

pub(super) async fn history(pool: &PgPool, limit: i64) -> Result<Vec<ApplyRecord>, Fail> {
    let rows: Vec<PgRow> = sqlx::query(
        "SELECT id, serial, started_at, finished_at, actor, host, command, commit_id, dirty, \
         plan_hash, added, changed, destroyed, changes \
         FROM patchops_history ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(rows::record).collect()
}

pub(super) async fn set_owner(
    pool: &PgPool,
    kind: &str,
    name: &str,
    owner: Owner,
    record: &ApplyRecord,
) -> Result<bool, Fail> {
    let mut tx = pool.begin().await?;
    // Lock the state row first, as commit does, so the two never deadlock.
    sqlx::query("SELECT serial FROM patchops_state WHERE id = 1 FOR UPDATE")
        .execute(&mut *tx)
        .await?;
    let current: Option<String> =
        sqlx::query_scalar("SELECT owner FROM patchops_objects WHERE kind = $1 AND name = $2")
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
        "UPDATE patchops_objects SET owner = $1, updated_serial = $2 WHERE kind = $3 AND name = $4",
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

pub(super) async fn try_lock(pool: &PgPool, name: &str, req: &LockRequest) -> Result<bool, Fail> {
    let got: Option<String> = sqlx::query_scalar(concat!(
        "INSERT INTO patchops_lock AS l (name, id, holder, host, pid, command, acquired_ms, expires_ms) \
         VALUES ($7, $1, $2, $3, $4, $5, ",
        now_ms!(),
        ", ",
        now_ms!(),
        " + $6) \
         ON CONFLICT (name) DO UPDATE SET id = EXCLUDED.id, holder = EXCLUDED.holder, \
         host = EXCLUDED.host, pid = EXCLUDED.pid, command = EXCLUDED.command, \
         acquired_ms = CASE WHEN l.id = EXCLUDED.id THEN l.acquired_ms ELSE EXCLUDED.acquired_ms END, \
         expires_ms = EXCLUDED.expires_ms \
         WHERE l.expires_ms <= EXCLUDED.acquired_ms OR l.id = EXCLUDED.id \
         RETURNING l.id"
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
    pool: &PgPool,
    name: &str,
    previous_id: &str,
    req: &LockRequest,
) -> Result<bool, Fail> {
    let done = sqlx::query(concat!(
        "UPDATE patchops_lock SET id = $1, holder = $2, host = $3, pid = $4, command = $5, \
         acquired_ms = ",
        now_ms!(),
        ", expires_ms = ",
        now_ms!(),
        " + $6 WHERE name = $8 AND id = $7"
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
    pool: &PgPool,
    name: &str,
    id: &str,
    lease_ms: i64,
) -> Result<bool, Fail> {
    let done = sqlx::query(concat!(
        "UPDATE patchops_lock SET expires_ms = ",
        now_ms!(),
        " + $1 WHERE name = $3 AND id = $2"
    ))
    .bind(lease_ms)
    .bind(id)
    .bind(name)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn unlock(pool: &PgPool, name: &str, id: &str) -> Result<bool, Fail> {
    let done = sqlx::query("DELETE FROM patchops_lock WHERE name = $2 AND id = $1")
        .bind(id)
        .bind(name)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn lock_holder(pool: &PgPool, name: &str) -> Result<Option<LockHolder>, Fail> {
    let row: Option<PgRow> = sqlx::query(
        "SELECT id, holder, host, pid, command, acquired_ms, expires_ms \
         FROM patchops_lock WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(rows::lock_holder).transpose()
}

pub(super) async fn ping(pool: &PgPool) -> Result<(), Fail> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

/// One text column of some machine rows, for UNNEST.
fn col<'a>(rows: &[&'a MachineRow], f: fn(&MachineRow) -> &str) -> Vec<&'a str> {
    rows.iter().map(|r| f(r)).collect()
}

pub(super) async fn upsert_machines(
    tx: &mut PgConnection,
    rows: &[MachineRow],
    now_ms: i64,
) -> Result<Vec<(u32, bool)>, Fail> {
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(CHUNK) {
        let keys: Vec<&str> = chunk.iter().map(|r| r.key.as_str()).collect();
        // FOR UPDATE: what `changed` is measured against stays put until commit.
        let found: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT key, id, facts FROM machines WHERE key = ANY($1::text[]) FOR UPDATE",
        )
        .bind(&keys)
        .fetch_all(&mut *tx)
        .await?;
        let existing: Existing = found.into_iter().map(|(k, id, f)| (k, (id, f))).collect();
        let (updates, inserts) = machines_to_write(chunk, &existing);
        if !updates.is_empty() {
            sqlx::query(
                "UPDATE machines m SET name = u.n, facts = u.f, updated_ms = $4 \
                 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(k, n, f) WHERE m.key = u.k",
            )
            .bind(col(&updates, |r| &r.key))
            .bind(col(&updates, |r| &r.name))
            .bind(col(&updates, |r| &r.facts))
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        let mut written = HashMap::with_capacity(inserts.len());
        if !inserts.is_empty() {
            // ON CONFLICT only for a machine another writer added since the
            // look above.
            let got: Vec<(String, i64)> = sqlx::query_as(
                "INSERT INTO machines (key, name, facts, updated_ms) \
                 SELECT k, n, f, $4 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(k, n, f) \
                 ON CONFLICT (key) DO UPDATE SET name = EXCLUDED.name, facts = EXCLUDED.facts, \
                 updated_ms = EXCLUDED.updated_ms \
                 RETURNING key, id",
            )
            .bind(col(&inserts, |r| &r.key))
            .bind(col(&inserts, |r| &r.name))
            .bind(col(&inserts, |r| &r.facts))
            .bind(now_ms)
            .fetch_all(&mut *tx)
            .await?;
            written.extend(got);
        }
        out.extend(machine_outcomes(chunk, &existing, &written)?);
    }
    Ok(out)
}

/// The inventory serial: bumped whenever a machine is added, changed or
/// removed (by triggers).
pub(super) async fn inventory_version(conn: &mut PgConnection) -> Result<i64, Fail> {
    Ok(
        sqlx::query_scalar("SELECT serial FROM inventory_serial WHERE id = 1")
            .fetch_one(conn)
            .await?,
    )
}

pub(super) async fn machines(pool: &PgPool) -> Result<Vec<(u32, Machine)>, Fail> {
    let rows: Vec<(i64, String, Option<i64>)> =
        sqlx::query_as("SELECT id, facts, last_heartbeat_ms FROM machines ORDER BY id")
            .fetch_all(pool)
            .await?;
    rows.iter()
        .map(|(id, facts, hb)| decode_machine(*id, facts, *hb))
        .collect()
}

pub(super) async fn machine(
    conn: &mut PgConnection,
    key: &str,
) -> Result<Option<(u32, Machine)>, Fail> {
    let row: Option<(i64, String, Option<i64>)> =
        sqlx::query_as("SELECT id, facts, last_heartbeat_ms FROM machines WHERE key = $1")
            .bind(key)
            .fetch_optional(conn)
            .await?;
    row.map(|(id, facts, hb)| decode_machine(id, &facts, hb))
        .transpose()
}

pub(super) async fn remove_machines(pool: &PgPool, keys: &[String]) -> Result<usize, Fail> {
    let mut tx = pool.begin().await?;
    let mut removed = 0;
    for chunk in keys.chunks(CHUNK) {
        let ids: Vec<i64> =
            sqlx::query_scalar("DELETE FROM machines WHERE key = ANY($1::text[]) RETURNING id")
                .bind(chunk)
                .fetch_all(&mut *tx)
                .await?;
        removed += ids.len();
        sqlx::query("DELETE FROM policies WHERE machine_id = ANY($1::int8[])")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(removed)
}

pub(super) async fn touch_heartbeat(pool: &PgPool, id: u32, now_ms: i64) -> Result<bool, Fail> {
    // GREATEST ignores NULL: a first heartbeat is taken as it is.
    let done = sqlx::query(
        "UPDATE machines SET last_heartbeat_ms = GREATEST(last_heartbeat_ms, $1) WHERE id = $2",
    )
    .bind(now_ms)
    .bind(i64::from(id))
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn add_machine_token(
    pool: &PgPool,
    machine_key: &str,
    token_hash: &str,
    now_ms: i64,
) -> Result<(), Fail> {
    let mut tx = pool.begin().await?;
    insert_token(&mut tx, machine_key, token_hash, now_ms).await?;
    tx.commit().await?;
    Ok(())
}

/// Issues tokens as [`TokenIssue`] plans them: every named machine's live
/// tokens revoked, then every hash added, in three statements whatever
/// the number of registrations.
pub(super) async fn issue_machine_tokens(
    tx: &mut PgConnection,
    issue: &TokenIssue<'_>,
    now_ms: i64,
) -> Result<(), Fail> {
    for keys in issue.machines.chunks(CHUNK) {
        sqlx::query(
            "UPDATE machine_tokens SET revoked_ms = $1 \
             WHERE machine_key = ANY($2::text[]) AND revoked_ms IS NULL",
        )
        .bind(now_ms)
        .bind(keys)
        .execute(&mut *tx)
        .await?;
    }
    for rows in issue.rows.chunks(CHUNK) {
        let hashes: Vec<&str> = rows.iter().map(|r| r.hash).collect();
        let keys: Vec<&str> = rows.iter().map(|r| r.machine_key).collect();
        let revoked: Vec<Option<i64>> = rows
            .iter()
            .map(|r| r.superseded.then_some(now_ms))
            .collect();
        let added: HashSet<String> = sqlx::query_scalar(
            "INSERT INTO machine_tokens (token_hash, machine_key, created_ms, revoked_ms) \
             SELECT h, k, $3, r FROM UNNEST($1::text[], $2::text[], $4::int8[]) AS u(h, k, r) \
             ON CONFLICT (token_hash) DO NOTHING RETURNING token_hash",
        )
        .bind(&hashes)
        .bind(&keys)
        .bind(now_ms)
        .bind(&revoked)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let clashing: Vec<&str> = hashes
            .iter()
            .copied()
            .filter(|h| !added.contains(*h))
            .collect();
        if clashing.is_empty() {
            continue;
        }
        let stored: HashMap<String, (String, Option<i64>)> =
            sqlx::query_as::<_, (String, String, Option<i64>)>(
                "SELECT token_hash, machine_key, revoked_ms FROM machine_tokens \
             WHERE token_hash = ANY($1::text[])",
            )
            .bind(&clashing)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|(hash, key, revoked)| (hash, (key, revoked)))
            .collect();
        for row in rows.iter().filter(|r| !added.contains(r.hash)) {
            let (key, revoked) = stored
                .get(row.hash)
                .ok_or_else(|| Fail::Data("a token that clashed on insert is not stored".into()))?;
            check_token_again(row.machine_key, key, *revoked)?;
        }
    }
    Ok(())
}

async fn insert_token(
    conn: &mut PgConnection,
    machine_key: &str,
    token_hash: &str,
    now_ms: i64,
) -> Result<(), Fail> {
    let done = sqlx::query(
        "INSERT INTO machine_tokens (token_hash, machine_key, created_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (token_hash) DO NOTHING",
    )
    .bind(token_hash)
    .bind(machine_key)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        let (key, revoked): (String, Option<i64>) = sqlx::query_as(
            "SELECT machine_key, revoked_ms FROM machine_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_one(&mut *conn)
        .await?;
        check_token_again(machine_key, &key, revoked)?;
    }
    Ok(())
}

pub(super) async fn has_live_token(
    conn: &mut PgConnection,
    machine_key: &str,
) -> Result<bool, Fail> {
    let found: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM machine_tokens WHERE machine_key = $1 AND revoked_ms IS NULL LIMIT 1",
    )
    .bind(machine_key)
    .fetch_optional(conn)
    .await?;
    Ok(found.is_some())
}

pub(super) async fn machine_for_token(
    pool: &PgPool,
    token_hash: &str,
) -> Result<Option<String>, Fail> {
    Ok(sqlx::query_scalar(
        "SELECT machine_key FROM machine_tokens WHERE token_hash = $1 AND revoked_ms IS NULL",
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await?)
}

pub(super) async fn revoke_machine_tokens(
    pool: &PgPool,
    machine_key: &str,
    now_ms: i64,
) -> Result<usize, Fail> {
    let done = sqlx::query(
        "UPDATE machine_tokens SET revoked_ms = $1 WHERE machine_key = $2 AND revoked_ms IS NULL",
    )
    .bind(now_ms)
    .bind(machine_key)
    .execute(pool)
    .await?;
    Ok(count(done.rows_affected()))
}

pub(super) async fn policies(pool: &PgPool) -> Result<Vec<StoredPolicy>, Fail> {
    let rows: Vec<PgRow> =
        sqlx::query("SELECT machine_id, version, hash, body FROM policies ORDER BY machine_id")
            .fetch_all(pool)
            .await?;
    rows.iter().map(rows::policy).collect()
}

pub(super) async fn policy(pool: &PgPool, machine_id: u32) -> Result<Option<StoredPolicy>, Fail> {
    let row: Option<PgRow> =
        sqlx::query("SELECT machine_id, version, hash, body FROM policies WHERE machine_id = $1")
            .bind(i64::from(machine_id))
            .fetch_optional(pool)
            .await?;
    row.as_ref().map(rows::policy).transpose()
}

pub(super) async fn put_policies(
    tx: &mut PgConnection,
    policies: &[StoredPolicy],
    now_ms: i64,
) -> Result<usize, Fail> {
    let mut written = 0;
    for chunk in policies.chunks(CHUNK) {
        let ids: Vec<i64> = chunk.iter().map(|p| i64::from(p.machine_id)).collect();
        let versions: Vec<i64> = chunk.iter().map(|p| version_i64(p.version)).collect();
        let hashes: Vec<&str> = chunk.iter().map(|p| p.hash.as_str()).collect();
        let bodies: Vec<&str> = chunk.iter().map(|p| p.body.as_str()).collect();
        let done = sqlx::query(
            "INSERT INTO policies AS p (machine_id, version, hash, body, updated_ms) \
             SELECT i, v, h, b, $5 FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::text[]) \
             AS u(i, v, h, b) \
             ON CONFLICT (machine_id) DO UPDATE SET version = EXCLUDED.version, \
             hash = EXCLUDED.hash, body = EXCLUDED.body, updated_ms = EXCLUDED.updated_ms \
             WHERE (p.version, p.hash, p.body) IS DISTINCT FROM \
                   (EXCLUDED.version, EXCLUDED.hash, EXCLUDED.body)",
        )
        .bind(ids)
        .bind(versions)
        .bind(hashes)
        .bind(bodies)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        written += count(done.rows_affected());
    }
    Ok(written)
}

pub(super) async fn remove_policies(pool: &PgPool, ids: &[i64]) -> Result<usize, Fail> {
    let done = sqlx::query("DELETE FROM policies WHERE machine_id = ANY($1::int8[])")
        .bind(ids)
        .execute(pool)
        .await?;
    Ok(count(done.rows_affected()))
}

/// Batches of status messages in one transaction; how many of each batch
/// were newly stored.
pub(super) async fn insert_status(
    tx: &mut PgConnection,
    batches: &[(&[StatusMessage], Vec<String>)],
) -> Result<Vec<usize>, Fail> {
    let mut out = Vec::with_capacity(batches.len());
    for (msgs, machine_keys) in batches {
        let mut inserted = 0;
        for (chunk, keys) in msgs.chunks(CHUNK).zip(machine_keys.chunks(CHUNK)) {
            let col = |f: fn(&StatusMessage) -> &str| chunk.iter().map(f).collect::<Vec<&str>>();
            let done = sqlx::query(
                "INSERT INTO status_messages (key, machine_key, advertisement, state, exit_code, \
                 message, at_ms, received_ms) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[], \
                                      $6::text[], $7::int8[], $8::int8[]) \
                 ON CONFLICT (machine_key, key) DO NOTHING",
            )
            .bind(col(|m| &m.key))
            .bind(keys)
            .bind(col(|m| &m.advertisement))
            .bind(col(|m| &m.state))
            .bind(chunk.iter().map(|m| m.exit_code).collect::<Vec<_>>())
            .bind(col(|m| &m.message))
            .bind(chunk.iter().map(|m| m.at_ms).collect::<Vec<_>>())
            .bind(chunk.iter().map(|m| m.received_ms).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
            inserted += count(done.rows_affected());
        }
        out.push(inserted);
    }
    Ok(out)
}

/// The newest message of every (machine, advertisement), optionally of
/// one advertisement only.
pub(super) async fn latest_status(
    pool: &PgPool,
    advertisement: Option<&str>,
) -> Result<Vec<StatusMessage>, Fail> {
    let rows: Vec<PgRow> = sqlx::query(
        "SELECT key, machine_key, advertisement, state, exit_code, message, at_ms, received_ms \
         FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY machine_key, advertisement \
                 ORDER BY at_ms DESC, received_ms DESC, key COLLATE \"C\" DESC) AS newest \
               FROM status_messages WHERE $1::text IS NULL OR advertisement = $1) AS latest \
         WHERE newest = 1 ORDER BY advertisement COLLATE \"C\", machine_key COLLATE \"C\"",
    )
    .bind(advertisement)
    .fetch_all(pool)
    .await?;
    rows.iter().map(rows::status).collect()
}

pub(super) async fn status_for_machine(
    pool: &PgPool,
    machine_key: &str,
    limit: i64,
) -> Result<Vec<StatusMessage>, Fail> {
    let rows: Vec<PgRow> = sqlx::query(
        "SELECT key, machine_key, advertisement, state, exit_code, message, at_ms, received_ms \
         FROM status_messages WHERE machine_key = $1 \
         ORDER BY at_ms DESC, received_ms DESC, key COLLATE \"C\" LIMIT $2",
    )
    .bind(machine_key)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(rows::status).collect()
}

pub(super) async fn put_catalog_version(pool: &PgPool, v: &CatalogVersion) -> Result<i64, Fail> {
    let size = i64::try_from(v.bytes.len())
        .map_err(|_| Fail::Invalid("the catalog is too large to store".into()))?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO catalog_versions (url, kind, sha256, etag, last_modified, fetched_ms, size, \
         bytes, summary, diff) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
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
    pool: &PgPool,
    url: &str,
) -> Result<Option<CatalogVersion>, Fail> {
    let row: Option<PgRow> = sqlx::query(AssertSqlSafe(format!(
        "SELECT {CATALOG_COLUMNS}, bytes FROM catalog_versions WHERE url = $1 \
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
    pool: &PgPool,
    url: &str,
    limit: i64,
) -> Result<Vec<CatalogVersion>, Fail> {
    let rows: Vec<PgRow> = sqlx::query(AssertSqlSafe(format!(
        "SELECT {CATALOG_COLUMNS} FROM catalog_versions WHERE url = $1 \
         ORDER BY id DESC LIMIT $2"
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
    pool: &PgPool,
    a: &SyncAttempt,
) -> Result<SyncStatus, Fail> {
    // One statement: atomic on both backends.
    let row: PgRow = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO catalog_sync_status ({SYNC_STATUS_COLUMNS}) \
         VALUES ($1, $2, $3, \
                 CASE WHEN $4::TEXT IS NULL THEN $3::BIGINT ELSE NULL END, \
                 $4, CASE WHEN $4::TEXT IS NULL THEN 0 ELSE 1 END, $5) \
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

pub(super) async fn sync_status(pool: &PgPool) -> Result<Vec<SyncStatus>, Fail> {
    let rows: Vec<PgRow> = sqlx::query(AssertSqlSafe(format!(
        "SELECT {SYNC_STATUS_COLUMNS} FROM catalog_sync_status ORDER BY url COLLATE \"C\""
    )))
    .fetch_all(pool)
    .await?;
    rows.iter().map(rows::sync_status).collect()
}

pub(super) async fn replace_patch_states(
    pool: &PgPool,
    machines: &[String],
    scan_agent: Option<&str>,
    states: &[&StoredPatchState],
) -> Result<usize, Fail> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "DELETE FROM patch_states WHERE machine_key = ANY($1::text[]) \
         AND ($2::text IS NULL OR scan_agent = $2)",
    )
    .bind(machines)
    .bind(scan_agent)
    .execute(&mut *tx)
    .await?;
    let mut written = 0;
    for chunk in states.chunks(CHUNK) {
        let col =
            |f: fn(&StoredPatchState) -> &str| chunk.iter().map(|s| f(s)).collect::<Vec<&str>>();
        let opt = |f: fn(&StoredPatchState) -> Option<&str>| {
            chunk.iter().map(|s| f(s)).collect::<Vec<Option<&str>>>()
        };
        let done = sqlx::query(
            "INSERT INTO patch_states (machine_key, bulletin, product, q_numbers, title, status, reboot, scan_agent, scan_time_ms, patch, reason) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                                  $6::text[], $7::text[], $8::text[], $9::int8[], $10::text[], \
                                  $11::text[]) \
             ON CONFLICT (machine_key, bulletin, product) DO UPDATE SET q_numbers = EXCLUDED.q_numbers, \
             title = EXCLUDED.title, status = EXCLUDED.status, reboot = EXCLUDED.reboot, \
             scan_agent = EXCLUDED.scan_agent, scan_time_ms = EXCLUDED.scan_time_ms, \
             patch = EXCLUDED.patch, reason = EXCLUDED.reason",
        )
        .bind(col(|s| &s.machine_key))
        .bind(col(|s| &s.bulletin))
        .bind(col(|s| s.product.as_deref().unwrap_or("")))
        .bind(chunk.iter().map(|s| s.q_numbers.join(",")).collect::<Vec<String>>())
        .bind(opt(|s| s.title.as_deref()))
        .bind(col(|s| &s.status))
        .bind(col(|s| &s.reboot))
        .bind(col(|s| &s.scan_agent))
        .bind(chunk.iter().map(|s| s.scan_time_ms).collect::<Vec<i64>>())
        .bind(opt(|s| s.patch.as_deref()))
        .bind(col(|s| &s.reason))
        .execute(&mut *tx)
        .await?;
        written += count(done.rows_affected());
    }
    tx.commit().await?;
    Ok(written)
}

pub(super) async fn patch_states(
    pool: &PgPool,
    machine_key: Option<&str>,
) -> Result<Vec<StoredPatchState>, Fail> {
    let rows: Vec<PgRow> = sqlx::query(
        "SELECT machine_key, bulletin, product, q_numbers, title, status, reboot, scan_agent, scan_time_ms, patch, reason FROM patch_states WHERE $1::text IS NULL OR machine_key = $1 \
         ORDER BY machine_key COLLATE \"C\", bulletin COLLATE \"C\", product COLLATE \"C\"",
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
    pool: &PgPool,
    lease_id: &str,
    a: &ReconcileAttempt,
    problems: &str,
) -> Result<bool, Fail> {
    // One statement, written only while `lease_id` holds the leader lease.
    let done = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO reconcile_status (id, {RECONCILE_COLUMNS}) \
         SELECT 1, $1::TEXT, $2::TEXT, $3::TEXT, $4::TEXT, $5::TEXT, $6::BIGINT, $6::BIGINT, \
                CASE WHEN $1::TEXT = 'error' THEN 1 ELSE 0 END, \
                CASE WHEN $1::TEXT = 'error' THEN NULL ELSE $6::BIGINT END, \
                CASE WHEN $7::BIGINT IS NULL THEN NULL ELSE $6::BIGINT END, $7::BIGINT, \
                CASE WHEN $7::BIGINT IS NULL THEN NULL ELSE $5::TEXT END, $8::TEXT, $9::BIGINT \
         WHERE EXISTS (SELECT 1 FROM patchops_lock WHERE name = $10::TEXT AND id = $11::TEXT \
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

pub(super) async fn reconcile_status(pool: &PgPool) -> Result<Option<ReconcileStatus>, Fail> {
    let row: Option<PgRow> = sqlx::query(AssertSqlSafe(format!(
        "SELECT {RECONCILE_COLUMNS} FROM reconcile_status WHERE id = 1"
    )))
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(rows::reconcile_status).transpose()
}

pub(super) async fn record_dp_validation(
    pool: &PgPool,
    lease_id: &str,
    v: &super::DpValidation,
    problem_files: &str,
) -> Result<bool, Fail> {
    use super::dp_validation_sql::{bind_dp_validation, record};
    let sql = super::numbered_placeholders(&record(now_ms!()));
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

pub(super) async fn dp_validations(pool: &PgPool) -> Result<Vec<super::DpValidation>, Fail> {
    let rows: Vec<PgRow> = sqlx::query(AssertSqlSafe(super::dp_validation_sql::all(
        "dp COLLATE \"C\"",
    )))
    .fetch_all(pool)
    .await?;
    rows.iter().map(rows::dp_validation).collect()
}
