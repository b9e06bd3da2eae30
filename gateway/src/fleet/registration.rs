//! `mig.worker.v1.Registration`, served by the gateway: workers started
//! elsewhere (`mig-worker serve --gateway ADDR`) join routing with their
//! first heartbeat and leave it when heartbeats stop for longer than the
//! timeout, or at once when the last one says `leaving`.
//!
//! Served only on the internal listener, and only when the gateway runs with
//! `--accept-registrations`; every heartbeat must carry the registration
//! token (`authorization: Bearer`, compared in constant time): anyone who
//! could register a worker would receive users' prompts. A registered worker
//! may not join a model the fleet file serves, and it joins only once the
//! gateway has reached it at the address it gave.

use std::sync::Arc;
use std::time::Duration;

use mig_proto::inference::v1::WorkerOrigin;
use mig_proto::worker::v1::registration_server::Registration;
use mig_proto::worker::v1::{HeartbeatRequest, HeartbeatResponse, WorkerInfo};
use mig_serve::secret::Secret;
use tonic::{Request, Response, Status};

use crate::registry::{Registry, WorkerHandle};

/// Heartbeat pace and tolerance, as told to every worker.
#[derive(Debug, Clone, Copy)]
pub struct HeartbeatPolicy {
    pub interval: Duration,
    /// Silence after which a registered worker is dropped.
    pub timeout: Duration,
}

/// What a worker must show to register.
#[derive(Debug, Clone)]
pub struct RegistrationAccess {
    /// The shared token of `--registration-token-file`.
    pub token: Option<Secret>,
    /// The internal listener takes only clients with a certificate of
    /// `--internal-client-ca` (checked in the TLS handshake, before any
    /// call reaches this service).
    pub client_certificate: bool,
}

pub struct RegistrationService {
    registry: Arc<Registry>,
    policy: HeartbeatPolicy,
    access: RegistrationAccess,
}

impl RegistrationService {
    pub fn new(
        registry: Arc<Registry>,
        policy: HeartbeatPolicy,
        access: RegistrationAccess,
    ) -> Self {
        RegistrationService {
            registry,
            policy,
            access,
        }
    }

    /// The caller proved it may register (the token is never echoed).
    fn check_access<T>(&self, request: &Request<T>) -> Result<(), Status> {
        match &self.access.token {
            Some(token) if !token.authorizes(request.metadata()) => Err(Status::unauthenticated(
                "registration needs this gateway's token: give the worker \
                 `--registration-token-file` with the gateway's `--registration-token-file`",
            )),
            Some(_) => Ok(()),
            // Without a token, the server was started with mTLS only: the
            // handshake checked the worker's certificate.
            None if self.access.client_certificate => Ok(()),
            None => Err(Status::unauthenticated("registration is closed")),
        }
    }

