//! `GET /metrics` on a listener of its own (HTTP/1.1, as Prometheus scrapes).

use tokio::net::TcpListener;

/// The Prometheus text format's content type.
const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `GET /metrics` (HTTP/1.1, as Prometheus scrapes) with whatever
/// `render` returns at that moment, until the task is dropped.
pub async fn serve_metrics(
    listener: TcpListener,
    render: std::sync::Arc<dyn Fn() -> String + Send + Sync>,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let render = render.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, EXPOSITION)], render()) }
        }),
    );
    axum::serve(listener, app).await
}
