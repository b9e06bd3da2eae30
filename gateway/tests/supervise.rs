//! `mig-gateway up` on CPU slices with `slices = "auto"`: one pinned worker
//! per slice, a killed worker comes back and serves again, and Ctrl-C stops
//! the gateway and its workers in order, leaving none behind.

use std::time::{Duration, Instant};

use mig_proto::inference::v1::{EmbedRequest, WorkerHealth, WorkerOrigin, WorkerStatus};
use mig_slices::SliceId;
use mig_testkit::process::{alive, arg_of, child_pids, cpus_allowed, env_of, gateway_up};

/// The gateway's view of a model's one worker.
async fn worker_status(addr: &str, model: &str) -> WorkerStatus {
    let workers = mig_testkit::gateway::list_workers(addr, model).await;
    assert_eq!(workers.len(), 1, "{model}: {workers:?}");
    workers[0].clone()
}

/// The gateway's child process serving `model`.
fn worker_pid(gateway_pid: u32, model: &str) -> u32 {
    let pids: Vec<u32> = child_pids(gateway_pid)
        .into_iter()
        .filter(|&p| alive(p) && arg_of(p, "--model-name").as_deref() == Some(model))
        .collect();
    assert_eq!(pids.len(), 1, "one `{model}` worker process: {pids:?}");
    pids[0]
}

/// The worker process is pinned to exactly its slice's cores, its compute
/// pool sized to them, and it reports that slice.
fn assert_pinned(pid: u32, status: &WorkerStatus) -> Vec<usize> {
    let slice: SliceId = status.slice.parse().unwrap();
    let cores = slice.cores().expect("a CPU slice").cores().to_vec();
    let allowed: SliceId = format!("cpu:{}", cpus_allowed(pid)).parse().unwrap();
    assert_eq!(
        allowed.cores().unwrap().cores(),
        cores.as_slice(),
        "pid {pid} may run on {} but reports {}",
        cpus_allowed(pid),
        status.slice
    );
    assert_eq!(status.profile, format!("cpu-{}c", cores.len()));
    assert_eq!(
        env_of(pid, "RAYON_NUM_THREADS"),
        Some(cores.len().to_string())
    );
    cores
}

/// The scrape file's targets, each scraped: slice (from its series) to address.
async fn scrape_targets(path: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut found = std::collections::BTreeMap::new();
    for target in json[0]["targets"].as_array().unwrap() {
        let addr = target.as_str().unwrap();
        let body = mig_testkit::http::scrape(addr.parse().unwrap()).await;
        let slice = body
            .split("mig_worker_build_info{")
            .nth(1)
            .and_then(|rest| rest.split("slice=\"").nth(1))
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("{addr} serves no worker metrics:\n{body}"));
        found.insert(slice.to_string(), addr.to_string());
    }
    found
}

fn embed(text: &str) -> EmbedRequest {
    EmbedRequest {
        model: "minilm-l6".into(),
        inputs: vec![text.into()],
        ..Default::default()
    }
}

#[tokio::test]
async fn auto_cpu_slices_are_pinned_restarted_and_cleaned_up() {
    let fleet = format!(
        "[[model]]\nname = \"smollm2-135m\"\npath = \"{}\"\nslices = \"auto\"\n\
         [[model]]\nname = \"minilm-l6\"\npath = \"{}\"\n",
        mig_testkit::smollm2().display(),
        mig_testkit::minilm().display()
    );
    let sd = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("workers-{}.json", std::process::id()));
    let mut gateway = gateway_up(
        "auto",
        &fleet,
        &["--worker-metrics-sd", sd.to_str().unwrap()],
    );
    assert!(
        gateway
            .ready_line
            .contains("minilm-l6 (1/1 workers), smollm2-135m (1/1 workers)"),
        "{}",
        gateway.ready_line
    );
    let addr = gateway.url();
    let gateway_pid = gateway.pid();

    // One worker per model, each pinned to its own slice; slices disjoint.
    let smol = worker_status(&addr, "smollm2-135m").await;
    let mini = worker_status(&addr, "minilm-l6").await;
    assert_eq!(smol.origin, WorkerOrigin::Supervised as i32);
    let smol_cores = assert_pinned(worker_pid(gateway_pid, "smollm2-135m"), &smol);
    let mini_pid = worker_pid(gateway_pid, "minilm-l6");
    let mini_cores = assert_pinned(mini_pid, &mini);
    assert!(
        smol_cores.iter().all(|c| !mini_cores.contains(c)),
        "slices overlap: {} and {}",
        smol.slice,
        mini.slice
    );
    assert!(mini.memory_bytes > 0, "a CPU slice reports host memory");

    // Each worker serves /metrics on the port the scrape file lists.
    let targets = scrape_targets(&sd).await;
    assert_eq!(targets.len(), 2, "{targets:?}");
    assert!(targets.contains_key(&smol.slice) && targets.contains_key(&mini.slice));

    let mut client = mig_testkit::gateway::gateway_client(&addr).await;
    let before = client.embed(embed("before")).await.unwrap().into_inner();
    assert_eq!(before.embeddings[0].values.len(), 384);

    // kill -9: the supervisor restarts it on the same slice, and it serves.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(mini_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let started = Instant::now();
    let restarted = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the killed worker did not come back within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let status = worker_status(&addr, "minilm-l6").await;
        if status.restarts == 1 && status.health == WorkerHealth::Serving as i32 {
            break status;
        }
    };
    let new_pid = worker_pid(gateway_pid, "minilm-l6");
    assert_ne!(new_pid, mini_pid);
    assert_eq!(restarted.slice, mini.slice);
    assert_pinned(new_pid, &restarted);
    let after = client.embed(embed("before")).await.unwrap().into_inner();
    assert_eq!(
        after.embeddings[0].values, before.embeddings[0].values,
        "the restarted worker computes the same embedding"
    );
    // The scrape file follows the restart to the new port.
    let after_restart = scrape_targets(&sd).await;
    assert_eq!(after_restart.len(), 2, "{after_restart:?}");
    assert_ne!(after_restart[&mini.slice], targets[&mini.slice]);
    assert_eq!(after_restart[&smol.slice], targets[&smol.slice]);

    // The other slice's worker was not disturbed.
    assert_eq!(worker_status(&addr, "smollm2-135m").await.restarts, 0);

    // Ctrl-C (SIGINT to the process group): only the gateway gets it; it
    // drains, then stops both workers. None dies early and is restarted;
    // nothing is left behind.
    let workers = child_pids(gateway_pid);
    assert_eq!(workers.len(), 2, "two worker processes: {workers:?}");
    gateway.interrupt_group();
    assert!(
        !workers.iter().any(|&pid| alive(pid)),
        "worker left running: {workers:?}"
    );
    let log = gateway.log();
    assert_eq!(
        log.matches("worker exited; restarting it").count(),
        1,
        "only the kill -9 caused a restart:\n{log}"
    );
    assert_eq!(log.matches("worker stopped pid=").count(), 2, "{log}");
}
