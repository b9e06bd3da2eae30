//! What mig-gateway and mig-worker share to serve, and the typed contract
//! between the two processes.
//!
//! # Layout
//! - [`http2`]: gRPC routes on a bound listener, with drain, and without
//!   tonic's timeout layer (which answers CANCELLED where gRPC says
//!   DEADLINE_EXCEEDED).
//! - [`connections`]: the accept loop under it: handshake and idle
//!   timeouts, keep-alive pings, connection caps within the descriptor
//!   budget, TLS handshakes off the loop.
//! - [`signal`]: SIGINT / SIGTERM, who sends which.
//! - [`deadline`]: the `grpc-timeout` header, the one piece of wire format
//!   both servers read.
//! - [`status`]: gRPC codes by their canonical names (the `code` label).
//! - [`metrics_http`]: `GET /metrics` on a listener of its own.
//! - [`recorder`]: a local Prometheus recorder, the shared histogram
//!   buckets, the upkeep loop.
//! - [`ready_line`]: the line a worker prints when it is ready, as a type.
//! - [`worker_flags`]: what a worker loads and the `mig-worker serve` flags
//!   a supervisor starts it with, as a type.
//! - [`limits`]: marks and limits both processes check.
//! - [`fields`]: request field sizes, counts and roles, checked at the
//!   gateway's edge and again at the worker.
//! - [`secret`]: shared secrets (registration, worker caller tokens):
//!   redacted, compared in constant time, sent as a bearer token.
//! - [`tls`]: TLS server configurations (certificates that reload) and
//!   TLS client endpoints.
//! - [`reflection`]: gRPC reflection, `v1` and `v1alpha`.

pub mod connections;
pub mod deadline;
pub mod fields;
pub mod http2;
pub mod limits;
pub mod metrics_http;
pub mod ready_line;
pub mod recorder;
pub mod reflection;
pub mod secret;
pub mod signal;
pub mod status;
pub mod tls;
pub mod worker_flags;

pub use ready_line::ReadyLine;
pub use worker_flags::{ModelSource, WorkerFlags};
