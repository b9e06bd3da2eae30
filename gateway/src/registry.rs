//! The workers the gateway knows, by model name, with what each reported
//! about itself (kind, context, slice) and whether it is healthy.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use mig_proto::inference::v1::{ModelKind, WorkerOrigin};
use mig_proto::worker::v1::worker_client;
use mig_proto::worker::v1::{InfoRequest, WorkerInfo};
use mig_serve::secret::{Secret, SendBearer};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::metrics::{GatewayMetrics, SliceSeries};
pub use crate::worker_connections::WorkerClient;
use crate::worker_connections::{ConnectError, Connections, Lease};

/// The probe's client: a connection of its own, carrying the worker's
/// caller token.
type ProbeClient = worker_client::WorkerClient<InterceptedService<Channel, SendBearer>>;

/// Requests an embedding worker takes at once (its engine embeds one call
/// at a time; the second waits ready in its queue).
const EMBED_CAPACITY: u32 = 2;

/// How long a health probe may take before the worker counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One worker process, seen from the gateway.
///
/// Lock order: `state` may be held while `conn` is read (for logging), never
/// the reverse.
#[derive(Debug)]
pub struct WorkerHandle {
    /// The model name the fleet file (or the worker's registration) routes to
    /// this worker.
    pub model: String,
    /// Who started the worker, which decides who may remove it: registered
    /// workers leave when their heartbeats stop, the others never do.
    pub origin: WorkerOrigin,
    /// Where it listens. A restarted worker comes back on a new port, so the
    /// supervisor swaps this in place and routing keeps the same handle.
    conn: RwLock<Conn>,
    /// What the worker last reported, and whether its last probe succeeded.
    state: RwLock<WorkerState>,
    /// Requests the gateway has sent to this worker and not yet finished: the
    /// balancing signal.
    in_flight: AtomicU32,
    /// Tokens (prompt estimates plus what may be generated) of those
    /// requests: the load-aware choice among replicas.
    outstanding_tokens: AtomicU64,
    /// Times the supervisor restarted the process.
    restarts: AtomicU32,
    /// Taken off routing for good (its slice is being re-partitioned):
    /// never healthy again, whatever a probe says, while its running calls
    /// finish and the model's requests wait for its replacement.
    retired: AtomicBool,
}

#[derive(Debug, Clone)]
struct Conn {
    address: String,
    /// One HTTP/2 connection per running call, so a connection the worker
    /// resets cuts only the call on it.
    calls: Arc<Connections>,
    /// Health probes have a connection of their own: a crowd of streams
    /// on the others cannot starve them.
    probe: ProbeClient,
    /// Bumped by every reconnect, so that a probe sent to the previous
    /// process cannot decide the health of the new one.
    generation: u64,
}

#[derive(Debug, Clone)]
struct WorkerState {
    info: Option<WorkerInfo>,
    /// The slice's metric series as labelled by `info` (and the address),
    /// registered at the first request after either changed.
    series: Option<Arc<SliceSeries>>,
    healthy: bool,
    /// The last heartbeat of a registered worker (its registration time
    /// before the first).
    last_heartbeat: Instant,
}

fn connect(address: &str, token: Option<Secret>) -> Result<Conn, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(address.to_string())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2));
    // A valid endpoint is a valid URI.
    let calls = Connections::new(address, token.clone()).expect("checked by the endpoint");
    Ok(Conn {
        address: address.to_string(),
        calls,
        probe: worker_client::WorkerClient::with_interceptor(
            endpoint.connect_lazy(),
            SendBearer(token),
        ),
        generation: 0,
    })
}

impl WorkerHandle {
    /// A handle that connects lazily: an unreachable worker is unhealthy, not
    /// an error.
    pub fn new(
        model: String,
        address: String,
        origin: WorkerOrigin,
    ) -> Result<Self, tonic::transport::Error> {
        Self::with_token(model, address, origin, None)
    }

