//! One request followed from arrival to its one terminal status: the
//! tokens it relays counted per slice as they stream, its latencies, its
//! final code. The metrics themselves are described in `crate::metrics`.

use std::sync::Arc;
use std::time::Instant;

use mig_proto::inference::v1::GenerateStreamResponse;

use super::protocol::Protocol;
use crate::metrics::{
    GatewayMetrics, SliceSeries, QUEUE_WAIT, REQUESTS, REQUESTS_IN_FLIGHT, REQUEST_DURATION,
    TENANT_REQUESTS,
};
use crate::registry::WorkerHandle;

/// One request, from arrival to its one terminal status. Dropped without
/// [`Tracked::finish`] (the client went away), it counts as `CANCELLED`.
pub struct Tracked {
    metrics: Arc<GatewayMetrics>,
    model: String,
    /// The caller's `tenant` label.
    tenant: String,
    /// The front the request came in through.
    protocol: Protocol,
    arrived: Instant,
    /// The serving slice's series, found once when routed so relaying a
    /// message costs no lookup.
    slice: Option<Arc<SliceSeries>>,
    last_token: Option<Instant>,
    /// Whether the request counts in its slice's generations in flight.
    generating: bool,
    finished: bool,
}

impl Tracked {
    /// Starts following one request of `tenant` for `model`, which arrived
    /// at `arrived` through `protocol`.
    pub fn start(
        metrics: &Arc<GatewayMetrics>,
        model: &str,
        tenant: &str,
        protocol: Protocol,
        arrived: Instant,
    ) -> Tracked {
        metrics
            .gauge_with(REQUESTS_IN_FLIGHT, &[("model", model)])
            .increment(1.0);
        Tracked {
            metrics: metrics.clone(),
            model: model.to_string(),
            tenant: tenant.to_string(),
            protocol,
            arrived,
            slice: None,
            last_token: None,
            generating: false,
            finished: false,
        }
    }

    /// The worker that serves the request took it; the call was sent to it
    /// at `dispatched` (after routing and any retries: the gateway's queue
    /// wait). From now on the request's series carry that slice.
    pub fn routed(&mut self, worker: &WorkerHandle, dispatched: Instant) {
        self.metrics
            .histogram_with(QUEUE_WAIT, &[("model", &self.model)])
            .record(dispatched.saturating_duration_since(self.arrived));
        self.slice = Some(worker.slice_series(&self.metrics));
    }

    /// [`Tracked::routed`] for a generation: it also counts in the slice's
    /// generations in flight until it ends, so an alert can see a slice that
    /// has work and produces no token.
    pub fn generating(&mut self, worker: &WorkerHandle, dispatched: Instant) {
        self.routed(worker, dispatched);
        if let Some(series) = &self.slice {
            series.generations_in_flight.increment(1.0);
            self.generating = true;
        }
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
        let model = self.model.as_str();
        let code = mig_serve::status::code_name(code);
        let m = &self.metrics;
        m.counter_with(
            REQUESTS,
            &[
                ("model", model),
                ("code", code),
                ("protocol", self.protocol.label()),
            ],
        )
        .increment(1);
        m.counter_with(
            TENANT_REQUESTS,
            &[("tenant", &self.tenant), ("model", model), ("code", code)],
        )
        .increment(1);
        m.gauge_with(REQUESTS_IN_FLIGHT, &[("model", model)])
            .decrement(1.0);
        let duration = match &self.slice {
            Some(series) => {
                if self.generating {
                    series.generations_in_flight.decrement(1.0);
                }
                series.request_duration.clone()
            }
            None => m.histogram_with(REQUEST_DURATION, &[("model", model)]),
        };
        duration.record(self.arrived.elapsed());
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.record_end(tonic::Code::Cancelled);
    }
}
