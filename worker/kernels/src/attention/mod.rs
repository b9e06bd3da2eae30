//! Causal attention of a ragged batch over the paged KV store, on the CPU.
//!
//! Each token attends to its own sequence's positions `0..=pos`, read
//! through the sequence's row table, so sequences of any lengths share one
//! call. The arithmetic for a token is the same whatever else is in the
//! batch and however its prompt was chunked (one fixed order of summation),
//! so a greedy answer is the same batched and alone, bit for bit.
//!
//! The store may hold f16 (half the memory traffic of a long context, as
//! llama.cpp keeps its cache) or f32; rows are widened to f32 as they are
//! read. The loops are compiled twice, for the CPU's AVX2 and FMA when it has
//! them (picked once, at run time) and for the baseline.

use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

/// What the KV store holds: f32, or f16 widened as it is read.
pub trait KvElement: Copy + Send + Sync {
    fn widen(src: &[Self], dst: &mut [f32]);

    /// [`KvElement::widen`] inlined into AVX2 code (F16C for f16): a row is
    /// 64 values, too short to pay a call and a feature check each time.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn widen_avx2(src: &[Self], dst: &mut [f32]);
}

impl KvElement for f32 {
    #[inline(always)]
    fn widen(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn widen_avx2(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
}

impl KvElement for f16 {
    #[inline(always)]
    fn widen(src: &[f16], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst);
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn widen_avx2(src: &[f16], dst: &mut [f32]) {
        use std::arch::x86_64::{__m128i, _mm256_cvtph_ps, _mm256_storeu_ps, _mm_loadu_si128};
        assert_eq!(src.len(), dst.len());
        let whole = src.len() / 8 * 8;
        for i in (0..whole).step_by(8) {
            // SAFETY: i + 8 <= len for both slices; unaligned loads/stores.
            unsafe {
                let h = _mm_loadu_si128(src.as_ptr().add(i).cast::<__m128i>());
                _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
            }
        }
        for i in whole..src.len() {
            dst[i] = src[i].to_f32();
        }
    }
}

/// Head counts and size. Query heads `g * group .. (g + 1) * group` share
/// KV head `g` (grouped-query attention), `group = heads / kv_heads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl Heads {
    fn group(&self) -> usize {
        self.heads / self.kv_heads
    }

    fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }
}

/// One sequence's share of the batch: query rows `first..first + len` of
/// the batch, at positions `start..start + len`; `rows[p]` is the KV store
/// row of position `p` (at least `start + len` of them).
#[derive(Debug, Clone, Copy)]
pub struct SeqRows<'a> {
    pub first: usize,
    pub start: usize,
    pub len: usize,
    pub rows: &'a [u32],
}

/// `out` (`(tokens, heads * head_dim)`) = for every token and head,
/// `softmax(q · Kᵀ / √head_dim) · V` over the token's positions `0..=pos`.
/// `q` is `(tokens, heads * head_dim)`; `k` and `v` are the store,
/// `(rows, kv_heads * head_dim)`, row-major.
///
/// # Panics
///
/// If a slice is shorter than the shapes say.
pub fn attend<T: KvElement>(
    heads: Heads,
    q: &[f32],
    k: &[T],
    v: &[T],
    seqs: &[SeqRows],
    out: &mut [f32],
) {
    let d = heads.head_dim;
    let group = heads.group();
    assert_eq!(
        heads.heads % heads.kv_heads,
        0,
        "heads must be a multiple of kv_heads"
    );
    let tokens: usize = seqs.iter().map(|s| s.len).sum();
    assert!(q.len() >= tokens * heads.q_dim() && out.len() >= tokens * heads.q_dim());
    // token -> (sequence, position)
    let mut owner = Vec::with_capacity(tokens);
    for (i, seq) in seqs.iter().enumerate() {
        assert!(
            seq.rows.len() >= seq.start + seq.len,
            "sequence {i}: too few rows"
        );
        for t in 0..seq.len {
            debug_assert_eq!(seq.first + t, owner.len(), "sequences in batch order");
            owner.push((i, seq.start + t));
        }
    }
    let scale = 1.0 / (d as f32).sqrt();
    // One unit of work: a token and a KV head, with the `group` query heads
    // that read it (contiguous in the output row).
    let unit = |(unit, out): (usize, &mut [f32])| {
        let (t, g) = (unit / heads.kv_heads, unit % heads.kv_heads);
        let (seq, pos) = owner[t];
        let rows = &seqs[seq].rows[..=pos];
        let q = &q[t * heads.q_dim() + g * group * d..][..group * d];
        let at = Columns {
            column: g * d,
            kv_dim: heads.kv_dim(),
            d,
        };
        attend_group(q, k, v, rows, at, scale, out);
    };
    let out = &mut out[..tokens * heads.q_dim()];
    // Multiply-adds of the whole call: below a few hundred thousand, waking
    // other threads costs more than they save (a short decode step).
    let work: usize = owner.iter().map(|&(_, pos)| pos + 1).sum::<usize>() * heads.q_dim() * 2;
    if work < PARALLEL_WORK {
        out.chunks_mut(group * d).enumerate().for_each(unit);
    } else {
        out.par_chunks_mut(group * d).enumerate().for_each(unit);
    }
}

