//! KServe v2 (`inference.GRPCInferenceService`) through a real `mig-gateway
//! up` on the demo models, behind API keys: the same answers as the
//! project's own API (greedy text, streamed chunks, embeddings), the same
//! refusals (a bad key, a model the tenant may not call), hostile tensors
//! refused naming the field, a cancelled stream cancelling its generation,
//! the request counter's `protocol="kserve"`; then NVIDIA's own client,
//! tritonclient, against the same gateway.
//!
//! One gateway for the whole file (its models load once), the checks run
//! in turn; every generation is greedy and at most 16 tokens but the one
//! cancelled after its first chunk.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mig_gateway::tenancy::keys::{new_key, KeyHash};
use mig_proto::inference::v1::inference_client::InferenceClient;
use mig_proto::inference::v1::{EmbedRequest, GenerateRequest};
use mig_proto::kserve::grpc_inference_service_client::GrpcInferenceServiceClient;
use mig_proto::kserve::infer_parameter::ParameterChoice;
use mig_proto::kserve::model_infer_request::InferInputTensor;
use mig_proto::kserve::*;
use mig_testkit::process::{gateway_up, Process};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const SMOL: &str = "smollm2-135m";
const MINI: &str = "minilm-l6";
const PROMPT: &str = "The capital of France is";
const MAX_TOKENS: u32 = 16;

type Kserve = GrpcInferenceServiceClient<Channel>;

struct Gateway {
    process: Process,
    /// `alpha`: both models.
    alpha: String,
    /// `beta`: the embedding model only.
    beta: String,
}

fn start() -> Gateway {
    let (alpha, beta) = (new_key(), new_key());
    let tenants = format!(
        "[[tenant]]\nname = \"alpha\"\nkeys = [\"{}\"]\nmodels = [\"{SMOL}\", \"{MINI}\"]\n\n\
         [[tenant]]\nname = \"beta\"\nkeys = [\"{}\"]\nmodels = [\"{MINI}\"]\n",
        KeyHash::of(&alpha),
        KeyHash::of(&beta)
    );
    let path = std::env::temp_dir().join(format!("mig-test-kserve-{}.toml", std::process::id()));
    std::fs::write(&path, tenants).unwrap();
    let fleet = format!(
        "[[model]]\nname = \"{SMOL}\"\npath = \"{}\"\nslices = [\"cpu:0\"]\n\n\
         [[model]]\nname = \"{MINI}\"\npath = \"{}\"\nslices = [\"cpu:1\"]\n",
        mig_testkit::smollm2().display(),
        mig_testkit::minilm().display()
    );
    let process = gateway_up(
        "kserve",
        &fleet,
        &[
            "--tenants",
            path.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    Gateway {
        process,
        alpha,
        beta,
    }
}

fn metrics_addr(gateway: &Process) -> std::net::SocketAddr {
    gateway.address_after("metrics: http://").parse().unwrap()
}

fn keyed<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    request
}

/// BYTES elements as raw contents, as tritonclient sends them.
fn raw_bytes(elements: &[&[u8]]) -> Vec<u8> {
    let mut raw = Vec::new();
    for e in elements {
        raw.extend_from_slice(&(e.len() as u32).to_le_bytes());
        raw.extend_from_slice(e);
    }
    raw
}

fn tensor(name: &str, datatype: &str, shape: &[i64]) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
        ..Default::default()
    }
}

/// A greedy generation as tritonclient sends it: every input in raw contents.
fn generation(id: &str, max_tokens: i32) -> ModelInferRequest {
    ModelInferRequest {
        model_name: SMOL.into(),
        id: id.into(),
        inputs: vec![
            tensor("text_input", "BYTES", &[1]),
            tensor("max_tokens", "INT32", &[1]),
            tensor("temperature", "FP32", &[1]),
        ],
        raw_input_contents: vec![
            raw_bytes(&[PROMPT.as_bytes()]),
            max_tokens.to_le_bytes().to_vec(),
            0f32.to_le_bytes().to_vec(),
        ],
        ..Default::default()
    }
}

