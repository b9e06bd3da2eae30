//! mig-gateway: the public gRPC API. It routes each request by model name to
//! a worker process pinned to one slice, relays tokens as they come, and can
//! start and stop the workers itself (`up`).
//!
//! Two rooms, and the registry between them: the fleet decides and keeps
//! which workers exist; the request path reads it to serve each call.
//!
//! # Layout
//! - [`request`]: the request path: layers at the edge, the `Inference`
//!   service, routing, dispatch and relay, per-request tracking, errors.
//! - [`openai`]: the OpenAI-compatible HTTP front (`--http-listen`): the
//!   same `Inference` service in OpenAI's JSON.
//! - [`kserve`]: KServe v2 gRPC (`inference.GRPCInferenceService`, what
//!   Triton's clients speak) on the public listener: the same `Inference`
//!   service in Triton's tensors.
//! - [`fleet`]: the fleet: fleet file, slices, placement, `plan`, start,
//!   supervisor, registration, scrape targets.
//! - [`admission`]: per model, the queue that holds requests until a
//!   worker has room: priority classes, fair shares between tenants,
//!   deadline-aware shedding.
//! - [`tenancy`]: who may call: tenants, API keys, allowed models,
//!   quotas, the authentication layer.
//! - [`tls`]: the listeners' certificates; [`reload`]: the tenants file
//!   and certificates read again on SIGHUP or when they change.
//! - [`registry`]: the known workers by model, their reported identity,
//!   load and health, and the loop that probes them;
//!   [`worker_connections`]: the connections calls take to a worker, one
//!   call on each at a time.
//! - [`metrics`]: every exported metric described in one place, and the
//!   exposition (worker health and slice sizes written from the registry);
//!   `metric_handles`: the request path's handles, registered once.
//! - [`server`]: `run(registry, listener, options, shutdown)`: both rooms'
//!   services on one listener.
//! - [`reshape`]: re-partitioning the MIG GPUs of a running gateway
//!   without dropping a request (`reshape`, the admin listener).
//! - [`config`]: the command line (`up`, `serve`, `slices`, `plan`, `call`).
//! - [`call_cmd`]: `mig-gateway call`, the shell client.

pub mod admission;
pub mod call_cmd;
pub mod config;
pub mod fleet;
pub mod kserve;
mod metric_handles;
pub mod metrics;
pub mod openai;
pub mod registry;
pub mod reload;
pub mod request;
pub mod reshape;
pub mod server;
pub mod tenancy;
pub mod tls;
pub mod worker_connections;

pub use server::{run, ServerOptions};
