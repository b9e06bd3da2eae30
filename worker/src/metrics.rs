//! Every metric the worker exports, described in one place with its
//! histogram buckets, and the handles the engine and service update.
//!
//! Each worker owns its own Prometheus recorder (no process-global one), so
//! workers and a gateway started in one test process each expose exactly
//! their own series. All series carry the slice's identity: `model`, `slice`,
//! `profile`, `gpu` (empty on CPU slices) and dcgm-exporter's labels for
//! the same instance, `UUID`, `GPU_I_ID`, `GPU_I_PROFILE`, `Hostname`
//! (`mig_slices::dcgm`; empty on CPU slices): low cardinality, one value per
//! worker. Tokens are counted as each one is produced, so
//! `rate(mig_worker_generated_tokens_total[1m])` is the slice's throughput.

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Key, Label, Recorder, Unit};
use metrics_exporter_prometheus::{PrometheusHandle, PrometheusRecorder};
use mig_serve::recorder::{self, LATENCY_BUCKETS, METADATA, TOKEN_BUCKETS};

use mig_slices::discovery::MemoryProbe;

use crate::identity::Identity;

pub const GENERATED_TOKENS: &str = "mig_worker_generated_tokens_total";
pub const PROMPT_TOKENS: &str = "mig_worker_prompt_tokens_total";
pub const REQUESTS: &str = "mig_worker_requests_total";
pub const TIME_TO_FIRST_TOKEN: &str = "mig_worker_time_to_first_token_seconds";
pub const INTER_TOKEN_LATENCY: &str = "mig_worker_inter_token_latency_seconds";
pub const REQUEST_DURATION: &str = "mig_worker_request_duration_seconds";
pub const QUEUE_WAIT: &str = "mig_worker_queue_wait_seconds";
pub const REQUESTS_IN_FLIGHT: &str = "mig_worker_requests_in_flight";
pub const QUEUE_DEPTH: &str = "mig_worker_queue_depth";
pub const QUEUE_CAPACITY: &str = "mig_worker_queue_capacity";
pub const BATCH_SIZE: &str = "mig_worker_batch_size";
pub const STEP_DURATION: &str = "mig_worker_step_duration_seconds";
pub const MEMORY_USED: &str = "mig_worker_memory_used_bytes";
pub const MEMORY_TOTAL: &str = "mig_worker_memory_total_bytes";
pub const BUILD_INFO: &str = "mig_worker_build_info";

/// Every metric this module exports (histograms add `_bucket`, `_sum` and
/// `_count` series). Dashboards and rules may use only these.
pub const NAMES: &[&str] = &[
    GENERATED_TOKENS,
    PROMPT_TOKENS,
    REQUESTS,
    TIME_TO_FIRST_TOKEN,
    INTER_TOKEN_LATENCY,
    REQUEST_DURATION,
    QUEUE_WAIT,
    REQUESTS_IN_FLIGHT,
    QUEUE_DEPTH,
    QUEUE_CAPACITY,
    BATCH_SIZE,
    STEP_DURATION,
    MEMORY_USED,
    MEMORY_TOTAL,
    BUILD_INFO,
];

/// Waiting for the engine: zero when idle, seconds under overload.
const QUEUE_BUCKETS: &[f64] = &[0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0];
/// Sequences per engine step.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// The metrics of one worker.
pub struct WorkerMetrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// `model`, `slice`, `profile`, `gpu`: on every series.
    labels: Vec<Label>,
    pub generated_tokens: Counter,
    pub prompt_tokens: Counter,
    pub time_to_first_token: Histogram,
    pub inter_token_latency: Histogram,
    pub request_duration: Histogram,
    pub queue_wait: Histogram,
    pub requests_in_flight: Gauge,
    pub queue_depth: Gauge,
    pub batch_size: Histogram,
    pub prefill_step: Histogram,
    pub decode_step: Histogram,
    memory_used: Gauge,
    /// NVML and the slice's UUID, for a GPU slice on a machine with the
    /// driver; otherwise the process's RSS is reported.
    memory_probe: Option<(MemoryProbe, String)>,
}

/// Registers series with the slice's labels (plus any extra ones).
struct Registrar<'a> {
    recorder: &'a PrometheusRecorder,
    labels: &'a [Label],
}

