//! Serving gRPC routes over HTTP/2 on a bound listener.
//!
//! tonic's own `Server` wraps every service in a layer that enforces the
//! `grpc-timeout` header on the response future and answers `CANCELLED`
//! ("Timeout expired") when it elapses. gRPC says an expired deadline is
//! `DEADLINE_EXCEEDED`, and a streamed response outlives its response future
//! anyway, so the servers here enforce deadlines themselves, and serve their
//! routes as an axum router (which tonic's router is built on) through
//! their own accept loop ([`crate::connections`]: timeouts, caps, TLS).

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::service::Routes;

use crate::connections::{ConnectionLimits, Tls};

/// How serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every connection closed within the drain period.
    Clean,
    /// Connections were still open when the drain period ended; they are dropped.
    TimedOut,
}

/// Serves `routes` until `shutdown` completes, then stops accepting and lets
/// open calls finish for at most `drain`; connections within the default
/// [`ConnectionLimits`], except that an idle one is kept: a worker's clients
/// are its gateways, whose pooled connections may rest between bursts, and
/// a GOAWAY racing a new call would count as a failure against the worker.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<Drained> {
    let limits = ConnectionLimits {
        idle_timeout: Duration::from_secs(86_400),
        ..ConnectionLimits::default()
    };
    serve_with(listener, None, routes, limits, shutdown, drain).await
}

/// [`serve`] with TLS (when `tls` is set) and these connection limits.
pub async fn serve_with(
    listener: TcpListener,
    tls: Tls,
    routes: Routes,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<Drained> {
    crate::connections::serve(
        listener,
        tls,
        routes.prepare().into_axum_router(),
        limits,
        shutdown,
        drain,
    )
    .await
}
