//! Serving gRPC routes over HTTP/2 on a bound listener.
//!
//! tonic's own `Server` wraps every service in a layer that enforces the
//! `grpc-timeout` header on the response future and answers `CANCELLED`
//! ("Timeout expired") when it elapses. gRPC says an expired deadline is
//! `DEADLINE_EXCEEDED`, and a streamed response outlives its response future
//! anyway, so the servers here enforce deadlines themselves, and serve their
//! routes with axum (which tonic's router is built on) instead.

use std::future::{Future, IntoFuture};
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::service::Routes;

/// How serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every connection closed within the drain period.
    Clean,
    /// Connections were still open when the drain period ended; they are dropped.
    TimedOut,
}

/// Serves `routes` until `shutdown` completes, then stops accepting and lets
/// open calls finish for at most `drain`. Tokens are small writes: Nagle's
/// algorithm is off.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<Drained> {
    let listener = listener.tap_io(|tcp| {
        // Failing only costs latency; the connection still works.
        let _ = tcp.set_nodelay(true);
    });
    serve_on(listener, routes, shutdown, drain).await
}

/// [`serve`] on TLS connections (`crate::tls::TlsListener`), or on any
/// other listener.
pub async fn serve_tls(
    listener: crate::tls::TlsListener,
    routes: Routes,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<Drained> {
    serve_on(listener, routes, shutdown, drain).await
}

async fn serve_on<L>(
    listener: L,
    routes: Routes,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<Drained>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let (draining_tx, draining) = oneshot::channel();
    let signal = async move {
        shutdown.await;
        let _ = draining_tx.send(());
    };
    let server = axum::serve(listener, routes.prepare().into_axum_router())
        .with_graceful_shutdown(signal)
        .into_future();
    // Clients may hold idle connections open for as long as they like; the
    // drain period bounds how long shutdown waits for them.
    let deadline = async move {
        match draining.await {
            Ok(()) => tokio::time::sleep(drain).await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        served = server => served.map(|()| Drained::Clean),
        () = deadline => Ok(Drained::TimedOut),
    }
}
