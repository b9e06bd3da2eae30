//! The only code that talks to NVML. It copies what NVML says into an
//! [`NvmlSnapshot`] and decides nothing; everything derived lives in
//! [`super::map`], which is tested on recorded snapshots because no CI
//! machine has a MIG GPU.
//!
//! `nvml-wrapper` loads `libnvidia-ml.so.1` with `dlopen` at run time, so the
//! same binary starts on machines without the NVIDIA driver; there
//! [`read_snapshot`] fails with [`DiscoveryError::Load`] and the caller falls
//! back to CPU slices.

use std::os::raw::c_uint;

use nvml_wrapper::error::{nvml_sym, nvml_try, NvmlError};
use nvml_wrapper::{Device, Nvml};

use super::snapshot::{
    GpuRecord, InstanceProfileRecord, MigAttributesRecord, MigDeviceRecord, MigModeRecord,
    NvmlSnapshot,
};

/// Why NVML could not be read at all. Failures of single GPUs are not errors
/// (they land in [`NvmlSnapshot::errors`]); only these leave no GPU to list.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The library or one of its init symbols could not be loaded: the normal
    /// case on a machine (or container) without the NVIDIA driver.
    #[error(
        "cannot load the NVML library ({}): no NVIDIA driver is installed here \
         (or, in a container, its libraries were not mounted)",
        load_detail(.0)
    )]
    Load(#[source] NvmlError),
    /// The library loaded but the kernel module is not running.
    #[error("NVML loaded but the NVIDIA kernel driver is not running")]
    DriverNotLoaded,
    /// NVML refused to start for another reason (permissions, a driver in a
    /// bad state).
    #[error("NVML failed to initialise: {0}")]
    Init(#[source] NvmlError),
    /// NVML started but could not even count the GPUs.
    #[error("NVML could not count the GPUs: {0}")]
    DeviceCount(#[source] NvmlError),
}

impl DiscoveryError {
    /// Sorts an `Nvml::init` failure into "no driver here" and "driver broken",
    /// because the two call for different log levels and different advice.
    pub fn from_init(error: NvmlError) -> Self {
        match error {
            NvmlError::LibloadingError(_)
            | NvmlError::FailedToLoadSymbol(_)
            | NvmlError::LibraryNotFound
            | NvmlError::FunctionNotFound => DiscoveryError::Load(error),
            NvmlError::DriverNotLoaded => DiscoveryError::DriverNotLoaded,
            other => DiscoveryError::Init(other),
        }
    }
}

/// The loader's own words (which file, why), without the wrapper's prefix.
fn load_detail(error: &NvmlError) -> String {
    match error {
        NvmlError::LibloadingError(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

/// Loads NVML and records every GPU and MIG device it reports.
pub fn read_snapshot() -> Result<NvmlSnapshot, DiscoveryError> {
    let nvml = Nvml::init().map_err(DiscoveryError::from_init)?;
    read_with(&nvml)
}

/// Records what an initialised NVML reports, for callers that already hold
/// an [`Nvml`] (initialising it loads the library and all its symbols).
pub fn read_with(nvml: &Nvml) -> Result<NvmlSnapshot, DiscoveryError> {
    let count = nvml.device_count().map_err(DiscoveryError::DeviceCount)?;
    let mut snapshot = NvmlSnapshot {
        driver_version: nvml.sys_driver_version().ok(),
        cuda_driver_version: nvml.sys_cuda_driver_version().ok(),
        gpus: Vec::new(),
        errors: Vec::new(),
    };
    for index in 0..count {
        match read_gpu(nvml, index) {
            Ok(gpu) => snapshot.gpus.push(gpu),
            Err(e) => snapshot
                .errors
                .push(format!("GPU {index}: skipped, NVML failed to {e}")),
        }
    }
    Ok(snapshot)
}

/// A failed call, named so the recorded error says what was being asked.
struct Failed(&'static str, NvmlError);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0, self.1)
    }
}

fn ask<T>(what: &'static str, result: Result<T, NvmlError>) -> Result<T, Failed> {
    result.map_err(|e| Failed(what, e))
}

fn read_gpu(nvml: &Nvml, index: u32) -> Result<GpuRecord, Failed> {
    let device = ask("get its handle", nvml.device_by_index(index))?;
    let uuid = ask("read its UUID", device.uuid())?;
    let name = ask("read its name", device.name())?;
    let memory_total_bytes = ask("read its memory", device.memory_info())?.total;
    let pci_bus_id = device.pci_info().ok().map(|p| p.bus_id);
    let mig_mode = match device.mig_mode() {
        Ok(mode) => Some(MigModeRecord {
            current: mode.current != 0,
            pending: mode.pending != 0,
        }),
        Err(NvmlError::NotSupported) => None,
        // Guessing "no MIG" here could hand a MIG-mode GPU to a worker as a
        // whole GPU, where CUDA would find no device; better to skip it.
        Err(e) => return Err(Failed("read its MIG mode", e)),
    };
    let mut errors = Vec::new();
    let (mig_devices, instance_profiles) = if mig_mode.is_some_and(|m| m.current) {
        (
            read_mig_devices(&device, &mut errors),
            read_instance_profiles(&device, &mut errors),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(GpuRecord {
        index,
        uuid,
        name,
        pci_bus_id,
        memory_total_bytes,
        mig_mode,
        mig_devices,
        instance_profiles,
        errors,
    })
}

/// NVML's profile indices: `NVML_GPU_INSTANCE_PROFILE_1_SLICE` (0) up to
/// `NVML_GPU_INSTANCE_PROFILE_COUNT`, 17 in the `nvml.h` that
/// nvml-wrapper-sys 0.10 binds (not re-exported by nvml-wrapper 0.13). An
/// index is not the `-lgip` id; the record's `id` is. A newer driver's
/// extra indices are not asked for.
#[cfg(target_os = "linux")]
const PROFILE_INDICES: std::ops::Range<u32> = 0..17;

/// nvml-wrapper wraps the profile query on Linux only; elsewhere no
/// profile is recorded and the catalog's tables stand.
#[cfg(not(target_os = "linux"))]
fn read_instance_profiles(_gpu: &Device<'_>, _errors: &mut [String]) -> Vec<InstanceProfileRecord> {
    Vec::new()
}

#[cfg(target_os = "linux")]
/// Reads every GPU-instance profile the driver defines on `gpu`
/// (`nvmlDeviceGetGpuInstanceProfileInfo`, which nvml-wrapper wraps as
/// `Device::profile_info`). Indices the GPU lacks answer `NotSupported` or
/// `InvalidArg` and are skipped; other failures are recorded.
fn read_instance_profiles(
    gpu: &Device<'_>,
    errors: &mut Vec<String>,
) -> Vec<InstanceProfileRecord> {
    let mut profiles = Vec::new();
    for index in PROFILE_INDICES {
        match gpu.profile_info(index) {
            Ok(p) => profiles.push(InstanceProfileRecord {
                id: p.id,
                slice_count: p.slice_count,
                instance_count: p.instance_count,
                multiprocessor_count: p.multiprocessor_count,
                copy_engine_count: p.copy_engine_count,
                decoder_count: p.decoder_count,
                encoder_count: p.encoder_count,
                jpeg_count: p.jpeg_count,
                ofa_count: p.ofa_count,
                memory_size_mb: p.memory_size_mb,
            }),
            Err(NvmlError::NotSupported | NvmlError::InvalidArg) => {}
            Err(e) => errors.push(format!(
                "NVML failed to read GPU-instance profile index {index}: {e}"
            )),
        }
    }
    profiles
}

/// Walks the MIG device slots of one GPU. nvml-wrapper's `mig_device_count`
/// is `nvmlDeviceGetMaxMigDeviceCount`: the number of slots, not of devices,
/// so empty slots (`NotFound`) are expected and skipped.
fn read_mig_devices(gpu: &Device<'_>, errors: &mut Vec<String>) -> Vec<MigDeviceRecord> {
    let slots = match gpu.mig_device_count() {
        Ok(n) => n,
        Err(e) => {
            errors.push(format!("NVML failed to count its MIG device slots: {e}"));
            return Vec::new();
        }
    };
    let mut devices = Vec::new();
    for slot in 0..slots {
        let result = match gpu.mig_device_by_index(slot) {
            Ok(mig) => read_mig_device(&mig, slot),
            Err(NvmlError::NotFound) => continue,
            Err(e) => Err(Failed("get its handle", e)),
        };
        match result {
            Ok(record) => devices.push(record),
            Err(e) => errors.push(format!("MIG device {slot} skipped, NVML failed to {e}")),
        }
    }
    devices
}

/// Reads one MIG device through its own handle. Asking the parent's handle
/// for memory would give the whole card's, the mistake that makes a server
/// size its KV cache for 80 GB on a 10 GB slice.
fn read_mig_device(mig: &Device<'_>, index: u32) -> Result<MigDeviceRecord, Failed> {
    Ok(MigDeviceRecord {
        index,
        uuid: ask("read its UUID", mig.uuid())?,
        name: ask("read its name", mig.name())?,
        gpu_instance_id: ask("read its GPU-instance id", instance_id(mig, Instance::Gpu))?,
        compute_instance_id: ask(
            "read its compute-instance id",
            instance_id(mig, Instance::Compute),
        )?,
        memory_total_bytes: ask("read its memory", mig.memory_info())?.total,
        attributes: mig.attributes().ok().map(|a| MigAttributesRecord {
            multiprocessor_count: a.multiprocessor_count,
            gpu_instance_slice_count: a.gpu_instance_slice_count,
            compute_instance_slice_count: a.compute_instance_slice_count,
            memory_size_mb: a.memory_size_mb,
        }),
    })
}

#[derive(Clone, Copy)]
pub(crate) enum Instance {
    Gpu,
    Compute,
}

/// `nvmlDeviceGetGpuInstanceId` / `nvmlDeviceGetComputeInstanceId`, which
/// nvml-wrapper 0.13 loads but does not wrap; called through the symbol table
/// it exposes with `Nvml::lib()`.
pub(crate) fn instance_id(mig: &Device<'_>, which: Instance) -> Result<u32, NvmlError> {
    let lib = mig.nvml().lib();
    let sym = nvml_sym(match which {
        Instance::Gpu => lib.nvmlDeviceGetGpuInstanceId.as_ref(),
        Instance::Compute => lib.nvmlDeviceGetComputeInstanceId.as_ref(),
    })?;
    let mut id: c_uint = 0;
    // SAFETY: `sym` was resolved from the same loaded NVML library that made
    // `mig`, whose handle stays valid while `mig` (and its `Nvml`) is
    // borrowed here. Both functions take a device handle and a pointer to one
    // `unsigned int`, which `&mut id` provides for the duration of the call;
    // NVML keeps neither pointer.
    let code = unsafe { sym(mig.handle(), &mut id) };
    nvml_try(code)?;
    Ok(id)
}

/// Reads a slice's memory in use, for the worker's memory gauge. Keeps NVML
/// loaded between reads (a scrape every few seconds must not re-initialise
/// it). A MIG device's handle is looked up by its own UUID, so the figure is
/// the slice's, never the whole card's.
pub struct MemoryProbe {
    nvml: Nvml,
}

impl MemoryProbe {
    /// Loads NVML; an error (no driver) means "use another source".
    pub fn open() -> Result<MemoryProbe, DiscoveryError> {
        Nvml::init()
            .map(|nvml| MemoryProbe { nvml })
            .map_err(DiscoveryError::from_init)
    }

    /// Bytes in use on the device `uuid` (`MIG-…` or `GPU-…`), if NVML can say.
    pub fn used_bytes(&self, uuid: &str) -> Option<u64> {
        match self.nvml.device_by_uuid(uuid).and_then(|d| d.memory_info()) {
            Ok(memory) => Some(memory.used),
            Err(e) => {
                tracing::debug!(%uuid, error = %e, "NVML memory read failed");
                None
            }
        }
    }
}
