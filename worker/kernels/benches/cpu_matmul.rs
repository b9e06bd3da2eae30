//! Quantized matrix products of SmolLM2-135M's shapes: ours (`qmatmul::QMatrix`)
//! against candle's `QMatMul::forward` on the same tensors, with 1 and 2
//! threads, then every matrix of the model in the order a forward pass uses
//! them.
//!
//! `cargo bench -p mig-kernels --bench cpu_matmul`
//!
//! Each (implementation, thread count) runs in a child process of this
//! binary: candle's quantized product uses its own thread pool, sized once
//! per process from `CANDLE_NUM_THREADS`, whose threads may keep spinning
//! after a call and must not share the cores with ours.

use std::collections::HashMap;
use std::process::Command;
use std::time::Instant;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use mig_kernels::qmatmul::{Kernel, QMatrix};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Set in a child: `ours`, `avx2` (ours on the AVX2 kernel) or `candle`,
/// a colon, and the thread count.
const CHILD_ENV: &str = "MIG_BENCH_CHILD";

const TOKENS: [usize; 5] = [1, 4, 8, 16, 128];
/// Tokens per pass of the whole model: decode, a batch of 8 decodes, prefill.
const MODEL_TOKENS: [usize; 3] = [1, 8, 128];
const LAYERS: usize = 30;

/// A matrix of the model: its name, type, rows (outputs), cols (inputs), and
/// how many of it one layer has (0: the output head, once per model).
struct Shape {
    name: &'static str,
    dtype: GgmlDType,
    rows: usize,
    cols: usize,
    per_layer: usize,
}

const SHAPES: [Shape; 5] = [
    Shape {
        name: "ffn_up/gate 576->1536 Q4_1",
        dtype: GgmlDType::Q4_1,
        rows: 1536,
        cols: 576,
        per_layer: 2,
    },
    Shape {
        name: "ffn_down 1536->576 Q4_1",
        dtype: GgmlDType::Q4_1,
        rows: 576,
        cols: 1536,
        per_layer: 1,
    },
    Shape {
        name: "attn_q/o 576->576 Q4_1",
        dtype: GgmlDType::Q4_1,
        rows: 576,
        cols: 576,
        per_layer: 2,
    },
    Shape {
        name: "attn_k/v 576->192 Q4_1",
        dtype: GgmlDType::Q4_1,
        rows: 192,
        cols: 576,
        per_layer: 2,
    },
    Shape {
        name: "output 576->49152 Q8_0",
        dtype: GgmlDType::Q8_0,
        rows: 49152,
        cols: 576,
        per_layer: 0,
    },
];

fn main() {
    match std::env::var(CHILD_ENV) {
        Ok(spec) => {
            let (imp, threads) = spec
                .split_once(':')
                .expect("MIG_BENCH_CHILD is impl:threads");
            child(imp, threads.parse().expect("thread count"));
        }
        Err(_) => parent(),
    }
}

/// (implementation, threads, matrix name or "model", tokens) -> µs per call.
type Results = HashMap<(String, usize, String, usize), f64>;

fn parent() {
    let exe = std::env::current_exe().expect("own path");
    let mut results = Results::new();
    let mut runs = vec![("ours", 1), ("ours", 2), ("candle", 1), ("candle", 2)];
    if Kernel::Avx2.is_available() && Kernel::best() != Kernel::Avx2 {
        runs.push(("avx2", 1));
    }
    for (imp, threads) in runs {
        eprintln!("measuring {imp} with {threads} thread(s)...");
        let out = Command::new(&exe)
            .env(CHILD_ENV, format!("{imp}:{threads}"))
            .env("CANDLE_NUM_THREADS", threads.to_string())
            .env("RAYON_NUM_THREADS", threads.to_string())
            .output()
            .expect("run child");
        assert!(
            out.status.success(),
            "{imp} with {threads} threads failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Lines `R <name>\t<tokens>\t<µs>`.
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(rest) = line.strip_prefix("R ") else {
                continue;
            };
            let f: Vec<&str> = rest.split('\t').collect();
            let key = (
                imp.to_string(),
                threads,
                f[0].to_string(),
                f[1].parse().expect("m"),
            );
            results.insert(key, f[2].parse().expect("µs"));
        }
    }
    report(&results);
}

