//! The llama forward pass on the CPU for GGUF files: the same computation as
//! [`super::llama`], on plain f32 buffers with the project's own quantized
//! matrix products ([`QMatrix`]) and attention kernel, and no tensor
//! operations between them.
//!
//! A small model's decode step is hundreds of small operations; run as
//! tensor ops each one allocates and dispatches, which costs as much as the
//! arithmetic. Here a step is, per layer, three matrix products (Q, K and V
//! fused; gate and up fused; down), the output projection, attention, and a
//! few loops over the batch's rows.

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{Device, Tensor};
use mig_kernels::attention::Heads;
use mig_kernels::qmatmul::QMatrix;

use super::kv_store::{BatchRows, KvFormat, KvShape, KvStore};
use super::llama::LlamaConfig;
use super::{BatchSeq, Generator};

/// One transformer block's weights, as the CPU kernels read them.
pub struct HostBlock {
    pub attn_norm: Vec<f32>,
    /// Q, K and V stacked: `(heads + 2 kv_heads) * head_dim` rows.
    pub qkv: QMatrix,
    pub o: QMatrix,
    pub ffn_norm: Vec<f32>,
    /// Gate and up stacked: `2 * intermediate` rows.
    pub gate_up: QMatrix,
    pub down: QMatrix,
}

pub struct HostLlama {
    config: LlamaConfig,
    /// `(vocab, hidden)`: rows are dequantized as tokens come.
    embed: QMatrix,
    blocks: Vec<HostBlock>,
    norm: Vec<f32>,
    head: QMatrix,
    /// RoPE tables, `(context, head_dim / 2)` row-major.
    cos: Vec<f32>,
    sin: Vec<f32>,
    kv_format: KvFormat,
}

/// The QTensors `parts` (same type and width) as one with their rows
/// stacked, so one product computes all of them.
pub fn stack_rows(parts: &[&QTensor]) -> candle_core::Result<QTensor> {
    let dtype = parts[0].dtype();
    let cols = parts[0].shape().dims2()?.1;
    let mut rows = 0;
    let mut bytes = Vec::new();
    for part in parts {
        let (r, c) = part.shape().dims2()?;
        if part.dtype() != dtype || c != cols {
            candle_core::bail!(
                "cannot stack a {:?} ({r}, {c}) under a {dtype:?} (_, {cols})",
                part.dtype()
            );
        }
        rows += r;
        bytes.extend_from_slice(&part.data()?);
    }
    let storage = QStorage::from_data(bytes.into(), &Device::Cpu, dtype)?;
    QTensor::new(storage, (rows, cols))
}

/// Whether the CPU kernels take this weight type.
pub fn supported(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::Q4_1 | GgmlDType::Q8_0)
}

impl HostLlama {
    pub fn new(
        config: LlamaConfig,
        embed: QMatrix,
        blocks: Vec<HostBlock>,
        norm: Vec<f32>,
        head: QMatrix,
        kv_format: KvFormat,
    ) -> Self {
        let (cos, sin) = rope_tables(&config);
        HostLlama {
            config,
            embed,
            blocks,
            norm,
            head,
            cos,
            sin,
            kv_format,
        }
    }

    fn heads(&self) -> Heads {
        Heads {
            heads: self.config.heads,
            kv_heads: self.config.kv_heads,
            head_dim: self.config.head_dim(),
        }
    }

    /// Rotates the first `heads` heads of `row` (interleaved pairs, as GGUF
    /// stores Q and K) by position `pos`.
    fn rope(&self, row: &mut [f32], heads: usize, pos: usize) {
        let half = self.config.head_dim() / 2;
        let cos = &self.cos[pos * half..][..half];
        let sin = &self.sin[pos * half..][..half];
        for head in row[..heads * 2 * half].chunks_exact_mut(2 * half) {
            for (i, pair) in head.chunks_exact_mut(2).enumerate() {
                let (a, b) = (pair[0], pair[1]);
                pair[0] = a * cos[i] - b * sin[i];
                pair[1] = a * sin[i] + b * cos[i];
            }
        }
    }
}

