//! Picks the worker for a request: by model name, among healthy workers, the
//! one with the fewest requests in flight.

use std::sync::Arc;

use mig_proto::inference::v1::ModelKind;

use crate::error::GatewayError;
use crate::registry::{Registry, WorkerHandle};

/// The worker to send a request for `model` to. `wanted` is the kind of call
/// (generate or embed); `skip` lists addresses already tried for this request.
pub fn select(
    registry: &Registry,
    model: &str,
    wanted: ModelKind,
    skip: &[String],
) -> Result<Arc<WorkerHandle>, GatewayError> {
    if model.trim().is_empty() {
        return Err(GatewayError::Invalid(format!(
            "`model` is empty; models served here: {}",
            registry.model_names().join(", ")
        )));
    }
    let workers = registry
        .workers(model)
        .ok_or_else(|| GatewayError::UnknownModel {
            model: model.to_string(),
            known: registry.model_names(),
        })?;
    match (registry.kind(model), wanted) {
        (ModelKind::Embed, ModelKind::Generate) => {
            return Err(GatewayError::Invalid(format!(
                "`model` `{model}` is an embedding model: call Embed, not Generate"
            )))
        }
        (ModelKind::Generate, ModelKind::Embed) => {
            return Err(GatewayError::Invalid(format!(
                "`model` `{model}` is a text-generation model: call Generate, not Embed"
            )))
        }
        _ => {}
    }
    workers
        .iter()
        .filter(|w| w.is_healthy() && !skip.contains(&w.address))
        .min_by_key(|w| w.in_flight())
        .cloned()
        .ok_or(GatewayError::NoHealthyWorker {
            model: model.to_string(),
            workers: workers.len(),
        })
}
