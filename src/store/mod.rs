//! The site store: the only place that owns SQL.
//!
//! A site store holds the objects patchops last applied (with their canonical
//! spec, hash, ownership and provenance), a serial that goes up by one with
//! every state change, the audit history of applies, and the apply lock.
//! For the site server it also holds the inventory ([`Store::upsert_machines`]),
//! the agents' token hashes, each machine's client policy and the agents'
//! status messages; these are not state changes (no serial, no history).
//!
//! Two backends sit behind one API:
//! - SQLite (`sqlite://path/to/patchops.db`, `sqlite::memory:`): the default, a
//!   file, zero set-up; WAL journal, `synchronous=FULL`, a 5 s busy timeout.
//! - PostgreSQL (`postgres://…`, `postgresql://…`): the scale backend; the
//!   tables live in the connection's current schema.
//!
//! The schema is created and upgraded at [`Store::open`] by the migrations in
//! `migrations/sqlite/` and `migrations/postgres/`, embedded in the binary with
//! `include_str!` and tracked in the table `patchops_migrations` (never the
//! default `_sqlx_migrations`, so another sqlx application's database is never
//! taken for ours). A database that holds tables but no `patchops_migrations`
//! is refused as [`StoreError::NotAStateStore`] and left untouched.
//!
//! Every state change ([`Store::commit`], [`Store::set_owner`]) is one
//! transaction that compares and bumps the serial, so a saved plan made against
//! an older serial is refused as [`StoreError::Stale`], and a process killed in
//! the middle leaves the previous state whole.

mod postgres;
mod rows;
mod sql;
mod sqlite;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
mod transaction;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::inventory::{machine_key, Machine};
use crate::records::{
    ApplyRecord, CatalogVersion, Change, DpValidation, LockHolder, LockRequest, MachineRecord,
    NewObject, Owner, ReconcileAttempt, ReconcileStatus, StateInfo, StatusMessage, StoredObject,
    StoredPatchState, StoredPolicy, SyncAttempt, SyncStatus, MAX_DP_PROBLEM_FILES,
};
use crate::secret;
pub(crate) use transaction::TokenIssue;
pub use transaction::WriteTx;

/// How long opening (or later reaching) a PostgreSQL store may take before it
/// is reported as [`StoreError::Unreachable`].
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a SQLite writer waits for another process's write to finish.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The table that records which of our migrations a database has applied.
/// Its presence is what makes a database "ours".
pub const MIGRATIONS_TABLE: &str = "patchops_migrations";

/// Leases longer than this are cut to it (100 years), so that epoch
/// arithmetic in SQL can never overflow.
const MAX_LEASE_MS: i64 = 100 * 365 * 24 * 3600 * 1000;

/// Rows per multi-row statement when a commit carries many changes.
const CHUNK: usize = 2000;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong with the store. URLs in it never carry a
/// password (it is shown as `***`).
/// Not the admin API's wire format: that is [`crate::remote::wire::WireError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The URL is malformed or of an unknown scheme.
    #[error("bad state store URL {0}")]
    BadUrl(String),
    #[error("cannot reach the state store {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} is not a patchops state store: {reason}")]
    NotAStateStore { url: String, reason: String },
    #[error("the state store {url} is read-only: it can be read, but not changed")]
    ReadOnly { url: String },
    #[error(
        "the state changed since the plan was made (the plan expects serial {expected}, \
         the store is at serial {actual}): plan again"
    )]
    Stale { expected: i64, actual: i64 },
    /// Any other database error (message only).
    #[error("state store error: {0}")]
    Backend(String),
}

/// The apply lock's row in `patchops_lock`.
const APPLY_LOCK: &str = "apply";
/// The site servers' leadership lease (who reconciles), in the same table.
pub const LEADER_LEASE: &str = "leader";

/// A handle on an open store. Cheap to clone; clones share one pool.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    display_url: String,
    /// Texts that must never appear in a message (the URL's password).
    secrets: Vec<String>,
    read_only: bool,
}

enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not derived: the pools' connect options hold the password.
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .field("url", &self.inner.display_url)
            .field("read_only", &self.inner.read_only)
            .finish()
    }
}

/// Why a backend operation failed, before the URL is attached.
#[derive(Debug)]
pub(crate) enum Fail {
    Sql(sqlx::Error),
    Stale {
        expected: i64,
        actual: i64,
    },
    /// Data in the store that patchops cannot read (a damaged store).
    Data(String),
    /// A request the store refuses (e.g. a batch naming one key twice);
    /// nothing was written.
    Invalid(String),
}

impl From<sqlx::Error> for Fail {
    fn from(e: sqlx::Error) -> Self {
        Fail::Sql(e)
    }
}

/// What `open` learned about the target before building a [`Store`].
pub(crate) struct Opened {
    db: Db,
    read_only: bool,
}

