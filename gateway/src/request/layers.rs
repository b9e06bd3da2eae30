//! Tower layers every public call passes before its service sees it.
//!
//! [`StampLayer`] records, once and at the edge, when the call arrived and
//! until when it may run (its `grpc-timeout`): every later stage (routing,
//! the relay, the metrics, the worker's own deadline) reads the same two
//! instants from the request's extensions. Authentication and admission
//! come in as layers of the same shape, in front of or behind it.

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
}
