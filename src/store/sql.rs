//! The statements both backends run, written once.
//!
//! sqlx binds `$N` placeholders on SQLite as on PostgreSQL, and every
//! parameter whose type PostgreSQL cannot infer is written `CAST($N AS …)`,
//! which SQLite reads too; so one text serves both. [`shared_queries!`]
//! expands the functions that run these statements inside each backend's
//! module, where the few things that truly differ are named:
//!
//! - `Pool` and `Conn`: the backend's pool and connection types;
//! - `NOW_MS`: the database's clock in epoch milliseconds;
//! - `BYTE_ORDER`: what makes `ORDER BY` of text compare bytes (empty on
//!   SQLite, whose default it is; `COLLATE "C"` on PostgreSQL);
//! - `begin_write(pool)`: a write transaction (SQLite takes the write lock
//!   at once, so that it never fails to upgrade);
//! - `lock_state(conn)`: takes the state row's lock before a state change
//!   that does not start by bumping the serial;
//! - the multi-row writes (multi-row `VALUES` on SQLite, `UNNEST` of arrays
//!   on PostgreSQL): `delete_objects`, `upsert_objects`, `stored_machines`,
//!   `update_machines`, `insert_machines`, `delete_machines`,
//!   `delete_policies`, `put_policies`, `insert_status_rows`,
//!   `revoke_tokens_of`, `insert_issued_tokens`, `delete_patch_states`,
//!   `upsert_patch_states`, each chunked as its backend's limits require.

pub(crate) const OBJECT_COLUMNS: &str = "kind, name, spec, spec_hash, metadata, owner, file, \
     commit_id, created_serial, updated_serial";

pub(crate) const HISTORY_COLUMNS: &str = "id, serial, started_at, finished_at, actor, host, \
     command, commit_id, dirty, plan_hash, added, changed, destroyed, changes";

pub(crate) const LOCK_COLUMNS: &str = "id, holder, host, pid, command, acquired_ms, expires_ms";

pub(crate) const STATUS_COLUMNS: &str =
    "key, machine_key, advertisement, state, exit_code, message, at_ms, received_ms";

pub(crate) const POLICY_COLUMNS: &str = "machine_id, version, hash, body";

pub(crate) const CATALOG_COLUMNS: &str =
    "id, url, kind, sha256, etag, last_modified, fetched_ms, size, summary, diff";

pub(crate) const SYNC_STATUS_COLUMNS: &str = "url, kind, last_attempt_ms, last_success_ms, \
     last_error, consecutive_failures, next_attempt_ms";

pub(crate) const PATCH_STATE_COLUMNS: &str = "machine_key, bulletin, product, q_numbers, title, \
     status, reboot, scan_agent, scan_time_ms, patch, reason";

pub(crate) const RECONCILE_COLUMNS: &str = "status, result, message, problems, revision, \
     attempt_ms, since_ms, failures, last_success_ms, last_apply_ms, last_apply_serial, \
     last_apply_revision, host, pid";

pub(crate) const DP_VALIDATION_COLUMNS: &str = "dp, path, started_ms, finished_ms, outcome, \
     files_checked, bytes_checked, problems, problem_files, message, repaired, host, pid";

/// The conflict clause of the object upsert (both backends).
pub(crate) const UPSERT_OBJECT_SET: &str = "ON CONFLICT (kind, name) DO UPDATE SET \
     spec = excluded.spec, spec_hash = excluded.spec_hash, metadata = excluded.metadata, \
     owner = excluded.owner, file = excluded.file, commit_id = excluded.commit_id, \
     updated_serial = excluded.updated_serial";

/// The conflict clause of the patch-state upsert (both backends).
pub(crate) const UPSERT_PATCH_STATE_SET: &str = "ON CONFLICT (machine_key, bulletin, product) \
     DO UPDATE SET q_numbers = excluded.q_numbers, title = excluded.title, \
     status = excluded.status, reboot = excluded.reboot, scan_agent = excluded.scan_agent, \
     scan_time_ms = excluded.scan_time_ms, patch = excluded.patch, reason = excluded.reason";

