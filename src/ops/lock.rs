//! The apply lock: one apply at a time per store. A lease expires if its
//! holder dies without unlocking; a holder on this host whose process is
//! gone is taken over at once.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::{Actor, OpError};
use crate::records::{LockHolder, LockRequest};
use crate::site::Site;

/// How long a lock lives without renewal.
pub const LEASE: Duration = Duration::from_secs(60);
/// How often a holder renews it.
const RENEW_EVERY: Duration = Duration::from_secs(15);
/// How often a waiter asks again.
const RETRY_EVERY: Duration = Duration::from_millis(250);

/// A held lock; renewed in the background until released.
pub struct Held {
    store: Site,
    id: String,
    renewer: JoinHandle<()>,
}

impl Held {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub async fn release(self) -> Result<(), OpError> {
        self.renewer.abort();
        self.store.unlock(&self.id).await?;
        Ok(())
    }
}

/// What [`acquire_reporting`] tells its caller while it takes the lock.
#[derive(Debug, Clone, Copy)]
pub enum LockEvent<'a> {
    /// Another holder has the lock; told once, before the first wait.
    Waiting(&'a LockHolder),
    /// The holder was a process of this host that is gone: its lock was
    /// taken over at once, lease or not.
    TakenOver(&'a LockHolder),
}

/// Takes the lock, waiting up to `timeout` for another holder.
pub async fn acquire(store: &Site, actor: &Actor, timeout: Duration) -> Result<Held, OpError> {
    acquire_reporting(store, actor, timeout, &|_| {}).await
}

/// [`acquire`], telling `report` when it has to wait and whom it took the
/// lock from (so that a person sees why nothing happens, and that a dead
/// apply's lock was not simply ignored).
pub async fn acquire_reporting(
    store: &Site,
    actor: &Actor,
    timeout: Duration,
    report: &(dyn Fn(LockEvent<'_>) + Sync),
) -> Result<Held, OpError> {
    let request = LockRequest {
        id: uuid::Uuid::new_v4().to_string(),
        holder: actor.name.clone(),
        host: actor.host.clone(),
        pid: actor.pid,
        command: actor.command.clone(),
        lease: LEASE,
    };
    let start = Instant::now();
    let mut told = false;
    loop {
        let holder = match store.try_lock(&request).await? {
            Ok(()) => break,
            Err(holder) => holder,
        };
        if holder.host == actor.host
            && !process_alive(holder.pid)
            && store.take_over_lock(&holder.id, &request).await?
        {
            report(LockEvent::TakenOver(&holder));
            break;
        }
        if start.elapsed() >= timeout {
            return Err(OpError::Locked(Box::new(holder)));
        }
        if !told {
            report(LockEvent::Waiting(&holder));
            told = true;
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
    let renewer = {
        let store = store.clone();
        let id = request.id.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                if !matches!(store.renew_lock(&id, LEASE).await, Ok(true)) {
                    break;
                }
            }
        })
    };
    Ok(Held {
        store: store.clone(),
        id: request.id,
        renewer,
    })
}

/// Whether a process of this host still runs (a zombie counts as gone).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && !is_zombie(pid)
}

fn is_zombie(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}