/// Runs the SQL backend's `$f` (given the pool first, then the arguments)
/// and maps its failure to a [`StoreError`].
macro_rules! on_sql {
    ($store:ident, $f:ident($($arg:expr),*)) => {{
        let r = match &$store.inner.db {
            Db::Sqlite(p) => sqlite::$f(p, $($arg),*).await,
            Db::Postgres(p) => postgres::$f(p, $($arg),*).await,
        };
        r.map_err(|e| $store.error(e))
    }};
    // A function that takes a connection (it also runs in a transaction).
    ($store:ident, conn $f:ident($($arg:expr),*)) => {{
        let r = match &$store.inner.db {
            Db::Sqlite(p) => match p.acquire().await {
                Ok(mut conn) => sqlite::$f(&mut conn, $($arg),*).await,
                Err(e) => Err(Fail::Sql(e)),
            },
            Db::Postgres(p) => match p.acquire().await {
                Ok(mut conn) => postgres::$f(&mut conn, $($arg),*).await,
                Err(e) => Err(Fail::Sql(e)),
            },
        };
        r.map_err(|e| $store.error(e))
    }};
}

impl Store {
    /// Opens (creating when missing, for SQLite) and migrates a store.
    ///
    /// - `sqlite://path/to/patchops.db` (also `sqlite:path`), created with its
    ///   tables when missing; `?mode=ro` opens it read-only, as does a file
    ///   whose permission bits (or access rights) forbid writing;
    /// - `sqlite::memory:` (tests);
    /// - `postgres://…` / `postgresql://…`: the database must exist; the tables
    ///   are made in its current schema.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let display_url = secret::display_url(url);
        let secrets = secret::url_passwords(url);
        let scrub = |s: String| secret::scrub(s, &secrets);
        let lower = url.to_ascii_lowercase();
        // Exactly `sqlite:`, as sqlx reads it; PostgreSQL schemes in any case.
        let opened = if url.starts_with("sqlite:") {
            sqlite::open(url, &display_url).await
        } else if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            postgres::open(url, &display_url).await
        } else {
            let scheme = match url.find("://") {
                _ if lower.starts_with("sqlite:") => "write the scheme in lower case".to_string(),
                Some(i) if i > 0 => format!("unknown scheme `{}`", &url[..i]),
                _ => "no scheme (for a file, write sqlite://PATH)".to_string(),
            };
            Err(StoreError::BadUrl(format!(
                "{display_url}: {scheme} (expected sqlite://PATH, sqlite::memory: or postgres://…)"
            )))
        };
        let opened = opened.map_err(|e| scrub_error(e, &scrub))?;
        Ok(Store {
            inner: Arc::new(Inner {
                db: opened.db,
                display_url,
                secrets,
                read_only: opened.read_only,
            }),
        })
    }

    pub fn backend(&self) -> Backend {
        match self.inner.db {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// The URL with any password replaced by `***` (for messages, plans and logs).
    pub fn display_url(&self) -> String {
        self.inner.display_url.clone()
    }

    /// Whether this store was opened read-only (every write returns
    /// [`StoreError::ReadOnly`]).
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    /// Closes the pool, waiting for connections to finish (SQLite then
    /// checkpoints its WAL). Optional: dropping the last handle also closes.
    pub async fn close(&self) {
        match &self.inner.db {
            Db::Sqlite(p) => p.close().await,
            Db::Postgres(p) => p.close().await,
        }
    }

    pub async fn info(&self) -> Result<StateInfo, StoreError> {
        on_sql!(self, info())
    }

    /// Every object, ordered by kind then name (byte order on both backends).
    pub async fn objects(&self) -> Result<Vec<StoredObject>, StoreError> {
        on_sql!(self, objects())
    }

    pub async fn object(&self, kind: &str, name: &str) -> Result<Option<StoredObject>, StoreError> {
        on_sql!(self, object(kind, name))
    }

    /// One transaction, all or nothing: fails with [`StoreError::Stale`]
    /// unless the serial is still `expected_serial`; applies every change,
    /// sets the site code when `site` is Some, increments the serial by one,
    /// records `record` (its `id` and `serial` are set by the store) and
    /// returns the new serial.
    pub async fn commit(
        &self,
        expected_serial: i64,
        site: Option<&str>,
        changes: &[Change],
        record: &ApplyRecord,
    ) -> Result<i64, StoreError> {
        self.writable()?;
        let plan = Normalized::of(changes);
        on_sql!(self, commit(expected_serial, site, &plan, record))
    }

    /// The newest `limit` audit records, newest first.
    pub async fn history(&self, limit: u32) -> Result<Vec<ApplyRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        on_sql!(self, history(i64::from(limit)))
    }

    /// Sets an object's owner. A state change like any other: in one
    /// transaction it bumps the serial and records `record` (command
    /// "state unmanage"), so plans saved before it become stale.
    ///
    /// Returns false (and changes nothing) when there is no such object;
    /// true when it exists. When the object already has that owner nothing
    /// is written (no serial bump, no record) and the answer is true.
    pub async fn set_owner(
        &self,
        kind: &str,
        name: &str,
        owner: Owner,
        record: &ApplyRecord,
    ) -> Result<bool, StoreError> {
        self.writable()?;
        on_sql!(self, set_owner(kind, name, owner, record))
    }

    /// Takes the apply lock: `Ok(Ok(()))` when taken (also when `req.id`
    /// already holds it: the lease is then renewed), `Ok(Err(holder))` when
    /// someone else holds it and their lease has not expired. An expired lease
    /// is taken over atomically.
    pub async fn try_lock(&self, req: &LockRequest) -> Result<Result<(), LockHolder>, StoreError> {
        self.writable()?;
        // The holder may unlock between our failed take and our look at who
        // holds it; then take again.
        for _ in 0..10 {
            if on_sql!(self, try_lock(APPLY_LOCK, req))? {
                return Ok(Ok(()));
            }
            if let Some(holder) = self.lock_holder().await? {
                return Ok(Err(holder));
            }
        }
        Err(StoreError::Backend(format!(
            "{}: the apply lock changed hands too often to be taken; try again",
            self.inner.display_url
        )))
    }

    /// Atomic compare-and-swap on the lock id: takes the lock from
    /// `previous_id` (whatever its lease) when, and only when, `previous_id`
    /// still holds it. For a holder known to be dead.
    pub async fn take_over_lock(
        &self,
        previous_id: &str,
        req: &LockRequest,
    ) -> Result<bool, StoreError> {
        self.writable()?;
        on_sql!(self, take_over_lock(APPLY_LOCK, previous_id, req))
    }

    /// Extends the lease to `lease` from now. False if `id` no longer holds
    /// the lock (it was unlocked or taken over). A lease that expired but was
    /// not taken over can still be renewed.
    pub async fn renew_lock(&self, id: &str, lease: Duration) -> Result<bool, StoreError> {
        self.writable()?;
        on_sql!(self, renew_lock(APPLY_LOCK, id, lease_ms(lease)))
    }

    /// Releases the lock if `id` holds it (also `patchops force-unlock ID`).
    pub async fn unlock(&self, id: &str) -> Result<bool, StoreError> {
        self.writable()?;
        on_sql!(self, unlock(APPLY_LOCK, id))
    }

    /// Who holds the lock, if anyone: the row as stored, even when its lease
    /// has expired (compare `expires_at`).
    pub async fn lock_holder(&self) -> Result<Option<LockHolder>, StoreError> {
        on_sql!(self, lock_holder(APPLY_LOCK))
    }

    /// Takes the named lease (the table of the apply lock, under another
    /// name: e.g. [`LEADER_LEASE`]): true when taken or already held by
    /// `req.id` (then renewed); false while another holder's lease runs. An
    /// expired lease is taken over atomically.
    pub async fn try_lease(&self, name: &str, req: &LockRequest) -> Result<bool, StoreError> {
        self.writable()?;
        on_sql!(self, try_lock(name, req))
    }

    /// Extends the named lease to `lease` from now; false if `id` no longer
    /// holds it.
    pub async fn renew_lease(
        &self,
        name: &str,
        id: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        self.writable()?;
        on_sql!(self, renew_lock(name, id, lease_ms(lease)))
    }

    /// Gives the named lease up if `id` holds it.
    pub async fn release_lease(&self, name: &str, id: &str) -> Result<bool, StoreError> {
        self.writable()?;
        on_sql!(self, unlock(name, id))
    }

    /// Who holds the named lease, as stored (compare `expires_at`).
    pub async fn lease_holder(&self, name: &str) -> Result<Option<LockHolder>, StoreError> {
        on_sql!(self, lock_holder(name))
    }

    /// A cheap readiness probe (`SELECT 1` on a pooled connection). A pooled
    /// connection that died (the server restarted) is replaced on the way;
    /// a database that cannot be reached is an error within
    /// [`CONNECT_TIMEOUT`] (PostgreSQL) or [`BUSY_TIMEOUT`] × 2 (SQLite).
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_sql!(self, ping())
    }

    /// Stores the machines' facts (creating the new ones), all in one
    /// transaction: on any error nothing is written. Returns one record per
    /// machine, in the order given. A machine whose facts (its JSON) did not
    /// change is not written (its `updated_ms` stays). A batch that names one
    /// machine (by [`Machine::key`]) twice is refused.
    pub async fn upsert_machines(
        &self,
        machines: &[Machine],
        now_ms: i64,
    ) -> Result<Vec<MachineRecord>, StoreError> {
        let mut tx = self.begin_writes().await?;
        let records = tx.upsert_machines(machines, now_ms).await?;
        tx.commit().await?;
        Ok(records)
    }

    /// The inventory serial: a value that changes whenever a machine is
    /// added, changed or removed (by anyone; not on heartbeats), read from
    /// one row. The server's cue to reload inventory written by others.
    pub async fn inventory_version(&self) -> Result<i64, StoreError> {
        on_sql!(self, conn inventory_version())
    }

    /// How many machines the inventory holds.
    pub async fn machine_count(&self) -> Result<usize, StoreError> {
        on_sql!(self, machine_count())
    }

    /// Every machine, by id. A machine's `last_heartbeat` is the later of
    /// its facts' and the one [`Store::touch_heartbeat`] recorded.
    pub async fn machines(&self) -> Result<Vec<(u32, Machine)>, StoreError> {
        on_sql!(self, machines())
    }

    /// One machine by key (the name, compared without ASCII case).
    pub async fn machine(&self, key: &str) -> Result<Option<(u32, Machine)>, StoreError> {
        let key = machine_key(key);
        on_sql!(self, conn machine(&key))
    }

    /// Removes machines by key (and, in the same transaction, their
    /// policies); returns how many machines were removed. Unknown keys are
    /// not an error. Their tokens and status messages are kept: revoke the
    /// tokens with [`Store::revoke_machine_tokens`].
    pub async fn remove_machines(&self, keys: &[String]) -> Result<usize, StoreError> {
        self.writable()?;
        let keys = dedup_keys(keys.iter().map(|k| machine_key(k)));
        on_sql!(self, remove_machines(&keys))
    }

    /// Records a heartbeat from machine `id` (it never moves backwards);
    /// false when there is no such machine.
    pub async fn touch_heartbeat(&self, id: u32, now_ms: i64) -> Result<bool, StoreError> {
        self.writable()?;
        on_sql!(self, touch_heartbeat(id, now_ms))
    }

    /// Registers an agent's token for a machine, by the token's SHA-256
    /// (the token itself is never stored). Idempotent for the same machine;
    /// refused when the hash is already registered to another machine or
    /// was revoked.
    pub async fn add_machine_token(
        &self,
        machine_key: &str,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.writable()?;
        let key = self::machine_key(machine_key);
        on_sql!(self, add_machine_token(&key, token_hash, now_ms))
    }

    /// Issues agents' tokens, in one transaction: for each (machine,
    /// token hash) in order, revokes the machine's live tokens and then
    /// registers the hash as [`Store::add_machine_token`] does. What a
    /// registration does, for many registrations at one commit. On any
    /// error nothing is written.
    pub async fn issue_machine_tokens(
        &self,
        tokens: &[(String, String)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_writes().await?;
        tx.issue_machine_tokens(tokens, now_ms).await?;
        tx.commit().await
    }

    /// The key of the machine a token (by its SHA-256) belongs to; None
    /// when unknown or revoked.
    pub async fn machine_for_token(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        on_sql!(self, machine_for_token(token_hash))
    }

    /// Revokes every live token of a machine; returns how many were revoked.
    pub async fn revoke_machine_tokens(
        &self,
        machine_key: &str,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        self.writable()?;
        let key = self::machine_key(machine_key);
        on_sql!(self, revoke_machine_tokens(&key, now_ms))
    }

    /// Every stored policy, by machine id.
    pub async fn policies(&self) -> Result<Vec<StoredPolicy>, StoreError> {
        on_sql!(self, policies())
    }

    pub async fn policy(&self, machine_id: u32) -> Result<Option<StoredPolicy>, StoreError> {
        on_sql!(self, policy(machine_id))
    }

    /// Creates or replaces policies, all in one transaction. Returns how
    /// many rows were written: a policy equal to the stored one (version,
    /// hash and body) is not written. A batch that names one machine twice,
    /// or a version above `i64::MAX`, is refused.
    pub async fn put_policies(
        &self,
        policies: &[StoredPolicy],
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let mut tx = self.begin_writes().await?;
        let written = tx.put_policies(policies, now_ms).await?;
        tx.commit().await?;
        Ok(written)
    }

    /// Removes the policies of these machines; returns how many were removed.
    pub async fn remove_policies(&self, machine_ids: &[u32]) -> Result<usize, StoreError> {
        self.writable()?;
        let mut ids: Vec<i64> = machine_ids.iter().map(|&id| i64::from(id)).collect();
        ids.sort_unstable();
        ids.dedup();
        on_sql!(self, remove_policies(&ids))
    }

    /// Stores status messages, exactly once by (machine, key), in one
    /// transaction: a message whose key is already stored for its machine
    /// (or repeated in the batch) is ignored; another machine's message
    /// with the same key is not a duplicate. Returns how many were newly
    /// stored.
    pub async fn insert_status(&self, msgs: &[StatusMessage]) -> Result<usize, StoreError> {
        Ok(self.insert_status_batches(&[msgs]).await?.iter().sum())
    }

    /// Stores several batches of status messages (from different callers)
    /// in one transaction, as [`Store::insert_status`] does each: one
    /// commit, so one wait for the disk, for them all. A (machine, key)
    /// stored by an earlier batch of the same call is a duplicate in a
    /// later one. On any
    /// error nothing is stored. Returns how many of each batch were newly
    /// stored, in the order given.
    pub async fn insert_status_batches(
        &self,
        batches: &[&[StatusMessage]],
    ) -> Result<Vec<usize>, StoreError> {
        let mut tx = self.begin_writes().await?;
        let counts = tx.insert_status_batches(batches).await?;
        tx.commit().await?;
        Ok(counts)
    }

    /// The newest status message of every (machine, advertisement) pair,
    /// of one advertisement when given; by advertisement, then machine.
    pub async fn latest_status(
        &self,
        advertisement: Option<&str>,
    ) -> Result<Vec<StatusMessage>, StoreError> {
        on_sql!(self, latest_status(advertisement))
    }

    /// A machine's newest `limit` status messages, newest (by `at_ms`) first.
    pub async fn status_for_machine(
        &self,
        machine_key: &str,
        limit: u32,
    ) -> Result<Vec<StatusMessage>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self::machine_key(machine_key);
        on_sql!(self, status_for_machine(&key, i64::from(limit)))
    }

    /// Replaces the patch states of every machine in `machines` with
    /// `rows` (which must belong to those machines), in one transaction.
    /// A repeated (machine, bulletin, product) keeps its first row.
    pub async fn replace_patch_states(
        &self,
        machines: &[String],
        rows: &[StoredPatchState],
    ) -> Result<usize, StoreError> {
        self.replace_states(machines, None, rows).await
    }

    /// Like [`Store::replace_patch_states`], but replaces only the states
    /// one scan agent reported (`patchops-mssecure`, `patchops-office`):
    /// a machine scanned with two catalogs keeps the other's states. Every
    /// row must be of that scan agent. A row of the other agent with the
    /// same (machine, bulletin, product) is overwritten.
    pub async fn replace_scan_states(
        &self,
        machines: &[String],
        scan_agent: &str,
        rows: &[StoredPatchState],
    ) -> Result<usize, StoreError> {
        self.replace_states(machines, Some(scan_agent), rows).await
    }

    async fn replace_states(
        &self,
        machines: &[String],
        scan_agent: Option<&str>,
        rows: &[StoredPatchState],
    ) -> Result<usize, StoreError> {
        self.writable()?;
        let (keys, unique) =
            patch_state_batch(machines, scan_agent, rows).map_err(|e| self.error(e))?;
        on_sql!(self, replace_patch_states(&keys, scan_agent, &unique))
    }

    /// The stored patch states, of one machine when given; by machine,
    /// bulletin, product (byte order).
    pub async fn patch_states(
        &self,
        machine: Option<&str>,
    ) -> Result<Vec<StoredPatchState>, StoreError> {
        let key = machine.map(machine_key);
        on_sql!(self, patch_states(key.as_deref()))
    }

    /// Stores a verified catalog version; returns its id (increasing per
    /// store).
    pub async fn put_catalog_version(&self, version: &CatalogVersion) -> Result<i64, StoreError> {
        self.writable()?;
        on_sql!(self, put_catalog_version(version))
    }

    /// The newest stored version of the catalog at `url`, with its bytes.
    pub async fn latest_catalog(&self, url: &str) -> Result<Option<CatalogVersion>, StoreError> {
        on_sql!(self, latest_catalog(url))
    }

    /// The newest `limit` versions of the catalog at `url`, newest first,
    /// without their bytes (`bytes` is empty; `size` tells the length).
    pub async fn catalog_versions(
        &self,
        url: &str,
        limit: u32,
    ) -> Result<Vec<CatalogVersion>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        on_sql!(self, catalog_versions(url, i64::from(limit)))
    }

    /// Records one synchronization attempt of a catalog and returns the
    /// catalog's status after it: a success clears the error and the count
    /// of failures and sets the last success; a failure keeps the last
    /// success and adds one to the failures. One transaction.
    pub async fn record_sync_attempt(
        &self,
        attempt: &SyncAttempt,
    ) -> Result<SyncStatus, StoreError> {
        self.writable()?;
        on_sql!(self, record_sync_attempt(attempt))
    }

    /// The status of every catalog ever synchronized, by URL (byte order).
    pub async fn sync_status(&self) -> Result<Vec<SyncStatus>, StoreError> {
        on_sql!(self, sync_status())
    }

    /// Records the outcome of a reconcile, if `lease_id` holds the
    /// [`LEADER_LEASE`] (unexpired): only the leader writes it. Returns
    /// whether it was written. `since` moves only when the status changes;
    /// the failures count, last success and last apply follow the result.
    /// One statement.
    pub async fn record_reconcile(
        &self,
        lease_id: &str,
        attempt: &ReconcileAttempt,
    ) -> Result<bool, StoreError> {
        self.writable()?;
        let problems = serde_json::to_string(&attempt.problems)
            .map_err(|e| self.error(Fail::Data(e.to_string())))?;
        on_sql!(self, record_reconcile(lease_id, attempt, &problems))
    }

    /// The last recorded reconcile, if a server ever reconciled this store.
    pub async fn reconcile_status(&self) -> Result<Option<ReconcileStatus>, StoreError> {
        on_sql!(self, reconcile_status())
    }

    /// Records a distribution point's deep validation, replacing the
    /// previous one of that DP, if `lease_id` holds the [`LEADER_LEASE`]
    /// (unexpired): only the leader writes it. Returns whether it was
    /// written. The problem list is cut to [`MAX_DP_PROBLEM_FILES`]. One
    /// statement.
    pub async fn record_dp_validation(
        &self,
        lease_id: &str,
        validation: &DpValidation,
    ) -> Result<bool, StoreError> {
        self.writable()?;
        let kept =
            &validation.problem_files[..validation.problem_files.len().min(MAX_DP_PROBLEM_FILES)];
        let problem_files =
            serde_json::to_string(kept).map_err(|e| self.error(Fail::Data(e.to_string())))?;
        on_sql!(
            self,
            record_dp_validation(lease_id, validation, &problem_files)
        )
    }

    /// The last deep validation of every distribution point, by name.
    pub async fn dp_validations(&self) -> Result<Vec<DpValidation>, StoreError> {
        on_sql!(self, dp_validations())
    }

    fn writable(&self) -> Result<(), StoreError> {
        if self.inner.read_only {
            Err(StoreError::ReadOnly {
                url: self.inner.display_url.clone(),
            })
        } else {
            Ok(())
        }
    }

    fn error(&self, fail: Fail) -> StoreError {
        let url = &self.inner.display_url;
        let e = match fail {
            Fail::Stale { expected, actual } => StoreError::Stale { expected, actual },
            Fail::Data(msg) => StoreError::Backend(format!("{url}: damaged state store: {msg}")),
            Fail::Invalid(msg) => StoreError::Backend(format!("{url}: {msg}")),
            Fail::Sql(e) => classify(e, url, self.backend()),
        };
        scrub_error(e, &|s| secret::scrub(s, &self.inner.secrets))
    }
}

