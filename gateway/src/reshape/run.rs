//! A reshape on a running gateway: the steps from the live layout to the
//! plan, then one GPU at a time: routing taken off the affected slices
//! (requests waiting for the model go to its other replicas, or wait in
//! its queue), their streams drained, their workers stopped, instances
//! destroyed and created, workers started on the new slices and routed to
//! once ready, the old workers forgotten only then. Slices the plan keeps
//! serve throughout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mig_proto::admin::v1::{ReshapeEvent, ReshapeSummary, SliceOutage};
use mig_slices::reshape::control::LiveInstance;
use mig_slices::reshape::steps::{self, GpuSteps, Target};
use mig_slices::SliceId;
use tokio::sync::mpsc;

use super::device::Device;
use crate::fleet::placement::Launch;
use crate::fleet::supervisor::Supervisor;
use crate::fleet::ModelPlan;
use crate::registry::{Registry, WorkerHandle};

/// How often a drain looks at the streams still running.
const DRAIN_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum ReshapeError {
    #[error("another reshape is running; try again when it has finished")]
    Busy,
    #[error("plan: {0}")]
    Plan(String),
    #[error(
        "the plan puts `{model}` on a slice, but the fleet file has no model of that name \
         with a `path` (or `identity`) to start"
    )]
    UnknownModel { model: String },
    #[error("MIG device: {0}")]
    Device(String),
    #[error("starting `{model}` on {slice}: {message}")]
    Start {
        model: String,
        slice: String,
        message: String,
    },
}

/// What a reshape works with: the device, the workers and the routing.
pub struct Reshaper {
    device: Mutex<Box<dyn Device + Send>>,
    supervisor: Arc<tokio::sync::Mutex<Supervisor>>,
    registry: Arc<Registry>,
    /// The fleet file's models: what a new slice's worker starts.
    models: Vec<ModelPlan>,
    busy: tokio::sync::Mutex<()>,
}

/// Where a step's report goes: the admin call's stream. Unbounded, so a
/// caller that stops reading never holds a reshape (and its slices out)
/// up; a reshape says a few lines per instance of its plan.
pub type Events = mpsc::UnboundedSender<Result<ReshapeEvent, tonic::Status>>;

async fn say(events: &Events, line: impl Into<String>) {
    let line = line.into();
    tracing::info!("reshape: {line}");
    let _ = events.send(Ok(ReshapeEvent {
        line,
        summary: None,
    }));
}

/// `1g.10gb@2`, how a slice is named in reports.
fn placed(instance: &LiveInstance) -> String {
    format!("{}@{}", instance.profile, instance.start)
}

/// An affected slice while it is out.
struct Out {
    gpu: u32,
    slice: String,
    model: String,
    since: Instant,
}

impl Reshaper {
    pub fn new(
        device: Box<dyn Device + Send>,
        supervisor: Arc<tokio::sync::Mutex<Supervisor>>,
        registry: Arc<Registry>,
        models: Vec<ModelPlan>,
    ) -> Reshaper {
        Reshaper {
            device: Mutex::new(device),
            supervisor,
            registry,
            models,
            busy: tokio::sync::Mutex::new(()),
        }
    }

    fn device(&self) -> std::sync::MutexGuard<'_, Box<dyn Device + Send>> {
        self.device.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the device which slices the fleet's first workers hold.
    pub async fn adopt_running(&self) {
        let workers = self.supervisor.lock().await.workers();
        let mut device = self.device();
        for (slice, _) in workers {
            if let SliceId::Mig(uuid) = slice {
                device.worker_started(&uuid);
            }
        }
    }

