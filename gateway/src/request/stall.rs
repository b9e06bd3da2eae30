//! Streams whose client reads nothing. A client that stops reading stops
//! its response from being polled once HTTP/2's flow-control window and
//! the stream's send buffer are full, so its [`Relay`] cannot notice by
//! itself; it would hold its place on the worker (and in the model's
//! admission) for as long as the client likes. [`Stalls`] ends such a
//! stream, `RESOURCE_EXHAUSTED`, when a message has waited for the client
//! for `stall`; a slow worker (a long prefill) is not a stalled client.
//! The writer polls a stream only while the client's window has room, so
//! a stream whose last poll waited for the worker is not polled again when
//! the worker's next message arrives: the sweep takes that message ahead
//! ([`Relay::poll_ahead`], with the writer's waker) and starts its clock.
//! One sweep task looks at every open stream a few times per `stall`, so
//! a stream costs no task and no timer of its own.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use mig_proto::inference::v1::GenerateStreamResponse;
use tonic::Status;

use super::error::GatewayError;
use super::relay::Relay;

/// Sweeps per `stall`: a stalled stream ends between `stall` and
/// `stall` plus a quarter.
const SWEEPS_PER_STALL: u32 = 4;

/// The open streams, watched for clients that read nothing.
pub struct Stalls {
    stall: Duration,
    streams: Mutex<HashMap<u64, Weak<Mutex<Progress>>>>,
    next_id: AtomicU64,
}

/// A relay under watch: the client's response stream. Dropped, it leaves
/// the watch.
pub struct Watched {
    shared: Arc<Mutex<Progress>>,
    id: u64,
    stalls: Arc<Stalls>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        lock(&self.stalls.streams).remove(&self.id);
    }
}

struct Progress {
    relay: Relay,
    /// Since when the relay has had messages for the client (one yielded,
    /// or ready) and the response was not polled again; `None` while the
    /// relay waits for the worker.
    waiting_since: Option<Instant>,
    /// The waker of the task that writes to the client, from its last poll.
    waker: Option<Waker>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Poisoned only by a panic while holding it; what it guards (a relay
    // that then ends, or a list of weak references) stays usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Stalls {
    /// Starts the sweep; it stops when the last reference to the returned
    /// watch is dropped.
    pub fn start(stall: Duration) -> Arc<Stalls> {
        let stalls = Arc::new(Stalls {
            stall,
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        });
        tokio::spawn(sweep(Arc::downgrade(&stalls)));
        stalls
    }

    /// Watches `relay`'s client from now on.
    pub fn watch(self: &Arc<Self>, relay: Relay) -> Watched {
        let shared = Arc::new(Mutex::new(Progress {
            relay,
            waiting_since: None,
            waker: None,
        }));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.streams).insert(id, Arc::downgrade(&shared));
        Watched {
            shared,
            id,
            stalls: self.clone(),
        }
    }

    /// Ends the streams whose client has read nothing for `stall`, and
    /// forgets those that ended.
    fn check(&self, now: Instant) {
        lock(&self.streams).retain(|_, stream| {
            let Some(shared) = stream.upgrade() else {
                return false;
            };
            let mut progress = lock(&shared);
            if progress.relay.ended() {
                return false;
            }
            if progress.waiting_since.is_none() {
                let Progress { relay, waker, .. } = &mut *progress;
                let ahead = waker
                    .as_ref()
                    .is_some_and(|w| relay.poll_ahead(&mut Context::from_waker(w)));
                if ahead {
                    progress.waiting_since = Some(now);
                }
            }
            match progress.waiting_since {
                Some(since) if now.saturating_duration_since(since) >= self.stall => {
                    let tokens = progress.relay.tokens();
                    tracing::debug!(tokens, "stream ended: its client read nothing");
                    progress.relay.cut(GatewayError::ClientStalled {
                        tokens,
                        stall: self.stall,
                    });
                    false
                }
                _ => true,
            }
        });
    }
}

async fn sweep(stalls: Weak<Stalls>) {
    let Some(every) = stalls
        .upgrade()
        .map(|s| (s.stall / SWEEPS_PER_STALL).max(Duration::from_millis(10)))
    else {
        return;
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(stalls) = stalls.upgrade() else {
            return;
        };
        stalls.check(Instant::now());
    }
}

impl Stream for Watched {
    type Item = Result<GenerateStreamResponse, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut progress = lock(&self.shared);
        if !progress
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            progress.waker = Some(cx.waker().clone());
        }
        let polled = progress.relay.poll_next_unpin(cx);
        progress.waiting_since = match polled {
            Poll::Ready(Some(_)) => Some(Instant::now()),
            Poll::Pending if !progress.relay.waiting_for_worker() => Some(Instant::now()),
            _ => None,
        };
        polled
    }
}
