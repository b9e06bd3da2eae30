//! Greedy decoding of the shipped SmolLM2 Q4_1 file against llama.cpp on the
//! same file (fixture from scripts/reference/llama_cpp_reference.py).
//!
//! "Paris" is no oracle: this file answers "L'Étoile, ..." to "What is the
//! capital of France?" in llama.cpp too. What must hold: the first-step
//! logits agree within a stated tolerance, and greedy ids agree token for
//! token until a step where llama.cpp's own top two are a near-tie.

mod llama_cpp;

use candle_core::Device;
use mig_worker::model::solo::Solo;
use mig_worker::model::WeightFormat;
use mig_worker::model::{self, Backend, ModelSource};
use mig_worker::sampling::{Sampler, SamplingParams};

/// Largest difference allowed between our first-step logits and llama.cpp's,
/// over llama.cpp's top 8 tokens (logits here are about 24).
///
/// The noise floor is what two equally exact computations give: the
/// worker's portable and AVX2 attention kernels agree to 1e-5, yet their
/// first-step logits differ by up to 0.53 on the four fixture prompts.
/// Activations are quantized to int8 blocks before every product (here and
/// in llama.cpp), so a change in the last bits flips roundings, and 30
/// layers carry them on. Measured against llama.cpp: `native` at most 0.67
/// (int8 KV store; 0.58 with f16), `q8-0` at most 0.85; `q8-0` re-quantizes
/// the weights to Q8_0, which adds its own rounding. A greedy parting is
/// accepted only at a step where llama.cpp's own top-2 margin is below this
/// tolerance.
fn logit_tolerance(weights: WeightFormat) -> f32 {
    match weights {
        WeightFormat::Native => 0.8,
        WeightFormat::Q8_0 => 1.0,
    }
}

fn check(weights: WeightFormat) {
    let loaded = model::load(
        &ModelSource::File(mig_testkit::smollm2()),
        &Device::Cpu,
        weights,
    )
    .unwrap();
    // `Info` reports what computes: the file's Q4_1, or the Q8_0 copy.
    let engine = match weights {
        WeightFormat::Native => "llama gguf q4_1",
        WeightFormat::Q8_0 => "llama gguf q8_0",
    };
    assert_eq!(loaded.engine, engine);
    let Backend::Generate(mut generator) = loaded.backend else {
        panic!("generation model expected")
    };
    let mut model = Solo::new(generator.as_mut(), 512, &Device::Cpu).unwrap();
    let tolerance = logit_tolerance(weights);
    let mut compared_total = 0;
    for g in llama_cpp::reference()["generations"].as_array().unwrap() {
        let prompt = llama_cpp::ids(&g["prompt_ids"]);
        let reference = llama_cpp::ids(&g["greedy_ids"]);
        let margins: Vec<f32> = g["top2_margins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_f64().unwrap() as f32)
            .collect();

        let logits = model.prefill(&prompt).unwrap();
        let first: Vec<f32> = logits.squeeze(0).unwrap().to_vec1().unwrap();
        let mut worst = 0f32;
        for top in g["first_step_top"].as_array().unwrap() {
            let id = top["id"].as_u64().unwrap() as usize;
            let theirs = top["logit"].as_f64().unwrap() as f32;
            worst = worst.max((first[id] - theirs).abs());
        }
        assert!(
            worst <= tolerance,
            "{weights:?}: first-step logits differ from llama.cpp by {worst:.3} > {tolerance}"
        );

        let mut sampler = Sampler::new(&SamplingParams::greedy());
        let mut history = prompt.clone();
        let mut next = sampler.sample(&logits, &history).unwrap();
        let mut compared = 0;
        for (step, &expected) in reference.iter().enumerate() {
            if next != expected {
                // A parting is allowed only where llama.cpp itself hesitated.
                assert!(
                    margins[step] < tolerance,
                    "{weights:?}: step {step} gives {next}, llama.cpp {expected} with a \
                     top-2 margin of {:.3} (no near-tie); prompt {:?}",
                    margins[step],
                    g["messages"]
                );
                break;
            }
            compared += 1;
            if step + 1 == reference.len() {
                break;
            }
            history.push(next);
            let logits = model.step(next, history.len() - 1).unwrap();
            next = sampler.sample(&logits, &history).unwrap();
        }
        eprintln!(
            "{weights:?}: {compared}/{} greedy ids equal llama.cpp's, first-step max |dlogit| {worst:.3}",
            reference.len()
        );
        compared_total += compared;
    }
    // Most steps must have been compared before a parting at a near-tie
    // (out of 87): 61 for the Q4_1 file, fewer for the lossier Q8_0 copy.
    assert!(
        compared_total >= 32,
        "{weights:?}: only {compared_total} ids compared"
    );
}

#[test]
fn native_q4_1_matches_llama_cpp() {
    check(WeightFormat::Native);
}

#[test]
fn requantized_q8_0_matches_llama_cpp() {
    check(WeightFormat::Q8_0);
}
