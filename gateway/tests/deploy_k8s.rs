//! The deployment files, checked offline: deploy/k8s (every kustomization
//! rendered and validated against Kubernetes' OpenAPI schemas by
//! `kubernetes-validate`, worker Deployments held to the MIG catalog),
//! deploy/docker (scripts/check-dockerfiles.py) and deploy/systemd
//! (`systemd-analyze verify` where there is one, else the unit's rules).
//! Each checker must also refuse a broken copy, so a check that passes
//! everything cannot pass here.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use mig_slices::catalog::gpu_models;
use mig_testkit::paths::repo_root;
use mig_testkit::python::{python, run_client};

/// `--catalog <gpu>=<resource>,...` for every GPU of the catalog: the
/// device plugin's resource name of each of its profiles.
fn catalog_args() -> Vec<String> {
    gpu_models()
        .iter()
        .flat_map(|gpu| {
            let names: Vec<String> = gpu.profiles.iter().map(|p| p.k8s_resource()).collect();
            [
                "--catalog".to_string(),
                format!("{}={}", gpu.id, names.join(",")),
            ]
        })
        .collect()
}

fn validate_k8s(root: &Path) -> Output {
    let mut command = Command::new(python());
    command
        .arg(repo_root().join("gateway/tests/clients/validate_k8s.py"))
        .arg("--root")
        .arg(root)
        .args(catalog_args())
        .current_dir(repo_root())
        .env("PYTHONDONTWRITEBYTECODE", "1");
    command.output().expect("run validate_k8s.py")
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `path` with `from` replaced by `to`, which must occur in it.
fn edit(path: &Path, from: &str, to: &str) {
    let text = fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} lacks {from:?}", path.display());
    fs::write(path, text.replacen(from, to, 1)).unwrap();
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn kubernetes_manifests_render_and_validate() {
    let mut args: Vec<String> = vec!["--root".into(), "deploy/k8s".into()];
    args.extend(catalog_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_client("validate_k8s.py", &args);
    for kustomization in ["base", "overlays/h100-80gb", "overlays/h200-141gb"] {
        for what in [
            "objects valid against Kubernetes 1.37 OpenAPI (strict)",
            "grpc.health.v1 probes on 50051",
            "worker Deployments request one MIG resource each",
            "only gateways reach workers:50061",
        ] {
            assert!(
                out.lines()
                    .any(|l| l.starts_with(&format!("ok {kustomization}: ")) && l.contains(what)),
                "no `ok {kustomization}: ... {what}` line:\n{out}"
            );
        }
    }
    assert!(
        out.contains("nvidia.com/mig-1g.18gb") && out.contains("nvidia.com/mig-1g.10gb"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok deploy/k8s: 3 kustomizations")),
        "{out}"
    );
}

#[test]
fn kubernetes_check_refuses_broken_manifests() {
    let breakages: [(&str, &str, &str, &str); 4] = [
        // A schema error: a port that is not a number.
        (
            "base/gateway-deployment.yaml",
            "containerPort: 50051",
            "containerPort: fifty",
            "is not of type 'integer'",
        ),
        // A field Kubernetes does not know (strict).
        (
            "base/gateway-deployment.yaml",
            "terminationGracePeriodSeconds: 40",
            "terminationGracePeriod: 40",
            "Additional properties are not allowed",
        ),
        // A MIG profile the H100 does not have.
        (
            "base/workers/minilm-l6-1g.10gb.yaml",
            "nvidia.com/mig-1g.10gb: 1",
            "nvidia.com/mig-1g.18gb: 1",
            "is not a MIG profile of h100-80gb",
        ),
        // A grace period shorter than the worker's drain.
        (
            "base/workers/smollm2-135m-1g.10gb.yaml",
            "terminationGracePeriodSeconds: 45",
            "terminationGracePeriodSeconds: 20",
            "terminationGracePeriodSeconds is not above MIG_WORKER_GRACE_SECONDS",
        ),
    ];
    for (file, from, to, want) in breakages {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&repo_root().join("deploy/k8s"), dir.path());
        edit(&dir.path().join(file), from, to);
        let output = validate_k8s(dir.path());
        let out = text(&output);
        assert!(!output.status.success(), "{file}: {to:?} passed:\n{out}");
        assert!(out.contains(want), "{file}: {to:?}: no {want:?} in:\n{out}");
    }
}

fn check_dockerfiles(dir: &Path) -> Output {
    Command::new(python())
        .arg(repo_root().join("scripts/check-dockerfiles.py"))
        .arg(dir)
        .current_dir(repo_root())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run check-dockerfiles.py")
}

#[test]
fn dockerfiles_follow_the_rules() {
    let output = check_dockerfiles(&repo_root().join("deploy/docker"));
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    for name in ["gateway.Dockerfile", "worker-cuda.Dockerfile"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("ok {name}: ")) && l.contains("non-root USER")),
            "no ok line for {name}:\n{out}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("bad.Dockerfile"),
        "FROM ubuntu\nFROM debian:latest\nCOPY id_rsa /root/\nENV API_TOKEN=abc\nUSER root\n",
    )
    .unwrap();
    let output = check_dockerfiles(dir.path());
    let out = text(&output);
    assert!(!output.status.success(), "a bad Dockerfile passed:\n{out}");
    for want in [
        "no tag",
        "latest",
        "root",
        "id_rsa",
        "API_TOKEN",
        "HEALTHCHECK",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
}

fn check_systemd(dir: &Path) -> Output {
    Command::new(python())
        .arg(repo_root().join("scripts/check-systemd.py"))
        .arg(dir)
        .current_dir(repo_root())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run check-systemd.py")
}

#[test]
fn systemd_units_verify() {
    let output = check_systemd(&repo_root().join("deploy/systemd"));
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    for unit in ["mig-gateway.service", "mig-mig-layout.service"] {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("ok {unit}: "))),
            "no ok line for {unit}:\n{out}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    copy_tree(&repo_root().join("deploy/systemd"), dir.path());
    let unit = dir.path().join("mig-gateway.service");
    edit(&unit, "ProtectSystem=strict", "ProtectSystem=full");
    edit(
        &unit,
        "Requires=mig-mig-layout.service",
        "Wants=mig-mig-layout.service",
    );
    let output = check_systemd(dir.path());
    let out = text(&output);
    assert!(!output.status.success(), "a weakened unit passed:\n{out}");
    for want in [
        "ProtectSystem=full, want ProtectSystem=strict",
        "Requires= lacks",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
}

/// `mig-gateway plan --out` writes the Kubernetes set for its plan: the
/// MIG manager's ConfigMap, the node label, one worker Deployment per
/// model and profile with the plan's replicas. Validated like deploy/k8s.
#[test]
fn the_plans_kubernetes_set_validates() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("plan");
    let plan = Command::new(mig_testkit::process::bin("mig-gateway"))
        .args(["plan", "--gpu", "a100-80gb", "--all-profiles"])
        .args(["--model", "big=30GB:2", "--model", "small=5GB:3"])
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(plan.status.success(), "{}", text(&plan));
    let label = fs::read_to_string(out_dir.join("k8s-label-nodes.sh")).unwrap();
    assert!(
        label.contains("kubectl label node \"$node\" nvidia.com/mig.config=mig-gateway"),
        "{label}"
    );
    let k8s = out_dir.join("k8s");
    let mut args: Vec<String> = vec!["--plan".into(), "--root".into(), k8s.display().to_string()];
    args.extend(catalog_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_client("validate_k8s.py", &args);
    assert!(
        out.contains("ok .: the MIG manager's ConfigMap holds the plan's mig-parted layout"),
        "{out}"
    );
    assert!(
        out.contains(
            "objects valid against Kubernetes 1.37 OpenAPI (strict): ConfigMap, Deployment"
        ),
        "{out}"
    );
    // Replicas as planned: the Deployments of each model add up to its count.
    let mut replicas = std::collections::BTreeMap::new();
    for entry in fs::read_dir(k8s.join("workers")).unwrap() {
        let d: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        let container = &d["spec"]["template"]["spec"]["containers"][0];
        let model = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "MIG_WORKER_MODEL_NAME")
            .unwrap()["value"]
            .as_str()
            .unwrap()
            .to_string();
        *replicas.entry(model).or_insert(0) += d["spec"]["replicas"].as_u64().unwrap();
    }
    assert_eq!(
        replicas,
        [("big".to_string(), 2), ("small".to_string(), 3)].into()
    );
    // A Deployment whose profile this GPU does not have is refused.
    let any = fs::read_dir(k8s.join("workers"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text_of = fs::read_to_string(&any).unwrap();
    let resource = text_of
        .split('"')
        .find(|s| s.starts_with("nvidia.com/mig-"))
        .unwrap()
        .to_string();
    edit(&any, &resource, "nvidia.com/mig-9g.99gb");
    let mut command = Command::new(python());
    command
        .arg(repo_root().join("gateway/tests/clients/validate_k8s.py"))
        .args(["--plan", "--root"])
        .arg(&k8s)
        .args(catalog_args())
        .current_dir(repo_root());
    let refused = command.output().unwrap();
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("nvidia.com/mig-9g.99gb"),
        "{}",
        text(&refused)
    );
}
