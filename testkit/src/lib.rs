//! What the integration tests of every crate share (a dev-dependency only).
//!
//! # Layout
//! - [`paths`]: the repository root and the demo models `make models`
//!   fetches.
//! - [`http`]: `GET` over loopback HTTP/1.1, a `/metrics` scrape, one
//!   series' value.
//! - [`promtool`]: `promtool check ...` on what the project exports.
//! - [`process`]: the binaries of this build as real processes
//!   (`mig-gateway up`, `mig-worker serve`), bounded waits, and what
//!   `/proc` says about them.
//! - [`in_process`]: a worker served inside the test process.
//! - [`gateway`]: a gateway served inside the test process, its clients, and
//!   the shared fixture of real workers behind one.
//! - [`python`]: the pinned Python clients (`openai`, `tritonclient`,
//!   `grpcio-reflection`) run against a gateway.
//! - [`loadtest`]: the `mig-loadtest` binary run to its end, and its report.

pub mod gateway;
pub mod http;
pub mod in_process;
pub mod loadtest;
pub mod paths;
pub mod process;
pub mod promtool;
pub mod python;

pub use paths::{demo_model, minilm, repo_root, smollm2, MINILM, SMOLLM2};