    /// A handle whose calls carry the worker's caller token (a worker this
    /// gateway started accepts no other caller).
    pub fn with_token(
        model: String,
        address: String,
        origin: WorkerOrigin,
        token: Option<Secret>,
    ) -> Result<Self, tonic::transport::Error> {
        Ok(WorkerHandle {
            model,
            origin,
            conn: RwLock::new(connect(&address, token)?),
            state: RwLock::new(WorkerState {
                info: None,
                series: None,
                healthy: false,
                last_heartbeat: Instant::now(),
            }),
            in_flight: AtomicU32::new(0),
            outstanding_tokens: AtomicU64::new(0),
            restarts: AtomicU32::new(0),
            retired: AtomicBool::new(false),
        })
    }

    /// A client for one call, on a connection of its own until the lease
    /// drops.
    pub async fn lease(&self) -> Result<(WorkerClient, Lease), ConnectError> {
        let calls = self
            .conn
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .calls
            .clone();
        calls.lease().await
    }

    pub fn address(&self) -> String {
        self.conn
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .address
            .clone()
    }

    /// Points the handle at a restarted worker's new address and caller
    /// token; it stays unhealthy until the next probe answers.
    pub fn reconnect(
        &self,
        address: &str,
        token: Option<Secret>,
    ) -> Result<(), tonic::transport::Error> {
        let mut conn = connect(address, token)?;
        let mut current = self.conn.write().unwrap_or_else(|e| e.into_inner());
        conn.generation = current.generation + 1;
        *current = conn;
        drop(current);
        // A worker that has not answered yet is labelled by its address.
        self.write().series = None;
        self.restarts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Records a heartbeat: the worker is alive and reported `info`. Health
    /// is left to probes: a heartbeat proves the worker reaches the gateway,
    /// not that the gateway reaches the worker.
    pub fn heartbeat(&self, info: WorkerInfo) {
        let mut state = self.write();
        if info.model == self.model {
            state.set_info(info);
        }
        state.last_heartbeat = Instant::now();
    }

    /// Time since the last heartbeat.
    pub fn silence(&self) -> Duration {
        self.read().last_heartbeat.elapsed()
    }

    pub fn info(&self) -> Option<WorkerInfo> {
        self.read().info.clone()
    }

    /// The context length the worker reported; `None` before it answered.
    pub fn context_length(&self) -> Option<u32> {
        self.read().info.as_ref().map(|i| i.context_length)
    }

    /// The metric series of the worker's slice, registered once for as
    /// long as its labels stay the same.
    pub(crate) fn slice_series(&self, metrics: &GatewayMetrics) -> Arc<SliceSeries> {
        if let Some(series) = &self.read().series {
            return series.clone();
        }
        let series = Arc::new(metrics.slice_series(self));
        self.write().series = Some(series.clone());
        series
    }

    /// The profile of the worker's slice, once it has reported one.
    pub fn profile(&self) -> Option<String> {
        self.read().info.as_ref().map(|i| i.profile.clone())
    }

    pub fn is_healthy(&self) -> bool {
        !self.retired.load(Ordering::Relaxed) && self.read().healthy
    }

    /// Takes the worker off routing for good; its running calls go on.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn outstanding_tokens(&self) -> u64 {
        self.outstanding_tokens.load(Ordering::Relaxed)
    }

    /// Requests the worker runs at once: its `max_batch_size` for a
    /// generation model (what `Info` reported), 2 for an embedding model
    /// (one computing, the next ready), 1 before it answered.
    pub fn capacity(&self) -> u32 {
        let state = self.read();
        match &state.info {
            Some(info) => match &info.batching {
                Some(b) if b.max_batch_size > 0 => b.max_batch_size,
                _ => EMBED_CAPACITY,
            },
            None => 1,
        }
    }

