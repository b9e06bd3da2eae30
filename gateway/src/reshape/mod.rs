//! Re-partitioning the MIG GPUs of a running gateway without dropping a
//! request (`mig-gateway reshape --to plan.json`).
//!
//! # Layout
//! - [`run`]: the reshape itself: steps from the live layout, then per GPU
//!   routing off, drain, workers stopped, instances destroyed and created,
//!   workers started and routed to.
//! - [`device`]: the MIG device it drives: NVML's, or a simulated one in a
//!   JSON file whose slices CPU workers stand in for (`up --simulate-mig`).
//! - [`admin`]: the admin listener (`up --admin-listen`, loopback, token).
//! - [`cli`]: `mig-gateway reshape`, its client.
//!
//! The steps themselves (which instances to keep, destroy and create, and
//! the driver calls) are `mig_slices::reshape`'s.

pub mod admin;
pub mod cli;
pub mod device;
pub mod run;
