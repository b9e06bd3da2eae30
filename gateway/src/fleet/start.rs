//! From a checked fleet to a registry of workers: place the models on the
//! machine's slices, connect to the running workers, start the others (with a
//! supervisor), probe all once.

use std::sync::Arc;

use mig_proto::inference::v1::WorkerOrigin;

use crate::fleet::model_file;
use crate::fleet::placement::{self, Inventory, ResolveError};
use crate::fleet::supervisor::{Supervisor, SupervisorError};
use crate::fleet::ModelPlan;
use crate::registry::{Registry, WorkerHandle};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error("`{model}`: address `{address}` is not a valid URI: {source}")]
    Address {
        model: String,
        address: String,
        source: tonic::transport::Error,
    },
}

/// Builds the registry. Workers to start go to `supervisor`; without one
/// (plain `serve`) a fleet that needs them is an error.
pub async fn start_fleet(
    models: &[ModelPlan],
    inventory: &Inventory,
    supervisor: Option<&mut Supervisor>,
) -> Result<Arc<Registry>, StartError> {
    if supervisor.is_none() {
        if let Some(m) = models
            .iter()
            .find(|m| !matches!(m.want, crate::fleet::Want::Remote { .. }))
        {
            return Err(ResolveError::NeedsSupervisor {
                model: m.name.clone(),
            }
            .into());
        }
    }
    let resolved = placement::resolve(models, inventory, model_file::replica_need_bytes)?;
    for note in &resolved.notes {
        tracing::warn!("{note}");
    }
    let registry = Arc::new(Registry::default());
    for (model, address) in &resolved.remote {
        let handle = WorkerHandle::new(model.clone(), address.clone(), WorkerOrigin::Fleet)
            .map_err(|source| StartError::Address {
                model: model.clone(),
                address: address.clone(),
                source,
            })?;
        registry.add(Arc::new(handle));
    }
    if let Some(supervisor) = supervisor {
        for launch in resolved.launches {
            tracing::info!(model = %launch.model, slice = %launch.slice, "starting worker");
            let handle = supervisor.start(launch).await?;
            registry.add(handle);
        }
    }
    registry.probe_all().await;
    Ok(registry)
}

/// One line per model: how many of its workers are healthy.
pub fn readiness_summary(registry: &Registry) -> String {
    let models = registry.model_names();
    if models.is_empty() {
        return "none yet (workers may register)".into();
    }
    models
        .iter()
        .map(|m| {
            let workers = registry.workers(m).unwrap_or_default();
            let healthy = workers.iter().filter(|w| w.is_healthy()).count();
            format!("{m} ({healthy}/{} workers)", workers.len())
        })
        .collect::<Vec<_>>()
        .join(", ")
}
