//! A MIG driver in memory: the placement rules of the catalog, GPU-instance
//! ids and MIG uuids handed out deterministically, instances a test marks as
//! in use, and faults injected on demand.
//!
//! Its state serialises to JSON ([`SimulatedMig::to_json`]), so a gateway
//! process can start from a state file and a test can read back what it did.

use std::collections::{BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use tracing::info;

use super::control::{LiveGpu, LiveInstance, MigControl, MigError};
use crate::catalog::{gpu_model, GpuModel};
use crate::layout::{self, Instance};

/// A simulated machine of MIG GPUs.
#[derive(Debug, Clone)]
pub struct SimulatedMig {
    gpus: Vec<SimGpu>,
    /// MIG uuids a process holds.
    in_use: BTreeSet<String>,
    /// Instances created so far, the `<n>` of `MIG-sim-<gpu>-<gi>-<n>`.
    serial: u64,
    /// Errors the next creates return, one each.
    create_faults: VecDeque<MigError>,
    destroy_faults: VecDeque<MigError>,
}

#[derive(Debug, Clone)]
struct SimGpu {
    model: &'static GpuModel,
    instances: Vec<LiveInstance>,
}

/// The serialised form: plain names, no catalog references.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    gpus: Vec<LiveGpu>,
    #[serde(default)]
    in_use: BTreeSet<String>,
    #[serde(default)]
    serial: u64,
}

impl SimulatedMig {
    /// GPUs numbered from 0 in the order given, each with the instances
    /// `(profile, start)` created on it in that order. Fails as a create
    /// would (an overlap or a bad start is [`MigError::NoRoom`]).
    pub fn new(gpus: Vec<(&'static GpuModel, Vec<(&str, u8)>)>) -> Result<Self, MigError> {
        let mut sim = SimulatedMig {
            gpus: gpus
                .iter()
                .map(|(model, _)| SimGpu {
                    model,
                    instances: Vec::new(),
                })
                .collect(),
            in_use: BTreeSet::new(),
            serial: 0,
            create_faults: VecDeque::new(),
            destroy_faults: VecDeque::new(),
        };
        for (index, (_, instances)) in gpus.iter().enumerate() {
            for &(profile, start) in instances {
                sim.create(index as u32, profile, start)?;
            }
        }
        Ok(sim)
    }

    /// Marks the instance with this MIG uuid as held by a process: destroying
    /// it fails with [`MigError::InUse`] until [`Self::release`]. False when
    /// no instance has the uuid.
    pub fn occupy(&mut self, uuid: &str) -> bool {
        let known = self.find_uuid(uuid);
        if known {
            self.in_use.insert(uuid.to_string());
        }
        known
    }

    /// Undoes [`Self::occupy`]; false when the uuid was not held.
    pub fn release(&mut self, uuid: &str) -> bool {
        self.in_use.remove(uuid)
    }

    /// Whether a process holds the instance with this uuid.
    pub fn is_in_use(&self, uuid: &str) -> bool {
        self.in_use.contains(uuid)
    }

    /// The next [`MigControl::create`] fails with `error` and changes
    /// nothing. Queued: two calls fail the next two creates.
    pub fn fail_next_create(&mut self, error: MigError) {
        self.create_faults.push_back(error);
    }

    /// The next [`MigControl::destroy`] fails with `error` and changes
    /// nothing.
    pub fn fail_next_destroy(&mut self, error: MigError) {
        self.destroy_faults.push_back(error);
    }

    /// The state (GPUs, instances, uuids in use, uuid counter) as JSON:
    /// `{"gpus": [LiveGpu...], "in_use": [...], "serial": n}`. Injected
    /// faults are not part of it.
    pub fn to_json(&self) -> String {
        let state = State {
            gpus: self.snapshot(),
            in_use: self.in_use.clone(),
            serial: self.serial,
        };
        serde_json::to_string_pretty(&state).expect("plain data serialises")
    }

    /// A simulator in the state [`Self::to_json`] wrote (or one written by
    /// hand: `in_use` and `serial` may be left out). The instances are
    /// checked against the placement rules of each GPU's model.
    pub fn from_json(s: &str) -> Result<Self, MigError> {
        let state: State = serde_json::from_str(s)
            .map_err(|e| MigError::Driver(format!("simulated MIG state: {e}")))?;
        let mut gpus = Vec::with_capacity(state.gpus.len());
        for (i, g) in state.gpus.into_iter().enumerate() {
            if g.index != i as u32 {
                return Err(MigError::Driver(format!(
                    "simulated MIG state: GPU {} is listed at position {i}; GPUs must be numbered 0, 1, ... in order",
                    g.index
                )));
            }
            let model = gpu_model(&g.model).ok_or_else(|| {
                MigError::Driver(format!(
                    "simulated MIG state: GPU {i} has model `{}`, which is not in the catalog",
                    g.model
                ))
            })?;
            let wanted: Vec<Instance> = g
                .instances
                .iter()
                .map(|x| Instance {
                    profile: x.profile.clone(),
                    start: x.start,
                })
                .collect();
            layout::validate(model, &wanted)
                .map_err(|e| MigError::Driver(format!("simulated MIG state: GPU {i}: {e}")))?;
            let mut instances = g.instances;
            for x in &mut instances {
                let p = model.profile(&x.profile).expect("validated");
                x.gpu = i as u32;
                x.profile = p.name.to_string();
                x.size = p.memory_slices;
            }
            instances.sort_by_key(|x| x.start);
            gpus.push(SimGpu { model, instances });
        }
        Ok(SimulatedMig {
            gpus,
            in_use: state.in_use,
            serial: state.serial,
            create_faults: VecDeque::new(),
            destroy_faults: VecDeque::new(),
        })
    }

    fn snapshot(&self) -> Vec<LiveGpu> {
        self.gpus
            .iter()
            .enumerate()
            .map(|(index, g)| LiveGpu {
                index: index as u32,
                model: g.model.id.to_string(),
                instances: g.instances.clone(),
            })
            .collect()
    }

    fn find_uuid(&self, uuid: &str) -> bool {
        self.gpus
            .iter()
            .flat_map(|g| &g.instances)
            .any(|x| x.uuid == uuid)
    }

    fn gpu_mut(&mut self, gpu: u32) -> Option<&mut SimGpu> {
        self.gpus.get_mut(gpu as usize)
    }
}

impl MigControl for SimulatedMig {
    fn gpus(&self) -> Result<Vec<LiveGpu>, MigError> {
        Ok(self.snapshot())
    }