impl Registrar<'_> {
    fn key(&self, name: &'static str, extra: &[(&'static str, String)]) -> Key {
        let mut labels = self.labels.to_vec();
        labels.extend(extra.iter().map(|(k, v)| Label::new(*k, v.clone())));
        Key::from_parts(name, labels)
    }
    fn counter(&self, name: &'static str) -> Counter {
        self.recorder
            .register_counter(&self.key(name, &[]), &METADATA)
    }
    fn gauge(&self, name: &'static str, extra: &[(&'static str, String)]) -> Gauge {
        self.recorder
            .register_gauge(&self.key(name, extra), &METADATA)
    }
    fn histogram(&self, name: &'static str, extra: &[(&'static str, String)]) -> Histogram {
        self.recorder
            .register_histogram(&self.key(name, extra), &METADATA)
    }
}

impl WorkerMetrics {
    /// `queue_capacity` is `--max-waiting`, exported so alerts can use a ratio.
    pub fn new(identity: &Identity, queue_capacity: usize) -> Arc<WorkerMetrics> {
        let recorder = recorder::recorder(&[
            (TIME_TO_FIRST_TOKEN, LATENCY_BUCKETS),
            (REQUEST_DURATION, LATENCY_BUCKETS),
            (INTER_TOKEN_LATENCY, TOKEN_BUCKETS),
            (STEP_DURATION, TOKEN_BUCKETS),
            (QUEUE_WAIT, QUEUE_BUCKETS),
            (BATCH_SIZE, BATCH_BUCKETS),
        ]);
        describe(&recorder);
        let mut labels = vec![
            Label::new("model", identity.model.clone()),
            Label::new("slice", identity.slice.clone()),
            Label::new("profile", identity.profile.clone()),
            Label::new("gpu", identity.gpu.clone()),
        ];
        // dcgm-exporter's labels for the same instance, so the slice's memory
        // and tokens join DCGM's series; empty on a CPU slice.
        let dcgm = mig_slices::dcgm::label_values(
            &identity.gpu,
            &identity.gpu_instance_id,
            &identity.profile,
            &identity.hostname,
            String::new,
        );
        labels.extend(
            mig_slices::dcgm::LABELS
                .iter()
                .zip(dcgm)
                .map(|(key, value)| Label::new(*key, value)),
        );
        let r = Registrar {
            recorder: &recorder,
            labels: &labels,
        };
        r.gauge(MEMORY_TOTAL, &[]).set(identity.memory_bytes as f64);
        r.gauge(QUEUE_CAPACITY, &[]).set(queue_capacity as f64);
        r.gauge(
            BUILD_INFO,
            &[
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("device", identity.device.clone()),
            ],
        )
        .set(1.0);
        let phase = |p: &str| [("phase", p.to_string())];
        let m = WorkerMetrics {
            generated_tokens: r.counter(GENERATED_TOKENS),
            prompt_tokens: r.counter(PROMPT_TOKENS),
            time_to_first_token: r.histogram(TIME_TO_FIRST_TOKEN, &[]),
            inter_token_latency: r.histogram(INTER_TOKEN_LATENCY, &[]),
            request_duration: r.histogram(REQUEST_DURATION, &[]),
            queue_wait: r.histogram(QUEUE_WAIT, &[]),
            requests_in_flight: r.gauge(REQUESTS_IN_FLIGHT, &[]),
            queue_depth: r.gauge(QUEUE_DEPTH, &[]),
            batch_size: r.histogram(BATCH_SIZE, &[]),
            prefill_step: r.histogram(STEP_DURATION, &phase("prefill")),
            decode_step: r.histogram(STEP_DURATION, &phase("decode")),
            memory_used: r.gauge(MEMORY_USED, &[]),
            memory_probe: gpu_memory_probe(&identity.slice),
            handle: recorder.handle(),
            recorder,
            labels,
        };
        Arc::new(m)
    }

    /// Starts counting one request: it ends in `mig_worker_requests_total`
    /// exactly once, with the code given to [`RequestOutcome::finish`], or
    /// `CANCELLED` if dropped unfinished (the client went away).
    pub fn begin(self: &Arc<Self>) -> RequestOutcome {
        RequestOutcome {
            metrics: self.clone(),
            finished: false,
        }
    }

