"""Offline check of deploy/k8s: renders every kustomization (base and
overlays) as `kubectl kustomize` would, validates each object against the
Kubernetes OpenAPI schemas bundled by `kubernetes-validate` (strict: an
unknown field is an error), then checks what the project relies on: worker
Deployments request exactly one `nvidia.com/mig-*` resource of the MIG
catalog of their GPU, probes through grpc.health.v1, no privilege, grace
periods longer than the drain, Secrets and volumes that exist.

    validate_k8s.py [--root deploy/k8s] [--k8s-version 1.37]
                    --catalog GPU=RESOURCE,RESOURCE... [--catalog ...]

The catalog comes from the Rust test (mig_slices::catalog, `k8s_resource()`
of each profile of each GPU). Prints one `ok` line per check and
kustomization; exits 1 with every problem found otherwise.

The renderer covers the kustomize fields these files use (resources,
namespace, images, JSON 6902 patches with a kind/name/labelSelector target);
a kustomization with any other field is refused rather than half-rendered.
"""

import argparse
import copy
import os
import re
import shutil
import subprocess
import sys

try:
    import kubernetes_validate
    import yaml
except ImportError as e:  # a venv made from an older lock
    sys.exit(f"{e}: the client venv predates kubernetes-validate; run `make tools` (scripts/client-venv.sh)")

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass", "StorageClass"}
GATEWAY_PORTS = {"grpc": 50051, "http": 8080, "internal": 50052, "metrics": 9400}
GPU_LABELS = ("nvidia.com/gpu.present", "nvidia.com/mig.strategy", "nvidia.com/gpu.product")
# A plan's workers go to the nodes labelled with its MIG layout instead.
PLAN_GPU_LABELS = ("nvidia.com/gpu.present", "nvidia.com/mig.strategy", "nvidia.com/mig.config")
WORKER_GRACE_DEFAULT = 10
GATEWAY_DRAIN_DEFAULT = 10


class Problems(list):
    def add(self, where, what):
        self.append(f"{where}: {what}")


def load_yaml_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


# --- rendering ------------------------------------------------------------


def unescape(token):
    return token.replace("~1", "/").replace("~0", "~")


def json_patch(doc, ops, where):
    for op in ops:
        kind, path = op.get("op"), op.get("path", "")
        keys = [unescape(t) for t in path.split("/")[1:]]
        if not keys:
            raise ValueError(f"{where}: empty patch path")
        parent = doc
        for k in keys[:-1]:
            parent = parent[int(k)] if isinstance(parent, list) else parent[k]
        last = keys[-1]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(index, copy.deepcopy(op["value"]))
            elif kind == "replace":
                parent[index] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del parent[index]
            else:
                raise ValueError(f"{where}: op {kind!r} is not supported")
        else:
            if kind in ("replace", "remove") and last not in parent:
                raise ValueError(f"{where}: {path} does not exist for {kind}")
            if kind in ("add", "replace"):
                parent[last] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del parent[last]
            else:
                raise ValueError(f"{where}: op {kind!r} is not supported")


def selects(target, doc):
    meta = doc.get("metadata", {})
    if "kind" in target and doc.get("kind") != target["kind"]:
        return False
    if "name" in target and meta.get("name") != target["name"]:
        return False
    for term in filter(None, target.get("labelSelector", "").split(",")):
        key, _, value = term.partition("=")
        if meta.get("labels", {}).get(key.strip()) != value.strip():
            return False
    return True


def pod_containers(doc):
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("initContainers", []) + spec.get("containers", [])


