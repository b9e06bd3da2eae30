//! A worker's token stream on its way to the client: every message counted
//! as it passes ([`Tracked`]) and paid for from the tenant's quota, and
//! exactly one outcome, whatever fails.
//!
//! [`Relay`] is the stream the client's response reads: it polls the
//! worker's stream itself, in the task that writes to the client, so a
//! message crosses no channel and no other task, and messages that arrive
//! together leave together. A client that goes away drops it, which resets
//! the worker's stream (the worker stops at its next token) and gives back
//! the request's place. A client that stays but reads nothing is
//! `super::stall`'s business.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use futures::{Stream, StreamExt};
use mig_proto::inference::v1::{FinishReason, GenerateResponse, GenerateStreamResponse};
use tokio::sync::watch;
use tonic::codec::Streaming;
use tonic::Status;

use super::dispatch::Dispatched;
use super::error::GatewayError;
use super::tracking::Tracked;
use crate::admission::Slot;
use crate::registry::{InFlight, WorkerHandle};
use crate::tenancy::quota::Admitted;
use crate::worker_connections::Lease;

/// What a running stream holds on the worker; dropped when the stream ends,
/// however it ends, which stops the worker's generation and starts the
/// next waiting request.
struct Live {
    upstream: Streaming<GenerateStreamResponse>,
    _in_flight: InFlight,
    _slot: Slot,
    /// Last: back in the pool after the worker's stream was reset.
    _connection: Lease,
}

/// One generation relayed from its worker, as a stream of messages ending
/// with the worker's final message or one error.
pub struct Relay {
    live: Option<Live>,
    worker: Arc<WorkerHandle>,
    tracked: Option<Tracked>,
    admitted: Admitted,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Completes when the gateway's drain period is about to run out.
    cutoff: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// An error to end the stream with, after the message just yielded.
    pending: Option<Status>,
    /// Tokens relayed so far.
    tokens: u64,
    /// Messages yielded since the relay last returned `Pending`.
    since_flush: usize,
    /// How many may go before it does: [`MAX_BURST`] for a stream, no
    /// limit when collected.
    burst: usize,
    /// A message taken ahead of the client ([`Relay::peek`],
    /// [`Relay::poll_ahead`]), to yield first.
    peeked: Option<GenerateStreamResponse>,
    /// Whether the last `Pending` only let the encoder write (messages
    /// are ready), rather than waiting for the worker.
    flushing: bool,
}

/// Messages yielded in a row before the relay returns `Pending` once, so
/// the response's encoder writes what it gathered. The encoder gathers
/// every message that is ready into one write (up to 32 KiB): a worker
/// that runs ahead of a slow client would otherwise park that much behind
/// the client's flow-control window, and a status (the drain's, a stall's)
/// behind it. Sixteen keep writes few and what waits for a slow client
/// small.
const MAX_BURST: usize = 16;

