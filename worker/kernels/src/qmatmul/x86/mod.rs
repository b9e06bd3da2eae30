//! x86-64 tiles. Both compute, per weight block and token,
//! `d_w * d_x * sum(q_w * q_x)` with integer multiply-adds of unsigned weight
//! bytes by signed activation bytes, and keep one f32 accumulator vector per
//! (row, token) whose lanes are summed once at the end of the row.
//!
//! - [`avx2`]: `vpmaddubsw` + `vpmaddwd`, 64 values per step.
//! - [`avx512`]: `vpdpbusd`, 128 values (one group of four blocks) per step.

pub(crate) mod avx2;
pub(crate) mod avx512;
