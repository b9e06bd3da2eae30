//! Every metric the gateway exports, described in one place with its
//! histogram buckets, and the exposition (the request path's tracker,
//! `request::tracking`, updates the per-request series).
//!
//! The gateway counts every token it relays per slice, so one scrape of the
//! gateway gives every slice's throughput even when workers are not scraped:
//! `rate(mig_gateway_generated_tokens_total[1m])` by `slice` or `profile`.
//! Labels are low cardinality: `model`, `slice`, `profile`, `gpu` (and on
//! per-slice series dcgm-exporter's `UUID`, `GPU_I_ID`, `GPU_I_PROFILE`,
//! `Hostname`, one value per slice), the
//! final gRPC `code` on the request counters, and `tenant`, which takes only
//! names from the tenants file (`_unknown` for a missing or unknown key,
//! `_open` without a tenants file); never a request id, a key or a prompt.

use std::sync::Arc;

use metrics::{Key, Label, Recorder, Unit};
use metrics_exporter_prometheus::{PrometheusHandle, PrometheusRecorder};
use mig_serve::recorder::{self, LATENCY_BUCKETS, METADATA, TOKEN_BUCKETS};
use mig_slices::compute_units;

use mig_proto::worker::v1::WorkerInfo;

use crate::metric_handles::Handles;
use crate::registry::{Registry, WorkerHandle};

pub const GENERATED_TOKENS: &str = "mig_gateway_generated_tokens_total";
pub const PROMPT_TOKENS: &str = "mig_gateway_prompt_tokens_total";
pub const REQUESTS: &str = "mig_gateway_requests_total";
pub const TIME_TO_FIRST_TOKEN: &str = "mig_gateway_time_to_first_token_seconds";
pub const INTER_TOKEN_LATENCY: &str = "mig_gateway_inter_token_latency_seconds";
pub const REQUEST_DURATION: &str = "mig_gateway_request_duration_seconds";
pub const QUEUE_WAIT: &str = "mig_gateway_queue_wait_seconds";
pub const REQUESTS_IN_FLIGHT: &str = "mig_gateway_requests_in_flight";
pub const SLICE_GENERATIONS_IN_FLIGHT: &str = "mig_gateway_slice_generations_in_flight";
pub const WORKER_UP: &str = "mig_gateway_worker_up";
pub const SLICE_COMPUTE_UNITS: &str = "mig_gateway_slice_compute_units";
/// Written by hand in [`GatewayMetrics::render`], from the registry.
const WORKER_UP_HELP: &str = "1 if the worker on this slice answers its health probe, else 0.";
const SLICE_COMPUTE_UNITS_HELP: &str =
    "Size of the slice: MIG compute slices, or cores of a CPU slice.";
pub const ADMISSION_QUEUE_DEPTH: &str = "mig_gateway_admission_queue_depth";
pub const ADMISSION_SHED: &str = "mig_gateway_admission_shed_total";
pub const WORKER_RETRIES: &str = "mig_gateway_worker_retries_total";
pub const BUILD_INFO: &str = "mig_gateway_build_info";
pub const TENANT_REQUESTS: &str = "mig_gateway_tenant_requests_total";
pub const TENANT_PROMPT_TOKENS: &str = "mig_gateway_tenant_prompt_tokens_total";
pub const TENANT_GENERATED_TOKENS: &str = "mig_gateway_tenant_generated_tokens_total";
pub const TENANT_REJECTIONS: &str = "mig_gateway_tenant_rejections_total";

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
    SLICE_GENERATIONS_IN_FLIGHT,
    WORKER_UP,
    SLICE_COMPUTE_UNITS,
    BUILD_INFO,
    TENANT_REQUESTS,
    TENANT_PROMPT_TOKENS,
    TENANT_GENERATED_TOKENS,
    TENANT_REJECTIONS,
    ADMISSION_QUEUE_DEPTH,
    ADMISSION_SHED,
    WORKER_RETRIES,
];

