//! The listeners of `dfr-api serve`: the API over HTTP/1.1, in TLS when a certificate is given
//! (`tls`), and /metrics on a port of its own. `serve` drains on shutdown: it stops accepting,
//! then for [`CLOSE_NOTICE`] keeps serving the open connections with `Connection: close` on
//! every response, so a client with a pooled connection learns from an answer, not from a
//! closed socket, that it must not reuse it; then it lets each connection finish the request it
//! is in (idle keep-alive connections close at once) and returns when all have, or when the
//! grace period is over, whichever is first.

pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use self::tls::ReloadingCert;

/// How long connections keep being served, each response closing its connection, before the
/// idle ones are closed. Closing an idle keep-alive connection races with a client sending its
/// next request on it (the client then sees the connection drop mid-request).
pub const CLOSE_NOTICE: Duration = Duration::from_secs(2);

/// A client that opens a connection and sends no handshake does not hold a task for long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Likewise for one that sends no complete request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How a drain ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// Every connection finished its request.
    Complete,
    /// The grace period ran out with this many connections still open; they are dropped.
    TimedOut { open: usize },
}

/// Serves `app` on `listener` until `shutdown` completes, then drains for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<ReloadingCert>>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> Result<Drained, String> {
    let acceptor = match tls {
        Some(cert) => Some(TlsAcceptor::from(Arc::new(tls::server_config(cert)?))),
        None => None,
    };
    let graceful = GracefulShutdown::new();
    let draining = Arc::new(AtomicBool::new(false));
    let app = app.layer(axum::middleware::map_response({
        let draining = draining.clone();
        move |mut response: axum::response::Response| {
            let draining = draining.load(Ordering::Relaxed);
            async move {
                if draining {
                    response.headers_mut().insert(
                        axum::http::header::CONNECTION,
                        axum::http::HeaderValue::from_static("close"),
                    );
                }
                response
            }
        }
    }));
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: pause rather than spin.
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let result =
                match acceptor {
                    Some(acceptor) => {
                        let stream =
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(stream)) => stream,
                                Ok(Err(error)) => {
                                    tracing::debug!(%error, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => return,
                            };
                        watcher
                            .watch(http.serve_connection(TokioIo::new(stream), service))
                            .await
                    }
                    None => {
                        watcher
                            .watch(http.serve_connection(TokioIo::new(stream), service))
                            .await
                    }
                };
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    draining.store(true, Ordering::Relaxed);
    let notice = CLOSE_NOTICE.min(grace);
    tokio::time::sleep(notice).await;
    let open = graceful.count();
    tracing::info!(
        open,
        grace_seconds = grace.as_secs(),
        "draining connections"
    );
    let drained = tokio::time::timeout(grace - notice, graceful.shutdown()).await;
    match drained {
        Ok(()) => Ok(Drained::Complete),
        Err(_) => Ok(Drained::TimedOut { open }),
    }
}

/// Completes on SIGTERM (what Kubernetes sends a pod it stops) or Ctrl-C.
pub async fn termination() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            // No handler could be installed: wait for Ctrl-C alone.
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
