//! mig-worker: one process per slice. It loads one model, owns the device
//! through an engine thread and serves `mig.worker.v1.Worker` to the gateway.
//!
//! # Layout
//! In layers: each module imports only those listed before it (the
//! command line sits on top, the model at the bottom, and nothing imports
//! back up).
//! - [`error`]: start-up vs inference errors, the admission refusal, and
//!   their mapping to gRPC status.
//! - [`sampling`]: request parameters to a seeded sampler with repetition penalty.
//! - [`stop`]: stop strings over streamed text, holding back partial matches.
//! - [`model`]: what to load ([`model::ModelSource`]) to running backends: the
//!   sync [`model::Generator`] and [`model::Embedder`] traits, where a model
//!   runs and how its weights are held ([`model::load_options`]), prompts to
//!   token ids ([`model::prompt`], [`model::chat_template`]), the GGUF llama
//!   ([`model::llama`]), BERT embeddings ([`model::bert`]), the identity model
//!   that echoes the prompt to measure serving overhead ([`model::identity`]),
//!   synthetic models of public shapes with seeded random weights
//!   ([`model::synthetic`]).
//! - [`identity`]: the slice identity reported everywhere (NVML for GPU
//!   slices, core count and host memory for CPU slices).
//! - [`metrics`]: every exported metric, described in one place, on the
//!   worker's own recorder.
//! - [`engine`]: the engine thread behind its handle: the one admission
//!   rule, counters, health, continuous batching.
//! - [`validate`]: every request field against its limit, naming the field.
//! - [`service`]: the tonic service, in named steps: validate, tokenize (off
//!   the async runtime), enter the engine, relay.
//! - [`register`]: heartbeats to a gateway (`--gateway`) for workers not
//!   started by it.
//! - [`server`]: `load(settings)` and `run(ready, listener, shutdown)`:
//!   readiness, health, drain, and a non-zero end when the engine dies.
//! - [`config`]: the `serve` command line (clap), its checks, and the
//!   settings it gives the server.
//! - [`agree`], [`bench`]: `mig-worker agree` (a seeded synthetic model on the
//!   CPU and on CUDA compared) and `mig-worker bench` (speed without a server).

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
