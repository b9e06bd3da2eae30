//! Registration with gateways (`--gateway`): for workers started elsewhere
//! (another node, a Kubernetes pod) rather than by `mig-gateway up`.
//!
//! [`register_everywhere`] keeps one heartbeat loop per gateway address: each
//! `--gateway` name is resolved again every [`RESOLVE_EVERY`], so a worker
//! registers with every replica behind a headless Service, including ones
//! that start later, and stops calling replicas that are gone. Any gateway
//! replica can then route to any worker.
//!
//! The worker sends a heartbeat carrying its `Info` every interval the
//! gateway asks for. The first one registers it; silence drops it from
//! routing after the gateway's timeout; on shutdown a last heartbeat marked
//! `leaving` takes it out at once. A gateway that is down or restarting is
//! retried at the same pace, so a worker joins whenever the gateway comes up.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mig_proto::worker::v1::registration_client::RegistrationClient;
use mig_proto::worker::v1::HeartbeatRequest;
use mig_serve::secret::Secret;
use tokio::sync::watch;

use crate::service::WorkerService;

/// How often each `--gateway` name is resolved again.
pub const RESOLVE_EVERY: Duration = Duration::from_secs(10);
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
    /// The name the gateway's certificate must carry when `gateway` is an
    /// address found by resolving it.
    pub tls_name: Option<String>,
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
    let endpoint = mig_serve::tls::client_endpoint_named(
        &registration.gateway,
        tls.map(|t| t.ca.as_path()),
        tls.and_then(|t| Some((t.cert.as_deref()?, t.key.as_deref()?))),
        registration.tls_name.as_deref(),
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

/// A `--gateway` URL taken apart: how to dial it and the name to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GatewayName {
    scheme: String,
    host: String,
    port: u16,
}

impl GatewayName {
    fn parse(url: &str) -> Option<GatewayName> {
        let uri: tonic::codegen::http::Uri = url.parse().ok()?;
        let scheme = uri.scheme_str().unwrap_or("http").to_string();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let host = uri.host()?.trim_matches(['[', ']']).to_string();
        Some(GatewayName { scheme, host, port })
    }

    /// The URL that dials `address`.
    fn url_of(&self, address: SocketAddr) -> String {
        format!("{}://{address}", self.scheme)
    }

    /// The addresses the name stands for now (an address stands for itself).
    async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        let mut found: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .collect();
        found.sort();
        found.dedup();
        Ok(found)
    }
}

/// One heartbeat loop per address of every gateway in `gateways`, kept in
/// step with what their names resolve to, until `leaving` turns true; then
/// every loop says so to its gateway. `template` holds what every
/// registration shares (its `gateway` is filled per address).
pub async fn register_everywhere(
    gateways: Vec<String>,
    template: Registration,
    service: Arc<WorkerService>,
    mut leaving: watch::Receiver<bool>,
) {
    let names: Vec<GatewayName> = gateways
        .iter()
        .filter_map(|url| {
            let name = GatewayName::parse(url);
            if name.is_none() {
                // `--gateway` is checked at start; not reachable in practice.
                tracing::error!(gateway = %url, "bad gateway address; not registering with it");
            }
            name
        })
        .collect();
    let mut loops: HashMap<SocketAddr, (watch::Sender<bool>, tokio::task::JoinHandle<()>)> =
        HashMap::new();
    let mut failures = 0u32;
    loop {
        let mut wanted: HashMap<SocketAddr, &GatewayName> = HashMap::new();
        let mut unresolved = false;
        for name in &names {
            match name.resolve().await {
                Ok(addresses) => {
                    for address in addresses {
                        wanted.entry(address).or_insert(name);
                    }
                }
                Err(e) => {
                    unresolved = true;
                    if failures.is_multiple_of(LOG_EVERY) {
                        tracing::warn!(gateway = %name.host, error = %e, "gateway name does not resolve; retrying");
                    }
                }
            }
        }
        failures = if unresolved { failures + 1 } else { 0 };
        // Gone from every name: that replica went away (a failed lookup
        // keeps what it found before).
        if !unresolved {
            loops.retain(|address, (_, task)| {
                let keep = wanted.contains_key(address);
                if !keep {
                    tracing::info!(gateway = %address, "gateway address gone; no longer registering with it");
                    task.abort();
                }
                keep
            });
        }
        for (address, name) in wanted {
            if loops.contains_key(&address) {
                continue;
            }
            let named = name.host.parse::<IpAddr>().is_err();
            let registration = Registration {
                gateway: name.url_of(address),
                tls_name: named.then(|| name.host.clone()),
                ..template.clone()
            };
            let (tx, rx) = watch::channel(false);
            let task = tokio::spawn(heartbeat_loop(registration, service.clone(), rx));
            loops.insert(address, (tx, task));
        }
        tokio::select! {
            _ = tokio::time::sleep(RESOLVE_EVERY) => {}
            changed = leaving.changed() => {
                if changed.is_err() || *leaving.borrow() {
                    break;
                }
            }
        }
    }
    for (tx, _) in loops.values() {
        let _ = tx.send(true);
    }
    for (_, (_, task)) in loops {
        let _ = task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_url_is_taken_apart() {
        let n = GatewayName::parse("http://mig-gateway-internal.mig.svc:50052").unwrap();
        assert_eq!(n.host, "mig-gateway-internal.mig.svc");
        assert_eq!(n.port, 50052);
        assert_eq!(
            n.url_of("10.0.0.7:50052".parse().unwrap()),
            "http://10.0.0.7:50052"
        );
        let v6 = GatewayName::parse("https://[::1]:9").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 9));
        assert_eq!(GatewayName::parse("http://h").unwrap().port, 80);
    }

    #[tokio::test]
    async fn a_name_resolves_to_its_addresses_and_an_address_to_itself() {
        let ip = GatewayName::parse("http://127.0.0.1:5").unwrap();
        assert_eq!(
            ip.resolve().await.unwrap(),
            ["127.0.0.1:5".parse().unwrap()]
        );
        let name = GatewayName::parse("http://localhost:5").unwrap();
        let found = name.resolve().await.unwrap();
        assert!(!found.is_empty() && found.iter().all(|a| a.ip().is_loopback() && a.port() == 5));
    }
}
