//! The admin API: the store operations of plan and apply, for
//! `patchops plan|apply --site URL --token-from REF`, and the reads of
//! `patchops status --site URL`. It needs its own
//! token (`--admin-token-from`); agent tokens and the enrollment secret do
//! not open it. After a change of the applied state the index is rebuilt
//! before the answer, so an apply that returns has changed client policy.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::Serialize;

use super::http_error::{bearer_of, ApiError, ErrorBody};
use super::{now_ms, AppState};
use crate::inventory::validate_machine;
use crate::records::LockRequest;
use crate::remote::{Call, Reply, PATH};
use crate::secret::constant_time_eq;
use crate::store::StoreError;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route(PATH, post(store_call))
}

/// One store operation (`Call`, by its `op`); the answer is the
/// operation's result or the store's error, both with status 200.
#[utoipa::path(post, path = "/v1/admin/store", tag = "admin",
    security(("adminToken" = [])),
    request_body = Call,
    responses(
        (status = 200, description = "The call's result (`ok`) or the store's error (`err`)",
            body = super::openapi::AdminReply),
        (status = 400, description = "Invalid call", body = ErrorBody),
        (status = 401, description = "Missing or malformed Authorization header", body = ErrorBody),
        (status = 403, description = "Wrong admin token", body = ErrorBody),
        (status = 404, description = "The admin API is off", body = ErrorBody),
        (status = 413, description = "Body larger than `--max-body`", body = ErrorBody),
    ))]
async fn store_call(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(admin) = &state.admin_token else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "the admin API is off (start the server with --admin-token-from)",
        ));
    };
    let token = bearer_of(&headers)?;
    if !constant_time_eq(token.as_bytes(), admin.expose()) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "wrong admin token"));
    }
    let call: Call = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid admin call: {e}")))?;
    let store = &state.store;
    let changes_state = matches!(
        call,
        Call::Commit { .. } | Call::SetOwner { .. } | Call::UpsertMachines { .. }
    );
    let response = match call {
        Call::Info => reply(store.info().await),
        Call::Objects => reply(store.objects().await),
        Call::Object { kind, name } => reply(store.object(&kind, &name).await),
        Call::Commit {
            expected_serial,
            site,
            changes,
            record,
        } => {
            let _writer = state.index.writer().await;
            reply(
                store
                    .commit(expected_serial, site.as_deref(), &changes, &record)
                    .await,
            )
        }
        Call::History { limit } => reply(store.history(limit).await),
        Call::SetOwner {
            kind,
            name,
            owner,
            record,
        } => {
            let _writer = state.index.writer().await;
            reply(store.set_owner(&kind, &name, owner, &record).await)
        }
        Call::TryLock { request } => reply(store.try_lock(&LockRequest::from(request)).await),
        Call::TakeOverLock {
            previous_id,
            request,
        } => reply(
            store
                .take_over_lock(&previous_id, &LockRequest::from(request))
                .await,
        ),
        Call::RenewLock { id, lease_ms } => reply(
            store
                .renew_lock(&id, std::time::Duration::from_millis(lease_ms))
                .await,
        ),
        Call::Unlock { id } => reply(store.unlock(&id).await),
        Call::LockHolder => reply(store.lock_holder().await),
        Call::MachineCount => reply(store.machine_count().await),
        Call::Machines => reply(store.machines().await),
        Call::UpsertMachines { machines } => {
            for (i, machine) in machines.iter().enumerate() {
                if let Err(problems) = validate_machine(machine) {
                    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
                    return Err(ApiError::bad_request(format!(
                        "machines[{i}] ({}): {}",
                        machine.name,
                        text.join("; ")
                    )));
                }
            }
            let _writer = state.index.writer().await;
            reply(store.upsert_machines(&machines, now_ms()).await)
        }
        Call::Policy { machine_id } => reply(store.policy(machine_id).await),
        Call::LatestStatus { advertisement } => {
            reply(store.latest_status(advertisement.as_deref()).await)
        }
        Call::StatusForMachine { key, limit } => {
            reply(store.status_for_machine(&key, limit.min(1000)).await)
        }
        Call::PatchStates { machine } => reply(store.patch_states(machine.as_deref()).await),
        Call::ReplacePatchStates {
            machines,
            scan_agent,
            rows,
        } => {
            for (i, row) in rows.iter().enumerate() {
                if let Err(e) = crate::applicability::report::check_stored(row) {
                    return Err(ApiError::bad_request(format!("rows[{i}]: {e}")));
                }
            }
            let _writer = state.index.writer().await;
            let written = match scan_agent.as_deref() {
                Some(agent) => store.replace_scan_states(&machines, agent, &rows).await,
                None => store.replace_patch_states(&machines, &rows).await,
            };
            if written.is_ok() {
                state
                    .metrics
                    .patch_states
                    .fetch_add(rows.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            reply(written)
        }
        Call::RevokeMachine { key } => {
            let revoked = store.revoke_machine_tokens(&key, now_ms()).await;
            state.tokens.forget_machine(&key);
            reply(revoked)
        }
        Call::LeaseHolder { name } => reply(store.lease_holder(&name).await),
        Call::ReconcileStatus => reply(store.reconcile_status().await),
        Call::DpValidations => reply(store.dp_validations().await),
    };
    if changes_state && response.0 {
        if let Err(e) = super::rebuild(&state).await {
            tracing::warn!(error = %e, "the state changed but the site could not be reloaded");
        }
    }
    Ok(response.1)
}

/// The reply and whether the call succeeded.
fn reply<T: Serialize>(result: Result<T, StoreError>) -> (bool, Response) {
    let ok = result.is_ok();
    let body = match result {
        Ok(value) => Reply::Ok(value),
        Err(e) => Reply::Err(e.into()),
    };
    (ok, (StatusCode::OK, axum::Json(body)).into_response())
}
