//! The connection layer every patchops HTTP server runs on (`patchops
//! server`, `patchops dp serve`): an accept loop over HTTP/1.1 with the
//! limits a server on a hostile network needs.
//!
//! - A request's headers must arrive within [`ConnectionLimits::header_timeout`]
//!   (an idle keep-alive connection waiting for its next request is closed
//!   after the same time), and its body within
//!   [`ConnectionLimits::body_timeout`]: a half-sent request does not hold a
//!   descriptor for ever.
//! - At most [`ConnectionLimits::max_connections`] connections are served at
//!   once; further ones wait in the kernel's accept queue (holding no
//!   descriptor of this process) and a warning is logged once per burst.
//! - On shutdown, no connection is accepted any more, idle ones close, and
//!   requests in flight get [`ConnectionLimits::shutdown_deadline`] to
//!   finish; connections still open then are dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// The least time between two warnings that the connection cap is reached.
const CAP_WARNING_EVERY: Duration = Duration::from_secs(60);

/// The limits of one server's connections (`docs/server.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body, from the end of
    /// its headers.
    pub body_timeout: Duration,
    /// How many connections are served at once.
    pub max_connections: usize,
    /// How long requests in flight may take to finish after a shutdown
    /// signal.
    pub shutdown_deadline: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
            shutdown_deadline: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then drains the
/// connections within the shutdown deadline. `what` names the server in
/// log lines.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    what: &'static str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    // When the cap was last reported: at most one warning a minute, however
    // the connections come and go while the server is at its cap.
    let mut warned: Option<tokio::time::Instant> = None;
    loop {
        while connections.try_join_next().is_some() {}
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if warned.is_none_or(|at| at.elapsed() >= CAP_WARNING_EVERY) {
                    warned = Some(tokio::time::Instant::now());
                    tracing::warn!(
                        server = what,
                        max_connections = limits.max_connections,
                        "the connection limit is reached; new connections wait until one closes"
                    );
                }
                tokio::select! {
                    () = &mut shutdown => break,
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                }
            }
        };
        let (tcp, _peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: wait instead of spinning.
                    tracing::warn!(server = what, error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Small responses (304s, manifests) should not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let request =
                        request.map(|body| Body::new(DeadlineBody::new(body, limits.body_timeout)));
                    let mut app = app.clone();
                    async move {
                        use tower_service::Service;
                        app.call(request).await
                    }
                },
            );
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true);
            let connection = builder.serve_connection(TokioIo::new(tcp), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = stop.wait_for(|stopped| *stopped) => {}
            }
            // Finish the request in flight (if any), then close.
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let open = connections.len();
    let drained = tokio::time::timeout(limits.shutdown_deadline, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            server = what,
            open = connections.len(),
            deadline_s = limits.shutdown_deadline.as_secs_f64(),
            "connections still open at the shutdown deadline are dropped"
        );
        connections.shutdown().await;
    } else if open > 0 {
        tracing::debug!(server = what, open, "connections drained");
    }
    Ok(())
}

/// A request body that fails once its deadline passes before it ended.
struct DeadlineBody {
    inner: hyper::body::Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl DeadlineBody {
    fn new(inner: hyper::body::Incoming, timeout: Duration) -> DeadlineBody {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }
}

/// The body did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs_f64())]
pub struct BodyTimeout(Duration);

impl HttpBody for DeadlineBody {
    type Data = hyper::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(this.timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
