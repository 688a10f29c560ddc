//! One write transaction holding several kinds of writes.
//!
//! Each of the store's batch writes (status messages, tokens, machines,
//! policies) commits on its own. The site server's group commit stores a
//! whole group of agents' writes — of every kind — at one commit, so one
//! wait for the disk: it opens a [`WriteTx`], makes the writes, and
//! commits. Dropping a `WriteTx` without committing rolls it back lazily
//! (at the connection's next use); [`WriteTx::rollback`] does it at once.
//!
//! The store's own batch methods are this, with one write in between.

use std::collections::HashMap;

use super::{
    check_policies, machine_rows, postgres, sqlite, Db, Fail, MachineRecord, Store, StoreError,
    StoredPolicy,
};
use super::{machine_key, StatusMessage};
use crate::inventory::Machine;

/// An open write transaction on a SQLite or PostgreSQL store.
pub struct WriteTx<'s> {
    store: &'s Store,
    tx: Tx,
}

enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// Runs the backend's `$f` in the open transaction (given first, then the
/// arguments) and maps its failure to a [`StoreError`].
macro_rules! on_tx {
    ($tx:ident, $f:ident($($arg:expr),*)) => {{
        let r = match &mut $tx.tx {
            Tx::Sqlite(tx) => sqlite::$f(tx, $($arg),*).await,
            Tx::Postgres(tx) => postgres::$f(tx, $($arg),*).await,
        };
        r.map_err(|e| $tx.store.error(e))
    }};
}

impl Store {
    /// Opens a write transaction (SQLite: `BEGIN IMMEDIATE`, so that it
    /// holds the write lock from the start and never fails to upgrade).
    /// Refused on a read-only store.
    pub async fn begin_writes(&self) -> Result<WriteTx<'_>, StoreError> {
        self.writable()?;
        let tx = match &self.inner.db {
            Db::Sqlite(p) => p.begin_with("BEGIN IMMEDIATE").await.map(Tx::Sqlite),
            Db::Postgres(p) => p.begin().await.map(Tx::Postgres),
        };
        let tx = tx.map_err(|e| self.error(Fail::Sql(e)))?;
        Ok(WriteTx { store: self, tx })
    }
}

impl WriteTx<'_> {
    /// Stores batches of status messages as [`Store::insert_status_batches`]
    /// does; how many of each batch were newly stored.
    pub async fn insert_status_batches(
        &mut self,
        batches: &[&[StatusMessage]],
    ) -> Result<Vec<usize>, StoreError> {
        let lowered: Vec<(&[StatusMessage], Vec<String>)> = batches
            .iter()
            .map(|msgs| {
                let keys = msgs.iter().map(|m| machine_key(&m.machine_key)).collect();
                (*msgs, keys)
            })
            .collect();
        on_tx!(self, insert_status(&lowered))
    }

    /// Issues agents' tokens as [`Store::issue_machine_tokens`] does.
    pub async fn issue_machine_tokens(
        &mut self,
        tokens: &[(String, String)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let tokens: Vec<(String, String)> = tokens
            .iter()
            .map(|(machine, hash)| (machine_key(machine), hash.clone()))
            .collect();
        let issue = TokenIssue::of(&tokens);
        on_tx!(self, issue_machine_tokens(&issue, now_ms))
    }

    /// Stores machines' facts as [`Store::upsert_machines`] does.
    pub async fn upsert_machines(
        &mut self,
        machines: &[Machine],
        now_ms: i64,
    ) -> Result<Vec<MachineRecord>, StoreError> {
        let rows = machine_rows(machines).map_err(|e| self.store.error(e))?;
        let outcomes = on_tx!(self, upsert_machines(&rows, now_ms))?;
        Ok(machines
            .iter()
            .zip(outcomes)
            .map(|(m, (id, changed))| MachineRecord {
                id,
                name: m.name.clone(),
                changed,
            })
            .collect())
    }

    /// [`Store::machine`] as this transaction sees it.
    pub async fn machine(&mut self, key: &str) -> Result<Option<(u32, Machine)>, StoreError> {
        let key = machine_key(key);
        on_tx!(self, machine(&key))
    }

    /// Whether the machine has a live (unrevoked) agent token, as this
    /// transaction sees it.
    pub async fn has_live_token(&mut self, key: &str) -> Result<bool, StoreError> {
        let key = machine_key(key);
        on_tx!(self, has_live_token(&key))
    }

    /// [`Store::inventory_version`] as this transaction sees it.
    pub async fn inventory_version(&mut self) -> Result<i64, StoreError> {
        on_tx!(self, inventory_version())
    }

    /// Creates or replaces policies as [`Store::put_policies`] does.
    pub async fn put_policies(
        &mut self,
        policies: &[StoredPolicy],
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        check_policies(policies).map_err(|e| self.store.error(e))?;
        on_tx!(self, put_policies(policies, now_ms))
    }

    /// Undoes every write of the transaction now (not lazily, as a drop
    /// does), so that its connection goes back to the pool out of any
    /// transaction. When the rollback fails (SQLite may have rolled back
    /// already), the pool closes the connection instead of keeping it.
    pub async fn rollback(self) -> Result<(), StoreError> {
        let r = match self.tx {
            Tx::Sqlite(tx) => tx.rollback().await,
            Tx::Postgres(tx) => tx.rollback().await,
        };
        r.map_err(|e| self.store.error(Fail::Sql(e)))
    }

    /// Makes every write of the transaction durable, or none of them.
    pub async fn commit(self) -> Result<(), StoreError> {
        let r = match self.tx {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        };
        r.map_err(|e| self.store.error(Fail::Sql(e)))
    }
}

