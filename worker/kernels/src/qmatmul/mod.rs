//! Quantized matrix products on the CPU: GGUF Q4_1 and Q8_0 weights times f32
//! activations, for one token (decode) and many (batched decode, prefill).
//!
//! candle's CPU dot product for Q4_1 is scalar; these kernels quantize the
//! activations to int8 per 32-value block, as llama.cpp does, and multiply
//! bytes with AVX-512 VNNI or AVX2, chosen at run time ([`Kernel::best`]).
//!
//! # Layout
//! - `matmul`: [`QMatrix`], the public product, its chunking over the rayon
//!   pool and the per-thread scratch.
//! - `blocks`: GGUF block layouts and the regrouped weights the kernels read.
//! - `acts`: activations quantized to int8 blocks.
//! - `kernel`: [`Kernel`], detection and the tile every kernel computes.
//! - `scalar`: the portable tile, also the tests' reference.
//! - `x86`: AVX2 and AVX-512 VNNI tiles.

mod acts;
mod blocks;
mod kernel;
mod matmul;
mod scalar;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use blocks::QFormat;
pub use kernel::Kernel;
pub use matmul::QMatrix;
