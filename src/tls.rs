//! TLS for every HTTP client patchops makes (the sync host's catalog
//! fetcher, `updates download`, the agent, `--site` admin calls): rustls
//! with the `ring` crypto provider, HTTP/1.1 over ALPN.
//!
//! Trust: the system's certificate store (the distribution's CA bundle,
//! where an organisation installs its own CAs), or — with a CA file — only
//! the certificates in that PEM file (as `curl --cacert` does), for a
//! server whose certificate a private CA issued.
//!
//! Certificate problems are told apart ([`certificate_problem`]): not
//! trusted, issued for another host, expired or not yet valid, so that the
//! messages say what is wrong and what to do.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// A TLS setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("the CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("cannot set up TLS: {0}")]
    Setup(String),
}

/// The crypto provider every client and test server uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Makes `ring` the process's default provider, for HTTP clients that are
/// built without [`client_builder`] (reqwest refuses to build a client
/// without one). Idempotent; the binary calls it first thing.
pub fn install_default_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Another provider installed first is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The certificates of a PEM file (one or more `CERTIFICATE` blocks; other
/// blocks are ignored). None in it is an error.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |reason: String| TlsError::CaFile {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not a PEM file: {e}")))?;
    if certs.is_empty() {
        return Err(fail(
            "holds no certificate (expected PEM `-----BEGIN CERTIFICATE-----` blocks)".into(),
        ));
    }
    Ok(certs)
}

/// The system's trusted roots, read once per process.
fn system_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::debug!(error = %e, "a system certificate could not be read");
            }
            let mut store = rustls::RootCertStore::empty();
            let (added, ignored) = store.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "system trust store loaded");
            Arc::new(store)
        })
        .clone()
}

/// The rustls configuration of a client: the system's roots, or only the
/// CA file's certificates; HTTP/1.1 by ALPN.
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let roots = match ca_file {
        Some(path) => {
            let mut store = rustls::RootCertStore::empty();
            for cert in read_ca_file(path)? {
                store.add(cert).map_err(|e| TlsError::CaFile {
                    path: path.to_path_buf(),
                    reason: format!("a certificate in it cannot be a trust anchor: {e}"),
                })?;
            }
            Arc::new(store)
        }
        None => system_roots(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A reqwest client builder with [`client_config`] as its TLS, following
/// no redirect: a client of the site server or the admin API sends a
/// bearer credential with every request, and a redirect must not carry it
/// to another host (`docs/server.md`, "Redirects"). A client that fetches
/// public content opts in with [`credential_free_redirects`].
pub fn client_builder(ca_file: Option<&Path>) -> Result<reqwest::ClientBuilder, TlsError> {
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(client_config(ca_file)?)
        .redirect(reqwest::redirect::Policy::none()))
}

/// Follows up to `max` redirects, to any origin: for content fetched
/// without credentials (DP content, catalogs), which the caller verifies
/// by its hash. Such requests never carry credentials: manifests refuse
/// URLs with `user:password@`, the fetchers refuse them too, and a proxy's
/// credentials go to the proxy alone.
pub fn content_redirects(max: usize) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::limited(max)
}

/// Whether a URL carries credentials (`user:password@`).
pub fn has_credentials(url: &reqwest::Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

/// Where a redirect answer points (`Location`, resolved against the URL
/// asked), for a message: scheme, host, port and path, without user
/// information or query. None for an answer that is not a redirect.
pub fn redirect_target(response: &reqwest::Response) -> Option<String> {
    use reqwest::StatusCode as S;
    let status = response.status();
    if !matches!(
        status,
        S::MOVED_PERMANENTLY
            | S::FOUND
            | S::SEE_OTHER
            | S::TEMPORARY_REDIRECT
            | S::PERMANENT_REDIRECT
    ) {
        return None;
    }
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok());
    Some(match location.map(|l| response.url().join(l)) {
        Some(Ok(url)) => shown_url(&url),
        Some(Err(_)) => "an unreadable Location".to_string(),
        None => "nowhere (no Location header)".to_string(),
    })
}

