//! `mig-gateway plan --out DIR` for Kubernetes: what to apply so a cluster
//! with NVIDIA's GPU operator serves the plan.
//!
//! - `k8s/mig-config.yaml`: the plan's mig-parted config as the ConfigMap
//!   the GPU operator's MIG manager reads (`custom-mig-config` in
//!   `gpu-operator`; point `ClusterPolicy.spec.migManager.config.name` at it).
//! - `k8s-label-nodes.sh NODE...`: the `nvidia.com/mig.config` node label
//!   that makes the MIG manager apply the layout on each GPU node.
//! - `k8s/workers/*.yaml`: one worker Deployment per model and profile, with
//!   the plan's replica count, requesting one `nvidia.com/mig-<profile>`
//!   (device plugin, `mixed` strategy), on nodes carrying that label.
//! - `k8s/kustomization.yaml`: all of it, for `kubectl apply -k DIR/k8s`
//!   once `deploy/k8s` (namespace, gateways, Secrets, models volume) is in.
//!
//! Objects are written as JSON, which is YAML, so no value needs quoting
//! rules of its own.

use mig_slices::planner::Plan;
use mig_slices::render::{self, K8sResource};
use serde_json::{json, Value};

/// The mig-parted configuration's name in the ConfigMap, and the value of
/// the `nvidia.com/mig.config` node label that selects it.
pub const MIG_CONFIG_NAME: &str = "mig-gateway";

/// The worker image the manifests name (an overlay's `images:` sets it).
const WORKER_IMAGE: &str = "registry.example.com/mig-gateway/worker-cuda:0.1.0";

/// Seconds a worker's requests get to finish on SIGTERM, and the pod's
/// grace period, longer.
const WORKER_GRACE_SECONDS: u32 = 30;
const POD_GRACE_SECONDS: u32 = 45;

/// A Kubernetes object name from a model and profile: lowercase letters,
/// digits and `-` (`smollm2-135m`, `1g.10gb` -> `worker-smollm2-135m-1g-10gb`).
pub fn deployment_name(model: &str, profile: &str) -> String {
    let clean = |s: &str| {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect::<String>()
    };
    let name = format!("worker-{}-{}", clean(model), clean(profile));
    let mut name: String = name
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    name.truncate(63);
    name.trim_end_matches('-').to_string()
}

/// One worker Deployment for `r`, on a GPU of `gpu_model`.
pub fn worker_deployment(r: &K8sResource, gpu_model: &str) -> Value {
    let name = deployment_name(&r.model, r.profile);
    let labels = json!({
        "app.kubernetes.io/name": "mig-worker",
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/part-of": "mig-gateway",
        "mig-gateway/model": name.trim_start_matches("worker-"),
    });
    let env = |name: &str, value: &str| json!({"name": name, "value": value});
    let mut limits = serde_json::Map::new();
    limits.insert("cpu".into(), json!("4"));
    limits.insert("memory".into(), json!("8Gi"));
    limits.insert(r.resource.clone(), json!(r.per_replica));
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": "mig",
            "labels": labels,
            "annotations": {"mig-gateway/gpu-model": gpu_model},
        },
        "spec": {
            "replicas": r.replicas,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
            "selector": {"matchLabels": {
                "app.kubernetes.io/name": "mig-worker",
                "mig-gateway/model": labels["mig-gateway/model"],
            }},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": "9401",
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "terminationGracePeriodSeconds": POD_GRACE_SECONDS,
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "securityContext": {
                        "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                        "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "nodeSelector": {
                        "nvidia.com/gpu.present": "true",
                        "nvidia.com/mig.strategy": "mixed",
                        "nvidia.com/mig.config": MIG_CONFIG_NAME,
                    },
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [{
                        "name": "worker",
                        "image": WORKER_IMAGE,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["/usr/local/bin/mig-worker", "serve"],
                        "env": [
                            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                            env("MIG_WORKER_MODEL_NAME", &r.model),
                            // The model's file or folder on the models volume.
                            env("MIG_WORKER_MODEL_PATH", &format!("/models/{}", r.model)),
                            env("MIG_WORKER_DEVICE", "cuda"),
                            env("MIG_WORKER_PROFILE", r.profile),
                            env("MIG_WORKER_SLICE", "visible"),
                            env("MIG_WORKER_ID", "$(POD_NAME)"),
                            env("MIG_WORKER_LISTEN", "0.0.0.0:50061"),
                            env("MIG_WORKER_ADVERTISE", "http://$(POD_IP):50061"),
                            env("MIG_WORKER_METRICS_LISTEN", "0.0.0.0:9401"),
                            env("MIG_WORKER_GATEWAY", "http://mig-gateway-internal.mig.svc.cluster.local:50052"),
                            env("MIG_WORKER_REGISTRATION_TOKEN_FILE", "/etc/mig-worker/registration/token"),
                            env("MIG_WORKER_GRACE_SECONDS", &WORKER_GRACE_SECONDS.to_string()),
                        ],
                        "ports": [
                            {"name": "grpc", "containerPort": 50061},
                            {"name": "metrics", "containerPort": 9401},
                        ],
                        "startupProbe": {"grpc": {"port": 50061}, "periodSeconds": 5, "failureThreshold": 60},
                        "readinessProbe": {"grpc": {"port": 50061}, "periodSeconds": 5},
                        "livenessProbe": {"grpc": {"port": 50061}, "periodSeconds": 10, "failureThreshold": 3},
                        "resources": {
                            "requests": {"cpu": "2", "memory": "4Gi"},
                            "limits": limits,
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                            "privileged": false, "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [
                            {"name": "models", "mountPath": "/models", "readOnly": true},
                            {"name": "registration-token", "mountPath": "/etc/mig-worker/registration", "readOnly": true},
                            {"name": "tmp", "mountPath": "/tmp"},
                        ],
                    }],
                    "volumes": [
                        {"name": "models", "persistentVolumeClaim": {"claimName": "mig-models", "readOnly": true}},
                        {"name": "registration-token", "secret": {"secretName": "mig-registration-token", "defaultMode": 0o440}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
                    ],
                },
            },
        },
    })
}

