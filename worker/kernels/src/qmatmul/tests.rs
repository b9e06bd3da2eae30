//! Every kernel against a dequantized f64 reference, the SIMD kernels against
//! the scalar one, and the candle op against the plain call. No model file:
//! weights are seeded random f32 quantized by candle.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Kernel, QFormat, QMatrix};

/// (rows, cols): the model's k/v (192 x 576: one chunk of 16 blocks and two
/// left), ffn_down (576 x 1536: three chunks) and ffn_up (1536 x 576), then
/// odd row counts and every kind of tail: 192 = 6 blocks (a group of four
/// and one of two), 96 = 3, 32 = 1, 160 = 5, 992 = 31 (a chunk, three
/// groups and three blocks).
const SHAPES: [(usize, usize); 8] = [
    (192, 576),
    (576, 1536),
    (1536, 576),
    (13, 192),
    (7, 96),
    (5, 32),
    (33, 160),
    (11, 992),
];

/// Token counts: one, tails of every tile width, a full batch, and a prime.
const TOKENS: [usize; 6] = [1, 3, 4, 5, 16, 37];

const FORMATS: [(QFormat, GgmlDType); 2] = [
    (QFormat::Q4_1, GgmlDType::Q4_1),
    (QFormat::Q8_0, GgmlDType::Q8_0),
];

/// Seeded weights like a trained layer's: small, centred, with some rows
/// shifted so Q4_1 minimums differ in sign and size.
fn weights(dtype: GgmlDType, rows: usize, cols: usize, seed: u64) -> QTensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let data: Vec<f32> = (0..rows * cols)
        .map(|i| {
            let shift = if (i / cols).is_multiple_of(3) {
                0.05
            } else {
                0.0
            };
            rng.random_range(-0.1f32..0.1) + shift
        })
        .collect();
    let t = Tensor::from_vec(data, (rows, cols), &Device::Cpu).expect("weights tensor");
    QTensor::quantize(&t, dtype).expect("quantize weights")
}

/// Seeded activations with what makes int8 blocks differ: an outlier per row
/// (one block with a large scale) and an all-zero block (scale 0).
fn activations(m: usize, cols: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut x: Vec<f32> = (0..m * cols)
        .map(|_| rng.random_range(-2f32..2.0))
        .collect();
    for row in x.chunks_exact_mut(cols) {
        let at = rng.random_range(0..cols);
        row[at] *= 20.0;
        if cols >= 64 {
            row[32..64].fill(0.0);
        }
    }
    x
}

/// The dequantized weights times `x` in f64, with for each output:
/// - `bound`: the most the int8 rounding of the activations can move it.
///   Each `x_i` becomes `d * q_i` with `|x_i - d * q_i| <= d / 2`, `d =
///   max|x| / 127` over its block, so the error is at most
///   `sum_b (d_b / 2) * sum_{i in b} |w_i|`. Nothing else in the kernels
///   approximates: the integer sums are exact, the scales f32, and the
///   result is exactly the dot product of the weights with the rounded `x`.
/// - `mag`: `sum |w_i * x_i|`, the scale of f32 rounding in the sums.
struct Reference {
    out: Vec<f64>,
    bound: Vec<f64>,
    mag: Vec<f64>,
}

fn reference(w: &QTensor, x: &[f32], m: usize) -> candle_core::Result<Reference> {
    let (rows, cols) = w.shape().dims2()?;
    let blocks = cols / 32;
    let w = w.dequantize(&Device::Cpu)?.to_dtype(DType::F64)?;
    let x = Tensor::from_slice(x, (m, cols), &Device::Cpu)?.to_dtype(DType::F64)?;
    let out = x.matmul(&w.t()?)?;
    let mag = x.abs()?.matmul(&w.abs()?.t()?)?;
    let half_step = (x.reshape((m, blocks, 32))?.abs()?.max(2)? / 254.0)?;
    let w_block_abs = w.abs()?.reshape((rows, blocks, 32))?.sum(2)?;
    let bound = half_step.matmul(&w_block_abs.t()?)?;
    let flat = |t: Tensor| t.flatten_all()?.to_vec1::<f64>();
    Ok(Reference {
        out: flat(out)?,
        bound: flat(bound)?,
        mag: flat(mag)?,
    })
}

