//! How attention reads the KV store: rows of `width` values, held densely
//! (f32, or f16 widened as read) or quantized to int8 per block of 32
//! ([`Q8Rows`], a quarter of f32's memory traffic and about half of f16's).

use half::f16;
use half::slice::HalfFloatSliceExt;

/// Keys or values of every row of the store, read a head's columns at a
/// time.
pub trait KvRows: Sync {
    /// Values per row.
    fn width(&self) -> usize;

    /// Rows held.
    fn rows(&self) -> usize;

    /// Values `column..column + dst.len()` of `row`, as f32.
    fn read(&self, row: usize, column: usize, dst: &mut [f32]);

    /// Values `column..column + 8` of `row` as f32 lanes; the same numbers
    /// as [`KvRows::read`].
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `row < rows()`, `column` a
    /// multiple of 8 and `column + 8 <= width()`.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(&self, row: usize, column: usize) -> std::arch::x86_64::__m256;

    /// Asks the CPU to bring `row` towards its caches (a hint; nothing if
    /// the row is out of range or the target has no such hint).
    fn prefetch(&self, row: usize) {
        let _ = row;
    }
}

/// Hints every cache line of `bytes` into L2.
#[inline(always)]
fn prefetch_bytes<T>(bytes: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        let (start, len) = (bytes.as_ptr().cast::<i8>(), std::mem::size_of_val(bytes));
        for offset in (0..len).step_by(64) {
            // SAFETY: a prefetch never faults; the address is inside `bytes`.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(start.add(offset)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

impl<R: KvRows + ?Sized> KvRows for &R {
    fn width(&self) -> usize {
        (**self).width()
    }

    fn rows(&self) -> usize {
        (**self).rows()
    }

    #[inline(always)]
    fn read(&self, row: usize, column: usize, dst: &mut [f32]) {
        (**self).read(row, column, dst)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(&self, row: usize, column: usize) -> std::arch::x86_64::__m256 {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { (**self).load8(row, column) }
    }

    fn prefetch(&self, row: usize) {
        (**self).prefetch(row)
    }
}

/// A dense element type of the store: f32, or f16 widened as it is read.
pub trait KvElement: Copy + Send + Sync {
    fn widen(src: &[Self], dst: &mut [f32]);

    /// Eight values from `src` as f32 lanes.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C, and `src` must point at eight
    /// readable values.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(src: *const Self) -> std::arch::x86_64::__m256;
}

impl KvElement for f32 {
    #[inline(always)]
    fn widen(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8(src: *const f32) -> std::arch::x86_64::__m256 {
        // SAFETY: the caller guarantees eight readable values.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(src) }
    }
}

impl KvElement for f16 {
    #[inline(always)]
    fn widen(src: &[f16], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst);
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8(src: *const f16) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::{__m128i, _mm256_cvtph_ps, _mm_loadu_si128};
        // SAFETY: the caller guarantees eight readable values (16 bytes).
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(src.cast::<__m128i>())) }
    }
}

/// Rows held densely in `data`, `width` values each, row-major.
#[derive(Clone, Copy)]
pub struct Dense<'a, T> {
    pub data: &'a [T],
    pub width: usize,
}

impl<T: KvElement> KvRows for Dense<'_, T> {
    fn width(&self) -> usize {
        self.width
    }

    fn rows(&self) -> usize {
        self.data.len() / self.width.max(1)
    }

    #[inline(always)]
    fn read(&self, row: usize, column: usize, dst: &mut [f32]) {
        T::widen(&self.data[row * self.width + column..][..dst.len()], dst);
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(&self, row: usize, column: usize) -> std::arch::x86_64::__m256 {
        // SAFETY: the caller keeps row and column in bounds.
        unsafe { T::load8(self.data.as_ptr().add(row * self.width + column)) }
    }

    #[inline(always)]
    fn prefetch(&self, row: usize) {
        if let Some(values) = self.data.get(row * self.width..(row + 1) * self.width) {
            prefetch_bytes(values);
        }
    }
}

/// Values per int8 block, each with its own scale.
pub const Q8_BLOCK: usize = 32;

/// Rows quantized as they are written: each block of [`Q8_BLOCK`] values is
/// int8 times one f32 scale (its largest magnitude over 127), as GGUF's
/// Q8_0 and llama.cpp's `q8_0` cache keep them.
pub struct Q8Rows {
    qs: Vec<i8>,
    scales: Vec<f32>,
    width: usize,
}

impl Q8Rows {
    /// `rows` rows of `width` zeros.
    ///
    /// # Panics
    /// If `width` is not a multiple of [`Q8_BLOCK`].
    pub fn new(rows: usize, width: usize) -> Q8Rows {
        assert_eq!(
            width % Q8_BLOCK,
            0,
            "Q8Rows: width {width} is not a multiple of {Q8_BLOCK}"
        );
        Q8Rows {
            qs: vec![0; rows * width],
            scales: vec![0.0; rows * width / Q8_BLOCK],
            width,
        }
    }

    /// Bytes one row of `width` values takes.
    pub fn bytes_per_row(width: usize) -> usize {
        width + width / Q8_BLOCK * std::mem::size_of::<f32>()
    }

    /// Quantizes `values` (`width` of them) into `row`.
    ///
    /// # Panics
    /// If `row` is past the last row or `values` is not `width` long.
    pub fn write(&mut self, row: usize, values: &[f32]) {
        assert_eq!(
            values.len(),
            self.width,
            "Q8Rows::write: a row is {} values",
            self.width
        );
        let blocks = self.width / Q8_BLOCK;
        let qs = &mut self.qs[row * self.width..][..self.width];
        let scales = &mut self.scales[row * blocks..][..blocks];
        for ((x, q), scale) in values
            .chunks_exact(Q8_BLOCK)
            .zip(qs.chunks_exact_mut(Q8_BLOCK))
            .zip(scales)
        {
            let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            *scale = amax / 127.0;
            let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
            for (q, v) in q.iter_mut().zip(x) {
                *q = (v * inv).round() as i8;
            }
        }
    }

    #[inline(always)]
    fn scale(&self, row: usize, column: usize) -> f32 {
        self.scales[(row * self.width + column) / Q8_BLOCK]
    }
}

impl KvRows for Q8Rows {
    fn width(&self) -> usize {
        self.width
    }

    fn rows(&self) -> usize {
        self.qs.len() / self.width
    }

    #[inline(always)]
    fn read(&self, row: usize, column: usize, dst: &mut [f32]) {
        let qs = &self.qs[row * self.width + column..][..dst.len()];
        for (i, (d, &q)) in dst.iter_mut().zip(qs).enumerate() {
            *d = f32::from(q) * self.scale(row, column + i);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(&self, row: usize, column: usize) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // SAFETY: the caller keeps row and column in bounds; eight values
        // from a multiple of 8 lie in one block.
        unsafe {
            let at = row * self.width + column;
            let q = _mm_loadl_epi64(self.qs.as_ptr().add(at).cast());
            let x = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
            _mm256_mul_ps(x, _mm256_set1_ps(*self.scales.get_unchecked(at / Q8_BLOCK)))
        }
    }

    #[inline(always)]
    fn prefetch(&self, row: usize) {
        let blocks = self.width / Q8_BLOCK;
        if let (Some(qs), Some(scales)) = (
            self.qs.get(row * self.width..(row + 1) * self.width),
            self.scales.get(row * blocks..(row + 1) * blocks),
        ) {
            prefetch_bytes(qs);
            prefetch_bytes(scales);
        }
    }
}
