//! Admission through a real gateway and worker (SmolLM2 on one core, a
//! batch of 4): one tenant holding 64 streams does not starve another's
//! single requests, and a `critical` tenant is served while a `sheddable`
//! flood is shed with `RESOURCE_EXHAUSTED` and a `retry-after`.
//!
//! The gateway's queue is what makes the difference: without it every
//! request of the crowd would wait in the worker's queue ahead of the lone
//! tenant's, which would then wait for about 60 / 4 crowd streams to end;
//! with it the crowd holds 3 of the 4 places and the lone request takes
//! the one kept for a tenant with nothing running.

use std::time::{Duration, Instant};

use mig_gateway::tenancy::keys::{new_key, KeyHash};
use mig_proto::inference::v1::inference_client::InferenceClient;
use mig_proto::inference::v1::GenerateRequest;
use mig_testkit::process::gateway_up;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};

fn tenant(name: &str, key: &str, priority: &str) -> String {
    format!(
        "[[tenant]]\nname = \"{name}\"\nkeys = [\"{}\"]\nmodels = [\"smollm2-135m\"]\npriority = \"{priority}\"\n\n",
        KeyHash::of(key)
    )
}

fn keyed(key: &str, request: GenerateRequest) -> Request<GenerateRequest> {
    let mut request = Request::new(request);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    request
}

fn generation(max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        model: "smollm2-135m".into(),
        prompt: "Once upon a time".into(),
        max_tokens: Some(max_tokens),
        ignore_eos: true,
        ..Default::default()
    }
}

/// How one stream went: time to its first token and to its end, or its
/// status.
async fn stream(
    mut client: InferenceClient<Channel>,
    key: String,
    max_tokens: u32,
) -> Result<(Duration, Duration), tonic::Status> {
    let started = Instant::now();
    let mut stream = client
        .generate_stream(keyed(&key, generation(max_tokens)))
        .await?
        .into_inner();
    let mut first = None;
    loop {
        match stream.message().await? {
            Some(m) => {
                first.get_or_insert_with(|| started.elapsed());
                if m.finish_reason != 0 {
                    return Ok((first.unwrap(), started.elapsed()));
                }
            }
            None => panic!("a stream ended without a final message or a status"),
        }
    }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[tokio::test]
async fn a_crowd_does_not_starve_a_lone_tenant_and_critical_beats_a_sheddable_flood() {
    let (crowd, lone, vip, bulk) = (new_key(), new_key(), new_key(), new_key());
    let tenants = tenant("crowd", &crowd, "standard")
        + &tenant("lone", &lone, "standard")
        + &tenant("vip", &vip, "critical")
        + &tenant("bulk", &bulk, "sheddable");
    let path = std::env::temp_dir().join(format!("mig-test-fairness-{}.toml", std::process::id()));
    std::fs::write(&path, tenants).unwrap();
    let fleet = format!(
        "[[model]]\nname = \"smollm2-135m\"\npath = \"{}\"\nslices = [\"cpu:0\"]\nargs = [\"--max-batch-size\", \"4\"]\n",
        mig_testkit::smollm2().display()
    );
    let mut gateway = gateway_up(
        "fairness",
        &fleet,
        &[
            "--tenants",
            path.to_str().unwrap(),
            "--queue-max-waiting",
            "64",
        ],
    );
    let channel = Endpoint::from_shared(gateway.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let client = InferenceClient::new(channel);

    // Unloaded: the lone tenant's time to first token.
    let mut unloaded = Vec::new();
    for _ in 0..3 {
        unloaded.push(stream(client.clone(), lone.clone(), 4).await.unwrap().0);
    }
    let unloaded = median(unloaded);

    // The crowd: 64 streams of 24 tokens, 4 run at a time.
    let crowd_streams: Vec<_> = (0..64)
        .map(|_| tokio::spawn(stream(client.clone(), crowd.clone(), 24)))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut lone_ttft = Vec::new();
    for _ in 0..4 {
        lone_ttft.push(stream(client.clone(), lone.clone(), 4).await.unwrap().0);
    }
    let mut crowd_durations = Vec::new();
    for s in crowd_streams {
        let (_, total) = tokio::time::timeout(Duration::from_secs(300), s)
            .await
            .expect("a crowd stream hung")
            .unwrap()
            .expect("every crowd stream is served");
        crowd_durations.push(total);
    }
    let lone_median = median(lone_ttft.clone());
    let crowd_median = median(crowd_durations);
    eprintln!(
        "lone TTFT unloaded {unloaded:?}, beside the crowd {lone_ttft:?} (median {lone_median:?}); \
         crowd stream median {crowd_median:?}"
    );
    // In turn with the crowd's 60 waiting streams, the lone tenant would
    // wait about 15 crowd streams; with a place kept for a tenant with
    // nothing running, it starts at once (measured: 2-3x unloaded).
    let bound = (unloaded * 8).max(Duration::from_millis(400));
    assert!(
        lone_median < bound && lone_median < crowd_median / 4,
        "lone TTFT {lone_median:?} (unloaded {unloaded:?}) beside a crowd whose streams took {crowd_median:?}"
    );

    // A sheddable flood of 120 against a queue of 64: some are refused at
    // once, saying so and when to retry; critical requests go first.
    let flood: Vec<_> = (0..120)
        .map(|_| tokio::spawn(stream(client.clone(), bulk.clone(), 24)))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut vip_ttft = Vec::new();
    for _ in 0..3 {
        vip_ttft.push(stream(client.clone(), vip.clone(), 4).await.unwrap().0);
    }
    let (mut served, mut shed) = (0, 0);
    for s in flood {
        match tokio::time::timeout(Duration::from_secs(300), s)
            .await
            .expect("a flood stream hung")
            .unwrap()
        {
            Ok(_) => served += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(
                    status
                        .message()
                        .contains("queue for model `smollm2-135m` is full")
                        || status.message().contains("higher priority"),
                    "{}",
                    status.message()
                );
                let retry: u64 = status
                    .metadata()
                    .get("retry-after")
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(retry >= 1, "retry-after {retry}");
                shed += 1;
            }
        }
    }
    eprintln!("flood: {served} served, {shed} shed; critical TTFT {vip_ttft:?}");
    assert!(shed >= 40, "{shed} of 120 shed");
    assert_eq!(served + shed, 120);
    assert!(
        median(vip_ttft.clone()) < bound,
        "critical TTFT {vip_ttft:?} behind a sheddable flood (unloaded {unloaded:?})"
    );
    gateway.terminate();
    let _ = std::fs::remove_file(path);
}
