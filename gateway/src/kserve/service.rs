//! `inference.GRPCInferenceService`: the RPCs. Each one reads its request
//! into the project's own (`super::request`), calls the shared
//! [`Inference`] service with the call's extensions (the `Caller` and
//! `Stamp` the layers left, and [`Protocol::Kserve`]) and writes the answer
//! back (`super::response`). Nothing here routes, admits or counts: that is
//! the shared path's, the same for every front.

use std::pin::Pin;
use std::sync::Arc;

use mig_proto::inference::v1::inference_server::Inference;
use mig_proto::inference::v1::{ListModelsRequest, ModelInfo, ModelKind};
use mig_proto::kserve::grpc_inference_service_server::GrpcInferenceService;
use mig_proto::kserve::*;
use tokio_stream::Stream;
use tonic::metadata::MetadataMap;
use tonic::{Extensions, Request, Response, Status, Streaming};

use super::error::{unimplemented, KserveError};
use super::metadata;
use super::request::{self, Embedding, Generation, MAX_ID_BYTES};
use super::response::Answering;
use crate::request::protocol::Protocol;
use crate::request::service::InferenceService;
use crate::tenancy::Caller;

/// The KServe v2 service over a shared [`Inference`] service (the
/// gateway's [`InferenceService`]).
pub struct KserveService<I = InferenceService> {
    inference: Arc<I>,
}

impl<I> KserveService<I> {
    pub fn new(inference: Arc<I>) -> Self {
        KserveService { inference }
    }
}

/// What a KServe call hands to the shared path with each request: its
/// metadata and its extensions (who called, when, until when), marked
/// as come through this front.
#[derive(Clone)]
pub(super) struct Forward {
    metadata: MetadataMap,
    extensions: Extensions,
}

impl Forward {
    pub(super) fn new(metadata: MetadataMap, mut extensions: Extensions) -> Self {
        extensions.insert(Protocol::Kserve);
        Forward {
            metadata,
            extensions,
        }
    }

    pub(super) fn request<M>(&self, message: M) -> Request<M> {
        Request::from_parts(self.metadata.clone(), self.extensions.clone(), message)
    }
}

/// A request read for its model's kind, with what its responses repeat.
pub(super) enum Prepared {
    Generate(Generation, Answering),
    Embed(Embedding, Answering),
}

impl Answering {
    /// What the responses to `request` repeat: its model and `id`, each
    /// only when within its limit (a request refused for a long `id` is
    /// answered without it).
    pub(super) fn of(request: &ModelInferRequest) -> Answering {
        let bounded = |s: &str, limit: usize| {
            if s.len() <= limit {
                s.to_string()
            } else {
                String::new()
            }
        };
        Answering {
            model: bounded(&request.model_name, mig_serve::fields::MAX_MODEL_BYTES),
            id: bounded(&request.id, MAX_ID_BYTES),
            shape: vec![1],
        }
    }
}

/// The model, if the caller may see it (the shared `ListModels`).
async fn visible<I: Inference>(
    inference: &I,
    forward: &Forward,
    name: &str,
) -> Result<Option<ModelInfo>, Status> {
    let models = inference
        .list_models(forward.request(ListModelsRequest {}))
        .await?
        .into_inner()
        .models;
    Ok(models.into_iter().find(|m| m.name == name))
}

/// What a front needs of the shared service beyond its calls: a model's
/// kind as the caller may know it, found in one lookup (KServe reads a
/// request's tensors by it).
pub trait ModelKinds {
    /// `Unspecified` for a model the caller may not call or that is not
    /// served; the shared path's call then answers why.
    fn kind_for(&self, extensions: &Extensions, model: &str) -> ModelKind;
}

impl ModelKinds for InferenceService {
    fn kind_for(&self, extensions: &Extensions, model: &str) -> ModelKind {
        match extensions.get::<Caller>() {
            Some(caller) => InferenceService::kind_for(self, caller, model),
            None => ModelKind::Unspecified,
        }
    }
}

