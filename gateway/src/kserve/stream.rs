//! ModelStreamInfer: requests on one stream, answered in turn, as a
//! decoupled Triton model answers them. A generation answers a response per
//! chunk of text, each `triton_final_response` false, the last true (with
//! `triton_enable_empty_final_response`, the flag comes on an extra
//! response without outputs); `stream` false answers the whole text in one
//! response. An embedding call answers one response, flagged final.
//!
//! A request that fails is answered in-band (`error_message`, as Triton
//! does) and the stream goes on with the next one. The client's half-close
//! lets the running request finish; the client cancelling the call, or
//! going away, drops the running generation at once, which cancels it on
//! its worker.
//!
//! One task per stream reads the requests and answers them one after
//! another into a small channel: a client that stops reading stops the
//! task at the channel, and the shared path's stall sweep ends its
//! generation as it does any unread stream.

use std::sync::Arc;

use futures::StreamExt;
use mig_proto::inference::v1::inference_server::Inference;
use mig_proto::inference::v1::FinishReason;
use mig_proto::kserve::{ModelInferRequest, ModelStreamInferResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::response::{flagged_final, streamed, Answering};
use super::service::{prepare, Forward, ModelKinds, Prepared};

/// Responses ready for the client before the task waits for it to read.
const BUFFER: usize = 4;

type Sender = mpsc::Sender<Result<ModelStreamInferResponse, Status>>;

/// The client is gone: nothing more to answer.
struct Gone;

/// Serves one ModelStreamInfer call; its responses, as they come.
pub(super) fn serve<I: Inference + ModelKinds>(
    inference: Arc<I>,
    forward: Forward,
    mut inbound: Streaming<ModelInferRequest>,
) -> ReceiverStream<Result<ModelStreamInferResponse, Status>> {
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = tx.closed() => return,
                next = inbound.message() => next,
            };
            let request = match next {
                Ok(Some(request)) => request,
                // Half-closed: everything asked is answered.
                Ok(None) => return,
                Err(status) => {
                    let _ = tx.send(Err(broken(status))).await;
                    return;
                }
            };
            if answer(&*inference, &forward, request, &tx).await.is_err() {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

/// The status that ends a stream whose requests cannot be read: one that
/// does not decode is the client's (`INVALID_ARGUMENT`, bounded detail);
/// anything else is the request stream broken under the call.
fn broken(status: Status) -> Status {
    const DECODE_ERROR: &str = "failed to decode Protobuf message";
    if status.message().starts_with(DECODE_ERROR) {
        Status::invalid_argument(format!(
            "a ModelStreamInfer request is not a valid ModelInferRequest: {}",
            mig_serve::limits::shown_within(
                status.message()[DECODE_ERROR.len()..].trim_start_matches([':', ' ']),
                160
            )
        ))
    } else {
        Status::cancelled(format!(
            "the request stream broke: {}",
            mig_serve::limits::shown_within(status.message(), 160)
        ))
    }
}

async fn send(tx: &Sender, message: ModelStreamInferResponse) -> Result<(), Gone> {
    tx.send(Ok(message)).await.map_err(|_| Gone)
}

/// Runs `work` unless the client goes away first (then `work` is dropped:
/// a generation in it is cancelled).
async fn unless_gone<T>(
    tx: &Sender,
    work: impl std::future::Future<Output = T>,
) -> Result<T, Gone> {
    tokio::select! {
        _ = tx.closed() => Err(Gone),
        done = work => Ok(done),
    }
}

/// Answers one request of the stream: its responses, or its error in-band.
async fn answer<I: Inference + ModelKinds>(
    inference: &I,
    forward: &Forward,
    request: ModelInferRequest,
    tx: &Sender,
) -> Result<(), Gone> {
    let answering = Answering::of(&request);
    match prepare(inference, forward, request) {
        Err(status) => send(tx, answering.failed(&status)).await,
        Ok(Prepared::Embed(embedding, answering)) => {
            let answer =
                unless_gone(tx, inference.embed(forward.request(embedding.request))).await?;
            match answer {
                Ok(answer) => {
                    let response = flagged_final(answering.embedded(&answer.into_inner()));
                    send(tx, streamed(response)).await
                }
                Err(status) => send(tx, answering.failed(&status)).await,
            }
        }
        Ok(Prepared::Generate(generation, answering)) => {
            let chunked = generation.stream != Some(false);
            let empty_final = generation.empty_final;
            let opened = unless_gone(
                tx,
                inference.generate_stream(forward.request(generation.request)),
            )
            .await?;
            let mut messages = match opened {
                Ok(stream) => Box::pin(stream.into_inner()),
                Err(status) => return send(tx, answering.failed(&status)).await,
            };
            let mut whole = String::new();
            loop {
                let message = match unless_gone(tx, messages.next()).await? {
                    Some(Ok(message)) => message,
                    Some(Err(status)) => return send(tx, answering.failed(&status)).await,
                    None => {
                        let status =
                            Status::internal("the generation ended without its last message");
                        return send(tx, answering.failed(&status)).await;
                    }
                };
                if message.finish_reason() == FinishReason::Unspecified {
                    if !chunked {
                        whole.push_str(&message.text);
                    } else if !message.text.is_empty() {
                        send(tx, streamed(answering.chunk(&message.text))).await?;
                    }
                    continue;
                }
                let text = if chunked {
                    message.text.clone()
                } else {
                    whole + &message.text
                };
                if !empty_final {
                    return send(tx, streamed(answering.last(&text, &message))).await;
                }
                // The one response of `stream` false is sent even empty.
                if !chunked || !text.is_empty() {
                    send(tx, streamed(answering.chunk(&text))).await?;
                }
                return send(tx, streamed(answering.empty_final(&message))).await;
            }
        }
    }
}
