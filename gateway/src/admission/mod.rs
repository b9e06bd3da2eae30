//! Admission at the gateway, per model: a request runs on a worker only when
//! one has room (its `max_batch_size`, from `Info`); until then it waits
//! here, in a bounded queue ordered by priority class, then fairly across
//! tenants by tokens, then by deadline ([`order`]), instead of in a worker's
//! own queue where a crowd of one tenant's requests would sit ahead of
//! everyone's.
//!
//! A request that cannot finish before its deadline, judged from the
//! queue's measured drain rate and the model's measured time per token, is
//! refused at once (`RESOURCE_EXHAUSTED` with a `retry-after`) rather than
//! admitted to be cut later with its work thrown away. A full queue makes
//! room for a more important request by shedding the newest of the least
//! important class (`sheddable` first, `critical` never).
//!
//! With tenants, no tenant holds every place on a model's workers: about
//! one in eight (at least one) is kept for tenants with nothing running, so
//! a newcomer starts at once beside a crowd instead of waiting for one of
//! the crowd's streams to end (running streams are never preempted).

pub mod order;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::Label;
use tokio::sync::oneshot;

use crate::metrics::{GatewayMetrics, ADMISSION_QUEUE_DEPTH, ADMISSION_SHED};
use crate::registry::Registry;
use crate::tenancy::file::Priority;
use order::{Id, Waiting, CLASSES};

/// The queue's bounds (`mig-gateway serve --queue-max-waiting`,
/// `--queue-max-wait`).
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Requests that may wait per model, all classes together.
    pub max_waiting: usize,
    /// Longest a request may wait for a worker.
    pub max_wait: Duration,
    /// Keep room for tenants with nothing running (on with a tenants file;
    /// an open gateway has one tenant, for which room would only be lost).
    pub keep_room: bool,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_waiting: 1024,
            max_wait: Duration::from_secs(30),
            keep_room: false,
        }
    }
}

/// Places one tenant may hold out of `capacity`, with room kept for others.
fn tenant_share(capacity: u32, keep_room: bool) -> u32 {
    if keep_room && capacity > 1 {
        capacity - (capacity / 8).max(1)
    } else {
        capacity
    }
}

/// One request asking for a worker of `model`.
#[derive(Debug, Clone, Copy)]
pub struct Ticket<'a> {
    pub model: &'a str,
    /// Only workers on slices of this profile; empty means any.
    pub profile: &'a str,
    /// The tenant label: fairness is between these.
    pub tenant: &'a str,
    pub priority: Priority,
    /// Its tokens: a prompt estimate plus what it may generate.
    pub cost: u64,
    pub deadline: Option<Instant>,
}

/// Why a request was refused or taken out of the queue.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum Shed {
    #[error("the queue for model `{model}` is full ({waiting} requests waiting); retry in {retry_after_s} s")]
    QueueFull {
        model: String,
        waiting: usize,
        retry_after_s: u64,
    },
    #[error("model `{model}` is overloaded: a request would wait about {wait_ms} ms for a worker, over the {limit_ms} ms limit; retry in {retry_after_s} s")]
    TooLong {
        model: String,
        wait_ms: u64,
        limit_ms: u64,
        retry_after_s: u64,
    },
    #[error("model `{model}` is overloaded: this request would start in about {wait_ms} ms and take about {service_ms} ms, past its deadline ({left_ms} ms left); retry in {retry_after_s} s")]
    Deadline {
        model: String,
        wait_ms: u64,
        service_ms: u64,
        left_ms: u64,
        retry_after_s: u64,
    },
    #[error("shed from the queue of model `{model}` for a request of a higher priority class; retry in {retry_after_s} s")]
    Evicted { model: String, retry_after_s: u64 },
    #[error("waited {waited_ms} ms for a worker of model `{model}`, the queue's limit; retry in {retry_after_s} s")]
    Waited {
        model: String,
        waited_ms: u64,
        retry_after_s: u64,
    },
    /// The deadline passed while it waited: `DEADLINE_EXCEEDED`, not a shed.
    #[error("deadline exceeded while waiting for a worker")]
    Expired,
    /// The model's workers went down and none came back while it waited:
    /// `UNAVAILABLE`, like a model with no healthy worker.
    #[error("no healthy worker of model `{model}` came back in {waited_ms} ms")]
    Down {
        model: String,
        workers: usize,
        waited_ms: u64,
    },
}

/// Every `reason` label of `mig_gateway_admission_shed_total`.
const SHED_REASONS: [&str; 7] = [
    "queue_full",
    "wait_limit",
    "deadline",
    "evicted",
    "waited",
    "expired",
    "no_worker",
];