/// Reads a request for its model: its version must be the one served, and
/// its tensors those of the model's kind. A model the caller may not see is
/// read as a generation: the shared path then refuses it as the project's
/// own API does (`PERMISSION_DENIED`, `NOT_FOUND`), and the tensors it was
/// sent tell nothing of other tenants' models.
pub(super) fn prepare<I: ModelKinds>(
    inference: &I,
    forward: &Forward,
    request: ModelInferRequest,
) -> Result<Prepared, Status> {
    let mut answering = Answering::of(&request);
    metadata::check_version(&request.model_name, &request.model_version)?;
    match inference.kind_for(&forward.extensions, &request.model_name) {
        ModelKind::Embed => Ok(Prepared::Embed(request::embedding(request)?, answering)),
        // A model whose kind is not known yet (no worker answered) is
        // taken as a generation: the shared path then says why it cannot
        // be served now.
        ModelKind::Generate | ModelKind::Unspecified => {
            let generation = request::generation(request)?;
            answering.shape = generation.shape.clone();
            Ok(Prepared::Generate(generation, answering))
        }
    }
}

/// The model for ModelMetadata and ModelConfig: visible, of the one
/// version, else `NOT_FOUND`.
async fn described<I: Inference>(
    inference: &I,
    forward: &Forward,
    name: &str,
    version: &str,
) -> Result<ModelInfo, Status> {
    metadata::check_version(name, version)?;
    visible(inference, forward, name).await?.ok_or_else(|| {
        KserveError::ModelNotFound {
            model: name.to_string(),
        }
        .into()
    })
}

