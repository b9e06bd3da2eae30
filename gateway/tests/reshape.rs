//! `mig-gateway reshape` on a running gateway whose MIG device is
//! simulated (`up --simulate-mig`), its slices served by CPU identity
//! workers: under load, the layout changes and no request fails; the dry
//! run changes nothing; the admin listener takes only its token.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mig_proto::admin::v1::admin_client::AdminClient;
use mig_proto::admin::v1::ReshapeRequest;
use mig_proto::inference::v1::GenerateRequest;
use mig_slices::catalog;
use mig_slices::reshape::control::{LiveGpu, MigControl};
use mig_slices::reshape::simulated::SimulatedMig;
use mig_slices::reshape::steps::{plan_steps, Target};
use mig_testkit::gateway::{gateway_client, list_workers};
use mig_testkit::process::{bin, gateway_up, run_to_end, Process};
use tonic::Code;

const TOKEN: &str = "reshape-test-admin-token-0123456789";

/// A scratch folder of this test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mig-reshape-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One A100 80GB: `3g.40gb@0`, `2g.20gb@4`, `1g.10gb@6`.
fn start_layout(dir: &Path) -> (PathBuf, LiveGpu) {
    let a100 = catalog::gpu_model("a100-80gb").unwrap();
    let sim = SimulatedMig::new(vec![(
        a100,
        vec![("3g.40gb", 0), ("2g.20gb", 4), ("1g.10gb", 6)],
    )])
    .unwrap();
    let path = dir.join("mig-state.json");
    std::fs::write(&path, sim.to_json()).unwrap();
    let gpu = sim.gpus().unwrap().remove(0);
    (path, gpu)
}

fn layout(state: &Path) -> Vec<String> {
    let sim = SimulatedMig::from_json(&std::fs::read_to_string(state).unwrap()).unwrap();
    let mut placed: Vec<String> = sim.gpus().unwrap()[0]
        .instances
        .iter()
        .map(|i| format!("{}@{}", i.profile, i.start))
        .collect();
    placed.sort();
    placed
}

/// `identity-a` on the 3g, `identity-c` on the 2g, `identity-b` on the 1g.
fn up(name: &str, dir: &Path, state: &Path, gpu: &LiveGpu) -> Process {
    up_with(
        name,
        dir,
        state,
        gpu,
        "name = \"identity-c\"\nidentity = true",
    )
}

/// [`up`] with `c` (a fleet entry's name and source) on the 2g.
fn up_with(name: &str, dir: &Path, state: &Path, gpu: &LiveGpu, c: &str) -> Process {
    let uuid = |profile: &str| {
        gpu.instances
            .iter()
            .find(|i| i.profile == profile)
            .unwrap()
            .uuid
            .clone()
    };
    let fleet = format!(
        "[[model]]\nname = \"identity-a\"\nidentity = true\nslices = [\"{}\"]\n\
         [[model]]\nname = \"identity-b\"\nidentity = true\nslices = [\"{}\"]\n\
         [[model]]\n{c}\nslices = [\"{}\"]\n",
        uuid("3g.40gb"),
        uuid("1g.10gb"),
        uuid("2g.20gb"),
    );
    let token = dir.join("admin-token");
    std::fs::write(&token, TOKEN).unwrap();
    gateway_up(
        name,
        &fleet,
        &[
            "--simulate-mig",
            state.to_str().unwrap(),
            "--admin-listen",
            "127.0.0.1:0",
            "--admin-token-file",
            token.to_str().unwrap(),
        ],
    )
}

/// The target: the 3g and the 1g@6 kept; the 2g@4 split into two 1g:
/// `identity-b` gets a second replica, `identity-c` moves (its only
/// replica: its requests wait for the new one).
fn target(dir: &Path) -> PathBuf {
    let plan = r#"{
  "gpu_model": "a100-80gb",
  "gpus": [{
    "index": 0,
    "instances": [
      {"profile": "3g.40gb", "start": 0, "model": "identity-a", "replica": 0},
      {"profile": "1g.10gb", "start": 4, "model": "identity-b", "replica": 1},
      {"profile": "1g.10gb", "start": 5, "model": "identity-c", "replica": 0},
      {"profile": "1g.10gb", "start": 6, "model": "identity-b", "replica": 0}
    ]
  }]
}"#;
    let path = dir.join("plan.json");
    std::fs::write(&path, plan).unwrap();
    path
}

fn reshape_cmd(admin: &str, dir: &Path, plan: &Path, extra: &[&str]) -> std::process::Output {
    let mut command = Command::new(bin("mig-gateway"));
    command
        .args(["reshape", "--admin", &format!("http://{admin}"), "--to"])
        .arg(plan)
        .arg("--admin-token-file")
        .arg(dir.join("admin-token"))
        .args(extra)
        .env_remove("RUST_BACKTRACE");
    run_to_end(command, Duration::from_secs(120))
}

