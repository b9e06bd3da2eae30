//! Which code computes the tiles, chosen once per process from the CPU's
//! features, and the tile every implementation computes.

use std::sync::OnceLock;

use super::acts::QActs;
use super::blocks::{Packed, QFormat};
use super::scalar;

/// An implementation of the quantized dot products.
///
/// [`QMatrix::matmul`](super::QMatrix::matmul) uses [`Kernel::best`]; tests and
/// the benchmark name one through
/// [`QMatrix::matmul_with`](super::QMatrix::matmul_with) to compare them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Plain Rust: every CPU (aarch64 included), and the tests' reference.
    Scalar,
    /// x86-64 with AVX2, FMA and F16C (`vpmaddubsw`, 256-bit).
    Avx2,
    /// x86-64 with AVX-512 F/BW/VL and VNNI (`vpdpbusd`, 512-bit).
    Avx512Vnni,
}

impl Kernel {
    /// The fastest kernel this CPU runs, detected on first use.
    pub fn best() -> Kernel {
        static BEST: OnceLock<Kernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            [Kernel::Avx512Vnni, Kernel::Avx2]
                .into_iter()
                .find(|k| k.is_available())
                .unwrap_or(Kernel::Scalar)
        })
    }

    /// Every kernel this CPU runs, slowest first.
    pub fn available() -> Vec<Kernel> {
        [Kernel::Scalar, Kernel::Avx2, Kernel::Avx512Vnni]
            .into_iter()
            .filter(|k| k.is_available())
            .collect()
    }

    /// Whether this CPU has the instructions the kernel needs.
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => {
                Kernel::Avx2.is_available()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2 | Kernel::Avx512Vnni => false,
        }
    }

    /// Weight rows and the most tokens per tile for a call with `tokens`
    /// tokens. More tokens per tile reuse each weight register more often,
    /// more rows each activation register; together they are bounded by the
    /// accumulators the register file holds (32 zmm, 16 ymm). Rows in fours
    /// let the final sums be reduced four at a time and stored together.
    /// Measured on Zen 4 against the neighbouring shapes.
    pub(crate) fn tile_shape(self, tokens: usize) -> (usize, usize) {
        match (self, tokens) {
            (Kernel::Scalar, _) => (1, 1),
            (Kernel::Avx2, 1) => (4, 1),
            (Kernel::Avx2, _) => (2, 4),
            (Kernel::Avx512Vnni, 1) => (8, 1),
            (Kernel::Avx512Vnni, 2..=4) => (2, tokens),
            (Kernel::Avx512Vnni, _) => (4, 3),
        }
    }

    /// The code for a tile of `rows x tokens` (each at most the
    /// [`tile_shape`](Kernel::tile_shape) of this kernel).
    ///
    /// The caller has checked [`is_available`](Kernel::is_available).
    pub(crate) fn tile_fn(self, format: QFormat, rows: usize, tokens: usize) -> TileFn {
        match self {
            Kernel::Scalar => scalar::tile_fn(format, rows, tokens),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => super::x86::avx2::tile_fn(format, rows, tokens),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => super::x86::avx512::tile_fn(format, rows, tokens),
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2 | Kernel::Avx512Vnni => unreachable!("no x86 kernels on this target"),
        }
    }
}

/// One tile of the output: weight rows `row0..row0 + R` against tokens
/// `tok0..tok0 + T`, written to `out[(tok0 + t) * out_stride + row0 + r]`.
pub(crate) struct Tile<'a> {
    pub(crate) w: &'a Packed,
    pub(crate) x: &'a QActs,
    pub(crate) row0: usize,
    pub(crate) tok0: usize,
    pub(crate) out: *mut f32,
    pub(crate) out_stride: usize,
}

/// Computes one tile.
///
/// # Safety
/// The tile's rows and tokens exist in `w` and `x`, `out` is valid for the
/// tile's writes and no other thread writes those elements meanwhile, and
/// the CPU has the kernel's features.
pub(crate) type TileFn = unsafe fn(&Tile<'_>);

/// Instantiates `tile::<W, R, T>` for every shape [`Kernel::tile_shape`]
/// asks for (and one-row tiles for the rows left over) and picks one at run
/// time; the tests run every kernel on token counts that reach them all.
macro_rules! pick_tile {
    ($tile:ident, $w:ty, $rows:expr, $tokens:expr) => {
        match ($rows, $tokens) {
            (1, 1) => $tile::<$w, 1, 1> as $crate::qmatmul::kernel::TileFn,
            (1, 2) => $tile::<$w, 1, 2>,
            (1, 3) => $tile::<$w, 1, 3>,
            (1, 4) => $tile::<$w, 1, 4>,
            (2, 2) => $tile::<$w, 2, 2>,
            (2, 3) => $tile::<$w, 2, 3>,
            (2, 4) => $tile::<$w, 2, 4>,
            (4, 1) => $tile::<$w, 4, 1>,
            (4, 2) => $tile::<$w, 4, 2>,
            (4, 3) => $tile::<$w, 4, 3>,
            (8, 1) => $tile::<$w, 8, 1>,
            (r, t) => unreachable!("no {r}x{t} tile"),
        }
    };
}
pub(crate) use pick_tile;