/// The MIG manager's ConfigMap holding the plan's mig-parted config.
pub fn mig_config_map(plan: &Plan) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "custom-mig-config", "namespace": "gpu-operator"},
        "data": {"config.yaml": render::mig_parted_config(plan, MIG_CONFIG_NAME)},
    })
}

/// The node-labelling script: the label that makes the MIG manager apply
/// the layout on each node named.
pub fn label_script(plan: &Plan) -> String {
    format!(
        "#!/bin/sh\n\
         # Applies the plan's MIG layout ({} x {}) through NVIDIA's GPU operator:\n\
         # its MIG manager reads the `{MIG_CONFIG_NAME}` config of the ConfigMap in\n\
         # k8s/mig-config.yaml (point ClusterPolicy.spec.migManager.config.name\n\
         # at `custom-mig-config`) on every node labelled below. Drain the\n\
         # node's GPU pods first: a layout change stops the GPU's work.\n\
         #   ./k8s-label-nodes.sh NODE...\n\
         set -eu\n\
         [ \"$#\" -gt 0 ] || {{ echo \"usage: $0 NODE...\" >&2; exit 1; }}\n\
         for node in \"$@\"; do\n\
         \x20 kubectl label node \"$node\" nvidia.com/mig.config={MIG_CONFIG_NAME} --overwrite\n\
         done\n",
        plan.gpus.len(),
        plan.gpu.id
    )
}

/// Every file of the Kubernetes set: (path under DIR, text).
pub fn files(plan: &Plan) -> Vec<(String, String)> {
    let json = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
    let mut files = vec![(
        "k8s/mig-config.yaml".to_string(),
        json(&mig_config_map(plan)),
    )];
    let mut resources = vec!["mig-config.yaml".to_string()];
    for r in render::k8s_resources(plan) {
        let name = deployment_name(&r.model, r.profile);
        let path = format!("workers/{name}.yaml");
        files.push((
            format!("k8s/{path}"),
            json(&worker_deployment(&r, plan.gpu.id)),
        ));
        resources.push(path);
    }
    let kustomization = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
    });
    files.push(("k8s/kustomization.yaml".to_string(), json(&kustomization)));
    files.push(("k8s-label-nodes.sh".to_string(), label_script(plan)));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kubernetes_names() {
        assert_eq!(
            deployment_name("smollm2-135m", "1g.10gb"),
            "worker-smollm2-135m-1g-10gb"
        );
        assert_eq!(
            deployment_name("Llama_3.1", "1g.10gb+me"),
            "worker-llama-3-1-1g-10gb-me"
        );
        assert!(deployment_name(&"m".repeat(100), "7g.80gb").len() <= 63);
    }
}
