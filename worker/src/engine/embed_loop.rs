//! The engine thread's loop for embedding models: one request at a time.

use std::time::Instant;

use tokio::sync::mpsc;

use super::batch_loop::Shared;
use super::jobs::{EmbedJob, EmbedReply, Job};
use crate::error::InferenceError;
use crate::metrics::WorkerMetrics;
use crate::model::Embedder;

pub(super) fn run(model: &dyn Embedder, mut queue: mpsc::UnboundedReceiver<Job>, ctx: Shared) {
    while let Some(job) = queue.blocking_recv() {
        let arrived = job.arrived();
        ctx.counters.left_waiting();
        ctx.counters.metrics().queue_wait.record(arrived.elapsed());
        match job {
            Job::Embed(job, reply) => embed(model, job, reply, ctx.counters.metrics()),
            Job::Generate(_, events) => {
                let _ = events.send(Err(InferenceError::Invalid(
                    "`model` is an embedding model: call Embed".into(),
                )));
            }
        }
        ctx.counters.finished(arrived);
    }
}

fn embed(model: &dyn Embedder, job: EmbedJob, reply: EmbedReply, metrics: &WorkerMetrics) {
    if reply.is_closed() {
        return;
    }
    metrics
        .prompt_tokens
        .increment(job.inputs.iter().map(|i| i.len() as u64).sum());
    if job.deadline.is_some_and(|d| Instant::now() >= d) {
        let _ = reply.send(Err(InferenceError::DeadlineExceeded { generated: 0 }));
        return;
    }
    let started = Instant::now();
    let result = model.embed(&job.inputs).map_err(InferenceError::model);
    metrics.batch_size.record(job.inputs.len() as f64);
    metrics.prefill_step.record(started.elapsed());
    tracing::debug!(inputs = job.inputs.len(), elapsed = ?started.elapsed(), "embedded");
    let _ = reply.send(result);
}
