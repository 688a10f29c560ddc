//! Software update packages end to end: the example site with the fixture
//! MSSecure.XML as its catalog, update files served by a local HTTP server
//! standing in for the catalog's download locations (through the mirror
//! setting), `updates download` → Ready, `plan` shows it, `apply`
//! distributes it; a damaged file makes the package not ready again.

use crate::support::{self, text};

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

const PACKAGE: &str = "Security Updates 2026-11";

/// The example site, its catalog the fixture, its update files unsigned.
struct Site {
    example: support::Site,
}

impl Site {
    fn new() -> Site {
        let example = support::Site::new();
        // The catalog package's source holds the real fixture catalog.
        std::fs::copy(
            support::repo().join("tests/fixtures/mssecure.xml"),
            example.path("site/packages/security-inventory-tool/mssecure.xml"),
        )
        .unwrap();
        // The fake update files here are not signed: these tests are about
        // download and distribution (tests/it/authenticode.rs signs them).
        let sup = example.path("site/software-updates/security-2026-11.yaml");
        let yaml = std::fs::read_to_string(&sup).unwrap();
        assert!(yaml.contains("  verifySignature: true"));
        std::fs::write(
            &sup,
            yaml.replace("  verifySignature: true", "  verifySignature: false"),
        )
        .unwrap();
        Site { example }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.example.path(rel)
    }

    /// `patchops ARGS` on the site, downloading from `mirror` if given.
    fn command(&self, args: &[&str], mirror: Option<&str>) -> Command {
        let mut cmd = self.example.command(args);
        if let Some(m) = mirror {
            cmd.env("PATCHOPS_UPDATE_MIRROR", m);
        }
        cmd
    }

    fn run(&self, args: &[&str], mirror: Option<&str>) -> Output {
        support::run_with_limit(self.command(args, mirror), Duration::from_secs(60))
    }

    fn ok(&self, args: &[&str], mirror: Option<&str>) -> String {
        support::run_ok(self.command(args, mirror))
    }

    fn readiness(&self) -> Value {
        let plan: Value =
            serde_json::from_str(&self.ok(&["plan", "site", "--format", "json"], None)).unwrap();
        let updates = plan["updates"].as_array().expect("plan lists updates");
        assert_eq!(updates.len(), 1, "{updates:?}");
        updates[0].clone()
    }
}

/// A local server answering every path with a fake update file; returns
/// its base URL and the number of requests served.
fn serve() -> (String, Arc<AtomicUsize>) {
    use axum::body::Body;
    use axum::extract::State;
    use axum::http::Uri;
    use axum::response::Response;

    async fn file(State(n): State<Arc<AtomicUsize>>, uri: Uri) -> Response {
        n.fetch_add(1, Ordering::SeqCst);
        Response::new(Body::from(format!("fake update file for {uri}\n")))
    }

    let hits = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().fallback(file).with_state(hits.clone());
    (format!("http://{}", support::serve_app(app)), hits)
}

