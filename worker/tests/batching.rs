//! Continuous batching in a real worker on `127.0.0.1:0` with the SmolLM2
//! file: greedy answers are the same batched and alone, a cancelled stream
//! leaves the batch while the others go on, the knobs show in `Info`, and a
//! request that cannot fit the KV store is refused up front.

use std::time::Duration;

use clap::Parser;
use mig_proto::inference::v1::{ChatMessage, FinishReason, GenerateRequest};
use mig_proto::worker::v1::worker_client::WorkerClient;
use mig_proto::worker::v1::InfoRequest;
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic::Code;

/// A SmolLM2 worker with these extra flags; its gRPC and metrics addresses.
async fn worker(flags: &[&str]) -> (String, std::net::SocketAddr) {
    let model = mig_testkit::smollm2();
    let mut argv = vec![
        "serve",
        "--model-name",
        "smollm2-135m",
        "--model-path",
        model.to_str().unwrap(),
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    argv.extend_from_slice(flags);
    let args = mig_worker::ServeArgs::parse_from(argv);
    let ready = mig_worker::load(&args).await.expect("worker starts");
    let metrics = ready.metrics_addr().expect("--metrics-listen is set");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(mig_worker::run(ready, listener, std::future::pending()));
    (grpc, metrics)
}

fn chat(content: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        messages: vec![ChatMessage {
            role: "user".into(),
            content: content.into(),
        }],
        temperature: Some(0.0),
        max_tokens: Some(max_tokens),
        ignore_eos: true,
        ..Default::default()
    }
}

/// The whole answer and its token count; checks the stream's own counts.
async fn answer(mut client: WorkerClient<Channel>, request: GenerateRequest) -> (String, u32) {
    let mut stream = client.generate(request).await.unwrap().into_inner();
    let mut text = String::new();
    let mut counted = 0;
    while let Some(message) = stream.message().await.unwrap() {
        text.push_str(&message.text);
        counted += message.token_count;
        if let Some(usage) = message.usage {
            assert_eq!(message.finish_reason(), FinishReason::Length);
            assert_eq!(counted, usage.completion_tokens);
            return (text, counted);
        }
    }
    panic!("the stream ended without its final message")
}

/// Eight prompts of different lengths (so prefill chunks and positions
/// differ across the batch).
const PROMPTS: [&str; 8] = [
    "Hi.",
    "What is the capital of France?",
    "Write a haiku about GPUs.",
    "List three colours of the rainbow, separated by commas, and nothing else please.",
    "Explain in one sentence why the sky is blue, as a physicist would to a curious child.",
    "2 + 2 =",
    "Translate 'good morning' into Spanish, French and German, and say which is which.",
    "Tell me a story about a lighthouse keeper who finds a message in a bottle on a stormy night.",
];

#[tokio::test]
async fn eight_concurrent_greedy_answers_equal_their_solo_runs() {
    let (addr, metrics) = worker(&["--slice", "cpu:0-1", "--max-batch-size", "8"]).await;
    let client = WorkerClient::connect(addr).await.unwrap();
    let tokens = 24;

    let mut solo = Vec::new();
    for prompt in PROMPTS {
        solo.push(answer(client.clone(), chat(prompt, tokens)).await);
    }
    let before = mig_testkit::http::scrape(metrics).await;

    let together: Vec<_> = PROMPTS
        .iter()
        .map(|prompt| tokio::spawn(answer(client.clone(), chat(prompt, tokens))))
        .collect();
    for (i, task) in together.into_iter().enumerate() {
        let batched = task.await.unwrap();
        assert_eq!(batched, solo[i], "prompt {i} ({:?})", PROMPTS[i]);
        assert_eq!(batched.1, tokens);
    }

    // The concurrent run did batch: more sequences than steps.
    let after = mig_testkit::http::scrape(metrics).await;
    let delta = |name: &str| {
        mig_testkit::http::value(&after, name) - mig_testkit::http::value(&before, name)
    };
    let steps = delta("mig_worker_batch_size_count");
    let sequences = delta("mig_worker_batch_size_sum");
    assert!(
        sequences / steps > 3.0,
        "{sequences} sequence-steps in {steps} steps"
    );
    // Every step carries at most 8 sequences.
    let le_8 = after
        .lines()
        .find(|l| l.starts_with("mig_worker_batch_size_bucket{") && l.contains("le=\"8\""))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .expect("an le=8 bucket");
    assert_eq!(
        le_8,
        mig_testkit::http::value(&after, "mig_worker_batch_size_count")
    );
}

#[tokio::test]
async fn a_cancelled_stream_leaves_the_batch_and_the_others_finish() {
    let (addr, _) = worker(&["--slice", "cpu:0"]).await;
    let mut client = WorkerClient::connect(addr).await.unwrap();
    let info = client.info(InfoRequest {}).await.unwrap().into_inner();
    let batching = info
        .batching
        .expect("a generation worker reports its batching");
    assert_eq!(
        (
            batching.max_batch_size,
            batching.max_batch_tokens,
            batching.prefill_chunk,
            batching.max_waiting
        ),
        (16, 256, 128, 64),
        "the documented defaults"
    );
    // 1 GiB of int8 keys and values: 30 layers x 2 x (192 values + 6 f32
    // scales) a token, in whole pages of 16 tokens.
    assert_eq!(batching.kv_cache_type, "q8_0");
    assert_eq!(
        batching.kv_capacity_tokens,
        (1 << 30) / (30 * 2 * (192 + 6 * 4) * 16) * 16
    );

    let steady = tokio::spawn(answer(client.clone(), chat("Count to twenty.", 48)));
    let mut leaving = client
        .generate(chat("Tell me a long story.", 400))
        .await
        .unwrap()
        .into_inner();
    let mut got = 0;
    while got < 4 {
        got += leaving.message().await.unwrap().unwrap().token_count;
    }
    drop(leaving);
    let (_, tokens) = steady.await.unwrap();
    assert_eq!(tokens, 48);
    // The dropped one is gone at its next step, well before its 400 tokens.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let info = client.info(InfoRequest {}).await.unwrap().into_inner();
        if info.requests_in_engine == 0 {
            assert_eq!(info.requests_finished_total, 2);
            assert!(info.generated_tokens_total < 48 + 100, "{info:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{info:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_request_larger_than_the_kv_store_is_refused_with_the_numbers() {
    // 8 MiB: 40 pages of 16 tokens (12,960 bytes a token).
    let (addr, _) = worker(&["--kv-cache-mib", "8"]).await;
    let mut client = WorkerClient::connect(addr).await.unwrap();
    let info = client.info(InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.batching.unwrap().kv_capacity_tokens, 640);

    let status = client
        .generate(chat("Hello there.", 700))
        .await
        .expect_err("cannot fit");
    assert_eq!(status.code(), Code::ResourceExhausted);
    let msg = status.message();
    assert!(
        msg.contains("`max_tokens` (700)") && msg.contains("holds 640"),
        "{msg}"
    );
    // One that fits is served.
    let (_, tokens) = answer(client.clone(), chat("Hello there.", 20)).await;
    assert_eq!(tokens, 20);
}
