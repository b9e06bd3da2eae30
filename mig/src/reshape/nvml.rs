//! [`MigControl`] on the real driver, through NVML.
//!
//! nvml-wrapper 0.13 wraps none of the GPU-instance or compute-instance
//! calls: it reads MIG mode and walks MIG devices, and its one placement call
//! (`Device::possible_placements`) returns an empty list (it fills a
//! `Vec::with_capacity` without setting its length). It does load every
//! symbol, though, and hands the table out through [`Nvml::lib`]; the calls
//! here go through that table with the types of `nvml-wrapper-sys`, each in
//! an `unsafe` block that says why it is sound.
//!
//! Profiles are named and numbered as the driver reports them
//! (`nvmlDeviceGetGpuInstanceProfileInfoV`: `MIG 1g.10gb`, id 19), so this
//! file needs no catalog to list or create; the catalog only names the GPU
//! model.
//!
//! Nothing here runs in tests: no CI machine has a MIG GPU, and MIG layouts
//! must never be changed on the lent GPU machines. It builds everywhere,
//! since NVML is loaded at run time.

use std::ffi::CStr;
use std::mem::{size_of, MaybeUninit};
use std::os::raw::c_uint;
use std::ptr;

use nvml_wrapper::error::{nvml_sym, nvml_try, NvmlError};
use nvml_wrapper::{Device, Nvml};
use nvml_wrapper_sys::bindings::{
    nvmlComputeInstanceInfo_t, nvmlComputeInstanceProfileInfo_t, nvmlComputeInstance_t,
    nvmlGpuInstanceInfo_t, nvmlGpuInstancePlacement_t, nvmlGpuInstanceProfileInfo_v2_t,
    nvmlGpuInstance_t, nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_RESOURCES,
    NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED, NVML_COMPUTE_INSTANCE_PROFILE_COUNT,
    NVML_GPU_INSTANCE_PROFILE_COUNT,
};
use tracing::info;

use super::control::{LiveGpu, LiveInstance, MigControl, MigError};
use crate::catalog::GpuModel;
use crate::discovery::nvml::{instance_id, Instance as IdKind};

/// Most GPU instances (and compute instances per GPU instance) one GPU
/// holds; every MIG GPU so far has at most 7.
const MAX_INSTANCES: usize = 8;

/// The NVML driver, loaded once.
pub struct NvmlMig {
    nvml: Nvml,
}

/// A GPU-instance profile as the driver describes it.
#[derive(Debug, Clone)]
struct DriverProfile {
    /// The id create takes (`nvidia-smi mig -cgi`'s).
    id: u32,
    /// `1g.10gb`, without NVML's `MIG ` prefix.
    name: String,
}

fn driver(what: &str, e: NvmlError) -> MigError {
    MigError::Driver(format!("NVML failed to {what}: {e}"))
}

/// NVML's code for "no room": placement taken, or no more of the profile.
fn is_insufficient_resources(e: &NvmlError) -> bool {
    matches!(e, NvmlError::UnexpectedVariant(c) if *c == nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_RESOURCES)
}

impl NvmlMig {
    /// Loads NVML. Fails on a machine without the NVIDIA driver.
    pub fn new() -> Result<Self, MigError> {
        Nvml::init()
            .map(Self::with)
            .map_err(|e| driver("initialise", e))
    }

    /// Uses an NVML already initialised.
    pub fn with(nvml: Nvml) -> Self {
        NvmlMig { nvml }
    }

