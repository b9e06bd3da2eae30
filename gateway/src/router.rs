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
        .filter(|w| w.is_healthy() && !skip.contains(&w.address()))
        .min_by_key(|w| w.in_flight())
        .cloned()
        .ok_or(GatewayError::NoHealthyWorker {
            model: model.to_string(),
            workers: workers.len(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mig_proto::inference::v1::WorkerOrigin;
    use mig_proto::worker::v1::WorkerInfo;

    fn worker(registry: &Registry, model: &str, port: u16, kind: ModelKind) -> Arc<WorkerHandle> {
        let w = Arc::new(
            WorkerHandle::new(
                model.into(),
                format!("http://127.0.0.1:{port}"),
                WorkerOrigin::Fleet,
            )
            .unwrap(),
        );
        w.record_probe(Some(WorkerInfo {
            model: model.into(),
            kind: kind as i32,
            ..Default::default()
        }));
        registry.add(w.clone());
        w
    }

    #[tokio::test]
    async fn picks_the_least_loaded_healthy_worker_not_yet_tried() {
        let registry = Registry::default();
        let a = worker(&registry, "m", 1, ModelKind::Generate);
        let b = worker(&registry, "m", 2, ModelKind::Generate);
        let _busy = a.begin();
        assert_eq!(
            select(&registry, "m", ModelKind::Generate, &[])
                .unwrap()
                .address(),
            b.address()
        );
        let _busier = b.begin();
        let _busiest = b.begin();
        assert_eq!(
            select(&registry, "m", ModelKind::Generate, &[])
                .unwrap()
                .address(),
            a.address()
        );
        assert_eq!(
            select(&registry, "m", ModelKind::Generate, &[a.address()])
                .unwrap()
                .address(),
            b.address()
        );
        b.mark_unhealthy();
        assert!(matches!(
            select(&registry, "m", ModelKind::Generate, &[a.address()]),
            Err(GatewayError::NoHealthyWorker { workers: 2, .. })
        ));
    }

    #[tokio::test]
    async fn unknown_model_wrong_kind_and_empty_name_are_refused() {
        let registry = Registry::default();
        worker(&registry, "embedder", 1, ModelKind::Embed);
        worker(&registry, "writer", 2, ModelKind::Generate);
        match select(&registry, "other", ModelKind::Generate, &[]) {
            Err(GatewayError::UnknownModel { known, .. }) => {
                assert_eq!(known, ["embedder", "writer"])
            }
            other => panic!("{other:?}"),
        }
        let e = select(&registry, "embedder", ModelKind::Generate, &[]).unwrap_err();
        assert!(e
            .to_string()
            .contains("`model` `embedder` is an embedding model"));
        let e = select(&registry, "writer", ModelKind::Embed, &[]).unwrap_err();
        assert!(e.to_string().contains("is a text-generation model"));
        let e = select(&registry, " ", ModelKind::Embed, &[]).unwrap_err();
        assert!(e.to_string().contains("`model` is empty"));
    }
}
