//! Block layouts: the GGUF blocks a [`QTensor`](candle_core::quantized::QTensor)
//! holds, and the regrouped copy of them that the kernels stream.
//!
//! GGUF stores a row as blocks of 32 values:
//! - Q4_1, 20 bytes: f16 `d`, f16 `m`, 16 bytes of nibbles; value `i` is
//!   `d * q_i + m` where `q_i` is the low nibble of byte `i` for `i < 16` and
//!   the high nibble of byte `i - 16` otherwise.
//! - Q8_0, 34 bytes: f16 `d`, 32 `i8`; value `i` is `d * q_i`.
//!
//! [`Packed`] keeps the same bits, so it streams as many bytes per token as
//! the file, but reorders them so that one float multiply scales the integer
//! sums of 16 blocks at once:
//! - A row is cut into chunks of [`CHUNK`] = 16 blocks. Within a chunk, the
//!   values are interleaved four at a time: vector `k` (64 bytes) holds values
//!   `4k..4k + 4` of block `l` in its 32-bit lane `l`. A `vpdpbusd` then
//!   leaves block `l`'s partial sum in lane `l`, every vector of the chunk adds
//!   to the same lanes, and one multiply by the 16 blocks' scales finishes the
//!   chunk. Q4_1 stores the nibble bytes the same way (byte `i` of a block
//!   holds values `i` and `i + 16`), so the low nibbles of vector `k` are
//!   values `4k..` and the high nibbles values `16 + 4k..`.
//! - The blocks past the last whole chunk form groups of [`GROUP`] = 4 (the
//!   last may have fewer, `n`): Q4_1 as in the file, block after block; Q8_0
//!   values 0..16 of each block of the group, then values 16..32. Either way a
//!   vector of a group's values holds one block per 128-bit quarter, and a
//!   group of one or two blocks fits a single vector: values 0..16 of its
//!   blocks, then values 16..32.
//!
//! The activations ([`crate::qmatmul::acts::QActs`]) use the same order.

/// Values per block, in both formats and in the activation blocks.
pub(crate) const QK: usize = 32;

/// Blocks per chunk: one per 32-bit lane of a 512-bit vector.
pub(crate) const CHUNK: usize = 16;

/// Blocks per group in the tail of a row past its last whole chunk: one per
/// 128-bit quarter of a 512-bit vector.
pub(crate) const GROUP: usize = 4;

/// Bytes of one GGUF Q4_1 block.
pub(crate) const Q4_1_BLOCK_BYTES: usize = 20;

/// Bytes of one GGUF Q8_0 block.
pub(crate) const Q8_0_BLOCK_BYTES: usize = 34;

/// Where value `i` of block `b` sits among a row's `blocks * 32` int8 values
/// in the kernel order (see the module docs).
pub(crate) fn value_offset(blocks: usize, b: usize, i: usize) -> usize {
    let wide = blocks / CHUNK * CHUNK;
    if b < wide {
        let (c, l) = (b / CHUNK, b % CHUNK);
        c * CHUNK * QK + (i / 4) * 64 + 4 * l + i % 4
    } else {
        let (g, j) = ((b - wide) / GROUP, (b - wide) % GROUP);
        let n = GROUP.min(blocks - wide - g * GROUP);
        wide * QK + g * GROUP * QK + (i / 16) * 16 * n + 16 * j + i % 16
    }
}

/// Where nibble byte `i` (values `i` and `i + 16`) of Q4_1 block `b` sits
/// among a row's `blocks * 16` bytes in the kernel order.
pub(crate) fn nibble_offset(blocks: usize, b: usize, i: usize) -> usize {
    let wide = blocks / CHUNK * CHUNK;
    if b < wide {
        let (c, l) = (b / CHUNK, b % CHUNK);
        c * CHUNK * QK / 2 + (i / 4) * 64 + 4 * l + i % 4
    } else {
        b * QK / 2 + i
    }
}

/// Block `b`'s 32 int8 values (as stored) from a row in kernel order.
pub(crate) fn gather_values(row: &[u8], blocks: usize, b: usize) -> [u8; QK] {
    let mut out = [0u8; QK];
    let wide = blocks / CHUNK * CHUNK;
    if b < wide {
        let base = value_offset(blocks, b, 0);
        for (k, four) in out.chunks_exact_mut(4).enumerate() {
            four.copy_from_slice(&row[base + 64 * k..][..4]);
        }
    } else {
        let (lo, hi) = (value_offset(blocks, b, 0), value_offset(blocks, b, 16));
        out[..16].copy_from_slice(&row[lo..][..16]);
        out[16..].copy_from_slice(&row[hi..][..16]);
    }
    out
}

