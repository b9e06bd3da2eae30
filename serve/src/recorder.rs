//! What both processes' metrics share: the histogram buckets, a Prometheus
//! recorder of their own (no process-global one, so a gateway and workers
//! started in one test process each expose exactly their own series), and
//! the upkeep that keeps histogram memory flat between scrapes.

use std::time::Duration;

use metrics::Metadata;
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Time to first token and request duration: from a cached prompt on a big
/// slice (10 ms) to a long generation on a CPU slice (2 min).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Between two tokens, or one engine step: 1 ms (a big slice) to 1 s (a busy
/// CPU core).
pub const TOKEN_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28,
];

/// Metadata of every series registered by hand (the `metrics` macros are not
/// used: each recorder is local).
pub static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// A recorder whose histograms named in `buckets` use those buckets.
pub fn recorder(buckets: &[(&str, &[f64])]) -> PrometheusRecorder {
    buckets
        .iter()
        .fold(PrometheusBuilder::new(), |b, (name, buckets)| {
            b.set_buckets_for_metric(Matcher::Full(name.to_string()), buckets)
                .expect("bucket lists are constant and not empty")
        })
        .build_recorder()
}

/// Drains histogram samples into their buckets every few seconds, until the
/// task is dropped.
pub async fn upkeep_loop(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}
