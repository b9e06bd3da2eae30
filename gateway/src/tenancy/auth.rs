//! [`AuthLayer`]: every public inference call is authenticated here, before
//! its service sees it. The call's [`Caller`] is left in its extensions; a
//! call without a known key is answered `UNAUTHENTICATED` at once, and never
//! reaches routing.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{self, Either};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tower::{Layer, Service};

use super::{Caller, Tenancy};

/// Authenticates each call against the tenants (or lets it through as
/// [`Caller::Open`] when there are none).
#[derive(Clone)]
pub struct AuthLayer {
    tenancy: Arc<Tenancy>,
}

impl AuthLayer {
    pub fn new(tenancy: Arc<Tenancy>) -> Self {
        AuthLayer { tenancy }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            tenancy: self.tenancy.clone(),
        }
    }
}

/// A service behind [`AuthLayer`].
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    tenancy: Arc<Tenancy>,
}

impl<S, B> Service<http::Request<B>> for Authenticated<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<future::Ready<Result<S::Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // Whatever a client put there, only this layer says who called.
        request.extensions_mut().remove::<Caller>();
        match self.tenancy.authenticate(request.headers()) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                Either::Right(self.inner.call(request))
            }
            Err(status) => Either::Left(future::ready(Ok(status.into_http()))),
        }
    }
}

/// Served under the inner service's gRPC name.
impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}
