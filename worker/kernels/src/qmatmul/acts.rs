//! Activations quantized to int8 per 32-value block, laid out for the kernels.
//!
//! Each block of 32 values gets the scale `d = max|x| / 127` and `q = round(x / d)`
//! (so `|q| <= 127`: never -128, which the AVX2 sign trick could not negate),
//! the same scheme llama.cpp uses for its Q8 activation blocks. A weight block
//! then contributes `d_w * d_x * sum(q_w * q_x)` plus a per-block correction
//! proportional to `s = d_x * sum(q_x)`, the sum of the quantized values:
//! - Q4_1: `m_w * s`. The result is then exactly the dot product of the
//!   weights with the rounded activations, whose error `sum(w_i * e_i)` weighs
//!   each rounding error by a weight centred on zero. Using the exact sum of
//!   `x` instead looks more precise but weighs each `e_i` by `w_i - m_w`,
//!   never negative and up to the block's whole range: about twice the error,
//!   measured against the f64 reference.
//! - Q8_0 stored as `q_w + 128`: `-128 * d_w * s`.

use rayon::prelude::*;

use super::blocks::{value_offset, Lines, CHUNK, GROUP, QK};
use super::kernel::Kernel;

/// A batch of `tokens` activation rows, quantized.
///
/// Arrays are per token, token after token. Each token's values follow
/// [`value_offset`](super::blocks::value_offset), and each token's arrays are
/// padded (values to a multiple of 128 bytes, per-block arrays to a multiple
/// of 16) with zeros, so kernels may load whole vectors past the last block.
#[derive(Default)]
pub(crate) struct QActs {
    pub(crate) tokens: usize,
    pub(crate) blocks: usize,
    /// `qs_stride()` bytes per token.
    pub(crate) qs: Lines,
    /// `coef_stride()` per token: each block's scale `d`.
    pub(crate) d: Vec<f32>,
    /// `coef_stride()` per token: each block's `d * sum(q)`.
    pub(crate) qsum: Vec<f32>,
}

impl QActs {
    pub(crate) const fn new() -> QActs {
        QActs {
            tokens: 0,
            blocks: 0,
            qs: Lines::new(),
            d: Vec::new(),
            qsum: Vec::new(),
        }
    }

    /// Bytes per token: the values rounded up to a group's 128, so every
    /// token starts on a cache line and a group's vectors stay inside it.
    pub(crate) fn qs_stride(&self) -> usize {
        (self.blocks * QK).next_multiple_of(GROUP * QK)
    }

    /// Per-token length of `d` and `qsum`: blocks rounded up to 16, so a
    /// kernel may read 16 at a time.
    pub(crate) fn coef_stride(&self) -> usize {
        self.blocks.next_multiple_of(CHUNK)
    }

    /// Quantizes `x`, `tokens` rows of `cols` values (`cols` a multiple of 32),
    /// with the instructions of `kernel`, reusing this buffer's allocations.
    /// Rows are split across the current rayon pool when there are enough of
    /// them to pay for it.
    pub(crate) fn quantize(&mut self, kernel: Kernel, x: &[f32], tokens: usize, cols: usize) {
        debug_assert_eq!(x.len(), tokens * cols);
        debug_assert_eq!(cols % QK, 0);
        self.tokens = tokens;
        self.blocks = cols / QK;
        let (qs_stride, coef_stride) = (self.qs_stride(), self.coef_stride());
        self.qs.reserve_bytes(tokens * qs_stride);
        grow(&mut self.d, tokens * coef_stride);
        grow(&mut self.qsum, tokens * coef_stride);
        let rows = x
            .chunks_exact(cols)
            .zip(self.qs.bytes_mut().chunks_exact_mut(qs_stride))
            .zip(self.d.chunks_exact_mut(coef_stride))
            .zip(self.qsum.chunks_exact_mut(coef_stride));
        let one = |(((x, qs), d), qsum): Row| {
            let blocks = x.len() / QK;
            // Padding must read as zero, whatever an earlier, differently
            // shaped call left there.
            qs[blocks * QK..].fill(0);
            d[blocks..].fill(0.0);
            qsum[blocks..].fill(0.0);
            quantize_row(kernel, x, qs, d, qsum);
        };
        if tokens >= PARALLEL_TOKENS && rayon::current_num_threads() > 1 {
            let rows: Vec<Row> = rows.collect();
            rows.into_par_iter().for_each(one);
        } else {
            rows.for_each(one);
        }
    }
}

/// Rows from which quantizing is split across threads: below it, waking a
/// second thread costs more than the few microseconds of work.
const PARALLEL_TOKENS: usize = 16;