    fn device(&self, gpu: u32) -> Result<Device<'_>, MigError> {
        self.nvml
            .device_by_index(gpu)
            .map_err(|e| driver(&format!("get GPU {gpu}"), e))
    }

    /// The GPU-instance profiles the driver offers on `device`.
    fn profiles(&self, device: &Device<'_>) -> Result<Vec<DriverProfile>, MigError> {
        let sym = nvml_sym(
            self.nvml
                .lib()
                .nvmlDeviceGetGpuInstanceProfileInfoV
                .as_ref(),
        )
        .map_err(|e| driver("load nvmlDeviceGetGpuInstanceProfileInfoV", e))?;
        let mut out = Vec::new();
        for index in 0..NVML_GPU_INSTANCE_PROFILE_COUNT {
            // SAFETY: an all-zero `nvmlGpuInstanceProfileInfo_v2_t` is valid
            // (integers and a char array).
            let mut info: nvmlGpuInstanceProfileInfo_v2_t =
                unsafe { MaybeUninit::zeroed().assume_init() };
            // NVML_STRUCT_VERSION(GpuInstanceProfileInfo, 2) of nvml.h.
            info.version = size_of::<nvmlGpuInstanceProfileInfo_v2_t>() as c_uint | (2 << 24);
            // SAFETY: `sym` comes from the library that made `device`, whose
            // handle is valid while `device` borrows `self.nvml`; `info` is a
            // live, versioned struct NVML fills and does not keep.
            let code = unsafe { sym(device.handle(), index, &mut info) };
            match nvml_try(code) {
                Ok(()) => {}
                // Not a profile of this GPU (or this driver).
                Err(NvmlError::NotSupported | NvmlError::InvalidArg | NvmlError::NotFound) => {
                    continue
                }
                Err(e) => return Err(driver("read the GPU-instance profiles", e)),
            }
            // SAFETY: NVML writes a NUL-terminated name into the 96-byte
            // array; the zeroed array ends in NUL even if it wrote nothing.
            let name = unsafe { CStr::from_ptr(info.name.as_ptr()) }
                .to_string_lossy()
                .trim()
                .to_string();
            let name = name
                .strip_prefix("MIG ")
                .map_or(name.clone(), str::to_string);
            out.push(DriverProfile { id: info.id, name });
        }
        Ok(out)
    }

    /// Handles of the GPU instances of one profile.
    fn gpu_instances(
        &self,
        device: &Device<'_>,
        profile_id: u32,
    ) -> Result<Vec<nvmlGpuInstance_t>, MigError> {
        let sym = nvml_sym(self.nvml.lib().nvmlDeviceGetGpuInstances.as_ref())
            .map_err(|e| driver("load nvmlDeviceGetGpuInstances", e))?;
        let mut handles: Vec<nvmlGpuInstance_t> = vec![ptr::null_mut(); MAX_INSTANCES];
        let mut count: c_uint = 0;
        // SAFETY: the device handle is valid (see `profiles`); `handles` has
        // room for MAX_INSTANCES handles, which is at least the profile's
        // instance limit NVML writes up to; `count` receives how many.
        let code = unsafe {
            sym(
                device.handle(),
                profile_id,
                handles.as_mut_ptr(),
                &mut count,
            )
        };
        match nvml_try(code) {
            Ok(()) => {}
            Err(NvmlError::NotSupported | NvmlError::InvalidArg) => return Ok(Vec::new()),
            Err(e) => return Err(driver("list GPU instances", e)),
        }
        handles.truncate((count as usize).min(MAX_INSTANCES));
        Ok(handles)
    }

    fn gpu_instance_info(&self, gi: nvmlGpuInstance_t) -> Result<nvmlGpuInstanceInfo_t, MigError> {
        let sym = nvml_sym(self.nvml.lib().nvmlGpuInstanceGetInfo.as_ref())
            .map_err(|e| driver("load nvmlGpuInstanceGetInfo", e))?;
        let mut info = MaybeUninit::<nvmlGpuInstanceInfo_t>::zeroed();
        // SAFETY: `gi` is a GPU-instance handle NVML returned on this
        // library and that has not been destroyed; `info` is room for one
        // struct NVML fills.
        nvml_try(unsafe { sym(gi, info.as_mut_ptr()) })
            .map_err(|e| driver("read a GPU instance", e))?;
        // SAFETY: zero-initialised, then filled by NVML; every field is
        // plain data for which any bit pattern is valid.
        Ok(unsafe { info.assume_init() })
    }

    fn gpu_instance_by_id(
        &self,
        device: &Device<'_>,
        gpu: u32,
        gi_id: u32,
    ) -> Result<nvmlGpuInstance_t, MigError> {
        let sym = nvml_sym(self.nvml.lib().nvmlDeviceGetGpuInstanceById.as_ref())
            .map_err(|e| driver("load nvmlDeviceGetGpuInstanceById", e))?;
        let mut gi: nvmlGpuInstance_t = ptr::null_mut();
        // SAFETY: valid device handle (see `profiles`); `gi` receives one
        // handle.
        match nvml_try(unsafe { sym(device.handle(), gi_id, &mut gi) }) {
            Ok(()) => Ok(gi),
            Err(NvmlError::NotFound | NvmlError::InvalidArg) => {
                Err(MigError::NotFound { gpu, gi_id })
            }
            Err(e) => Err(driver(
                &format!("find GPU instance {gi_id} on GPU {gpu}"),
                e,
            )),
        }
    }

    /// Compute-instance profiles of a GPU instance, as (id, slice count).
    fn compute_profiles(&self, gi: nvmlGpuInstance_t) -> Result<Vec<(u32, u32)>, MigError> {
        let sym = nvml_sym(
            self.nvml
                .lib()
                .nvmlGpuInstanceGetComputeInstanceProfileInfo
                .as_ref(),
        )
        .map_err(|e| driver("load nvmlGpuInstanceGetComputeInstanceProfileInfo", e))?;
        let mut out = Vec::new();
        for index in 0..NVML_COMPUTE_INSTANCE_PROFILE_COUNT {
            let mut info = MaybeUninit::<nvmlComputeInstanceProfileInfo_t>::zeroed();
            // SAFETY: `gi` is a live GPU-instance handle of this library;
            // `info` is room for one struct NVML fills.
            let code = unsafe {
                sym(
                    gi,
                    index,
                    NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED,
                    info.as_mut_ptr(),
                )
            };
            match nvml_try(code) {
                Ok(()) => {
                    // SAFETY: zeroed, then filled; plain integers.
                    let info = unsafe { info.assume_init() };
                    out.push((info.id, info.sliceCount));
                }
                Err(NvmlError::NotSupported | NvmlError::InvalidArg | NvmlError::NotFound) => {}
                Err(e) => return Err(driver("read the compute-instance profiles", e)),
            }
        }
        Ok(out)
    }

    /// The MIG uuid of the (first) compute instance of GPU instance `gi_id`,
    /// and of compute instance `ci_id` when given.
    fn mig_uuid(&self, device: &Device<'_>, gi_id: u32, ci_id: Option<u32>) -> Option<String> {
        let slots = device.mig_device_count().ok()?;
        (0..slots).find_map(|slot| {
            let mig = device.mig_device_by_index(slot).ok()?;
            let gi = instance_id(&mig, IdKind::Gpu).ok()?;
            let ci = instance_id(&mig, IdKind::Compute).ok()?;
            (gi == gi_id && ci_id.is_none_or(|c| c == ci))
                .then(|| mig.uuid().ok())
                .flatten()
        })
    }

    fn live_gpu(&self, index: u32) -> Result<Option<LiveGpu>, MigError> {
        let device = self.device(index)?;
        match device.mig_mode() {
            Ok(mode) if mode.current != 0 => {}
            Ok(_) | Err(NvmlError::NotSupported) => return Ok(None),
            Err(e) => return Err(driver(&format!("read GPU {index}'s MIG mode"), e)),
        }
        let name = device
            .name()
            .map_err(|e| driver(&format!("read GPU {index}'s name"), e))?;
        let memory = device.memory_info().map(|m| m.total).unwrap_or(0);
        // An unknown model keeps NVML's name, which the step planner reports
        // as not matching the plan.
        let model = GpuModel::from_nvml_name(&name, memory).map_or(name, |m| m.id.to_string());
        let mut instances = Vec::new();
        for profile in self.profiles(&device)? {
            for gi in self.gpu_instances(&device, profile.id)? {
                let info = self.gpu_instance_info(gi)?;
                instances.push(LiveInstance {
                    gpu: index,
                    gi_id: info.id,
                    profile: profile.name.clone(),
                    start: info.placement.start as u8,
                    size: info.placement.size as u8,
                    uuid: self.mig_uuid(&device, info.id, None).unwrap_or_default(),
                });
            }
        }
        instances.sort_by_key(|x| (x.start, x.gi_id));
        Ok(Some(LiveGpu {
            index,
            model,
            instances,
        }))
    }

    /// Destroys every compute instance of `gi`.
    fn destroy_compute_instances(&self, gi: nvmlGpuInstance_t, uuid: &str) -> Result<(), MigError> {
        let lib = self.nvml.lib();
        let list = nvml_sym(lib.nvmlGpuInstanceGetComputeInstances.as_ref())
            .map_err(|e| driver("load nvmlGpuInstanceGetComputeInstances", e))?;
        let destroy = nvml_sym(lib.nvmlComputeInstanceDestroy.as_ref())
            .map_err(|e| driver("load nvmlComputeInstanceDestroy", e))?;
        for (profile_id, _) in self.compute_profiles(gi)? {
            let mut handles: Vec<nvmlComputeInstance_t> = vec![ptr::null_mut(); MAX_INSTANCES];
            let mut count: c_uint = 0;
            // SAFETY: `gi` is a live GPU-instance handle; `handles` has room
            // for MAX_INSTANCES compute instances, more than a GPU instance
            // holds of one profile; `count` receives how many NVML wrote.
            let code = unsafe { list(gi, profile_id, handles.as_mut_ptr(), &mut count) };
            match nvml_try(code) {
                Ok(()) => {}
                Err(NvmlError::NotSupported | NvmlError::InvalidArg) => continue,
                Err(e) => return Err(driver("list compute instances", e)),
            }
            handles.truncate((count as usize).min(MAX_INSTANCES));
            for ci in handles {
                // SAFETY: `ci` was just returned by NVML for this GPU
                // instance and is destroyed once.
                match nvml_try(unsafe { destroy(ci) }) {
                    Ok(()) => {}
                    Err(NvmlError::InUse) => {
                        return Err(MigError::InUse {
                            uuid: uuid.to_string(),
                        })
                    }
                    Err(e) => return Err(driver("destroy a compute instance", e)),
                }
            }
        }
        Ok(())
    }
}