    fn request_finished(&self, code: tonic::Code) {
        let r = Registrar {
            recorder: &self.recorder,
            labels: &self.labels,
        };
        let key = r.key(
            REQUESTS,
            &[("code", mig_serve::status::code_name(code).to_string())],
        );
        self.recorder.register_counter(&key, &METADATA).increment(1);
    }

    /// The text exposition, with the memory gauge read now.
    pub fn render(&self) -> String {
        let used = match &self.memory_probe {
            Some((probe, uuid)) => probe.used_bytes(uuid),
            None => resident_bytes(),
        };
        if let Some(used) = used {
            self.memory_used.set(used as f64);
        }
        self.handle.render()
    }

    /// The recorder's handle, for [`mig_serve::recorder::upkeep_loop`].
    pub fn handle(&self) -> PrometheusHandle {
        self.handle.clone()
    }
}

/// One request's terminal status, counted once (see [`WorkerMetrics::begin`]).
pub struct RequestOutcome {
    metrics: Arc<WorkerMetrics>,
    finished: bool,
}

impl RequestOutcome {
    pub fn finish(mut self, code: tonic::Code) {
        self.finished = true;
        self.metrics.request_finished(code);
    }
}

impl Drop for RequestOutcome {
    fn drop(&mut self) {
        if !self.finished {
            self.metrics.request_finished(tonic::Code::Cancelled);
        }
    }
}

/// Every description, in one place.
fn describe(r: &PrometheusRecorder) {
    let d = |name: &'static str, unit: Option<Unit>, text: &'static str| {
        r.describe_counter(name.into(), unit, text.into());
    };
    d(
        GENERATED_TOKENS,
        Some(Unit::Count),
        "Tokens generated, counted as each is produced.",
    );
    d(
        PROMPT_TOKENS,
        Some(Unit::Count),
        "Prompt tokens of requests that reached the engine.",
    );
    d(
        REQUESTS,
        Some(Unit::Count),
        "Requests by final gRPC status code.",
    );
    let h = |name: &'static str, unit: Unit, text: &'static str| {
        r.describe_histogram(name.into(), Some(unit), text.into());
    };
    h(
        TIME_TO_FIRST_TOKEN,
        Unit::Seconds,
        "From arrival to the first generated token.",
    );
    h(
        INTER_TOKEN_LATENCY,
        Unit::Seconds,
        "Between consecutive generated tokens.",
    );
    h(
        REQUEST_DURATION,
        Unit::Seconds,
        "From arrival to the terminal status.",
    );
    h(
        QUEUE_WAIT,
        Unit::Seconds,
        "From arrival until the engine starts the request.",
    );
    h(BATCH_SIZE, Unit::Count, "Sequences per engine step.");
    h(
        STEP_DURATION,
        Unit::Seconds,
        "One engine step, by phase (prefill or decode).",
    );
    let g = |name: &'static str, unit: Unit, text: &'static str| {
        r.describe_gauge(name.into(), Some(unit), text.into());
    };
    g(
        REQUESTS_IN_FLIGHT,
        Unit::Count,
        "Requests queued or running in the engine.",
    );
    g(QUEUE_DEPTH, Unit::Count, "Requests waiting for the engine.");
    g(
        QUEUE_CAPACITY,
        Unit::Count,
        "Requests that may wait for the running batch (--max-waiting); more are refused with RESOURCE_EXHAUSTED.",
    );
    g(
        MEMORY_USED,
        Unit::Bytes,
        "Memory used: process RSS on a CPU slice.",
    );
    g(
        MEMORY_TOTAL,
        Unit::Bytes,
        "Memory of the slice (the host's for a CPU slice).",
    );
    g(
        BUILD_INFO,
        Unit::Count,
        "Always 1; the labels say the version and device.",
    );
}

/// NVML for a GPU slice (`MIG-…`/`GPU-…`), when the driver is there.
fn gpu_memory_probe(slice: &str) -> Option<(MemoryProbe, String)> {
    if !(slice.starts_with("MIG-") || slice.starts_with("GPU-")) {
        return None;
    }
    match MemoryProbe::open() {
        Ok(probe) => Some((probe, slice.to_string())),
        Err(e) => {
            tracing::warn!(%slice, error = %e, "no NVML: slice memory in use reported as process RSS");
            None
        }
    }
}

/// Resident set size of this process (`VmRSS` of `/proc/self/status`).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}
