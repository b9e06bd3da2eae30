use half::f16;

use super::*;

/// Straightforward attention in f64 for one token and head.
fn reference(q: &[f32], keys: &[&[f32]], values: &[&[f32]]) -> Vec<f64> {
    let d = q.len();
    let scores: Vec<f64> = keys
        .iter()
        .map(|k| q.iter().zip(*k).map(|(a, b)| f64::from(a * b)).sum::<f64>() / (d as f64).sqrt())
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

/// A deterministic pseudo-random fill in [-1, 1).
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

/// A head size the portable unit takes (not a multiple of 16).
const ODD: Heads = Heads {
    heads: 6,
    kv_heads: 2,
    head_dim: 12,
};

/// SmolLM2's shape: the AVX2 unit where the CPU has it.
const SMOL: Heads = Heads {
    heads: 9,
    kv_heads: 3,
    head_dim: 64,
};

/// Eight query heads per KV head: split into two units.
const WIDE: Heads = Heads {
    heads: 16,
    kv_heads: 2,
    head_dim: 32,
};

/// Sequence rows as [`attend`] takes them.
fn seq(first: usize, start: usize, len: usize, rows: &[u32]) -> SeqRows<'_> {
    SeqRows {
        first,
        start,
        len,
        rows,
    }
}

/// A dense store of rows as wide as `heads` need.
fn dense<T: KvElement>(data: &[T], heads: Heads) -> Dense<'_, T> {
    Dense {
        data,
        width: heads.kv_dim(),
    }
}

/// [`attend`] over dense stores of rows as wide as `heads` need.
fn attend_dense<T: KvElement>(
    heads: Heads,
    q: &[f32],
    k: &[T],
    v: &[T],
    seqs: &[SeqRows],
    out: &mut [f32],
) {
    attend(heads, q, &dense(k, heads), &dense(v, heads), seqs, out);
}

/// Checks every token and head of `out` against [`reference`].
fn check(heads: Heads, q: &[f32], k: &[f32], v: &[f32], seqs: &[SeqRows], out: &[f32]) {
    let (kv_dim, q_dim, d) = (heads.kv_dim(), heads.q_dim(), heads.head_dim);
    for seq in seqs {
        for i in 0..seq.len {
            let (t, pos) = (seq.first + i, seq.start + i);
            let rows = &seq.rows[..=pos];
            for h in 0..heads.heads {
                let col = h / heads.group() * d;
                let keys: Vec<&[f32]> = rows
                    .iter()
                    .map(|&r| &k[r as usize * kv_dim + col..][..d])
                    .collect();
                let values: Vec<&[f32]> = rows
                    .iter()
                    .map(|&r| &v[r as usize * kv_dim + col..][..d])
                    .collect();
                let want = reference(&q[t * q_dim + h * d..][..d], &keys, &values);
                let got = &out[t * q_dim + h * d..][..d];
                for (w, g) in want.iter().zip(got) {
                    assert!(
                        (w - f64::from(*g)).abs() < 2e-5,
                        "token {t} head {h}: {w} vs {g}"
                    );
                }
            }
        }
    }
}

/// Two sequences over scattered rows: one with a chunk of new tokens whose
/// context spans several blocks, one decode token.
fn matches_the_reference(heads: Heads) {
    let (kv_dim, q_dim) = (heads.kv_dim(), heads.q_dim());
    let store = 2 * BLOCK + 200;
    let k = fill(store * kv_dim, 1);
    let v = fill(store * kv_dim, 2);
    // Sequence A: 5 tokens at positions BLOCK + 60.. (two blocks);
    // sequence B: one token at position 10.
    let rows_a: Vec<u32> = (0..BLOCK as u32 + 65)
        .map(|p| (p * 7) % store as u32)
        .collect();
    let rows_b: Vec<u32> = (0..11).map(|p| store as u32 - 1 - p).collect();
    let seqs = [seq(0, BLOCK + 60, 5, &rows_a), seq(5, 10, 1, &rows_b)];
    let q = fill(6 * q_dim, 3);
    let mut out = vec![0f32; 6 * q_dim];
    attend_dense(heads, &q, &k, &v, &seqs, &mut out);
    check(heads, &q, &k, &v, &seqs, &out);
}

#[test]
fn matches_the_reference_across_sequences_heads_blocks_and_pages() {
    matches_the_reference(ODD);
    matches_the_reference(SMOL);
    matches_the_reference(WIDE);
}