impl MigControl for NvmlMig {
    fn gpus(&self) -> Result<Vec<LiveGpu>, MigError> {
        let count = self
            .nvml
            .device_count()
            .map_err(|e| driver("count the GPUs", e))?;
        let mut gpus = Vec::new();
        for index in 0..count {
            if let Some(g) = self.live_gpu(index)? {
                gpus.push(g);
            }
        }
        Ok(gpus)
    }

    fn destroy(&mut self, gpu: u32, gi_id: u32) -> Result<(), MigError> {
        let device = self.device(gpu)?;
        let gi = self.gpu_instance_by_id(&device, gpu, gi_id)?;
        let uuid = self
            .mig_uuid(&device, gi_id, None)
            .unwrap_or_else(|| format!("GPU {gpu} GI {gi_id}"));
        self.destroy_compute_instances(gi, &uuid)?;
        let sym = nvml_sym(self.nvml.lib().nvmlGpuInstanceDestroy.as_ref())
            .map_err(|e| driver("load nvmlGpuInstanceDestroy", e))?;
        // SAFETY: `gi` was returned by NVML for this device and is destroyed
        // once; it is not used afterwards.
        match nvml_try(unsafe { sym(gi) }) {
            Ok(()) => {}
            Err(NvmlError::InUse) => return Err(MigError::InUse { uuid }),
            Err(e) => {
                return Err(driver(
                    &format!("destroy GPU instance {gi_id} on GPU {gpu}"),
                    e,
                ))
            }
        }
        info!(gpu, gi_id, %uuid, "destroyed GPU instance");
        Ok(())
    }

