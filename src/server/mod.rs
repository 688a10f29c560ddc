//! `patchops server`: the site server's HTTP API. Agents register, send
//! inventory and status, and fetch their own policy; CI plans and applies
//! through the admin API as it would against a local store.
//!
//! The store is the truth. The server keeps a [`site::SiteIndex`] in
//! memory — memberships and every machine's rendered policy — so that the
//! hot path (an agent polling an unchanged policy) is a token check and a
//! hash comparison, without a database round trip.

mod admin;
mod api;
mod http_error;
mod index_lock;
pub mod metrics;
mod openapi;
pub mod reconcile;
mod refusals;
pub mod schedules;
mod site;
mod tokens;
pub mod validation;
mod writes;

use index_lock::IndexLock;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::plan::applied_site;
use crate::secret::Secret;
use crate::store::{Store, StoreError};

pub use api::router;
pub use site::SiteIndex;

/// How the server runs.
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Agents present it to register.
    pub enroll_secret: Secret,
    /// CI presents it to the admin API; none: the admin API is off.
    pub admin_token: Option<Secret>,
    /// Largest request body accepted (inventory, status).
    pub max_body: usize,
    /// How often the server checks the store for a new applied state and
    /// for its own health.
    pub refresh: Duration,
    /// How long a checked agent token is trusted before it is checked in
    /// the store again (so a revocation takes effect within this time).
    pub token_cache_ttl: Duration,
    /// Timeouts, the connection cap and the shutdown deadline.
    pub connections: crate::http_server::ConnectionLimits,
    /// `--manifests DIR`: reconcile continuously (when this server leads).
    pub reconcile: Option<reconcile::ReconcileConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Site(String),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("{0}")]
    Io(String),
}

/// Everything the handlers share.
pub struct AppState {
    pub store: Store,
    /// The index, changed only through its writer guard (`index_lock`).
    pub index: IndexLock,
    pub enroll_secret: Secret,
    pub admin_token: Option<Secret>,
    pub tokens: tokens::TokenCache,
    pub metrics: metrics::Metrics,
    pub store_up: AtomicBool,
    /// The last write failed for the store's sake (a full disk, lost
    /// connection): the store is down for health until a write succeeds.
    pub writes_failing: AtomicBool,
    pub max_body: usize,
    /// The store's inventory version after this server's own last write:
    /// a different one means someone else changed the inventory.
    pub known_inventory: std::sync::Mutex<Option<i64>>,
    /// The reconciler's leadership and last outcome (with `--manifests`).
    pub reconcile: Option<Arc<reconcile::Status>>,
    /// The agents' writes, committed in groups (`writes`).
    pub writes: writes::Writes,
}

/// Loads the applied site, the inventory and the stored policies, and
/// builds the index; persists the policies that changed.
pub async fn load_index(store: &Store) -> Result<(SiteIndex, usize), ServerError> {
    let info = store.info().await?;
    let objects = store.objects().await?;
    let applied = applied_site(&objects).map_err(|e| ServerError::Site(e.to_string()))?;
    let machines = store.machines().await?;
    let stored = store.policies().await?;
    let (index, changed) = tokio::task::spawn_blocking(move || {
        SiteIndex::build(&applied, info.serial, machines, stored)
    })
    .await
    .map_err(|e| ServerError::Site(e.to_string()))?
    .map_err(|e| ServerError::Site(e.to_string()))?;
    if !changed.is_empty() {
        store.put_policies(&changed, now_ms()).await?;
    }
    Ok((index, changed.len()))
}

