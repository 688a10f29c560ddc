//! Group commit for the agents' writes.
//!
//! Registrations, inventory reports and status batches each end in a
//! store transaction, and every commit waits for the disk (an fsync, a
//! millisecond or more). One commit per request, a few hundred agents at
//! once would queue behind each other's commits. So the handlers hand
//! their writes to one task, which takes every write waiting, stores them
//! all — status messages, tokens, machines and their new policies — in
//! one transaction ([`crate::store::WriteTx`]), so one wait for the disk,
//! and then answers each caller. Alone, a write is a group of one:
//! nothing waits for company.
//!
//! Each caller's write is still whole or nothing, and only its own fault
//! can fail it: when a group's transaction fails, nothing of it is stored,
//! the index (which the group already changed) is reloaded from the
//! store, and each write is tried again alone — unless the store is
//! unreachable, which would fail them all the same. A machine named twice
//! in one group (two reports in flight for one machine) is written in two
//! steps, in the order received.

use super::index_lock::IndexWriter;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;
use tokio::sync::{mpsc, oneshot};

use super::http_error::ApiError;
use super::{now_ms, AppState};
use crate::inventory::Machine;
use crate::records::{MachineRecord, StatusMessage};
use crate::store::StoreError;

/// The most writes committed together.
const MAX_GROUP: usize = 256;
/// Writes waiting beyond this make their senders wait (back pressure).
const QUEUE: usize = 4096;

/// One caller's write.
pub enum Write {
    /// Adds the machine's token; adds the machine to the inventory (with
    /// its name alone) when neither the index nor the store knows it.
    /// Refused (409) while the machine has a live token: see
    /// [`refuse_enrolled`].
    Register {
        machine: Machine,
        token_hash: String,
    },
    /// Stores a machine's facts and updates its memberships and policy.
    Inventory { machine: Machine },
    /// Stores status messages, exactly once by (machine, key).
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
    if jobs.len() > 1 {
        let mut group = Group::of(jobs);
        let touches_index = group.touches_index();
        match stored(state, store_group(state, &mut group).await) {
            Ok(()) => group.answer(),
            Err(e) if matches!(e, StoreError::Unreachable { .. }) => {
                if touches_index {
                    forget_inventory_version(state);
                }
                group.fail(e.into());
            }
            Err(e) => {
                tracing::warn!(error = %e, writes = group.len(), "a group of writes failed; trying each alone");
                if touches_index {
                    if let Err(e) = super::rebuild(state).await {
                        tracing::warn!(error = %e, "cannot reload the site after a failed group");
                    }
                }
                for job in group.into_jobs() {
                    commit_alone(state, job).await;
                }
            }
        }
    } else {
        for job in jobs {
            commit_alone(state, job).await;
        }
    }
}

/// One write in a transaction of its own; a failure is the write's own.
async fn commit_alone(state: &AppState, job: Job) {
    let mut group = Group::of(vec![job]);
    match stored(state, store_group(state, &mut group).await) {
        Ok(()) => group.answer(),
        Err(e) => {
            if group.touches_index() {
                forget_inventory_version(state);
            }
            group.fail(e.into());
        }
    }
}

/// Health follows the writes: a store that answers pings but cannot take
/// writes (a full disk) is down until a write succeeds again.
fn stored(state: &AppState, outcome: Result<(), StoreError>) -> Result<(), StoreError> {
    let failing = match &outcome {
        Ok(()) => false,
        Err(StoreError::Unreachable { .. }) => true,
        Err(_) => return outcome,
    };
    let was = state.writes_failing.swap(failing, Ordering::Relaxed);
    if failing {
        state.store_up.store(false, Ordering::Relaxed);
    } else if was {
        state.store_up.store(true, Ordering::Relaxed);
    }
    if failing != was {
        if failing {
            tracing::warn!("the state store refuses writes; health is down until a write succeeds");
        } else {
            tracing::info!("the state store takes writes again");
        }
    }
    outcome
}

