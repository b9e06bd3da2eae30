//! What enters the engine (a generation or an embedding batch, tokenized
//! and checked) and what comes back.

use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::error::InferenceError;
use crate::sampling::SamplingParams;

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Length,
    Stop,
    Eos,
    /// The worker is shutting down.
    Cancelled,
}

/// What the engine sends back for a generation, in order: any number of
/// `Delta`, then exactly one `Done` (or one error).
#[derive(Debug, Clone, PartialEq)]
pub enum GenEvent {
    /// New text and the number of tokens generated since the last event
    /// (with their log-probabilities, when asked: one entry a token).
    Delta {
        text: String,
        tokens: u32,
        logprobs: Vec<TokenLogprobs>,
    },
    Done {
        text: String,
        tokens: u32,
        logprobs: Vec<TokenLogprobs>,
        finish: Finish,
        prompt_tokens: u32,
        completion_tokens: u32,
    },
}

/// One generated token's log-probability and its step's most likely
/// alternatives (`crate::sampling::Distribution`), as ids: their text is
/// decoded off the engine thread.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    pub id: u32,
    pub logprob: f32,
    /// Most likely first.
    pub top: Vec<(u32, f32)>,
}

pub type GenSender = mpsc::UnboundedSender<Result<GenEvent, InferenceError>>;
/// A generation's events; dropping it tells the engine the client left.
pub type GenReceiver = mpsc::UnboundedReceiver<Result<GenEvent, InferenceError>>;

/// A generation, tokenized and validated.
pub struct GenerateJob {
    pub prompt: Vec<u32>,
    pub max_tokens: u32,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    /// The model's end-of-sequence ids do not end the generation: it runs to
    /// `max_tokens` (benchmarks compare runs of equal length).
    pub ignore_eos: bool,
    /// Alternatives to report log-probabilities of per token; 0: none.
    pub logprobs: u32,
    pub deadline: Option<Instant>,
    /// When the request reached the worker: queue wait, time to first token
    /// and duration are measured from here.
    pub arrived: Instant,
}

/// Inputs to embed, tokenized.
pub struct EmbedJob {
    pub inputs: Vec<Vec<u32>>,
    pub deadline: Option<Instant>,
    pub arrived: Instant,
}

pub type EmbedReply = oneshot::Sender<Result<Vec<Vec<f32>>, InferenceError>>;
/// The vectors of an embedding job, one per input.
pub type EmbedReceiver = oneshot::Receiver<Result<Vec<Vec<f32>>, InferenceError>>;

/// A job on the engine's queue, with the channel its answer goes to.
pub(super) enum Job {
    Generate(GenerateJob, GenSender),
    Embed(EmbedJob, EmbedReply),
}

impl Job {
    pub(super) fn arrived(&self) -> Instant {
        match self {
            Job::Generate(j, _) => j.arrived,
            Job::Embed(j, _) => j.arrived,
        }
    }
}
