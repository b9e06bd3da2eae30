//! Model files to running backends, and everything a model needs to turn a
//! request into token ids: the lowest layer of the worker (it imports
//! nothing of the engine, the service or the command line).
//!
//! The backends are synchronous and know nothing of tonic or tokio: the
//! engine thread drives them.

pub mod bert;
pub mod chat_template;
pub mod fault;
pub mod gguf;
pub mod gguf_tokenizer;
pub mod hf_llama;
pub mod identity;
pub mod kv_store;
pub mod llama;
pub mod llama_host;
pub mod load_options;
pub mod prompt;
pub mod solo;
pub mod synthetic;

use std::sync::Arc;

use candle_core::{Device, Tensor};

use crate::error::StartupError;
use bert::EmbedTokenizer;
use kv_store::{KvShape, KvStore};
pub use load_options::{device, DeviceKind, WeightFormat};
use prompt::TextPrompter;

/// Identifies a sequence in the scheduler, the model and the KV store.
pub type SeqId = u64;

/// One sequence's part of a forward step.
#[derive(Debug, Clone, Copy)]
pub struct BatchSeq<'a> {
    pub id: SeqId,
    /// Position of `tokens[0]`: the tokens before it are in the KV store.
    pub start: usize,
    pub tokens: &'a [u32],
    /// The sequence's page table in the KV store.
    pub pages: &'a [u32],
    /// Whether the step returns logits after the last of `tokens`.
    pub logits: bool,
}

/// An autoregressive text model that runs several sequences per step, each
/// with its keys and values in a shared [`KvStore`].
pub trait Generator: Send {
    /// What it keeps per token in the KV store.
    fn kv_shape(&self) -> KvShape;
    /// Feeds each sequence's tokens at its positions, writing their keys and
    /// values into `kv`, and returns the next-token logits of the sequences
    /// that ask for them, in batch order: `(asking sequences, vocab)`, f32.
    fn forward(&mut self, batch: &[BatchSeq], kv: &mut KvStore) -> candle_core::Result<Tensor>;
    /// The sequence left the batch: forget anything kept for it.
    fn release(&mut self, _id: SeqId) {}
}

/// A sentence-embedding model.
pub trait Embedder: Send {
    /// One L2-normalised vector per input (token ids, unpadded).
    fn embed(&self, batch: &[Vec<u32>]) -> candle_core::Result<Vec<Vec<f32>>>;
}

/// What the model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    Generate,
    Embed,
}

/// The parts of a loaded model that the request handlers use (tokenizers,
/// limits), shared with the async side.
#[derive(Debug, Clone)]
pub enum Codec {
    Text(Arc<TextCodec>),
    Embed(Arc<EmbedTokenizer>),
}

/// Tokenizer and limits of a text-generation model.
#[derive(Debug)]
pub struct TextCodec {
    pub prompter: TextPrompter,
    /// Ids that end a generation (end-of-sequence).
    pub stop_ids: Vec<u32>,
    /// Prompt plus generated tokens.
    pub context_length: usize,
}

/// What a worker loads: a file, the identity model or a synthetic one (the
/// type the gateway's supervisor starts workers with).
pub use mig_serve::ModelSource;

/// A model ready to run: the engine thread keeps the backend, the request
/// handlers get the codec.
pub struct Loaded {
    pub backend: Backend,
    pub codec: Codec,
    /// What computes the answers (`llama gguf q8_0`), reported in `Info`.
    pub engine: String,
}

/// The half of a loaded model that stays on the engine thread.
pub enum Backend {
    Generate(Box<dyn Generator>),
    Embed(Box<dyn Embedder>),
}

impl Codec {
    pub fn kind(&self) -> ModelKind {
        match self {
            Codec::Text(_) => ModelKind::Generate,
            Codec::Embed(_) => ModelKind::Embed,
        }
    }

    /// Tokens of context (generation) or per input (embedding).
    pub fn context_length(&self) -> usize {
        match self {
            Codec::Text(t) => t.context_length,
            Codec::Embed(e) => e.max_tokens(),
        }
    }
}

/// Loads what `source` names: a `.gguf` file as a text generator, a folder
/// with `config.json` + `model.safetensors` + `tokenizer.json` as a llama
/// generator (`"model_type": "llama"`) or a BERT embedder, the identity
/// model, or a synthetic one.
pub fn load(
    source: &ModelSource,
    device: &Device,
    weights: WeightFormat,
) -> Result<Loaded, StartupError> {
    let path = match source {
        ModelSource::Identity => {
            let (model, codec) = identity::load();
            return Ok(Loaded {
                backend: Backend::Generate(Box::new(model)),
                codec: Codec::Text(Arc::new(codec)),
                engine: identity::ENGINE.to_string(),
            });
        }
        ModelSource::Synthetic { spec, seed } => {
            let model = synthetic::build(*spec, device, *seed).map_err(|e| {
                StartupError::Engine(format!("building the synthetic model {spec}: {e}"))
            })?;
            return Ok(Loaded {
                backend: Backend::Generate(Box::new(model.model)),
                codec: Codec::Text(Arc::new(synthetic::codec(*spec))),
                engine: synthetic::engine(*spec, *seed),
            });
        }
        ModelSource::File(path) => path,
    };
    if path.is_dir() && hf_llama::is_llama(path) {
        let (model, codec, engine) = hf_llama::load(path, device)?;
        Ok(Loaded {
            backend: Backend::Generate(Box::new(model)),
            codec: Codec::Text(Arc::new(codec)),
            engine,
        })
    } else if path.is_dir() {
        let (model, tokenizer) = bert::load(path, device)?;
        Ok(Loaded {
            backend: Backend::Embed(Box::new(model)),
            codec: Codec::Embed(Arc::new(tokenizer)),
            engine: bert::ENGINE.to_string(),
        })
    } else if path.extension().is_some_and(|e| e == "gguf") {
        let (model, codec, weights_dtype) = gguf::load(path, device, weights)?;
        Ok(Loaded {
            engine: format!("llama gguf {weights_dtype}"),
            backend: Backend::Generate(model),
            codec: Codec::Text(Arc::new(codec)),
        })
    } else {
        Err(StartupError::model(
            path,
            "expected a `.gguf` file or a folder with `config.json`, `model.safetensors` and `tokenizer.json`",
        ))
    }
}
