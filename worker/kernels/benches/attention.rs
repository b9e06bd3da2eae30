//! Decode-step attention of SmolLM2-135M's shape (9 query heads, 3 KV heads
//! of 64, 30 layers) over the paged KV store, f16 and int8: one token per
//! sequence, for several batch sizes and context lengths, on 1 and 2
//! threads.
//!
//! `cargo bench -p mig-kernels --bench attention`
//!
//! Each layer has its own store, as in the model, so a long context streams
//! its keys and values from memory rather than from a warm cache.

use std::time::Instant;

use half::f16;
use mig_kernels::attention::{attend, Dense, Heads, KvRows, Q8Rows, SeqRows};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const HEADS: Heads = Heads {
    heads: 9,
    kv_heads: 3,
    head_dim: 64,
};
const KV_DIM: usize = 192;
const LAYERS: usize = 30;
const PAGE: usize = 16;

fn main() {
    println!("| threads | batch | context | f16 µs per step (30 layers) | per token | int8 µs per step | per token |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool");
        for (batch, context) in [(1, 128), (1, 512), (1, 2000), (8, 128), (8, 512), (16, 256)] {
            let f16 = pool.install(|| step_micros(batch, context, f16_rows));
            let q8 = pool.install(|| step_micros(batch, context, q8_rows));
            println!(
                "| {threads} | {batch} | {context} | {f16:.0} | {:.0} | {q8:.0} | {:.0} |",
                f16 / batch as f64,
                q8 / batch as f64
            );
        }
    }
}

fn f16_rows(values: &[f32]) -> Vec<f16> {
    values.iter().map(|&x| f16::from_f32(x)).collect()
}

fn q8_rows(values: &[f32]) -> Q8Rows {
    let mut rows = Q8Rows::new(values.len() / KV_DIM, KV_DIM);
    for (r, row) in values.chunks_exact(KV_DIM).enumerate() {
        rows.write(r, row);
    }
    rows
}

/// How a store of `S` is read.
trait AsRows {
    fn rows(&self) -> impl KvRows + '_;
}

impl AsRows for Vec<f16> {
    fn rows(&self) -> impl KvRows + '_ {
        Dense {
            data: self.as_slice(),
            width: KV_DIM,
        }
    }
}

impl AsRows for Q8Rows {
    fn rows(&self) -> impl KvRows + '_ {
        self
    }
}

/// Median time of one decode step of `batch` sequences at `context`, over
/// stores made by `make`.
fn step_micros<S: AsRows>(batch: usize, context: usize, make: fn(&[f32]) -> S) -> f64 {
    let q_dim = HEADS.heads * HEADS.head_dim;
    let mut rng = StdRng::seed_from_u64(7);
    let pages_per_seq = context.div_ceil(PAGE);
    let rows = batch * pages_per_seq * PAGE;
    let mut store = || -> S {
        let values: Vec<f32> = (0..rows * KV_DIM)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        make(&values)
    };
    let layers: Vec<(S, S)> = (0..LAYERS).map(|_| (store(), store())).collect();
    // Pages interleaved across sequences, as a busy store hands them out.
    let tables: Vec<Vec<u32>> = (0..batch)
        .map(|s| {
            (0..context)
                .map(|p| (((p / PAGE) * batch + s) * PAGE + p % PAGE) as u32)
                .collect()
        })
        .collect();
    let seqs: Vec<SeqRows> = tables
        .iter()
        .enumerate()
        .map(|(s, rows)| SeqRows {
            first: s,
            start: context - 1,
            len: 1,
            rows,
        })
        .collect();
    let q: Vec<f32> = (0..batch * q_dim)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let mut out = vec![0f32; batch * q_dim];
    let mut times = Vec::new();
    for run in 0..12 {
        let t0 = Instant::now();
        for (k, v) in &layers {
            attend(HEADS, &q, &k.rows(), &v.rows(), &seqs, &mut out);
        }
        if run >= 2 {
            times.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}
