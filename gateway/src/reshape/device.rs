//! The MIG device a reshape changes: the driver's (NVML), or a simulated
//! one whose slices CPU workers stand in for (`up --simulate-mig FILE`).

use std::path::{Path, PathBuf};

use mig_slices::catalog;
use mig_slices::discovery::DiscoveredSlice;
use mig_slices::reshape::control::{LiveGpu, LiveInstance, MigControl, MigError};
use mig_slices::reshape::nvml::NvmlMig;
use mig_slices::reshape::simulated::SimulatedMig;
use mig_slices::SliceId;

/// A MIG device as the reshape drives it: the driver's calls, plus what
/// a simulated device must be told that a real driver sees by itself
/// (which instances a worker holds).
pub trait Device: MigControl {
    /// A worker now runs on `uuid`.
    fn worker_started(&mut self, _uuid: &str) {}
    /// The worker on `uuid` has exited.
    fn worker_stopped(&mut self, _uuid: &str) {}
}

impl Device for NvmlMig {}

/// A simulated device kept in a JSON file: read at start, written back
/// after every change, so the operator (and a test) sees its layout.
pub struct SimulatedFile {
    sim: SimulatedMig,
    path: PathBuf,
}

impl SimulatedFile {
    pub fn open(path: &Path) -> Result<SimulatedFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("`--simulate-mig {}`: {e}", path.display()))?;
        let mut sim = SimulatedMig::from_json(&text)
            .map_err(|e| format!("`--simulate-mig {}`: {e}", path.display()))?;
        // Marks a gateway that stopped left behind: this one holds nothing
        // yet (its workers mark theirs as they start).
        let uuids: Vec<String> = sim
            .gpus()
            .map_err(|e| e.to_string())?
            .into_iter()
            .flat_map(|g| g.instances)
            .map(|i| i.uuid)
            .collect();
        for uuid in &uuids {
            sim.release(uuid);
        }
        Ok(SimulatedFile {
            sim,
            path: path.to_path_buf(),
        })
    }

    fn save(&self) -> Result<(), MigError> {
        let text = self.sim.to_json();
        // Whole or not at all: a reader never sees half a state.
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| {
                MigError::Driver(format!(
                    "cannot write the simulated state `{}`: {e}",
                    self.path.display()
                ))
            })
    }
}

impl MigControl for SimulatedFile {
    fn gpus(&self) -> Result<Vec<LiveGpu>, MigError> {
        self.sim.gpus()
    }

    fn destroy(&mut self, gpu: u32, gi_id: u32) -> Result<(), MigError> {
        self.sim.destroy(gpu, gi_id)?;
        self.save()
    }

    fn create(&mut self, gpu: u32, profile: &str, start: u8) -> Result<LiveInstance, MigError> {
        let created = self.sim.create(gpu, profile, start)?;
        self.save()?;
        Ok(created)
    }
}

impl Device for SimulatedFile {
    fn worker_started(&mut self, uuid: &str) {
        self.sim.occupy(uuid);
    }

    fn worker_stopped(&mut self, uuid: &str) {
        self.sim.release(uuid);
    }
}

/// The slices of a device's live layout, as discovery would report them,
/// for placing the fleet at start.
pub fn inventory(gpus: &[LiveGpu]) -> Vec<DiscoveredSlice> {
    let mut slices = Vec::new();
    for gpu in gpus {
        let model = catalog::gpu_model(&gpu.model);
        for instance in &gpu.instances {
            let profile = model.and_then(|m| m.profile(&instance.profile));
            slices.push(DiscoveredSlice {
                id: SliceId::Mig(instance.uuid.clone()),
                profile: instance.profile.clone(),
                memory_bytes: profile.map_or(0, |p| p.memory_bytes()),
                gpu_uuid: format!("GPU-simulated-{}", gpu.index),
                gpu_index: gpu.index,
                gpu_name: model.map_or(gpu.model.clone(), |m| m.name.to_string()),
                gpu_instance_id: Some(instance.gi_id),
                compute_instance_id: Some(0),
                gpu_instance_slices: profile.map(|p| p.compute_slices),
                compute_slices: profile.map(|p| p.compute_slices),
                multiprocessor_count: profile.and_then(|p| p.sms).map(u32::from),
            });
        }
    }
    slices
}
