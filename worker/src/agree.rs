//! `mig-worker agree`: the same seeded synthetic model on the CPU and on
//! another device (CUDA), run greedily on the same prompt, compared token by
//! token and logit by logit. The weights are drawn on the host, so both
//! devices hold the same model; what differs is only their arithmetic.

use clap::Args;
use serde::Serialize;

use crate::model::solo::Solo;
use crate::model::synthetic::{self, SyntheticSpec};
use crate::model::{self, DeviceKind};

#[derive(Debug, Clone, Args)]
pub struct AgreeArgs {
    /// The synthetic model to build on both devices.
    #[arg(long, default_value = "llama-135m:f32")]
    pub synthetic: SyntheticSpec,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The device to compare with the CPU.
    #[arg(long, value_enum, default_value = "cuda")]
    pub device: DeviceKind,
    /// Greedy steps after the prompt.
    #[arg(long, default_value_t = 32)]
    pub steps: usize,
    /// Largest difference of a logit, on the CPU's token path, that counts
    /// as agreement (the greedy ids are reported, not judged: near-ties may
    /// part within the tolerance).
    #[arg(long, default_value_t = 1e-2)]
    pub tolerance: f32,
}

#[derive(Debug, Serialize)]
pub struct AgreeReport {
    pub model: String,
    pub device: String,
    pub steps: usize,
    pub cpu_ids: Vec<u32>,
    pub other_ids: Vec<u32>,
    /// First step where the greedy ids differ.
    pub first_divergence: Option<usize>,
    /// Largest |logit difference| over every step, both fed the CPU's tokens.
    pub max_abs_logit_diff: f32,
    pub tolerance: f32,
    /// Every logit within the tolerance (a NaN never is).
    pub agree: bool,
}

fn argmax(logits: &candle_core::Tensor) -> candle_core::Result<u32> {
    logits.squeeze(0)?.argmax(0)?.to_scalar::<u32>()
}

fn logits_vec(logits: &candle_core::Tensor) -> candle_core::Result<Vec<f32>> {
    logits
        .flatten_all()?
        .to_device(&candle_core::Device::Cpu)?
        .to_vec1::<f32>()
}

pub fn run(args: &AgreeArgs) -> anyhow::Result<AgreeReport> {
    anyhow::ensure!(args.steps > 0, "`--steps` must be at least 1");
    let other_device = model::device(args.device)?;
    let cpu_device = candle_core::Device::Cpu;
    let mut cpu_model = synthetic::build(args.synthetic, &cpu_device, args.seed)?.model;
    let mut other_model = synthetic::build(args.synthetic, &other_device, args.seed)?.model;
    let prompt: Vec<u32> = b"The quick brown fox"
        .iter()
        .map(|&b| u32::from(b))
        .collect();

    // Greedy on each device alone: the ids a user would get.
    let room = prompt.len() + args.steps;
    let mut cpu = Solo::new(&mut cpu_model, room, &cpu_device)?;
    let mut other = Solo::new(&mut other_model, room, &other_device)?;
    let greedy = |m: &mut Solo| -> candle_core::Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(args.steps);
        let mut logits = m.prefill(&prompt)?;
        for i in 0..args.steps {
            let next = argmax(&logits)?;
            ids.push(next);
            if i + 1 < args.steps {
                logits = m.step(next, prompt.len() + i)?;
            }
        }
        Ok(ids)
    };
    let cpu_ids = greedy(&mut cpu)?;
    let other_ids = greedy(&mut other)?;

    // Logits on the same path (the CPU's tokens), step by step.
    let mut max_diff = 0f32;
    let mut a = cpu.prefill(&prompt)?;
    let mut b = other.prefill(&prompt)?;
    for (i, &token) in cpu_ids.iter().enumerate() {
        let (va, vb) = (logits_vec(&a)?, logits_vec(&b)?);
        for (x, y) in va.iter().zip(&vb) {
            let d = (x - y).abs();
            // A NaN on either side is the worst disagreement, not none.
            max_diff = if d.is_nan() {
                f32::INFINITY
            } else {
                max_diff.max(d)
            };
        }
        if i + 1 < cpu_ids.len() {
            a = cpu.step(token, prompt.len() + i)?;
            b = other.step(token, prompt.len() + i)?;
        }
    }
    let first_divergence = cpu_ids.iter().zip(&other_ids).position(|(x, y)| x != y);
    Ok(AgreeReport {
        model: args.synthetic.to_string(),
        device: format!("{:?}", args.device).to_lowercase(),
        steps: args.steps,
        agree: max_diff <= args.tolerance,
        cpu_ids,
        other_ids,
        first_divergence,
        max_abs_logit_diff: max_diff,
        tolerance: args.tolerance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mechanics, on the CPU against itself: identical ids, zero
    /// difference. On a GPU machine, `--device cuda` is the real check.
    #[test]
    fn the_cpu_agrees_with_itself() {
        let args = AgreeArgs {
            synthetic: "llama-135m:f32".parse().unwrap(),
            seed: 5,
            device: DeviceKind::Cpu,
            steps: 6,
            tolerance: 0.0,
        };
        let report = run(&args).unwrap();
        assert_eq!(report.cpu_ids, report.other_ids);
        assert_eq!(report.cpu_ids.len(), 6);
        assert_eq!(report.max_abs_logit_diff, 0.0);
        assert!(report.agree && report.first_divergence.is_none());
    }
}
