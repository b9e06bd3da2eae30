//! One generation in the running batch: its tokens, sampler, detokenizer,
//! stop strings and the channel its events go to. The engine loop feeds it
//! the logits of each step; it decides when the generation ends and sends
//! exactly one terminal event (or none, when the client is gone).

use std::time::Instant;

use candle_core::Tensor;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::ModelWrapper;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::tokenizer::DecodeStream;

use super::counters::Counters;
use super::jobs::{Finish, GenEvent, GenSender, GenerateJob, TokenLogprobs};
use crate::error::InferenceError;
use crate::model::TextCodec;
use crate::sampling::{Distribution, Sampler};
use crate::stop::StopMatcher;

/// Where a sequence stands after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Running,
    /// Its terminal event is sent (or its client is gone): it leaves.
    Ended,
}

/// The streaming detokenizer of a [`tokenizers::Tokenizer`].
type Detokenizer<'c> = DecodeStream<
    'c,
    ModelWrapper,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

pub struct Sequence<'c> {
    /// The prompt, then every sampled token.
    pub history: Vec<u32>,
    prompt_tokens: u32,
    max_tokens: u32,
    ignore_eos: bool,
    deadline: Option<Instant>,
    pub arrived: Instant,
    events: GenSender,
    sampler: Sampler,
    decoder: Detokenizer<'c>,
    stops: StopMatcher,
    codec: &'c TextCodec,
    generated: u32,
    /// Tokens generated since the last event that carried text.
    unsent: u32,
    /// Alternatives to report log-probabilities of per token; 0: none.
    logprobs: u32,
    /// The log-probabilities of the `unsent` tokens, when asked.
    unsent_logprobs: Vec<TokenLogprobs>,
    /// When it was first scheduled.
    pub started: Option<Instant>,
    first_token_at: Option<Instant>,
    last_token_at: Option<Instant>,
}

impl<'c> Sequence<'c> {
    pub fn new(job: GenerateJob, events: GenSender, codec: &'c TextCodec) -> Self {
        let GenerateJob {
            prompt,
            max_tokens,
            sampling,
            stop,
            ignore_eos,
            logprobs,
            deadline,
            arrived,
        } = job;
        Sequence {
            prompt_tokens: prompt.len() as u32,
            history: prompt,
            max_tokens,
            ignore_eos,
            deadline,
            arrived,
            events,
            sampler: Sampler::new(&sampling),
            decoder: codec.prompter.decoder().decode_stream(true),
            stops: StopMatcher::new(stop),
            codec,
            generated: 0,
            unsent: 0,
            logprobs,
            unsent_logprobs: Vec::new(),
            started: None,
            first_token_at: None,
            last_token_at: None,
        }
    }

    pub fn prompt_len(&self) -> usize {
        self.prompt_tokens as usize
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens as usize
    }

    /// Ends the sequence before its next step if the client left, its
    /// deadline passed or the worker is stopping.
    pub fn interrupted(&mut self, stopping: bool) -> Option<Progress> {
        if self.events.is_closed() {
            tracing::debug!(
                generated = self.generated,
                "client went away; generation cancelled"
            );
            return Some(Progress::Ended);
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.fail(InferenceError::DeadlineExceeded {
                generated: self.generated,
            });
            return Some(Progress::Ended);
        }
        if stopping {
            return Some(self.finish(Finish::Cancelled));
        }
        None
    }

    /// Sends the terminal error.
    pub fn fail(&self, error: InferenceError) {
        let _ = self.events.send(Err(error));
    }

    /// Samples the next token from this sequence's logits (`(vocab,)` or
    /// `(1, vocab)`) and sends what it adds.
    pub fn accept(&mut self, logits: &Tensor, counters: &Counters) -> Progress {
        let metrics = counters.metrics();
        // From the logits as the sampler receives them, before penalties.
        let distribution = match (self.logprobs > 0).then(|| Distribution::new(logits)) {
            Some(Err(e)) => {
                self.fail(InferenceError::model(format!("log-probabilities: {e}")));
                return Progress::Ended;
            }
            Some(Ok(d)) => Some(d),
            None => None,
        };
        let next = match self.sampler.sample(logits, &self.history) {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(error = %e, "sampling failed");
                self.fail(InferenceError::model(e));
                return Progress::Ended;
            }
        };
        let now = Instant::now();
        match self.last_token_at.replace(now) {
            None => metrics.time_to_first_token.record(now - self.arrived),
            Some(previous) => metrics.inter_token_latency.record(now - previous),
        }
        self.first_token_at.get_or_insert(now);
        // With `ignore_eos` the end-of-sequence token is generated like any
        // other; the decoder skips special tokens, so it adds no text.
        if !self.ignore_eos && self.codec.stop_ids.contains(&next) {
            return self.finish(Finish::Eos);
        }
        self.generated += 1;
        self.unsent += 1;
        if let Some(d) = &distribution {
            self.unsent_logprobs.push(TokenLogprobs {
                id: next,
                logprob: d.logprob(next),
                top: d.top(self.logprobs as usize),
            });
        }
        counters.generated();
        self.history.push(next);
        let piece = match self.decoder.step(next) {
            Ok(piece) => piece,
            Err(e) => {
                self.fail(InferenceError::model(format!("detokenizer: {e}")));
                return Progress::Ended;
            }
        };
        if let Some(piece) = piece {
            let released = self.stops.push(&piece);
            if released.stopped {
                // The remaining text goes out with the final event.
                return self.done(released.text, Finish::Stop);
            }
            if !released.text.is_empty() {
                let delta = GenEvent::Delta {
                    text: released.text,
                    tokens: self.unsent,
                    logprobs: std::mem::take(&mut self.unsent_logprobs),
                };
                if self.events.send(Ok(delta)).is_err() {
                    return Progress::Ended;
                }
                self.unsent = 0;
            }
        }
        if self.generated >= self.max_tokens || self.history.len() >= self.codec.context_length {
            // Validation keeps prompt + max_tokens within the context; the
            // second test guards the model's position tables regardless.
            return self.finish(Finish::Length);
        }
        Progress::Running
    }

    fn finish(&mut self, finish: Finish) -> Progress {
        let text = self.stops.finish();
        self.done(text, finish)
    }

    fn done(&mut self, text: String, finish: Finish) -> Progress {
        let _ = self.events.send(Ok(GenEvent::Done {
            text,
            tokens: self.unsent,
            logprobs: std::mem::take(&mut self.unsent_logprobs),
            finish,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.generated,
        }));
        self.log_done(finish);
        Progress::Ended
    }

    fn log_done(&self, finish: Finish) {
        let started = self.started.unwrap_or(self.arrived);
        let prefill = self.first_token_at.map(|t| t - started).unwrap_or_default();
        let decode = self.first_token_at.map(|t| t.elapsed()).unwrap_or_default();
        let decode_tps = if self.generated > 1 {
            (self.generated - 1) as f64 / decode.as_secs_f64()
        } else {
            0.0
        };
        tracing::info!(
            prompt_tokens = self.prompt_tokens,
            completion_tokens = self.generated,
            ?finish,
            prefill_ms = prefill.as_millis() as u64,
            decode_tokens_per_s = format!("{decode_tps:.1}"),
            "generation finished"
        );
    }
}
