//! The agents' HTTP API and the probes. Every request body is read as
//! bytes under a size limit and parsed here, so that each refusal carries a
//! message that says what was wrong; nothing is written unless the whole
//! request is valid.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};

use super::http_error::{bearer_of, ApiError, ErrorBody};
use super::tokens::{new_token, token_hash};
use super::writes::Write;
use super::{now_ms, AppState};
use crate::inventory::{machine_key, validate_machine, Machine};
use crate::records::{AssignmentState, StatusMessage};
use crate::secret::constant_time_eq;

pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.max_body;
    routes()
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            super::refusals::refuse_oversized,
        ))
        .layer(middleware::map_response(super::refusals::json_errors))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Every route the server serves; each is in the OpenAPI document
/// (`openapi`), which a test checks against this list.
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/register", post(register))
        .route("/v1/policy", get(policy))
        .route("/v1/inventory", post(inventory))
        .route("/v1/status", post(status))
        .route("/v1/patch-states", post(patch_states))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(super::openapi::serve))
        .merge(super::admin::routes())
}

/// Counts and times every request by its route (never by its raw path,
/// which a caller controls).
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route: &'static str = match request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str())
    {
        Some("/v1/register") => "/v1/register",
        Some("/v1/policy") => "/v1/policy",
        Some("/v1/inventory") => "/v1/inventory",
        Some("/v1/status") => "/v1/status",
        Some("/v1/patch-states") => "/v1/patch-states",
        Some("/healthz") => "/healthz",
        Some("/metrics") => "/metrics",
        Some("/openapi.json") => "/openapi.json",
        Some(p) if p.starts_with("/v1/admin") => "/v1/admin",
        _ => "other",
    };
    let method = request.method().clone();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state.metrics.request(route, status, elapsed);
    tracing::debug!(%method, route, status, micros = elapsed.as_micros() as u64, "request");
    response
}

/// The machine a request's token belongs to.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let token = bearer_of(headers)?;
    let hash = token_hash(token);
    if let Some(machine) = state.tokens.get(&hash) {
        return Ok(machine);
    }
    match state.store.machine_for_token(&hash).await? {
        Some(machine) => {
            state.tokens.put(hash, machine.clone());
            Ok(machine)
        }
        None => Err(ApiError::unauthorized(
            "unknown or revoked token: register again",
        )),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid {what}: {e}")))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"name": "wks-hq-001"})))]
struct RegisterRequest {
    name: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct RegisterResponse {
    machine: String,
    token: String,
}

/// Enrollment: the site's enrollment secret and a machine name buy a
/// token for that machine. A machine with a live token is not enrolled
/// again (409) until an operator revokes that token
/// (`patchops machine revoke`): the secret alone never takes over an
/// enrolled machine's identity.
#[utoipa::path(post, path = "/v1/register", tag = "agents",
    security(("enrollmentSecret" = [])),
    request_body = RegisterRequest,
    responses(
        (status = 200, description = "Registered: the machine's token, shown once", body = RegisterResponse),
        (status = 400, description = "Invalid body or machine name", body = ErrorBody),
        (status = 401, description = "Missing or wrong enrollment secret", body = ErrorBody),
        (status = 409, description = "The machine is enrolled already: revoke its token first", body = ErrorBody),
        (status = 413, description = "Body larger than `--max-body`", body = ErrorBody),
        (status = 503, description = "The state store is unavailable", body = ErrorBody),
    ))]
async fn register(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let secret = bearer_of(&headers)?;
    if !constant_time_eq(secret.as_bytes(), state.enroll_secret.expose()) {
        return Err(ApiError::unauthorized("wrong enrollment secret"));
    }
    let request: RegisterRequest = parse_json(&body, "registration")?;
    let machine = Machine::named(request.name.trim());
    if let Err(problems) = validate_machine(&machine) {
        return Err(ApiError::bad_request(problems_text(&problems)));
    }
    let token = new_token();
    state
        .writes
        .commit(Write::Register {
            machine: machine.clone(),
            token_hash: token_hash(&token),
        })
        .await?;
    state.metrics.registrations.fetch_add(1, Ordering::Relaxed);
    tracing::info!(machine = %machine.key(), "registered");
    Ok(axum::Json(RegisterResponse {
        machine: machine.name,
        token,
    })
    .into_response())
}