fn report(results: &Results) {
    let get = |imp: &str, t: usize, name: &str, m: usize| {
        results
            .get(&(imp.to_string(), t, name.to_string(), m))
            .copied()
    };
    let us = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
    let speedup = |ours: Option<f64>, theirs: Option<f64>| match (ours, theirs) {
        (Some(a), Some(b)) => format!("{:.1}x", b / a),
        _ => "-".into(),
    };
    println!("kernel: {:?}", Kernel::best());
    println!("\nPer matrix: µs per call (median); GB/s = the matrix's file bytes / time.");
    println!("Each matrix is hot in cache from call to call; the whole-model rows stream.");
    println!("| matrix | m | ours 1t | candle 1t | x | ours 2t | candle 2t | x | ours GB/s 1t / 2t | AVX2 1t |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in &SHAPES {
        let bytes = weight_bytes(s);
        let gbs = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.1}", bytes / v / 1e3));
        for m in TOKENS {
            let (o1, c1) = (get("ours", 1, s.name, m), get("candle", 1, s.name, m));
            let (o2, c2) = (get("ours", 2, s.name, m), get("candle", 2, s.name, m));
            println!(
                "| {} | {m} | {} | {} | {} | {} | {} | {} | {} / {} | {} |",
                s.name,
                us(o1),
                us(c1),
                speedup(o1, c1),
                us(o2),
                us(c2),
                speedup(o2, c2),
                gbs(o1),
                gbs(o2),
                us(get("avx2", 1, s.name, m)),
            );
        }
    }

    println!("\nWhole model: 30 layers x 7 matrices + output head, each matrix in its own");
    println!("memory, in the order of a forward pass; tok/s = m / time. Matrices only:");
    println!("no attention, norms or activations.");
    println!("| m | ours 1t ms | tok/s | ours 2t ms | tok/s | candle 1t tok/s | candle 2t tok/s | AVX2 1t tok/s |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for m in MODEL_TOKENS {
        let tok = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.0}", m as f64 / v * 1e6));
        let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.2}", v / 1e3));
        let o1 = get("ours", 1, "model", m);
        let o2 = get("ours", 2, "model", m);
        println!(
            "| {m} | {} | {} | {} | {} | {} | {} | {} |",
            ms(o1),
            tok(o1),
            ms(o2),
            tok(o2),
            tok(get("candle", 1, "model", m)),
            tok(get("candle", 2, "model", m)),
            tok(get("avx2", 1, "model", m)),
        );
    }
    println!("\nBar: llama.cpp on this file with 2 threads, whole model (attention included):");
    println!("about 100 tok/s decode (m=1) and 290 tok/s prefill (m=128).");
}

fn weight_bytes(s: &Shape) -> f64 {
    let block = match s.dtype {
        GgmlDType::Q8_0 => 34.0,
        _ => 20.0,
    };
    (s.rows * s.cols / 32) as f64 * block
}

/// One implementation's products, behind one call shape.
enum Imp {
    Ours(Kernel, QMatrix),
    Candle(QMatMul),
}

impl Imp {
    fn new(imp: &str, t: QTensor) -> Imp {
        match imp {
            "candle" => Imp::Candle(QMatMul::from_qtensor(t).expect("QMatMul")),
            "avx2" => Imp::Ours(Kernel::Avx2, QMatrix::from_qtensor(&t).expect("QMatrix")),
            _ => Imp::Ours(Kernel::best(), QMatrix::from_qtensor(&t).expect("QMatrix")),
        }
    }

