//! The gateway's HTTP/2 connections to one worker for calls, one call at a
//! time on each: a connection that breaks, or that the worker resets, cuts
//! the one call on it, never its neighbours' (what nginx's upstream
//! keep-alive does too). A call leases a connection ([`Lease`]) for as long
//! as it runs, its stream included; the connection then waits, open, for
//! the next call. The gateway's admission bounds the calls a worker runs at
//! once, and so the connections to it. Health probes have a connection of
//! their own (`crate::registry`).
//!
//! Calls go straight to hyper's HTTP/2 client: no buffer task between the
//! caller and the connection, and the request's message (one, already
//! encoded) goes whole with its headers, so hyper spawns no task to pipe
//! it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use mig_proto::worker::v1::worker_client;
use mig_serve::secret::{Secret, SendBearer};
use tonic::body::Body;
use tonic::service::interceptor::InterceptedService;

/// The gateway's client for one call to a worker: it carries the worker's
/// caller token, when it has one (the token is never logged).
pub type WorkerClient = worker_client::WorkerClient<InterceptedService<Leased, SendBearer>>;

/// Idle connections kept per worker beyond those in use.
const MAX_IDLE: usize = 64;

/// How long connecting to a worker may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Keep-alive pings, idle connections included, so one the worker's host
/// dropped silently is found before a call is sent on it.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The call connections to one worker process.
pub struct Connections {
    /// `host:port`.
    authority: String,
    origin: http::Uri,
    token: Option<Secret>,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("authority", &self.authority)
            .field("idle", &self.idle_count())
            .finish()
    }
}

/// Why no connection to the worker could be had.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to the worker at {authority}: {reason}")]
pub struct ConnectError {
    authority: String,
    reason: String,
}

/// A connection held by one call; back in the pool when dropped, if still
/// open.
pub struct Lease {
    send: Option<SendRequest<Full<Bytes>>>,
    pool: Arc<Connections>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("authority", &self.pool.authority)
            .finish()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(send) = self.send.take() {
            self.pool.put_back(send);
        }
    }
}

/// One leased connection as the tower service tonic's client calls.
pub struct Leased(SendRequest<Full<Bytes>>);

impl tower::Service<http::Request<Body>> for Leased {
    type Response = http::Response<Incoming>;
    type Error = tonic::codegen::StdError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let mut send = self.0.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            // One encoded message, ready at once (an encoding error, such
            // as a message over tonic's size limit, fails the call).
            let body = body.collect().await?.to_bytes();
            Ok(send
                .send_request(http::Request::from_parts(parts, Full::new(body)))
                .await?)
        })
    }
}

impl Connections {
    /// The pool for the worker at `address` (`http://host:port`, or
    /// `host:port`); nothing connects before the first call.
    pub fn new(address: &str, token: Option<Secret>) -> Result<Arc<Self>, http::uri::InvalidUri> {
        let mut origin: http::Uri = address.parse()?;
        if origin.scheme().is_none() {
            // `host:port`: calls need a scheme in their URI.
            origin = format!("http://{address}").parse()?;
        }
        let authority = origin
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        Ok(Arc::new(Connections {
            authority,
            origin,
            token,
            idle: Mutex::new(Vec::new()),
        }))
    }

    fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// A connection for one call: an idle one still open, or a new one.
    pub async fn lease(self: &Arc<Self>) -> Result<(WorkerClient, Lease), ConnectError> {
        let idle = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let mut found = None;
            while let Some(send) = idle.pop() {
                if !send.is_closed() {
                    found = Some(send);
                    break;
                }
            }
            found
        };
        let send = match idle {
            Some(send) => send,
            None => self.connect().await?,
        };
        let client = worker_client::WorkerClient::with_origin(
            InterceptedService::new(Leased(send.clone()), SendBearer(self.token.clone())),
            self.origin.clone(),
        );
        Ok((
            client,
            Lease {
                send: Some(send),
                pool: self.clone(),
            },
        ))
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ConnectError> {
        let failed = |reason: String| ConnectError {
            authority: self.authority.clone(),
            reason,
        };
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect(&self.authority),
        )
        .await
        .map_err(|_| failed(format!("no answer in {} s", CONNECT_TIMEOUT.as_secs())))?
        .map_err(|e| failed(e.to_string()))?;
        tcp.set_nodelay(true).map_err(|e| failed(e.to_string()))?;
        let (send, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| failed(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "worker connection ended");
            }
        });
        Ok(send)
    }

    fn put_back(&self, send: SendRequest<Full<Bytes>>) {
        if send.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(send);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// An HTTP/2 server on loopback that counts the connections it accepts.
    async fn counting_server() -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_| async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::new(),
                        )))
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        (address, accepted)
    }

    async fn accepted_reaches(accepted: &AtomicUsize, n: usize) {
        for _ in 0..100 {
            if accepted.load(Ordering::SeqCst) >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), n);
    }

    #[tokio::test]
    async fn each_running_call_has_a_connection_of_its_own_kept_for_the_next() {
        let (address, accepted) = counting_server().await;
        let pool = Connections::new(&address, None).unwrap();
        let (_, first) = pool.lease().await.unwrap();
        let (_, second) = pool.lease().await.unwrap();
        accepted_reaches(&accepted, 2).await;
        assert_eq!(pool.idle_count(), 0);
        drop(first);
        drop(second);
        assert_eq!(pool.idle_count(), 2);
        // The next call takes a kept connection: nothing new is opened.
        let (_, third) = pool.lease().await.unwrap();
        assert_eq!(pool.idle_count(), 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        drop(third);
        assert_eq!(pool.idle_count(), 2);
    }

    #[tokio::test]
    async fn an_address_without_a_scheme_is_called_over_http() {
        let (address, accepted) = counting_server().await;
        let bare = address.trim_start_matches("http://");
        let pool = Connections::new(bare, None).unwrap();
        assert_eq!(pool.origin.scheme_str(), Some("http"));
        let (mut client, lease) = pool.lease().await.unwrap();
        // Not a gRPC server: the call fails, but it is sent (its URI has a
        // scheme, which tonic requires with an authority).
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            client.info(mig_proto::worker::v1::InfoRequest {}),
        )
        .await
        .expect("the call was answered");
        assert!(answer.is_err());
        accepted_reaches(&accepted, 1).await;
        drop(lease);
    }

    #[tokio::test]
    async fn a_worker_that_is_not_listening_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let pool = Connections::new(&address, None).unwrap();
        let error = pool.lease().await.err().expect("nothing listens there");
        assert!(
            error
                .to_string()
                .starts_with("cannot connect to the worker at 127.0.0.1:"),
            "{error}"
        );
    }
}