    /// Runs (or, `dry_run`, describes) the reshape to `target`, reporting
    /// each step to `events`.
    pub async fn reshape(
        &self,
        target: &Target,
        dry_run: bool,
        drain: Duration,
        events: &Events,
    ) -> Result<ReshapeSummary, ReshapeError> {
        let _one = self.busy.try_lock().map_err(|_| ReshapeError::Busy)?;
        let live = self
            .device()
            .gpus()
            .map_err(|e| ReshapeError::Device(e.to_string()))?;
        let plan =
            steps::plan_steps(&live, target).map_err(|e| ReshapeError::Plan(e.to_string()))?;
        for instance in target.gpus.iter().flat_map(|g| &g.instances) {
            self.model(&instance.model)?;
        }
        let workers = self.workers_by_uuid().await;
        let mut summary = ReshapeSummary {
            dry_run,
            ..Default::default()
        };
        for gpu in &plan.gpus {
            summary.kept += gpu.keep.len() as u32;
            summary.destroyed += gpu.destroy.len() as u32;
            summary.created += gpu.create.len() as u32;
            summary.workers_replaced += gpu
                .destroy
                .iter()
                .map(|i| workers.get(&i.uuid).map_or(0, Vec::len) as u32)
                .sum::<u32>()
                + gpu.create.len() as u32;
            for (instance, _) in self.model_changes(gpu, &workers) {
                summary.workers_replaced +=
                    1 + workers.get(&instance.uuid).map_or(0, Vec::len) as u32;
            }
        }
        if dry_run {
            for line in plan.to_string().lines() {
                say(events, line).await;
            }
            return Ok(summary);
        }
        for gpu in &plan.gpus {
            self.reshape_gpu(gpu, &workers, drain, events, &mut summary)
                .await?;
        }
        Ok(summary)
    }

    fn model(&self, name: &str) -> Result<&ModelPlan, ReshapeError> {
        self.models
            .iter()
            .find(|m| m.name == name && m.source.is_some())
            .ok_or_else(|| ReshapeError::UnknownModel {
                model: name.to_string(),
            })
    }

    /// The supervised workers of each MIG slice, by its uuid.
    async fn workers_by_uuid(&self) -> HashMap<String, Vec<Arc<WorkerHandle>>> {
        let mut by_uuid: HashMap<String, Vec<Arc<WorkerHandle>>> = HashMap::new();
        for (slice, handle) in self.supervisor.lock().await.workers() {
            if let SliceId::Mig(uuid) = slice {
                by_uuid.entry(uuid).or_default().push(handle);
            }
        }
        by_uuid
    }

