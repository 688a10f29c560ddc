//! The sync host: fetches each catalog of a `SyncHost` (through its proxy,
//! conditionally), verifies it (a pinned SHA-256 or a detached HMAC-SHA256
//! signature; unverified content is never used), keeps its versions in the
//! store with a readable diff between them, and writes it into the target
//! package's source so that the next plan sees a new content version and
//! redistributes it (as SyncXML did). `docs/sync.md` is the user's guide.
//!
//! - [`fetch`]: the HTTP edge (proxy, HTTP/1.1, conditional GET, timeouts,
//!   retries with backoff, size limit, SHA-256 on the way).
//! - [`verify`]: pure checks of a pin or a signature.
//! - [`sync_once`]: one pass over a sync host's catalogs; every outcome is
//!   recorded in the store's sync status.
//!
//! Catalog content is opaque here: a readable summary of a version comes
//! from the caller's `summarize` function (the catalog parser, one line per
//! bulletin), and the diff between versions is a line diff of summaries.

pub mod fetch;
pub mod verify;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use similar::{ChangeTag, TextDiff};

use crate::manifest::sync_host::{Catalog, CatalogType, SyncHostSpec};
use crate::model::Desired;
use crate::records::{CatalogVersion, SyncAttempt};
use crate::secret::SecretSource;
use crate::store::Store;

pub use fetch::{Conditional, FetchOptions, Fetched, Fetcher, ProxyConfig};
pub use verify::Verification;

/// The first delay after a failed synchronization; it doubles with each
/// further failure, up to the sync host's schedule.
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(5 * 60);

/// The largest detached signature file read.
const MAX_SIGNATURE_BYTES: u64 = 64 * 1024;

/// Everything that can go wrong while synchronizing a catalog. Messages
/// never hold the proxy password, the `Proxy-Authorization` header or a
/// signature key.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum SyncError {
    #[error("bad proxy {url}: {reason}")]
    BadProxy { url: String, reason: String },
    #[error("proxy credentials: {0}")]
    ProxySecret(String),
    #[error("cannot set up the HTTP client: {reason}")]
    Client { reason: String },
    #[error("cannot fetch {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot connect for {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url}: no complete answer within {secs} s")]
    Timeout { url: String, secs: f64 },
    #[error("{url}: the transfer failed: {reason}")]
    Transfer { url: String, reason: String },
    #[error("{url}: the server answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("the proxy {proxy} refused the request: 407 Proxy Authentication Required{}", match user { Some(u) => format!(" (user `{u}`: wrong or expired password?)"), None => " (it needs a user name and password)".to_string() })]
    ProxyAuth { proxy: String, user: Option<String> },
    #[error("{url}: {reason}{}", match ca_file { Some(f) => format!(" (trusted: the CA file {f} only)"), None => " (trusted: the system's certificate store)".to_string() })]
    Certificate {
        url: String,
        reason: String,
        /// The certificate's issuer is not trusted (as opposed to a wrong
        /// host name, expiry or another problem).
        untrusted: bool,
        ca_file: Option<String>,
    },
    #[error("the proxy {proxy} refused to open a tunnel (CONNECT) for {url}")]
    Tunnel { url: String, proxy: String },
    #[error("{url}: larger than the limit of {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("cannot read {url}: {reason}")]
    File { url: String, reason: String },
    #[error("{url}: gave up after {attempts} attempts; the last failure: {last}")]
    GaveUp {
        url: String,
        attempts: u32,
        last: Box<SyncError>,
    },
    #[error(
        "{url}: refused: its SHA-256 is {actual}, the pin is {expected}; the previous catalog is kept"
    )]
    HashMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{url}: refused: the signature from {signature_url} does not verify ({reason}); the previous catalog is kept")]
    BadSignature {
        url: String,
        signature_url: String,
        reason: String,
    },
    #[error("{url}: refused: the catalog has neither a `sha256` pin nor a `signature`, and unverified content is never used")]
    Unverified { url: String },
    #[error("{url}: the signature key: {reason}")]
    Key { url: String, reason: String },
    #[error("catalog {url}: {reason}")]
    Config { url: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("{0}")]
    Store(String),
}

