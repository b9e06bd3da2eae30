//! `mig.inference.v1.Inference`: the public API. Each call is routed by model
//! name to a healthy worker and relayed; the client's deadline travels to the
//! worker, and a client that goes away cancels the worker's generation.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use mig_proto::inference::v1::inference_server::Inference;
use mig_proto::inference::v1::{
    EmbedRequest, EmbedResponse, FinishReason, GenerateRequest, GenerateResponse,
    GenerateStreamResponse, ListModelsRequest, ListModelsResponse, ModelInfo, ModelKind,
    WorkerHealth, WorkerStatus,
};
use mig_serve::deadline::request_timeout;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::codec::Streaming;
use tonic::{Request, Response, Status};

use crate::error::GatewayError;
use crate::metrics::{GatewayMetrics, Tracked};
use crate::registry::{InFlight, Registry, WorkerHandle};
use crate::router::{self, Route};

pub struct InferenceService {
    registry: Arc<Registry>,
    metrics: Arc<GatewayMetrics>,
}

impl InferenceService {
    pub fn new(registry: Arc<Registry>, metrics: Arc<GatewayMetrics>) -> Self {
        InferenceService { registry, metrics }
    }

    /// Opens the worker's token stream, trying the model's other healthy
    /// workers if the chosen one cannot be reached.
    async fn open_stream(
        &self,
        request: GenerateRequest,
        deadline: Option<Instant>,
    ) -> Result<
        (
            Arc<WorkerHandle>,
            InFlight,
            Streaming<GenerateStreamResponse>,
            Instant,
        ),
        GatewayError,
    > {
        let mut tried = Vec::new();
        loop {
            let route = Route {
                model: &request.model,
                kind: ModelKind::Generate,
                profile: &request.profile,
            };
            let worker = router::select(&self.registry, route, &tried)?;
            let guard = worker.begin();
            let mut client = worker.client();
            let call = with_deadline(request.clone(), deadline)?;
            let dispatched = Instant::now();
            match client.generate(call).await {
                Ok(stream) => return Ok((worker, guard, stream.into_inner(), dispatched)),
                Err(status) => match GatewayError::from_worker(&worker.id(), status) {
                    GatewayError::WorkerUnreachable { .. } => {
                        worker.mark_unhealthy();
                        tried.push(worker.address());
                    }
                    other => return Err(other),
                },
            }
        }
    }
}

impl InferenceService {
    /// Starts tracking a request. A model name the gateway does not know is
    /// labelled `_unknown`: the label must not take whatever clients type.
    fn track(&self, model: &str) -> Tracked {
        if self.registry.workers(model).is_some() {
            self.metrics.track(model)
        } else {
            self.metrics.track(UNKNOWN_MODEL)
        }
    }

    /// An embedding call on a healthy worker, trying the model's others if the
    /// chosen one cannot be reached.
    async fn embed_routed(
        &self,
        request: EmbedRequest,
        deadline: Option<Instant>,
        tracked: &mut Tracked,
    ) -> Result<Response<EmbedResponse>, GatewayError> {
        let mut tried = Vec::new();
        loop {
            let route = Route {
                model: &request.model,
                kind: ModelKind::Embed,
                profile: "",
            };
            let worker = router::select(&self.registry, route, &tried)?;
            let _in_flight = worker.begin();
            let mut client = worker.client();
            let call = with_deadline(request.clone(), deadline)?;
            let dispatched = Instant::now();
            let answer = tokio::select! {
                answer = client.embed(call) => answer,
                _ = until(deadline) => return Err(GatewayError::DeadlineExceeded),
            };
            match answer {
                Ok(response) => {
                    tracked.routed(&worker, dispatched);
                    return Ok(response);
                }
                Err(status) => match GatewayError::from_worker(&worker.id(), status) {
                    GatewayError::WorkerUnreachable { .. } => {
                        worker.mark_unhealthy();
                        tried.push(worker.address());
                    }
                    other => return Err(other),
                },
            }
        }
    }

    /// A generation answered in one message: the worker's stream, collected.
    async fn generate_unary(
        &self,
        request: GenerateRequest,
        deadline: Option<Instant>,
        tracked: &mut Tracked,
    ) -> Result<GenerateResponse, GatewayError> {
        let (worker, _in_flight, mut upstream, dispatched) =
            self.open_stream(request, deadline).await?;
        tracked.generating(&worker, dispatched);
        let mut text = String::new();
        let collect = async {
            while let Some(message) = upstream
                .message()
                .await
                .map_err(|s| GatewayError::from_worker(&worker.id(), s))?
            {
                tracked.relayed(&message);
                text.push_str(&message.text);
                if is_final(&message) {
                    return Ok(GenerateResponse {
                        text: std::mem::take(&mut text),
                        finish_reason: message.finish_reason,
                        usage: message.usage,
                        served_by: message.served_by,
                    });
                }
            }
            Err(GatewayError::IncompleteStream {
                worker: worker.id(),
            })
        };
        tokio::select! {
            answer = collect => answer,
            _ = until(deadline) => Err(GatewayError::DeadlineExceeded),
        }
    }
}