impl Relay {
    /// Starts relaying the stream of a generation a worker took, counted
    /// in `tracked` and paid from `admitted`; `slot` is its place in the
    /// model's admission. `cutoff` turns true when the gateway's drain
    /// runs out.
    pub fn new(
        opened: Dispatched<Streaming<GenerateStreamResponse>>,
        slot: Slot,
        tracked: Tracked,
        admitted: Admitted,
        deadline: Option<Instant>,
        mut cutoff: watch::Receiver<bool>,
    ) -> Relay {
        Relay {
            live: Some(Live {
                upstream: opened.response,
                _in_flight: opened.in_flight,
                _slot: slot,
                _connection: opened.connection,
            }),
            worker: opened.worker,
            tracked: Some(tracked),
            admitted,
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d.into()))),
            cutoff: Box::pin(async move {
                if cutoff.wait_for(|&cut| cut).await.is_err() {
                    // The gateway is gone without a cutoff: nothing to wait for.
                    std::future::pending::<()>().await;
                }
            }),
            pending: None,
            tokens: 0,
            since_flush: 0,
            burst: MAX_BURST,
            peeked: None,
            flushing: false,
        }
    }

    /// Ends the stream with `error`, yielded next: what it held on the
    /// worker goes back at once, and the terminal status is counted.
    pub fn cut(&mut self, error: GatewayError) {
        self.pending = Some(self.fail(error));
    }

    /// Ends the stream with `error`, returned: what it held on the worker
    /// goes back at once, and the terminal status is counted.
    fn fail(&mut self, error: GatewayError) -> Status {
        self.live = None;
        let status = Status::from(error);
        if let Some(tracked) = self.tracked.take() {
            tracked.finish(status.code());
        }
        status
    }

    /// Tokens relayed so far.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Whether the stream has ended (its last message or error yielded, or
    /// about to be).
    pub fn ended(&self) -> bool {
        self.live.is_none()
    }

    /// Whether the relay has messages for the client, or is waiting for
    /// the worker (its last poll found nothing to yield).
    pub fn waiting_for_worker(&self) -> bool {
        !self.flushing
    }

    /// Takes the worker's next message (or its error) ahead of the
    /// client, if one has arrived, to be yielded next; whether the relay
    /// now holds something the client has not read. `cx` must be the
    /// client's task's: the worker's stream wakes that task as before.
    /// The response's writer stops polling a stream whose client window
    /// is full, so this is how [`super::stall`] learns that messages wait.
    pub fn poll_ahead(&mut self, cx: &mut Context<'_>) -> bool {
        if self.peeked.is_some() || self.pending.is_some() {
            return true;
        }
        if self.live.is_none() {
            return false;
        }
        // Not a yield to the client: the burst count stays as it was.
        let since_flush = std::mem::take(&mut self.since_flush);
        let flushing = self.flushing;
        let ahead = match self.poll_message(cx) {
            Poll::Ready(Some(Ok(message))) => {
                self.peeked = Some(message);
                true
            }
            Poll::Ready(Some(Err(status))) => {
                self.pending = Some(status);
                true
            }
            Poll::Ready(None) | Poll::Pending => false,
        };
        self.since_flush = since_flush;
        self.flushing = flushing;
        ahead
    }

    fn poll_message(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<GenerateStreamResponse, Status>>> {
        self.flushing = false;
        if let Some(message) = self.peeked.take() {
            self.since_flush += 1;
            return Poll::Ready(Some(Ok(message)));
        }
        if let Some(status) = self.pending.take() {
            return Poll::Ready(Some(Err(status)));
        }
        if self.since_flush >= self.burst {
            // Let the encoder write what it gathered (see MAX_BURST).
            self.since_flush = 0;
            self.flushing = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let Some(live) = self.live.as_mut() else {
            return Poll::Ready(None);
        };
        if self.cutoff.as_mut().poll(cx).is_ready() {
            let tokens = self.tokens;
            return Poll::Ready(Some(Err(self.fail(GatewayError::ShuttingDown { tokens }))));
        }
        if let Some(deadline) = self.deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Some(Err(self.fail(GatewayError::DeadlineExceeded))));
            }
        }
        let message = match ready!(live.upstream.poll_next_unpin(cx)) {
            Some(Ok(message)) => message,
            None => {
                let worker = self.worker.id();
                return Poll::Ready(Some(Err(
                    self.fail(GatewayError::IncompleteStream { worker })
                )));
            }
            Some(Err(status)) => {
                let error = match GatewayError::from_worker(&self.worker.id(), status) {
                    GatewayError::WorkerUnreachable { worker, message } => {
                        GatewayError::WorkerLost {
                            worker,
                            tokens: self.tokens,
                            message,
                        }
                    }
                    other => other,
                };
                return Poll::Ready(Some(Err(self.fail(error))));
            }
        };
        self.tokens += u64::from(message.token_count);
        if let Some(tracked) = self.tracked.as_mut() {
            tracked.relayed(&message);
        }
        let paid = self.admitted.pay_message(&message);
        if message.finish_reason != FinishReason::Unspecified as i32 {
            self.live = None;
            if let Some(tracked) = self.tracked.take() {
                tracked.finish(tonic::Code::Ok);
            }
        } else if let Err(over) = paid {
            // The quota is spent: this message goes, then the stream ends
            // (dropping the worker's stream stops its generation).
            self.cut(GatewayError::OverLimit(over));
        }
        self.since_flush += 1;
        Poll::Ready(Some(Ok(message)))
    }

    /// Waits for the stream's first message, kept to be yielded first, so
    /// the response's headers leave with it in one write (the client has
    /// nothing to do with headers alone), and a stream that fails before
    /// its first message is answered with a plain status.
    pub async fn peek(&mut self) -> Result<(), Status> {
        match self.next().await {
            Some(Ok(message)) => {
                self.since_flush = 0;
                self.peeked = Some(message);
                Ok(())
            }
            Some(Err(status)) => Err(status),
            // The relay ends with the final message or an error, never short.
            None => Err(self.fail(GatewayError::IncompleteStream {
                worker: self.worker.id(),
            })),
        }
    }

    /// The whole answer of a `Generate` call: the stream, collected.
    pub async fn collect(mut self) -> Result<GenerateResponse, Status> {
        // Nothing is written before the end: no reason to pause.
        self.burst = usize::MAX;
        let mut text = String::new();
        let mut logprobs = Vec::new();
        while let Some(message) = self.next().await {
            let message = message?;
            text.push_str(&message.text);
            logprobs.extend(message.logprobs);
            if message.finish_reason != FinishReason::Unspecified as i32 {
                return Ok(GenerateResponse {
                    text,
                    finish_reason: message.finish_reason,
                    usage: message.usage,
                    served_by: message.served_by,
                    logprobs,
                });
            }
        }
        // The relay ends with the final message or an error, never short.
        Err(self.fail(GatewayError::IncompleteStream {
            worker: self.worker.id(),
        }))
    }
}

impl Stream for Relay {
    type Item = Result<GenerateStreamResponse, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_message(cx)
    }
}
