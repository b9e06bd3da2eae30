//! The KV store: every running sequence's attention keys and values, in
//! fixed-size pages of one preallocated buffer per layer.
//!
//! A sequence gets its pages when it is admitted, enough for its prompt and
//! all the tokens it may generate, so it can never run out mid-stream; a
//! request that cannot fit waits for pages, or is refused at once when even
//! an empty store is too small. New keys and values are written in place (no
//! per-step concatenation), and position `p` of a sequence lives in row
//! `pages[p / PAGE_TOKENS] * PAGE_TOKENS + p % PAGE_TOKENS`.
//!
//! [`PagePool`] is the bookkeeping, without tensors (the scheduler owns it);
//! [`KvStore`] holds the keys and values (the model writes and reads them):
//! dense tensors on the model's device, or int8 rows in host memory for the
//! CPU kernels.

use candle_core::{DType, Device, Storage, Tensor, WithDType};
use half::f16;
use mig_kernels::attention::{self, Dense, Heads, KvElement, Q8Rows, SeqRows, Q8_BLOCK};

use super::BatchSeq;

/// Tokens per page. Small enough that a short request wastes little, large
/// enough that page tables stay short.
pub const PAGE_TOKENS: usize = 16;

/// What a model keeps per token and layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvShape {
    pub layers: usize,
    /// Key (and value) width of one token: KV heads times head size.
    pub kv_dim: usize,
    pub format: KvFormat,
}

/// How keys and values are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvFormat {
    /// Tensors of this type on the model's device.
    Dense(DType),
    /// Int8 per block of 32 with an f32 scale, in host memory: what the CPU
    /// kernels read, 56% of f16's bytes (decode of a long context is bound
    /// by reading them).
    Q8,
}

impl KvFormat {
    /// As `Info` and the logs name it.
    pub fn name(&self) -> &'static str {
        match self {
            KvFormat::Dense(DType::F32) => "f32",
            KvFormat::Dense(DType::F16) => "f16",
            KvFormat::Dense(DType::BF16) => "bf16",
            KvFormat::Dense(_) => "dense",
            KvFormat::Q8 => "q8_0",
        }
    }
}

impl KvShape {
    /// Bytes of keys and values of one token, all layers.
    pub fn bytes_per_token(&self) -> usize {
        let row = match self.format {
            KvFormat::Dense(dtype) => self.kv_dim * dtype.size_in_bytes(),
            KvFormat::Q8 => Q8Rows::bytes_per_row(self.kv_dim),
        };
        self.layers * 2 * row
    }

    /// Whole pages that fit in `bytes`.
    pub fn pages_in(&self, bytes: u64) -> usize {
        let per_page = (self.bytes_per_token() * PAGE_TOKENS) as u64;
        if per_page == 0 {
            return 0;
        }
        (bytes / per_page) as usize
    }
}

/// Pages needed for `tokens` positions.
pub fn pages_for(tokens: usize) -> usize {
    tokens.div_ceil(PAGE_TOKENS)
}

/// Which pages are free. Pages are numbered from 0.
#[derive(Debug, Clone)]
pub struct PagePool {
    free: Vec<u32>,
    total: usize,
}

impl PagePool {
    pub fn new(total: usize) -> Self {
        // Handed out from the low end first (pop takes the last).
        PagePool {
            free: (0..total as u32).rev().collect(),
            total,
        }
    }

    pub fn total(&self) -> usize {
        self.total
    }

    pub fn free(&self) -> usize {
        self.free.len()
    }

    /// Tokens the whole store holds.
    pub fn capacity_tokens(&self) -> usize {
        self.total * PAGE_TOKENS
    }

    /// `n` pages, or `None` (and nothing taken) when fewer are free.
    pub fn allocate(&mut self, n: usize) -> Option<Vec<u32>> {
        if n > self.free.len() {
            return None;
        }
        Some(self.free.split_off(self.free.len() - n))
    }

    pub fn release(&mut self, pages: Vec<u32>) {
        debug_assert!(self.free.len() + pages.len() <= self.total);
        self.free.extend(pages);
    }
}

/// The row of position `pos` of a sequence with page table `pages`.
pub fn row(pages: &[u32], pos: usize) -> usize {
    pages[pos / PAGE_TOKENS] as usize * PAGE_TOKENS + pos % PAGE_TOKENS
}

