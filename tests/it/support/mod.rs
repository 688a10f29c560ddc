//! Helpers for tests that drive the real `patchops` binary.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub fn patchops() -> Command {
    Command::new(env!("CARGO_BIN_EXE_patchops"))
}

/// Runs a command, killing it if it takes longer than `limit`: a hang is a
/// failure, not a stuck CI run. Output is read while the command runs, so
/// a command that prints more than a pipe holds does not block.
pub fn run_with_limit(mut cmd: Command, limit: Duration) -> Output {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("command did not finish within {limit:?}: {cmd:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// In `cwd`, `patchops validate DIR --format json ARGS…` → (exit code,
/// JSON report).
pub fn run_validate(cwd: &Path, dir: &Path, args: &[String]) -> (i32, serde_json::Value) {
    let mut cmd = patchops();
    cmd.current_dir(cwd)
        .arg("validate")
        .arg(dir)
        .args(["--format", "json"])
        .args(args);
    let out = run_with_limit(cmd, Duration::from_secs(20));
    let code = out.status.code().expect("exited normally, not by a signal");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, json)
}

/// One line per diagnostic: `error[code] file:line:col path: message (help: …)`.
pub fn render_diagnostics(report: &serde_json::Value) -> String {
    let mut out = String::new();
    for d in report["diagnostics"].as_array().expect("diagnostics") {
        let s = |k: &str| d[k].as_str().map(str::to_string);
        let n = |k: &str| d[k].as_u64();
        out.push_str(&format!(
            "{}[{}]",
            s("severity").unwrap(),
            s("code").unwrap()
        ));
        match (s("file"), n("line"), n("column")) {
            (Some(f), Some(l), Some(c)) => out.push_str(&format!(" {f}:{l}:{c}")),
            (Some(f), _, _) => out.push_str(&format!(" {f}")),
            _ => {}
        }
        if let Some(p) = s("path") {
            out.push_str(&format!(" {p}"));
        }
        out.push_str(&format!(": {}", s("message").unwrap()));
        if let Some(h) = s("help") {
            out.push_str(&format!(" (help: {h})"));
        }
        out.push('\n');
    }
    out
}

/// Copies a directory tree, with the modes a package source needs (owner
/// writable only) whatever they were.
pub fn copy_dir(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        // A plan's hash cache is not part of a site: a copy made after the
        // README's main command ran must be the same as one made before.
        if entry.file_name() == ".patchops" {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

/// A small deterministic generator for fault tests; print the seed so a
/// failure can be replayed.
pub struct Lcg(pub u64);

impl Lcg {
    /// Seeded from `var` when set, else from the clock.
    pub fn from_env(var: &str) -> Lcg {
        let seed = std::env::var(var)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{var}={seed}");
        Lcg(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Starts `patchops server …` (`cmd`, with its arguments) with stderr in
/// `log`, and returns the process and the base URL it printed once bound
/// (it listens on port 0).
pub fn spawn_server(mut cmd: Command, log: &Path) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("start server");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read bound address");
    let Some(base) = line.trim().strip_prefix("listening on ") else {
        let _ = child.kill();
        let log = std::fs::read_to_string(log).unwrap_or_default();
        panic!("server did not start: {line:?}\n{log}")
    };
    let base = base.to_string();
    (child, base)
}

/// A private CA for TLS tests (rcgen), and server certificates it issues.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate, PEM: what a `caFile` / `--ca-file` holds.
    pub pem: String,
}

/// A server certificate and its private key, PEM.
pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "patchops test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A certificate for `names` (host names or IP addresses); `expired`
    /// makes it valid in 2020 only.
    pub fn issue(&self, names: &[&str], expired: bool) -> ServerCert {
        let key = rcgen::KeyPair::generate().expect("server key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "patchops test server");
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A TLS-terminating forwarder on loopback (as a reverse proxy in front
/// of the site server, or an HTTPS catalog server): each TLS connection is
/// decrypted with `cert` and piped to `backend` in plain TCP. Returns the
/// address it listens on; it runs on its own thread until the test ends.
pub fn tls_forwarder(backend: std::net::SocketAddr, cert: &ServerCert) -> std::net::SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = vec![CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).expect("cert")];
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    on_loopback(move |listener| async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A refused handshake (an untrusted certificate) just ends
                // the connection.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    })
}

/// Serves `app` on a loopback port from a thread of its own, until the
/// test ends; its address.
pub fn serve_app(app: axum::Router) -> std::net::SocketAddr {
    on_loopback(move |listener| async move {
        axum::serve(listener, app).await.expect("serve");
    })
}

/// Binds a loopback port and runs `serve` on it, on a runtime of its own
/// thread, until the test ends; the port's address.
fn on_loopback<F, Fut>(serve: F) -> std::net::SocketAddr
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            serve(listener).await;
        });
    });
    addr
}

/// Runs git in `dir` with a test identity; its trimmed standard output.
/// Fails the test when git fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A child process killed on drop.
pub struct Proc {
    pub child: std::process::Child,
    pub base: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a command and reads the URL it prints on its first line.
pub fn start(mut cmd: Command, log: &Path) -> Proc {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("log"))
        .spawn()
        .expect("start");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("first line");
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| {
            panic!(
                "no URL in {line:?}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        })
        .to_string();
    Proc { child, base }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Points the site's `dp-hq` at a free loopback port (and `dp-branch` at
/// one nothing listens on, so agents that fall back to it fail), applies
/// `DIR/site` to a SQLite state in `dir`, and serves `dp-hq`. Returns the
/// state URL and the DP process.
pub fn apply_with_loopback_dp(dir: &Path) -> (String, Proc) {
    let port = free_port();
    let dps = dir.join("site/distribution-points.yaml");
    let text = std::fs::read_to_string(&dps)
        .expect("dps")
        .replace(
            "http://dp-hq.corp.example:8080",
            &format!("http://127.0.0.1:{port}"),
        )
        .replace("http://dp-branch.corp.example:8080", "http://127.0.0.1:9");
    std::fs::write(&dps, text).expect("write");
    let state = format!("sqlite://{}", dir.join("site.db").display());
    let out = patchops()
        .current_dir(dir)
        .args(["apply", "site", "--auto-approve", "--state", &state])
        .output()
        .expect("apply");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cmd = patchops();
    cmd.args(["dp", "serve", "--path"])
        .arg(dir.join("dp/dp-hq"))
        .args(["--listen", &format!("127.0.0.1:{port}")]);
    let dp = start(cmd, &dir.join("dp.log"));
    (state, dp)
}

/// The example site (copied to `dir/site`) and inventory applied to
/// `state`.
pub fn apply_example(dir: &Path, state: &str) {
    let site = dir.join("site");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/site"),
        &site,
    );
    let out = patchops()
        .current_dir(dir)
        .args(["apply", "site", "--auto-approve", "--state", state])
        .output()
        .expect("apply");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inventory = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/inventory.csv");
    let out = patchops()
        .args(["inventory", "import"])
        .arg(&inventory)
        .args(["--state", state])
        .output()
        .expect("import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `check` every 100 ms until it holds; after `within`, panics with
/// `what` and what `logs` returns (the servers' logs).
pub async fn wait_until<F, Fut>(
    within: Duration,
    what: &str,
    logs: impl Fn() -> String,
    mut check: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < within,
            "not within {within:?}: {what}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An HTTP client for the servers under test, with a request timeout.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    patchops::tls::install_default_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("client")
}
