//! The whole path on the real demo models: client -> gateway -> worker.

use mig_proto::inference::v1::{
    ChatMessage, EmbedRequest, FinishReason, GenerateRequest, GenerateStreamResponse,
    ListModelsRequest, ModelKind, WorkerHealth,
};
use mig_testkit::gateway::{fixture, gateway_client, worker_client, DEAD_MODEL};
use tonic::Code;

fn chat(model: &str, text: &str) -> GenerateRequest {
    mig_testkit::gateway::chat(model, text, 24)
}

/// Concatenates a stream's deltas; checks the token accounting on the way.
fn assemble(messages: &[GenerateStreamResponse]) -> (String, GenerateStreamResponse) {
    let last = messages.last().expect("at least the final message").clone();
    assert_ne!(last.finish_reason, FinishReason::Unspecified as i32);
    for m in &messages[..messages.len() - 1] {
        assert_eq!(m.finish_reason, FinishReason::Unspecified as i32);
        assert!(m.usage.is_none() && m.served_by.is_none());
    }
    let tokens: u32 = messages.iter().map(|m| m.token_count).sum();
    assert_eq!(tokens, last.usage.unwrap().completion_tokens);
    (messages.iter().map(|m| m.text.as_str()).collect(), last)
}

#[tokio::test]
async fn greedy_generate_and_stream_agree_through_gateway_and_worker() {
    let f = fixture();
    let req = chat("smollm2-135m", "What is the capital of France?");

    let mut gw = gateway_client(&f.gateway).await;
    let unary = gw.generate(req.clone()).await.unwrap().into_inner();

    let mut stream = gw.generate_stream(req.clone()).await.unwrap().into_inner();
    let mut via_gateway = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        via_gateway.push(m);
    }
    let (streamed, last) = assemble(&via_gateway);

    let mut worker = worker_client(&f.smollm2_worker).await;
    let mut stream = worker.generate(req).await.unwrap().into_inner();
    let mut direct = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        direct.push(m);
    }
    let (direct_text, _) = assemble(&direct);

    assert_eq!(unary.text, streamed);
    assert_eq!(unary.text, direct_text);
    assert!(
        via_gateway.len() > 2,
        "tokens were streamed, not sent at once"
    );
    // llama.cpp answers this with "L'Étoile, la ..." on the same file, and so
    // do we for the first tokens (worker/tests/reference.rs).
    assert!(unary.text.starts_with("L'Étoile"), "{:?}", unary.text);
    assert_eq!(unary.finish_reason, FinishReason::Length as i32);
    let usage = unary.usage.unwrap();
    assert_eq!(usage.completion_tokens, 24);
    assert!(usage.prompt_tokens > 20, "system prompt + question");
    let by = unary.served_by.unwrap();
    assert_eq!(by.slice, "cpu:0");
    assert_eq!(by.profile, "cpu-1c");
    assert_eq!(by.worker_id, "smollm2-135m@cpu:0");
    assert_eq!(last.served_by.unwrap(), by);
}

#[tokio::test]
async fn log_probabilities_come_with_each_token_through_the_gateway() {
    let f = fixture();
    let mut req = chat("smollm2-135m", "What is the capital of France?");
    req.max_tokens = Some(12);
    req.logprobs = Some(5);
    let mut gw = gateway_client(&f.gateway).await;

    let mut stream = gw.generate_stream(req.clone()).await.unwrap().into_inner();
    let mut messages = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        messages.push(m);
    }
    let (text, _) = assemble(&messages);
    let mut pieces = String::new();
    for m in &messages {
        // One entry per token the message counts, in order.
        assert_eq!(m.logprobs.len(), m.token_count as usize, "{m:?}");
        for t in &m.logprobs {
            assert_eq!(t.top.len(), 5, "{t:?}");
            assert!(
                t.top.windows(2).all(|w| w[0].logprob >= w[1].logprob),
                "{t:?}"
            );
            let mass: f32 = t.top.iter().map(|a| a.logprob.exp()).sum();
            assert!(
                t.top.iter().all(|a| a.logprob <= 0.0) && mass <= 1.0 + 1e-4,
                "{t:?}"
            );
            // Greedy takes the most likely token, and reports it as such.
            assert_eq!(t.id, t.top[0].id, "{t:?}");
            assert_eq!(t.logprob, t.top[0].logprob);
            assert_eq!(t.text, t.top[0].text);
            pieces.push_str(&t.text);
        }
    }
    // Each token's text on its own, joined, is the answer (no token here
    // splits a character).
    assert_eq!(pieces, text);

    let unary = gw.generate(req.clone()).await.unwrap().into_inner();
    assert_eq!(unary.text, text);
    assert_eq!(
        unary.logprobs.len() as u32,
        unary.usage.unwrap().completion_tokens
    );
    let streamed: Vec<_> = messages.iter().flat_map(|m| m.logprobs.clone()).collect();
    assert_eq!(
        unary.logprobs, streamed,
        "the same greedy run, the same figures"
    );

    // Without `logprobs`, none are sent.
    req.logprobs = None;
    let plain = gw.generate(req.clone()).await.unwrap().into_inner();
    assert!(plain.logprobs.is_empty());
    req.logprobs = Some(21);
    let err = gw.generate(req).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("`logprobs` is 21, limit 20"),
        "{err:?}"
    );
}

