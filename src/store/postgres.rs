//! The PostgreSQL backend.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{Connection, PgPool, Postgres};

use super::sqlite::{list, migrate_error};
use super::transaction::TokenRow;
use super::{
    check_applied, classify, migrator, Backend, Db, Existing, NewObject, Opened, StoreError, CHUNK,
    CONNECT_TIMEOUT, MIGRATIONS_TABLE, POSTGRES_MIGRATIONS,
};

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
        let names = list(&tables);
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

type Pool = PgPool;
type Conn = PgConnection;

/// The database's clock, in epoch milliseconds (`clock_timestamp()`, not
/// `now()`, which stands still for a whole transaction).
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// Byte order, as on SQLite, whatever the database's locale.
const BYTE_ORDER: &str = "COLLATE \"C\"";

const MACHINE_CHUNK: usize = CHUNK;

async fn begin_write(pool: &Pool) -> Result<sqlx::Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin().await
}

/// Locks the state row, as a commit's first statement does.
async fn lock_state(conn: &mut Conn) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT serial FROM patchops_state WHERE id = 1 FOR UPDATE")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

super::sql::shared_queries!();

// The multi-row writes: each chunk's columns as arrays, through UNNEST,
// so one statement text serves any number of rows.

async fn delete_objects(conn: &mut Conn, keys: &[(&str, &str)]) -> Result<(), sqlx::Error> {
    for chunk in keys.chunks(CHUNK) {
        let kinds: Vec<&str> = chunk.iter().map(|(k, _)| *k).collect();
        let names: Vec<&str> = chunk.iter().map(|(_, n)| *n).collect();
        sqlx::query(
            "DELETE FROM patchops_objects o USING UNNEST($1::text[], $2::text[]) AS d(kind, name) \
             WHERE o.kind = d.kind AND o.name = d.name",
        )
        .bind(kinds)
        .bind(names)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// One column of some rows, for UNNEST.
fn column<'a, T: ?Sized, V>(rows: &[&'a T], f: impl Fn(&'a T) -> V) -> Vec<V> {
    rows.iter().map(|r| f(r)).collect()
}

async fn upsert_objects(
    conn: &mut Conn,
    objects: &[&NewObject],
    serial: i64,
) -> Result<(), sqlx::Error> {
    for chunk in objects.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO patchops_objects ({OBJECT_COLUMNS}) \
             SELECT k, n, s, h, m, 'patchops', f, c, $8, $8 \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                         $6::text[], $7::text[]) AS u(k, n, s, h, m, f, c) \
             {UPSERT_OBJECT_SET}"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(column(chunk, |o| o.kind.as_str()))
            .bind(column(chunk, |o| o.name.as_str()))
            .bind(column(chunk, |o| o.spec.as_str()))
            .bind(column(chunk, |o| o.spec_hash.as_str()))
            .bind(column(chunk, |o| o.metadata.as_str()))
            .bind(column(chunk, |o| o.file.as_deref()))
            .bind(column(chunk, |o| o.commit.as_deref()))
            .bind(serial)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// What the store holds for a chunk's keys. FOR UPDATE: what `changed` is
/// measured against stays put until commit.
async fn stored_machines(conn: &mut Conn, chunk: &[MachineRow]) -> Result<Existing, sqlx::Error> {
    let keys: Vec<&str> = chunk.iter().map(|r| r.key.as_str()).collect();
    let found: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT key, id, facts FROM machines WHERE key = ANY($1::text[]) FOR UPDATE",
    )
    .bind(&keys)
    .fetch_all(&mut *conn)
    .await?;
    Ok(found.into_iter().map(|(k, id, f)| (k, (id, f))).collect())
}

async fn update_machines(
    conn: &mut Conn,
    rows: &[&MachineRow],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE machines m SET name = u.n, facts = u.f, updated_ms = $4 \
         FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(k, n, f) WHERE m.key = u.k",
    )
    .bind(column(rows, |r| r.key.as_str()))
    .bind(column(rows, |r| r.name.as_str()))
    .bind(column(rows, |r| r.facts.as_str()))
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Inserts new machines; key -> id. ON CONFLICT only for a machine another
/// writer added since [`stored_machines`] looked.
async fn insert_machines(
    conn: &mut Conn,
    rows: &[&MachineRow],
    now_ms: i64,
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let got: Vec<(String, i64)> = sqlx::query_as(
        "INSERT INTO machines (key, name, facts, updated_ms) \
         SELECT k, n, f, $4 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(k, n, f) \
         ON CONFLICT (key) DO UPDATE SET name = EXCLUDED.name, facts = EXCLUDED.facts, \
         updated_ms = EXCLUDED.updated_ms \
         RETURNING key, id",
    )
    .bind(column(rows, |r| r.key.as_str()))
    .bind(column(rows, |r| r.name.as_str()))
    .bind(column(rows, |r| r.facts.as_str()))
    .bind(now_ms)
    .fetch_all(&mut *conn)
    .await?;
    Ok(got.into_iter().collect())
}

