//! HTTP to the site server (`docs/server.md`): register, inventory, policy
//! with `If-None-Match`, status. Every request has a timeout and every
//! answer a size limit; a malformed answer is an error that names what was
//! wrong (the caller keeps what it had).

use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;
use serde::Deserialize;

use super::queue::StatusMessage;
use super::state::Token;
use crate::inventory::Machine;
use crate::policy::MachinePolicy;
use crate::secret::Secret;

/// The largest policy accepted.
pub const MAX_POLICY_BYTES: u64 = 16 << 20;
/// The largest other answer accepted (register, inventory, status, errors).
pub const MAX_SMALL_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{what}: the server did not answer within {secs} s")]
    Timeout { what: &'static str, secs: u64 },
    #[error("{what}: cannot reach the server: {reason}")]
    Unreachable { what: &'static str, reason: String },
    #[error("{what}: the server refused the credential (401)")]
    Unauthorized { what: &'static str },
    #[error("{what}: the server answered {status}: {message}")]
    Status {
        what: &'static str,
        status: u16,
        message: String,
    },
    #[error(
        "{what}: the server answered a redirect to {target}; patchops does not follow \
         redirects for the site API (give --server the final URL if it is the site server)"
    )]
    Redirect { what: &'static str, target: String },
    #[error("{what}: the answer is larger than {limit} bytes")]
    TooLarge { what: &'static str, limit: u64 },
    #[error("{what}: malformed answer: {reason}")]
    Malformed { what: &'static str, reason: String },
}

/// A policy as served: the document plus `machine` and `version`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServedPolicy {
    pub machine: String,
    pub version: u64,
    #[serde(flatten)]
    pub policy: MachinePolicy,
}

/// The answer to a policy poll.
#[derive(Debug)]
pub enum PolicyAnswer {
    NotModified,
    New {
        etag: Option<String>,
        /// The document as served, for the state directory.
        raw: serde_json::Value,
        policy: Box<ServedPolicy>,
    },
}

/// Parses a served policy; the error says what is wrong with it.
pub fn parse_policy(bytes: &[u8]) -> Result<(serde_json::Value, ServedPolicy), String> {
    let raw: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let policy: ServedPolicy = serde_json::from_value(raw.clone()).map_err(|e| e.to_string())?;
    if policy.policy.format != crate::policy::POLICY_FORMAT {
        return Err(format!(
            "format {:?}, this agent reads {}",
            policy.policy.format,
            crate::policy::POLICY_FORMAT
        ));
    }
    Ok((raw, policy))
}

/// The site server's client.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    timeout: Duration,
}

#[derive(Deserialize)]
struct Registered {
    token: String,
}

impl Client {
    /// `base` is the server's URL (`http://host:port`); every request
    /// takes at most `timeout`.
    pub fn new(base: &str, timeout: Duration) -> Result<Client, String> {
        Client::with_ca_file(base, timeout, None)
    }

    /// As [`Client::new`]; for an `https://` server, `ca_file` (PEM) holds
    /// the only CA certificates trusted (None: the system's).
    pub fn with_ca_file(
        base: &str,
        timeout: Duration,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Client, String> {
        let base = base.trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&base).map_err(|e| format!("--server {base}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "--server {base}: expected an http:// or https:// URL"
            ));
        }
        let http = crate::tls::client_builder(ca_file)
            .map_err(|e| format!("--ca-file: {e}"))?
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Client {
            base,
            http,
            timeout,
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn error(&self, what: &'static str, e: &reqwest::Error) -> ClientError {
        if e.is_timeout() {
            ClientError::Timeout {
                what,
                secs: self.timeout.as_secs(),
            }
        } else {
            ClientError::Unreachable {
                what,
                reason: reason(e),
            }
        }
    }

    /// Registers `name` with the enrollment secret; returns the token.
    pub async fn register(&self, name: &str, secret: &Secret) -> Result<Token, ClientError> {
        const WHAT: &str = "register";
        let auth = bearer(secret.expose()).ok_or(ClientError::Unauthorized { what: WHAT })?;
        let body = serde_json::json!({ "name": name }).to_string();
        let response = self
            .http
            .post(self.url("/v1/register"))
            .header(AUTHORIZATION, auth)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.error(WHAT, &e))?;
        let bytes = self.success(WHAT, response, MAX_SMALL_BYTES).await?;
        let registered: Registered =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Malformed {
                what: WHAT,
                reason: e.to_string(),
            })?;
        if registered.token.is_empty() {
            return Err(ClientError::Malformed {
                what: WHAT,
                reason: "an empty token".into(),
            });
        }
        Ok(Token::new(registered.token))
    }

    /// Sends the machine's facts.
    pub async fn inventory(&self, token: &Token, machine: &Machine) -> Result<(), ClientError> {
        const WHAT: &str = "inventory";
        let body = serde_json::to_vec(machine).map_err(|e| ClientError::Malformed {
            what: WHAT,
            reason: e.to_string(),
        })?;
        self.post(WHAT, "/v1/inventory", token, body)
            .await
            .map(drop)
    }

    /// Posts one batch of status messages.
    pub async fn status(&self, token: &Token, batch: &[StatusMessage]) -> Result<(), ClientError> {
        const WHAT: &str = "status";
        let body = serde_json::to_vec(&serde_json::json!({ "messages": batch })).map_err(|e| {
            ClientError::Malformed {
                what: WHAT,
                reason: e.to_string(),
            }
        })?;
        self.post(WHAT, "/v1/status", token, body).await.map(drop)
    }

    /// Sends one scan's patch states (they replace the machine's previous
    /// states of that scan agent).
    pub async fn patch_states(&self, token: &Token, report: &[u8]) -> Result<(), ClientError> {
        self.post("patch states", "/v1/patch-states", token, report.to_vec())
            .await
            .map(drop)
    }

    /// Polls the policy; `etag` is the one of the policy held.
    pub async fn policy(
        &self,
        token: &Token,
        etag: Option<&str>,
    ) -> Result<PolicyAnswer, ClientError> {
        const WHAT: &str = "policy";
        let mut request = self
            .http
            .get(self.url("/v1/policy"))
            .header(AUTHORIZATION, auth_header(token)?);
        if let Some(tag) = etag.and_then(|t| HeaderValue::from_str(t).ok()) {
            request = request.header(IF_NONE_MATCH, tag);
        }
        let response = request.send().await.map_err(|e| self.error(WHAT, &e))?;
        refuse_redirect(WHAT, &response)?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return Ok(PolicyAnswer::NotModified);
        }
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = self.success(WHAT, response, MAX_POLICY_BYTES).await?;
        let (raw, policy) =
            parse_policy(&bytes).map_err(|reason| ClientError::Malformed { what: WHAT, reason })?;
        Ok(PolicyAnswer::New {
            etag,
            raw,
            policy: Box::new(policy),
        })
    }

    async fn post(
        &self,
        what: &'static str,
        path: &str,
        token: &Token,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, ClientError> {
        let response = self
            .http
            .post(self.url(path))
            .header(AUTHORIZATION, auth_header(token)?)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.error(what, &e))?;
        self.success(what, response, MAX_SMALL_BYTES).await
    }

    /// The body of a 2xx answer (within `limit`), or the error it means.
    async fn success(
        &self,
        what: &'static str,
        response: reqwest::Response,
        limit: u64,
    ) -> Result<Vec<u8>, ClientError> {
        refuse_redirect(what, &response)?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED {
            return Err(ClientError::Unauthorized { what });
        }
        let ok = status.is_success();
        let bytes = read_limited(response, if ok { limit } else { MAX_SMALL_BYTES })
            .await
            .map_err(|e| match e {
                ReadError::TooLarge => ClientError::TooLarge { what, limit },
                ReadError::Http(e) => self.error(what, &e),
            })?;
        if ok {
            return Ok(bytes);
        }
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| super::queue::truncate(&String::from_utf8_lossy(&bytes), 200));
        Err(ClientError::Status {
            what,
            status: status.as_u16(),
            message,
        })
    }
}

