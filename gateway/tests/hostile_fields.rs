//! Oversized fields sent through a real gateway while other clients stream:
//! each is refused at the gateway's edge with `INVALID_ARGUMENT`, a short
//! message naming the field and its limit, and no other stream is cut (an
//! error that repeated a 64 KiB field used to overflow HTTP/2's header
//! limit and reset the gateway's shared connection to the worker).

use mig_proto::inference::v1::inference_client::InferenceClient;
use mig_proto::inference::v1::{ChatMessage, EmbedRequest, GenerateRequest};
use mig_testkit::process::gateway_up;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

/// `GenerateRequest` as a hostile client writes it: the prompt as bytes
/// that need not be UTF-8.
#[derive(Clone, PartialEq, prost::Message)]
struct RawPrompt {
    #[prost(string, tag = "1")]
    model: String,
    #[prost(bytes = "vec", tag = "2")]
    prompt: Vec<u8>,
}

/// Not a `GenerateRequest`: field 1 (`model`, a string) sent as a fixed64.
#[derive(Clone, PartialEq, prost::Message)]
struct WrongWireType {
    #[prost(fixed64, tag = "1")]
    model: u64,
}

/// Calls `path` with `message` encoded as is; the answer is decoded as a
/// `GenerateResponse`.
async fn raw_call<M: prost::Message + Send + Sync + 'static>(
    channel: Channel,
    path: &'static str,
    message: M,
) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<M, mig_proto::inference::v1::GenerateResponse>::default();
    grpc.unary(
        tonic::Request::new(message),
        tonic::codegen::http::uri::PathAndQuery::from_static(path),
        codec,
    )
    .await
    .unwrap_err()
}

fn chat(role: &str, content: &str) -> ChatMessage {
    ChatMessage {
        role: role.into(),
        content: content.into(),
    }
}

#[tokio::test]
async fn oversized_fields_are_refused_at_the_edge_and_cut_no_other_stream() {
    let mut gateway = gateway_up(
        "hostile-fields",
        "[[model]]\nname = \"identity\"\nidentity = true\nslices = [\"cpu:0\"]\n",
        &[],
    );
    // A small receive window keeps these streams open while the hostile
    // calls are made.
    let channel = Endpoint::from_shared(gateway.url())
        .unwrap()
        .initial_stream_window_size(1024)
        .connect()
        .await
        .unwrap();
    let mut client = InferenceClient::new(channel.clone());
    let long = GenerateRequest {
        model: "identity".into(),
        prompt: "abcdef".into(),
        max_tokens: Some(3000),
        ..Default::default()
    };
    let mut streams = Vec::new();
    for _ in 0..4 {
        let mut stream = client
            .generate_stream(long.clone())
            .await
            .unwrap()
            .into_inner();
        stream.message().await.unwrap().unwrap();
        streams.push(stream);
    }

    let generate = |f: &dyn Fn(&mut GenerateRequest)| {
        let mut request = GenerateRequest {
            model: "identity".into(),
            messages: vec![chat("user", "hi")],
            max_tokens: Some(4),
            ..Default::default()
        };
        f(&mut request);
        request
    };
    let cases: Vec<(GenerateRequest, &str)> = vec![
        (
            generate(&|r| r.messages = vec![chat(&"r".repeat(65_536), "hi")]),
            "`messages[0].role` is `rrrr",
        ),
        (
            generate(&|r| r.messages = vec![chat(&"r".repeat(40_000), "hi")]),
            "(40000 bytes)`; expected `system`, `user` or `assistant`",
        ),
        (
            generate(&|r| r.model = "m".repeat(65_536)),
            "`model` is 65536 bytes, limit 256",
        ),
        (
            generate(&|r| {
                r.messages.clear();
                r.prompt = "p".repeat(3_900_000);
            }),
            "`prompt` is 3900000 bytes, limit 131072",
        ),
        (
            generate(&|r| r.messages = vec![chat("user", "hi"); 300]),
            "`messages` has 300 turns, limit 256",
        ),
        (
            generate(&|r| r.stop = vec!["s".repeat(100_000)]),
            "`stop[0]` is 100000 bytes, limit 256",
        ),
    ];
    for (request, expected) in cases {
        for streamed in [false, true] {
            let status = if streamed {
                client.generate_stream(request.clone()).await.unwrap_err()
            } else {
                client.generate(request.clone()).await.unwrap_err()
            };
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            assert!(
                status.message().contains(expected),
                "{expected:?} in {:?}",
                status.message()
            );
            assert!(status.message().len() < 250, "{}", status.message().len());
        }
    }
    let embed = client
        .embed(EmbedRequest {
            model: "identity".into(),
            inputs: vec!["e".repeat(70_000)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (embed.code(), embed.message()),
        (
            Code::InvalidArgument,
            "`inputs[0]` is 70000 bytes, limit 65536"
        )
    );

    // Bytes that are not the message: INVALID_ARGUMENT naming the problem,
    // unary and streamed.
    for path in [
        "/mig.inference.v1.Inference/Generate",
        "/mig.inference.v1.Inference/GenerateStream",
    ] {
        let status = raw_call(
            channel.clone(),
            path,
            RawPrompt {
                model: "identity".into(),
                prompt: vec![b'h', 0xff, 0xfe, b'i'],
            },
        )
        .await;
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("GenerateRequest.prompt")
                && status.message().contains("UTF-8"),
            "{}",
            status.message()
        );
        let status = raw_call(channel.clone(), path, WrongWireType { model: 7 }).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("wire type"),
            "{}",
            status.message()
        );
    }

    // Every stream that was running ends whole, with its final message.
    for mut stream in streams {
        let last = loop {
            let message = stream.message().await.unwrap().expect("a final message");
            if message.finish_reason != 0 {
                break message;
            }
        };
        assert_eq!(last.usage.unwrap().completion_tokens, 3000);
    }
    gateway.terminate();
}
