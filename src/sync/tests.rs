//! The fetcher against raw local servers (acting as the proxy), and the
//! promise that no error shows the proxy password.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::secret::Secret;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

const PASSWORD: &str = "Pr0xy-P4ss-w0rd!";

/// What a raw server does with one request.
#[derive(Clone)]
enum Answer {
    /// Write these bytes and close.
    Raw(Vec<u8>),
    /// Never answer.
    Hang,
}

/// A raw HTTP server on 127.0.0.1: answers every request with `answer`,
/// records the request heads.
async fn raw_server(answer: Answer) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let answer = answer.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                match answer {
                    Answer::Raw(bytes) => {
                        let _ = socket.write_all(&bytes).await;
                        let _ = socket.shutdown().await;
                    }
                    Answer::Hang => tokio::time::sleep(Duration::from_secs(60)).await,
                }
            });
        }
    });
    (format!("http://{addr}"), seen)
}

fn response(status: &str, headers: &[&str], body: &[u8]) -> Answer {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    Answer::Raw(bytes)
}

fn fast() -> FetchOptions {
    FetchOptions {
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_millis(800),
        attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(4),
        max_bytes: 1024,
        ca_file: None,
    }
}

fn proxy(url: &str) -> ProxyConfig {
    ProxyConfig {
        url: url.to_string(),
        username: Some("svc-sync".into()),
        password: Some(Secret::new(PASSWORD.as_bytes().to_vec())),
    }
}

/// Records every delay instead of sleeping.
fn recording() -> (Sleep, Arc<Mutex<Vec<Duration>>>) {
    let delays = Arc::new(Mutex::new(Vec::new()));
    let d = delays.clone();
    let sleep: Sleep = Arc::new(move |delay| {
        d.lock().unwrap().push(delay);
        Box::pin(async {})
    });
    (sleep, delays)
}

use super::fetch::Sleep;

fn assert_no_secret(what: &str, e: &SyncError) {
    let token = BASE64.encode(format!("svc-sync:{PASSWORD}"));
    for text in [e.to_string(), format!("{e:?}")] {
        assert!(!text.contains(PASSWORD), "{what}: password in {text}");
        assert!(!text.contains(&token), "{what}: header in {text}");
    }
}

#[tokio::test]
async fn fetches_through_the_proxy_with_credentials_and_conditionally() {
    let body = b"<catalog v=1/>";
    let (url, seen) = raw_server(response(
        "200 OK",
        &[
            "ETag: \"v1\"",
            "Last-Modified: Tue, 14 Nov 2006 18:00:00 GMT",
        ],
        body,
    ))
    .await;
    let fetcher = Fetcher::new(Some(proxy(&url)), fast()).unwrap();
    let got = fetcher
        .fetch(
            "http://catalog.invalid/mssecure.xml",
            &Conditional::default(),
        )
        .await
        .unwrap();
    use sha2::Digest;
    assert_eq!(
        got,
        Fetched::New {
            bytes: body.to_vec(),
            sha256: hex::encode(sha2::Sha256::digest(body)),
            etag: Some("\"v1\"".into()),
            last_modified: Some("Tue, 14 Nov 2006 18:00:00 GMT".into()),
        }
    );
    let head = seen.lock().unwrap()[0].clone();
    assert!(
        head.starts_with("GET http://catalog.invalid/mssecure.xml HTTP/1.1\r\n"),
        "{head}"
    );
    let token = BASE64.encode(format!("svc-sync:{PASSWORD}"));
    assert!(
        head.to_ascii_lowercase().contains(&format!(
            "proxy-authorization: basic {}",
            token.to_ascii_lowercase()
        )),
        "{head}"
    );
    assert!(!format!("{fetcher:?}").contains(PASSWORD));

    // Conditional: the validators go out; 304 is NotModified.
    let (url, seen) = raw_server(response("304 Not Modified", &[], b"")).await;
    let fetcher = Fetcher::new(Some(proxy(&url)), fast()).unwrap();
    let previous = Conditional {
        etag: Some("\"v1\"".into()),
        last_modified: Some("Tue, 14 Nov 2006 18:00:00 GMT".into()),
    };
    let got = fetcher
        .fetch("http://catalog.invalid/mssecure.xml", &previous)
        .await
        .unwrap();
    assert_eq!(got, Fetched::NotModified);
    let head = seen.lock().unwrap()[0].to_ascii_lowercase();
    assert!(head.contains("if-none-match: \"v1\""), "{head}");
    assert!(
        head.contains("if-modified-since: tue, 14 nov 2006"),
        "{head}"
    );
}

