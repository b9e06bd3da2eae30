//! AVX2 tiles and activation quantizer.
//!
//! `vpmaddubsw` multiplies unsigned weight bytes by signed activation bytes
//! into saturating i16 pairs, `vpmaddwd` by ones widens them to i32. A chunk
//! of 16 blocks is done as two halves of eight, one block per 32-bit lane
//! (see [`crate::qmatmul::blocks`]), with one float scale step per half.
//! - Q4_1 pairs are at most `2 * 15 * 127`, so all eight products of a half
//!   (`8 * 3810 < 32767`) add up in i16 before widening.
//! - Q8_0 bytes are signed: `+128` storage would overflow the i16 pairs
//!   (`2 * 255 * 127`), so they are turned back into `i8` and multiplied as
//!   `|w| * (x * sign(w))`, at most `2 * 128 * 127`, widened at each step.
//!
//! The tail past the last whole chunk goes half a group (two blocks, one per
//! 128-bit lane) at a time.

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
    /// Whether blocks add `m_w * d_x * sum(q_x)` (Q4_1's minimum). Q8_0 needs
    /// no correction here because it multiplies the signed values themselves.
    const MIN_TERM: bool;
    /// i32 dot products of half `h` of chunk `c` for every (row, token).
    unsafe fn half_chunk<const R: usize, const T: usize>(
        wq: &[*const u8; R],
        xq: &[*const u8; T],
        c: usize,
        h: usize,
    ) -> [[__m256i; T]; R];
    /// Half `h` of tail group `g`, which has `n` blocks, of a row whose tail
    /// starts at `tail`: values 0..16 and 16..32 of blocks `2h` and `2h + 1`
    /// (the upper lane zero when only block `2h` exists). Values 16..32 of a
    /// group start `16 * n` bytes after its values 0..16.
    unsafe fn half_group(tail: *const u8, g: usize, n: usize, h: usize) -> (__m256i, __m256i);
    /// i32 partial sums of a tail half group against the activation vectors.
    unsafe fn dot(lo: __m256i, hi: __m256i, xlo: __m256i, xhi: __m256i) -> __m256i;
}

struct Q4_1;
struct Q8_0;

impl Weights for Q4_1 {
    const CHUNK_BYTES: usize = CHUNK * QK / 2;
    const MIN_TERM: bool = true;

    #[inline(always)]
    unsafe fn half_chunk<const R: usize, const T: usize>(
        wq: &[*const u8; R],
        xq: &[*const u8; T],
        c: usize,
        h: usize,
    ) -> [[__m256i; T]; R] {
        let mut pairs = [[_mm256_setzero_si256(); T]; R];
        for k in 0..4 {
            let mut lo = [_mm256_setzero_si256(); R];
            let mut hi = [_mm256_setzero_si256(); R];
            for r in 0..R {
                let at = c * Self::CHUNK_BYTES + 64 * k + 32 * h;
                (lo[r], hi[r]) = nibbles(_mm256_loadu_si256(wq[r].add(at).cast()));
            }
            for j in 0..T {
                let x = xq[j].add(c * CHUNK * QK + 32 * h);
                let xlo = _mm256_load_si256(x.add(64 * k).cast());
                let xhi = _mm256_load_si256(x.add(64 * (k + 4)).cast());
                for r in 0..R {
                    let p = _mm256_add_epi16(
                        _mm256_maddubs_epi16(lo[r], xlo),
                        _mm256_maddubs_epi16(hi[r], xhi),
                    );
                    pairs[r][j] = _mm256_add_epi16(pairs[r][j], p);
                }
            }
        }
        // No closures with intrinsics here: closures do not inherit the
        // caller's target features, so their intrinsics would not inline.
        let ones = _mm256_set1_epi16(1);
        for row in &mut pairs {
            for p in row {
                *p = _mm256_madd_epi16(*p, ones);
            }
        }
        pairs
    }

    #[inline(always)]
    unsafe fn half_group(tail: *const u8, g: usize, n: usize, h: usize) -> (__m256i, __m256i) {
        let p = tail.add(64 * g + 32 * h);
        let v = if n >= 2 * h + 2 {
            _mm256_loadu_si256(p.cast())
        } else {
            _mm256_zextsi128_si256(_mm_loadu_si128(p.cast()))
        };
        nibbles(v)
    }

    #[inline(always)]
    unsafe fn dot(lo: __m256i, hi: __m256i, xlo: __m256i, xhi: __m256i) -> __m256i {
        let pairs = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xlo), _mm256_maddubs_epi16(hi, xhi));
        _mm256_madd_epi16(pairs, _mm256_set1_epi16(1))
    }
}

impl Weights for Q8_0 {
    const CHUNK_BYTES: usize = CHUNK * QK;
    const MIN_TERM: bool = false;

