//! One load point: a closed loop (a fixed number of clients, each sending
//! its next request when the previous one ends) or an open loop (Poisson
//! arrivals at a fixed rate, whatever the server does), with a warm-up whose
//! requests are left out of the results.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::live::{Length, Live, Progress};
use crate::request::{self, RequestRecord, Timing};
use crate::target::Target;
use crate::workload::Workload;

/// How requests arrive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "model", rename_all = "lowercase")]
pub enum Load {
    /// `concurrency` clients in a loop.
    Closed { concurrency: u32 },
    /// Poisson arrivals, `rate` requests per second.
    Open { rate: f64 },
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Load::Closed { concurrency } => write!(f, "c={concurrency}"),
            Load::Open { rate } => write!(f, "{rate}/s"),
        }
    }
}

/// When a load point stops sending.
#[derive(Debug, Clone)]
pub enum Until {
    /// This long after the warm-up.
    Duration(Duration),
    /// After this many requests past the warm-up.
    Requests(u64),
    /// When the receiver turns true (an aggressor's flood).
    Stopped(watch::Receiver<bool>),
}

#[derive(Debug, Clone)]
pub struct RunSpec {
    pub load: Load,
    pub until: Until,
    /// Requests sent during the warm-up are not measured.
    pub warmup: Duration,
    /// How long requests still running at the end are waited for.
    pub drain: Duration,
    /// gRPC deadline of each request.
    pub timeout: Duration,
    /// Open loop: arrivals beyond this many requests in flight are skipped
    /// (and counted), so an overloaded server cannot exhaust the client.
    pub max_in_flight: usize,
    /// Seeds the open loop's arrival times.
    pub seed: u64,
}

/// What one load point measured.
#[derive(Debug)]
pub struct RunOutcome {
    /// The measured requests, in the order they ended.
    pub records: Vec<RequestRecord>,
    pub warmup_requests: u64,
    /// The measured window: `--duration` itself, or from the end of the
    /// warm-up to the last measured request's end (`--requests`).
    pub window: Duration,
    /// Tokens that arrived inside the window, from any request.
    pub window_tokens: u64,
    /// Open-loop arrivals not sent because `max_in_flight` were running.
    pub skipped: u64,
}

/// Decides, before each request, whether to send it and whether it counts.
struct Gate {
    window_start: Instant,
    until: Until,
    measured_sent: AtomicU64,
    /// Set once no more requests are to be sent.
    over: watch::Sender<bool>,
}

impl Gate {
    /// `Some(measured)` to send one more request, `None` when the run is over.
    fn admit(&self) -> Option<bool> {
        if *self.over.borrow() {
            return None;
        }
        let measured = Instant::now() >= self.window_start;
        let more = match &self.until {
            Until::Duration(d) => Instant::now() < self.window_start + *d,
            Until::Requests(n) => {
                !measured || self.measured_sent.fetch_add(1, Ordering::Relaxed) < *n
            }
            Until::Stopped(rx) => !*rx.borrow(),
        };
        if !more {
            self.over.send_replace(true);
            return None;
        }
        Some(measured)
    }
}

/// Collected results, shared by the request tasks.
#[derive(Default)]
struct Sink {
    records: Mutex<Vec<RequestRecord>>,
    warmup: AtomicU64,
}

