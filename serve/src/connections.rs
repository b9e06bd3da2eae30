//! The accept loop of every gRPC listener here, and the hygiene a public
//! port needs: a connection that sends nothing (no TLS hello, no HTTP/2
//! preface) is closed after the handshake timeout; one with no open stream
//! for the idle timeout is sent GOAWAY; HTTP/2 keep-alive pings find dead
//! peers; connections are capped in total (never past the process's
//! file-descriptor budget) and per client address. At a cap, the oldest
//! connection that has not yet said anything makes room for the new one, so
//! a flood of silent connections cannot lock out a client that speaks; with
//! none to evict, the new connection is closed and a log line (at most one
//! every 10 s) says which limit was reached.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// How connections are bounded (`mig-gateway serve --max-connections` and
/// friends; workers use the defaults).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// From accept until the client's first bytes (TLS hello or HTTP/2
    /// preface), and for the whole TLS handshake.
    pub handshake_timeout: Duration,
    /// With no stream open this long, the connection is sent GOAWAY.
    pub idle_timeout: Duration,
    /// Between HTTP/2 pings while streams are quiet.
    pub keepalive_interval: Duration,
    /// A ping unanswered this long closes the connection.
    pub keepalive_timeout: Duration,
    /// Open connections in all; lowered to the file-descriptor budget.
    pub max_connections: usize,
    /// Open connections from one client address.
    pub max_per_client: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(20),
            max_connections: 10_000,
            max_per_client: 1_000,
        }
    }
}

/// Bytes of responses one stream buffers beyond what its client's HTTP/2
/// window lets through.
const MAX_SEND_BUFFER: usize = 64 * 1024;

/// Descriptors kept for everything that is not a client connection:
/// connections to workers, files, the metrics listener.
const FD_RESERVE: u64 = 256;

/// Raises the soft limit on open files to the hard one, and returns the
/// soft limit then in force.
pub fn open_files_budget() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given, nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max.min(1 << 20),
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = raised.rlim_cur;
        }
    }
    Some(limit.rlim_cur)
}

/// The connection cap in force: the flag, or less when the descriptors
/// would run out first.
pub fn connection_cap(limits: &ConnectionLimits) -> usize {
    match open_files_budget() {
        Some(files) => {
            let budget = files.saturating_sub(FD_RESERVE).max(16) as usize;
            if budget < limits.max_connections {
                tracing::info!(
                    open_files = files,
                    max_connections = budget,
                    "connection cap lowered to the file-descriptor budget (raise `ulimit -n` for more)"
                );
            }
            limits.max_connections.min(budget)
        }
        None => limits.max_connections,
    }
}

/// One open connection, as the accept loop and its own task see it.
struct Conn {
    /// Set by the first bytes the client sends.
    spoke: AtomicBool,
    /// Told to close at once (evicted while silent).
    kill: Notify,
    /// Requests whose response has not ended.
    active: AtomicUsize,
    /// When `active` last fell to zero (or the connection opened).
    idle_since: Mutex<Instant>,
}

/// Open connections, by address, and the silent ones in age order.
#[derive(Default)]
struct Table {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
    silent: VecDeque<(IpAddr, std::sync::Weak<Conn>)>,
    /// When a refusal was last logged (one line every 10 s at most).
    last_refusal_log: Option<Instant>,
    refused_since_log: u64,
}

/// Why a connection was not taken.
#[derive(Debug, Clone, Copy)]
enum Full {
    Total(usize),
    Client(usize),
}

impl Table {
    /// Counts a new connection from `ip`, evicting the oldest silent one
    /// (of that address, at the per-client cap) when a cap is reached.
    fn admit(&mut self, ip: IpAddr, cap: usize, per_client: usize) -> Result<Arc<Conn>, Full> {
        // Forget the silent ones that spoke or ended.
        self.silent.retain(|(_, c)| {
            c.upgrade()
                .is_some_and(|c| !c.spoke.load(Ordering::Relaxed))
        });
        let from_client = self.per_client.get(&ip).copied().unwrap_or(0);
        let full = if from_client >= per_client {
            Some(Full::Client(per_client))
        } else if self.total >= cap {
            Some(Full::Total(cap))
        } else {
            None
        };
        if let Some(full) = full {
            let victim = self.silent.iter().position(|(owner, _)| match full {
                Full::Client(_) => *owner == ip,
                Full::Total(_) => true,
            });
            match victim.and_then(|at| self.silent.remove(at)) {
                Some((_, conn)) => {
                    if let Some(conn) = conn.upgrade() {
                        conn.kill.notify_one();
                    }
                }
                None => return Err(full),
            }
        }
        let conn = Arc::new(Conn {
            spoke: AtomicBool::new(false),
            kill: Notify::new(),
            active: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        });
        self.total += 1;
        *self.per_client.entry(ip).or_default() += 1;
        self.silent.push_back((ip, Arc::downgrade(&conn)));
        Ok(conn)
    }