/// A group's writes, sorted by kind, with their answers.
struct Group {
    statuses: Vec<(Vec<StatusMessage>, Reply)>,
    registrations: Vec<(Machine, String, Reply)>,
    /// Registrations refused because the machine is enrolled already.
    refused: Vec<(Machine, String, Reply)>,
    inventories: Vec<(Machine, Reply)>,
    /// Per status batch, how many messages were newly stored.
    stored: Vec<usize>,
}

impl Group {
    fn of(jobs: Vec<Job>) -> Group {
        let mut group = Group {
            statuses: Vec::new(),
            registrations: Vec::new(),
            refused: Vec::new(),
            inventories: Vec::new(),
            stored: Vec::new(),
        };
        for job in jobs {
            match job.write {
                Write::Status { messages } => group.statuses.push((messages, job.reply)),
                Write::Register {
                    machine,
                    token_hash,
                } => group.registrations.push((machine, token_hash, job.reply)),
                Write::Inventory { machine } => group.inventories.push((machine, job.reply)),
            }
        }
        group
    }

    fn len(&self) -> usize {
        self.statuses.len() + self.registrations.len() + self.refused.len() + self.inventories.len()
    }

    /// Whether storing the group changes the index (and needs `writer`).
    fn touches_index(&self) -> bool {
        !self.registrations.is_empty() || !self.inventories.is_empty()
    }

    fn answer(self) {
        for ((_, reply), stored) in self.statuses.into_iter().zip(self.stored) {
            let _ = reply.send(Ok(stored));
        }
        for (machine, _, reply) in self.refused {
            let _ = reply.send(Err(enrolled_already(&machine)));
        }
        let others = self.registrations.into_iter().map(|(_, _, r)| r);
        for reply in others.chain(self.inventories.into_iter().map(|(_, r)| r)) {
            let _ = reply.send(Ok(0));
        }
    }

    fn fail(self, error: ApiError) {
        let replies = self.statuses.into_iter().map(|(_, r)| r);
        let replies = replies.chain(self.registrations.into_iter().map(|(_, _, r)| r));
        let replies = replies.chain(self.refused.into_iter().map(|(_, _, r)| r));
        fail_all(
            error,
            replies.chain(self.inventories.into_iter().map(|(_, r)| r)),
        );
    }

    fn into_jobs(self) -> Vec<Job> {
        let statuses = self.statuses.into_iter().map(|(messages, reply)| Job {
            write: Write::Status { messages },
            reply,
        });
        let registrations = self.registrations.into_iter().chain(self.refused).map(
            |(machine, token_hash, reply)| Job {
                write: Write::Register {
                    machine,
                    token_hash,
                },
                reply,
            },
        );
        let inventories = self.inventories.into_iter().map(|(machine, reply)| Job {
            write: Write::Inventory { machine },
            reply,
        });
        statuses.chain(registrations).chain(inventories).collect()
    }
}

/// Stores every write of the group in one transaction and updates the
/// index as it goes.
async fn store_group(state: &AppState, group: &mut Group) -> Result<(), StoreError> {
    // Changes to the index are serialized with rebuilds.
    let writer = if group.touches_index() {
        Some(state.index.writer().await)
    } else {
        None
    };
    let mut tx = state.store.begin_writes().await?;
    let written = write_group(state, &mut tx, group, writer.as_ref()).await;
    let stored = match written {
        Ok(stored) => tx.commit().await.map(|()| stored),
        Err(e) => {
            // At once, not at the connection's next use: a connection left
            // in a failed transaction would refuse the next group's BEGIN.
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %rollback, "cannot roll back a failed group of writes");
            }
            Err(e)
        }
    };
    let (version, registered) = stored?;
    if let Some(version) = version {
        if let Ok(mut known) = state.known_inventory.lock() {
            *known = Some(version);
        }
    }
    state.tokens.forget_machines(&registered);
    Ok(())
}