/// Runs the server until `shutdown` completes.
pub async fn serve(
    store: Store,
    config: ServerConfig,
    on_bound: impl FnOnce(SocketAddr) + Send,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (index, changed) = load_index(&store).await?;
    tracing::info!(
        machines = index.machines(),
        policies = index.policies(),
        changed,
        serial = index.serial,
        evaluation_ms = index.last_full_evaluation.as_millis() as u64,
        "site loaded"
    );
    let (writes, queued) = writes::queue();
    let state = Arc::new(AppState {
        store,
        index: IndexLock::new(index),
        enroll_secret: config.enroll_secret,
        admin_token: config.admin_token,
        tokens: tokens::TokenCache::new(config.token_cache_ttl),
        metrics: metrics::Metrics::default(),
        store_up: AtomicBool::new(true),
        writes_failing: AtomicBool::new(false),
        max_body: config.max_body,
        known_inventory: std::sync::Mutex::new(None),
        reconcile: config
            .reconcile
            .as_ref()
            .map(|_| Arc::new(reconcile::Status::default())),
        writes,
    });
    let group_writes = tokio::spawn(writes::run(state.clone(), queued));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| ServerError::Bind {
            addr: config.listen,
            reason: e.to_string(),
        })?;
    let bound = listener
        .local_addr()
        .map_err(|e| ServerError::Io(e.to_string()))?;
    on_bound(bound);
    tracing::info!(%bound, "listening");

    let refresher = tokio::spawn(refresh_loop(state.clone(), config.refresh));
    // The reconciler stops on the same signal, after its step in flight.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let reconciler = match (config.reconcile, &state.reconcile) {
        (Some(cfg), Some(status)) => {
            tracing::info!(
                manifests = %cfg.manifests.display(),
                interval_s = cfg.interval.as_secs_f64(),
                drift = ?cfg.drift,
                git_pull = cfg.git_pull.is_some(),
                "reconciling when this server leads"
            );
            Some(tokio::spawn(reconcile::run(
                state.clone(),
                status.clone(),
                cfg,
                stop_rx,
            )))
        }
        _ => None,
    };
    let result = crate::http_server::serve(
        listener,
        router(state.clone()),
        config.connections,
        "site",
        shutdown,
    )
    .await
    .map_err(|e| ServerError::Io(e.to_string()));
    if let Some(reconciler) = reconciler {
        let _ = reconciler.await;
    }
    refresher.abort();
    // Every request has been answered: no write is waiting.
    group_writes.abort();
    state.store.close().await;
    tracing::info!("stopped");
    result
}

/// Watches the store: its health, and a new applied state (an apply by
/// another process, or through the admin API) or inventory imported
/// directly, which rebuild the index.
async fn refresh_loop(state: Arc<AppState>, every: Duration) {
    use std::sync::atomic::Ordering;
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let initial = state.store.inventory_version().await.ok();
    if let Ok(mut known) = state.known_inventory.lock() {
        *known = initial;
    }
    loop {
        ticker.tick().await;
        let up = state.store.ping().await.is_ok() && !state.writes_failing.load(Ordering::Relaxed);
        let was_up = state.store_up.swap(up, Ordering::Relaxed);
        if up != was_up {
            if up {
                tracing::info!("the state store is reachable again");
            } else {
                tracing::warn!("the state store is unreachable");
            }
        }
        if !up {
            continue;
        }
        let serial = match state.store.info().await {
            Ok(info) => info.serial,
            Err(_) => continue,
        };
        // Read under the writer lock: the server's own inventory writes
        // record their version after their commit, holding it, so a write
        // in between cannot pass for someone else's (and cost a reload).
        let (inventory, known) = {
            let _writer = state.index.writer().await;
            let inventory = state.store.inventory_version().await.ok();
            let known = state.known_inventory.lock().map(|k| *k).unwrap_or(None);
            (inventory, known)
        };
        let current = state.index.read().map(|i| i.serial).unwrap_or(serial);
        if serial != current || inventory != known || !was_up {
            if let Err(e) = rebuild(&state).await {
                tracing::warn!(error = %e, "cannot reload the site; serving the previous one");
            }
        }
        evaluate_scheduled(&state).await;
    }
}

/// Runs the collections' evaluation schedules that are due.
async fn evaluate_scheduled(state: &AppState) {
    let writer = state.index.writer().await;
    let started = std::time::Instant::now();
    let result = writer
        .index()
        .map(|mut index| index.evaluate_due(started))
        .ok();
    let Some((evaluated, changed)) = result else {
        return;
    };
    if evaluated.is_empty() {
        return;
    }
    tracing::info!(
        collections = evaluated.len(),
        policies_changed = changed.len(),
        ms = started.elapsed().as_millis() as u64,
        "scheduled evaluation"
    );
    if !changed.is_empty() {
        state
            .metrics
            .policy_updates
            .fetch_add(changed.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = state.store.put_policies(&changed, now_ms()).await {
            tracing::warn!(error = %e, "cannot store the policies of a scheduled evaluation");
        }
    }
}

/// Rebuilds the index from the store and swaps it in.
pub async fn rebuild(state: &AppState) -> Result<(), ServerError> {
    let writer = state.index.writer().await;
    let started = std::time::Instant::now();
    let inventory = state.store.inventory_version().await?;
    let (index, changed) = load_index(&state.store).await?;
    if let Ok(mut known) = state.known_inventory.lock() {
        *known = Some(inventory);
    }
    state
        .metrics
        .full_evaluation
        .observe(index.last_full_evaluation);
    state
        .metrics
        .policy_updates
        .fetch_add(changed as u64, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        serial = index.serial,
        machines = index.machines(),
        changed,
        ms = started.elapsed().as_millis() as u64,
        "site reloaded"
    );
    if let Ok(mut current) = writer.index() {
        *current = index;
    }
    Ok(())
}

pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
