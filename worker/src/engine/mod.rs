//! The engine thread: it owns the model, the device and the KV store, takes
//! jobs from the async side, and answers each on the job's own channel.
//!
//! Generations are batched continuously ([`batch_loop`]): between two
//! forward steps new requests join the running batch and finished or
//! cancelled ones leave it, as the [`scheduler::Scheduler`] decides. Before
//! every step the engine checks whether each client is still listening,
//! whether its deadline has passed and whether the worker is shutting down,
//! so a cancelled request stops at its next token. Embedding models run one
//! request at a time.

mod batch_loop;
pub mod scheduler;
mod sequence;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::config::{DeviceKind, WeightFormat};
use crate::error::{InferenceError, StartupError};
use crate::metrics::WorkerMetrics;
use crate::model::kv_store::{pages_for, KvStore};
use crate::model::{self, Backend, Codec, Embedder, ModelSource};
use crate::sampling::SamplingParams;
use scheduler::SchedulerConfig;

/// What to load, and where.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub source: ModelSource,
    pub device: DeviceKind,
    pub weights: WeightFormat,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Length,
    Stop,
    Eos,
    /// The worker is shutting down.
    Cancelled,
}

/// What the engine sends back for a generation, in order: any number of
/// `Delta`, then exactly one `Done` (or one error).
#[derive(Debug, Clone, PartialEq)]
pub enum GenEvent {
    /// New text and the number of tokens generated since the last event.
    Delta { text: String, tokens: u32 },
    Done {
        text: String,
        tokens: u32,
        finish: Finish,
        prompt_tokens: u32,
        completion_tokens: u32,
    },
}

pub type GenSender = mpsc::UnboundedSender<Result<GenEvent, InferenceError>>;

pub struct GenerateJob {
    pub prompt: Vec<u32>,
    pub max_tokens: u32,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    /// The model's end-of-sequence ids do not end the generation: it runs to
    /// `max_tokens` (benchmarks compare runs of equal length).
    pub ignore_eos: bool,
    pub deadline: Option<Instant>,
    /// When the request reached the worker: queue wait, time to first token
    /// and duration are measured from here.
    pub arrived: Instant,
    /// Closed by the receiver when the client goes away.
    pub events: GenSender,
}

pub struct EmbedJob {
    pub inputs: Vec<Vec<u32>>,
    pub deadline: Option<Instant>,
    pub arrived: Instant,
    pub reply: oneshot::Sender<Result<Vec<Vec<f32>>, InferenceError>>,
}

pub enum Job {
    Generate(GenerateJob),
    Embed(EmbedJob),
}

impl Job {
    fn arrived(&self) -> Instant {
        match self {
            Job::Generate(j) => j.arrived,
            Job::Embed(j) => j.arrived,
        }
    }
}

/// Live counters, read by `Info` without going through the queue.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Every token the model generated, counted as it is produced.
    pub generated_tokens: AtomicU64,
    /// Requests that reached a terminal state.
    pub finished: AtomicU64,
    /// Requests queued or running.
    pub in_engine: AtomicU32,
    /// Requests not yet in the running batch.
    pub waiting: AtomicU32,
}

/// How the engine batches and how much KV cache it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    pub scheduler: SchedulerConfig,
    /// Bytes for the KV store; `None`: the default for the device
    /// ([`default_kv_bytes`]).
    pub kv_bytes: Option<u64>,
}

/// What the loaded engine can hold, reported by `Info` and the ready log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capacity {
    /// Tokens (prompt plus generated, all sequences) the KV store holds.
    pub kv_tokens: usize,
    pub kv_bytes: u64,
    /// [`model::kv_store::KvFormat::name`].
    pub kv_type: &'static str,
}

