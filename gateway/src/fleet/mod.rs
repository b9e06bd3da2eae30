//! The fleet: which workers exist and where. Everything that decides,
//! starts, admits and watches workers; the request path only reads the
//! registry this room fills.
//!
//! # Layout
//! - [`file`]: the fleet file (TOML): which model runs on which slices.
//! - [`slices`]: what this machine offers (NVML discovery, CPU cores);
//!   `mig-gateway slices`.
//! - [`model_file`]: a model file's memory need (weights, KV-cache shape).
//! - [`placement`]: fleet + slices found, to which worker goes on which slice.
//! - [`plan`]: `mig-gateway plan`: the MIG layout for a fleet on a GPU model;
//!   [`k8s_workers`]: its Kubernetes set (MIG manager config, node label,
//!   worker Deployments).
//! - [`start`]: a placed fleet into the registry: connect to running
//!   workers, or start them through the supervisor.
//! - [`supervisor`]: where a worker is started: worker processes pinned to
//!   their slices, their ready line read, restarts with backoff, stops
//!   (SIGTERM, grace, SIGKILL).
//! - [`registration`]: heartbeats from workers started elsewhere
//!   (`mig-worker serve --gateway`); silent ones are dropped.
//! - [`scrape_targets`]: the workers' `/metrics` addresses as a Prometheus
//!   `file_sd` file (`up --worker-metrics-sd`).

pub mod file;
pub mod k8s_workers;
pub mod model_file;
pub mod placement;
pub mod plan;
pub mod registration;
pub mod scrape_targets;
pub mod slices;
pub mod start;
pub mod supervisor;

pub use file::{Fleet, FleetError, ModelEntry, ModelPlan, ModelSource, Slices, Want};
