//! The API contract, fuzzed: schemathesis (PyPI, `pip install
//! schemathesis`) generates requests from the live server's
//! `/openapi.json`, valid and invalid, and checks every answer against the
//! document: no 5xx, only documented status codes, content types, headers
//! and bodies, invalid input refused, credentials enforced. Each operation
//! is run with the credential its `security` names (the enrollment secret,
//! an enrolled agent's token, the admin token, or none), read from the
//! document itself. The document's request examples (one machine of the
//! example inventory) must be accepted; generated requests are checked by
//! every other check. Afterwards the server must still be serving and must
//! not have panicked.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::support::{self, patchops, Proc};
use serde_json::{json, Value};
use tempfile::TempDir;

const ENROLL: &str = "enroll-secret-for-contract-tests";
const ADMIN: &str = "admin-token-for-contract-tests";
/// Fixed, so that a run can be replayed; `PATCHOPS_SCHEMATHESIS_SEED`
/// tries others.
const SEED: &str = "20261206";
/// Test cases per operation and phase: enough to reach every documented
/// status of every operation, small enough for well under a minute.
const EXAMPLES: &str = "60";

/// The schemathesis command, or a failure that says how to install it: the
/// contract test is part of the suite, never skipped.
fn schemathesis() -> Command {
    let program = std::env::var("SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".into());
    let version = Command::new(&program).arg("--version").output();
    match version {
        Ok(out) if out.status.success() => {}
        _ => panic!(
            "schemathesis is not installed (`{program} --version` did not run): \
             install it with `pip install 'schemathesis>=4.32,<5'` (.ci/run does), or set \
             SCHEMATHESIS to its path"
        ),
    }
    Command::new(program)
}

fn client() -> reqwest::Client {
    support::http_client(Duration::from_secs(30))
}

/// The operations of one credential.
#[derive(Default)]
struct Group {
    /// Every operation's id.
    all: Vec<String>,
    /// Those that take a request body: each body's schema has examples.
    with_body: Vec<String>,
}

