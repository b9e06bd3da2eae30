//! mig-gateway: the public gRPC API. It routes each request by model name to
//! a worker process pinned to one slice, relays tokens as they come, and can
//! start and stop the workers itself (`up`).
//!
//! # Layout
//! - [`config`]: the command line (`up`, `serve`, `call`) and its checks.
//! - [`fleet`]: the fleet file: which model runs on which slices.
//! - [`slices`]: what this machine offers (NVML discovery, CPU cores);
//!   `mig-gateway slices`.
//! - [`model_file`]: a model file's memory need (weights, KV-cache shape).
//! - [`placement`]: fleet + slices found → which worker goes on which slice.
//! - [`plan_cmd`]: `mig-gateway plan`: MIG layout for a fleet on a GPU model.
//! - [`fleet_start`]: placed fleet to registry: connect, or start via the supervisor.
//! - [`scrape_targets`]: the workers' `/metrics` addresses as a Prometheus
//!   `file_sd` file (`up --worker-metrics-sd`).
//! - [`supervisor`]: starts worker processes pinned to their slices, reads
//!   their ready line, restarts them with backoff, stops them (SIGTERM,
//!   grace, SIGKILL).
//! - [`registration`]: heartbeats from workers started elsewhere
//!   (`mig-worker serve --gateway`); silent ones are dropped.
//! - [`registry`]: the known workers by model, their reported identity and health.
//! - [`router`]: picks a healthy worker of the requested model and kind.
//! - [`service`]: the `Inference` service: routing, deadline, cancellation, relaying.
//! - [`metrics`]: every exported metric in one place, and the per-request
//!   tracker (tokens per slice as they stream, latencies, final code).
//! - [`error`]: gateway errors and the one place they become gRPC status.
//! - [`server`]: `run(registry, listener, options, shutdown)`.
//! - [`client`]: `mig-gateway call`, the shell client.

pub mod client;
pub mod config;
pub mod error;
pub mod fleet;
pub mod fleet_start;
pub mod metrics;
pub mod model_file;
pub mod placement;
pub mod plan_cmd;
pub mod registration;
pub mod registry;
pub mod router;
pub mod scrape_targets;
pub mod server;
pub mod service;
pub mod slices;
pub mod supervisor;

pub use server::{run, ServerOptions};
