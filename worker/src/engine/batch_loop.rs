//! The engine thread's loop for generation models: take new jobs, drop the
//! sequences whose clients left, ask the scheduler for the next step, run
//! the model once over the whole batch, and give each sequence its logits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::Tensor;
use tokio::sync::mpsc;

use super::counters::Counters;
use super::jobs::Job;
use super::scheduler::{Refused, Scheduled, Scheduler, SchedulerConfig, SeqId};
use super::sequence::{Progress, Sequence};
use crate::error::InferenceError;
use crate::model::kv_store::{KvStore, PagePool};
use crate::model::{BatchSeq, Generator, TextCodec};

/// What the engine thread shares with the async side.
#[derive(Clone, Copy)]
pub struct Shared<'a> {
    pub counters: &'a Counters,
    /// Set on shutdown: running generations end with `Cancelled`.
    pub stopping: &'a AtomicBool,
}

struct Batcher<'c> {
    model: Box<dyn Generator>,
    kv: KvStore,
    scheduler: Scheduler,
    sequences: HashMap<SeqId, Sequence<'c>>,
    codec: &'c TextCodec,
    next_id: SeqId,
}

pub fn run(
    model: Box<dyn Generator>,
    codec: &TextCodec,
    kv: KvStore,
    config: SchedulerConfig,
    mut queue: mpsc::UnboundedReceiver<Job>,
    ctx: Shared,
) {
    let pool = PagePool::new(kv.pages());
    let mut b = Batcher {
        model,
        kv,
        scheduler: Scheduler::new(config, pool),
        sequences: HashMap::new(),
        codec,
        next_id: 0,
    };
    loop {
        // Idle: sleep until a job comes. Busy: take what has come, if anything.
        if b.scheduler.is_idle() {
            match queue.blocking_recv() {
                Some(job) => b.add(job, ctx),
                None => break,
            }
        }
        loop {
            match queue.try_recv() {
                Ok(job) => b.add(job, ctx),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    // The handle is gone (shutdown): end what is left.
                    ctx.stopping.store(true, Ordering::Relaxed);
                    break;
                }
            }
        }
        b.sweep(ctx);
        if b.scheduler.is_idle() {
            if ctx.stopping.load(Ordering::Relaxed) && queue.is_closed() && queue.is_empty() {
                break;
            }
            continue;
        }
        b.step(config.max_batch_tokens, ctx);
    }
}

impl<'c> Batcher<'c> {
    fn add(&mut self, job: Job, ctx: Shared) {
        let (job, events) = match job {
            Job::Generate(job, events) => (job, events),
            Job::Embed(job, reply) => {
                ctx.counters.left_waiting();
                let _ = reply.send(Err(InferenceError::Invalid(
                    "`model` is a text-generation model: call Generate".into(),
                )));
                ctx.counters.finished(job.arrived);
                return;
            }
        };
        ctx.counters
            .metrics()
            .prompt_tokens
            .increment(job.prompt.len() as u64);
        let seq = Sequence::new(job, events, self.codec);
        let id = self.next_id;
        self.next_id += 1;
        match self.scheduler.add(id, seq.prompt_len(), seq.max_tokens()) {
            Ok(()) => {
                self.sequences.insert(id, seq);
            }
            Err(refused) => {
                // The handle's admission refuses these first; this is the backstop.
                ctx.counters.left_waiting();
                seq.fail(match refused {
                    Refused::Capacity(refusal) => InferenceError::Refused(refusal),
                    Refused::Duplicate(_) => InferenceError::model(refused),
                });
                ctx.counters.finished(seq.arrived);
            }
        }
    }

    /// Ends, before the step, every sequence whose client left, whose
    /// deadline passed, or all of them when the worker stops.
    fn sweep(&mut self, ctx: Shared) {
        let stopping = ctx.stopping.load(Ordering::Relaxed);
        let ended: Vec<SeqId> = self
            .sequences
            .iter_mut()
            .filter_map(|(&id, seq)| seq.interrupted(stopping).map(|_| id))
            .collect();
        for id in ended {
            self.end(id, ctx);
        }
    }

    /// One forward step over the scheduled batch.
    fn step(&mut self, budget: usize, ctx: Shared) {
        let waiting_before = self.scheduler.waiting();
        let plan = self.scheduler.next_batch(budget);
        for _ in 0..waiting_before - self.scheduler.waiting() {
            ctx.counters.left_waiting();
        }
        if plan.is_empty() {
            return;
        }
        let started = Instant::now();
        for item in &plan {
            let seq = self
                .sequences
                .get_mut(&item.id)
                .expect("scheduled ids are known");
            if seq.started.is_none() {
                seq.started = Some(started);
                ctx.counters
                    .metrics()
                    .queue_wait
                    .record(started - seq.arrived);
            }
        }
        let result = self.forward(&plan);
        let prefill = plan.iter().any(|item| item.len > 1 || !item.logits);
        let metrics = ctx.counters.metrics();
        metrics.batch_size.record(plan.len() as f64);
        let elapsed = started.elapsed();
        if prefill {
            metrics.prefill_step.record(elapsed);
        } else {
            metrics.decode_step.record(elapsed);
        }
        let logits = match result {
            Ok(logits) => logits,
            Err(e) => {
                tracing::error!(error = %e, sequences = plan.len(), "forward pass failed");
                for item in &plan {
                    if let Some(seq) = self.sequences.get(&item.id) {
                        seq.fail(InferenceError::model(&e));
                    }
                    self.end(item.id, ctx);
                }
                return;
            }
        };
        for (row, item) in plan.iter().filter(|item| item.logits).enumerate() {
            let seq = self
                .sequences
                .get_mut(&item.id)
                .expect("scheduled ids are known");
            let progress = match logits.get(row) {
                Ok(row) => seq.accept(&row, ctx.counters),
                Err(e) => {
                    seq.fail(InferenceError::model(e));
                    Progress::Ended
                }
            };
            match progress {
                Progress::Running => self.scheduler.append(item.id),
                Progress::Ended => self.end(item.id, ctx),
            }
        }
    }

    fn forward(&mut self, plan: &[Scheduled]) -> candle_core::Result<Tensor> {
        let batch: Vec<BatchSeq> = plan
            .iter()
            .map(|item| BatchSeq {
                id: item.id,
                start: item.start,
                tokens: &self.sequences[&item.id].history[item.start..item.start + item.len],
                pages: self.scheduler.pages(item.id),
                logits: item.logits,
            })
            .collect();
        self.model.forward(&batch, &mut self.kv)
    }

    /// The sequence has sent its terminal event (or its client is gone):
    /// it leaves the batch and its KV pages are free.
    fn end(&mut self, id: SeqId, ctx: Shared) {
        let was_waiting = self.scheduler.waiting_ids().any(|w| w == id);
        self.scheduler.remove(id);
        self.model.release(id);
        if let Some(seq) = self.sequences.remove(&id) {
            if was_waiting {
                ctx.counters.left_waiting();
            }
            ctx.counters.finished(seq.arrived);
        }
    }
}
