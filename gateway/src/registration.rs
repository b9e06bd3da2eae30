//! `mig.worker.v1.Registration`, served by the gateway: workers started
//! elsewhere (`mig-worker serve --gateway ADDR`) join routing with their
//! first heartbeat and leave it when heartbeats stop for longer than the
//! timeout, or at once when the last one says `leaving`.

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
}

impl RegistrationService {
    pub fn new(registry: Arc<Registry>, policy: HeartbeatPolicy) -> Self {
        RegistrationService { registry, policy }
    }

    fn register(
        &self,
        address: &str,
        info: mig_proto::worker::v1::WorkerInfo,
    ) -> Result<(), Status> {
        if let Some(known) = self.registry.registered_at(address) {
            if known.model == info.model {
                known.heartbeat(info);
                return Ok(());
            }
            // A new worker took over the address with another model.
            tracing::info!(%address, old = %known.model, new = %info.model, "registered worker changed model");
            self.registry.remove(&known);
        }
        let handle = WorkerHandle::new(
            info.model.clone(),
            address.to_string(),
            WorkerOrigin::Registered,
        )
        .map_err(|e| {
            Status::invalid_argument(format!("`address` `{address}` is not a valid URI: {e}"))
        })?;
        tracing::info!(model = %info.model, %address, slice = %info.slice, profile = %info.profile,
            "worker registered");
        handle.heartbeat(info);
        self.registry.add(Arc::new(handle));
        Ok(())
    }
}

#[tonic::async_trait]
impl Registration for RegistrationService {
    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
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
            self.register(&address, info)?;
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
        for worker in registry.all() {
            let silent =
                worker.origin == WorkerOrigin::Registered && worker.silence() > policy.timeout;
            if silent && registry.remove(&worker) {
                tracing::warn!(model = %worker.model, address = %worker.address(),
                    silence = ?worker.silence(), "registered worker stopped heartbeating; dropped from routing");
            }
        }
    }
}
