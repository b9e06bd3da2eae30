//! One request followed from arrival to its one terminal status: the
//! tokens it relays counted per slice as they stream, its latencies, its
//! final code. The metrics themselves are described in `crate::metrics`.

use std::sync::Arc;
use std::time::Instant;

use metrics::Label;
use mig_proto::inference::v1::GenerateStreamResponse;

use crate::metrics::{
    slice_labels, GatewayMetrics, GENERATED_TOKENS, INTER_TOKEN_LATENCY, PROMPT_TOKENS, QUEUE_WAIT,
    REQUESTS, REQUESTS_IN_FLIGHT, REQUEST_DURATION, SLICE_GENERATIONS_IN_FLIGHT, TENANT_REQUESTS,
    TIME_TO_FIRST_TOKEN,
};
use crate::registry::WorkerHandle;

/// The per-slice series a request updates.
struct SliceSeries {
    generated_tokens: metrics::Counter,
    prompt_tokens: metrics::Counter,
    time_to_first_token: metrics::Histogram,
    inter_token_latency: metrics::Histogram,
    request_duration: metrics::Histogram,
}

/// One request, from arrival to its one terminal status. Dropped without
/// [`Tracked::finish`] (the client went away), it counts as `CANCELLED`.
pub struct Tracked {
    metrics: Arc<GatewayMetrics>,
    model: String,
    /// The caller's `tenant` label.
    tenant: String,
    arrived: Instant,
    /// The serving slice's series, registered once when routed so relaying
    /// a message costs no lookup.
    slice: Option<SliceSeries>,
    last_token: Option<Instant>,
    /// The slice a generation counts against, until it ends.
    generating: Option<Vec<Label>>,
    finished: bool,
}

impl Tracked {
    /// Starts following one request of `tenant` for `model`, which arrived
    /// at `arrived`.
    pub fn start(
        metrics: &Arc<GatewayMetrics>,
        model: &str,
        tenant: &str,
        arrived: Instant,
    ) -> Tracked {
        let model_label = vec![Label::new("model", model.to_string())];
        metrics
            .gauge(REQUESTS_IN_FLIGHT, model_label)
            .increment(1.0);
        Tracked {
            metrics: metrics.clone(),
            model: model.to_string(),
            tenant: tenant.to_string(),
            arrived,
            slice: None,
            last_token: None,
            generating: None,
            finished: false,
        }
    }

    /// The worker that serves the request took it; the call was sent to it
    /// at `dispatched` (after routing and any retries: the gateway's queue
    /// wait). From now on the request's series carry that slice.
    pub fn routed(&mut self, worker: &WorkerHandle, dispatched: Instant) {
        self.metrics
            .histogram(QUEUE_WAIT, vec![Label::new("model", self.model.clone())])
            .record(dispatched.saturating_duration_since(self.arrived));
        let labels = slice_labels(worker);
        let m = &self.metrics;
        self.slice = Some(SliceSeries {
            generated_tokens: m.counter(GENERATED_TOKENS, labels.clone()),
            prompt_tokens: m.counter(PROMPT_TOKENS, labels.clone()),
            time_to_first_token: m.histogram(TIME_TO_FIRST_TOKEN, labels.clone()),
            inter_token_latency: m.histogram(INTER_TOKEN_LATENCY, labels.clone()),
            request_duration: m.histogram(REQUEST_DURATION, labels),
        });
    }

    /// [`Tracked::routed`] for a generation: it also counts in the slice's
    /// generations in flight until it ends, so an alert can see a slice that
    /// has work and produces no token.
    pub fn generating(&mut self, worker: &WorkerHandle, dispatched: Instant) {
        self.routed(worker, dispatched);
        let labels = slice_labels(worker);
        self.metrics
            .gauge(SLICE_GENERATIONS_IN_FLIGHT, labels.clone())
            .increment(1.0);
        self.generating = Some(labels);
    }

    /// A message relayed from the worker: its tokens count now, not at the end.
    pub fn relayed(&mut self, message: &GenerateStreamResponse) {
        let Some(series) = &self.slice else {
            return;
        };
        if message.token_count > 0 {
            let now = Instant::now();
            match self.last_token.replace(now) {
                None => series.time_to_first_token.record(now - self.arrived),
                Some(previous) => {
                    // A message may carry several tokens (a multi-token
                    // character): spread the gap over them.
                    let gap = (now - previous) / message.token_count;
                    for _ in 0..message.token_count {
                        series.inter_token_latency.record(gap);
                    }
                }
            }
            series
                .generated_tokens
                .increment(message.token_count.into());
        }
        if let Some(usage) = &message.usage {
            series.prompt_tokens.increment(usage.prompt_tokens.into());
        }
    }

    /// Prompt tokens of an embedding call (it has no stream).
    pub fn embedded(&mut self, prompt_tokens: u32) {
        if let Some(series) = &self.slice {
            series.prompt_tokens.increment(prompt_tokens.into());
        }
    }

    /// The terminal status: counted once, with the request's duration.
    pub fn finish(mut self, code: tonic::Code) {
        self.record_end(code);
    }

    fn record_end(&mut self, code: tonic::Code) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let model = Label::new("model", self.model.clone());
        let code = Label::new("code", mig_serve::status::code_name(code));
        self.metrics
            .counter(REQUESTS, vec![model.clone(), code.clone()])
            .increment(1);
        self.metrics
            .counter(
                TENANT_REQUESTS,
                vec![
                    Label::new("tenant", self.tenant.clone()),
                    model.clone(),
                    code,
                ],
            )
            .increment(1);
        self.metrics
            .gauge(REQUESTS_IN_FLIGHT, vec![model.clone()])
            .decrement(1.0);
        if let Some(labels) = self.generating.take() {
            self.metrics
                .gauge(SLICE_GENERATIONS_IN_FLIGHT, labels)
                .decrement(1.0);
        }
        let duration = match &self.slice {
            Some(series) => series.request_duration.clone(),
            None => self.metrics.histogram(REQUEST_DURATION, vec![model]),
        };
        duration.record(self.arrived.elapsed());
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.record_end(tonic::Code::Cancelled);
    }
}
