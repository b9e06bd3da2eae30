//! The worker's `/metrics`: the token counter rises while a stream is still
//! running (not when it ends), and the exposition passes `promtool check
//! metrics` after traffic.

use std::time::Duration;

use clap::Parser;
use mig_proto::inference::v1::{ChatMessage, GenerateRequest};
use mig_proto::worker::v1::worker_client::WorkerClient;
use tokio::net::TcpListener;

#[tokio::test]
async fn token_counter_rises_while_the_stream_runs_and_promtool_accepts_it() {
    let args = mig_worker::ServeArgs::parse_from([
        "serve",
        "--model-name",
        "smollm2-135m",
        "--model-path",
        mig_testkit::smollm2().to_str().unwrap(),
        "--slice",
        "cpu:0",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let ready = mig_worker::load(&args).await.unwrap();
    let metrics_addr = ready.metrics_addr().expect("--metrics-listen is set");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(mig_worker::run(ready, listener, std::future::pending()));

    let before = mig_testkit::http::scrape(metrics_addr).await;
    assert_eq!(
        mig_testkit::http::value(&before, "mig_worker_generated_tokens_total"),
        0.0
    );
    assert!(before.contains(
        r#"mig_worker_build_info{model="smollm2-135m",slice="cpu:0",profile="cpu-1c",gpu="",UUID="",GPU_I_ID="",GPU_I_PROFILE="",Hostname="",version="#
    ));

    let mut client = WorkerClient::connect(grpc).await.unwrap();
    let request = GenerateRequest {
        model: "smollm2-135m".into(),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: "Tell me a long story about a lighthouse keeper.".into(),
        }],
        temperature: Some(0.0),
        max_tokens: Some(300),
        ..Default::default()
    };
    let mut stream = client.generate(request).await.unwrap().into_inner();
    let mut received = 0u32;
    while received < 10 {
        let message = stream.message().await.unwrap().expect("stream still open");
        assert_eq!(message.finish_reason, 0, "ended after {received} tokens");
        received += message.token_count;
    }
    let during = mig_testkit::http::value(
        &mig_testkit::http::scrape(metrics_addr).await,
        "mig_worker_generated_tokens_total",
    );
    assert!(during >= 10.0, "{during} tokens counted after 10 streamed");
    while received < 40 {
        let message = stream.message().await.unwrap().expect("stream still open");
        assert_eq!(message.finish_reason, 0, "ended after {received} tokens");
        received += message.token_count;
    }
    let later = mig_testkit::http::value(
        &mig_testkit::http::scrape(metrics_addr).await,
        "mig_worker_generated_tokens_total",
    );
    assert!(
        later >= 40.0 && later > during,
        "counter did not rise mid-stream: {during} then {later}"
    );

    // Cancel it: counted once as CANCELLED, and the engine lets go of it.
    drop(stream);
    let cancelled = r#"mig_worker_requests_total{model="smollm2-135m",slice="cpu:0",profile="cpu-1c",gpu="",UUID="",GPU_I_ID="",GPU_I_PROFILE="",Hostname="",code="CANCELLED"} 1"#;
    let started = std::time::Instant::now();
    let after = loop {
        let exposition = mig_testkit::http::scrape(metrics_addr).await;
        if exposition.contains(cancelled)
            && mig_testkit::http::value(&exposition, "mig_worker_requests_in_flight") == 0.0
        {
            break exposition;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no CANCELLED count, or the request still in flight:\n{exposition}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        mig_testkit::http::value(&after, "mig_worker_queue_depth"),
        0.0
    );
    assert!(
        !after.contains(r#"code="OK""#),
        "one terminal status only:\n{after}"
    );
    assert!(mig_testkit::http::value(&after, "mig_worker_prompt_tokens_total") > 10.0);
    for histogram in [
        "mig_worker_time_to_first_token_seconds_count",
        "mig_worker_inter_token_latency_seconds_count",
        "mig_worker_queue_wait_seconds_count",
    ] {
        assert!(
            mig_testkit::http::value(&after, histogram) >= 1.0,
            "{histogram}:\n{after}"
        );
    }
    assert!(
        mig_testkit::http::value(&after, "mig_worker_memory_used_bytes") > 50e6,
        "RSS of a loaded model"
    );

    for name in mig_worker::metrics::NAMES {
        assert!(
            after.contains(&format!("# TYPE {name} ")),
            "`{name}` is not in the exposition:\n{after}"
        );
    }

    mig_testkit::promtool::check_metrics(&after);
}
