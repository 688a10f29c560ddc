//! `patchops sync` end to end: the real binary fetches a catalog from a
//! local HTTP server (axum) through a real local forward proxy with Basic
//! authentication (written here; it also opens CONNECT tunnels), on
//! SQLite; over https behind a TLS forwarder whose certificate a private
//! CA issued; verified by a pin or a detached signature. The site server
//! runs the same sync on the SyncHost's schedule when it leads.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{self, patchops, run_with_limit, Proc};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

const USER: &str = "svc-sync";
const PASSWORD: &str = "S3cr3t-Pr0xy-Pa55";
const PW_ENV: &str = "PATCHOPS_TEST_PROXY_PW";

// ---------------------------------------------------------------- origin

struct Catalog {
    body: Vec<u8>,
    etag: String,
    fail: bool,
    /// Served at `/mssecure.xml.sig`.
    signature: Vec<u8>,
}

#[derive(Clone)]
struct Origin {
    catalog: Arc<Mutex<Catalog>>,
    requests: Arc<Mutex<Vec<Option<String>>>>,
}

async fn serve_catalog(State(origin): State<Origin>, headers: HeaderMap) -> Response {
    let inm = headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    origin.requests.lock().unwrap().push(inm.clone());
    let c = origin.catalog.lock().unwrap();
    if c.fail {
        return (StatusCode::INTERNAL_SERVER_ERROR, "down for maintenance").into_response();
    }
    if inm.as_deref() == Some(c.etag.as_str()) {
        return (StatusCode::NOT_MODIFIED, [("etag", c.etag.clone())]).into_response();
    }
    (
        StatusCode::OK,
        [
            ("etag", c.etag.clone()),
            ("last-modified", "Tue, 14 Nov 2006 18:00:00 GMT".to_string()),
        ],
        c.body.clone(),
    )
        .into_response()
}

async fn serve_signature(State(origin): State<Origin>) -> Response {
    let c = origin.catalog.lock().unwrap();
    (StatusCode::OK, c.signature.clone()).into_response()
}

/// Starts the catalog server on its own thread; returns its base URL.
fn start_origin(body: &[u8]) -> (String, Origin) {
    let origin = Origin {
        catalog: Arc::new(Mutex::new(Catalog {
            body: body.to_vec(),
            etag: "\"v1\"".into(),
            fail: false,
            signature: Vec::new(),
        })),
        requests: Arc::new(Mutex::new(Vec::new())),
    };
    let app = axum::Router::new()
        .route("/mssecure.xml", axum::routing::get(serve_catalog))
        .route("/mssecure.xml.sig", axum::routing::get(serve_signature))
        .with_state(origin.clone());
    (format!("http://{}", support::serve_app(app)), origin)
}

// ----------------------------------------------------------------- proxy

/// A forward proxy with Basic authentication: absolute-form `GET
/// http://host:port/path` requests with the right `Proxy-Authorization`
/// are forwarded to the origin and its answer piped back; others get 407.
struct Proxy {
    url: String,
    forwarded: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    /// CONNECT tunnels opened (https:// through the proxy).
    tunnels: Arc<AtomicUsize>,
}

fn start_proxy() -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let forwarded = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let tunnels = Arc::new(AtomicUsize::new(0));
    let (f, r, t) = (forwarded.clone(), refused.clone(), tunnels.clone());
    let expected = format!("Basic {}", base64(format!("{USER}:{PASSWORD}").as_bytes()));
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let (f, r, t, expected) = (f.clone(), r.clone(), t.clone(), expected.clone());
            std::thread::spawn(move || proxy_one(client, &expected, &f, &r, &t));
        }
    });
    Proxy {
        url,
        forwarded,
        refused,
        tunnels,
    }
}

