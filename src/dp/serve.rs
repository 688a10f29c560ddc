//! Serving a distribution point's content library over HTTP.
//!
//! A DP content library (written by the site server, only read here) looks like:
//!
//! ```text
//! <root>/.patchops-dp                                  marker
//! <root>/files/<aa>/<sha256>                           content blobs
//! <root>/packages/<package-id>/current                 current version id
//! <root>/packages/<package-id>/versions/<vid>.json     content manifests
//! <root>/tmp/                                          staging, never served
//! ```
//!
//! Routes (GET and HEAD):
//!
//! * `/packages/<package-id>/current` — the current manifest, `Cache-Control: no-cache`
//! * `/packages/<package-id>/versions/<version-id>.json` — an immutable manifest
//! * `/files/<sha256>` — an immutable blob
//! * `/healthz` — `ok`
//!
//! Everything is validated by shape before it touches the file system: a route
//! matches only the raw (not percent-decoded) request path, split on `/`, with
//! ids of exactly 16 or 64 lowercase hex characters.  Nothing else is ever
//! joined onto the root, so `..`, percent-encodings, backslashes, NUL bytes and
//! `tmp/` cannot be reached.  On top of that every file is opened only if its
//! canonical path is exactly the expected path under the canonical root (no
//! symlink anywhere below the root), it is a regular file, and (on Linux) the
//! opened descriptor still resolves to that path.
//!
//! File bodies are streamed from disk in 256 KiB chunks; single byte ranges,
//! `If-None-Match` and `If-Range` are supported.

use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

/// Name of the marker file that makes a directory a DP content library.
pub const MARKER: &str = ".patchops-dp";

/// Size of the chunks in which file bodies are read from disk and sent.
const CHUNK: usize = 256 * 1024;

/// The largest `current` file accepted (a 64-hex id plus some whitespace).
const MAX_CURRENT_LEN: u64 = 1024;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const NO_CACHE: &str = "no-cache";
const JSON: &str = "application/json";
const OCTETS: &str = "application/octet-stream";
const TEXT: &str = "text/plain; charset=utf-8";

/// Configuration of a DP HTTP server.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The root of the DP content library (the directory holding `.patchops-dp`).
    pub root: PathBuf,
}

/// Errors of [`serve`].
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The root has no `.patchops-dp` marker file.
    #[error("{} is not a DP content library (no {MARKER} marker file in it)", .0.display())]
    NotALibrary(PathBuf),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    /// Any other I/O failure while serving.
    #[error("DP server I/O error: {0}")]
    Io(String),
}

struct Inner {
    root: PathBuf,
}

/// The router, for tests without a socket and for embedding in the site server later.
///
/// The root is resolved again on every request (so a root that is a symlink
/// re-pointed to a new library is followed); the marker is checked by [`serve`].
pub fn app(config: ServeConfig) -> Router {
    let root = std::path::absolute(&config.root).unwrap_or(config.root);
    Router::new()
        .fallback(handle)
        .with_state(Arc::new(Inner { root }))
}

/// Binds `addr` and serves until `shutdown` resolves; returns the bound address
/// through `on_bound` before serving (useful with port 0).
pub async fn serve(
    config: ServeConfig,
    addr: SocketAddr,
    on_bound: impl FnOnce(SocketAddr) + Send,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let marker = config.root.join(MARKER);
    let is_library = tokio::fs::metadata(&marker)
        .await
        .map(|m| m.is_file())
        .unwrap_or(false);
    if !is_library {
        return Err(ServeError::NotALibrary(config.root));
    }

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ServeError::Bind {
            addr,
            reason: bind_reason(&e),
        })?;
    let bound = listener
        .local_addr()
        .map_err(|e| ServeError::Io(e.to_string()))?;
    on_bound(bound);

    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        // Small responses (304s, manifests) should not wait for Nagle.
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app(config))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| ServeError::Io(e.to_string()))
}

fn bind_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => format!(
            "the address is already in use (is another server listening on that port?) ({e})"
        ),
        io::ErrorKind::PermissionDenied => {
            format!("permission denied (ports below 1024 need privileges) ({e})")
        }
        io::ErrorKind::AddrNotAvailable => {
            format!("the address is not available on this host ({e})")
        }
        _ => e.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum RouteMatch {
    Health,
    Current { package: String },
    Version { package: String, version: String },
    Blob { sha: String },
}

