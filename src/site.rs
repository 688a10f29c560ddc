//! A site's state, where the caller finds it: a store opened here
//! (`--state URL`), or a running site server's admin API (`--site URL`).
//! Plan, apply, the lock and status work the same through either; the
//! choice is made once, when the [`Site`] is opened, not inside each
//! operation.

use std::time::Duration;

use crate::inventory::Machine;
use crate::records::{
    ApplyRecord, Change, DpValidation, LockHolder, LockRequest, MachineRecord, Owner,
    ReconcileStatus, StateInfo, StatusMessage, StoredObject, StoredPatchState, StoredPolicy,
};
use crate::remote::RemoteSite;
use crate::store::{Store, StoreError};

/// Where a command finds the site's state.
#[derive(Debug, Clone)]
pub enum Site {
    Local(Store),
    Remote(RemoteSite),
}

/// Operations both kinds of site offer, with the same arguments.
macro_rules! either {
    ($(
        $(#[$doc:meta])*
        fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;
    )*) => {$(
        $(#[$doc])*
        pub async fn $name(&self $(, $arg: $ty)*) -> Result<$ret, StoreError> {
            match self {
                Site::Local(store) => store.$name($($arg),*).await,
                Site::Remote(remote) => remote.$name($($arg),*).await,
            }
        }
    )*};
}

impl Site {
    /// The store of a command that only works on a store opened here (a
    /// site server does not offer `op` through its admin API).
    pub fn local(&self, op: &str) -> Result<&Store, StoreError> {
        match self {
            Site::Local(store) => Ok(store),
            Site::Remote(remote) => Err(remote.unsupported(op)),
        }
    }

    /// The store's URL with any password masked, or the server's URL.
    pub fn display_url(&self) -> String {
        match self {
            Site::Local(store) => store.display_url(),
            Site::Remote(remote) => remote.url().to_string(),
        }
    }

    /// Closes a local store's pool (nothing to close for a server).
    pub async fn close(&self) {
        if let Site::Local(store) = self {
            store.close().await;
        }
    }

    either! {
        fn info(&self) -> StateInfo;
        fn objects(&self) -> Vec<StoredObject>;
        fn object(&self, kind: &str, name: &str) -> Option<StoredObject>;
        fn commit(
            &self,
            expected_serial: i64,
            site: Option<&str>,
            changes: &[Change],
            record: &ApplyRecord
        ) -> i64;
        fn history(&self, limit: u32) -> Vec<ApplyRecord>;
        fn set_owner(&self, kind: &str, name: &str, owner: Owner, record: &ApplyRecord) -> bool;
        fn try_lock(&self, req: &LockRequest) -> Result<(), LockHolder>;
        fn take_over_lock(&self, previous_id: &str, req: &LockRequest) -> bool;
        fn renew_lock(&self, id: &str, lease: Duration) -> bool;
        fn unlock(&self, id: &str) -> bool;
        fn lock_holder(&self) -> Option<LockHolder>;
        fn lease_holder(&self, name: &str) -> Option<LockHolder>;
        fn ping(&self) -> ();
        fn machine_count(&self) -> usize;
        fn machines(&self) -> Vec<(u32, Machine)>;
        fn policy(&self, machine_id: u32) -> Option<StoredPolicy>;
        fn latest_status(&self, advertisement: Option<&str>) -> Vec<StatusMessage>;
        fn status_for_machine(&self, machine_key: &str, limit: u32) -> Vec<StatusMessage>;
        fn patch_states(&self, machine: Option<&str>) -> Vec<StoredPatchState>;
        fn reconcile_status(&self) -> Option<ReconcileStatus>;
        fn dp_validations(&self) -> Vec<DpValidation>;
    }

    /// See [`Store::upsert_machines`]; a site server stamps its own time.
    pub async fn upsert_machines(
        &self,
        machines: &[Machine],
        now_ms: i64,
    ) -> Result<Vec<MachineRecord>, StoreError> {
        match self {
            Site::Local(store) => store.upsert_machines(machines, now_ms).await,
            Site::Remote(remote) => remote.upsert_machines(machines).await,
        }
    }

    /// See [`Store::revoke_machine_tokens`]; a site server stamps its own
    /// time.
    pub async fn revoke_machine_tokens(
        &self,
        machine_key: &str,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        match self {
            Site::Local(store) => store.revoke_machine_tokens(machine_key, now_ms).await,
            Site::Remote(remote) => remote.revoke_machine_tokens(machine_key).await,
        }
    }

    /// See [`Store::replace_scan_states`].
    pub async fn replace_scan_states(
        &self,
        machines: &[String],
        scan_agent: &str,
        rows: &[StoredPatchState],
    ) -> Result<usize, StoreError> {
        match self {
            Site::Local(store) => store.replace_scan_states(machines, scan_agent, rows).await,
            Site::Remote(remote) => {
                remote
                    .replace_states(machines, Some(scan_agent), rows)
                    .await
            }
        }
    }

    /// See [`Store::replace_patch_states`].
    pub async fn replace_patch_states(
        &self,
        machines: &[String],
        rows: &[StoredPatchState],
    ) -> Result<usize, StoreError> {
        match self {
            Site::Local(store) => store.replace_patch_states(machines, rows).await,
            Site::Remote(remote) => remote.replace_states(machines, None, rows).await,
        }
    }
}
