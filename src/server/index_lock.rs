//! The site index behind its writer lock, as types. Anyone may read the
//! index; only an [`IndexWriter`], which [`IndexLock::writer`] hands out
//! one at a time, can change it. A rebuild, and every store write whose
//! result is applied to the index (inventory, registrations, policies, an
//! apply through the admin API), is made while holding one, so no
//! inventory update lands on an index that is about to be replaced.
//!
//! The index's fields are private to this module: there is no other way
//! to reach the index for writing.

use std::sync::{LockResult, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::site::SiteIndex;

pub struct IndexLock {
    index: RwLock<SiteIndex>,
    /// Whose turn it is to change the index (async: a writer awaits the
    /// store while it holds its turn).
    turn: tokio::sync::Mutex<()>,
}

/// The right to change the index and to make the store writes it
/// reflects, until dropped.
pub struct IndexWriter<'a> {
    index: &'a RwLock<SiteIndex>,
    _turn: tokio::sync::MutexGuard<'a, ()>,
}

impl IndexLock {
    pub fn new(index: SiteIndex) -> IndexLock {
        IndexLock {
            index: RwLock::new(index),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// The index as it is now, for reading (held briefly: never across an
    /// await).
    pub fn read(&self) -> LockResult<RwLockReadGuard<'_, SiteIndex>> {
        self.index.read()
    }

    /// Waits for the turn to change the index.
    pub async fn writer(&self) -> IndexWriter<'_> {
        IndexWriter {
            _turn: self.turn.lock().await,
            index: &self.index,
        }
    }
}

impl IndexWriter<'_> {
    /// The index, to change (held briefly: polls wait meanwhile).
    pub fn index(&self) -> LockResult<RwLockWriteGuard<'_, SiteIndex>> {
        self.index.write()
    }
}