/// The credential each operation needs, by the security scheme its
/// `security` names (`None`: no credential): operations per scheme.
fn operations_by_scheme(document: &Value) -> BTreeMap<Option<String>, Group> {
    let mut groups: BTreeMap<Option<String>, Group> = BTreeMap::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            let schemes: Vec<String> = operation["security"]
                .as_array()
                .map(|requirements| {
                    requirements
                        .iter()
                        .flat_map(|r| r.as_object().expect("requirement").keys().cloned())
                        .collect()
                })
                .unwrap_or_default();
            assert!(
                schemes.len() <= 1,
                "{method} {path}: one credential per operation, not {schemes:?}"
            );
            let group = groups.entry(schemes.into_iter().next()).or_default();
            group.all.push(id.to_string());
            if let Some(body) = operation.get("requestBody") {
                let schema = &body["content"]["application/json"]["schema"];
                let name = schema["$ref"]
                    .as_str()
                    .and_then(|r| r.strip_prefix("#/components/schemas/"))
                    .unwrap_or_else(|| panic!("{method} {path}: a body schema by $ref: {schema}"));
                let examples = &document["components"]["schemas"][name]["examples"];
                assert!(
                    examples.as_array().is_some_and(|e| !e.is_empty()),
                    "{method} {path}: {name} has no examples (#[schema(examples(…))])"
                );
                group.with_body.push(id.to_string());
            }
        }
    }
    groups
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_server_keeps_its_openapi_contract_under_schemathesis() {
    let schemathesis_program = schemathesis();
    let dir = TempDir::new().expect("tmp");
    let state = format!("sqlite://{}", dir.path().join("site.db").display());
    support::apply_example(dir.path(), &state);
    let log = dir.path().join("server.log");
    let mut cmd = patchops();
    cmd.current_dir(dir.path())
        .args(["server", "--state", &state, "--listen", "127.0.0.1:0"])
        .args(["--enroll-secret-from", "env:TEST_ENROLL"])
        .args(["--admin-token-from", "env:TEST_ADMIN"])
        // Reconciling from the applied manifests: `/healthz` then carries
        // its `leader` and `reconcile` members too.
        .args(["--manifests", "site", "--interval", "1h"])
        .args(["--token-cache-ttl", "0s"])
        .env("TEST_ENROLL", ENROLL)
        .env("TEST_ADMIN", ADMIN);
    let mut server = Proc::start(cmd, &log);
    let base = server.base.clone();

    let document: Value = client()
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .expect("openapi.json")
        .json_body()
        .await;
    // The agent the examples speak of (its inventory and reports are
    // accepted only with its own token).
    let agent = document["components"]["schemas"]["RegisterRequest"]["examples"][0]["name"]
        .as_str()
        .expect("a registration example")
        .to_string();
    let register = client()
        .post(format!("{base}/v1/register"))
        .bearer_auth(ENROLL)
        .body(json!({ "name": agent }).to_string())
        .send()
        .await
        .expect("register");
    assert_eq!(register.status(), reqwest::StatusCode::OK, "register");
    let registered: Value = register.json_body().await;
    let agent_token = registered["token"].as_str().expect("token").to_string();
    let groups = operations_by_scheme(&document);
    let credential = |scheme: &Option<String>| -> Option<String> {
        match scheme.as_deref() {
            None => None,
            Some("enrollmentSecret") => Some(ENROLL.to_string()),
            Some("agentToken") => Some(agent_token.clone()),
            Some("adminToken") => Some(ADMIN.to_string()),
            Some(other) => panic!("no credential for the security scheme {other:?}"),
        }
    };
    // Registration last: its example names the test agent's machine, which
    // is enrolled already (409 by the re-registration rule); generated
    // names enroll new machines, which must not change what the other
    // groups see.
    let mut order: Vec<&Option<String>> = groups.keys().collect();
    order.sort_by_key(|scheme| scheme.as_deref() == Some("enrollmentSecret"));

    let seed = std::env::var("PATCHOPS_SCHEMATHESIS_SEED").unwrap_or_else(|_| SEED.into());
    let mut failures = Vec::new();
    for scheme in order {
        let group = &groups[scheme];
        let who = scheme.as_deref().unwrap_or("no credential");
        // The examples with every check, `positive_data_acceptance` too:
        // each is a request the server takes. Then generated requests with
        // every check but two:
        // - `positive_data_acceptance` expects any schema-valid body to be
        //   accepted, but a machine name's grammar, the inventory's ranges
        //   and the rules between fields (docs/inventory.md) are the
        //   server's to check, answered 400 with what was wrong; the
        //   document gives the types;
        // - `negative_data_rejection` expects every schema-violating body
        //   to be refused, but serde's derived structs also take a JSON
        //   array of their fields in order (`"hardware": [512, 11776]`),
        //   which the document does not offer (docs/server.md).
        let passes: [(&str, &[String], &[&str]); 2] = [
            (
                "examples",
                &group.with_body,
                &["--phases", "examples", "--checks", "all"],
            ),
            (
                "generated",
                &group.all,
                &[
                    "--phases",
                    "coverage,fuzzing",
                    "--checks",
                    "all",
                    "--exclude-checks",
                    "positive_data_acceptance,negative_data_rejection",
                ],
            ),
        ];
        for (pass, operations, checks) in passes {
            if operations.is_empty() {
                continue;
            }
            let mut st = Command::new(schemathesis_program.get_program());
            st.current_dir(dir.path())
                .args(["run", &format!("{base}/openapi.json")])
                .args(checks)
                .args(["--max-examples", EXAMPLES, "--seed", &seed])
                .args(["--workers", "1", "--generation-database", "none"])
                .args(["--request-timeout", "10", "--no-color"])
                .env("NO_COLOR", "1");
            for id in operations {
                st.args(["--include-operation-id", id]);
            }
            if let Some(token) = credential(scheme) {
                st.args(["--header", &format!("Authorization: Bearer {token}")]);
            }
            let out = tokio::task::spawn_blocking(move || {
                support::run_with_limit(st, Duration::from_secs(120))
            })
            .await
            .expect("schemathesis run");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!("== schemathesis, {who}, {pass}: {operations:?}\n{text}");
            if !out.status.success() {
                failures.push(format!(
                    "{who}, {pass} ({operations:?}): exit {:?}",
                    out.status.code()
                ));
            }
            // Every operation of the group was tested, not filtered away.
            let tested = format!("Tested: {}", operations.len());
            if !text.contains(&tested) {
                failures.push(format!("{who}, {pass} ({operations:?}): no {tested:?}"));
            }
        }
    }

    // Still serving, and nothing panicked along the way.
    let health = client()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz after the run");
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    assert!(
        server.child.try_wait().expect("server status").is_none(),
        "the server exited"
    );
    let server_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !server_log.contains("panicked"),
        "the server panicked:\n{server_log}"
    );
    assert!(
        failures.is_empty(),
        "schemathesis found contract violations (its report is above): {failures:#?}"
    );
}

/// A response's body as JSON, or a failure that shows it.
trait JsonBody {
    async fn json_body(self) -> Value;
}

impl JsonBody for reqwest::Response {
    async fn json_body(self) -> Value {
        let status = self.status();
        let bytes = self.bytes().await.expect("body");
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{status}: not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    }
}
