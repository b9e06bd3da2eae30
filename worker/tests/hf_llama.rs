//! A Hugging Face llama checkpoint (config.json, model.safetensors,
//! tokenizer.json) that the test writes itself, tiny and random: the worker
//! loads it as a generator and its logits equal candle-transformers' own
//! llama on the same files, for the prompt and for decode steps.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::llama as reference;
use mig_worker::model::identity::byte_tokenizer;
use mig_worker::model::solo::Solo;
use mig_worker::model::WeightFormat;
use mig_worker::model::{self, Backend, Codec, ModelSource};

const HIDDEN: usize = 64;
const INTERMEDIATE: usize = 96;
const LAYERS: usize = 2;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const VOCAB: usize = 256;

/// Writes the checkpoint into a fresh folder under the target directory.
fn write_checkpoint(name: &str, extra: serde_json::Value) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = serde_json::json!({
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "vocab_size": VOCAB,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 128,
        "tie_word_embeddings": false,
        "torch_dtype": "float32",
        "eos_token_id": 2
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();

    let kv = KV_HEADS * HIDDEN / HEADS;
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![VOCAB, HIDDEN]),
        ("model.norm.weight".into(), vec![HIDDEN]),
        ("lm_head.weight".into(), vec![VOCAB, HIDDEN]),
    ];
    for l in 0..LAYERS {
        let p = |s: &str| format!("model.layers.{l}.{s}.weight");
        shapes.extend([
            (p("self_attn.q_proj"), vec![HIDDEN, HIDDEN]),
            (p("self_attn.k_proj"), vec![kv, HIDDEN]),
            (p("self_attn.v_proj"), vec![kv, HIDDEN]),
            (p("self_attn.o_proj"), vec![HIDDEN, HIDDEN]),
            (p("mlp.gate_proj"), vec![INTERMEDIATE, HIDDEN]),
            (p("mlp.up_proj"), vec![INTERMEDIATE, HIDDEN]),
            (p("mlp.down_proj"), vec![HIDDEN, INTERMEDIATE]),
            (p("input_layernorm"), vec![HIDDEN]),
            (p("post_attention_layernorm"), vec![HIDDEN]),
        ]);
    }
    let tensors: HashMap<String, Tensor> = shapes
        .into_iter()
        .map(|(name, shape)| {
            let t = if shape.len() == 1 {
                (Tensor::randn(0f32, 0.1, shape.as_slice(), &Device::Cpu).unwrap() + 1.0).unwrap()
            } else {
                Tensor::randn(0f32, 0.2, shape.as_slice(), &Device::Cpu).unwrap()
            };
            (name, t)
        })
        .collect();
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    byte_tokenizer()
        .save(dir.join("tokenizer.json"), false)
        .unwrap();
    dir
}

/// Largest |difference| of two logit rows (printed, so a drift shows).
fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn a_safetensors_llama_matches_candle_transformers_llama() {
    let dir = write_checkpoint("hf-llama", serde_json::json!({}));
    let loaded = model::load(
        &ModelSource::File(dir.clone()),
        &Device::Cpu,
        WeightFormat::Native,
    )
    .expect("the checkpoint loads");
    assert_eq!(loaded.engine, "llama safetensors f32");
    let (Backend::Generate(mut ours), Codec::Text(codec)) = (loaded.backend, loaded.codec) else {
        panic!("a generation model expected");
    };
    assert_eq!(
        (codec.context_length, codec.stop_ids.as_slice()),
        (128, &[2u32][..])
    );

    let raw = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let config: reference::LlamaConfig = serde_json::from_str(&raw).unwrap();
    let config = config.into_config(false);
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            DType::F32,
            &Device::Cpu,
        )
    }
    .unwrap();
    let theirs = reference::Llama::load(vb, &config).unwrap();
    let mut cache = reference::Cache::new(true, DType::F32, &config, &Device::Cpu).unwrap();

    let prompt: Vec<u32> = b"The quick brown fox"
        .iter()
        .map(|&b| u32::from(b))
        .collect();
    let mut solo = Solo::new(ours.as_mut(), 64, &Device::Cpu).unwrap();
    let mine = solo.prefill(&prompt).unwrap();
    let input = Tensor::new(prompt.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let reference = theirs.forward(&input, 0, &mut cache).unwrap();
    // The worker keeps keys and values in f16 on the CPU, the reference in
    // f32: differences of a few 1e-3 on logits of a few units.
    let tolerance = 1e-2;
    let d = max_diff(&mine, &reference);
    assert!(d < tolerance, "prefill: {d}");
    // Decode steps feed the same tokens to both.
    for (i, token) in [7u32, 200, 31].into_iter().enumerate() {
        let pos = prompt.len() + i;
        let mine = solo.step(token, pos).unwrap();
        let input = Tensor::new(&[token], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let reference = theirs.forward(&input, pos, &mut cache).unwrap();
        let d = max_diff(&mine, &reference);
        assert!(d < tolerance, "step {i}: {d}");
    }
}

#[test]
fn unsupported_checkpoints_are_refused_naming_the_field() {
    let dir = write_checkpoint(
        "hf-llama-scaled",
        serde_json::json!({"rope_scaling": {"rope_type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64}}),
    );
    let err = model::load(&ModelSource::File(dir), &Device::Cpu, WeightFormat::Native)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("`rope_scaling`"), "{err}");

    let dir = write_checkpoint("hf-llama-int8", serde_json::json!({"torch_dtype": "int8"}));
    let err = model::load(&ModelSource::File(dir), &Device::Cpu, WeightFormat::Native)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("`torch_dtype` int8"), "{err}");
}