    /// The id used in logs: the worker's own, or its address before it answered.
    pub fn id(&self) -> String {
        self.info()
            .map(|i| i.worker_id)
            .unwrap_or_else(|| self.address())
    }

    /// Counts a request of `tokens` against this worker until the guard drops.
    pub fn begin(self: &Arc<Self>, tokens: u64) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.outstanding_tokens.fetch_add(tokens, Ordering::Relaxed);
        InFlight(self.clone(), tokens)
    }

    /// Asks the worker for its `Info`; healthy if it answers in time.
    pub async fn probe(&self) -> bool {
        let (mut client, generation) = {
            let conn = self.conn.read().unwrap_or_else(|e| e.into_inner());
            (conn.probe.clone(), conn.generation)
        };
        let mut request = tonic::Request::new(InfoRequest {});
        request.set_timeout(PROBE_TIMEOUT);
        let answer = tokio::time::timeout(PROBE_TIMEOUT, client.info(request)).await;
        let info = match answer {
            Ok(Ok(info)) => Some(info.into_inner()),
            Ok(Err(status)) => {
                tracing::debug!(address = %self.address(), %status, "worker probe failed");
                None
            }
            Err(_) => None,
        };
        if self
            .conn
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .generation
            != generation
        {
            // The process was replaced while the probe was out.
            return self.is_healthy();
        }
        self.record_probe(info)
    }

    /// Records a probe's outcome: an answer for this handle's model makes the
    /// worker healthy and refreshes what it reported; no answer, or one from
    /// a different model (another worker took over the port), makes it
    /// unhealthy.
    pub(crate) fn record_probe(&self, info: Option<WorkerInfo>) -> bool {
        let info = match info {
            Some(i) if i.model != self.model => {
                tracing::warn!(model = %self.model, address = %self.address(), answered = %i.model,
                    "a worker of another model answers at this address");
                None
            }
            other => other,
        };
        let healthy = info.is_some();
        let mut state = self.write();
        if state.healthy != healthy {
            tracing::info!(model = %self.model, address = %self.address(), healthy, "worker health changed");
        }
        if let Some(info) = info {
            state.set_info(info);
        }
        state.healthy = healthy;
        healthy
    }

    /// Marks the worker down after a failed call, until the next probe.
    pub fn mark_unhealthy(&self) {
        let mut state = self.write();
        if state.healthy {
            tracing::warn!(model = %self.model, address = %self.address(), "worker unreachable; marked unhealthy");
        }
        state.healthy = false;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, WorkerState> {
        // A poisoned lock only means a panic elsewhere while holding it; the
        // state itself (plain fields) is still consistent.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, WorkerState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl WorkerState {
    /// What the worker reported; its series are labelled anew when the
    /// labels they take from it changed.
    fn set_info(&mut self, info: WorkerInfo) {
        let relabelled = self.info.as_ref().is_none_or(|old| {
            old.slice != info.slice
                || old.profile != info.profile
                || old.gpu != info.gpu
                || old.gpu_instance_id != info.gpu_instance_id
                || old.hostname != info.hostname
        });
        if relabelled {
            self.series = None;
        }
        self.info = Some(info);
    }
}

/// Decrements the worker's in-flight count when the request ends, however it ends.
#[derive(Debug)]
pub struct InFlight(Arc<WorkerHandle>, u64);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0
            .outstanding_tokens
            .fetch_sub(self.1, Ordering::Relaxed);
    }
}

/// Model name to its workers.
#[derive(Debug, Default)]
pub struct Registry {
    models: RwLock<BTreeMap<String, Vec<Arc<WorkerHandle>>>>,
}

impl Registry {
    pub fn add(&self, worker: Arc<WorkerHandle>) {
        self.models
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(worker.model.clone())
            .or_default()
            .push(worker);
    }

