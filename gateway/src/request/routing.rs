//! Picks the worker for a request: by model name (and slice profile, when the
//! request names one), among healthy workers, one with room first, and
//! among those the least outstanding tokens per unit of capacity, so
//! replicas on slices of different sizes share load in proportion (a
//! worker batching 32 takes four times the tokens of one batching 8).

use std::sync::Arc;

use mig_proto::inference::v1::ModelKind;

use crate::registry::{Registry, WorkerHandle};
use crate::request::error::GatewayError;
use crate::tenancy::Caller;

use mig_serve::limits::MAX_PROFILE_BYTES;

/// What a request asks to be routed to.
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    pub model: &'a str,
    /// The kind of call (generate or embed).
    pub kind: ModelKind,
    /// Only workers on slices of this profile; empty means any.
    pub profile: &'a str,
    /// Who asks: errors list only the models it may call.
    pub caller: &'a Caller,
    /// The request's tokens (prompt estimate plus what it may generate).
    pub cost: u64,
}

/// The worker to send a request to. `skip` lists addresses already tried for
/// this request.
pub fn select(
    registry: &Registry,
    route: Route<'_>,
    skip: &[String],
) -> Result<Arc<WorkerHandle>, GatewayError> {
    let Route {
        model,
        kind: wanted,
        profile,
        caller,
        cost,
    } = route;
    let visible = || -> Vec<String> {
        registry
            .model_names()
            .into_iter()
            .filter(|m| caller.may_call(m))
            .collect()
    };
    if model.trim().is_empty() {
        return Err(GatewayError::Invalid(format!(
            "`model` is empty; models served here: {}",
            visible().join(", ")
        )));
    }
    if profile.len() > MAX_PROFILE_BYTES {
        return Err(GatewayError::Invalid(format!(
            "`profile` is {} bytes, limit {MAX_PROFILE_BYTES}",
            profile.len()
        )));
    }
    let workers = registry
        .workers(model)
        .filter(|_| caller.may_call(model))
        .ok_or_else(|| GatewayError::UnknownModel {
            model: model.to_string(),
            known: visible(),
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
    let total = workers.len();
    let candidates: Vec<Arc<WorkerHandle>> = if profile.is_empty() {
        workers
    } else {
        let profiles: Vec<Option<String>> = workers.iter().map(|w| w.profile()).collect();
        // A worker that never answered has no known profile (and is not
        // healthy): it may be of this profile, so with one of those about
        // the answer is UNAVAILABLE below, not NOT_FOUND.
        if !profiles.iter().any(|p| p.as_deref() == Some(profile))
            && profiles.iter().all(Option::is_some)
        {
            let mut known: Vec<String> = profiles.into_iter().flatten().collect();
            known.sort();
            known.dedup();
            return Err(GatewayError::UnknownProfile {
                model: model.to_string(),
                profile: profile.to_string(),
                profiles: known,
            });
        }
        workers
            .into_iter()
            .zip(profiles)
            .filter(|(_, p)| p.as_deref() == Some(profile))
            .map(|(w, _)| w)
            .collect()
    };
    candidates
        .iter()
        .filter(|w| w.is_healthy() && !skip.contains(&w.address()))
        .min_by_key(|w| load(w, cost))
        .cloned()
        .ok_or(GatewayError::NoHealthyWorker {
            model: model.to_string(),
            workers: if candidates.is_empty() {
                total
            } else {
                candidates.len()
            },
        })
}

/// How loaded a worker would be with one more request of `cost` tokens:
/// full ones last, then outstanding tokens per request it runs at once
/// (scaled to stay an integer).
fn load(worker: &WorkerHandle, cost: u64) -> (bool, u64) {
    let capacity = u64::from(worker.capacity().max(1));
    let full = worker.in_flight() >= worker.capacity();
    let tokens = worker.outstanding_tokens().saturating_add(cost.max(1));
    (full, tokens.saturating_mul(1024) / capacity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mig_proto::inference::v1::WorkerOrigin;
    use mig_proto::worker::v1::WorkerInfo;

    fn worker(registry: &Registry, model: &str, port: u16, kind: ModelKind) -> Arc<WorkerHandle> {
        worker_on(registry, model, port, kind, "cpu-1c")
    }

    fn worker_on(
        registry: &Registry,
        model: &str,
        port: u16,
        kind: ModelKind,
        profile: &str,
    ) -> Arc<WorkerHandle> {
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
            profile: profile.into(),
            ..Default::default()
        }));
        registry.add(w.clone());
        w
    }

    fn route(model: &str, kind: ModelKind) -> Route<'_> {
        Route {
            model,
            kind,
            profile: "",
            caller: &Caller::Open,
            cost: 1,
        }
    }

    #[tokio::test]
    async fn picks_the_least_loaded_healthy_worker_not_yet_tried() {
        let registry = Registry::default();
        let a = worker(&registry, "m", 1, ModelKind::Generate);
        let b = worker(&registry, "m", 2, ModelKind::Generate);
        let _busy = a.begin(1);
        assert_eq!(
            select(&registry, route("m", ModelKind::Generate), &[])
                .unwrap()
                .address(),
            b.address()
        );
        let _busier = b.begin(1);
        let _busiest = b.begin(1);
        assert_eq!(
            select(&registry, route("m", ModelKind::Generate), &[])
                .unwrap()
                .address(),
            a.address()
        );
        assert_eq!(
            select(&registry, route("m", ModelKind::Generate), &[a.address()])
                .unwrap()
                .address(),
            b.address()
        );
        b.mark_unhealthy();
        assert!(matches!(
            select(&registry, route("m", ModelKind::Generate), &[a.address()]),
            Err(GatewayError::NoHealthyWorker { workers: 2, .. })
        ));
    }

    fn batching(w: &WorkerHandle, model: &str, max_batch_size: u32) {
        w.record_probe(Some(WorkerInfo {
            model: model.into(),
            kind: ModelKind::Generate as i32,
            batching: Some(mig_proto::worker::v1::Batching {
                max_batch_size,
                ..Default::default()
            }),
            ..Default::default()
        }));
    }

    #[tokio::test]
    async fn a_bigger_slice_takes_more_tokens_before_a_smaller_one_is_chosen() {
        let registry = Registry::default();
        let small = worker(&registry, "m", 1, ModelKind::Generate);
        let big = worker(&registry, "m", 2, ModelKind::Generate);
        batching(&small, "m", 8);
        batching(&big, "m", 32);
        let mut held = Vec::new();
        let mut on_big = 0;
        // 40 requests of 100 tokens: about four fifths go to the slice
        // that batches four times as many.
        for _ in 0..40 {
            let w = select(
                &registry,
                Route {
                    cost: 100,
                    ..route("m", ModelKind::Generate)
                },
                &[],
            )
            .unwrap();
            if Arc::ptr_eq(&w, &big) {
                on_big += 1;
            }
            held.push(w.begin(100));
        }
        assert_eq!(on_big, 32, "the big slice took {on_big} of 40");
        // Both full: the least loaded per unit of capacity still comes first.
        assert_eq!((small.in_flight(), big.in_flight()), (8, 32));
        let w = select(&registry, route("m", ModelKind::Generate), &[]).unwrap();
        assert!(Arc::ptr_eq(&w, &small) || Arc::ptr_eq(&w, &big));
    }

    #[tokio::test]
    async fn unknown_model_wrong_kind_and_empty_name_are_refused() {
        let registry = Registry::default();
        worker(&registry, "embedder", 1, ModelKind::Embed);
        worker(&registry, "writer", 2, ModelKind::Generate);
        match select(&registry, route("other", ModelKind::Generate), &[]) {
            Err(GatewayError::UnknownModel { known, .. }) => {
                assert_eq!(known, ["embedder", "writer"])
            }
            other => panic!("{other:?}"),
        }
        let e = select(&registry, route("embedder", ModelKind::Generate), &[]).unwrap_err();
        assert!(e
            .to_string()
            .contains("`model` `embedder` is an embedding model"));
        let e = select(&registry, route("writer", ModelKind::Embed), &[]).unwrap_err();
        assert!(e.to_string().contains("is a text-generation model"));
        let e = select(&registry, route(" ", ModelKind::Embed), &[]).unwrap_err();
        assert!(e.to_string().contains("`model` is empty"));
    }

    #[tokio::test]
    async fn a_profile_narrows_the_choice_to_its_workers() {
        let registry = Registry::default();
        let small = worker_on(&registry, "m", 1, ModelKind::Generate, "cpu-1c");
        let big = worker_on(&registry, "m", 2, ModelKind::Generate, "cpu-2c");
        let _busy = big.begin(1);
        fn on(profile: &str) -> Route<'_> {
            Route {
                model: "m",
                kind: ModelKind::Generate,
                profile,
                caller: &Caller::Open,
                cost: 1,
            }
        }
        // Busier, but the only one of its profile.
        assert_eq!(
            select(&registry, on("cpu-2c"), &[]).unwrap().address(),
            big.address()
        );
        assert_eq!(
            select(&registry, on(""), &[]).unwrap().address(),
            small.address()
        );
        let e = select(&registry, on("cpu-4c"), &[]).unwrap_err();
        assert!(matches!(e, GatewayError::UnknownProfile { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "`profile` `cpu-4c`: model `m` has workers on cpu-1c, cpu-2c"
        );
        // Known but down: UNAVAILABLE, counting the workers of that profile.
        big.mark_unhealthy();
        assert!(matches!(
            select(&registry, on("cpu-2c"), &[]),
            Err(GatewayError::NoHealthyWorker { workers: 1, .. })
        ));
        // A worker that never answered might be of any profile.
        registry.add(Arc::new(
            WorkerHandle::new("m".into(), "http://127.0.0.1:3".into(), WorkerOrigin::Fleet)
                .unwrap(),
        ));
        assert!(matches!(
            select(&registry, on("cpu-4c"), &[]),
            Err(GatewayError::NoHealthyWorker { workers: 3, .. })
        ));
        let e = select(&registry, on(&"p".repeat(65)), &[]).unwrap_err();
        assert_eq!(e.to_string(), "`profile` is 65 bytes, limit 64");
    }
}