/// One token's input and outputs, as the iterator zip in `quantize` nests them.
type Row<'a> = (((&'a [f32], &'a mut [u8]), &'a mut [f32]), &'a mut [f32]);

fn grow(v: &mut Vec<f32>, len: usize) {
    if v.len() < len {
        v.resize(len, 0.0);
    }
}

/// One row. Every copy gives the same bits: each computes the same
/// correctly rounded operations (max, one division, one multiply, rounding
/// to nearest even) on each value.
fn quantize_row(kernel: Kernel, x: &[f32], qs: &mut [u8], d: &mut [f32], qsum: &mut [f32]) {
    match kernel {
        Kernel::Scalar => quantize_row_scalar(x, qs, d, qsum),
        // SAFETY: the caller checked that the CPU runs the kernel.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { super::x86::avx2::quantize_row(x, qs, d, qsum) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512Vnni => unsafe { super::x86::avx512::quantize_row(x, qs, d, qsum) },
        #[cfg(not(target_arch = "x86_64"))]
        Kernel::Avx2 | Kernel::Avx512Vnni => unreachable!("no x86 kernels on this target"),
    }
}

fn quantize_row_scalar(x: &[f32], qs: &mut [u8], d: &mut [f32], qsum: &mut [f32]) {
    let blocks = x.len() / QK;
    for (b, v) in x.chunks_exact(QK).enumerate() {
        let amax = v
            .iter()
            .fold(0f32, |a, &x| if x.abs() > a { x.abs() } else { a });
        let (scale, inv) = scales(amax);
        let mut q = [0u8; QK];
        let mut total = 0i32;
        for (&x, q) in v.iter().zip(&mut q) {
            let r = (x * inv).round_ties_even() as i8;
            total += i32::from(r);
            *q = r as u8;
        }
        store_block(qs, blocks, b, &q);
        d[b] = scale;
        qsum[b] = scale * total as f32;
    }
}

/// The scale of a block whose largest magnitude is `amax`, and its inverse
/// (0 for an all-zero block, so every `q` is 0).
#[inline(always)]
pub(crate) fn scales(amax: f32) -> (f32, f32) {
    let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
    (amax / 127.0, inv)
}

/// Writes block `b`'s 32 quantized values into a token's layout.
#[inline(always)]
pub(crate) fn store_block(qs: &mut [u8], blocks: usize, b: usize, q: &[u8; QK]) {
    let wide = blocks / CHUNK * CHUNK;
    if b < wide {
        let (c, l) = (b / CHUNK, b % CHUNK);
        let chunk = &mut qs[c * CHUNK * QK..][..CHUNK * QK];
        for (k, four) in q.chunks_exact(4).enumerate() {
            chunk[64 * k + 4 * l..][..4].copy_from_slice(four);
        }
    } else {
        let (lo, hi) = (value_offset(blocks, b, 0), value_offset(blocks, b, 16));
        qs[lo..][..16].copy_from_slice(&q[..16]);
        qs[hi..][..16].copy_from_slice(&q[16..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel's quantizer gives the scalar one's bits, and the layout
    /// puts each value where `value_offset` says.
    #[test]
    fn quantizers_agree_bit_for_bit_and_follow_the_layout() {
        for cols in [32, 96, 160, 512, 576, 1536] {
            let tokens = 3;
            let x: Vec<f32> = (0..tokens * cols)
                .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * if i % 97 == 0 { 0.3 } else { 0.01 })
                .collect();
            let mut want = QActs::new();
            want.quantize(Kernel::Scalar, &x, tokens, cols);
            for kernel in Kernel::available() {
                let mut got = QActs::new();
                got.quantize(kernel, &x, tokens, cols);
                let n = tokens * want.qs_stride();
                assert_eq!(
                    got.qs.bytes()[..n],
                    want.qs.bytes()[..n],
                    "{kernel:?} cols {cols}"
                );
                assert_eq!(got.d, want.d, "{kernel:?} cols {cols}");
                assert_eq!(got.qsum, want.qsum, "{kernel:?} cols {cols}");
            }
            let blocks = cols / QK;
            for t in 0..tokens {
                let qs = &want.qs.bytes()[t * want.qs_stride()..];
                for b in 0..blocks {
                    let d = want.d[t * want.coef_stride() + b];
                    for i in 0..QK {
                        let q = qs[value_offset(blocks, b, i)] as i8;
                        let v = x[t * cols + b * QK + i];
                        assert!(
                            (f32::from(q) * d - v).abs() <= d / 2.0 * 1.0001,
                            "cols {cols}"
                        );
                    }
                }
            }
        }
    }
}
