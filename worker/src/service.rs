//! `mig.worker.v1.Worker`: each call in named steps: validate the fields,
//! tokenize (on the blocking pool: a long prompt is milliseconds of CPU that
//! the two async threads must not spend), enter the engine by its admission
//! rule, and relay the engine's events, ending every accepted request with
//! exactly one terminal status.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use mig_proto::inference::v1::{
    EmbedRequest, EmbedResponse, Embedding, FinishReason, GenerateRequest, GenerateStreamResponse,
    ModelKind as WireKind, ServedBy, TokenLogprob, TopLogprob, Usage,
};
use mig_proto::worker::v1::worker_server::Worker;
use mig_proto::worker::v1::{Batching, InfoRequest, WorkerInfo};
use mig_serve::deadline::request_timeout;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::engine::{EmbedJob, Engine, Finish, GenEvent, GenReceiver, GenerateJob, TokenLogprobs};
use crate::error::InferenceError;
use crate::identity::Identity;
use crate::metrics::{RequestOutcome, WorkerMetrics};
use crate::model::{Codec, ModelKind, TextCodec};
use crate::validate::{self, Limits, PromptInput, ValidGenerate};

pub struct WorkerService {
    engine: Arc<Engine>,
    codec: Codec,
    identity: Identity,
    limits: Limits,
    metrics: Arc<WorkerMetrics>,
}

impl WorkerService {
    pub fn new(
        engine: Arc<Engine>,
        codec: Codec,
        identity: Identity,
        limits: Limits,
        metrics: Arc<WorkerMetrics>,
    ) -> Self {
        WorkerService {
            engine,
            codec,
            identity,
            limits,
            metrics,
        }
    }
}

impl WorkerService {
    /// Identity, limits and live counters: the `Info` answer, also sent with
    /// every heartbeat.
    pub fn worker_info(&self) -> WorkerInfo {
        let counters = self.engine.counters();
        let context_length = self.codec.context_length() as u32;
        WorkerInfo {
            worker_id: self.identity.worker_id.clone(),
            model: self.identity.model.clone(),
            kind: WireKind::from(self.codec.kind()) as i32,
            context_length,
            slice: self.identity.slice.clone(),
            profile: self.identity.profile.clone(),
            device: self.identity.device.clone(),
            generated_tokens_total: counters.generated_tokens,
            requests_finished_total: counters.finished,
            requests_in_engine: counters.in_engine,
            max_new_tokens: match self.codec.kind() {
                ModelKind::Generate => context_length.saturating_sub(1),
                ModelKind::Embed => 0,
            },
            gpu: self.identity.gpu.clone(),
            gpu_instance_id: self.identity.gpu_instance_id.clone(),
            hostname: self.identity.hostname.clone(),
            memory_bytes: self.identity.memory_bytes,
            engine: self.engine.description().to_string(),
            batching: match self.codec.kind() {
                ModelKind::Generate => {
                    let config = self.engine.config().scheduler;
                    let kv = self.engine.capacity();
                    Some(Batching {
                        max_batch_size: config.max_batch_size as u32,
                        max_batch_tokens: config.max_batch_tokens as u32,
                        prefill_chunk: config.prefill_chunk as u32,
                        max_waiting: config.max_waiting as u32,
                        kv_capacity_tokens: kv.kv_tokens as u64,
                        kv_bytes: kv.kv_bytes,
                        kv_cache_type: kv.kv_type.to_string(),
                    })
                }
                ModelKind::Embed => None,
            },
        }
    }
}

impl From<Finish> for FinishReason {
    fn from(f: Finish) -> Self {
        match f {
            Finish::Length => FinishReason::Length,
            Finish::Stop => FinishReason::Stop,
            Finish::Eos => FinishReason::Eos,
            Finish::Cancelled => FinishReason::Cancelled,
        }
    }
}

impl From<ModelKind> for WireKind {
    fn from(k: ModelKind) -> Self {
        match k {
            ModelKind::Generate => WireKind::Generate,
            ModelKind::Embed => WireKind::Embed,
        }
    }
}

