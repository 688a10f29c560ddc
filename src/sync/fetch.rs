//! The I/O edge of the sync host: one catalog downloaded over HTTP/1.1
//! (plain or TLS; `https://` goes through the proxy in a CONNECT tunnel),
//! through the configured proxy, conditionally, with timeouts, retries with
//! exponential backoff and jitter, a size limit, and its SHA-256 computed
//! while it streams in. TLS trusts the system's roots, or only the CA file
//! of [`FetchOptions::ca_file`] (`crate::tls`).
//!
//! The proxy password is sent only in the `Proxy-Authorization` header
//! (marked sensitive, never put into a URL), and every message this module
//! makes passes through a scrubber that replaces the password and the
//! header's value with `***`.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::SyncError;
use crate::secret::Secret;

/// The proxy between the sync host and the catalogs: unauthenticated with
/// `url` alone, authenticated with `username` and `password`.
pub struct ProxyConfig {
    /// `http://host:port`, without credentials.
    pub url: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

impl fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Timeouts, retries and limits of a [`Fetcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// How long connecting (to the proxy or the server) may take.
    pub connect_timeout: Duration,
    /// How long one attempt may take in all, body included.
    pub timeout: Duration,
    /// Attempts in all (at least 1): connection errors, time-outs, broken
    /// transfers and 5xx answers are tried again.
    pub attempts: u32,
    /// The delay before the second attempt; it doubles with each further
    /// attempt, up to `max_delay`, and is jittered down by up to half.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Bodies larger than this are refused (checked on the way).
    pub max_bytes: u64,
    /// For `https://`: trust only the CA certificates of this PEM file
    /// instead of the system's (a private CA); None: the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(300),
            attempts: 4,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
            max_bytes: 256 * 1024 * 1024,
            ca_file: None,
        }
    }
}

