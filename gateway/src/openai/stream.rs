//! A generation's token stream as server-sent events: one `data:` event per
//! relayed message (text since the last, its log-probabilities), the finish
//! reason on the last choice, then with `include_usage` a chunk with the
//! usage and no choice, then `data: [DONE]`. A stream that fails after its
//! head was sent ends with an event whose data is OpenAI's error object,
//! and no `[DONE]`: clients raise it.

use std::pin::Pin;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use futures::{Stream, StreamExt};
use mig_proto::inference::v1::{FinishReason, GenerateStreamResponse};
use serde_json::Value;

use super::answer::Head;
use super::convert::Answer;
use super::error::ApiError;

type Messages = Pin<Box<dyn Stream<Item = Result<GenerateStreamResponse, tonic::Status>> + Send>>;

struct Events {
    messages: Messages,
    head: Head,
    answer: Answer,
    /// No chunk sent yet (a chat's first carries the role).
    first: bool,
    /// Bytes of text sent so far (completion log-probabilities' offsets).
    offset: usize,
    ended: bool,
}

fn event(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

impl Events {
    /// The events one relayed message becomes.
    fn of(&mut self, message: GenerateStreamResponse) -> Option<Bytes> {
        let finish = FinishReason::try_from(message.finish_reason).unwrap_or_default();
        let last = finish != FinishReason::Unspecified;
        if !last && message.text.is_empty() && message.logprobs.is_empty() {
            return None;
        }
        let chunk = self.head.chunk(
            &message.text,
            &message.logprobs,
            last.then_some((finish, message.served_by.as_ref())),
            self.first,
            self.offset,
        );
        self.first = false;
        self.offset += message.text.len();
        let mut out = event(&chunk).to_vec();
        if last {
            if self.answer.include_usage {
                out.extend_from_slice(&event(&self.head.usage_chunk(message.usage.as_ref())));
            }
            out.extend_from_slice(b"data: [DONE]\n\n");
            self.ended = true;
        }
        Some(Bytes::from(out))
    }
}

/// The response: `200 text/event-stream` with the events of `messages`.
pub fn respond(messages: Messages, head: Head, answer: Answer) -> Response {
    let events = Events {
        messages,
        head,
        answer,
        first: true,
        offset: 0,
        ended: false,
    };
    let body = futures::stream::unfold(events, |mut events| async move {
        loop {
            if events.ended {
                return None;
            }
            match events.messages.next().await {
                Some(Ok(message)) => {
                    if let Some(bytes) = events.of(message) {
                        return Some((Ok::<_, std::convert::Infallible>(bytes), events));
                    }
                }
                Some(Err(status)) => {
                    events.ended = true;
                    let error = ApiError::from_status(&status);
                    return Some((Ok(event(&error.body())), events));
                }
                None => {
                    // The relay always ends with a finish reason or an
                    // error; a stream that just stops was cut.
                    events.ended = true;
                    let error = ApiError::from_status(&tonic::Status::unavailable(
                        "the generation stream ended without a finish reason",
                    ));
                    return Some((Ok(event(&error.body())), events));
                }
            }
        }
    });
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
