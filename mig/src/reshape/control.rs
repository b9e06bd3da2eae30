//! What re-partitioning needs from the driver: the GPU instances that exist,
//! and destroying and creating one at a given placement.
//!
//! Two implementations: [`super::nvml::NvmlMig`] on a real driver and
//! [`super::simulated::SimulatedMig`] for tests and dry runs on machines
//! without a MIG GPU. The step planner ([`super::steps`]) never calls either;
//! only [`super::steps::apply_gpu`] does.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A GPU instance as the driver holds it, with the one compute instance that
/// spans it (the MIG device a worker is pinned to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveInstance {
    /// Index of the parent GPU, as NVML numbers devices.
    pub gpu: u32,
    /// GPU-instance id (`nvidia-smi mig -lgi`'s `ID`).
    pub gi_id: u32,
    /// Profile name, e.g. `1g.10gb`.
    pub profile: String,
    /// First memory slot of its placement.
    pub start: u8,
    /// Memory slots it takes.
    pub size: u8,
    /// `MIG-<uuid>` of its compute instance; empty when the GPU instance has
    /// no compute instance (created by hand and left half-made).
    pub uuid: String,
}

/// A GPU with MIG on and its GPU instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveGpu {
    /// Device index, as NVML numbers devices.
    pub index: u32,
    /// Catalog id of the GPU model, e.g. `a100-80gb`.
    pub model: String,
    /// Sorted by start slot.
    pub instances: Vec<LiveInstance>,
}

/// Why the driver refused a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MigError {
    /// A process holds the instance (a worker still runs on it).
    #[error("{uuid} is in use by a process; stop its worker before destroying it")]
    InUse { uuid: String },
    /// The placement is taken, not allowed for the profile, or the GPU holds
    /// no more instances of it.
    #[error("GPU {gpu} has no room for {profile} at slot {start}")]
    NoRoom {
        gpu: u32,
        profile: String,
        start: u8,
    },
    #[error("GPU {gpu} has no GPU instance {gi_id}")]
    NotFound { gpu: u32, gi_id: u32 },
    /// Anything else the driver (or NVML) said.
    #[error("MIG driver: {0}")]
    Driver(String),
}

/// Reads and changes the MIG layout of a machine's GPUs.
///
/// Synchronous: every call is a few driver calls (tens of milliseconds on
/// real hardware); an async caller runs it on a blocking thread.
pub trait MigControl: Send {
    /// Every GPU with MIG on, with its GPU instances sorted by start slot.
    fn gpus(&self) -> Result<Vec<LiveGpu>, MigError>;

    /// Destroys the GPU instance's compute instances, then it. [`MigError::InUse`]
    /// while a process holds it.
    fn destroy(&mut self, gpu: u32, gi_id: u32) -> Result<(), MigError>;

    /// Creates a GPU instance of `profile` at memory slot `start`
    /// (create-with-placement) and one compute instance spanning it; returns
    /// it with its MIG uuid.
    fn create(&mut self, gpu: u32, profile: &str, start: u8) -> Result<LiveInstance, MigError>;
}

impl fmt::Display for LiveInstance {
    /// `GPU 0 GI 3 (1g.10gb @2, MIG-…)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GPU {} GI {} ({} @{}, {})",
            self.gpu,
            self.gi_id,
            self.profile,
            self.start,
            if self.uuid.is_empty() {
                "no compute instance"
            } else {
                &self.uuid
            }
        )
    }
}
