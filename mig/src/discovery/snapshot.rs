//! What NVML reported, recorded as plain data.
//!
//! These types hold only values NVML returned (plus the errors it returned),
//! never anything derived from them. That split is what lets the mapping in
//! [`super::map`] be tested on snapshots recorded on real GPU machines, and
//! lets a snapshot taken on a customer's machine be replayed here when a
//! mapping looks wrong. Every type serialises to JSON and back unchanged.

use serde::{Deserialize, Serialize};

/// One reading of NVML: the driver and every GPU it enumerated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvmlSnapshot {
    /// `nvmlSystemGetDriverVersion`, e.g. `"550.54.15"`; `None` if the call
    /// failed (kept optional so one odd driver does not lose the GPU list).
    pub driver_version: Option<String>,
    /// `nvmlSystemGetCudaDriverVersion_v2`, e.g. `12040` for CUDA 12.4.
    pub cuda_driver_version: Option<i32>,
    /// GPUs in NVML index order. A GPU whose identity could not be read is
    /// absent here and named in [`errors`](Self::errors) instead.
    pub gpus: Vec<GpuRecord>,
    /// GPUs NVML listed but whose identity it could not read. A lost GPU must
    /// not hide the healthy ones, so these are recorded and discovery goes
    /// on; the mapping turns them into warnings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// A physical GPU (NVML's device handle by index, which is never a MIG device).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuRecord {
    /// NVML index. It may differ from the CUDA ordinal (CUDA orders by speed
    /// unless `CUDA_DEVICE_ORDER=PCI_BUS_ID`), which is why workers are pinned
    /// by UUID and never by index.
    pub index: u32,
    /// `GPU-<uuid>`.
    pub uuid: String,
    /// e.g. `"NVIDIA A100-SXM4-80GB"`.
    pub name: String,
    /// e.g. `"00000000:07:00.0"`; only for humans matching `nvidia-smi` output.
    pub pci_bus_id: Option<String>,
    /// Memory of the whole card. With MIG on no worker may size itself from
    /// this: each MIG device has its own, smaller total.
    pub memory_total_bytes: u64,
    /// `None` when the GPU does not support MIG (NVML said "not supported").
    pub mig_mode: Option<MigModeRecord>,
    /// MIG devices found through the MIG handles of this GPU, in MIG index
    /// order. Empty when MIG is off or no instance was created.
    #[serde(default)]
    pub mig_devices: Vec<MigDeviceRecord>,
    /// GPU-instance profiles as this driver defines them
    /// (`nvmlDeviceGetGpuInstanceProfileInfo`), read when MIG mode is on.
    /// Their memory overrides the catalog's table for this GPU. Empty in
    /// snapshots recorded before the field existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instance_profiles: Vec<InstanceProfileRecord>,
    /// MIG devices (or the MIG slot count) NVML failed to read on this GPU.
    /// Kept with the GPU so an empty `mig_devices` can be told apart from
    /// "no instances created".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// One GPU-instance profile as the driver reports it: the figures of an
/// `nvidia-smi mig -lgip` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceProfileRecord {
    /// The profile id `nvidia-smi mig -cgi` takes (`19` for `1g.10gb`).
    pub id: u32,
    /// Memory slots the instance takes.
    pub slice_count: u32,
    /// Most instances of the profile the GPU holds.
    pub instance_count: u32,
    pub multiprocessor_count: u32,
    pub copy_engine_count: u32,
    pub decoder_count: u32,
    pub encoder_count: u32,
    pub jpeg_count: u32,
    pub ofa_count: u32,
    /// `memorySizeMB`, in MiB: what a plan may fill on this driver.
    pub memory_size_mb: u64,
}

/// `nvmlDeviceGetMigMode`. The two differ after `nvidia-smi -mig` until the
/// GPU is reset, and only `current` says what CUDA sees now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigModeRecord {
    pub current: bool,
    pub pending: bool,
}

/// A MIG device: one compute instance inside one GPU instance, read through
/// its own MIG device handle (not the parent's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigDeviceRecord {
    /// Index passed to `nvmlDeviceGetMigDeviceHandleByIndex`; not stable
    /// across reconfigurations, unlike the UUID.
    pub index: u32,
    /// `MIG-<uuid>`, the value `CUDA_VISIBLE_DEVICES` takes.
    pub uuid: String,
    /// NVML name of the MIG handle, e.g. `"NVIDIA A100-SXM4-80GB MIG 1g.10gb"`;
    /// the text after `" MIG "` is the profile.
    pub name: String,
    pub gpu_instance_id: u32,
    pub compute_instance_id: u32,
    /// `nvmlDeviceGetMemoryInfo` on the MIG handle: the GPU instance's memory,
    /// shared by all compute instances of that GPU instance.
    pub memory_total_bytes: u64,
    /// `nvmlDeviceGetAttributes` on the MIG handle, when the driver answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<MigAttributesRecord>,
}

/// The hardware share of a MIG device, as NVML counts it. Recorded because
/// it does not depend on parsing the profile name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigAttributesRecord {
    pub multiprocessor_count: u32,
    /// Slices of the GPU instance (the `3` of `3g.40gb`).
    pub gpu_instance_slice_count: u32,
    /// Slices of this compute instance (the `1` of `1c.3g.40gb`; equal to the
    /// GPU-instance count when the compute instance fills its GPU instance).
    pub compute_instance_slice_count: u32,
    /// NVML's own memory figure for the MIG device, in MiB.
    pub memory_size_mb: u64,
}

impl NvmlSnapshot {
    /// Pretty JSON, the format of the fixtures under `mig/tests/fixtures/nvml/`,
    /// so a snapshot recorded on a GPU machine can be dropped in as a test.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("snapshot types always serialise")
    }

    /// Reads a snapshot recorded with [`to_json_pretty`](Self::to_json_pretty).
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }
}
