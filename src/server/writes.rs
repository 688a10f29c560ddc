//! Group commit for the agents' writes.
//!
//! Registrations, inventory reports and status batches each end in a
//! store transaction, and every commit waits for the disk (an fsync, a
//! millisecond or more). One commit per request, a few hundred agents at
//! once would queue behind each other's commits. So the handlers hand
//! their writes to one task, which takes every write waiting, commits them
//! together — the status messages in one transaction, the tokens in one,
//! the machines in one and their new policies in one — and then answers
//! each caller. Alone, a write is a group of one: nothing waits for
//! company.
//!
//! Each caller's write is still whole or nothing: a failed transaction
//! fails every write of the group that was in it, and none of them is
//! stored. A machine named twice in one group (two reports in flight for
//! one machine) is written in two steps, in the order received.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;
use tokio::sync::{mpsc, oneshot};

use super::api::ApiError;
use super::{now_ms, AppState};
use crate::inventory::Machine;
use crate::store::StatusMessage;

/// The most writes committed together.
const MAX_GROUP: usize = 256;
/// Writes waiting beyond this make their senders wait (back pressure).
const QUEUE: usize = 4096;

/// One caller's write.
pub enum Write {
    /// Revokes the machine's tokens and adds the new one; adds the machine
    /// to the inventory (with its name alone) when the index does not know
    /// it.
    Register {
        machine: Machine,
        token_hash: String,
    },
    /// Stores a machine's facts and updates its memberships and policy.
    Inventory { machine: Machine },
    /// Stores status messages, exactly once by key.
    Status { messages: Vec<StatusMessage> },
}

/// The answer: for status, how many messages were newly stored; else 0.
type Reply = oneshot::Sender<Result<usize, ApiError>>;

/// A write and where its answer goes.
pub struct Job {
    write: Write,
    reply: Reply,
}

/// The handlers' end of the queue.
pub struct Writes {
    queue: mpsc::Sender<Job>,
}

/// The queue and the receiving end, for [`run`].
pub fn queue() -> (Writes, mpsc::Receiver<Job>) {
    let (queue, receiver) = mpsc::channel(QUEUE);
    (Writes { queue }, receiver)
}

impl Writes {
    /// Queues a write and waits until it is committed (or failed).
    pub async fn commit(&self, write: Write) -> Result<usize, ApiError> {
        let gone = || {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down; try again later",
            )
        };
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { write, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Commits the queued writes, group by group, until every sender is gone
/// (or the task is stopped).
pub async fn run(state: Arc<AppState>, mut receiver: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_GROUP);
    while receiver.recv_many(&mut jobs, MAX_GROUP).await > 0 {
        commit_group(&state, std::mem::take(&mut jobs)).await;
    }
}

async fn commit_group(state: &AppState, jobs: Vec<Job>) {
    let mut statuses: Vec<(Vec<StatusMessage>, Reply)> = Vec::new();
    let mut registrations: Vec<(Machine, String, Reply)> = Vec::new();
    let mut inventories: Vec<(Machine, Reply)> = Vec::new();
    for job in jobs {
        match job.write {
            Write::Status { messages } => statuses.push((messages, job.reply)),
            Write::Register {
                machine,
                token_hash,
            } => registrations.push((machine, token_hash, job.reply)),
            Write::Inventory { machine } => inventories.push((machine, job.reply)),
        }
    }
    if !statuses.is_empty() {
        commit_status(state, statuses).await;
    }
    if registrations.is_empty() && inventories.is_empty() {
        return;
    }
    // Changes to the index are serialized with rebuilds.
    let _writer = state.writer.lock().await;
    let mut machines: Vec<(Machine, Option<Reply>)> = Vec::new();
    if !registrations.is_empty() {
        let tokens: Vec<(String, String)> = registrations
            .iter()
            .map(|(machine, hash, _)| (machine.key(), hash.clone()))
            .collect();
        match state.store.issue_machine_tokens(&tokens, now_ms()).await {
            Ok(()) => {
                let keys: HashSet<String> = tokens.into_iter().map(|(key, _)| key).collect();
                state.tokens.forget_machines(&keys);
                let known: Vec<bool> = match state.index.read() {
                    Ok(index) => registrations
                        .iter()
                        .map(|(m, _, _)| index.id_of(&m.key()).is_some())
                        .collect(),
                    Err(_) => vec![false; registrations.len()],
                };
                for ((machine, _, reply), known) in registrations.into_iter().zip(known) {
                    if known {
                        let _ = reply.send(Ok(0));
                    } else {
                        machines.push((machine, Some(reply)));
                    }
                }
            }
            Err(e) => fail_all(
                ApiError::from(e),
                registrations.into_iter().map(|(_, _, r)| r),
            ),
        }
    }
    machines.extend(inventories.into_iter().map(|(m, r)| (m, Some(r))));
    // Steps in which no machine appears twice, in the order received.
    while !machines.is_empty() {
        let mut seen = HashSet::new();
        let (step, later): (Vec<_>, Vec<_>) = machines
            .into_iter()
            .partition(|(machine, _)| seen.insert(machine.key()));
        machines = later;
        let (step, replies): (Vec<Machine>, Vec<Option<Reply>>) = step.into_iter().unzip();
        match store_machines(state, step).await {
            Ok(()) => {
                for reply in replies.into_iter().flatten() {
                    let _ = reply.send(Ok(0));
                }
            }
            Err(e) => fail_all(e, replies.into_iter().flatten()),
        }
    }
}

/// Every status batch of the group in one transaction.
async fn commit_status(state: &AppState, statuses: Vec<(Vec<StatusMessage>, Reply)>) {
    let batches: Vec<&[StatusMessage]> = statuses.iter().map(|(m, _)| m.as_slice()).collect();
    match state.store.insert_status_batches(&batches).await {
        Ok(counts) => {
            for ((_, reply), inserted) in statuses.into_iter().zip(counts) {
                let _ = reply.send(Ok(inserted));
            }
        }
        Err(e) => fail_all(ApiError::from(e), statuses.into_iter().map(|(_, r)| r)),
    }
}

/// Stores machines' facts (each machine once), updates their memberships
/// and policies in the index, one machine at a time so that polls are
/// served in between, and stores the policies that changed. The caller
/// holds `state.writer`.
async fn store_machines(state: &AppState, machines: Vec<Machine>) -> Result<(), ApiError> {
    let records = state.store.upsert_machines(&machines, now_ms()).await?;
    if records.len() != machines.len() {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "the store returned {} records for {} machines",
                records.len(),
                machines.len()
            ),
        ));
    }
    if let Ok(version) = state.store.inventory_version().await {
        if let Ok(mut known) = state.known_inventory.lock() {
            *known = Some(version);
        }
    }
    let mut policies = Vec::new();
    for (record, machine) in records.iter().zip(machines) {
        let started = Instant::now();
        let changed = state
            .index
            .write()
            .ok()
            .and_then(|mut index| index.machine_changed(record.id, machine));
        state.metrics.machine_evaluation.observe(started.elapsed());
        policies.extend(changed);
    }
    if !policies.is_empty() {
        state.store.put_policies(&policies, now_ms()).await?;
        state
            .metrics
            .policy_updates
            .fetch_add(policies.len() as u64, Ordering::Relaxed);
    }
    Ok(())
}

fn fail_all(error: ApiError, replies: impl Iterator<Item = Reply>) {
    for reply in replies {
        let _ = reply.send(Err(error.clone()));
    }
}