/// What the previous download left: sent as `If-None-Match` and
/// `If-Modified-Since`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditional {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// The answer to one (conditional) GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// 304: the previous version is current.
    NotModified,
    /// 200: the whole body, its SHA-256 (lowercase hex) and validators.
    New {
        bytes: Vec<u8>,
        sha256: String,
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

/// How the fetcher waits between attempts (injectable so that tests do not
/// wait, or record the delays).
pub type Sleep = Arc<dyn Fn(Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Downloads catalogs. Build one per run with [`Fetcher::new`].
pub struct Fetcher {
    client: reqwest::Client,
    options: FetchOptions,
    /// The proxy's URL and user, for messages (never the password).
    proxy: Option<(String, Option<String>)>,
    /// Texts that must never appear in a message.
    secrets: Vec<String>,
    sleep: Sleep,
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher")
            .field("options", &self.options)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    /// A fetcher through `proxy` (None: a direct connection; the
    /// environment's proxy variables are ignored either way).
    pub fn new(proxy: Option<ProxyConfig>, options: FetchOptions) -> Result<Fetcher, SyncError> {
        let tls = crate::tls::client_builder(options.ca_file.as_deref()).map_err(|e| {
            SyncError::Client {
                reason: e.to_string(),
            }
        })?;
        let mut builder = tls
            .http1_only()
            .connect_timeout(options.connect_timeout)
            .timeout(options.timeout)
            // Catalogs move to CDNs; no request carries credentials
            // (`fetch` refuses URLs with them; the proxy's go to the proxy).
            .redirect(crate::tls::content_redirects(5))
            .user_agent(concat!("patchops/", env!("CARGO_PKG_VERSION")))
            .no_proxy();
        let mut secrets = Vec::new();
        let mut shown = None;
        if let Some(p) = proxy {
            let proxy_url = reqwest::Url::parse(&p.url).map_err(|e| SyncError::BadProxy {
                url: p.url.clone(),
                reason: e.to_string(),
            })?;
            if !proxy_url.username().is_empty() || proxy_url.password().is_some() {
                return Err(SyncError::BadProxy {
                    url: format!(
                        "{}://***@{}",
                        proxy_url.scheme(),
                        proxy_url.host_str().unwrap_or("")
                    ),
                    reason: "credentials belong in `username` and `passwordFrom`, not the URL"
                        .into(),
                });
            }
            if proxy_url.scheme() != "http" {
                return Err(SyncError::BadProxy {
                    url: p.url.clone(),
                    reason: "only http:// proxies are supported".into(),
                });
            }
            let target = proxy_url.clone();
            // Plain HTTP is forwarded; HTTPS goes through a CONNECT tunnel
            // (the same credentials); `file://` never reaches the client.
            let mut rp = reqwest::Proxy::custom(move |url| {
                matches!(url.scheme(), "http" | "https").then(|| target.clone())
            });
            match (&p.username, &p.password) {
                (Some(user), Some(password)) => {
                    let password = std::str::from_utf8(password.expose()).map_err(|_| {
                        SyncError::ProxySecret("the proxy password is not valid UTF-8".into())
                    })?;
                    let token = base64(format!("{user}:{password}").as_bytes());
                    let mut value =
                        reqwest::header::HeaderValue::from_str(&format!("Basic {token}"))
                            .map_err(|_| {
                                SyncError::ProxySecret(
                                    "the proxy user name or password holds characters a header cannot carry"
                                        .into(),
                                )
                            })?;
                    value.set_sensitive(true);
                    rp = rp.custom_http_auth(value);
                    secrets.push(password.to_string());
                    secrets.push(token);
                }
                (Some(_), None) => {
                    return Err(SyncError::ProxySecret(
                        "the proxy has a user name but no password".into(),
                    ))
                }
                (None, Some(_)) => {
                    return Err(SyncError::ProxySecret(
                        "the proxy has a password but no user name".into(),
                    ))
                }
                (None, None) => {}
            }
            builder = builder.proxy(rp);
            shown = Some((p.url.clone(), p.username.clone()));
        }
        // Longest first, so that a secret inside another is replaced whole.
        secrets.retain(|s| !s.is_empty());
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let client = builder.build().map_err(|e| SyncError::Client {
            reason: crate::secret::scrub(error_chain(&e), &secrets),
        })?;
        Ok(Fetcher {
            client,
            options,
            proxy: shown,
            secrets,
            sleep: Arc::new(|d| Box::pin(tokio::time::sleep(d))),
        })
    }

    /// Replaces how the fetcher waits between attempts.
    pub fn with_sleep(mut self, sleep: Sleep) -> Fetcher {
        self.sleep = sleep;
        self
    }

    pub fn options(&self) -> &FetchOptions {
        &self.options
    }

    /// Replaces every secret in `text` with `***`.
    pub fn scrub(&self, text: String) -> String {
        crate::secret::scrub(text, &self.secrets)
    }

    /// GETs `url` (conditionally when `previous` has validators), trying
    /// again after transient failures; after the last attempt the error is
    /// [`SyncError::GaveUp`] naming the attempts and the last failure.
    /// `file://` URLs are read from disk (never "not modified").
    pub async fn fetch(&self, url: &str, previous: &Conditional) -> Result<Fetched, SyncError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| SyncError::BadUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        if crate::tls::has_credentials(&parsed) {
            // Not repeated: the URL holds a secret.
            return Err(SyncError::BadUrl {
                url: "(a URL with credentials)".to_string(),
                reason: "credentials in a URL are refused: they would follow redirects".into(),
            });
        }
        match parsed.scheme() {
            "http" | "https" => {}
            "file" => return self.read_file(url, &parsed),
            other => {
                return Err(SyncError::BadUrl {
                    url: url.to_string(),
                    reason: format!("unsupported scheme `{other}`"),
                })
            }
        }
        let attempts = self.options.attempts.max(1);
        let mut attempt = 1;
        loop {
            match self.attempt(url, previous).await {
                Ok(fetched) => return Ok(fetched),
                Err(e) if !e.is_transient() => return Err(e),
                Err(e) if attempt >= attempts => {
                    return Err(if attempts == 1 {
                        e
                    } else {
                        SyncError::GaveUp {
                            url: url.to_string(),
                            attempts,
                            last: Box::new(e),
                        }
                    })
                }
                Err(_) => {
                    let delay = backoff_delay(
                        attempt,
                        self.options.base_delay,
                        self.options.max_delay,
                        random_fraction(),
                    );
                    (self.sleep)(delay).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn attempt(&self, url: &str, previous: &Conditional) -> Result<Fetched, SyncError> {
        use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
        let mut request = self.client.get(url);
        if let Some(etag) = &previous.etag {
            request = request.header(IF_NONE_MATCH, etag.as_str());
        }
        if let Some(lm) = &previous.last_modified {
            request = request.header(IF_MODIFIED_SINCE, lm.as_str());
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| self.request_error(url, &e))?;
        let status = response.status().as_u16();
        match status {
            200 => {}
            304 => return Ok(Fetched::NotModified),
            407 => {
                let (proxy, user) = self.proxy.clone().unwrap_or_default();
                return Err(SyncError::ProxyAuth { proxy, user });
            }
            _ => {
                return Err(SyncError::Status {
                    url: url.to_string(),
                    status,
                })
            }
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header(ETAG);
        let last_modified = header(LAST_MODIFIED);
        let limit = self.options.max_bytes;
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(SyncError::TooLarge {
                url: url.to_string(),
                limit,
            });
        }
        let mut hasher = Sha256::new();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.request_error(url, &e))?
        {
            if bytes.len() as u64 + chunk.len() as u64 > limit {
                return Err(SyncError::TooLarge {
                    url: url.to_string(),
                    limit,
                });
            }
            hasher.update(&chunk);
            bytes.extend_from_slice(&chunk);
        }
        Ok(Fetched::New {
            sha256: hex::encode(hasher.finalize()),
            bytes,
            etag,
            last_modified,
        })
    }

    fn read_file(&self, url: &str, parsed: &reqwest::Url) -> Result<Fetched, SyncError> {
        use std::io::Read;
        let fail = |reason: String| SyncError::File {
            url: url.to_string(),
            reason,
        };
        let path = parsed
            .to_file_path()
            .map_err(|_| fail("not a local file path".into()))?;
        let file = std::fs::File::open(&path).map_err(|e| fail(e.kind().to_string()))?;
        let limit = self.options.max_bytes;
        let mut bytes = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| fail(e.kind().to_string()))?;
        if bytes.len() as u64 > limit {
            return Err(SyncError::TooLarge {
                url: url.to_string(),
                limit,
            });
        }
        Ok(Fetched::New {
            sha256: hex::encode(Sha256::digest(&bytes)),
            bytes,
            etag: None,
            last_modified: None,
        })
    }

    /// A transport error, classified, its text scrubbed.
    fn request_error(&self, url: &str, e: &reqwest::Error) -> SyncError {
        let url = url.to_string();
        let through = match &self.proxy {
            Some((proxy, _)) => format!(" (through the proxy {proxy})"),
            None => String::new(),
        };
        if e.is_timeout() {
            return SyncError::Timeout {
                url,
                secs: self.options.timeout.as_secs_f64(),
            };
        }
        if let Some(problem) = crate::tls::certificate_problem(e) {
            return SyncError::Certificate {
                untrusted: problem == crate::tls::CertificateProblem::Untrusted,
                ca_file: self
                    .options
                    .ca_file
                    .as_ref()
                    .map(|p| p.display().to_string()),
                reason: self.scrub(problem.to_string()),
                url,
            };
        }
        let chain = error_chain(e);
        // The CONNECT tunnel of an https:// download (hyper's messages).
        if chain.contains("proxy authorization required") {
            let (proxy, user) = self.proxy.clone().unwrap_or_default();
            return SyncError::ProxyAuth { proxy, user };
        }
        if chain.contains("tunnel error: unsuccessful") {
            let (proxy, _) = self.proxy.clone().unwrap_or_default();
            return SyncError::Tunnel { url, proxy };
        }
        let reason = self.scrub(io_reason(e).unwrap_or(chain));
        if e.is_connect() {
            SyncError::Connect {
                url,
                reason: format!("{reason}{through}"),
            }
        } else {
            SyncError::Transfer {
                url,
                reason: format!("{reason}{through}"),
            }
        }
    }
}

/// The delay before attempt `attempt + 1`: `base × 2^(attempt-1)`, at most
/// `max`, then jittered into its upper half by `fraction` (0..1).
pub fn backoff_delay(attempt: u32, base: Duration, max: Duration, fraction: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let full = base.saturating_mul(1u32 << exp).min(max);
    let fraction = fraction.clamp(0.0, 1.0);
    full / 2 + full.mul_f64(fraction / 2.0)
}

/// A number in [0, 1) that differs between calls (std's random hash keys;
/// good enough to spread retries, not for cryptography).
fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The error and its sources, joined by `: `.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// A short reason when an I/O error is at the bottom of the chain.
fn io_reason(e: &reqwest::Error) -> Option<String> {
    use std::io::ErrorKind as K;
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(match io.kind() {
                K::ConnectionRefused => "connection refused".into(),
                K::ConnectionReset => "connection reset".into(),
                K::ConnectionAborted => "connection aborted".into(),
                K::TimedOut => "timed out".into(),
                K::UnexpectedEof => "the connection closed early".into(),
                _ => io.to_string(),
            });
        }
        source = s.source();
    }
    None
}

/// Standard base64 with padding (RFC 4648), for the Basic credentials.
pub(crate) fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(10);
        assert_eq!(backoff_delay(1, base, max, 1.0), Duration::from_secs(1));
        assert_eq!(backoff_delay(2, base, max, 1.0), Duration::from_secs(2));
        assert_eq!(backoff_delay(3, base, max, 0.0), Duration::from_secs(2));
        assert_eq!(backoff_delay(5, base, max, 1.0), max);
        assert_eq!(
            backoff_delay(60, base, max, 0.5),
            Duration::from_millis(7500)
        );
        let f = random_fraction();
        assert!((0.0..1.0).contains(&f));
    }
}
