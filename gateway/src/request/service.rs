//! `mig.inference.v1.Inference`: the public API. Each call is routed by model
//! name to a healthy worker and relayed ([`super::relay`]); the client's
//! deadline travels to the worker, and a client that goes away cancels the
//! worker's generation.

use std::pin::Pin;
use std::sync::Arc;

use mig_proto::inference::v1::inference_server::Inference;
use mig_proto::inference::v1::{
    EmbedRequest, EmbedResponse, GenerateRequest, GenerateResponse, GenerateStreamResponse,
    ListModelsRequest, ListModelsResponse, ModelInfo, ModelKind, WorkerHealth, WorkerStatus,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::error::GatewayError;
use super::layers::Stamp;
use super::relay::{self, Relayed, Sink};
use super::routing::Route;
use super::tracking::Tracked;
use crate::metrics::GatewayMetrics;
use crate::registry::Registry;

pub struct InferenceService {
    registry: Arc<Registry>,
    metrics: Arc<GatewayMetrics>,
}

/// The `model` label of requests for models the gateway does not know.
const UNKNOWN_MODEL: &str = "_unknown";

type GenerateStream = Pin<Box<dyn Stream<Item = Result<GenerateStreamResponse, Status>> + Send>>;

impl InferenceService {
    pub fn new(registry: Arc<Registry>, metrics: Arc<GatewayMetrics>) -> Self {
        InferenceService { registry, metrics }
    }

    /// Starts tracking a request. A model name the gateway does not know is
    /// labelled `_unknown`: the label must not take whatever clients type.
    fn track(&self, model: &str, stamp: Stamp) -> Tracked {
        let label = if self.registry.workers(model).is_some() {
            model
        } else {
            UNKNOWN_MODEL
        };
        Tracked::start(&self.metrics, label, stamp.arrived)
    }

    /// A generation on a worker of its model: the head of its token stream.
    async fn dispatch_generation(
        &self,
        request: &GenerateRequest,
        stamp: Stamp,
    ) -> Result<relay::Dispatched<tonic::codec::Streaming<GenerateStreamResponse>>, GatewayError>
    {
        let route = Route {
            model: &request.model,
            kind: ModelKind::Generate,
            profile: &request.profile,
        };
        relay::dispatch(
            &self.registry,
            route,
            request,
            stamp.deadline,
            |mut worker, call| async move { worker.generate(call).await },
        )
        .await
    }

    /// A generation answered in one message: the worker's stream, collected.
    async fn generate_collected(
        &self,
        request: GenerateRequest,
        stamp: Stamp,
        tracked: &mut Tracked,
    ) -> Result<GenerateResponse, GatewayError> {
        let opened = self.dispatch_generation(&request, stamp).await?;
        tracked.generating(&opened.worker, opened.dispatched);
        let sink = Sink::Collect(String::new());
        match relay::relay(
            &opened.worker,
            opened.response,
            stamp.deadline,
            tracked,
            sink,
        )
        .await?
        {
            Relayed::Done(Some(answer)) => Ok(answer),
            // A collecting sink has no client to lose and always answers.
            Relayed::Done(None) | Relayed::ClientGone => Err(GatewayError::IncompleteStream {
                worker: opened.worker.id(),
            }),
        }
    }

    /// An embedding call on a worker of its model.
    async fn embed_routed(
        &self,
        request: EmbedRequest,
        stamp: Stamp,
        tracked: &mut Tracked,
    ) -> Result<EmbedResponse, GatewayError> {
        let route = Route {
            model: &request.model,
            kind: ModelKind::Embed,
            profile: "",
        };
        let answered = relay::dispatch(
            &self.registry,
            route,
            &request,
            stamp.deadline,
            |mut worker, call| async move { worker.embed(call).await },
        )
        .await?;
        tracked.routed(&answered.worker, answered.dispatched);
        Ok(answered.response)
    }
}

#[tonic::async_trait]
impl Inference for InferenceService {
    async fn generate(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<GenerateResponse>, Status> {
        let stamp = Stamp::of(&request);
        let request = request.into_inner();
        let mut tracked = self.track(&request.model, stamp);
        let answer = self
            .generate_collected(request, stamp, &mut tracked)
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
        let stamp = Stamp::of(&request);
        let request = request.into_inner();
        let mut tracked = self.track(&request.model, stamp);
        let opened = match self.dispatch_generation(&request, stamp).await {
            Ok(opened) => opened,
            Err(e) => {
                let status = Status::from(e);
                tracked.finish(status.code());
                return Err(status);
            }
        };
        tracked.generating(&opened.worker, opened.dispatched);
        let (out, out_rx) = mpsc::channel(16);
        tokio::spawn(async move {
            // Held until the relay ends, so the worker's load counts the stream.
            let _in_flight = opened.in_flight;
            let sink = Sink::Forward(out.clone());
            let relayed = relay::relay(
                &opened.worker,
                opened.response,
                stamp.deadline,
                &mut tracked,
                sink,
            )
            .await;
            match relayed {
                Ok(Relayed::Done(_)) => tracked.finish(tonic::Code::Ok),
                // Dropping `tracked` counts it CANCELLED.
                Ok(Relayed::ClientGone) => {}
                Err(failure) => {
                    tracing::debug!(worker = %opened.worker.id(), error = %failure, "stream failed");
                    let status = Status::from(failure);
                    tracked.finish(status.code());
                    let _ = out.send(Err(status)).await;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    async fn embed(
        &self,
        request: Request<EmbedRequest>,
    ) -> Result<Response<EmbedResponse>, Status> {
        let stamp = Stamp::of(&request);
        let request = request.into_inner();
        let mut tracked = self.track(&request.model, stamp);
        match self.embed_routed(request, stamp, &mut tracked).await {
            Ok(response) => {
                if let Some(usage) = &response.usage {
                    tracked.embedded(usage.prompt_tokens);
                }
                tracked.finish(tonic::Code::Ok);
                Ok(Response::new(response))
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