impl Sink {
    fn put(&self, record: RequestRecord, measured: bool) {
        if measured {
            self.records
                .lock()
                .expect("no task panics holding the lock")
                .push(record);
        } else {
            self.warmup.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What every request task of a run needs.
#[derive(Clone)]
struct Ctx {
    target: Target,
    workload: Arc<Workload>,
    live: Arc<Live>,
    sink: Arc<Sink>,
    /// Turns true when the drain time is over: running requests give up.
    give_up: watch::Receiver<bool>,
    timeout: Duration,
    window_start: Instant,
}

impl Ctx {
    async fn one(&self, index: u64, due: Instant, measured: bool) {
        let timing = Timing {
            due,
            window_start: self.window_start,
            timeout: self.timeout,
        };
        let request = self.workload.request(index);
        let record = request::send(
            &self.target,
            index,
            request,
            timing,
            &self.live,
            self.give_up.clone(),
        )
        .await;
        self.sink.put(record, measured);
    }
}

/// Runs one load point against `target`; `label` prefixes the progress bar.
pub async fn run(
    target: &Target,
    workload: &Arc<Workload>,
    spec: &RunSpec,
    label: &str,
) -> RunOutcome {
    let start = Instant::now();
    let window_start = start + spec.warmup;
    let window_end = match spec.until {
        Until::Duration(d) => Some(window_start + d),
        _ => None,
    };
    let live = Arc::new(Live::new(window_start, window_end));
    run_with(target, workload, spec, label, live, start).await
}

/// [`run`] with counters the caller watches (an aggressor's flood), from
/// `start`.
pub async fn run_with(
    target: &Target,
    workload: &Arc<Workload>,
    spec: &RunSpec,
    label: &str,
    live: Arc<Live>,
    start: Instant,
) -> RunOutcome {
    // A flood that runs until stopped has no length to show.
    let length = match &spec.until {
        Until::Duration(d) => Some(Length::Seconds((spec.warmup + *d).as_secs())),
        Until::Requests(n) => Some(Length::Requests(*n)),
        Until::Stopped(_) => None,
    };
    let progress = length.map(|length| Progress::start(label, live.clone(), length));
    let window_start = start + spec.warmup;
    let (over_tx, mut over_rx) = watch::channel(false);
    let gate = Arc::new(Gate {
        window_start,
        until: spec.until.clone(),
        measured_sent: AtomicU64::new(0),
        over: over_tx,
    });
    let (give_up_tx, give_up_rx) = watch::channel(false);
    let end_watch = tokio::spawn({
        let gate = gate.clone();
        let mut over_rx = over_rx.clone();
        let until = spec.until.clone();
        let drain = spec.drain;
        async move {
            match until {
                Until::Duration(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until((window_start + d).into()) => {}
                        _ = over_rx.wait_for(|over| *over) => {}
                    }
                }
                Until::Requests(_) => {
                    let _ = over_rx.wait_for(|over| *over).await;
                }
                Until::Stopped(mut rx) => {
                    let _ = rx.wait_for(|stop| *stop).await;
                }
            }
            gate.over.send_replace(true);
            tokio::time::sleep(drain).await;
            give_up_tx.send_replace(true);
        }
    });
    let ctx = Ctx {
        target: target.clone(),
        workload: workload.clone(),
        live: live.clone(),
        sink: Arc::new(Sink::default()),
        give_up: give_up_rx,
        timeout: spec.timeout,
        window_start,
    };
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    let mut skipped = 0u64;
    match spec.load {
        Load::Closed { concurrency } => {
            for _ in 0..concurrency {
                let (ctx, gate, next) = (ctx.clone(), gate.clone(), next.clone());
                tasks.spawn(async move {
                    while let Some(measured) = gate.admit() {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        ctx.one(index, Instant::now(), measured).await;
                    }
                });
            }
        }
        Load::Open { rate } => {
            let mut rng = StdRng::seed_from_u64(spec.seed);
            let mut due = start;
            loop {
                // Exponential gaps: a Poisson process of `rate` per second.
                let u: f64 = rng.random_range(f64::EPSILON..1.0);
                due += Duration::from_secs_f64(-u.ln() / rate);
                tokio::select! {
                    _ = tokio::time::sleep_until(due.into()) => {}
                    _ = over_rx.wait_for(|over| *over) => break,
                }
                // Reap finished tasks so the in-flight count is current.
                while let Some(done) = tasks.try_join_next() {
                    reraise(done);
                }
                if tasks.len() >= spec.max_in_flight {
                    // Not sent, so it takes nothing from a `--requests` budget.
                    if due >= window_start {
                        skipped += 1;
                    }
                    continue;
                }
                let Some(measured) = gate.admit() else { break };
                let index = next.fetch_add(1, Ordering::Relaxed);
                let ctx = ctx.clone();
                tasks.spawn(async move { ctx.one(index, due, measured).await });
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        reraise(done);
    }
    let ended = Instant::now();
    end_watch.abort();
    drop(progress);
    let records = std::mem::take(
        &mut *ctx
            .sink
            .records
            .lock()
            .expect("no task panics holding the lock"),
    );
    let window = match spec.until {
        Until::Duration(d) => d,
        _ => ended.saturating_duration_since(window_start),
    };
    RunOutcome {
        records,
        warmup_requests: ctx.sink.warmup.load(Ordering::Relaxed),
        window,
        window_tokens: live.window_tokens(),
        skipped,
    }
}

/// A request task that panicked would leave its request without a status:
/// let the panic through instead of losing it.
fn reraise(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}