/// The caller's own policy. `If-None-Match` with the current ETag → 304.
#[utoipa::path(get, path = "/v1/policy", tag = "agents",
    security(("agentToken" = [])),
    params(("If-None-Match" = Option<String>, Header, description = "ETags the agent holds; `*` matches any")),
    responses(
        (status = 200, description = "The machine's policy", body = crate::policy::MachinePolicy,
            headers(("ETag" = String, description = "`sha256:` of the body"))),
        (status = 304, description = "Unchanged since the ETag given",
            headers(("ETag" = String, description = "The current ETag"))),
        (status = 401, description = "Missing, unknown or revoked token", body = ErrorBody),
        (status = 404, description = "No policy for this machine yet: send inventory first", body = ErrorBody),
        (status = 503, description = "The state store is unavailable", body = ErrorBody),
    ))]
async fn policy(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let machine = authenticate(&state, &headers).await?;
    let Ok(index) = state.index.read() else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the site index is unavailable",
        ));
    };
    let Some(served) = index.policy_of(&machine) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no policy for {machine} yet: send inventory first"),
        ));
    };
    let etag = HeaderValue::from_str(&served.etag)
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "bad ETag"))?;
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == served.etag || t.trim() == "*")
        });
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let body = index.body_of(&machine).unwrap_or_default();
    drop(index);
    Ok((
        StatusCode::OK,
        [
            (header::ETAG, etag),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
        ],
        Body::from(body),
    )
        .into_response())
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct InventoryResponse {
    machine: String,
    policy_version: Option<u64>,
}

/// A machine reports its own inventory.
#[utoipa::path(post, path = "/v1/inventory", tag = "agents",
    security(("agentToken" = [])),
    request_body = Machine,
    responses(
        (status = 200, description = "Stored; the machine's policy version", body = InventoryResponse),
        (status = 400, description = "Invalid inventory", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked token", body = ErrorBody),
        (status = 403, description = "The inventory of another machine", body = ErrorBody),
        (status = 413, description = "Body larger than `--max-body`", body = ErrorBody),
        (status = 503, description = "The state store is unavailable", body = ErrorBody),
    ))]
async fn inventory(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authenticate(&state, &headers).await?;
    let mut machine: Machine = parse_json(&body, "inventory")?;
    if let Err(problems) = validate_machine(&machine) {
        return Err(ApiError::bad_request(problems_text(&problems)));
    }
    if machine_key(&machine.name) != caller {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this token belongs to {caller}; it cannot report inventory for another machine"
            ),
        ));
    }
    machine.last_heartbeat = Some(jiff::Timestamp::now());
    state.writes.commit(Write::Inventory { machine }).await?;
    let version = state
        .index
        .read()
        .ok()
        .and_then(|i| i.policy_of(&caller).map(|p| p.version));
    Ok(axum::Json(InventoryResponse {
        machine: caller,
        policy_version: version,
    })
    .into_response())
}

/// What an agent reports about one assignment.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StatusReport {
    /// Unique per message: a message sent twice is stored once.
    key: String,
    advertisement: String,
    state: String,
    #[serde(default)]
    exit_code: Option<i32>,
    #[serde(default)]
    message: String,
    /// When it happened on the machine (RFC 3339).
    at: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"messages": [{
    "key": "wks-hq-001/MS Security Updates/2026-11-24T02:00:00Z/succeeded",
    "advertisement": "MS Security Updates",
    "state": "succeeded",
    "exitCode": 0,
    "message": "installed 3 updates",
    "at": "2026-11-24T02:14:09Z"
}]})))]
struct StatusBatch {
    messages: Vec<StatusReport>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct StatusResponse {
    accepted: usize,
    duplicates: usize,
}

const MAX_STATUS_BATCH: usize = 1000;

/// A machine reports status messages; the batch is stored whole or not at
/// all, and messages seen before (by key) are counted as duplicates.
#[utoipa::path(post, path = "/v1/status", tag = "agents",
    security(("agentToken" = [])),
    request_body = StatusBatch,
    responses(
        (status = 200, description = "Stored (new) and duplicate messages", body = StatusResponse),
        (status = 400, description = "An invalid message; none was stored", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked token", body = ErrorBody),
        (status = 413, description = "Body larger than `--max-body`", body = ErrorBody),
        (status = 503, description = "The state store is unavailable", body = ErrorBody),
    ))]