    #[inline(always)]
    unsafe fn half_chunk<const R: usize, const T: usize>(
        wq: &[*const u8; R],
        xq: &[*const u8; T],
        c: usize,
        h: usize,
    ) -> [[__m256i; T]; R] {
        let mut dot = [[_mm256_setzero_si256(); T]; R];
        let flip = _mm256_set1_epi8(-128);
        let ones = _mm256_set1_epi16(1);
        for k in 0..8 {
            let mut w = [_mm256_setzero_si256(); R];
            let mut abs = [_mm256_setzero_si256(); R];
            for r in 0..R {
                let at = c * Self::CHUNK_BYTES + 64 * k + 32 * h;
                w[r] = _mm256_xor_si256(_mm256_loadu_si256(wq[r].add(at).cast()), flip);
                abs[r] = _mm256_sign_epi8(w[r], w[r]);
            }
            for j in 0..T {
                let x = _mm256_load_si256(xq[j].add(c * CHUNK * QK + 64 * k + 32 * h).cast());
                for r in 0..R {
                    let p = _mm256_maddubs_epi16(abs[r], _mm256_sign_epi8(x, w[r]));
                    dot[r][j] = _mm256_add_epi32(dot[r][j], _mm256_madd_epi16(p, ones));
                }
            }
        }
        dot
    }

    #[inline(always)]
    unsafe fn half_group(tail: *const u8, g: usize, n: usize, h: usize) -> (__m256i, __m256i) {
        let p = tail.add(GROUP * QK * g + 32 * h);
        if n >= 2 * h + 2 {
            let flip = _mm256_set1_epi8(-128);
            (
                _mm256_xor_si256(_mm256_loadu_si256(p.cast()), flip),
                _mm256_xor_si256(_mm256_loadu_si256(p.add(16 * n).cast()), flip),
            )
        } else {
            // One block: the upper lane stays zero, so it multiplies nothing
            // (the activations there are the block's other half).
            let flip = _mm_set1_epi8(-128);
            (
                _mm256_zextsi128_si256(_mm_xor_si128(_mm_loadu_si128(p.cast()), flip)),
                _mm256_zextsi128_si256(_mm_xor_si128(_mm_loadu_si128(p.add(16 * n).cast()), flip)),
            )
        }
    }

    #[inline(always)]
    unsafe fn dot(lo: __m256i, hi: __m256i, xlo: __m256i, xhi: __m256i) -> __m256i {
        let ones = _mm256_set1_epi16(1);
        let a = _mm256_maddubs_epi16(_mm256_sign_epi8(lo, lo), _mm256_sign_epi8(xlo, lo));
        let b = _mm256_maddubs_epi16(_mm256_sign_epi8(hi, hi), _mm256_sign_epi8(xhi, hi));
        _mm256_add_epi32(_mm256_madd_epi16(a, ones), _mm256_madd_epi16(b, ones))
    }
}

#[inline(always)]
unsafe fn nibbles(v: __m256i) -> (__m256i, __m256i) {
    let low = _mm256_set1_epi8(0x0f);
    (
        _mm256_and_si256(v, low),
        _mm256_and_si256(_mm256_srli_epi16::<4>(v), low),
    )
}

/// Loads `n` (at most 8 are used) f16 values as f32, zero past them,
/// reading nothing past them. Built from scalar loads rather than copied
/// through the stack, whose narrow stores a wide load cannot forward from.
#[inline(always)]
unsafe fn load_f16(p: *const u16, n: usize) -> __m256 {
    let h = if n >= 8 {
        _mm_loadu_si128(p.cast())
    } else {
        let word = |i: usize| i32::from(p.add(i).read_unaligned());
        let mut h = if n >= 4 {
            _mm_loadl_epi64(p.cast())
        } else {
            _mm_setzero_si128()
        };
        let start = if n >= 4 { 4 } else { 0 };
        for i in start..n {
            h = match i {
                0 => _mm_insert_epi16::<0>(h, word(0)),
                1 => _mm_insert_epi16::<1>(h, word(1)),
                2 => _mm_insert_epi16::<2>(h, word(2)),
                4 => _mm_insert_epi16::<4>(h, word(4)),
                5 => _mm_insert_epi16::<5>(h, word(5)),
                _ => _mm_insert_epi16::<6>(h, word(6)),
            };
        }
        h
    };
    _mm256_cvtph_ps(h)
}