/// Q4_1 block `b`'s 16 nibble bytes from a row in kernel order.
pub(crate) fn gather_nibbles(row: &[u8], blocks: usize, b: usize) -> [u8; QK / 2] {
    let mut out = [0u8; QK / 2];
    let base = nibble_offset(blocks, b, 0);
    if b < blocks / CHUNK * CHUNK {
        for (k, four) in out.chunks_exact_mut(4).enumerate() {
            four.copy_from_slice(&row[base + 64 * k..][..4]);
        }
    } else {
        out.copy_from_slice(&row[base..][..16]);
    }
    out
}

/// Which GGUF block type a matrix holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QFormat {
    /// 4-bit values with a per-block scale and minimum (`x = d * q + m`).
    Q4_1,
    /// 8-bit signed values with a per-block scale (`x = d * q`).
    Q8_0,
}

impl QFormat {
    /// Bytes of one GGUF block of this format.
    pub(crate) fn block_bytes(self) -> usize {
        match self {
            QFormat::Q4_1 => Q4_1_BLOCK_BYTES,
            QFormat::Q8_0 => Q8_0_BLOCK_BYTES,
        }
    }

    /// Bytes of quantized values per block in [`Packed::qs`].
    pub(crate) fn packed_qs_bytes(self) -> usize {
        match self {
            QFormat::Q4_1 => QK / 2,
            QFormat::Q8_0 => QK,
        }
    }
}

/// One cache line: the unit of every buffer the kernels load from, so that a
/// group of quantized values never straddles the start of an allocation.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Line(pub [u8; 64]);

impl Line {
    pub(crate) const ZERO: Line = Line([0; 64]);
}

/// Bytes in 64-byte-aligned storage.
#[derive(Default)]
pub(crate) struct Lines(Vec<Line>);

impl Lines {
    pub(crate) const fn new() -> Lines {
        Lines(Vec::new())
    }

    /// At least `len` zeroed bytes (rounded up to whole lines).
    pub(crate) fn zeroed(len: usize) -> Lines {
        Lines(vec![Line::ZERO; len.div_ceil(64)])
    }

    /// Grows to at least `len` bytes, keeping old contents; never shrinks, so
    /// a scratch buffer stops allocating once it has seen the largest call.
    pub(crate) fn reserve_bytes(&mut self, len: usize) {
        let lines = len.div_ceil(64);
        if self.0.len() < lines {
            self.0.resize(lines, Line::ZERO);
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `Line` is 64 plain bytes with no padding.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast(), self.0.len() * 64) }
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; any byte pattern is a valid `Line`.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast(), self.0.len() * 64) }
    }
}

/// The weights of a matrix regrouped for the kernels, same bits as GGUF.
///
/// Quantized values of row `r` live in `qs[r * row_bytes..][..row_bytes]`,
/// in the order of [`nibble_offset`] (Q4_1) or [`value_offset`] (Q8_0).
/// Q8_0 values are stored as `q ^ 0x80`, that is `q + 128` as `u8`, because
/// `vpdpbusd` multiplies unsigned by signed bytes; the kernels subtract
/// `128 * sum(q_x)` through the correction term.
pub(crate) struct Packed {
    pub(crate) format: QFormat,
    pub(crate) rows: usize,
    /// Blocks per row (`cols / 32`).
    pub(crate) blocks: usize,
    pub(crate) row_bytes: usize,
    pub(crate) qs: Lines,
    /// f16 bits of each block's scale, `rows * blocks`.
    pub(crate) d: Vec<u16>,
    /// f16 bits of each Q4_1 block's minimum, `rows * blocks`; empty for Q8_0.
    pub(crate) m: Vec<u16>,
}

impl Packed {
    /// Regroups `raw`, the GGUF bytes of a `rows x blocks*32` matrix.
    /// The caller has checked that `raw` is exactly that long.
    pub(crate) fn from_gguf(format: QFormat, raw: &[u8], rows: usize, blocks: usize) -> Packed {
        debug_assert_eq!(raw.len(), rows * blocks * format.block_bytes());
        let row_bytes = blocks * format.packed_qs_bytes();
        let mut qs = Lines::zeroed(rows * row_bytes);
        let dst = qs.bytes_mut();
        let mut d = Vec::with_capacity(rows * blocks);
        let mut m = Vec::new();
        match format {
            QFormat::Q4_1 => {
                m.reserve_exact(rows * blocks);
                for (r, row) in raw.chunks_exact(blocks * Q4_1_BLOCK_BYTES).enumerate() {
                    let row_dst = &mut dst[r * row_bytes..][..row_bytes];
                    for (b, block) in row.chunks_exact(Q4_1_BLOCK_BYTES).enumerate() {
                        d.push(u16::from_le_bytes([block[0], block[1]]));
                        m.push(u16::from_le_bytes([block[2], block[3]]));
                        for (i, &q) in block[4..].iter().enumerate() {
                            row_dst[nibble_offset(blocks, b, i)] = q;
                        }
                    }
                }
            }
            QFormat::Q8_0 => {
                for (r, row) in raw.chunks_exact(blocks * Q8_0_BLOCK_BYTES).enumerate() {
                    let row_dst = &mut dst[r * row_bytes..][..row_bytes];
                    for (b, block) in row.chunks_exact(Q8_0_BLOCK_BYTES).enumerate() {
                        d.push(u16::from_le_bytes([block[0], block[1]]));
                        for (i, &q) in block[2..].iter().enumerate() {
                            row_dst[value_offset(blocks, b, i)] = q ^ 0x80;
                        }
                    }
                }
            }
        }
        Packed {
            format,
            rows,
            blocks,
            row_bytes,
            qs,
            d,
            m,
        }
    }

