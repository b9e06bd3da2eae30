//! `mig-gateway up` as a user runs it: real gateway and worker processes.
//! Cancelling a stream stops the worker generating; an expired deadline does
//! too; stopping the gateway leaves no worker process behind.

use std::time::{Duration, Instant};

use mig_proto::inference::v1::{GenerateRequest, WorkerHealth};
use mig_proto::worker::v1::InfoRequest;
use mig_serve::secret::Secret;
use mig_serve::worker_flags::CALLER_TOKEN_ENV;
use mig_testkit::process::{alive, child_pids, gateway_up};

/// The worker's generated-token counter once it has stopped moving; fails
/// if it is still moving after 30 seconds. `token` is the worker's caller
/// token (read from its environment, as its own user can).
async fn settled_tokens(worker: &str, token: &Secret) -> u64 {
    let mut client = mig_testkit::gateway::worker_client(worker).await;
    let mut last = u64::MAX;
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the worker is still generating after 30 s"
        );
        let mut info = tonic::Request::new(InfoRequest {});
        token.attach(info.metadata_mut());
        let now = client
            .info(info)
            .await
            .unwrap()
            .into_inner()
            .generated_tokens_total;
        if now == last {
            return now;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

fn long_chat() -> GenerateRequest {
    mig_testkit::gateway::chat("smollm2-135m", "What is the capital of France?", 2000)
}

#[tokio::test]
async fn cancel_deadline_and_shutdown_with_real_processes() {
    let fleet = format!(
        "[[model]]\nname = \"smollm2-135m\"\npath = \"{}\"\nslices = [\"cpu:0\"]\n",
        mig_testkit::smollm2().display()
    );
    let mut gateway = gateway_up("cancel", &fleet, &[]);
    assert!(
        gateway.ready_line.contains("smollm2-135m (1/1 workers)"),
        "{}",
        gateway.ready_line
    );
    let addr = gateway.url();
    let mut client = mig_testkit::gateway::gateway_client(&addr).await;
    let workers = mig_testkit::gateway::list_workers(&addr, "smollm2-135m").await;
    let worker = &workers[0];
    assert_eq!(worker.health, WorkerHealth::Serving as i32);
    assert_eq!(worker.profile, "cpu-1c");
    let worker_addr = worker.address.clone();

    // The worker serves its gateway only: a local user who finds its port
    // cannot skip the gateway (the token is in the worker's environment,
    // not on its command line).
    let around = mig_testkit::gateway::worker_client(&worker_addr)
        .await
        .generate(long_chat())
        .await
        .unwrap_err();
    assert_eq!(around.code(), tonic::Code::Unauthenticated, "{around:?}");
    let worker_pid = child_pids(gateway.pid())[0];
    assert_eq!(
        mig_testkit::process::arg_of(worker_pid, "--caller-token"),
        None
    );
    let token = mig_testkit::process::env_of(worker_pid, CALLER_TOKEN_ENV)
        .expect("the caller token is in the worker's environment");
    assert_eq!(token.len(), 64);
    assert!(!gateway.log().contains(&token), "a token is never logged");
    let token = Secret::new(&token).unwrap();
    let base = settled_tokens(&worker_addr, &token).await;

    // Cancel a stream after a few messages: the worker stops at its next token.
    let mut stream = client
        .generate_stream(long_chat())
        .await
        .unwrap()
        .into_inner();
    for _ in 0..5 {
        stream.message().await.unwrap().expect("a token");
    }
    drop(stream);
    let after_cancel = settled_tokens(&worker_addr, &token).await;
    let generated = after_cancel - base;
    assert!(
        (5..200).contains(&generated),
        "{generated} tokens generated for a stream cancelled after 5 of 2000"
    );

    // An expired deadline stops the worker too.
    let mut bare = mig_testkit::gateway::bare_gateway_client(&addr);
    let mut request = tonic::Request::new(long_chat());
    request.set_timeout(Duration::from_millis(500));
    let status = bare.generate(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    let after_deadline = settled_tokens(&worker_addr, &token).await;
    assert!(
        after_deadline - after_cancel < 200,
        "{}",
        after_deadline - after_cancel
    );

    // The next request is served.
    let mut short = long_chat();
    short.max_tokens = Some(8);
    let answer = client.generate(short).await.unwrap().into_inner();
    assert_eq!(answer.usage.unwrap().completion_tokens, 8);

    // SIGTERM stops the gateway and its worker; nothing is left behind.
    let gateway_pid = gateway.pid();
    let workers = child_pids(gateway_pid);
    assert_eq!(workers.len(), 1, "one worker process: {workers:?}");
    gateway.terminate();
    assert!(
        !workers.iter().any(|&pid| alive(pid)),
        "worker left running: {workers:?}"
    );
}

#[tokio::test]
async fn an_identity_entry_starts_the_echo_model() {
    let fleet = "[[model]]\nname = \"identity\"\nidentity = true\nslices = [\"cpu:0\"]\n";
    let mut gateway = gateway_up("identity", fleet, &[]);
    assert!(gateway.ready_line.contains("identity (1/1 workers)"));
    let addr = gateway.url();
    let workers = mig_testkit::gateway::list_workers(&addr, "identity").await;
    assert_eq!(workers[0].engine, "identity (echo, no model)");
    assert_eq!(workers[0].health, WorkerHealth::Serving as i32);
    let mut client = mig_testkit::gateway::gateway_client(&addr).await;
    let answer = client
        .generate(GenerateRequest {
            model: "identity".into(),
            prompt: "abc".into(),
            max_tokens: Some(7),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.text, "abcabca");
    assert_eq!(answer.usage.unwrap().completion_tokens, 7);
    gateway.terminate();
}