impl Shed {
    /// The `reason` label of `mig_gateway_admission_shed_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Shed::QueueFull { .. } => "queue_full",
            Shed::TooLong { .. } => "wait_limit",
            Shed::Deadline { .. } => "deadline",
            Shed::Evicted { .. } => "evicted",
            Shed::Waited { .. } => "waited",
            Shed::Expired => "expired",
            Shed::Down { .. } => "no_worker",
        }
    }

    /// Seconds after which a retry may succeed.
    pub fn retry_after(&self) -> Duration {
        Duration::from_secs(match self {
            Shed::QueueFull { retry_after_s, .. }
            | Shed::TooLong { retry_after_s, .. }
            | Shed::Deadline { retry_after_s, .. }
            | Shed::Evicted { retry_after_s, .. }
            | Shed::Waited { retry_after_s, .. } => *retry_after_s,
            Shed::Expired | Shed::Down { .. } => 0,
        })
    }
}

/// The gateway's admission: one queue per model.
pub struct Admission {
    registry: Arc<Registry>,
    metrics: Arc<GatewayMetrics>,
    limits: QueueLimits,
    /// By model and profile (empty for requests that take any).
    queues: Mutex<HashMap<(String, String), Arc<ModelQueue>>>,
}

/// The queue of one model's requests, or of those naming one of its slice
/// profiles: they wait for room on that profile's workers only. (The two
/// kinds count the same workers apart; what they overcommit waits in the
/// workers' own queues.)
struct ModelQueue {
    model: String,
    profile: String,
    state: Mutex<QueueState>,
}

struct Waiter {
    tenant: String,
    grant: oneshot::Sender<Result<(), Shed>>,
}

#[derive(Default)]
struct QueueState {
    waiting: Waiting<Waiter>,
    /// Requests holding a slot.
    running: u32,
    /// Of those, each tenant's.
    running_by: HashMap<String, u32>,
    /// When the last slots were given back, newest last: the drain rate.
    released: VecDeque<Instant>,
    /// Seconds a slot is held per token of its cost (moving average).
    seconds_per_token: Option<f64>,
    /// When the model last had a healthy worker: with none now, a request
    /// waits for one to come back (a restart) only if this is recent.
    served_at: Option<Instant>,
}

/// Completions kept for the drain rate.
const RATE_WINDOW: usize = 64;
/// Completions older than this say nothing about the rate now.
const RATE_MAX_AGE: Duration = Duration::from_secs(30);

impl QueueState {
    /// Whether `tenant` may take one more of `capacity` places now.
    fn may_start(&self, tenant: &str, capacity: u32, keep_room: bool) -> bool {
        let held = self.running_by.get(tenant).copied().unwrap_or(0);
        self.running < capacity && (held == 0 || held < tenant_share(capacity, keep_room))
    }

    fn started(&mut self, tenant: &str) {
        self.running += 1;
        *self.running_by.entry(tenant.to_string()).or_default() += 1;
    }

    fn ended(&mut self, tenant: &str) {
        self.running = self.running.saturating_sub(1);
        if let Some(n) = self.running_by.get_mut(tenant) {
            *n -= 1;
            if *n == 0 {
                self.running_by.remove(tenant);
            }
        }
    }

    /// Slots given back per second, once enough were.
    fn drain_rate(&self, now: Instant) -> Option<f64> {
        let recent: Vec<&Instant> = self
            .released
            .iter()
            .filter(|t| now.duration_since(**t) <= RATE_MAX_AGE)
            .collect();
        if recent.len() < 4 {
            return None;
        }
        let span = now.duration_since(*recent[0]).as_secs_f64();
        (span > 0.0).then(|| recent.len() as f64 / span)
    }
}

/// A request's place on a worker of its model: held while it runs, given
/// back (and the next waiting request started) when dropped.
pub struct Slot {
    held: Option<(Arc<Admission>, Arc<ModelQueue>, String)>,
    since: Instant,
    cost: u64,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("counted", &self.held.is_some())
            .field("cost", &self.cost)
            .finish()
    }
}