#[tokio::test]
async fn ignore_eos_and_profile_reach_the_worker() {
    let f = fixture();
    let mut gw = gateway_client(&f.gateway).await;
    // Greedy, this chat ends with end-of-sequence after a few tokens
    // (worker/tests/generate.rs); with `ignore_eos` it runs to `max_tokens`.
    let mut req = mig_testkit::gateway::chat("smollm2-135m", "Say hi.", 64);
    req.profile = "cpu-1c".into();
    let r = gw.generate(req.clone()).await.unwrap().into_inner();
    assert_eq!(r.finish_reason, FinishReason::Eos as i32, "{:?}", r.text);
    req.ignore_eos = true;
    let r = gw.generate(req).await.unwrap().into_inner();
    assert_eq!(r.finish_reason, FinishReason::Length as i32, "{:?}", r.text);
    assert_eq!(r.usage.unwrap().completion_tokens, 64);
    assert_eq!(r.served_by.unwrap().profile, "cpu-1c");
}

#[tokio::test]
async fn stop_string_ends_generation_and_is_not_returned() {
    let f = fixture();
    let mut gw = gateway_client(&f.gateway).await;
    let mut req = chat("smollm2-135m", "What is the capital of France?");
    req.stop = vec![", la".into()];
    let r = gw.generate(req).await.unwrap().into_inner();
    assert_eq!(r.text, "L'Étoile");
    assert_eq!(r.finish_reason, FinishReason::Stop as i32);
}

#[tokio::test]
async fn seeded_sampling_is_reproducible() {
    let f = fixture();
    let mut gw = gateway_client(&f.gateway).await;
    let mut req = chat("smollm2-135m", "Tell me a story about a robot.");
    req.temperature = Some(0.9);
    req.top_p = Some(0.95);
    req.top_k = Some(40);
    req.seed = Some(7);
    req.repetition_penalty = Some(1.1);
    req.max_tokens = Some(16);
    let a = gw.generate(req.clone()).await.unwrap().into_inner().text;
    let b = gw.generate(req).await.unwrap().into_inner().text;
    assert!(!a.is_empty());
    assert_eq!(a, b);
}

#[tokio::test]
async fn embeddings_rank_related_sentences_closer() {
    let f = fixture();
    let mut gw = gateway_client(&f.gateway).await;
    let inputs = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The new movie is awesome.",
    ];
    let r = gw
        .embed(EmbedRequest {
            model: "minilm-l6".into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            truncate: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.embeddings.len(), 3);
    let v: Vec<&[f32]> = r.embeddings.iter().map(|e| e.values.as_slice()).collect();
    for e in &v {
        assert_eq!(e.len(), 384);
        let norm: f32 = e.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "L2 norm {norm}");
    }
    let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let food = cos(v[0], v[1]);
    assert!(food > cos(v[0], v[2]) && food > cos(v[1], v[2]), "{food}");
    assert!(food > 0.6, "{food}");
    assert_eq!(r.served_by.unwrap().worker_id, "minilm-l6@cpu:1");
    assert!(r.usage.unwrap().prompt_tokens >= 3 * 3);
}

