//! A call from the gateway to a worker: one dispatch routine for every
//! kind of call.
//!
//! [`dispatch`] picks a healthy worker of the route and sends it the call
//! with what is left of the client's deadline; while the chosen worker
//! cannot be reached, or refuses the call (its queue full, shutting down),
//! it tries another of the model's workers: nothing was answered yet, so
//! nothing is lost. Unreachable workers are marked unhealthy; retries are
//! bounded per call and by the gateway's [`RetryBudget`]. A generation's
//! stream then goes through `super::relay`.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use mig_serve::limits::PROMPT_TOKENS_HEADER;
use tonic::{Request, Response, Status};

use super::error::GatewayError;
use super::retry::{RetryBudget, MAX_RETRIES_PER_CALL};
use super::routing::{self, Route};
use crate::registry::{InFlight, Registry, WorkerClient, WorkerHandle};
use crate::worker_connections::Lease;

/// A call a worker accepted.
pub struct Dispatched<T> {
    pub worker: Arc<WorkerHandle>,
    /// Held while the call runs: the worker's load counts it.
    pub in_flight: InFlight,
    /// The connection the call runs on, its own until it ends.
    pub connection: Lease,
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
            answer = async {
                // No connection is the worker unreachable, like a failed call.
                let (client, connection) = worker
                    .lease()
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                call(client, request).await.map(|r| (r, connection))
            } => answer,
            () = until(deadline) => return Err(GatewayError::DeadlineExceeded),
        };
        match answer {
            Ok((response, connection)) => {
                let prompt_tokens = response
                    .metadata()
                    .get(PROMPT_TOKENS_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                return Ok(Dispatched {
                    worker,
                    in_flight,
                    connection,
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