/// Deletes machines by key; the ids of those deleted.
async fn delete_machines(conn: &mut Conn, keys: &[String]) -> Result<Vec<i64>, sqlx::Error> {
    let mut ids = Vec::new();
    for chunk in keys.chunks(CHUNK) {
        let deleted: Vec<i64> =
            sqlx::query_scalar("DELETE FROM machines WHERE key = ANY($1::text[]) RETURNING id")
                .bind(chunk)
                .fetch_all(&mut *conn)
                .await?;
        ids.extend(deleted);
    }
    Ok(ids)
}

/// Deletes the policies of these machines; returns how many.
async fn delete_policies(conn: &mut Conn, ids: &[i64]) -> Result<usize, sqlx::Error> {
    let done = sqlx::query("DELETE FROM policies WHERE machine_id = ANY($1::int8[])")
        .bind(ids)
        .execute(&mut *conn)
        .await?;
    Ok(count(done.rows_affected()))
}

pub(super) async fn put_policies(
    conn: &mut Conn,
    policies: &[StoredPolicy],
    now_ms: i64,
) -> Result<usize, Fail> {
    let mut written = 0;
    for chunk in policies.chunks(CHUNK) {
        let rows: Vec<&StoredPolicy> = chunk.iter().collect();
        let sql = format!(
            "INSERT INTO policies ({POLICY_COLUMNS}, updated_ms) \
             SELECT i, v, h, b, $5 FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::text[]) \
             AS u(i, v, h, b) {UPSERT_POLICY_SET}"
        );
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(column(&rows, |p| i64::from(p.machine_id)))
            .bind(column(&rows, |p| version_i64(p.version)))
            .bind(column(&rows, |p| p.hash.as_str()))
            .bind(column(&rows, |p| p.body.as_str()))
            .bind(now_ms)
            .execute(&mut *conn)
            .await?;
        written += count(done.rows_affected());
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
    for (chunk, keys) in msgs.chunks(CHUNK).zip(keys.chunks(CHUNK)) {
        let rows: Vec<&StatusMessage> = chunk.iter().collect();
        let sql = format!(
            "INSERT INTO status_messages ({STATUS_COLUMNS}) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[], \
                                  $6::text[], $7::int8[], $8::int8[]) \
             ON CONFLICT (machine_key, key) DO NOTHING"
        );
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(column(&rows, |m| m.key.as_str()))
            .bind(keys)
            .bind(column(&rows, |m| m.advertisement.as_str()))
            .bind(column(&rows, |m| m.state.as_str()))
            .bind(column(&rows, |m| m.exit_code))
            .bind(column(&rows, |m| m.message.as_str()))
            .bind(column(&rows, |m| m.at_ms))
            .bind(column(&rows, |m| m.received_ms))
            .execute(&mut *conn)
            .await?;
        inserted += count(done.rows_affected());
    }
    Ok(inserted)
}

/// Revokes the live tokens of these machines.
async fn revoke_tokens_of(conn: &mut Conn, keys: &[&str], now_ms: i64) -> Result<(), Fail> {
    for keys in keys.chunks(CHUNK) {
        sqlx::query(
            "UPDATE machine_tokens SET revoked_ms = $1 \
             WHERE machine_key = ANY($2::text[]) AND revoked_ms IS NULL",
        )
        .bind(now_ms)
        .bind(keys)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Adds issued tokens in two statements per chunk whatever the number of
/// registrations: the insert, and a look at the hashes that were stored
/// already.
async fn insert_issued_tokens(
    conn: &mut Conn,
    rows: &[TokenRow<'_>],
    now_ms: i64,
) -> Result<(), Fail> {
    for rows in rows.chunks(CHUNK) {
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
        .fetch_all(&mut *conn)
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
            .fetch_all(&mut *conn)
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

/// Deletes the machines' patch states (of one scan agent, when given).
async fn delete_patch_states(
    conn: &mut Conn,
    machines: &[String],
    scan_agent: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM patch_states WHERE machine_key = ANY($1::text[]) \
         AND ($2::text IS NULL OR scan_agent = $2)",
    )
    .bind(machines)
    .bind(scan_agent)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn upsert_patch_states(
    conn: &mut Conn,
    states: &[&StoredPatchState],
) -> Result<usize, sqlx::Error> {
    let mut written = 0;
    for chunk in states.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO patch_states ({PATCH_STATE_COLUMNS}) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                                  $6::text[], $7::text[], $8::text[], $9::int8[], $10::text[], \
                                  $11::text[]) \
             {UPSERT_PATCH_STATE_SET}"
        );
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(column(chunk, |s| s.machine_key.as_str()))
            .bind(column(chunk, |s| s.bulletin.as_str()))
            .bind(column(chunk, |s| s.product.as_deref().unwrap_or("")))
            .bind(column(chunk, |s| s.q_numbers.join(",")))
            .bind(column(chunk, |s| s.title.as_deref()))
            .bind(column(chunk, |s| s.status.as_str()))
            .bind(column(chunk, |s| s.reboot.as_str()))
            .bind(column(chunk, |s| s.scan_agent.as_str()))
            .bind(column(chunk, |s| s.scan_time_ms))
            .bind(column(chunk, |s| s.patch.as_deref()))
            .bind(column(chunk, |s| s.reason.as_str()))
            .execute(&mut *conn)
            .await?;
        written += count(done.rows_affected());
    }
    Ok(written)
}
