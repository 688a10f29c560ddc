//! The connection limits of the real `patchops server` and `patchops dp
//! serve` binaries, driven over raw TCP on loopback: half-sent requests are
//! closed after their timeouts, the connection cap holds and says so once,
//! an oversized `Content-Length` is refused at once, refusals are JSON, and
//! SIGTERM ends the process within its shutdown deadline.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{patchops, Proc};
use serde_json::Value;
use tempfile::TempDir;

/// A running server binary (killed on drop, by its [`Proc`]) and its
/// `host:port`.
struct Running {
    proc: Proc,
    addr: String,
}

impl Running {
    /// `patchops server` on an empty store, with `extra` arguments.
    fn server(dir: &Path, extra: &[&str]) -> Running {
        let log = dir.join("server.log");
        let state = format!("sqlite://{}", dir.join("site.db").display());
        let mut cmd = patchops();
        cmd.args(["server", "--state", &state, "--listen", "127.0.0.1:0"])
            .args(["--enroll-secret-from", "env:TEST_ENROLL"])
            .args(extra)
            .env("TEST_ENROLL", "enroll-secret-for-tests");
        let proc = Proc::start(cmd, &log);
        let addr = proc.base.trim_start_matches("http://").to_string();
        Running { proc, addr }
    }

    /// `patchops dp serve` on an empty content library.
    fn dp(dir: &Path, extra: &[&str]) -> Running {
        let root = dir.join("dp");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join(".patchops-dp"), b"").unwrap();
        let log = dir.join("dp.log");
        let mut cmd = patchops();
        cmd.args(["dp", "serve", "--listen", "127.0.0.1:0", "--path"])
            .arg(&root)
            .args(extra);
        let proc = Proc::start(cmd, &log);
        let addr = proc.base.trim_start_matches("http://").to_string();
        Running { proc, addr }
    }

    fn connect(&self) -> TcpStream {
        let tcp = TcpStream::connect(&self.addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        tcp
    }

    fn log(&self) -> String {
        self.proc.log()
    }
}

/// Reads until the server closes the connection; returns what arrived and
/// how long it took.
fn read_to_close(tcp: &mut TcpStream) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "the server kept the connection open for {:?}: {e}",
                started.elapsed()
            ),
        }
    }
    (out, started.elapsed())
}

/// An HTTP response's status code and JSON body.
fn parse_response(raw: &[u8]) -> (u16, String, Value) {
    let text = String::from_utf8_lossy(raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP response: {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let json = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, head.to_ascii_lowercase(), json)
}

/// One complete request on its own connection, read to its end.
fn request(server: &Running, request: &str) -> (u16, String, Value) {
    let mut tcp = server.connect();
    tcp.write_all(request.as_bytes()).unwrap();
    let (raw, _) = read_to_close(&mut tcp);
    parse_response(&raw)
}

const HALF_HEADER: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: patchops\r\nX-Slow: ";

#[test]
fn half_sent_request_is_closed_after_the_header_timeout() {
    let dir = TempDir::new().unwrap();
    let server = Running::server(dir.path(), &["--header-timeout", "1s"]);
    let dp = Running::dp(dir.path(), &["--header-timeout", "1s"]);
    for running in [&server, &dp] {
        let mut tcp = running.connect();
        tcp.write_all(HALF_HEADER).unwrap();
        let (_, waited) = read_to_close(&mut tcp);
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
            "closed after {waited:?}, the header timeout is 1 s"
        );
    }
}

#[test]
fn body_that_never_finishes_is_refused_after_the_body_timeout() {
    let dir = TempDir::new().unwrap();
    let server = Running::server(dir.path(), &["--body-timeout", "1s"]);
    let mut tcp = server.connect();
    tcp.write_all(
        b"POST /v1/register HTTP/1.1\r\nHost: patchops\r\nAuthorization: Bearer x\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":",
    )
    .unwrap();
    let (raw, waited) = read_to_close(&mut tcp);
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "answered after {waited:?}, the body timeout is 1 s"
    );
    let (status, _, body) = parse_response(&raw);
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("did not arrive within 1 s"), "{error:?}");
}

