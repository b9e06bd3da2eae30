//! A worker whose engine thread dies, under a real `mig-gateway up`: the
//! request in flight ends with one clear status naming the worker, the
//! worker process exits non-zero at once (it does not linger, answering
//! "unhealthy" then "healthy" for ever), the supervisor restarts it, and the
//! next request is served. The identity model's test-only fault switch
//! (`--fault-panic-on`) makes the engine panic.

use std::time::{Duration, Instant};

use mig_proto::inference::v1::{GenerateRequest, WorkerHealth, WorkerStatus};
use mig_testkit::gateway::{gateway_client, list_workers};
use mig_testkit::process::{alive, child_pids, gateway_up};

const MARKER: &str = "PANIC-NOW";

fn request(prompt: &str) -> GenerateRequest {
    GenerateRequest {
        model: "identity".into(),
        prompt: prompt.into(),
        max_tokens: Some(5),
        ..Default::default()
    }
}

async fn the_worker(addr: &str) -> WorkerStatus {
    let workers = list_workers(addr, "identity").await;
    assert_eq!(workers.len(), 1, "{workers:?}");
    workers[0].clone()
}

#[tokio::test]
async fn a_dead_engine_ends_its_request_clearly_and_the_worker_is_restarted() {
    let fleet = format!(
        "[[model]]\nname = \"identity\"\nidentity = true\nslices = [\"cpu:0\"]\n\
         args = [\"--fault-panic-on\", \"{MARKER}\"]\n"
    );
    let mut gateway = gateway_up("engine-failure", &fleet, &[]);
    let addr = gateway.url();
    let mut client = gateway_client(&addr).await;
    let answer = client.generate(request("abc")).await.unwrap().into_inner();
    assert_eq!(answer.text, "abcab", "served before the fault");
    let workers = child_pids(gateway.pid());
    assert_eq!(workers.len(), 1, "{workers:?}");
    let first = the_worker(&addr).await;

    // The engine panics on this prompt: one status, UNAVAILABLE, naming the
    // worker (and so its slice) and why.
    let status = client
        .generate(request(&format!("then {MARKER} here")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    let message = status.message();
    assert!(
        message.contains(&first.worker_id) && message.contains("the engine failed (panicked"),
        "{message}"
    );
    assert!(message.len() < 600, "a bounded message: {message}");

    // The process is gone, with a failure the supervisor saw, and a new one
    // serves on the same slice.
    let started = Instant::now();
    let restarted = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not restarted within 60 s\n{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let status = the_worker(&addr).await;
        if status.restarts == 1 && status.health == WorkerHealth::Serving as i32 {
            break status;
        }
    };
    assert!(!alive(workers[0]), "the failed worker exited");
    assert_eq!(restarted.slice, first.slice);
    let log = gateway.log();
    assert!(
        log.contains("engine thread panicked; the worker stops"),
        "the worker said why:\n{log}"
    );
    assert!(
        log.contains("worker exited; restarting it") && log.contains("exit status: 1"),
        "exited non-zero and was restarted:\n{log}"
    );

    // The next request is served by the new process.
    let answer = client.generate(request("xyz")).await.unwrap().into_inner();
    assert_eq!(answer.text, "xyzxy");
    gateway.terminate();
}
