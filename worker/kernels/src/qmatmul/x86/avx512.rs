//! AVX-512 VNNI tiles and activation quantizer.
//!
//! A chunk of 16 blocks (512 values) is eight 64-byte activation vectors per
//! token; with the layout of [`crate::qmatmul::blocks`], each `vpdpbusd` adds four
//! products of every block to that block's own 32-bit lane. After the chunk,
//! one multiply by the 16 blocks' `d_w * d_x` and one FMA fold it into the
//! float accumulator: 8 integer and 3 float instructions per 512 values per
//! (row, token). The tail past the last whole chunk goes a group of four
//! blocks at a time, one block per 128-bit quarter.

use std::arch::x86_64::*;

use crate::qmatmul::acts::{scales, store_block};
use crate::qmatmul::blocks::{QFormat, CHUNK, GROUP, QK};
use crate::qmatmul::kernel::{pick_tile, Tile, TileFn};

pub(crate) fn tile_fn(format: QFormat, rows: usize, tokens: usize) -> TileFn {
    match format {
        QFormat::Q4_1 => pick_tile!(tile, Q4_1, rows, tokens),
        QFormat::Q8_0 => pick_tile!(tile, Q8_0, rows, tokens),
    }
}

/// How packed rows meet the activations, per format.
trait Weights {
    /// Packed bytes of one chunk of one row.
    const CHUNK_BYTES: usize;
    /// What multiplies `coef_w * d_x * sum(q_x)`: 1 for Q4_1's minimum, -128
    /// for Q8_0's `+128` storage.
    const COEF: f32;
    /// Adds chunk `c`'s integer dot products of every (row, token) to `dot`.
    unsafe fn chunk<const R: usize, const T: usize>(
        dot: &mut [[__m512i; T]; R],
        wq: &[*const u8; R],
        xq: &[*const u8; T],
        c: usize,
    );
    /// Tail group `g` (of `n` blocks) of a row whose tail starts at `tail`:
    /// values 0..16 of each block by quarter, then values 16..32; for `n <= 2`
    /// both in the first vector (the second zero), as in the activations.
    unsafe fn group(tail: *const u8, g: usize, n: usize) -> (__m512i, __m512i);
}

struct Q4_1;
struct Q8_0;

impl Weights for Q4_1 {
    const CHUNK_BYTES: usize = CHUNK * QK / 2;
    const COEF: f32 = 1.0;