/// A redirect answer is an error: the client follows none (its requests
/// carry the enrollment secret or the token), and says where it pointed.
fn refuse_redirect(what: &'static str, response: &reqwest::Response) -> Result<(), ClientError> {
    match crate::tls::redirect_target(response) {
        Some(target) => Err(ClientError::Redirect { what, target }),
        None => Ok(()),
    }
}

fn bearer(secret: &[u8]) -> Option<HeaderValue> {
    let mut value = b"Bearer ".to_vec();
    value.extend_from_slice(secret);
    let mut header = HeaderValue::from_bytes(&value).ok()?;
    header.set_sensitive(true);
    Some(header)
}

fn auth_header(token: &Token) -> Result<HeaderValue, ClientError> {
    bearer(token.expose().as_bytes()).ok_or(ClientError::Unauthorized { what: "token" })
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum ReadError {
    TooLarge,
    Http(reqwest::Error),
}

/// Reads a body of at most `limit` bytes (refused early by
/// `Content-Length`, and while reading otherwise).
pub async fn read_limited(
    mut response: reqwest::Response,
    limit: u64,
) -> Result<Vec<u8>, ReadError> {
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(ReadError::TooLarge);
    }
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Http)? {
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(ReadError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A request error for people: the innermost cause, never the URL's secrets
/// (there are none in our URLs; tokens travel in headers).
pub fn reason(e: &reqwest::Error) -> String {
    use std::error::Error;
    if e.is_timeout() {
        return "timed out".into();
    }
    if let Some(problem) = crate::tls::certificate_problem(e) {
        let hint = match problem {
            crate::tls::CertificateProblem::Untrusted => {
                "; if a private CA issued it, give its certificate with --ca-file"
            }
            _ => "",
        };
        return format!("{problem}{hint}");
    }
    let mut inner: &dyn Error = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    if e.is_connect() {
        format!("connection failed: {inner}")
    } else {
        inner.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_served_policy_is_read_with_its_machine_and_version() {
        let body = br#"{"machine":"wks-1","version":3,"format":"patchops-policy/v1",
            "client":{"pollingIntervalSeconds":60,"jitterSeconds":5,"heartbeatIntervalSeconds":600},
            "assignments":[],"programs":[],"someFutureField":1}"#;
        let (_, p) = parse_policy(body).unwrap();
        assert_eq!((p.machine.as_str(), p.version), ("wks-1", 3));
        assert!(parse_policy(b"{").is_err());
        assert!(parse_policy(b"{\"machine\":\"x\"}").is_err());
        let other = String::from_utf8_lossy(body).replace("policy/v1", "policy/v9");
        assert!(parse_policy(other.as_bytes()).unwrap_err().contains("v9"));
    }

    #[test]
    fn only_http_servers() {
        assert!(Client::new("ftp://x", Duration::from_secs(1)).is_err());
        assert!(Client::new("not a url", Duration::from_secs(1)).is_err());
        assert!(Client::new("http://127.0.0.1:1/", Duration::from_secs(1)).is_ok());
    }
}