impl SyncError {
    /// Worth another attempt: connection errors, time-outs, broken
    /// transfers, 5xx (and 408, 429) answers.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Connect { .. } | SyncError::Timeout { .. } | SyncError::Transfer { .. } => {
                true
            }
            SyncError::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            _ => false,
        }
    }

    /// Whether verification refused the content (as opposed to a failure
    /// to get it).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            SyncError::HashMismatch { .. }
                | SyncError::BadSignature { .. }
                | SyncError::Unverified { .. }
        )
    }

    /// What to do about it, when there is something to say.
    pub fn help(&self) -> Option<String> {
        match self {
            SyncError::Unverified { .. } => Some(
                "pin the catalog: add `sha256: <sha256sum of the file>` to its entry in the \
                 SyncHost, or `signature: {url: …, keyFrom: {env: NAME}}` for an HMAC-SHA256 \
                 signature published beside it"
                    .into(),
            ),
            SyncError::HashMismatch { .. } => Some(
                "if the publisher released a new catalog, check it and update the `sha256` pin"
                    .into(),
            ),
            SyncError::ProxyAuth { .. } => {
                Some("check the proxy's `username` and the secret its `passwordFrom` names".into())
            }
            SyncError::GaveUp { .. } | SyncError::Connect { .. } | SyncError::Timeout { .. } => {
                Some("the next attempt is scheduled; `patchops sync status` shows it".into())
            }
            SyncError::Certificate {
                untrusted: true, ..
            } => Some(
                "if a private CA issued the server's certificate, set the sync host's \
                 `tls: {caFile: PATH}` to its CA certificate (PEM, in the repository)"
                    .into(),
            ),
            SyncError::Certificate { .. } => Some(
                "check the host name in the URL and the certificate's dates with the \
                 server's operator; certificate problems are not retried"
                    .into(),
            ),
            SyncError::Tunnel { .. } => {
                Some("the proxy must allow CONNECT to the catalog's host and port (443)".into())
            }
            _ => None,
        }
    }
}

/// What happened to one catalog.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(
    tag = "outcome",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Outcome {
    /// The stored version is current (304, or the same bytes again).
    /// `restored`: the file in the package source was missing or
    /// different and was written again from the stored version.
    Unchanged { sha256: String, restored: bool },
    /// A new verified version: stored, and written to `path`.
    Updated {
        version_id: i64,
        sha256: String,
        size: u64,
        path: String,
        summary: String,
        diff: String,
    },
    /// Verification refused the content (or there is nothing to verify
    /// it with); nothing was written, the previous catalog is kept.
    Refused { error: String, help: Option<String> },
    /// It could not be fetched, stored or written.
    Failed { error: String, help: Option<String> },
}

/// One catalog's outcome and when it is due again.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogOutcome {
    pub url: String,
    pub kind: String,
    pub package: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Consecutive failures after this attempt (0 after a success).
    pub consecutive_failures: u32,
    /// When the next attempt is due, epoch milliseconds.
    pub next_attempt_ms: i64,
}

impl CatalogOutcome {
    /// Unchanged or updated.
    pub fn is_ok(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::Unchanged { .. } | Outcome::Updated { .. }
        )
    }
}

/// A readable summary of one catalog version (the caller's parser; one
/// line per bulletin is what makes the diff between versions readable).
pub type Summarize<'a> = &'a (dyn Fn(&[u8]) -> Result<String, String> + Sync);

/// How each catalog is verified; [`verifications_from_manifest`] unless a
/// caller (a test) says otherwise.
pub type Verifier<'a> = &'a (dyn Fn(&Catalog) -> Result<Vec<Verification>, SyncError> + Sync);

/// The summary used when the caller has no parser: size and SHA-256.
pub fn default_summary(bytes: &[u8]) -> Result<String, String> {
    use sha2::{Digest, Sha256};
    Ok(format!(
        "{} bytes, sha256 {}\n",
        bytes.len(),
        hex::encode(Sha256::digest(bytes))
    ))
}

/// The file a catalog is written to in the target directory:
/// `mssecure.xml` (security) or `invcif.xml` (office).
pub fn file_name(kind: CatalogType) -> &'static str {
    match kind {
        CatalogType::Security => "mssecure.xml",
        CatalogType::Office => "invcif.xml",
    }
}

pub fn kind_name(kind: CatalogType) -> &'static str {
    match kind {
        CatalogType::Security => "security",
        CatalogType::Office => "office",
    }
}

