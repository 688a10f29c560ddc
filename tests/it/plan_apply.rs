//! plan/apply through the real binary, on SQLite and on PostgreSQL: every
//! story runs on both backends.

use std::fs;

use crate::support::{copy_dir, patchops, repo, text, Backend, Site};
use serde_json::Value;

/// What these tests do to a site beyond running commands.
trait SiteExt {
    fn plan_json(&self, extra: &[&str]) -> Value;
    /// Replaces the first `from` in the site file `rel` with `to`.
    fn edit(&self, rel: &str, from: &str, to: &str);
}

impl SiteExt for Site {
    fn plan_json(&self, extra: &[&str]) -> Value {
        let mut args = vec!["plan", "site", "--format", "json"];
        args.extend_from_slice(extra);
        serde_json::from_str(&self.ok(&args)).unwrap()
    }

    fn edit(&self, rel: &str, from: &str, to: &str) {
        let path = self.path(rel);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{rel} has no {from:?}");
        fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn changes(plan: &Value) -> Vec<String> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}/{}",
                c["action"].as_str().unwrap(),
                c["kind"].as_str().unwrap(),
                c["name"].as_str().unwrap()
            )
        })
        .collect()
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(super::Backend::Sqlite) })*
        }
        mod postgres {
            $(#[test] fn $name() { super::$name(super::Backend::Postgres) })*
        }
    };
}

on_both_backends!(
    plan_apply_plan_round_trip_is_no_changes,
    an_edit_shows_exactly_its_field_diff,
    a_saved_plan_applies_once_then_is_stale,
    a_plan_from_another_store_is_refused,
    a_tampered_plan_is_refused,
    signed_plans_need_the_key,
    only_owned_objects_are_pruned,
    protected_objects_are_not_deleted,
    the_deletion_guard_trips_on_a_nearly_empty_dir,
    a_held_lock_blocks_then_releases,
    an_expired_lease_is_taken_over,
    force_unlock_releases_a_lock,
    no_terminal_and_no_flag_refuses,
    history_and_state_record_the_applies,
    secrets_never_reach_plans_or_state,
    targets_limit_plan_and_apply,
    a_stored_spec_changed_behind_its_hash_is_planned_as_drift,
    a_stale_lock_taken_over_on_the_same_host_says_so_in_one_line,
);

fn plan_apply_plan_round_trip_is_no_changes(backend: Backend) {
    let site = Site::on(backend);
    let first = site.plan_json(&[]);
    assert_eq!(
        first["summary"],
        serde_json::json!({"add": 19, "change": 0, "destroy": 0})
    );
    let out = site.ok(&["apply", "site", "--auto-approve", "--color", "never"]);
    assert!(
        out.contains("Plan: 19 to add, 0 to change, 0 to destroy."),
        "{out}"
    );
    assert!(
        out.contains("Apply complete: 19 added, 0 changed, 0 destroyed. State serial 1."),
        "{out}"
    );
    let again = site.run(&["plan", "site", "--detailed-exitcode", "--color", "never"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));
    assert!(text(&again.stdout).contains("No changes."));
    // Spelling differences are not changes.
    site.edit(
        "site/site.yaml",
        "pollingInterval: 60m",
        "pollingInterval: 1h",
    );
    site.edit(
        "site/security/collections.yaml",
        "os.name like 'Microsoft Windows%'",
        "OS.Name LIKE 'Microsoft Windows%'",
    );
    assert_eq!(
        site.run(&["plan", "site", "--detailed-exitcode"])
            .status
            .code(),
        Some(0)
    );
}

fn an_edit_shows_exactly_its_field_diff(backend: Backend) {
    let site = Site::on(backend);
    site.ok(&["apply", "site", "--auto-approve"]);
    site.edit(
        "site/security/package.yaml",
        "maxRunTime: 30m",
        "maxRunTime: 45m",
    );
    let plan = site.plan_json(&[]);
    assert_eq!(changes(&plan), vec!["update Package/MS Security Updates"]);
    let change = &plan["changes"][0];
    assert_eq!(
        change["fields"],
        serde_json::json!([{"path": "spec.programs[\"Security Updates Tool Sync\"].maxRunTime", "before": "30m", "after": "45m"}])
    );
    let dependents: Vec<&str> = change["dependents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        dependents,
        vec![
            "MS Security Updates",
            "MS Security Updates (Pre-production)",
            "MS Security Updates Sync",
            "sms01",
            "Security Updates 2026-11"
        ]
    );
    let human = site.run(&["plan", "site", "--detailed-exitcode", "--color", "never"]);
    assert_eq!(human.status.code(), Some(2));
    let human = text(&human.stdout);
    assert!(
        human.contains("~ update Package \"MS Security Updates\"  (security/package.yaml:2)"),
        "{human}"
    );
    assert!(
        human.contains(
            "~ spec.programs[\"Security Updates Tool Sync\"].maxRunTime: \"30m\" → \"45m\""
        ),
        "{human}"
    );
    assert!(
        human.contains("Plan: 0 to add, 1 to change, 0 to destroy."),
        "{human}"
    );
}

