//! The gateway's errors, and the one place where they become gRPC status.

use mig_serve::limits::shown;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::admission::Shed;
use crate::tenancy::quota::OverLimit;

/// The trailer that says, in seconds, when a call refused by a limit may
/// succeed.
pub const RETRY_AFTER: &str = "retry-after";

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No worker of the fleet serves this model name. `known` lists only
    /// the models the caller may call.
    #[error("model `{}` is not served here; known models: {}", shown(model), known.join(", "))]
    UnknownModel { model: String, known: Vec<String> },
    /// The caller's tenant may not call this model (whether or not it is
    /// served: the answer depends on the tenant's own list only).
    #[error("tenant `{tenant}` may not call model `{}`; its models: {}", shown(model), models.join(", "))]
    PermissionDenied {
        tenant: String,
        model: String,
        /// The `models` entries of the tenant.
        models: Vec<String>,
    },
    /// A tenant's limit refused the call or cut its stream.
    #[error("{0}")]
    OverLimit(OverLimit),
    /// The admission queue refused the call, or took it out (overload).
    #[error("{0}")]
    Shed(Shed),
    /// The model has workers, but none on a slice of the requested profile.
    #[error("`profile` `{profile}`: model `{model}` has workers on {}", profiles.join(", "))]
    UnknownProfile {
        model: String,
        profile: String,
        /// The profiles the model's workers run on, sorted.
        profiles: Vec<String>,
    },
    /// A request field is out of range; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// The model exists but none of its workers is healthy.
    #[error("no healthy worker serves model `{model}` ({workers} known, all down or starting)")]
    NoHealthyWorker { model: String, workers: usize },
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// The worker could not be reached or dropped the connection.
    #[error("worker `{worker}` is unreachable: {message}")]
    WorkerUnreachable { worker: String, message: String },
    /// The worker answered with an error status; relayed as is.
    #[error("{}", .0.message())]
    Worker(Status),
    /// The worker's stream ended without its final message.
    #[error("worker `{worker}` ended the stream without a final message")]
    IncompleteStream { worker: String },
    /// The connection to the worker failed in the middle of a stream (the
    /// worker died, or was killed): `tokens` had reached the client.
    #[error("worker `{worker}` was lost after {tokens} tokens of this stream: {message}")]
    WorkerLost {
        worker: String,
        tokens: u64,
        message: String,
    },
    /// The gateway's drain period ran out with the stream still running.
    #[error("gateway shutting down: this stream did not finish within the drain period (after {tokens} tokens)")]
    ShuttingDown { tokens: u64 },
    /// The client took no message of its stream for `stall`: the stream
    /// was ended so that it holds no place on the worker.
    #[error("the client read nothing of this stream for {} s (after {tokens} tokens): ended, freeing its place on the worker", stall.as_secs_f64())]
    ClientStalled {
        tokens: u64,
        stall: std::time::Duration,
    },
}

impl From<Shed> for GatewayError {
    fn from(shed: Shed) -> Self {
        match shed {
            // Its own deadline passed while it waited.
            Shed::Expired => GatewayError::DeadlineExceeded,
            Shed::Down { model, workers, .. } => GatewayError::NoHealthyWorker { model, workers },
            shed => GatewayError::Shed(shed),
        }
    }
}

impl GatewayError {
    /// Classifies a failed call to a worker: transport failures make the
    /// worker unreachable, anything else is the worker's own answer.
    pub fn from_worker(worker: &str, status: Status) -> Self {
        // tonic reports a broken connection as UNKNOWN (`h2 protocol
        // error`, `transport error`): that worker is unreachable. Any other
        // UNKNOWN is not a connection failure, so it must not take the
        // worker out of routing (a request could then do it on purpose);
        // it is relayed as INTERNAL: a client never sees UNKNOWN.
        // CANCELLED from a worker call is the transport's (hyper's
        // "operation was canceled" when the connection dies under a call):
        // the gateway never cancels a call whose status it then reads, and
        // a worker answers a deadline DEADLINE_EXCEEDED. tonic's channel
        // timeout ("Timeout expired") is not on the call path any more
        // (calls go on `crate::worker_connections`), but were it to come
        // back it is the request's deadline, not a broken worker.
        let timed_out = status.code() == Code::DeadlineExceeded
            || (status.code() == Code::Cancelled
                && status.message() == tonic::TimeoutExpired(()).to_string());
        let broken = status.code() == Code::Unavailable
            || (status.code() == Code::Cancelled && !timed_out)
            || (status.code() == Code::Unknown
                && ["transport", "h2 protocol error", "connection"]
                    .iter()
                    .any(|m| status.message().contains(m)));
        if broken {
            GatewayError::WorkerUnreachable {
                worker: worker.to_string(),
                message: status.message().to_string(),
            }
        } else if timed_out {
            GatewayError::DeadlineExceeded
        } else if status.code() == Code::Unknown {
            GatewayError::Worker(Status::internal(format!(
                "worker `{worker}` failed: {}",
                mig_serve::limits::shown(status.message())
            )))
        } else {
            GatewayError::Worker(status)
        }
    }