impl Slot {
    /// A slot that counts against nothing: the model has no healthy worker
    /// now, and routing answers for it.
    fn uncounted() -> Slot {
        Slot {
            held: None,
            since: Instant::now(),
            cost: 0,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((admission, queue, tenant)) = self.held.take() {
            admission.release(&queue, &tenant, Some((self.since.elapsed(), self.cost)));
        }
    }
}

/// Takes a waiter out of the queue when its wait ends without a slot (the
/// client went away, the deadline or the queue's limit passed).
struct WaitGuard<'a> {
    admission: &'a Arc<Admission>,
    queue: &'a Arc<ModelQueue>,
    priority: Priority,
    tenant: &'a str,
    id: Id,
    grant: Option<oneshot::Receiver<Result<(), Shed>>>,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        let removed = {
            let mut state = self.queue.lock();
            let removed = state
                .waiting
                .remove(self.priority, self.tenant, self.id)
                .is_some();
            self.admission.publish_depth(self.queue, &state);
            removed
        };
        if removed {
            return;
        }
        // Granted after it gave up: the slot goes back.
        if let Some(mut grant) = self.grant.take() {
            grant.close();
            if let Ok(Ok(())) = grant.try_recv() {
                self.admission.release(self.queue, self.tenant, None);
            }
        }
    }
}

impl ModelQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

fn priority_label(p: Priority) -> &'static str {
    match p {
        Priority::Critical => "critical",
        Priority::Standard => "standard",
        Priority::Sheddable => "sheddable",
    }
}

impl Admission {
    pub fn new(
        registry: Arc<Registry>,
        metrics: Arc<GatewayMetrics>,
        limits: QueueLimits,
    ) -> Arc<Admission> {
        Arc::new(Admission {
            registry,
            metrics,
            limits,
            queues: Mutex::new(HashMap::new()),
        })
    }

    fn queue(&self, model: &str, profile: &str) -> Arc<ModelQueue> {
        let key = (model.to_string(), profile.to_string());
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(queue) = queues.get(&key) {
            return queue.clone();
        }
        let first_of_model = !queues.keys().any(|(m, _)| m == model);
        let queue = Arc::new(ModelQueue {
            model: model.to_string(),
            profile: profile.to_string(),
            state: Mutex::new(QueueState::default()),
        });
        queues.insert(key, queue.clone());
        drop(queues);
        if first_of_model {
            self.zero_series(model);
        }
        queue
    }

    /// The model's admission series, at zero from its first request on, so
    /// dashboards and `rate()` see them before the first shed.
    fn zero_series(&self, model: &str) {
        self.depth_gauges(model, &QueueState::default());
        for priority in CLASSES {
            for reason in SHED_REASONS {
                self.shed_counter(model, priority, reason).increment(0);
            }
        }
        self.metrics
            .counter(
                crate::metrics::WORKER_RETRIES,
                vec![Label::new("model", model.to_string())],
            )
            .increment(0);
    }

    /// Requests the model's healthy workers (of `profile`, unless empty)
    /// take at once.
    fn capacity(&self, model: &str, profile: &str) -> u32 {
        self.workers_of(model, profile)
            .iter()
            .filter(|w| w.is_healthy())
            .map(|w| w.capacity())
            .sum()
    }

    /// The model's workers, of `profile` unless empty.
    fn workers_of(&self, model: &str, profile: &str) -> Vec<Arc<crate::registry::WorkerHandle>> {
        let mut workers = self.registry.workers(model).unwrap_or_default();
        if !profile.is_empty() {
            workers.retain(|w| w.profile().as_deref() == Some(profile));
        }
        workers
    }

