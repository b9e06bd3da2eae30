//! The worker's two error boundaries: failing to start (the model does not
//! load) and failing one request. Only [`InferenceError`] reaches clients, and
//! it becomes a `tonic::Status` in exactly one place, below.

use std::path::PathBuf;

use tonic::Code;

/// The worker cannot start serving.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0}")]
    Config(String),
    #[error("cannot read model `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("model `{path}` is not usable: {reason}")]
    Model { path: PathBuf, reason: String },
    #[error("device: {0}")]
    Device(String),
    #[error("engine thread: {0}")]
    Engine(String),
}

impl StartupError {
    pub fn model(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        StartupError::Model {
            path: path.into(),
            reason: reason.to_string(),
        }
    }

    /// Stable name of the stage that failed, for logs and metric labels.
    pub fn error_type(&self) -> &'static str {
        match self {
            StartupError::Config(_) => "config",
            StartupError::Read { .. } => "read",
            StartupError::Model { .. } => "model",
            StartupError::Device(_) => "device",
            StartupError::Engine(_) => "engine",
        }
    }
}

/// Why a request does not enter the engine: its admission rule
/// (`engine::admission`) says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The prompt has no token to start from.
    #[error("`prompt` tokenizes to no token")]
    EmptyPrompt,
    /// Prompt plus `max_tokens` are more than the model's context.
    #[error(
        "`max_tokens` ({max_tokens}) plus the prompt ({prompt} tokens) exceed the \
         model's context of {context} tokens"
    )]
    TooLong {
        prompt: usize,
        max_tokens: u32,
        context: usize,
    },
    /// Even an empty KV store could not hold the whole generation.
    #[error(
        "the prompt ({prompt} tokens) plus `max_tokens` ({max_tokens}) need {needed} tokens of \
         KV cache, but this worker's KV store holds {capacity} (`--kv-cache-mib`); lower \
         `max_tokens` or shorten the prompt"
    )]
    KvCapacity {
        prompt: usize,
        max_tokens: usize,
        needed: usize,
        capacity: usize,
    },
    /// `--max-waiting` requests already wait for the running batch.
    #[error("worker queue is full ({limit} requests waiting); retry later")]
    QueueFull { limit: usize },
}

impl Refusal {
    /// The gRPC code: the request itself is wrong (INVALID_ARGUMENT), or
    /// this worker has no room for it (RESOURCE_EXHAUSTED).
    pub fn code(&self) -> Code {
        match self {
            Refusal::EmptyPrompt | Refusal::TooLong { .. } => Code::InvalidArgument,
            Refusal::KvCapacity { .. } | Refusal::QueueFull { .. } => Code::ResourceExhausted,
        }
    }

    /// Stable name for logs and metric labels.
    pub fn error_type(&self) -> &'static str {
        match self {
            Refusal::EmptyPrompt | Refusal::TooLong { .. } => "validation",
            Refusal::KvCapacity { .. } => "kv_capacity",
            Refusal::QueueFull { .. } => "overloaded",
        }
    }
}

/// One request failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum InferenceError {
    /// A request field is out of range; the message names the field in
    /// backticks and its limit.
    #[error("{0}")]
    Invalid(String),
    /// The request asks for a slice profile this worker does not run on.
    #[error("`profile` is `{asked}`, but this worker runs on a `{serves}` slice")]
    OtherProfile { asked: String, serves: String },
    /// The engine's admission rule refused it: too long for the context,
    /// too large for the KV store, or the waiting line is full.
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("deadline exceeded after {generated} generated tokens")]
    DeadlineExceeded { generated: u32 },
    /// The worker is shutting down and takes no new work.
    #[error("worker is shutting down")]
    ShuttingDown,
    /// The engine thread died; the worker exits and is restarted.
    #[error("the engine failed ({0}); this worker is restarting")]
    EngineFailed(String),
    /// The model failed during a forward pass or tokenization.
    #[error("inference failed: {0}")]
    Model(String),
}

impl InferenceError {
    pub fn model(e: impl ToString) -> Self {
        InferenceError::Model(e.to_string())
    }

    /// Stable name for logs and metric labels.
    pub fn error_type(&self) -> &'static str {
        match self {
            InferenceError::Invalid(_) => "validation",
            InferenceError::OtherProfile { .. } => "other_profile",
            InferenceError::Refused(refusal) => refusal.error_type(),
            InferenceError::DeadlineExceeded { .. } => "deadline",
            InferenceError::ShuttingDown => "shutting_down",
            InferenceError::EngineFailed(_) => "engine_failed",
            InferenceError::Model(_) => "model",
        }
    }
}

impl From<InferenceError> for tonic::Status {
    fn from(e: InferenceError) -> Self {
        let msg = e.to_string();
        match e {
            InferenceError::Invalid(_) => tonic::Status::invalid_argument(msg),
            // As the gateway answers when no worker of the model has it.
            InferenceError::OtherProfile { .. } => tonic::Status::not_found(msg),
            InferenceError::Refused(refusal) => tonic::Status::new(refusal.code(), msg),
            InferenceError::DeadlineExceeded { .. } => tonic::Status::deadline_exceeded(msg),
            InferenceError::ShuttingDown | InferenceError::EngineFailed(_) => {
                tonic::Status::unavailable(msg)
            }
            InferenceError::Model(_) => tonic::Status::internal(msg),
        }
    }
}