fn param(choice: ParameterChoice) -> InferParameter {
    InferParameter {
        parameter_choice: Some(choice),
    }
}

/// The one text of a `text_output`.
fn text_of(response: &ModelInferResponse) -> String {
    assert_eq!(response.outputs.len(), 1, "{response:?}");
    assert_eq!(response.outputs[0].name, "text_output");
    assert_eq!(response.outputs[0].datatype, "BYTES");
    let raw = &response.raw_output_contents[0];
    let length = u32::from_le_bytes(raw[..4].try_into().unwrap()) as usize;
    assert_eq!(raw.len(), 4 + length, "one element");
    String::from_utf8(raw[4..].to_vec()).unwrap()
}

fn final_flag(response: &ModelInferResponse) -> bool {
    match response.parameters.get("triton_final_response") {
        Some(InferParameter {
            parameter_choice: Some(ParameterChoice::BoolParam(b)),
        }) => *b,
        other => panic!("no final flag: {other:?}"),
    }
}

fn int_param(response: &ModelInferResponse, name: &str) -> i64 {
    match response
        .parameters
        .get(name)
        .and_then(|p| p.parameter_choice.clone())
    {
        Some(ParameterChoice::Int64Param(v)) => v,
        other => panic!("`{name}`: {other:?}"),
    }
}

fn string_param(response: &ModelInferResponse, name: &str) -> String {
    match response
        .parameters
        .get(name)
        .and_then(|p| p.parameter_choice.clone())
    {
        Some(ParameterChoice::StringParam(v)) => v,
        other => panic!("`{name}`: {other:?}"),
    }
}

