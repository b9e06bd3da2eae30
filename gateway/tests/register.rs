//! Workers started by hand with `--gateway` register themselves: a real
//! `mig-worker` process joins a gateway that had no fleet, receives traffic,
//! and leaves routing when its heartbeats stop (killed) or at once when it
//! says it is leaving (SIGTERM).

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

fn start_worker_process(gateway: &str) -> Worker {
    let bin = mig_gateway::fleet::supervisor::default_worker_bin();
    let child = Command::new(&bin)
        .args(["serve", "--model-name", "minilm-l6", "--slice", "cpu:1"])
        .arg("--model-path")
        .arg(mig_testkit::minilm())
        .args(["--listen", "127.0.0.1:0", "--gateway", gateway])
        .env("RAYON_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
    Worker(child)
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
    let gateway = mig_testkit::gateway::start_gateway_with(
        &[],
        HeartbeatPolicy {
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
        },
    )
    .await;
    let mut client = mig_testkit::gateway::gateway_client(&gateway).await;
    let unknown = client.embed(embed()).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let mut worker = start_worker_process(&gateway);
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
    let gateway = mig_testkit::gateway::start_gateway_with(
        &[],
        HeartbeatPolicy {
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(60),
        },
    )
    .await;
    let worker = start_worker_process(&gateway);
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