/// The writes of [`store_group`] inside its transaction: the inventory
/// version they leave (when they change the index, which they do only
/// holding `writer`) and the machines registered.
async fn write_group(
    state: &AppState,
    tx: &mut crate::store::WriteTx<'_>,
    group: &mut Group,
    writer: Option<&IndexWriter<'_>>,
) -> Result<(Option<i64>, HashSet<String>), StoreError> {
    let now = now_ms();
    if !group.statuses.is_empty() {
        let batches: Vec<&[StatusMessage]> =
            group.statuses.iter().map(|(m, _)| m.as_slice()).collect();
        group.stored = tx.insert_status_batches(&batches).await?;
    }
    let mut policies = Vec::new();
    let mut registered = HashSet::new();
    let Some(writer) = writer else {
        return Ok((None, registered));
    };
    let mut machines: Vec<Machine> = Vec::new();
    refuse_enrolled(tx, group).await?;
    if !group.registrations.is_empty() {
        let tokens: Vec<(String, String)> = group
            .registrations
            .iter()
            .map(|(machine, hash, _)| (machine.key(), hash.clone()))
            .collect();
        tx.issue_machine_tokens(&tokens, now).await?;
        policies.extend(index_registered(state, writer, tx, group, &mut machines).await?);
        registered.extend(tokens.into_iter().map(|(key, _)| key));
    }
    machines.extend(group.inventories.iter().map(|(m, _)| m.clone()));
    // Steps in which no machine appears twice, in the order received.
    while !machines.is_empty() {
        let mut seen = HashSet::new();
        let (step, later): (Vec<Machine>, Vec<Machine>) = machines
            .into_iter()
            .partition(|machine| seen.insert(machine.key()));
        machines = later;
        let records = tx.upsert_machines(&step, now).await?;
        policies.extend(index_machines(state, writer, &records, step)?);
    }
    let version = Some(tx.inventory_version().await?);
    if !policies.is_empty() {
        // A machine changed in two steps has its last policy stored.
        let mut last = std::collections::HashMap::with_capacity(policies.len());
        for policy in policies {
            last.insert(policy.machine_id, policy);
        }
        let mut policies: Vec<_> = last.into_values().collect();
        // One order for every writer: concurrent servers lock rows alike.
        policies.sort_unstable_by_key(|p| p.machine_id);
        tx.put_policies(&policies, now).await?;
        state
            .metrics
            .policy_updates
            .fetch_add(policies.len() as u64, Ordering::Relaxed);
    }
    Ok((version, registered))
}

/// Moves to `refused` every registration of a machine that has a live
/// token — and every registration after the first of one machine in the
/// group. Whoever holds the enrollment secret could otherwise take over an
/// enrolled machine's identity, and its agent would lose its token
/// without a word. An operator who means it (the agent lost its state
/// directory, the machine was rebuilt) revokes the machine's token first
/// (`patchops machine revoke`); the agent then registers again.
async fn refuse_enrolled(
    tx: &mut crate::store::WriteTx<'_>,
    group: &mut Group,
) -> Result<(), StoreError> {
    let mut seen = HashSet::new();
    let mut refuse = Vec::with_capacity(group.registrations.len());
    for (machine, _, _) in &group.registrations {
        let key = machine.key();
        refuse.push(!seen.insert(key.clone()) || tx.has_live_token(&key).await?);
    }
    let (refused, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut group.registrations)
        .into_iter()
        .zip(refuse)
        .partition(|(_, refused)| *refused);
    group.registrations = kept.into_iter().map(|(r, _)| r).collect();
    group.refused.extend(refused.into_iter().map(|(r, _)| r));
    Ok(())
}

fn enrolled_already(machine: &Machine) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        format!(
            "machine {} is enrolled already (it has a live agent token); to enroll it again, \
             revoke that token first: patchops machine revoke {}",
            machine.name, machine.name
        ),
    )
}

/// Registered machines the index does not know: one the store has
/// (imported since the index was built) is indexed with its stored facts,
/// which stay as they are; any other goes to `new` to be added with its
/// name alone. The policies that changed.
async fn index_registered(
    state: &AppState,
    writer: &IndexWriter<'_>,
    tx: &mut crate::store::WriteTx<'_>,
    group: &Group,
    new: &mut Vec<Machine>,
) -> Result<Vec<crate::records::StoredPolicy>, StoreError> {
    let unknown: Vec<Machine> = match state.index.read() {
        Ok(index) => group
            .registrations
            .iter()
            .filter(|(m, _, _)| index.id_of(&m.key()).is_none())
            .map(|(m, _, _)| m.clone())
            .collect(),
        Err(_) => Vec::new(),
    };
    let mut records = Vec::new();
    let mut stored = Vec::new();
    for machine in unknown {
        match tx.machine(&machine.key()).await? {
            Some((id, facts)) => {
                records.push(MachineRecord {
                    id,
                    name: facts.name.clone(),
                    changed: false,
                });
                stored.push(facts);
            }
            None => new.push(machine),
        }
    }
    index_machines(state, writer, &records, stored)
}

