//! The gateway's `/metrics`: tokens counted per slice as they stream through
//! it, requests by final code (unknown model names folded into one label),
//! worker health per slice, and an exposition `promtool check metrics`
//! accepts.

use std::time::Duration;

use mig_proto::inference::v1::EmbedRequest;

/// The value of the series `name{labels}` (labels as written in the
/// exposition); fails if the series is not there.
fn value(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .unwrap_or_else(|| panic!("no series `{series}` in:\n{exposition}"))
}

/// Scrapes until `series` has `expected`, for at most 10 s.
async fn wait_for(metrics: std::net::SocketAddr, series: &str, expected: f64) -> String {
    let started = std::time::Instant::now();
    loop {
        let exposition = mig_testkit::http::scrape(metrics).await;
        let has = exposition
            .lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        if has == Some(expected) {
            return exposition;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "`{series}` is {has:?}, not {expected}:\n{exposition}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A generation that goes on counting (no early end-of-sequence), so the
/// stream lasts.
fn counting() -> mig_proto::inference::v1::GenerateRequest {
    mig_proto::inference::v1::GenerateRequest {
        model: "smollm2-135m".into(),
        prompt: "1, 2, 3, 4, 5, 6, 7, 8,".into(),
        temperature: Some(0.0),
        max_tokens: Some(200),
        ..Default::default()
    }
}

// dcgm-exporter's labels for the same instance follow, empty on a CPU slice.
const SMOL_SLICE: &str = r#"model="smollm2-135m",slice="cpu:0",profile="cpu-1c",gpu="",UUID="",GPU_I_ID="",GPU_I_PROFILE="",Hostname="""#;
const MINI_SLICE: &str = r#"model="minilm-l6",slice="cpu:1",profile="cpu-1c",gpu="",UUID="",GPU_I_ID="",GPU_I_PROFILE="",Hostname="""#;

#[tokio::test]
async fn tokens_are_counted_per_slice_while_they_stream() {
    let smol =
        mig_testkit::gateway::start_worker("smollm2-135m", &mig_testkit::smollm2(), "cpu:0").await;
    let mini =
        mig_testkit::gateway::start_worker("minilm-l6", &mig_testkit::minilm(), "cpu:1").await;
    let fleet = format!(
        "[[model]]\nname = \"smollm2-135m\"\naddresses = [\"{smol}\"]\n\
         [[model]]\nname = \"minilm-l6\"\naddresses = [\"{mini}\"]\n"
    );
    let (gateway, metrics) = mig_testkit::gateway::start_gateway_with_metrics(&fleet).await;
    let mut client = mig_testkit::gateway::gateway_client(&gateway).await;

    let up = mig_testkit::http::scrape(metrics).await;
    assert_eq!(
        value(&up, &format!("mig_gateway_worker_up{{{SMOL_SLICE}}}")),
        1.0,
        "{up}"
    );
    assert_eq!(
        value(&up, &format!("mig_gateway_worker_up{{{MINI_SLICE}}}")),
        1.0,
        "{up}"
    );

    // Streamed: the slice's counter rises before the stream ends.
    let tokens = format!("mig_gateway_generated_tokens_total{{{SMOL_SLICE}}}");
    let request = counting();
    let mut stream = client.generate_stream(request).await.unwrap().into_inner();
    let mut received = 0u32;
    while received < 20 {
        let message = stream.message().await.unwrap().expect("stream open");
        assert_eq!(message.finish_reason, 0, "ended after {received} tokens");
        received += message.token_count;
    }
    // The gateway counts a message before the client reads it, so it may be
    // a few messages ahead of `received`, never behind.
    let during = value(&mig_testkit::http::scrape(metrics).await, &tokens);
    assert!(during >= 20.0, "{during} counted after {received} relayed");
    while let Some(message) = stream.message().await.unwrap() {
        received += message.token_count;
    }
    let after = mig_testkit::http::scrape(metrics).await;
    assert_eq!(
        value(&after, &tokens),
        received as f64,
        "every relayed token, once"
    );
    assert!(
        during < received as f64,
        "counted {during} mid-stream of {received}: the counter must rise before the end"
    );

    // A client that leaves mid-stream: counted once, as CANCELLED, and the
    // slice's generations in flight fall back to zero.
    let request = counting();
    let mut stream = client.generate_stream(request).await.unwrap().into_inner();
    for _ in 0..3 {
        stream.message().await.unwrap().expect("stream open");
    }
    drop(stream);
    let cancelled = wait_for(
        metrics,
        r#"mig_gateway_requests_total{model="smollm2-135m",code="CANCELLED",protocol="grpc"}"#,
        1.0,
    )
    .await;
    assert_eq!(
        value(
            &cancelled,
            &format!("mig_gateway_slice_generations_in_flight{{{SMOL_SLICE}}}")
        ),
        0.0
    );

    // An embedding, a bad request and an unknown model.
    let embed = |model: &str, inputs: Vec<String>| EmbedRequest {
        model: model.into(),
        inputs,
        ..Default::default()
    };
    client
        .embed(embed("minilm-l6", vec!["hello".into()]))
        .await
        .unwrap();
    let bad = client.embed(embed("minilm-l6", vec![])).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let unknown = client
        .embed(embed("no-such-model", vec!["x".into()]))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let end = mig_testkit::http::scrape(metrics).await;
    let requests = |labels: &str| value(&end, &format!("mig_gateway_requests_total{{{labels}}}"));
    assert_eq!(
        requests(r#"model="smollm2-135m",code="OK",protocol="grpc""#),
        1.0,
        "{end}"
    );
    assert_eq!(
        requests(r#"model="minilm-l6",code="OK",protocol="grpc""#),
        1.0,
        "{end}"
    );
    assert_eq!(
        requests(r#"model="minilm-l6",code="INVALID_ARGUMENT",protocol="grpc""#),
        1.0,
        "{end}"
    );
    assert_eq!(
        requests(r#"model="_unknown",code="NOT_FOUND",protocol="grpc""#),
        1.0,
        "{end}"
    );
    assert!(
        !end.contains("no-such-model"),
        "client text became a label:\n{end}"
    );
    assert!(
        value(
            &end,
            &format!("mig_gateway_prompt_tokens_total{{{MINI_SLICE}}}")
        ) >= 1.0
    );
    assert_eq!(
        value(
            &end,
            &format!("mig_gateway_time_to_first_token_seconds_count{{{SMOL_SLICE}}}")
        ),
        2.0,
        "{end}"
    );
    assert_eq!(
        value(
            &end,
            r#"mig_gateway_requests_in_flight{model="smollm2-135m"}"#
        ),
        0.0
    );

    for name in mig_gateway::metrics::NAMES {
        assert!(
            end.contains(&format!("# TYPE {name} ")),
            "`{name}` is not in the exposition:\n{end}"
        );
    }

    mig_testkit::promtool::check_metrics(&end);
}
