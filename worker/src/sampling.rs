//! Request parameters to a seeded sampler (candle's `LogitsProcessor`) with a
//! repetition penalty over a window of recent tokens.

use std::hash::{BuildHasher, Hasher};

use candle_core::{Result, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};

/// The repetition penalty looks at this many most recent tokens (prompt and
/// generated), as llama.cpp's `penalty_last_n` default does.
pub const PENALTY_WINDOW: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 is greedy.
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    /// `None` draws a random seed.
    pub seed: Option<u64>,
    /// 1.0 is off.
    pub repetition_penalty: f32,
}

impl SamplingParams {
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_p: None,
            top_k: None,
            seed: Some(0),
            repetition_penalty: 1.0,
        }
    }
}

pub struct Sampler {
    processor: LogitsProcessor,
    repetition_penalty: f32,
}

fn random_seed() -> u64 {
    // RandomState is seeded from the OS once per process and per instance.
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

impl Sampler {
    pub fn new(p: &SamplingParams) -> Self {
        let sampling = if p.temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            let temperature = p.temperature;
            match (p.top_k, p.top_p) {
                (None, None) => Sampling::All { temperature },
                (Some(k), None) => Sampling::TopK { k, temperature },
                (None, Some(p)) => Sampling::TopP { p, temperature },
                (Some(k), Some(p)) => Sampling::TopKThenTopP { k, p, temperature },
            }
        };
        let seed = p.seed.unwrap_or_else(random_seed);
        Sampler {
            processor: LogitsProcessor::from_sampling(seed, sampling),
            repetition_penalty: p.repetition_penalty,
        }
    }

    /// Picks the next token from the logits of the last position; `history`
    /// is every token so far (prompt and generated).
    pub fn sample(&mut self, logits: &Tensor, history: &[u32]) -> Result<u32> {
        let logits = logits.squeeze(0)?;
        let logits = if self.repetition_penalty == 1.0 {
            logits
        } else {
            let start = history.len().saturating_sub(PENALTY_WINDOW);
            candle_transformers::utils::apply_repeat_penalty(
                &logits,
                self.repetition_penalty,
                &history[start..],
            )?
        };
        self.processor.sample(&logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn logits(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap().unsqueeze(0).unwrap()
    }

    #[test]
    fn greedy_takes_the_largest_logit() {
        let mut s = Sampler::new(&SamplingParams::greedy());
        assert_eq!(s.sample(&logits(&[0.1, 3.0, 2.9]), &[]).unwrap(), 1);
    }

    #[test]
    fn repetition_penalty_moves_greedy_off_a_seen_token() {
        let mut p = SamplingParams::greedy();
        p.repetition_penalty = 1.5;
        let mut s = Sampler::new(&p);
        // 3.0 / 1.5 = 2.0 < 2.9
        assert_eq!(s.sample(&logits(&[0.1, 3.0, 2.9]), &[1]).unwrap(), 2);
        // Outside the window the penalty no longer applies.
        let mut history = vec![1];
        history.extend(std::iter::repeat_n(0, PENALTY_WINDOW));
        assert_eq!(s.sample(&logits(&[0.1, 3.0, 2.9]), &history).unwrap(), 1);
    }

    #[test]
    fn same_seed_same_samples() {
        let p = SamplingParams {
            temperature: 1.0,
            top_p: Some(0.9),
            top_k: Some(3),
            seed: Some(42),
            repetition_penalty: 1.0,
        };
        let l = logits(&[1.0, 1.1, 0.9, 1.05, 0.2]);
        let a: Vec<u32> = {
            let mut s = Sampler::new(&p);
            (0..20).map(|_| s.sample(&l, &[]).unwrap()).collect()
        };
        let mut s = Sampler::new(&p);
        let b: Vec<u32> = (0..20).map(|_| s.sample(&l, &[]).unwrap()).collect();
        assert_eq!(a, b);
        // top_k = 3 keeps ids 1, 3, 0 only.
        assert!(a.iter().all(|id| [0, 1, 3].contains(id)), "{a:?}");
    }
}
