//! The server's refusals: one error type every handler returns, rendered
//! as a status and a JSON body `{"error": "…"}`, and the bearer credential
//! every authenticated route reads.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;

/// A refusal: a status and a message for the caller.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub(super) fn unauthorized(message: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Unreachable { .. } | StoreError::Backend(_) => {
                tracing::warn!(error = %e, "state store error");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the state store is unavailable; try again later",
                )
            }
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

/// The body of every refusal.
#[derive(Serialize, utoipa::ToSchema)]
// Only what `deny_unknown_fields` says to the schema: no other member.
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// What was wrong, for a person to read.
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The bearer credential of a request.
pub(super) fn bearer_of(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer header"))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    match value.split_once(' ') {
        Some((scheme, credential))
            if scheme.eq_ignore_ascii_case("bearer") && !credential.trim().is_empty() =>
        {
            Ok(credential.trim())
        }
        _ => Err(ApiError::unauthorized(
            "expected Authorization: Bearer <token>",
        )),
    }
}