/// The sum of `mig_gateway_requests_total` over the series with all of
/// these labels.
fn requests(exposition: &str, labels: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with("mig_gateway_requests_total{"))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Scrapes until the requests with these labels reach `at_least`, for at
/// most 10 s.
async fn wait_for_requests(metrics: std::net::SocketAddr, labels: &[&str], at_least: f64) {
    let started = Instant::now();
    loop {
        let exposition = mig_testkit::http::scrape(metrics).await;
        if requests(&exposition, labels) >= at_least {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{labels:?} below {at_least}:\n{exposition}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `requests` on one ModelStreamInfer and reads every message until
/// `expected_last` messages flagged final (or in error) came.
async fn stream_all(
    client: &mut Kserve,
    key: &str,
    requests: Vec<ModelInferRequest>,
    expected_last: usize,
) -> Vec<ModelStreamInferResponse> {
    let mut messages = client
        .model_stream_infer(keyed(tokio_stream::iter(requests), key))
        .await
        .unwrap()
        .into_inner();
    let mut all = Vec::new();
    let mut ended = 0;
    while ended < expected_last {
        let message = messages.message().await.unwrap().expect("more responses");
        let last = !message.error_message.is_empty()
            || message.infer_response.as_ref().is_some_and(final_flag);
        ended += usize::from(last);
        all.push(message);
    }
    all
}

#[tokio::test]
async fn kserve_v2_through_the_public_listener() {
    let gateway = start();
    let channel = Channel::from_shared(gateway.process.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut kserve = GrpcInferenceServiceClient::new(channel.clone());
    let mut own = InferenceClient::new(channel.clone());
    let metrics = metrics_addr(&gateway.process);

    keys_and_visibility(&mut kserve, &mut own, &gateway).await;
    metadata_and_config(&mut kserve, &gateway.alpha).await;
    let whole = infer_matches_generate(&mut kserve, &mut own, &gateway.alpha).await;
    stream_matches_infer(&mut kserve, &gateway.alpha, &whole).await;
    embeddings(&mut kserve, &mut own, &gateway.alpha).await;
    hostile_tensors(&mut kserve, channel.clone(), &gateway.alpha).await;
    cancelled_stream_cancels_its_generation(&mut kserve, &gateway.alpha, metrics).await;
    counted_as_kserve(metrics).await;
    reflection_and_health(channel).await;

    // NVIDIA's client, as a Triton user runs it: the same greedy text.
    let addr = gateway.process.address.clone();
    let key = gateway.alpha.clone();
    let out = tokio::task::spawn_blocking(move || {
        mig_testkit::python::run_client(
            "triton_client.py",
            &[
                &addr,
                "--key",
                &key,
                "--max-tokens",
                &MAX_TOKENS.to_string(),
            ],
        )
    })
    .await
    .unwrap();
    for check in [
        "ok live",
        "ok metadata",
        "ok config",
        "ok infer",
        "ok stream error in-band",
        "ok stream:",
        "ok embed",
        "ok wire",
    ] {
        assert!(out.contains(check), "{check:?} in:\n{out}");
    }
    let infer_line = format!("ok infer: {} (", serde_json::to_string(&whole).unwrap());
    assert!(out.contains(&infer_line), "{infer_line:?} in:\n{out}");
    eprintln!("{out}");
}

/// Keys as on the project's own API: a bad key is UNAUTHENTICATED on every
/// RPC; a model the tenant may not call is refused as the own API refuses
/// it, and is neither described nor ready for it.
async fn keys_and_visibility(kserve: &mut Kserve, own: &mut InferenceClient<Channel>, g: &Gateway) {
    let stranger = new_key();
    let e = kserve
        .server_live(keyed(ServerLiveRequest {}, &stranger))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let e = kserve
        .model_infer(Request::new(generation("no-key", 4)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("`authorization`"), "{e:?}");
    let e = stream_error(kserve, &stranger).await;
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    // beta may call the embedding model only.
    for model in [SMOL, "no-such-model"] {
        let mut request = generation("beta", 4);
        request.model_name = model.into();
        let kserve_says = kserve
            .model_infer(keyed(request, &g.beta))
            .await
            .unwrap_err();
        let own_says = own
            .generate(keyed(
                GenerateRequest {
                    model: model.into(),
                    prompt: PROMPT.into(),
                    max_tokens: Some(4),
                    ..Default::default()
                },
                &g.beta,
            ))
            .await
            .unwrap_err();
        assert_eq!(
            (kserve_says.code(), kserve_says.message()),
            (own_says.code(), own_says.message()),
            "{model}"
        );
        assert!(
            matches!(kserve_says.code(), Code::PermissionDenied | Code::NotFound),
            "{kserve_says:?}"
        );
        let ready = kserve
            .model_ready(keyed(
                ModelReadyRequest {
                    name: model.into(),
                    version: String::new(),
                },
                &g.beta,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(!ready.ready, "{model} is not ready for beta");
        let e = kserve
            .model_metadata(keyed(
                ModelMetadataRequest {
                    name: model.into(),
                    version: String::new(),
                },
                &g.beta,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        assert!(e.message().contains(&format!("`{model}`")), "{e:?}");
    }
    // The same model in a stream: the own API's refusal, in-band.
    let mut request = generation("beta-stream", 4);
    request.model_name = SMOL.into();
    let messages = stream_all(kserve, &g.beta, vec![request], 1).await;
    assert!(
        messages[0]
            .error_message
            .starts_with("PERMISSION_DENIED: tenant `beta` may not call model `smollm2-135m`"),
        "{messages:?}"
    );
}

/// The status of a ModelStreamInfer refused as a whole.
async fn stream_error(kserve: &mut Kserve, key: &str) -> Status {
    match kserve
        .model_stream_infer(keyed(tokio_stream::iter([generation("x", 4)]), key))
        .await
    {
        Err(status) => status,
        Ok(stream) => stream.into_inner().message().await.unwrap_err(),
    }
}

async fn metadata_and_config(kserve: &mut Kserve, key: &str) {
    assert!(
        kserve
            .server_live(keyed(ServerLiveRequest {}, key))
            .await
            .unwrap()
            .into_inner()
            .live
    );
    assert!(
        kserve
            .server_ready(keyed(ServerReadyRequest {}, key))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let server = kserve
        .server_metadata(keyed(ServerMetadataRequest {}, key))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(server.name, "mig-gateway");
    for model in [SMOL, MINI] {
        let ready = kserve
            .model_ready(keyed(
                ModelReadyRequest {
                    name: model.into(),
                    version: "1".into(),
                },
                key,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(ready.ready, "{model}");
    }

    let smol = kserve
        .model_metadata(keyed(
            ModelMetadataRequest {
                name: SMOL.into(),
                version: String::new(),
            },
            key,
        ))
        .await
        .unwrap()
        .into_inner();
    let inputs: HashMap<&str, (&str, &[i64])> = smol
        .inputs
        .iter()
        .map(|t| (t.name.as_str(), (t.datatype.as_str(), t.shape.as_slice())))
        .collect();
    assert_eq!(inputs["text_input"], ("BYTES", &[1][..]));
    assert_eq!(inputs["max_tokens"].0, "INT32");
    assert_eq!(inputs["temperature"].0, "FP32");
    assert_eq!(inputs["stop_words"], ("BYTES", &[-1][..]));
    assert_eq!(smol.outputs[0].name, "text_output");
    assert_eq!(smol.versions, ["1"]);

    let mini = kserve
        .model_metadata(keyed(
            ModelMetadataRequest {
                name: MINI.into(),
                version: String::new(),
            },
            key,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mini.inputs[0].name, "text_input");
    assert_eq!(mini.inputs[0].shape, [-1]);
    assert_eq!(
        (
            mini.outputs[0].name.as_str(),
            mini.outputs[0].datatype.as_str()
        ),
        ("embedding", "FP32")
    );

    let e = kserve
        .model_metadata(keyed(
            ModelMetadataRequest {
                name: SMOL.into(),
                version: "2".into(),
            },
            key,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    let config = kserve
        .model_config(keyed(
            ModelConfigRequest {
                name: SMOL.into(),
                version: String::new(),
            },
            key,
        ))
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert_eq!(config.max_batch_size, 0);
    assert!(config.model_transaction_policy.unwrap().decoupled);
    assert_eq!(config.input.len(), 9);

    let e = kserve
        .repository_index(keyed(RepositoryIndexRequest::default(), key))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented, "{e:?}");
    assert!(
        e.message().contains("RepositoryIndex is not served"),
        "{e:?}"
    );
}

/// ModelInfer's greedy text is the project's own Generate's.
async fn infer_matches_generate(
    kserve: &mut Kserve,
    own: &mut InferenceClient<Channel>,
    key: &str,
) -> String {
    let answer = kserve
        .model_infer(keyed(generation("infer-1", MAX_TOKENS as i32), key))
        .await
        .unwrap()
        .into_inner();
    let expected = own
        .generate(keyed(
            GenerateRequest {
                model: SMOL.into(),
                prompt: PROMPT.into(),
                max_tokens: Some(MAX_TOKENS),
                temperature: Some(0.0),
                ..Default::default()
            },
            key,
        ))
        .await
        .unwrap()
        .into_inner();
    let text = text_of(&answer);
    assert!(!text.is_empty());
    assert_eq!(text, expected.text);
    assert_eq!(answer.id, "infer-1");
    assert_eq!(answer.model_name, SMOL);
    assert_eq!(answer.outputs[0].shape, [1]);
    let usage = expected.usage.unwrap();
    assert_eq!(
        int_param(&answer, "completion_tokens"),
        i64::from(usage.completion_tokens)
    );
    assert_eq!(
        int_param(&answer, "prompt_tokens"),
        i64::from(usage.prompt_tokens)
    );
    assert_eq!(string_param(&answer, "slice"), "cpu:0");
    assert!(!string_param(&answer, "worker_id").is_empty());
    assert!(["length", "eos"].contains(&string_param(&answer, "finish_reason").as_str()));
    text
}

/// ModelStreamInfer: requests answered in turn on one stream; chunks that
/// make ModelInfer's text, one final flag on the last response (or on an
/// extra empty one when asked); an error in-band that leaves the stream
/// going.
async fn stream_matches_infer(kserve: &mut Kserve, key: &str, whole: &str) {
    let chunked = generation("s1", MAX_TOKENS as i32);
    let mut bad = generation("s2", 4);
    bad.inputs[0].datatype = "FP32".into();
    let mut empty_final = generation("s3", MAX_TOKENS as i32);
    empty_final.parameters.insert(
        "triton_enable_empty_final_response".into(),
        param(ParameterChoice::BoolParam(true)),
    );
    let messages = stream_all(kserve, key, vec![chunked, bad, empty_final], 3).await;

    let of = |id: &str| -> Vec<&ModelStreamInferResponse> {
        messages
            .iter()
            .filter(|m| m.infer_response.as_ref().is_some_and(|r| r.id == id))
            .collect()
    };
    // Without the empty final: the flag on the last chunk, with the summary.
    let s1 = of("s1");
    assert!(s1.len() > 1, "chunked: {s1:?}");
    let responses: Vec<&ModelInferResponse> = s1
        .iter()
        .map(|m| m.infer_response.as_ref().unwrap())
        .collect();
    let flags: Vec<bool> = responses.iter().map(|r| final_flag(r)).collect();
    assert_eq!(flags.iter().filter(|&&f| f).count(), 1, "{flags:?}");
    assert!(flags.last().unwrap());
    let text: String = responses.iter().map(|r| text_of(r)).collect();
    assert_eq!(text, whole);
    let last = responses.last().unwrap();
    assert!(int_param(last, "completion_tokens") > 0);
    assert_eq!(string_param(last, "slice"), "cpu:0");

    // The bad request: in-band, naming the field; the stream went on.
    let s2 = of("s2");
    assert_eq!(s2.len(), 1, "{s2:?}");
    assert_eq!(
        s2[0].error_message,
        "INVALID_ARGUMENT: input `text_input` is `FP32`; expected BYTES"
    );

    // With the empty final: the flag alone on an extra, empty response.
    let s3 = of("s3");
    let responses: Vec<&ModelInferResponse> = s3
        .iter()
        .map(|m| m.infer_response.as_ref().unwrap())
        .collect();
    let (last, chunks) = responses.split_last().unwrap();
    assert!(final_flag(last) && last.outputs.is_empty() && last.raw_output_contents.is_empty());
    assert!(chunks.iter().all(|r| !final_flag(r)));
    assert_eq!(chunks.iter().map(|r| text_of(r)).collect::<String>(), whole);
    // Answered in turn: s1's responses all came before s3's.
    let position = |id: &str| {
        messages
            .iter()
            .position(|m| m.infer_response.as_ref().is_some_and(|r| r.id == id))
            .unwrap()
    };
    assert!(position("s1") < position("s2") && position("s2") < position("s3"));
}

/// Embeddings: FP32 [N, dim] of L2 norm 1, the project's own vectors.
async fn embeddings(kserve: &mut Kserve, own: &mut InferenceClient<Channel>, key: &str) {
    let texts = ["a cat sleeps on the sofa", "stock markets fell today"];
    let request = ModelInferRequest {
        model_name: MINI.into(),
        inputs: vec![tensor("text_input", "BYTES", &[2, 1])],
        raw_input_contents: vec![raw_bytes(&[texts[0].as_bytes(), texts[1].as_bytes()])],
        ..Default::default()
    };
    let answer = kserve
        .model_infer(keyed(request, key))
        .await
        .unwrap()
        .into_inner();
    let output = &answer.outputs[0];
    assert_eq!(
        (output.name.as_str(), output.datatype.as_str()),
        ("embedding", "FP32")
    );
    assert_eq!(output.shape.len(), 2);
    assert_eq!(output.shape[0], 2);
    let dim = output.shape[1] as usize;
    assert!(dim > 0);
    let values: Vec<f32> = answer.raw_output_contents[0]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(values.len(), 2 * dim);
    for vector in values.chunks(dim) {
        let norm: f32 = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "{norm}");
    }
    let expected = own
        .embed(keyed(
            EmbedRequest {
                model: MINI.into(),
                inputs: texts.map(String::from).to_vec(),
                truncate: false,
            },
            key,
        ))
        .await
        .unwrap()
        .into_inner();
    let expected: Vec<f32> = expected
        .embeddings
        .iter()
        .flat_map(|e| e.values.iter().copied())
        .collect();
    assert_eq!(values, expected);
    assert!(int_param(&answer, "prompt_tokens") > 0);
}

/// Tensors no client should send, and bytes that are no request at all:
/// INVALID_ARGUMENT, naming the field.
async fn hostile_tensors(kserve: &mut Kserve, channel: Channel, key: &str) {
    let mut cases: Vec<(ModelInferRequest, &str)> = Vec::new();

    let mut r = generation("h", 4);
    r.inputs.remove(0);
    r.raw_input_contents.remove(0);
    cases.push((r, "input `text_input` is missing"));

    let mut r = generation("h", 4);
    r.inputs[1].datatype = "FP64".into();
    cases.push((
        r,
        "input `max_tokens` is `FP64`; expected INT32, UINT32 or INT64",
    ));

    let mut r = generation("h", 4);
    r.inputs[0].shape = vec![2];
    r.raw_input_contents[0] = raw_bytes(&[b"one", b"two"]);
    cases.push((r, "input `text_input` has shape [2]: model `smollm2-135m` generates from one text per request (max_batch_size 0)"));

    let mut r = generation("h", 4);
    r.inputs[0].shape = vec![1, 2, 1];
    cases.push((r, "input `text_input` has shape [1, 2, 1]"));

    let mut r = generation("h", 4);
    r.raw_input_contents[0] = raw_bytes(&[b"caf\xc3"]);
    cases.push((r, "input `text_input`: element 0 is not UTF-8"));

    let mut r = generation("h", 4);
    r.raw_input_contents[0] = b"\xff\xff\x00\x00short".to_vec();
    cases.push((
        r,
        "input `text_input`: `raw_input_contents` element 0 says 65535 bytes; 5 remain",
    ));

    let mut r = generation("h", 4);
    r.inputs.push(r.inputs[1].clone());
    r.raw_input_contents.push(r.raw_input_contents[1].clone());
    cases.push((r, "input `max_tokens` is sent 2 times"));

    let mut r = generation("h", 4);
    r.inputs.push(tensor(&"x".repeat(5000), "BYTES", &[1]));
    r.raw_input_contents.push(raw_bytes(&[b"?"]));
    cases.push((
        r,
        "is not an input of model `smollm2-135m`; its inputs: `text_input` (required)",
    ));

    let mut r = generation("h", 4);
    r.raw_input_contents.pop();
    cases.push((r, "`raw_input_contents` has 2 entries for 3 inputs"));

    let mut r = generation("h", 4);
    r.parameters
        .insert("sequence_id".into(), param(ParameterChoice::Int64Param(7)));
    cases.push((r, "request parameter `sequence_id` is not supported here"));

    let mut r = generation("h", 4);
    r.inputs.push(tensor("stream", "BOOL", &[1]));
    r.raw_input_contents.push(vec![1]);
    cases.push((r, "input `stream` is true: ModelInfer answers once"));

    let mut r = generation("h", 4);
    r.model_version = "7".into();
    cases.push((r, "version `7` is not served"));

    for (request, words) in cases {
        let e = kserve.model_infer(keyed(request, key)).await.unwrap_err();
        let expected = if words.contains("version") {
            Code::NotFound
        } else {
            Code::InvalidArgument
        };
        assert_eq!(e.code(), expected, "{words}: {e:?}");
        assert!(
            e.message().contains(words),
            "{words:?} in {:?}",
            e.message()
        );
        assert!(e.message().len() < 400, "bounded: {}", e.message().len());
    }

    // Bytes that are not a ModelInferRequest (a model name that is not
    // UTF-8): unary and streamed, INVALID_ARGUMENT, never INTERNAL.
    let hostile = NotUtf8 {
        model_name: b"smol\xff".to_vec(),
    };
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let e = grpc
        .unary(
            keyed(hostile.clone(), key),
            PathAndQuery::from_static("/inference.GRPCInferenceService/ModelInfer"),
            tonic_prost::ProstCodec::<NotUtf8, ModelInferResponse>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("model_name"), "{e:?}");
    grpc.ready().await.unwrap();
    let e = match grpc
        .streaming(
            keyed(tokio_stream::iter([hostile]), key),
            PathAndQuery::from_static("/inference.GRPCInferenceService/ModelStreamInfer"),
            tonic_prost::ProstCodec::<NotUtf8, ModelStreamInferResponse>::default(),
        )
        .await
    {
        Err(status) => status,
        Ok(stream) => stream.into_inner().message().await.unwrap_err(),
    };
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("model_name"), "{e:?}");
}

/// `ModelInferRequest` as a hostile client writes it: `model_name` as
/// bytes that need not be UTF-8.
#[derive(Clone, PartialEq, prost::Message)]
struct NotUtf8 {
    #[prost(bytes = "vec", tag = "1")]
    model_name: Vec<u8>,
}

/// A client that cancels its stream cancels the generation under it: the
/// request ends CANCELLED long before its 200 tokens, and the worker is
/// free for the next.
async fn cancelled_stream_cancels_its_generation(
    kserve: &mut Kserve,
    key: &str,
    metrics: std::net::SocketAddr,
) {
    let labels = [
        "model=\"smollm2-135m\"",
        "code=\"CANCELLED\"",
        "protocol=\"kserve\"",
    ];
    let before = requests(&mig_testkit::http::scrape(metrics).await, &labels);
    let mut long = generation("long", 200);
    long.inputs.push(tensor("ignore_eos", "BOOL", &[1]));
    long.raw_input_contents.push(vec![1]);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(long).await.unwrap();
    let started = Instant::now();
    let mut messages = kserve
        .model_stream_infer(keyed(ReceiverStream::new(rx), key))
        .await
        .unwrap()
        .into_inner();
    let first = messages.message().await.unwrap().unwrap();
    assert!(!final_flag(first.infer_response.as_ref().unwrap()));
    drop(messages);
    drop(tx);
    wait_for_requests(metrics, &labels, before + 1.0).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "cancelled at once, not after 200 tokens: {:?}",
        started.elapsed()
    );
    // The worker took the next request.
    let answer = kserve
        .model_infer(keyed(generation("after", 2), key))
        .await
        .unwrap()
        .into_inner();
    assert!(!text_of(&answer).is_empty());
}

/// Every KServe call the shared path served is counted with
/// `protocol="kserve"`, beside the own API's `protocol="grpc"`.
async fn counted_as_kserve(metrics: std::net::SocketAddr) {
    let exposition = mig_testkit::http::scrape(metrics).await;
    let kserve_ok = requests(
        &exposition,
        &[
            "model=\"smollm2-135m\"",
            "code=\"OK\"",
            "protocol=\"kserve\"",
        ],
    );
    // ModelInfer, two streamed generations, and the one after the cancel.
    assert!(kserve_ok >= 4.0, "{kserve_ok}:\n{exposition}");
    assert!(
        requests(
            &exposition,
            &["model=\"minilm-l6\"", "code=\"OK\"", "protocol=\"kserve\""]
        ) >= 1.0,
        "{exposition}"
    );
    assert!(
        requests(
            &exposition,
            &["code=\"PERMISSION_DENIED\"", "protocol=\"kserve\""]
        ) >= 2.0,
        "{exposition}"
    );
    assert!(
        requests(&exposition, &["code=\"OK\"", "protocol=\"grpc\""]) >= 2.0,
        "{exposition}"
    );
}

/// Reflection lists the service beside the project's own (what grpcurl
/// reads; tritonclient's check reads its fields through it), and health
/// reports it serving.
async fn reflection_and_health(channel: Channel) {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let status = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "inference.GRPCInferenceService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(channel)
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
    for service in [
        "inference.GRPCInferenceService",
        "mig.inference.v1.Inference",
    ] {
        assert!(names.contains(&service.to_string()), "{names:?}");
    }
    assert!(
        !names.iter().any(|n| n.starts_with("mig.worker.")),
        "{names:?}"
    );
}