/// Multiply-adds below which attention runs on the calling thread.
const PARALLEL_WORK: usize = 1 << 18;

/// Where a KV head's `d` columns sit in a store row of `kv_dim`.
#[derive(Clone, Copy)]
struct Columns {
    column: usize,
    kv_dim: usize,
    d: usize,
}

/// [`group_body`] built for AVX2 + FMA where the CPU has them.
fn attend_group<T: KvElement>(
    q: &[f32],
    k: &[T],
    v: &[T],
    rows: &[u32],
    at: Columns,
    scale: f32,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            // SAFETY: the CPU has AVX2, FMA and F16C (checked just above).
            unsafe { group_avx2(q, k, v, rows, at, scale, out) };
            return;
        }
    }
    group_body(q, k, v, rows, at, scale, out, T::widen);
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn group_avx2<T: KvElement>(
    q: &[f32],
    k: &[T],
    v: &[T],
    rows: &[u32],
    at: Columns,
    scale: f32,
    out: &mut [f32],
) {
    // SAFETY: this function only runs on a CPU with these features.
    group_body(q, k, v, rows, at, scale, out, |src, dst| unsafe {
        T::widen_avx2(src, dst)
    });
}

/// `group` query heads (`q`, `group * d`) against one KV head's columns of
/// `rows`: each key and value row is widened once for the whole group.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn group_body<T: KvElement>(
    q: &[f32],
    k: &[T],
    v: &[T],
    rows: &[u32],
    at: Columns,
    scale: f32,
    out: &mut [f32],
    widen: impl Fn(&[T], &mut [f32]),
) {
    let (n, d) = (rows.len(), at.d);
    let group = q.len() / d;
    let mut row = vec![0f32; d];
    // scores[r * n + j]: head r of the group, position j.
    let mut scores = vec![0f32; group * n];
    for (j, &r_store) in rows.iter().enumerate() {
        widen(
            &k[r_store as usize * at.kv_dim + at.column..][..d],
            &mut row,
        );
        for r in 0..group {
            scores[r * n + j] = dot(&q[r * d..][..d], &row) * scale;
        }
    }
    for r in 0..group {
        softmax(&mut scores[r * n..][..n]);
    }
    out.fill(0.0);
    for (j, &r_store) in rows.iter().enumerate() {
        widen(
            &v[r_store as usize * at.kv_dim + at.column..][..d],
            &mut row,
        );
        for r in 0..group {
            axpy(scores[r * n + j], &row, &mut out[r * d..][..d]);
        }
    }
}

/// Eight partial sums, added in a fixed order: vectorizes, and gives the
/// same result wherever the vectors sit.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (a8, a_rest) = a.split_at(a.len() / 8 * 8);
    let (b8, b_rest) = b.split_at(a8.len());
    for (x, y) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in a_rest.iter().zip(b_rest) {
        sum += x * y;
    }
    sum
}

/// `y += a * x`
#[inline(always)]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

