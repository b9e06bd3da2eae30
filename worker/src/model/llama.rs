//! The llama-family forward pass over a ragged batch: several sequences of
//! any lengths in one step, each token at its own position, each sequence
//! attending only to its own keys and values in the paged [`KvStore`].
//!
//! The tokens of all sequences are stacked into one `(tokens, hidden)`
//! matrix, so every weight matrix is read once per step whatever the batch
//! size; only attention runs per sequence. The same code serves GGUF models
//! (quantized weights) and synthetic ones (dense bf16/f16/f32), on the CPU and
//! on CUDA.

use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Module, Shape, Tensor};

use mig_kernels::attention::{Heads, SeqRows};
use rayon::prelude::*;

use super::kv_store::{BatchRows, KvFormat, KvShape, KvStore};
use super::{BatchSeq, Generator};

/// The shape and numerics of a llama-family model.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub layers: usize,
    pub vocab: usize,
    pub rms_eps: f64,
    pub rope_theta: f32,
    /// GGUF files pair dimensions `(2i, 2i+1)` in RoPE (their Q and K rows
    /// are permuted); Hugging Face checkpoints pair `(i, i + d/2)`.
    pub rope_interleaved: bool,
    /// Positions the RoPE tables cover: the context served.
    pub context: usize,
    /// The type of activations and of the KV store.
    pub dtype: DType,
}

impl LlamaConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
}

/// A weight matrix `(out, in)` applied to `(tokens, in)`.
pub enum Linear {
    /// GGUF blocks, multiplied by candle's quantized kernels.
    Quantized(QMatMul),
    /// A plain matrix (synthetic models).
    Dense(Tensor),
}

impl Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Linear::Quantized(w) => w.forward(x),
            Linear::Dense(w) => x.matmul(&w.t()?),
        }
    }
}

/// One transformer block's weights.
pub struct Block {
    pub attn_norm: Tensor,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub ffn_norm: Tensor,
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

pub struct Llama {
    config: LlamaConfig,
    /// `(vocab, hidden)`, looked up by token id.
    embed: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    head: Linear,
    /// RoPE tables `(context, head_dim / 2)`.
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

impl Llama {
    pub fn new(
        config: LlamaConfig,
        embed: Tensor,
        blocks: Vec<Block>,
        norm: Tensor,
        head: Linear,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let (cos, sin) = rope_tables(&config, device)?;
        Ok(Llama {
            embed: embed.to_dtype(config.dtype)?,
            config,
            blocks,
            norm,
            head,
            cos,
            sin,
            device: device.clone(),
        })
    }

    /// Rotates `x` (`(tokens, heads * head_dim)`) by each token's position.
    fn rope(
        &self,
        x: &Tensor,
        heads: usize,
        cos: &Tensor,
        sin: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let tokens = x.dim(0)?;
        let d = self.config.head_dim();
        // rope wants (batch, heads, tokens, d); each token is its own row of
        // the tables, so the "sequence" is the stacked batch.
        let x = x
            .reshape((tokens, heads, d))?
            .transpose(0, 1)?
            .contiguous()?
            .unsqueeze(0)?;
        let rotated = if self.config.rope_interleaved {
            candle_nn::rotary_emb::rope_i(&x, cos, sin)?
        } else {
            candle_nn::rotary_emb::rope(&x, cos, sin)?
        };
        rotated
            .squeeze(0)?
            .transpose(0, 1)?
            .contiguous()?
            .reshape((tokens, heads * d))
    }

    /// Whether attention runs in the CPU kernel: an f32 model on the CPU.
    /// Elsewhere (CUDA, bf16/f16) it runs by tensor ops, per sequence.
    fn host_attention(&self) -> bool {
        self.device.is_cpu() && self.config.dtype == DType::F32
    }

    /// Attention of the whole batch with the CPU kernel, in one call; every
    /// token's arithmetic is independent of the rest of the batch.
    fn attend_host(
        &self,
        q: &Tensor,
        kv: &KvStore,
        layer: usize,
        seqs: &[SeqRows],
    ) -> candle_core::Result<Tensor> {
        let c = &self.config;
        let heads = Heads {
            heads: c.heads,
            kv_heads: c.kv_heads,
            head_dim: c.head_dim(),
        };
        let q_host = q.flatten_all()?.to_vec1::<f32>()?;
        let mut out = vec![0f32; q_host.len()];
        kv.attend_host(layer, heads, &q_host, seqs, &mut out)?;
        Tensor::from_vec(out, q.shape(), &self.device)
    }

