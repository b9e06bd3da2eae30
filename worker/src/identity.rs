//! Who this worker is: its slice, the slice's profile, memory and parent GPU,
//! reported in `Info`, in every `served_by` and in heartbeats.
//!
//! For a GPU slice NVML is the authority: the profile and memory come from
//! the MIG device's own handle (never the parent GPU's, which would report the
//! whole card). Without NVML the command line's `--profile` stands in, and the
//! log says so.

use mig_proto::inference::v1::ServedBy;
use mig_slices::discovery::{self, Discovery};
use mig_slices::SliceId;

use crate::model::DeviceKind;

/// What the command line says about this worker and its slice; the rest
/// (profile, memory, parent GPU of a GPU slice) comes from NVML.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The name clients route by.
    pub model: String,
    pub worker_id: String,
    pub slice: SliceId,
    /// `--profile`: a GPU slice's profile where NVML cannot name it; a CPU
    /// slice's name (`cpu-2c`) otherwise.
    pub profile: String,
    /// Whether `--profile` was given (NVML is checked against it).
    pub profile_given: bool,
    pub device: DeviceKind,
}

#[derive(Debug, Clone)]
pub struct Identity {
    pub worker_id: String,
    pub model: String,
    pub slice: String,
    pub profile: String,
    /// Parent GPU UUID; empty on CPU slices.
    pub gpu: String,
    /// NVML's GPU instance id of a MIG slice (dcgm-exporter's `GPU_I_ID`),
    /// in decimal; empty on CPU slices, whole GPUs and without NVML.
    pub gpu_instance_id: String,
    /// The node (`$NODE_NAME` or the host name), dcgm-exporter's `Hostname`.
    pub hostname: String,
    pub memory_bytes: u64,
    pub device: String,
}

impl Identity {
    /// Resolves the slice's identity.
    pub fn resolve(claimed: Claimed) -> Identity {
        let (profile, gpu, gpu_instance_id, memory_bytes) = match &claimed.slice {
            SliceId::Cpu(_) => (
                claimed.profile,
                String::new(),
                String::new(),
                host_memory_bytes(),
            ),
            gpu_slice => from_nvml(
                gpu_slice,
                claimed.profile_given.then_some(claimed.profile.as_str()),
            ),
        };
        Identity {
            worker_id: claimed.worker_id,
            model: claimed.model,
            slice: claimed.slice.to_string(),
            profile,
            gpu,
            gpu_instance_id,
            hostname: mig_slices::node::node_name(),
            memory_bytes,
            device: match claimed.device {
                DeviceKind::Cpu => "cpu".into(),
                DeviceKind::Cuda => "cuda".into(),
            },
        }
    }

    pub fn served_by(&self) -> ServedBy {
        ServedBy {
            worker_id: self.worker_id.clone(),
            slice: self.slice.clone(),
            profile: self.profile.clone(),
            gpu: self.gpu.clone(),
            memory_bytes: self.memory_bytes,
        }
    }
}

/// Profile, parent GPU, GPU instance id and memory of a GPU slice as NVML
/// reports them.
fn from_nvml(slice: &SliceId, flag_profile: Option<&str>) -> (String, String, String, u64) {
    let fallback = flag_profile.unwrap_or("unknown").to_string();
    match discovery::discover() {
        Discovery::NoNvml { reason } => {
            tracing::warn!(%slice, %reason, profile = %fallback,
                "NVML unavailable: slice identity taken from the command line, memory unknown");
            (fallback, String::new(), String::new(), 0)
        }
        Discovery::Nvml { discovered, .. } => match discovered.find(slice) {
            Some(found) => {
                if let Some(flag) = flag_profile.filter(|p| *p != found.profile) {
                    tracing::warn!(%slice, flag, nvml = %found.profile,
                        "`--profile` disagrees with NVML; reporting NVML's");
                }
                tracing::info!(%slice, profile = %found.profile, gpu = %found.gpu_uuid,
                    gpu_instance_id = ?found.gpu_instance_id, memory_bytes = found.memory_bytes, "slice identity from NVML");
                (
                    found.profile.clone(),
                    found.gpu_uuid.clone(),
                    found
                        .gpu_instance_id
                        .map(|id| id.to_string())
                        .unwrap_or_default(),
                    found.memory_bytes,
                )
            }
            None => {
                tracing::warn!(%slice, profile = %fallback,
                    "NVML does not list this slice: identity taken from the command line");
                (fallback, String::new(), String::new(), 0)
            }
        },
    }
}

/// `MemTotal` of `/proc/meminfo`: a CPU slice shares its host's memory.
fn host_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_slice_reports_its_core_profile_and_host_memory() {
        let id = Identity::resolve(Claimed {
            model: "m".into(),
            worker_id: "m@cpu:0-1".into(),
            slice: "cpu:0-1".parse().unwrap(),
            profile: "cpu-2c".into(),
            profile_given: false,
            device: DeviceKind::Cpu,
        });
        assert_eq!(id.profile, "cpu-2c");
        assert_eq!(id.slice, "cpu:0-1");
        assert!(id.gpu.is_empty());
        assert!(id.gpu_instance_id.is_empty());
        assert!(!id.hostname.is_empty(), "the node's name");
        assert!(id.memory_bytes > 0, "MemTotal read from /proc/meminfo");
        let served = id.served_by();
        assert_eq!(served.worker_id, "m@cpu:0-1");
        assert_eq!(served.memory_bytes, id.memory_bytes);
    }
}