#[tokio::test]
async fn padding_per_batch_gives_the_same_vector_as_alone() {
    let f = fixture();
    let mut gw = gateway_client(&f.gateway).await;
    let embed = |inputs: Vec<&str>| EmbedRequest {
        model: "minilm-l6".into(),
        inputs: inputs.into_iter().map(String::from).collect(),
        truncate: false,
    };
    let alone = gw.embed(embed(vec!["short"])).await.unwrap().into_inner();
    let batch = gw
        .embed(embed(vec![
            "short",
            "a much longer sentence that needs padding of the other",
        ]))
        .await
        .unwrap()
        .into_inner();
    let diff = alone.embeddings[0]
        .values
        .iter()
        .zip(&batch.embeddings[0].values)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-4, "padding changed the vector by {diff}");
}

#[tokio::test]
async fn long_embedding_inputs_are_rejected_or_truncated_on_request() {
    let f = fixture();
    let mut gw = gateway_client(&f.gateway).await;
    let long = "word ".repeat(600);
    let req = EmbedRequest {
        model: "minilm-l6".into(),
        inputs: vec!["ok".into(), long],
        truncate: false,
    };
    let e = gw.embed(req.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message()
            .contains("`inputs[1]` has 602 tokens, limit 512"),
        "{}",
        e.message()
    );
    let r = gw
        .embed(EmbedRequest {
            truncate: true,
            ..req
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.truncated_inputs, 1);
    assert_eq!(r.embeddings.len(), 2);
}

#[tokio::test]
async fn list_models_shows_kinds_and_worker_health() {
    let f = fixture();
    let mut gw = gateway_client(&f.gateway).await;
    let models = gw
        .list_models(ListModelsRequest {})
        .await
        .unwrap()
        .into_inner()
        .models;
    let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, [DEAD_MODEL, "minilm-l6", "smollm2-135m"]);
    let smol = &models[2];
    assert_eq!(smol.kind, ModelKind::Generate as i32);
    assert_eq!(smol.context_length, 8192);
    assert_eq!(smol.workers[0].health, WorkerHealth::Serving as i32);
    assert_eq!(smol.workers[0].slice, "cpu:0");
    assert_eq!(smol.workers[0].profile, "cpu-1c");
    assert_eq!(smol.workers[0].engine, "llama gguf q4_1");
    assert_eq!(models[1].workers[0].engine, "bert safetensors f32");
    assert_eq!(models[1].kind, ModelKind::Embed as i32);
    assert_eq!(models[1].context_length, 512);
    assert_eq!(models[0].workers[0].health, WorkerHealth::NotServing as i32);
}

