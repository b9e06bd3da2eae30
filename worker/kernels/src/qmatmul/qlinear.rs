//! [`QLinear`]: a [`QMatrix`] as a candle op, so model code written with
//! tensors calls our kernels: `x.apply_op1_no_bwd(&QLinear(weights))`.

use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp1, Layout, MetalStorage, Shape};

use super::QMatrix;

/// A candle custom op: `x.apply_op1_no_bwd(&QLinear(arc))` maps an f32
/// contiguous tensor (.., cols) on the CPU to (.., rows).
#[derive(Clone)]
pub struct QLinear(pub Arc<QMatrix>);

impl CustomOp1 for QLinear {
    fn name(&self) -> &'static str {
        "mig-qlinear"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let w = &self.0;
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!(
                "QLinear: input dtype {:?} is not supported (f32 only)",
                storage.dtype()
            );
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!(
                "QLinear: input of shape {:?} with strides {:?} is not contiguous; call .contiguous() first",
                layout.dims(),
                layout.stride()
            );
        };
        let dims = layout.dims();
        let cols = dims.last().copied().unwrap_or(1);
        if dims.is_empty() || cols != w.cols() {
            candle_core::bail!(
                "QLinear: input shape {dims:?} must end in the weights' cols {}",
                w.cols()
            );
        }
        let m = (end - start) / cols;
        let mut out = vec![0f32; m * w.rows()];
        w.matmul(&data[start..end], m, &mut out);
        let mut shape = dims.to_vec();
        if let Some(last) = shape.last_mut() {
            *last = w.rows();
        }
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }

    fn cuda_fwd(&self, _: &CudaStorage, _: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        candle_core::bail!("QLinear runs on the CPU only; on CUDA use candle's QMatMul")
    }

    fn metal_fwd(
        &self,
        _: &MetalStorage,
        _: &Layout,
    ) -> candle_core::Result<(MetalStorage, Shape)> {
        candle_core::bail!("QLinear runs on the CPU only; on Metal use candle's QMatMul")
    }
}
