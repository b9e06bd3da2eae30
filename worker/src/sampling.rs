//! Request parameters to a seeded sampler (candle's `LogitsProcessor`) with a
//! repetition penalty over a window of recent tokens; the model's own
//! distribution at a step as log-probabilities ([`Distribution`]).

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

/// The model's distribution at one step as log-probabilities: the
/// log-softmax of the logits the sampler receives, at temperature 1 and
/// before any repetition penalty (natural log, over the whole vocabulary).
pub struct Distribution {
    logits: Vec<f32>,
    /// log(sum(exp(logit))), computed in f64.
    log_total: f64,
}

impl Distribution {
    /// The distribution of `logits` (`(vocab,)` or `(1, vocab)`).
    pub fn new(logits: &Tensor) -> Result<Distribution> {
        let logits: Vec<f32> = logits
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1()?;
        Ok(Distribution::of(logits))
    }

    fn of(logits: Vec<f32>) -> Distribution {
        let max = logits
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .fold(f32::NEG_INFINITY, f32::max) as f64;
        let sum: f64 = logits
            .iter()
            .filter(|x| x.is_finite())
            .map(|&x| (x as f64 - max).exp())
            .sum();
        Distribution {
            logits,
            log_total: max + sum.ln(),
        }
    }

    /// The log-probability of token `id` (negative infinity for an id
    /// outside the vocabulary).
    pub fn logprob(&self, id: u32) -> f32 {
        self.logits
            .get(id as usize)
            .map_or(f32::NEG_INFINITY, |&x| (x as f64 - self.log_total) as f32)
    }

    /// The `n` most likely tokens and their log-probabilities, most likely
    /// first (ties: the lower id first).
    pub fn top(&self, n: usize) -> Vec<(u32, f32)> {
        let mut best: Vec<(u32, f32)> = Vec::with_capacity(n + 1);
        if n == 0 {
            return best;
        }
        for (id, &x) in self.logits.iter().enumerate() {
            if best.len() == n && best.last().is_some_and(|&(_, low)| x <= low) {
                continue;
            }
            let at = best.partition_point(|&(_, y)| y >= x);
            best.insert(at, (id as u32, x));
            best.truncate(n);
        }
        best.into_iter()
            .map(|(id, x)| (id, (x as f64 - self.log_total) as f32))
            .collect()
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
    fn the_distribution_is_the_log_softmax_of_the_logits() {
        let d = Distribution::new(&logits(&[1.0, 3.0, 2.0, 3.0, -1.0])).unwrap();
        // Probabilities sum to 1.
        let total: f64 = (0..5).map(|i| (d.logprob(i) as f64).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        // Differences of log-probabilities are differences of logits.
        assert!((d.logprob(1) - d.logprob(0) - 2.0).abs() < 1e-6);
        // softmax([1, 3, 2, 3, -1])[1] = e^3 / (e + 2e^3 + e^2 + e^-1)
        let e = std::f64::consts::E;
        let expected = (e.powi(3) / (e + 2.0 * e.powi(3) + e * e + 1.0 / e)).ln();
        assert!((d.logprob(1) as f64 - expected).abs() < 1e-6);
        // Most likely first, the lower id first on a tie.
        let top: Vec<u32> = d.top(3).into_iter().map(|(id, _)| id).collect();
        assert_eq!(top, [1, 3, 2]);
        assert_eq!(d.top(0), []);
        assert_eq!(d.top(9).len(), 5);
        assert_eq!(d.logprob(99), f32::NEG_INFINITY);
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