fn to_wire(
    event: GenEvent,
    served_by: &ServedBy,
    codec: Option<&TextCodec>,
) -> GenerateStreamResponse {
    match event {
        GenEvent::Delta {
            text,
            tokens,
            logprobs,
        } => GenerateStreamResponse {
            text,
            token_count: tokens,
            logprobs: logprobs_to_wire(logprobs, codec),
            ..Default::default()
        },
        GenEvent::Done {
            text,
            tokens,
            logprobs,
            finish,
            prompt_tokens,
            completion_tokens,
        } => GenerateStreamResponse {
            text,
            token_count: tokens,
            finish_reason: FinishReason::from(finish) as i32,
            usage: Some(Usage {
                prompt_tokens,
                completion_tokens,
            }),
            served_by: Some(served_by.clone()),
            logprobs: logprobs_to_wire(logprobs, codec),
        },
    }
}

/// Log-probabilities with each token's text on its own.
fn logprobs_to_wire(logprobs: Vec<TokenLogprobs>, codec: Option<&TextCodec>) -> Vec<TokenLogprob> {
    if logprobs.is_empty() {
        return Vec::new();
    }
    let text = |id: u32| {
        codec
            .and_then(|c| c.prompter.decoder().decode(&[id], false).ok())
            .unwrap_or_default()
    };
    logprobs
        .into_iter()
        .map(|t| TokenLogprob {
            id: t.id,
            text: text(t.id),
            logprob: t.logprob,
            top: t
                .top
                .into_iter()
                .map(|(id, logprob)| TopLogprob {
                    id,
                    text: text(id),
                    logprob,
                })
                .collect(),
        })
        .collect()
}

type GenerateStream = Pin<Box<dyn Stream<Item = Result<GenerateStreamResponse, Status>> + Send>>;

/// Runs `work` on the blocking pool: tokenizing is CPU work.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, InferenceError> + Send + 'static,
) -> Result<T, InferenceError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| InferenceError::model(format!("tokenizer task: {e}")))?
}

impl WorkerService {
    /// Step 1 of Generate: the fields, checked against their limits.
    fn validate_generate(
        &self,
        request: &GenerateRequest,
    ) -> Result<(Arc<TextCodec>, ValidGenerate), InferenceError> {
        let Codec::Text(codec) = &self.codec else {
            return Err(InferenceError::Invalid(format!(
                "`model` `{}` is an embedding model: call Embed",
                self.identity.model
            )));
        };
        Ok((codec.clone(), validate::generate(request, &self.limits)?))
    }

    /// Step 2: the prompt or chat as token ids.
    async fn tokenize(
        codec: Arc<TextCodec>,
        prompt: PromptInput,
    ) -> Result<Vec<u32>, InferenceError> {
        off_runtime(move || match &prompt {
            PromptInput::Text(text) => codec.prompter.encode_prompt(text),
            PromptInput::Chat(turns) => {
                let turns: Vec<(&str, &str)> = turns
                    .iter()
                    .map(|(r, c)| (r.as_str(), c.as_str()))
                    .collect();
                codec.prompter.encode_chat(&turns)
            }
        })
        .await
    }

    /// Steps 1 to 3: validate, tokenize, enter the engine. Also says the
    /// prompt's length in tokens.
    async fn start_generation(
        &self,
        request: Request<GenerateRequest>,
        arrived: Instant,
    ) -> Result<(GenReceiver, usize), InferenceError> {
        let deadline = request_timeout(request.metadata()).map(|t| arrived + t);
        let request = request.into_inner();
        let (codec, valid) = self.validate_generate(&request)?;
        let prompt = Self::tokenize(codec, valid.prompt).await?;
        let prompt_tokens = prompt.len();
        let events = self.engine.generate(GenerateJob {
            prompt,
            max_tokens: valid.max_tokens,
            sampling: valid.sampling,
            stop: valid.stop,
            ignore_eos: valid.ignore_eos,
            logprobs: valid.logprobs,
            deadline,
            arrived,
        })?;
        Ok((events, prompt_tokens))
    }