    /// Waits for room on a worker of the ticket's model, in turn; or
    /// refuses at once when the request could not start in time.
    pub async fn acquire(self: &Arc<Self>, ticket: Ticket<'_>) -> Result<Slot, Shed> {
        let capacity = self.capacity(ticket.model, ticket.profile);
        let now = Instant::now();
        if capacity == 0 && !self.restarting(ticket.model, ticket.profile, now) {
            return Ok(Slot::uncounted());
        }
        let queue = self.queue(ticket.model, ticket.profile);
        let (id, grant) = {
            let mut state = queue.lock();
            if capacity > 0 {
                state.served_at = Some(now);
            }
            let room_now = state.may_start(ticket.tenant, capacity, self.limits.keep_room);
            if state.waiting.is_empty() && room_now {
                state.started(ticket.tenant);
                return Ok(self.slot(&queue, ticket.tenant, ticket.cost));
            }
            // With room for this tenant now (those waiting may not start
            // more), the pump below starts it at once: nothing to predict.
            // With no worker up, what was measured says nothing of when
            // one comes back: the request waits, within its bounds.
            if !room_now && capacity > 0 {
                if let Err(shed) = self.refuse_early(&state, ticket, now) {
                    drop(state);
                    self.count_shed(ticket.model, ticket.priority, &shed);
                    return Err(shed);
                }
            }
            if !room_now && state.waiting.len() >= self.limits.max_waiting {
                match state.waiting.evict_below(ticket.priority) {
                    Some((priority, evicted)) => {
                        let shed = Shed::Evicted {
                            model: ticket.model.to_string(),
                            retry_after_s: self.retry_after(&state, now),
                        };
                        self.count_shed(ticket.model, priority, &shed);
                        let _ = evicted.grant.send(Err(shed));
                    }
                    None => {
                        let shed = Shed::QueueFull {
                            model: ticket.model.to_string(),
                            waiting: state.waiting.len(),
                            retry_after_s: self.retry_after(&state, now),
                        };
                        drop(state);
                        self.count_shed(ticket.model, ticket.priority, &shed);
                        return Err(shed);
                    }
                }
            }
            let (tx, rx) = oneshot::channel();
            let id = state.waiting.push(
                ticket.priority,
                ticket.tenant,
                ticket.cost,
                ticket.deadline,
                Waiter {
                    tenant: ticket.tenant.to_string(),
                    grant: tx,
                },
            );
            self.publish_depth(&queue, &state);
            (id, rx)
        };
        // A slot may have come free between the capacity read and the push.
        self.pump(&queue);
        let mut guard = WaitGuard {
            admission: self,
            queue: &queue,
            priority: ticket.priority,
            tenant: ticket.tenant,
            id,
            grant: Some(grant),
        };
        let limit = now + self.limits.max_wait;
        let until = ticket.deadline.map_or(limit, |d| d.min(limit));
        let answer =
            tokio::time::timeout_at(until.into(), guard.grant.as_mut().expect("set above")).await;
        let shed = match answer {
            Ok(Ok(Ok(()))) => {
                // Granted: the slot is this request's now.
                guard.grant = None;
                guard.id = Id::MAX;
                drop(guard);
                return Ok(self.slot(&queue, ticket.tenant, ticket.cost));
            }
            Ok(Ok(Err(shed))) => shed,
            // The sender is gone only if the queue was dropped: retry.
            Ok(Err(_)) => Shed::Waited {
                model: ticket.model.to_string(),
                waited_ms: ms(now.elapsed()),
                retry_after_s: 1,
            },
            Err(_) if ticket.deadline.is_some_and(|d| d <= limit) => Shed::Expired,
            Err(_) if self.capacity(ticket.model, ticket.profile) == 0 => {
                let workers = self.workers_of(ticket.model, ticket.profile).len();
                if workers == 0 {
                    // The model itself is gone (its registered workers
                    // left): routing answers NOT_FOUND.
                    drop(guard);
                    return Ok(Slot::uncounted());
                }
                Shed::Down {
                    model: ticket.model.to_string(),
                    workers,
                    waited_ms: ms(now.elapsed()),
                }
            }
            Err(_) => Shed::Waited {
                model: ticket.model.to_string(),
                waited_ms: ms(now.elapsed()),
                retry_after_s: self.retry_after(&queue.lock(), Instant::now()),
            },
        };
        drop(guard);
        if !matches!(shed, Shed::Evicted { .. }) {
            self.count_shed(ticket.model, ticket.priority, &shed);
        }
        Err(shed)
    }

    /// Whether the model, with no healthy worker now, had one within the
    /// queue's wait limit and still has workers: one being restarted, worth
    /// waiting for. A model never served, down for longer, or gone (its
    /// registered workers left) is answered at once.
    fn restarting(&self, model: &str, profile: &str, now: Instant) -> bool {
        if self.workers_of(model, profile).is_empty() {
            return false;
        }
        let queue = {
            let queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
            queues
                .get(&(model.to_string(), profile.to_string()))
                .cloned()
        };
        queue.is_some_and(|q| {
            q.lock()
                .served_at
                .is_some_and(|t| now.duration_since(t) < self.limits.max_wait)
        })
    }

    /// A waiting request refused before it queues: it would wait past the
    /// queue's limit, or could not finish before its deadline.
    fn refuse_early(
        &self,
        state: &QueueState,
        ticket: Ticket<'_>,
        now: Instant,
    ) -> Result<(), Shed> {
        let Some(rate) = state.drain_rate(now) else {
            // Nothing measured yet: only the bounds apply.
            return Ok(());
        };
        let ahead = state.waiting.ahead_of(ticket.priority, ticket.tenant) + 1;
        let wait = Duration::from_secs_f64((ahead as f64 / rate).min(86_400.0));
        let retry_after_s = wait.as_secs().max(1);
        if wait > self.limits.max_wait {
            return Err(Shed::TooLong {
                model: ticket.model.to_string(),
                wait_ms: ms(wait),
                limit_ms: ms(self.limits.max_wait),
                retry_after_s,
            });
        }
        if let Some(deadline) = ticket.deadline {
            let left = deadline.saturating_duration_since(now);
            let service = state
                .seconds_per_token
                .map(|s| Duration::from_secs_f64((s * ticket.cost as f64).min(86_400.0)))
                .unwrap_or_default();
            if wait + service > left {
                return Err(Shed::Deadline {
                    model: ticket.model.to_string(),
                    wait_ms: ms(wait),
                    service_ms: ms(service),
                    left_ms: ms(left),
                    retry_after_s,
                });
            }
        }
        Ok(())
    }