    /// Causal attention of one sequence's new tokens (`q`: `(n, heads *
    /// head_dim)`, at positions `start..start + n`) over its keys and values
    /// `0..start + n` read from the store.
    fn attend(
        &self,
        q: &Tensor,
        kv: &KvStore,
        layer: usize,
        seq: &BatchSeq,
        rows: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let c = &self.config;
        let (n, d) = (seq.tokens.len(), c.head_dim());
        let context = seq.start + n;
        let group = c.heads / c.kv_heads;
        let (k, v) = kv.read(layer, rows)?;
        // (kv_heads, context, d)
        let k = k.reshape((context, c.kv_heads, d))?.transpose(0, 1)?;
        let v = v
            .reshape((context, c.kv_heads, d))?
            .transpose(0, 1)?
            .contiguous()?;
        // The query heads sharing a KV head are consecutive: (kv_heads,
        // group * n, d), rows ordered (head in group, token).
        let q = q
            .reshape((n, c.heads, d))?
            .transpose(0, 1)?
            .contiguous()?
            .reshape((c.kv_heads, group * n, d))?;
        let scale = 1.0 / (d as f64).sqrt();
        let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?;
        let scores = if n > 1 {
            let mask = causal_mask(seq.start, n, group, &self.device)?.to_dtype(scores.dtype())?;
            scores.broadcast_add(&mask)?
        } else {
            scores
        };
        let weights =
            candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?.to_dtype(v.dtype())?;
        weights
            .matmul(&v)?
            .reshape((c.heads, n, d))?
            .transpose(0, 1)?
            .reshape((n, c.heads * d))
    }
}

/// A model whose tensors carry the Hugging Face names
/// (`model.layers.N.self_attn.q_proj.weight`, ...): `get(shape, name)`
/// gives each one, from a checkpoint or drawn at random. The output head
/// is the embedding matrix when `tied`.
///
/// The layers are built in parallel on the current rayon pool (the embedding,
/// final norm and head beside them), so `get` is called from several threads
/// in no set order: what it returns must depend on the name alone.
pub fn from_hf_names(
    config: LlamaConfig,
    intermediate: usize,
    tied: bool,
    device: &Device,
    get: impl Fn(Shape, &str) -> candle_core::Result<Tensor> + Sync,
) -> candle_core::Result<Llama> {
    let (h, i, vocab) = (config.hidden, intermediate, config.vocab);
    let kv = config.kv_heads * config.head_dim();
    let block = |l: usize| -> candle_core::Result<Block> {
        let name = |part: &str| format!("model.layers.{l}.{part}.weight");
        let dense = |out: usize, inp: usize, part: &str| {
            get((out, inp).into(), &name(part)).map(Linear::Dense)
        };
        Ok(Block {
            attn_norm: get(h.into(), &name("input_layernorm"))?,
            q: dense(h, h, "self_attn.q_proj")?,
            k: dense(kv, h, "self_attn.k_proj")?,
            v: dense(kv, h, "self_attn.v_proj")?,
            o: dense(h, h, "self_attn.o_proj")?,
            ffn_norm: get(h.into(), &name("post_attention_layernorm"))?,
            gate: dense(i, h, "mlp.gate_proj")?,
            up: dense(i, h, "mlp.up_proj")?,
            down: dense(h, i, "mlp.down_proj")?,
        })
    };
    let ends = || -> candle_core::Result<(Tensor, Tensor, Linear)> {
        let embed = get((vocab, h).into(), "model.embed_tokens.weight")?;
        let norm = get(h.into(), "model.norm.weight")?;
        let head = if tied {
            Linear::Dense(embed.clone())
        } else {
            Linear::Dense(get((vocab, h).into(), "lm_head.weight")?)
        };
        Ok((embed, norm, head))
    };
    let (ends, blocks) = rayon::join(ends, || {
        (0..config.layers)
            .into_par_iter()
            .map(block)
            .collect::<candle_core::Result<Vec<_>>>()
    });
    let (embed, norm, head) = ends?;
    Llama::new(config, embed, blocks?, norm, head, device)
}

/// `-inf` where a token would see a later position: `(group * n, context)`,
/// the `n` rows repeated for each query head of a group.
fn causal_mask(
    start: usize,
    n: usize,
    group: usize,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let context = start + n;
    let rows: Vec<f32> = (0..n)
        .flat_map(|i| {
            (0..context).map(move |j| {
                if j <= start + i {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    let mask = Tensor::from_vec(rows, (n, context), device)?;
    Tensor::cat(&vec![&mask; group], 0)
}

/// `cos` and `sin` of every position and frequency, `(context, head_dim / 2)`.
fn rope_tables(config: &LlamaConfig, device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
    let d = config.head_dim();
    let inv_freq: Vec<f32> = (0..d / 2)
        .map(|i| 1.0 / config.rope_theta.powf(2.0 * i as f32 / d as f32))
        .collect();
    let inv_freq = Tensor::from_vec(inv_freq, (1, d / 2), device)?;
    let positions = Tensor::arange(0u32, config.context as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((config.context, 1))?;
    let angles = positions.broadcast_mul(&inv_freq)?;
    Ok((
        angles.cos()?.to_dtype(config.dtype)?,
        angles.sin()?.to_dtype(config.dtype)?,
    ))
}

impl Generator for Llama {
    /// On the CPU the store holds f16 (half the memory traffic of a long
    /// context); elsewhere the activations' type.
    fn kv_shape(&self) -> KvShape {
        KvShape {
            layers: self.config.layers,
            kv_dim: self.config.kv_heads * self.config.head_dim(),
            format: KvFormat::Dense(if self.host_attention() {
                DType::F16
            } else {
                self.config.dtype
            }),
        }
    }

    fn forward(&mut self, batch: &[BatchSeq], kv: &mut KvStore) -> candle_core::Result<Tensor> {
        let c = &self.config;
        let kv_dim = c.kv_heads * c.head_dim();
        let rows = BatchRows::new(batch, c.context)?;
        let host_rows = rows.parts(batch);
        let ids: Vec<u32> = batch
            .iter()
            .flat_map(|s| s.tokens.iter().copied())
            .collect();
        // Row tables as tensors, for attention by tensor ops (off the CPU).
        let read_rows = if self.host_attention() {
            Vec::new()
        } else {
            host_rows
                .iter()
                .map(|seq| Tensor::new(seq.rows, &self.device))
                .collect::<candle_core::Result<_>>()?
        };
        let ids = Tensor::new(ids, &self.device)?;
        let positions: Vec<u32> = rows.positions.iter().map(|&p| p as u32).collect();
        let positions = Tensor::new(positions, &self.device)?;
        let write_rows = rows.write_index(kv_dim, &self.device)?;
        let cos = self.cos.index_select(&positions, 0)?;
        let sin = self.sin.index_select(&positions, 0)?;
        let eps = c.rms_eps as f32;

        let mut x = self.embed.index_select(&ids, 0)?;
        for (layer, block) in self.blocks.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &block.attn_norm, eps)?;
            let q = self.rope(&block.q.forward(&h)?, c.heads, &cos, &sin)?;
            let k = self.rope(&block.k.forward(&h)?, c.kv_heads, &cos, &sin)?;
            let v = block.v.forward(&h)?;
            kv.write(layer, &write_rows, &k, &v)?;
            let attn = match self.host_attention() {
                true => self.attend_host(&q, kv, layer, &host_rows)?,
                false => {
                    let mut outputs = Vec::with_capacity(batch.len());
                    let mut offset = 0;
                    for (seq, rows) in batch.iter().zip(&read_rows) {
                        let n = seq.tokens.len();
                        let q = q.narrow(0, offset, n)?;
                        outputs.push(self.attend(&q, kv, layer, seq, rows)?);
                        offset += n;
                    }
                    Tensor::cat(&outputs, 0)?
                }
            };
            x = (x + block.o.forward(&attn)?)?;
            let h = candle_nn::ops::rms_norm(&x, &block.ffn_norm, eps)?;
            let gated =
                (candle_nn::ops::silu(&block.gate.forward(&h)?)? * block.up.forward(&h)?)?;
            x = (x + block.down.forward(&gated)?)?;
        }
        // Only the last token of each sequence that samples needs logits.
        let mut last = Vec::new();
        let mut offset = 0;
        for seq in batch {
            offset += seq.tokens.len();
            if seq.logits {
                last.push(offset as u32 - 1);
            }
        }
        let x = x.index_select(&Tensor::new(last, &self.device)?, 0)?;
        let x = candle_nn::ops::rms_norm(&x, &self.norm, eps)?;
        self.head.forward(&x)?.to_dtype(DType::F32)
    }
}
