//! Gateways in replicas: two `mig-gateway serve` processes with no fleet,
//! one worker registering with both (one by address, one by a name it
//! resolves), any replica serving any request. One gateway is killed under
//! load: clients that retry on the other are served, and the worker stays
//! registered with the survivor.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mig_proto::inference::v1::inference_client::InferenceClient;
use mig_proto::inference::v1::{GenerateRequest, WorkerHealth};
use mig_testkit::process::{gateway_serve, worker, Process};
use tonic::transport::Channel;

/// A gateway that takes registrations with the token in `token_file`, and
/// its internal (registration) address.
fn replica(name: &str, token_file: &str) -> (Process, String) {
    let gateway = gateway_serve(
        name,
        &[
            "--accept-registrations",
            "--internal-listen",
            "127.0.0.1:0",
            "--registration-token-file",
            token_file,
            "--heartbeat-interval",
            "0.2",
            "--heartbeat-timeout",
            "1",
        ],
    );
    let internal = gateway.address_after("internal: ");
    (gateway, internal)
}

async fn serving(gateway: &str) -> usize {
    mig_testkit::gateway::list_workers(gateway, "identity")
        .await
        .iter()
        .filter(|w| w.health == WorkerHealth::Serving as i32)
        .count()
}

async fn wait_serving(gateway: &str, what: &str) {
    let started = Instant::now();
    while serving(gateway).await != 1 {
        assert!(started.elapsed() < Duration::from_secs(60), "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn request() -> GenerateRequest {
    GenerateRequest {
        model: "identity".into(),
        prompt: "replicas".into(),
        max_tokens: Some(8),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_worker_registers_with_every_replica_and_survives_one_killed_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "replica-test-registration-token\n").unwrap();
    let token = token_file.to_str().unwrap();
    let (mut a, a_internal) = replica("replica-a", token);
    let (b, b_internal) = replica("replica-b", token);
    // B by name: `localhost` resolves (to 127.0.0.1 here), as a headless
    // Service name resolves to its replicas.
    let b_port = b_internal.rsplit(':').next().unwrap();
    let mut w = worker(
        "replicas",
        &[
            "--identity",
            "--model-name",
            "identity",
            "--slice",
            "cpu:0",
            "--gateway",
            &format!("http://{a_internal}"),
            "--gateway",
            &format!("http://localhost:{b_port}"),
            "--registration-token-file",
            token,
        ],
    );
    wait_serving(&a.url(), "registered with A").await;
    wait_serving(&b.url(), "registered with B").await;

    let a_client = InferenceClient::connect(a.url()).await.unwrap();
    let b_client = InferenceClient::connect(b.url()).await.unwrap();
    // Both replicas serve the same worker.
    for mut c in [a_client.clone(), b_client.clone()] {
        let answer = c.generate(request()).await.unwrap().into_inner();
        assert_eq!(answer.usage.unwrap().completion_tokens, 8);
    }

    // 4 clients, 150 requests each, preferring A and retrying on B when A
    // fails; A is killed while they run.
    let done = Arc::new(AtomicUsize::new(0));
    let retried = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (mut a_client, mut b_client): (InferenceClient<Channel>, _) =
            (a_client.clone(), b_client.clone());
        let (done, retried) = (done.clone(), retried.clone());
        clients.push(tokio::spawn(async move {
            for _ in 0..150 {
                let first =
                    tokio::time::timeout(Duration::from_secs(5), a_client.generate(request()))
                        .await;
                let answer = match first {
                    Ok(Ok(answer)) => answer,
                    _ => {
                        retried.fetch_add(1, Ordering::Relaxed);
                        b_client
                            .generate(request())
                            .await
                            .expect("the surviving replica serves the retry")
                    }
                };
                assert_eq!(answer.into_inner().usage.unwrap().completion_tokens, 8);
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    while done.load(Ordering::Relaxed) < 100 {
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(done.load(Ordering::Relaxed), 600);
    assert!(
        retried.load(Ordering::Relaxed) > 0,
        "no request went to the survivor after A was killed"
    );

    // The worker lives on, still registered with B (its heartbeats to A
    // fail and are retried, which does not drop it anywhere).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(w.child.try_wait().unwrap().is_none(), "{}", w.log());
    assert_eq!(serving(&b.url()).await, 1, "{}", w.log());
    let log = w.log();
    assert!(log.contains("registered with the gateway"), "{log}");
    assert!(log.contains("heartbeat failed; retrying"), "{log}");
    w.terminate();
}
