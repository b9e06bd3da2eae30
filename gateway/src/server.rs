//! The gateway's gRPC server: the public Inference API, worker registration,
//! gRPC health and reflection, and the loops that keep worker health current
//! and drop registered workers that went silent.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mig_proto::inference::v1::inference_server::InferenceServer;
use mig_proto::worker::v1::registration_server::RegistrationServer;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tower::Layer;

use crate::fleet::registration::{self, HeartbeatPolicy, RegistrationService};
use crate::metrics::GatewayMetrics;
use crate::registry::{self, Registry};
use crate::request::layers::StampLayer;
use crate::request::service::InferenceService;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC server: {0}")]
    Io(#[from] std::io::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Timings and side listeners of a running gateway.
#[derive(Debug)]
pub struct ServerOptions {
    /// Between health probes of each worker.
    pub health_interval: Duration,
    /// How long running calls may finish after shutdown begins.
    pub drain: Duration,
    /// Pace and timeout of registered workers' heartbeats.
    pub heartbeat: HeartbeatPolicy,
    /// Whether workers may register themselves (`--accept-registrations`).
    pub accept_registrations: bool,
    /// `--metrics-listen`, bound: where `/metrics` is served.
    pub metrics_listener: Option<TcpListener>,
}

/// Serves until `shutdown` completes, then stops accepting and lets running
/// calls finish for at most `options.drain`.
pub async fn run(
    registry: Arc<Registry>,
    listener: TcpListener,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<InferenceServer<InferenceService>>()
        .await;
    health.set_service_status("", ServingStatus::Serving).await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mig_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let prober = tokio::spawn(registry::health_loop(
        registry.clone(),
        options.health_interval,
    ));
    let reaper = tokio::spawn(registration::reaper(registry.clone(), options.heartbeat));
    let gateway_metrics = GatewayMetrics::new();
    let upkeep = tokio::spawn(mig_serve::recorder::upkeep_loop(gateway_metrics.handle()));
    let metrics_server = options.metrics_listener.map(|listener| {
        let (m, r) = (gateway_metrics.clone(), registry.clone());
        tokio::spawn(mig_serve::metrics_http::serve_metrics(
            listener,
            Arc::new(move || m.render(&r)),
        ))
    });
    let graceful = async move {
        shutdown.await;
        health
            .set_not_serving::<InferenceServer<InferenceService>>()
            .await;
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
    };
    let mut routes = Routes::builder();
    routes
        .add_service(health_service)
        .add_service(reflection)
        .add_service(RegistrationServer::new(RegistrationService::new(
            registry.clone(),
            options.heartbeat,
            options.accept_registrations,
        )))
        // Every public call is stamped with its arrival and deadline first.
        .add_service(StampLayer.layer(InferenceServer::new(InferenceService::new(
            registry,
            gateway_metrics,
        ))));
    let result = mig_serve::http2::serve(listener, routes.routes(), graceful, options.drain).await;
    prober.abort();
    reaper.abort();
    upkeep.abort();
    if let Some(server) = metrics_server {
        server.abort();
    }
    tracing::info!(drained = ?result, "gateway server stopped");
    result?;
    Ok(())
}