/// The conflict clause of the policy upsert: a row equal to the stored one
/// is not written (so not counted).
pub(crate) const UPSERT_POLICY_SET: &str = "ON CONFLICT (machine_id) DO UPDATE SET \
     version = excluded.version, hash = excluded.hash, body = excluded.body, \
     updated_ms = excluded.updated_ms \
     WHERE policies.version <> excluded.version OR policies.hash <> excluded.hash \
     OR policies.body <> excluded.body";

/// The functions over the shared statements, expanded in a backend module
/// (see the module documentation for what that module names).
macro_rules! shared_queries {
    () => {
        use sqlx::AssertSqlSafe;

        use super::rows::MachineRowRead;
        use super::sql::*;
        use super::{
            check_token_again, count, lease_ms, machine_outcomes, machines_to_write,
            version_i64, ApplyRecord, CatalogVersion, DpValidation, Fail, LockHolder,
            LockRequest, Machine, MachineRow, Normalized, Owner, ReconcileAttempt,
            ReconcileStatus, StateInfo, StatusMessage, StoredObject, StoredPatchState,
            StoredPolicy, SyncAttempt, SyncStatus, TokenIssue, LEADER_LEASE,
        };

        pub(super) async fn info(pool: &Pool) -> Result<StateInfo, Fail> {
            let row: Option<StateInfo> = sqlx::query_as(
                "SELECT store_id, serial, site, created_at FROM patchops_state WHERE id = 1",
            )
            .fetch_optional(pool)
            .await?;
            row.ok_or_else(|| Fail::Data("the state row is missing".into()))
        }

        pub(super) async fn objects(pool: &Pool) -> Result<Vec<StoredObject>, Fail> {
            let sql = format!(
                "SELECT {OBJECT_COLUMNS} FROM patchops_objects \
                 ORDER BY kind {BYTE_ORDER}, name {BYTE_ORDER}"
            );
            Ok(sqlx::query_as(AssertSqlSafe(sql)).fetch_all(pool).await?)
        }

        pub(super) async fn object(
            pool: &Pool,
            kind: &str,
            name: &str,
        ) -> Result<Option<StoredObject>, Fail> {
            let sql =
                format!("SELECT {OBJECT_COLUMNS} FROM patchops_objects WHERE kind = $1 AND name = $2");
            Ok(sqlx::query_as(AssertSqlSafe(sql))
                .bind(kind)
                .bind(name)
                .fetch_optional(pool)
                .await?)
        }

        pub(super) async fn commit(
            pool: &Pool,
            expected: i64,
            site: Option<&str>,
            plan: &Normalized<'_>,
            record: &ApplyRecord,
        ) -> Result<i64, Fail> {
            let mut tx = begin_write(pool).await?;
            // The serial's row is locked by this UPDATE (PostgreSQL) or the
            // write lock is held already (SQLite): concurrent commits are
            // serialised, and the loser finds another serial.
            let new = bump(&mut tx, Some(expected), site).await?;
            delete_objects(&mut tx, &plan.deletes).await?;
            upsert_objects(&mut tx, &plan.upserts, new).await?;
            insert_record(&mut tx, new, record).await?;
            tx.commit().await?;
            Ok(new)
        }

        /// Adds one to the serial (when it is still `expected`, if given)
        /// and sets the site (when given); returns the new serial.
        async fn bump(
            conn: &mut Conn,
            expected: Option<i64>,
            site: Option<&str>,
        ) -> Result<i64, Fail> {
            let new: Option<i64> = sqlx::query_scalar(
                "UPDATE patchops_state SET serial = serial + 1, site = COALESCE($1, site) \
                 WHERE id = 1 AND (CAST($2 AS BIGINT) IS NULL OR serial = $2) \
                 AND serial < 9223372036854775807 RETURNING serial",
            )
            .bind(site)
            .bind(expected)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(new) = new {
                return Ok(new);
            }
            let actual: Option<i64> =
                sqlx::query_scalar("SELECT serial FROM patchops_state WHERE id = 1")
                    .fetch_optional(&mut *conn)
                    .await?;
            Err(match (actual, expected) {
                (None, _) => Fail::Data("the state row is missing".into()),
                (Some(actual), Some(expected)) if actual != expected => {
                    Fail::Stale { expected, actual }
                }
                (Some(_), _) => Fail::Data("the serial cannot go higher".into()),
            })
        }

        async fn insert_record(
            conn: &mut Conn,
            serial: i64,
            r: &ApplyRecord,
        ) -> Result<(), sqlx::Error> {
            sqlx::query(
                "INSERT INTO patchops_history (serial, started_at, finished_at, actor, host, \
                 command, commit_id, dirty, plan_hash, added, changed, destroyed, changes) \
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

        pub(super) async fn history(pool: &Pool, limit: i64) -> Result<Vec<ApplyRecord>, Fail> {
            let sql = format!(
                "SELECT {HISTORY_COLUMNS} FROM patchops_history ORDER BY id DESC LIMIT $1"
            );
            Ok(sqlx::query_as(AssertSqlSafe(sql))
                .bind(limit)
                .fetch_all(pool)
                .await?)
        }

        pub(super) async fn set_owner(
            pool: &Pool,
            kind: &str,
            name: &str,
            owner: Owner,
            record: &ApplyRecord,
        ) -> Result<bool, Fail> {
            let mut tx = begin_write(pool).await?;
            // The state row first, as commit takes it, so the two never
            // deadlock.
            lock_state(&mut tx).await?;
            let current: Option<String> = sqlx::query_scalar(
                "SELECT owner FROM patchops_objects WHERE kind = $1 AND name = $2",
            )
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
                "UPDATE patchops_objects SET owner = $1, updated_serial = $2 \
                 WHERE kind = $3 AND name = $4",
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
            pool: &Pool,
            name: &str,
            req: &LockRequest,
        ) -> Result<bool, Fail> {
            let sql = format!(
                "INSERT INTO patchops_lock (name, id, holder, host, pid, command, acquired_ms, \
                 expires_ms) VALUES ($7, $1, $2, $3, $4, $5, {NOW_MS}, {NOW_MS} + $6) \
                 ON CONFLICT (name) DO UPDATE SET id = excluded.id, holder = excluded.holder, \
                 host = excluded.host, pid = excluded.pid, command = excluded.command, \
                 acquired_ms = CASE WHEN patchops_lock.id = excluded.id \
                     THEN patchops_lock.acquired_ms ELSE excluded.acquired_ms END, \
                 expires_ms = excluded.expires_ms \
                 WHERE patchops_lock.expires_ms <= excluded.acquired_ms \
                 OR patchops_lock.id = excluded.id \
                 RETURNING id"
            );
            let got: Option<String> = sqlx::query_scalar(AssertSqlSafe(sql))
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
            pool: &Pool,
            name: &str,
            previous_id: &str,
            req: &LockRequest,
        ) -> Result<bool, Fail> {
            let sql = format!(
                "UPDATE patchops_lock SET id = $1, holder = $2, host = $3, pid = $4, \
                 command = $5, acquired_ms = {NOW_MS}, expires_ms = {NOW_MS} + $6 \
                 WHERE name = $8 AND id = $7"
            );
            let done = sqlx::query(AssertSqlSafe(sql))
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
            pool: &Pool,
            name: &str,
            id: &str,
            lease_ms: i64,
        ) -> Result<bool, Fail> {
            let sql = format!(
                "UPDATE patchops_lock SET expires_ms = {NOW_MS} + $1 WHERE name = $3 AND id = $2"
            );
            let done = sqlx::query(AssertSqlSafe(sql))
                .bind(lease_ms)
                .bind(id)
                .bind(name)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(super) async fn unlock(pool: &Pool, name: &str, id: &str) -> Result<bool, Fail> {
            let done = sqlx::query("DELETE FROM patchops_lock WHERE name = $2 AND id = $1")
                .bind(id)
                .bind(name)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(super) async fn lock_holder(
            pool: &Pool,
            name: &str,
        ) -> Result<Option<LockHolder>, Fail> {
            let sql = format!("SELECT {LOCK_COLUMNS} FROM patchops_lock WHERE name = $1");
            Ok(sqlx::query_as(AssertSqlSafe(sql))
                .bind(name)
                .fetch_optional(pool)
                .await?)
        }

        pub(super) async fn ping(pool: &Pool) -> Result<(), Fail> {
            sqlx::query("SELECT 1").execute(pool).await?;
            Ok(())
        }

        pub(super) async fn upsert_machines(
            tx: &mut Conn,
            rows: &[MachineRow],
            now_ms: i64,
        ) -> Result<Vec<(u32, bool)>, Fail> {
            let mut out = Vec::with_capacity(rows.len());
            for chunk in rows.chunks(MACHINE_CHUNK) {
                let existing = stored_machines(tx, chunk).await?;
                let (updates, inserts) = machines_to_write(chunk, &existing);
                if !updates.is_empty() {
                    update_machines(tx, &updates, now_ms).await?;
                }
                let written = if inserts.is_empty() {
                    std::collections::HashMap::new()
                } else {
                    insert_machines(tx, &inserts, now_ms).await?
                };
                out.extend(machine_outcomes(chunk, &existing, &written)?);
            }
            Ok(out)
        }

        /// The inventory serial: bumped whenever a machine is added,
        /// changed or removed (by triggers).
        pub(super) async fn inventory_version(conn: &mut Conn) -> Result<i64, Fail> {
            Ok(
                sqlx::query_scalar("SELECT serial FROM inventory_serial WHERE id = 1")
                    .fetch_one(conn)
                    .await?,
            )
        }

        pub(super) async fn machine_count(pool: &Pool) -> Result<usize, Fail> {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM machines")
                .fetch_one(pool)
                .await?;
            Ok(usize::try_from(n).unwrap_or(0))
        }

        pub(super) async fn machines(pool: &Pool) -> Result<Vec<(u32, Machine)>, Fail> {
            let rows: Vec<MachineRowRead> =
                sqlx::query_as("SELECT id, facts, last_heartbeat_ms FROM machines ORDER BY id")
                    .fetch_all(pool)
                    .await?;
            rows.into_iter().map(MachineRowRead::decode).collect()
        }

        pub(super) async fn machine(
            conn: &mut Conn,
            key: &str,
        ) -> Result<Option<(u32, Machine)>, Fail> {
            let row: Option<MachineRowRead> =
                sqlx::query_as("SELECT id, facts, last_heartbeat_ms FROM machines WHERE key = $1")
                    .bind(key)
                    .fetch_optional(conn)
                    .await?;
            row.map(MachineRowRead::decode).transpose()
        }

        pub(super) async fn remove_machines(pool: &Pool, keys: &[String]) -> Result<usize, Fail> {
            let mut tx = begin_write(pool).await?;
            let ids = delete_machines(&mut tx, keys).await?;
            delete_policies(&mut tx, &ids).await?;
            tx.commit().await?;
            Ok(ids.len())
        }

        pub(super) async fn touch_heartbeat(
            pool: &Pool,
            id: u32,
            now_ms: i64,
        ) -> Result<bool, Fail> {
            // A heartbeat never moves backwards; a first one is taken as it is.
            let done = sqlx::query(
                "UPDATE machines SET last_heartbeat_ms = CASE \
                 WHEN last_heartbeat_ms IS NULL OR last_heartbeat_ms < $1 THEN $1 \
                 ELSE last_heartbeat_ms END WHERE id = $2",
            )
            .bind(now_ms)
            .bind(i64::from(id))
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(super) async fn add_machine_token(
            pool: &Pool,
            machine_key: &str,
            token_hash: &str,
            now_ms: i64,
        ) -> Result<(), Fail> {
            let mut tx = begin_write(pool).await?;
            let done = sqlx::query(
                "INSERT INTO machine_tokens (token_hash, machine_key, created_ms) \
                 VALUES ($1, $2, $3) ON CONFLICT (token_hash) DO NOTHING",
            )
            .bind(token_hash)
            .bind(machine_key)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                let (key, revoked): (String, Option<i64>) = sqlx::query_as(
                    "SELECT machine_key, revoked_ms FROM machine_tokens WHERE token_hash = $1",
                )
                .bind(token_hash)
                .fetch_one(&mut *tx)
                .await?;
                check_token_again(machine_key, &key, revoked)?;
            }
            tx.commit().await?;
            Ok(())
        }

        /// Issues tokens as [`TokenIssue`] plans them: every named
        /// machine's live tokens revoked, then every hash added.
        pub(super) async fn issue_machine_tokens(
            tx: &mut Conn,
            issue: &TokenIssue<'_>,
            now_ms: i64,
        ) -> Result<(), Fail> {
            revoke_tokens_of(tx, &issue.machines, now_ms).await?;
            insert_issued_tokens(tx, &issue.rows, now_ms).await
        }

        pub(super) async fn has_live_token(conn: &mut Conn, machine_key: &str) -> Result<bool, Fail> {
            let found: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM machine_tokens WHERE machine_key = $1 AND revoked_ms IS NULL \
                 LIMIT 1",
            )
            .bind(machine_key)
            .fetch_optional(conn)
            .await?;
            Ok(found.is_some())
        }

        pub(super) async fn machine_for_token(
            pool: &Pool,
            token_hash: &str,
        ) -> Result<Option<String>, Fail> {
            Ok(sqlx::query_scalar(
                "SELECT machine_key FROM machine_tokens WHERE token_hash = $1 \
                 AND revoked_ms IS NULL",
            )
            .bind(token_hash)
            .fetch_optional(pool)
            .await?)
        }

        pub(super) async fn revoke_machine_tokens(
            pool: &Pool,
            machine_key: &str,
            now_ms: i64,
        ) -> Result<usize, Fail> {
            let done = sqlx::query(
                "UPDATE machine_tokens SET revoked_ms = $1 \
                 WHERE machine_key = $2 AND revoked_ms IS NULL",
            )
            .bind(now_ms)
            .bind(machine_key)
            .execute(pool)
            .await?;
            Ok(count(done.rows_affected()))
        }

        pub(super) async fn policies(pool: &Pool) -> Result<Vec<StoredPolicy>, Fail> {
            let sql = format!("SELECT {POLICY_COLUMNS} FROM policies ORDER BY machine_id");
            Ok(sqlx::query_as(AssertSqlSafe(sql)).fetch_all(pool).await?)
        }

        pub(super) async fn policy(pool: &Pool, machine_id: u32) -> Result<Option<StoredPolicy>, Fail> {
            let sql = format!("SELECT {POLICY_COLUMNS} FROM policies WHERE machine_id = $1");
            Ok(sqlx::query_as(AssertSqlSafe(sql))
                .bind(i64::from(machine_id))
                .fetch_optional(pool)
                .await?)
        }

        pub(super) async fn remove_policies(pool: &Pool, ids: &[i64]) -> Result<usize, Fail> {
            let mut tx = begin_write(pool).await?;
            let removed = delete_policies(&mut tx, ids).await?;
            tx.commit().await?;
            Ok(removed)
        }

        /// Batches of status messages in one transaction; how many of each
        /// batch were newly stored.
        pub(super) async fn insert_status(
            tx: &mut Conn,
            batches: &[(&[StatusMessage], Vec<String>)],
        ) -> Result<Vec<usize>, Fail> {
            let mut out = Vec::with_capacity(batches.len());
            for (msgs, machine_keys) in batches {
                out.push(insert_status_rows(tx, msgs, machine_keys).await?);
            }
            Ok(out)
        }

        /// The newest message of every (machine, advertisement),
        /// optionally of one advertisement only.
        pub(super) async fn latest_status(
            pool: &Pool,
            advertisement: Option<&str>,
        ) -> Result<Vec<StatusMessage>, Fail> {
            let sql = format!(
                "SELECT {STATUS_COLUMNS} \
                 FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY machine_key, advertisement \
                         ORDER BY at_ms DESC, received_ms DESC, key {BYTE_ORDER} DESC) AS newest \
                       FROM status_messages \
                       WHERE CAST($1 AS TEXT) IS NULL OR advertisement = $1) AS latest \
                 WHERE newest = 1 \
                 ORDER BY advertisement {BYTE_ORDER}, machine_key {BYTE_ORDER}"
            );
            Ok(sqlx::query_as(AssertSqlSafe(sql))
                .bind(advertisement)
                .fetch_all(pool)
                .await?)
        }

        pub(super) async fn status_for_machine(
            pool: &Pool,
            machine_key: &str,
            limit: i64,
        ) -> Result<Vec<StatusMessage>, Fail> {
            let sql = format!(
                "SELECT {STATUS_COLUMNS} FROM status_messages WHERE machine_key = $1 \
                 ORDER BY at_ms DESC, received_ms DESC, key {BYTE_ORDER} LIMIT $2"
            );
            Ok(sqlx::query_as(AssertSqlSafe(sql))
                .bind(machine_key)
                .bind(limit)
                .fetch_all(pool)
                .await?)
        }

        pub(super) async fn put_catalog_version(
            pool: &Pool,
            v: &CatalogVersion,
        ) -> Result<i64, Fail> {
            let size = i64::try_from(v.bytes.len())
                .map_err(|_| Fail::Invalid("the catalog is too large to store".into()))?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO catalog_versions (url, kind, sha256, etag, last_modified, \
                 fetched_ms, size, bytes, summary, diff) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
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

        pub(super) async fn latest_catalog(
            pool: &Pool,
            url: &str,
        ) -> Result<Option<CatalogVersion>, Fail> {
            let sql = format!(
                "SELECT {CATALOG_COLUMNS}, bytes FROM catalog_versions WHERE url = $1 \
                 ORDER BY id DESC LIMIT 1"
            );
            Ok(sqlx::query_as(AssertSqlSafe(sql))
                .bind(url)
                .fetch_optional(pool)
                .await?)
        }

        /// Without the bytes (not selected; `bytes` stays empty).
        pub(super) async fn catalog_versions(
            pool: &Pool,
            url: &str,
            limit: i64,
        ) -> Result<Vec<CatalogVersion>, Fail> {
            let sql = format!(
                "SELECT {CATALOG_COLUMNS} FROM catalog_versions WHERE url = $1 \
                 ORDER BY id DESC LIMIT $2"
            );
            Ok(sqlx::query_as(AssertSqlSafe(sql))
                .bind(url)
                .bind(limit)
                .fetch_all(pool)
                .await?)
        }

        pub(super) async fn record_sync_attempt(
            pool: &Pool,
            a: &SyncAttempt,
        ) -> Result<SyncStatus, Fail> {
            // One statement: atomic on both backends.
            let sql = format!(
                "INSERT INTO catalog_sync_status ({SYNC_STATUS_COLUMNS}) \
                 VALUES ($1, $2, $3, \
                         CASE WHEN CAST($4 AS TEXT) IS NULL THEN CAST($3 AS BIGINT) ELSE NULL END, \
                         $4, CASE WHEN CAST($4 AS TEXT) IS NULL THEN 0 ELSE 1 END, $5) \
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
            );
            Ok(sqlx::query_as(AssertSqlSafe(sql))
                .bind(a.url.as_str())
                .bind(a.kind.as_str())
                .bind(a.at_ms)
                .bind(a.error.as_deref())
                .bind(a.next_attempt_ms)
                .fetch_one(pool)
                .await?)
        }

        pub(super) async fn sync_status(pool: &Pool) -> Result<Vec<SyncStatus>, Fail> {
            let sql = format!(
                "SELECT {SYNC_STATUS_COLUMNS} FROM catalog_sync_status ORDER BY url {BYTE_ORDER}"
            );
            Ok(sqlx::query_as(AssertSqlSafe(sql)).fetch_all(pool).await?)
        }

        pub(super) async fn replace_patch_states(
            pool: &Pool,
            machines: &[String],
            scan_agent: Option<&str>,
            states: &[&StoredPatchState],
        ) -> Result<usize, Fail> {
            let mut tx = begin_write(pool).await?;
            delete_patch_states(&mut tx, machines, scan_agent).await?;
            let written = upsert_patch_states(&mut tx, states).await?;
            tx.commit().await?;
            Ok(written)
        }

        pub(super) async fn patch_states(
            pool: &Pool,
            machine_key: Option<&str>,
        ) -> Result<Vec<StoredPatchState>, Fail> {
            let sql = format!(
                "SELECT {PATCH_STATE_COLUMNS} FROM patch_states \
                 WHERE CAST($1 AS TEXT) IS NULL OR machine_key = $1 \
                 ORDER BY machine_key {BYTE_ORDER}, bulletin {BYTE_ORDER}, product {BYTE_ORDER}"
            );
            Ok(sqlx::query_as(AssertSqlSafe(sql))
                .bind(machine_key)
                .fetch_all(pool)
                .await?)
        }

        /// The condition of a write made only while the lease named by
        /// parameter `$name` is held, unexpired, by the id in parameter `$id`.
        fn while_lease_held(name: u8, id: u8) -> String {
            format!(
                "WHERE EXISTS (SELECT 1 FROM patchops_lock WHERE name = CAST(${name} AS TEXT) \
                 AND id = CAST(${id} AS TEXT) AND expires_ms > {NOW_MS})"
            )
        }

        pub(super) async fn record_reconcile(
            pool: &Pool,
            lease_id: &str,
            a: &ReconcileAttempt,
            problems: &str,
        ) -> Result<bool, Fail> {
            // One statement, written only while `lease_id` holds the leader
            // lease.
            let sql = format!(
                "INSERT INTO reconcile_status (id, {RECONCILE_COLUMNS}) \
                 SELECT 1, CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS TEXT), \
                        CAST($4 AS TEXT), CAST($5 AS TEXT), CAST($6 AS BIGINT), \
                        CAST($6 AS BIGINT), \
                        CASE WHEN CAST($1 AS TEXT) = 'error' THEN 1 ELSE 0 END, \
                        CASE WHEN CAST($1 AS TEXT) = 'error' THEN NULL ELSE CAST($6 AS BIGINT) END, \
                        CASE WHEN CAST($7 AS BIGINT) IS NULL THEN NULL ELSE CAST($6 AS BIGINT) END, \
                        CAST($7 AS BIGINT), \
                        CASE WHEN CAST($7 AS BIGINT) IS NULL THEN NULL ELSE CAST($5 AS TEXT) END, \
                        CAST($8 AS TEXT), CAST($9 AS BIGINT) \
                 {} \
                 ON CONFLICT (id) DO UPDATE SET \
                   status = excluded.status, result = excluded.result, \
                   message = excluded.message, problems = excluded.problems, \
                   revision = excluded.revision, attempt_ms = excluded.attempt_ms, \
                   since_ms = CASE WHEN reconcile_status.status = excluded.status \
                     THEN reconcile_status.since_ms ELSE excluded.since_ms END, \
                   failures = CASE WHEN excluded.status = 'error' \
                     THEN reconcile_status.failures + 1 ELSE 0 END, \
                   last_success_ms = \
                     COALESCE(excluded.last_success_ms, reconcile_status.last_success_ms), \
                   last_apply_ms = \
                     COALESCE(excluded.last_apply_ms, reconcile_status.last_apply_ms), \
                   last_apply_serial = \
                     COALESCE(excluded.last_apply_serial, reconcile_status.last_apply_serial), \
                   last_apply_revision = CASE WHEN excluded.last_apply_serial IS NULL \
                     THEN reconcile_status.last_apply_revision \
                     ELSE excluded.last_apply_revision END, \
                   host = excluded.host, pid = excluded.pid",
                while_lease_held(10, 11)
            );
            let done = sqlx::query(AssertSqlSafe(sql))
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

        pub(super) async fn reconcile_status(pool: &Pool) -> Result<Option<ReconcileStatus>, Fail> {
            let sql = format!("SELECT {RECONCILE_COLUMNS} FROM reconcile_status WHERE id = 1");
            Ok(sqlx::query_as(AssertSqlSafe(sql))
                .fetch_optional(pool)
                .await?)
        }

        pub(super) async fn record_dp_validation(
            pool: &Pool,
            lease_id: &str,
            v: &DpValidation,
            problem_files: &str,
        ) -> Result<bool, Fail> {
            // One upsert, written only while the caller's id holds the
            // unexpired leader lease.
            let sql = format!(
                "INSERT INTO dp_validations ({DP_VALIDATION_COLUMNS}) \
                 SELECT CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS BIGINT), \
                        CAST($4 AS BIGINT), CAST($5 AS TEXT), CAST($6 AS BIGINT), \
                        CAST($7 AS BIGINT), CAST($8 AS BIGINT), CAST($9 AS TEXT), \
                        CAST($10 AS TEXT), CAST($11 AS BIGINT), CAST($12 AS TEXT), \
                        CAST($13 AS BIGINT) \
                 {} \
                 ON CONFLICT (dp) DO UPDATE SET \
                   path = excluded.path, started_ms = excluded.started_ms, \
                   finished_ms = excluded.finished_ms, outcome = excluded.outcome, \
                   files_checked = excluded.files_checked, \
                   bytes_checked = excluded.bytes_checked, problems = excluded.problems, \
                   problem_files = excluded.problem_files, message = excluded.message, \
                   repaired = excluded.repaired, host = excluded.host, pid = excluded.pid",
                while_lease_held(14, 15)
            );
            let stored = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            let done = sqlx::query(AssertSqlSafe(sql))
                .bind(v.dp.as_str())
                .bind(v.path.as_str())
                .bind(v.started_ms)
                .bind(v.finished_ms)
                .bind(v.outcome.as_str())
                .bind(stored(v.files_checked))
                .bind(stored(v.bytes_checked))
                .bind(stored(v.problems))
                .bind(problem_files)
                .bind(v.message.as_deref())
                .bind(stored(v.repaired))
                .bind(v.host.as_str())
                .bind(i64::from(v.pid))
                .bind(LEADER_LEASE)
                .bind(lease_id)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(super) async fn dp_validations(pool: &Pool) -> Result<Vec<DpValidation>, Fail> {
            let sql = format!(
                "SELECT {DP_VALIDATION_COLUMNS} FROM dp_validations ORDER BY dp {BYTE_ORDER}"
            );
            Ok(sqlx::query_as(AssertSqlSafe(sql)).fetch_all(pool).await?)
        }
    };
}
pub(crate) use shared_queries;
