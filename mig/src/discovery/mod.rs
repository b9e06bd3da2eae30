//! Which GPU slices this machine has, as NVML reports them.
//!
//! Split in three so that only one file needs a GPU:
//! - [`snapshot`]: plain records of what NVML said (serde, nothing derived);
//!   recorded on real machines, they are the test fixtures.
//! - [`nvml`]: the NVML calls filling a snapshot.
//! - [`map`]: snapshot → slices and warnings, pure and tested on recordings.
//! - [`visible`]: the one slice a process was given (`--slice visible`).
//!
//! A machine without the NVIDIA driver is normal here (CPU-only development,
//! CI): [`discover`] then answers [`Discovery::NoNvml`] with the reason, and
//! the caller uses CPU slices.

pub mod map;
pub mod nvml;
pub mod snapshot;
pub mod visible;

use serde::Serialize;
use tracing::{info, warn};

use crate::SliceId;

pub use map::{slices, Discovered, DiscoveredSlice};
pub use nvml::{read_snapshot, DiscoveryError, MemoryProbe};
pub use snapshot::{GpuRecord, MigAttributesRecord, MigDeviceRecord, MigModeRecord, NvmlSnapshot};
pub use visible::{visible_slice, VISIBLE_DEVICES_VARS};

/// The outcome of looking for GPUs.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Discovery {
    /// NVML answered. `discovered` may still hold no slice (see its warnings).
    Nvml {
        /// Kept alongside the mapping so `slices --json --raw` can print what
        /// NVML said and a bad mapping can be replayed from it.
        snapshot: NvmlSnapshot,
        discovered: Discovered,
    },
    /// NVML could not be used at all; no GPU slice exists.
    NoNvml { reason: String },
}

/// Reads NVML, maps it to slices and logs the outcome (one summary line, plus
/// one warning line per warning).
pub fn discover() -> Discovery {
    let read = read_snapshot();
    // No driver is a normal machine; a driver that is there but refuses is
    // a fault an operator should see.
    let broken_driver = matches!(&read, Err(e) if !matches!(e, DiscoveryError::Load(_)));
    let discovery = Discovery::from_read(read);
    match &discovery {
        Discovery::NoNvml { reason } if broken_driver => {
            warn!("no GPU slices: NVML is unusable ({reason}); only CPU slices can be used");
        }
        _ => discovery.log(),
    }
    discovery
}

impl Discovery {
    /// Builds the outcome from a snapshot read (or a failure to read one);
    /// separate from [`discover`] so the decision is testable without NVML.
    pub fn from_read(read: Result<NvmlSnapshot, DiscoveryError>) -> Self {
        match read {
            Ok(snapshot) => {
                let discovered = slices(&snapshot);
                Discovery::Nvml {
                    snapshot,
                    discovered,
                }
            }
            Err(e) => Discovery::NoNvml {
                reason: e.to_string(),
            },
        }
    }

    /// GPU slices found; empty without NVML.
    pub fn slices(&self) -> &[DiscoveredSlice] {
        match self {
            Discovery::Nvml { discovered, .. } => &discovered.slices,
            Discovery::NoNvml { .. } => &[],
        }
    }

    /// Warnings of the mapping; empty without NVML (the reason says why).
    pub fn warnings(&self) -> &[String] {
        match self {
            Discovery::Nvml { discovered, .. } => &discovered.warnings,
            Discovery::NoNvml { .. } => &[],
        }
    }

    /// The slice with this id, so a worker started with
    /// `CUDA_VISIBLE_DEVICES=MIG-…` can learn its own profile and memory.
    pub fn find(&self, id: &SliceId) -> Option<&DiscoveredSlice> {
        self.slices().iter().find(|s| &s.id == id)
    }

    /// Writes what was found to the log.
    pub fn log(&self) {
        match self {
            Discovery::NoNvml { reason } => {
                info!("no GPU slices: NVML is unavailable ({reason}); only CPU slices can be used");
            }
            Discovery::Nvml {
                snapshot,
                discovered,
            } => {
                let list: Vec<String> = discovered
                    .slices
                    .iter()
                    .map(|s| format!("{} {} on GPU {}", s.id, s.profile, s.gpu_index))
                    .collect();
                info!(
                    "NVML (driver {}): {} GPU(s), {} GPU slice(s){}{}",
                    snapshot.driver_version.as_deref().unwrap_or("unknown"),
                    snapshot.gpus.len(),
                    list.len(),
                    if list.is_empty() { "" } else { ": " },
                    list.join(", "),
                );
                for warning in &discovered.warnings {
                    warn!("GPU discovery: {warning}");
                }
            }
        }
    }
}
