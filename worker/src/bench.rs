//! `mig-worker bench`: prefill and decode speed of a generation model on
//! this machine, measured on the engine's own code path without a server:
//! a model file, or a synthetic model (`--synthetic llama-7b:bf16`), on the
//! CPU or on CUDA.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde::Serialize;

use crate::model::solo::Solo;
use crate::model::synthetic::SyntheticSpec;
use crate::model::{self, Backend, Codec, DeviceKind, ModelSource, WeightFormat};
use crate::sampling::{Sampler, SamplingParams};

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// A generation model: a `.gguf` file or a Hugging Face llama folder.
    #[arg(
        long,
        required_unless_present = "synthetic",
        conflicts_with = "synthetic"
    )]
    pub model_path: Option<PathBuf>,
    /// A synthetic model instead of a file (`llama-7b:bf16`): a public
    /// shape with seeded random weights, for speed on a device where no
    /// model file can travel.
    #[arg(long)]
    pub synthetic: Option<SyntheticSpec>,
    /// Seed of the synthetic weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
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
    /// decode tokens/s is then the whole batch's. Several sizes
    /// (`1,8,32`) are measured in turn on one loaded model, one report each.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub batch: Vec<usize>,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub device: String,
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
    /// Bytes of the model's weights (a synthetic model's, or the file's size).
    pub weight_bytes: Option<u64>,
    /// Weight bytes times decode steps per second: the bandwidth decode
    /// would draw if each step read every weight once (its bound when
    /// memory-bound, to compare with the device's copy bandwidth).
    pub weight_read_gb_per_second: Option<f64>,
}

