//! Llama checkpoints in the Hugging Face layout: a folder with
//! `config.json` (`"model_type": "llama"`), `model.safetensors` (bf16, f16 or
//! f32), `tokenizer.json` and, when it has one, the chat template of
//! `tokenizer_config.json`. They run on the tensor-op forward pass
//! ([`super::llama`]): in the file's own type on CUDA, in f32 on the CPU
//! (candle's CPU matrix products are slow in bf16/f16).

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use candle_transformers::models::llama::{LlamaConfig as HfConfig, LlamaEosToks};
use serde_json::Value;
use tokenizers::Tokenizer;

use super::chat_template::ChatTemplate;
use super::llama::{self, Llama, LlamaConfig};
use super::prompt::TextPrompter;
use super::TextCodec;
use crate::error::StartupError;

/// Whether `dir` holds a llama checkpoint (its `config.json` says so).
pub fn is_llama(dir: &Path) -> bool {
    read_json(&dir.join("config.json"))
        .ok()
        .and_then(|c| c.get("model_type")?.as_str().map(|t| t == "llama"))
        .unwrap_or(false)
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

/// The model, its codec and what `Info` reports as the engine.
pub fn load(dir: &Path, device: &Device) -> Result<(Llama, TextCodec, String), StartupError> {
    let bad = |reason: String| StartupError::model(dir, reason);
    let raw = read_json(&dir.join("config.json")).map_err(|e| bad(format!("config.json: {e}")))?;
    let hf: HfConfig =
        serde_json::from_value(raw.clone()).map_err(|e| bad(format!("config.json: {e}")))?;
    if raw.get("rope_scaling").is_some_and(|v| !v.is_null()) {
        return Err(bad(
            "config.json: `rope_scaling` (Llama 3.x) is not supported yet".into(),
        ));
    }
    let file_dtype = match raw.get("torch_dtype").and_then(Value::as_str) {
        Some("bfloat16") => DType::BF16,
        Some("float16") => DType::F16,
        Some("float32") | None => DType::F32,
        Some(other) => {
            return Err(bad(format!(
                "config.json: `torch_dtype` {other} is not supported (bfloat16, float16, float32)"
            )))
        }
    };
    let dtype = if device.is_cpu() {
        DType::F32
    } else {
        file_dtype
    };
    let weights = dir.join("model.safetensors");
    if !weights.is_file() {
        return Err(bad(
            "expected one `model.safetensors` (sharded checkpoints are not supported)".into(),
        ));
    }
    let config = LlamaConfig {
        hidden: hf.hidden_size,
        heads: hf.num_attention_heads,
        kv_heads: hf.num_key_value_heads(),
        layers: hf.num_hidden_layers,
        vocab: hf.vocab_size,
        rms_eps: hf.rms_norm_eps,
        rope_theta: hf.rope_theta,
        rope_interleaved: false,
        context: hf.max_position_embeddings,
        dtype,
    };
    // SAFETY: the file is mapped read-only and not modified while loaded.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], dtype, device) }
        .map_err(|e| bad(format!("model.safetensors: {e}")))?;
    let model = llama::from_hf_names(
        config,
        hf.intermediate_size,
        hf.tie_word_embeddings.unwrap_or(false),
        device,
        |shape, name| vb.get(shape, name),
    )
    .map_err(|e| bad(format!("model.safetensors: {e}")))?;

    let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
        .map_err(|e| bad(format!("tokenizer.json: {e}")))?;
    let template = chat_template(dir).map_err(bad)?;
    let stop_ids = match hf.eos_token_id {
        Some(LlamaEosToks::Single(id)) => vec![id],
        Some(LlamaEosToks::Multiple(ids)) => ids,
        None => Vec::new(),
    };
    let codec = TextCodec {
        prompter: TextPrompter::new(tokenizer, template),
        stop_ids,
        context_length: hf.max_position_embeddings,
    };
    let engine = format!("llama safetensors {}", dtype_name(file_dtype));
    Ok((model, codec, engine))
}

fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        _ => "f32",
    }
}

/// The `chat_template` of `tokenizer_config.json`, with its BOS and EOS
/// token texts; none when the file or the field is absent.
fn chat_template(dir: &Path) -> Result<Option<ChatTemplate>, String> {
    let path = dir.join("tokenizer_config.json");
    if !path.is_file() {
        return Ok(None);
    }
    let config = read_json(&path).map_err(|e| format!("tokenizer_config.json: {e}"))?;
    let Some(source) = config.get("chat_template").and_then(Value::as_str) else {
        return Ok(None);
    };
    // A special token is written as a string or as {"content": ...}.
    let token = |key: &str| {
        let v = config.get(key)?;
        v.as_str()
            .or_else(|| v.get("content")?.as_str())
            .map(str::to_string)
    };
    let (bos, eos) = (
        token("bos_token").unwrap_or_default(),
        token("eos_token").unwrap_or_default(),
    );
    ChatTemplate::new(source, &bos, &eos)
        .map(Some)
        .map_err(|e| format!("tokenizer_config.json: `chat_template`: {e}"))
}