def render(directory, used, root):
    """The objects of the kustomization in `directory`; marks every file it
    reads in `used`."""
    kfile = os.path.join(directory, "kustomization.yaml")
    if not os.path.isfile(kfile):
        raise ValueError(f"{os.path.relpath(directory, root)}: no kustomization.yaml")
    used.add(os.path.realpath(kfile))
    where = os.path.relpath(kfile, root)
    k = load_yaml(kfile) or {}
    unknown = set(k) - SUPPORTED
    if unknown:
        raise ValueError(f"{where}: fields this check does not render: {sorted(unknown)}")
    if k.get("kind") != "Kustomization" or not str(k.get("apiVersion", "")).startswith(
        "kustomize.config.k8s.io/"
    ):
        raise ValueError(f"{where}: not a kustomize.config.k8s.io Kustomization")
    docs = []
    for res in k.get("resources", []):
        path = os.path.normpath(os.path.join(directory, res))
        if os.path.isdir(path):
            docs.extend(render(path, used, root))
        elif os.path.isfile(path):
            used.add(os.path.realpath(path))
            docs.extend(load_yaml_all(path))
        else:
            raise ValueError(f"{where}: resource {res} does not exist")
    for p in k.get("patches", []):
        if "path" in p:
            path = os.path.normpath(os.path.join(directory, p["path"]))
            if not os.path.isfile(path):
                raise ValueError(f"{where}: patch {p['path']} does not exist")
            used.add(os.path.realpath(path))
            ops = load_yaml(path)
        else:
            ops = yaml.safe_load(p["patch"])
        if not isinstance(ops, list):
            raise ValueError(f"{where}: only JSON 6902 patches (a list of ops) are rendered here")
        hits = [d for d in docs if selects(p.get("target", {}), d)]
        if not hits:
            raise ValueError(f"{where}: patch target {p.get('target')} selects nothing")
        for d in hits:
            json_patch(d, ops, f"{where} on {d['kind']}/{d['metadata']['name']}")
    for img in k.get("images", []):
        hit = False
        for d in docs:
            for c in pod_containers(d):
                name = re.split(r"[@]", c["image"])[0]
                name = re.sub(r":[^/]*$", "", name)
                if name != img["name"]:
                    continue
                hit = True
                new = img.get("newName", name)
                if "digest" in img:
                    new += "@" + img["digest"]
                elif "newTag" in img:
                    new += ":" + str(img["newTag"])
                else:
                    new = c["image"].replace(name, new, 1)
                c["image"] = new
        if not hit:
            raise ValueError(f"{where}: image {img['name']} is used by no container")
    if "namespace" in k:
        for d in docs:
            if d.get("kind") not in CLUSTER_SCOPED:
                d.setdefault("metadata", {})["namespace"] = k["namespace"]
    return docs


