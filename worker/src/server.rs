//! Start-up and serving: load the model on the engine thread, then serve
//! `mig.worker.v1.Worker`, gRPC health and reflection on a bound listener.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mig_proto::worker::v1::worker_server::WorkerServer;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic_health::ServingStatus;

use crate::engine::{Engine, EngineConfig, Health, ModelSpec};
use crate::error::StartupError;
use crate::identity::Identity;
use crate::metrics::WorkerMetrics;
use crate::model::{Codec, ModelKind};
use crate::register::GatewayTls;
use crate::register::{register_everywhere, Registration};
use crate::service::WorkerService;
use crate::validate::Limits;
use mig_serve::secret::Secret;
use tonic::service::interceptor::InterceptedService;

/// A worker whose model is loaded, ready to serve.
pub struct Ready {
    engine: Arc<Engine>,
    codec: Codec,
    pub identity: Identity,
    limits: Limits,
    grace: Duration,
    /// `--gateway` and `--advertise`: register with the gateways once serving.
    gateway: Vec<String>,
    advertise: Option<String>,
    registration_token: Option<Secret>,
    caller_token: Option<Secret>,
    gateway_tls: Option<GatewayTls>,
    pub metrics: Arc<WorkerMetrics>,
    /// `--metrics-listen`, bound.
    metrics_listener: Option<TcpListener>,
}

impl Ready {
    pub fn kind(&self) -> ModelKind {
        self.codec.kind()
    }

    pub fn context_length(&self) -> usize {
        self.codec.context_length()
    }

    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }
}

/// Errors of [`run`].
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("gRPC server: {0}")]
    Io(#[from] std::io::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The engine thread died: the process exits non-zero so that its
    /// supervisor restarts it.
    #[error("the engine failed: {0}")]
    EngineFailed(String),
}

/// Completes, with the reason, when the engine thread fails; never when it
/// serves or stops.
async fn engine_failure(mut health: tokio::sync::watch::Receiver<Health>) -> String {
    let failed = health
        .wait_for(|h| matches!(h, Health::Failed(_)))
        .await
        .map(|h| h.clone());
    match failed {
        Ok(Health::Failed(why)) => why,
        // The thread ended without failing (the worker is stopping).
        _ => std::future::pending().await,
    }
}

/// What [`load`] needs: the command line's choices, checked and typed
/// (`ServeArgs::settings` builds it).
#[derive(Debug, Clone)]
pub struct Settings {
    pub model: ModelSpec,
    pub engine: EngineConfig,
    /// Who this worker is, its slice resolved (NVML for a GPU slice).
    pub identity: Identity,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub max_embed_inputs: usize,
    /// How long running requests may finish after SIGTERM.
    pub grace: Duration,
    /// `--gateway` and `--advertise`: register with the gateways once serving.
    pub gateway: Vec<String>,
    pub advertise: Option<String>,
    /// The gateway's registration token, for `gateway`.
    pub registration_token: Option<Secret>,
    /// The one token calls must carry (the gateway that started this
    /// worker); none: any caller that reaches the port.
    pub caller_token: Option<Secret>,
    /// TLS to the gateway's internal listener, for `gateway`.
    pub gateway_tls: Option<GatewayTls>,
    /// Compute threads (reported in the ready log).
    pub threads: usize,
}

/// Loads the model (on the engine thread) and returns once it is ready.
pub async fn load(settings: Settings) -> Result<Ready, StartupError> {
    let Settings {
        model: spec,
        engine: engine_config,
        identity,
        metrics_listen,
        max_embed_inputs,
        grace,
        gateway,
        advertise,
        registration_token,
        caller_token,
        gateway_tls,
        threads,
    } = settings;
    let source = spec.source.clone();
    let weights = spec.weights;
    let started = std::time::Instant::now();
    let metrics_listener = match metrics_listen {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
            StartupError::Config(format!("binding `--metrics-listen {addr}`: {e}"))
        })?),
        None => None,
    };
    let metrics = WorkerMetrics::new(&identity, engine_config.scheduler.max_waiting);
    let engine_metrics = metrics.clone();
    let (engine, codec) =
        tokio::task::spawn_blocking(move || Engine::start(spec, engine_config, engine_metrics))
            .await
            .map_err(|e| StartupError::Engine(e.to_string()))??;
    tracing::info!(
        model = %identity.model,
        source = %source,
        engine = engine.description(),
        kind = ?codec.kind(),
        context_length = codec.context_length(),
        slice = %identity.slice,
        profile = %identity.profile,
        device = %identity.device,
        threads,
        weights = ?weights,
        max_batch_size = engine_config.scheduler.max_batch_size,
        max_batch_tokens = engine_config.scheduler.max_batch_tokens,
        prefill_chunk = engine_config.scheduler.prefill_chunk,
        kv_tokens = engine.capacity().kv_tokens,
        kv_mib = engine.capacity().kv_bytes >> 20,
        kv_type = engine.capacity().kv_type,
        load_ms = started.elapsed().as_millis() as u64,
        "model loaded"
    );
    let limits = Limits {
        model: identity.model.clone(),
        profile: identity.profile.clone(),
        context_length: codec.context_length(),
        max_embed_inputs,
    };
    Ok(Ready {
        engine: Arc::new(engine),
        codec,
        identity,
        limits,
        grace,
        gateway,
        advertise,
        registration_token,
        caller_token,
        gateway_tls,
        metrics,
        metrics_listener,
    })
}

