//! The engine thread: it owns the model and the device, takes jobs from a
//! bounded queue, and answers each on the job's own channel.
//!
//! One generation runs at a time (batching comes later). Between two tokens
//! the engine checks whether the client is still listening, whether the
//! deadline has passed and whether the worker is shutting down, so a
//! cancelled request stops at the next token.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::config::{DeviceKind, WeightFormat};
use crate::error::{InferenceError, StartupError};
use crate::metrics::WorkerMetrics;
use crate::model::{self, Backend, Codec, Embedder, Generator, ModelSource, TextCodec};
use crate::sampling::{Sampler, SamplingParams};
use crate::stop::StopMatcher;

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
}

/// The async side's handle on the engine thread. Dropping it closes the
/// queue and joins the thread once the current job is done.
pub struct Engine {
    queue: Option<mpsc::Sender<Job>>,
    capacity: usize,
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
        capacity: usize,
        metrics: Arc<WorkerMetrics>,
    ) -> Result<(Engine, Codec), StartupError> {
        let (queue_tx, queue_rx) = mpsc::channel(capacity);
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
                    let loaded = model::device(spec.device)
                        .and_then(|device| model::load(&spec.source, &device, spec.weights));
                    match loaded {
                        Ok(loaded) => {
                            // The receiver waits in `start`; it cannot be gone.
                            let _ = ready_tx.send(Ok((loaded.codec.clone(), loaded.engine)));
                            run_loop(
                                loaded.backend,
                                loaded.codec,
                                queue_rx,
                                &stats,
                                &metrics,
                                &stopping,
                            );
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                }
            })
            .map_err(|e| StartupError::Engine(e.to_string()))?;
        let (codec, description) = ready_rx
            .recv()
            .map_err(|_| StartupError::Engine("engine thread exited while loading".into()))??;
        Ok((
            Engine {
                queue: Some(queue_tx),
                capacity,
                stats,
                metrics,
                stopping,
                thread: Some(thread),
                description,
            },
            codec,
        ))
    }

    /// Queues a job without waiting; a full queue is an overload error.
    pub fn submit(&self, job: Job) -> Result<(), InferenceError> {
        let queue = self.queue.as_ref().ok_or(InferenceError::ShuttingDown)?;
        if self.stopping.load(Ordering::Relaxed) {
            return Err(InferenceError::ShuttingDown);
        }
        self.stats.in_engine.fetch_add(1, Ordering::Relaxed);
        self.metrics.requests_in_flight.increment(1.0);
        self.metrics.queue_depth.increment(1.0);
        queue.try_send(job).map_err(|e| {
            self.stats.in_engine.fetch_sub(1, Ordering::Relaxed);
            self.metrics.requests_in_flight.decrement(1.0);
            self.metrics.queue_depth.decrement(1.0);
            match e {
                mpsc::error::TrySendError::Full(_) => InferenceError::QueueFull {
                    limit: self.capacity,
                },
                mpsc::error::TrySendError::Closed(_) => InferenceError::ShuttingDown,
            }
        })
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

fn run_loop(
    mut backend: Backend,
    codec: Codec,
    mut queue: mpsc::Receiver<Job>,
    stats: &EngineStats,
    metrics: &WorkerMetrics,
    stopping: &AtomicBool,
) {
    while let Some(job) = queue.blocking_recv() {
        let arrived = job.arrived();
        metrics.queue_depth.decrement(1.0);
        metrics.queue_wait.record(arrived.elapsed());
        match (job, &mut backend, &codec) {
            (Job::Generate(job), Backend::Generate(model), Codec::Text(text)) => {
                generate(model.as_mut(), text, job, stats, metrics, stopping)
            }
            (Job::Embed(job), Backend::Embed(model), _) => embed(model.as_ref(), job, metrics),
            (Job::Generate(job), ..) => {
                let _ = job.events.send(Err(InferenceError::Invalid(
                    "`model` is an embedding model: call Embed".into(),
                )));
            }
            (Job::Embed(job), ..) => {
                let _ = job.reply.send(Err(InferenceError::Invalid(
                    "`model` is a text-generation model: call Generate".into(),
                )));
            }
        }
        stats.in_engine.fetch_sub(1, Ordering::Relaxed);
        stats.finished.fetch_add(1, Ordering::Relaxed);
        metrics.requests_in_flight.decrement(1.0);
        metrics.request_duration.record(arrived.elapsed());
    }
    tracing::debug!("engine queue closed; engine thread exits");
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

/// Runs one generation to its end, sending events as tokens come.
fn generate(
    model: &mut dyn Generator,
    codec: &TextCodec,
    job: GenerateJob,
    stats: &EngineStats,
    metrics: &WorkerMetrics,
    stopping: &AtomicBool,
) {
    let GenerateJob {
        prompt,
        max_tokens,
        sampling,
        stop,
        ignore_eos,
        deadline,
        arrived,
        events,
    } = job;
    metrics.prompt_tokens.increment(prompt.len() as u64);
    let started = Instant::now();
    let prompt_tokens = prompt.len() as u32;
    let mut sampler = Sampler::new(&sampling);
    let mut decoder = codec.prompter.decoder().decode_stream(true);
    let mut stops = StopMatcher::new(stop);
    let mut history = prompt;
    let mut generated = 0u32;
    // Tokens generated since the last event that carried text.
    let mut unsent = 0u32;
    let mut first_token_at = None;
    let mut last_token_at: Option<Instant> = None;

    let finish = loop {
        if events.is_closed() {
            tracing::debug!(generated, "client went away; generation cancelled");
            return;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = events.send(Err(InferenceError::DeadlineExceeded { generated }));
            return;
        }
        if stopping.load(Ordering::Relaxed) {
            break Finish::Cancelled;
        }
        let step_started = Instant::now();
        let logits = if generated == 0 {
            model.prefill(&history)
        } else {
            let last = history[history.len() - 1];
            model.step(last, history.len() - 1)
        };
        // One sequence per step until the engine batches.
        metrics.batch_size.record(1.0);
        if generated == 0 {
            metrics.prefill_step.record(step_started.elapsed());
        } else {
            metrics.decode_step.record(step_started.elapsed());
        }
        let next = match logits.and_then(|l| sampler.sample(&l, &history)) {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(error = %e, "forward pass failed");
                let _ = events.send(Err(InferenceError::model(e)));
                return;
            }
        };
        let now = Instant::now();
        match last_token_at.replace(now) {
            None => metrics.time_to_first_token.record(now - arrived),
            Some(previous) => metrics.inter_token_latency.record(now - previous),
        }
        first_token_at.get_or_insert(now);
        // With `ignore_eos` the end-of-sequence token is generated like any
        // other; the decoder skips special tokens, so it adds no text.
        if !ignore_eos && codec.stop_ids.contains(&next) {
            break Finish::Eos;
        }
        generated += 1;
        unsent += 1;
        stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
        metrics.generated_tokens.increment(1);
        history.push(next);
        let piece = match decoder.step(next) {
            Ok(piece) => piece,
            Err(e) => {
                let _ = events.send(Err(InferenceError::model(format!("detokenizer: {e}"))));
                return;
            }
        };
        if let Some(piece) = piece {
            let released = stops.push(&piece);
            if released.stopped {
                // The remaining text goes out with the final event.
                let _ = events.send(Ok(GenEvent::Done {
                    text: released.text,
                    tokens: unsent,
                    finish: Finish::Stop,
                    prompt_tokens,
                    completion_tokens: generated,
                }));
                log_done(
                    started,
                    first_token_at,
                    prompt_tokens,
                    generated,
                    Finish::Stop,
                );
                return;
            }
            if !released.text.is_empty() {
                let delta = GenEvent::Delta {
                    text: released.text,
                    tokens: unsent,
                };
                if events.send(Ok(delta)).is_err() {
                    return;
                }
                unsent = 0;
            }
        }
        if generated >= max_tokens {
            break Finish::Length;
        }
        if history.len() >= codec.context_length {
            // Validation keeps prompt + max_tokens within the context; this
            // guards the model's position tables regardless.
            break Finish::Length;
        }
    };
    let _ = events.send(Ok(GenEvent::Done {
        text: stops.finish(),
        tokens: unsent,
        finish,
        prompt_tokens,
        completion_tokens: generated,
    }));
    log_done(started, first_token_at, prompt_tokens, generated, finish);
}

fn log_done(
    started: Instant,
    first_token_at: Option<Instant>,
    prompt_tokens: u32,
    generated: u32,
    finish: Finish,
) {
    let prefill = first_token_at.map(|t| t - started).unwrap_or_default();
    let decode = first_token_at.map(|t| t.elapsed()).unwrap_or_default();
    let decode_tps = if generated > 1 {
        (generated - 1) as f64 / decode.as_secs_f64()
    } else {
        0.0
    };
    tracing::info!(
        prompt_tokens,
        completion_tokens = generated,
        ?finish,
        prefill_ms = prefill.as_millis() as u64,
        decode_tokens_per_s = format!("{decode_tps:.1}"),
        "generation finished"
    );
}