/// Maps a database error to a [`StoreError`] (no secrets scrubbed yet).
pub(crate) fn classify(e: sqlx::Error, url: &str, backend: Backend) -> StoreError {
    let url_s = url.to_string();
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match backend {
                Backend::Sqlite => {
                    let primary = code.parse::<i64>().map(|c| c & 0xff).unwrap_or(-1);
                    match primary {
                        // SQLITE_READONLY
                        8 => return StoreError::ReadOnly { url: url_s },
                        // SQLITE_NOTADB, SQLITE_CORRUPT
                        26 | 11 => {
                            return StoreError::NotAStateStore {
                                url: url_s,
                                reason: db.message().to_string(),
                            }
                        }
                        // SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN: the
                        // store cannot take writes (a full disk), whatever
                        // is written — unavailable, not the write's fault.
                        10 | 13 | 14 => {
                            return StoreError::Unreachable {
                                url: url_s,
                                reason: db.message().to_string(),
                            }
                        }
                        // SQLITE_BUSY, SQLITE_LOCKED
                        5 | 6 => {
                            let secs = BUSY_TIMEOUT.as_secs();
                            let why = db.message();
                            return StoreError::Backend(format!(
                                "{url}: another process kept the store locked for over {secs} s: {why}"
                            ));
                        }
                        _ => {}
                    }
                }
                Backend::Postgres => match code.as_str() {
                    // read_only_sql_transaction
                    "25006" => return StoreError::ReadOnly { url: url_s },
                    // invalid_catalog_name (no such database), auth failures,
                    // too many connections, cannot connect now (starting up)
                    "3D000" | "28000" | "28P01" | "53300" | "57P03"
                    // disk_full, out_of_memory, io_error: no write can succeed
                    | "53100" | "53200" | "58030" => {
                        return StoreError::Unreachable {
                            url: url_s,
                            reason: db.message().to_string(),
                        }
                    }
                    _ => {}
                },
            }
            StoreError::Backend(format!("{url}: {}", db.message()))
        }
        sqlx::Error::Io(io) => StoreError::Unreachable {
            url: url_s,
            reason: io_reason(io),
        },
        sqlx::Error::Tls(t) => StoreError::Unreachable {
            url: url_s,
            reason: format!("TLS: {t}"),
        },
        sqlx::Error::PoolTimedOut => StoreError::Unreachable {
            url: url_s,
            reason: format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
        },
        sqlx::Error::PoolClosed => StoreError::Backend(format!("{url}: the store was closed")),
        sqlx::Error::Configuration(c) => StoreError::BadUrl(format!("{url}: {c}")),
        _ => StoreError::Backend(format!("{url}: {e}")),
    }
}

fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset".into(),
        K::TimedOut => "timed out".into(),
        K::NotFound => format!("not found ({e})"),
        _ => e.to_string(),
    }
}

/// Lease in milliseconds, clamped to [0, 100 years].
pub(crate) fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).map_or(MAX_LEASE_MS, |ms| ms.min(MAX_LEASE_MS))
}

/// The changes of one commit, reduced to what they do: first every delete,
/// then every upsert, each key at most once per list (multi-row statements
/// may not touch a row twice). Equivalent to applying the changes in order.
pub(crate) struct Normalized<'a> {
    pub(crate) deletes: Vec<(&'a str, &'a str)>,
    pub(crate) upserts: Vec<&'a NewObject>,
}

impl<'a> Normalized<'a> {
    pub(crate) fn of(changes: &'a [Change]) -> Self {
        // key -> (deleted at some point, final upsert if the last change is one)
        let mut order: Vec<(&'a str, &'a str)> = Vec::with_capacity(changes.len());
        let mut fate: HashMap<(&'a str, &'a str), (bool, Option<&'a NewObject>)> =
            HashMap::with_capacity(changes.len());
        for change in changes {
            let (key, upsert) = match change {
                Change::Upsert(o) => ((o.kind.as_str(), o.name.as_str()), Some(o)),
                Change::Delete { kind, name } => ((kind.as_str(), name.as_str()), None),
            };
            let entry = fate.entry(key).or_insert_with(|| {
                order.push(key);
                (false, None)
            });
            match upsert {
                Some(o) => entry.1 = Some(o),
                None => *entry = (true, None),
            }
        }
        let mut deletes = Vec::new();
        let mut upserts = Vec::new();
        for key in order {
            if let Some((deleted, upsert)) = fate.get(&key) {
                if *deleted {
                    deletes.push(key);
                }
                if let Some(o) = upsert {
                    upserts.push(*o);
                }
            }
        }
        Normalized { deletes, upserts }
    }
}

/// A machine as it is written: key, name and facts (its JSON).
pub(crate) struct MachineRow {
    pub(crate) key: String,
    pub(crate) name: String,
    pub(crate) facts: String,
}

/// The rows for a batch of machines; refuses a batch naming one key twice.
pub(crate) fn machine_rows(machines: &[Machine]) -> Result<Vec<MachineRow>, Fail> {
    let mut seen = std::collections::HashSet::with_capacity(machines.len());
    machines
        .iter()
        .map(|m| {
            let key = m.key();
            if !seen.insert(key.clone()) {
                return Err(Fail::Invalid(format!(
                    "the batch names machine {:?} more than once; nothing was written",
                    m.name
                )));
            }
            let facts = serde_json::to_string(m)
                .map_err(|e| Fail::Invalid(format!("machine {:?}: {e}", m.name)))?;
            Ok(MachineRow {
                key,
                name: m.name.clone(),
                facts,
            })
        })
        .collect()
}

/// What the store holds for some keys: key -> (id, facts).
pub(crate) type Existing = HashMap<String, (i64, String)>;

/// The rows of a chunk that must be written: (stored, with other facts:
/// updated in place; not stored: inserted). Rows known to exist are never
/// sent through `INSERT … ON CONFLICT`, which on both backends takes a new
/// id for every row it is given, used or not, and ids must last (u32).
pub(crate) fn machines_to_write<'a>(
    chunk: &'a [MachineRow],
    existing: &Existing,
) -> (Vec<&'a MachineRow>, Vec<&'a MachineRow>) {
    let mut updates = Vec::new();
    let mut inserts = Vec::new();
    for r in chunk {
        match existing.get(&r.key) {
            Some((_, facts)) if *facts == r.facts => {}
            Some(_) => updates.push(r),
            None => inserts.push(r),
        }
    }
    (updates, inserts)
}