/// Every bad request: its gRPC code and a message that names the field.
#[tokio::test]
async fn errors_have_their_code_and_name_the_field() {
    let f = fixture();
    let mut gw = gateway_client(&f.gateway).await;
    let base = chat("smollm2-135m", "hi");
    let cases: Vec<(&str, GenerateRequest, Code, &str)> = vec![
        (
            "unknown model",
            GenerateRequest {
                model: "gpt-5".into(),
                ..base.clone()
            },
            Code::NotFound,
            "model `gpt-5` is not served here; known models: dead-model, minilm-l6, smollm2-135m",
        ),
        (
            "empty model",
            GenerateRequest {
                model: String::new(),
                ..base.clone()
            },
            Code::InvalidArgument,
            "`model` is empty",
        ),
        (
            "empty prompt",
            GenerateRequest {
                messages: vec![],
                prompt: String::new(),
                ..base.clone()
            },
            Code::InvalidArgument,
            "`prompt` is empty",
        ),
        (
            "prompt and messages",
            GenerateRequest {
                prompt: "x".into(),
                ..base.clone()
            },
            Code::InvalidArgument,
            "`prompt` and `messages` are mutually exclusive",
        ),
        (
            "max_tokens 0",
            GenerateRequest {
                max_tokens: Some(0),
                ..base.clone()
            },
            Code::InvalidArgument,
            "`max_tokens` must be at least 1",
        ),
        (
            "max_tokens above context",
            GenerateRequest {
                max_tokens: Some(9000),
                ..base.clone()
            },
            Code::InvalidArgument,
            "`max_tokens` is 9000, above the model's context of 8192 tokens",
        ),
        (
            "max_tokens plus prompt above context",
            GenerateRequest {
                max_tokens: Some(8190),
                ..base.clone()
            },
            Code::InvalidArgument,
            "exceed the model's context of 8192 tokens",
        ),
        (
            "negative temperature",
            GenerateRequest {
                temperature: Some(-1.0),
                ..base.clone()
            },
            Code::InvalidArgument,
            "`temperature` must be a finite number >= 0 (got -1)",
        ),
        (
            "NaN temperature",
            GenerateRequest {
                temperature: Some(f32::NAN),
                ..base.clone()
            },
            Code::InvalidArgument,
            "`temperature` must be a finite number >= 0 (got NaN)",
        ),
        (
            "top_p 0",
            GenerateRequest {
                top_p: Some(0.0),
                ..base.clone()
            },
            Code::InvalidArgument,
            "`top_p` must be in (0, 1] (got 0)",
        ),
        (
            "top_p above 1",
            GenerateRequest {
                top_p: Some(1.5),
                ..base.clone()
            },
            Code::InvalidArgument,
            "`top_p` must be in (0, 1] (got 1.5)",
        ),
        (
            "17 stop strings",
            GenerateRequest {
                stop: (0..17).map(|i| format!("s{i}")).collect(),
                ..base.clone()
            },
            Code::InvalidArgument,
            "`stop` has 17 strings, limit 16",
        ),
        (
            "bad role",
            GenerateRequest {
                messages: vec![ChatMessage {
                    role: "robot".into(),
                    content: "x".into(),
                }],
                ..base.clone()
            },
            Code::InvalidArgument,
            "`messages[0].role` is `robot`",
        ),
        (
            "generate on an embedding model",
            GenerateRequest {
                model: "minilm-l6".into(),
                ..base.clone()
            },
            Code::InvalidArgument,
            "`model` `minilm-l6` is an embedding model",
        ),
        (
            "no worker of that profile",
            GenerateRequest {
                profile: "cpu-4c".into(),
                ..base.clone()
            },
            Code::NotFound,
            "`profile` `cpu-4c`: model `smollm2-135m` has workers on cpu-1c",
        ),
        (
            "profile too long",
            GenerateRequest {
                profile: "x".repeat(65),
                ..base.clone()
            },
            Code::InvalidArgument,
            "`profile` is 65 bytes, limit 64",
        ),
        (
            "no healthy worker",
            GenerateRequest {
                model: DEAD_MODEL.into(),
                ..base.clone()
            },
            Code::Unavailable,
            "no healthy worker serves model `dead-model`",
        ),
    ];
    for (name, req, code, text) in cases {
        for streamed in [false, true] {
            let status = if streamed {
                match gw.generate_stream(req.clone()).await {
                    Err(s) => s,
                    Ok(r) => r.into_inner().message().await.expect_err(name),
                }
            } else {
                gw.generate(req.clone()).await.expect_err(name)
            };
            assert_eq!(status.code(), code, "{name}: {}", status.message());
            assert!(
                status.message().contains(text),
                "{name}: {:?} does not contain {text:?}",
                status.message()
            );
        }
    }

    let embed_on_generator = gw
        .embed(EmbedRequest {
            model: "smollm2-135m".into(),
            inputs: vec!["x".into()],
            truncate: false,
        })
        .await
        .unwrap_err();
    assert_eq!(embed_on_generator.code(), Code::InvalidArgument);
    assert!(embed_on_generator
        .message()
        .contains("`model` `smollm2-135m` is a text-generation model"));
    let empty = gw
        .embed(EmbedRequest {
            model: "minilm-l6".into(),
            inputs: vec![],
            truncate: false,
        })
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert!(empty.message().contains("`inputs` is empty"));
    let too_many = gw
        .embed(EmbedRequest {
            model: "minilm-l6".into(),
            inputs: vec!["x".into(); 65],
            truncate: false,
        })
        .await
        .unwrap_err();
    assert!(
        too_many
            .message()
            .contains("`inputs` has 65 entries, limit 64"),
        "{}",
        too_many.message()
    );
}