#[test]
fn a_long_decode_spread_over_threads_matches_the_reference() {
    // Enough work to run on the pool: 7 blocks for one token.
    let (kv_dim, q_dim) = (SMOL.kv_dim(), SMOL.q_dim());
    let n = 6 * BLOCK + 17;
    let k = fill(n * kv_dim, 11);
    let v = fill(n * kv_dim, 12);
    let rows: Vec<u32> = (0..n as u32).rev().collect();
    let seqs = [seq(0, n - 1, 1, &rows)];
    let q = fill(q_dim, 13);
    let mut out = vec![0f32; q_dim];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    pool.install(|| attend_dense(SMOL, &q, &k, &v, &seqs, &mut out));
    check(SMOL, &q, &k, &v, &seqs, &out);
    let mut alone = vec![0f32; q_dim];
    attend_dense(SMOL, &q, &k, &v, &seqs, &mut alone);
    assert_eq!(out, alone, "the thread count changes nothing");
}

#[test]
fn an_f16_store_reads_as_its_f32_values() {
    for heads in [ODD, SMOL] {
        let (kv_dim, q_dim) = (heads.kv_dim(), heads.q_dim());
        let n = BLOCK + 12;
        // Values an f16 holds exactly, so both stores mean the same numbers.
        let exact = |seed| -> Vec<f32> {
            fill(n * kv_dim, seed)
                .iter()
                .map(|x| (x * 64.0).round() / 64.0)
                .collect()
        };
        let (k32, v32) = (exact(8), exact(9));
        let k16: Vec<f16> = k32.iter().map(|&x| f16::from_f32(x)).collect();
        let v16: Vec<f16> = v32.iter().map(|&x| f16::from_f32(x)).collect();
        let rows: Vec<u32> = (0..n as u32).collect();
        let seqs = [seq(0, n - 4, 4, &rows)];
        let q = fill(4 * q_dim, 10);
        let (mut a, mut b) = (vec![0f32; 4 * q_dim], vec![0f32; 4 * q_dim]);
        attend_dense(heads, &q, &k32, &v32, &seqs, &mut a);
        attend_dense(heads, &q, &k16, &v16, &seqs, &mut b);
        assert_eq!(a, b);
    }
}

#[test]
fn a_token_gets_the_same_bits_alone_chunked_or_batched() {
    for heads in [ODD, SMOL] {
        let (kv_dim, q_dim) = (heads.kv_dim(), heads.q_dim());
        let n = BLOCK + 20;
        let k = fill((n + 64) * kv_dim, 4);
        let v = fill((n + 64) * kv_dim, 5);
        let rows: Vec<u32> = (0..n as u32).rev().collect();
        let q = fill(n * q_dim, 6);
        // Whole prompt in one call.
        let mut whole = vec![0f32; n * q_dim];
        let prompt = seq(0, 0, n, &rows);
        attend_dense(heads, &q, &k, &v, &[prompt], &mut whole);
        // The last 7 tokens as a chunk, behind another sequence's decode token.
        let other_rows: Vec<u32> = (n as u32..n as u32 + 10).collect();
        let mut batch_q = fill(q_dim, 7);
        batch_q.extend_from_slice(&q[(n - 7) * q_dim..]);
        let mut batched = vec![0f32; 8 * q_dim];
        let seqs = [seq(0, 9, 1, &other_rows), seq(1, n - 7, 7, &rows)];
        attend_dense(heads, &batch_q, &k, &v, &seqs, &mut batched);
        assert_eq!(&batched[q_dim..], &whole[(n - 7) * q_dim..]);
    }
}

#[test]
fn the_portable_and_avx2_units_agree() {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        let values = |seed| fill(300 * 192, seed);
        let half = |x: Vec<f32>| -> Vec<f16> { x.iter().map(|&x| f16::from_f32(x)).collect() };
        let (k16, v16) = (half(values(20)), half(values(21)));
        let int8 = |x: Vec<f32>| {
            let mut rows = Q8Rows::new(300, 192);
            for (r, row) in x.chunks_exact(192).enumerate() {
                rows.write(r, row);
            }
            rows
        };
        let (k8, v8) = (int8(values(20)), int8(values(21)));
        units_agree(&dense(&k16, SMOL), &dense(&v16, SMOL));
        units_agree(&k8, &v8);
    }
}