/// A URL without user information, query or fragment (which may hold
/// secrets); control characters are percent-encoded by the parser.
fn shown_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// What is wrong with a server's certificate (or the TLS handshake), told
/// apart so that a message can say what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateProblem {
    /// Issued by a CA that is not trusted (a private CA without its CA
    /// file, or a self-signed certificate).
    Untrusted,
    /// Valid, but for other names.
    WrongHost {
        presented: Vec<String>,
    },
    Expired {
        detail: String,
    },
    NotYetValid {
        detail: String,
    },
    /// Another refusal of the certificate.
    Other(String),
    /// The handshake failed before any certificate (e.g. the server does
    /// not speak TLS).
    Handshake(String),
}

impl std::fmt::Display for CertificateProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertificateProblem::Untrusted => f.write_str(
                "the server's TLS certificate is not trusted (issued by an unknown certificate authority)",
            ),
            CertificateProblem::WrongHost { presented } if presented.is_empty() => {
                f.write_str("the server's TLS certificate is not valid for this host name")
            }
            CertificateProblem::WrongHost { presented } => write!(
                f,
                "the server's TLS certificate is not valid for this host name (it is for {})",
                presented.join(", ")
            ),
            CertificateProblem::Expired { detail } => {
                write!(f, "the server's TLS certificate has expired{detail}")
            }
            CertificateProblem::NotYetValid { detail } => {
                write!(f, "the server's TLS certificate is not valid yet{detail}")
            }
            CertificateProblem::Other(e) => {
                write!(f, "the server's TLS certificate was refused: {e}")
            }
            CertificateProblem::Handshake(e) => write!(f, "the TLS handshake failed: {e}"),
        }
    }
}

/// The certificate problem somewhere in an error's chain (the rustls error
/// travels inside I/O errors), if there is one.
pub fn certificate_problem(e: &(dyn std::error::Error + 'static)) -> Option<CertificateProblem> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    // Bounded: error chains are short; I/O errors may nest I/O errors.
    for _ in 0..32 {
        let err = current?;
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(describe(r));
        }
        // An I/O error's `source()` skips the error it wraps: look inside.
        current = match err.downcast_ref::<std::io::Error>() {
            Some(io) => match io.get_ref() {
                Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                None => err.source(),
            },
            None => err.source(),
        };
    }
    None
}

fn describe(e: &rustls::Error) -> CertificateProblem {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => CertificateProblem::Untrusted,
            C::NotValidForName => CertificateProblem::WrongHost { presented: vec![] },
            C::NotValidForNameContext { presented, .. } => CertificateProblem::WrongHost {
                presented: presented.iter().map(|n| plain_name(n)).collect(),
            },
            C::Expired => CertificateProblem::Expired {
                detail: String::new(),
            },
            C::ExpiredContext { not_after, .. } => CertificateProblem::Expired {
                detail: format!(" (valid until {})", unix_time(not_after.as_secs())),
            },
            C::NotValidYet => CertificateProblem::NotYetValid {
                detail: String::new(),
            },
            C::NotValidYetContext { not_before, .. } => CertificateProblem::NotYetValid {
                detail: format!(" (valid from {})", unix_time(not_before.as_secs())),
            },
            other => CertificateProblem::Other(format!("{other:?}")),
        },
        rustls::Error::InvalidMessage(_) => CertificateProblem::Handshake(format!(
            "{e} (does the server speak TLS on this port, or plain http://?)"
        )),
        other => CertificateProblem::Handshake(other.to_string()),
    }
}

/// `other.example` out of rustls' `DnsName("other.example")`; other
/// forms as they are.
fn plain_name(presented: &str) -> String {
    match (presented.find('"'), presented.rfind('"')) {
        (Some(a), Some(b)) if b > a => presented[a + 1..b].to_string(),
        _ => presented.to_string(),
    }
}

