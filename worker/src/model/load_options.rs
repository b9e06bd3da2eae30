//! Where a model runs and how its weights are held: domain types the
//! command line parses (`clap::ValueEnum`), not its own.

use candle_core::Device;
use clap::ValueEnum;

use crate::error::StartupError;

/// How GGUF weights stored as Q4_0/Q4_1 are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WeightFormat {
    /// As stored in the file: the CPU kernels multiply Q4_1 directly.
    Native,
    /// Q4_0/Q4_1 tensors re-quantized to Q8_0 at load: more memory and
    /// traffic, and one more rounding. It was the fast path while candle's
    /// Q4_1 dot product was scalar; kept for comparison.
    Q8_0,
}

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceKind {
    Cpu,
    /// Device 0 of what `CUDA_VISIBLE_DEVICES` shows (the MIG slice); needs a
    /// binary built with the `cuda` feature.
    Cuda,
}

/// The device a worker computes on.
pub fn device(kind: DeviceKind) -> Result<Device, StartupError> {
    match kind {
        DeviceKind::Cpu => Ok(Device::Cpu),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => Device::new_cuda(0).map_err(|e| {
            StartupError::Device(format!(
                "no CUDA device visible (CUDA_VISIBLE_DEVICES selects the slice): {e}"
            ))
        }),
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => Err(StartupError::Device(
            "this mig-worker was built without the `cuda` feature".into(),
        )),
    }
}
