//! A plan in the forms operators apply: `nvidia-smi` commands, a mig-parted
//! config, Kubernetes resource limits.
//!
//! All three are text written by hand rather than through a YAML library: the
//! shapes are small and fixed, and the exact text is what the tests pin.

use serde::Serialize;

use crate::catalog::Profile;
use crate::planner::{GpuPlan, Plan, PlannedInstance};

/// Instances largest first (memory slots, then compute slices), then by start.
///
/// The driver places each new instance itself when no start is given, and it
/// reaches layouts like `3g + 2g + 1g + 1g` only when the large instance comes
/// first (the MIG User Guide notes this for `3g.20gb` on A100).
fn largest_first(g: &GpuPlan) -> Vec<&PlannedInstance> {
    let mut v: Vec<&PlannedInstance> = g.instances.iter().collect();
    v.sort_by(|a, b| {
        (b.profile.memory_slices, b.profile.compute_slices)
            .cmp(&(a.profile.memory_slices, a.profile.compute_slices))
            .then(a.start.cmp(&b.start))
    });
    v
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A bash script that creates the plan's GPU instances (and their default
/// compute instances) with `nvidia-smi mig -cgi ... -C`, one line per GPU.
///
/// Enabling MIG mode stays a commented-out line: it needs the GPU idle, may
/// need a reset, and is not something a generated script should do to a
/// machine unasked.
pub fn nvidia_smi_script(plan: &Plan) -> String {
    let gpu = plan.gpu;
    let mut s = String::new();
    s.push_str("#!/usr/bin/env bash\n");
    s.push_str(&format!(
        "# MIG layout for {} x {} ({}), {}.\n",
        plan.gpus.len(),
        gpu.id,
        gpu.name,
        plan.cost_line()
    ));
    s.push_str(
        "#\n\
         # GPU indices are the plan's own, 0..N-1: run this where GPUs 0..N-1 are of\n\
         # this model, or change -i. Profile ids are those `nvidia-smi mig -lgip` lists.\n\
         # Instances are created largest first, the order in which the driver's own\n\
         # placement reaches the planned layout. Drivers that take a start slot after\n\
         # the id (`<id>:<start>`) can pin the planned slots with the commented line.\n\
         #\n\
         # Enabling MIG mode is an operator step (the GPU must be idle, and may need a\n\
         # reset): uncomment the `-mig 1` line of each GPU, or run it beforehand.\n\
         set -euo pipefail\n",
    );
    if plan.gpus.is_empty() {
        s.push_str("\n# The plan uses no GPU; nothing to create.\n");
    }
    for g in &plan.gpus {
        let order = largest_first(g);
        s.push_str(&format!("\n# GPU {}: {}\n", g.index, g.slot_map));
        for i in &order {
            s.push_str(&format!(
                "#   {} (id {}) at slot {}: {} #{}\n",
                i.profile.name, i.profile.id, i.start, i.model, i.replica
            ));
        }
        let ids = |pin: bool| {
            order
                .iter()
                .map(|i| {
                    if pin {
                        format!("{}:{}", i.profile.id, i.start)
                    } else {
                        i.profile.id.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        s.push_str(&format!("# nvidia-smi -i {} -mig 1\n", g.index));
        s.push_str(&format!(
            "# nvidia-smi mig -i {} -cgi {} -C\n",
            g.index,
            ids(true)
        ));
        s.push_str(&format!(
            "nvidia-smi mig -i {} -cgi {} -C\n",
            g.index,
            ids(false)
        ));
    }
    s
}

/// `(profile, count)` per GPU, largest profile first.
fn profile_counts(g: &GpuPlan) -> Vec<(&'static Profile, usize)> {
    let mut counts: Vec<(&'static Profile, usize)> = Vec::new();
    for i in largest_first(g) {
        match counts.iter_mut().find(|(p, _)| p.name == i.profile.name) {
            Some((_, n)) => *n += 1,
            None => counts.push((i.profile, 1)),
        }
    }
    counts
}

/// A YAML scalar: bare when it is plainly a word, else double-quoted.
fn yaml_str(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphabetic());
    if plain {
        return s.to_string();
    }
    let mut q = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c if c.is_control() => q.push_str(&format!("\\u{:04x}", c as u32)),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// A config for NVIDIA's mig-parted (`nvidia-mig-parted apply -f <file> -c
/// <config_name>`), with GPUs of identical layout grouped into one entry.
///
/// mig-parted chooses placements itself from the profile counts; every
/// grouped layout here is one [`crate::layout`] found placements for.
pub fn mig_parted_config(plan: &Plan, config_name: &str) -> String {
    // (profile counts, GPU indices with exactly those counts)
    type Group = (Vec<(&'static Profile, usize)>, Vec<u32>);
    let mut groups: Vec<Group> = Vec::new();
    for g in &plan.gpus {
        let counts = profile_counts(g);
        let key: Vec<(&str, usize)> = counts.iter().map(|(p, n)| (p.name, *n)).collect();
        match groups
            .iter_mut()
            .find(|(c, _)| c.iter().map(|(p, n)| (p.name, *n)).collect::<Vec<_>>() == key)
        {
            Some((_, devices)) => devices.push(g.index),
            None => groups.push((counts, vec![g.index])),
        }
    }
    let mut s = format!(
        "# mig-parted config for {} x {}: {}.\nversion: v1\nmig-configs:\n",
        plan.gpus.len(),
        plan.gpu.id,
        plan.cost_line()
    );
    let name = yaml_str(config_name);
    if groups.is_empty() {
        s.push_str(&format!("  {name}: []\n"));
        return s;
    }
    s.push_str(&format!("  {name}:\n"));
    for (counts, devices) in groups {
        let devices = devices
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        s.push_str(&format!("    - devices: [{devices}]\n"));
        s.push_str("      mig-enabled: true\n");
        s.push_str("      mig-devices:\n");
        for (p, n) in counts {
            s.push_str(&format!("        \"{}\": {n}\n", p.name));
        }
    }
    s
}

/// What one model's pods request under the device plugin's `mixed` MIG
/// strategy, where each profile is its own extended resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct K8sResource {
    pub model: String,
    pub profile: &'static str,
    /// e.g. `nvidia.com/mig-1g.10gb`.
    pub resource: String,
    /// Slices each replica (pod) requests: one.
    pub per_replica: u32,
    pub replicas: u32,
}

impl K8sResource {
    /// The `resources:` block of the model's container spec.
    pub fn limits_yaml(&self) -> String {
        format!(
            "# {}: {}, one {} slice per replica (MIG strategy: mixed)\n\
             resources:\n  limits:\n    {}: {}\n",
            self.model,
            plural(self.replicas as usize, "replica", "replicas"),
            self.profile,
            self.resource,
            self.per_replica
        )
    }
}

/// One entry per model (and profile), sorted by model name.
pub fn k8s_resources(plan: &Plan) -> Vec<K8sResource> {
    let mut out: Vec<K8sResource> = Vec::new();
    for i in plan.gpus.iter().flat_map(|g| &g.instances) {
        match out
            .iter_mut()
            .find(|r| r.model == i.model && r.profile == i.profile.name)
        {
            Some(r) => r.replicas += 1,
            None => out.push(K8sResource {
                model: i.model.clone(),
                profile: i.profile.name,
                resource: i.profile.k8s_resource(),
                per_replica: 1,
                replicas: 1,
            }),
        }
    }
    out.sort_by(|a, b| (&a.model, a.profile).cmp(&(&b.model, b.profile)));
    out
}

/// Every model's `resources:` block, separated by blank lines.
pub fn k8s_limits_yaml(plan: &Plan) -> String {
    k8s_resources(plan)
        .iter()
        .map(K8sResource::limits_yaml)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::gpu_model;
    use crate::need::{gb, gib, MemoryNeed};
    use crate::planner::{plan, Demand, PlanOptions};

    fn a100(demands: &[Demand]) -> Plan {
        plan(
            gpu_model("a100-80gb").unwrap(),
            demands,
            PlanOptions::default(),
        )
    }

    /// 3g + 2g + 1g + 1g on one A100 80GB: it fits only with the 3g at slot 4.
    fn one_of_each() -> Plan {
        a100(&[
            Demand::new("llama-3-8b", MemoryNeed::total(gb(30.0)), 1),
            Demand::new("mistral-7b", MemoryNeed::total(gb(15.0)), 1),
            Demand::new("smollm2-135m", MemoryNeed::total(gib(0.5)), 2),
        ])
    }

    /// Two 3g on GPU 0, then seven 1g on each of GPUs 1 and 2.
    fn two_alike() -> Plan {
        a100(&[
            Demand::new("smollm2-135m", MemoryNeed::total(gib(0.5)), 14),
            Demand::new("llama-3-8b", MemoryNeed::total(gb(30.0)), 2),
        ])
    }

    #[test]
    fn script_creates_largest_first_and_leaves_mig_mode_to_the_operator() {
        let p = one_of_each();
        assert_eq!(p.gpus.len(), 1, "{p}");
        let s = nvidia_smi_script(&p);
        assert_eq!(
            s.split_once("set -euo pipefail\n").unwrap().1,
            "
# GPU 0: [0 1][2][3][4 5 6 7]
#   3g.40gb (id 9) at slot 4: llama-3-8b #0
#   2g.20gb (id 14) at slot 0: mistral-7b #0
#   1g.10gb (id 19) at slot 2: smollm2-135m #0
#   1g.10gb (id 19) at slot 3: smollm2-135m #1
# nvidia-smi -i 0 -mig 1
# nvidia-smi mig -i 0 -cgi 9:4,14:0,19:2,19:3 -C
nvidia-smi mig -i 0 -cgi 9,14,19,19 -C
"
        );
        assert!(s.starts_with(
            "#!/usr/bin/env bash\n\
             # MIG layout for 1 x a100-80gb (NVIDIA A100 80GB), \
             4 replicas on 1 GPU instead of 4 (saves 3).\n"
        ));
        let s = nvidia_smi_script(&two_alike());
        let commands: Vec<&str> = s.lines().filter(|l| l.starts_with("nvidia-smi")).collect();
        assert_eq!(
            commands,
            [
                "nvidia-smi mig -i 0 -cgi 9,9 -C",
                "nvidia-smi mig -i 1 -cgi 19,19,19,19,19,19,19 -C",
                "nvidia-smi mig -i 2 -cgi 19,19,19,19,19,19,19 -C",
            ]
        );
    }

    #[test]
    fn mig_parted_groups_identical_gpus() {
        assert_eq!(
            mig_parted_config(&two_alike(), "mig-gateway"),
            "\
# mig-parted config for 3 x a100-80gb: 16 replicas on 3 GPUs instead of 16 (saves 13).
version: v1
mig-configs:
  mig-gateway:
    - devices: [0]
      mig-enabled: true
      mig-devices:
        \"3g.40gb\": 2
    - devices: [1, 2]
      mig-enabled: true
      mig-devices:
        \"1g.10gb\": 7
"
        );
        assert!(mig_parted_config(&one_of_each(), "x").ends_with(
            "      mig-devices:\n        \"3g.40gb\": 1\n        \"2g.20gb\": 1\n        \"1g.10gb\": 2\n"
        ));
    }

    #[test]
    fn mig_parted_quotes_odd_names_and_handles_empty_plans() {
        let empty = plan(gpu_model("h100-80gb").unwrap(), &[], PlanOptions::default());
        assert_eq!(
            mig_parted_config(&empty, "my config"),
            "# mig-parted config for 0 x h100-80gb: no replica placed.\n\
             version: v1\nmig-configs:\n  \"my config\": []\n"
        );
        assert_eq!(yaml_str("all-1g.10gb"), "all-1g.10gb");
        assert_eq!(yaml_str("7g"), "\"7g\"");
        assert_eq!(yaml_str("a\"b"), "\"a\\\"b\"");
        let s = nvidia_smi_script(&empty);
        assert!(s.ends_with("# The plan uses no GPU; nothing to create.\n"));
    }

    #[test]
    fn k8s_limits_name_the_mixed_strategy_resource() {
        let p = one_of_each();
        let r = k8s_resources(&p);
        let got: Vec<(&str, &str, u32)> = r
            .iter()
            .map(|r| (r.model.as_str(), r.resource.as_str(), r.replicas))
            .collect();
        assert_eq!(
            got,
            [
                ("llama-3-8b", "nvidia.com/mig-3g.40gb", 1),
                ("mistral-7b", "nvidia.com/mig-2g.20gb", 1),
                ("smollm2-135m", "nvidia.com/mig-1g.10gb", 2),
            ]
        );
        assert_eq!(
            r[2].limits_yaml(),
            "# smollm2-135m: 2 replicas, one 1g.10gb slice per replica (MIG strategy: mixed)\n\
             resources:\n  limits:\n    nvidia.com/mig-1g.10gb: 1\n"
        );
        assert_eq!(k8s_limits_yaml(&p).matches("resources:\n").count(), 3);
        assert!(r[0]
            .limits_yaml()
            .starts_with("# llama-3-8b: 1 replica, one 3g.40gb slice per replica"));
    }
}
