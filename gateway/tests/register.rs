//! Workers started by hand with `--gateway` register themselves on the
//! gateway's internal listener, with its token: a real `mig-worker` process
//! joins a gateway that had no fleet, receives traffic, and leaves routing
//! when its heartbeats stop (killed) or at once when it says it is leaving
//! (SIGTERM). A worker without the token is refused and never receives a
//! prompt.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mig_gateway::fleet::registration::HeartbeatPolicy;
use mig_proto::inference::v1::{EmbedRequest, WorkerHealth, WorkerOrigin};

/// Kills the worker if the test fails half-way.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A worker process registering at `internal` (with the token in
/// `token_file`, if given); its log goes to the returned file.
fn start_worker_process(internal: &str, token_file: Option<&Path>) -> (Worker, PathBuf) {
    let bin = mig_gateway::fleet::supervisor::default_worker_bin();
    let log = std::env::temp_dir().join(format!(
        "mig-test-register-{}-{}.log",
        std::process::id(),
        token_file.is_some()
    ));
    let mut command = Command::new(&bin);
    command
        .args(["serve", "--model-name", "minilm-l6", "--slice", "cpu:1"])
        .arg("--model-path")
        .arg(mig_testkit::minilm())
        .args(["--listen", "127.0.0.1:0", "--gateway", internal])
        .env("RAYON_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    if let Some(file) = token_file {
        command.arg("--registration-token-file").arg(file);
    }
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
    (Worker(child), log)
}

/// Workers the gateway lists for `minilm-l6` (none if it does not know it).
async fn listed(gateway: &str) -> Vec<mig_proto::inference::v1::WorkerStatus> {
    mig_testkit::gateway::list_workers(gateway, "minilm-l6").await
}

/// Polls `listed` until `done` holds; fails after `limit`. Returns how long it took.
async fn wait_until(
    gateway: &str,
    limit: Duration,
    what: &str,
    done: impl Fn(&[mig_proto::inference::v1::WorkerStatus]) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        if done(&listed(gateway).await) {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn embed() -> EmbedRequest {
    EmbedRequest {
        model: "minilm-l6".into(),
        inputs: vec!["hello".into()],
        ..Default::default()
    }
}

#[tokio::test]
async fn registered_worker_serves_and_leaves_when_killed() {
    let reg = mig_testkit::gateway::start_gateway_with(
        &[],
        HeartbeatPolicy {
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
        },
    )
    .await;
    let gateway = reg.gateway.clone();
    let mut client = mig_testkit::gateway::gateway_client(&gateway).await;
    let unknown = client.embed(embed()).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let (mut worker, _) = start_worker_process(&reg.internal, Some(&reg.token_file));
    wait_until(&gateway, Duration::from_secs(120), "registration", |w| {
        w.len() == 1 && w[0].health == WorkerHealth::Serving as i32
    })
    .await;
    let status = &listed(&gateway).await[0];
    assert_eq!(status.origin, WorkerOrigin::Registered as i32);
    assert_eq!(status.slice, "cpu:1");
    assert_eq!(status.profile, "cpu-1c");

    let answer = client.embed(embed()).await.unwrap().into_inner();
    assert_eq!(answer.embeddings[0].values.len(), 384);
    let served_by = answer.served_by.unwrap();
    assert_eq!(served_by.worker_id, status.worker_id);
    assert_eq!(served_by.slice, "cpu:1");
    assert_eq!(served_by.memory_bytes, status.memory_bytes);
    assert!(served_by.memory_bytes > 0 && served_by.gpu.is_empty());

    // kill -9: no goodbye, so the heartbeat timeout (1 s) drops it.
    worker.0.kill().unwrap();
    worker.0.wait().unwrap();
    wait_until(&gateway, Duration::from_secs(10), "drop after kill", |w| {
        w.is_empty()
    })
    .await;
    let gone = client.embed(embed()).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound, "{gone:?}");
}

#[tokio::test]
async fn a_worker_stopped_with_sigterm_leaves_at_once() {
    // A timeout far longer than the wait below: only the `leaving`
    // heartbeat can take the worker out in time.
    let reg = mig_testkit::gateway::start_gateway_with(
        &[],
        HeartbeatPolicy {
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(60),
        },
    )
    .await;
    let gateway = reg.gateway.clone();
    let (worker, _) = start_worker_process(&reg.internal, Some(&reg.token_file));
    wait_until(&gateway, Duration::from_secs(120), "registration", |w| {
        w.len() == 1 && w[0].health == WorkerHealth::Serving as i32
    })
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_until(&gateway, Duration::from_secs(15), "leave on SIGTERM", |w| {
        w.is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_rogue_worker_without_the_token_is_refused_and_gets_no_prompt() {
    let reg = mig_testkit::gateway::start_gateway_with(
        &[],
        HeartbeatPolicy {
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
        },
    )
    .await;
    // The public port has no registration service at all.
    let public = mig_proto::worker::v1::registration_client::RegistrationClient::connect(
        reg.gateway.clone(),
    )
    .await
    .unwrap()
    .heartbeat(mig_proto::worker::v1::HeartbeatRequest::default())
    .await
    .unwrap_err();
    assert_eq!(public.code(), tonic::Code::Unimplemented, "{public:?}");

    let (_rogue, log) = start_worker_process(&reg.internal, None);
    // It loads, heartbeats, and is turned away each time.
    let started = Instant::now();
    let refusal = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("heartbeat failed")) {
            break line.to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no refusal in the worker's log:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        refusal.contains("authentication credentials")
            && refusal.contains("--registration-token-file"),
        "{refusal}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(listed(&reg.gateway).await.is_empty(), "never listed");
    let mut client = mig_testkit::gateway::gateway_client(&reg.gateway).await;
    let refused = client.embed(embed()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound, "{refused:?}");
}