/// Whether `s` is exactly `len` lowercase hex characters.
fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Matches the raw request path (never percent-decoded) against the routes.
fn route(path: &str) -> Option<RouteMatch> {
    // The longest valid path is `/packages/<16>/versions/<64>.json` (100 bytes).
    if path.len() > 128 {
        return None;
    }
    let rest = path.strip_prefix('/')?;
    let mut segments = rest.split('/');
    let parts: [Option<&str>; 5] = [
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ];
    match parts {
        [Some("healthz"), None, ..] => Some(RouteMatch::Health),
        [Some("files"), Some(sha), None, ..] if is_hex(sha, 64) => Some(RouteMatch::Blob {
            sha: sha.to_owned(),
        }),
        [Some("packages"), Some(package), Some("current"), None, _] if is_hex(package, 16) => {
            Some(RouteMatch::Current {
                package: package.to_owned(),
            })
        }
        [Some("packages"), Some(package), Some("versions"), Some(file), None]
            if is_hex(package, 16) =>
        {
            let version = file.strip_suffix(".json")?;
            is_hex(version, 64).then(|| RouteMatch::Version {
                package: package.to_owned(),
                version: version.to_owned(),
            })
        }
        _ => None,
    }
}

async fn handle(State(inner): State<Arc<Inner>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let Some(matched) = route(uri.path()) else {
        return not_found();
    };
    let head = if method == Method::GET {
        false
    } else if method == Method::HEAD {
        true
    } else {
        return method_not_allowed();
    };

    let (kind, lookup) = match matched {
        RouteMatch::Health => return text(StatusCode::OK, "ok"),
        RouteMatch::Blob { sha } => (Kind::Blob, Lookup::Blob { sha }),
        RouteMatch::Version { package, version } => {
            (Kind::Version, Lookup::Version { package, version })
        }
        RouteMatch::Current { package } => (Kind::Current, Lookup::Current { package }),
    };

    let root = inner.root.clone();
    let opened = match tokio::task::spawn_blocking(move || lookup.open(&root)).await {
        Ok(Ok(opened)) => opened,
        Ok(Err(OpenError::NotFound)) => return not_found(),
        Ok(Err(OpenError::Internal)) | Err(_) => return internal_error(),
    };
    respond(kind, opened, head, &headers).await
}

// ---------------------------------------------------------------------------
// Opening files safely
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Blob,
    Version,
    Current,
}

impl Kind {
    fn content_type(self) -> &'static str {
        match self {
            Kind::Blob => OCTETS,
            Kind::Version | Kind::Current => JSON,
        }
    }

    fn cache_control(self) -> &'static str {
        match self {
            Kind::Blob | Kind::Version => IMMUTABLE,
            Kind::Current => NO_CACHE,
        }
    }
}

enum Lookup {
    Blob { sha: String },
    Version { package: String, version: String },
    Current { package: String },
}

#[derive(Debug)]
enum OpenError {
    /// Missing, refused (symlink, not a regular file, outside the root) or invalid: 404.
    NotFound,
    /// An unexpected I/O failure or a corrupt library: 500.
    Internal,
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::NotFound
            | io::ErrorKind::NotADirectory
            | io::ErrorKind::IsADirectory
            | io::ErrorKind::InvalidFilename
            | io::ErrorKind::InvalidInput => OpenError::NotFound,
            _ => OpenError::Internal,
        }
    }
}

struct Opened {
    file: std::fs::File,
    len: u64,
    /// The entity tag value, without quotes (the sha256 or the version id).
    tag: String,
}

impl Lookup {
    /// Blocking: resolves and opens the file. Runs on the blocking pool.
    fn open(self, root: &Path) -> Result<Opened, OpenError> {
        let root = std::fs::canonicalize(root)?;
        match self {
            Lookup::Blob { sha } => {
                let (file, len) = open_in_root(&root, &["files", &sha[..2], &sha])?;
                Ok(Opened {
                    file,
                    len,
                    tag: sha,
                })
            }
            Lookup::Version { package, version } => {
                let name = format!("{version}.json");
                let (file, len) = open_in_root(&root, &["packages", &package, "versions", &name])?;
                Ok(Opened {
                    file,
                    len,
                    tag: version,
                })
            }
            Lookup::Current { package } => {
                let (file, len) = open_in_root(&root, &["packages", &package, "current"])?;
                if len > MAX_CURRENT_LEN {
                    return Err(OpenError::Internal);
                }
                let mut raw = String::new();
                file.take(MAX_CURRENT_LEN)
                    .read_to_string(&mut raw)
                    .map_err(|_| OpenError::Internal)?;
                let version = raw.trim();
                if !is_hex(version, 64) {
                    return Err(OpenError::Internal);
                }
                let name = format!("{version}.json");
                let (file, len) = open_in_root(&root, &["packages", &package, "versions", &name])?;
                Ok(Opened {
                    file,
                    len,
                    tag: version.to_owned(),
                })
            }
        }
    }
}

