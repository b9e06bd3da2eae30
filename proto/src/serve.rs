//! Serving gRPC routes over HTTP/2 on a bound listener.
//!
//! tonic's own `Server` wraps every service in a layer that enforces the
//! `grpc-timeout` header on the response future and answers `CANCELLED`
//! ("Timeout expired") when it elapses. gRPC says an expired deadline is
//! `DEADLINE_EXCEEDED`, and a streamed response outlives its response future
//! anyway, so the servers here enforce deadlines themselves, and serve their
//! routes with axum (which tonic's router is built on) instead.

use std::future::Future;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tonic::service::Routes;

/// Serves `routes` until `shutdown` completes, then waits for open calls to
/// finish. Tokens are small writes: Nagle's algorithm is off.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        // Failing only costs latency; the connection still works.
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, routes.prepare().into_axum_router())
        .with_graceful_shutdown(shutdown)
        .await
}
