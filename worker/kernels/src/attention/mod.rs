//! Causal attention of a ragged batch over the paged KV store, on the CPU.
//!
//! Each token attends to its own sequence's positions `0..=pos`, read
//! through the sequence's row table, so sequences of any lengths share one
//! call.
//!
//! # How the work is cut
//!
//! A token's positions are cut into blocks of [`BLOCK`]. One unit of work is
//! a block of one token, for all its heads: it first asks for the block's
//! rows (prefetch), then for each run of query heads sharing a KV head (at
//! most [`MAX_HEADS`]: a lane) computes the block's scores, their softmax
//! numerators and the weighted sum of values, and leaves the block's maximum
//! score and sum beside it (a partial softmax). The blocks of a token are
//! then merged in order. So a long context spreads over every thread even
//! for one decode token, and each key and value row is read once for all
//! the heads of a lane.
//!
//! The arithmetic for a token depends only on its own position, never on
//! what else is in the batch, how its prompt was chunked or how many threads
//! ran: a greedy answer is the same batched and alone, bit for bit.
//!
//! # Layout
//! - `mod.rs`: the public call, the cutting into units and the merge.
//! - `portable`: the unit on any CPU, also the reference for the one below.
//! - `avx2`: the unit with AVX2, FMA and F16C, picked at run time.
//! - `rows`: how the store is read ([`KvRows`]): dense f32 or f16, or int8
//!   blocks ([`Q8Rows`]), widened to f32 as they are read.

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
mod avx2;
mod portable;
mod rows;
#[cfg(test)]
mod tests;

pub use rows::{Dense, KvElement, KvRows, Q8Rows, Q8_BLOCK};

/// Positions per unit of work. Fixed, so a token's arithmetic does not
/// depend on the batch or the thread count.
pub const BLOCK: usize = 128;

/// Query heads per unit; a larger group of heads sharing a KV head is
/// split (its keys and values are then read once per split).
pub const MAX_HEADS: usize = 4;

/// Largest head size the kernels take.
pub const MAX_HEAD_DIM: usize = 256;

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

/// Where a KV head's `d` columns start in a store row.
#[derive(Clone, Copy)]
struct Columns {
    column: usize,
    d: usize,
}

/// One unit's query heads over one block of store rows.
#[derive(Clone, Copy)]
struct Unit<'a> {
    /// `count * d` query values: `count` heads sharing the KV head at `at`.
    q: &'a [f32],
    rows: &'a [u32],
    at: Columns,
    /// `1 / √d`.
    scale: f32,
}

/// Query heads `head..head + count` of token `token`, at `pos`, whose KV
/// head's columns are `at`.
#[derive(Clone, Copy)]
struct Lane {
    token: usize,
    seq: usize,
    pos: usize,
    head: usize,
    count: usize,
    at: Columns,
}

/// `out` (`(tokens, heads * head_dim)`) = for every token and head,
/// `softmax(q · Kᵀ / √head_dim) · V` over the token's positions `0..=pos`.
/// `q` is `(tokens, heads * head_dim)`; `k` and `v` are the store, rows
/// of `kv_heads * head_dim`.
///
/// # Panics
///
/// If a slice is shorter than the shapes say, a row is past the store,
/// `heads` is not a multiple of `kv_heads`, or `head_dim` is over
/// [`MAX_HEAD_DIM`].
pub fn attend<K: KvRows, V: KvRows>(
    heads: Heads,
    q: &[f32],
    k: &K,
    v: &V,
    seqs: &[SeqRows],
    out: &mut [f32],
) {
    let d = heads.head_dim;
    assert_eq!(
        heads.heads % heads.kv_heads,
        0,
        "heads must be a multiple of kv_heads"
    );
    assert!(
        d <= MAX_HEAD_DIM,
        "head_dim {d} is over the kernels' {MAX_HEAD_DIM}"
    );
    let tokens: usize = seqs.iter().map(|s| s.len).sum();
    let q_dim = heads.q_dim();
    assert!(q.len() >= tokens * q_dim && out.len() >= tokens * q_dim);
    assert!(
        k.width() == heads.kv_dim() && v.width() == heads.kv_dim(),
        "store rows of {} and {} values, heads need {}",
        k.width(),
        v.width(),
        heads.kv_dim()
    );
    let lanes = lanes(heads, seqs, k.rows().min(v.rows()));
    // A token's lanes are consecutive; one unit is a block of all of them,
    // so it reads whole store rows.
    let per_token = heads.kv_heads * heads.group().div_ceil(MAX_HEADS);
    debug_assert_eq!(lanes.len(), tokens * per_token);
    // (first lane, block) per unit, tokens in order and their blocks in order.
    let units: Vec<(usize, usize)> = (0..tokens)
        .flat_map(|t| {
            let first = t * per_token;
            (0..(lanes[first].pos + 1).div_ceil(BLOCK)).map(move |b| (first, b))
        })
        .collect();
    let lane_stride = partial_stride(d);
    let stride = per_token * lane_stride;
    let mut partials = vec![0f32; units.len() * stride];
    let scale = 1.0 / (d as f32).sqrt();
    let unit = |(i, part): (usize, &mut [f32])| {
        let (first, block) = units[i];
        // Every head of the token reads these rows: ask for all of them at
        // once, so the memory system fetches them side by side instead of
        // one cache miss at a time as the first head's loop reaches them.
        let lane = &lanes[first];
        let rows = &seqs[lane.seq].rows[..=lane.pos];
        for &r in &rows[block * BLOCK..rows.len().min((block + 1) * BLOCK)] {
            k.prefetch(r as usize);
            v.prefetch(r as usize);
        }
        for (lane, part) in lanes[first..first + per_token]
            .iter()
            .zip(part.chunks_exact_mut(lane_stride))
        {
            let rows = &seqs[lane.seq].rows[..=lane.pos];
            let rows = &rows[block * BLOCK..rows.len().min((block + 1) * BLOCK)];
            let q = &q[lane.token * q_dim + lane.head * d..][..lane.count * d];
            let unit = Unit {
                q,
                rows,
                at: lane.at,
                scale,
            };
            attend_block(unit, k, v, part);
        }
    };
    // Multiply-adds of the whole call: below a few hundred thousand, waking
    // other threads costs more than they save (a short decode step).
    let work: usize = lanes.iter().map(|l| (l.pos + 1) * l.count).sum::<usize>() * d * 2;
    if work < PARALLEL_WORK {
        partials.chunks_mut(stride).enumerate().for_each(unit);
    } else {
        partials.par_chunks_mut(stride).enumerate().for_each(unit);
    }
    let mut next = 0;
    for chunk in lanes.chunks_exact(per_token) {
        let blocks = (chunk[0].pos + 1).div_ceil(BLOCK);
        let parts = &partials[next * stride..(next + blocks) * stride];
        next += blocks;
        for (l, lane) in chunk.iter().enumerate() {
            let out = &mut out[lane.token * q_dim + lane.head * d..][..lane.count * d];
            merge(
                &parts[l * lane_stride..],
                stride,
                lane_stride,
                blocks,
                d,
                out,
            );
        }
    }
}

