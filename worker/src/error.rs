//! The worker's two error boundaries: failing to start (the model does not
//! load) and failing one request. Only [`InferenceError`] reaches clients, and
//! it becomes a `tonic::Status` in exactly one place, below.

use std::path::PathBuf;

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
    /// The engine queue is full.
    #[error("worker queue is full ({limit} requests waiting); retry later")]
    QueueFull { limit: usize },
    /// The request could never fit this worker's KV store.
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
    #[error("deadline exceeded after {generated} generated tokens")]
    DeadlineExceeded { generated: u32 },
    /// The worker is shutting down and takes no new work.
    #[error("worker is shutting down")]
    ShuttingDown,
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
            InferenceError::QueueFull { .. } => "overloaded",
            InferenceError::KvCapacity { .. } => "kv_capacity",
            InferenceError::DeadlineExceeded { .. } => "deadline",
            InferenceError::ShuttingDown => "shutting_down",
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
            InferenceError::QueueFull { .. } | InferenceError::KvCapacity { .. } => {
                tonic::Status::resource_exhausted(msg)
            }
            InferenceError::DeadlineExceeded { .. } => tonic::Status::deadline_exceeded(msg),
            InferenceError::ShuttingDown => tonic::Status::unavailable(msg),
            InferenceError::Model(_) => tonic::Status::internal(msg),
        }
    }
}
