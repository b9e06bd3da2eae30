//! One unit of attention with AVX2, FMA and F16C, for head sizes that are a
//! multiple of 16.
//!
//! Scores: each key row is loaded (and widened) once, 16 values at a time,
//! and multiplied into every head of the unit, two accumulators per head.
//! Weighted values: 16 columns at a time, the accumulators of every head
//! stay in registers over all the block's rows, so nothing is stored until
//! the block ends.

use std::arch::x86_64::*;

use super::{KvRows, Unit, BLOCK, MAX_HEADS};

/// See [`super::attend_block`].
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C. Of the unit: `at.d` must be a
/// multiple of 16; every row of `rows` must be in `k` and `v`, with at
/// least `at.column + d` values; `q` must hold `count * d` values, `count <=
/// MAX_HEADS`, and `part` `count * (d + 2)`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn block<K: KvRows, V: KvRows>(u: Unit, k: &K, v: &V, part: &mut [f32]) {
    let Unit { q, at, .. } = u;
    // SAFETY: forwarded from the caller.
    unsafe {
        match q.len() / at.d {
            1 => heads::<K, V, 1>(u, k, v, part),
            2 => heads::<K, V, 2>(u, k, v, part),
            3 => heads::<K, V, 3>(u, k, v, part),
            _ => heads::<K, V, MAX_HEADS>(u, k, v, part),
        }
    }
}

/// [`block`] for `H` heads.
// Each head's registers and scores are indexed by head in several arrays.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn heads<K: KvRows, V: KvRows, const H: usize>(u: Unit, k: &K, v: &V, part: &mut [f32]) {
    let Unit { q, rows, at, scale } = u;
    let (n, d) = (rows.len(), at.d);
    assert!(n <= BLOCK && q.len() >= H * d && part.len() >= H * (d + 2));
    // Padded to whole vectors; the padding is never read as a weight.
    let mut scores = [[f32::NEG_INFINITY; BLOCK]; H];
    let q = q.as_ptr();
    // SAFETY (whole body): the caller guarantees the CPU features and that
    // every row is in `k` and `v`; column offsets stay below `d`.
    unsafe {
        for (j, &r) in rows.iter().enumerate() {
            let r = r as usize;
            let mut acc = [[_mm256_setzero_ps(); 2]; H];
            for c in (0..d).step_by(16) {
                let k0 = k.load8(r, at.column + c);
                let k1 = k.load8(r, at.column + c + 8);
                for h in 0..H {
                    let qh = q.add(h * d + c);
                    acc[h][0] = _mm256_fmadd_ps(_mm256_loadu_ps(qh), k0, acc[h][0]);
                    acc[h][1] = _mm256_fmadd_ps(_mm256_loadu_ps(qh.add(8)), k1, acc[h][1]);
                }
            }
            for h in 0..H {
                scores[h][j] = hsum(_mm256_add_ps(acc[h][0], acc[h][1])) * scale;
            }
        }
        let whole = n.next_multiple_of(8);
        for h in 0..H {
            let scores = &mut scores[h][..whole];
            let max = scores[..n]
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, f32::max);
            let max8 = _mm256_set1_ps(max);
            let mut sum = _mm256_setzero_ps();
            for j in (0..whole).step_by(8) {
                let p = exp(_mm256_sub_ps(_mm256_loadu_ps(scores.as_ptr().add(j)), max8));
                // Padding lanes are -inf: exp gives 0 there, so the sum is
                // over the block's own positions only.
                _mm256_storeu_ps(scores.as_mut_ptr().add(j), p);
                sum = _mm256_add_ps(sum, p);
            }
            part[h * (d + 2)] = max;
            part[h * (d + 2) + 1] = hsum(sum);
        }
        for c in (0..d).step_by(16) {
            let mut acc = [[_mm256_setzero_ps(); 2]; H];
            for (j, &r) in rows.iter().enumerate() {
                let v0 = v.load8(r as usize, at.column + c);
                let v1 = v.load8(r as usize, at.column + c + 8);
                for h in 0..H {
                    let p = _mm256_set1_ps(scores[h][j]);
                    acc[h][0] = _mm256_fmadd_ps(p, v0, acc[h][0]);
                    acc[h][1] = _mm256_fmadd_ps(p, v1, acc[h][1]);
                }
            }
            for h in 0..H {
                let out = part.as_mut_ptr().add(h * (d + 2) + 2 + c);
                _mm256_storeu_ps(out, acc[h][0]);
                _mm256_storeu_ps(out.add(8), acc[h][1]);
            }
        }
    }
}

/// The sum of the eight lanes, in a fixed order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum(x: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// `e^x` per lane, to about 2 ulp over the range where it is a normal
/// float; 0 below it, including -inf. The classic range reduction to
/// `2^n · e^r` with `|r| <= ln 2 / 2` and a degree-6 polynomial (Cephes'
/// `expf` coefficients).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn exp(x: __m256) -> __m256 {
    // Below this e^x is subnormal: taken as 0, which a softmax weight
    // that small is anyway.
    let low = _mm256_set1_ps(-87.336_55);
    let under = _mm256_cmp_ps(x, low, _CMP_LT_OQ);
    let x = _mm256_min_ps(_mm256_max_ps(x, low), _mm256_set1_ps(88.0));
    let n = _mm256_round_ps(
        _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
    );
    // r = x - n ln 2, with ln 2 split in two for precision.
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    for c in [1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let p = _mm256_fmadd_ps(
        p,
        _mm256_mul_ps(r, r),
        _mm256_add_ps(r, _mm256_set1_ps(1.0)),
    );
    let pow2 = _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)),
        23,
    ));
    _mm256_andnot_ps(under, _mm256_mul_ps(p, pow2))
}