/// (id, changed) for each row of a chunk, from what was there before and
/// the ids the write returned (key -> id).
pub(crate) fn machine_outcomes(
    chunk: &[MachineRow],
    existing: &Existing,
    written: &HashMap<String, i64>,
) -> Result<Vec<(u32, bool)>, Fail> {
    chunk
        .iter()
        .map(|r| {
            let before = existing.get(&r.key);
            let changed = before.is_none_or(|(_, f)| *f != r.facts);
            let id = match (written.get(&r.key), before) {
                (Some(id), _) | (None, Some((id, _))) => *id,
                (None, None) => {
                    return Err(Fail::Data(format!(
                        "machine {:?} was written but no id came back",
                        r.name
                    )))
                }
            };
            Ok((machine_id(id)?, changed))
        })
        .collect()
}

pub(crate) fn machine_id(id: i64) -> Result<u32, Fail> {
    u32::try_from(id).map_err(|_| Fail::Data(format!("machine id {id} out of range")))
}

/// A token hash that is already stored may be added again only for the
/// same machine, and only while it is not revoked. (The hash is never put
/// in the message.)
pub(crate) fn check_token_again(
    machine_key: &str,
    stored_key: &str,
    revoked_ms: Option<i64>,
) -> Result<(), Fail> {
    if stored_key != machine_key {
        Err(Fail::Invalid(format!(
            "this token is already registered to another machine; not added for {machine_key:?}"
        )))
    } else if revoked_ms.is_some() {
        Err(Fail::Invalid(format!(
            "this token of {machine_key:?} was revoked; a revoked token cannot be added again"
        )))
    } else {
        Ok(())
    }
}