fn unix_time(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(|| format!("{secs} s after 1970"), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = client_config(Some(&missing)).unwrap_err();
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no pem here\n").unwrap();
        let e = client_config(Some(&empty)).unwrap_err();
        assert!(e.to_string().contains("holds no certificate"), "{e}");
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, ca.cert.pem()).unwrap();
        let config = client_config(Some(&good)).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(client_config(None).is_ok());
    }

    /// A TLS server on loopback with a certificate for `names` from a
    /// fresh CA (whose PEM is returned); it answers one HTTP request.
    async fn tls_server(names: &[&str]) -> (std::net::SocketAddr, String) {
        use rustls::pki_types::PrivateKeyDer;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut buf = [0u8; 1024];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            }
        });
        (addr, ca_cert.pem())
    }

    #[tokio::test]
    async fn a_real_handshake_is_refused_untrusted_or_wrong_host_and_accepted_with_the_ca() {
        let (addr, ca) = tls_server(&["127.0.0.1"]).await;
        let url = format!("https://127.0.0.1:{}/", addr.port());
        let client = client_builder(None).unwrap().build().unwrap();
        let e = client.get(&url).send().await.unwrap_err();
        assert_eq!(
            certificate_problem(&e),
            Some(CertificateProblem::Untrusted),
            "{e:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca).unwrap();
        let client = client_builder(Some(&ca_file)).unwrap().build().unwrap();
        let body = client.get(&url).send().await.unwrap().text().await.unwrap();
        assert_eq!(body, "ok");

        let (addr, ca) = tls_server(&["other.example"]).await;
        std::fs::write(&ca_file, ca).unwrap();
        let client = client_builder(Some(&ca_file)).unwrap().build().unwrap();
        let url = format!("https://127.0.0.1:{}/", addr.port());
        let e = client.get(&url).send().await.unwrap_err();
        let problem = certificate_problem(&e).expect("a certificate problem");
        assert!(
            problem.to_string().contains("(it is for other.example)"),
            "{problem}"
        );
    }

    /// A loopback server answering every request with `answer(path,
    /// Authorization)`.
    async fn loopback(
        answer: impl Fn(&str, Option<&str>) -> axum::response::Response + Clone + Send + Sync + 'static,
    ) -> String {
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let answer = answer.clone();
            async move {
                let auth = request
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                answer(request.uri().path(), auth.as_deref())
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn redirect_to(location: String) -> axum::response::Response {
        axum::response::Response::builder()
            .status(307)
            .header("location", location)
            .body(axum::body::Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn only_content_clients_follow_redirects_and_a_refusal_names_the_target() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Option<String>>::new()));
        let record = seen.clone();
        let c = loopback(move |_, auth| {
            record.lock().unwrap().push(auth.map(str::to_string));
            axum::response::Response::new(axum::body::Body::from("content"))
        })
        .await;
        let to_c = c.clone();
        let b = loopback(move |path, _| redirect_to(format!("{to_c}{path}?secret=1"))).await;
        let to_b = b.clone();
        let a = loopback(move |path, _| redirect_to(format!("{to_b}{path}"))).await;
        // The default client follows nothing and says where it pointed.
        let plain = client_builder(None).unwrap().build().unwrap();
        let response = plain
            .get(format!("{a}/v1/policy"))
            .bearer_auth("token")
            .send()
            .await
            .unwrap();
        assert_eq!(redirect_target(&response), Some(format!("{b}/v1/policy")));
        assert_eq!(*seen.lock().unwrap(), vec![]);
        // A content client follows a two-hop redirect to another origin.
        let content = client_builder(None)
            .unwrap()
            .redirect(content_redirects(5))
            .build()
            .unwrap();
        let body = content.get(format!("{a}/files/x")).send().await.unwrap();
        assert_eq!(body.text().await.unwrap(), "content");
        assert_eq!(*seen.lock().unwrap(), vec![None]);
        // The query (which may hold a secret) is not shown.
        let response = plain.get(format!("{b}/x")).send().await.unwrap();
        assert_eq!(redirect_target(&response), Some(format!("{c}/x")));
    }

    #[test]
    fn certificate_errors_are_told_apart_inside_io_errors() {
        use rustls::CertificateError as C;
        let wrap = |c: C| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(c),
            )
        };
        let io = wrap(C::UnknownIssuer);
        assert_eq!(
            certificate_problem(&io),
            Some(CertificateProblem::Untrusted)
        );
        let p = certificate_problem(&wrap(C::Expired)).unwrap();
        assert!(p.to_string().contains("expired"), "{p}");
        let p = certificate_problem(&wrap(C::NotValidForName)).unwrap();
        assert!(p.to_string().contains("not valid for this host"), "{p}");
        let plain = std::io::Error::other("connection refused");
        assert_eq!(certificate_problem(&plain), None);
    }
}
