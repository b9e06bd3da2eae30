//! One unit of attention on any CPU: plain loops the compiler vectorizes as
//! it can. The AVX2 unit computes the same, faster.

use super::{KvRows, Unit, BLOCK, MAX_HEADS, MAX_HEAD_DIM};

/// See [`super::attend_block`].
pub(super) fn block<K: KvRows, V: KvRows>(u: Unit, k: &K, v: &V, part: &mut [f32]) {
    let Unit { q, rows, at, scale } = u;
    let (n, d) = (rows.len(), at.d);
    let count = q.len() / d;
    debug_assert!(n <= BLOCK && count <= MAX_HEADS && d <= MAX_HEAD_DIM);
    let mut row = [0f32; MAX_HEAD_DIM];
    let row = &mut row[..d];
    let mut scores = [[0f32; BLOCK]; MAX_HEADS];
    for (j, &r) in rows.iter().enumerate() {
        k.read(r as usize, at.column, row);
        for (h, scores) in scores[..count].iter_mut().enumerate() {
            scores[j] = dot(&q[h * d..][..d], row) * scale;
        }
    }
    let part = &mut part[..count * (d + 2)];
    for (scores, part) in scores.iter_mut().zip(part.chunks_exact_mut(d + 2)) {
        let scores = &mut scores[..n];
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        part[0] = max;
        part[1] = sum;
        part[2..].fill(0.0);
    }
    for (j, &r) in rows.iter().enumerate() {
        v.read(r as usize, at.column, row);
        for (scores, part) in scores.iter().zip(part.chunks_exact_mut(d + 2)) {
            let p = scores[j];
            for (acc, x) in part[2..].iter_mut().zip(row.iter()) {
                *acc += p * x;
            }
        }
    }
}

/// Eight partial sums, added in a fixed order: vectorizes.
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