/// The verifications a catalog's manifest entry asks for (the pin, the
/// signature, or both); reads the signature key. Neither is
/// [`SyncError::Unverified`].
pub fn verifications_from_manifest(catalog: &Catalog) -> Result<Vec<Verification>, SyncError> {
    let mut out = Vec::new();
    if let Some(pin) = &catalog.sha256 {
        out.push(Verification::Sha256(pin.clone()));
    }
    if let Some(sig) = &catalog.signature {
        let source = secret_source(&sig.key_from);
        let key = source.read().map_err(|reason| SyncError::Key {
            url: catalog.url.clone(),
            reason,
        })?;
        out.push(Verification::DetachedSignature {
            url: sig.url.clone(),
            key,
        });
    }
    if out.is_empty() {
        return Err(SyncError::Unverified {
            url: catalog.url.clone(),
        });
    }
    Ok(out)
}

/// A manifest's secret reference as a [`SecretSource`].
pub fn secret_source(r: &crate::manifest::common::SecretRef) -> SecretSource {
    match r {
        crate::manifest::common::SecretRef::Env(n) => SecretSource::Env(n.clone()),
        crate::manifest::common::SecretRef::File(p) => SecretSource::File(p.clone()),
    }
}

/// The proxy of a sync host, its password read from its reference.
pub fn proxy_config(spec: &SyncHostSpec) -> Result<Option<ProxyConfig>, SyncError> {
    let Some(proxy) = &spec.proxy else {
        return Ok(None);
    };
    let password = match &proxy.password_from {
        Some(r) => Some(
            secret_source(r)
                .read()
                .map_err(|e| SyncError::ProxySecret(format!("the proxy password: {e}")))?,
        ),
        None => None,
    };
    Ok(Some(ProxyConfig {
        url: proxy.url.clone(),
        username: proxy.username.clone(),
        password,
    }))
}

/// The CA file of a sync host's `tls` setting, resolved in `site_dir`.
pub fn ca_file(site_dir: &Path, spec: &SyncHostSpec) -> Result<Option<PathBuf>, SyncError> {
    let Some(tls) = &spec.tls else {
        return Ok(None);
    };
    let path = crate::load::resolve_repo_path(site_dir, tls.ca_file.as_str()).map_err(|e| {
        SyncError::Client {
            reason: format!("tls.caFile `{}`: {e}", tls.ca_file.as_str()),
        }
    })?;
    Ok(Some(path))
}

/// The fetcher of a sync host: its proxy (the password read now) and its
/// trusted CAs, with `options`' time-outs and retries.
pub fn host_fetcher(
    site_dir: &Path,
    spec: &SyncHostSpec,
    options: &FetchOptions,
) -> Result<Fetcher, SyncError> {
    let options = FetchOptions {
        ca_file: ca_file(site_dir, spec)?,
        ..options.clone()
    };
    Fetcher::new(proxy_config(spec)?, options)
}

/// The run's clock, and the functions that verify and summarize.
#[derive(Clone, Copy)]
pub struct SyncOptions<'a> {
    /// Now, epoch milliseconds (stamps the versions and the status).
    pub now_ms: i64,
    /// How each catalog is verified: [`verifications_from_manifest`].
    pub verifier: Verifier<'a>,
    /// The readable summary of a version (the catalog parser); None:
    /// [`default_summary`] (size and SHA-256).
    pub summarize: Option<Summarize<'a>>,
}