/// Until a worker took the call: sub-millisecond when a worker has room,
/// up to the admission queue's limit (`--queue-max-wait`) under overload.
const QUEUE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The gateway's recorder and the text it serves.
pub struct GatewayMetrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// What the request path registered, found again without a key.
    counters: Handles<metrics::Counter>,
    gauges: Handles<metrics::Gauge>,
    histograms: Handles<metrics::Histogram>,
}

/// The series of one slice that a generation on it updates, registered
/// once per slice (and again when its labels change: a first answer, a
/// restart): relaying a message costs no lookup.
#[derive(Debug)]
pub(crate) struct SliceSeries {
    pub generated_tokens: metrics::Counter,
    pub prompt_tokens: metrics::Counter,
    pub time_to_first_token: metrics::Histogram,
    pub inter_token_latency: metrics::Histogram,
    pub request_duration: metrics::Histogram,
    pub generations_in_flight: metrics::Gauge,
}

impl GatewayMetrics {
    pub fn new() -> Arc<GatewayMetrics> {
        let recorder = recorder::recorder(&[
            (TIME_TO_FIRST_TOKEN, LATENCY_BUCKETS),
            (REQUEST_DURATION, LATENCY_BUCKETS),
            (INTER_TOKEN_LATENCY, TOKEN_BUCKETS),
            (QUEUE_WAIT, QUEUE_BUCKETS),
        ]);
        describe(&recorder);
        let handle = recorder.handle();
        let m = GatewayMetrics {
            recorder,
            handle,
            counters: Handles::new(),
            gauges: Handles::new(),
            histograms: Handles::new(),
        };
        m.gauge(
            BUILD_INFO,
            vec![Label::new("version", env!("CARGO_PKG_VERSION"))],
        )
        .set(1.0);
        Arc::new(m)
    }

    pub(crate) fn counter(&self, name: &'static str, labels: Vec<Label>) -> metrics::Counter {
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &METADATA)
    }

    pub(crate) fn gauge(&self, name: &'static str, labels: Vec<Label>) -> metrics::Gauge {
        self.recorder
            .register_gauge(&Key::from_parts(name, labels), &METADATA)
    }

    pub(crate) fn histogram(&self, name: &'static str, labels: Vec<Label>) -> metrics::Histogram {
        self.recorder
            .register_histogram(&Key::from_parts(name, labels), &METADATA)
    }

    /// [`GatewayMetrics::counter`] for the request path: registered the
    /// first time, found again after.
    pub(crate) fn counter_with(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
    ) -> metrics::Counter {
        self.counters
            .get(name, labels, |labels| self.counter(name, labels))
    }

    pub(crate) fn gauge_with(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
    ) -> metrics::Gauge {
        self.gauges
            .get(name, labels, |labels| self.gauge(name, labels))
    }

    pub(crate) fn histogram_with(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
    ) -> metrics::Histogram {
        self.histograms
            .get(name, labels, |labels| self.histogram(name, labels))
    }

    /// The series of the slice `worker` serves on, as labelled now.
    pub(crate) fn slice_series(&self, worker: &WorkerHandle) -> SliceSeries {
        let labels = slice_labels(worker);
        SliceSeries {
            generated_tokens: self.counter(GENERATED_TOKENS, labels.clone()),
            prompt_tokens: self.counter(PROMPT_TOKENS, labels.clone()),
            time_to_first_token: self.histogram(TIME_TO_FIRST_TOKEN, labels.clone()),
            inter_token_latency: self.histogram(INTER_TOKEN_LATENCY, labels.clone()),
            request_duration: self.histogram(REQUEST_DURATION, labels.clone()),
            generations_in_flight: self.gauge(SLICE_GENERATIONS_IN_FLIGHT, labels),
        }
    }

    /// The text exposition. Worker health and slice size are written from
    /// the registry as it is now, so a worker that left, or whose labels
    /// changed (a first answer, a restart), leaves no stale series behind.
    /// Each generation slice's counters and histograms exist from its first
    /// scrape on, at zero, so `rate()` and `increase()` see the whole of the
    /// first request.
    pub fn render(&self, registry: &Registry) -> String {
        let mut up = String::new();
        let mut units = String::new();
        for worker in registry.all() {
            let labels = slice_labels(&worker);
            let text = exposition_labels(&labels);
            let healthy = if worker.is_healthy() { 1 } else { 0 };
            up.push_str(&format!("{WORKER_UP}{{{text}}} {healthy}\n"));
            let info = worker.info().unwrap_or_default();
            if let Some(n) = compute_units(&info.profile) {
                units.push_str(&format!("{SLICE_COMPUTE_UNITS}{{{text}}} {n}\n"));
            }
            // Embedding slices generate no token: no zero series for them,
            // which would drag per-profile averages down.
            if info.kind() != mig_proto::inference::v1::ModelKind::Generate {
                continue;
            }
            self.gauge(SLICE_GENERATIONS_IN_FLIGHT, labels.clone())
                .increment(0.0);
            self.counter(GENERATED_TOKENS, labels.clone()).increment(0);
            // Histograms too: a quantile over `rate()` needs the series to
            // exist before the first observation.
            for name in [TIME_TO_FIRST_TOKEN, INTER_TOKEN_LATENCY, REQUEST_DURATION] {
                // Registering creates the series; the handle is not needed.
                drop(self.histogram(name, labels.clone()));
            }
            self.counter(PROMPT_TOKENS, labels).increment(0);
        }
        let mut out = self.handle.render();
        for (name, help, body) in [
            (WORKER_UP, WORKER_UP_HELP, up),
            (SLICE_COMPUTE_UNITS, SLICE_COMPUTE_UNITS_HELP, units),
        ] {
            if !body.is_empty() {
                out.push_str(&format!(
                    "# HELP {name} {help}\n# TYPE {name} gauge\n{body}\n"
                ));
            }
        }
        out
    }

    /// The recorder's handle, for [`mig_serve::recorder::upkeep_loop`].
    pub fn handle(&self) -> PrometheusHandle {
        self.handle.clone()
    }
}

