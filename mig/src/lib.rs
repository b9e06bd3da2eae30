//! The MIG domain of mig-gateway, pure and synchronous (no tokio, no tonic).
//!
//! # Layout
//! - [`slice`]: what a worker is pinned to: a MIG device (`MIG-<uuid>`), a whole
//!   GPU (`GPU-<uuid>`) or a CPU slice (`cpu:0-1`), and the profile name each
//!   reports (`1g.10gb`, `cpu-2c`).
//!
//! The GPU catalog, NVML discovery and the placement planner join this crate
//! with the slices issue.

pub mod slice;

pub use slice::{CoreSet, SliceId, SliceParseError};
