//! The OpenAI-compatible HTTP front through a real `mig-gateway up` and its
//! workers (SmolLM2 and MiniLM): OpenAI's own Python SDK calls it (chat,
//! completion, streaming with usage, log-probabilities, embeddings, model
//! list, its error types for a bad key, a disallowed model and a quota),
//! its greedy chat agrees with the gRPC API's, each request is counted
//! with `protocol="openai"`, and a stream whose client goes away ends
//! `CANCELLED`, its place on the worker given back.

use std::time::{Duration, Instant};

use mig_gateway::tenancy::keys::{new_key, KeyHash};
use mig_proto::inference::v1::inference_client::InferenceClient;
use mig_proto::inference::v1::{ChatMessage, GenerateRequest};
use mig_testkit::process::{gateway_up, Process};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Request;

const MODEL: &str = "smollm2-135m";
const EMBED_MODEL: &str = "minilm-l6";

fn fleet() -> String {
    format!(
        "[[model]]\nname = \"{MODEL}\"\npath = \"{}\"\nslices = [\"cpu:0\"]\ncontext = 2048\n\n\
         [[model]]\nname = \"{EMBED_MODEL}\"\npath = \"{}\"\nslices = [\"cpu:1\"]\n",
        mig_testkit::smollm2().display(),
        mig_testkit::minilm().display()
    )
}

struct Keys {
    /// `alpha`: both models, and `ghost` (served nowhere).
    alpha: String,
    /// `beta`: the embedding model only.
    beta: String,
    /// `gamma`: SmolLM2 with fewer tokens a minute than one chat prompt.
    gamma: String,
}

fn start(name: &str, keys: &Keys) -> Process {
    let tenants = format!(
        "[[tenant]]\nname = \"alpha\"\nkeys = [\"{}\"]\nmodels = [\"{MODEL}\", \"{EMBED_MODEL}\", \"ghost\"]\n\n\
         [[tenant]]\nname = \"beta\"\nkeys = [\"{}\"]\nmodels = [\"{EMBED_MODEL}\"]\n\n\
         [[tenant]]\nname = \"gamma\"\nkeys = [\"{}\"]\nmodels = [\"{MODEL}\"]\ntokens_per_minute = 10\n",
        KeyHash::of(&keys.alpha),
        KeyHash::of(&keys.beta),
        KeyHash::of(&keys.gamma)
    );
    let path = std::env::temp_dir().join(format!(
        "mig-test-openai-tenants-{name}-{}.toml",
        std::process::id()
    ));
    std::fs::write(&path, tenants).unwrap();
    gateway_up(
        name,
        &fleet(),
        &[
            "--tenants",
            path.to_str().unwrap(),
            "--http-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    )
}

/// The value of one exact series, 0 when absent.
fn series(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn openai_sdk_calls_the_http_front_on_the_shared_request_path() {
    let keys = Keys {
        alpha: new_key(),
        beta: new_key(),
        gamma: new_key(),
    };
    let gateway = start("sdk", &keys);
    let http = gateway.address_after("openai: http://");
    let metrics: std::net::SocketAddr = gateway.address_after("metrics: http://").parse().unwrap();

    let out = mig_testkit::python::run_client(
        "openai_client.py",
        &[
            &format!("http://{http}/v1"),
            "--key",
            &keys.alpha,
            "--other-key",
            &keys.beta,
            "--quota-key",
            &keys.gamma,
            "--model",
            MODEL,
            "--embed-model",
            EMBED_MODEL,
        ],
    );
    for step in [
        "ok models",
        "ok chat:",
        "ok chat stream",
        "ok completion logprobs",
        "ok chat logprobs",
        "ok embeddings (SDK default)",
        "ok embeddings (float)",
        "ok embeddings (base64)",
        "ok bad key",
        "ok disallowed model",
        "ok quota",
        "ok refusals",
        "ok raw HTTP",
    ] {
        assert!(out.contains(step), "no `{step}` in\n{out}");
    }

    // The greedy chat is the gRPC API's answer to the same messages.
    let chat_text: String = out
        .lines()
        .find_map(|l| l.strip_prefix("chat-text "))
        .map(|json| serde_json::from_str(json).unwrap())
        .expect("the script prints its chat text");
    let mut grpc = InferenceClient::connect(gateway.url()).await.unwrap();
    let mut request = Request::new(GenerateRequest {
        model: MODEL.into(),
        messages: vec![
            ChatMessage {
                role: "system".into(),
                content: "You are brief.".into(),
            },
            ChatMessage {
                role: "user".into(),
                content: "Name three colours.".into(),
            },
        ],
        max_tokens: Some(12),
        temperature: Some(0.0),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", keys.alpha).parse().unwrap(),
    );
    let grpc_text = grpc.generate(request).await.unwrap().into_inner().text;
    assert_eq!(chat_text, grpc_text);

    let exposition = mig_testkit::http::scrape(metrics).await;
    let openai_ok = series(
        &exposition,
        &format!("mig_gateway_requests_total{{model=\"{MODEL}\",code=\"OK\",protocol=\"openai\"}}"),
    );
    // chat, chat stream, completion, chat with log-probabilities.
    assert_eq!(openai_ok, 4.0, "{exposition}");
    let grpc_ok = series(
        &exposition,
        &format!("mig_gateway_requests_total{{model=\"{MODEL}\",code=\"OK\",protocol=\"grpc\"}}"),
    );
    assert_eq!(grpc_ok, 1.0, "{exposition}");
    let embed_ok = series(
        &exposition,
        &format!(
            "mig_gateway_requests_total{{model=\"{EMBED_MODEL}\",code=\"OK\",protocol=\"openai\"}}"
        ),
    );
    assert_eq!(embed_ok, 3.0, "{exposition}");

    // A streamed answer whose client reads a little and goes away: one
    // terminal status (CANCELLED), and the worker is free again.
    let mut tcp = tokio::net::TcpStream::connect(&http).await.unwrap();
    let body = format!(
        r#"{{"model":"{MODEL}","prompt":"Once upon a time","max_tokens":2000,"ignore_eos":true,"stream":true}}"#
    );
    let head = format!(
        "POST /v1/completions HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        keys.alpha,
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while seen.windows(6).filter(|w| w == b"data: ").count() < 3 {
        let n = tokio::time::timeout(Duration::from_secs(60), tcp.read(&mut buf))
            .await
            .expect("stream events within a minute")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&seen);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"), "{head}");
    drop(tcp);

    let cancelled = format!(
        "mig_gateway_requests_total{{model=\"{MODEL}\",code=\"CANCELLED\",protocol=\"openai\"}}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let exposition = mig_testkit::http::scrape(metrics).await;
        let in_flight = series(
            &exposition,
            &format!("mig_gateway_requests_in_flight{{model=\"{MODEL}\"}}"),
        );
        if series(&exposition, &cancelled) == 1.0 && in_flight == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dropped stream did not end CANCELLED:\n{exposition}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