/// Label pairs as the exposition writes them, values escaped.
fn exposition_labels(labels: &[Label]) -> String {
    labels
        .iter()
        .map(|l| {
            let value = l
                .value()
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{}=\"{value}\"", l.key())
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `model`, `slice`, `profile`, `gpu` of a worker, as it last reported them,
/// and the labels dcgm-exporter gives the same MIG instance ([`DCGM_LABELS`]).
pub(crate) fn slice_labels(worker: &WorkerHandle) -> Vec<Label> {
    let info = worker.info().unwrap_or_default();
    let slice = if info.slice.is_empty() {
        worker.address()
    } else {
        info.slice.clone()
    };
    let [uuid, instance, instance_profile, hostname] = dcgm_values(&info);
    vec![
        Label::new("model", worker.model.clone()),
        Label::new("slice", slice),
        Label::new("profile", info.profile),
        Label::new("gpu", info.gpu),
        Label::new(DCGM_LABELS[0], uuid),
        Label::new(DCGM_LABELS[1], instance),
        Label::new(DCGM_LABELS[2], instance_profile),
        Label::new(DCGM_LABELS[3], hostname),
    ]
}

/// dcgm-exporter's labels for a slice, from [`mig_slices::dcgm`]: the
/// values from the worker's `Info`, the node this gateway's when the worker
/// names none.
pub const DCGM_LABELS: [&str; 4] = mig_slices::dcgm::LABELS;

fn dcgm_values(info: &WorkerInfo) -> [String; 4] {
    mig_slices::dcgm::label_values(
        &info.gpu,
        &info.gpu_instance_id,
        &info.profile,
        &info.hostname,
        || gateway_node().to_string(),
    )
}

/// This gateway's node, read once.
fn gateway_node() -> &'static str {
    static NODE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NODE.get_or_init(mig_slices::node::node_name)
}

/// Every description, in one place.
fn describe(r: &PrometheusRecorder) {
    let c = |name: &'static str, text: &'static str| {
        r.describe_counter(name.into(), Some(Unit::Count), text.into());
    };
    c(
        GENERATED_TOKENS,
        "Tokens relayed to clients, by serving slice, counted as each message streams.",
    );
    c(
        PROMPT_TOKENS,
        "Prompt tokens of finished requests, by serving slice.",
    );
    c(
        REQUESTS,
        "Requests by model, final gRPC status code and protocol (grpc, openai, kserve).",
    );
    c(
        TENANT_REQUESTS,
        "Requests by tenant, model and final gRPC status code.",
    );
    c(
        TENANT_PROMPT_TOKENS,
        "Prompt tokens charged to each tenant, when a worker took the request.",
    );
    c(
        TENANT_GENERATED_TOKENS,
        "Generated tokens charged to each tenant, as they stream.",
    );
    c(
        TENANT_REJECTIONS,
        "Calls refused by tenant and reason: unauthenticated, permission, quota_concurrency, quota_tokens.",
    );
    c(
        ADMISSION_SHED,
        "Requests refused or taken out of the admission queue, by model, priority and reason: queue_full, wait_limit, deadline, evicted, waited, expired, no_worker.",
    );
    c(
        WORKER_RETRIES,
        "Calls sent to another replica after a worker refused or failed before the first token, by model.",
    );
    let h = |name: &'static str, text: &'static str| {
        r.describe_histogram(name.into(), Some(Unit::Seconds), text.into());
    };
    h(
        TIME_TO_FIRST_TOKEN,
        "From arrival at the gateway to the first token relayed.",
    );
    h(INTER_TOKEN_LATENCY, "Between consecutive tokens relayed.");
    h(
        REQUEST_DURATION,
        "From arrival at the gateway to the terminal status.",
    );
    h(
        QUEUE_WAIT,
        "From arrival until a worker took the call (the admission queue, routing, retries).",
    );
    let g = |name: &'static str, text: &'static str| {
        r.describe_gauge(name.into(), Some(Unit::Count), text.into());
    };
    g(
        REQUESTS_IN_FLIGHT,
        "Requests the gateway is serving, by model.",
    );
    g(
        SLICE_GENERATIONS_IN_FLIGHT,
        "Generations running on each slice.",
    );
    g(
        ADMISSION_QUEUE_DEPTH,
        "Requests waiting in the gateway's admission queue for a worker, by model and priority (those naming no slice profile).",
    );
    g(BUILD_INFO, "Always 1; the labels say the version.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dcgm_labels_of_a_mig_slice_a_whole_gpu_and_a_cpu_slice() {
        let mig = WorkerInfo {
            profile: "1g.10gb".into(),
            gpu: "GPU-0ba88705-8527-ed9e-bc07-1b45788d4ef9".into(),
            gpu_instance_id: "13".into(),
            hostname: "node-a".into(),
            ..Default::default()
        };
        assert_eq!(
            dcgm_values(&mig),
            [
                "GPU-0ba88705-8527-ed9e-bc07-1b45788d4ef9",
                "13",
                "1g.10gb",
                "node-a"
            ]
        );
        let whole = WorkerInfo {
            profile: "whole".into(),
            gpu_instance_id: String::new(),
            hostname: String::new(),
            ..mig.clone()
        };
        let [uuid, id, profile, host] = dcgm_values(&whole);
        assert_eq!(
            (uuid.as_str(), id.as_str(), profile.as_str()),
            (mig.gpu.as_str(), "", "")
        );
        assert_eq!(
            host,
            gateway_node(),
            "a worker that names no node: this gateway's"
        );
        let cpu = WorkerInfo {
            profile: "cpu-1c".into(),
            hostname: "node-a".into(),
            ..Default::default()
        };
        assert_eq!(dcgm_values(&cpu), <[String; 4]>::default());
    }
}
