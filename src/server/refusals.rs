//! Refusals that no handler writes, in the API's one error shape
//! (`{"error": "…"}`, [`ApiError`]): an unknown route (404), a method the
//! route does not take (405), a body over `--max-body` (413, at once from
//! `Content-Length`, before any of the body is read), and the body
//! extractor's own rejections (a body cut short or too slow).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::http_error::ApiError;
use super::AppState;

/// The largest plain-text refusal carried over into the JSON body.
const MAX_REFUSAL_TEXT: usize = 4096;

/// Refuses a request whose `Content-Length` exceeds the body limit before
/// its body is read: a client cannot make the server wait for gigabytes it
/// will refuse anyway.
pub async fn refuse_oversized(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(length) = declared {
        if length > state.max_body as u64 {
            return too_large(state.max_body);
        }
    }
    next.run(request).await
}

fn too_large(limit: usize) -> Response {
    let mut response = ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body is larger than this server's limit of {limit} bytes (--max-body)"
        ),
    )
    .into_response();
    // The unread body is not waited for: the connection ends here.
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

/// Rewrites an error answer that is not JSON (the router's 404 and 405,
/// the body extractor's plain-text rejections) into the API's error body,
/// keeping its status and headers such as `Allow`.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_REFUSAL_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = match status {
        StatusCode::NOT_FOUND if text.is_empty() => "no such route in this API".to_string(),
        // The router adds `Allow` after this layer.
        StatusCode::METHOD_NOT_ALLOWED if text.is_empty() => {
            "this route does not take that method (its Allow header lists those it takes)"
                .to_string()
        }
        _ if text.is_empty() => status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_lowercase(),
        _ => text,
    };
    let json = ApiError::new(status, message).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    let (json_parts, json_body) = json.into_parts();
    for (name, value) in &json_parts.headers {
        parts.headers.insert(name, value.clone());
    }
    Response::from_parts(parts, Body::new(json_body))
}