/// What one batch size measured (medians over the runs).
struct Figures {
    prefill_tokens_per_second: f64,
    decode_tokens_per_second: f64,
    time_to_first_token_ms: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Loads the model once and measures each `--batch` size in turn.
pub fn run(args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    anyhow::ensure!(args.runs > 0, "`--runs` must be at least 1");
    anyhow::ensure!(
        args.prompt_tokens > 0,
        "`--prompt-tokens` must be at least 1"
    );
    anyhow::ensure!(
        !args.batch.is_empty() && args.batch.iter().all(|&b| (1..=MAX_BATCH).contains(&b)),
        "each `--batch` must be within 1..={MAX_BATCH}"
    );
    let (source, weight_bytes) = match (&args.synthetic, &args.model_path) {
        (Some(spec), _) => (
            ModelSource::Synthetic {
                spec: *spec,
                seed: args.seed,
            },
            Some(spec.weight_bytes()),
        ),
        (None, Some(path)) => (
            ModelSource::File(path.clone()),
            std::fs::metadata(path)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len()),
        ),
        (None, None) => anyhow::bail!("give `--model-path` or `--synthetic`"),
    };
    let device = model::device(args.device)?;
    let started = Instant::now();
    let loaded = model::load(&source, &device, args.weights)?;
    let load_seconds = started.elapsed().as_secs_f64();
    let (Backend::Generate(mut model), Codec::Text(text)) = (loaded.backend, loaded.codec) else {
        anyhow::bail!("`{source}` is not a generation model");
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

    let mut reports = Vec::with_capacity(args.batch.len());
    for &batch in &args.batch {
        // A KV store for this batch alone, freed before the next is made.
        let mut solo = Solo::with_slots(
            model.as_mut(),
            args.prompt_tokens + args.decode_tokens + 1,
            batch,
            &device,
        )?;
        let figures = measure(&mut solo, &prompt, batch, args)?;
        reports.push(BenchReport {
            model: source.to_string(),
            device: format!("{:?}", args.device).to_lowercase(),
            weights: match args.synthetic {
                Some(spec) => format!("{:?}", spec.weights).to_lowercase(),
                None => format!("{:?}", args.weights),
            },
            threads: args.threads,
            prompt_tokens: args.prompt_tokens,
            decode_tokens: args.decode_tokens,
            runs: args.runs,
            batch,
            load_seconds,
            prefill_tokens_per_second: figures.prefill_tokens_per_second,
            decode_tokens_per_second: figures.decode_tokens_per_second,
            time_to_first_token_ms: figures.time_to_first_token_ms,
            weight_bytes,
            weight_read_gb_per_second: weight_bytes
                .map(|b| b as f64 * figures.decode_tokens_per_second / batch as f64 / 1e9),
        });
    }
    Ok(reports)
}

/// Most sequences `--batch` decodes together.
pub const MAX_BATCH: usize = 1024;

/// One warm-up run, then `args.runs` measured ones: the prompt's prefill in
/// slot 0 (timed: prefill speed and time to the first token), the other
/// slots' prefill (untimed), then `decode_tokens` steps of every slot.
fn measure(
    model: &mut Solo,
    prompt: &[u32],
    batch: usize,
    args: &BenchArgs,
) -> anyhow::Result<Figures> {
    let mut prefill = Vec::new();
    let mut decode = Vec::new();
    let mut ttft = Vec::new();
    for run in 0..=args.runs {
        let mut samplers: Vec<Sampler> = (0..batch)
            .map(|_| Sampler::new(&SamplingParams::greedy()))
            .collect();
        let mut history = prompt.to_vec();
        let t0 = Instant::now();
        let logits = model.prefill(&history)?;
        // Sampling reads the logits back to the host: the clock stops after
        // the device has finished.
        let mut next = vec![samplers[0].sample(&logits, &history)?; batch];
        let first = t0.elapsed().as_secs_f64();
        for slot in 1..batch {
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
            prefill.push(prompt.len() as f64 / first);
            ttft.push(first * 1000.0);
            decode.push((args.decode_tokens * batch) as f64 / decode_s);
        }
    }
    Ok(Figures {
        prefill_tokens_per_second: median(prefill),
        decode_tokens_per_second: median(decode),
        time_to_first_token_ms: median(ttft),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|c| c.bench)
    }

    #[test]
    fn a_model_file_or_a_synthetic_model_but_not_both() {
        assert!(parse(&[]).is_err(), "one of them is required");
        let both = parse(&["--model-path", "m.gguf", "--synthetic", "llama-1b"]);
        assert!(both.is_err());
        let s = parse(&["--synthetic", "llama-7b:bf16", "--batch", "32"]).unwrap();
        assert_eq!(s.synthetic.unwrap().to_string(), "llama-7b:bf16");
        assert_eq!(s.batch, vec![32]);
        let several = parse(&["--synthetic", "llama-1b", "--batch", "1,8,32"]).unwrap();
        assert_eq!(several.batch, vec![1, 8, 32]);
        assert!(parse(&["--synthetic", "llama-9b"])
            .unwrap_err()
            .to_string()
            .contains("not a synthetic model"));
    }

    /// A synthetic model runs through the same timed path as a file, each
    /// batch size on the one loaded model, and reports its weight bytes and
    /// what decode read of them.
    #[test]
    fn a_synthetic_model_is_measured_without_a_file() {
        let args = parse(&[
            "--synthetic",
            "llama-135m:f32",
            "--prompt-tokens",
            "8",
            "--decode-tokens",
            "4",
            "--runs",
            "1",
            "--batch",
            "1,2",
        ])
        .unwrap();
        let reports = run(&args).unwrap();
        assert_eq!(reports.iter().map(|r| r.batch).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(
            reports[0].load_seconds, reports[1].load_seconds,
            "loaded once"
        );
        let report = &reports[1];
        assert_eq!(report.model, "synthetic llama-135m:f32 seed 0");
        assert_eq!(
            (report.device.as_str(), report.weights.as_str()),
            ("cpu", "f32")
        );
        assert_eq!(report.prompt_tokens, 8);
        let spec: SyntheticSpec = "llama-135m:f32".parse().unwrap();
        assert_eq!(report.weight_bytes, Some(spec.weight_bytes()));
        assert!(report.decode_tokens_per_second > 0.0 && report.prefill_tokens_per_second > 0.0);
        let read = report.weight_read_gb_per_second.unwrap();
        let expected = spec.weight_bytes() as f64 * report.decode_tokens_per_second / 2.0 / 1e9;
        assert!(
            (read - expected).abs() < 1e-9 * expected.max(1.0),
            "{read} vs {expected}"
        );
    }
}