async fn status(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authenticate(&state, &headers).await?;
    let batch: StatusBatch = parse_json(&body, "status batch")?;
    if batch.messages.len() > MAX_STATUS_BATCH {
        return Err(ApiError::bad_request(format!(
            "a batch holds at most {MAX_STATUS_BATCH} messages, this one {}",
            batch.messages.len()
        )));
    }
    let received = now_ms();
    let mut messages = Vec::with_capacity(batch.messages.len());
    for (i, report) in batch.messages.into_iter().enumerate() {
        let (at, state) = check_status(&report)
            .map_err(|e| ApiError::bad_request(format!("messages[{i}]: {e}")))?;
        messages.push(StatusMessage {
            key: report.key,
            machine_key: caller.clone(),
            advertisement: report.advertisement,
            state,
            exit_code: report.exit_code,
            message: report.message,
            at_ms: at,
            received_ms: received,
        });
    }
    let sent = messages.len();
    let inserted = state.writes.commit(Write::Status { messages }).await?;
    let duplicates = sent - inserted;
    state
        .metrics
        .status_messages
        .fetch_add(inserted as u64, Ordering::Relaxed);
    state
        .metrics
        .status_duplicates
        .fetch_add(duplicates as u64, Ordering::Relaxed);
    Ok(axum::Json(StatusResponse {
        accepted: inserted,
        duplicates,
    })
    .into_response())
}

#[derive(Serialize, utoipa::ToSchema)]
struct PatchStatesResponse {
    machine: String,
    stored: usize,
}

/// A machine reports its patch states from one scan: they replace its
/// previous states of the same scan agent, whole or not at all.
#[utoipa::path(post, path = "/v1/patch-states", tag = "agents",
    security(("agentToken" = [])),
    request_body = crate::applicability::report::PatchStateReport,
    responses(
        (status = 200, description = "The states stored", body = PatchStatesResponse),
        (status = 400, description = "An invalid report; nothing was stored", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked token", body = ErrorBody),
        (status = 403, description = "The report of another machine", body = ErrorBody),
        (status = 413, description = "Body larger than `--max-body`", body = ErrorBody),
        (status = 503, description = "The state store is unavailable", body = ErrorBody),
    ))]
async fn patch_states(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authenticate(&state, &headers).await?;
    let report: crate::applicability::report::PatchStateReport =
        parse_json(&body, "patch-state report")?;
    let scan_time = report.check().map_err(ApiError::bad_request)?;
    if machine_key(&report.machine) != caller {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this token belongs to {caller}; it cannot report patch states for another machine"
            ),
        ));
    }
    let rows = report.rows(&caller, scan_time);
    let stored = {
        let _writer = state.index.writer().await;
        state
            .store
            .replace_scan_states(std::slice::from_ref(&caller), &report.scan_agent, &rows)
            .await?
    };
    state
        .metrics
        .patch_state_reports
        .fetch_add(1, Ordering::Relaxed);
    state
        .metrics
        .patch_states
        .fetch_add(stored as u64, Ordering::Relaxed);
    tracing::info!(machine = %caller, scan_agent = %report.scan_agent, stored, "patch states");
    Ok(axum::Json(PatchStatesResponse {
        machine: caller,
        stored,
    })
    .into_response())
}

/// Checks one status report; returns its time in ms since the epoch.
fn check_status(report: &StatusReport) -> Result<(i64, AssignmentState), String> {
    if report.key.is_empty() || report.key.len() > 128 {
        return Err("`key` must be 1 to 128 characters".into());
    }
    if let Some(c) = report.key.chars().find(|c| c.is_control()) {
        return Err(format!(
            "`key` must not contain control characters (it contains {:?})",
            c
        ));
    }
    if report.advertisement.is_empty() || report.advertisement.len() > 256 {
        return Err("`advertisement` must be 1 to 256 characters".into());
    }
    if let Some(c) = report.advertisement.chars().find(|c| c.is_control()) {
        return Err(format!(
            "`advertisement` must not contain control characters (it contains {:?})",
            c
        ));
    }
    let Ok(state) = report.state.parse::<AssignmentState>() else {
        return Err(format!(
            "`state` must be one of {}, not {:?}",
            AssignmentState::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            crate::excerpt::of(&report.state)
        ));
    };
    if report.message.len() > 4096 {
        return Err("`message` is longer than 4096 bytes".into());
    }
    // Messages are program output: free text, control characters and all
    // (every printer escapes them) — except NUL, which no store can hold.
    if report.message.contains('\0') {
        return Err("`message` must not contain NUL (U+0000)".into());
    }
    let at: jiff::Timestamp = report.at.parse().map_err(|_| {
        format!(
            "`at` must be an RFC 3339 time, not {:?}",
            crate::excerpt::of(&report.at)
        )
    })?;
    Ok((at.as_millisecond(), state))
}

