//! In-process servers on loopback, and the HTTP client for the
//! processes under test.

use std::time::Duration;

use super::tls::ServerCert;

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

/// An HTTP client for the servers under test, with a request timeout.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    patchops::tls::install_default_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("client")
}
