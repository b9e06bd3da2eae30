//! Re-partitioning MIG GPUs to a plan: what the driver has, what the plan
//! wants, and the fewest destroys and creates between them.
//!
//! # Layout
//! - [`control`]: the driver as a trait ([`MigControl`]): list GPU instances,
//!   destroy one, create one at a placement.
//! - [`simulated`]: [`SimulatedMig`], that trait in memory with the catalog's
//!   placement rules, for tests and machines without a MIG GPU.
//! - [`nvml`]: [`NvmlMig`], that trait on the real driver through NVML.
//! - [`steps`]: the step planner ([`plan_steps`]), pure: which live GPU each
//!   plan GPU becomes, what is kept, destroyed and created, the dry-run text;
//!   and [`apply_gpu`], which carries one GPU's steps out.

pub mod control;
pub mod nvml;
pub mod simulated;
pub mod steps;

pub use control::{LiveGpu, LiveInstance, MigControl, MigError};
pub use nvml::NvmlMig;
pub use simulated::SimulatedMig;
pub use steps::{
    apply_gpu, plan_steps, GpuSteps, Reshape, ReshapeError, Target, TargetGpu, TargetInstance,
};