/// KV store bytes when `--kv-cache-mib` is not given: 1 GiB on a CPU slice
/// (the host's memory is shared by every slice), 90% of what the device has
/// free after loading the weights on a GPU.
pub fn default_kv_bytes(device: &candle_core::Device) -> u64 {
    const CPU_DEFAULT: u64 = 1 << 30;
    match device {
        #[cfg(feature = "cuda")]
        candle_core::Device::Cuda(d) => match d.cuda_stream().context().mem_get_info() {
            Ok((free, _total)) => free as u64 / 10 * 9,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read free GPU memory; KV store gets 1 GiB");
                CPU_DEFAULT
            }
        },
        _ => CPU_DEFAULT,
    }
}

/// The async side's handle on the engine thread. Dropping it closes the
/// queue and joins the thread once the current job is done.
pub struct Engine {
    queue: Option<mpsc::UnboundedSender<Job>>,
    config: EngineConfig,
    kv: Capacity,
    stats: Arc<EngineStats>,
    metrics: Arc<WorkerMetrics>,
    /// Set on shutdown: the running generation ends with `Cancelled` at its
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
        let stats = Arc::new(EngineStats::default());
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("mig-engine".into())
            .spawn({
                let stats = stats.clone();
                let stopping = stopping.clone();
                let metrics = metrics.clone();
                move || {
                    let loaded = model::device(spec.device).and_then(|device| {
                        let loaded = model::load(&spec.source, &device, spec.weights)?;
                        let kv = match &loaded.backend {
                            Backend::Generate(model) => {
                                Some(kv_store(model.kv_shape(), &loaded.codec, &config, &device)?)
                            }
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
                    let capacity = kv.as_ref().map(capacity).unwrap_or_default();
                    // The receiver waits in `start`; it cannot be gone.
                    let _ = ready_tx.send(Ok((loaded.codec.clone(), loaded.engine, capacity)));
                    let ctx = batch_loop::Shared {
                        stats: &stats,
                        metrics: &metrics,
                        stopping: &stopping,
                    };
                    match (loaded.backend, loaded.codec, kv) {
                        (Backend::Generate(model), Codec::Text(codec), Some(kv)) => {
                            batch_loop::run(model, &codec, kv, config.scheduler, queue_rx, ctx)
                        }
                        (Backend::Embed(model), _, _) => embed_loop(model.as_ref(), queue_rx, ctx),
                        _ => unreachable!("a generation backend has a text codec and a KV store"),
                    }
                    tracing::debug!("engine queue closed; engine thread exits");
                }
            })
            .map_err(|e| StartupError::Engine(e.to_string()))?;
        let (codec, description, kv) = ready_rx
            .recv()
            .map_err(|_| StartupError::Engine("engine thread exited while loading".into()))??;
        Ok((
            Engine {
                queue: Some(queue_tx),
                config,
                kv,
                stats,
                metrics,
                stopping,
                thread: Some(thread),
                description,
            },
            codec,
        ))
    }

    /// Queues a job without waiting. Refused when `--max-waiting` requests
    /// already wait, or when a generation could never fit the KV store.
    pub fn submit(&self, job: Job) -> Result<(), InferenceError> {
        let queue = self.queue.as_ref().ok_or(InferenceError::ShuttingDown)?;
        if self.stopping.load(Ordering::Relaxed) {
            return Err(InferenceError::ShuttingDown);
        }
        if let Job::Generate(g) = &job {
            // As the scheduler counts: the last sampled token is never fed.
            let needed = g.prompt.len() + (g.max_tokens as usize).saturating_sub(1);
            if needed > self.kv.kv_tokens {
                return Err(InferenceError::KvCapacity {
                    prompt: g.prompt.len(),
                    max_tokens: g.max_tokens as usize,
                    needed,
                    capacity: self.kv.kv_tokens,
                });
            }
        }
        let limit = self.config.scheduler.max_waiting;
        let waiting = self.stats.waiting.fetch_add(1, Ordering::Relaxed) as usize;
        if waiting >= limit {
            self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(InferenceError::QueueFull { limit });
        }
        self.stats.in_engine.fetch_add(1, Ordering::Relaxed);
        self.metrics.requests_in_flight.increment(1.0);
        self.metrics.queue_depth.increment(1.0);
        queue.send(job).map_err(|_| {
            self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
            self.stats.in_engine.fetch_sub(1, Ordering::Relaxed);
            self.metrics.requests_in_flight.decrement(1.0);
            self.metrics.queue_depth.decrement(1.0);
            InferenceError::ShuttingDown
        })
    }

    /// The batching knobs.
    pub fn config(&self) -> EngineConfig {
        self.config
    }

    /// What the KV store holds (zero for embedding models).
    pub fn capacity(&self) -> Capacity {
        self.kv
    }

    pub fn stats(&self) -> &Arc<EngineStats> {
        &self.stats
    }

    /// What computes the answers: `llama gguf q8_0`, `bert safetensors f32`,
    /// `identity (echo, no model)`.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Ends the running generation at its next token and refuses new jobs.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            // A panic on the engine thread was already reported by the panic hook.
            let _ = thread.join();
        }
    }
}