/// Float rounding allowance: f32 products and sums of at most a few
/// thousand terms stay well inside `1e-5` of their magnitude.
fn rounding(mag: f64) -> f64 {
    1e-5 * mag + 1e-6
}

/// Largest `|got - ref| / bound` (at most 1 when within the rounding bound).
fn check_against_reference(what: &str, got: &[f32], r: &Reference) -> f64 {
    let mut worst = 0f64;
    for (i, &g) in got.iter().enumerate() {
        let err = (f64::from(g) - r.out[i]).abs();
        let allowed = r.bound[i] + rounding(r.mag[i]);
        assert!(
            err <= allowed,
            "{what}: output {i}: got {g}, reference {}, error {err:e} > bound {allowed:e}",
            r.out[i]
        );
        worst = worst.max(err / allowed);
    }
    worst
}

fn run(w: &QMatrix, kernel: Kernel, x: &[f32], m: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; m * w.rows()];
    w.matmul_with(kernel, x, m, &mut out);
    out
}

#[test]
fn every_kernel_is_within_the_int8_rounding_bound_of_the_reference() {
    let kernels = Kernel::available();
    for (format, dtype) in FORMATS {
        for (s, &(rows, cols)) in SHAPES.iter().enumerate() {
            let qt = weights(dtype, rows, cols, s as u64);
            let w = QMatrix::from_qtensor(&qt).expect("supported type");
            assert_eq!((w.rows(), w.cols(), w.format()), (rows, cols, format));
            for m in TOKENS {
                let x = activations(m, cols, 100 + m as u64);
                let r = reference(&qt, &x, m).expect("reference");
                for &kernel in &kernels {
                    let what = format!("{format:?} {rows}x{cols} m={m} {kernel:?}");
                    check_against_reference(&what, &run(&w, kernel, &x, m), &r);
                }
            }
        }
    }
}

