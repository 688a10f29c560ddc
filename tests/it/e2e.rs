//! The whole loop with real processes: a git repository of manifests, the
//! site server reconciling from it (`--git-pull`), a distribution point
//! served over HTTP and three agents (a workstation, a server and a
//! pre-production client), each with its own state directory and facts.
//! A new advertisement committed to the repository reaches the agents,
//! which download, verify, run and report; the server is SIGKILLed while
//! the agents hold queued status messages and comes back without losing or
//! duplicating one; tampered DP content is refused and reported. A second
//! test commits invalid manifests and reads the error, with its file and
//! line, from `patchops status site`, locally and through `--site`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, git, patchops, run_with_limit, Proc};
use serde_json::{json, Value};
use tempfile::TempDir;

const ENROLL: &str = "enroll-secret-for-e2e-tests";
const ADMIN: &str = "admin-token-for-e2e-tests";
const MACHINES: [&str; 3] = ["wks-01", "srv-01", "pre-01"];
const ROLLOUT: &str = "E2E Rollout";
const HOTFIX: &str = "E2E Hotfix";

/// The program of both packages: it notes that it started, waits (bounded)
/// for the test's go-ahead, and notes that it ran.
const RUN_SH: &str = r#"#!/bin/sh
log="$E2E_MARKS/$E2E_MACHINE.log"
echo "$PATCHOPS_ADVERTISEMENT started" >> "$log"
i=0
while [ ! -e "$E2E_MARKS/go" ] && [ "$i" -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
echo "$PATCHOPS_ADVERTISEMENT ran" >> "$log"
exit 0
"#;

const SITE: &str = r#"apiVersion: patchops/v1
kind: Site
metadata:
  name: E2E
spec:
  siteCode: E2E
  siteServer: sms01
  clientPolicy:
    pollingInterval: 60m
    jitter: 1m
---
apiVersion: patchops/v1
kind: DistributionPoint
metadata:
  name: dp-e2e
spec:
  path: dp/dp-e2e
  url: http://127.0.0.1:DP_PORT
  boundaries: [10.9.0.0/16]
"#;

const COLLECTIONS: &str = r#"apiVersion: patchops/v1
kind: Collection
metadata:
  name: Pre-production
spec:
  purpose: preProduction
  membership:
    - direct: [pre-01]
---
apiVersion: patchops/v1
kind: Collection
metadata:
  name: Workstations
spec:
  purpose: production
  membership:
    - query: os.type = 'workstation'
    - exclude: [Pre-production]
---
apiVersion: patchops/v1
kind: Collection
metadata:
  name: Servers
spec:
  membership:
    - query: os.type = 'server'
---
apiVersion: patchops/v1
kind: Collection
metadata:
  name: Rollout
spec:
  membership:
    - include: [Pre-production, Workstations, Servers]
"#;

fn package(name: &str, source: &str) -> String {
    format!(
        r#"apiVersion: patchops/v1
kind: Package
metadata:
  name: {name}
spec:
  version: "1.0"
  manufacturer: Example
  language: ENU
  source: {source}
  distributionPoints: [dp-e2e]
  programs:
    - name: Install
      commandLine: sh run.sh
      runMode: hidden
      canRun: whetherOrNotUserLoggedOn
      runWith: administrativeRights
      maxRunTime: 40s
"#
    )
}

fn advertisement(name: &str, package: &str) -> String {
    format!(
        r#"apiVersion: patchops/v1
kind: Advertisement
metadata:
  name: {name}
spec:
  package: {package}
  program: Install
  collection: Rollout
  schedule:
    - {{ event: asSoonAsPossible }}
  rerun: never
  localDistributionPoint: downloadAndRun
  remoteDistributionPoint: downloadAndRun
"#
    )
}

/// Commits everything in `repo`; returns the new commit.
fn commit(repo: &Path, message: &str) -> String {
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "--quiet", "-m", message]);
    git(repo, &["rev-parse", "HEAD"])
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).expect("mode");
}

