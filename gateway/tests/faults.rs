//! Faults under load, through a real gateway: a worker killed with SIGKILL
//! under 32 streams, a gateway whose drain period runs out under a stream,
//! and a client that stops reading its stream (of a worker that runs ahead,
//! and of one that sends a token at a time). Every stream ends with exactly one status, none hangs, and a cut
//! one says what happened (`UNAVAILABLE`, naming the worker and its slice,
//! or the shutdown), never `UNKNOWN` or a bare HTTP/2 error.

use std::time::{Duration, Instant};

use mig_proto::inference::v1::inference_client::InferenceClient;
use mig_proto::inference::v1::{GenerateRequest, GenerateStreamResponse, WorkerHealth};
use mig_testkit::gateway::{gateway_client, list_workers};
use mig_testkit::process::{child_pids, gateway_up};
use tonic::Code;

/// A stream of 4,000 identity tokens whose client has a 1 KiB window, its
/// first message read: the gateway can send only as fast as it reads.
async fn slow_reader(url: &str) -> tonic::Streaming<GenerateStreamResponse> {
    slow_reader_of(url, "identity", 4000).await
}

/// A stream of `max_tokens` from `model` whose client has a 1 KiB window,
/// its first message read.
async fn slow_reader_of(
    url: &str,
    model: &str,
    max_tokens: u32,
) -> tonic::Streaming<GenerateStreamResponse> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .initial_stream_window_size(1024)
        .connect()
        .await
        .unwrap();
    let mut stream = InferenceClient::new(channel)
        .generate_stream(GenerateRequest {
            model: model.into(),
            prompt: "abc".into(),
            max_tokens: Some(max_tokens),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();
    stream
}

/// How a stream ended: its final message, or its status.
enum End {
    Finished,
    Failed(tonic::Status),
}

#[tokio::test]
async fn a_worker_killed_under_32_streams_ends_each_clearly_and_is_back() {
    // A batch of 32: every stream runs on the worker when it is killed (with
    // fewer places the rest would wait in the gateway's queue, and be served
    // by the restarted worker, 200 tokens each: a minute on this machine).
    let fleet = format!(
        "[[model]]\nname = \"smollm2-135m\"\npath = \"{}\"\nslices = [\"cpu:0\"]\nargs = [\"--max-batch-size\", \"32\"]\n",
        mig_testkit::smollm2().display()
    );
    let mut gateway = gateway_up("faults-kill", &fleet, &[]);
    let addr = gateway.url();
    let client = gateway_client(&addr).await;
    let request = GenerateRequest {
        model: "smollm2-135m".into(),
        prompt: "Once upon a time".into(),
        max_tokens: Some(200),
        ignore_eos: true,
        ..Default::default()
    };
    let (first_token, mut first_rx) = tokio::sync::mpsc::channel::<()>(32);
    let mut streams = Vec::new();
    for _ in 0..32 {
        let mut client = client.clone();
        let request = request.clone();
        let first_token = first_token.clone();
        streams.push(tokio::spawn(async move {
            let mut stream = match client.generate_stream(request).await {
                Ok(stream) => stream.into_inner(),
                Err(status) => return End::Failed(status),
            };
            loop {
                match stream.message().await {
                    Ok(Some(m)) if m.finish_reason != 0 => return End::Finished,
                    Ok(Some(_)) => {
                        let _ = first_token.try_send(());
                    }
                    Ok(None) => panic!("a stream ended without a final message or a status"),
                    Err(status) => return End::Failed(status),
                }
            }
        }));
    }
    first_rx.recv().await.unwrap();
    let workers = child_pids(gateway.pid());
    assert_eq!(workers.len(), 1, "{workers:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(workers[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    let mut cut = 0;
    for stream in streams {
        let end = tokio::time::timeout(Duration::from_secs(60), stream)
            .await
            .expect("a stream hung after the worker died")
            .unwrap();
        if let End::Failed(status) = end {
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
            let message = status.message();
            // Running streams name the worker; requests that waited in the
            // gateway's admission queue and got their turn while the worker
            // was down say that no worker is healthy.
            assert!(
                (message.contains("worker `smollm2-135m@cpu:0`")
                    && (message.contains("was lost after") || message.contains("unreachable")))
                    || message.starts_with("no healthy worker serves model `smollm2-135m`"),
                "{message}"
            );
            cut += 1;
        }
    }
    assert!(cut > 0, "the kill cut no stream");

    // A request sent while the worker is down (nothing answered it yet)
    // waits in the gateway's queue for the restart instead of failing.
    let during = {
        let mut client = client.clone();
        let request = GenerateRequest {
            max_tokens: Some(4),
            ..request.clone()
        };
        tokio::spawn(async move { client.generate(request).await })
    };

    // The supervisor restarts it; the model is served again.
    let started = Instant::now();
    loop {
        let workers = list_workers(&addr, "smollm2-135m").await;
        if workers.len() == 1
            && workers[0].restarts >= 1
            && workers[0].health == WorkerHealth::Serving as i32
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{workers:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut client = gateway_client(&addr).await;
    let answer = client
        .generate(GenerateRequest {
            max_tokens: Some(4),
            ..request
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.usage.unwrap().completion_tokens, 4);
    let during = tokio::time::timeout(Duration::from_secs(60), during)
        .await
        .expect("the request sent while the worker was down hung")
        .unwrap()
        .expect("the request sent while the worker was down failed");
    assert_eq!(during.into_inner().usage.unwrap().completion_tokens, 4);
    gateway.terminate();
}

#[tokio::test]
async fn a_stream_longer_than_the_drain_ends_unavailable_saying_so() {
    // `gateway_up` gives the gateway 3 s to drain.
    let mut gateway = gateway_up(
        "faults-drain",
        "[[model]]\nname = \"identity\"\nidentity = true\nslices = [\"cpu:0\"]\n",
        &[],
    );
    let mut stream = slow_reader(&gateway.url()).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gateway.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    // A slow reader: 4,000 tokens would take 40 s.
    let started = Instant::now();
    let status = loop {
        match stream.message().await {
            Ok(Some(m)) => {
                assert_eq!(m.finish_reason, 0, "finished within the drain: {m:?}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().starts_with("gateway shutting down"),
        "{status:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let exit = gateway.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn a_client_that_reads_nothing_gives_back_its_place_on_the_worker() {
    // One place on the worker: a second request waits for the first's.
    let gateway = gateway_up(
        "faults-stall",
        "[[model]]\nname = \"identity\"\nidentity = true\nslices = [\"cpu:0\"]\nargs = [\"--max-batch-size\", \"1\"]\n",
        &["--stall-timeout", "1"],
    );
    // The identity worker runs ahead of the client: messages wait in the
    // gateway when the window fills.
    let stalled = slow_reader_of(&gateway.url(), "identity", 4000).await;
    the_stalled_stream_gives_back_its_place(gateway, stalled, "identity").await;
}

#[tokio::test]
async fn a_client_that_reads_nothing_of_a_slow_worker_gives_back_its_place() {
    // A real model sends a token at a time: the gateway's last look at
    // the stream before the client's window fills finds the worker has
    // nothing yet, and the writer does not look again when it has.
    let fleet = format!(
        "[[model]]\nname = \"smollm2-135m\"\npath = \"{}\"\nslices = [\"cpu:0\"]\nargs = [\"--max-batch-size\", \"1\"]\n",
        mig_testkit::smollm2().display()
    );
    let gateway = gateway_up("faults-stall-slow", &fleet, &["--stall-timeout", "1"]);
    let stalled = slow_reader_of(&gateway.url(), "smollm2-135m", 1500).await;
    the_stalled_stream_gives_back_its_place(gateway, stalled, "smollm2-135m").await;
}

/// The client of `stalled` reads nothing: its window fills, the gateway
/// stops relaying, and after `--stall-timeout` (1 s) the stream gives its
/// place on `model`'s worker (its only one) to the next request.
async fn the_stalled_stream_gives_back_its_place(
    mut gateway: mig_testkit::process::Process,
    mut stalled: tonic::Streaming<GenerateStreamResponse>,
    model: &str,
) {
    let started = Instant::now();
    let mut other = gateway_client(&gateway.url()).await;
    let answer = other
        .generate(GenerateRequest {
            model: model.into(),
            prompt: "xyz".into(),
            max_tokens: Some(4),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.usage.unwrap().completion_tokens, 4);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(15),
        "the second request waited {waited:?} for the stalled stream's place"
    );
    // Reading again, the client finds what was sent before, then the status.
    let status = loop {
        match stalled.message().await {
            Ok(Some(m)) => assert_eq!(m.finish_reason, 0, "the stalled stream finished: {m:?}"),
            Ok(None) => panic!("the stalled stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("read nothing of this stream"),
        "{status:?}"
    );
    gateway.terminate();
}
