//! Synthetic models: the shapes of public llama-family models, so a worker
//! can build one with random weights (no file) and the planner can size its
//! memory. A spec reads `llama-7b:bf16`.

use std::fmt;
use std::str::FromStr;

use crate::need::ModelShape;

/// A synthetic model's name must contain this, so its figures are never taken
/// for a real model's in metrics and reports (the worker and the fleet file
/// both check it).
pub const NAME_MARK: &str = "synthetic";

/// A public architecture's shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Architecture {
    /// `135m`, `1b`, ...
    pub size: &'static str,
    /// The public model whose configuration this is.
    pub source: &'static str,
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub vocab: usize,
    pub tied_embeddings: bool,
    pub rope_theta: f32,
    pub context: usize,
}

/// The sizes `--synthetic llama-<size>:<dtype>` knows, from each model's
/// published `config.json`.
pub const ARCHITECTURES: &[Architecture] = &[
    Architecture {
        size: "135m",
        source: "HuggingFaceTB/SmolLM2-135M",
        hidden: 576,
        intermediate: 1536,
        layers: 30,
        heads: 9,
        kv_heads: 3,
        vocab: 49152,
        tied_embeddings: true,
        rope_theta: 100_000.0,
        context: 8192,
    },
    Architecture {
        size: "1b",
        source: "meta-llama/Llama-3.2-1B",
        hidden: 2048,
        intermediate: 8192,
        layers: 16,
        heads: 32,
        kv_heads: 8,
        vocab: 128_256,
        tied_embeddings: true,
        rope_theta: 500_000.0,
        context: 131_072,
    },
    Architecture {
        size: "3b",
        source: "meta-llama/Llama-3.2-3B",
        hidden: 3072,
        intermediate: 8192,
        layers: 28,
        heads: 24,
        kv_heads: 8,
        vocab: 128_256,
        tied_embeddings: true,
        rope_theta: 500_000.0,
        context: 131_072,
    },
    Architecture {
        size: "7b",
        source: "meta-llama/Llama-2-7b-hf",
        hidden: 4096,
        intermediate: 11008,
        layers: 32,
        heads: 32,
        kv_heads: 32,
        vocab: 32000,
        tied_embeddings: false,
        rope_theta: 10_000.0,
        context: 4096,
    },
    Architecture {
        size: "8b",
        source: "meta-llama/Llama-3.1-8B",
        hidden: 4096,
        intermediate: 14336,
        layers: 32,
        heads: 32,
        kv_heads: 8,
        vocab: 128_256,
        tied_embeddings: false,
        rope_theta: 500_000.0,
        context: 131_072,
    },
    Architecture {
        size: "13b",
        source: "meta-llama/Llama-2-13b-hf",
        hidden: 5120,
        intermediate: 13824,
        layers: 40,
        heads: 40,
        kv_heads: 40,
        vocab: 32000,
        tied_embeddings: false,
        rope_theta: 10_000.0,
        context: 4096,
    },
];

impl Architecture {
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    /// Parameters, counted as the checkpoint stores them (tied embeddings once).
    pub fn parameters(&self) -> u64 {
        let (h, i, kv) = (
            self.hidden,
            self.intermediate,
            self.kv_heads * self.head_dim(),
        );
        let per_layer = h * h * 2 + h * kv * 2 + h * i * 3 + h * 2;
        let embeddings = self.vocab * h * if self.tied_embeddings { 1 } else { 2 };
        (embeddings + self.layers * per_layer + h) as u64
    }
}

/// In-memory weight format of a synthetic model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightType {
    Bf16,
    F16,
    F32,
}

impl WeightType {
    /// Bytes per weight (and per cached key/value element).
    pub fn bytes(self) -> u64 {
        match self {
            WeightType::Bf16 | WeightType::F16 => 2,
            WeightType::F32 => 4,
        }
    }
}

/// `llama-7b:bf16`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyntheticSpec {
    pub architecture: Architecture,
    pub weights: WeightType,
}

impl SyntheticSpec {
    /// What the weights take in memory, in bytes.
    pub fn weight_bytes(&self) -> u64 {
        self.architecture.parameters() * self.weights.bytes()
    }

    /// The shape the planner sizes memory from (KV cache in the weights'
    /// type, as candle's llama keeps it).
    pub fn shape(&self) -> ModelShape {
        let a = self.architecture;
        ModelShape {
            weights_bytes: self.weight_bytes(),
            layers: a.layers as u32,
            kv_heads: a.kv_heads as u32,
            head_dim: a.head_dim() as u32,
            kv_dtype_bytes: self.weights.bytes() as u32,
        }
    }
}

impl FromStr for SyntheticSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let sizes = || {
            ARCHITECTURES
                .iter()
                .map(|a| format!("llama-{}", a.size))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (model, weights) = s.split_once(':').unwrap_or((s, "bf16"));
        let architecture = model
            .strip_prefix("llama-")
            .and_then(|size| ARCHITECTURES.iter().find(|a| a.size == size))
            .copied()
            .ok_or_else(|| format!("`{model}` is not a synthetic model; known: {}", sizes()))?;
        let weights = match weights {
            "bf16" => WeightType::Bf16,
            "f16" => WeightType::F16,
            "f32" => WeightType::F32,
            other => return Err(format!("weights `{other}`: use bf16, f16 or f32")),
        };
        Ok(SyntheticSpec {
            architecture,
            weights,
        })
    }
}

impl fmt::Display for SyntheticSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = match self.weights {
            WeightType::Bf16 => "bf16",
            WeightType::F16 => "f16",
            WeightType::F32 => "f32",
        };
        write!(f, "llama-{}:{w}", self.architecture.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_match_the_public_models() {
        // Published totals (safetensors metadata or model cards).
        let published = [
            ("135m", 134_515_008u64),
            ("1b", 1_235_814_400),
            ("3b", 3_212_749_824),
            ("7b", 6_738_415_616),
            ("8b", 8_030_261_248),
            ("13b", 13_015_864_320),
        ];
        for (size, count) in published {
            let a = ARCHITECTURES.iter().find(|a| a.size == size).unwrap();
            assert_eq!(a.parameters(), count, "llama-{size} ({})", a.source);
        }
    }

    #[test]
    fn specs_parse_and_name_what_is_wrong() {
        let s: SyntheticSpec = "llama-7b:bf16".parse().unwrap();
        assert_eq!(s.architecture.size, "7b");
        assert_eq!(s.weight_bytes(), 6_738_415_616 * 2);
        assert_eq!(s.shape().kv_heads, 32);
        assert_eq!(s.to_string(), "llama-7b:bf16");
        assert_eq!(
            "llama-1b".parse::<SyntheticSpec>().unwrap().weights,
            WeightType::Bf16
        );
        let e = "llama-2b:bf16".parse::<SyntheticSpec>().unwrap_err();
        assert!(e.contains("known: llama-135m, llama-1b"), "{e}");
        let e = "llama-1b:q4".parse::<SyntheticSpec>().unwrap_err();
        assert!(e.contains("bf16, f16 or f32"), "{e}");
    }
}
