//! What a model file says about the memory a replica needs: weight bytes and
//! the shape of its KV cache (layers, KV heads, head size), read from the
//! file's own metadata (GGUF header, or a BERT folder's `config.json`).
//!
//! Only headers are read, never the tensors, so planning a fleet of large
//! models is instant.

use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType};
use mig_slices::need::{memory_need, MemoryNeed, ModelShape};

use crate::fleet::{ModelPlan, ModelSource};

/// The default reservation per sequence when a fleet entry gives no
/// `context`. The worker serves a model's whole context (8192 for SmolLM2),
/// but recent models declare 32k-128k, which would make every default plan
/// ask for the largest slices; a fleet that needs more says `context`.
const WORKER_MAX_CONTEXT: u64 = 4096;
/// Bytes per cached value. Placement by memory happens on GPU slices, where
/// the worker runs GGUF files on its tensor-op forward pass with an f32 KV
/// cache (on CPU slices it keeps int8, about a quarter, and cores decide).
const KV_DTYPE_BYTES: u32 = 4;

/// A model's shape plus the context it serves by default.
#[derive(Debug, Clone, PartialEq)]
pub struct FileShape {
    pub shape: ModelShape,
    pub default_context: u64,
}

/// Reads a `.gguf` file's header or a BERT folder's `config.json`.
pub fn read_shape(path: &Path, requantize_q4: bool) -> Result<FileShape, String> {
    if path.is_dir() {
        read_bert(path)
    } else {
        read_gguf(path, requantize_q4)
    }
}

fn read_gguf(path: &Path, requantize_q4: bool) -> Result<FileShape, String> {
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
    let content = gguf_file::Content::read(&mut file)
        .map_err(|e| format!("`{}` is not a readable GGUF file: {e}", path.display()))?;
    let arch = content
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok().cloned())
        .unwrap_or_else(|| "llama".to_string());
    let get = |key: &str| -> Result<u64, String> {
        let full = format!("{arch}.{key}");
        content
            .metadata
            .get(&full)
            .ok_or_else(|| format!("`{}` has no `{full}` metadata", path.display()))?
            .to_u64()
            .or_else(|_| content.metadata[&full].to_u32().map(u64::from))
            .map_err(|e| format!("`{}`: `{full}`: {e}", path.display()))
    };
    let layers = get("block_count")?;
    let heads = get("attention.head_count")?;
    let kv_heads = get("attention.head_count_kv").unwrap_or(heads);
    let embedding = get("embedding_length")?;
    let head_dim = get("attention.key_length").unwrap_or(embedding / heads.max(1));
    let context = get("context_length").unwrap_or(WORKER_MAX_CONTEXT);
    let weights_bytes = content
        .tensor_infos
        .values()
        .map(|t| {
            let elements = t.shape.elem_count() as u64;
            // `--weights q8-0` holds Q4 tensors as Q8_0.
            let dtype = match t.ggml_dtype {
                GgmlDType::Q4_0 | GgmlDType::Q4_1 if requantize_q4 => GgmlDType::Q8_0,
                other => other,
            };
            elements * dtype.type_size() as u64 / dtype.block_size() as u64
        })
        .sum();
    Ok(FileShape {
        shape: ModelShape {
            weights_bytes,
            layers: layers as u32,
            kv_heads: kv_heads as u32,
            head_dim: head_dim as u32,
            kv_dtype_bytes: KV_DTYPE_BYTES,
        },
        default_context: context.min(WORKER_MAX_CONTEXT),
    })
}

/// An encoder keeps no KV cache: its need is its weights (plus the planner's
/// fixed overhead for activations).
fn read_bert(dir: &Path) -> Result<FileShape, String> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| format!("cannot read `{}`: {e}", config_path.display()))?;
    let config: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("`{}` is not JSON: {e}", config_path.display()))?;
    let layers = config["num_hidden_layers"].as_u64().unwrap_or(0);
    let weights = dir.join("model.safetensors");
    let weights_bytes = std::fs::metadata(&weights)
        .map_err(|e| format!("cannot read `{}`: {e}", weights.display()))?
        .len();
    Ok(FileShape {
        shape: ModelShape {
            weights_bytes,
            layers: layers as u32,
            kv_heads: 0,
            head_dim: 0,
            kv_dtype_bytes: KV_DTYPE_BYTES,
        },
        default_context: config["max_position_embeddings"].as_u64().unwrap_or(512),
    })
}

/// The memory one replica of a fleet model needs: weights plus KV cache for
/// its `context` and `concurrency`, plus the fixed overhead.
///
/// The identity model holds no weights and no KV cache: its need is the
/// fixed overhead alone.
pub fn replica_need(plan: &ModelPlan) -> Result<MemoryNeed, String> {
    let path = match &plan.source {
        Some(ModelSource::File(path)) => path,
        Some(ModelSource::Identity) => return Ok(MemoryNeed::weights(0)),
        Some(ModelSource::Synthetic { spec, .. }) => {
            // The worker serves up to 4096 tokens of a synthetic model.
            let context = plan.context.unwrap_or(4096);
            return Ok(memory_need(&spec.shape(), context, plan.concurrency));
        }
        None => return Err(format!("`{}` has no `path` to read", plan.name)),
    };
    let requantized = plan
        .args
        .windows(2)
        .any(|w| w[0] == "--weights" && w[1] == "q8-0");
    let file = read_shape(path, requantized)?;
    let context = plan.context.unwrap_or(file.default_context);
    Ok(memory_need(&file.shape, context, plan.concurrency))
}

/// [`replica_need`] in bytes, the form the placement rules take.
pub fn replica_need_bytes(plan: &ModelPlan) -> Result<u64, String> {
    replica_need(plan).map(|n| n.total_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Fleet;

    #[test]
    fn a_synthetic_7b_bf16_needs_its_weights_and_a_4096_token_cache() {
        let plans = Fleet::parse(
            "[[model]]\nname = \"synthetic-7b\"\nsynthetic = \"llama-7b:bf16\"\n",
            std::path::Path::new("f.toml"),
        )
        .unwrap();
        let need = replica_need(&plans[0]).unwrap();
        assert_eq!(need.weights_bytes, 6_738_415_616 * 2);
        // 32 layers x 2 (K and V) x 32 heads x 128 dims x 2 bytes x 4096 tokens.
        assert_eq!(need.kv_cache_bytes, 32 * 2 * 32 * 128 * 2 * 4096);
    }
}