fn a_saved_plan_applies_once_then_is_stale(backend: Backend) {
    let site = Site::on(backend);
    site.ok(&["plan", "site", "--out", "plan.json"]);
    let applied = site.ok(&["apply", "plan.json"]);
    assert!(applied.contains("Apply complete: 19 added"), "{applied}");
    let again = site.run(&["apply", "plan.json"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("the plan is stale: it was made against serial 0 of the state, which is now at serial 1"), "{}", text(&again.stderr));
}

fn a_plan_from_another_store_is_refused(backend: Backend) {
    let site = Site::on(backend);
    site.ok(&["plan", "site", "--out", "plan.json"]);
    let other = format!("sqlite://{}", site.path("other.db").display());
    let out = site.run(&["apply", "plan.json", "--state", &other]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the plan was made for another state store"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        site.plan_json(&[])["summary"]["add"],
        19,
        "nothing was applied"
    );
}

fn a_tampered_plan_is_refused(backend: Backend) {
    let site = Site::on(backend);
    site.ok(&["plan", "site", "--out", "plan.json"]);
    let plan = fs::read_to_string(site.path("plan.json")).unwrap();
    fs::write(
        site.path("plan.json"),
        plan.replacen("scanwrapper.exe /cache", "evil.exe /cache", 1),
    )
    .unwrap();
    let out = site.run(&["apply", "plan.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("checksum does not match"),
        "{}",
        text(&out.stderr)
    );
    fs::write(site.path("plan.json"), &plan[..plan.len() / 2]).unwrap();
    let out = site.run(&["apply", "plan.json"]);
    assert!(
        text(&out.stderr).contains("is not a patchops plan"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        site.plan_json(&[])["summary"]["add"],
        19,
        "nothing was applied"
    );
}

fn signed_plans_need_the_key(backend: Backend) {
    let site = Site::on(backend);
    fs::write(site.path("key"), "plan-signing-key\n").unwrap();
    fs::write(site.path("other-key"), "another-key\n").unwrap();
    site.ok(&[
        "plan",
        "site",
        "--out",
        "plan.json",
        "--sign-key-from",
        "file:key",
    ]);
    let wrong = site.run(&["apply", "plan.json", "--sign-key-from", "file:other-key"]);
    assert!(
        text(&wrong.stderr).contains("signature is not valid"),
        "{}",
        text(&wrong.stderr)
    );
    site.ok(&["apply", "plan.json", "--sign-key-from", "file:key"]);
}

fn only_owned_objects_are_pruned(backend: Backend) {
    let site = Site::on(backend);
    site.ok(&["apply", "site", "--auto-approve"]);
    site.ok(&["state", "unmanage", "DistributionPoint/dp-branch"]);
    // The unmanaged DP is adopted back while declared...
    assert_eq!(
        changes(&site.plan_json(&[])),
        vec!["adopt DistributionPoint/dp-branch"]
    );
    site.ok(&["apply", "site", "--auto-approve"]);
    site.ok(&["state", "unmanage", "DistributionPoint/dp-branch"]);
    // ...and left alone once it is not.
    let dps = site.path("site/distribution-points.yaml");
    let text_dps = fs::read_to_string(&dps).unwrap();
    fs::write(&dps, text_dps.split("\n---\n").next().unwrap()).unwrap();
    for file in [
        "site/security/package.yaml",
        "site/office/package.yaml",
        "site/software-updates/security-2026-11.yaml",
    ] {
        site.edit(file, "[dp-hq, dp-branch]", "[dp-hq]");
    }
    let plan = site.plan_json(&[]);
    assert!(
        !changes(&plan).iter().any(|c| c.starts_with("delete")),
        "{:?}",
        changes(&plan)
    );
    assert_eq!(
        plan["unmanaged"],
        serde_json::json!(["DistributionPoint/dp-branch"])
    );
}

fn protected_objects_are_not_deleted(backend: Backend) {
    let site = Site::on(backend);
    site.edit(
        "site/distribution-points.yaml",
        "  name: dp-branch\n",
        "  name: dp-branch\n  annotations: {patchops/protect: \"true\"}\n",
    );
    site.ok(&["apply", "site", "--auto-approve"]);
    let dps = site.path("site/distribution-points.yaml");
    let text_dps = fs::read_to_string(&dps).unwrap();
    fs::write(&dps, text_dps.split("\n---\n").next().unwrap()).unwrap();
    for file in [
        "site/security/package.yaml",
        "site/office/package.yaml",
        "site/software-updates/security-2026-11.yaml",
    ] {
        site.edit(file, "[dp-hq, dp-branch]", "[dp-hq]");
    }
    let out = site.run(&["plan", "site", "--allow-destroy", "--color", "never"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("the plan would delete protected objects: DistributionPoint/dp-branch"),
        "{}",
        text(&out.stderr)
    );
}

fn the_deletion_guard_trips_on_a_nearly_empty_dir(backend: Backend) {
    let site = Site::on(backend);
    site.ok(&["apply", "site", "--auto-approve"]);
    fs::create_dir(site.path("wrong")).unwrap();
    fs::copy(site.path("site/site.yaml"), site.path("wrong/site.yaml")).unwrap();
    let out = site.run(&["plan", "wrong", "--color", "never"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the plan would delete 18 of 19 managed objects"),
        "{}",
        text(&out.stderr)
    );
    let out = site.run(&["apply", "wrong", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1));
    // An empty directory is not even a site.
    fs::create_dir(site.path("empty")).unwrap();
    let out = site.run(&["plan", "empty", "--color", "never"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("no manifests found in empty"),
        "{}",
        text(&out.stdout)
    );
    let allowed = site.ok(&[
        "apply",
        "wrong",
        "--auto-approve",
        "--allow-destroy",
        "--color",
        "never",
    ]);
    assert!(allowed.contains("18 destroyed"), "{allowed}");
}

fn lock_request(host: &str, pid: u32, lease_ms: u64) -> patchops::records::LockRequest {
    patchops::records::LockRequest {
        id: format!("test-lock-{host}-{pid}"),
        holder: "someone".into(),
        host: host.into(),
        pid,
        command: "patchops apply elsewhere".into(),
        lease: std::time::Duration::from_millis(lease_ms),
    }
}

fn a_held_lock_blocks_then_releases(backend: Backend) {
    let site = Site::on(backend);
    let rt = runtime();
    let store = rt
        .block_on(patchops::store::Store::open(site.state()))
        .unwrap();
    // Held by this (live) test process, a real process other than the binary.
    let request = lock_request(&patchops::ops::host_name(), std::process::id(), 60_000);
    assert!(rt.block_on(store.try_lock(&request)).unwrap().is_ok());
    let blocked = site.run(&["apply", "site", "--auto-approve", "--color", "never"]);
    assert_eq!(blocked.status.code(), Some(1));
    let err = text(&blocked.stderr);
    assert!(
        err.contains("the state is locked by someone on")
            && err.contains("`patchops apply elsewhere`")
            && err.contains(&request.id),
        "{err}"
    );
    // A waiting apply goes ahead once the holder lets go.
    let mut waiting = patchops();
    waiting
        .current_dir(site.dir())
        .env("PATCHOPS_STATE", site.state())
        .args(["apply", "site", "--auto-approve", "--lock-timeout", "30s"]);
    let mut child = waiting
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It says that it waits, and for whom; then it is still waiting, with
    // nothing applied, until the holder lets go.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut said).unwrap();
    assert!(
        said.starts_with("waiting up to 30 s for the state lock, held by someone on "),
        "{said}"
    );
    assert!(child.try_wait().unwrap().is_none(), "it did not wait");
    let history = |site: &Site| site.ok(&["history", "--format", "json"]);
    assert_eq!(
        history(&site).trim(),
        "[]",
        "applied while the lock was held"
    );
    let released = jiff::Timestamp::now();
    assert!(rt.block_on(store.unlock(&request.id)).unwrap());
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(out.status.success(), "{said}{rest}");
    assert!(text(&out.stdout).contains("Apply complete: 19 added"));
    // The apply started after the release.
    let records: serde_json::Value = serde_json::from_str(&history(&site)).unwrap();
    let started: jiff::Timestamp = records[0]["startedAt"].as_str().unwrap().parse().unwrap();
    assert!(
        started >= released - jiff::SignedDuration::from_secs(1),
        "{started} {released}"
    );
}

fn an_expired_lease_is_taken_over(backend: Backend) {
    let site = Site::on(backend);
    let rt = runtime();
    let store = rt
        .block_on(patchops::store::Store::open(site.state()))
        .unwrap();
    // A holder on another host that died: its one-second lease runs out.
    assert!(rt
        .block_on(store.try_lock(&lock_request("other-host", 4242, 1_000)))
        .unwrap()
        .is_ok());
    let out = site.run(&["apply", "site", "--auto-approve", "--lock-timeout", "20s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A dead holder on this host is taken over at once, even with a long lease.
    site.edit("site/site.yaml", "jitter: 5m", "jitter: 6m");
    assert!(rt
        .block_on(store.try_lock(&lock_request(&patchops::ops::host_name(), 999_999, 600_000)))
        .unwrap()
        .is_ok());
    let out = site.run(&["apply", "site", "--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn force_unlock_releases_a_lock(backend: Backend) {
    let site = Site::on(backend);
    let rt = runtime();
    let store = rt
        .block_on(patchops::store::Store::open(site.state()))
        .unwrap();
    let request = lock_request("other-host", 1, 600_000);
    assert!(rt.block_on(store.try_lock(&request)).unwrap().is_ok());
    assert_eq!(
        site.run(&["apply", "site", "--auto-approve"]).status.code(),
        Some(1)
    );
    assert!(site
        .ok(&["force-unlock", &request.id])
        .contains("Released lock"));
    assert_eq!(
        site.run(&["force-unlock", &request.id]).status.code(),
        Some(1)
    );
    site.ok(&["apply", "site", "--auto-approve"]);
}

fn no_terminal_and_no_flag_refuses(backend: Backend) {
    let site = Site::on(backend);
    let out = site.run(&["apply", "site", "--color", "never"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no terminal to ask for approval; nothing was applied"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(site.plan_json(&[])["summary"]["add"], 19);
}

fn history_and_state_record_the_applies(backend: Backend) {
    let site = Site::on(backend);
    site.ok(&["apply", "site", "--auto-approve"]);
    site.edit("site/site.yaml", "jitter: 5m", "jitter: 10m");
    site.ok(&["apply", "site", "--auto-approve"]);
    let history: Value = serde_json::from_str(&site.ok(&["history", "--format", "json"])).unwrap();
    let rows = history.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (
            rows[0]["serial"].as_i64(),
            rows[0]["changed"].as_i64(),
            rows[0]["actor"].as_str()
        ),
        (Some(2), Some(1), Some("tester"))
    );
    assert_eq!(
        rows[0]["changes"][0]["fields"],
        serde_json::json!(["spec.clientPolicy.jitter"])
    );
    assert_eq!(
        (rows[1]["serial"].as_i64(), rows[1]["added"].as_i64()),
        (Some(1), Some(19))
    );
    assert!(rows[0]["planHash"].as_str().unwrap().starts_with("sha256:"));
    let list = site.ok(&["state", "list"]);
    assert!(
        list.contains("Site/LAB  serial 2") && list.contains("19 objects"),
        "{list}"
    );
    let show = site.ok(&[
        "state",
        "show",
        "Collection/MS Security Updates (Pre-production)",
    ]);
    assert!(
        show.contains("purpose: preProduction")
            && show.contains("- wks-test-01")
            && show.contains("file: security/collections.yaml"),
        "{show}"
    );
    assert_eq!(
        site.run(&["state", "show", "Collection/Nope"])
            .status
            .code(),
        Some(1)
    );
}

fn secrets_never_reach_plans_or_state(backend: Backend) {
    let site = Site::on(backend);
    let secret = "very-secret-proxy-password-42";
    let mut cmd = patchops();
    cmd.current_dir(site.dir())
        .env("PATCHOPS_STATE", site.state())
        .env("PATCHOPS_PROXY_PASSWORD", secret);
    let out = cmd
        .args(["plan", "site", "--out", "plan.json", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let plan = fs::read_to_string(site.path("plan.json")).unwrap();
    assert!(
        plan.contains("PATCHOPS_PROXY_PASSWORD"),
        "the reference is kept"
    );
    for haystack in [text(&out.stdout), text(&out.stderr), plan] {
        assert!(!haystack.contains(secret));
    }
    site.ok(&["apply", "plan.json"]);
    let show = site.ok(&["state", "show", "SyncHost/sms01", "--format", "json"]);
    assert!(show.contains("PATCHOPS_PROXY_PASSWORD") && !show.contains(secret));
    if let Backend::Sqlite = backend {
        let db = fs::read(site.path("state.db")).unwrap();
        assert!(!db.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }
}

fn targets_limit_plan_and_apply(backend: Backend) {
    let site = Site::on(backend);
    let plan = site.plan_json(&[
        "--target",
        "DistributionPoint/dp-hq",
        "--target",
        "Site/LAB",
    ]);
    assert_eq!(
        changes(&plan),
        vec!["create Site/LAB", "create DistributionPoint/dp-hq"]
    );
    site.ok(&[
        "apply",
        "site",
        "--auto-approve",
        "--target",
        "DistributionPoint/dp-hq",
    ]);
    assert_eq!(site.plan_json(&[])["summary"]["add"], 18);
    let out = site.run(&["plan", "site", "--target", "Package/Nope"]);
    assert!(
        text(&out.stderr).contains("--target Package/Nope: no such object"),
        "{}",
        text(&out.stderr)
    );
    let out = site.run(&["plan", "site", "--target", "Pkg/x"]);
    assert_eq!(out.status.code(), Some(2), "a bad target is a usage error");
}

#[test]
fn postgres_unreachable_is_a_clear_error_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("examples/site"), &dir.path().join("site"));
    let start = std::time::Instant::now();
    let out = patchops()
        .current_dir(dir.path())
        .args([
            "plan",
            "site",
            "--state",
            "postgres://patchops:pw-not-shown@127.0.0.1:1/site",
            "--color",
            "never",
        ])
        .output()
        .unwrap();
    assert!(start.elapsed() < std::time::Duration::from_secs(8));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot reach the state store postgres://patchops:***@127.0.0.1:1/site"),
        "{err}"
    );
    assert!(!err.contains("pw-not-shown"));
}

#[test]
fn a_corrupt_sqlite_file_is_refused_and_kept() {
    let site = Site::new();
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(site.path("state.db"), &garbage).unwrap();
    let out = site.run(&["apply", "site", "--auto-approve", "--color", "never"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is not a patchops state store"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        fs::read(site.path("state.db")).unwrap(),
        garbage,
        "nothing lost"
    );
}

#[test]
fn a_read_only_sqlite_file_is_refused_and_kept() {
    use std::os::unix::fs::PermissionsExt;
    let site = Site::new();
    site.ok(&["apply", "site", "--auto-approve"]);
    site.edit("site/site.yaml", "jitter: 5m", "jitter: 7m");
    let db = site.path("state.db");
    let before = fs::read(&db).unwrap();
    fs::set_permissions(&db, fs::Permissions::from_mode(0o444)).unwrap();
    let plan = site.run(&["plan", "site", "--detailed-exitcode"]);
    assert_eq!(
        plan.status.code(),
        Some(2),
        "reading a read-only state works: {}",
        text(&plan.stderr)
    );
    let out = site.run(&["apply", "site", "--auto-approve", "--color", "never"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("read-only"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(fs::read(&db).unwrap(), before, "nothing lost");
}

/// Runs one SQL statement on the store behind patchops' back.
fn edit_store_behind_patchops(backend: Backend, state: &str, sql: &'static str) -> u64 {
    use sqlx::Connection;
    runtime().block_on(async {
        match backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(state).await.unwrap();
                sqlx::query(sql)
                    .execute(&mut conn)
                    .await
                    .unwrap()
                    .rows_affected()
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(state).await.unwrap();
                sqlx::query(sql)
                    .execute(&mut conn)
                    .await
                    .unwrap()
                    .rows_affected()
            }
        }
    })
}

fn a_stored_spec_changed_behind_its_hash_is_planned_as_drift(backend: Backend) {
    let site = Site::on(backend);
    site.ok(&["apply", "site", "--auto-approve"]);
    // The spec is edited, its hash left as it was: the hash alone says
    // "unchanged".
    let edited = edit_store_behind_patchops(
        backend,
        site.state(),
        "UPDATE patchops_objects SET spec = replace(spec, '\"maxRunTime\":\"30m\"', '\"maxRunTime\":\"5h\"') \
         WHERE kind = 'Package' AND name = 'MS Security Updates'",
    );
    assert_eq!(edited, 1);
    let plan = site.plan_json(&[]);
    assert_eq!(changes(&plan), vec!["update Package/MS Security Updates"]);
    let change = &plan["changes"][0];
    assert_eq!(change["stored_object_corrupt"], true, "{change}");
    assert_eq!(
        change["fields"],
        serde_json::json!([{"path": "spec.programs[\"Security Updates Tool Sync\"].maxRunTime", "before": "5h", "after": "30m"}])
    );
    let human = site.run(&["plan", "site", "--detailed-exitcode", "--color", "never"]);
    assert_eq!(human.status.code(), Some(2), "drift is a change");
    let shown = text(&human.stdout);
    assert!(
        shown.contains("~ update Package \"MS Security Updates\"")
            && shown.contains(
                "! the stored object does not match its hash: the state was changed outside patchops; apply rewrites it"
            )
            && shown.contains("Plan: 0 to add, 1 to change, 0 to destroy."),
        "{shown}"
    );
    let out = site.ok(&["apply", "site", "--auto-approve", "--color", "never"]);
    assert!(
        out.contains("Apply complete: 0 added, 1 changed, 0 destroyed. State serial 2."),
        "{out}"
    );
    let again = site.run(&["plan", "site", "--detailed-exitcode", "--color", "never"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));
    assert!(text(&again.stdout).contains("No changes."));
    let show = site.ok(&["state", "show", "Package/MS Security Updates"]);
    assert!(
        show.contains("maxRunTime: 30m") && !show.contains("maxRunTime: 5h"),
        "{show}"
    );
}

/// The pid of a process of this host that has exited.
fn a_dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

fn a_stale_lock_taken_over_on_the_same_host_says_so_in_one_line(backend: Backend) {
    let site = Site::on(backend);
    let rt = runtime();
    let store = rt
        .block_on(patchops::store::Store::open(site.state()))
        .unwrap();
    // An apply on this host that died holding the lock, its lease still
    // long: the record as the store writes it.
    let dead = lock_request(&patchops::ops::host_name(), a_dead_pid(), 600_000);
    assert!(rt.block_on(store.try_lock(&dead)).unwrap().is_ok());
    let holder = rt.block_on(store.lock_holder()).unwrap().unwrap();
    assert_eq!(holder.id, dead.id);
    let out = site.run(&["apply", "site", "--auto-approve", "--color", "never"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    let said: Vec<&str> = err.lines().filter(|l| l.contains("lock")).collect();
    assert_eq!(
        said,
        vec![format!(
            "took over the state lock {} of someone on this host (pid {}, no longer running), held since {}",
            dead.id, dead.pid, holder.acquired_at
        )],
        "{err}"
    );
    assert!(text(&out.stdout).contains("Apply complete: 19 added"));
    // The dead holder's lock is gone; the apply released its own.
    assert_eq!(rt.block_on(store.lock_holder()).unwrap(), None);

    // A live holder is not taken over, and nothing is said about a takeover.
    let live = lock_request(&patchops::ops::host_name(), std::process::id(), 600_000);
    assert!(rt.block_on(store.try_lock(&live)).unwrap().is_ok());
    site.edit("site/site.yaml", "jitter: 5m", "jitter: 6m");
    let blocked = site.run(&["apply", "site", "--auto-approve", "--color", "never"]);
    assert_eq!(blocked.status.code(), Some(1));
    assert!(
        !text(&blocked.stderr).contains("took over"),
        "{}",
        text(&blocked.stderr)
    );
    assert!(rt.block_on(store.unlock(&live.id)).unwrap());
}

#[test]
fn a_zero_byte_state_file_is_an_error_not_a_new_store() {
    let site = Site::new();
    let db = site.path("state.db");
    fs::write(&db, b"").unwrap();
    for args in [
        &["plan", "site", "--color", "never"][..],
        &["apply", "site", "--auto-approve", "--color", "never"][..],
        &["state", "list", "--color", "never"][..],
    ] {
        let out = site.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!(
                "sqlite://{} is not a patchops state store: it is an empty file (0 bytes)",
                db.display()
            )),
            "{args:?}: {err}"
        );
        assert!(text(&out.stdout).is_empty(), "{args:?}: nothing planned");
        assert_eq!(
            fs::read(&db).unwrap(),
            b"",
            "{args:?}: the file is kept empty"
        );
        for side in ["state.db-wal", "state.db-shm", "state.db-journal"] {
            assert!(!site.path(side).exists(), "{args:?}: {side} created");
        }
    }
    // A missing file is still a new store.
    fs::remove_file(&db).unwrap();
    let out = site.ok(&["apply", "site", "--auto-approve", "--color", "never"]);
    assert!(out.contains("Apply complete: 19 added"), "{out}");
    assert!(fs::metadata(&db).unwrap().len() > 0);
}
