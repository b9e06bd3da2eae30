//! A call from the gateway to a worker and back: one dispatch routine for
//! every kind of call, and one relay of a worker's token stream.
//!
//! [`dispatch`] picks a healthy worker of the route and sends it the call
//! with what is left of the client's deadline; while the chosen worker
//! cannot be reached, or refuses the call (its queue full, shutting down),
//! it tries another of the model's workers: nothing was answered yet, so
//! nothing is lost. Unreachable workers are marked unhealthy; retries are
//! bounded per call and by the gateway's [`RetryBudget`]. [`relay`] then takes
//! the worker's stream to its end: every message counted as it passes,
//! collected into one answer or forwarded as it comes, and exactly one
//! outcome, whatever fails.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use mig_proto::inference::v1::{FinishReason, GenerateResponse, GenerateStreamResponse};
use mig_serve::limits::PROMPT_TOKENS_HEADER;
use tokio::sync::{mpsc, watch};
use tonic::codec::Streaming;
use tonic::{Request, Response, Status};

use super::error::GatewayError;
use super::retry::{RetryBudget, MAX_RETRIES_PER_CALL};
use super::routing::{self, Route};
use super::tracking::Tracked;
use crate::registry::{InFlight, Registry, WorkerClient, WorkerHandle};
use crate::tenancy::quota::Admitted;

/// A call a worker accepted.
pub struct Dispatched<T> {
    pub worker: Arc<WorkerHandle>,
    /// Held while the call runs: the worker's load counts it.
    pub in_flight: InFlight,
    /// The worker's answer (a whole message, or the head of a stream).
    pub response: T,
    /// The prompt's length in tokens, when the worker said it in its
    /// response head (`mig-prompt-tokens`).
    pub prompt_tokens: Option<u32>,
    /// When the call was sent to the worker that took it (after routing
    /// and any retries: the gateway's queue wait ends here).
    pub dispatched: Instant,
    /// Workers tried before this one (refused or unreachable).
    pub retries: usize,
}