/// Opens `root/<components...>` for reading, refusing anything that is not a
/// regular file reached without any symlink below the (canonical) `root`.
fn open_in_root(root: &Path, components: &[&str]) -> Result<(std::fs::File, u64), OpenError> {
    let mut expected = root.to_path_buf();
    for c in components {
        expected.push(c);
    }
    // No symlink anywhere between the root and the file. A path that cannot be
    // resolved at all (missing, symlink loop, ...) is simply not there.
    let canonical = std::fs::canonicalize(&expected).map_err(|e| match e.kind() {
        io::ErrorKind::PermissionDenied => OpenError::Internal,
        _ => OpenError::NotFound,
    })?;
    if canonical != expected {
        return Err(OpenError::NotFound);
    }
    // Check the type before opening, so a planted FIFO or device never blocks us.
    let before = std::fs::symlink_metadata(&expected)?;
    if !before.is_file() {
        return Err(OpenError::NotFound);
    }
    let file = std::fs::File::open(&expected)?;
    let after = file.metadata()?;
    if !after.is_file() {
        return Err(OpenError::NotFound);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if (before.dev(), before.ino()) != (after.dev(), after.ino()) {
            return Err(OpenError::NotFound);
        }
    }
    #[cfg(target_os = "linux")]
    {
        // The authoritative check: what the kernel says the open descriptor is.
        // Guards against a directory being swapped for a symlink between the
        // checks above and the open.
        use std::os::fd::AsRawFd;
        if let Ok(actual) = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) {
            let same = actual == expected
                || actual
                    .to_str()
                    .and_then(|s| s.strip_suffix(" (deleted)"))
                    .is_some_and(|s| Path::new(s) == expected);
            if !same {
                return Err(OpenError::NotFound);
            }
        }
    }
    Ok((file, after.len()))
}

// ---------------------------------------------------------------------------
// Conditional requests and ranges
// ---------------------------------------------------------------------------

/// `If-None-Match` (weak comparison): true when any listed tag matches `tag`
/// (the quoted entity tag) or the list is `*`.
fn if_none_match_matches(headers: &HeaderMap, tag: &str) -> Option<bool> {
    let mut present = false;
    for value in headers.get_all(header::IF_NONE_MATCH) {
        present = true;
        let Ok(value) = value.to_str() else {
            continue;
        };
        for item in value.split(',') {
            let item = item.trim();
            if item == "*" {
                return Some(true);
            }
            let item = item.strip_prefix("W/").unwrap_or(item);
            if item == tag {
                return Some(true);
            }
        }
    }
    present.then_some(false)
}