    /// `x` as a slice (ours) or a tensor of it (candle's); `out` unused by candle,
    /// which allocates its own output as `QLinear` would.
    fn run(&self, x: &[f32], xt: &Tensor, m: usize, out: &mut [f32]) {
        match self {
            Imp::Ours(k, w) => w.matmul_with(*k, x, m, &mut out[..m * w.rows()]),
            Imp::Candle(w) => {
                w.forward(xt).expect("QMatMul::forward");
            }
        }
    }
}

fn child(imp: &str, threads: usize) {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("global pool");
    let mut rng = StdRng::seed_from_u64(1);
    let mut out = vec![0f32; 128 * 49152];
    for s in &SHAPES {
        let w = Imp::new(imp, random_qtensor(&mut rng, s.dtype, s.rows, s.cols));
        for m in TOKENS {
            let (x, xt) = input(&mut rng, m, s.cols);
            let t = median_us(|| w.run(&x, &xt, m, &mut out));
            println!("R {}\t{m}\t{t:.2}", s.name);
        }
    }
    whole_model(imp, &mut rng, &mut out);
}

/// Every matrix of the model in its own memory, run in the order a forward
/// pass uses them, so nothing stays in cache from one use to the next.
fn whole_model(imp: &str, rng: &mut StdRng, out: &mut [f32]) {
    let mut model = Vec::new();
    for layer in 0..=LAYERS {
        for s in &SHAPES {
            let copies = match (layer, s.per_layer) {
                (LAYERS, 0) => 1,
                (LAYERS, _) | (_, 0) => 0,
                (_, n) => n,
            };
            for _ in 0..copies {
                let t = random_qtensor(rng, s.dtype, s.rows, s.cols);
                model.push((s.cols, Imp::new(imp, t)));
            }
        }
    }
    for m in MODEL_TOKENS {
        let narrow = input(rng, m, 576);
        let wide = input(rng, m, 1536);
        let mut pass = || {
            for (cols, w) in &model {
                let (x, xt) = if *cols == 576 { &narrow } else { &wide };
                w.run(x, xt, m, &mut *out)
            }
        };
        // candle's scalar Q4_1 takes seconds per prefill pass: time one.
        let t = if imp == "candle" && m > 1 {
            let start = Instant::now();
            pass();
            start.elapsed().as_secs_f64() * 1e6
        } else {
            median_us(&mut pass)
        };
        println!("R model\t{m}\t{t:.2}");
    }
}

fn input(rng: &mut StdRng, m: usize, cols: usize) -> (Vec<f32>, Tensor) {
    let x: Vec<f32> = (0..m * cols)
        .map(|_| rng.random_range(-1f32..1.0))
        .collect();
    let t = Tensor::from_slice(&x, (m, cols), &Device::Cpu).expect("x");
    (x, t)
}

fn random_qtensor(rng: &mut StdRng, dtype: GgmlDType, rows: usize, cols: usize) -> QTensor {
    let data: Vec<f32> = (0..rows * cols)
        .map(|_| rng.random_range(-0.1f32..0.1))
        .collect();
    let t = Tensor::from_vec(data, (rows, cols), &Device::Cpu).expect("tensor");
    QTensor::quantize(&t, dtype).expect("quantize")
}

/// Median over samples of the time per call; calls per sample grow until a
/// sample lasts 20 ms, after two warm-up calls.
fn median_us(mut f: impl FnMut()) -> f64 {
    f();
    f();
    let start = Instant::now();
    f();
    let once = start.elapsed().as_secs_f64();
    let reps = ((0.02 / once.max(1e-9)) as usize).clamp(1, 100_000);
    let samples = if once > 0.2 { 3 } else { 9 };
    let mut times: Vec<f64> = (0..samples)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..reps {
                f();
            }
            start.elapsed().as_secs_f64() / reps as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[samples / 2] * 1e6
}