/// Where a batch's tokens go in the store: each token's position and row,
/// and each sequence's rows for positions `0..end` (what attention reads).
pub struct BatchRows {
    /// Per token, in batch order.
    pub positions: Vec<usize>,
    /// Per token: the row its keys and values are written to.
    pub write: Vec<u32>,
    /// Per sequence: the rows of its whole context.
    pub context: Vec<Vec<u32>>,
}

impl BatchRows {
    /// Refuses a sequence that runs past `context` positions or past its
    /// pages.
    pub fn new(batch: &[BatchSeq], context: usize) -> candle_core::Result<Self> {
        let mut rows = BatchRows {
            positions: Vec::new(),
            write: Vec::new(),
            context: Vec::with_capacity(batch.len()),
        };
        for seq in batch {
            let end = seq.start + seq.tokens.len();
            if end > context || end > seq.pages.len() * PAGE_TOKENS {
                candle_core::bail!(
                    "sequence {}: position {end} is past the context ({context}) or its {} KV pages",
                    seq.id,
                    seq.pages.len()
                );
            }
            let all: Vec<u32> = (0..end).map(|pos| row(seq.pages, pos) as u32).collect();
            rows.positions.extend(seq.start..end);
            rows.write.extend_from_slice(&all[seq.start..]);
            rows.context.push(all);
        }
        Ok(rows)
    }

    /// Each sequence's share, as the attention kernel takes it.
    pub fn parts<'a>(&'a self, batch: &[BatchSeq]) -> Vec<SeqRows<'a>> {
        let mut first = 0;
        batch
            .iter()
            .zip(&self.context)
            .map(|(seq, rows)| {
                let part = SeqRows {
                    first,
                    start: seq.start,
                    len: seq.tokens.len(),
                    rows,
                };
                first += seq.tokens.len();
                part
            })
            .collect()
    }

    /// The write rows as [`KvStore::write`] takes them: `(tokens, kv_dim)`,
    /// each token's row repeated across its width.
    pub fn write_index(&self, kv_dim: usize, device: &Device) -> candle_core::Result<Tensor> {
        let index: Vec<u32> = self
            .write
            .iter()
            .flat_map(|&r| std::iter::repeat_n(r, kv_dim))
            .collect();
        Tensor::from_vec(index, (self.write.len(), kv_dim), device)
    }
}

/// Keys and values of every layer, `pages * PAGE_TOKENS` rows of `kv_dim`
/// each.
pub struct KvStore {
    shape: KvShape,
    pages: usize,
    layers: Layers,
}

enum Layers {
    /// On the model's device, in its dtype.
    Dense(Vec<(Tensor, Tensor)>),
    Q8(Vec<(Q8Rows, Q8Rows)>),
}

impl KvStore {
    /// # Errors
    /// If the memory cannot be had, or an int8 store is asked for rows not
    /// a multiple of its block.
    pub fn new(shape: KvShape, pages: usize, device: &Device) -> candle_core::Result<Self> {
        let rows = pages * PAGE_TOKENS;
        let layers = match shape.format {
            KvFormat::Dense(dtype) => Layers::Dense(
                (0..shape.layers)
                    .map(|_| {
                        Ok((
                            Tensor::zeros((rows, shape.kv_dim), dtype, device)?,
                            Tensor::zeros((rows, shape.kv_dim), dtype, device)?,
                        ))
                    })
                    .collect::<candle_core::Result<_>>()?,
            ),
            KvFormat::Q8 => {
                if !shape.kv_dim.is_multiple_of(Q8_BLOCK) {
                    candle_core::bail!(
                        "an int8 KV store needs rows of a multiple of {Q8_BLOCK} values, not {}",
                        shape.kv_dim
                    );
                }
                Layers::Q8(
                    (0..shape.layers)
                        .map(|_| {
                            (
                                Q8Rows::new(rows, shape.kv_dim),
                                Q8Rows::new(rows, shape.kv_dim),
                            )
                        })
                        .collect(),
                )
            }
        };
        Ok(KvStore {
            shape,
            pages,
            layers,
        })
    }

    pub fn shape(&self) -> KvShape {
        self.shape
    }

    pub fn pages(&self) -> usize {
        self.pages
    }

    /// Writes `k` and `v` (`(tokens, kv_dim)`) of `layer` into `rows` (one
    /// per token, a `(tokens, kv_dim)` u32 index tensor as `scatter_set`
    /// takes it), in place. Dense stores only.
    pub fn write(
        &self,
        layer: usize,
        rows: &Tensor,
        k: &Tensor,
        v: &Tensor,
    ) -> candle_core::Result<()> {
        let (k_store, v_store) = &self.dense()?[layer];
        let dtype = k_store.dtype();
        k_store.scatter_set(rows, &k.to_dtype(dtype)?, 0)?;
        v_store.scatter_set(rows, &v.to_dtype(dtype)?, 0)
    }

