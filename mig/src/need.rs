//! The GPU memory one model replica needs.
//!
//! A slice is chosen by memory first: a model that does not fit fails at load
//! time, while one with too little compute only runs slower. The need is the
//! weights, the KV cache for the longest context at the planned concurrency,
//! and a fixed overhead; a plan built from it fails at planning time rather
//! than with an out-of-memory error in production.

use std::fmt;

use serde::{Deserialize, Serialize};

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// Memory a replica needs besides weights and KV cache: the CUDA context
/// (a few hundred MiB on Ampere/Hopper, more with lazy loading off), cuBLAS
/// workspaces, and activations of one forward pass at serving batch sizes.
/// 512 MiB covers the small and mid-sized models this gateway serves; it is a
/// floor, not a measurement, and a large-batch server should add its own
/// activation estimate to the weights figure.
pub const OVERHEAD_BYTES: u64 = 512 * MIB;

/// What the memory need of a decoder-only transformer depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelShape {
    /// Size of the weights as loaded on the GPU (after any quantisation).
    pub weights_bytes: u64,
    pub layers: u32,
    /// Key/value heads (fewer than query heads under grouped-query attention,
    /// which is what makes a 70B model's cache affordable).
    pub kv_heads: u32,
    pub head_dim: u32,
    /// Bytes per cached element: 2 for f16/bf16, 4 for f32, 1 for an fp8 cache.
    pub kv_dtype_bytes: u32,
}

/// The memory one replica needs, by part, so a plan can say what dominates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryNeed {
    pub weights_bytes: u64,
    pub kv_cache_bytes: u64,
    pub overhead_bytes: u64,
    /// The sum of the parts (saturating; a need that overflows `u64` fits no
    /// GPU either way).
    pub total_bytes: u64,
}

/// KV-cache bytes one token adds: a key and a value vector per layer and KV
/// head.
pub fn kv_bytes_per_token(shape: &ModelShape) -> u64 {
    2 * u64::from(shape.layers)
        * u64::from(shape.kv_heads)
        * u64::from(shape.head_dim)
        * u64::from(shape.kv_dtype_bytes)
}

/// The need of one replica serving `concurrency` requests of up to
/// `context_tokens` tokens each (prompt plus generated), with the cache
/// reserved for the worst case as a static-cache server does.
pub fn memory_need(shape: &ModelShape, context_tokens: u64, concurrency: u64) -> MemoryNeed {
    let kv = kv_bytes_per_token(shape)
        .saturating_mul(context_tokens)
        .saturating_mul(concurrency);
    MemoryNeed::new(shape.weights_bytes, kv, OVERHEAD_BYTES)
}

/// `value` decimal gigabytes (10^9 bytes) in bytes, the unit model sizes are
/// quoted in ("a 7B fp16 model is about 14 GB").
pub fn gb(value: f64) -> u64 {
    (value * 1e9).round() as u64
}

/// `value` GiB (2^30 bytes) in bytes, the unit `nvidia-smi` prints.
pub fn gib(value: f64) -> u64 {
    (value * GIB as f64).round() as u64
}

/// Bytes as GiB with `decimals` digits, e.g. `9.3 GiB`.
pub fn fmt_gib(bytes: u64, decimals: usize) -> String {
    format!("{:.*} GiB", decimals, bytes as f64 / GIB as f64)
}

impl MemoryNeed {
    pub fn new(weights_bytes: u64, kv_cache_bytes: u64, overhead_bytes: u64) -> Self {
        MemoryNeed {
            weights_bytes,
            kv_cache_bytes,
            overhead_bytes,
            total_bytes: weights_bytes
                .saturating_add(kv_cache_bytes)
                .saturating_add(overhead_bytes),
        }
    }

    /// A need known only as a total, e.g. `MemoryNeed::total(gb(14.0))`. The
    /// figure is taken as given: no overhead is added, so it should already
    /// include whatever the caller measured or estimated.
    pub fn total(bytes: u64) -> Self {
        MemoryNeed::new(bytes, 0, 0)
    }

    /// Weights plus [`OVERHEAD_BYTES`], for a model whose KV cache is small or
    /// allocated on demand.
    pub fn weights(bytes: u64) -> Self {
        MemoryNeed::new(bytes, 0, OVERHEAD_BYTES)
    }
}

impl fmt::Display for MemoryNeed {
    /// `13.5 GiB (weights 13.0 + KV 0.0 + overhead 0.5)`; a bare total when
    /// the need was given as one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = |b: u64| b as f64 / GIB as f64;
        if self.kv_cache_bytes == 0 && self.overhead_bytes == 0 {
            return write!(f, "{:.1} GiB", g(self.total_bytes));
        }
        write!(
            f,
            "{:.1} GiB (weights {:.1} + KV {:.1} + overhead {:.1})",
            g(self.total_bytes),
            g(self.weights_bytes),
            g(self.kv_cache_bytes),
            g(self.overhead_bytes)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Llama-2-70B's attention: 80 layers, 8 KV heads of 128, f16 cache.
    const LLAMA_70B: ModelShape = ModelShape {
        weights_bytes: 140_000_000_000,
        layers: 80,
        kv_heads: 8,
        head_dim: 128,
        kv_dtype_bytes: 2,
    };

    #[test]
    fn kv_cache_grows_with_layers_heads_context_and_concurrency() {
        assert_eq!(kv_bytes_per_token(&LLAMA_70B), 327_680); // 320 KiB
        let need = memory_need(&LLAMA_70B, 4096, 8);
        assert_eq!(need.kv_cache_bytes, 10 * GIB);
        assert_eq!(need.overhead_bytes, OVERHEAD_BYTES);
        assert_eq!(
            need.total_bytes,
            140_000_000_000 + 10 * GIB + OVERHEAD_BYTES
        );
        assert_eq!(
            need.to_string(),
            "140.9 GiB (weights 130.4 + KV 10.0 + overhead 0.5)"
        );
    }

    #[test]
    fn smollm2_135m_needs_well_under_a_gib() {
        // SmolLM2-135M: 30 layers, 3 KV heads of 64; 135M parameters in f16.
        let shape = ModelShape {
            weights_bytes: 270_000_000,
            layers: 30,
            kv_heads: 3,
            head_dim: 64,
            kv_dtype_bytes: 2,
        };
        let need = memory_need(&shape, 2048, 4);
        assert_eq!(kv_bytes_per_token(&shape), 23_040);
        assert!(need.total_bytes < GIB, "{need}");
    }

    #[test]
    fn totals_saturate_instead_of_wrapping() {
        let huge = ModelShape {
            weights_bytes: u64::MAX - 1,
            ..LLAMA_70B
        };
        assert_eq!(memory_need(&huge, u64::MAX, 2).total_bytes, u64::MAX);
    }

    #[test]
    fn given_totals_are_taken_as_is() {
        let need = MemoryNeed::total(gb(14.0));
        assert_eq!(need.total_bytes, 14_000_000_000);
        assert_eq!(need.to_string(), "13.0 GiB");
        assert_eq!(MemoryNeed::weights(GIB).total_bytes, GIB + OVERHEAD_BYTES);
        assert_eq!(gib(1.5), 3 * GIB / 2);
        assert_eq!(fmt_gib(gib(9.25), 2), "9.25 GiB");
    }
}