#[tokio::test]
async fn retries_server_errors_with_backoff_then_gives_up() {
    let (url, seen) = raw_server(response("500 Internal Server Error", &[], b"oops")).await;
    let (sleep, delays) = recording();
    let fetcher = Fetcher::new(Some(proxy(&url)), fast())
        .unwrap()
        .with_sleep(sleep);
    let err = fetcher
        .fetch("http://catalog.invalid/c.xml", &Conditional::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, SyncError::GaveUp { attempts: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("HTTP 500"), "{err}");
    assert_eq!(seen.lock().unwrap().len(), 3);
    let delays = delays.lock().unwrap().clone();
    assert_eq!(delays.len(), 2);
    assert!(delays[0] >= Duration::from_micros(500) && delays[0] <= Duration::from_millis(1));
    assert!(delays[1] >= Duration::from_millis(1) && delays[1] <= Duration::from_millis(2));

    // A 404 is not transient: one attempt.
    let (url, seen) = raw_server(response("404 Not Found", &[], b"")).await;
    let fetcher = Fetcher::new(Some(proxy(&url)), fast()).unwrap();
    let err = fetcher
        .fetch("http://catalog.invalid/c.xml", &Conditional::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, SyncError::Status { status: 404, .. }),
        "{err}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}

/// Every error path, with a password set: none shows it.
#[tokio::test]
async fn no_error_shows_the_proxy_password() {
    let mut errors: Vec<(&str, SyncError)> = Vec::new();
    let target = "http://catalog.invalid/mssecure.xml";
    let none = Conditional::default();
    async fn get(fetcher: Fetcher) -> SyncError {
        let target = "http://catalog.invalid/mssecure.xml";
        fetcher
            .fetch(target, &Conditional::default())
            .await
            .unwrap_err()
    }

    // Credentials in the proxy URL.
    errors.push((
        "url credentials",
        Fetcher::new(
            Some(ProxyConfig {
                url: format!("http://svc-sync:{PASSWORD}@127.0.0.1:9"),
                ..proxy("")
            }),
            fast(),
        )
        .unwrap_err(),
    ));
    // A password that is not UTF-8 / not a header value.
    errors.push((
        "binary password",
        Fetcher::new(
            Some(ProxyConfig {
                password: Some(Secret::new(vec![0xff, 0xfe])),
                ..proxy("http://127.0.0.1:9")
            }),
            fast(),
        )
        .unwrap_err(),
    ));
    errors.push((
        "password without user",
        Fetcher::new(
            Some(ProxyConfig {
                username: None,
                ..proxy("http://127.0.0.1:9")
            }),
            fast(),
        )
        .unwrap_err(),
    ));
    errors.push((
        "bad proxy url",
        Fetcher::new(Some(proxy("not a url")), fast()).unwrap_err(),
    ));
    // The proxy is down: connection refused (after retries).
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (sleep, _) = recording();
    let e = get(
        Fetcher::new(Some(proxy(&format!("http://{closed}"))), fast())
            .unwrap()
            .with_sleep(sleep),
    )
    .await;
    assert!(e.to_string().contains("connection refused"), "{e}");
    errors.push(("proxy down", e));
    // 407.
    let (url, _) = raw_server(response(
        "407 Proxy Authentication Required",
        &["Proxy-Authenticate: Basic realm=\"p\""],
        b"",
    ))
    .await;
    let e = get(Fetcher::new(Some(proxy(&url)), fast()).unwrap()).await;
    assert!(matches!(e, SyncError::ProxyAuth { .. }), "{e}");
    assert!(e.to_string().contains("407"), "{e}");
    errors.push(("407", e));
    // A hang: the time-out (after retries).
    let (url, _) = raw_server(Answer::Hang).await;
    let (sleep, _) = recording();
    let options = FetchOptions {
        attempts: 1,
        timeout: Duration::from_millis(300),
        ..fast()
    };
    let e = get(Fetcher::new(Some(proxy(&url)), options)
        .unwrap()
        .with_sleep(sleep))
    .await;
    assert!(matches!(e, SyncError::Timeout { .. }), "{e}");
    errors.push(("timeout", e));
    // Too large, by Content-Length.
    let (url, _) = raw_server(response("200 OK", &[], &[b'x'; 2048])).await;
    let e = get(Fetcher::new(Some(proxy(&url)), fast()).unwrap()).await;
    assert!(matches!(e, SyncError::TooLarge { .. }), "{e}");
    errors.push(("too large", e));
    // Too large, streamed (no Content-Length).
    let mut chunked = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
    chunked.extend_from_slice(&[b'x'; 4096]);
    let (url, _) = raw_server(Answer::Raw(chunked)).await;
    let e = get(Fetcher::new(Some(proxy(&url)), fast()).unwrap()).await;
    assert!(matches!(e, SyncError::TooLarge { .. }), "{e}");
    errors.push(("too large streamed", e));
    // A transfer cut short.
    let (url, _) = raw_server(Answer::Raw(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort".to_vec(),
    ))
    .await;
    let (sleep, _) = recording();
    let e = get(Fetcher::new(Some(proxy(&url)), fast())
        .unwrap()
        .with_sleep(sleep))
    .await;
    assert!(matches!(e, SyncError::GaveUp { .. }), "{e}");
    errors.push(("cut short", e));
    // 500s: gave up.
    let (url, _) = raw_server(response("503 Service Unavailable", &[], b"")).await;
    let (sleep, _) = recording();
    let e = get(Fetcher::new(Some(proxy(&url)), fast())
        .unwrap()
        .with_sleep(sleep))
    .await;
    errors.push(("503", e));
    // https and other schemes; a missing file.
    let fetcher = Fetcher::new(Some(proxy("http://127.0.0.1:9")), fast()).unwrap();
    for u in [
        "https://c.invalid/x",
        "ftp://c.invalid/x",
        "file:///nonexistent/x.xml",
    ] {
        errors.push(("scheme", fetcher.fetch(u, &none).await.unwrap_err()));
    }
    // Verification failures and their messages.
    errors.push((
        "hash",
        verify::check(
            target,
            b"x",
            &"0".repeat(64),
            &Verification::Sha256("1".repeat(64)),
            None,
        )
        .unwrap_err(),
    ));

    for (what, e) in &errors {
        assert_no_secret(what, e);
        assert!(!e.to_string().is_empty());
    }
    assert!(errors.len() >= 15);
}

#[test]
fn summary_diff_names_new_revised_and_removed_lines() {
    let before = "MS06-001 rev 1\nMS06-002 rev 1\nMS06-003 rev 1\n";
    let after = "MS06-001 rev 1\nMS06-002 rev 2\nMS06-004 rev 1\n";
    let diff = summary_diff(Some(before), after);
    assert_eq!(
        diff,
        "- MS06-002 rev 1\n- MS06-003 rev 1\n+ MS06-002 rev 2\n+ MS06-004 rev 1\n"
    );
    assert_eq!(summary_diff(None, "a\n"), "+ a\n");
    assert_eq!(summary_diff(Some("a\n"), "a\n"), "");
}

#[test]
fn failure_delay_doubles_up_to_the_schedule() {
    let day = Duration::from_secs(86_400);
    assert_eq!(failure_delay(1, day), Duration::from_secs(300));
    assert_eq!(failure_delay(2, day), Duration::from_secs(600));
    assert_eq!(failure_delay(40, day), day);
    assert_eq!(
        failure_delay(3, Duration::from_secs(600)),
        Duration::from_secs(600)
    );
}

#[test]
fn atomic_write_replaces_the_file_with_mode_0644() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mssecure.xml");
    std::fs::write(&path, b"old").unwrap();
    write_atomically(&path, b"new").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"new");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    // No temp file left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // Into a missing directory: a clear error.
    let err = write_atomically(&dir.path().join("missing/x.xml"), b"x").unwrap_err();
    assert!(err.to_string().starts_with("cannot write"), "{err}");
}