    /// Writes host rows: token `t`'s keys `k[t * kv_dim..]` and values into
    /// row `rows[t]` of `layer`, whatever the store holds.
    pub fn write_host(
        &mut self,
        layer: usize,
        rows: &[u32],
        k: &[f32],
        v: &[f32],
    ) -> candle_core::Result<()> {
        let kv_dim = self.shape.kv_dim;
        match &mut self.layers {
            Layers::Q8(layers) => {
                let (k_store, v_store) = &mut layers[layer];
                for ((&row, k), v) in rows
                    .iter()
                    .zip(k.chunks_exact(kv_dim))
                    .zip(v.chunks_exact(kv_dim))
                {
                    k_store.write(row as usize, k);
                    v_store.write(row as usize, v);
                }
                Ok(())
            }
            Layers::Dense(layers) => {
                let device = layers[layer].0.device().clone();
                let index: Vec<u32> = rows
                    .iter()
                    .flat_map(|&r| std::iter::repeat_n(r, kv_dim))
                    .collect();
                let shape = (rows.len(), kv_dim);
                self.write(
                    layer,
                    &Tensor::from_vec(index, shape, &device)?,
                    &Tensor::from_slice(k, shape, &device)?,
                    &Tensor::from_slice(v, shape, &device)?,
                )
            }
        }
    }

    /// The CPU attention kernel over `layer` ([`attention::attend`]), for a
    /// store in host memory: int8, f16 or f32.
    pub fn attend_host(
        &self,
        layer: usize,
        heads: Heads,
        q: &[f32],
        seqs: &[SeqRows],
        out: &mut [f32],
    ) -> candle_core::Result<()> {
        let done = match &self.layers {
            Layers::Q8(layers) => {
                let (k, v) = &layers[layer];
                attention::attend(heads, q, k, v, seqs, out);
                Some(())
            }
            Layers::Dense(layers) => match layers[layer].0.dtype() {
                DType::F16 => attend_dense::<f16>(&layers[layer], heads, q, seqs, out),
                DType::F32 => attend_dense::<f32>(&layers[layer], heads, q, seqs, out),
                _ => None,
            },
        };
        done.ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "the CPU attention kernel reads host f32, f16 or int8 keys, not a {} store",
                self.shape.format.name()
            ))
        })
    }

    /// Keys and values of `layer` at `rows` (a u32 vector): `(rows, kv_dim)`
    /// each. Dense stores only.
    pub fn read(&self, layer: usize, rows: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let (k_store, v_store) = &self.dense()?[layer];
        Ok((
            k_store.index_select(rows, 0)?,
            v_store.index_select(rows, 0)?,
        ))
    }

    fn dense(&self) -> candle_core::Result<&[(Tensor, Tensor)]> {
        match &self.layers {
            Layers::Dense(layers) => Ok(layers),
            Layers::Q8(_) => {
                candle_core::bail!("the int8 KV store is read by the CPU kernels only")
            }
        }
    }
}

