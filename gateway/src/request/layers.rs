//! Tower layers every public call passes before its service sees it.
//!
//! [`StampLayer`] records, once and at the edge, when the call arrived and
//! until when it may run (its `grpc-timeout`): every later stage (routing,
//! the relay, the metrics, the worker's own deadline) reads the same two
//! instants from the request's extensions. Authentication and admission
//! come in as layers of the same shape, in front of or behind it.
//!
//! [`InvalidMessageLayer`] turns tonic's answer to a request that does not
//! decode (bytes that are not the message, a string field that is not
//! UTF-8), `INTERNAL` as gRPC's guidance has it for the codec, into
//! `INVALID_ARGUMENT` naming the problem: it is the client's request that
//! is wrong, before any routing.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use mig_serve::deadline::{parse_grpc_timeout, GRPC_TIMEOUT};
use tonic::codegen::http;
use tonic::server::NamedService;
use tower::{Layer, Service};

/// When a call arrived and its deadline, if the client set one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub arrived: Instant,
    pub deadline: Option<Instant>,
}

impl Stamp {
    /// The stamp the layer left on a request, or one made now for a request
    /// that came another way (a test calling the service directly).
    pub fn of<T>(request: &tonic::Request<T>) -> Stamp {
        request
            .extensions()
            .get::<Stamp>()
            .copied()
            .unwrap_or_else(|| {
                let arrived = Instant::now();
                Stamp {
                    arrived,
                    deadline: mig_serve::deadline::request_timeout(request.metadata())
                        .map(|t| arrived + t),
                }
            })
    }
}

/// Stamps each request with its [`Stamp`].
#[derive(Debug, Clone, Copy, Default)]
pub struct StampLayer;

impl<S> Layer<S> for StampLayer {
    type Service = Stamped<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Stamped { inner }
    }
}

/// A service behind [`StampLayer`].
#[derive(Debug, Clone)]
pub struct Stamped<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for Stamped<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let arrived = Instant::now();
        let deadline = request
            .headers()
            .get(GRPC_TIMEOUT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(|t| arrived + t);
        request.extensions_mut().insert(Stamp { arrived, deadline });
        self.inner.call(request)
    }
}

/// Served under the inner service's gRPC name.
impl<S: NamedService> NamedService for Stamped<S> {
    const NAME: &'static str = S::NAME;
}

/// Answers a request that does not decode `INVALID_ARGUMENT`.
#[derive(Debug, Clone, Copy, Default)]
pub struct InvalidMessageLayer;

impl<S> Layer<S> for InvalidMessageLayer {
    type Service = InvalidMessage<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InvalidMessage { inner }
    }
}

/// A service behind [`InvalidMessageLayer`].
#[derive(Debug, Clone)]
pub struct InvalidMessage<S> {
    inner: S,
}

/// How prost's decode errors begin (`prost::DecodeError`'s text), which
/// tonic sends as the `INTERNAL` status's message.
const DECODE_ERROR: &str = "failed to decode Protobuf message";

/// The `INVALID_ARGUMENT` a decode failure becomes, its detail bounded.
fn invalid_message(decode_error: &str) -> tonic::Status {
    let detail = decode_error
        .strip_prefix(DECODE_ERROR)
        .unwrap_or(decode_error)
        .trim_start_matches(':')
        .trim();
    tonic::Status::invalid_argument(format!(
        "the request is not a valid message of this method: {}",
        mig_serve::limits::shown_within(detail, 160)
    ))
}

impl<S, B, ResBody> Service<http::Request<B>> for InvalidMessage<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            // A request that does not decode is answered at once, in the
            // response head (trailers-only).
            if let Some(status) = tonic::Status::from_header_map(response.headers()) {
                if status.code() == tonic::Code::Internal
                    && status.message().starts_with(DECODE_ERROR)
                {
                    let headers = response.headers_mut();
                    headers.remove("grpc-message");
                    headers.remove("grpc-status-details-bin");
                    let _ = invalid_message(status.message()).add_header(headers);
                }
            }
            Ok(response)
        })
    }
}

/// Served under the inner service's gRPC name.
impl<S: NamedService> NamedService for InvalidMessage<S> {
    const NAME: &'static str = S::NAME;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tower::ServiceExt;

    #[tokio::test]
    async fn every_request_is_stamped_with_its_arrival_and_deadline() {
        let seen = tower::service_fn(|request: http::Request<()>| async move {
            Ok::<_, std::convert::Infallible>(*request.extensions().get::<Stamp>().unwrap())
        });
        let before = Instant::now();
        let with_timeout = http::Request::builder()
            .header(GRPC_TIMEOUT, "250m")
            .body(())
            .unwrap();
        let stamp = StampLayer.layer(seen).oneshot(with_timeout).await.unwrap();
        assert!(stamp.arrived >= before);
        assert_eq!(
            stamp.deadline,
            Some(stamp.arrived + Duration::from_millis(250))
        );

        let seen = tower::service_fn(|request: http::Request<()>| async move {
            Ok::<_, std::convert::Infallible>(*request.extensions().get::<Stamp>().unwrap())
        });
        let bad = http::Request::builder()
            .header(GRPC_TIMEOUT, "soon")
            .body(())
            .unwrap();
        let stamp = StampLayer.layer(seen).oneshot(bad).await.unwrap();
        assert_eq!(stamp.deadline, None, "an unreadable timeout is no deadline");
    }

    #[test]
    fn a_decode_error_becomes_invalid_argument_naming_the_field() {
        let s = invalid_message(
            "failed to decode Protobuf message: GenerateRequest.prompt: invalid string value: data is not UTF-8 encoded",
        );
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            s.message(),
            "the request is not a valid message of this method: GenerateRequest.prompt: invalid string value: data is not UTF-8 encoded"
        );
    }
}
