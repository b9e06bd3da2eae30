//! The request path: what happens to a client's call, from the edge to a
//! worker and back. It reads the registry (which workers exist, their load
//! and health) and never changes the fleet.
//!
//! # Layout
//! - [`layers`]: tower layers every call passes first (its arrival and
//!   deadline, stamped once); authentication and admission join here.
//! - [`service`]: the `Inference` service: each call admitted
//!   (`crate::admission`), routed, dispatched and relayed.
//! - [`routing`]: picks a healthy worker of the requested model and kind.
//! - [`dispatch`]: one dispatch routine for every call (a sibling worker
//!   is tried while the chosen one cannot be reached or refuses, before
//!   any answer); [`retry`]: the budget those retries draw on.
//! - [`relay`]: a worker's token stream as the client's response stream
//!   (or collected into one answer), each message counted and paid for;
//!   [`stall`]: the sweep that ends streams whose client reads nothing.
//! - [`tracking`]: one request followed from arrival to its terminal
//!   status: tokens per slice as they stream, latencies, the final code.
//! - [`protocol`]: which front a call came in on (the `protocol` label).
//! - [`error`]: the gateway's errors and the one place they become a gRPC
//!   status.

pub mod dispatch;
pub mod error;
pub mod layers;
pub mod protocol;
pub mod relay;
pub mod retry;
pub mod routing;
pub mod service;
pub mod stall;
pub mod tracking;