/// The kernel over a dense host store of `T`; `None` if it is not one.
fn attend_dense<T: KvElement + WithDType>(
    (k, v): &(Tensor, Tensor),
    heads: Heads,
    q: &[f32],
    seqs: &[SeqRows],
    out: &mut [f32],
) -> Option<()> {
    let (k, k_layout) = k.storage_and_layout();
    let (v, v_layout) = v.storage_and_layout();
    let (Storage::Cpu(k), Storage::Cpu(v)) = (&*k, &*v) else {
        return None;
    };
    let width = heads.kv_heads * heads.head_dim;
    let k = Dense {
        data: &k.as_slice::<T>().ok()?[k_layout.start_offset()..],
        width,
    };
    let v = Dense {
        data: &v.as_slice::<T>().ok()?[v_layout.start_offset()..],
        width,
    };
    attention::attend(heads, q, &k, &v, seqs, out);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_handed_out_once_and_come_back() {
        let mut pool = PagePool::new(4);
        let a = pool.allocate(3).unwrap();
        assert_eq!(pool.free(), 1);
        assert!(pool.allocate(2).is_none(), "two pages asked, one free");
        assert_eq!(pool.free(), 1, "a refused allocation takes nothing");
        let b = pool.allocate(1).unwrap();
        let mut all: Vec<u32> = a.iter().chain(&b).copied().collect();
        all.sort();
        assert_eq!(all, [0, 1, 2, 3]);
        pool.release(a);
        assert_eq!(pool.free(), 3);
        assert_eq!(pool.capacity_tokens(), 4 * PAGE_TOKENS);
    }

    #[test]
    fn positions_map_through_the_page_table() {
        let pages = [7u32, 2];
        assert_eq!(row(&pages, 0), 7 * PAGE_TOKENS);
        assert_eq!(row(&pages, PAGE_TOKENS - 1), 8 * PAGE_TOKENS - 1);
        assert_eq!(row(&pages, PAGE_TOKENS), 2 * PAGE_TOKENS);
        assert_eq!(pages_for(0), 0);
        assert_eq!(pages_for(1), 1);
        assert_eq!(pages_for(PAGE_TOKENS + 1), 2);
    }

    #[test]
    fn sizes_follow_the_model_shape() {
        // SmolLM2-135M: 30 layers, 3 KV heads of 64, f32.
        let shape = KvShape {
            layers: 30,
            kv_dim: 192,
            format: KvFormat::Dense(DType::F32),
        };
        assert_eq!(shape.bytes_per_token(), 30 * 2 * 192 * 4);
        let q8 = KvShape {
            format: KvFormat::Q8,
            ..shape
        };
        // 192 int8 values and 6 f32 scales per row.
        assert_eq!(q8.bytes_per_token(), 30 * 2 * (192 + 6 * 4));
        let page = (shape.bytes_per_token() * PAGE_TOKENS) as u64;
        assert_eq!(shape.pages_in(10 * page + 1), 10);
    }

    #[test]
    fn writes_land_in_place_and_read_back_by_row() {
        let shape = KvShape {
            layers: 1,
            kv_dim: 2,
            format: KvFormat::Dense(DType::F32),
        };
        let store = KvStore::new(shape, 2, &Device::Cpu).unwrap();
        let rows = Tensor::new(&[[17u32, 17], [3, 3]], &Device::Cpu).unwrap();
        let k = Tensor::new(&[[1f32, 2.], [3., 4.]], &Device::Cpu).unwrap();
        let v = (&k * 10.).unwrap();
        store.write(0, &rows, &k, &v).unwrap();
        let (k_read, v_read) = store
            .read(0, &Tensor::new(&[3u32, 17, 0], &Device::Cpu).unwrap())
            .unwrap();
        assert_eq!(
            k_read.to_vec2::<f32>().unwrap(),
            [[3., 4.], [1., 2.], [0., 0.]]
        );
        assert_eq!(v_read.to_vec2::<f32>().unwrap()[1], [10., 20.]);
    }

    #[test]
    fn host_writes_land_in_either_format_and_attention_reads_them() {
        let heads = Heads {
            heads: 2,
            kv_heads: 1,
            head_dim: 32,
        };
        let k: Vec<f32> = (0..64).map(|i| (i as f32 - 30.0) / 40.0).collect();
        let v: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
        for format in [KvFormat::Dense(DType::F32), KvFormat::Q8] {
            let shape = KvShape {
                layers: 2,
                kv_dim: 32,
                format,
            };
            let mut store = KvStore::new(shape, 2, &Device::Cpu).unwrap();
            store.write_host(1, &[17, 3], &k, &v).unwrap();
            // A token at position 0 whose only row is 3: its output is that
            // row's values, for both heads.
            let seqs = [SeqRows {
                first: 0,
                start: 0,
                len: 1,
                rows: &[3],
            }];
            let mut out = vec![0f32; 64];
            store
                .attend_host(1, heads, &[0.5; 64], &seqs, &mut out)
                .unwrap();
            let step = if format == KvFormat::Q8 {
                1.0 / 254.0
            } else {
                1e-6
            };
            for (o, want) in out.iter().zip(v[32..].iter().chain(&v[32..])) {
                assert!((o - want).abs() <= step, "{format:?}: {o} vs {want}");
            }
        }
        let q8 = KvShape {
            layers: 1,
            kv_dim: 48,
            format: KvFormat::Q8,
        };
        let err = KvStore::new(q8, 1, &Device::Cpu).err().unwrap().to_string();
        assert!(err.contains("multiple of 32"), "{err}");
    }
}