/// Sizes and allocates the KV store: `--kv-cache-mib` or the device's
/// default, but never less than one sequence of the whole context, and for a
/// model that keeps nothing per token (identity), room for a full batch.
fn kv_store(
    shape: model::kv_store::KvShape,
    codec: &Codec,
    config: &EngineConfig,
    device: &candle_core::Device,
) -> Result<KvStore, StartupError> {
    let context_pages = pages_for(codec.context_length());
    let pages = if shape.bytes_per_token() == 0 {
        context_pages * config.scheduler.max_batch_size
    } else {
        let bytes = config.kv_bytes.unwrap_or_else(|| default_kv_bytes(device));
        let pages = shape.pages_in(bytes);
        if pages == 0 {
            return Err(StartupError::Config(format!(
                "`--kv-cache-mib` ({} MiB) holds less than one KV page ({} bytes)",
                bytes >> 20,
                shape.bytes_per_token() * model::kv_store::PAGE_TOKENS
            )));
        }
        pages
    };
    KvStore::new(shape, pages, device)
        .map_err(|e| StartupError::Engine(format!("allocating the KV store ({pages} pages): {e}")))
}

fn capacity(kv: &KvStore) -> Capacity {
    let tokens = kv.pages() * model::kv_store::PAGE_TOKENS;
    Capacity {
        kv_tokens: tokens,
        kv_bytes: (tokens * kv.shape().bytes_per_token()) as u64,
        kv_type: kv.shape().format.name(),
    }
}

/// Embedding requests, one at a time.
fn embed_loop(
    model: &dyn Embedder,
    mut queue: mpsc::UnboundedReceiver<Job>,
    ctx: batch_loop::Shared,
) {
    while let Some(job) = queue.blocking_recv() {
        let arrived = job.arrived();
        ctx.stats.waiting.fetch_sub(1, Ordering::Relaxed);
        ctx.metrics.queue_depth.decrement(1.0);
        ctx.metrics.queue_wait.record(arrived.elapsed());
        match job {
            Job::Embed(job) => embed(model, job, ctx.metrics),
            Job::Generate(job) => {
                let _ = job.events.send(Err(InferenceError::Invalid(
                    "`model` is an embedding model: call Embed".into(),
                )));
            }
        }
        ctx.finished(arrived);
    }
}

fn embed(model: &dyn Embedder, job: EmbedJob, metrics: &WorkerMetrics) {
    if job.reply.is_closed() {
        return;
    }
    metrics
        .prompt_tokens
        .increment(job.inputs.iter().map(|i| i.len() as u64).sum());
    if job.deadline.is_some_and(|d| Instant::now() >= d) {
        let _ = job
            .reply
            .send(Err(InferenceError::DeadlineExceeded { generated: 0 }));
        return;
    }
    let started = Instant::now();
    let result = model.embed(&job.inputs).map_err(InferenceError::model);
    metrics.batch_size.record(job.inputs.len() as f64);
    metrics.prefill_step.record(started.elapsed());
    tracing::debug!(inputs = job.inputs.len(), elapsed = ?started.elapsed(), "embedded");
    let _ = job.reply.send(result);
}