    fn create(&mut self, gpu: u32, profile: &str, start: u8) -> Result<LiveInstance, MigError> {
        let device = self.device(gpu)?;
        let wanted = profile.trim();
        let wanted = wanted.strip_prefix("MIG ").unwrap_or(wanted);
        let profiles = self.profiles(&device)?;
        let Some(p) = profiles
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(wanted))
        else {
            return Err(MigError::Driver(format!(
                "GPU {gpu} has no GPU-instance profile `{profile}` (the driver offers: {})",
                profiles
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let no_room = || MigError::NoRoom {
            gpu,
            profile: p.name.clone(),
            start,
        };
        let size = self
            .possible_placements(&device, p.id)?
            .into_iter()
            .find(|pl| pl.start == u32::from(start))
            .ok_or_else(no_room)?
            .size;

        let lib = self.nvml.lib();
        let create_gi = nvml_sym(lib.nvmlDeviceCreateGpuInstanceWithPlacement.as_ref())
            .map_err(|e| driver("load nvmlDeviceCreateGpuInstanceWithPlacement", e))?;
        let placement = nvmlGpuInstancePlacement_t {
            start: c_uint::from(start),
            size,
        };
        let mut gi: nvmlGpuInstance_t = ptr::null_mut();
        // SAFETY: valid device handle (see `profiles`); `placement` lives
        // across the call and NVML only reads it; `gi` receives one handle.
        match nvml_try(unsafe { create_gi(device.handle(), p.id, &placement, &mut gi) }) {
            Ok(()) => {}
            Err(e) if is_insufficient_resources(&e) || matches!(e, NvmlError::InvalidArg) => {
                return Err(no_room())
            }
            Err(e) => {
                return Err(driver(
                    &format!("create {} at slot {start} on GPU {gpu}", p.name),
                    e,
                ))
            }
        }
        let gi_id = self.gpu_instance_info(gi)?.id;

        // One compute instance over the whole GPU instance: the compute
        // profile with the most slices.
        let made = self.create_full_compute_instance(gi).and_then(|ci| {
            let ci_id = self.compute_instance_id(ci)?;
            self.mig_uuid(&device, gi_id, Some(ci_id)).ok_or_else(|| {
                MigError::Driver(format!(
                    "GPU {gpu} GI {gi_id}: the new compute instance {ci_id} has no MIG device"
                ))
            })
        });
        let uuid = match made {
            Ok(uuid) => uuid,
            Err(e) => {
                // Leave no half-made instance behind.
                let _ = self.destroy_compute_instances(gi, "");
                if let Ok(destroy) = nvml_sym(lib.nvmlGpuInstanceDestroy.as_ref()) {
                    // SAFETY: `gi` was created above and is destroyed once.
                    let _ = unsafe { destroy(gi) };
                }
                return Err(e);
            }
        };
        info!(gpu, gi_id, profile = %p.name, start, %uuid, "created GPU instance");
        Ok(LiveInstance {
            gpu,
            gi_id,
            profile: p.name.clone(),
            start,
            size: size as u8,
            uuid,
        })
    }
}

impl NvmlMig {
    /// `nvmlDeviceGetGpuInstancePossiblePlacements_v2`, called here because
    /// nvml-wrapper 0.13's `possible_placements` returns an empty list.
    fn possible_placements(
        &self,
        device: &Device<'_>,
        profile_id: u32,
    ) -> Result<Vec<nvmlGpuInstancePlacement_t>, MigError> {
        let sym = nvml_sym(
            self.nvml
                .lib()
                .nvmlDeviceGetGpuInstancePossiblePlacements_v2
                .as_ref(),
        )
        .map_err(|e| driver("load nvmlDeviceGetGpuInstancePossiblePlacements_v2", e))?;
        let mut placements = vec![nvmlGpuInstancePlacement_t { start: 0, size: 0 }; 16];
        let mut count = placements.len() as c_uint;
        // SAFETY: valid device handle (see `profiles`); `placements` has room
        // for 16 entries, more than the 8 placements any profile has on a
        // GPU of 8 memory slots, and NVML writes one per allowed placement;
        // `count` receives how many.
        let code = unsafe {
            sym(
                device.handle(),
                profile_id,
                placements.as_mut_ptr(),
                &mut count,
            )
        };
        nvml_try(code).map_err(|e| driver("list placements", e))?;
        placements.truncate((count as usize).min(16));
        Ok(placements)
    }

    fn create_full_compute_instance(
        &self,
        gi: nvmlGpuInstance_t,
    ) -> Result<nvmlComputeInstance_t, MigError> {
        let (ci_profile, _) = self
            .compute_profiles(gi)?
            .into_iter()
            .max_by_key(|&(_, slices)| slices)
            .ok_or_else(|| MigError::Driver("the GPU instance offers no compute profile".into()))?;
        let sym = nvml_sym(
            self.nvml
                .lib()
                .nvmlGpuInstanceCreateComputeInstance
                .as_ref(),
        )
        .map_err(|e| driver("load nvmlGpuInstanceCreateComputeInstance", e))?;
        let mut ci: nvmlComputeInstance_t = ptr::null_mut();
        // SAFETY: `gi` is a live GPU-instance handle; `ci` receives one
        // handle.
        nvml_try(unsafe { sym(gi, ci_profile, &mut ci) })
            .map_err(|e| driver("create a compute instance", e))?;
        Ok(ci)
    }

    fn compute_instance_id(&self, ci: nvmlComputeInstance_t) -> Result<u32, MigError> {
        let sym = nvml_sym(self.nvml.lib().nvmlComputeInstanceGetInfo_v2.as_ref())
            .map_err(|e| driver("load nvmlComputeInstanceGetInfo_v2", e))?;
        let mut info = MaybeUninit::<nvmlComputeInstanceInfo_t>::zeroed();
        // SAFETY: `ci` is a live compute-instance handle; `info` is room for
        // one struct NVML fills.
        nvml_try(unsafe { sym(ci, info.as_mut_ptr()) })
            .map_err(|e| driver("read a compute instance", e))?;
        // SAFETY: zeroed, then filled; handles and integers only.
        Ok(unsafe { info.assume_init() }.id)
    }
}