    /// When the queue, as it is, would have drained.
    fn retry_after(&self, state: &QueueState, now: Instant) -> u64 {
        state
            .drain_rate(now)
            .map(|rate| ((state.waiting.len() as f64 + 1.0) / rate).ceil() as u64)
            .unwrap_or(1)
            .clamp(1, self.limits.max_wait.as_secs().max(1))
    }

    fn slot(self: &Arc<Self>, queue: &Arc<ModelQueue>, tenant: &str, cost: u64) -> Slot {
        Slot {
            held: Some((self.clone(), queue.clone(), tenant.to_string())),
            since: Instant::now(),
            cost,
        }
    }

    /// A slot given back (with how long it was held, for what cost): the
    /// next waiting requests start.
    fn release(&self, queue: &Arc<ModelQueue>, tenant: &str, held: Option<(Duration, u64)>) {
        {
            let mut state = queue.lock();
            state.ended(tenant);
            if let Some((held, cost)) = held {
                let now = Instant::now();
                state.released.push_back(now);
                while state.released.len() > RATE_WINDOW {
                    state.released.pop_front();
                }
                if cost > 0 {
                    let sample = held.as_secs_f64() / cost as f64;
                    state.seconds_per_token = Some(match state.seconds_per_token {
                        Some(avg) => 0.9 * avg + 0.1 * sample,
                        None => sample,
                    });
                }
            }
        }
        self.pump(queue);
    }

    /// Starts waiting requests while the model's workers have room; those
    /// whose deadline has passed are told so and skipped.
    fn pump(&self, queue: &Arc<ModelQueue>) {
        let capacity = self.capacity(&queue.model, &queue.profile);
        let mut state = queue.lock();
        if capacity > 0 {
            state.served_at = Some(Instant::now());
        }
        for expired in state.waiting.expired(Instant::now()) {
            let _ = expired.grant.send(Err(Shed::Expired));
        }
        let keep_room = self.limits.keep_room;
        while state.running < capacity {
            let QueueState {
                waiting,
                running_by,
                ..
            } = &mut *state;
            let share = tenant_share(capacity, keep_room);
            let Some(waiter) = waiting.pop_eligible(|t| {
                let held = running_by.get(t).copied().unwrap_or(0);
                held == 0 || held < share
            }) else {
                break;
            };
            if waiter.grant.send(Ok(())).is_ok() {
                state.started(&waiter.tenant);
            }
        }
        self.publish_depth(queue, &state);
    }

    /// Starts waiting requests of every model: called when workers' health
    /// changes, so a worker that comes back takes its share at once.
    pub fn pump_all(&self) {
        let queues: Vec<Arc<ModelQueue>> = self
            .queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for queue in queues {
            self.pump(&queue);
        }
    }

    /// The depth gauges follow the queue of requests that name no profile
    /// (those that do are not in them).
    fn publish_depth(&self, queue: &ModelQueue, state: &QueueState) {
        if queue.profile.is_empty() {
            self.depth_gauges(&queue.model, state);
        }
    }

    fn depth_gauges(&self, model: &str, state: &QueueState) {
        for priority in CLASSES {
            self.metrics
                .gauge_with(
                    ADMISSION_QUEUE_DEPTH,
                    &[("model", model), ("priority", priority_label(priority))],
                )
                .set(state.waiting.len_of(priority) as f64);
        }
    }

    fn count_shed(&self, model: &str, priority: Priority, shed: &Shed) {
        self.shed_counter(model, priority, shed.reason())
            .increment(1);
    }

    fn shed_counter(
        &self,
        model: &str,
        priority: Priority,
        reason: &'static str,
    ) -> metrics::Counter {
        self.metrics.counter_with(
            ADMISSION_SHED,
            &[
                ("model", model),
                ("priority", priority_label(priority)),
                ("reason", reason),
            ],
        )
    }
}

/// Keeps waiting requests moving when workers' health changes (a worker
/// that comes back, or registers): every `interval`.
pub async fn pump_loop(admission: Arc<Admission>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        admission.pump_all();
    }
}

#[cfg(test)]
mod tests;
