//! The figures of one load point: percentiles from HDR histograms
//! (microsecond resolution, 3 significant digits), rates over the measured
//! window, errors by status code, and who served the requests.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::request::RequestRecord;
use crate::run::RunOutcome;

/// Percentiles of one latency, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    fn of(samples: impl Iterator<Item = u64>) -> Latency {
        // 1 µs to 1 hour; longer values are clamped to the top.
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
            .expect("constant bounds are valid");
        for us in samples {
            h.saturating_record(us.max(1));
        }
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Measured requests (sent after the warm-up), whatever their status.
    pub requests: u64,
    pub ok: u64,
    /// Failed requests by gRPC status name.
    pub errors: BTreeMap<String, u64>,
    pub warmup_requests: u64,
    /// Open-loop arrivals skipped because too many were in flight.
    pub skipped: u64,
    pub window_s: f64,
    /// Measured requests over the window.
    pub requests_per_s: f64,
    /// Tokens that arrived inside the window over its length, counted by
    /// the client as they streamed (a warm-up request's late tokens count;
    /// tokens after the window do not).
    pub output_tokens_per_s: f64,
    pub window_tokens: u64,
    /// Tokens of the measured requests, whenever they arrived.
    pub output_tokens: u64,
    /// The servers' own count (`usage.completion_tokens`), to check the client's.
    pub usage_completion_tokens: u64,
    pub prompt_tokens: u64,
    pub ttft: Latency,
    pub itl: Latency,
    pub e2e: Latency,
    /// Requests per slice that served them (`served_by.slice`).
    pub slices: BTreeMap<String, u64>,
    /// Requests per profile that served them.
    pub profiles: BTreeMap<String, u64>,
}

impl Summary {
    pub fn of(run: &RunOutcome) -> Summary {
        Summary::from_parts(
            &run.records,
            run.window,
            run.window_tokens,
            run.warmup_requests,
            run.skipped,
        )
    }

    /// Latencies over the requests that succeeded (a failed request's times
    /// say when it failed, not how fast the slice serves); throughput from
    /// the tokens that arrived inside the window.
    pub fn from_parts(
        records: &[RequestRecord],
        window: Duration,
        window_tokens: u64,
        warmup: u64,
        skipped: u64,
    ) -> Summary {
        let window_s = window.as_secs_f64().max(1e-9);
        let ok = || records.iter().filter(|r| r.ok());
        let mut s = Summary {
            requests: records.len() as u64,
            warmup_requests: warmup,
            skipped,
            window_s,
            ttft: Latency::of(ok().filter_map(|r| r.ttft_us)),
            itl: Latency::of(ok().flat_map(|r| r.itl_us.iter().copied())),
            e2e: Latency::of(ok().map(|r| r.e2e_us)),
            ..Summary::default()
        };
        for r in records {
            if r.ok() {
                s.ok += 1;
            } else {
                *s.errors.entry(r.status.clone()).or_default() += 1;
            }
            s.output_tokens += u64::from(r.output_tokens);
            s.usage_completion_tokens += u64::from(r.usage_completion_tokens);
            s.prompt_tokens += u64::from(r.prompt_tokens);
            if !r.slice.is_empty() {
                *s.slices.entry(r.slice.clone()).or_default() += 1;
                *s.profiles.entry(r.profile.clone()).or_default() += 1;
            }
        }
        s.requests_per_s = s.requests as f64 / window_s;
        s.window_tokens = window_tokens;
        s.output_tokens_per_s = window_tokens as f64 / window_s;
        s
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// `RESOURCE_EXHAUSTED=3 UNAVAILABLE=1`, or `-`.
    pub fn errors_text(&self) -> String {
        if self.errors.is_empty() {
            return "-".into();
        }
        self.errors
            .iter()
            .map(|(code, n)| format!("{code}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: &str, ttft_ms: u64, itl_ms: &[u64], tokens: u32) -> RequestRecord {
        RequestRecord {
            point: 0,
            index: 0,
            sent_s: 0.0,
            status: status.into(),
            message: String::new(),
            finish: "length".into(),
            ttft_us: Some(ttft_ms * 1000),
            e2e_us: (ttft_ms + itl_ms.iter().sum::<u64>()) * 1000,
            itl_us: itl_ms.iter().map(|ms| ms * 1000).collect(),
            prompt_tokens: 10,
            output_tokens: tokens,
            usage_completion_tokens: tokens,
            worker_id: "w".into(),
            slice: "cpu:0".into(),
            profile: "cpu-1c".into(),
        }
    }

    #[test]
    fn percentiles_rates_and_errors_come_from_the_records() {
        let mut records: Vec<_> = (1..=100).map(|i| record("OK", i, &[10, 20], 3)).collect();
        records.push(record("RESOURCE_EXHAUSTED", 500, &[900], 0));
        let s = Summary::from_parts(&records, Duration::from_secs(10), 250, 4, 0);
        assert_eq!((s.requests, s.ok, s.error_count()), (101, 100, 1));
        assert_eq!(s.errors_text(), "RESOURCE_EXHAUSTED=1");
        assert_eq!(s.output_tokens, 300);
        // Throughput is the window's tokens, not the measured requests'.
        assert!((s.output_tokens_per_s - 25.0).abs() < 1e-9);
        assert!((s.requests_per_s - 10.1).abs() < 1e-9);
        // TTFT 1..=100 ms; the failed request's 500 ms is left out.
        assert!((s.ttft.p50 - 50.0).abs() < 0.1, "{:?}", s.ttft);
        assert!((s.ttft.p99 - 99.0).abs() < 0.1, "{:?}", s.ttft);
        assert_eq!((s.ttft.count, s.itl.count), (100, 200));
        assert!((s.itl.p50 - 10.0).abs() < 0.01 && (s.itl.max - 20.0).abs() < 0.02);
        // End-to-end only over requests that succeeded.
        assert_eq!(s.e2e.count, 100);
        assert_eq!(s.slices["cpu:0"], 101);
        assert_eq!(s.warmup_requests, 4);
    }
}