fn proxy_one(
    mut client: TcpStream,
    expected: &str,
    forwarded: &AtomicUsize,
    refused: &AtomicUsize,
    tunnels: &AtomicUsize,
) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut auth = None;
    let mut kept = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "proxy-authorization" => auth = Some(value.trim().to_string()),
            "proxy-connection" | "connection" | "host" => {}
            _ => kept.push(line.to_string()),
        }
    }
    if auth.as_deref() != Some(expected) {
        refused.fetch_add(1, Ordering::SeqCst);
        let _ = client.write_all(
            b"HTTP/1.1 407 Proxy Authentication Required\r\n\
              Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method == "CONNECT" {
        // A tunnel to host:port: 200, then bytes both ways.
        tunnels.fetch_add(1, Ordering::SeqCst);
        let Ok(origin) = TcpStream::connect(target) else {
            let _ = client.write_all(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        };
        let _ = client.set_read_timeout(None);
        if client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .is_err()
        {
            return;
        }
        let (Ok(mut client_r), Ok(mut origin_w)) = (client.try_clone(), origin.try_clone()) else {
            return;
        };
        let up = std::thread::spawn(move || {
            let _ = std::io::copy(&mut client_r, &mut origin_w);
            let _ = origin_w.shutdown(std::net::Shutdown::Write);
        });
        let (mut origin_r, mut client_w) = (origin, client);
        let _ = std::io::copy(&mut origin_r, &mut client_w);
        let _ = client_w.shutdown(std::net::Shutdown::Both);
        let _ = up.join();
        return;
    }
    let Some(rest) = target.strip_prefix("http://") else {
        let _ = client.write_all(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    forwarded.fetch_add(1, Ordering::SeqCst);
    let Ok(mut origin) = TcpStream::connect(authority) else {
        let _ = client.write_all(
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    };
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for line in kept {
        request.push_str(&line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    if origin.write_all(request.as_bytes()).is_err() {
        return;
    }
    let _ = std::io::copy(&mut origin, &mut client);
}

fn base64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                A[((n >> (18 - 6 * i)) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

// ------------------------------------------------------------------ site

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A site whose sync host fetches `catalog_url` through `proxy_url`,
/// pinned to `pin`, into the package source `packages/security`.
fn site(dir: &Path, catalog_url: &str, proxy_url: &str, pin: &str) {
    use std::os::unix::fs::PermissionsExt;
    let source = dir.join("packages/security");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("scan.cmd"), "scan.exe\r\n").unwrap();
    for p in [dir.join("packages"), source.clone()] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(
        source.join("scan.cmd"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(
        dir.join("site.yaml"),
        "apiVersion: patchops/v1\nkind: Site\nmetadata: {name: LAB}\nspec: {siteCode: LAB, siteServer: sms01}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("package.yaml"),
        "apiVersion: patchops/v1\nkind: Package\nmetadata: {name: MS Security Updates}\nspec:\n  source: packages/security\n  programs:\n    - {name: Scan, commandLine: scan.cmd}\n",
    )
    .unwrap();
    set_sync_host(dir, catalog_url, proxy_url, pin);
}

fn set_sync_host(dir: &Path, catalog_url: &str, proxy_url: &str, pin: &str) {
    std::fs::write(
        dir.join("sync-host.yaml"),
        format!(
            "apiVersion: patchops/v1\nkind: SyncHost\nmetadata: {{name: sms01}}\nspec:\n  host: sms01\n  catalogs:\n    - type: security\n      url: {catalog_url}\n      package: MS Security Updates\n      sha256: {pin}\n  proxy:\n    url: {proxy_url}\n    username: {USER}\n    passwordFrom: {{env: {PW_ENV}}}\n"
        ),
    )
    .unwrap();
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn sync(dir: &Path, db: &Path, password: &str, extra: &[&str]) -> Run {
    sync_env(dir, db, password, extra, &[])
}

/// `sync` with more environment variables (a signature key).
fn sync_env(dir: &Path, db: &Path, password: &str, extra: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut cmd = patchops();
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.arg("sync")
        .arg(dir)
        .arg("--state")
        .arg(format!("sqlite://{}", db.display()))
        .args(["--unattended", "--attempts", "3", "--retry-delay", "20ms"])
        .args(["--connect-timeout", "2s", "--timeout", "5s"])
        .args(extra)
        .env(PW_ENV, password);
    let out = run_with_limit(cmd, Duration::from_secs(60));
    let run = Run {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_secret_free(&run, password);
    run
}

fn status_json(db: &Path) -> serde_json::Value {
    let mut cmd = patchops();
    cmd.args(["sync", "status", "--format", "json", "--state"])
        .arg(format!("sqlite://{}", db.display()));
    let out = run_with_limit(cmd, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Neither the password nor the Basic credentials appear anywhere.
fn assert_secret_free(run: &Run, password: &str) {
    let token = base64(format!("{USER}:{password}").as_bytes());
    for (what, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        for secret in [password, PASSWORD, token.as_str()] {
            assert!(!text.contains(secret), "{what} shows a secret:\n{text}");
        }
    }
}

fn catalog_file(dir: &Path) -> PathBuf {
    dir.join("packages/security/mssecure.xml")
}

const V1: &[u8] = b"<BulletinDatastore><Bulletin ID=\"MS06-040\"/></BulletinDatastore>\n";

// ----------------------------------------------------------------- tests

#[test]
fn first_fetch_writes_the_catalog_then_304_changes_nothing() {
    let (origin_url, origin) = start_origin(V1);
    let proxy = start_proxy();
    let tmp = tempfile::tempdir().unwrap();
    let (dir, db) = (tmp.path().join("site"), tmp.path().join("state.db"));
    site(
        &dir,
        &format!("{origin_url}/mssecure.xml"),
        &proxy.url,
        &sha256(V1),
    );

    // 200: written into the package source, stored.
    let run = sync(&dir, &db, PASSWORD, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("new version"), "{}", run.stdout);
    assert!(run.stdout.contains(&sha256(V1)[..12]), "{}", run.stdout);
    assert_eq!(std::fs::read(catalog_file(&dir)).unwrap(), V1);
    assert_eq!(proxy.forwarded.load(Ordering::SeqCst), 1);
    let status = status_json(&db);
    assert_eq!(status[0]["consecutiveFailures"], 0);
    assert_eq!(status[0]["latestVersion"]["sha256"], sha256(V1));
    assert_eq!(status[0]["latestVersion"]["size"], V1.len());
    let inode =
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(catalog_file(&dir)).unwrap());

    // 304: conditional on the stored ETag; nothing written.
    let run = sync(&dir, &db, PASSWORD, &["--format", "json"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let outcome = &doc["hosts"][0]["catalogs"][0];
    assert_eq!(outcome["outcome"], "unchanged", "{doc}");
    assert_eq!(outcome["restored"], false);
    assert_eq!(
        origin.requests.lock().unwrap().clone(),
        vec![None, Some("\"v1\"".to_string())]
    );
    assert_eq!(proxy.forwarded.load(Ordering::SeqCst), 2);
    let inode2 =
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(catalog_file(&dir)).unwrap());
    assert_eq!(inode, inode2, "the file was not rewritten");

    // The next plan sees new content: the source holds the catalog.
    let names: Vec<_> = std::fs::read_dir(dir.join("packages/security"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "no temp file left: {names:?}");
}

#[test]
fn bad_hash_is_refused_and_the_previous_catalog_kept() {
    let (origin_url, origin) = start_origin(V1);
    let proxy = start_proxy();
    let tmp = tempfile::tempdir().unwrap();
    let (dir, db) = (tmp.path().join("site"), tmp.path().join("state.db"));
    site(
        &dir,
        &format!("{origin_url}/mssecure.xml"),
        &proxy.url,
        &sha256(V1),
    );
    assert_eq!(sync(&dir, &db, PASSWORD, &[]).code, 0);

    // The server now serves other bytes; the pin still names V1.
    {
        let mut c = origin.catalog.lock().unwrap();
        c.body = b"<BulletinDatastore>tampered</BulletinDatastore>".to_vec();
        c.etag = "\"v2\"".into();
    }
    let run = sync(&dir, &db, PASSWORD, &[]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("refused"), "{}", run.stdout);
    assert!(
        run.stdout.contains("the previous catalog is kept"),
        "{}",
        run.stdout
    );
    assert_eq!(std::fs::read(catalog_file(&dir)).unwrap(), V1);
    let status = status_json(&db);
    assert_eq!(status[0]["consecutiveFailures"], 1);
    assert_eq!(status[0]["latestVersion"]["sha256"], sha256(V1));
    assert!(status[0]["lastError"].as_str().unwrap().contains("SHA-256"));

    // A catalog without pin or signature is refused before any download.
    std::fs::write(
        dir.join("sync-host.yaml"),
        format!(
            "apiVersion: patchops/v1\nkind: SyncHost\nmetadata: {{name: sms01}}\nspec:\n  host: sms01\n  catalogs:\n    - {{type: security, url: \"{origin_url}/mssecure.xml\", package: MS Security Updates}}\n"
        ),
    )
    .unwrap();
    let before = proxy.forwarded.load(Ordering::SeqCst);
    let run = sync(&dir, &db, PASSWORD, &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("unverified content is never used"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("sha256:"),
        "the help says how to pin: {}",
        run.stdout
    );
    assert_eq!(proxy.forwarded.load(Ordering::SeqCst), before);
    assert_eq!(std::fs::read(catalog_file(&dir)).unwrap(), V1);
}

#[test]
fn wrong_proxy_password_is_a_clear_407_without_the_password() {
    let (origin_url, origin) = start_origin(V1);
    let proxy = start_proxy();
    let tmp = tempfile::tempdir().unwrap();
    let (dir, db) = (tmp.path().join("site"), tmp.path().join("state.db"));
    site(
        &dir,
        &format!("{origin_url}/mssecure.xml"),
        &proxy.url,
        &sha256(V1),
    );

    let wrong = "Wr0ng-Pa55w0rd-Given";
    let run = sync(&dir, &db, wrong, &[]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("407 Proxy Authentication Required"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(USER), "{}", run.stdout);
    assert_eq!(proxy.forwarded.load(Ordering::SeqCst), 0);
    assert_eq!(
        proxy.refused.load(Ordering::SeqCst),
        1,
        "407 is not retried"
    );
    assert!(origin.requests.lock().unwrap().is_empty());
    assert!(!catalog_file(&dir).exists());
    let status = status_json(&db);
    let text = status.to_string();
    assert!(!text.contains(wrong) && !text.contains(PASSWORD), "{text}");
}

#[test]
fn server_down_retries_with_backoff_then_a_clear_status() {
    let proxy = start_proxy();
    let closed = format!("127.0.0.1:{}", support::reserved_port());
    let tmp = tempfile::tempdir().unwrap();
    let (dir, db) = (tmp.path().join("site"), tmp.path().join("state.db"));
    site(
        &dir,
        &format!("http://{closed}/mssecure.xml"),
        &proxy.url,
        &sha256(V1),
    );

    let started = std::time::Instant::now();
    let run = sync(&dir, &db, PASSWORD, &[]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    // The proxy answers 502 for the dead origin: three attempts, two waits
    // of at least 10 ms and 20 ms (the jittered 20 ms and 40 ms).
    assert_eq!(proxy.forwarded.load(Ordering::SeqCst), 3);
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert!(
        run.stdout.contains("gave up after 3 attempts"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("HTTP 502"), "{}", run.stdout);
    assert!(run.stdout.contains("next attempt at"), "{}", run.stdout);
    let s = &status_json(&db)[0];
    assert_eq!(s["consecutiveFailures"], 1);
    assert!(s["lastSuccessMs"].is_null());
    let first_delay = s["nextAttemptMs"].as_i64().unwrap() - s["lastAttemptMs"].as_i64().unwrap();
    assert_eq!(first_delay, 5 * 60 * 1000);

    // Again: the backoff doubles.
    let run = sync(&dir, &db, PASSWORD, &[]);
    assert_eq!(run.code, 1);
    let s = &status_json(&db)[0];
    assert_eq!(s["consecutiveFailures"], 2);
    let delay = s["nextAttemptMs"].as_i64().unwrap() - s["lastAttemptMs"].as_i64().unwrap();
    assert_eq!(delay, 10 * 60 * 1000);

    // An origin answering 500 is retried the same way, then recovers.
    let (origin_url, origin) = start_origin(V1);
    origin.catalog.lock().unwrap().fail = true;
    set_sync_host(
        &dir,
        &format!("{origin_url}/mssecure.xml"),
        &proxy.url,
        &sha256(V1),
    );
    let run = sync(&dir, &db, PASSWORD, &[]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("HTTP 500"), "{}", run.stdout);
    assert_eq!(origin.requests.lock().unwrap().len(), 3);
    origin.catalog.lock().unwrap().fail = false;
    let run = sync(&dir, &db, PASSWORD, &[]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(std::fs::read(catalog_file(&dir)).unwrap(), V1);
}

// ------------------------------------------------- https, signature, server

const KEY_ENV: &str = "PATCHOPS_TEST_CATALOG_KEY";
const KEY: &str = "Catalog-Signing-Key-7f3a9c";
const V2: &[u8] = b"<BulletinDatastore><Bulletin ID=\"MS06-040\"/><Bulletin ID=\"MS06-041\"/></BulletinDatastore>\n";

fn hmac(key: &str, bytes: &[u8]) -> Vec<u8> {
    patchops::sync::verify::hmac_sha256_hex(key.as_bytes(), bytes).into_bytes()
}

fn proxy_yaml(proxy_url: &str) -> String {
    format!("  proxy:\n    url: {proxy_url}\n    username: {USER}\n    passwordFrom: {{env: {PW_ENV}}}\n")
}

/// The sync host `sms01` with one catalog (a YAML flow mapping) and more
/// spec lines (`extra`, indented by two).
fn write_sync_host(dir: &Path, catalog: &str, extra: &str) {
    std::fs::write(
        dir.join("sync-host.yaml"),
        format!(
            "apiVersion: patchops/v1\nkind: SyncHost\nmetadata: {{name: sms01}}\nspec:\n  host: sms01\n{extra}  catalogs:\n    - {catalog}\n"
        ),
    )
    .unwrap();
}

fn pinned(url: &str, pin: &str) -> String {
    format!("{{type: security, url: \"{url}\", package: MS Security Updates, sha256: {pin}}}")
}

fn signed(origin_url: &str) -> String {
    format!(
        "{{type: security, url: \"{origin_url}/mssecure.xml\", package: MS Security Updates, signature: {{url: \"{origin_url}/mssecure.xml.sig\", keyFrom: {{env: {KEY_ENV}}}}}}}"
    )
}

/// An https:// front for the origin: a TLS forwarder with a certificate
/// `ca` issued for `names`.
fn https_front(origin_url: &str, ca: &support::TestCa, names: &[&str], expired: bool) -> String {
    let backend = origin_url.trim_start_matches("http://").parse().unwrap();
    let addr = support::tls_forwarder(backend, &ca.issue(names, expired));
    format!("https://127.0.0.1:{}", addr.port())
}

#[test]
fn https_catalog_through_the_proxy_tunnel_is_trusted_only_with_the_ca_file() {
    let (origin_url, origin) = start_origin(V1);
    let proxy = start_proxy();
    let ca = support::TestCa::new();
    let https = https_front(&origin_url, &ca, &["127.0.0.1"], false);
    let url = format!("{https}/mssecure.xml");
    let tmp = tempfile::tempdir().unwrap();
    let (dir, db) = (tmp.path().join("site"), tmp.path().join("state.db"));
    site(&dir, &url, &proxy.url, &sha256(V1));

    // The system's roots do not hold the private CA: refused at once (a
    // certificate problem is not retried), nothing fetched or written.
    let run = sync(&dir, &db, PASSWORD, &[]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("certificate is not trusted"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("tls: {caFile"), "{}", run.stdout);
    assert_eq!(proxy.tunnels.load(Ordering::SeqCst), 1, "one CONNECT");
    assert!(origin.requests.lock().unwrap().is_empty());
    assert!(!catalog_file(&dir).exists());
    let s = &status_json(&db)[0];
    assert_eq!(s["consecutiveFailures"], 1);
    assert!(
        s["lastError"].as_str().unwrap().contains("not trusted"),
        "{s}"
    );

    // The CA in the repository, named by `tls.caFile`: 200 through the
    // authenticated tunnel, then 304.
    std::fs::write(dir.join("private-ca.pem"), &ca.pem).unwrap();
    let with_ca = format!(
        "{}  tls: {{caFile: private-ca.pem}}\n",
        proxy_yaml(&proxy.url)
    );
    write_sync_host(&dir, &pinned(&url, &sha256(V1)), &with_ca);
    let run = sync(&dir, &db, PASSWORD, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("new version"), "{}", run.stdout);
    assert_eq!(std::fs::read(catalog_file(&dir)).unwrap(), V1);
    assert_eq!(proxy.tunnels.load(Ordering::SeqCst), 2);
    assert_eq!(proxy.forwarded.load(Ordering::SeqCst), 0, "never in clear");
    let run = sync(&dir, &db, PASSWORD, &["--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(run.stdout.contains("\"unchanged\""), "{}", run.stdout);
    assert_eq!(
        origin.requests.lock().unwrap().clone(),
        vec![None, Some("\"v1\"".to_string())]
    );

    // An expired certificate, and one for another host: clear refusals;
    // the catalog in the source stays.
    for (front, expected) in [
        (
            https_front(&origin_url, &ca, &["127.0.0.1"], true),
            "has expired",
        ),
        (
            https_front(&origin_url, &ca, &["catalog.other.example"], false),
            "not valid for this host name",
        ),
    ] {
        let url = format!("{front}/mssecure.xml");
        write_sync_host(&dir, &pinned(&url, &sha256(V1)), &with_ca);
        let run = sync(&dir, &db, PASSWORD, &[]);
        assert_eq!(run.code, 1, "{}", run.stdout);
        assert!(run.stdout.contains(expected), "{expected}: {}", run.stdout);
        assert!(run.stdout.contains("private-ca.pem"), "{}", run.stdout);
        assert_eq!(std::fs::read(catalog_file(&dir)).unwrap(), V1);
    }

    // A wrong proxy password on the CONNECT: the 407, without the password.
    write_sync_host(&dir, &pinned(&url, &sha256(V1)), &with_ca);
    let wrong = "Wr0ng-Tunnel-Pa55";
    let run = sync(&dir, &db, wrong, &[]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("407 Proxy Authentication Required"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(USER), "{}", run.stdout);

    // A caFile that is not in the repository: the manifests are invalid,
    // nothing is fetched.
    let before = proxy.tunnels.load(Ordering::SeqCst);
    let missing = format!(
        "{}  tls: {{caFile: missing-ca.pem}}\n",
        proxy_yaml(&proxy.url)
    );
    write_sync_host(&dir, &pinned(&url, &sha256(V1)), &missing);
    let run = sync(&dir, &db, PASSWORD, &[]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("spec.tls.caFile"), "{}", run.stderr);
    assert!(run.stderr.contains("missing-ca.pem"), "{}", run.stderr);
    assert_eq!(proxy.tunnels.load(Ordering::SeqCst), before);
    assert_eq!(std::fs::read(catalog_file(&dir)).unwrap(), V1);
}

#[test]
fn detached_signature_good_accepted_bad_refused_key_never_shown() {
    let (origin_url, origin) = start_origin(V1);
    origin.catalog.lock().unwrap().signature = hmac(KEY, V1);
    let proxy = start_proxy();
    let tmp = tempfile::tempdir().unwrap();
    let (dir, db) = (tmp.path().join("site"), tmp.path().join("state.db"));
    site(&dir, "http://unused.invalid/x", &proxy.url, &sha256(V1));
    write_sync_host(&dir, &signed(&origin_url), &proxy_yaml(&proxy.url));
    let key = [(KEY_ENV, KEY)];
    let no_key = |run: &Run| {
        for text in [&run.stdout, &run.stderr] {
            assert!(!text.contains(KEY), "the key is shown:\n{text}");
        }
    };

    // A good signature: accepted.
    let run = sync_env(&dir, &db, PASSWORD, &["--format", "json"], &key);
    no_key(&run);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        doc["hosts"][0]["catalogs"][0]["outcome"], "updated",
        "{doc}"
    );
    assert_eq!(std::fs::read(catalog_file(&dir)).unwrap(), V1);

    // New bytes under the old signature: refused, the previous version
    // kept in the source and the store.
    {
        let mut c = origin.catalog.lock().unwrap();
        c.body = V2.to_vec();
        c.etag = "\"v2\"".into();
    }
    let run = sync_env(&dir, &db, PASSWORD, &[], &key);
    no_key(&run);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stdout.contains("refused"), "{}", run.stdout);
    assert!(run.stdout.contains("does not verify"), "{}", run.stdout);
    assert!(
        run.stdout.contains("the previous catalog is kept"),
        "{}",
        run.stdout
    );
    assert_eq!(std::fs::read(catalog_file(&dir)).unwrap(), V1);
    let status = status_json(&db);
    assert!(!status.to_string().contains(KEY));
    assert_eq!(status[0]["latestVersion"]["sha256"], sha256(V1));
    assert_eq!(status[0]["consecutiveFailures"], 1);
    assert!(
        status[0]["lastError"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{status}"
    );

    // A signature made with another key is refused the same way.
    origin.catalog.lock().unwrap().signature = hmac("another-key", V2);
    let run = sync_env(&dir, &db, PASSWORD, &[], &key);
    no_key(&run);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("does not verify"), "{}", run.stdout);
    assert_eq!(std::fs::read(catalog_file(&dir)).unwrap(), V1);

    // The publisher signs the new catalog: accepted.
    origin.catalog.lock().unwrap().signature = hmac(KEY, V2);
    let run = sync_env(&dir, &db, PASSWORD, &[], &key);
    no_key(&run);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(run.stdout.contains("new version"), "{}", run.stdout);
    assert_eq!(std::fs::read(catalog_file(&dir)).unwrap(), V2);

    // Without the key in the environment: a clear error naming where it
    // was looked for; nothing changes.
    let run = sync(&dir, &db, PASSWORD, &[]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stdout.contains(KEY_ENV), "{}", run.stdout);
    assert_eq!(std::fs::read(catalog_file(&dir)).unwrap(), V2);
}

/// A GET over plain HTTP/1.1 (the server's /metrics and /healthz).
fn http_get(base: &str, path: &str) -> String {
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

fn wait_for(within: Duration, what: &str, logs: &[&Path], check: impl FnMut() -> bool) {
    let logs = || {
        logs.iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n-----\n")
    };
    support::wait_until_blocking(within, what, logs, check);
}

/// Whether the current version of a package on the DP holds `bytes`.
fn dp_holds(dir: &Path, bytes: &[u8]) -> bool {
    let sha = sha256(bytes);
    let Ok(packages) = std::fs::read_dir(dir.join("dp/dp-hq/packages")) else {
        return false;
    };
    packages.flatten().any(|p| {
        let Ok(version) = std::fs::read_to_string(p.path().join("current")) else {
            return false;
        };
        let manifest = p
            .path()
            .join("versions")
            .join(format!("{}.json", version.trim()));
        std::fs::read_to_string(manifest).is_ok_and(|m| m.contains(&sha))
            && dir
                .join("dp/dp-hq/files")
                .join(&sha[..2])
                .join(&sha)
                .is_file()
    })
}

/// Two servers share one store; the leader runs the unattended sync host
/// on its 2-second schedule (never the attended one), stores each attempt
/// as `patchops sync` does, backs off after a refusal, and the DP receives
/// each new catalog; the follower syncs nothing until the leader dies.
#[test]
fn the_leading_server_syncs_on_schedule_and_refreshes_the_dp() {
    let (origin_url, origin) = start_origin(V1);
    origin.catalog.lock().unwrap().signature = hmac(KEY, V1);
    let proxy = start_proxy();
    let tmp = tempfile::tempdir().unwrap();
    let (dir, db) = (tmp.path().join("site"), tmp.path().join("state.db"));
    site(&dir, "http://unused.invalid/x", &proxy.url, &sha256(V1));
    std::fs::write(
        dir.join("package.yaml"),
        "apiVersion: patchops/v1\nkind: Package\nmetadata: {name: MS Security Updates}\nspec:\n  source: packages/security\n  distributionPoints: [dp-hq]\n  updateDistributionPoints: {every: 2s}\n  programs:\n    - {name: Scan, commandLine: scan.cmd}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("dp.yaml"),
        "apiVersion: patchops/v1\nkind: DistributionPoint\nmetadata: {name: dp-hq}\nspec: {path: dp/dp-hq, url: \"http://127.0.0.1:9\"}\n",
    )
    .unwrap();
    write_sync_host(
        &dir,
        &signed(&origin_url),
        &format!(
            "  schedule: {{every: 2s}}\n  unattended: true\n{}",
            proxy_yaml(&proxy.url)
        ),
    );
    // An attended sync host: run by hand only.
    let attended = format!("{origin_url}/mssecure.xml?attended");
    std::fs::write(
        dir.join("sync-host-attended.yaml"),
        format!(
            "apiVersion: patchops/v1\nkind: SyncHost\nmetadata: {{name: sms02}}\nspec:\n  host: sms02\n  schedule: {{every: 2s}}\n  unattended: false\n  catalogs:\n    - {{type: office, url: \"{attended}\", package: MS Security Updates, sha256: {}}}\n",
            sha256(V1)
        ),
    )
    .unwrap();
    let state = format!("sqlite://{}", db.display());
    let server = |n: usize| {
        let log = tmp.path().join(format!("server-{n}.log"));
        let mut cmd = patchops();
        // DP paths in manifests are relative to the working directory.
        cmd.current_dir(&dir)
            .args(["server", "--state", &state, "--listen", "127.0.0.1:0"])
            .args(["--enroll-secret-from", "env:TEST_ENROLL"])
            .args(["--refresh", "1s", "--interval", "3s", "--manifests"])
            .arg(&dir)
            .env("TEST_ENROLL", "enroll-secret-for-sync-tests")
            .env("PATCHOPS_LOG", "info,patchops::server::reconcile=debug")
            .env(PW_ENV, PASSWORD)
            .env(KEY_ENV, KEY);
        let server = Proc::start(cmd, &log);
        let base = server.base.clone();
        (server, base, log)
    };
    let (leader, leader_base, leader_log) = server(1);
    wait_for(
        Duration::from_secs(20),
        "the first server leads",
        &[&leader_log],
        || http_get(&leader_base, "/healthz").contains("\"leader\":true"),
    );
    let (follower, follower_base, follower_log) = server(2);
    let logs = [leader_log.as_path(), follower_log.as_path()];

    // The first scheduled sync writes V1; the reconcile puts it on the DP.
    wait_for(Duration::from_secs(30), "V1 on the DP", &logs, || {
        std::fs::read(catalog_file(&dir)).is_ok_and(|b| b == V1) && dp_holds(&dir, V1)
    });
    let s = status_json(&db);
    let synced: Vec<&str> = s
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["url"].as_str().unwrap())
        .collect();
    assert_eq!(synced, vec![format!("{origin_url}/mssecure.xml")], "{s}");
    assert_eq!(s[0]["consecutiveFailures"], 0, "{s}");
    assert!(s[0]["lastSuccessMs"].is_i64(), "{s}");

    // The publisher releases V2: the schedule fetches it, the DP gets it.
    {
        let mut c = origin.catalog.lock().unwrap();
        c.body = V2.to_vec();
        c.etag = "\"v2\"".into();
        c.signature = hmac(KEY, V2);
    }
    wait_for(Duration::from_secs(30), "V2 on the DP", &logs, || {
        std::fs::read(catalog_file(&dir)).is_ok_and(|b| b == V2) && dp_holds(&dir, V2)
    });

    // A badly signed V3: refused, V2 kept, and the next attempt backs off
    // (at least a minute) instead of following the 2-second schedule.
    {
        let mut c = origin.catalog.lock().unwrap();
        c.body = b"<BulletinDatastore>tampered</BulletinDatastore>\n".to_vec();
        c.etag = "\"v3\"".into();
    }
    wait_for(
        Duration::from_secs(30),
        "the refusal recorded",
        &logs,
        || status_json(&db)[0]["consecutiveFailures"] == 1,
    );
    let s = &status_json(&db)[0];
    assert!(
        s["lastError"].as_str().unwrap().contains("signature"),
        "{s}"
    );
    let wait = s["nextAttemptMs"].as_i64().unwrap() - s["lastAttemptMs"].as_i64().unwrap();
    assert!(wait >= 60_000, "{s}");
    // Two checks of the schedules later (each at most an interval apart),
    // the origin has had no request.
    let requests = origin.requests.lock().unwrap().len();
    let checks = || {
        std::fs::read_to_string(&leader_log)
            .unwrap_or_default()
            .matches("schedules checked")
            .count()
    };
    let checked = checks();
    wait_for(
        Duration::from_secs(30),
        "two schedule checks",
        &logs,
        || checks() >= checked + 2,
    );
    assert_eq!(
        origin.requests.lock().unwrap().len(),
        requests,
        "backed off"
    );
    assert_eq!(std::fs::read(catalog_file(&dir)).unwrap(), V2);
    assert!(dp_holds(&dir, V2));

    // Metrics and logs: the leader synced, the follower did not.
    let metrics = http_get(&leader_base, "/metrics");
    let count = |outcome: &str| -> u64 {
        let prefix = format!("patchops_sync_total{{outcome=\"{outcome}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix}: {metrics}"))
    };
    assert_eq!(count("refused"), 1, "{metrics}");
    assert!(count("updated") >= 2, "{metrics}");
    let follower_text = std::fs::read_to_string(&follower_log).unwrap();
    assert!(!follower_text.contains("scheduled sync"), "{follower_text}");
    assert!(http_get(&follower_base, "/healthz").contains("\"leader\":false"));
    let leader_text = std::fs::read_to_string(&leader_log).unwrap();
    assert!(leader_text.contains("scheduled sync"), "{leader_text}");
    for text in [&leader_text, &follower_text] {
        assert!(!text.contains(KEY) && !text.contains(PASSWORD), "{text}");
    }

    // The leader dies: the follower leads. The store says the next
    // attempt is a minute away; a sync by hand (the publisher fixed the
    // catalog) succeeds and makes it due in 2 s, and the new leader runs
    // it and refreshes the DP with the file the hand sync wrote.
    drop(leader);
    wait_for(Duration::from_secs(20), "the follower leads", &logs, || {
        http_get(&follower_base, "/healthz").contains("\"leader\":true")
    });
    {
        let mut c = origin.catalog.lock().unwrap();
        c.body = V1.to_vec();
        c.etag = "\"v4\"".into();
        c.signature = hmac(KEY, V1);
    }
    let run = sync_env(&dir, &db, PASSWORD, &["--host", "sms01"], &[(KEY_ENV, KEY)]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(std::fs::read(catalog_file(&dir)).unwrap(), V1);
    wait_for(Duration::from_secs(30), "V1 back on the DP", &logs, || {
        dp_holds(&dir, V1) && !dp_holds(&dir, V2)
    });
    wait_for(
        Duration::from_secs(30),
        "the new leader syncs",
        &logs,
        || std::fs::read_to_string(&follower_log).is_ok_and(|t| t.contains("scheduled sync")),
    );
    let attended_seen = status_json(&db)
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["url"] == attended.as_str());
    assert!(!attended_seen, "the attended sync host never runs");
    drop(follower);
}
