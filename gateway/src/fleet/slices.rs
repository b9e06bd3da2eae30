//! What this machine offers to run workers on: GPU slices from NVML, and the
//! CPU cores this process may use. Printed by `mig-gateway slices`, and the
//! inventory `up` places its fleet on.

use mig_slices::discovery::{self, Discovery};
use mig_slices::CoreSet;
use serde::Serialize;

use crate::fleet::placement::Inventory;

/// Everything detected, kept together so one discovery feeds both the
/// placement and the printout.
#[derive(Debug, Clone, Serialize)]
pub struct Detected {
    pub gpu: Discovery,
    /// Cores of this process's CPU affinity mask.
    pub cpu_cores: Vec<usize>,
}

impl Detected {
    /// Asks NVML (logging what it found, or why not) and the kernel.
    pub fn detect() -> Detected {
        Detected {
            gpu: discovery::discover(),
            cpu_cores: affinity_cores(),
        }
    }

    /// A recorded snapshot (`slices --json --raw`) mapped as if NVML had just
    /// answered it; the cores are still this machine's.
    pub fn from_snapshot(path: &std::path::Path) -> Result<Detected, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        let snapshot = discovery::NvmlSnapshot::from_json(&text)
            .map_err(|e| format!("`{}` is not an NVML snapshot: {e}", path.display()))?;
        Ok(Detected {
            gpu: Discovery::from_read(Ok(snapshot)),
            cpu_cores: affinity_cores(),
        })
    }

    pub fn inventory(&self) -> Inventory {
        Inventory {
            gpu: self.gpu.slices().to_vec(),
            cores: self.cpu_cores.clone(),
        }
    }

    /// The human listing of `mig-gateway slices`.
    pub fn table(&self) -> String {
        let mut out = String::new();
        match &self.gpu {
            Discovery::NoNvml { reason } => {
                out.push_str(&format!("NVML: not available ({reason})\n"));
                out.push_str("GPU slices: none\n");
            }
            Discovery::Nvml {
                snapshot,
                discovered,
            } => {
                out.push_str(&format!(
                    "NVML: driver {}, {} GPU(s)\n",
                    snapshot.driver_version.as_deref().unwrap_or("unknown"),
                    snapshot.gpus.len()
                ));
                for gpu in &snapshot.gpus {
                    let mig = match &gpu.mig_mode {
                        None => "MIG unsupported".to_string(),
                        Some(m) if m.current == m.pending => {
                            format!("MIG {}", if m.current { "on" } else { "off" })
                        }
                        Some(m) => format!(
                            "MIG {} (pending {})",
                            if m.current { "on" } else { "off" },
                            if m.pending { "on" } else { "off" }
                        ),
                    };
                    out.push_str(&format!(
                        "  GPU {} {} {} {:.1} GiB, {mig}\n",
                        gpu.index,
                        gpu.uuid,
                        gpu.name,
                        gib(gpu.memory_total_bytes)
                    ));
                }
                out.push_str(&format!("GPU slices: {}\n", discovered.slices.len()));
                if !discovered.slices.is_empty() {
                    out.push_str(&format!(
                        "  {:<44} {:<12} {:>9} {:>4} {:>4} {:>4}\n",
                        "SLICE", "PROFILE", "MEMORY", "GPU", "GI", "CI"
                    ));
                    for s in &discovered.slices {
                        let opt = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or("-".into());
                        out.push_str(&format!(
                            "  {:<44} {:<12} {:>5.1} GiB {:>4} {:>4} {:>4}\n",
                            s.id.to_string(),
                            s.profile,
                            gib(s.memory_bytes),
                            s.gpu_index,
                            opt(s.gpu_instance_id),
                            opt(s.compute_instance_id)
                        ));
                    }
                }
                for w in &discovered.warnings {
                    out.push_str(&format!("  warning: {w}\n"));
                }
            }
        }
        let cores = CoreSet::from_cores(&self.cpu_cores)
            .map(|c| c.to_string())
            .unwrap_or_else(|| "none".into());
        out.push_str(&format!(
            "CPU cores: {} ({cores}); a CPU slice is a core set such as `cpu:0` or `cpu:0-1`\n",
            self.cpu_cores.len()
        ));
        out
    }
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// The cores this process may run on (its affinity mask, which a container's
/// cpuset or `taskset` narrows), in increasing order.
pub fn affinity_cores() -> Vec<usize> {
    match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..nix::sched::CpuSet::count())
            .filter(|&i| set.is_set(i).unwrap_or(false))
            .collect(),
        Err(e) => {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            tracing::warn!(error = %e, cores = n, "cannot read CPU affinity; assuming cores 0..n");
            (0..n).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_lists_the_cores_this_test_may_use() {
        let cores = affinity_cores();
        assert!(!cores.is_empty());
        assert!(cores.windows(2).all(|w| w[0] < w[1]));
        let allowed = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = allowed
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_string();
        let expected: mig_slices::SliceId = format!("cpu:{line}").parse().unwrap();
        assert_eq!(expected.cores().unwrap().cores(), cores.as_slice());
    }

    #[test]
    fn table_of_a_recorded_mig_machine_lists_every_slice() {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../mig/tests/fixtures/nvml/a100_mig_mixed_h100_whole.json");
        let detected = Detected::from_snapshot(&fixture).unwrap();
        let table = detected.table();
        assert!(table.contains("2 GPU(s)"), "{table}");
        assert!(table.contains("MIG on"), "{table}");
        assert!(table.contains("MIG off"), "{table}");
        for profile in ["3g.40gb", "2g.20gb", "1g.10gb", "gpu.80gb"] {
            assert!(table.contains(profile), "{profile}: {table}");
        }
        assert_eq!(detected.gpu.slices().len(), 5, "{table}");
        assert_eq!(table.matches("MIG-").count(), 4, "{table}");
        let e = Detected::from_snapshot(std::path::Path::new("/no/such.json")).unwrap_err();
        assert!(e.contains("/no/such.json"), "{e}");
    }

    #[test]
    fn table_without_nvml_names_the_reason_and_the_cores() {
        let detected = Detected {
            gpu: Discovery::NoNvml {
                reason: "libnvidia-ml.so.1: cannot open shared object file".into(),
            },
            cpu_cores: vec![0, 1],
        };
        let table = detected.table();
        assert!(
            table.contains("NVML: not available (libnvidia-ml.so.1"),
            "{table}"
        );
        assert!(table.contains("GPU slices: none"), "{table}");
        assert!(table.contains("CPU cores: 2 (0-1)"), "{table}");
        let json = serde_json::to_value(&detected).unwrap();
        assert_eq!(json["gpu"]["source"], "no_nvml");
        assert_eq!(json["cpu_cores"], serde_json::json!([0, 1]));
    }
}
