//! `mig-worker bench`: prefill and decode speed of a generation model on
//! this machine, measured on the engine's own code path without a server.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde::Serialize;

use crate::config::{DeviceKind, WeightFormat};
use crate::model::solo::Solo;
use crate::model::{self, Backend, Codec, ModelSource};
use crate::sampling::{Sampler, SamplingParams};

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// A `.gguf` generation model.
    #[arg(long)]
    pub model_path: PathBuf,
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceKind,
    #[arg(long, value_enum, default_value = "native")]
    pub weights: WeightFormat,
    /// Compute threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 128)]
    pub prompt_tokens: usize,
    /// Tokens decoded after the prompt (greedy, end-of-sequence ignored).
    #[arg(long, default_value_t = 128)]
    pub decode_tokens: usize,
    /// Measured repetitions; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Sequences decoded together, each after its own copy of the prompt:
    /// decode tokens/s is then the whole batch's.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub weights: String,
    pub threads: usize,
    pub prompt_tokens: usize,
    pub decode_tokens: usize,
    pub runs: usize,
    pub batch: usize,
    pub load_seconds: f64,
    pub prefill_tokens_per_second: f64,
    pub decode_tokens_per_second: f64,
    pub time_to_first_token_ms: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(args: &BenchArgs) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(args.runs > 0, "`--runs` must be at least 1");
    anyhow::ensure!(
        args.prompt_tokens > 0,
        "`--prompt-tokens` must be at least 1"
    );
    let device = model::device(args.device)?;
    let started = Instant::now();
    let loaded = model::load(
        &ModelSource::File(args.model_path.clone()),
        &device,
        args.weights,
    )?;
    let load_seconds = started.elapsed().as_secs_f64();
    let (Backend::Generate(mut model), Codec::Text(text)) = (loaded.backend, loaded.codec) else {
        anyhow::bail!("`--model-path` is not a generation model");
    };
    anyhow::ensure!(
        args.prompt_tokens + args.decode_tokens < text.context_length,
        "prompt plus decode tokens exceed the context of {}",
        text.context_length
    );
    let seed_text = "The quick brown fox jumps over the lazy dog, and 12 more \
                     sentences follow about slices of a GPU. ";
    let mut prompt = Vec::new();
    while prompt.len() < args.prompt_tokens {
        prompt.extend(text.prompter.encode_prompt(seed_text)?);
    }
    prompt.truncate(args.prompt_tokens);
    anyhow::ensure!(args.batch > 0, "`--batch` must be at least 1");
    let mut model = Solo::with_slots(
        model.as_mut(),
        args.prompt_tokens + args.decode_tokens + 1,
        args.batch,
        &device,
    )?;

    let mut prefill = Vec::new();
    let mut decode = Vec::new();
    let mut ttft = Vec::new();
    // One warm-up run, then the measured ones.
    for run in 0..=args.runs {
        let mut samplers: Vec<Sampler> = (0..args.batch)
            .map(|_| Sampler::new(&SamplingParams::greedy()))
            .collect();
        let mut history = prompt.clone();
        let t0 = Instant::now();
        let logits = model.prefill(&history)?;
        let mut next = vec![samplers[0].sample(&logits, &history)?; args.batch];
        let first = t0.elapsed().as_secs_f64();
        // The other slots start from the same prompt, untimed.
        for slot in 1..args.batch {
            model.prefill_in(slot, &history)?;
        }
        let t1 = Instant::now();
        for _ in 0..args.decode_tokens {
            history.push(next[0]);
            let logits = model.step_all(&next, history.len() - 1)?;
            for (slot, (sampler, token)) in samplers.iter_mut().zip(&mut next).enumerate() {
                *token = sampler.sample(&logits.get(slot)?.unsqueeze(0)?, &history)?;
            }
        }
        let decode_s = t1.elapsed().as_secs_f64();
        if run > 0 {
            prefill.push(args.prompt_tokens as f64 / first);
            ttft.push(first * 1000.0);
            decode.push((args.decode_tokens * args.batch) as f64 / decode_s);
        }
    }
    Ok(BenchReport {
        model: args.model_path.display().to_string(),
        weights: format!("{:?}", args.weights),
        threads: args.threads,
        prompt_tokens: args.prompt_tokens,
        decode_tokens: args.decode_tokens,
        runs: args.runs,
        batch: args.batch,
        load_seconds,
        prefill_tokens_per_second: median(prefill),
        decode_tokens_per_second: median(decode),
        time_to_first_token_ms: median(ttft),
    })
}
