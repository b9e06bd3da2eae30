//! [`QMatrix`]: a quantized linear layer's weights and its matrix product,
//! split into tiles and spread over the current rayon pool.

use std::cell::Cell;

use candle_core::quantized::{GgmlDType, QTensor};
use rayon::prelude::*;

use super::acts::QActs;
use super::blocks::{Packed, QFormat, QK};
use super::kernel::{Kernel, Tile};

/// The weights of one linear layer as GGUF stores them: `rows` output
/// features, each `cols` inputs long, in blocks of 32 along `cols`.
pub struct QMatrix {
    packed: Packed,
    cols: usize,
}

impl QMatrix {
    /// From a candle QTensor of shape (rows, cols); Q4_1 and Q8_0 only, other
    /// types an error naming the type.
    pub fn from_qtensor(t: &QTensor) -> candle_core::Result<QMatrix> {
        let format = match t.dtype() {
            GgmlDType::Q4_1 => QFormat::Q4_1,
            GgmlDType::Q8_0 => QFormat::Q8_0,
            other => candle_core::bail!(
                "QMatrix::from_qtensor: weight type {other:?} is not supported (Q4_1 and Q8_0 only)"
            ),
        };
        let (rows, cols) = t.shape().dims2().map_err(|e| {
            candle_core::Error::Msg(format!(
                "QMatrix::from_qtensor: shape {:?} is not (rows, cols): {e}",
                t.shape()
            ))
        })?;
        if cols % QK != 0 {
            candle_core::bail!(
                "QMatrix::from_qtensor: cols {cols} is not a multiple of the block size {QK}"
            );
        }
        let raw = t.data()?;
        let blocks = cols / QK;
        let want = rows * blocks * format.block_bytes();
        if raw.len() != want {
            candle_core::bail!(
                "QMatrix::from_qtensor: {format:?} ({rows}, {cols}) needs {want} bytes, the tensor holds {}",
                raw.len()
            );
        }
        Ok(QMatrix {
            packed: Packed::from_gguf(format, &raw, rows, blocks),
            cols,
        })
    }

    pub fn rows(&self) -> usize {
        self.packed.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn format(&self) -> QFormat {
        self.packed.format
    }

    /// Bytes of quantized weights one product streams (the file's size of
    /// this matrix): what memory bandwidth bounds at one token.
    pub fn weight_bytes(&self) -> usize {
        self.rows() * (self.cols / QK) * self.format().block_bytes()
    }

    /// out (m x rows, row-major) = x (m x cols, row-major) times self transposed.
    /// Parallel over output features on the current rayon pool (the worker
    /// sizes the global pool to its slice's cores).
    ///
    /// `x` is quantized to int8 per block of 32 first, as llama.cpp does: the
    /// result differs from f32 arithmetic by at most half a quantization step
    /// of each activation times the weights it meets.
    ///
    /// # Panics
    /// If `x` is not `m * cols` long or `out` not `m * rows`.
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) {
        self.matmul_with(Kernel::best(), x, m, out)
    }

    /// [`matmul`](QMatrix::matmul) on a named kernel, for tests and benchmarks.
    ///
    /// # Panics
    /// As `matmul`, and if this CPU lacks the kernel's instructions.
    pub fn matmul_with(&self, kernel: Kernel, x: &[f32], m: usize, out: &mut [f32]) {
        let (rows, cols) = (self.rows(), self.cols);
        assert_eq!(
            x.len(),
            m * cols,
            "QMatrix::matmul: `x` has {} values, m * cols is {m} * {cols}",
            x.len()
        );
        assert_eq!(
            out.len(),
            m * rows,
            "QMatrix::matmul: `out` has {} values, m * rows is {m} * {rows}",
            out.len()
        );
        assert!(
            kernel.is_available(),
            "QMatrix::matmul: this CPU lacks the instructions of kernel {kernel:?}"
        );
        if m == 0 || rows == 0 {
            return;
        }
        if cols == 0 {
            out.fill(0.0);
            return;
        }
        // Take the buffer rather than borrow it: a rayon thread waiting in
        // `run` may pick up another task that calls `matmul` on this thread.
        // That inner call then finds an empty buffer and allocates its own.
        let mut acts = ACTS.take();
        acts.quantize(kernel, x, m, cols);
        self.run(kernel, &acts, out);
        ACTS.set(acts);
    }