/// Registrations' tokens laid out for statements over many rows at once.
///
/// Registering revokes the machine's live tokens and adds the new one. For
/// a list of registrations that is: revoke the live tokens of every
/// machine named, then add every hash — where a machine registered twice
/// in the list has its earlier tokens added already revoked (`superseded`),
/// as if each registration had run in turn.
pub(crate) struct TokenIssue<'a> {
    /// Every machine named, once each.
    pub(crate) machines: Vec<&'a str>,
    pub(crate) rows: Vec<TokenRow<'a>>,
}

pub(crate) struct TokenRow<'a> {
    pub(crate) hash: &'a str,
    pub(crate) machine_key: &'a str,
    /// A later registration of the same machine in the list replaces it.
    pub(crate) superseded: bool,
}

impl<'a> TokenIssue<'a> {
    /// `tokens`: (machine key, token hash), in the order registered.
    pub(crate) fn of(tokens: &'a [(String, String)]) -> Self {
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
        let mut machines = Vec::with_capacity(tokens.len());
        for (i, (key, _)) in tokens.iter().enumerate() {
            if last.insert(key.as_str(), i).is_none() {
                machines.push(key.as_str());
            }
        }
        let rows = tokens
            .iter()
            .enumerate()
            .map(|(i, (key, hash))| TokenRow {
                hash,
                machine_key: key,
                superseded: last.get(key.as_str()) != Some(&i),
            })
            .collect();
        TokenIssue { machines, rows }
    }
}

#[cfg(test)]
mod tests {
    use super::TokenIssue;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, h)| (k.to_string(), h.to_string()))
            .collect()
    }

    #[test]
    fn a_machine_registered_twice_keeps_only_its_last_token_live() {
        let tokens = pairs(&[("pc1", "a"), ("pc2", "b"), ("pc1", "c")]);
        let issue = TokenIssue::of(&tokens);
        assert_eq!(issue.machines, vec!["pc1", "pc2"]);
        let rows: Vec<(&str, &str, bool)> = issue
            .rows
            .iter()
            .map(|r| (r.hash, r.machine_key, r.superseded))
            .collect();
        assert_eq!(
            rows,
            vec![("a", "pc1", true), ("b", "pc2", false), ("c", "pc1", false)]
        );
    }

    #[test]
    fn no_registrations_make_no_rows() {
        let issue = TokenIssue::of(&[]);
        assert!(issue.machines.is_empty() && issue.rows.is_empty());
    }
}