#[inline(always)]
fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward attention in f64 for one token and head.
    fn reference(q: &[f32], keys: &[&[f32]], values: &[&[f32]]) -> Vec<f64> {
        let d = q.len();
        let scores: Vec<f64> = keys
            .iter()
            .map(|k| {
                q.iter().zip(*k).map(|(a, b)| f64::from(a * b)).sum::<f64>() / (d as f64).sqrt()
            })
            .collect();
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = e.iter().sum();
        (0..d)
            .map(|i| {
                e.iter()
                    .zip(values)
                    .map(|(w, v)| w / total * f64::from(v[i]))
                    .sum()
            })
            .collect()
    }

    /// A deterministic pseudo-random fill.
    fn fill(n: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 2000) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    const HEADS: Heads = Heads {
        heads: 6,
        kv_heads: 2,
        head_dim: 12,
    };

    #[test]
    fn matches_the_reference_across_sequences_heads_and_pages() {
        let (kv_dim, q_dim) = (HEADS.kv_dim(), HEADS.q_dim());
        let k = fill(40 * kv_dim, 1);
        let v = fill(40 * kv_dim, 2);
        // Sequence A: 5 new tokens at positions 3..8 over scattered rows;
        // sequence B: one decode token at position 10.
        let rows_a: Vec<u32> = vec![30, 31, 2, 3, 17, 18, 19, 20];
        let rows_b: Vec<u32> = (5..16).collect();
        let seqs = [
            SeqRows {
                first: 0,
                start: 3,
                len: 5,
                rows: &rows_a,
            },
            SeqRows {
                first: 5,
                start: 10,
                len: 1,
                rows: &rows_b,
            },
        ];
        let q = fill(6 * q_dim, 3);
        let mut out = vec![0f32; 6 * q_dim];
        attend(HEADS, &q, &k, &v, &seqs, &mut out);
        let owners = [(0, 3), (0, 4), (0, 5), (0, 6), (0, 7), (1, 10)];
        for (t, &(s, pos)) in owners.iter().enumerate() {
            let rows = &seqs[s].rows[..=pos];
            for h in 0..HEADS.heads {
                let g = h / 3;
                let col = g * 12;
                let keys: Vec<&[f32]> = rows
                    .iter()
                    .map(|&r| &k[r as usize * kv_dim + col..][..12])
                    .collect();
                let values: Vec<&[f32]> = rows
                    .iter()
                    .map(|&r| &v[r as usize * kv_dim + col..][..12])
                    .collect();
                let want = reference(&q[t * q_dim + h * 12..][..12], &keys, &values);
                let got = &out[t * q_dim + h * 12..][..12];
                for (w, g) in want.iter().zip(got) {
                    assert!(
                        (w - f64::from(*g)).abs() < 1e-5,
                        "token {t} head {h}: {w} vs {g}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_f16_store_reads_as_its_f32_values() {
        let (kv_dim, q_dim) = (HEADS.kv_dim(), HEADS.q_dim());
        // Values an f16 holds exactly, so both stores mean the same numbers.
        let k32: Vec<f32> = fill(12 * kv_dim, 8)
            .iter()
            .map(|x| (x * 64.0).round() / 64.0)
            .collect();
        let v32: Vec<f32> = fill(12 * kv_dim, 9)
            .iter()
            .map(|x| (x * 64.0).round() / 64.0)
            .collect();
        let k16: Vec<f16> = k32.iter().map(|&x| f16::from_f32(x)).collect();
        let v16: Vec<f16> = v32.iter().map(|&x| f16::from_f32(x)).collect();
        let rows: Vec<u32> = (0..12).collect();
        let seqs = [SeqRows {
            first: 0,
            start: 8,
            len: 4,
            rows: &rows,
        }];
        let q = fill(4 * q_dim, 10);
        let (mut a, mut b) = (vec![0f32; 4 * q_dim], vec![0f32; 4 * q_dim]);
        attend(HEADS, &q, &k32, &v32, &seqs, &mut a);
        attend(HEADS, &q, &k16, &v16, &seqs, &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn a_token_gets_the_same_bits_alone_chunked_or_batched() {
        let (kv_dim, q_dim) = (HEADS.kv_dim(), HEADS.q_dim());
        let k = fill(64 * kv_dim, 4);
        let v = fill(64 * kv_dim, 5);
        let rows: Vec<u32> = (0..20).rev().collect();
        let q = fill(20 * q_dim, 6);
        // Whole prompt in one call.
        let mut whole = vec![0f32; 20 * q_dim];
        attend(
            HEADS,
            &q,
            &k,
            &v,
            &[SeqRows {
                first: 0,
                start: 0,
                len: 20,
                rows: &rows,
            }],
            &mut whole,
        );
        // The last 7 tokens as a chunk, behind another sequence's decode token.
        let other_rows: Vec<u32> = (40..50).collect();
        let mut batch_q = fill(q_dim, 7);
        batch_q.extend_from_slice(&q[13 * q_dim..]);
        let mut batched = vec![0f32; 8 * q_dim];
        attend(
            HEADS,
            &batch_q,
            &k,
            &v,
            &[
                SeqRows {
                    first: 0,
                    start: 9,
                    len: 1,
                    rows: &other_rows,
                },
                SeqRows {
                    first: 1,
                    start: 13,
                    len: 7,
                    rows: &rows,
                },
            ],
            &mut batched,
        );
        assert_eq!(&batched[q_dim..], &whole[13 * q_dim..]);
    }
}
