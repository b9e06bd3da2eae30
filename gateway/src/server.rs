//! The gateway's gRPC server: the public Inference API, gRPC health and
//! reflection, and the loop that keeps worker health current.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mig_proto::inference::v1::inference_server::InferenceServer;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic_health::ServingStatus;

use crate::registry::{self, Registry};
use crate::service::InferenceService;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC server: {0}")]
    Io(#[from] std::io::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Serves until `shutdown` completes, then stops accepting and lets running
/// calls finish for at most `drain`.
pub async fn run(
    registry: Arc<Registry>,
    listener: TcpListener,
    health_interval: Duration,
    drain: Duration,
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
    let prober = tokio::spawn(registry::health_loop(registry.clone(), health_interval));
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
        .add_service(InferenceServer::new(InferenceService::new(registry)));
    let result = mig_proto::serve::serve(listener, routes.routes(), graceful, drain).await;
    prober.abort();
    tracing::info!(drained = ?result, "gateway server stopped");
    result?;
    Ok(())
}