# --- checks ---------------------------------------------------------------


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def check_hardening(doc, problems, where):
    pod = doc["spec"]["template"]["spec"]
    psc = pod.get("securityContext", {})
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.add(where, "pod seccompProfile is not RuntimeDefault")
    for c in pod_containers(doc):
        sc = c.get("securityContext", {})
        cw = f"{where} container {c['name']}"
        if not sc.get("runAsNonRoot", psc.get("runAsNonRoot")):
            problems.add(cw, "runAsNonRoot is not true")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.add(cw, "readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.add(cw, "allowPrivilegeEscalation is not false")
        if sc.get("privileged"):
            problems.add(cw, "privileged")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            problems.add(cw, "capabilities do not drop ALL")
        res = c.get("resources", {})
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in res.get(part, {}):
                    problems.add(cw, f"no resources.{part}.{r}")


def check_set(name, docs, catalog, problems, plan=False):
    """The project's rules over one rendered kustomization; returns `ok`
    lines. `plan`: the set `mig-gateway plan --out` writes (worker
    Deployments and the MIG manager's ConfigMap, applied beside
    deploy/k8s, which holds the namespace, gateways, Secrets and volume)."""
    ok = []
    by = {}
    for d in docs:
        key = (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])
        if key in by:
            problems.add(name, f"{key} defined twice")
        by[key] = d
    namespaces = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]
    if namespaces != ["mig"] and not plan:
        problems.add(name, f"namespaces {namespaces}, want ['mig']")
    for d in docs:
        if plan and d["kind"] == "ConfigMap":
            continue
        if d["kind"] not in CLUSTER_SCOPED and d["metadata"].get("namespace") != "mig":
            problems.add(name, f"{d['kind']}/{d['metadata']['name']} is not in namespace mig")

    def get(kind, obj):
        return by.get((kind, "mig", obj))

    deployments = [d for d in docs if d["kind"] == "Deployment"]
    for d in deployments:
        where = f"{name} Deployment/{d['metadata']['name']}"
        check_hardening(d, problems, where)
        pod = d["spec"]["template"]["spec"]
        for v in [] if plan else pod.get("volumes", []):
            if "secret" in v and not get("Secret", v["secret"]["secretName"]):
                problems.add(where, f"Secret {v['secret']['secretName']} is not defined")
            claim = v.get("persistentVolumeClaim", {}).get("claimName")
            if claim and not get("PersistentVolumeClaim", claim):
                problems.add(where, f"PersistentVolumeClaim {claim} is not defined")

    if plan:
        gw = None
        parted = by.get(("ConfigMap", "gpu-operator", "custom-mig-config"))
        if not parted or "mig-gateway:" not in parted.get("data", {}).get("config.yaml", ""):
            problems.add(name, "no MIG manager ConfigMap gpu-operator/custom-mig-config with the mig-gateway layout")
        else:
            ok.append(f"ok {name}: the MIG manager's ConfigMap holds the plan's mig-parted layout")
    else:
        gw = get("Deployment", "mig-gateway")
    if plan:
        pass
    elif not gw:
        problems.add(name, "no Deployment mig-gateway")
    else:
        where = f"{name} Deployment/mig-gateway"
        if gw["spec"].get("replicas", 1) < 2:
            problems.add(where, "fewer than 2 replicas")
        c = gw["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        if ports != GATEWAY_PORTS:
            problems.add(where, f"ports {ports}, want {GATEWAY_PORTS}")
        for probe in ("readinessProbe", "livenessProbe"):
            if c.get(probe, {}).get("grpc", {}).get("port") != 50051:
                problems.add(where, f"{probe} is not grpc.health.v1 on 50051")
        env = env_of(c)
        for var in ("MIG_GATEWAY_ACCEPT_REGISTRATIONS", "MIG_GATEWAY_REGISTRATION_TOKEN_FILE",
                    "MIG_GATEWAY_TENANTS"):
            if not env.get(var):
                problems.add(where, f"{var} is not set")
        drain = int(env.get("MIG_GATEWAY_DRAIN_SECONDS") or GATEWAY_DRAIN_DEFAULT)
        if gw["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30) <= drain:
            problems.add(where, f"terminationGracePeriodSeconds is not above the drain ({drain} s)")
        labels = gw["spec"]["template"]["metadata"]["labels"]
        pdbs = [p for p in docs if p["kind"] == "PodDisruptionBudget"
                and all(labels.get(k) == v for k, v in p["spec"]["selector"]["matchLabels"].items())]
        if not pdbs:
            problems.add(where, "no PodDisruptionBudget selects it")
        svc = get("Service", "mig-gateway")
        internal = get("Service", "mig-gateway-internal")
        if not svc or {p["port"] for p in svc["spec"]["ports"]} < {50051, 8080}:
            problems.add(name, "Service mig-gateway does not expose 50051 and 8080")
        if not internal or internal["spec"].get("clusterIP") != "None" or \
                [p["port"] for p in internal["spec"]["ports"]] != [50052]:
            problems.add(name, "Service mig-gateway-internal is not headless on 50052")
        ok.append(f"ok {name}: gateway Deployment x{gw['spec']['replicas']}, grpc.health.v1 probes on 50051, "
                  f"PodDisruptionBudget, Services on {sorted(GATEWAY_PORTS.values())}")

    workers = [d for d in deployments
               if d["spec"]["template"]["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "worker"]
    if not workers:
        problems.add(name, "no worker Deployment")
    summary = []
    for d in workers:
        where = f"{name} Deployment/{d['metadata']['name']}"
        gpu = d["metadata"].get("annotations", {}).get("mig-gateway/gpu-model")
        if gpu not in catalog:
            problems.add(where, f"annotation mig-gateway/gpu-model {gpu!r} is not a catalog GPU {sorted(catalog)}")
            continue
        pod = d["spec"]["template"]["spec"]
        mig = []
        for c in pod_containers(d):
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                for r, v in res.get(part, {}).items():
                    if r.startswith("nvidia.com/"):
                        mig.append((c["name"], part, r, v))
        limits = [m for m in mig if m[1] == "limits"]
        if len(limits) != 1 or str(limits[0][3]) != "1" or not limits[0][2].startswith("nvidia.com/mig-"):
            problems.add(where, f"wants exactly one nvidia.com/mig-* limit of 1, has {mig}")
            continue
        cname, _, resource, _ = limits[0]
        for m in mig:
            if m[1] == "requests" and (m[2] != resource or str(m[3]) != "1"):
                problems.add(where, f"request {m[2]}: {m[3]} differs from the limit {resource}: 1")
        if resource not in catalog[gpu]:
            problems.add(where, f"{resource} is not a MIG profile of {gpu} ({', '.join(sorted(catalog[gpu]))})")
        c = next(c for c in pod["containers"] if c["name"] == cname)
        env = env_of(c)
        profile = resource[len("nvidia.com/mig-"):]
        if env.get("MIG_WORKER_PROFILE", "").replace("+", ".") != profile:
            problems.add(where, f"MIG_WORKER_PROFILE {env.get('MIG_WORKER_PROFILE')!r} is not {profile}")
        if env.get("MIG_WORKER_DEVICE") != "cuda":
            problems.add(where, "MIG_WORKER_DEVICE is not cuda")
        if not env.get("MIG_WORKER_GATEWAY") or not env.get("MIG_WORKER_REGISTRATION_TOKEN_FILE"):
            problems.add(where, "does not register (MIG_WORKER_GATEWAY, MIG_WORKER_REGISTRATION_TOKEN_FILE)")
        grace = int(env.get("MIG_WORKER_GRACE_SECONDS") or WORKER_GRACE_DEFAULT)
        if pod.get("terminationGracePeriodSeconds", 30) <= grace:
            problems.add(where, f"terminationGracePeriodSeconds is not above MIG_WORKER_GRACE_SECONDS ({grace})")
        wanted = PLAN_GPU_LABELS if plan else GPU_LABELS
        missing = [label for label in wanted if label not in pod.get("nodeSelector", {})]
        if missing:
            problems.add(where, f"nodeSelector lacks {missing}")
        if pod.get("nodeSelector", {}).get("nvidia.com/mig.strategy") != "mixed":
            problems.add(where, "nodeSelector nvidia.com/mig.strategy is not mixed")
        if c.get("readinessProbe", {}).get("grpc", {}).get("port") is None:
            problems.add(where, "readinessProbe is not grpc.health.v1")
        summary.append(f"{d['metadata']['name']}={resource}")
    if workers:
        ok.append(f"ok {name}: {len(workers)} worker Deployments request one MIG resource each "
                  f"of their GPU's catalog: {', '.join(summary)}")

    if plan:
        return ok
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    guarded = set()
    for p in policies:
        sel = p["spec"]["podSelector"].get("matchLabels", {})
        for rule in p["spec"].get("ingress", []):
            sources = rule.get("from")
            for port in rule.get("ports", []):
                comp = sel.get("app.kubernetes.io/component")
                if sources is None:
                    if (comp, port["port"]) in {("worker", 50061), ("gateway", 50052)}:
                        problems.add(name, f"NetworkPolicy/{p['metadata']['name']} opens {port['port']} to all")
                    continue
                peers = [s.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
                         for s in sources]
                if comp == "worker" and port["port"] == 50061 and peers == ["gateway"]:
                    guarded.add("worker")
                if comp == "gateway" and port["port"] == 50052 and peers == ["worker"]:
                    guarded.add("gateway")
    if guarded != {"worker", "gateway"}:
        problems.add(name, f"NetworkPolicies guard {sorted(guarded)}, want gateway->worker:50061 and worker->gateway:50052")
    else:
        ok.append(f"ok {name}: NetworkPolicies: only gateways reach workers:50061, only workers reach gateways:50052")

    tenants = get("Secret", "mig-gateway-tenants")
    if tenants:
        text = tenants.get("stringData", {}).get("tenants.toml", "")
        for key in re.findall(r'"([^"]*)"', " ".join(re.findall(r"keys\s*=\s*\[[^\]]*\]", text))):
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", key):
                problems.add(name, "Secret mig-gateway-tenants holds a key that is not a sha256: hash")
    return ok


def same_as_kubectl(kdir, docs):
    """Whether `kubectl kustomize` (where there is a kubectl) renders the
    same objects; its version when it does, None without a kubectl."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return None
    try:
        run = subprocess.run([kubectl, "kustomize", kdir], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if run.returncode != 0:
        return False
    key = lambda d: (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"])
    theirs = [d for d in yaml.safe_load_all(run.stdout) if d]
    if sorted(theirs, key=key) != sorted(docs, key=key):
        return False
    version = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True).stdout
    return " ".join(version.split()[:6]) or "kubectl"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="deploy/k8s")
    ap.add_argument("--k8s-version", default="1.37")
    ap.add_argument("--catalog", action="append", default=[], required=True)
    ap.add_argument("--plan", action="store_true",
                    help="ROOT is what `mig-gateway plan --out` wrote under k8s/")
    args = ap.parse_args()
    catalog = {}
    for entry in args.catalog:
        gpu, _, names = entry.partition("=")
        catalog[gpu] = set(filter(None, names.split(",")))
    root = os.path.realpath(args.root)
    problems = Problems()
    oks = []
    kdirs = sorted(os.path.dirname(os.path.join(d, f)) for d, _, files in os.walk(root)
                   for f in files if f == "kustomization.yaml")
    if not kdirs:
        problems.add(args.root, "no kustomization.yaml")
    used = set()
    total = 0
    for kdir in kdirs:
        name = os.path.relpath(kdir, root)
        try:
            docs = render(kdir, used, root)
        except (ValueError, KeyError, IndexError, TypeError, yaml.YAMLError) as e:
            problems.add(name, f"does not render: {e}")
            continue
        same = same_as_kubectl(kdir, docs)
        if same is False:
            problems.add(name, "renders differently here than with `kubectl kustomize`")
        elif same:
            oks.append(f"ok {name}: rendered as `kubectl kustomize` renders it ({same})")
        invalid = 0
        for d in docs:
            what = f"{name} {d.get('kind')}/{d.get('metadata', {}).get('name')}"
            try:
                kubernetes_validate.validate(d, args.k8s_version, strict=True)
            except kubernetes_validate.ValidationError as e:
                invalid += 1
                path = ".".join(str(p) for p in e.path)
                problems.add(what, f"invalid at {path or '<root>'}: {e.message}")
            except Exception as e:  # an unknown kind or version
                invalid += 1
                problems.add(what, f"not validated: {e}")
        if invalid:
            continue
        total += len(docs)
        kinds = sorted({d["kind"] for d in docs})
        oks.append(f"ok {name}: {len(docs)} objects valid against Kubernetes {args.k8s_version} "
                   f"OpenAPI (strict): {', '.join(kinds)}")
        oks.extend(check_set(name, docs, catalog, problems, plan=args.plan))
    for d, _, files in os.walk(root):
        for f in files:
            path = os.path.realpath(os.path.join(d, f))
            if f.endswith((".yaml", ".yml")) and path not in used:
                problems.add(os.path.relpath(path, root), "is in no kustomization (resources or patches)")
    for line in oks:
        print(line)
    if problems:
        for p in problems:
            print(f"FAIL {p}")
        return 1
    print(f"ok {args.root}: {len(kdirs)} kustomizations, {total} objects, "
          f"kubernetes-validate {kubernetes_validate.__version__ if hasattr(kubernetes_validate, '__version__') else ''}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
