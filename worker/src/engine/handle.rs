//! [`Engine`]: the async side's only way into the engine thread. It starts
//! the thread (which loads the model), admits requests by the one rule of
//! [`super::admission`], hands each its own answer channel, and reports what
//! the engine holds, counts and whether it is alive.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::admission::Admission;
use super::counters::{Counters, Snapshot};
use super::health::{Health, Reporter};
use super::jobs::{EmbedJob, EmbedReceiver, GenReceiver, GenerateJob, Job};
use super::kv::{self, Capacity};
use super::{batch_loop, embed_loop, EngineConfig, ModelSpec};
use crate::error::{InferenceError, StartupError};
use crate::metrics::WorkerMetrics;
use crate::model::{self, fault::PanicOn, Backend, Codec};

/// The handle on the engine thread. Dropping it closes the queue and joins
/// the thread once the current step is done.
pub struct Engine {
    queue: Option<mpsc::UnboundedSender<Job>>,
    config: EngineConfig,
    admission: Admission,
    kv: Capacity,
    counters: Arc<Counters>,
    health: watch::Receiver<Health>,
    /// Set on shutdown: running generations end with `Cancelled` at their
    /// next token instead of running to `max_tokens`.
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// What computes the answers (`llama gguf q8_0`), as the model loader
    /// named it; reported in `Info`.
    description: String,
}

impl Engine {
    /// Starts the engine thread and waits until the model is loaded (or
    /// failed to load). Blocking: call it from a blocking context.
    pub fn start(
        spec: ModelSpec,
        config: EngineConfig,
        metrics: Arc<WorkerMetrics>,
    ) -> Result<(Engine, Codec), StartupError> {
        config.scheduler.validate().map_err(StartupError::Config)?;
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let counters = Arc::new(Counters::new(metrics));
        let stopping = Arc::new(AtomicBool::new(false));
        let (reporter, health) = Reporter::new();
        let thread = std::thread::Builder::new()
            .name("mig-engine".into())
            .spawn({
                let counters = counters.clone();
                let stopping = stopping.clone();
                move || {
                    let loaded = model::device(spec.device).and_then(|device| {
                        let mut loaded = model::load(&spec.source, &device, spec.weights)?;
                        if let Some(marker) = &spec.panic_on {
                            loaded = PanicOn::wrap(loaded, marker)?;
                        }
                        let kv = match &loaded.backend {
                            Backend::Generate(model) => Some(kv::allocate(
                                model.kv_shape(),
                                &loaded.codec,
                                config.kv_bytes,
                                config.scheduler.max_batch_size,
                                &device,
                            )?),
                            Backend::Embed(_) => None,
                        };
                        Ok((loaded, kv))
                    });
                    let (loaded, kv) = match loaded {
                        Ok(loaded) => loaded,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let capacity = kv.as_ref().map(kv::capacity).unwrap_or_default();
                    // The receiver waits in `start`; it cannot be gone.
                    let _ = ready_tx.send(Ok((loaded.codec.clone(), loaded.engine, capacity)));
                    let ctx = batch_loop::Shared {
                        counters: &counters,
                        stopping: &stopping,
                    };
                    // A panic is caught here, after unwinding has dropped every
                    // sequence (their clients see their streams end), and
                    // published: the server stops and the process exits
                    // non-zero, so its supervisor restarts it.
                    let served = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        match (loaded.backend, loaded.codec, kv) {
                            (Backend::Generate(model), Codec::Text(codec), Some(kv)) => {
                                batch_loop::run(model, &codec, kv, config.scheduler, queue_rx, ctx)
                            }
                            (Backend::Embed(model), _, _) => {
                                embed_loop::run(model.as_ref(), queue_rx, ctx)
                            }
                            _ => {
                                unreachable!("a generation backend has a text codec and a KV store")
                            }
                        }
                    }));
                    match served {
                        Ok(()) => {
                            tracing::debug!("engine queue closed; engine thread exits");
                            reporter.stopped();
                        }
                        Err(payload) => reporter.panicked(payload),
                    }
                }
            })
            .map_err(|e| StartupError::Engine(e.to_string()))?;
        let (codec, description, kv) = ready_rx
            .recv()
            .map_err(|_| StartupError::Engine("engine thread exited while loading".into()))??;
        let admission = Admission {
            context: codec.context_length(),
            kv_tokens: kv.kv_tokens,
            max_waiting: config.scheduler.max_waiting,
        };
        Ok((
            Engine {
                queue: Some(queue_tx),
                config,
                admission,
                kv,
                counters,
                health,
                stopping,
                thread: Some(thread),
                description,
            },
            codec,
        ))
    }

    /// Queues a generation, if admission lets it in; its events come on the
    /// returned channel (dropping it cancels the generation).
    pub fn generate(&self, job: GenerateJob) -> Result<GenReceiver, InferenceError> {
        self.admission.fits(job.prompt.len(), job.max_tokens)?;
        let (events, receiver) = mpsc::unbounded_channel();
        self.submit(Job::Generate(job, events))?;
        Ok(receiver)
    }

    /// Queues an embedding job; its vectors come on the returned channel.
    pub fn embed(&self, job: EmbedJob) -> Result<EmbedReceiver, InferenceError> {
        let (reply, receiver) = oneshot::channel();
        self.submit(Job::Embed(job, reply))?;
        Ok(receiver)
    }

    /// Refused when the engine failed or is stopping, or when `--max-waiting`
    /// requests already wait.
    fn submit(&self, job: Job) -> Result<(), InferenceError> {
        if let Health::Failed(why) = &*self.health.borrow() {
            return Err(InferenceError::EngineFailed(why.clone()));
        }
        let queue = self.queue.as_ref().ok_or(InferenceError::ShuttingDown)?;
        if self.stopping.load(Ordering::Relaxed) {
            return Err(InferenceError::ShuttingDown);
        }
        self.counters
            .enter(|waiting| self.admission.has_room(waiting))?;
        queue.send(job).map_err(|_| {
            self.counters.abandon();
            InferenceError::ShuttingDown
        })
    }

    /// Why a request's answer channel closed without its last message:
    /// the engine failed (waiting a moment for the thread to say so, since
    /// unwinding drops the channels before the panic is caught) or stopped.
    pub async fn why_ended(&self) -> InferenceError {
        let mut health = self.health.clone();
        let settled = tokio::time::timeout(
            Duration::from_secs(2),
            health.wait_for(|h| *h != Health::Serving),
        )
        .await;
        match settled.ok().and_then(Result::ok).map(|h| h.clone()) {
            Some(Health::Failed(why)) => InferenceError::EngineFailed(why),
            Some(_) => InferenceError::ShuttingDown,
            None => InferenceError::model("the engine ended the request without an answer"),
        }
    }

    /// The engine thread's state; it changes once, when the thread ends.
    pub fn health(&self) -> watch::Receiver<Health> {
        self.health.clone()
    }

    /// The batching knobs.
    pub fn config(&self) -> EngineConfig {
        self.config
    }

    /// What the KV store holds (zero for embedding models).
    pub fn capacity(&self) -> Capacity {
        self.kv
    }

    /// Generated tokens, finished, running and waiting requests.
    pub fn counters(&self) -> Snapshot {
        self.counters.snapshot()
    }

    /// What computes the answers: `llama gguf q8_0`, `bert safetensors f32`,
    /// `identity (echo, no model)`.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Ends the running generations at their next token and refuses new jobs.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            // A panic on the engine thread was caught and reported there.
            let _ = thread.join();
        }
    }
}
