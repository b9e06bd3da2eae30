//! From a fleet file to a registry of workers: connect to the running ones,
//! start the others (with a supervisor), probe all once.

use std::path::Path;
use std::sync::Arc;

use crate::fleet::{Fleet, FleetError, Placement};
use crate::registry::{Registry, WorkerHandle};
use crate::supervisor::{Supervisor, SupervisorError, WorkerLaunch};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error("fleet entry for `{model}`: `address` `{address}` is not a valid URI: {source}")]
    Address {
        model: String,
        address: String,
        source: tonic::transport::Error,
    },
    #[error("fleet entry for `{model}` has a `path`: workers are started by `mig-gateway up`, not `serve`")]
    NeedsSupervisor { model: String },
}

/// Builds the registry. Entries with a `path` are started by `supervisor`;
/// without one (plain `serve`) they are an error.
pub async fn start_fleet(
    fleet: &Fleet,
    fleet_path: &Path,
    mut supervisor: Option<&mut Supervisor>,
) -> Result<Arc<Registry>, StartError> {
    let registry = Arc::new(Registry::default());
    for (model, placement) in fleet.placements(fleet_path)? {
        let address = match placement {
            Placement::Remote { address } => address,
            Placement::Spawn {
                path,
                slice,
                threads,
                args,
            } => {
                let Some(supervisor) = supervisor.as_deref_mut() else {
                    return Err(StartError::NeedsSupervisor { model });
                };
                supervisor
                    .start(WorkerLaunch {
                        model: model.clone(),
                        path,
                        slice,
                        threads,
                        args,
                    })
                    .await?
                    .address
            }
        };
        let handle = WorkerHandle::new(model.clone(), address.clone()).map_err(|source| {
            StartError::Address {
                model: model.clone(),
                address,
                source,
            }
        })?;
        registry.add(Arc::new(handle));
    }
    registry.probe_all().await;
    Ok(registry)
}

/// One line per model: how many of its workers are healthy.
pub fn readiness_summary(registry: &Registry) -> String {
    registry
        .model_names()
        .iter()
        .map(|m| {
            let workers = registry.workers(m).unwrap_or_default();
            let healthy = workers.iter().filter(|w| w.is_healthy()).count();
            format!("{m} ({healthy}/{} workers)", workers.len())
        })
        .collect::<Vec<_>>()
        .join(", ")
}