#[cfg(target_arch = "x86_64")]
fn units_agree(k: &impl KvRows, v: &impl KvRows) {
    let d = 64;
    let at = Columns { column: 64, d };
    let rows: Vec<u32> = (0..BLOCK as u32).map(|p| (p * 13) % 300).collect();
    for count in 1..=MAX_HEADS {
        for n in [1, 7, 8, 100, BLOCK] {
            let q = fill(count * d, 22);
            let mut a = vec![0f32; count * (d + 2)];
            let mut b = a.clone();
            let unit = Unit {
                q: &q,
                rows: &rows[..n],
                at,
                scale: 0.125,
            };
            portable::block(unit, k, v, &mut a);
            // SAFETY: the CPU has AVX2 (checked by the caller); the shapes
            // are as `block` asks.
            unsafe { avx2::block(unit, k, v, &mut b) };
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-5 * x.abs().max(1.0),
                    "{count} heads, {n} rows, value {i}: {x} vs {y}"
                );
            }
        }
    }
}

#[test]
fn the_vector_exp_is_within_a_few_ulp() {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        use std::arch::x86_64::{_mm256_loadu_ps, _mm256_storeu_ps};
        let mut xs: Vec<f32> = (0..=8000).map(|i| -87.0 + i as f32 * 0.011).collect();
        xs.extend([0.0, -1e-8, f32::NEG_INFINITY, -100.0, -87.5, 5.0, 7.0, 0.5]);
        for chunk in xs.chunks_exact(8) {
            let mut got = [0f32; 8];
            // SAFETY: the CPU has AVX2 (checked); 8 lanes in and out.
            unsafe {
                _mm256_storeu_ps(got.as_mut_ptr(), avx2::exp(_mm256_loadu_ps(chunk.as_ptr())))
            };
            for (&x, &y) in chunk.iter().zip(&got) {
                let want = f64::from(x).exp();
                if want < f64::from(f32::MIN_POSITIVE) * 1.01 {
                    assert!(
                        y == 0.0 || f64::from(y) < 1.1 * f64::from(f32::MIN_POSITIVE),
                        "exp({x}) = {y}"
                    );
                } else {
                    let rel = (f64::from(y) - want).abs() / want;
                    assert!(
                        rel < 4.0 * f64::from(f32::EPSILON),
                        "exp({x}) = {y}, want {want}: {rel:e}"
                    );
                }
            }
        }
    }
}

#[test]
fn an_int8_store_reads_as_its_dequantized_values() {
    let (kv_dim, q_dim) = (SMOL.kv_dim(), SMOL.q_dim());
    let n = BLOCK + 40;
    let (mut kq, mut vq) = (Q8Rows::new(n, kv_dim), Q8Rows::new(n, kv_dim));
    let (k, v) = (fill(n * kv_dim, 30), fill(n * kv_dim, 31));
    for row in 0..n {
        kq.write(row, &k[row * kv_dim..][..kv_dim]);
        vq.write(row, &v[row * kv_dim..][..kv_dim]);
    }
    // What the int8 rows mean, within half a step of what was written.
    let mut k_read = vec![0f32; n * kv_dim];
    let mut v_read = vec![0f32; n * kv_dim];
    for row in 0..n {
        kq.read(row, 0, &mut k_read[row * kv_dim..][..kv_dim]);
        vq.read(row, 0, &mut v_read[row * kv_dim..][..kv_dim]);
    }
    for (x, y) in k.iter().chain(&v).zip(k_read.iter().chain(&v_read)) {
        assert!((x - y).abs() <= 1.0 / 254.0 + 1e-6, "{x} read back as {y}");
    }
    let rows: Vec<u32> = (0..n as u32).map(|p| (p * 5) % n as u32).collect();
    let seqs = [seq(0, n - 3, 3, &rows)];
    let q = fill(3 * q_dim, 32);
    let (mut a, mut b) = (vec![0f32; 3 * q_dim], vec![0f32; 3 * q_dim]);
    attend(SMOL, &q, &kq, &vq, &seqs, &mut a);
    attend_dense(SMOL, &q, &k_read, &v_read, &seqs, &mut b);
    assert_eq!(a, b);
    let mut odd = Q8Rows::new(n, 64);
    odd.write(0, &[0.0; 64]);
    let mut zeros = [1f32; 64];
    odd.read(0, 0, &mut zeros);
    assert_eq!(zeros, [0.0; 64], "an all-zero block stays zero");
}

#[test]
#[should_panic(expected = "past the store")]
fn a_row_past_the_store_is_refused() {
    let kv_dim = SMOL.kv_dim();
    let k = vec![0f32; 4 * kv_dim];
    let rows = [0u32, 1, 9];
    let seqs = [seq(0, 2, 1, &rows)];
    let mut out = vec![0f32; SMOL.q_dim()];
    attend(
        SMOL,
        &vec![0.0; SMOL.q_dim()],
        &dense(&k, SMOL),
        &dense(&k, SMOL),
        &seqs,
        &mut out,
    );
}
