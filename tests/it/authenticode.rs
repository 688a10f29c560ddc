//! `verifySignature` end to end through the binary: `patchops updates
//! verify FILE --trusted PEM`, and the example site downloading update
//! files (signed PE files made in the test with the committed test key,
//! served by a local HTTP server through the mirror setting): signed by a
//! trusted publisher → Ready; damaged, unsigned or untrusted → refused or
//! not ready, each with its reason.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use crate::support::{self, patchops, text};
use patchops::authenticode::testing::{sign, tiny_pe, SignOptions, TestSigner};
use serde_json::Value;

const PACKAGE: &str = "Security Updates 2026-11";
const PUBLISHER: &str = "CN=patchops Test Publisher,O=patchops tests";

fn fixture(name: &str) -> PathBuf {
    support::repo()
        .join("tests/fixtures/authenticode")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

fn signer() -> TestSigner {
    TestSigner::new(
        &read("signer.key"),
        &[&read("signer.pem"), &read("pca.pem")],
    )
}

fn run(args: &[&str], cwd: &Path) -> Output {
    let mut cmd = patchops();
    cmd.current_dir(cwd)
        .env_remove("PATCHOPS_UPDATE_MIRROR")
        .args(args);
    support::run_with_limit(cmd, std::time::Duration::from_secs(60))
}

#[test]
fn updates_verify_checks_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let signed = dir.path().join("KB000001.exe");
    std::fs::write(
        &signed,
        sign(
            &tiny_pe(b"\xc3fix", false),
            &signer(),
            &SignOptions::default(),
        ),
    )
    .unwrap();
    let root = fixture("root.pem");
    let root = root.to_str().unwrap();

    let out = run(
        &["updates", "verify", "KB000001.exe", "--trusted", root],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(&format!(
            "KB000001.exe: valid: signed by {PUBLISHER}, trusted through CN=patchops Test Root,O=patchops tests (SHA-256 image digest "
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("    chain: CN=patchops Test Publisher"),
        "{stdout}"
    );

    let out = run(
        &[
            "updates",
            "verify",
            "KB000001.exe",
            "--trusted",
            root,
            "--format",
            "json",
        ],
        dir.path(),
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["signature"]["signer"], PUBLISHER);
    assert_eq!(doc["signature"]["digest"], "sha256");
    assert_eq!(doc["signature"]["chain"].as_array().unwrap().len(), 3);

    // Another CA: not trusted, exit 1.
    let other = fixture("other-root.pem");
    let out = run(
        &[
            "updates",
            "verify",
            "KB000001.exe",
            "--trusted",
            other.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        format!("KB000001.exe: not accepted: Authenticode: signed by {PUBLISHER}, not trusted (its chain ends at CN=patchops Test Code Signing PCA,O=patchops tests; trust that certificate or its issuer in trustedSigners)\n")
    );

    // One changed byte.
    let mut bytes = std::fs::read(&signed).unwrap();
    bytes[0x201] ^= 0x20;
    std::fs::write(dir.path().join("changed.exe"), &bytes).unwrap();
    let out = run(
        &["updates", "verify", "changed.exe", "--trusted", root],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("Authenticode: image digest mismatch"),
        "{}",
        text(&out.stdout)
    );

    // Unsigned, not a PE file, a Windows Installer patch.
    std::fs::write(dir.path().join("plain.exe"), tiny_pe(b"\xc3", false)).unwrap();
    std::fs::write(dir.path().join("notes.exe"), "not a program\n").unwrap();
    std::fs::write(
        dir.path().join("office.msp"),
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
    )
    .unwrap();
    for (file, want) in [
        ("plain.exe", "Authenticode: no signature"),
        ("notes.exe", "Authenticode: not a PE file: no MZ header"),
        (
            "office.msp",
            "a Windows Installer patch (.msp) is not a PE file",
        ),
    ] {
        let out = run(&["updates", "verify", file, "--trusted", root], dir.path());
        assert_eq!(out.status.code(), Some(1), "{file}");
        assert!(
            text(&out.stdout).contains(want),
            "{file}: {}",
            text(&out.stdout)
        );
    }

    // A trust file holding a private key is refused without quoting it.
    let out = run(
        &[
            "updates",
            "verify",
            "KB000001.exe",
            "--trusted",
            fixture("signer.key").to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("a `PRIVATE KEY` block"), "{stderr}");
    let key_line = read("signer.key").lines().nth(1).unwrap().to_string();
    assert!(!stderr.contains(&key_line) && !text(&out.stdout).contains(&key_line));
}

/// What the update server answers.
const SIGNED: u8 = 0;
const UNSIGNED: u8 = 1;
const TEXT: u8 = 2;

/// A local server answering every path with an update file made for it:
/// signed by the test publisher, an unsigned PE file or plain text.
fn serve(mode: Arc<AtomicU8>) -> String {
    use axum::body::Body;
    use axum::extract::State;
    use axum::http::Uri;
    use axum::response::Response;

    async fn file(State(mode): State<Arc<AtomicU8>>, uri: Uri) -> Response {
        let payload = format!("\u{c3}update for {uri}");
        let pe = tiny_pe(payload.as_bytes(), false);
        let body = match mode.load(Ordering::SeqCst) {
            SIGNED => sign(&pe, &signer(), &SignOptions::default()),
            UNSIGNED => pe,
            _ => payload.into_bytes(),
        };
        Response::new(Body::from(body))
    }

    let addr = support::serve_app(axum::Router::new().fallback(file).with_state(mode));
    format!("http://{addr}")
}

/// The example site, its catalog the fixture.
struct Site {
    example: support::Site,
}

impl Site {
    /// The example site, its catalog the fixture, trusting `trusted`.
    fn new(trusted: &str) -> Site {
        let example = support::Site::new();
        std::fs::copy(
            support::repo().join("tests/fixtures/mssecure.xml"),
            example.path("site/packages/security-inventory-tool/mssecure.xml"),
        )
        .unwrap();
        let site = Site { example };
        site.trust(trusted);
        site
    }

    fn trust(&self, fixture_name: &str) {
        std::fs::copy(
            fixture(fixture_name),
            self.path("site/certs/trusted-publishers.pem"),
        )
        .unwrap();
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.example.path(rel)
    }

    /// `patchops ARGS` on the site, downloading from `mirror`.
    fn run(&self, args: &[&str], mirror: &str) -> Output {
        let mut cmd = self.example.command(args);
        cmd.env("PATCHOPS_UPDATE_MIRROR", mirror);
        support::run_with_limit(cmd, std::time::Duration::from_secs(60))
    }

    fn readiness(&self) -> Value {
        let out = self.run(&["plan", "site", "--format", "json"], "");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        plan["updates"][0].clone()
    }

    fn lock(&self) -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(self.path("site/.patchops/updates.json")).unwrap(),
        )
        .unwrap()
    }
}

#[test]
fn signed_updates_are_ready_and_bad_signatures_are_refused() {
    let site = Site::new("root.pem");
    let mode = Arc::new(AtomicU8::new(SIGNED));
    let mirror = serve(mode.clone());
    const FILE: &str = "Q299687_W2K_SP3_x86_en.EXE";

    // Signed by the trusted publisher: recorded and Ready.
    let out = site.run(&["updates", "download", "site"], &mirror);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains(&format!("{PACKAGE}: ready (3 files present and verified)")),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(site.readiness()["ready"], true);

    // A changed byte, the lock changed to match (someone who can write
    // both): the signature still catches it.
    let path = site.path(&format!("site/sources/security-2026-11/{FILE}"));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0x210] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let mut lock = site.lock();
    lock["packages"][PACKAGE][FILE]["sha256"] =
        Value::from(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)));
    std::fs::write(
        site.path("site/.patchops/updates.json"),
        serde_json::to_string_pretty(&lock).unwrap(),
    )
    .unwrap();
    let r = site.readiness();
    assert_eq!(r["ready"], false, "{r}");
    assert_eq!(r["why"], "1 file(s) not verified");
    assert_eq!(r["unverified"][0]["file"], FILE);
    assert!(
        r["unverified"][0]["why"]
            .as_str()
            .unwrap()
            .starts_with("Authenticode: image digest mismatch: the file's SHA-256 digest differs"),
        "{r}"
    );
    let human = text(&site.run(&["plan", "site"], "").stdout);
    assert!(
        human.contains(&format!(
            "    unverified: {FILE}: Authenticode: image digest mismatch"
        )),
        "{human}"
    );

    // The server now sends unsigned files: the download refuses them,
    // writes and records nothing; the package stays not ready.
    std::fs::remove_file(&path).unwrap();
    mode.store(UNSIGNED, Ordering::SeqCst);
    let out = site.run(&["updates", "download", "site"], &mirror);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!(
            "{PACKAGE}: {FILE}: failed: Authenticode: no signature (the file has no certificate table); not written nor recorded"
        )),
        "{}",
        text(&out.stderr)
    );
    assert!(!path.exists());
    let r = site.readiness();
    assert_eq!(r["missing"], serde_json::json!([FILE]), "{r}");

    // Plain text where a program is expected.
    mode.store(TEXT, Ordering::SeqCst);
    let out = site.run(&["updates", "download", "site"], &mirror);
    assert!(
        text(&out.stderr).contains("failed: Authenticode: not a PE file: no MZ header"),
        "{}",
        text(&out.stderr)
    );
    assert!(!path.exists());

    // Trusting another CA: every file, though present and recorded, is
    // not verified, and says by whom it is signed.
    mode.store(SIGNED, Ordering::SeqCst);
    site.run(&["updates", "download", "site"], &mirror);
    assert_eq!(site.readiness()["ready"], true);
    site.trust("other-root.pem");
    let r = site.readiness();
    assert_eq!(r["ready"], false);
    assert_eq!(r["unverified"].as_array().unwrap().len(), 3, "{r}");
    assert!(
        r["unverified"][0]["why"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Authenticode: signed by {PUBLISHER}, not trusted")),
        "{r}"
    );
    // And the download says so for each file it keeps.
    let out = site.run(&["updates", "download", "site"], &mirror);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).matches(", not trusted").count(),
        3,
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn expired_signer_is_ready_with_a_note() {
    let site = Site::new("pca.pem");
    // Files on disk, recorded by hand (`download: false` records what is there).
    let sup = site.path("site/software-updates/security-2026-11.yaml");
    let yaml = std::fs::read_to_string(&sup).unwrap();
    std::fs::write(&sup, yaml.replace("  download: true", "  download: false")).unwrap();
    let source = site.path("site/sources/security-2026-11");
    std::fs::create_dir_all(&source).unwrap();
    let old = TestSigner::new(
        &read("signer.key"),
        &[&read("signer-expired.pem"), &read("pca.pem")],
    );
    for f in ["Q299687_W2K_SP3_x86_en.EXE", "q299618.exe", "Q305399i.exe"] {
        let signed = sign(
            &tiny_pe(f.as_bytes(), false),
            &old,
            &SignOptions {
                signing_time: Some(1_022_000_000),
                ..SignOptions::default()
            },
        );
        std::fs::write(source.join(f), signed).unwrap();
    }
    let out = site.run(&["updates", "download", "site"], "");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("ready (3 files present and verified)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "    note: q299618.exe: certificate {PUBLISHER} expired on 2003-06-01T00:00:00Z"
        )),
        "{stdout}"
    );
    let r = site.readiness();
    assert_eq!(r["ready"], true);
    assert_eq!(r["notes"].as_array().unwrap().len(), 3, "{r}");
}
