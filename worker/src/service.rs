//! `mig.worker.v1.Worker`: validates and tokenizes each request on the async
//! side, queues it for the engine, and relays the engine's events.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use mig_proto::deadline::request_timeout;
use mig_proto::inference::v1::{
    EmbedRequest, EmbedResponse, Embedding, FinishReason, GenerateRequest, GenerateStreamResponse,
    ModelKind as WireKind, ServedBy, Usage,
};
use mig_proto::worker::v1::worker_server::Worker;
use mig_proto::worker::v1::{Batching, InfoRequest, WorkerInfo};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::engine::{EmbedJob, Engine, Finish, GenEvent, GenerateJob, Job};
use crate::error::InferenceError;
use crate::identity::Identity;
use crate::metrics::WorkerMetrics;
use crate::model::{Codec, ModelKind};
use crate::validate::{self, Limits, PromptInput};

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
        let stats = self.engine.stats();
        let context_length = self.codec.context_length() as u32;
        WorkerInfo {
            worker_id: self.identity.worker_id.clone(),
            model: self.identity.model.clone(),
            kind: WireKind::from(self.codec.kind()) as i32,
            context_length,
            slice: self.identity.slice.clone(),
            profile: self.identity.profile.clone(),
            device: self.identity.device.clone(),
            generated_tokens_total: stats.generated_tokens.load(Ordering::Relaxed),
            requests_finished_total: stats.finished.load(Ordering::Relaxed),
            requests_in_engine: stats.in_engine.load(Ordering::Relaxed),
            max_new_tokens: match self.codec.kind() {
                ModelKind::Generate => context_length.saturating_sub(1),
                ModelKind::Embed => 0,
            },
            gpu: self.identity.gpu.clone(),
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

fn to_wire(event: GenEvent, served_by: &ServedBy) -> GenerateStreamResponse {
    match event {
        GenEvent::Delta { text, tokens } => GenerateStreamResponse {
            text,
            token_count: tokens,
            ..Default::default()
        },
        GenEvent::Done {
            text,
            tokens,
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
        },
    }
}

type GenerateStream = Pin<Box<dyn Stream<Item = Result<GenerateStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Worker for WorkerService {
    type GenerateStream = GenerateStream;

    async fn generate(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<Self::GenerateStream>, Status> {
        let arrived = Instant::now();
        // Counted once: by the relay task once queued, here if refused, or
        // as CANCELLED if the client leaves before either.
        let mut outcome = Some(self.metrics.begin());
        let result: Result<Response<Self::GenerateStream>, Status> = async {
            let deadline = request_timeout(request.metadata()).map(|t| Instant::now() + t);
            let request = request.into_inner();
            let Codec::Text(codec) = &self.codec else {
                return Err(InferenceError::Invalid(format!(
                    "`model` `{}` is an embedding model: call Embed",
                    self.identity.model
                ))
                .into());
            };
            let valid = validate::generate(&request, &self.limits)?;
            let prompt = match &valid.prompt {
                PromptInput::Text(text) => codec.prompter.encode_prompt(text)?,
                PromptInput::Chat(turns) => {
                    let turns: Vec<(&str, &str)> = turns
                        .iter()
                        .map(|(r, c)| (r.as_str(), c.as_str()))
                        .collect();
                    codec.prompter.encode_chat(&turns)?
                }
            };
            validate::check_prompt_fits(prompt.len(), valid.max_tokens, &self.limits)?;

            let (events_tx, mut events) = mpsc::unbounded_channel();
            self.engine.submit(Job::Generate(GenerateJob {
                prompt,
                max_tokens: valid.max_tokens,
                sampling: valid.sampling,
                stop: valid.stop,
                ignore_eos: valid.ignore_eos,
                deadline,
                arrived,
                events: events_tx,
            }))?;

            // Relay the engine's events. When the client goes away, tonic drops
            // the response stream, `out.closed()` fires, and dropping `events`
            // tells the engine to stop at its next token.
            let (out, out_rx) = mpsc::channel(16);
            let served_by = self.identity.served_by();
            let outcome = outcome
                .take()
                .expect("taken once, when the generation is queued");
            tokio::spawn(async move {
                let code = loop {
                    tokio::select! {
                        _ = out.closed() => break tonic::Code::Cancelled,
                        event = events.recv() => {
                            let item = match event {
                                Some(Ok(event)) => {
                                    let done = matches!(event, GenEvent::Done { .. });
                                    let sent = out.send(Ok(to_wire(event, &served_by))).await;
                                    if sent.is_err() {
                                        break tonic::Code::Cancelled;
                                    }
                                    if done {
                                        break tonic::Code::Ok;
                                    }
                                    continue;
                                }
                                Some(Err(e)) => Status::from(e),
                                // Every accepted request ends with one terminal
                                // status, even if the engine thread died.
                                None => Status::internal("engine ended the generation without a result"),
                            };
                            let code = item.code();
                            let _ = out.send(Err(item)).await;
                            break code;
                        }
                    }
                };
                outcome.finish(code);
            });
            let stream: Self::GenerateStream = Box::pin(ReceiverStream::new(out_rx));
            Ok(Response::new(stream))
        }
        .await;
        if let (Err(status), Some(outcome)) = (&result, outcome) {
            outcome.finish(status.code());
        }
        result
    }

    async fn embed(
        &self,
        request: Request<EmbedRequest>,
    ) -> Result<Response<EmbedResponse>, Status> {
        let arrived = Instant::now();
        // Dropped with this future if the client leaves: counted CANCELLED.
        let outcome = self.metrics.begin();
        let result: Result<Response<EmbedResponse>, Status> = async {
            let deadline = request_timeout(request.metadata()).map(|t| Instant::now() + t);
            let request = request.into_inner();
            let Codec::Embed(tokenizer) = &self.codec else {
                return Err(InferenceError::Invalid(format!(
                    "`model` `{}` is a text-generation model: call Generate",
                    self.identity.model
                ))
                .into());
            };
            validate::embed(&request, &self.limits)?;
            let encoded = tokenizer.encode(&request.inputs, request.truncate)?;
            let prompt_tokens = encoded.ids.iter().map(Vec::len).sum::<usize>() as u32;
            let (reply, answer) = oneshot::channel();
            self.engine.submit(Job::Embed(EmbedJob {
                inputs: encoded.ids,
                deadline,
                arrived,
                reply,
            }))?;
            let answer = match deadline {
                Some(d) => tokio::time::timeout_at(d.into(), answer)
                    .await
                    .map_err(|_| InferenceError::DeadlineExceeded { generated: 0 })?,
                None => answer.await,
            };
            let vectors =
                answer.map_err(|_| Status::internal("engine dropped the embedding request"))??;
            Ok(Response::new(EmbedResponse {
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
            }))
        }
        .await;
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