    #[inline(always)]
    unsafe fn chunk<const R: usize, const T: usize>(
        dot: &mut [[__m512i; T]; R],
        wq: &[*const u8; R],
        xq: &[*const u8; T],
        c: usize,
    ) {
        // Nibble vector k holds values 4k.. (low) and 16 + 4k.. (high) of
        // each block, which meet activation vectors k and k + 4.
        for k in 0..4 {
            let mut lo = [_mm512_setzero_si512(); R];
            let mut hi = [_mm512_setzero_si512(); R];
            for r in 0..R {
                let v = _mm512_loadu_si512(wq[r].add(c * Self::CHUNK_BYTES + 64 * k).cast());
                (lo[r], hi[r]) = nibbles(v);
            }
            for j in 0..T {
                let x = xq[j].add(c * CHUNK * QK);
                let xlo = _mm512_load_si512(x.add(64 * k).cast());
                let xhi = _mm512_load_si512(x.add(64 * (k + 4)).cast());
                for r in 0..R {
                    dot[r][j] = _mm512_dpbusd_epi32(dot[r][j], lo[r], xlo);
                    dot[r][j] = _mm512_dpbusd_epi32(dot[r][j], hi[r], xhi);
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn group(tail: *const u8, g: usize, n: usize) -> (__m512i, __m512i) {
        let v = _mm512_maskz_loadu_epi8(byte_mask(16 * n), tail.add(64 * g).cast());
        let (lo, hi) = nibbles(v);
        match n {
            1 => (
                _mm512_inserti32x4::<1>(lo, _mm512_castsi512_si128(hi)),
                _mm512_setzero_si512(),
            ),
            2 => (
                _mm512_inserti64x4::<1>(lo, _mm512_castsi512_si256(hi)),
                _mm512_setzero_si512(),
            ),
            _ => (lo, hi),
        }
    }
}

impl Weights for Q8_0 {
    const CHUNK_BYTES: usize = CHUNK * QK;
    const COEF: f32 = -128.0;

    #[inline(always)]
    unsafe fn chunk<const R: usize, const T: usize>(
        dot: &mut [[__m512i; T]; R],
        wq: &[*const u8; R],
        xq: &[*const u8; T],
        c: usize,
    ) {
        for k in 0..8 {
            let mut v = [_mm512_setzero_si512(); R];
            for r in 0..R {
                v[r] = _mm512_loadu_si512(wq[r].add(c * Self::CHUNK_BYTES + 64 * k).cast());
            }
            for j in 0..T {
                let x = _mm512_load_si512(xq[j].add(c * CHUNK * QK + 64 * k).cast());
                for r in 0..R {
                    dot[r][j] = _mm512_dpbusd_epi32(dot[r][j], v[r], x);
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn group(tail: *const u8, g: usize, n: usize) -> (__m512i, __m512i) {
        let p = tail.add(GROUP * QK * g);
        if n <= 2 {
            let v = _mm512_maskz_loadu_epi8(byte_mask(32 * n), p.cast());
            (v, _mm512_setzero_si512())
        } else {
            let mask = byte_mask(16 * n);
            (
                _mm512_maskz_loadu_epi8(mask, p.cast()),
                _mm512_maskz_loadu_epi8(mask, p.add(16 * n).cast()),
            )
        }
    }
}

#[inline(always)]
unsafe fn nibbles(v: __m512i) -> (__m512i, __m512i) {
    let low = _mm512_set1_epi8(0x0f);
    (
        _mm512_and_si512(v, low),
        _mm512_and_si512(_mm512_srli_epi16::<4>(v), low),
    )
}

fn byte_mask(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Loads `n <= 16` f16 values as f32, zero past them.
#[inline(always)]
unsafe fn load_f16(p: *const u16, n: usize) -> __m512 {
    let mask = if n >= 16 { u16::MAX } else { (1u16 << n) - 1 };
    _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, p.cast()))
}

/// # Safety
/// See [`TileFn`]; needs AVX-512 F/BW/VL, VNNI, F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn tile<W: Weights, const R: usize, const T: usize>(t: &Tile<'_>) {
    let (w, x) = (t.w, t.x);
    let blocks = w.blocks;
    let row = |r: usize| t.row0 + r;
    let tok = |j: usize| t.tok0 + j;
    let wq: [*const u8; R] =
        std::array::from_fn(|r| w.qs.bytes().as_ptr().add(row(r) * w.row_bytes));
    let wd: [*const u16; R] = std::array::from_fn(|r| w.d.as_ptr().add(row(r) * blocks));
    let wc: [*const u16; R] = std::array::from_fn(|r| w.coef().as_ptr().add(row(r) * blocks));
    let xq: [*const u8; T] =
        std::array::from_fn(|j| x.qs.bytes().as_ptr().add(tok(j) * x.qs_stride()));
    let xd: [*const f32; T] = std::array::from_fn(|j| x.d.as_ptr().add(tok(j) * x.coef_stride()));
    let xs: [*const f32; T] =
        std::array::from_fn(|j| x.qsum.as_ptr().add(tok(j) * x.coef_stride()));
    let coef = _mm512_set1_ps(W::COEF);
    let mut acc = [[_mm512_setzero_ps(); T]; R];

    let chunks = blocks / CHUNK;
    for c in 0..chunks {
        let mut dot = [[_mm512_setzero_si512(); T]; R];
        W::chunk(&mut dot, &wq, &xq, c);
        let b = c * CHUNK;
        for r in 0..R {
            let dw = _mm512_cvtph_ps(_mm256_loadu_si256(wd[r].add(b).cast()));
            let cw = _mm512_mul_ps(
                _mm512_cvtph_ps(_mm256_loadu_si256(wc[r].add(b).cast())),
                coef,
            );
            for j in 0..T {
                let scale = _mm512_mul_ps(dw, _mm512_loadu_ps(xd[j].add(b)));
                acc[r][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[r][j]), scale, acc[r][j]);
                acc[r][j] = _mm512_fmadd_ps(cw, _mm512_loadu_ps(xs[j].add(b)), acc[r][j]);
            }
        }
    }

    let first = chunks * CHUNK;
    let rest = blocks - first;
    if rest > 0 {
        // Per-block activation arrays are zero past the last block, and so
        // is every masked weight load.
        let mut dw = [_mm512_setzero_ps(); R];
        for r in 0..R {
            dw[r] = load_f16(wd[r].add(first), rest);
            let cw = _mm512_mul_ps(load_f16(wc[r].add(first), rest), coef);
            for j in 0..T {
                acc[r][j] = _mm512_fmadd_ps(cw, _mm512_loadu_ps(xs[j].add(first)), acc[r][j]);
            }
        }
        let mut dx = [_mm512_setzero_ps(); T];
        for j in 0..T {
            dx[j] = _mm512_loadu_ps(xd[j].add(first));
        }
        for g in 0..rest.div_ceil(GROUP) {
            let n = GROUP.min(rest - GROUP * g);
            let spread = spread_index(g, n);
            let mut lo = [_mm512_setzero_si512(); R];
            let mut hi = [_mm512_setzero_si512(); R];
            let mut dws = [_mm512_setzero_ps(); R];
            for r in 0..R {
                (lo[r], hi[r]) = W::group(wq[r].add(chunks * W::CHUNK_BYTES), g, n);
                dws[r] = _mm512_permutexvar_ps(spread, dw[r]);
            }
            for j in 0..T {
                let xg = xq[j].add(first * QK + GROUP * QK * g);
                let xlo = _mm512_loadu_si512(xg.cast());
                let xhi = _mm512_loadu_si512(xg.add(16 * n).cast());
                let dxs = _mm512_permutexvar_ps(spread, dx[j]);
                for r in 0..R {
                    let mut dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[r], xlo);
                    if n > 2 {
                        dot = _mm512_dpbusd_epi32(dot, hi[r], xhi);
                    }
                    let scale = _mm512_mul_ps(dws[r], dxs);
                    acc[r][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc[r][j]);
                }
            }
        }
    }

    let outs: [*mut f32; T] = std::array::from_fn(|j| t.out.add(tok(j) * t.out_stride + t.row0));
    for (j, &out) in outs.iter().enumerate() {
        let mut r = 0;
        while r + 4 <= R {
            let sums = reduce4([acc[r][j], acc[r + 1][j], acc[r + 2][j], acc[r + 3][j]]);
            _mm_storeu_ps(out.add(r), sums);
            r += 4;
        }
        while r < R {
            *out.add(r) = reduce1(acc[r][j]);
            r += 1;
        }
    }
}

/// For tail group `g` of `n` blocks: lane quarter `q` takes the scale of tail
/// block `4g + q`, or `4g + q % n` when the group's values share one vector.
#[inline(always)]
unsafe fn spread_index(g: usize, n: usize) -> __m512i {
    let idx: [i32; 16] = std::array::from_fn(|lane| {
        let q = lane / 4;
        (GROUP * g + if n <= 2 { q % n } else { q }) as i32
    });
    _mm512_loadu_si512(idx.as_ptr().cast())
}

/// The sums of four vectors' lanes, in order: three horizontal adds do the
/// work of twelve separate reductions' shuffles. [`reduce1`] adds in the same
/// order, so a token's result does not depend on the tile it was in, nor so
/// on the batch around it.
#[inline(always)]
unsafe fn reduce4(v: [__m512; 4]) -> __m128 {
    let mut h = [_mm256_setzero_ps(); 4];
    for (h, v) in h.iter_mut().zip(v) {
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        *h = _mm256_add_ps(_mm512_castps512_ps256(v), hi);
    }
    let h = _mm256_hadd_ps(_mm256_hadd_ps(h[0], h[1]), _mm256_hadd_ps(h[2], h[3]));
    _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h))
}

/// The sum of one vector's lanes, added in [`reduce4`]'s order.
#[inline(always)]
unsafe fn reduce1(v: __m512) -> f32 {
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    let h = _mm256_add_ps(_mm512_castps512_ps256(v), hi);
    let h = _mm256_hadd_ps(h, h);
    let h = _mm256_hadd_ps(h, h);
    _mm_cvtss_f32(_mm_add_ss(
        _mm256_castps256_ps128(h),
        _mm256_extractf128_ps::<1>(h),
    ))
}

/// [`QActs`](crate::qmatmul::acts::QActs) rows, 32 values per step; same bits as
/// the scalar quantizer.
///
/// # Safety
/// Needs AVX-512 F/BW/VL. `qs`, `d`, `qsum` are one token's, as
/// `QActs::quantize` cuts them.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(crate) unsafe fn quantize_row(x: &[f32], qs: &mut [u8], d: &mut [f32], qsum: &mut [f32]) {
    let blocks = x.len() / QK;
    for (b, v) in x.chunks_exact(QK).enumerate() {
        let lo = _mm512_loadu_ps(v.as_ptr());
        let hi = _mm512_loadu_ps(v.as_ptr().add(16));
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
        let (scale, inv) = scales(amax);
        let inv = _mm512_set1_ps(inv);
        const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
        let qlo = _mm512_cvt_roundps_epi32::<NEAREST>(_mm512_mul_ps(lo, inv));
        let qhi = _mm512_cvt_roundps_epi32::<NEAREST>(_mm512_mul_ps(hi, inv));
        let total = _mm512_reduce_add_epi32(_mm512_add_epi32(qlo, qhi));
        let mut q = [0u8; QK];
        _mm_storeu_si128(q.as_mut_ptr().cast(), _mm512_cvtepi32_epi8(qlo));
        _mm_storeu_si128(q.as_mut_ptr().add(16).cast(), _mm512_cvtepi32_epi8(qhi));
        store_block(qs, blocks, b, &q);
        d[b] = scale;
        qsum[b] = scale * total as f32;
    }
}
