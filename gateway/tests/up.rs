//! `mig-gateway up` as a user runs it: real gateway and worker processes.
//! Cancelling a stream stops the worker generating; an expired deadline does
//! too; stopping the gateway leaves no worker process behind.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mig_proto::inference::v1::{GenerateRequest, ListModelsRequest, WorkerHealth};
use mig_proto::worker::v1::InfoRequest;

/// Kills the gateway if a test fails half-way (its workers follow it, by
/// their parent-death signal).
struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_up(fleet: &str) -> (Gateway, String) {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let fleet_path = dir.join(format!("fleet-{}.toml", std::process::id()));
    std::fs::write(&fleet_path, fleet).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mig-gateway"))
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--grace-seconds",
            "5",
            "--drain-seconds",
            "3",
            "--health-interval",
            "0.2",
        ])
        .arg("--fleet")
        .arg(&fleet_path)
        .current_dir(common::repo_root())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start mig-gateway up");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    // "mig-gateway listening on 127.0.0.1:PORT; models: smollm2-135m (1/1 workers)"
    let addr = line
        .strip_prefix("mig-gateway listening on ")
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
    assert!(line.contains("smollm2-135m (1/1 workers)"), "{line}");
    (Gateway(child), format!("http://{addr}"))
}

fn child_pids(pid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        pids.extend(
            children
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    pids
}

fn alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.split_whitespace()
                .nth(2)
                .is_some_and(|state| state != "Z")
        })
        .unwrap_or(false)
}

/// The worker's generated-token counter once it has stopped moving; fails
/// if it is still moving after 30 seconds.
async fn settled_tokens(worker: &str) -> u64 {
    let mut client = common::worker_client(worker).await;
    let mut last = u64::MAX;
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the worker is still generating after 30 s"
        );
        let now = client
            .info(InfoRequest {})
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
    common::chat("smollm2-135m", "What is the capital of France?", 2000)
}

#[tokio::test]
async fn cancel_deadline_and_shutdown_with_real_processes() {
    let fleet = format!(
        "[[worker]]\nmodel = \"smollm2-135m\"\npath = \"{}\"\nslice = \"cpu:0\"\n",
        common::demo_model(common::SMOLLM2).display()
    );
    let (gateway, addr) = start_up(&fleet);
    let mut client = common::gateway_client(&addr).await;
    let models = client
        .list_models(ListModelsRequest {})
        .await
        .unwrap()
        .into_inner()
        .models;
    let worker = &models[0].workers[0];
    assert_eq!(worker.health, WorkerHealth::Serving as i32);
    assert_eq!(worker.profile, "cpu-1c");
    let worker_addr = worker.address.clone();
    let base = settled_tokens(&worker_addr).await;

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
    let after_cancel = settled_tokens(&worker_addr).await;
    let generated = after_cancel - base;
    assert!(
        (5..200).contains(&generated),
        "{generated} tokens generated for a stream cancelled after 5 of 2000"
    );

    // An expired deadline stops the worker too.
    let mut bare = common::bare_gateway_client(&addr);
    let mut request = tonic::Request::new(long_chat());
    request.set_timeout(Duration::from_millis(500));
    let status = bare.generate(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    let after_deadline = settled_tokens(&worker_addr).await;
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
    let gateway_pid = gateway.0.id();
    let workers = child_pids(gateway_pid);
    assert_eq!(workers.len(), 1, "one worker process: {workers:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gateway_pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut gateway = gateway;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = gateway.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "gateway did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "gateway exit: {status}");
    assert!(
        !workers.iter().any(|&pid| alive(pid)),
        "worker left running: {workers:?}"
    );
}
