//! Registration with a gateway (`--gateway`): for workers started elsewhere
//! (another node, a Kubernetes pod) rather than by `mig-gateway up`.
//!
//! The worker sends a heartbeat carrying its `Info` every interval the
//! gateway asks for. The first one registers it; silence drops it from
//! routing after the gateway's timeout; on shutdown a last heartbeat marked
//! `leaving` takes it out at once. A gateway that is down or restarting is
//! retried at the same pace, so a worker joins whenever the gateway comes up.

use std::sync::Arc;
use std::time::Duration;

use mig_proto::worker::v1::registration_client::RegistrationClient;
use mig_proto::worker::v1::HeartbeatRequest;
use mig_serve::secret::Secret;
use tokio::sync::watch;

use crate::service::WorkerService;

/// Pace before the gateway has answered once.
const FIRST_INTERVAL: Duration = Duration::from_secs(1);
/// Bounds on the pace a gateway may ask for.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// One heartbeat may take this long before it counts as failed; longer than
/// the gateway's first probe of a new worker (2 s), which the answer waits for.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Failures are logged on the first one and then every this many.
const LOG_EVERY: u32 = 30;

/// Where to register and how the gateway reaches this worker.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The gateway's internal listener, `http://host:port`.
    pub gateway: String,
    /// This worker's address as the gateway must dial it, `http://host:port`.
    pub advertise: String,
    /// The gateway's registration token, sent with every heartbeat.
    pub token: Option<Secret>,
    /// TLS to the gateway's internal listener (mTLS), or plain.
    pub tls: Option<GatewayTls>,
}

/// `--gateway-tls-ca` and the client certificate this worker shows
/// (`--gateway-tls-cert`, `--gateway-tls-key`).
#[derive(Debug, Clone)]
pub struct GatewayTls {
    pub ca: std::path::PathBuf,
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
}

/// Sends heartbeats until `leaving` turns true, then one last heartbeat that
/// says so.
pub async fn heartbeat_loop(
    registration: Registration,
    service: Arc<WorkerService>,
    mut leaving: watch::Receiver<bool>,
) {
    let tls = registration.tls.as_ref();
    let endpoint = mig_serve::tls::client_endpoint_with_identity(
        &registration.gateway,
        tls.map(|t| t.ca.as_path()),
        tls.and_then(|t| Some((t.cert.as_deref()?, t.key.as_deref()?))),
    );
    let channel = match endpoint {
        Ok(endpoint) => endpoint
            .connect_timeout(CALL_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy(),
        Err(e) => {
            // `ServeArgs::validate` checks the URI first; this is unreachable
            // in practice but must not take the worker down.
            tracing::error!(gateway = %registration.gateway, error = %e, "bad gateway address; not registering");
            return;
        }
    };
    let mut client = RegistrationClient::new(channel);
    let heartbeat = |leaving: bool| {
        let mut request = tonic::Request::new(HeartbeatRequest {
            address: registration.advertise.clone(),
            info: Some(service.worker_info()),
            leaving,
        });
        request.set_timeout(CALL_TIMEOUT);
        if let Some(token) = &registration.token {
            token.attach(request.metadata_mut());
        }
        request
    };

    let mut interval = FIRST_INTERVAL;
    let mut failures = 0u32;
    let mut registered = false;
    loop {
        let answer = tokio::time::timeout(CALL_TIMEOUT, client.heartbeat(heartbeat(false))).await;
        match answer {
            Ok(Ok(response)) => {
                let response = response.into_inner();
                // At least three heartbeats per timeout, whatever the
                // gateway's two figures say.
                let asked = Duration::from_millis(response.interval_ms.into());
                let timeout = Duration::from_millis(response.timeout_ms.into());
                interval = asked.min(timeout / 3).clamp(MIN_INTERVAL, MAX_INTERVAL);
                if !registered {
                    tracing::info!(gateway = %registration.gateway, advertise = %registration.advertise,
                        ?interval, timeout_ms = response.timeout_ms, "registered with the gateway");
                }
                registered = true;
                failures = 0;
            }
            failed => {
                let reason = match failed {
                    Ok(Err(status)) => status.to_string(),
                    _ => format!("no answer within {CALL_TIMEOUT:?}"),
                };
                if failures.is_multiple_of(LOG_EVERY) {
                    tracing::warn!(gateway = %registration.gateway, %reason, failures = failures + 1,
                        "heartbeat failed; retrying");
                }
                failures += 1;
                registered = false;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            changed = leaving.changed() => {
                if changed.is_err() || *leaving.borrow() {
                    break;
                }
            }
        }
    }
    match tokio::time::timeout(CALL_TIMEOUT, client.heartbeat(heartbeat(true))).await {
        Ok(Ok(_)) => {
            tracing::info!(gateway = %registration.gateway, "told the gateway this worker is leaving")
        }
        _ => tracing::warn!(gateway = %registration.gateway,
            "could not tell the gateway this worker is leaving; it drops it after its heartbeat timeout"),
    }
}