/// A row count as usize.
pub(crate) fn count(rows: u64) -> usize {
    usize::try_from(rows).unwrap_or(usize::MAX)
}

/// A batch of patch states checked as a replace refuses it whole: the
/// machines' keys (sorted, each once), and the rows, each (machine,
/// bulletin, product) once (the first row kept). Every row must be of a
/// machine in the batch, and of `scan_agent` when given.
pub(crate) fn patch_state_batch<'a>(
    machines: &[String],
    scan_agent: Option<&str>,
    rows: &'a [StoredPatchState],
) -> Result<(Vec<String>, Vec<&'a StoredPatchState>), Fail> {
    if let Some(agent) = scan_agent {
        if let Some(r) = rows.iter().find(|r| r.scan_agent != agent) {
            return Err(Fail::Invalid(format!(
                "a patch state of scan agent `{}` in a report of `{agent}`",
                r.scan_agent
            )));
        }
    }
    let keys = dedup_keys(machines.iter().map(|m| machine_key(m)));
    let mut seen = std::collections::HashSet::new();
    let mut unique: Vec<&StoredPatchState> = Vec::with_capacity(rows.len());
    for r in rows {
        if keys.binary_search(&r.machine_key).is_err() {
            return Err(Fail::Invalid(format!(
                "a patch state of machine `{}`, which is not in the batch",
                r.machine_key
            )));
        }
        if seen.insert((&r.machine_key, &r.bulletin, &r.product)) {
            unique.push(r);
        }
    }
    Ok((keys, unique))
}

