//! `mig.inference.v1.Inference`: the public API. Each call comes
//! authenticated (`crate::tenancy::auth`); it is checked against its
//! tenant's models and limits, waits in the model's admission queue until a
//! worker has room (`crate::admission`), is routed by model name to a
//! healthy worker and relayed ([`super::relay`]); the client's deadline
//! travels to the worker, and a client that goes away cancels the worker's
//! generation. An embedding call is sent in batches of [`EMBED_BATCH`]
//! inputs, each admitted in turn, so one large call holds an embedding
//! worker for one batch at a time.

use std::pin::Pin;
use std::sync::Arc;

use mig_proto::inference::v1::inference_server::Inference;
use mig_proto::inference::v1::{
    EmbedRequest, EmbedResponse, GenerateRequest, GenerateResponse, GenerateStreamResponse,
    ListModelsRequest, ListModelsResponse, ModelInfo, ModelKind, WorkerHealth, WorkerStatus,
};
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::dispatch::{self, Dispatched};
use super::error::GatewayError;
use super::layers::Stamp;
use super::protocol::Protocol;
use super::relay::Relay;
use super::retry::RetryBudget;
use super::routing::Route;
use super::stall::Stalls;
use super::tracking::Tracked;
use crate::admission::{Admission, Slot, Ticket};
use crate::metrics::GatewayMetrics;
use crate::registry::Registry;
use crate::tenancy::file::Priority;
use crate::tenancy::quota::Admitted;
use crate::tenancy::{Caller, Tenancy};

/// Inputs of one embedding batch sent to a worker.
pub const EMBED_BATCH: usize = 8;

/// Tokens a generation may produce when it does not say (the worker's
/// default).
const DEFAULT_MAX_TOKENS: u64 = 128;

pub struct InferenceService {
    registry: Arc<Registry>,
    metrics: Arc<GatewayMetrics>,
    tenancy: Arc<Tenancy>,
    admission: Arc<Admission>,
    retries: RetryBudget,
    /// Ends streams whose client reads nothing for `--stall-timeout`.
    stalls: Arc<Stalls>,
    /// Turns true when the drain period is about to run out: running
    /// streams end `UNAVAILABLE` ("gateway shutting down") while their
    /// connections are still open.
    cutoff: watch::Receiver<bool>,
}

/// The `model` label of requests for models the gateway does not know.
const UNKNOWN_MODEL: &str = "_unknown";

type GenerateStream = Pin<Box<dyn Stream<Item = Result<GenerateStreamResponse, Status>> + Send>>;

/// A call past authentication: who made it, when, and its tracker.
struct Call {
    caller: Caller,
    stamp: Stamp,
    tracked: Tracked,
}

impl InferenceService {
    pub fn new(
        registry: Arc<Registry>,
        metrics: Arc<GatewayMetrics>,
        tenancy: Arc<Tenancy>,
        admission: Arc<Admission>,
        stall: std::time::Duration,
        cutoff: watch::Receiver<bool>,
    ) -> Self {
        InferenceService {
            registry,
            metrics,
            tenancy,
            admission,
            retries: RetryBudget::default(),
            stalls: Stalls::start(stall),
            cutoff,
        }
    }

    /// Counts the replicas a call went to before the one that took it.
    fn count_retries(&self, model: &str, retries: usize) {
        if retries > 0 {
            self.metrics
                .counter_with(crate::metrics::WORKER_RETRIES, &[("model", model)])
                .increment(retries as u64);
        }
    }

    /// Waits in the model's admission queue for room on a worker.
    async fn wait_for_room(&self, route: Route<'_>, call: &Call) -> Result<Slot, GatewayError> {
        let priority = match &call.caller {
            Caller::Open => Priority::Standard,
            Caller::Tenant(t) => t.priority,
        };
        self.admission
            .acquire(Ticket {
                model: route.model,
                profile: route.profile,
                tenant: call.caller.label(),
                priority,
                cost: route.cost,
                deadline: call.stamp.deadline,
            })
            .await
            .map_err(GatewayError::from)
    }