    /// Step 4: the engine's events to the client, in a task of their own.
    /// When the client goes away, tonic drops the response stream,
    /// `out.closed()` fires, and dropping `events` tells the engine to stop
    /// at its next token. The request is counted once, when it ends.
    fn relay(&self, mut events: GenReceiver, outcome: RequestOutcome) -> GenerateStream {
        let (out, out_rx) = mpsc::channel(16);
        let served_by = self.identity.served_by();
        let engine = self.engine.clone();
        let codec = match &self.codec {
            Codec::Text(codec) => Some(codec.clone()),
            _ => None,
        };
        tokio::spawn(async move {
            let code = loop {
                tokio::select! {
                    _ = out.closed() => break tonic::Code::Cancelled,
                    event = events.recv() => {
                        let item = match event {
                            Some(Ok(event)) => {
                                let done = matches!(event, GenEvent::Done { .. });
                                if out.send(Ok(to_wire(event, &served_by, codec.as_deref()))).await.is_err() {
                                    break tonic::Code::Cancelled;
                                }
                                if done {
                                    break tonic::Code::Ok;
                                }
                                continue;
                            }
                            Some(Err(e)) => Status::from(e),
                            // The engine dropped the request without its
                            // last event: it failed or is stopping. Every
                            // accepted request still ends with one status.
                            None => Status::from(engine.why_ended().await),
                        };
                        let code = item.code();
                        let _ = out.send(Err(item)).await;
                        break code;
                    }
                }
            };
            outcome.finish(code);
        });
        Box::pin(ReceiverStream::new(out_rx))
    }

    /// Embed's steps: validate, tokenize, enter the engine, await the vectors.
    async fn embed_inputs(
        &self,
        request: Request<EmbedRequest>,
        arrived: Instant,
    ) -> Result<EmbedResponse, InferenceError> {
        let deadline = request_timeout(request.metadata()).map(|t| arrived + t);
        let request = request.into_inner();
        let Codec::Embed(tokenizer) = &self.codec else {
            return Err(InferenceError::Invalid(format!(
                "`model` `{}` is a text-generation model: call Generate",
                self.identity.model
            )));
        };
        validate::embed(&request, &self.limits)?;
        let tokenizer = tokenizer.clone();
        let EmbedRequest {
            inputs, truncate, ..
        } = request;
        let encoded = off_runtime(move || tokenizer.encode(&inputs, truncate)).await?;
        let prompt_tokens = encoded.ids.iter().map(Vec::len).sum::<usize>() as u32;
        let answer = self.engine.embed(EmbedJob {
            inputs: encoded.ids,
            deadline,
            arrived,
        })?;
        let answer = match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), answer)
                .await
                .map_err(|_| InferenceError::DeadlineExceeded { generated: 0 })?,
            None => answer.await,
        };
        let vectors = match answer {
            Ok(vectors) => vectors?,
            Err(_) => return Err(self.engine.why_ended().await),
        };
        Ok(EmbedResponse {
            embeddings: vectors
                .into_iter()
                .map(|values| Embedding { values })
                .collect(),
            usage: Some(Usage {
                prompt_tokens,
                completion_tokens: 0,
            }),
            served_by: Some(self.identity.served_by()),
            truncated_inputs: encoded.truncated,
        })
    }
}

#[tonic::async_trait]
impl Worker for WorkerService {
    type GenerateStream = GenerateStream;

    async fn generate(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<Self::GenerateStream>, Status> {
        let arrived = Instant::now();
        // Dropped with this future if the client leaves before the request is
        // queued: counted CANCELLED.
        let outcome = self.metrics.begin();
        match self.start_generation(request, arrived).await {
            Ok((events, prompt_tokens)) => {
                let mut response = Response::new(self.relay(events, outcome));
                // The gateway charges the prompt to its tenant now, before
                // any token streams.
                response.metadata_mut().insert(
                    mig_serve::limits::PROMPT_TOKENS_HEADER,
                    tonic::metadata::MetadataValue::from(prompt_tokens as u64),
                );
                Ok(response)
            }
            Err(e) => {
                let status = Status::from(e);
                outcome.finish(status.code());
                Err(status)
            }
        }
    }

    async fn embed(
        &self,
        request: Request<EmbedRequest>,
    ) -> Result<Response<EmbedResponse>, Status> {
        let arrived = Instant::now();
        // Dropped with this future if the client leaves: counted CANCELLED.
        let outcome = self.metrics.begin();
        let result = self
            .embed_inputs(request, arrived)
            .await
            .map(Response::new)
            .map_err(Status::from);
        outcome.finish(match &result {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        });
        result
    }

    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<WorkerInfo>, Status> {
        Ok(Response::new(self.worker_info()))
    }
}