/// Serves until `shutdown` completes, then drains: health turns NOT_SERVING,
/// no new request is accepted, running ones get the grace period, after which
/// the engine ends them with finish reason `cancelled`. If the engine thread
/// dies, the same happens at once, without the grace period (nothing is
/// left running), and `run` returns [`ServeError::EngineFailed`].
pub async fn run(
    ready: Ready,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let Ready {
        engine,
        codec,
        identity,
        limits,
        grace,
        gateway,
        advertise,
        registration_token,
        caller_token,
        gateway_tls,
        metrics,
        metrics_listener,
    } = ready;
    let registration_token_for_callers = registration_token.clone();
    let metrics_server = metrics_listener.map(|listener| {
        let render = metrics.clone();
        tokio::spawn(mig_serve::metrics_http::serve_metrics(
            listener,
            Arc::new(move || render.render()),
        ))
    });
    let upkeep = tokio::spawn(mig_serve::recorder::upkeep_loop(metrics.handle()));
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<WorkerServer<WorkerService>>().await;
    health.set_service_status("", ServingStatus::Serving).await;
    let service = Arc::new(WorkerService::new(
        engine.clone(),
        codec,
        identity,
        limits,
        metrics,
    ));

    let (leaving_tx, leaving) = tokio::sync::watch::channel(false);
    let heartbeats = if gateway.is_empty() {
        None
    } else {
        let advertise = match advertise {
            Some(a) => a,
            None => format!("http://{}", listener.local_addr()?),
        };
        let registration = Registration {
            gateway: String::new(),
            tls_name: None,
            advertise,
            token: registration_token.clone(),
            tls: gateway_tls.clone(),
        };
        Some(tokio::spawn(register_everywhere(
            gateway,
            registration,
            service.clone(),
            leaving,
        )))
    };

    let (draining_tx, draining) = tokio::sync::oneshot::channel::<()>();
    let graceful = {
        let health = health.clone();
        let failure = engine_failure(engine.health());
        async move {
            tokio::select! {
                () = shutdown => {}
                why = failure => tracing::error!(reason = %why, "engine failed; stopping the worker"),
            }
            // Out of the gateway's routing first, then stop taking requests.
            let _ = leaving_tx.send(true);
            health
                .set_not_serving::<WorkerServer<WorkerService>>()
                .await;
            health
                .set_service_status("", ServingStatus::NotServing)
                .await;
            let _ = draining_tx.send(());
        }
    };
    let grace_timer = tokio::spawn({
        let engine = engine.clone();
        async move {
            if draining.await.is_ok() {
                tokio::time::sleep(grace).await;
                tracing::warn!(?grace, "grace period over; cancelling running generations");
                engine.stop();
            }
        }
    });

    // A registered worker serves only callers with the registration token
    // (the gateway it registered with sends it), as a supervised one serves
    // only the gateway that started it: no one skips the gateway's checks.
    let caller_token = caller_token.or(registration_token_for_callers);
    let mut routes = Routes::builder();
    mig_serve::reflection::add(
        &mut routes,
        &[
            mig_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ],
    )?;
    routes
        .add_service(health_service)
        // Every call must carry the caller token, when this worker has one.
        .add_service(InterceptedService::new(
            WorkerServer::from_arc(service),
            move |request: tonic::Request<()>| match &caller_token {
                Some(token) if !token.authorizes(request.metadata()) => {
                    Err(tonic::Status::unauthenticated(
                        "this worker serves only its gateway (the one that started it, or the one it registered with)",
                    ))
                }
                _ => Ok(request),
            },
        ));
    // Running generations end at `grace` (the timer above cancels them); the
    // extra second lets their final messages reach the clients.
    let drain = grace + Duration::from_secs(1);
    let serving = mig_serve::http2::serve(listener, routes.routes(), graceful, drain);
    // A failed engine leaves nothing running to wait for: a second for the
    // last statuses to leave, and the process goes.
    let failed = async {
        engine_failure(engine.health()).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let result = tokio::select! {
        result = serving => result,
        () = failed => Ok(mig_serve::http2::Drained::TimedOut),
    };
    grace_timer.abort();
    upkeep.abort();
    if let Some(server) = metrics_server {
        server.abort();
    }
    if let Some(heartbeats) = heartbeats {
        // It ends after its last (bounded) heartbeat once `leaving` is set.
        let _ = heartbeats.await;
    }
    engine.stop();
    let engine_health = engine.health();
    // Dropping the last handle joins the engine thread; do it off the runtime.
    drop(tokio::task::spawn_blocking(move || drop(engine)).await);
    tracing::info!(drained = ?result, "worker stopped");
    result?;
    let health = engine_health.borrow().clone();
    match health {
        Health::Failed(why) => Err(ServeError::EngineFailed(why)),
        Health::Serving | Health::Stopped => Ok(()),
    }
}