    /// The quantized values of row `r`.
    pub(crate) fn row_qs(&self, r: usize) -> &[u8] {
        &self.qs.bytes()[r * self.row_bytes..][..self.row_bytes]
    }

    /// The per-block coefficient of the activation correction term (see
    /// [`crate::qmatmul::acts::QActs`]): the minimum for Q4_1, the scale for Q8_0.
    pub(crate) fn coef(&self) -> &[u16] {
        match self.format {
            QFormat::Q4_1 => &self.m,
            QFormat::Q8_0 => &self.d,
        }
    }

    /// Row `r` as f32, `out` being `blocks * 32` long.
    pub(crate) fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let (qs, blocks) = (self.row_qs(r), self.blocks);
        for (b, out) in out.chunks_exact_mut(QK).enumerate() {
            let d = f16_to_f32(self.d[r * blocks + b]);
            match self.format {
                QFormat::Q4_1 => {
                    let m = f16_to_f32(self.m[r * blocks + b]);
                    for (i, q) in gather_nibbles(qs, blocks, b).into_iter().enumerate() {
                        out[i] = d * f32::from(q & 0x0f) + m;
                        out[i + 16] = d * f32::from(q >> 4) + m;
                    }
                }
                QFormat::Q8_0 => {
                    for (out, q) in out.iter_mut().zip(gather_values(qs, blocks, b)) {
                        *out = d * f32::from((q ^ 0x80) as i8);
                    }
                }
            }
        }
    }
}

/// IEEE half precision bits to f32, exactly (the scalar path's F16C).
pub(crate) fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits & 0x8000) << 16;
    let exp = u32::from((bits >> 10) & 0x1f);
    let man = u32::from(bits & 0x3ff);
    let magnitude = match exp {
        // Zero and subnormals: man * 2^-24, exact in f32.
        0 => (man as f32 * (1.0 / 16_777_216.0)).to_bits(),
        0x1f => 0x7f80_0000 | (man << 13),
        _ => ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(sign | magnitude)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_is_exact_on_every_finite_value() {
        // Reference: the value the bits mean, built from its definition.
        for bits in 0..=u16::MAX {
            let exp = (bits >> 10) & 0x1f;
            if exp == 0x1f {
                let got = f16_to_f32(bits);
                assert!(got.is_nan() || got.is_infinite(), "bits {bits:#06x}");
                continue;
            }
            let man = f64::from(bits & 0x3ff);
            let mag = if exp == 0 {
                man * 2f64.powi(-24)
            } else {
                (1.0 + man / 1024.0) * 2f64.powi(i32::from(exp) - 15)
            };
            let want = if bits & 0x8000 != 0 { -mag } else { mag };
            assert_eq!(f64::from(f16_to_f32(bits)), want, "bits {bits:#06x}");
        }
    }

    #[test]
    fn offsets_cover_each_row_byte_once() {
        for blocks in 1..=40 {
            let mut seen = vec![0u8; blocks * QK];
            let mut nibbles = vec![0u8; blocks * QK / 2];
            for b in 0..blocks {
                for i in 0..QK {
                    seen[value_offset(blocks, b, i)] += 1;
                }
                for i in 0..QK / 2 {
                    nibbles[nibble_offset(blocks, b, i)] += 1;
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "blocks {blocks}: {seen:?}");
            assert!(
                nibbles.iter().all(|&n| n == 1),
                "blocks {blocks}: {nibbles:?}"
            );
        }
    }

    #[test]
    fn gathers_read_what_the_offsets_say() {
        for blocks in [1, 5, 16, 18, 35] {
            let row: Vec<u8> = (0..blocks * QK).map(|i| (i * 31 % 251) as u8).collect();
            for b in 0..blocks {
                let v = gather_values(&row, blocks, b);
                for (i, &v) in v.iter().enumerate() {
                    assert_eq!(v, row[value_offset(blocks, b, i)]);
                }
                let n = gather_nibbles(&row, blocks, b);
                for (i, &n) in n.iter().enumerate() {
                    assert_eq!(n, row[nibble_offset(blocks, b, i)]);
                }
            }
        }
    }
}