#[tokio::test]
async fn expired_deadline_is_deadline_exceeded() {
    let f = fixture();
    let mut gw = mig_testkit::gateway::bare_gateway_client(&f.gateway);
    let request = || {
        let mut r = tonic::Request::new(GenerateRequest {
            max_tokens: Some(3000),
            ..chat("smollm2-135m", "Count from one to one thousand in words.")
        });
        r.set_timeout(std::time::Duration::from_millis(300));
        r
    };
    let status = gw.generate(request()).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::DeadlineExceeded,
        "{}",
        status.message()
    );

    // Before its first token the status comes alone; after, it ends the
    // stream.
    let status = match gw.generate_stream(request()).await {
        Err(status) => status,
        Ok(stream) => {
            let mut stream = stream.into_inner();
            loop {
                match stream.message().await {
                    Ok(Some(m)) => assert_eq!(m.finish_reason, FinishReason::Unspecified as i32),
                    Ok(None) => panic!("stream ended without a status"),
                    Err(status) => break status,
                }
            }
        }
    };
    assert_eq!(
        status.code(),
        Code::DeadlineExceeded,
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let f = fixture();
    for (addr, service) in [
        (&f.gateway, "mig.inference.v1.Inference"),
        (&f.smollm2_worker, "mig.worker.v1.Worker"),
    ] {
        let channel = tonic::transport::Channel::from_shared(addr.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = HealthClient::new(channel.clone());
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service}");

        let mut reflection = ServerReflectionClient::new(channel.clone());
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = reflection
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            answers.message().await.unwrap().unwrap().message_response
        else {
            panic!("no service list");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(names.contains(&service.to_string()), "{names:?}");
        if service == "mig.inference.v1.Inference" {
            // The public port describes nothing internal.
            assert!(
                !names.iter().any(|n| n.starts_with("mig.worker.")),
                "{names:?}"
            );
        }
        assert!(
            names.contains(&"grpc.health.v1.Health".to_string()),
            "{names:?}"
        );
        // The older protocol, which many clients still speak, lists the
        // same services and describes them.
        let mut alpha_names = v1alpha_services(channel.clone()).await;
        let mut v1_names = names.clone();
        alpha_names.sort();
        v1_names.sort();
        assert_eq!(alpha_names, v1_names, "v1alpha and v1 differ");
        let files = v1alpha_file_containing(channel, service).await;
        assert!(!files.is_empty(), "no descriptor for {service} via v1alpha");
        let described = files.iter().any(|file| {
            let file = <prost_types::FileDescriptorProto as prost::Message>::decode(&file[..])
                .expect("a file descriptor");
            file.service
                .iter()
                .any(|s| service.ends_with(&format!(".{}", s.name())))
        });
        assert!(described, "{service} is not in its v1alpha descriptors");
    }
}

/// The services a server lists through reflection `v1alpha`.
async fn v1alpha_services(channel: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    match v1alpha_ask(channel, MessageRequest::ListServices(String::new())).await {
        MessageResponse::ListServicesResponse(list) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("no service list: {other:?}"),
    }
}

/// The encoded file descriptors a server gives for `symbol` through
/// reflection `v1alpha`.
async fn v1alpha_file_containing(channel: tonic::transport::Channel, symbol: &str) -> Vec<Vec<u8>> {
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    match v1alpha_ask(channel, MessageRequest::FileContainingSymbol(symbol.into())).await {
        MessageResponse::FileDescriptorResponse(files) => files.file_descriptor_proto,
        other => panic!("no descriptor: {other:?}"),
    }
}

/// One question to a server's reflection `v1alpha`, and its answer.
async fn v1alpha_ask(
    channel: tonic::transport::Channel,
    question: tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest,
) -> tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse {
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(question),
    };
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("v1alpha is served")
        .into_inner();
    answers
        .message()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .expect("an answer")
}

/// Python's grpcio-reflection (the pinned client venv) asks through
/// `v1alpha`: it lists the public services, KServe's among them, nothing
/// internal, and fetches the Inference service's descriptor.
#[test]
fn python_grpcio_reflection_lists_the_public_services() {
    let f = fixture();
    let address = f.gateway.trim_start_matches("http://");
    let out = mig_testkit::python::run_client(
        "reflection_client.py",
        &[address, "--expect", "inference.GRPCInferenceService"],
    );
    assert!(out.contains("ok reflection v1alpha"), "{out}");
    assert!(
        out.contains("service grpc.reflection.v1.ServerReflection"),
        "{out}"
    );
}
