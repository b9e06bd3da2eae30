//! Streams whose client reads nothing. A client that stops reading stops
//! its response from being polled once HTTP/2's flow-control window and
//! the stream's send buffer are full, so its [`Relay`] cannot notice by
//! itself; it would hold its place on the worker (and in the model's
//! admission) for as long as the client likes. A watchdog task per stream
//! ends it, `RESOURCE_EXHAUSTED`, when a message has waited for the client
//! for `stall`; a slow worker (a long prefill) is not a stalled client.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use mig_proto::inference::v1::GenerateStreamResponse;
use tokio::sync::oneshot;
use tonic::Status;

use super::error::GatewayError;
use super::relay::Relay;

/// A relay with a watchdog on its client.
pub struct Watched {
    shared: Arc<Mutex<Progress>>,
    /// Dropped with the stream: the watchdog stops.
    _done: oneshot::Sender<()>,
}

struct Progress {
    relay: Relay,
    /// Since when the relay has had messages for the client (one yielded,
    /// or ready) and the response was not polled again; `None` while the
    /// relay waits for the worker.
    waiting_since: Option<Instant>,
}

/// Watches `relay`'s client: ended after `stall` without taking a message.
pub fn watch(relay: Relay, stall: Duration) -> Watched {
    let shared = Arc::new(Mutex::new(Progress {
        relay,
        waiting_since: None,
    }));
    let (done, done_rx) = oneshot::channel();
    tokio::spawn(watchdog(Arc::downgrade(&shared), stall, done_rx));
    Watched {
        shared,
        _done: done,
    }
}

fn lock(shared: &Mutex<Progress>) -> MutexGuard<'_, Progress> {
    // Poisoned only by a panic while polling; the relay then ends anyway.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

async fn watchdog(shared: Weak<Mutex<Progress>>, stall: Duration, mut done: oneshot::Receiver<()>) {
    let mut check = Instant::now() + stall;
    loop {
        tokio::select! {
            _ = &mut done => return,
            () = tokio::time::sleep_until(check.into()) => {}
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut progress = lock(&shared);
        if progress.relay.ended() {
            return;
        }
        match progress.waiting_since {
            Some(since) if since.elapsed() >= stall => {
                let tokens = progress.relay.tokens();
                tracing::debug!(tokens, "stream ended: its client read nothing");
                progress
                    .relay
                    .cut(GatewayError::ClientStalled { tokens, stall });
                return;
            }
            Some(since) => check = since + stall,
            None => check = Instant::now() + stall,
        }
    }
}

impl Stream for Watched {
    type Item = Result<GenerateStreamResponse, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut progress = lock(&self.shared);
        let polled = progress.relay.poll_next_unpin(cx);
        progress.waiting_since = match polled {
            Poll::Ready(Some(_)) => Some(Instant::now()),
            Poll::Pending if !progress.relay.waiting_for_worker() => Some(Instant::now()),
            _ => None,
        };
        polled
    }
}