    fn destroy(&mut self, gpu: u32, gi_id: u32) -> Result<(), MigError> {
        if let Some(e) = self.destroy_faults.pop_front() {
            return Err(e);
        }
        let not_found = MigError::NotFound { gpu, gi_id };
        let Some(g) = self.gpus.get(gpu as usize) else {
            return Err(not_found);
        };
        let Some(k) = g.instances.iter().position(|x| x.gi_id == gi_id) else {
            return Err(not_found);
        };
        let uuid = g.instances[k].uuid.clone();
        if self.in_use.contains(&uuid) {
            return Err(MigError::InUse { uuid });
        }
        let gone = self.gpus[gpu as usize].instances.remove(k);
        info!(
            gpu,
            gi_id,
            profile = %gone.profile,
            start = gone.start,
            uuid = %gone.uuid,
            "simulated MIG: destroyed GPU instance"
        );
        Ok(())
    }

    fn create(&mut self, gpu: u32, profile: &str, start: u8) -> Result<LiveInstance, MigError> {
        if let Some(e) = self.create_faults.pop_front() {
            return Err(e);
        }
        let serial = self.serial + 1;
        let Some(g) = self.gpu_mut(gpu) else {
            return Err(MigError::Driver(format!(
                "GPU {gpu} does not exist (cannot create {profile} @{start})"
            )));
        };
        let model = g.model;
        let Some(p) = model.profile(profile) else {
            return Err(MigError::Driver(format!(
                "profile `{profile}` does not exist on GPU {gpu} ({})",
                model.id
            )));
        };
        let mut wanted: Vec<Instance> = g
            .instances
            .iter()
            .map(|x| Instance {
                profile: x.profile.clone(),
                start: x.start,
            })
            .collect();
        wanted.push(Instance {
            profile: p.name.to_string(),
            start,
        });
        if let Err(why) = layout::validate(model, &wanted) {
            info!(gpu, profile = p.name, start, %why, "simulated MIG: create refused");
            return Err(MigError::NoRoom {
                gpu,
                profile: p.name.to_string(),
                start,
            });
        }
        // Like the driver, the lowest id not in use.
        let gi_id = (1..)
            .find(|id| !g.instances.iter().any(|x| x.gi_id == *id))
            .expect("fewer than u32::MAX instances");
        let made = LiveInstance {
            gpu,
            gi_id,
            profile: p.name.to_string(),
            start,
            size: p.memory_slices,
            uuid: format!("MIG-sim-{gpu}-{gi_id}-{serial}"),
        };
        g.instances.push(made.clone());
        g.instances.sort_by_key(|x| x.start);
        self.serial = serial;
        info!(
            gpu,
            gi_id,
            profile = p.name,
            start,
            uuid = %made.uuid,
            "simulated MIG: created GPU instance"
        );
        Ok(made)
    }
}