#[test]
fn downloaded_updates_are_ready_planned_and_distributed() {
    let site = Site::new();
    let (mirror, hits) = serve();

    // Nothing downloaded: not ready, and the rest of the site still plans.
    let r = site.readiness();
    assert_eq!(r["package"], PACKAGE);
    assert_eq!(r["ready"], false);
    assert_eq!(r["missing"].as_array().unwrap().len(), 3, "{r}");
    let human = site.ok(&["plan", "site"], None);
    assert!(
        human.contains(&format!("{PACKAGE}: not ready: 3 file(s) to download")),
        "{human}"
    );

    // Download through the mirror.
    let out = site.ok(&["updates", "download", "site"], Some(&mirror));
    assert!(
        out.contains(&format!("{PACKAGE}: ready (3 files present and verified)")),
        "{out}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    let file = site.path("site/sources/security-2026-11/Q299687_W2K_SP3_x86_en.EXE");
    let body = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        body,
        "fake update file for /Downloads/Release.asp?ReleaseID=31065\n"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let lock: Value = serde_json::from_str(
        &std::fs::read_to_string(site.path("site/.patchops/updates.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        lock["packages"][PACKAGE]["Q299687_W2K_SP3_x86_en.EXE"]["size"],
        body.len()
    );

    // A second download re-verifies and fetches nothing.
    site.ok(
        &["updates", "download", "site", "--package", PACKAGE],
        Some(&mirror),
    );
    assert_eq!(hits.load(Ordering::SeqCst), 3);

    // Ready: planned for distribution, and apply distributes it; its
    // advertisement reaches client policy (the pre-production test client).
    assert_eq!(site.readiness()["ready"], true);
    let inventory = support::repo().join("examples/inventory.csv");
    site.ok(&["inventory", "import", inventory.to_str().unwrap()], None);
    let plan: Value =
        serde_json::from_str(&site.ok(&["plan", "site", "--format", "json"], None)).unwrap();
    let added = &plan["impact"]["policy"]["assignmentsAdded"][PACKAGE];
    assert_eq!(added["machines"], 1, "{}", plan["impact"]);
    assert_eq!(added["sample"][0], "wks-test-01");
    let dps: Vec<&str> = plan["distribution"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["package"] == PACKAGE)
        .map(|d| d["dp"].as_str().unwrap())
        .collect();
    assert_eq!(dps, ["dp-branch", "dp-hq"]);
    let applied = site.ok(&["apply", "site", "--auto-approve"], None);
    assert!(
        applied.contains(&format!("Distributed \"{PACKAGE}\" to dp-hq: 3 files")),
        "{applied}"
    );

    // Read back from the state, the applied package yields the same policy.
    let plan: Value =
        serde_json::from_str(&site.ok(&["plan", "site", "--format", "json"], None)).unwrap();
    assert_eq!(
        plan["impact"]["policy"]["machinesChanged"], 0,
        "{}",
        plan["impact"]
    );
    assert_eq!(
        plan["changes"].as_array().unwrap().len(),
        0,
        "{}",
        plan["changes"]
    );

    // A damaged file: not ready, with the reason; download puts it right.
    std::fs::write(&file, "tampered").unwrap();
    let r = site.readiness();
    assert_eq!(r["ready"], false);
    assert_eq!(r["why"], "1 file(s) not verified");
    assert_eq!(r["unverified"][0]["file"], "Q299687_W2K_SP3_x86_en.EXE");
    assert!(
        r["unverified"][0]["why"]
            .as_str()
            .unwrap()
            .contains("the download recorded"),
        "{r}"
    );
    let out = site.run(&["updates", "download", "site"], Some(&mirror));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(hits.load(Ordering::SeqCst), 4);
    assert_eq!(site.readiness()["ready"], true);
}

#[test]
fn not_ready_package_does_not_stop_apply() {
    let site = Site::new();
    let out = site.ok(&["apply", "site", "--auto-approve"], None);
    assert!(out.contains("Apply complete: 19 added"), "{out}");
    assert!(
        out.contains(&format!(
            "Not distributed: software update package \"{PACKAGE}\" is not ready: 3 file(s) to download."
        )),
        "{out}"
    );
    assert!(
        out.contains("Distributed \"MS Security Updates\" to dp-hq"),
        "{out}"
    );
    // Without a mirror the catalog's own hosts (through the proxy) are used;
    // an unknown package name is refused with a suggestion.
    let out = site.run(
        &[
            "updates",
            "download",
            "site",
            "--package",
            "Security Updates 2026-12",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("did you mean `{PACKAGE}`?")),
        "{}",
        text(&out.stderr)
    );
}

/// One machine's scan facts with SQL Server 7.0 replication DLLs of
/// `version` (`2000.11.20.0` has MS00-048's fix, older ones miss it).
fn scan_facts(machine: &str, version: &str) -> String {
    let dir = r"%CommonProgramFiles%\\Microsoft Shared\\Database Replication";
    let files: Vec<String> = ["replres.DLL", "xprepl.dll", "xpstar.DLL"]
        .iter()
        .map(|f| format!(r#"{{"location": "{dir}", "name": "{f}", "version": "{version}"}}"#))
        .collect();
    format!(
        r#"{{"machine": "{machine}",
            "products": [{{"product": "SQL Server 7.0", "servicePack": "SQL Server 7.0 SP2"}}],
            "files": [{}]}}"#,
        files.join(",")
    )
}

#[test]
fn missing_in_a_collection_resolves_from_stored_scans() {
    let site = Site::new();
    let (mirror, hits) = serve();
    // Everything the production collection's members miss, and one patch
    // by its catalog name.
    let manifest = site.path("site/software-updates/security-2026-11.yaml");
    let text_before = std::fs::read_to_string(&manifest).unwrap();
    let start = text_before.find("  updates:\n").unwrap();
    let end = text_before.find("  source:").unwrap();
    let updated = format!(
        "{}  updates:\n    - {{ missingIn: {{ collection: MS Security Updates }} }}\n    - {{ patch: q299687_w2k_sp3_x86_en.exe }}\n{}",
        &text_before[..start],
        &text_before[end..]
    );
    std::fs::write(&manifest, updated).unwrap();

    // Nothing in the store: a note, not a failure; the patch still resolves.
    let r = site.readiness();
    let missing_in = &r["selections"][0];
    assert_eq!(missing_in["selected"], "missingIn MS Security Updates");
    assert_eq!(missing_in["updates"].as_array().unwrap().len(), 0);
    assert!(
        missing_in["notes"][0]
            .as_str()
            .unwrap()
            .contains("has no members in the stored inventory"),
        "{r}"
    );
    assert_eq!(
        r["selections"][1]["updates"][0],
        "MS01-036: patch q299687_w2k_sp3_x86_en.exe (1 file)"
    );
    assert_eq!(r["missing"].as_array().unwrap().len(), 1, "{r}");

    // Members, but no scan results yet.
    let inventory = support::repo().join("examples/inventory.csv");
    site.ok(&["inventory", "import", inventory.to_str().unwrap()], None);
    let r = site.readiness();
    let note = r["selections"][0]["notes"][0].as_str().unwrap();
    assert!(note.contains("has stored scan results"), "{note}");
    let members: u64 = note
        .strip_prefix("none of the ")
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{note}"));
    assert!(members > 2, "{note}");

    // Three scans: two members lack MS00-048; the pre-production client
    // (not a member) lacks it too but does not count.
    let scans = site.path("scans");
    std::fs::create_dir(&scans).unwrap();
    std::fs::write(scans.join("a.json"), scan_facts("sms01", "2000.11.19.0")).unwrap();
    std::fs::write(scans.join("b.json"), scan_facts("dc01", "2000.11.19.0")).unwrap();
    std::fs::write(
        scans.join("c.json"),
        scan_facts("srv-hq-01", "2000.11.20.0"),
    )
    .unwrap();
    std::fs::write(
        scans.join("d.json"),
        scan_facts("wks-test-01", "2000.11.19.0"),
    )
    .unwrap();
    let catalog = support::repo().join("tests/fixtures/mssecure.xml");
    site.ok(
        &[
            "inventory",
            "scan-import",
            "--catalog",
            catalog.to_str().unwrap(),
            "--facts",
            "scans",
        ],
        None,
    );
    let r = site.readiness();
    let lines: Vec<&str> = r["selections"][0]["updates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    // MS00-041 is fixed by the same file: listed, with no second file.
    assert_eq!(
        lines,
        [
            format!("MS00-048: missing on 2 of {members} members (1 file)"),
            format!("MS00-041: missing on 2 of {members} members (no new file: selected already)")
        ],
        "{r}"
    );
    let notes = r["selections"][0]["notes"].to_string();
    assert!(
        notes.contains(&format!(
            "{} of the {members} members have no stored scan results",
            members - 3
        )),
        "{notes}"
    );
    assert_eq!(r["missing"].as_array().unwrap().len(), 2, "{r}");
    let human = site.ok(&["plan", "site"], None);
    assert!(
        human.contains("updates[0] missingIn MS Security Updates: 2 bulletin(s)")
            && human.contains(&format!(
                "MS00-048: missing on 2 of {members} members (1 file)"
            )),
        "{human}"
    );

    // `updates download` resolves the same way from the store.
    let out = site.ok(&["updates", "download", "site"], Some(&mirror));
    assert!(
        out.contains(&format!("{PACKAGE}: ready (2 files present and verified)")),
        "{out}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert_eq!(site.readiness()["ready"], true);
}

/// `updates download` from an https:// mirror whose certificate a private
/// CA issued: refused (nothing fetched, not ready) until the sync host's
/// `tls.caFile` names that CA.
#[test]
fn https_downloads_trust_the_sync_hosts_ca_file() {
    let site = Site::new();
    let (mirror, hits) = serve();
    let ca = support::TestCa::new();
    let backend = mirror.trim_start_matches("http://").parse().unwrap();
    let front = support::tls_forwarder(backend, &ca.issue(&["127.0.0.1"], false));
    let https = format!("https://127.0.0.1:{}", front.port());

    let out = site.run(&["updates", "download", "site"], Some(&https));
    assert_eq!(out.status.code(), Some(1));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(all.contains("certificate is not trusted"), "{all}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    assert!(!site
        .path("site/sources/security-2026-11/Q299687_W2K_SP3_x86_en.EXE")
        .exists());

    std::fs::create_dir_all(site.path("site/certs")).unwrap();
    std::fs::write(site.path("site/certs/mirror-ca.pem"), &ca.pem).unwrap();
    let sync_host = site.path("site/sync-host.yaml");
    let mut text_ = std::fs::read_to_string(&sync_host).unwrap();
    text_.push_str("  tls:\n    caFile: certs/mirror-ca.pem\n");
    std::fs::write(&sync_host, text_).unwrap();
    let out = site.ok(&["updates", "download", "site"], Some(&https));
    assert!(
        out.contains(&format!("{PACKAGE}: ready (3 files present and verified)")),
        "{out}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}
