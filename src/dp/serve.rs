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
//! File bodies are streamed from disk in 1 MiB chunks (`CHUNK`); single byte ranges,
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

use super::library::MARKER;

/// Size of the chunks in which file bodies are read from disk and sent.
const CHUNK: usize = 1024 * 1024;

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
    /// Timeouts, the connection cap and the shutdown deadline.
    pub connections: crate::http_server::ConnectionLimits,
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

    let limits = config.connections;
    crate::http_server::serve(listener, app(config), limits, "dp", shutdown)
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

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
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
        RangeDecision::Partial { start, end } => {
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::fs;
    use tokio::io::AsyncWriteExt;

    const PKG: &str = "0123456789abcdef";

    fn sha_hex(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    /// A hand-built DP content library in a tempdir, plus a directory outside it.
    struct Lib {
        _dir: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
    }

    impl Lib {
        fn new() -> Lib {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("dp");
            let outside = dir.path().join("outside");
            for d in ["files", "packages", "tmp"] {
                fs::create_dir_all(root.join(d)).unwrap();
            }
            fs::create_dir_all(&outside).unwrap();
            fs::write(root.join(MARKER), b"").unwrap();
            Lib {
                _dir: dir,
                root,
                outside,
            }
        }

        fn put_blob(&self, data: &[u8]) -> String {
            let sha = sha_hex(data);
            let dir = self.root.join("files").join(&sha[..2]);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(&sha), data).unwrap();
            sha
        }

        /// Writes a version manifest for `files` and returns (version id, JSON bytes).
        fn put_version(&self, package: &str, files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
            let entries: Vec<serde_json::Value> = files
                .iter()
                .map(|(path, data)| {
                    let sha = self.put_blob(data);
                    serde_json::json!({"path": path, "size": data.len(), "mode": 420, "sha256": sha})
                })
                .collect();
            let version = sha_hex(serde_json::to_string(&entries).unwrap().as_bytes());
            let manifest = serde_json::json!({
                "package": "MS Security Updates",
                "version": version,
                "files": entries,
            });
            let bytes = serde_json::to_vec_pretty(&manifest).unwrap();
            let dir = self.root.join("packages").join(package).join("versions");
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(format!("{version}.json")), &bytes).unwrap();
            (version, bytes)
        }

        /// Points `current` at `version` atomically (write in tmp/, rename over).
        fn set_current(&self, package: &str, version: &str) {
            let staged = self.root.join("tmp").join(format!("current-{package}"));
            fs::write(&staged, format!("{version}\n")).unwrap();
            fs::rename(
                &staged,
                self.root.join("packages").join(package).join("current"),
            )
            .unwrap();
        }
    }

    struct Server {
        addr: SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<Result<(), ServeError>>,
    }

    impl Server {
        async fn start(root: &Path) -> Server {
            let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let config = ServeConfig {
                root: root.to_path_buf(),
                connections: Default::default(),
            };
            let task = tokio::spawn(serve(
                config,
                "127.0.0.1:0".parse().unwrap(),
                move |addr| {
                    let _ = addr_tx.send(addr);
                },
                async move {
                    let _ = stop_rx.await;
                },
            ));
            let addr = addr_rx.await.expect("server did not bind");
            Server {
                addr,
                stop: Some(stop_tx),
                task,
            }
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{}", self.addr, path)
        }

        async fn stop(mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            let result = tokio::time::timeout(std::time::Duration::from_secs(10), self.task)
                .await
                .expect("server did not shut down")
                .unwrap();
            assert!(result.is_ok(), "{result:?}");
        }
    }

    fn client() -> reqwest::Client {
        crate::tls::client_builder(None)
            .unwrap()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap()
    }

    fn header<'a>(res: &'a reqwest::Response, name: &str) -> Option<&'a str> {
        res.headers().get(name).map(|v| v.to_str().unwrap())
    }

    /// Sends `request` verbatim over TCP and returns (status, whole raw response).
    async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, Vec<u8>) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stream.read_to_end(&mut out),
        )
        .await
        .expect("raw request timed out")
        .unwrap();
        let text = String::from_utf8_lossy(&out);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, out)
    }

    async fn raw_get(addr: SocketAddr, target: &[u8]) -> (u16, Vec<u8>) {
        let mut req = b"GET ".to_vec();
        req.extend_from_slice(target);
        req.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        raw(addr, &req).await
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    // --- pure functions ------------------------------------------------------

    #[test]
    fn routes_match_only_exact_shapes() {
        let sha = "a".repeat(64);
        assert_eq!(route("/healthz"), Some(RouteMatch::Health));
        assert_eq!(
            route(&format!("/files/{sha}")),
            Some(RouteMatch::Blob { sha: sha.clone() })
        );
        assert_eq!(
            route(&format!("/packages/{PKG}/current")),
            Some(RouteMatch::Current {
                package: PKG.into()
            })
        );
        assert_eq!(
            route(&format!("/packages/{PKG}/versions/{sha}.json")),
            Some(RouteMatch::Version {
                package: PKG.into(),
                version: sha.clone()
            })
        );
        for bad in [
            "".to_string(),
            "/".to_string(),
            "healthz".to_string(),
            "/healthz/".to_string(),
            "//healthz".to_string(),
            format!("/files/{}", "A".repeat(64)),
            format!("/files/{}", "a".repeat(63)),
            format!("/files/{}", "a".repeat(65)),
            format!("/files/{sha}/"),
            format!("/files/{sha}/x"),
            format!("/files//{sha}"),
            format!("/files/aa/{sha}"),
            format!("/packages/{PKG}/versions/{sha}"),
            format!("/packages/{PKG}/versions/{sha}.JSON"),
            format!("/packages/{PKG}/versions/{sha}.json/"),
            format!("/packages/{PKG}/current/"),
            format!("/packages/{PKG}0/current"),
            "/packages/0123456789ABCDEF/current".to_string(),
            format!("/tmp/{sha}"),
            "/.patchops-dp".to_string(),
            format!("/files/{}", "g".repeat(64)),
            format!("/files/{}", "é".repeat(32)),
        ] {
            assert_eq!(route(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn range_parsing() {
        use RangeDecision::*;
        let p = |s| parse_range(s, 100);
        assert_eq!(p("bytes=0-0"), Partial { start: 0, end: 0 });
        assert_eq!(p("bytes=10-19"), Partial { start: 10, end: 19 });
        assert_eq!(p("bytes=90-"), Partial { start: 90, end: 99 });
        assert_eq!(p("bytes=-10"), Partial { start: 90, end: 99 });
        assert_eq!(p("bytes=-1000"), Partial { start: 0, end: 99 });
        assert_eq!(p("bytes=50-1000"), Partial { start: 50, end: 99 });
        assert_eq!(p("Bytes = 1-2 "), Partial { start: 1, end: 2 });
        assert_eq!(p("bytes=1-2,"), Partial { start: 1, end: 2 });
        assert_eq!(
            p("bytes=0-99999999999999999999999999"),
            Partial { start: 0, end: 99 }
        );
        assert_eq!(
            p("bytes=-99999999999999999999999999"),
            Partial { start: 0, end: 99 }
        );
        assert_eq!(p("bytes=0-1,5-6"), Full);
        assert_eq!(p("items=0-1"), Full);
        assert_eq!(p("bytes 0-1"), Full);
        assert_eq!(p(""), Full);
        for unsat in [
            "bytes=100-",
            "bytes=100-200",
            "bytes=99999999999999999999999-",
            "bytes=-0",
            "bytes=5-2",
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=1",
            "bytes=+1-2",
            "bytes=1--2",
            "bytes=0x1-2",
            "bytes=١-٢",
        ] {
            assert_eq!(p(unsat), Unsatisfiable, "{unsat:?}");
        }
        assert_eq!(parse_range("bytes=-5", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,2-3", 0), Full);
    }

    #[test]
    fn etag_matching() {
        let tag = "\"abc\"";
        let map = |name: HeaderName, values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(name.clone(), HeaderValue::from_str(v).unwrap());
            }
            h
        };
        let inm = |values: &[&str]| if_none_match_matches(&map(header::IF_NONE_MATCH, values), tag);
        assert_eq!(inm(&[]), None);
        assert_eq!(inm(&["\"abc\""]), Some(true));
        assert_eq!(inm(&["W/\"abc\""]), Some(true));
        assert_eq!(inm(&["*"]), Some(true));
        assert_eq!(inm(&["\"x\", W/\"abc\""]), Some(true));
        assert_eq!(inm(&["\"x\"", "\"abc\""]), Some(true));
        assert_eq!(inm(&["\"x\", \"y\""]), Some(false));
        assert_eq!(inm(&["abc"]), Some(false));
        assert_eq!(inm(&["w/\"abc\""]), Some(false));
        let ir = |values: &[&str]| if_range_allows(&map(header::IF_RANGE, values), tag);
        assert!(ir(&[]));
        assert!(ir(&["\"abc\""]));
        assert!(!ir(&["W/\"abc\""]));
        assert!(!ir(&["\"x\""]));
        assert!(!ir(&["Sat, 01 Jan 2000 00:00:00 GMT"]));
    }

    // --- over loopback ---------------------------------------------------------

    #[tokio::test]
    async fn healthz_and_unknown_routes() {
        let lib = Lib::new();
        let server = Server::start(&lib.root).await;
        let c = client();
        let res = c.get(server.url("/healthz")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.text().await.unwrap(), "ok");
        let res = c.head(server.url("/healthz")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "content-length"), Some("2"));

        let root_str = lib.root.to_string_lossy().into_owned();
        for path in [
            "/",
            "/nope",
            "/files",
            "/files/",
            "/packages",
            "/healthz/x",
            "/.patchops-dp",
            "/tmp",
        ] {
            let res = c.get(server.url(path)).send().await.unwrap();
            assert_eq!(res.status(), 404, "{path}");
            assert!(header(&res, "content-type")
                .unwrap()
                .starts_with("text/plain"));
            let body = res.text().await.unwrap();
            assert_eq!(body, "not found\n");
            assert!(!body.contains(&root_str));
        }
        // A well-shaped id that does not exist.
        let res = c
            .get(server.url(&format!("/files/{}", "0".repeat(64))))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
        assert_eq!(res.text().await.unwrap(), "not found\n");
        let res = c
            .head(server.url(&format!("/files/{}", "0".repeat(64))))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
        server.stop().await;
    }

    #[tokio::test]
    async fn other_methods_are_refused() {
        let lib = Lib::new();
        let sha = lib.put_blob(b"data");
        let server = Server::start(&lib.root).await;
        let c = client();
        for method in [
            reqwest::Method::POST,
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
        ] {
            let res = c
                .request(method.clone(), server.url(&format!("/files/{sha}")))
                .body("x")
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 405, "{method}");
            assert_eq!(header(&res, "allow"), Some("GET, HEAD"));
            // Unknown paths stay 404 whatever the method.
            let res = c
                .request(method.clone(), server.url("/nope"))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 404);
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn blob_get_and_head() {
        let lib = Lib::new();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let sha = lib.put_blob(&data);
        let server = Server::start(&lib.root).await;
        let c = client();
        let url = server.url(&format!("/files/{sha}"));

        let res = c.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            header(&res, "content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(header(&res, "content-length"), Some("10000"));
        assert_eq!(header(&res, "etag"), Some(format!("\"{sha}\"").as_str()));
        assert_eq!(
            header(&res, "cache-control"),
            Some("public, max-age=31536000, immutable")
        );
        assert_eq!(header(&res, "accept-ranges"), Some("bytes"));
        assert!(res.headers().get("transfer-encoding").is_none());
        assert_eq!(res.bytes().await.unwrap().as_ref(), data.as_slice());

        let res = c.head(&url).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "content-length"), Some("10000"));
        assert_eq!(header(&res, "etag"), Some(format!("\"{sha}\"").as_str()));
        assert_eq!(header(&res, "accept-ranges"), Some("bytes"));
        assert_eq!(
            header(&res, "content-type"),
            Some("application/octet-stream")
        );

        // HEAD on the wire: headers only, no body bytes at all.
        let req = format!("HEAD /files/{sha} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (status, out) = raw(server.addr, req.as_bytes()).await;
        assert_eq!(status, 200);
        assert!(out.ends_with(b"\r\n\r\n"), "HEAD sent a body");
        assert!(contains(&out, b"content-length: 10000\r\n"));
        server.stop().await;
    }

    #[tokio::test]
    async fn empty_blob() {
        let lib = Lib::new();
        let sha = lib.put_blob(b"");
        let server = Server::start(&lib.root).await;
        let c = client();
        let url = server.url(&format!("/files/{sha}"));
        let res = c.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "content-length"), Some("0"));
        assert!(res.bytes().await.unwrap().is_empty());
        let res = c.head(&url).send().await.unwrap();
        assert_eq!(header(&res, "content-length"), Some("0"));
        let res = c
            .get(&url)
            .header("range", "bytes=0-")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 416);
        assert_eq!(header(&res, "content-range"), Some("bytes */0"));
        server.stop().await;
    }

    #[tokio::test]
    async fn ranges() {
        let lib = Lib::new();
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 256) as u8).collect();
        let sha = lib.put_blob(&data);
        let server = Server::start(&lib.root).await;
        let c = client();
        let url = server.url(&format!("/files/{sha}"));

        for (range, start, end) in [
            ("bytes=0-0", 0usize, 0usize),  // first byte
            ("bytes=100-199", 100, 199),    // middle
            ("bytes=-10", 990, 999),        // suffix
            ("bytes=-5000", 0, 999),        // suffix longer than the file
            ("bytes=900-", 900, 999),       // open-ended
            ("bytes=999-", 999, 999),       // last byte
            ("bytes=500-100000", 500, 999), // end clamped
            ("bytes=0-999", 0, 999),        // whole file as a range
        ] {
            let res = c.get(&url).header("range", range).send().await.unwrap();
            assert_eq!(res.status(), 206, "{range}");
            assert_eq!(
                header(&res, "content-range"),
                Some(format!("bytes {start}-{end}/1000").as_str()),
                "{range}"
            );
            assert_eq!(
                header(&res, "content-length"),
                Some((end - start + 1).to_string().as_str())
            );
            assert_eq!(header(&res, "etag"), Some(format!("\"{sha}\"").as_str()));
            assert_eq!(
                res.bytes().await.unwrap().as_ref(),
                &data[start..=end],
                "{range}"
            );
        }

        for range in [
            "bytes=1000-",
            "bytes=5000-6000",
            "bytes=-0",
            "bytes=9-3",
            "bytes=x-",
        ] {
            let res = c.get(&url).header("range", range).send().await.unwrap();
            assert_eq!(res.status(), 416, "{range}");
            assert_eq!(
                header(&res, "content-range"),
                Some("bytes */1000"),
                "{range}"
            );
        }

        // Several ranges, or a unit we do not know: the whole file with 200.
        for range in ["bytes=0-1,5-6", "items=0-1"] {
            let res = c.get(&url).header("range", range).send().await.unwrap();
            assert_eq!(res.status(), 200, "{range}");
            assert!(res.headers().get("content-range").is_none());
            assert_eq!(res.bytes().await.unwrap().as_ref(), data.as_slice());
        }

        // Range is defined for GET only: HEAD answers as for the full file.
        let res = c
            .head(&url)
            .header("range", "bytes=0-9")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "content-length"), Some("1000"));
        server.stop().await;
    }

    #[tokio::test]
    async fn conditional_requests() {
        let lib = Lib::new();
        let data = b"conditional content".to_vec();
        let sha = lib.put_blob(&data);
        let server = Server::start(&lib.root).await;
        let c = client();
        let url = server.url(&format!("/files/{sha}"));
        let etag = format!("\"{sha}\"");

        for inm in [
            etag.clone(),
            format!("W/{etag}"),
            "*".to_string(),
            format!("\"other\", {etag}"),
            format!("\"a\",W/{etag} , \"b\""),
        ] {
            for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
                let res = c
                    .request(method.clone(), &url)
                    .header("if-none-match", &inm)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 304, "{method} {inm}");
                assert_eq!(header(&res, "etag"), Some(etag.as_str()));
                assert!(res.bytes().await.unwrap().is_empty());
            }
        }
        // 304 beats Range.
        let res = c
            .get(&url)
            .header("if-none-match", &etag)
            .header("range", "bytes=0-1")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 304);

        // On the wire: no body and no Content-Length on a 304.
        let req = format!(
            "GET /files/{sha} HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n"
        );
        let (status, out) = raw(server.addr, req.as_bytes()).await;
        assert_eq!(status, 304);
        assert!(out.ends_with(b"\r\n\r\n"));
        assert!(!contains(&out.to_ascii_lowercase(), b"content-length"));

        let res = c
            .get(&url)
            .header("if-none-match", "\"nope\", W/\"nope2\"")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.bytes().await.unwrap().as_ref(), data.as_slice());

        // If-Range: honoured only on a strong match.
        let res = c
            .get(&url)
            .header("range", "bytes=0-3")
            .header("if-range", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 206);
        assert_eq!(res.bytes().await.unwrap().as_ref(), b"cond");
        for if_range in [
            "\"stale\"".to_string(),
            format!("W/{etag}"),
            "Sat, 01 Jan 2000 00:00:00 GMT".to_string(),
        ] {
            let res = c
                .get(&url)
                .header("range", "bytes=0-3")
                .header("if-range", &if_range)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "{if_range}");
            assert_eq!(res.bytes().await.unwrap().as_ref(), data.as_slice());
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn manifests_current_and_versions() {
        let lib = Lib::new();
        let (v1, m1) = lib.put_version(PKG, &[("bin/scan.exe", b"scanner v1")]);
        let (v2, m2) = lib.put_version(PKG, &[("bin/scan.exe", b"scanner v2")]);
        lib.set_current(PKG, &v2);
        let server = Server::start(&lib.root).await;
        let c = client();

        let res = c
            .get(server.url(&format!("/packages/{PKG}/current")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "content-type"), Some("application/json"));
        assert_eq!(header(&res, "cache-control"), Some("no-cache"));
        assert_eq!(header(&res, "etag"), Some(format!("\"{v2}\"").as_str()));
        let body = res.bytes().await.unwrap();
        assert_eq!(body.as_ref(), m2.as_slice());
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["version"], v2.as_str());

        let res = c
            .head(server.url(&format!("/packages/{PKG}/current")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            header(&res, "content-length"),
            Some(m2.len().to_string().as_str())
        );

        let res = c
            .get(server.url(&format!("/packages/{PKG}/current")))
            .header("if-none-match", format!("\"{v2}\""))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 304);
        assert_eq!(header(&res, "cache-control"), Some("no-cache"));

        // A version that is no longer current is still served, immutable.
        let res = c
            .get(server.url(&format!("/packages/{PKG}/versions/{v1}.json")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "content-type"), Some("application/json"));
        assert_eq!(
            header(&res, "cache-control"),
            Some("public, max-age=31536000, immutable")
        );
        assert_eq!(header(&res, "etag"), Some(format!("\"{v1}\"").as_str()));
        assert_eq!(res.bytes().await.unwrap().as_ref(), m1.as_slice());

        let res = c
            .get(server.url(&format!("/packages/{PKG}/versions/{v1}.json")))
            .header("if-none-match", format!("W/\"{v1}\""))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 304);

        // The blobs named by the manifest are downloadable.
        let sha = parsed["files"][0]["sha256"].as_str().unwrap();
        let res = c
            .get(server.url(&format!("/files/{sha}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.bytes().await.unwrap().as_ref(), b"scanner v2");

        // Unknown package, unknown version, a package without `current`.
        let missing = [
            "/packages/ffffffffffffffff/current".to_string(),
            format!("/packages/ffffffffffffffff/versions/{v1}.json"),
            format!("/packages/{PKG}/versions/{}.json", "e".repeat(64)),
        ];
        for path in &missing {
            let res = c.get(server.url(path)).send().await.unwrap();
            assert_eq!(res.status(), 404, "{path}");
        }
        let (_, _) = lib.put_version("1111111111111111", &[("a", b"a")]);
        let res = c
            .get(server.url("/packages/1111111111111111/current"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404);

        // `current` naming a version whose manifest does not exist.
        fs::create_dir_all(lib.root.join("packages/2222222222222222")).unwrap();
        lib.set_current("2222222222222222", &"d".repeat(64));
        let res = c
            .get(server.url("/packages/2222222222222222/current"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
        server.stop().await;
    }

    #[tokio::test]
    async fn corrupt_current_is_a_server_error_without_paths() {
        let lib = Lib::new();
        let (_, _) = lib.put_version(PKG, &[("a", b"a")]);
        fs::write(
            lib.root.join("packages").join(PKG).join("current"),
            b"not a version id\n",
        )
        .unwrap();
        let big = "3333333333333333";
        let (v, _) = lib.put_version(big, &[("b", b"b")]);
        fs::write(
            lib.root.join("packages").join(big).join("current"),
            format!("{v}{}", " ".repeat(4096)),
        )
        .unwrap();
        let server = Server::start(&lib.root).await;
        let c = client();
        for package in [PKG, big] {
            let res = c
                .get(server.url(&format!("/packages/{package}/current")))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 500);
            let body = res.text().await.unwrap();
            assert_eq!(body, "internal server error\n");
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn current_replaced_atomically_is_picked_up() {
        let lib = Lib::new();
        let (v1, m1) = lib.put_version(PKG, &[("f", b"one")]);
        let (v2, m2) = lib.put_version(PKG, &[("f", b"two")]);
        lib.set_current(PKG, &v1);
        let server = Server::start(&lib.root).await;
        let c = client();
        let url = server.url(&format!("/packages/{PKG}/current"));
        for (version, manifest) in [(&v1, &m1), (&v2, &m2), (&v1, &m1)] {
            lib.set_current(PKG, version);
            let res = c.get(&url).send().await.unwrap();
            assert_eq!(res.status(), 200);
            assert_eq!(
                header(&res, "etag"),
                Some(format!("\"{version}\"").as_str())
            );
            assert_eq!(res.bytes().await.unwrap().as_ref(), manifest.as_slice());
        }
        // A client revalidating with the old tag gets the new manifest.
        lib.set_current(PKG, &v2);
        let res = c
            .get(&url)
            .header("if-none-match", format!("\"{v1}\""))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.bytes().await.unwrap().as_ref(), m2.as_slice());
        server.stop().await;
    }

    #[tokio::test]
    async fn traversal_and_planted_files_are_never_served() {
        let lib = Lib::new();
        let good = lib.put_blob(b"legit blob");
        let (version, _) = lib.put_version(PKG, &[("f", b"legit file")]);
        lib.set_current(PKG, &version);

        // Secrets outside the root, and one in tmp/ named like a blob.
        let outside_secret: &[u8] = b"TOP-SECRET-OUTSIDE";
        fs::write(lib.outside.join("secret.txt"), outside_secret).unwrap();
        let staged_secret: &[u8] = b"STAGED-SECRET-IN-TMP";
        let staged_sha = sha_hex(staged_secret);
        fs::write(lib.root.join("tmp").join(&staged_sha), staged_secret).unwrap();
        fs::create_dir_all(lib.root.join("tmp/files").join(&staged_sha[..2])).unwrap();
        fs::write(
            lib.root
                .join("tmp/files")
                .join(&staged_sha[..2])
                .join(&staged_sha),
            staged_secret,
        )
        .unwrap();

        // Planted symlinks (unix): blob -> outside file, blob -> tmp/ file,
        // prefix dir -> outside dir, package dir -> outside package, current -> outside.
        let outside_sha = sha_hex(outside_secret);
        let dir_secret: &[u8] = b"SECRET-BEHIND-DIR-LINK";
        let dir_sha = sha_hex(dir_secret);
        let pkg_secret = "SECRET-OUTSIDE-MANIFEST";
        let linked_pkg = "4444444444444444";
        let linked_current = "5555555555555555";
        #[cfg(unix)]
        {
            use std::os::unix::fs::symlink;
            let d = lib.root.join("files").join(&outside_sha[..2]);
            fs::create_dir_all(&d).unwrap();
            symlink(lib.outside.join("secret.txt"), d.join(&outside_sha)).unwrap();
            // Relative link into tmp/ (a symlink that stays inside the root).
            let d = lib.root.join("files").join(&staged_sha[..2]);
            fs::create_dir_all(&d).unwrap();
            symlink(
                Path::new("../../tmp").join(&staged_sha),
                d.join(&staged_sha),
            )
            .unwrap();
            // A whole prefix directory linked outside.
            let od = lib.outside.join("prefix");
            fs::create_dir_all(&od).unwrap();
            fs::write(od.join(&dir_sha), dir_secret).unwrap();
            assert!(!lib.root.join("files").join(&dir_sha[..2]).exists());
            symlink(&od, lib.root.join("files").join(&dir_sha[..2])).unwrap();
            // A package directory linked outside.
            let op = lib.outside.join("pkg");
            fs::create_dir_all(op.join("versions")).unwrap();
            fs::write(op.join("current"), format!("{version}\n")).unwrap();
            fs::write(
                op.join("versions").join(format!("{version}.json")),
                pkg_secret,
            )
            .unwrap();
            symlink(&op, lib.root.join("packages").join(linked_pkg)).unwrap();
            // Only `current` linked outside; the manifest it names exists inside.
            let pc = lib.root.join("packages").join(linked_current);
            fs::create_dir_all(pc.join("versions")).unwrap();
            fs::copy(
                lib.root
                    .join("packages")
                    .join(PKG)
                    .join("versions")
                    .join(format!("{version}.json")),
                pc.join("versions").join(format!("{version}.json")),
            )
            .unwrap();
            fs::write(lib.outside.join("current"), format!("{version}\n")).unwrap();
            symlink(lib.outside.join("current"), pc.join("current")).unwrap();
        }

        let server = Server::start(&lib.root).await;
        let long = format!("/files/{}", "a".repeat(10_000));
        let long_dots = format!("/files/{}secret.txt", "../".repeat(2_000));
        let targets: Vec<String> = vec![
            "/files/../../outside/secret.txt".into(),
            "/../outside/secret.txt".into(),
            "/files/..%2f..%2foutside%2fsecret.txt".into(),
            "/files/%2e%2e/%2e%2e/outside/secret.txt".into(),
            "/%2e%2e/%2e%2e/outside/secret.txt".into(),
            "/files/%2e%2e%2f%2e%2e%2foutside%2fsecret.txt".into(),
            "/files/%252e%252e%252f%252e%252e%252foutside%252fsecret.txt".into(),
            "/files/..%5c..%5coutside%5csecret.txt".into(),
            "/files/..\\..\\outside\\secret.txt".into(),
            "/files/%c0%ae%c0%ae/%c0%ae%c0%ae/outside/secret.txt".into(),
            "//outside/secret.txt".into(),
            "/files//etc/passwd".into(),
            "/etc/passwd".into(),
            "/files/%2fetc%2fpasswd".into(),
            format!("/files/{good}%00"),
            format!("/files/{good}%00.txt"),
            "/files/%00".into(),
            format!("/files/{}/{good}", &good[..2]),
            format!("/files/{}%2f{good}", &good[..2]),
            format!("/files/{}", good.to_uppercase()),
            format!("/files/{good}/"),
            format!("/files/{good}/.."),
            format!("/files/{good}/../{good}"),
            format!("/files/./{good}"),
            format!("/tmp/{staged_sha}"),
            format!("/tmp/files/{}/{staged_sha}", &staged_sha[..2]),
            format!("/files/../tmp/{staged_sha}"),
            format!("/files/%2e%2e%2ftmp%2f{staged_sha}"),
            format!("/files/{staged_sha}"),
            format!("/files/{outside_sha}"),
            format!("/files/{dir_sha}"),
            format!("/packages/{linked_pkg}/current"),
            format!("/packages/{linked_pkg}/versions/{version}.json"),
            format!("/packages/{linked_current}/current"),
            format!("/packages/{PKG}/versions/../../../../outside/secret.txt"),
            format!("/packages/{PKG}/current/../../../../outside/secret.txt"),
            format!("/packages/{PKG}/versions/%2e%2e%2f%2e%2e%2f%2e%2e%2fcurrent"),
            format!("/packages/{PKG}/versions/{version}.json%00.txt"),
            format!("/packages/{PKG}/../../outside/secret.txt"),
            "/packages/..%2f..%2f..%2foutside/current".into(),
            "/.patchops-dp".into(),
            "/%2epatchops-dp".into(),
            "http://127.0.0.1/files/../../outside/secret.txt".into(),
            long,
            long_dots,
        ];
        assert!(targets.len() >= 15);
        let root_str = lib.root.to_string_lossy().into_owned();
        for target in &targets {
            let (status, out) = raw_get(server.addr, target.as_bytes()).await;
            assert_eq!(status, 404, "{target}: {}", String::from_utf8_lossy(&out));
            for secret in [
                outside_secret,
                staged_secret,
                dir_secret,
                pkg_secret.as_bytes(),
            ] {
                assert!(!contains(&out, secret), "{target} leaked a secret");
            }
            assert!(
                !contains(&out, root_str.as_bytes()),
                "{target} leaked the root path"
            );
        }

        // Request lines the HTTP parser itself rejects: never a secret either.
        for target in [
            b"/files/\0secret".as_slice(),
            b"/files/../../outside/secret.txt\0".as_slice(),
            b"/files/ /../outside/secret.txt".as_slice(),
        ] {
            let (status, out) = raw_get(server.addr, target).await;
            assert!(status == 400 || status == 404 || status == 0, "{status}");
            assert!(!contains(&out, outside_secret));
        }

        // The legitimate content is still there.
        let (status, out) = raw_get(server.addr, format!("/files/{good}").as_bytes()).await;
        assert_eq!(status, 200);
        assert!(contains(&out, b"legit blob"));
        let (status, _) = raw_get(server.addr, format!("/packages/{PKG}/current").as_bytes()).await;
        assert_eq!(status, 200);
        server.stop().await;
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn planted_fifo_does_not_hang() {
        let lib = Lib::new();
        let sha = sha_hex(b"fifo");
        let dir = lib.root.join("files").join(&sha[..2]);
        fs::create_dir_all(&dir).unwrap();
        // mkfifo is in coreutils: without it this test cannot say anything,
        // so it fails rather than passing unseen.
        let made = std::process::Command::new("mkfifo")
            .arg(dir.join(&sha))
            .status()
            .expect("mkfifo (coreutils) runs");
        assert!(made.success(), "mkfifo failed: {made}");
        let server = Server::start(&lib.root).await;
        let request = client().get(server.url(&format!("/files/{sha}"))).send();
        let Ok(res) = tokio::time::timeout(std::time::Duration::from_secs(5), request).await else {
            // Release the server's blocked open() so the runtime can stop, then fail.
            let _ = fs::OpenOptions::new().write(true).open(dir.join(&sha));
            panic!("a request for a planted FIFO hung");
        };
        assert_eq!(res.unwrap().status(), 404);
        server.stop().await;
    }

    #[tokio::test]
    async fn large_file_streams_exactly() {
        let lib = Lib::new();
        // 8 MiB + 3 bytes: many chunks, and a length that is not a chunk multiple.
        let len = 8 * 1024 * 1024 + 3;
        let data: Vec<u8> = (0..len as u64)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let sha = lib.put_blob(&data);
        let server = Server::start(&lib.root).await;
        let c = client();
        let url = server.url(&format!("/files/{sha}"));
        let res = c.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            header(&res, "content-length"),
            Some(len.to_string().as_str())
        );
        let body = res.bytes().await.unwrap();
        assert_eq!(sha_hex(&body), sha);

        // A range straddling chunk boundaries.
        let (start, end) = (CHUNK - 7, 3 * CHUNK + 11);
        let res = c
            .get(&url)
            .header("range", format!("bytes={start}-{end}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 206);
        assert_eq!(res.bytes().await.unwrap().as_ref(), &data[start..=end]);

        // Several clients at once.
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let c = c.clone();
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                c.get(&url)
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
                    .len()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), len);
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn refuses_a_root_without_marker() {
        let dir = tempfile::tempdir().unwrap();
        let mut called = false;
        let err = serve(
            ServeConfig {
                root: dir.path().to_path_buf(),
                connections: Default::default(),
            },
            "127.0.0.1:0".parse().unwrap(),
            |_| called = true,
            async {},
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, ServeError::NotALibrary(p) if p == dir.path()),
            "{err:?}"
        );
        assert!(err.to_string().contains(".patchops-dp"));
        assert!(!called);

        // Missing root, and a marker that is a directory, are refused too.
        let err = serve(
            ServeConfig {
                root: dir.path().join("missing"),
                connections: Default::default(),
            },
            "127.0.0.1:0".parse().unwrap(),
            |_| {},
            async {},
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ServeError::NotALibrary(_)));
        fs::create_dir(dir.path().join(MARKER)).unwrap();
        let err = serve(
            ServeConfig {
                root: dir.path().to_path_buf(),
                connections: Default::default(),
            },
            "127.0.0.1:0".parse().unwrap(),
            |_| {},
            async {},
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ServeError::NotALibrary(_)));
    }

    #[tokio::test]
    async fn refuses_a_port_in_use() {
        let lib = Lib::new();
        let server = Server::start(&lib.root).await;
        let err = serve(
            ServeConfig {
                root: lib.root.clone(),
                connections: Default::default(),
            },
            server.addr,
            |_| panic!("must not report a bound address"),
            async {},
        )
        .await
        .unwrap_err();
        match &err {
            ServeError::Bind { addr, reason } => {
                assert_eq!(*addr, server.addr);
                assert!(reason.contains("already in use"), "{reason}");
            }
            other => panic!("expected Bind, got {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains(&server.addr.to_string()), "{message}");
        // The first server is unaffected.
        let res = client().get(server.url("/healthz")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        server.stop().await;
    }

    #[tokio::test]
    async fn root_behind_a_symlink_is_served() {
        let lib = Lib::new();
        let sha = lib.put_blob(b"via link");
        let link = lib.outside.join("dp-link");
        #[cfg(unix)]
        std::os::unix::fs::symlink(&lib.root, &link).unwrap();
        #[cfg(not(unix))]
        let link = lib.root.clone();
        let server = Server::start(&link).await;
        let res = client()
            .get(server.url(&format!("/files/{sha}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.bytes().await.unwrap().as_ref(), b"via link");
        server.stop().await;
    }
    #[tokio::test]
    async fn app_embeds_under_a_prefix() {
        let lib = Lib::new();
        let sha = lib.put_blob(b"embedded");
        let site = Router::new().nest_service(
            "/dp",
            app(ServeConfig {
                root: lib.root.clone(),
                connections: Default::default(),
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, site)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .await
        });
        let c = client();
        let res = c
            .get(format!("http://{addr}/dp/files/{sha}"))
            .header("range", "bytes=-3")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 206);
        assert_eq!(res.bytes().await.unwrap().as_ref(), b"ded");
        let res = c
            .head(format!("http://{addr}/dp/files/{sha}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "content-length"), Some("8"));
        let (status, out) = raw_get(addr, format!("/dp/../dp/files/{sha}").as_bytes()).await;
        assert_eq!(status, 404, "{}", String::from_utf8_lossy(&out));
        let _ = stop_tx.send(());
        task.await.unwrap().unwrap();
    }
}
