//! The portable tile: plain Rust over the same layouts as the SIMD kernels,
//! one block at a time. It is the fallback on CPUs without AVX2 (aarch64
//! included) and the reference the SIMD kernels are tested against; integer
//! sums are exact, so they differ from it only in the order of float
//! additions.

use super::blocks::{f16_to_f32, gather_nibbles, gather_values, QFormat, QK};
use super::kernel::{pick_tile, Tile, TileFn};

pub(crate) fn tile_fn(format: QFormat, rows: usize, tokens: usize) -> TileFn {
    match format {
        QFormat::Q4_1 => pick_tile!(tile, Q4_1, rows, tokens),
        QFormat::Q8_0 => pick_tile!(tile, Q8_0, rows, tokens),
    }
}

/// How a format's block meets an activation block.
trait Weights {
    /// Block `b`'s values as integers, from a packed row of `blocks` blocks.
    fn values(row: &[u8], blocks: usize, b: usize) -> [i32; QK];
    /// Whether the block adds `m_w * d_x * sum(q_x)` (Q4_1's minimum).
    const MIN_TERM: bool;
}

struct Q4_1;
struct Q8_0;

impl Weights for Q4_1 {
    fn values(row: &[u8], blocks: usize, b: usize) -> [i32; QK] {
        let mut v = [0; QK];
        for (i, q) in gather_nibbles(row, blocks, b).into_iter().enumerate() {
            v[i] = i32::from(q & 0x0f);
            v[i + 16] = i32::from(q >> 4);
        }
        v
    }
    const MIN_TERM: bool = true;
}

impl Weights for Q8_0 {
    fn values(row: &[u8], blocks: usize, b: usize) -> [i32; QK] {
        gather_values(row, blocks, b).map(|q| i32::from((q ^ 0x80) as i8))
    }
    const MIN_TERM: bool = false;
}

/// # Safety
/// See [`TileFn`]; this one needs no CPU features.
unsafe fn tile<W: Weights, const R: usize, const T: usize>(t: &Tile<'_>) {
    let (w, x) = (t.w, t.x);
    let blocks = w.blocks;
    for r in 0..R {
        let row = t.row0 + r;
        let qs = w.row_qs(row);
        let d = &w.d[row * blocks..][..blocks];
        let c = &w.coef()[row * blocks..][..blocks];
        for j in 0..T {
            let tok = t.tok0 + j;
            let xq = &x.qs.bytes()[tok * x.qs_stride()..][..x.qs_stride()];
            let xd = &x.d[tok * x.coef_stride()..][..blocks];
            let xs = &x.qsum[tok * x.coef_stride()..][..blocks];
            let mut acc = 0f32;
            for b in 0..blocks {
                let wv = W::values(qs, blocks, b);
                let xv = gather_values(xq, blocks, b);
                let s: i32 = wv
                    .iter()
                    .zip(xv)
                    .map(|(&w, x)| w * i32::from(x as i8))
                    .sum();
                acc += f16_to_f32(d[b]) * xd[b] * s as f32;
                if W::MIN_TERM {
                    acc += f16_to_f32(c[b]) * xs[b];
                }
            }
            // SAFETY: the caller guarantees this element is the tile's to write.
            unsafe { *t.out.add(tok * t.out_stride + row) = acc };
        }
    }
}
