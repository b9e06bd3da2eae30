//! The workers the gateway knows, by model name, with what each reported
//! about itself (kind, context, slice) and whether it is healthy.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use mig_proto::inference::v1::ModelKind;
use mig_proto::worker::v1::worker_client::WorkerClient;
use mig_proto::worker::v1::{InfoRequest, WorkerInfo};
use tonic::transport::{Channel, Endpoint};

/// How long a health probe may take before the worker counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One worker process, seen from the gateway.
#[derive(Debug)]
pub struct WorkerHandle {
    /// The model name the fleet file routes to this worker.
    pub model: String,
    pub address: String,
    client: WorkerClient<Channel>,
    /// What the worker last reported, and whether its last probe succeeded.
    state: RwLock<WorkerState>,
    /// Requests the gateway has sent to this worker and not yet finished: the
    /// balancing signal.
    in_flight: AtomicU32,
}

#[derive(Debug, Default, Clone)]
struct WorkerState {
    info: Option<WorkerInfo>,
    healthy: bool,
}

impl WorkerHandle {
    /// A handle that connects lazily: an unreachable worker is unhealthy, not
    /// an error.
    pub fn new(model: String, address: String) -> Result<Self, tonic::transport::Error> {
        let channel = Endpoint::from_shared(address.clone())?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy();
        Ok(WorkerHandle {
            model,
            address,
            client: WorkerClient::new(channel),
            state: RwLock::new(WorkerState::default()),
            in_flight: AtomicU32::new(0),
        })
    }

    pub fn client(&self) -> WorkerClient<Channel> {
        self.client.clone()
    }

    pub fn info(&self) -> Option<WorkerInfo> {
        self.read().info.clone()
    }

    pub fn is_healthy(&self) -> bool {
        self.read().healthy
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The id used in logs: the worker's own, or its address before it answered.
    pub fn id(&self) -> String {
        self.info()
            .map(|i| i.worker_id)
            .unwrap_or_else(|| self.address.clone())
    }

    /// Counts a request against this worker until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Asks the worker for its `Info`; healthy if it answers in time.
    pub async fn probe(&self) -> bool {
        let mut client = self.client();
        let mut request = tonic::Request::new(InfoRequest {});
        request.set_timeout(PROBE_TIMEOUT);
        let answer = tokio::time::timeout(PROBE_TIMEOUT, client.info(request)).await;
        let info = match answer {
            Ok(Ok(info)) => Some(info.into_inner()),
            Ok(Err(status)) => {
                tracing::debug!(address = %self.address, %status, "worker probe failed");
                None
            }
            Err(_) => None,
        };
        self.record_probe(info)
    }

    /// Records a probe's outcome: an answer makes the worker healthy and
    /// refreshes what it reported; no answer makes it unhealthy.
    pub(crate) fn record_probe(&self, info: Option<WorkerInfo>) -> bool {
        let healthy = info.is_some();
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.healthy != healthy {
            tracing::info!(model = %self.model, address = %self.address, healthy, "worker health changed");
        }
        if info.is_some() {
            state.info = info;
        }
        state.healthy = healthy;
        healthy
    }

    /// Marks the worker down after a failed call, until the next probe.
    pub fn mark_unhealthy(&self) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.healthy {
            tracing::warn!(model = %self.model, address = %self.address, "worker unreachable; marked unhealthy");
        }
        state.healthy = false;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, WorkerState> {
        // A poisoned lock only means a panic elsewhere while holding it; the
        // state itself (two plain fields) is still consistent.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Decrements the worker's in-flight count when the request ends, however it ends.
#[derive(Debug)]
pub struct InFlight(Arc<WorkerHandle>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
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