    /// Stable name for logs and metric labels.
    pub fn error_type(&self) -> &'static str {
        match self {
            GatewayError::UnknownModel { .. } => "unknown_model",
            GatewayError::UnknownProfile { .. } => "unknown_profile",
            GatewayError::PermissionDenied { .. } => "permission",
            GatewayError::OverLimit(over) => over.reason(),
            GatewayError::Shed(shed) => shed.reason(),
            GatewayError::Invalid(_) => "validation",
            GatewayError::NoHealthyWorker { .. } => "no_healthy_worker",
            GatewayError::DeadlineExceeded => "deadline",
            GatewayError::WorkerUnreachable { .. } => "worker_unreachable",
            GatewayError::Worker(_) => "worker",
            GatewayError::IncompleteStream { .. } => "incomplete_stream",
            GatewayError::WorkerLost { .. } => "worker_lost",
            GatewayError::ShuttingDown { .. } => "shutting_down",
            GatewayError::ClientStalled { .. } => "client_stalled",
        }
    }
}

impl From<GatewayError> for Status {
    fn from(e: GatewayError) -> Self {
        let message = e.to_string();
        match e {
            GatewayError::UnknownModel { .. } | GatewayError::UnknownProfile { .. } => {
                Status::not_found(message)
            }
            GatewayError::Invalid(_) => Status::invalid_argument(message),
            GatewayError::PermissionDenied { .. } => Status::permission_denied(message),
            GatewayError::OverLimit(over) => exhausted(message, over.retry_after.as_secs()),
            GatewayError::Shed(shed) => exhausted(message, shed.retry_after().as_secs()),
            GatewayError::NoHealthyWorker { .. }
            | GatewayError::WorkerUnreachable { .. }
            | GatewayError::IncompleteStream { .. }
            | GatewayError::WorkerLost { .. }
            | GatewayError::ShuttingDown { .. } => Status::unavailable(message),
            GatewayError::DeadlineExceeded => Status::deadline_exceeded(message),
            GatewayError::ClientStalled { .. } => Status::resource_exhausted(message),
            GatewayError::Worker(status) => Status::new(status.code(), message),
        }
    }
}

/// `RESOURCE_EXHAUSTED` with the `retry-after` trailer.
fn exhausted(message: String, retry_after_s: u64) -> Status {
    let mut trailers = tonic::metadata::MetadataMap::new();
    trailers.insert(RETRY_AFTER, MetadataValue::from(retry_after_s));
    Status::with_metadata(Code::ResourceExhausted, message, trailers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_code() {
        let s: Status = GatewayError::UnknownModel {
            model: "x".into(),
            known: vec!["a".into(), "b".into()],
        }
        .into();
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(
            s.message(),
            "model `x` is not served here; known models: a, b"
        );
        let s: Status = GatewayError::UnknownProfile {
            model: "m".into(),
            profile: "cpu-4c".into(),
            profiles: vec!["cpu-1c".into(), "cpu-2c".into()],
        }
        .into();
        assert_eq!(
            (s.code(), s.message()),
            (
                Code::NotFound,
                "`profile` `cpu-4c`: model `m` has workers on cpu-1c, cpu-2c"
            )
        );
        let s: Status = GatewayError::NoHealthyWorker {
            model: "a".into(),
            workers: 1,
        }
        .into();
        assert_eq!(s.code(), Code::Unavailable);
        let s: Status =
            GatewayError::from_worker("w", Status::invalid_argument("`top_p` bad")).into();
        assert_eq!(
            (s.code(), s.message()),
            (Code::InvalidArgument, "`top_p` bad")
        );
        let s: Status =
            GatewayError::from_worker("w", Status::unavailable("connection refused")).into();
        assert_eq!(s.code(), Code::Unavailable);
        assert!(s.message().contains("worker `w` is unreachable"));
        let s: Status = GatewayError::from_worker(
            "w",
            Status::unknown("h2 protocol error: error reading a body from connection"),
        )
        .into();
        assert_eq!(s.code(), Code::Unavailable, "never UNKNOWN");
        // Another UNKNOWN is not a broken connection: the worker stays in
        // routing, and the client sees INTERNAL.
        let e = GatewayError::from_worker("w", Status::unknown("odd"));
        assert!(matches!(e, GatewayError::Worker(_)), "{e:?}");
        let s: Status = e.into();
        assert_eq!(
            (s.code(), s.message()),
            (Code::Internal, "worker `w` failed: odd")
        );
        let s: Status = GatewayError::from_worker("w", Status::deadline_exceeded("late")).into();
        assert_eq!(s.code(), Code::DeadlineExceeded);
        // A call cut under the gateway by its connection: the worker is
        // unreachable, not the request late.
        let e = GatewayError::from_worker("w", Status::cancelled("operation was canceled"));
        assert!(matches!(e, GatewayError::WorkerUnreachable { .. }), "{e:?}");
        let e = GatewayError::from_worker("w", Status::cancelled("Timeout expired"));
        assert!(matches!(e, GatewayError::DeadlineExceeded), "{e:?}");
    }
}