fn rope_tables(config: &LlamaConfig) -> (Vec<f32>, Vec<f32>) {
    let d = config.head_dim();
    let mut cos = Vec::with_capacity(config.context * d / 2);
    let mut sin = Vec::with_capacity(config.context * d / 2);
    for pos in 0..config.context {
        for i in 0..d / 2 {
            let freq = 1.0 / config.rope_theta.powf(2.0 * i as f32 / d as f32);
            let angle = pos as f32 * freq;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    (cos, sin)
}

/// `out = x / rms(x) * weight`, row by row.
fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let n = weight.len();
    for (x, out) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let mean_square = x.iter().map(|v| v * v).sum::<f32>() / n as f32;
        let scale = 1.0 / (mean_square + eps).sqrt();
        for ((o, v), w) in out.iter_mut().zip(x).zip(weight) {
            *o = v * scale * w;
        }
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    for (x, y) in x.iter_mut().zip(y) {
        *x += y;
    }
}

/// Splits each row of `gate_up` (`2 * n`: gate, then up) into
/// `silu(gate) * up` (`n`).
fn swiglu(gate_up: &[f32], n: usize, out: &mut [f32]) {
    for (gu, out) in gate_up.chunks_exact(2 * n).zip(out.chunks_exact_mut(n)) {
        let (gate, up) = gu.split_at(n);
        for ((o, g), u) in out.iter_mut().zip(gate).zip(up) {
            *o = g / (1.0 + (-g).exp()) * u;
        }
    }
}

impl Generator for HostLlama {
    fn kv_shape(&self) -> KvShape {
        KvShape {
            layers: self.config.layers,
            kv_dim: self.config.kv_heads * self.config.head_dim(),
            format: self.kv_format,
        }
    }

    fn forward(&mut self, batch: &[BatchSeq], kv: &mut KvStore) -> candle_core::Result<Tensor> {
        // The whole step runs on a thread of the pool: the products' tasks
        // are then handed over within the pool (spinning briefly) instead of
        // waking the pool from outside and sleeping until it is done, 150
        // times a token.
        rayon::scope(|_| self.step(batch, kv))
    }
}

impl HostLlama {
    fn step(&self, batch: &[BatchSeq], kv: &mut KvStore) -> candle_core::Result<Tensor> {
        let c = &self.config;
        let (hidden, d) = (c.hidden, c.head_dim());
        let (q_dim, kv_dim) = (c.heads * d, c.kv_heads * d);
        let qkv_dim = q_dim + 2 * kv_dim;
        let inter = self.blocks.first().map_or(0, |b| b.down.cols());
        let eps = c.rms_eps as f32;

        let rows = BatchRows::new(batch, c.context)?;
        let (positions, parts) = (&rows.positions, rows.parts(batch));
        let tokens = positions.len();

        let mut x = vec![0f32; tokens * hidden];
        for (token, row) in batch
            .iter()
            .flat_map(|s| s.tokens.iter())
            .zip(x.chunks_exact_mut(hidden))
        {
            if *token as usize >= self.embed.rows() {
                candle_core::bail!(
                    "token {token} is past the vocabulary of {}",
                    self.embed.rows()
                );
            }
            self.embed.dequantize_row(*token as usize, row);
        }
        let mut h = vec![0f32; tokens * hidden];
        let mut qkv = vec![0f32; tokens * qkv_dim];
        let mut q = vec![0f32; tokens * q_dim];
        let mut k = vec![0f32; tokens * kv_dim];
        let mut v = vec![0f32; tokens * kv_dim];
        let mut attn = vec![0f32; tokens * q_dim];
        let mut proj = vec![0f32; tokens * hidden];
        let mut gate_up = vec![0f32; tokens * 2 * inter];
        let mut act = vec![0f32; tokens * inter];
        let heads = self.heads();
        for (layer, block) in self.blocks.iter().enumerate() {
            rms_norm(&x, &block.attn_norm, eps, &mut h);
            block.qkv.matmul(&h, tokens, &mut qkv);
            for (t, row) in qkv.chunks_exact_mut(qkv_dim).enumerate() {
                let (q_row, kv_row) = row.split_at_mut(q_dim);
                self.rope(q_row, c.heads, positions[t]);
                self.rope(kv_row, c.kv_heads, positions[t]);
                q[t * q_dim..][..q_dim].copy_from_slice(q_row);
                k[t * kv_dim..][..kv_dim].copy_from_slice(&kv_row[..kv_dim]);
                v[t * kv_dim..][..kv_dim].copy_from_slice(&kv_row[kv_dim..]);
            }
            kv.write_host(layer, &rows.write, &k, &v)?;
            kv.attend_host(layer, heads, &q, &parts, &mut attn)?;
            block.o.matmul(&attn, tokens, &mut proj);
            add(&mut x, &proj);
            rms_norm(&x, &block.ffn_norm, eps, &mut h);
            block.gate_up.matmul(&h, tokens, &mut gate_up);
            swiglu(&gate_up, inter, &mut act);
            block.down.matmul(&act, tokens, &mut proj);
            add(&mut x, &proj);
        }
        // Only the last token of each sequence that samples needs logits.
        let mut last = Vec::new();
        let mut end = 0;
        for seq in batch {
            end += seq.tokens.len();
            if seq.logits {
                last.extend_from_slice(&x[(end - 1) * hidden..end * hidden]);
            }
        }
        let rows = last.len() / hidden;
        let mut normed = vec![0f32; last.len()];
        rms_norm(&last, &self.norm, eps, &mut normed);
        let mut logits = vec![0f32; rows * self.head.rows()];
        self.head.matmul(&normed, rows, &mut logits);
        Tensor::from_vec(logits, (rows, self.head.rows()), &Device::Cpu)
    }
}