/// Updates the machines' memberships and policies in the index, one
/// machine at a time so that polls are served in between; the policies
/// that changed.
fn index_machines(
    state: &AppState,
    writer: &IndexWriter<'_>,
    records: &[MachineRecord],
    machines: Vec<Machine>,
) -> Result<Vec<crate::records::StoredPolicy>, StoreError> {
    if records.len() != machines.len() {
        return Err(StoreError::Backend(format!(
            "the store returned {} records for {} machines",
            records.len(),
            machines.len()
        )));
    }
    let mut policies = Vec::new();
    for (record, machine) in records.iter().zip(machines) {
        let started = Instant::now();
        let changed = writer
            .index()
            .ok()
            .and_then(|mut index| index.machine_changed(record.id, machine));
        state.metrics.machine_evaluation.observe(started.elapsed());
        policies.extend(changed);
    }
    Ok(policies)
}

/// The index may hold what the store does not (a group that changed it
/// failed): the next refresh reloads it.
fn forget_inventory_version(state: &AppState) {
    if let Ok(mut known) = state.known_inventory.lock() {
        *known = None;
    }
}

fn fail_all(error: ApiError, replies: impl Iterator<Item = Reply>) {
    for reply in replies {
        let _ = reply.send(Err(error.clone()));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::secret::Secret;
    use crate::server::index_lock::IndexLock;
    use crate::server::{load_index, metrics, tokens};
    use crate::store::Store;

    async fn state() -> Arc<AppState> {
        let store = Store::open("sqlite::memory:").await.expect("store");
        let (index, _) = load_index(&store).await.expect("index");
        Arc::new(AppState {
            store,
            index: IndexLock::new(index),
            enroll_secret: Secret::new(b"enroll".to_vec()),
            admin_token: None,
            tokens: tokens::TokenCache::new(Duration::from_secs(60)),
            metrics: metrics::Metrics::default(),
            store_up: AtomicBool::new(true),
            writes_failing: AtomicBool::new(false),
            max_body: 1 << 20,
            known_inventory: std::sync::Mutex::new(None),
            reconcile: None,
            writes: queue().0,
        })
    }

    fn job(write: Write) -> (Job, oneshot::Receiver<Result<usize, ApiError>>) {
        let (reply, answer) = oneshot::channel();
        (Job { write, reply }, answer)
    }

    fn message(machine: &str, key: &str) -> StatusMessage {
        StatusMessage {
            key: key.into(),
            machine_key: machine.into(),
            advertisement: "MS Security Updates".into(),
            state: crate::records::AssignmentState::Accepted,
            exit_code: None,
            message: String::new(),
            at_ms: 1,
            received_ms: 2,
        }
    }

    /// A write the store refuses fails alone: the others of its group are
    /// stored, and answered as if it had never been there.
    #[tokio::test]
    async fn a_refused_write_fails_alone_and_its_group_is_stored() {
        let state = state().await;
        state
            .store
            .issue_machine_tokens(&[("pc-a".into(), "hash-a".into())], 1)
            .await
            .expect("token");
        let (status, status_answer) = job(Write::Status {
            messages: vec![message("pc-a", "run-1/1-accepted")],
        });
        // Another machine's token hash: the store refuses it.
        let (stolen, stolen_answer) = job(Write::Register {
            machine: Machine::named("pc-b"),
            token_hash: "hash-a".into(),
        });
        let (fresh, fresh_answer) = job(Write::Register {
            machine: Machine::named("pc-c"),
            token_hash: "hash-c".into(),
        });
        let (inventory, inventory_answer) = job(Write::Inventory {
            machine: Machine::named("pc-d"),
        });
        commit_group(&state, vec![status, stolen, fresh, inventory]).await;

        assert_eq!(status_answer.await.expect("answer").expect("stored"), 1);
        let refused = stolen_answer.await.expect("answer").expect_err("refused");
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        fresh_answer.await.expect("answer").expect("registered");
        inventory_answer.await.expect("answer").expect("stored");

        let store = &state.store;
        assert_eq!(store.status_for_machine("pc-a", 10).await.unwrap().len(), 1);
        assert_eq!(
            store.machine_for_token("hash-a").await.unwrap().as_deref(),
            Some("pc-a")
        );
        assert_eq!(
            store.machine_for_token("hash-c").await.unwrap().as_deref(),
            Some("pc-c")
        );
        assert!(store.machine("pc-b").await.unwrap().is_none());
        assert!(store.machine("pc-c").await.unwrap().is_some());
        assert!(store.machine("pc-d").await.unwrap().is_some());
        // The index knows what the store holds, and nothing else.
        let index = state.index.read().unwrap();
        assert!(index.id_of("pc-c").is_some() && index.id_of("pc-d").is_some());
        assert!(index.id_of("pc-b").is_none());
    }

    /// A machine imported since the index was built (by another process)
    /// keeps its stored facts when it registers, and the index learns them.
    #[tokio::test]
    async fn registering_a_machine_the_index_has_not_seen_keeps_its_facts() {
        let state = state().await;
        let mut imported = Machine::named("pc-g");
        imported.site = Some("LAB".into());
        state.store.upsert_machines(&[imported], 1).await.unwrap();
        let (alone, alone_answer) = job(Write::Register {
            machine: Machine::named("PC-G"),
            token_hash: "hash-g1".into(),
        });
        commit_group(&state, vec![alone]).await;
        alone_answer.await.unwrap().expect("registered");
        // And in a group, with a machine that is new to both.
        let mut other = Machine::named("pc-h");
        other.site = Some("HQ".into());
        state.store.upsert_machines(&[other], 2).await.unwrap();
        let (a, a_answer) = job(Write::Register {
            machine: Machine::named("pc-h"),
            token_hash: "hash-h".into(),
        });
        let (b, b_answer) = job(Write::Register {
            machine: Machine::named("pc-new"),
            token_hash: "hash-new".into(),
        });
        commit_group(&state, vec![a, b]).await;
        a_answer.await.unwrap().expect("registered");
        b_answer.await.unwrap().expect("registered");

        for (name, site) in [
            ("pc-g", Some("LAB")),
            ("pc-h", Some("HQ")),
            ("pc-new", None),
        ] {
            let (id, stored) = state.store.machine(name).await.unwrap().expect(name);
            assert_eq!(stored.site.as_deref(), site, "{name}");
            assert_eq!(state.index.read().unwrap().id_of(name), Some(id), "{name}");
        }
    }

    /// Writes of every kind in one group land together, and a machine
    /// reported twice in a group ends with its last report.
    #[tokio::test]
    async fn a_group_of_every_kind_is_stored_whole() {
        let state = state().await;
        let mut first = Machine::named("pc-e");
        first.site = Some("LAB".into());
        let mut second = Machine::named("pc-e");
        second.site = Some("HQ".into());
        let (a, a_answer) = job(Write::Inventory { machine: first });
        let (b, b_answer) = job(Write::Inventory { machine: second });
        let (c, c_answer) = job(Write::Register {
            machine: Machine::named("pc-f"),
            token_hash: "hash-f".into(),
        });
        let (d, d_answer) = job(Write::Status {
            messages: vec![message("pc-f", "k1"), message("pc-f", "k1")],
        });
        commit_group(&state, vec![a, b, c, d]).await;
        a_answer.await.unwrap().expect("first report");
        b_answer.await.unwrap().expect("second report");
        c_answer.await.unwrap().expect("registration");
        assert_eq!(
            d_answer.await.unwrap().expect("status"),
            1,
            "a repeated key once"
        );
        let (_, stored) = state.store.machine("pc-e").await.unwrap().expect("pc-e");
        assert_eq!(stored.site.as_deref(), Some("HQ"));
        let version = state.store.inventory_version().await.unwrap();
        assert_eq!(*state.known_inventory.lock().unwrap(), Some(version));
    }
}