#[test]
fn connections_over_the_cap_wait_and_the_cap_is_logged_once() {
    let dir = TempDir::new().unwrap();
    let server = Running::server(
        dir.path(),
        &["--max-connections", "4", "--header-timeout", "1s"],
    );
    // Six slow clients: four are served (and time out), two wait.
    let slow: Vec<TcpStream> = (0..6)
        .map(|_| {
            let mut tcp = server.connect();
            tcp.write_all(HALF_HEADER).unwrap();
            tcp
        })
        .collect();
    // A legitimate request behind them is answered once they time out.
    let (status, _, body) = request(
        &server,
        "GET /healthz HTTP/1.1\r\nHost: patchops\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    drop(slow);
    let log = server.log();
    assert_eq!(
        log.matches("the connection limit is reached").count(),
        1,
        "one line, not one per wait: {log}"
    );
}

#[test]
fn content_length_over_the_limit_is_refused_at_once_with_413() {
    let dir = TempDir::new().unwrap();
    // Long timeouts: the answer must not wait for them.
    let server = Running::server(
        dir.path(),
        &[
            "--max-body",
            "4096",
            "--body-timeout",
            "60s",
            "--header-timeout",
            "30s",
        ],
    );
    let mut tcp = server.connect();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(
        b"POST /v1/inventory HTTP/1.1\r\nHost: patchops\r\nAuthorization: Bearer x\r\n\
          Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n",
    )
    .unwrap();
    let (raw, waited) = read_to_close(&mut tcp);
    assert!(waited < Duration::from_secs(3), "answered after {waited:?}");
    let (status, head, body) = parse_response(&raw);
    assert_eq!(status, 413, "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("limit of 4096 bytes"), "{error:?}");
}

#[test]
fn refusals_without_a_handler_are_json_like_every_other_error() {
    let dir = TempDir::new().unwrap();
    let server = Running::server(dir.path(), &["--max-body", "64"]);
    let (status, head, body) = request(
        &server,
        "GET /v1/nope HTTP/1.1\r\nHost: patchops\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 404, "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );

    let (status, head, body) = request(
        &server,
        "GET /v1/status HTTP/1.1\r\nHost: patchops\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 405, "{head}");
    assert!(head.contains("allow: post"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("method"), "{error:?}");

    // A chunked body (no Content-Length) over the limit: refused while read.
    let chunk = "x".repeat(200);
    let (status, head, body) = request(
        &server,
        &format!(
            "POST /v1/register HTTP/1.1\r\nHost: patchops\r\nAuthorization: Bearer x\r\n\
             Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
            chunk.len()
        ),
    );
    assert_eq!(status, 413, "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
}

#[test]
fn sigterm_exits_within_the_shutdown_deadline_with_a_half_sent_request() {
    let dir = TempDir::new().unwrap();
    // Timeouts far beyond the deadline: only the deadline can end it.
    let limits = [
        "--shutdown-deadline",
        "1s",
        "--header-timeout",
        "30s",
        "--body-timeout",
        "120s",
    ];
    let mut server = Running::server(dir.path(), &limits);
    let mut dp = Running::dp(dir.path(), &limits);
    let mut held = Vec::new();
    for running in [&server, &dp] {
        // A request whose body never ends, and one whose headers never end.
        let mut body = running.connect();
        body.write_all(
            b"POST /v1/register HTTP/1.1\r\nHost: patchops\r\nAuthorization: Bearer x\r\n\
              Content-Length: 100\r\n\r\n{",
        )
        .unwrap();
        let mut header = running.connect();
        header.write_all(HALF_HEADER).unwrap();
        held.push((body, header));
    }
    for running in [&mut server, &mut dp] {
        // Answered after the held connections were accepted (the accept
        // queue is first in, first out): they are the server's own now.
        let (status, _, _) = request(
            running,
            "GET /healthz HTTP/1.1\r\nHost: patchops\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(status, 200);
        let started = Instant::now();
        let status = running.proc.terminate(Duration::from_secs(6));
        let waited = started.elapsed();
        assert_eq!(
            status.code(),
            Some(0),
            "exit after {waited:?}: {}",
            running.log()
        );
    }
    drop(held);
}
