//! The MIG domain of mig-gateway, pure and synchronous (no tokio, no tonic).
//!
//! # Layout
//! - [`slice`](mod@slice): what a worker is pinned to: a MIG device (`MIG-<uuid>`), a whole
//!   GPU (`GPU-<uuid>`) or a CPU slice (`cpu:0-1`), and the profile name each
//!   reports (`1g.10gb`, `cpu-2c`).
//! - [`catalog`]: GPU models that support MIG and their GPU-instance profiles,
//!   with the placements each profile may take.
//! - [`layout`]: checks a set of GPU instances against the placement rules and
//!   finds placements for a multiset of profiles.
//! - [`need`]: the memory a model replica needs (weights plus KV cache for a
//!   context length and a concurrency).
//! - [`planner`]: which profile each model replica gets and how they pack onto
//!   the fewest GPUs; also assigns models to slices that exist already.
//! - [`throughput`]: decode rates per profile (measured, or modelled from the
//!   GPU's memory bandwidth), for replicas that ask for tokens/s.
//! - [`render`]: a plan as `nvidia-smi` commands, a mig-parted config and
//!   Kubernetes resource names.
//! - [`reshape`]: re-partitioning live GPUs to a plan with the fewest
//!   destroys: the driver as a trait (NVML, simulated) and the step planner.
//! - [`synthetic`]: the shapes of public llama-family models, for synthetic
//!   (random-weight) workers and their memory need.
//! - [`discovery`]: what NVML reports (GPUs, MIG mode, MIG devices), kept apart
//!   from the mapping to slices so the mapping is tested on recorded data.
//! - [`node`]: the node's name as dcgm-exporter labels it (`Hostname`).
//! - [`dcgm`]: dcgm-exporter's labels for a slice (`UUID`, `GPU_I_ID`,
//!   `GPU_I_PROFILE`, `Hostname`), which per-slice series carry to join DCGM's.

pub mod catalog;
pub mod dcgm;
pub mod discovery;
pub mod layout;
pub mod need;
pub mod node;
pub mod packing;
pub mod planner;
pub mod render;
pub mod reshape;
pub mod slice;
pub mod synthetic;
pub mod throughput;

pub use slice::{compute_units, CoreSet, SliceId, SliceParseError};