/// Sends `message` through `call` to a worker of `route`, trying the model's
/// other healthy workers while the chosen one cannot be reached or refuses.
pub async fn dispatch<M, T, F, Fut>(
    registry: &Registry,
    retries: &RetryBudget,
    route: Route<'_>,
    message: &M,
    deadline: Option<Instant>,
    call: F,
) -> Result<Dispatched<T>, GatewayError>
where
    M: Clone,
    F: Fn(WorkerClient, Request<M>) -> Fut,
    Fut: Future<Output = Result<Response<T>, Status>>,
{
    let mut tried = Vec::new();
    retries.deposit();
    loop {
        let worker = routing::select(registry, route, &tried)?;
        let in_flight = worker.begin(route.cost);
        let request = with_deadline(message.clone(), deadline)?;
        let dispatched = Instant::now();
        let answer = tokio::select! {
            answer = call(worker.client(), request) => answer,
            () = until(deadline) => return Err(GatewayError::DeadlineExceeded),
        };
        match answer {
            Ok(response) => {
                let prompt_tokens = response
                    .metadata()
                    .get(PROMPT_TOKENS_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                return Ok(Dispatched {
                    worker,
                    in_flight,
                    response: response.into_inner(),
                    prompt_tokens,
                    dispatched,
                    retries: tried.len(),
                });
            }
            Err(status) => {
                let refused = status.code() == tonic::Code::ResourceExhausted;
                match GatewayError::from_worker(&worker.id(), status) {
                    // Unreachable: out of routing until a probe answers,
                    // and the next worker is tried (none left: UNAVAILABLE).
                    GatewayError::WorkerUnreachable { .. } => {
                        worker.mark_unhealthy();
                        tried.push(worker.address());
                    }
                    // Refused (its queue full): another replica may take
                    // it, within the call's and the gateway's budgets; else
                    // the worker's own answer goes back.
                    failure => {
                        tried.push(worker.address());
                        let another = registry.workers(route.model).is_some_and(|w| {
                            w.iter()
                                .any(|o| o.is_healthy() && !tried.contains(&o.address()))
                        });
                        if !(refused
                            && another
                            && tried.len() <= MAX_RETRIES_PER_CALL
                            && retries.withdraw())
                        {
                            return Err(failure);
                        }
                    }
                }
                tracing::debug!(model = route.model, worker = %worker.id(), "call sent to another replica");
            }
        }
    }
}

/// Where a relayed stream goes.
pub enum Sink {
    /// Into one answer (`Generate`).
    Collect(String),
    /// To the client as it comes (`GenerateStream`). A client that takes
    /// no message for `stall` has its stream ended: it would otherwise hold
    /// its place on the worker (and in the model's admission) for ever.
    Forward {
        out: mpsc::Sender<Result<GenerateStreamResponse, Status>>,
        stall: std::time::Duration,
    },
}

/// How a relay ended, when it did not fail.
pub enum Relayed {
    /// The worker's final message went through; `Collect` gives the whole
    /// answer.
    Done(Option<GenerateResponse>),
    /// The client went away (`Forward`): dropping the worker's stream resets
    /// it, and the worker stops at its next token.
    ClientGone,
}

impl Sink {
    /// Completes when a forwarding sink's client is gone; never for `Collect`.
    async fn closed(&self) {
        match self {
            Sink::Collect(_) => std::future::pending().await,
            Sink::Forward { out, .. } => out.closed().await,
        }
    }
}

/// Takes a worker's token stream to its final message (or the deadline, or
/// a failure), counting every message in `tracked` as it passes and paying
/// for its tokens from the tenant's quota: a stream that empties it is cut
/// after the message that did.
pub async fn relay(
    worker: &WorkerHandle,
    mut upstream: Streaming<GenerateStreamResponse>,
    deadline: Option<Instant>,
    tracked: &mut Tracked,
    admitted: &mut Admitted,
    cutoff: &mut watch::Receiver<bool>,
    mut sink: Sink,
) -> Result<Relayed, GatewayError> {
    let mut tokens = 0u64;
    loop {
        let message = tokio::select! {
            () = sink.closed() => return Ok(Relayed::ClientGone),
            () = until(deadline) => return Err(GatewayError::DeadlineExceeded),
            Ok(_) = cutoff.wait_for(|&cut| cut) => return Err(GatewayError::ShuttingDown { tokens }),
            message = upstream.message() => message,
        };
        let message = match message {
            Ok(Some(message)) => message,
            Ok(None) => {
                return Err(GatewayError::IncompleteStream {
                    worker: worker.id(),
                })
            }
            Err(status) => {
                return Err(match GatewayError::from_worker(&worker.id(), status) {
                    GatewayError::WorkerUnreachable { worker, message } => {
                        GatewayError::WorkerLost {
                            worker,
                            tokens,
                            message,
                        }
                    }
                    other => other,
                })
            }
        };
        tokens += u64::from(message.token_count);
        tracked.relayed(&message);
        let paid = admitted.pay_message(&message);
        let last = message.finish_reason != FinishReason::Unspecified as i32;
        match &mut sink {
            Sink::Collect(text) => {
                text.push_str(&message.text);
                if last {
                    return Ok(Relayed::Done(Some(GenerateResponse {
                        text: std::mem::take(text),
                        finish_reason: message.finish_reason,
                        usage: message.usage,
                        served_by: message.served_by,
                    })));
                }
            }
            Sink::Forward { out, stall } => {
                // A client that does not read holds this send: the stall
                // bound and the drain's cutoff still end the stream.
                let sent = tokio::select! {
                    sent = out.send(Ok(message)) => sent,
                    () = tokio::time::sleep(*stall) => {
                        return Err(GatewayError::ClientStalled { tokens, stall: *stall })
                    }
                    Ok(_) = cutoff.wait_for(|&cut| cut) => return Err(GatewayError::ShuttingDown { tokens }),
                };
                if sent.is_err() {
                    return Ok(Relayed::ClientGone);
                }
                if last {
                    return Ok(Relayed::Done(None));
                }
            }
        }
        // Not the last message, and the quota is spent: dropping the
        // worker's stream stops its generation.
        paid.map_err(GatewayError::OverLimit)?;
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

/// Waits until the deadline, or forever without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