/// `reshape_cmd` on a blocking thread, for a test that keeps calling
/// meanwhile; its stdout once it succeeded.
fn reshape_in_background(
    admin: &str,
    dir: &Path,
    plan: &Path,
    extra: &'static [&'static str],
) -> tokio::task::JoinHandle<String> {
    let (admin, dir, plan) = (admin.to_string(), dir.to_path_buf(), plan.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let out = reshape_cmd(&admin, &dir, &plan, extra);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    })
}

#[tokio::test]
async fn a_reshape_under_load_fails_no_request() {
    let dir = scratch("load");
    let (state, gpu) = start_layout(&dir);
    let mut gateway = up("reshape-load", &dir, &state, &gpu);
    let admin = gateway.address_after("admin: ");
    let plan = target(&dir);

    // The dry run says what would change, and changes nothing.
    let dry = reshape_cmd(&admin, &dir, &plan, &["--dry-run"]);
    let dry_out = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success(),
        "{dry_out}\n{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(
        dry_out.contains("would be: 2 kept, 1 destroyed, 2 created"),
        "{dry_out}"
    );
    assert_eq!(layout(&state), ["1g.10gb@6", "2g.20gb@4", "3g.40gb@0"]);

    // Load: 6 clients, each calling the three models in turn.
    let url = gateway.url();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..6 {
        let (url, stop) = (url.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut client = gateway_client(&url).await;
            let mut done = [0u32; 3];
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                let m = i % 3;
                let model = ["identity-a", "identity-b", "identity-c"][m];
                let answer = client
                    .generate(GenerateRequest {
                        model: model.into(),
                        prompt: "reshape".into(),
                        max_tokens: Some(16),
                        ..Default::default()
                    })
                    .await
                    .unwrap_or_else(|s| panic!("a `{model}` request failed: {s:?}"))
                    .into_inner();
                assert_eq!(answer.text, "reshapereshapere");
                done[m] += 1;
                i += 1;
            }
            done
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let text = reshape_in_background(&admin, &dir, &plan, &["--drain-timeout", "10"])
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        text.contains("2 kept, 1 destroyed, 2 created, 3 workers replaced"),
        "{text}"
    );
    assert!(
        text.contains("GPU 0 2g.20gb@4 (`identity-c`): out "),
        "{text}"
    );
    assert_eq!(
        layout(&state),
        ["1g.10gb@4", "1g.10gb@5", "1g.10gb@6", "3g.40gb@0"]
    );

    // Served after the reshape too, by the new workers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut totals = [0u32; 3];
    for client in clients {
        let done = client.await.expect("a client failed a request");
        for m in 0..3 {
            totals[m] += done[m];
        }
    }
    assert!(totals.iter().all(|&n| n > 10), "{totals:?} in {took:?}");
    let mut counts = Vec::new();
    for model in ["identity-a", "identity-b", "identity-c"] {
        counts.push(list_workers(&url, model).await.len());
    }
    assert_eq!(counts, [1, 2, 1], "workers of a, b, c after the reshape");
    gateway.terminate();
}