    fn release(&mut self, ip: IpAddr) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.per_client.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&ip);
            }
        }
    }

    fn log_refusal(&mut self, peer: SocketAddr, full: Full) {
        self.refused_since_log += 1;
        let now = Instant::now();
        if self
            .last_refusal_log
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(10))
        {
            return;
        }
        let refused = std::mem::take(&mut self.refused_since_log);
        self.last_refusal_log = Some(now);
        match full {
            Full::Total(cap) => tracing::warn!(
                %peer, refused, open = self.total,
                "connection limit reached: {cap} open (`--max-connections`, or the file-descriptor budget); new connections are closed until some end"
            ),
            Full::Client(cap) => tracing::warn!(
                %peer, refused,
                "per-client connection limit reached: {cap} open from {} (`--max-connections-per-client`)",
                peer.ip()
            ),
        }
    }
}

/// Gives a connection's place back when its task ends, however it ends.
struct Counted {
    table: Arc<Mutex<Table>>,
    ip: IpAddr,
}

impl Drop for Counted {
    fn drop(&mut self) {
        lock(&self.table).release(self.ip);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The client's stream, noting its first bytes.
struct Noting<IO> {
    inner: IO,
    conn: Arc<Conn>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Noting<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.conn.spoke.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Noting<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Counts a request as open until its response body ends (or is dropped).
struct Open(Arc<Conn>);

impl Open {
    fn new(conn: &Arc<Conn>) -> Open {
        conn.active.fetch_add(1, Ordering::Relaxed);
        Open(conn.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::Relaxed) == 1 {
            *lock(&self.0.idle_since) = Instant::now();
        }
    }
}

/// A response body that keeps its request counted while it streams.
struct CountedBody {
    inner: axum::body::Body,
    _open: Open,
}

impl http_body::Body for CountedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

type Request = http::Request<hyper::body::Incoming>;
type Response = http::Response<axum::body::Body>;

/// The router, counting each connection's open requests.
#[derive(Clone)]
struct Counting {
    router: axum::Router,
    conn: Arc<Conn>,
}

impl tower::Service<Request> for Counting {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let open = Open::new(&self.conn);
        let answer = tower::ServiceExt::oneshot(self.router.clone(), request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|inner| axum::body::Body::new(CountedBody { inner, _open: open })))
        })
    }
}

/// Where connections come from: plain TCP, or TLS on TCP.
pub type Tls = Option<watch::Receiver<Arc<ServerConfig>>>;

