//! Generation through a real worker on `127.0.0.1:0`: `ignore_eos` on the
//! SmolLM2 file, and the identity model (echo, no compute) with the request
//! fields every model shares (`profile`, stop strings, `Info`).

use mig_proto::inference::v1::{ChatMessage, FinishReason, GenerateRequest};
use mig_proto::worker::v1::worker_client::WorkerClient;
use mig_proto::worker::v1::InfoRequest;
use tonic::transport::Channel;
use tonic::Code;

/// The stream's text and its last message's finish reason and token count.
async fn generate(
    client: &mut WorkerClient<Channel>,
    request: GenerateRequest,
) -> Result<(String, FinishReason, u32), tonic::Status> {
    let mut stream = client.generate(request).await?.into_inner();
    let mut text = String::new();
    let mut counted = 0;
    while let Some(message) = stream.message().await? {
        text.push_str(&message.text);
        counted += message.token_count;
        if let Some(usage) = message.usage {
            assert_eq!(counted, usage.completion_tokens, "token counts add up");
            return Ok((text, message.finish_reason(), usage.completion_tokens));
        }
    }
    panic!("the stream ended without its final message")
}

#[tokio::test]
async fn ignore_eos_runs_to_max_tokens() {
    let addr = mig_testkit::in_process::start_worker(&[
        "--model-name",
        "smollm2-135m",
        "--model-path",
        mig_testkit::smollm2().to_str().unwrap(),
    ])
    .await;
    let mut client = WorkerClient::connect(addr).await.unwrap();
    let request = GenerateRequest {
        messages: vec![ChatMessage {
            role: "user".into(),
            content: "Say hi.".into(),
        }],
        temperature: Some(0.0),
        max_tokens: Some(64),
        ..Default::default()
    };
    let (text, finish, tokens) = generate(&mut client, request.clone()).await.unwrap();
    assert_eq!(finish, FinishReason::Eos, "{text:?}");
    assert!(tokens < 64, "{tokens} tokens: {text:?}");

    let (long, finish, tokens) = generate(
        &mut client,
        GenerateRequest {
            ignore_eos: true,
            ..request
        },
    )
    .await
    .unwrap();
    assert_eq!((finish, tokens), (FinishReason::Length, 64), "{long:?}");
    // Greedy: the same answer up to the end-of-sequence token, which adds
    // no text of its own, then more.
    assert!(
        long.starts_with(&text) && long.len() > text.len(),
        "{long:?}"
    );
    assert!(!long.contains("<|"), "no control token text: {long:?}");
}

fn echo(prompt: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        model: "identity".into(),
        prompt: prompt.into(),
        max_tokens: Some(max_tokens),
        ..Default::default()
    }
}

#[tokio::test]
async fn identity_model_echoes_the_prompt_cyclically() {
    let addr = mig_testkit::in_process::start_worker(&[
        "--model-name",
        "identity",
        "--identity",
        "--slice",
        "cpu:0",
    ])
    .await;
    let mut client = WorkerClient::connect(addr).await.unwrap();

    let info = client.info(InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.engine, "identity (echo, no model)");
    assert_eq!(
        (info.context_length, info.profile.as_str()),
        (4096, "cpu-1c")
    );

    let answer = generate(&mut client, echo("abc", 7)).await.unwrap();
    assert_eq!(answer, ("abcabca".into(), FinishReason::Length, 7));

    // One token per byte: 2 + 3 bytes, sampled at any temperature.
    let mut multibyte = echo("é€", 10);
    multibyte.temperature = Some(1.5);
    multibyte.repetition_penalty = Some(2.0);
    let answer = generate(&mut client, multibyte).await.unwrap();
    assert_eq!(answer, ("é€é€".into(), FinishReason::Length, 10));

    // Stop strings apply as for any model; never an end-of-sequence.
    let mut stop = echo("abc", 50);
    stop.stop = vec!["ca".into()];
    let answer = generate(&mut client, stop).await.unwrap();
    assert_eq!(answer, ("ab".into(), FinishReason::Stop, 4));
    let mut ignore = echo("xyz", 5);
    ignore.ignore_eos = true;
    let answer = generate(&mut client, ignore).await.unwrap();
    assert_eq!(answer, ("xyzxy".into(), FinishReason::Length, 5));

    // `profile` must be this worker's; chat turns are echoed as their texts.
    let mut same = echo("a", 1);
    same.profile = "cpu-1c".into();
    assert!(generate(&mut client, same).await.is_ok());
    let mut other = echo("a", 1);
    other.profile = "cpu-2c".into();
    let status = generate(&mut client, other).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(
        status.message(),
        "`profile` is `cpu-2c`, but this worker runs on a `cpu-1c` slice"
    );
    let mut long = echo("a", 1);
    long.profile = "p".repeat(65);
    let status = generate(&mut client, long).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "`profile` is 65 bytes, limit 64");
    let chat = GenerateRequest {
        prompt: String::new(),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: "hi".into(),
        }],
        ..echo("", 4)
    };
    let answer = generate(&mut client, chat).await.unwrap();
    assert_eq!(answer, ("hi\nh".into(), FinishReason::Length, 4));
}

#[tokio::test]
async fn identity_worker_needs_identity_in_its_model_name() {
    use clap::Parser;
    let args = mig_worker::ServeArgs::parse_from(["serve", "--model-name", "echo", "--identity"]);
    let e = mig_worker::load(&args).await.err().expect("refused");
    assert!(
        e.to_string()
            .contains("`--model-name` `echo` must contain `identity`"),
        "{e}"
    );
}

#[tokio::test]
async fn a_synthetic_model_generates_with_no_file_and_says_what_it_is() {
    let addr = mig_testkit::in_process::start_worker(&[
        "--model-name",
        "synthetic-135m",
        "--synthetic",
        "llama-135m:f32",
        "--synthetic-seed",
        "3",
    ])
    .await;
    let mut client = WorkerClient::connect(addr).await.unwrap();
    let info = client.info(InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(
        info.engine,
        "synthetic llama-135m:f32 (random weights, seed 3)"
    );
    assert_eq!(info.context_length, 4096);
    // Random weights: meaningless tokens, but exactly as many as asked (no
    // end-of-sequence), and the same ones for the same seed.
    let request = GenerateRequest {
        model: "synthetic-135m".into(),
        prompt: "Hello".into(),
        max_tokens: Some(12),
        temperature: Some(0.0),
        ..Default::default()
    };
    let first = generate(&mut client, request.clone()).await.unwrap();
    assert_eq!((first.1, first.2), (FinishReason::Length, 12));
    assert_eq!(generate(&mut client, request).await.unwrap(), first);

    let e = mig_worker::load(&<mig_worker::ServeArgs as clap::Parser>::parse_from([
        "serve",
        "--model-name",
        "llama",
        "--synthetic",
        "llama-1b",
    ]))
    .await
    .err()
    .expect("refused");
    assert!(
        e.to_string()
            .contains("`--model-name` `llama` must contain `synthetic`"),
        "{e}"
    );
}
