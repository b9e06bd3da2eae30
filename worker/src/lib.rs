//! mig-worker: one process per slice. It loads one model, owns the device
//! through an engine thread and serves `mig.worker.v1.Worker` to the gateway.
//!
//! # Layout
//! - [`agree`]: `mig-worker agree`, a seeded synthetic model on the CPU and on
//!   CUDA compared token by token.
//! - [`bench`]: `mig-worker bench`, prefill and decode speed without a server.
//! - [`config`]: the `serve` command line (clap) and its cross-field checks.
//! - [`model`]: what to load ([`model::ModelSource`]) to running backends: the
//!   sync [`model::Generator`] and [`model::Embedder`] traits, the GGUF llama
//!   ([`model::llama`]), BERT embeddings ([`model::bert`]), the identity model
//!   that echoes the prompt to measure serving overhead ([`model::identity`]),
//!   synthetic models of public shapes with seeded random weights
//!   ([`model::synthetic`]), the GGUF tokenizer ([`model::gguf_tokenizer`]) and the chat template
//!   ([`model::chat_template`]).
//! - [`sampling`]: request parameters to a seeded sampler with repetition penalty.
//! - [`stop`]: stop strings over streamed text, holding back partial matches.
//! - [`engine`]: the engine thread, its bounded job queue and the per-request
//!   generation loop (cancellation, deadline, token counting).
//! - [`identity`]: the slice identity reported everywhere (NVML for GPU
//!   slices, core count and host memory for CPU slices).
//! - [`metrics`]: every exported metric, described in one place, on the
//!   worker's own recorder.
//! - [`register`]: heartbeats to a gateway (`--gateway`) for workers not
//!   started by it.
//! - [`service`]: the tonic service: validates, tokenizes, queues, streams.
//! - [`server`]: `run(config, listener, shutdown)`, readiness and health.
//! - [`error`]: start-up vs inference errors and their mapping to gRPC status.
//! - [`validate`]: every request field against its limit, naming the field.

pub mod agree;
pub mod bench;
pub mod config;
pub mod engine;
pub mod error;
pub mod identity;
pub mod metrics;
pub mod model;
pub mod register;
pub mod sampling;
pub mod server;
pub mod service;
pub mod stop;
pub mod validate;

pub use config::ServeArgs;
pub use server::{run, Ready};

/// Checks the command line, resolves the slice, loads the model (on the
/// engine thread) and returns once it is ready to serve.
pub async fn load(args: &ServeArgs) -> Result<Ready, error::StartupError> {
    let settings = args.settings().map_err(error::StartupError::Config)?;
    server::load(settings).await
}