/// `If-Range` (strong comparison): true when the range may be honoured.
fn if_range_allows(headers: &HeaderMap, tag: &str) -> bool {
    let mut values = headers.get_all(header::IF_RANGE).iter();
    match (values.next(), values.next()) {
        (None, _) => true,
        // A weak tag or an HTTP-date (we send no Last-Modified) never matches.
        (Some(v), None) => v.to_str().is_ok_and(|s| s.trim() == tag),
        (Some(_), Some(_)) => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeDecision {
    /// Serve the whole representation with 200.
    Full,
    /// Serve bytes `start..=end` with 206.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Parses a `Range` header value for a representation of `len` bytes.
///
/// Unknown units and lists of several ranges are ignored (full 200, allowed by
/// RFC 9110); a single malformed or unsatisfiable byte range is a 416.
fn parse_range(value: &str, len: u64) -> RangeDecision {
    let Some((unit, set)) = value.split_once('=') else {
        return RangeDecision::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeDecision::Full;
    }
    let mut specs = set.split(',').map(str::trim).filter(|s| !s.is_empty());
    let spec = match (specs.next(), specs.next()) {
        (None, _) => return RangeDecision::Unsatisfiable,
        (Some(spec), None) => spec,
        (Some(_), Some(_)) => return RangeDecision::Full,
    };
    let Some((first, last)) = spec.split_once('-') else {
        return RangeDecision::Unsatisfiable;
    };
    let (first, last) = (first.trim(), last.trim());
    if len == 0 {
        return RangeDecision::Unsatisfiable;
    }
    if first.is_empty() {
        // Suffix range: the last `n` bytes.
        let Some(n) = parse_digits(last) else {
            return RangeDecision::Unsatisfiable;
        };
        if n == 0 {
            return RangeDecision::Unsatisfiable;
        }
        return RangeDecision::Partial {
            start: len.saturating_sub(n),
            end: len - 1,
        };
    }
    let Some(start) = parse_digits(first) else {
        return RangeDecision::Unsatisfiable;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match parse_digits(last) {
            Some(end) if end >= start => end,
            _ => return RangeDecision::Unsatisfiable,
        }
    };
    if start >= len {
        return RangeDecision::Unsatisfiable;
    }
    RangeDecision::Partial {
        start,
        end: end.min(len - 1),
    }
}

/// ASCII digits only; saturates at `u64::MAX` instead of failing on overflow.
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

async fn respond(kind: Kind, opened: Opened, head: bool, headers: &HeaderMap) -> Response {
    let Opened { file, len, tag } = opened;
    let etag = format!("\"{tag}\"");

    if if_none_match_matches(headers, &etag) == Some(true) {
        let mut res = Response::new(Body::empty());
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        set(&mut res, header::ETAG, &etag);
        set_static(&mut res, header::CACHE_CONTROL, kind.cache_control());
        return res;
    }

    // Range handling is defined for GET only (RFC 9110 §14.2): HEAD ignores it.
    let decision = {
        let mut ranges = headers.get_all(header::RANGE).iter();
        match (ranges.next(), ranges.next()) {
            (Some(range), None) if !head && if_range_allows(headers, &etag) => range
                .to_str()
                .map_or(RangeDecision::Full, |r| parse_range(r, len)),
            _ => RangeDecision::Full,
        }
    };

    let (status, start, count) = match decision {
        RangeDecision::Full => (StatusCode::OK, 0, len),
        RangeDecision::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        RangeDecision::Unsatisfiable => {
            let mut res = text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
            set(&mut res, header::CONTENT_RANGE, &format!("bytes */{len}"));
            set(&mut res, header::ETAG, &etag);
            set_static(&mut res, header::ACCEPT_RANGES, "bytes");
            return res;
        }
    };

    let body = if head || count == 0 {
        Body::empty()
    } else {
        let mut file = file;
        if start > 0 {
            // A seek on a regular file is a cheap syscall.
            if file.seek(SeekFrom::Start(start)).is_err() {
                return internal_error();
            }
        }
        let reader = tokio::fs::File::from_std(file).take(count);
        Body::from_stream(ReaderStream::with_capacity(reader, CHUNK))
    };

    let mut res = Response::new(body);
    *res.status_mut() = status;
    set_static(&mut res, header::CONTENT_TYPE, kind.content_type());
    set_static(&mut res, header::CACHE_CONTROL, kind.cache_control());
    set_static(&mut res, header::ACCEPT_RANGES, "bytes");
    set_static(&mut res, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(&mut res, header::ETAG, &etag);
    res.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if status == StatusCode::PARTIAL_CONTENT {
        let end = start + count - 1;
        set(
            &mut res,
            header::CONTENT_RANGE,
            &format!("bytes {start}-{end}/{len}"),
        );
    }
    res
}

fn set(res: &mut Response, name: HeaderName, value: &str) {
    // Every value built here is ASCII hex, digits and punctuation.
    if let Ok(value) = HeaderValue::from_str(value) {
        res.headers_mut().insert(name, value);
    }
}

fn set_static(res: &mut Response, name: HeaderName, value: &'static str) {
    res.headers_mut()
        .insert(name, HeaderValue::from_static(value));
}

fn text(status: StatusCode, body: &'static str) -> Response {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    set_static(&mut res, header::CONTENT_TYPE, TEXT);
    set_static(&mut res, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    res
}

fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "not found\n")
}

fn method_not_allowed() -> Response {
    let mut res = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    set_static(&mut res, header::ALLOW, "GET, HEAD");
    res
}

fn internal_error() -> Response {
    text(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n")
}
