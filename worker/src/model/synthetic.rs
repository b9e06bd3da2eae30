//! Synthetic models for capacity planning: the shape of a public llama-family
//! model with seeded random weights, drawn on the host and moved to the
//! device, with no file. Its tokens mean nothing, but its speed and memory are
//! the real model's, so a load test can ask "what does a 7B bf16 model do on
//! a 2g.20gb slice" without the weights.
//!
//! Named as synthetic wherever it appears: a spec reads `llama-7b:bf16`, and
//! the worker's model name must contain `synthetic`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use candle_transformers::models::llama::{Cache, Config, Llama};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{identity, Generator, TextCodec};
use crate::prompt::TextPrompter;

pub use mig_slices::synthetic::{
    Architecture, SyntheticSpec, WeightType, ARCHITECTURES, NAME_MARK,
};

/// The candle type of a weight format.
fn dtype(w: WeightType) -> DType {
    match w {
        WeightType::Bf16 => DType::BF16,
        WeightType::F16 => DType::F16,
        WeightType::F32 => DType::F32,
    }
}

/// Weights drawn on the host from a generator seeded by the model seed and
/// the tensor's name (so every device gets the same model, whatever the
/// order of loading), uniform with the spread of a 0.02 standard deviation;
/// norm weights are ones.
struct RandomWeights {
    seed: u64,
    /// Bytes handed out, in the model's dtype.
    allocated: Arc<AtomicU64>,
}

impl RandomWeights {
    fn values(&self, name: &str, shape: &Shape, init: Init) -> Vec<f32> {
        let n = shape.elem_count();
        if name.ends_with("norm.weight") {
            return vec![1.0; n];
        }
        if let Init::Const(v) = init {
            return vec![v as f32; n];
        }
        // FNV-1a of the name, mixed with the seed.
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let mut rng = StdRng::seed_from_u64(self.seed ^ hash);
        let bound = 0.02 * 3f32.sqrt();
        (0..n).map(|_| rng.random_range(-bound..bound)).collect()
    }
}

impl SimpleBackend for RandomWeights {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let values = self.values(name, &shape, init);
        let tensor = Tensor::from_vec(values, shape, &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(dev)?;
        self.allocated.fetch_add(
            (tensor.elem_count() * dtype.size_in_bytes()) as u64,
            Ordering::Relaxed,
        );
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("synthetic weights have no tensor `{name}` without a shape")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// A synthetic llama on its device.
pub struct SyntheticLlama {
    model: Llama,
    config: Config,
    cache: Cache,
    dtype: DType,
    device: Device,
    /// Bytes of weights built.
    pub weight_bytes: u64,
}

/// Builds the model of `spec` with weights from `seed` on `device`.
pub fn build(
    spec: SyntheticSpec,
    device: &Device,
    seed: u64,
) -> candle_core::Result<SyntheticLlama> {
    let a = spec.architecture;
    let config = Config {
        hidden_size: a.hidden,
        intermediate_size: a.intermediate,
        vocab_size: a.vocab,
        num_hidden_layers: a.layers,
        num_attention_heads: a.heads,
        num_key_value_heads: a.kv_heads,
        use_flash_attn: false,
        rms_norm_eps: 1e-5,
        rope_theta: a.rope_theta,
        bos_token_id: None,
        eos_token_id: None,
        // Llama 3.x use llama3 RoPE scaling: it changes numbers, not the
        // shape, speed or memory.
        rope_scaling: None,
        // The RoPE tables are precomputed for every position: keep them to
        // the context the worker serves.
        max_position_embeddings: a.context.min(SERVED_CONTEXT),
        tie_word_embeddings: a.tied_embeddings,
    };
    let allocated = Arc::new(AtomicU64::new(0));
    let backend = RandomWeights {
        seed,
        allocated: allocated.clone(),
    };
    let dtype = dtype(spec.weights);
    let vb = VarBuilder::from_backend(Box::new(backend), dtype, device.clone());
    let model = Llama::load(vb, &config)?;
    let cache = Cache::new(true, dtype, &config, device)?;
    Ok(SyntheticLlama {
        model,
        cache,
        config,
        dtype,
        device: device.clone(),
        weight_bytes: allocated.load(Ordering::Relaxed),
    })
}

/// The codec of a synthetic model: bytes in, `<t123>` placeholders out for
/// ids past 255, no end-of-sequence, the plain chat template.
pub fn codec(spec: SyntheticSpec) -> TextCodec {
    TextCodec {
        prompter: TextPrompter::new(
            identity::sized_byte_tokenizer(spec.architecture.vocab),
            Some(identity::plain_chat_template()),
        ),
        stop_ids: Vec::new(),
        context_length: spec.architecture.context.min(SERVED_CONTEXT),
    }
}

/// What `Info` reports as the engine.
pub fn engine(spec: SyntheticSpec, seed: u64) -> String {
    format!("synthetic {spec} (random weights, seed {seed})")
}

/// Context a synthetic worker serves (prompt plus generated tokens).
pub const SERVED_CONTEXT: usize = 4096;

impl Generator for SyntheticLlama {
    fn prefill(&mut self, prompt: &[u32]) -> candle_core::Result<Tensor> {
        // A new sequence: a fresh KV cache.
        self.cache = Cache::new(true, self.dtype, &self.config, &self.device)?;
        let input = Tensor::new(prompt, &self.device)?.unsqueeze(0)?;
        self.model.forward(&input, 0, &mut self.cache)
    }

    fn step(&mut self, token: u32, pos: usize) -> candle_core::Result<Tensor> {
        let input = Tensor::new(&[token], &self.device)?.unsqueeze(0)?;
        self.model.forward(&input, pos, &mut self.cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_builds_the_same_model_and_greedy_tokens() {
        let spec: SyntheticSpec = "llama-135m:f32".parse().unwrap();
        let mut a = build(spec, &Device::Cpu, 7).unwrap();
        let mut b = build(spec, &Device::Cpu, 7).unwrap();
        assert_eq!(a.weight_bytes, spec.weight_bytes());
        let greedy = |m: &mut SyntheticLlama| {
            let mut ids = vec![1u32, 2, 3];
            let mut logits = m.prefill(&ids).unwrap();
            for _ in 0..8 {
                let next = logits
                    .squeeze(0)
                    .unwrap()
                    .argmax(0)
                    .unwrap()
                    .to_scalar::<u32>()
                    .unwrap();
                ids.push(next);
                logits = m.step(next, ids.len() - 1).unwrap();
            }
            ids
        };
        let ids = greedy(&mut a);
        assert_eq!(ids, greedy(&mut b));
        assert!(ids[3..]
            .iter()
            .all(|&t| (t as usize) < spec.architecture.vocab));
        let mut c = build(spec, &Device::Cpu, 8).unwrap();
        let first = |m: &mut SyntheticLlama| {
            m.prefill(&[1, 2, 3])
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_ne!(first(&mut a), first(&mut c), "another seed, another model");
    }
}
