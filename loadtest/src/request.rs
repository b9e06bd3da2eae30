//! One streamed request, timed from the client's side: what the client saw,
//! whatever happened (every request ends with exactly one status).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mig_proto::inference::v1::{FinishReason, GenerateRequest};
use serde::Serialize;
use tokio::sync::watch;

use crate::live::Live;
use crate::target::Target;

/// Status of a request the client gave up on at the end of a run (it still
/// counts: every request sent has a status).
pub const CLIENT_GAVE_UP: &str = "CANCELLED";

#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    /// The load point it belongs to (`Point::id` in the report).
    pub point: usize,
    /// Request number within the run (the workload's index).
    pub index: u64,
    /// When it was sent, seconds after the measured window opened.
    pub sent_s: f64,
    /// gRPC status name (`OK`, `RESOURCE_EXHAUSTED`, ...).
    pub status: String,
    /// The status message of a failed request.
    pub message: String,
    pub finish: String,
    /// Time to the first message that carried a token.
    pub ttft_us: Option<u64>,
    /// End-to-end: sent to the last message (or the error).
    pub e2e_us: u64,
    /// Gaps between token-carrying messages, divided evenly among the
    /// tokens a message carried (a message holds back text that is not yet
    /// whole UTF-8 or might start a stop string).
    #[serde(skip)]
    pub itl_us: Vec<u64>,
    pub prompt_tokens: u32,
    /// Tokens counted by the client (sum of `token_count`).
    pub output_tokens: u32,
    /// What the server said it generated (`usage.completion_tokens`).
    pub usage_completion_tokens: u32,
    pub worker_id: String,
    pub slice: String,
    pub profile: String,
}

impl RequestRecord {
    pub fn ok(&self) -> bool {
        self.status == "OK"
    }
}

/// When a request is due and how the run counts it.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// When the request was due: the send time in a closed loop, the
    /// scheduled arrival in an open loop (so time lost before sending, by a
    /// lagging client, counts against the latency as a user would feel it).
    pub due: Instant,
    /// The start of the measured window (`sent_s` is relative to it).
    pub window_start: Instant,
    /// The client's own deadline on the whole stream (the gRPC deadline
    /// bounds only the wait for the response headers).
    pub timeout: Duration,
}

/// Sends `request` and reads the stream to its end. A `stop` signal (the
/// run's drain time is over) abandons it with status `CANCELLED`.
pub async fn send(
    target: &Target,
    index: u64,
    request: GenerateRequest,
    timing: Timing,
    live: &Arc<Live>,
    mut stop: watch::Receiver<bool>,
) -> RequestRecord {
    let due = timing.due;
    let mut record = RequestRecord {
        point: 0,
        index,
        sent_s: signed_secs(due, timing.window_start),
        status: "OK".into(),
        message: String::new(),
        finish: String::new(),
        ttft_us: None,
        e2e_us: 0,
        itl_us: Vec::new(),
        prompt_tokens: 0,
        output_tokens: 0,
        usage_completion_tokens: 0,
        worker_id: String::new(),
        slice: String::new(),
        profile: String::new(),
    };
    let read = async {
        let mut stream = target.generate_stream(request, timing.timeout).await?;
        let mut last = due;
        while let Some(message) = stream.message().await? {
            if message.token_count > 0 {
                let now = Instant::now();
                if record.ttft_us.is_none() {
                    // The first token's gap is the TTFT; tokens that came in
                    // the same message have no gap of their own.
                    record.ttft_us = Some(micros(now - due));
                } else {
                    let share = micros(now - last) / u64::from(message.token_count);
                    for _ in 0..message.token_count {
                        record.itl_us.push(share);
                    }
                }
                last = now;
                record.output_tokens += message.token_count;
                live.tokens(now, message.token_count);
            }
            if let Some(usage) = message.usage {
                record.prompt_tokens = usage.prompt_tokens;
                record.usage_completion_tokens = usage.completion_tokens;
            }
            if message.finish_reason != FinishReason::Unspecified as i32 {
                record.finish = finish_name(message.finish_reason());
            }
            if let Some(by) = message.served_by {
                record.worker_id = by.worker_id;
                record.slice = by.slice;
                record.profile = by.profile;
            }
        }
        Ok::<(), tonic::Status>(())
    };
    let outcome = tokio::select! {
        // Once the run gave up on it, a request is abandoned, whatever its
        // stream does next: the server may answer a crowd of cancelled
        // streams by closing the connection (h2's defence against a flood
        // of resets), and that is not the server's failure.
        biased;
        _ = stop.wait_for(|stop| *stop) => Err((
            CLIENT_GAVE_UP.to_string(),
            "the run ended and the client stopped waiting (see `--drain`)".to_string(),
        )),
        outcome = tokio::time::timeout_at((due + timing.timeout).into(), read) => match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(s)) => Err((mig_serve::status::code_name(s.code()).to_string(), s.message().to_string())),
            Err(_) => Err((
                "DEADLINE_EXCEEDED".to_string(),
                format!("the client's --timeout of {:?} passed before the stream ended", timing.timeout),
            )),
        },
    };
    if let Err((status, message)) = outcome {
        record.status = status;
        record.message = message;
    }
    record.e2e_us = micros(due.elapsed());
    live.finished(record.ok());
    record
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

/// Seconds from `origin` to `t`, negative before it (warm-up requests).
fn signed_secs(t: Instant, origin: Instant) -> f64 {
    match t.checked_duration_since(origin) {
        Some(d) => d.as_secs_f64(),
        None => -(origin - t).as_secs_f64(),
    }
}

fn finish_name(reason: FinishReason) -> String {
    match reason {
        FinishReason::Length => "length",
        FinishReason::Stop => "stop",
        FinishReason::Eos => "eos",
        FinishReason::Cancelled => "cancelled",
        FinishReason::Unspecified => "",
    }
    .to_string()
}