    /// Row `row` dequantized into `out` (cols long): the embedding lookup of
    /// the tied token_embd.
    ///
    /// # Panics
    /// If `row >= rows` or `out` is not `cols` long.
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        assert!(
            row < self.rows(),
            "QMatrix::dequantize_row: `row` {row} is past the last row {}",
            self.rows().saturating_sub(1)
        );
        assert_eq!(
            out.len(),
            self.cols,
            "QMatrix::dequantize_row: `out` has {} values, cols is {}",
            out.len(),
            self.cols
        );
        self.packed.dequantize_row(row, out)
    }

    /// Every tile of the product, in chunks of rows spread over the rayon
    /// pool.
    fn run(&self, kernel: Kernel, x: &QActs, out: &mut [f32]) {
        let (rows, m) = (self.rows(), x.tokens);
        let (tile_rows, tile_tokens) = kernel.tile_shape(m);
        let plan = Plan::new(self, m, tile_rows);
        let out = OutPtr(out.as_mut_ptr());
        let w = &self.packed;
        let chunk = |c: usize| {
            let first = c * plan.chunk_rows;
            let end = rows.min(first + plan.chunk_rows);
            // Tokens outside, rows inside: a chunk's weights stay in L2 while
            // each token tile's activations stay in L1. Token tiles are cut
            // as evenly as they can be, so none is much narrower than the
            // rest (a one-token tile redoes all the weight work for little).
            let tiles = m.div_ceil(tile_tokens);
            let mut tok0 = 0;
            for i in 0..tiles {
                let tokens = m / tiles + usize::from(i < m % tiles);
                let whole = kernel.tile_fn(w.format, tile_rows, tokens);
                let single = kernel.tile_fn(w.format, 1, tokens);
                let mut row0 = first;
                while row0 < end {
                    let (r, f) = if end - row0 >= tile_rows {
                        (tile_rows, whole)
                    } else {
                        (1, single)
                    };
                    let tile = Tile {
                        w,
                        x,
                        row0,
                        tok0,
                        out: out.get(),
                        out_stride: rows,
                    };
                    // SAFETY: rows row0..row0 + r and tokens tok0..tok0 +
                    // tokens exist; chunks own disjoint rows of every token's
                    // output, so no two tiles write the same element; `run`'s
                    // caller checked the kernel is available.
                    unsafe { f(&tile) };
                    row0 += r;
                }
                tok0 += tokens;
            }
        };
        if plan.parallel {
            // From outside the pool the caller waits while the pool's
            // threads split the chunks (by work stealing), so no more
            // threads compete for the cores than the pool has. Letting the
            // caller take chunks too looked better for one hot matrix but
            // lost a fifth of whole-model decode speed on 2 cores, an idle
            // pool thread spinning beside the two working ones.
            (0..plan.chunks).into_par_iter().for_each(chunk);
        } else {
            (0..plan.chunks).for_each(chunk);
        }
    }
}

thread_local! {
    /// Quantized activations, kept between calls so decode does not allocate.
    static ACTS: Cell<QActs> = const { Cell::new(QActs::new()) };
}

/// How the output rows are cut into chunks.
struct Plan {
    chunk_rows: usize,
    chunks: usize,
    parallel: bool,
}

/// Weight bytes per chunk: small enough to stay in L2 (1 MiB on Zen 4, 256 KiB
/// on older cores) while every token tile passes over it, large enough that
/// handing a chunk to a thread costs little beside computing it.
const CHUNK_BYTES: usize = 48 << 10;

/// Products below this many weight bytes times tokens run on the calling
/// thread: handing them to the pool costs more than it saves. Whole-model
/// decode on 2 cores was as fast from 64 KiB to 256 KiB; the upper end keeps
/// the smallest decode products (attention, 70-210 KiB, a few µs each) off
/// the pool, whose threads may have gone to sleep between products.
const SERIAL_WORK: usize = 256 << 10;

impl Plan {
    fn new(w: &QMatrix, m: usize, tile_rows: usize) -> Plan {
        let rows = w.rows();
        let row_bytes = w.weight_bytes() / rows;
        let threads = rayon::current_num_threads();
        let parallel = threads > 1 && w.weight_bytes() * m >= SERIAL_WORK;
        let mut chunk_rows = (CHUNK_BYTES / row_bytes).max(1);
        if parallel {
            // At least four chunks per thread, so a thread slowed by other
            // work on the machine leaves little to wait for.
            chunk_rows = chunk_rows.min(rows.div_ceil(4 * threads));
        }
        let chunk_rows = chunk_rows.next_multiple_of(tile_rows).min(rows);
        Plan {
            chunk_rows,
            chunks: rows.div_ceil(chunk_rows),
            parallel,
        }
    }
}

/// The output pointer, shared by the pool's threads; each writes only the
/// rows of the chunk it runs.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);

// SAFETY: see `run`: writes through the pointer are disjoint per chunk, and
// `run` returns only after every chunk is done.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// A method, so closures capture the whole (`Sync`) wrapper rather than
    /// its raw pointer field.
    fn get(self) -> *mut f32 {
        self.0
    }
}
