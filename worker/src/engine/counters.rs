//! The engine's live counters: the atomics `Info` reads without going through
//! the queue, and the Prometheus gauges and counters that say the same thing,
//! moved together in one place so that they never disagree.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::admission::Refusal;
use crate::metrics::WorkerMetrics;

/// What `Info` reports of the engine's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Every token the model generated, counted as it was produced.
    pub generated_tokens: u64,
    /// Requests that reached their terminal state.
    pub finished: u64,
    /// Requests waiting or running.
    pub in_engine: u32,
    /// Requests not yet in the running batch.
    pub waiting: u32,
}

pub struct Counters {
    generated_tokens: AtomicU64,
    finished: AtomicU64,
    in_engine: AtomicU32,
    waiting: AtomicU32,
    metrics: Arc<WorkerMetrics>,
}

impl Counters {
    pub fn new(metrics: Arc<WorkerMetrics>) -> Self {
        Counters {
            generated_tokens: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            in_engine: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
            metrics,
        }
    }

    /// The worker's metrics, for what only the engine measures (steps,
    /// latencies).
    pub fn metrics(&self) -> &WorkerMetrics {
        &self.metrics
    }

    /// A request joins the waiting line, unless `room` refuses the line as
    /// it is (checked and counted in one step, so two requests racing for
    /// the last place cannot both take it).
    pub fn enter(&self, room: impl Fn(usize) -> Result<(), Refusal>) -> Result<(), Refusal> {
        let waiting = self.waiting.fetch_add(1, Ordering::Relaxed) as usize;
        if let Err(refusal) = room(waiting) {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(refusal);
        }
        self.in_engine.fetch_add(1, Ordering::Relaxed);
        self.metrics.requests_in_flight.increment(1.0);
        self.metrics.queue_depth.increment(1.0);
        Ok(())
    }

    /// A request that [`Counters::enter`]ed never reached the engine thread.
    pub fn abandon(&self) {
        self.left_waiting();
        self.in_engine.fetch_sub(1, Ordering::Relaxed);
        self.metrics.requests_in_flight.decrement(1.0);
    }

    /// A request left the waiting line (admitted to the batch, or ended
    /// while waiting).
    pub fn left_waiting(&self) {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        self.metrics.queue_depth.decrement(1.0);
    }

    /// A request reached its terminal state.
    pub fn finished(&self, arrived: Instant) {
        self.in_engine.fetch_sub(1, Ordering::Relaxed);
        self.finished.fetch_add(1, Ordering::Relaxed);
        self.metrics.requests_in_flight.decrement(1.0);
        self.metrics.request_duration.record(arrived.elapsed());
    }

    /// The model generated one token.
    pub fn generated(&self) {
        self.generated_tokens.fetch_add(1, Ordering::Relaxed);
        self.metrics.generated_tokens.increment(1);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            generated_tokens: self.generated_tokens.load(Ordering::Relaxed),
            finished: self.finished.load(Ordering::Relaxed),
            in_engine: self.in_engine.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }
}
