//! The engine: a thread that owns the model, the device and the KV store,
//! behind a handle that is the only way in.
//!
//! Generations are batched continuously ([`batch_loop`]): between two
//! forward steps new requests join the running batch and finished or
//! cancelled ones leave it, as the [`scheduler::Scheduler`] decides. Before
//! every step the engine checks whether each client is still listening,
//! whether its deadline has passed and whether the worker is shutting down,
//! so a cancelled request stops at its next token. Embedding models run one
//! request at a time ([`embed_loop`]).
//!
//! # Layout
//! - [`handle`]: [`Engine`], the async side's handle: start (the model loads
//!   on the thread), the typed `generate` and `embed` entries, stop, and
//!   what `Info` reports.
//! - [`admission`]: the one rule that decides whether a request enters
//!   (fits the context, fits the KV store, the waiting line has room), and
//!   its one error type.
//! - [`counters`]: the live counters and their Prometheus twins, moved together.
//! - [`health`]: the thread's state on a `watch` channel: serving, stopped,
//!   or failed and why.
//! - [`jobs`]: what goes in and what comes back.
//! - [`batch_loop`]: the thread's loop for generation models.
//! - [`embed_loop`]: the thread's loop for embedding models.
//! - [`scheduler`]: which sequences run in the next step (no model, no clock).
//! - [`sequence`]: one generation in the running batch.
//! - [`kv`]: sizing the KV store.

pub mod admission;
mod batch_loop;
pub mod counters;
mod embed_loop;
pub mod handle;
pub mod health;
pub mod jobs;
pub mod kv;
pub mod scheduler;
mod sequence;

pub use admission::Refusal;
pub use handle::Engine;
pub use health::Health;
pub use jobs::{EmbedJob, Finish, GenEvent, GenReceiver, GenerateJob, TokenLogprobs};

use crate::model::{DeviceKind, ModelSource, WeightFormat};
use scheduler::SchedulerConfig;

/// What to load, and where.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub source: ModelSource,
    pub device: DeviceKind,
    pub weights: WeightFormat,
    /// A test-only fault switch (`--fault-panic-on`, identity model only):
    /// the engine panics on a prompt that contains this text.
    pub panic_on: Option<String>,
}

/// How the engine batches and how much KV cache it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    pub scheduler: SchedulerConfig,
    /// Bytes for the KV store; `None`: the default for the device
    /// ([`kv::default_kv_bytes`]).
    pub kv_bytes: Option<u64>,
}