    async fn register(
        &self,
        address: &str,
        info: mig_proto::worker::v1::WorkerInfo,
    ) -> Result<(), Status> {
        let fleet_served = self
            .registry
            .workers(&info.model)
            .unwrap_or_default()
            .iter()
            .any(|w| w.origin != WorkerOrigin::Registered);
        if fleet_served {
            return Err(Status::failed_precondition(format!(
                "model `{}` is served by the gateway's fleet file; a registered worker may not join it",
                info.model
            )));
        }
        let model = info.model.clone();
        let (handle, new) = self.registry.upsert_registered(address, info, || {
            // The worker takes calls carrying the registration token only.
            WorkerHandle::with_token(
                model.clone(),
                address.to_string(),
                WorkerOrigin::Registered,
                self.access.token.clone(),
            )
            .map_err(|e| {
                Status::invalid_argument(format!("`address` `{address}` is not a valid URI: {e}"))
            })
        })?;
        if new {
            // Join routing only once the gateway has reached the worker.
            if !handle.probe().await {
                self.registry.remove(&handle);
                return Err(Status::failed_precondition(format!(
                    "the gateway cannot reach this worker at `address` `{address}`; set `--advertise` to an address the gateway can dial"
                )));
            }
            let info = handle.info().unwrap_or_default();
            tracing::info!(model = %handle.model, %address, slice = %info.slice, profile = %info.profile,
                "worker registered");
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Registration for RegistrationService {
    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        self.check_access(&request)?;
        let HeartbeatRequest {
            address,
            info,
            leaving,
        } = request.into_inner();
        if address.trim().is_empty() {
            return Err(Status::invalid_argument(
                "`address` is empty: say where the gateway can dial this worker (`http://host:port`)",
            ));
        }
        let Some(info) = info else {
            return Err(Status::invalid_argument("`info` is missing"));
        };
        if info.model.trim().is_empty() {
            return Err(Status::invalid_argument("`info.model` is empty"));
        }
        check_sizes(&address, &info)?;
        if leaving {
            if let Some(known) = self.registry.registered_at(&address) {
                self.registry.remove(&known);
                tracing::info!(model = %known.model, %address, "worker left");
            }
        } else {
            self.register(&address, info).await?;
        }
        Ok(Response::new(HeartbeatResponse {
            interval_ms: self.policy.interval.as_millis() as u32,
            timeout_ms: self.policy.timeout.as_millis() as u32,
        }))
    }
}

/// Longest text a heartbeat's address or identity field may hold, in
/// bytes: they become routing entries and metric labels.
pub const MAX_FIELD_BYTES: usize = 256;

/// Every text field of a heartbeat within [`MAX_FIELD_BYTES`], named when
/// one is not (never repeated).
fn check_sizes(address: &str, info: &WorkerInfo) -> Result<(), Status> {
    let fields = [
        ("address", address),
        ("info.worker_id", info.worker_id.as_str()),
        ("info.model", info.model.as_str()),
        ("info.slice", info.slice.as_str()),
        ("info.profile", info.profile.as_str()),
        ("info.device", info.device.as_str()),
        ("info.gpu", info.gpu.as_str()),
        ("info.engine", info.engine.as_str()),
        ("info.gpu_instance_id", info.gpu_instance_id.as_str()),
        ("info.hostname", info.hostname.as_str()),
    ];
    for (name, value) in fields {
        if value.len() > MAX_FIELD_BYTES {
            return Err(Status::invalid_argument(format!(
                "`{name}` is {} bytes, limit {MAX_FIELD_BYTES}",
                value.len()
            )));
        }
    }
    Ok(())
}

/// Drops registered workers that have been silent longer than the timeout.
/// Runs until the task is dropped.
pub async fn reaper(registry: Arc<Registry>, policy: HeartbeatPolicy) {
    let mut tick = tokio::time::interval(policy.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for worker in registry.remove_silent(policy.timeout) {
            tracing::warn!(model = %worker.model, address = %worker.address(),
                silence = ?worker.silence(), "registered worker stopped heartbeating; dropped from routing");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "registration-token-for-tests";

    fn service() -> (Arc<Registry>, RegistrationService) {
        let registry = Arc::new(Registry::default());
        let policy = HeartbeatPolicy {
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
        };
        let access = RegistrationAccess {
            token: Some(Secret::new(TOKEN).unwrap()),
            client_certificate: false,
        };
        (
            registry.clone(),
            RegistrationService::new(registry, policy, access),
        )
    }

    fn beat_with(address: &str, model: &str, token: Option<&str>) -> Request<HeartbeatRequest> {
        let mut request = Request::new(HeartbeatRequest {
            address: address.into(),
            info: Some(WorkerInfo {
                model: model.into(),
                ..Default::default()
            }),
            leaving: false,
        });
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        request
    }

    fn beat(address: &str, model: &str) -> Request<HeartbeatRequest> {
        beat_with(address, model, Some(TOKEN))
    }

    /// An address where nothing listens.
    async fn closed_port() -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", l.local_addr().unwrap())
    }

    #[tokio::test]
    async fn refused_without_the_token_which_is_never_echoed() {
        let (registry, svc) = service();
        for token in [None, Some("wrong-token-of-enough-bytes"), Some("")] {
            let e = svc
                .heartbeat(beat_with("http://127.0.0.1:1", "m", token))
                .await
                .unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated);
            assert!(e.message().contains("--registration-token-file"), "{e:?}");
            assert!(!e.message().contains(TOKEN) && !e.message().contains("wrong"));
        }
        assert!(registry.model_names().is_empty());
    }

    #[tokio::test]
    async fn bad_heartbeats_name_the_field() {
        let (_, svc) = service();
        let e = svc.heartbeat(beat("", "m")).await.unwrap_err();
        assert!(e.message().contains("`address`"), "{e:?}");
        let e = svc.heartbeat(beat("http://h:1", "")).await.unwrap_err();
        assert!(e.message().contains("`info.model`"), "{e:?}");
        let e = svc.heartbeat(beat("not a uri", "m")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        // A long identity field would become a routing entry and a metric
        // label: refused, named, not repeated.
        let mut long = beat("http://h:1", "m");
        long.get_mut().info.as_mut().unwrap().hostname = "h".repeat(10_000);
        let e = svc.heartbeat(long).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert_eq!(e.message(), "`info.hostname` is 10000 bytes, limit 256");
    }

    #[tokio::test]
    async fn a_worker_the_gateway_cannot_reach_does_not_join() {
        let (registry, svc) = service();
        let address = closed_port().await;
        let e = svc.heartbeat(beat(&address, "m")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert!(e.message().contains("--advertise"), "{e:?}");
        assert!(registry.model_names().is_empty());
    }

    #[tokio::test]
    async fn fleet_models_cannot_be_joined() {
        let (registry, svc) = service();
        let fleet =
            WorkerHandle::new("m".into(), closed_port().await, WorkerOrigin::Fleet).unwrap();
        registry.add(Arc::new(fleet));
        let e = svc
            .heartbeat(beat(&closed_port().await, "m"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert!(e.message().contains("fleet file"), "{e:?}");
        assert_eq!(registry.workers("m").unwrap().len(), 1);
    }
}