#[test]
fn simd_kernels_agree_with_scalar_to_float_rounding() {
    for (format, dtype) in FORMATS {
        for (s, &(rows, cols)) in SHAPES.iter().enumerate() {
            let qt = weights(dtype, rows, cols, 7 + s as u64);
            let w = QMatrix::from_qtensor(&qt).expect("supported type");
            for m in [1, 5, 16] {
                let x = activations(m, cols, m as u64);
                let r = reference(&qt, &x, m).expect("reference");
                let scalar = run(&w, Kernel::Scalar, &x, m);
                for kernel in Kernel::available() {
                    let got = run(&w, kernel, &x, m);
                    for i in 0..got.len() {
                        let diff = f64::from(got[i] - scalar[i]).abs();
                        assert!(
                            diff <= rounding(r.mag[i]),
                            "{format:?} {rows}x{cols} m={m} {kernel:?}: output {i}: {} vs scalar {}",
                            got[i],
                            scalar[i]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn scratch_padding_from_a_wider_call_does_not_leak() {
    // 18 blocks leaves data in block 17's slot; 17 blocks must read it as zero.
    let qt = weights(GgmlDType::Q4_1, 9, 544, 3);
    let w = QMatrix::from_qtensor(&qt).expect("Q4_1");
    let x = activations(4, 544, 4);
    let wide = QMatrix::from_qtensor(&weights(GgmlDType::Q4_1, 9, 576, 5)).expect("Q4_1");
    for kernel in Kernel::available() {
        let fresh = std::thread::scope(|s| s.spawn(|| run(&w, kernel, &x, 4)).join())
            .expect("fresh thread");
        run(&wide, kernel, &activations(4, 576, 6), 4);
        assert_eq!(run(&w, kernel, &x, 4), fresh, "{kernel:?}");
    }
}

/// Every kernel adds a token's terms in the same order whatever tile shape
/// its batch size picks, so batching requests (or not) changes no output bit.
#[test]
fn a_token_s_result_does_not_depend_on_its_batch() {
    for (_, dtype) in FORMATS {
        for &(rows, cols) in &[(37, 576), (21, 1536)] {
            let w = QMatrix::from_qtensor(&weights(dtype, rows, cols, 31)).expect("supported");
            let x = activations(16, cols, 32);
            for kernel in Kernel::available() {
                let batch = run(&w, kernel, &x, 16);
                for (t, x) in x.chunks_exact(cols).enumerate() {
                    let alone = run(&w, kernel, x, 1);
                    assert_eq!(
                        alone,
                        batch[t * rows..][..rows],
                        "{dtype:?} {kernel:?} token {t}"
                    );
                }
                let three = run(&w, kernel, &x[5 * cols..8 * cols], 3);
                assert_eq!(
                    three,
                    batch[5 * rows..8 * rows],
                    "{dtype:?} {kernel:?} tokens 5..8"
                );
            }
        }
    }
}

#[test]
fn from_qtensor_names_unsupported_types() {
    let t = Tensor::zeros((4, 256), DType::F32, &Device::Cpu).expect("zeros");
    for (dtype, name) in [(GgmlDType::F16, "F16"), (GgmlDType::Q4K, "Q4K")] {
        let qt = QTensor::quantize(&t, dtype).expect("quantize");
        let err = QMatrix::from_qtensor(&qt)
            .err()
            .expect("must be refused")
            .to_string();
        assert!(err.contains(name) && err.contains("Q4_1 and Q8_0"), "{err}");
    }
}

#[test]
fn dequantize_row_matches_candle_exactly() {
    for (_, dtype) in FORMATS {
        let qt = weights(dtype, 5, 160, 15);
        let w = QMatrix::from_qtensor(&qt).expect("supported");
        let all = qt
            .dequantize(&Device::Cpu)
            .and_then(|t| t.to_vec2::<f32>())
            .expect("dequantize");
        let mut row = vec![0f32; 160];
        for (r, want) in all.iter().enumerate() {
            w.dequantize_row(r, &mut row);
            assert_eq!(&row, want, "{dtype:?} row {r}");
        }
    }
}

/// candle's own product on the same tensors, judged by the same reference.
/// Not a bound on candle (it rounds activation scales and Q4_1's
/// `d * sum(q)` to f16), only a report beside ours, and a check that both
/// are accurate to the same order.
#[test]
fn candle_qmatmul_and_ours_against_the_reference() {
    for (format, dtype) in FORMATS {
        for &(rows, cols) in &[(576, 576), (576, 1536)] {
            let qt = weights(dtype, rows, cols, 21);
            let ours = QMatrix::from_qtensor(&qt).expect("supported");
            let theirs = QMatMul::from_qtensor(qt).expect("QMatMul");
            let QMatMul::QTensor(qt) = &theirs else {
                panic!("QMatMul dequantized the weights")
            };
            for m in [1, 16] {
                let x = activations(m, cols, 22);
                let r = reference(qt, &x, m).expect("reference");
                let xt = Tensor::from_slice(&x, (m, cols), &Device::Cpu).expect("x");
                let candle: Vec<f32> = theirs
                    .forward(&xt)
                    .and_then(|t| t.flatten_all()?.to_vec1())
                    .expect("QMatMul::forward");
                let mut got = vec![0f32; m * rows];
                ours.matmul(&x, m, &mut got);
                let rel = |v: &[f32]| {
                    let num: f64 = v
                        .iter()
                        .zip(&r.out)
                        .map(|(&a, b)| (f64::from(a) - b).powi(2))
                        .sum();
                    let den: f64 = r.out.iter().map(|b| b * b).sum();
                    (num / den).sqrt()
                };
                let (ours_err, candle_err) = (rel(&got), rel(&candle));
                println!(
                    "{format:?} {rows}x{cols} m={m}: relative L2 error ours {ours_err:.2e}, candle {candle_err:.2e}"
                );
                check_against_reference("ours", &got, &r);
                assert!(
                    ours_err <= 2.0 * candle_err + 1e-6,
                    "ours {ours_err:e} much worse than candle {candle_err:e}"
                );
                assert!(
                    candle_err <= 10.0 * ours_err + 1e-6,
                    "candle {candle_err:e} far from ours {ours_err:e}: is the comparison fair?"
                );
            }
        }
    }
}