    /// Waits for room on a worker of the route's model, then sends the
    /// call. When the worker it got turns out to be down, and no other is
    /// healthy (a worker died and is being restarted), it waits for room
    /// once more instead of failing: nothing was answered yet.
    async fn admit_and_dispatch<M, T, F, Fut>(
        &self,
        route: Route<'_>,
        message: &M,
        call: &Call,
        send: F,
    ) -> Result<(Dispatched<T>, Slot), GatewayError>
    where
        M: Clone,
        F: Fn(crate::registry::WorkerClient, Request<M>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<T>, Status>>,
    {
        let mut waited_again = false;
        loop {
            let slot = self.wait_for_room(route, call).await?;
            let answer = dispatch::dispatch(
                &self.registry,
                &self.retries,
                route,
                message,
                call.stamp.deadline,
                &send,
            )
            .await;
            match answer {
                Err(GatewayError::NoHealthyWorker { .. }) if !waited_again => {
                    // The place goes back before waiting for another.
                    drop(slot);
                    waited_again = true;
                }
                answer => return answer.map(|dispatched| (dispatched, slot)),
            }
        }
    }

    /// Who made the call, and its tracker from now on. A model name the
    /// gateway does not know is labelled `_unknown`: the label must not take
    /// whatever clients type.
    fn begin<T>(&self, request: &Request<T>, model: &str) -> Result<Call, Status> {
        let stamp = Stamp::of(request);
        let caller = self.tenancy.caller(request)?;
        let label = if self.registry.workers(model).is_some() {
            model
        } else {
            UNKNOWN_MODEL
        };
        let tracked = Tracked::start(
            &self.metrics,
            label,
            caller.label(),
            Protocol::of(request),
            stamp.arrived,
        );
        Ok(Call {
            caller,
            stamp,
            tracked,
        })
    }

    /// The kind of `model` as `caller` may know it: `Unspecified` for a
    /// model it may not call or that is not served (a call then says which,
    /// as for any front). One lookup, for fronts that read a request
    /// differently by kind (KServe's tensors).
    pub fn kind_for(&self, caller: &Caller, model: &str) -> ModelKind {
        if caller.may_call(model) {
            self.registry.kind(model)
        } else {
            ModelKind::Unspecified
        }
    }

    /// The model's context length, as its workers reported it (the largest,
    /// should they differ); unknown before any answered.
    fn context_length(&self, model: &str) -> Option<usize> {
        self.registry
            .workers(model)?
            .iter()
            .filter_map(|w| w.context_length())
            .map(|c| c as usize)
            .filter(|&c| c > 0)
            .max()
    }

    /// A generation's field sizes, counts and roles, checked before anything
    /// else is done with it.
    fn check_generate(&self, request: &GenerateRequest) -> Result<(), GatewayError> {
        mig_serve::fields::generate(request, self.context_length(&request.model))
            .map_err(GatewayError::Invalid)
    }

    /// What a call passes before routing: its tenant may call the model,
    /// and is under its limits. The answer to a model it may not call
    /// depends on its own list only, so it learns nothing of other tenants'.
    fn admit(&self, caller: &Caller, model: &str) -> Result<Admitted, GatewayError> {
        if let Caller::Tenant(tenant) = caller {
            if !model.trim().is_empty() && !tenant.may_call(model) {
                self.tenancy.rejected(&tenant.name, "permission");
                return Err(GatewayError::PermissionDenied {
                    tenant: tenant.name.clone(),
                    model: model.to_string(),
                    models: tenant.model_patterns(),
                });
            }
        }
        self.tenancy.admit(caller).map_err(GatewayError::OverLimit)
    }

    /// A generation on a worker of its model: the head of its token stream,
    /// its prompt paid for.
    async fn dispatch_generation(
        &self,
        request: &GenerateRequest,
        call: &Call,
        admitted: &mut Admitted,
    ) -> Result<
        (
            Dispatched<tonic::codec::Streaming<GenerateStreamResponse>>,
            Slot,
        ),
        GatewayError,
    > {
        let cost = generation_cost(request, self.context_length(&request.model));
        let route = Route {
            model: &request.model,
            kind: ModelKind::Generate,
            profile: &request.profile,
            caller: &call.caller,
            cost,
        };
        let (opened, slot) = self
            .admit_and_dispatch(route, request, call, |mut worker, call| async move {
                worker.generate(call).await
            })
            .await?;
        self.count_retries(&request.model, opened.retries);
        if let Some(prompt) = opened.prompt_tokens {
            // Over the limit with the prompt alone: dropping the stream
            // stops the worker before it generates anything.
            admitted
                .pay_prompt(prompt)
                .map_err(GatewayError::OverLimit)?;
        }
        Ok((opened, slot))
    }

    /// A generation checked, admitted and taken by a worker: its stream,
    /// relayed from now on. An error before that is counted here.
    async fn open_generation(
        &self,
        request: &GenerateRequest,
        call: Call,
    ) -> Result<Relay, Status> {
        let opened = async {
            self.check_generate(request)?;
            let mut admitted = self.admit(&call.caller, &request.model)?;
            let (opened, slot) = self
                .dispatch_generation(request, &call, &mut admitted)
                .await?;
            Ok::<_, GatewayError>((opened, slot, admitted))
        }
        .await;
        let Call {
            stamp, mut tracked, ..
        } = call;
        match opened {
            Ok((opened, slot, admitted)) => {
                tracked.generating(&opened.worker, opened.dispatched);
                Ok(Relay::new(
                    opened,
                    slot,
                    tracked,
                    admitted,
                    stamp.deadline,
                    self.cutoff.clone(),
                ))
            }
            Err(e) => {
                let status = Status::from(e);
                tracked.finish(status.code());
                Err(status)
            }
        }
    }

    /// An embedding call on workers of its model, [`EMBED_BATCH`] inputs
    /// at a time, each batch admitted in turn; the answers are joined in
    /// order.
    async fn embed_routed(
        &self,
        request: EmbedRequest,
        call: &mut Call,
    ) -> Result<EmbedResponse, GatewayError> {
        mig_serve::fields::embed(&request, Some(mig_serve::fields::MAX_EMBED_INPUTS))
            .map_err(GatewayError::Invalid)?;
        let mut admitted = self.admit(&call.caller, &request.model)?;
        let mut joined = EmbedResponse::default();
        let mut prompt_tokens = 0;
        for (i, inputs) in request.inputs.chunks(EMBED_BATCH).enumerate() {
            let batch = EmbedRequest {
                model: request.model.clone(),
                inputs: inputs.to_vec(),
                truncate: request.truncate,
            };
            let cost = inputs.iter().map(|s| s.len() as u64 / 4 + 1).sum();
            let route = Route {
                model: &request.model,
                kind: ModelKind::Embed,
                profile: "",
                caller: &call.caller,
                cost,
            };
            let (answered, _slot) = self
                .admit_and_dispatch(route, &batch, call, |mut worker, call| async move {
                    worker.embed(call).await
                })
                .await?;
            self.count_retries(&request.model, answered.retries);
            if i == 0 {
                call.tracked.routed(&answered.worker, answered.dispatched);
            }
            let response = answered.response;
            if let Some(usage) = &response.usage {
                prompt_tokens += usage.prompt_tokens;
                // Computed: the tokens are owed (the next call waits for
                // the bucket), and the batches already done are delivered.
                let _ = admitted.pay_prompt(usage.prompt_tokens);
            }
            joined.embeddings.extend(response.embeddings);
            joined.truncated_inputs += response.truncated_inputs;
            joined.served_by = response.served_by;
        }
        call.tracked.embedded(prompt_tokens);
        joined.usage = Some(mig_proto::inference::v1::Usage {
            prompt_tokens,
            ..Default::default()
        });
        Ok(joined)
    }
}

/// A generation's tokens for admission and balancing: its prompt, about
/// four bytes a token, and the most it may generate.
fn generation_cost(request: &GenerateRequest, context_length: Option<usize>) -> u64 {
    let bytes: usize = request.prompt.len()
        + request
            .messages
            .iter()
            .map(|m| m.role.len() + m.content.len())
            .sum::<usize>();
    let prompt = bytes as u64 / 4 + 1;
    let mut generated = request.max_tokens.map_or(DEFAULT_MAX_TOKENS, u64::from);
    if let Some(context) = context_length {
        generated = generated.min(context as u64);
    }
    prompt + generated
}

#[tonic::async_trait]
impl Inference for InferenceService {
    async fn generate(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<GenerateResponse>, Status> {
        let call = self.begin(&request, &request.get_ref().model)?;
        let relay = self.open_generation(request.get_ref(), call).await?;
        Ok(Response::new(relay.collect().await?))
    }

    type GenerateStreamStream = GenerateStream;

    async fn generate_stream(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<Self::GenerateStreamStream>, Status> {
        let call = self.begin(&request, &request.get_ref().model)?;
        let mut relay = self.open_generation(request.get_ref(), call).await?;
        relay.peek().await?;
        Ok(Response::new(Box::pin(self.stalls.watch(relay))))
    }

    async fn embed(
        &self,
        request: Request<EmbedRequest>,
    ) -> Result<Response<EmbedResponse>, Status> {
        let mut call = self.begin(&request, &request.get_ref().model)?;
        let request = request.into_inner();
        match self.embed_routed(request, &mut call).await {
            Ok(response) => {
                call.tracked.finish(tonic::Code::Ok);
                Ok(Response::new(response))
            }
            Err(e) => {
                let status = Status::from(e);
                call.tracked.finish(status.code());
                Err(status)
            }
        }
    }

    /// The models the caller may call, nothing of others'; the workers'
    /// internal addresses only to an open gateway's callers and admins.
    async fn list_models(
        &self,
        request: Request<ListModelsRequest>,
    ) -> Result<Response<ListModelsResponse>, Status> {
        let caller = self.tenancy.caller(&request)?;
        let models = self
            .registry
            .model_names()
            .into_iter()
            .filter(|name| caller.may_call(name))
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
                                address: if caller.sees_addresses() {
                                    w.address()
                                } else {
                                    String::new()
                                },
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