/// The request for the worker, carrying what is left of the client's deadline.
fn with_deadline<T>(message: T, deadline: Option<Instant>) -> Result<Request<T>, GatewayError> {
    let mut request = Request::new(message);
    if let Some(deadline) = deadline {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(GatewayError::DeadlineExceeded)?;
        request.set_timeout(left);
    }
    Ok(request)
}

fn deadline_of<T>(request: &Request<T>) -> Option<Instant> {
    request_timeout(request.metadata()).map(|t| Instant::now() + t)
}

/// Waits until the deadline, or forever without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

fn is_final(message: &GenerateStreamResponse) -> bool {
    message.finish_reason != FinishReason::Unspecified as i32
}

/// The `model` label of requests for models the gateway does not know.
const UNKNOWN_MODEL: &str = "_unknown";

type GenerateStream = Pin<Box<dyn Stream<Item = Result<GenerateStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Inference for InferenceService {
    async fn generate(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<GenerateResponse>, Status> {
        let deadline = deadline_of(&request);
        let request = request.into_inner();
        let mut tracked = self.track(&request.model);
        let answer = self
            .generate_unary(request, deadline, &mut tracked)
            .await
            .map_err(Status::from);
        tracked.finish(match &answer {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        });
        Ok(Response::new(answer?))
    }

    type GenerateStreamStream = GenerateStream;

    async fn generate_stream(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<Self::GenerateStreamStream>, Status> {
        let deadline = deadline_of(&request);
        let request = request.into_inner();
        let mut tracked = self.track(&request.model);
        let (worker, in_flight, mut upstream, dispatched) =
            match self.open_stream(request, deadline).await {
                Ok(opened) => opened,
                Err(e) => {
                    let status = Status::from(e);
                    tracked.finish(status.code());
                    return Err(status);
                }
            };
        tracked.generating(&worker, dispatched);
        let (out, out_rx) = mpsc::channel(16);
        tokio::spawn(async move {
            // Held until the relay ends, so the worker's load counts the stream.
            let _in_flight = in_flight;
            loop {
                let failure = tokio::select! {
                    // The client went away: returning drops `upstream`, which
                    // resets the HTTP/2 stream, and the worker stops at its
                    // next token. Dropping `tracked` counts it CANCELLED.
                    _ = out.closed() => return,
                    _ = until(deadline) => GatewayError::DeadlineExceeded,
                    message = upstream.message() => match message {
                        Ok(Some(message)) => {
                            tracked.relayed(&message);
                            let last = is_final(&message);
                            if out.send(Ok(message)).await.is_err() {
                                return;
                            }
                            if last {
                                tracked.finish(tonic::Code::Ok);
                                return;
                            }
                            continue;
                        }
                        Ok(None) => GatewayError::IncompleteStream { worker: worker.id() },
                        Err(status) => GatewayError::from_worker(&worker.id(), status),
                    },
                };
                tracing::debug!(worker = %worker.id(), error = %failure, "stream failed");
                let status = Status::from(failure);
                tracked.finish(status.code());
                let _ = out.send(Err(status)).await;
                return;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    async fn embed(
        &self,
        request: Request<EmbedRequest>,
    ) -> Result<Response<EmbedResponse>, Status> {
        let deadline = deadline_of(&request);
        let request = request.into_inner();
        let mut tracked = self.track(&request.model);
        let answer = self.embed_routed(request, deadline, &mut tracked).await;
        match answer {
            Ok(response) => {
                if let Some(usage) = &response.get_ref().usage {
                    tracked.embedded(usage.prompt_tokens);
                }
                tracked.finish(tonic::Code::Ok);
                Ok(response)
            }
            Err(e) => {
                let status = Status::from(e);
                tracked.finish(status.code());
                Err(status)
            }
        }
    }

    async fn list_models(
        &self,
        _: Request<ListModelsRequest>,
    ) -> Result<Response<ListModelsResponse>, Status> {
        let models = self
            .registry
            .model_names()
            .into_iter()
            .map(|name| {
                let workers = self.registry.workers(&name).unwrap_or_default();
                let context_length = workers
                    .iter()
                    .find_map(|w| w.info())
                    .map(|i| i.context_length)
                    .unwrap_or(0);
                ModelInfo {
                    kind: self.registry.kind(&name) as i32,
                    name,
                    context_length,
                    workers: workers
                        .iter()
                        .map(|w| {
                            let info = w.info().unwrap_or_default();
                            WorkerStatus {
                                worker_id: w.id(),
                                address: w.address(),
                                slice: info.slice,
                                profile: info.profile,
                                health: if w.is_healthy() {
                                    WorkerHealth::Serving
                                } else {
                                    WorkerHealth::NotServing
                                } as i32,
                                gpu: info.gpu,
                                memory_bytes: info.memory_bytes,
                                origin: w.origin as i32,
                                restarts: w.restarts(),
                                engine: info.engine,
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        Ok(Response::new(ListModelsResponse { models }))
    }
}
