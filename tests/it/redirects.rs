//! No client of the site API follows a redirect: the agent (enrollment
//! secret, token) and `--site` (admin token), driven through the real
//! binary against a server A that redirects to B, which redirects to C on
//! another port (another origin). C records every request; it must see
//! none, and the agent must not take its policy.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{self, patchops, run_with_limit};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Router;
use tempfile::TempDir;

const ENROLL: &str = "enroll-secret-for-redirect-tests";
const ADMIN: &str = "admin-token-for-redirect-tests";

/// What the foreign server C saw: each request's path and Authorization.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

const FOREIGN_POLICY: &str = r#"{"machine":"wks-test-01","version":7,"format":"patchops-policy/v1","client":{"pollingIntervalSeconds":60,"jitterSeconds":0,"heartbeatIntervalSeconds":600},"assignments":[],"programs":[]}"#;

/// C: answers everything as a site server would, and records it.
fn foreign_server() -> (String, Seen) {
    let seen: Seen = Arc::default();
    async fn answer(State(seen): State<Seen>, request: Request) -> Response {
        let auth = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let path = request.uri().path().to_string();
        seen.lock().unwrap().push((path.clone(), auth));
        let body = match path.as_str() {
            "/v1/register" => r#"{"machine":"wks-test-01","token":"foreign-token"}"#,
            "/v1/policy" => FOREIGN_POLICY,
            "/v1/inventory" => r#"{"machine":"wks-test-01","policyVersion":7}"#,
            _ => r#"{"ok":null}"#,
        };
        let mut response = Response::new(Body::from(body));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        response
    }
    let app = Router::new().fallback(answer).with_state(seen.clone());
    (format!("http://{}", support::serve_app(app)), seen)
}

/// A server that answers every request with a 307 to the same path on `to`.
fn redirector(to: String) -> String {
    async fn redirect(State(to): State<String>, request: Request) -> Response {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
        let location = format!("{to}{}", request.uri().path());
        response
            .headers_mut()
            .insert(header::LOCATION, location.parse().unwrap());
        response
    }
    let app = Router::new().fallback(redirect).with_state(to);
    format!("http://{}", support::serve_app(app))
}

/// A → B → C; returns A, B and what C saw.
fn two_hops() -> (String, String, Seen) {
    let (c, seen) = foreign_server();
    let b = redirector(c);
    let a = redirector(b.clone());
    (a, b, seen)
}

#[test]
fn api_clients_do_not_follow_redirects_to_another_origin() {
    let (a, b, seen) = two_hops();
    let dir = TempDir::new().unwrap();
    let state_dir = dir.path().join("agent");
    let mut cmd = patchops();
    cmd.args(["agent", "--once", "--format", "json", "--server", &a])
        .args(["--enroll-secret-from", "env:TEST_ENROLL"])
        .args(["--name", "wks-test-01", "--timeout", "5s"])
        .arg("--state-dir")
        .arg(&state_dir)
        .env("TEST_ENROLL", ENROLL);
    let out = run_with_limit(cmd, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said = format!("{stdout}{stderr}");
    assert!(
        said.contains(&format!("redirect to {b}/v1/register"))
            && said.contains("does not follow redirects"),
        "the refusal names the target: {said}"
    );
    assert!(!said.contains(ENROLL), "{said}");
    assert_eq!(*seen.lock().unwrap(), vec![], "C must see nothing");
    // No foreign token or policy was taken.
    for file in ["token", "policy.json"] {
        assert!(!state_dir.join(file).exists(), "{file} written: {said}");
    }
    assert!(!said.contains("foreign-token"), "{said}");

    // The admin client: `plan --site` refuses as clearly.
    let site = dir.path().join("site");
    support::copy_dir(&support::repo().join("examples/site"), &site);
    let mut cmd = patchops();
    cmd.current_dir(dir.path())
        .args([
            "plan",
            "site",
            "--site",
            &a,
            "--token-from",
            "env:ADMIN_TOKEN",
        ])
        .env("ADMIN_TOKEN", ADMIN);
    let out = run_with_limit(cmd, Duration::from_secs(60));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains(&format!("redirect to {b}/v1/admin"))
            && said.contains("does not follow redirects"),
        "{said}"
    );
    assert!(!said.contains(ADMIN), "{said}");
    assert_eq!(*seen.lock().unwrap(), vec![], "C must see nothing");
}
