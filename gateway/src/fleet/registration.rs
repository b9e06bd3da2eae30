//! `mig.worker.v1.Registration`, served by the gateway: workers started
//! elsewhere (`mig-worker serve --gateway ADDR`) join routing with their
//! first heartbeat and leave it when heartbeats stop for longer than the
//! timeout, or at once when the last one says `leaving`.
//!
//! Off unless the gateway runs with `--accept-registrations`: anyone who
//! reaches the port could otherwise put a worker in front of users' prompts.
//! A registered worker may not join a model the fleet file serves, and it
//! joins only once the gateway has reached it at the address it gave.

use std::sync::Arc;
use std::time::Duration;

use mig_proto::inference::v1::WorkerOrigin;
use mig_proto::worker::v1::registration_server::Registration;
use mig_proto::worker::v1::{HeartbeatRequest, HeartbeatResponse};
use tonic::{Request, Response, Status};

use crate::registry::{Registry, WorkerHandle};

/// Heartbeat pace and tolerance, as told to every worker.
#[derive(Debug, Clone, Copy)]
pub struct HeartbeatPolicy {
    pub interval: Duration,
    /// Silence after which a registered worker is dropped.
    pub timeout: Duration,
}

pub struct RegistrationService {
    registry: Arc<Registry>,
    policy: HeartbeatPolicy,
    /// `--accept-registrations`.
    accept: bool,
}

impl RegistrationService {
    pub fn new(registry: Arc<Registry>, policy: HeartbeatPolicy, accept: bool) -> Self {
        RegistrationService {
            registry,
            policy,
            accept,
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
            WorkerHandle::new(model.clone(), address.to_string(), WorkerOrigin::Registered).map_err(
                |e| {
                    Status::invalid_argument(format!(
                        "`address` `{address}` is not a valid URI: {e}"
                    ))
                },
            )
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
        if !self.accept {
            return Err(Status::permission_denied(
                "this gateway does not accept worker registrations; start it with `--accept-registrations`",
            ));
        }
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
    use mig_proto::worker::v1::WorkerInfo;

    fn service(accept: bool) -> (Arc<Registry>, RegistrationService) {
        let registry = Arc::new(Registry::default());
        let policy = HeartbeatPolicy {
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
        };
        (
            registry.clone(),
            RegistrationService::new(registry, policy, accept),
        )
    }

    fn beat(address: &str, model: &str) -> Request<HeartbeatRequest> {
        Request::new(HeartbeatRequest {
            address: address.into(),
            info: Some(WorkerInfo {
                model: model.into(),
                ..Default::default()
            }),
            leaving: false,
        })
    }

    /// An address where nothing listens.
    async fn closed_port() -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", l.local_addr().unwrap())
    }

    #[tokio::test]
    async fn refused_unless_the_gateway_accepts_registrations() {
        let (registry, svc) = service(false);
        let e = svc
            .heartbeat(beat("http://127.0.0.1:1", "m"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains("--accept-registrations"), "{e:?}");
        assert!(registry.model_names().is_empty());
    }

    #[tokio::test]
    async fn bad_heartbeats_name_the_field() {
        let (_, svc) = service(true);
        let e = svc.heartbeat(beat("", "m")).await.unwrap_err();
        assert!(e.message().contains("`address`"), "{e:?}");
        let e = svc.heartbeat(beat("http://h:1", "")).await.unwrap_err();
        assert!(e.message().contains("`info.model`"), "{e:?}");
        let e = svc.heartbeat(beat("not a uri", "m")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    }

    #[tokio::test]
    async fn a_worker_the_gateway_cannot_reach_does_not_join() {
        let (registry, svc) = service(true);
        let address = closed_port().await;
        let e = svc.heartbeat(beat(&address, "m")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert!(e.message().contains("--advertise"), "{e:?}");
        assert!(registry.model_names().is_empty());
    }

    #[tokio::test]
    async fn fleet_models_cannot_be_joined() {
        let (registry, svc) = service(true);
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