    /// Kept slices whose model the plan changes: (slice, new model).
    fn model_changes<'a>(
        &self,
        gpu: &'a GpuSteps,
        workers: &HashMap<String, Vec<Arc<WorkerHandle>>>,
    ) -> Vec<(&'a LiveInstance, &'a str)> {
        gpu.keep
            .iter()
            .filter_map(|instance| {
                let model = gpu.target_of(instance)?.model.as_str();
                let running = workers.get(&instance.uuid);
                let same = running.is_some_and(|w| w.len() == 1 && w[0].model == model);
                (!same).then_some((instance, model))
            })
            .collect()
    }

    async fn reshape_gpu(
        &self,
        gpu: &GpuSteps,
        workers: &HashMap<String, Vec<Arc<WorkerHandle>>>,
        drain: Duration,
        events: &Events,
        summary: &mut ReshapeSummary,
    ) -> Result<(), ReshapeError> {
        let changes = self.model_changes(gpu, workers);
        if gpu.destroy.is_empty() && gpu.create.is_empty() && changes.is_empty() {
            say(events, format!("GPU {}: nothing to change", gpu.gpu)).await;
            return Ok(());
        }
        // 1. Off the routing, drained, stopped: every slice that goes, and
        //    every kept one that changes model.
        let affected: Vec<&LiveInstance> = gpu
            .destroy
            .iter()
            .chain(changes.iter().map(|(i, _)| *i))
            .collect();
        let mut outs = Vec::new();
        for instance in &affected {
            let running = workers.get(&instance.uuid).cloned().unwrap_or_default();
            // Retired, not removed: the model stays known, and its
            // requests wait for a replacement when no sibling serves it.
            for handle in &running {
                handle.retire();
            }
            let model = running.first().map_or(String::new(), |h| h.model.clone());
            say(
                events,
                format!(
                    "GPU {} {} ({}): routing stopped{}",
                    gpu.gpu,
                    placed(instance),
                    instance.uuid,
                    if model.is_empty() {
                        String::new()
                    } else {
                        format!(", `{model}` draining")
                    }
                ),
            )
            .await;
            outs.push((
                Out {
                    gpu: gpu.gpu,
                    slice: placed(instance),
                    model,
                    since: Instant::now(),
                },
                running,
                (*instance).clone(),
            ));
        }
        for (out, running, instance) in &outs {
            let streams = drain_all(running, drain).await;
            if streams > 0 {
                say(
                    events,
                    format!(
                        "GPU {} {}: {streams} streams still running after the drain timeout ({drain:?}); stopping anyway",
                        out.gpu, out.slice
                    ),
                )
                .await;
            }
            let mut supervisor = self.supervisor.lock().await;
            for handle in running {
                supervisor.stop(handle).await;
            }
            drop(supervisor);
            self.device().worker_stopped(&instance.uuid);
            if !running.is_empty() {
                say(
                    events,
                    format!(
                        "GPU {} {}: worker stopped after {:.2} s",
                        out.gpu,
                        out.slice,
                        out.since.elapsed().as_secs_f64()
                    ),
                )
                .await;
            }
        }
        // 2. and 3.: the instances, then workers on them. The stopped
        //    workers are forgotten either way: on success their
        //    replacements serve, on failure nothing of theirs runs.
        let replaced = self.recreate(gpu, &changes, events).await;
        for (_, running, _) in &outs {
            for handle in running {
                self.registry.remove(handle);
            }
        }
        replaced?;
        for (out, _, _) in outs {
            let seconds = out.since.elapsed().as_secs_f64();
            say(
                events,
                format!("GPU {} {} was out {seconds:.2} s", out.gpu, out.slice),
            )
            .await;
            summary.outages.push(SliceOutage {
                gpu: out.gpu,
                slice: out.slice,
                model: out.model,
                seconds,
            });
        }
        Ok(())
    }

    /// Destroys and creates `gpu`'s instances, then starts the workers of
    /// the new slices and of the kept ones in `changes`.
    async fn recreate(
        &self,
        gpu: &GpuSteps,
        changes: &[(&LiveInstance, &str)],
        events: &Events,
    ) -> Result<(), ReshapeError> {
        let created = {
            let mut device = self.device();
            steps::apply_gpu(device.as_mut(), gpu)
        }
        .map_err(|e| ReshapeError::Device(e.to_string()))?;
        for instance in &gpu.destroy {
            say(
                events,
                format!("GPU {} {} destroyed", gpu.gpu, placed(instance)),
            )
            .await;
        }
        for instance in &created {
            say(
                events,
                format!(
                    "GPU {} {} created ({})",
                    gpu.gpu,
                    placed(instance),
                    instance.uuid
                ),
            )
            .await;
        }
        // 3. Workers on the new slices and on the kept ones changing model.
        let mut starts: Vec<(LiveInstance, String)> = Vec::new();
        for new in &gpu.create {
            let Some(instance) = created
                .iter()
                .find(|c| c.start == new.start && c.profile.eq_ignore_ascii_case(&new.profile))
            else {
                return Err(ReshapeError::Device(format!(
                    "GPU {}: {}@{} was not created",
                    gpu.gpu, new.profile, new.start
                )));
            };
            starts.push((instance.clone(), new.model.clone()));
        }
        for (instance, model) in changes {
            starts.push(((*instance).clone(), model.to_string()));
        }
        for (instance, model) in &starts {
            self.start_worker(instance, model, events).await?;
        }
        Ok(())
    }

    async fn start_worker(
        &self,
        instance: &LiveInstance,
        model: &str,
        events: &Events,
    ) -> Result<(), ReshapeError> {
        let plan = self.model(model)?;
        let launch = Launch {
            model: plan.name.clone(),
            source: plan.source.clone().expect("checked by `model`"),
            slice: SliceId::Mig(instance.uuid.clone()),
            profile: Some(instance.profile.clone()),
            threads: plan.threads,
            args: plan.args.clone(),
        };
        let started = Instant::now();
        let handle = self
            .supervisor
            .lock()
            .await
            .start(launch)
            .await
            .map_err(|e| ReshapeError::Start {
                model: model.to_string(),
                slice: placed(instance),
                message: e.to_string(),
            })?;
        self.device().worker_started(&instance.uuid);
        handle.probe().await;
        self.registry.add(handle);
        say(
            events,
            format!(
                "{} ({}): `{model}` ready in {:.2} s, routed to",
                placed(instance),
                instance.uuid,
                started.elapsed().as_secs_f64()
            ),
        )
        .await;
        Ok(())
    }
}

/// Waits until none of `workers` has a call running, for at most `limit`;
/// the calls still running then.
async fn drain_all(workers: &[Arc<WorkerHandle>], limit: Duration) -> u32 {
    let until = Instant::now() + limit;
    loop {
        let running: u32 = workers.iter().map(|w| w.in_flight()).sum();
        if running == 0 || Instant::now() >= until {
            return running;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}