#[tokio::test]
async fn the_admin_listener_takes_only_its_token_and_sound_plans() {
    let dir = scratch("auth");
    let (state, gpu) = start_layout(&dir);
    let mut gateway = up("reshape-auth", &dir, &state, &gpu);
    let admin = gateway.address_after("admin: ");
    let mut client = AdminClient::connect(format!("http://{admin}"))
        .await
        .unwrap();
    let plan = std::fs::read_to_string(target(&dir)).unwrap();
    let denied = client
        .reshape(ReshapeRequest {
            plan_json: plan.clone(),
            dry_run: true,
            drain_timeout_seconds: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::Unauthenticated, "{denied:?}");

    let with_token = |plan_json: String| {
        let mut request = tonic::Request::new(ReshapeRequest {
            plan_json,
            dry_run: true,
            drain_timeout_seconds: 0,
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        request
    };
    // A plan naming a model the fleet cannot start.
    let unknown = plan.replace("identity-c", "nobody-knows");
    let status = client.reshape(with_token(unknown)).await;
    let status = match status {
        Err(s) => s,
        Ok(stream) => stream.into_inner().message().await.unwrap_err(),
    };
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("`nobody-knows`"), "{status:?}");
    // Not a plan, too big: refused naming the field, the value not echoed.
    let status = client
        .reshape(with_token("x".repeat(2 << 20)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("`plan_json`"), "{status:?}");
    assert!(status.message().len() < 200, "{status:?}");
    let status = client
        .reshape(with_token("{\"gpu_model\": 7}".into()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("gpu_model"), "{status:?}");
    // Long names in a plan that parses are not repeated whole either.
    let long = "m".repeat(100_000);
    for plan_json in [
        plan.replace("a100-80gb", &long),
        plan.replace("3g.40gb", &long),
        plan.replace("identity-c", &long),
        format!("{{\"gpu_model\": \"a100-80gb\", \"gpus\": [{{\"index\": \"{long}\"}}]}}"),
    ] {
        let status = match client.reshape(with_token(plan_json)).await {
            Err(s) => s,
            Ok(stream) => stream.into_inner().message().await.unwrap_err(),
        };
        assert!(
            matches!(
                status.code(),
                Code::InvalidArgument | Code::FailedPrecondition
            ),
            "{status:?}"
        );
        assert!(status.message().len() < 300, "{}", status.message());
    }
    assert_eq!(layout(&state), ["1g.10gb@6", "2g.20gb@4", "3g.40gb@0"]);
    gateway.terminate();
}

#[test]
fn the_admin_listener_is_loopback_only() {
    let dir = scratch("public");
    let (state, _) = start_layout(&dir);
    let token = dir.join("admin-token");
    std::fs::write(&token, TOKEN).unwrap();
    let fleet = dir.join("fleet.toml");
    std::fs::write(
        &fleet,
        "[[model]]\nname = \"identity\"\nidentity = true\nslices = [\"cpu:0\"]\n",
    )
    .unwrap();
    let mut command = Command::new(bin("mig-gateway"));
    command
        .args(["up", "--listen", "127.0.0.1:0", "--fleet"])
        .arg(&fleet)
        .args(["--simulate-mig", state.to_str().unwrap()])
        .args(["--admin-listen", "0.0.0.0:0", "--admin-token-file"])
        .arg(&token)
        .env_remove("RUST_BACKTRACE");
    let out = run_to_end(command, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("`--admin-listen 0.0.0.0:0` is not a loopback address"),
        "{stderr}"
    );
}

/// The README's example: its state, fleet and both plans agree.
#[test]
fn the_deploy_example_reshapes_there_and_back() {
    let dir = mig_testkit::paths::repo_root().join("deploy/reshape");
    let sim =
        SimulatedMig::from_json(&std::fs::read_to_string(dir.join("mig-state.json")).unwrap())
            .unwrap();
    let fleet = mig_gateway::fleet::Fleet::load(&dir.join("fleet.toml")).unwrap();
    let live = sim.gpus().unwrap();
    let mut counts = Vec::new();
    for plan in ["plan.json", "plan-back.json"] {
        let target = Target::from_json(&std::fs::read_to_string(dir.join(plan)).unwrap()).unwrap();
        for instance in target.gpus.iter().flat_map(|g| &g.instances) {
            assert!(
                fleet.iter().any(|m| m.name == instance.model),
                "{plan}: `{}` is not in fleet.toml",
                instance.model
            );
        }
        let steps = plan_steps(&live, &target).unwrap();
        counts.push((steps.kept(), steps.destroyed(), steps.created()));
    }
    // From the state: the split, and the way back (nothing to do).
    assert_eq!(counts, [(2, 1, 2), (3, 0, 0)]);
}

#[tokio::test]
async fn a_stream_longer_than_the_drain_timeout_ends_unavailable_and_the_reshape_goes_on() {
    let dir = scratch("drain");
    let (state, gpu) = start_layout(&dir);
    // A real model on the slice the plan destroys, still generating when
    // the drain runs out (the identity model would have sent its whole
    // answer into the gateway's buffers by then).
    let c = format!(
        "name = \"smollm2-c\"\npath = \"{}\"",
        mig_testkit::smollm2().display()
    );
    let mut gateway = up_with("reshape-drain", &dir, &state, &gpu, &c);
    let admin = gateway.address_after("admin: ");
    let plan = dir.join("plan-smollm2.json");
    std::fs::write(
        &plan,
        std::fs::read_to_string(target(&dir))
            .unwrap()
            .replace("identity-c", "smollm2-c"),
    )
    .unwrap();
    let mut stream = mig_testkit::gateway::gateway_client(&gateway.url())
        .await
        .generate_stream(GenerateRequest {
            model: "smollm2-c".into(),
            prompt: "Tell me a long story.".into(),
            max_tokens: Some(1500),
            ignore_eos: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();
    let reshape = reshape_in_background(&admin, &dir, &plan, &["--drain-timeout", "1"]);
    let started = Instant::now();
    let status = loop {
        match stream.message().await {
            Ok(Some(m)) => assert_eq!(m.finish_reason, 0, "the stream finished: {m:?}"),
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("smollm2-c"), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let text = reshape.await.unwrap();
    assert!(
        text.contains("1 streams still running after the drain timeout (1s); stopping anyway"),
        "{text}"
    );
    assert_eq!(
        layout(&state),
        ["1g.10gb@4", "1g.10gb@5", "1g.10gb@6", "3g.40gb@0"]
    );
    gateway.terminate();
}