fn forward_of<T>(request: Request<T>) -> (Forward, T) {
    let (metadata, extensions, message) = request.into_parts();
    (Forward::new(metadata, extensions), message)
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<ModelStreamInferResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<I: Inference + ModelKinds> GrpcInferenceService for KserveService<I> {
    /// Live while the gateway answers at all.
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    /// Ready when a model the caller may call has a worker serving.
    async fn server_ready(
        &self,
        request: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        let (forward, _) = forward_of(request);
        let models = self
            .inference
            .list_models(forward.request(ListModelsRequest {}))
            .await?
            .into_inner()
            .models;
        Ok(Response::new(ServerReadyResponse {
            ready: models.iter().any(metadata::is_ready),
        }))
    }

    /// Ready when the caller may call the model and one of its workers
    /// serves; a model it may not call, or that is not served, is not
    /// ready (never an error: the answer says nothing of other tenants).
    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let (forward, message) = forward_of(request);
        let ready = metadata::check_version(&message.name, &message.version).is_ok()
            && visible(&*self.inference, &forward, &message.name)
                .await?
                .is_some_and(|info| metadata::kind(&info).is_ok() && metadata::is_ready(&info));
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(metadata::server_metadata()))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let (forward, message) = forward_of(request);
        let info = described(&*self.inference, &forward, &message.name, &message.version).await?;
        Ok(Response::new(metadata::model_metadata(&info)?))
    }

    async fn model_config(
        &self,
        request: Request<ModelConfigRequest>,
    ) -> Result<Response<ModelConfigResponse>, Status> {
        let (forward, message) = forward_of(request);
        let info = described(&*self.inference, &forward, &message.name, &message.version).await?;
        Ok(Response::new(ModelConfigResponse {
            config: Some(metadata::model_config(&info)?),
        }))
    }

    /// One request, one response: a generation's whole text, or an
    /// embedding call's vectors.
    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let (forward, message) = forward_of(request);
        match prepare(&*self.inference, &forward, message)? {
            Prepared::Generate(generation, answering) => {
                if generation.stream == Some(true) {
                    return Err(Status::invalid_argument(
                        "input `stream` is true: ModelInfer answers once, with the whole text; \
                         call ModelStreamInfer for a response per chunk",
                    ));
                }
                let answer = self
                    .inference
                    .generate(forward.request(generation.request))
                    .await?
                    .into_inner();
                Ok(Response::new(answering.generated(&answer)))
            }
            Prepared::Embed(embedding, answering) => {
                let answer = self
                    .inference
                    .embed(forward.request(embedding.request))
                    .await?
                    .into_inner();
                Ok(Response::new(answering.embedded(&answer)))
            }
        }
    }

    type ModelStreamInferStream = ResponseStream;

    /// Requests answered in turn on one stream (`super::stream`).
    async fn model_stream_infer(
        &self,
        request: Request<Streaming<ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        let (forward, inbound) = forward_of(request);
        Ok(Response::new(Box::pin(super::stream::serve(
            self.inference.clone(),
            forward,
            inbound,
        ))))
    }

    async fn model_statistics(
        &self,
        _: Request<ModelStatisticsRequest>,
    ) -> Result<Response<ModelStatisticsResponse>, Status> {
        Err(unimplemented(
            "ModelStatistics",
            "per-model and per-slice statistics are Prometheus metrics on its `--metrics-listen` (`/metrics`)",
        ))
    }

    async fn repository_index(
        &self,
        _: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        Err(unimplemented("RepositoryIndex", REPOSITORY))
    }

    async fn repository_model_load(
        &self,
        _: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        Err(unimplemented("RepositoryModelLoad", REPOSITORY))
    }

    async fn repository_model_unload(
        &self,
        _: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        Err(unimplemented("RepositoryModelUnload", REPOSITORY))
    }

    async fn system_shared_memory_status(
        &self,
        _: Request<SystemSharedMemoryStatusRequest>,
    ) -> Result<Response<SystemSharedMemoryStatusResponse>, Status> {
        Err(unimplemented("SystemSharedMemoryStatus", SHARED_MEMORY))
    }

    async fn system_shared_memory_register(
        &self,
        _: Request<SystemSharedMemoryRegisterRequest>,
    ) -> Result<Response<SystemSharedMemoryRegisterResponse>, Status> {
        Err(unimplemented("SystemSharedMemoryRegister", SHARED_MEMORY))
    }

    async fn system_shared_memory_unregister(
        &self,
        _: Request<SystemSharedMemoryUnregisterRequest>,
    ) -> Result<Response<SystemSharedMemoryUnregisterResponse>, Status> {
        Err(unimplemented("SystemSharedMemoryUnregister", SHARED_MEMORY))
    }

    async fn cuda_shared_memory_status(
        &self,
        _: Request<CudaSharedMemoryStatusRequest>,
    ) -> Result<Response<CudaSharedMemoryStatusResponse>, Status> {
        Err(unimplemented("CudaSharedMemoryStatus", SHARED_MEMORY))
    }

    async fn cuda_shared_memory_register(
        &self,
        _: Request<CudaSharedMemoryRegisterRequest>,
    ) -> Result<Response<CudaSharedMemoryRegisterResponse>, Status> {
        Err(unimplemented("CudaSharedMemoryRegister", SHARED_MEMORY))
    }

    async fn cuda_shared_memory_unregister(
        &self,
        _: Request<CudaSharedMemoryUnregisterRequest>,
    ) -> Result<Response<CudaSharedMemoryUnregisterResponse>, Status> {
        Err(unimplemented("CudaSharedMemoryUnregister", SHARED_MEMORY))
    }

    async fn trace_setting(
        &self,
        _: Request<TraceSettingRequest>,
    ) -> Result<Response<TraceSettingResponse>, Status> {
        Err(unimplemented("TraceSetting", LOGGING))
    }

    async fn log_settings(
        &self,
        _: Request<LogSettingsRequest>,
    ) -> Result<Response<LogSettingsResponse>, Status> {
        Err(unimplemented("LogSettings", LOGGING))
    }
}

const REPOSITORY: &str = "its models are the fleet's (`--fleet`, registered workers); ModelMetadata and ModelReady describe them, mig.inference.v1.Inference/ListModels lists them";
const SHARED_MEMORY: &str =
    "tensors travel in the request and response messages (`raw_input_contents`, `contents`)";
const LOGGING: &str = "its logging is set when it starts (`RUST_LOG`)";