    /// Removes one worker (by identity); a model left with no worker is
    /// forgotten, so it answers NOT_FOUND like any unknown model.
    pub fn remove(&self, worker: &Arc<WorkerHandle>) -> bool {
        let mut models = self.models.write().unwrap_or_else(|e| e.into_inner());
        remove_locked(&mut models, worker)
    }

    /// The registered worker at `address`, if any.
    pub fn registered_at(&self, address: &str) -> Option<Arc<WorkerHandle>> {
        self.all()
            .into_iter()
            .find(|w| w.origin == WorkerOrigin::Registered && w.address() == address)
    }

    /// Under one lock: refreshes the registered worker at `address` serving
    /// `info.model`, or replaces whatever was registered there with `fresh()`.
    /// Returns the handle and whether it is new.
    pub fn upsert_registered(
        &self,
        address: &str,
        info: WorkerInfo,
        fresh: impl FnOnce() -> Result<WorkerHandle, tonic::Status>,
    ) -> Result<(Arc<WorkerHandle>, bool), tonic::Status> {
        let mut models = self.models.write().unwrap_or_else(|e| e.into_inner());
        let known = models
            .values()
            .flatten()
            .find(|w| w.origin == WorkerOrigin::Registered && w.address() == address)
            .cloned();
        if let Some(known) = known {
            if known.model == info.model {
                known.heartbeat(info);
                return Ok((known, false));
            }
            tracing::info!(%address, old = %known.model, new = %info.model, "registered worker changed model");
            remove_locked(&mut models, &known);
        }
        let handle = Arc::new(fresh()?);
        handle.heartbeat(info);
        models
            .entry(handle.model.clone())
            .or_default()
            .push(handle.clone());
        Ok((handle, true))
    }

    /// Under one lock: drops registered workers silent for longer than
    /// `timeout`; returns them.
    pub fn remove_silent(&self, timeout: Duration) -> Vec<Arc<WorkerHandle>> {
        let mut models = self.models.write().unwrap_or_else(|e| e.into_inner());
        let silent: Vec<Arc<WorkerHandle>> = models
            .values()
            .flatten()
            .filter(|w| w.origin == WorkerOrigin::Registered && w.silence() > timeout)
            .cloned()
            .collect();
        for w in &silent {
            remove_locked(&mut models, w);
        }
        silent
    }

    /// Every model name, sorted.
    pub fn model_names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// The workers of a model; `None` if the model is unknown.
    pub fn workers(&self, model: &str) -> Option<Vec<Arc<WorkerHandle>>> {
        self.read().get(model).cloned()
    }

    pub fn all(&self) -> Vec<Arc<WorkerHandle>> {
        self.read().values().flatten().cloned().collect()
    }

    /// The model's kind, as its workers reported it.
    pub fn kind(&self, model: &str) -> ModelKind {
        self.workers(model)
            .into_iter()
            .flatten()
            .find_map(|w| w.info())
            .map(|i| i.kind())
            .unwrap_or(ModelKind::Unspecified)
    }

    /// Probes every worker once, concurrently.
    pub async fn probe_all(&self) {
        let workers = self.all();
        let probes = workers.iter().map(|w| w.probe());
        futures::future::join_all(probes).await;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Vec<Arc<WorkerHandle>>>> {
        self.models.read().unwrap_or_else(|e| e.into_inner())
    }
}

fn remove_locked(
    models: &mut BTreeMap<String, Vec<Arc<WorkerHandle>>>,
    worker: &Arc<WorkerHandle>,
) -> bool {
    let Some(workers) = models.get_mut(&worker.model) else {
        return false;
    };
    let before = workers.len();
    workers.retain(|w| !Arc::ptr_eq(w, worker));
    let removed = workers.len() != before;
    if workers.is_empty() {
        models.remove(&worker.model);
    }
    removed
}

/// Probes every worker every `interval` until the task is dropped. The first
/// probe comes one interval from now: start-up has just probed them all.
pub async fn health_loop(registry: Arc<Registry>, interval: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        registry.probe_all().await;
    }
}