/// Keys, each once, in a stable order.
fn dedup_keys(keys: impl Iterator<Item = String>) -> Vec<String> {
    let mut keys: Vec<String> = keys.collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Refuses a policy batch that names one machine twice or whose version
/// does not fit the stored type.
fn check_policies(policies: &[StoredPolicy]) -> Result<(), Fail> {
    let mut seen = std::collections::HashSet::with_capacity(policies.len());
    for p in policies {
        if !seen.insert(p.machine_id) {
            return Err(Fail::Invalid(format!(
                "the batch holds two policies for machine {}; nothing was written",
                p.machine_id
            )));
        }
        if i64::try_from(p.version).is_err() {
            return Err(Fail::Invalid(format!(
                "policy version {} of machine {} is too large (at most {}); nothing was written",
                p.version,
                p.machine_id,
                i64::MAX
            )));
        }
    }
    Ok(())
}

/// A policy version as stored (checked by [`check_policies`]).
pub(crate) fn version_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn scrub_error(e: StoreError, scrub: &dyn Fn(String) -> String) -> StoreError {
    match e {
        StoreError::BadUrl(m) => StoreError::BadUrl(scrub(m)),
        StoreError::Unreachable { url, reason } => StoreError::Unreachable {
            url: scrub(url),
            reason: scrub(reason),
        },
        StoreError::NotAStateStore { url, reason } => StoreError::NotAStateStore {
            url: scrub(url),
            reason: scrub(reason),
        },
        StoreError::ReadOnly { url } => StoreError::ReadOnly { url: scrub(url) },
        StoreError::Stale { expected, actual } => StoreError::Stale { expected, actual },
        StoreError::Backend(m) => StoreError::Backend(scrub(m)),
    }
}

/// Our migrations for one backend, as embedded text.
pub(crate) struct EmbeddedMigration {
    pub(crate) version: i64,
    pub(crate) description: &'static str,
    pub(crate) sql: &'static str,
}

/// Both backends' migrations, one line each: version, description, and
/// the file name in `migrations/sqlite/` and `migrations/postgres/`.
macro_rules! embedded_migrations {
    ($($version:literal $description:literal $file:literal),* $(,)?) => {
        pub(crate) const SQLITE_MIGRATIONS: &[EmbeddedMigration] = &[$(EmbeddedMigration {
            version: $version,
            description: $description,
            sql: include_str!(concat!("../../migrations/sqlite/", $file)),
        }),*];
        pub(crate) const POSTGRES_MIGRATIONS: &[EmbeddedMigration] = &[$(EmbeddedMigration {
            version: $version,
            description: $description,
            sql: include_str!(concat!("../../migrations/postgres/", $file)),
        }),*];
    };
}

embedded_migrations! {
    1 "init" "0001_init.sql",
    2 "machines" "0002_machines.sql",
    3 "catalogs" "0003_catalogs.sql",
    4 "patch states" "0004_patch_states.sql",
    5 "reconcile status" "0005_reconcile_status.sql",
    6 "inventory serial" "0006_inventory_serial.sql",
    7 "status keys per machine" "0007_status_keys_per_machine.sql",
    8 "dp validations" "0008_dp_validations.sql",
}

/// A sqlx migrator over `migrations`, recording into `patchops_migrations`.
pub(crate) fn migrator(migrations: &'static [EmbeddedMigration]) -> sqlx::migrate::Migrator {
    use sqlx::SqlSafeStr;
    let list = migrations
        .iter()
        .map(|m| {
            sqlx::migrate::Migration::new(
                m.version,
                m.description.into(),
                sqlx::migrate::MigrationType::Simple,
                m.sql.into_sql_str(),
                false,
            )
        })
        .collect();
    let mut migrator = sqlx::migrate::Migrator::with_migrations(list);
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}

/// Compares what a database has applied (version, checksum, success) with
/// what this build knows. `Ok(true)`: up to date; `Ok(false)`: ours, but
/// migrations are pending; `Err(message)`: written by another (newer)
/// patchops, or a migration of ours was changed after it was applied.
pub(crate) fn check_applied(
    applied: &[(i64, Vec<u8>, bool)],
    migrator: &sqlx::migrate::Migrator,
) -> Result<bool, String> {
    let newest_known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    for (version, checksum, success) in applied {
        let Some(ours) = migrator.iter().find(|m| m.version == *version) else {
            return Err(format!(
                "its schema is at version {version}, newer than this patchops knows \
                 (up to {newest_known}): upgrade patchops"
            ));
        };
        if !success {
            return Err(format!("schema migration {version} was left half-applied"));
        }
        if ours.checksum.as_ref() != checksum.as_slice() {
            return Err(format!(
                "schema migration {version} differs from the one this patchops ships"
            ));
        }
    }
    Ok(migrator
        .iter()
        .all(|m| applied.iter().any(|(v, _, _)| *v == m.version)))
}
