//! mig-gateway: the public gRPC API. It routes each request by model name to
//! a worker process pinned to one slice, relays tokens as they come, and can
//! start and stop the workers itself (`up`).
//!
//! # Layout
//! - [`config`]: the command line (`up`, `serve`, `call`) and its checks.
//! - [`fleet`]: the fleet file: which model runs on which worker or slice.
//! - [`fleet_start`]: fleet file to registry: connect, or start via the supervisor.
//! - [`supervisor`]: starts worker processes, reads their ready line, stops
//!   them (SIGTERM, grace, SIGKILL).
//! - [`registry`]: the known workers by model, their reported identity and health.
//! - [`router`]: picks a healthy worker of the requested model and kind.
//! - [`service`]: the `Inference` service: routing, deadline, cancellation, relaying.
//! - [`error`]: gateway errors and the one place they become gRPC status.
//! - [`server`]: `run(registry, listener, health_interval, drain, shutdown)`.
//! - [`client`]: `mig-gateway call`, the shell client.
//! - [`shutdown`]: SIGINT / SIGTERM.

pub mod client;
pub mod config;
pub mod error;
pub mod fleet;
pub mod fleet_start;
pub mod registry;
pub mod router;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod supervisor;

pub use server::run;
