//! Llama-architecture GGUF models (SmolLM2) on candle-transformers'
//! quantized llama, with the tokenizer and chat template from the same file.

use std::fs::File;
use std::io::{BufReader, Cursor};
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Content};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::{ModelWeights, MAX_SEQ_LEN};

use super::chat_template::ChatTemplate;
use super::{gguf_tokenizer, Generator, TextCodec};
use crate::config::WeightFormat;
use crate::error::StartupError;
use crate::prompt::TextPrompter;

pub struct QuantizedLlama {
    model: ModelWeights,
    device: Device,
    /// The type holding most weights as loaded (`q8_0` after re-quantizing).
    weights_dtype: String,
}

impl QuantizedLlama {
    /// The weights' main type as held in memory: `q4_1`, or `q8_0` with
    /// `--weights q8-0`.
    pub fn weights_dtype(&self) -> &str {
        &self.weights_dtype
    }
}

impl Generator for QuantizedLlama {
    fn prefill(&mut self, prompt: &[u32]) -> candle_core::Result<Tensor> {
        let input = Tensor::new(prompt, &self.device)?.unsqueeze(0)?;
        // Position 0 makes the model drop the previous sequence's KV cache.
        self.model.forward(&input, 0)
    }

    fn step(&mut self, token: u32, pos: usize) -> candle_core::Result<Tensor> {
        let input = Tensor::new(&[token], &self.device)?.unsqueeze(0)?;
        self.model.forward(&input, pos)
    }
}

/// Loads the model, its tokenizer and its chat template.
pub fn load(
    path: &Path,
    device: &Device,
    weights: WeightFormat,
) -> Result<(QuantizedLlama, TextCodec), StartupError> {
    let read_err = |source| StartupError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = BufReader::new(File::open(path).map_err(read_err)?);
    let content = Content::read(&mut file).map_err(|e| StartupError::model(path, e))?;
    let arch = meta_str(&content, "general.architecture").unwrap_or_default();
    if arch != "llama" {
        return Err(StartupError::model(
            path,
            format!("architecture `{arch}` is not supported (only `llama`)"),
        ));
    }

    let vocab = gguf_tokenizer::from_gguf(&content).map_err(|e| StartupError::model(path, e))?;
    let template = match meta_str(&content, "tokenizer.chat_template") {
        Some(src) => Some(
            ChatTemplate::new(
                &src,
                vocab.bos.as_deref().unwrap_or(""),
                vocab.eos.as_deref().unwrap_or(""),
            )
            .map_err(|e| StartupError::model(path, e))?,
        ),
        None => None,
    };
    let trained_context = content
        .metadata
        .get("llama.context_length")
        .and_then(|v| v.to_u32().ok())
        .map(|v| v as usize)
        .unwrap_or(MAX_SEQ_LEN);
    // candle's quantized llama precomputes RoPE for MAX_SEQ_LEN positions.
    let context_length = trained_context.min(MAX_SEQ_LEN);

    let (model, weights_dtype) = match weights {
        WeightFormat::Native => {
            let dtype = main_dtype(&content);
            (ModelWeights::from_gguf(content, &mut file, device), dtype)
        }
        WeightFormat::Q8_0 => {
            let requantized = requantize_q4_to_q8(content, &mut file)
                .map_err(|e| StartupError::model(path, format!("re-quantizing to Q8_0: {e}")))?;
            let mut cursor = Cursor::new(requantized);
            let content = Content::read(&mut cursor).map_err(|e| StartupError::model(path, e))?;
            let dtype = main_dtype(&content);
            (ModelWeights::from_gguf(content, &mut cursor, device), dtype)
        }
    };
    let model = model.map_err(|e| StartupError::model(path, e))?;

    let codec = TextCodec {
        prompter: TextPrompter::new(vocab.tokenizer, template),
        stop_ids: vocab.stop_ids,
        context_length,
    };
    Ok((
        QuantizedLlama {
            model,
            device: device.clone(),
            weights_dtype,
        },
        codec,
    ))
}

/// The type that holds the most weight elements (`q4_1`, `q8_0`, `f16`):
/// a file's norms stay f32 and its embeddings may differ, but this one type
/// decides the speed of the matrix products.
fn main_dtype(content: &Content) -> String {
    let mut elements: Vec<(GgmlDType, usize)> = Vec::new();
    for info in content.tensor_infos.values() {
        let n = info.shape.elem_count();
        match elements.iter_mut().find(|(d, _)| *d == info.ggml_dtype) {
            Some((_, total)) => *total += n,
            None => elements.push((info.ggml_dtype, n)),
        }
    }
    elements
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(dtype, _)| format!("{dtype:?}").to_lowercase())
        .unwrap_or_else(|| "unknown".into())
}

fn meta_str(ct: &Content, key: &str) -> Option<String> {
    ct.metadata
        .get(key)
        .and_then(|v| v.to_string().ok())
        .cloned()
}

/// Rewrites the file in memory with its Q4_0/Q4_1 tensors as Q8_0. The Q8_0
/// copy holds the Q4 values exactly up to Q8_0's own rounding, and candle's
/// Q8_0 CPU kernel is SIMD where its Q4_1 one is scalar.
fn requantize_q4_to_q8(
    content: Content,
    file: &mut BufReader<File>,
) -> candle_core::Result<Vec<u8>> {
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(names.len());
    for name in names {
        let q = content.tensor(file, name, &Device::Cpu)?;
        let cols = q.shape().dims().last().copied().unwrap_or(0);
        let q = match q.dtype() {
            GgmlDType::Q4_0 | GgmlDType::Q4_1 if cols % GgmlDType::Q8_0.block_size() == 0 => {
                QTensor::quantize(&q.dequantize(&Device::Cpu)?, GgmlDType::Q8_0)?
            }
            _ => q,
        };
        tensors.push((name.clone(), q));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &metadata, &tensor_refs)?;
    Ok(out.into_inner())
}
