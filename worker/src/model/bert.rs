//! Sentence embeddings with candle-transformers' BERT (all-MiniLM-L6-v2):
//! mean pooling over the attention mask, then L2 normalisation.

use std::path::Path;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::Embedder;
use crate::error::{InferenceError, StartupError};

pub struct BertEmbedder {
    model: BertModel,
    device: Device,
    pad_id: u32,
}

/// The tokenizer of an embedding model and its per-input token limit.
#[derive(Debug)]
pub struct EmbedTokenizer {
    /// Rejects nothing: lengths are checked against `max_tokens` afterwards.
    full: Tokenizer,
    /// Cuts inputs to `max_tokens`, keeping `[CLS]` and `[SEP]`.
    truncating: Tokenizer,
    max_tokens: usize,
}

/// Inputs as token ids, ready for [`Embedder::embed`].
#[derive(Debug)]
pub struct EncodedInputs {
    pub ids: Vec<Vec<u32>>,
    pub truncated: u32,
}

impl EmbedTokenizer {
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Tokenizes each input; an input over the limit is an error naming it,
    /// unless `truncate` is set.
    pub fn encode(
        &self,
        inputs: &[String],
        truncate: bool,
    ) -> Result<EncodedInputs, InferenceError> {
        let mut ids = Vec::with_capacity(inputs.len());
        let mut truncated = 0;
        for (i, input) in inputs.iter().enumerate() {
            let enc = self
                .full
                .encode_fast(input.as_str(), true)
                .map_err(|e| InferenceError::model(format!("tokenizer: {e}")))?;
            if enc.len() <= self.max_tokens {
                ids.push(enc.get_ids().to_vec());
                continue;
            }
            if !truncate {
                return Err(InferenceError::Invalid(format!(
                    "`inputs[{i}]` has {} tokens, limit {} (set `truncate` to cut it)",
                    enc.len(),
                    self.max_tokens
                )));
            }
            let enc = self
                .truncating
                .encode_fast(input.as_str(), true)
                .map_err(|e| InferenceError::model(format!("tokenizer: {e}")))?;
            truncated += 1;
            ids.push(enc.get_ids().to_vec());
        }
        Ok(EncodedInputs { ids, truncated })
    }
}

impl Embedder for BertEmbedder {
    fn embed(&self, batch: &[Vec<u32>]) -> candle_core::Result<Vec<Vec<f32>>> {
        // Pad to the longest input of this batch, not to a fixed length.
        let len = batch.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(batch.len() * len);
        let mut mask = Vec::with_capacity(batch.len() * len);
        for input in batch {
            ids.extend(input.iter().copied());
            ids.extend(std::iter::repeat_n(self.pad_id, len - input.len()));
            mask.extend(std::iter::repeat_n(1u32, input.len()));
            mask.extend(std::iter::repeat_n(0u32, len - input.len()));
        }
        let shape = (batch.len(), len);
        let ids = Tensor::from_vec(ids, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &token_types, Some(&mask))?;
        // Mean over the real tokens only.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
        mean.broadcast_div(&norm)?.to_vec2::<f32>()
    }
}

/// What computes a BERT embedder's answers, as `Info` reports it: the
/// weights are loaded as f32 whatever the file holds.
pub const ENGINE: &str = "bert safetensors f32";

/// Loads `config.json`, `model.safetensors` and `tokenizer.json` from `dir`.
pub fn load(dir: &Path, device: &Device) -> Result<(BertEmbedder, EmbedTokenizer), StartupError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|source| StartupError::Read { path, source })
    };
    let config: Config = serde_json::from_slice(&read("config.json")?)
        .map_err(|e| StartupError::model(dir.join("config.json"), e))?;
    let tokenizer_path = dir.join("tokenizer.json");
    let mut full = Tokenizer::from_bytes(read("tokenizer.json")?)
        .map_err(|e| StartupError::model(&tokenizer_path, e))?;
    // The shipped tokenizer.json pads and truncates everything to 128 tokens:
    // pad per batch instead, and enforce the model's own position limit.
    full.with_padding(None);
    full.with_truncation(None)
        .map_err(|e| StartupError::model(&tokenizer_path, e))?;
    let max_tokens = config.max_position_embeddings;
    let mut truncating = full.clone();
    truncating
        .with_truncation(Some(TruncationParams {
            max_length: max_tokens,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        }))
        .map_err(|e| StartupError::model(&tokenizer_path, e))?;

    let weights = dir.join("model.safetensors");
    // SAFETY: the file is memory-mapped read-only and not modified while the
    // worker runs (the models folder is written only by `make models`).
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device) }
        .map_err(|e| StartupError::model(&weights, e))?;
    let model = BertModel::load(vb, &config).map_err(|e| StartupError::model(&weights, e))?;
    Ok((
        BertEmbedder {
            model,
            device: device.clone(),
            pad_id: config.pad_token_id as u32,
        },
        EmbedTokenizer {
            full,
            truncating,
            max_tokens,
        },
    ))
}