fn problems_text(problems: &[crate::inventory::FieldProblem]) -> String {
    problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    status: &'static str,
    store: &'static str,
    serial: i64,
    machines: usize,
    /// With `--manifests`: whether this server leads the reconcile.
    #[serde(skip_serializing_if = "Option::is_none")]
    leader: Option<bool>,
    /// With `--manifests`: the last reconcile's outcome. An error there
    /// (invalid manifests, a failed apply) does not make the server
    /// unhealthy: agents are still served the last applied state.
    #[serde(skip_serializing_if = "Option::is_none")]
    reconcile: Option<super::reconcile::Health>,
}

/// 200 when the store answers and takes writes; 503 while it does not.
#[utoipa::path(get, path = "/healthz", tag = "probes",
    responses(
        (status = 200, description = "The store answers and takes writes", body = Health),
        (status = 503, description = "The store does not answer or refuses writes", body = Health),
    ))]
async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let up = state.store.ping().await.is_ok() && !state.writes_failing.load(Ordering::Relaxed);
    state.store_up.store(up, Ordering::Relaxed);
    let (serial, machines) = state
        .index
        .read()
        .map(|i| (i.serial, i.machines()))
        .unwrap_or_default();
    let health = Health {
        status: if up { "ok" } else { "unavailable" },
        store: if up { "up" } else { "down" },
        serial,
        machines,
        leader: state
            .reconcile
            .as_ref()
            .map(|r| r.leader.load(Ordering::Relaxed)),
        reconcile: state.reconcile.as_ref().map(|r| r.health()),
    };
    let code = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(health)).into_response()
}

/// The server's metrics, in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "probes",
    responses((status = 200, description = "Prometheus text format", body = String,
        content_type = "text/plain; version=0.0.4")))]
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let gauges = state
        .index
        .read()
        .map(|i| super::metrics::Gauges {
            machines: i.machines(),
            policies: i.policies(),
            collections: i.collections(),
            serial: i.serial,
            store_up: state.store_up.load(Ordering::Relaxed),
            reconcile: state
                .reconcile
                .as_ref()
                .map(|r| super::metrics::ReconcileGauges {
                    counts: r.counts(),
                    last_success_ms: r.last_success_ms.load(Ordering::Relaxed),
                    leader: r.leader.load(Ordering::Relaxed),
                }),
        })
        .ok();
    let Some(gauges) = gauges else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.metrics.render(&gauges),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of a schema of the OpenAPI document.
    fn examples(schema: &str) -> Vec<serde_json::Value> {
        let doc = serde_json::to_value(super::super::openapi::document()).expect("document");
        let examples = doc["components"]["schemas"][schema]["examples"]
            .as_array()
            .unwrap_or_else(|| panic!("{schema} has no examples"))
            .clone();
        assert!(!examples.is_empty(), "{schema}");
        examples
    }

    /// Each request body's example in the document is one the server
    /// accepts: the contract test sends them and expects them stored.
    #[test]
    fn the_documented_request_examples_are_valid_requests() {
        for example in examples("RegisterRequest") {
            let request: RegisterRequest = serde_json::from_value(example).expect("register");
            validate_machine(&Machine::named(request.name.trim())).expect("a valid name");
        }
        for example in examples("Machine") {
            let machine: Machine = serde_json::from_value(example).expect("inventory");
            validate_machine(&machine).expect("a valid inventory");
        }
        for example in examples("StatusBatch") {
            let batch: StatusBatch = serde_json::from_value(example).expect("status batch");
            assert!(!batch.messages.is_empty());
            for report in &batch.messages {
                check_status(report).expect("a valid status message");
            }
        }
        for example in examples("PatchStateReport") {
            let report: crate::applicability::report::PatchStateReport =
                serde_json::from_value(example).expect("patch-state report");
            report.check().expect("a valid report");
        }
        for example in examples("Call") {
            serde_json::from_value::<crate::remote::Call>(example).expect("an admin call");
        }
    }

    /// The examples speak of one machine, so that one agent's token gets
    /// each of them accepted.
    #[test]
    fn the_documented_examples_are_of_one_machine() {
        let name = examples("RegisterRequest")[0]["name"].clone();
        assert_eq!(examples("Machine")[0]["name"], name);
        assert_eq!(examples("PatchStateReport")[0]["machine"], name);
    }
}