/// # Safety
/// See [`TileFn`]; needs AVX2, FMA, F16C.
#[target_feature(enable = "avx2,fma,f16c")]
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
    let mut acc = [[_mm256_setzero_ps(); T]; R];

    let chunks = blocks / CHUNK;
    for c in 0..chunks {
        for h in 0..2 {
            let dot = W::half_chunk(&wq, &xq, c, h);
            let b = c * CHUNK + 8 * h;
            for r in 0..R {
                let dw = load_f16(wd[r].add(b), 8);
                for j in 0..T {
                    let scale = _mm256_mul_ps(dw, _mm256_loadu_ps(xd[j].add(b)));
                    acc[r][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[r][j]), scale, acc[r][j]);
                }
            }
        }
    }

    let first = chunks * CHUNK;
    let rest = blocks - first;
    for g in 0..rest.div_ceil(GROUP) {
        let n = GROUP.min(rest - GROUP * g);
        let b = first + GROUP * g;
        let mut dw = [_mm_setzero_ps(); R];
        for r in 0..R {
            dw[r] = _mm256_castps256_ps128(load_f16(wd[r].add(b), n));
        }
        for h in 0..n.div_ceil(2) {
            let mut lo = [_mm256_setzero_si256(); R];
            let mut hi = [_mm256_setzero_si256(); R];
            for r in 0..R {
                (lo[r], hi[r]) = W::half_group(wq[r].add(chunks * W::CHUNK_BYTES), g, n, h);
            }
            // Lane half i takes the scale of block 2h + i of the group.
            let spread = _mm256_set_epi32(
                2 * h as i32 + 1,
                2 * h as i32 + 1,
                2 * h as i32 + 1,
                2 * h as i32 + 1,
                2 * h as i32,
                2 * h as i32,
                2 * h as i32,
                2 * h as i32,
            );
            for j in 0..T {
                // Past the row's last block the activations are zero.
                let xg = xq[j].add(first * QK + GROUP * QK * g + 32 * h);
                let xlo = _mm256_loadu_si256(xg.cast());
                let xhi = _mm256_loadu_si256(xg.add(16 * n).cast());
                // Four scales: `d` is padded to a multiple of 16 per token.
                let dx = _mm_loadu_ps(xd[j].add(b));
                for r in 0..R {
                    let dot = W::dot(lo[r], hi[r], xlo, xhi);
                    let scale = _mm256_castps128_ps256(_mm_mul_ps(dw[r], dx));
                    let scale = _mm256_permutevar8x32_ps(scale, spread);
                    acc[r][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc[r][j]);
                }
            }
        }
    }

    if W::MIN_TERM {
        for b in (0..blocks).step_by(8) {
            for r in 0..R {
                let cw = load_f16(wc[r].add(b), blocks - b);
                for j in 0..T {
                    // `qsum` is padded with zeros to a multiple of 16 per token.
                    let s = _mm256_loadu_ps(xs[j].add(b));
                    acc[r][j] = _mm256_fmadd_ps(cw, s, acc[r][j]);
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
            *out.add(r) = hsum(acc[r][j]);
            r += 1;
        }
    }
}

/// The sum of one vector's lanes, added in [`reduce4`]'s order.
#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let h = _mm256_hadd_ps(v, v);
    let h = _mm256_hadd_ps(h, h);
    _mm_cvtss_f32(_mm_add_ss(
        _mm256_castps256_ps128(h),
        _mm256_extractf128_ps::<1>(h),
    ))
}

/// The sums of four vectors' lanes, in order. [`hsum`] adds in the same
/// order, so a token's result does not depend on the tile it was in, nor so
/// on the batch around it.
#[inline(always)]
unsafe fn reduce4(v: [__m256; 4]) -> __m128 {
    let h = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h))
}

/// [`QActs`](crate::qmatmul::acts::QActs) rows, 32 values per step; same bits as
/// the scalar quantizer.
///
/// # Safety
/// Needs AVX2. `qs`, `d`, `qsum` are one token's, as `QActs::quantize` cuts
/// them.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn quantize_row(x: &[f32], qs: &mut [u8], d: &mut [f32], qsum: &mut [f32]) {
    let blocks = x.len() / QK;
    let sign = _mm256_set1_ps(-0.0);
    for (b, v) in x.chunks_exact(QK).enumerate() {
        let p = v.as_ptr();
        let v = [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ];
        let mut m = _mm256_setzero_ps();
        for v in v {
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v));
        }
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_movehdup_ps(m));
        let (scale, inv) = scales(_mm_cvtss_f32(m));
        let inv = _mm256_set1_ps(inv);
        const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
        let mut q = [_mm256_setzero_si256(); 4];
        for (q, v) in q.iter_mut().zip(v) {
            *q = _mm256_cvtps_epi32(_mm256_round_ps::<NEAREST>(_mm256_mul_ps(v, inv)));
        }
        let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        let total = _mm_cvtsi128_si32(s);
        // Packing works per 128-bit lane; the permute puts the 32-bit
        // pieces (four values each) back in order.
        let bytes = _mm256_packs_epi16(
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        );
        let bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_set_epi32(7, 3, 6, 2, 5, 1, 4, 0));
        let mut out = [0u8; QK];
        _mm256_storeu_si256(out.as_mut_ptr().cast(), bytes);
        store_block(qs, blocks, b, &out);
        d[b] = scale;
        qsum[b] = scale * total as f32;
    }
}
