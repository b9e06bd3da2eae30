//! The load engine against real workers: warm-up left out of the results,
//! the drain's give-up, the client's own deadline on a stream, and open-loop
//! arrivals skipped when too many are in flight. Each request must end with
//! exactly one status.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mig_loadtest::run::{self, Load, RunSpec, Until};
use mig_loadtest::stats::Summary;
use mig_loadtest::target::{Target, TargetKind};
use mig_loadtest::workload::{Dist, Prompt, Workload};
use mig_testkit::process::worker as start_worker;

/// Timing-sensitive: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn workload(model: &str, max_tokens: u32) -> Arc<Workload> {
    Arc::new(Workload {
        model: model.into(),
        profile: None,
        prompts: vec![Prompt::Text {
            prompt: "Once upon a time".into(),
        }],
        prompt_source: "test".into(),
        input_words: None,
        output_tokens: Dist::Fixed(max_tokens),
        ignore_eos: true,
        temperature: 0.0,
        seed: 1,
    })
}

fn spec(load: Load, until: Until, warmup: f64, drain: f64) -> RunSpec {
    RunSpec {
        load,
        until,
        warmup: Duration::from_secs_f64(warmup),
        drain: Duration::from_secs_f64(drain),
        timeout: Duration::from_secs(60),
        max_in_flight: 256,
        seed: 1,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

#[test]
fn warm_up_requests_are_left_out_and_the_window_is_the_duration() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let worker = start_worker("identity", &["--identity", "--model-name", "identity"]);
    runtime().block_on(async {
        let target = Target::connect(&worker.address, TargetKind::Auto, Default::default())
            .await
            .unwrap();
        assert_eq!(target.kind, TargetKind::Worker);
        let s = spec(
            Load::Closed { concurrency: 2 },
            Until::Duration(Duration::from_secs(1)),
            0.5,
            10.0,
        );
        let out = run::run(&target, &workload("identity", 16), &s, "test").await;
        assert!(out.warmup_requests > 0, "no request in the warm-up");
        assert!(!out.records.is_empty());
        assert!(out
            .records
            .iter()
            .all(|r| r.sent_s >= 0.0 && r.status == "OK"));
        assert_eq!(out.window, Duration::from_secs(1));
        let summary = Summary::of(&out);
        assert!(summary.window_tokens > 0);
        assert!((summary.output_tokens_per_s - summary.window_tokens as f64).abs() < 1e-6);
        // Each measured request has all its tokens; the window counts only
        // those that arrived inside it.
        assert!(out.records.iter().all(|r| r.output_tokens == 16));
    });
}

#[test]
fn requests_still_running_when_the_drain_ends_are_cancelled_and_kept() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let model = mig_testkit::smollm2().display().to_string();
    let worker = start_worker(
        "smollm2",
        &["--model-name", "smollm2-135m", "--model-path", &model],
    );
    runtime().block_on(async {
        let target = Target::connect(&worker.address, TargetKind::Worker, Default::default())
            .await
            .unwrap();
        // 1,000 tokens take far longer than the 0.3 s run plus no drain.
        let s = spec(
            Load::Closed { concurrency: 1 },
            Until::Duration(Duration::from_millis(300)),
            0.0,
            0.0,
        );
        let out = run::run(&target, &workload("smollm2-135m", 1000), &s, "test").await;
        assert_eq!(out.records.len(), 1, "{:?}", out.records);
        let r = &out.records[0];
        assert_eq!(r.status, "CANCELLED", "{r:?}");
        assert!(r.message.contains("--drain"), "{r:?}");

        // A client deadline shorter than the stream: DEADLINE_EXCEEDED.
        let mut s = spec(
            Load::Closed { concurrency: 1 },
            Until::Requests(1),
            0.0,
            60.0,
        );
        s.timeout = Duration::from_millis(500);
        let out = run::run(&target, &workload("smollm2-135m", 1000), &s, "test").await;
        assert_eq!(out.records.len(), 1);
        assert_eq!(
            out.records[0].status, "DEADLINE_EXCEEDED",
            "{:?}",
            out.records[0]
        );

        // Open loop far above what one worker serves, one request in
        // flight at most: the rest are skipped and counted, not sent.
        let mut s = spec(
            Load::Open { rate: 100.0 },
            Until::Duration(Duration::from_secs(1)),
            0.0,
            60.0,
        );
        s.max_in_flight = 1;
        let out = run::run(&target, &workload("smollm2-135m", 8), &s, "test").await;
        assert!(out.skipped > 20, "{} skipped", out.skipped);
        assert!(
            !out.records.is_empty() && out.records.len() < 20,
            "{}",
            out.records.len()
        );
        assert!(out.records.iter().all(|r| r.status == "OK"));
    });
}