/// A temporary directory with the "remote" repository (`origin/`), the
/// server's clone (`checkout/`), the store, the DP library and the agents.
struct World {
    dir: TempDir,
    state: String,
    db: PathBuf,
    server_port: u16,
}

impl World {
    fn new(dp_port: u16) -> World {
        let dir = TempDir::new().expect("tmp");
        let origin = dir.path().join("origin");
        write(
            &origin.join("site.yaml"),
            &SITE.replace("DP_PORT", &dp_port.to_string()),
        );
        write(&origin.join("collections.yaml"), COLLECTIONS);
        write(
            &origin.join("tool/package.yaml"),
            &package("E2E Tool", "packages/tool"),
        );
        write(&origin.join("packages/tool/run.sh"), RUN_SH);
        git(&origin, &["init", "--quiet"]);
        commit(&origin, "site");
        std::fs::create_dir_all(dir.path().join("marks")).expect("marks");
        let db = dir.path().join("site.db");
        World {
            state: format!("sqlite://{}", db.display()),
            db,
            server_port: support::reserved_port(),
            dir,
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn origin(&self) -> PathBuf {
        self.path("origin")
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.server_port)
    }

    /// `patchops server` reconciling from the repository, on this world's
    /// fixed port (so agents find it again after a restart).
    fn server(&self, name: &str) -> Proc {
        let log = self.path(&format!("{name}.log"));
        let mut cmd = patchops();
        cmd.current_dir(self.dir.path())
            .args(["server", "--state", &self.state])
            .args(["--listen", &format!("127.0.0.1:{}", self.server_port)])
            .args(["--enroll-secret-from", "env:TEST_ENROLL"])
            .args(["--admin-token-from", "env:TEST_ADMIN"])
            .args(["--token-cache-ttl", "0s", "--refresh", "1s"])
            .args(["--manifests", "checkout", "--git-pull"])
            .arg(self.origin())
            .args(["--interval", "2s"])
            .env("TEST_ENROLL", ENROLL)
            .env("TEST_ADMIN", ADMIN)
            .env("PATCHOPS_LOG", "info,patchops=debug");
        let server = Proc::start(cmd, &log);
        assert_eq!(server.base, self.base());
        server
    }

    fn dp(&self, port: u16) -> Proc {
        let mut cmd = patchops();
        cmd.args(["dp", "serve", "--path"])
            .arg(self.path("dp/dp-e2e"))
            .args(["--listen", &format!("127.0.0.1:{port}")]);
        let dp = Proc::start(cmd, &self.path("dp.log"));
        assert_eq!(dp.base, format!("http://127.0.0.1:{port}"));
        dp
    }

    /// `patchops agent --once` for `machine`, started, not waited for.
    fn agent(&self, machine: &str) -> Child {
        let home = self.path(&format!("agents/{machine}"));
        let facts = home.join("facts.json");
        if !facts.exists() {
            let (os, kind, address) = match machine {
                "srv-01" => ("Microsoft Windows Server 2003", "server", "10.9.1.2"),
                "pre-01" => (
                    "Microsoft Windows XP Professional",
                    "workstation",
                    "10.9.1.3",
                ),
                _ => (
                    "Microsoft Windows XP Professional",
                    "workstation",
                    "10.9.1.1",
                ),
            };
            write(
                &facts,
                &json!({
                    "name": machine,
                    "domain": "CORP",
                    "os": {"name": os, "type": kind, "version": "5.2.3790", "servicePack": 1},
                    "architecture": "x86",
                    "site": "E2E",
                    "ip": {"address": [address], "subnet": ["10.9.1.0"]}
                })
                .to_string(),
            );
        }
        patchops()
            .args([
                "agent",
                "--once",
                "--format",
                "json",
                "--server",
                &self.base(),
            ])
            .args(["--enroll-secret-from", "env:TEST_ENROLL"])
            .arg("--state-dir")
            .arg(home.join("state"))
            .arg("--facts")
            .arg(&facts)
            .args(["--timeout", "5s"])
            .env("TEST_ENROLL", ENROLL)
            .env("E2E_MARKS", self.path("marks"))
            .env("E2E_MACHINE", machine)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("agent")
    }

    /// Waits for an agent started by [`World::agent`]; its report.
    fn report(machine: &str, child: Child) -> Value {
        let start = Instant::now();
        let mut child = child;
        while child.try_wait().expect("wait").is_none() {
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("agent {machine} did not finish");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().expect("output");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "agent {machine}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "agent {machine}: not one JSON report ({e}): {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// One cycle of every agent, at the same time; reports by machine.
    fn cycle(&self) -> BTreeMap<&'static str, Value> {
        let children: Vec<(&str, Child)> = MACHINES.iter().map(|m| (*m, self.agent(m))).collect();
        children
            .into_iter()
            .map(|(m, c)| (m, World::report(m, c)))
            .collect()
    }

    /// `patchops ARGS --format json --state …` → its JSON.
    fn json(&self, args: &[&str]) -> Value {
        let mut cmd = patchops();
        cmd.current_dir(self.dir.path()).args(args).args([
            "--format",
            "json",
            "--state",
            &self.state,
        ]);
        let out = run_with_limit(cmd, Duration::from_secs(30));
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json")
    }

    /// The lines a machine's program wrote.
    fn marks(&self, machine: &str) -> Vec<String> {
        std::fs::read_to_string(self.path(&format!("marks/{machine}.log")))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Status messages in the store: (machine, key, state, advertisement).
    fn messages(&self) -> Vec<(String, String, String, String)> {
        use sqlx::Connection;
        let url = format!("sqlite://{}?mode=ro", self.db.display());
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async {
                let mut conn = sqlx::SqliteConnection::connect(&url)
                    .await
                    .expect("open the store");
                sqlx::query_as(
                    "SELECT machine_key, key, state, advertisement FROM status_messages \
                     ORDER BY machine_key, key",
                )
                .fetch_all(&mut conn)
                .await
                .expect("messages")
            })
    }
}

/// Polls `check` every 100 ms until it holds; panics with `what` and the
/// logs after `within`.
fn wait_until(within: Duration, what: &str, procs: &[&Proc], check: impl FnMut() -> bool) {
    support::wait_until_blocking(within, what, || support::logs(procs), check);
}

fn advertisement_status<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|a| a["name"] == name)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn a_committed_advertisement_reaches_three_agents_across_a_server_kill_and_tampering_is_refused() {
    let started = Instant::now();
    let dp_port = support::reserved_port();
    let world = World::new(dp_port);

    // The server clones the repository and applies it by itself.
    let server = world.server("server-1");
    wait_until(
        Duration::from_secs(30),
        "the first reconcile applied",
        &[&server],
        || {
            let s = world.json(&["status", "site"]);
            s["reconcile"]["status"] == "ok" && s["reconcile"]["lastApply"]["serial"] == 1
        },
    );
    let site = world.json(&["status", "site"]);
    assert_eq!(site["site"], "E2E", "{site}");
    assert_eq!(site["leader"]["live"], true, "{site}");
    let head = git(&world.origin(), &["rev-parse", "HEAD"]);
    assert_eq!(site["reconcile"]["lastApply"]["revision"], head.as_str());
    let dp = world.dp(dp_port);

    // The agents register and report their facts; nothing is advertised yet.
    for (machine, report) in world.cycle() {
        assert_eq!(report["registered"], true, "{machine}: {report}");
        assert_eq!(report["errors"], json!([]), "{machine}: {report}");
        assert_eq!(report["runs"], json!([]), "{machine}: {report}");
    }
    // Their facts put them in different collections.
    for (machine, own) in [
        ("wks-01", "Workstations"),
        ("srv-01", "Servers"),
        ("pre-01", "Pre-production"),
    ] {
        let m = world.json(&["status", "machine", machine]);
        let mut collections: Vec<&str> = m["collections"]
            .as_array()
            .expect("collections")
            .iter()
            .filter_map(Value::as_str)
            .filter(|c| !c.starts_with("All "))
            .collect();
        collections.sort();
        let mut want = vec!["Rollout", own];
        want.sort();
        assert_eq!(collections, want, "{m}");
    }

    // A new advertisement, committed: pulled, applied, distributed.
    write(
        &world.origin().join("tool/advertisement.yaml"),
        &advertisement(ROLLOUT, "E2E Tool"),
    );
    let rollout_commit = commit(&world.origin(), "advertise the tool");
    wait_until(
        Duration::from_secs(20),
        "the advertisement applied",
        &[&server],
        || {
            world.json(&["status", "site"])["reconcile"]["lastApply"]["revision"]
                == rollout_commit.as_str()
        },
    );
    let list = world.json(&["status", "advertisements"]);
    let rollout = advertisement_status(&list, ROLLOUT).expect("advertised");
    assert_eq!(rollout["targeted"], 3, "{list}");
    assert_eq!(rollout["received"], 0, "{list}");

    // The agents fetch the policy, download, verify and start the program;
    // while the programs run (every status message still queued), the
    // server is SIGKILLed.
    let mut server = server;
    let running: Vec<(&str, Child)> = MACHINES.iter().map(|m| (*m, world.agent(m))).collect();
    wait_until(
        Duration::from_secs(30),
        "the three programs started",
        &[&server, &dp],
        || {
            MACHINES
                .iter()
                .all(|m| world.marks(m).contains(&format!("{ROLLOUT} started")))
        },
    );
    server.kill();
    std::fs::write(world.path("marks/go"), "").expect("go");
    let mut queued = BTreeMap::new();
    for (machine, child) in running {
        let report = World::report(machine, child);
        let runs = report["runs"].as_array().cloned().unwrap_or_default();
        assert_eq!(runs.len(), 1, "{machine}: {report}");
        assert_eq!(runs[0]["advertisement"], ROLLOUT, "{report}");
        assert_eq!(runs[0]["state"], "succeeded", "{report}");
        assert!(
            report["errors"]
                .to_string()
                .contains("cannot reach the server"),
            "{machine}: {report}"
        );
        let q = report["queued"].as_u64().expect("queued");
        assert!(q > 0, "{machine}: messages wait in the queue: {report}");
        queued.insert(machine, q);
    }

    // The server comes back (a new process, the same store and port); the
    // next cycle delivers each queue, and nothing runs again.
    let server = world.server("server-2");
    for (machine, report) in world.cycle() {
        assert_eq!(report["runs"], json!([]), "{machine}: {report}");
        assert_eq!(report["errors"], json!([]), "{machine}: {report}");
        assert_eq!(report["policy"], "unchanged", "{machine}: {report}");
        assert_eq!(
            report["delivered"].as_u64(),
            Some(queued[machine]),
            "{report}"
        );
        assert_eq!(report["queued"], 0, "{machine}: {report}");
    }
    let status = world.json(&["status", "advertisement", ROLLOUT]);
    assert_eq!(
        (
            &status["targeted"],
            &status["received"],
            &status["succeeded"],
            &status["failed"],
            &status["inProgress"]
        ),
        (&json!(3), &json!(3), &json!(3), &json!(0), &json!(0)),
        "{status}"
    );
    let reports = status["machines"].as_array().expect("machines");
    let mut seen: Vec<&str> = reports
        .iter()
        .map(|r| r["machine"].as_str().unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, ["pre-01", "srv-01", "wks-01"]);
    for r in reports {
        assert_eq!(r["state"], "succeeded", "{r}");
        assert_eq!(r["exitCode"], 0, "{r}");
        assert_eq!(r["targeted"], true, "{r}");
        let message = r["message"].as_str().unwrap();
        assert!(
            message.starts_with("E2E Tool/Install succeeded"),
            "{message}"
        );
    }
    // Through the server's admin API the same is seen.
    for args in [
        vec!["status", "advertisement", ROLLOUT],
        vec!["status", "machine", "srv-01"],
    ] {
        let local = world.json(&args);
        let mut cmd = patchops();
        cmd.args(&args)
            .args(["--format", "json", "--site", &world.base()])
            .args(["--token-from", "env:TEST_ADMIN"])
            .env("TEST_ADMIN", ADMIN);
        let out = run_with_limit(cmd, Duration::from_secs(30));
        assert!(
            out.status.success(),
            "{args:?} --site: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let remote: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(remote, local, "{args:?}");
    }
    // Every status message exactly once: five per machine (accepted,
    // downloading, downloaded, running, succeeded), none lost in the kill,
    // none stored twice. Each program ran exactly once.
    let messages = world.messages();
    for machine in MACHINES {
        let mut states: Vec<&str> = messages
            .iter()
            .filter(|(m, _, _, ad)| m == machine && ad == ROLLOUT)
            .map(|(_, _, s, _)| s.as_str())
            .collect();
        states.sort();
        assert_eq!(
            states,
            [
                "accepted",
                "downloaded",
                "downloading",
                "running",
                "succeeded"
            ],
            "{machine}: {messages:?}"
        );
        assert_eq!(
            world.marks(machine),
            [format!("{ROLLOUT} started"), format!("{ROLLOUT} ran")],
            "{machine}"
        );
    }

    // A second package and advertisement; once they are on the DP, its
    // file there is overwritten (same size, other bytes).
    let hotfix = RUN_SH.replace("#!/bin/sh\n", "#!/bin/sh\n# hotfix\n");
    write(&world.origin().join("packages/hotfix/run.sh"), &hotfix);
    write(
        &world.origin().join("hotfix/package.yaml"),
        &(package("E2E Hotfix", "packages/hotfix")
            + "---\n"
            + &advertisement(HOTFIX, "E2E Hotfix")),
    );
    let hotfix_commit = commit(&world.origin(), "a hotfix");
    wait_until(
        Duration::from_secs(20),
        "the hotfix applied and distributed",
        &[&server],
        || {
            world.json(&["status", "site"])["reconcile"]["lastApply"]["revision"]
                == hotfix_commit.as_str()
        },
    );
    let hash = sha256_hex(hotfix.as_bytes());
    let on_dp = world.path(&format!("dp/dp-e2e/files/{}/{hash}", &hash[..2]));
    assert_eq!(
        std::fs::read(&on_dp).expect("the hotfix is on the DP"),
        hotfix.as_bytes()
    );
    std::fs::set_permissions(&on_dp, std::fs::Permissions::from_mode(0o644)).expect("mode");
    std::fs::write(&on_dp, vec![b'#'; hotfix.len()]).expect("tamper");

    for (machine, report) in world.cycle() {
        let runs = report["runs"].as_array().cloned().unwrap_or_default();
        assert_eq!(runs.len(), 1, "{machine}: {report}");
        assert_eq!(runs[0]["advertisement"], HOTFIX, "{report}");
        assert_eq!(runs[0]["state"], "failed", "{machine}: {report}");
        assert!(
            runs[0]["message"]
                .as_str()
                .unwrap()
                .contains("hash mismatch"),
            "{report}"
        );
        assert_eq!(report["queued"], 0, "{machine}: {report}");
        // Nothing ran: the program's first line would be there.
        assert!(
            !world.marks(machine).iter().any(|l| l.contains(HOTFIX)),
            "{machine}: {:?}",
            world.marks(machine)
        );
    }
    let status = world.json(&["status", "advertisement", HOTFIX]);
    assert_eq!(
        (&status["targeted"], &status["failed"], &status["succeeded"]),
        (&json!(3), &json!(3), &json!(0)),
        "{status}"
    );
    for r in status["machines"].as_array().expect("machines") {
        assert_eq!(r["state"], "failed", "{r}");
        assert!(
            r["message"].as_str().unwrap().contains("hash mismatch"),
            "{r}"
        );
    }
    // The first advertisement's record is untouched.
    let status = world.json(&["status", "advertisement", ROLLOUT]);
    assert_eq!(status["succeeded"], 3, "{status}");
    drop(dp);
    drop(server);
    eprintln!("end to end: {:?}", started.elapsed());
}

#[test]
fn an_invalid_commit_shows_in_status_with_its_file_and_line_and_changes_nothing() {
    let world = World::new(support::reserved_port());
    let server = world.server("server");
    wait_until(
        Duration::from_secs(30),
        "the first reconcile applied",
        &[&server],
        || world.json(&["status", "site"])["reconcile"]["status"] == "ok",
    );
    let good = world.json(&["state", "list"]);

    // A broken package manifest is committed.
    let package = world.origin().join("tool/package.yaml");
    let text = std::fs::read_to_string(&package).expect("read");
    write(
        &package,
        &text.replace("maxRunTime: 40s", "maxRunTime: forty seconds"),
    );
    let bad_commit = commit(&world.origin(), "a typo");
    wait_until(
        Duration::from_secs(20),
        "the error recorded",
        &[&server],
        || world.json(&["status", "site"])["reconcile"]["status"] == "error",
    );
    let site = world.json(&["status", "site"]);
    let r = &site["reconcile"];
    assert_eq!(r["result"], "invalid", "{site}");
    assert_eq!(r["revision"], bad_commit.as_str(), "{site}");
    assert!(r["failures"].as_u64() >= Some(1), "{site}");
    assert_eq!(r["lastApply"]["serial"], 1, "{site}");
    assert!(r["lastSuccess"].is_string(), "{site}");
    let problem = &r["problems"][0];
    assert_eq!(problem["file"], "tool/package.yaml", "{site}");
    let line = text
        .lines()
        .position(|l| l.contains("maxRunTime"))
        .expect("line")
        + 1;
    assert_eq!(problem["line"], line, "{site}");
    assert_eq!(problem["path"], "spec.programs[0].maxRunTime", "{site}");
    assert_eq!(site["serial"], 1, "the applied state is kept: {site}");
    assert_eq!(world.json(&["state", "list"]), good);

    // People see it too: in `status site` and above `status advertisements`,
    // locally and through the server's admin API.
    let human = |args: &[&str], remote: bool| -> String {
        let mut cmd = patchops();
        cmd.current_dir(world.dir.path()).args(args);
        if remote {
            cmd.args(["--site", &world.base(), "--token-from", "env:TEST_ADMIN"])
                .env("TEST_ADMIN", ADMIN);
        } else {
            cmd.args(["--state", &world.state]);
        }
        let out = run_with_limit(cmd, Duration::from_secs(30));
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let location = format!("tool/package.yaml:{line}:");
    for remote in [false, true] {
        let text = human(&["status", "site"], remote);
        assert!(text.contains("reconcile: error since"), "{text}");
        assert!(text.contains(&location), "{text}");
        assert!(text.contains("last apply:     serial 1"), "{text}");
        let text = human(&["status", "advertisements"], remote);
        assert!(text.starts_with("! reconcile failing since"), "{text}");
        assert!(text.contains(&location), "{text}");
    }
    let mut cmd = patchops();
    cmd.args([
        "status",
        "site",
        "--format",
        "json",
        "--site",
        &world.base(),
    ])
    .args(["--token-from", "env:TEST_ADMIN"])
    .env("TEST_ADMIN", ADMIN);
    let out = run_with_limit(cmd, Duration::from_secs(30));
    let remote: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(remote["reconcile"]["problems"], r["problems"], "{remote}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(ADMIN),
        "the token is not shown"
    );

    // Fixed: applied, and the error is gone.
    write(
        &package,
        &text.replace("maxRunTime: 40s", "maxRunTime: 50s"),
    );
    let fixed = commit(&world.origin(), "fix the typo");
    wait_until(
        Duration::from_secs(20),
        "the fix applied",
        &[&server],
        || world.json(&["status", "site"])["reconcile"]["lastApply"]["revision"] == fixed.as_str(),
    );
    let site = world.json(&["status", "site"]);
    let r = &site["reconcile"];
    assert_eq!(
        (&r["status"], &r["failures"]),
        (&json!("ok"), &json!(0)),
        "{site}"
    );
    assert_eq!(r["problems"], json!([]), "{site}");
    assert!(r["message"].is_null(), "{site}");
    assert_eq!(
        (&site["serial"], &r["lastApply"]["serial"]),
        (&json!(2), &json!(2))
    );
    let text = human(&["status", "advertisements"], false);
    assert!(text.starts_with("ADVERTISEMENT"), "no banner: {text}");
}