/// One pass over the sync host's catalogs, in manifest order. Never stops
/// at a failed catalog; every outcome is recorded in the store's sync
/// status (`Store::sync_status`).
pub async fn sync_once(
    store: &Store,
    site_dir: &Path,
    desired: &Desired,
    host: &SyncHostSpec,
    fetcher: &Fetcher,
    options: &SyncOptions<'_>,
) -> Vec<CatalogOutcome> {
    let schedule = crate::units::parse_duration(host.schedule.every.as_str())
        .unwrap_or(Duration::from_secs(24 * 3600));
    let previous_status = store.sync_status().await.unwrap_or_default();
    let mut outcomes = Vec::with_capacity(host.catalogs.len());
    for catalog in &host.catalogs {
        let kind = kind_name(catalog.catalog_type).to_string();
        let outcome =
            match sync_catalog(store, site_dir, desired, host, catalog, fetcher, options).await {
                Ok(o) => o,
                Err(e) => {
                    let error = fetcher.scrub(e.to_string());
                    if e.is_refusal() {
                        Outcome::Refused {
                            error,
                            help: e.help(),
                        }
                    } else {
                        Outcome::Failed {
                            error,
                            help: e.help(),
                        }
                    }
                }
            };
        let failures_before = previous_status
            .iter()
            .find(|s| s.url == catalog.url)
            .map_or(0, |s| s.consecutive_failures);
        let (error, next) = match &outcome {
            Outcome::Unchanged { .. } | Outcome::Updated { .. } => {
                (None, options.now_ms + millis(schedule))
            }
            Outcome::Refused { error, .. } | Outcome::Failed { error, .. } => {
                let delay = failure_delay(failures_before + 1, schedule);
                (Some(error.clone()), options.now_ms + millis(delay))
            }
        };
        let attempt = SyncAttempt {
            url: catalog.url.clone(),
            kind: kind.clone(),
            at_ms: options.now_ms,
            error,
            next_attempt_ms: next,
        };
        let (outcome, failures, next) = match store.record_sync_attempt(&attempt).await {
            Ok(status) => (outcome, status.consecutive_failures, status.next_attempt_ms),
            Err(e) => (
                Outcome::Failed {
                    error: format!("cannot record the sync status: {e}"),
                    help: None,
                },
                failures_before + 1,
                next,
            ),
        };
        outcomes.push(CatalogOutcome {
            url: catalog.url.clone(),
            kind,
            package: catalog.package.clone(),
            outcome,
            consecutive_failures: failures,
            next_attempt_ms: next,
        });
    }
    outcomes
}

/// The wait after `failures` failures in a row: [`FAILURE_BACKOFF`]
/// doubling, at most `schedule` (and at least a minute).
pub fn failure_delay(failures: u32, schedule: Duration) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    FAILURE_BACKOFF
        .saturating_mul(1u32 << exp)
        .min(schedule.max(Duration::from_secs(60)))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

async fn sync_catalog(
    store: &Store,
    site_dir: &Path,
    desired: &Desired,
    host: &SyncHostSpec,
    catalog: &Catalog,
    fetcher: &Fetcher,
    options: &SyncOptions<'_>,
) -> Result<Outcome, SyncError> {
    let summarize = options.summarize.unwrap_or(&default_summary);
    let url = catalog.url.as_str();
    let target = target_file(site_dir, desired, host, catalog)?;
    // Before any download: content that cannot be verified is never used.
    let verifications = (options.verifier)(catalog)?;
    let store_err = |e: crate::store::StoreError| SyncError::Store(e.to_string());
    let latest = store.latest_catalog(url).await.map_err(store_err)?;
    // Ask conditionally only when the stored version still satisfies the
    // pin (a changed pin must see the content again).
    let conditional = match &latest {
        Some(v)
            if verifications.iter().all(|ver| match ver {
                Verification::Sha256(pin) => pin.eq_ignore_ascii_case(&v.sha256),
                Verification::DetachedSignature { .. } => true,
            }) =>
        {
            Conditional {
                etag: v.etag.clone(),
                last_modified: v.last_modified.clone(),
            }
        }
        _ => Conditional::default(),
    };
    let fetched = fetcher.fetch(url, &conditional).await?;
    let (bytes, sha256, etag, last_modified) = match fetched {
        Fetched::NotModified => match &latest {
            Some(v) => {
                let restored = ensure_file(&target, &v.bytes)?;
                return Ok(Outcome::Unchanged {
                    sha256: v.sha256.clone(),
                    restored,
                });
            }
            None => {
                return Err(SyncError::Config {
                    url: url.to_string(),
                    reason: "the server answered 304 Not Modified to an unconditional request"
                        .into(),
                })
            }
        },
        Fetched::New {
            bytes,
            sha256,
            etag,
            last_modified,
        } => (bytes, sha256, etag, last_modified),
    };
    for v in &verifications {
        let signature = match v {
            Verification::DetachedSignature { url: sig_url, .. } => {
                Some(fetch_signature(fetcher, sig_url).await?)
            }
            Verification::Sha256(_) => None,
        };
        verify::check(url, &bytes, &sha256, v, signature.as_deref())?;
    }
    // Verified from here on.
    if let Some(v) = latest.as_ref().filter(|v| v.sha256 == sha256) {
        let restored = ensure_file(&target, &v.bytes)?;
        return Ok(Outcome::Unchanged { sha256, restored });
    }
    let summary = match summarize(&bytes) {
        Ok(s) => s,
        Err(e) => format!(
            "(no summary: {e})\n{}",
            default_summary(&bytes).unwrap_or_default()
        ),
    };
    let diff = summary_diff(latest.as_ref().map(|v| v.summary.as_str()), &summary);
    let version = CatalogVersion {
        id: None,
        url: url.to_string(),
        kind: kind_name(catalog.catalog_type).to_string(),
        sha256: sha256.clone(),
        etag,
        last_modified,
        fetched_ms: options.now_ms,
        size: bytes.len() as u64,
        bytes,
        summary,
        diff,
    };
    let id = store
        .put_catalog_version(&version)
        .await
        .map_err(store_err)?;
    write_atomically(&target, &version.bytes)?;
    Ok(Outcome::Updated {
        version_id: id,
        sha256,
        size: version.size,
        path: target.display().to_string(),
        summary: version.summary,
        diff: version.diff,
    })
}

