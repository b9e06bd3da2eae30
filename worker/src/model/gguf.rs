//! Llama-architecture GGUF files (SmolLM2): the weights for the project's own
//! forward pass ([`super::llama`]), the tokenizer and the chat template, all
//! from the one file.

use std::fs::File;
use std::io::{BufReader, Cursor};
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Content};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device};

use super::chat_template::ChatTemplate;
use mig_kernels::attention::Q8_BLOCK;
use mig_kernels::qmatmul::QMatrix;

use super::kv_store::KvFormat;
use super::llama::{Block, Linear, Llama, LlamaConfig};
use super::llama_host::{self, HostBlock, HostLlama};
use super::prompt::TextPrompter;
use super::WeightFormat;
use super::{gguf_tokenizer, Generator, TextCodec};
use crate::error::StartupError;

/// Loads the model, its tokenizer and its chat template.
pub fn load(
    path: &Path,
    device: &Device,
    weights: WeightFormat,
) -> Result<(Box<dyn Generator>, TextCodec, String), StartupError> {
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
    let (content, mut reader): (Content, Box<dyn ReadSeek>) = match weights {
        WeightFormat::Native => (content, Box::new(file)),
        WeightFormat::Q8_0 => {
            let requantized = requantize_q4_to_q8(content, &mut file)
                .map_err(|e| StartupError::model(path, format!("re-quantizing to Q8_0: {e}")))?;
            let mut cursor = Cursor::new(requantized);
            let content = Content::read(&mut cursor).map_err(|e| StartupError::model(path, e))?;
            (content, Box::new(cursor))
        }
    };
    let weights_dtype = main_dtype(&content);
    let config = config(&content).map_err(|e| StartupError::model(path, e))?;
    let context_length = config.context;
    let built = if device.is_cpu() && host_supported(&content) {
        // The CPU kernels where they take every matrix; candle's tensor ops
        // elsewhere (CUDA, or weight types the kernels lack).
        build_host(config, &content, &mut reader).map(|m| Box::new(m) as Box<dyn Generator>)
    } else {
        build(config, &content, &mut reader, device).map(|m| Box::new(m) as Box<dyn Generator>)
    };
    let model = built.map_err(|e| StartupError::model(path, e))?;
    let codec = TextCodec {
        prompter: TextPrompter::new(vocab.tokenizer, template),
        stop_ids: vocab.stop_ids,
        context_length,
    };
    Ok((model, codec, weights_dtype))
}

/// Every matrix of the file in a type the CPU kernels take.
fn host_supported(content: &Content) -> bool {
    content
        .tensor_infos
        .iter()
        .filter(|(name, _)| !name.ends_with("norm.weight"))
        .all(|(_, info)| llama_host::supported(info.ggml_dtype))
}

/// The model for the CPU kernels: Q, K, V and gate, up stacked into one
/// matrix each.
fn build_host(
    config: LlamaConfig,
    content: &Content,
    reader: &mut Box<dyn ReadSeek>,
) -> candle_core::Result<HostLlama> {
    let cpu = Device::Cpu;
    let mut tensor = |name: &str| content.tensor(reader, name, &cpu);
    let vector = |t: QTensor| t.dequantize(&cpu)?.to_vec1::<f32>();
    let embed_q = tensor("token_embd.weight")?;
    let embed = QMatrix::from_qtensor(&embed_q)?;
    let head = match tensor("output.weight") {
        Ok(t) => QMatrix::from_qtensor(&t)?,
        Err(_) => QMatrix::from_qtensor(&embed_q)?,
    };
    let norm = vector(tensor("output_norm.weight")?)?;
    let mut blocks = Vec::with_capacity(config.layers);
    for i in 0..config.layers {
        let mut get = |part: &str| tensor(&format!("blk.{i}.{part}.weight"));
        let (q, k, v) = (get("attn_q")?, get("attn_k")?, get("attn_v")?);
        let (gate, up) = (get("ffn_gate")?, get("ffn_up")?);
        blocks.push(HostBlock {
            attn_norm: vector(get("attn_norm")?)?,
            qkv: QMatrix::from_qtensor(&llama_host::stack_rows(&[&q, &k, &v])?)?,
            o: QMatrix::from_qtensor(&get("attn_output")?)?,
            ffn_norm: vector(get("ffn_norm")?)?,
            gate_up: QMatrix::from_qtensor(&llama_host::stack_rows(&[&gate, &up])?)?,
            down: QMatrix::from_qtensor(&get("ffn_down")?)?,
        });
    }
    // Int8 keys and values where the rows cut into its blocks: decode of a
    // long context is bound by reading them (docs/benchmarks.md).
    let kv_format = if (config.kv_heads * config.head_dim()).is_multiple_of(Q8_BLOCK) {
        KvFormat::Q8
    } else {
        KvFormat::Dense(DType::F16)
    };
    Ok(HostLlama::new(config, embed, blocks, norm, head, kv_format))
}

