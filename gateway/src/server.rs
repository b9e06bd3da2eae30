//! The gateway's servers: the public listener (the Inference API and KServe
//! v2 beside it, gRPC health and reflection of the public API only) and,
//! when workers may register themselves, the internal listener (worker
//! registration, behind its token); and the loops that keep worker health
//! current and drop registered workers that went silent.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mig_proto::inference::v1::inference_server::InferenceServer;
use mig_proto::kserve::grpc_inference_service_server::GrpcInferenceServiceServer;
use mig_proto::worker::v1::registration_server::RegistrationServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tower::Layer;

use crate::admission::{self, Admission, QueueLimits};
use crate::fleet::registration::{self, HeartbeatPolicy, RegistrationAccess, RegistrationService};
use crate::kserve::KserveService;
use crate::metrics::GatewayMetrics;
use crate::registry::{self, Registry};
use crate::request::layers::{InvalidMessageLayer, StampLayer};
use crate::request::service::InferenceService;
use crate::tenancy::auth::AuthLayer;
use crate::tenancy::file::Tenants;
use crate::tenancy::Tenancy;
use mig_serve::connections::ConnectionLimits;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC server: {0}")]
    Io(#[from] std::io::Error),
    #[error("internal gRPC server: {0}")]
    Internal(std::io::Error),
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Where and how workers register themselves.
#[derive(Debug)]
pub struct Registrations {
    /// `--internal-listen`, bound: never the public listener.
    pub listener: TcpListener,
    /// What a worker must show to register.
    pub access: RegistrationAccess,
    /// Pace and timeout of registered workers' heartbeats.
    pub heartbeat: HeartbeatPolicy,
    /// TLS with client certificates (`--internal-client-ca`), or plain.
    pub tls: Option<TlsConfig>,
}

/// A listener's TLS configuration, kept current by `crate::reload`.
pub type TlsConfig = watch::Receiver<Arc<tokio_rustls::rustls::ServerConfig>>;

/// Timings and side listeners of a running gateway.
#[derive(Debug)]
pub struct ServerOptions {
    /// Between health probes of each worker.
    pub health_interval: Duration,
    /// How long running calls may finish after shutdown begins.
    pub drain: Duration,
    /// Worker registration (`--accept-registrations`), or none.
    pub registrations: Option<Registrations>,
    /// `--metrics-listen`, bound: where `/metrics` is served.
    pub metrics_listener: Option<TcpListener>,
    /// `--http-listen`, bound: the OpenAI-compatible HTTP front.
    pub http_listener: Option<TcpListener>,
    /// The tenants in force (`--tenants`, kept current by
    /// `crate::reload`); none: the gateway is open.
    pub tenants: Option<watch::Receiver<Arc<Tenants>>>,
    /// TLS on the public listener (`--tls-cert`), or plain.
    pub tls: Option<TlsConfig>,
    /// The admission queue's bounds.
    pub queue: QueueLimits,
    /// Timeouts and caps of the public listener's connections.
    pub connections: ConnectionLimits,
    /// How long a stream's client may read nothing before it is ended.
    pub stall_timeout: Duration,
}

/// Completes once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|&s| s).await;
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
    health
        .set_serving::<GrpcInferenceServiceServer<KserveService>>()
        .await;
    health.set_service_status("", ServingStatus::Serving).await;
    // The public port describes the public API (its own and KServe v2)
    // and health, nothing internal.
    let public_api = [
        mig_proto::INFERENCE_FILE_DESCRIPTOR_SET,
        mig_proto::KSERVE_FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ];
    let prober = tokio::spawn(registry::health_loop(
        registry.clone(),
        options.health_interval,
    ));
    let gateway_metrics = GatewayMetrics::new();
    let tenancy = Tenancy::new(options.tenants, gateway_metrics.clone());
    if tenancy.is_open() {
        tracing::warn!(
            "no `--tenants` file: the gateway is open: any client that reaches it may call any model, with no key and no limit"
        );
    }
    let upkeep = tokio::spawn(mig_serve::recorder::upkeep_loop(gateway_metrics.handle()));
    let admission = Admission::new(
        registry.clone(),
        gateway_metrics.clone(),
        QueueLimits {
            keep_room: !tenancy.is_open(),
            ..options.queue
        },
    );
    // Waiting requests start as soon as a worker comes back or registers.
    let pump = tokio::spawn(admission::pump_loop(
        admission.clone(),
        Duration::from_millis(250),
    ));
    let metrics_server = options.metrics_listener.map(|listener| {
        let (m, r) = (gateway_metrics.clone(), registry.clone());
        tokio::spawn(mig_serve::metrics_http::serve_metrics(
            listener,
            Arc::new(move || m.render(&r)),
        ))
    });

    // One shutdown for both listeners. Streams still running a second
    // before the drain period ends are told so (`UNAVAILABLE`, "gateway
    // shutting down") while their connections can still carry it.
    let (stop_tx, stop) = watch::channel(false);
    let (cutoff_tx, cutoff) = watch::channel(false);
    let drain = options.drain;
    let graceful = {
        let health = health.clone();
        async move {
            shutdown.await;
            let _ = stop_tx.send(true);
            tokio::spawn(async move {
                let before_end = drain.saturating_sub(Duration::from_secs(1)).max(drain / 2);
                tokio::time::sleep(before_end).await;
                let _ = cutoff_tx.send(true);
            });
            health
                .set_not_serving::<InferenceServer<InferenceService>>()
                .await;
            health
                .set_not_serving::<GrpcInferenceServiceServer<KserveService>>()
                .await;
            health
                .set_service_status("", ServingStatus::NotServing)
                .await;
        }
    };

    let internal = match options.registrations {
        Some(registrations) => Some(serve_internal(
            registry.clone(),
            registrations,
            stopped(stop.clone()),
            options.drain,
        )?),
        None => None,
    };

    // One request path for every front: the project's own API, KServe v2
    // and the OpenAI-compatible HTTP front all call this service.
    let inference = Arc::new(InferenceService::new(
        registry,
        gateway_metrics,
        tenancy.clone(),
        admission,
        options.stall_timeout,
        cutoff,
    ));
    let http = options.http_listener.map(|listener| {
        let front = crate::openai::Front {
            inference: inference.clone(),
            tenancy: tenancy.clone(),
        };
        tokio::spawn(mig_serve::connections::serve(
            listener,
            options.tls.clone().map(crate::tls::with_http1),
            crate::openai::router(front),
            options.connections,
            stopped(stop.clone()),
            options.drain,
        ))
    });
    let mut routes = Routes::builder();
    mig_serve::reflection::add(&mut routes, &public_api)?;
    routes
        .add_service(health_service)
        // Every public call is stamped with its arrival and deadline first,
        // then authenticated; one that does not decode is answered
        // INVALID_ARGUMENT.
        .add_service(
            StampLayer
                .layer(AuthLayer::new(tenancy.clone()).layer(
                    InvalidMessageLayer.layer(InferenceServer::from_arc(inference.clone())),
                )),
        )
        // KServe v2 through the same door, onto the same service.
        .add_service(StampLayer.layer(AuthLayer::new(tenancy.clone()).layer(
            InvalidMessageLayer.layer(GrpcInferenceServiceServer::new(KserveService::new(
                inference.clone(),
            ))),
        )));
    let result = mig_serve::http2::serve_with(
        listener,
        options.tls,
        routes.routes(),
        options.connections,
        graceful,
        options.drain,
    )
    .await;
    let internal_result = match internal {
        Some((task, reaper)) => {
            reaper.abort();
            task.await
                .unwrap_or(Ok(mig_serve::http2::Drained::TimedOut))
        }
        None => Ok(mig_serve::http2::Drained::Clean),
    };
    let http_result = match http {
        Some(task) => task
            .await
            .unwrap_or(Ok(mig_serve::http2::Drained::TimedOut)),
        None => Ok(mig_serve::http2::Drained::Clean),
    };
    prober.abort();
    upkeep.abort();
    pump.abort();
    if let Some(server) = metrics_server {
        server.abort();
    }
    tracing::info!(drained = ?result, internal = ?internal_result, http = ?http_result, "gateway server stopped");
    result?;
    internal_result.map_err(ServeError::Internal)?;
    http_result.map_err(ServeError::Http)?;
    Ok(())
}

type Task<T> = tokio::task::JoinHandle<T>;

/// The internal listener: worker registration (behind its access check) and
/// reflection of the internal API, until `stop`.
fn serve_internal(
    registry: Arc<Registry>,
    registrations: Registrations,
    stop: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> Result<(Task<std::io::Result<mig_serve::http2::Drained>>, Task<()>), ServeError> {
    let Registrations {
        listener,
        access,
        heartbeat,
        tls,
    } = registrations;
    let mut routes = Routes::builder();
    mig_serve::reflection::add(&mut routes, &[mig_proto::FILE_DESCRIPTOR_SET])?;
    let reaper = tokio::spawn(registration::reaper(registry.clone(), heartbeat));
    routes.add_service(RegistrationServer::new(RegistrationService::new(
        registry, heartbeat, access,
    )));
    let routes = routes.routes();
    let task = tokio::spawn(mig_serve::http2::serve_with(
        listener,
        tls,
        routes,
        ConnectionLimits::default(),
        stop,
        drain,
    ));
    Ok((task, reaper))
}