/// Multiply-adds below which attention runs on the calling thread.
const PARALLEL_WORK: usize = 1 << 18;

/// Every token's query heads, cut into runs of at most [`MAX_HEADS`] that
/// share a KV head, after checking every sequence's rows against the
/// `store_rows` of the store.
fn lanes(heads: Heads, seqs: &[SeqRows], store_rows: usize) -> Vec<Lane> {
    let (d, group) = (heads.head_dim, heads.group());
    let mut lanes = Vec::new();
    for (i, seq) in seqs.iter().enumerate() {
        assert!(
            seq.rows.len() >= seq.start + seq.len,
            "sequence {i}: too few rows"
        );
        if let Some(&past) = seq.rows[..seq.start + seq.len]
            .iter()
            .find(|&&r| r as usize >= store_rows)
        {
            panic!("sequence {i}: row {past} is past the store's {store_rows}");
        }
        for t in 0..seq.len {
            for g in 0..heads.kv_heads {
                for first in (0..group).step_by(MAX_HEADS) {
                    lanes.push(Lane {
                        token: seq.first + t,
                        seq: i,
                        pos: seq.start + t,
                        head: g * group + first,
                        count: MAX_HEADS.min(group - first),
                        at: Columns { column: g * d, d },
                    });
                }
            }
        }
    }
    lanes
}

/// Floats of one unit's result: per head, the block's largest score, the
/// sum of its softmax numerators, then the `d` weighted values.
fn partial_stride(d: usize) -> usize {
    MAX_HEADS * (d + 2)
}

/// The unit's heads over its block of rows, into `part`: per head `[max,
/// sum, acc[0..d]]` with `acc = Σ exp(s - max) · v`.
fn attend_block<K: KvRows, V: KvRows>(u: Unit, k: &K, v: &V, part: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if u.at.d.is_multiple_of(16) && has_avx2() {
            // SAFETY: the CPU has AVX2, FMA and F16C (checked just above);
            // `attend` checked the slices against the shapes.
            unsafe { avx2::block(u, k, v, part) };
            return;
        }
    }
    portable::block(u, k, v, part);
}

/// The blocks' partial softmaxes of a lane (`blocks` of them, `stride`
/// apart in `parts`, each `lane_stride` long), in order, into its output
/// heads.
fn merge(
    parts: &[f32],
    stride: usize,
    lane_stride: usize,
    blocks: usize,
    d: usize,
    out: &mut [f32],
) {
    for (h, out) in out.chunks_exact_mut(d).enumerate() {
        let head = |b: usize| &parts[b * stride + h * (d + 2)..][..d + 2];
        debug_assert!(h * (d + 2) + d + 2 <= lane_stride);
        let max = (0..blocks)
            .map(|b| head(b)[0])
            .fold(f32::NEG_INFINITY, f32::max);
        out.fill(0.0);
        let mut sum = 0.0;
        for b in 0..blocks {
            let part = head(b);
            // Exactly 1 for the block holding the maximum.
            let weight = (part[0] - max).exp();
            sum += part[1] * weight;
            for (o, a) in out.iter_mut().zip(&part[2..]) {
                *o += a * weight;
            }
        }
        let inv = 1.0 / sum;
        for o in out.iter_mut() {
            *o *= inv;
        }
    }
}

/// The CPU has AVX2, FMA and F16C: the features of the AVX2 matrix kernel.
#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    crate::qmatmul::Kernel::Avx2.is_available()
}