trait ReadSeek: std::io::Read + std::io::Seek {}
impl<T: std::io::Read + std::io::Seek> ReadSeek for T {}

/// The shape of a llama GGUF file, from its metadata.
fn config(content: &Content) -> candle_core::Result<LlamaConfig> {
    let meta_u32 = |key: &str| -> candle_core::Result<usize> {
        match content.metadata.get(key) {
            Some(v) => Ok(v.to_u32()? as usize),
            None => candle_core::bail!("metadata `{key}` is missing"),
        }
    };
    let meta_f32 = |key: &str, default: f32| {
        content
            .metadata
            .get(key)
            .and_then(|v| v.to_f32().ok())
            .unwrap_or(default)
    };
    let config = LlamaConfig {
        hidden: meta_u32("llama.embedding_length")?,
        heads: meta_u32("llama.attention.head_count")?,
        kv_heads: meta_u32("llama.attention.head_count_kv")?,
        layers: meta_u32("llama.block_count")?,
        vocab: content
            .tensor_infos
            .get("token_embd.weight")
            .map(|t| t.shape.dims()[0])
            .unwrap_or_default(),
        rms_eps: f64::from(meta_f32("llama.attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta: meta_f32("llama.rope.freq_base", 10_000.0),
        rope_interleaved: true,
        context: meta_u32("llama.context_length")?,
        dtype: DType::F32,
    };
    Ok(config)
}

/// The model for candle's tensor ops: weights from the file's tensors
/// (`blk.N.attn_q.weight`, ...), the output head tied to the token
/// embeddings when the file has no `output.weight`.
fn build(
    config: LlamaConfig,
    content: &Content,
    reader: &mut Box<dyn ReadSeek>,
    device: &Device,
) -> candle_core::Result<Llama> {
    let mut tensor = |name: &str| content.tensor(reader, name, device);
    let linear =
        |t: QTensor| Ok::<_, candle_core::Error>(Linear::Quantized(QMatMul::from_qtensor(t)?));
    let embed_q = tensor("token_embd.weight")?;
    let embed = embed_q.dequantize(device)?;
    let norm = tensor("output_norm.weight")?.dequantize(device)?;
    let head = match tensor("output.weight") {
        Ok(t) => t,
        Err(_) => embed_q,
    };
    let mut blocks = Vec::with_capacity(config.layers);
    for i in 0..config.layers {
        let mut get = |part: &str| tensor(&format!("blk.{i}.{part}.weight"));
        blocks.push(Block {
            attn_norm: get("attn_norm")?.dequantize(device)?,
            q: linear(get("attn_q")?)?,
            k: linear(get("attn_k")?)?,
            v: linear(get("attn_v")?)?,
            o: linear(get("attn_output")?)?,
            ffn_norm: get("ffn_norm")?.dequantize(device)?,
            gate: linear(get("ffn_gate")?)?,
            up: linear(get("ffn_up")?)?,
            down: linear(get("ffn_down")?)?,
        });
    }
    Llama::new(config, embed, blocks, norm, linear(head)?, device)
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