/// Serves `router` on `listener` within `limits` until `shutdown`
/// completes, then stops accepting and tells every connection to finish
/// (GOAWAY); returns once all have closed, or when `drain` runs out.
pub async fn serve(
    listener: TcpListener,
    tls: Tls,
    router: axum::Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> io::Result<super::http2::Drained> {
    let cap = connection_cap(&limits);
    let table = Arc::new(Mutex::new(Table::default()));
    // Dropped when shutdown begins: every connection's task sees it.
    let (stop_tx, stop_rx) = watch::channel(());
    // Every connection task holds a receiver: all gone, all closed.
    let (closed_tx, closed_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, usually: wait, do not spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let admitted = {
            let mut table = lock(&table);
            let admitted = table.admit(peer.ip(), cap, limits.max_per_client);
            if let Err(full) = admitted {
                table.log_refusal(peer, full);
            }
            admitted
        };
        let Ok(conn) = admitted else {
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let counted = Counted {
            table: table.clone(),
            ip: peer.ip(),
        };
        let task = Connection {
            conn,
            router: router.clone(),
            limits,
            tls: tls.as_ref().map(|t| t.borrow().clone()),
            stop: stop_rx.clone(),
            _closed: closed_rx.clone(),
            _counted: counted,
        };
        tokio::spawn(task.run(tcp, peer));
    }
    drop(listener);
    drop(stop_tx);
    drop(closed_rx);
    match tokio::time::timeout(drain, closed_tx.closed()).await {
        Ok(()) => Ok(super::http2::Drained::Clean),
        Err(_) => Ok(super::http2::Drained::TimedOut),
    }
}

/// One connection's task.
struct Connection {
    conn: Arc<Conn>,
    router: axum::Router,
    limits: ConnectionLimits,
    tls: Option<Arc<ServerConfig>>,
    stop: watch::Receiver<()>,
    _closed: watch::Receiver<()>,
    _counted: Counted,
}

impl Connection {
    async fn run(self, tcp: TcpStream, peer: SocketAddr) {
        let noting = Noting {
            inner: tcp,
            conn: self.conn.clone(),
        };
        match self.tls.clone() {
            Some(config) => {
                let handshake = TlsAcceptor::from(config).accept(noting);
                let tls = tokio::select! {
                    done = tokio::time::timeout(self.limits.handshake_timeout, handshake) => done,
                    () = self.conn.kill.notified() => return,
                };
                match tls {
                    Ok(Ok(tls)) => self.http(tls, peer).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            }
            None => self.http(noting, peer).await,
        }
    }

    async fn http<IO>(mut self, io: IO, peer: SocketAddr)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        // HTTP/1.1 (the OpenAI front's clients): a request's head must
        // arrive within the handshake timeout, so a client trickling
        // headers holds no connection for long.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.handshake_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(self.limits.keepalive_interval)
            .keep_alive_timeout(self.limits.keepalive_timeout)
            // What one stream may hold for a client that does not read
            // (hyper's default is 400 KiB: 1,000 such streams, 400 MB).
            .max_send_buf_size(MAX_SEND_BUFFER);
        let service = TowerToHyperService::new(Counting {
            router: self.router.clone(),
            conn: self.conn.clone(),
        });
        let connection = builder.serve_connection(TokioIo::new(io), service);
        let mut connection = std::pin::pin!(connection);
        let opened = Instant::now();
        let check = (self.limits.handshake_timeout / 4)
            .min(self.limits.idle_timeout / 4)
            .max(Duration::from_millis(50));
        let mut tick = tokio::time::interval(check);
        let mut closing = false;
        // When an idle connection was sent GOAWAY: a client that does not
        // answer the ping that follows it is closed one handshake timeout
        // later.
        let mut idle_goaway: Option<Instant> = None;
        loop {
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(%peer, error = %e, "connection ended");
                    }
                    return;
                }
                () = self.conn.kill.notified() => {
                    tracing::debug!(%peer, "silent connection closed to make room");
                    return;
                }
                _ = self.stop.changed(), if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
                _ = tick.tick() => {
                    if !self.conn.spoke.load(Ordering::Relaxed)
                        && opened.elapsed() >= self.limits.handshake_timeout
                    {
                        tracing::debug!(%peer, "no HTTP/2 preface within the handshake timeout: closed");
                        return;
                    }
                    let idle = self.conn.active.load(Ordering::Relaxed) == 0
                        && lock(&self.conn.idle_since).elapsed() >= self.limits.idle_timeout;
                    if idle && !closing {
                        tracing::debug!(%peer, "idle connection sent GOAWAY");
                        closing = true;
                        idle_goaway = Some(Instant::now());
                        connection.as_mut().graceful_shutdown();
                    }
                    if idle_goaway.is_some_and(|t| t.elapsed() >= self.limits.handshake_timeout)
                        && self.conn.active.load(Ordering::Relaxed) == 0
                    {
                        tracing::debug!(%peer, "idle connection did not close after GOAWAY: closed");
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn at_a_cap_the_oldest_silent_connection_makes_room() {
        let mut table = Table::default();
        let a = table.admit(ip(1), 3, 2).unwrap();
        let b = table.admit(ip(1), 3, 2).unwrap();
        // Per client: the third from 10.0.0.1 evicts its oldest silent one.
        a.spoke.store(true, Ordering::Relaxed);
        let c = table.admit(ip(1), 3, 2).unwrap();
        assert_eq!(
            table.per_client[&ip(1)],
            3,
            "counted until the evicted task ends"
        );
        table.release(ip(1));
        // `b` was told to close; `a` spoke and stays.
        b.spoke.store(true, Ordering::Relaxed);
        c.spoke.store(true, Ordering::Relaxed);
        assert!(matches!(table.admit(ip(1), 3, 2), Err(Full::Client(2))));
        // In total: another address gets in while there is room, then not.
        let _d = table.admit(ip(2), 3, 2).unwrap();
        assert_eq!(table.total, 3);
        // `d` is silent: the next one evicts it.
        let _e = table.admit(ip(3), 3, 2).unwrap();
        table.release(ip(2));
        assert_eq!(table.total, 3);
        _e.spoke.store(true, Ordering::Relaxed);
        assert!(matches!(table.admit(ip(4), 3, 2), Err(Full::Total(3))));
    }
}
