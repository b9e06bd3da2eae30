//! Synthetic models for capacity planning: the shape of a public llama-family
//! model with seeded random weights, drawn on the host and moved to the
//! device, with no file. Its tokens mean nothing, but its speed and memory are
//! the real model's, so a load test can ask "what does a 7B bf16 model do on
//! a 2g.20gb slice" without the weights.
//!
//! Named as synthetic wherever it appears: a spec reads `llama-7b:bf16`, and
//! the worker's model name must contain `synthetic`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::llama::{self, Llama, LlamaConfig};
use super::prompt::TextPrompter;
use super::{identity, TextCodec};

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
/// order of loading or the number of threads drawing), uniform with the
/// spread of a 0.02 standard deviation; norm weights are ones.
struct RandomWeights<'a> {
    seed: u64,
    dtype: DType,
    device: &'a Device,
    /// Bytes handed out, in the model's dtype.
    allocated: AtomicU64,
    /// Held while a drawn tensor is copied to a GPU: the drawing runs on
    /// every core, the copies one at a time, so the device sees one host
    /// thread at a time as it did before the drawing was parallel.
    copying: Mutex<()>,
}

impl RandomWeights<'_> {
    fn values(&self, name: &str, n: usize) -> Vec<f32> {
        if name.ends_with("norm.weight") {
            return vec![1.0; n];
        }
        // FNV-1a of the name, mixed with the seed.
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let mut rng = StdRng::seed_from_u64(self.seed ^ hash);
        let bound = 0.02 * 3f32.sqrt();
        (0..n).map(|_| rng.random_range(-bound..bound)).collect()
    }

    fn get(&self, shape: Shape, name: &str) -> candle_core::Result<Tensor> {
        let values = self.values(name, shape.elem_count());
        let host = Tensor::from_vec(values, shape, &Device::Cpu)?.to_dtype(self.dtype)?;
        let tensor = if self.device.is_cpu() {
            host
        } else {
            // The lock guards no data, so a panic elsewhere leaves nothing
            // inconsistent behind it.
            let _one_copy = self.copying.lock().unwrap_or_else(|e| e.into_inner());
            host.to_device(self.device)?
        };
        self.allocated.fetch_add(
            (tensor.elem_count() * self.dtype.size_in_bytes()) as u64,
            Ordering::Relaxed,
        );
        Ok(tensor)
    }
}

/// A synthetic llama on its device.
pub struct SyntheticLlama {
    pub model: Llama,
    /// Bytes of weights built.
    pub weight_bytes: u64,
}

/// Builds the model of `spec` with weights from `seed` on `device`, drawing
/// them on as many threads as this process may run on (a CPU slice's cores;
/// every core for a GPU worker, whose compute pool has one thread): a 7B
/// model's 6.7 billion draws take about 40 s on one thread.
pub fn build(
    spec: SyntheticSpec,
    device: &Device,
    seed: u64,
) -> candle_core::Result<SyntheticLlama> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    build_on(spec, device, seed, threads)
}

/// [`build`] with `threads` drawing. Tensor names follow the Hugging Face
/// checkpoints, whose RoPE pairs `(i, i+d/2)`. A tied output head shares the
/// embedding matrix, counted once.
pub fn build_on(
    spec: SyntheticSpec,
    device: &Device,
    seed: u64,
    threads: usize,
) -> candle_core::Result<SyntheticLlama> {
    let a = spec.architecture;
    let config = LlamaConfig {
        hidden: a.hidden,
        heads: a.heads,
        kv_heads: a.kv_heads,
        layers: a.layers,
        vocab: a.vocab,
        rms_eps: 1e-5,
        rope_theta: a.rope_theta,
        // Llama 3.x use llama3 RoPE scaling: it changes numbers, not the
        // shape, speed or memory.
        rope_interleaved: false,
        context: a.context.min(SERVED_CONTEXT),
        dtype: dtype(spec.weights),
    };
    let w = RandomWeights {
        seed,
        dtype: config.dtype,
        device,
        allocated: AtomicU64::new(0),
        copying: Mutex::new(()),
    };
    let construct = || {
        llama::from_hf_names(
            config,
            a.intermediate,
            a.tied_embeddings,
            device,
            |shape, name| w.get(shape, name),
        )
    };
    // A pool of its own: the global one is the compute pool, sized to the
    // slice (one thread on a GPU).
    let model = match rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("synthetic-weights-{i}"))
        .build()
    {
        Ok(pool) => pool.install(construct)?,
        Err(e) => {
            tracing::warn!(error = %e, "no thread pool for drawing weights; drawing on the compute pool");
            construct()?
        }
    };
    Ok(SyntheticLlama {
        model,
        weight_bytes: w.allocated.into_inner(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::solo::Solo;

    #[test]
    fn the_same_seed_builds_the_same_model_and_greedy_tokens() {
        let spec: SyntheticSpec = "llama-135m:f32".parse().unwrap();
        let mut a = build(spec, &Device::Cpu, 7).unwrap();
        let mut b = build(spec, &Device::Cpu, 7).unwrap();
        assert_eq!(a.weight_bytes, spec.weight_bytes());
        let greedy = |m: &mut SyntheticLlama| {
            let mut solo = Solo::new(&mut m.model, 16, &Device::Cpu).unwrap();
            let mut ids = vec![1u32, 2, 3];
            let mut logits = solo.prefill(&ids).unwrap();
            for _ in 0..8 {
                let next = logits
                    .squeeze(0)
                    .unwrap()
                    .argmax(0)
                    .unwrap()
                    .to_scalar::<u32>()
                    .unwrap();
                ids.push(next);
                logits = solo.step(next, ids.len() - 1).unwrap();
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
            Solo::new(&mut m.model, 16, &Device::Cpu)
                .unwrap()
                .prefill(&[1, 2, 3])
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_ne!(first(&mut a), first(&mut c), "another seed, another model");
    }

    /// The draw depends on the seed and the tensor's name only: one thread
    /// or several, in whatever order the layers come out, the same model.
    #[test]
    fn the_number_of_drawing_threads_does_not_change_the_model() {
        let spec: SyntheticSpec = "llama-135m:f32".parse().unwrap();
        let logits = |threads: usize| {
            let mut m = build_on(spec, &Device::Cpu, 11, threads).unwrap();
            assert_eq!(m.weight_bytes, spec.weight_bytes());
            let mut solo = Solo::new(&mut m.model, 16, &Device::Cpu).unwrap();
            let first = solo.prefill(&[5, 6, 7]).unwrap();
            let second = solo.step(9, 3).unwrap();
            Tensor::cat(&[first, second], 0)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let one = logits(1);
        assert!(one.iter().any(|&x| x != 0.0) && one.iter().all(|x| x.is_finite()));
        assert_eq!(one, logits(4), "bit for bit, whatever the threads");
    }
}