async fn fetch_signature(fetcher: &Fetcher, url: &str) -> Result<Vec<u8>, SyncError> {
    match fetcher.fetch(url, &Conditional::default()).await? {
        Fetched::New { bytes, .. } if bytes.len() as u64 <= MAX_SIGNATURE_BYTES => Ok(bytes),
        Fetched::New { .. } => Err(SyncError::TooLarge {
            url: url.to_string(),
            limit: MAX_SIGNATURE_BYTES,
        }),
        Fetched::NotModified => Err(SyncError::Config {
            url: url.to_string(),
            reason: "the server answered 304 Not Modified to an unconditional request".into(),
        }),
    }
}

/// Where a catalog is written: `command.target` when the sync host sets
/// it, else the catalog package's `source`; the file is [`file_name`].
pub fn target_file(
    site_dir: &Path,
    desired: &Desired,
    host: &SyncHostSpec,
    catalog: &Catalog,
) -> Result<PathBuf, SyncError> {
    let config = |reason: String| SyncError::Config {
        url: catalog.url.clone(),
        reason,
    };
    let dir = match &host.command.target {
        Some(t) => t.as_str().to_string(),
        None => {
            let package = desired
                .packages
                .get(&catalog.package)
                .ok_or_else(|| config(format!("there is no package `{}`", catalog.package)))?;
            package
                .spec
                .source
                .as_ref()
                .ok_or_else(|| {
                    config(format!(
                        "the package `{}` has no `source` to receive the catalog",
                        catalog.package
                    ))
                })?
                .as_str()
                .to_string()
        }
    };
    let dir = crate::load::resolve_repo_path(site_dir, &dir)
        .map_err(|e| config(format!("the target `{dir}`: {e}")))?;
    Ok(dir.join(file_name(catalog.catalog_type)))
}

/// Writes `bytes` to `path` unless it already holds exactly them; true
/// when it wrote.
fn ensure_file(path: &Path, bytes: &[u8]) -> Result<bool, SyncError> {
    if std::fs::read(path).is_ok_and(|current| current == bytes) {
        return Ok(false);
    }
    write_atomically(path, bytes)?;
    Ok(true)
}

/// Replaces `path` whole (see [`crate::atomic_file::write`]), mode 0644:
/// package sources refuse group- or world-writable files.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), SyncError> {
    crate::atomic_file::write(path, bytes, 0o644).map_err(|e| SyncError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The lines that changed between two summaries: `+ line` (new or
/// revised), `- line` (removed or superseded). The first version lists
/// every line as new.
pub fn summary_diff(before: Option<&str>, after: &str) -> String {
    let before = before.unwrap_or("");
    let diff = TextDiff::from_lines(before, after);
    let mut out = String::new();
    for change in diff.iter_all_changes() {
        let sign = match change.tag() {
            ChangeTag::Delete => '-',
            ChangeTag::Insert => '+',
            ChangeTag::Equal => continue,
        };
        out.push(sign);
        out.push(' ');
        out.push_str(change.value().trim_end_matches('\n'));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
