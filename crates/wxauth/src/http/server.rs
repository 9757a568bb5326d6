//! The connection side of the HTTP server: accepting, capping, timing out
//! and draining connections. hyper does the protocol; this module decides
//! how long a client may hold a connection without using it.
//!
//! - **Header read** (`http.header_read_timeout_ms`): from a new connection,
//!   or from the first byte of a later request, until the end of the
//!   request's headers. A silent or trickling client is closed.
//! - **Idle keep-alive** (`http.idle_timeout_ms`): after a response, how
//!   long the connection may wait for the next request's first byte.
//! - **Body** (`http.body_timeout_ms`): enforced where a body is read (the
//!   JSON extractor), answered 408 `request_timeout`.
//! - **Connection cap** (`http.max_connections`): when it is reached, a
//!   connection waiting for its next request (or for its first) is closed
//!   to admit the new one, preferring one of the address holding the most;
//!   only when every connection is busy does a new one get one 503
//!   `server_busy` JSON answer and the close; far past the cap (another
//!   10%) it is closed at once, so the cap holds file descriptors too.
//! - **Per address** (`http.max_connections_per_address`): an address (an
//!   IPv6 /64) holding that many has its next connection closed at once;
//!   the `http.trusted_proxies` are exempt (behind a load balancer every
//!   connection comes from it). One client cannot fill the server, and
//!   idle connections it holds make way for others.
//! - **Shutdown** (`http.shutdown_grace_ms`): stop accepting, let requests in
//!   progress finish and close idle connections, and after the grace
//!   period close whatever is left.
//!
//! - **Oversized heads**: a request head within `2 × (max_header_bytes +
//!   max_uri_bytes)` reaches the application, which answers 414/431 with
//!   the JSON envelope; past that, or past [`MAX_HEADER_LINES`] header
//!   lines, [`TimedIo`] answers the same 431 envelope itself and closes
//!   (hyper's own refusal would be a bare 431 without a body).
//!
//! hyper's own header timer is not used: it also runs while a keep-alive
//! connection waits for its next request, which would make the idle timeout
//! the header timeout. Instead [`TimedIo`] watches the bytes: it knows when
//! a request's first byte arrives, finds the blank line that ends its
//! headers, and sees the response being written.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::config::HttpConfig;

/// Timeouts and caps of the connection side, from `[http]`.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// First byte (of a new connection) to the end of the headers.
    pub header_read: Duration,
    /// After a response, until the next request's first byte.
    pub idle: Duration,
    /// Open connections served normally.
    pub max_connections: usize,
    /// Open connections one address may hold.
    pub max_per_address: usize,
    /// Addresses the per-address cap does not apply to.
    pub exempt: Arc<[ipnet::IpNet]>,
    /// How long shutdown waits for requests in progress.
    pub shutdown_grace: Duration,
    /// hyper's read buffer (the largest request head it can parse).
    pub max_head_bytes: usize,
}

impl From<&HttpConfig> for ConnectionLimits {
    fn from(c: &HttpConfig) -> Self {
        Self {
            header_read: Duration::from_millis(c.header_read_timeout_ms),
            idle: Duration::from_millis(c.idle_timeout_ms),
            max_connections: c.max_connections,
            max_per_address: c.max_connections_per_address,
            exempt: c
                .trusted_proxies
                .iter()
                .filter_map(|t| t.parse::<ipnet::IpNet>().ok())
                .collect(),
            shutdown_grace: Duration::from_millis(c.shutdown_grace_ms),
            // Room above the application's own limits, so a request just
            // over them still reaches it and gets the JSON answer.
            max_head_bytes: (2 * (c.max_header_bytes + c.max_uri_bytes)).max(8192),
        }
    }
}

/// One open connection as the registry sees it.
struct Entry {
    address: IpAddr,
    /// Set while the connection waits for a request's first byte.
    waiting: Arc<AtomicBool>,
    /// Closes the connection once it is idle.
    close: Arc<Notify>,
    opened: Instant,
}

/// The open connections: how many, by whom, and which wait idle.
#[derive(Default)]
struct Registry {
    inner: Mutex<RegistryInner>,
}

#[derive(Default)]
struct RegistryInner {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    per_address: HashMap<IpAddr, usize>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, RegistryInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes one connection that waits idle, to make room: of those of
    /// the address holding the most, the one idle longest. False when
    /// every connection (but `newcomer`) is busy.
    fn shed_one_idle(&self, newcomer: u64) -> bool {
        let inner = self.lock();
        let victim = inner
            .entries
            .iter()
            .filter(|(id, e)| **id != newcomer && e.waiting.load(Ordering::Relaxed))
            .map(|(_, e)| e)
            .max_by_key(|e| {
                (
                    inner.per_address.get(&e.address).copied().unwrap_or(0),
                    std::cmp::Reverse(e.opened),
                )
            });
        match victim {
            Some(entry) => {
                // Marked busy so the next shed picks another one.
                entry.waiting.store(false, Ordering::Relaxed);
                entry.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A connection's place in the registry, given back when it closes.
struct Open {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Open {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        if let Some(entry) = inner.entries.remove(&self.id)
            && let Some(n) = inner.per_address.get_mut(&entry.address)
        {
            *n -= 1;
            if *n == 0 {
                inner.per_address.remove(&entry.address);
            }
        }
    }
}

/// The key an address counts under: IPv4 as is, IPv6 by its /64 (one
/// subscriber usually holds a whole /64).
fn address_key(ip: IpAddr) -> IpAddr {
    crate::auth::rate_limit::limit_key(ip.to_canonical())
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains
/// (see the module's notes). Returns once every connection is closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let registry = Arc::new(Registry::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let hard_cap = limits.max_connections + limits.max_connections / 10 + 1;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        while tasks.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors, say: wait a little instead of
                // spinning, and keep serving the connections we have.
                tracing::warn!(error = ?e.to_string(), "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let address = address_key(peer.ip());
        let exempt = limits
            .exempt
            .iter()
            .any(|n| n.contains(&peer.ip().to_canonical()));
        let waiting = Arc::new(AtomicBool::new(true));
        let close = Arc::new(Notify::new());
        let (guard, count) = {
            let mut inner = registry.lock();
            let held = inner.per_address.get(&address).copied().unwrap_or(0);
            if !exempt && held >= limits.max_per_address {
                drop(inner);
                metrics::counter!("wxauth_http_connections_refused_total", "why" => "per_address")
                    .increment(1);
                drop(stream); // over its address's cap: the close, no answer
                continue;
            }
            inner.next_id += 1;
            let id = inner.next_id;
            inner.entries.insert(
                id,
                Entry {
                    address,
                    waiting: waiting.clone(),
                    close: close.clone(),
                    opened: Instant::now(),
                },
            );
            *inner.per_address.entry(address).or_insert(0) += 1;
            let count = inner.entries.len();
            (
                Open {
                    registry: registry.clone(),
                    id,
                },
                count,
            )
        };
        if count > hard_cap {
            drop(stream); // far over the cap: no answer, just the close
            drop(guard);
            continue;
        }
        let _ = stream.set_nodelay(true);
        // Full: an idle connection makes way before anyone is refused.
        let over_cap = count > limits.max_connections && !registry.shed_one_idle(guard.id);
        if count > limits.max_connections && !over_cap {
            metrics::counter!("wxauth_http_connections_shed_total").increment(1);
        }
        if over_cap {
            metrics::counter!("wxauth_http_connections_refused_total", "why" => "full")
                .increment(1);
        }
        let router = router.clone();
        let mut stop = stop_rx.clone();
        let (header_read, idle, max_head) =
            (limits.header_read, limits.idle, limits.max_head_bytes);
        tasks.spawn(async move {
            let _guard = guard;
            let io = TokioIo::new(TimedIo::new(
                stream,
                header_read,
                idle,
                waiting,
                max_head.saturating_sub(1024),
            ));
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let router = router.clone();
                async move {
                    if over_cap {
                        return Ok::<_, std::convert::Infallible>(too_many_connections());
                    }
                    req.extensions_mut().insert(ConnectInfo(peer));
                    router.oneshot(req.map(Body::new)).await
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .keep_alive(!over_cap)
                .header_read_timeout(None)
                .max_headers(MAX_HEADER_LINES + 28)
                .max_buf_size(max_head);
            // Upgrades: `GET /v1/watch` becomes a WebSocket.
            let conn = builder.serve_connection(io, service).with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => log_connection_end(result),
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    log_connection_end(conn.await);
                }
                () = close.notified() => {
                    // Shed to make room: an idle connection closes at once,
                    // a request that just began is answered first.
                    conn.as_mut().graceful_shutdown();
                    log_connection_end(conn.await);
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            "shutdown grace period over; closing the connections still open"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    Ok(())
}

fn log_connection_end(result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        // A client that went away or was timed out: routine, not an error.
        tracing::debug!(error = ?e.to_string(), "connection ended");
    }
}

/// The one answer a connection over the cap gets.
fn too_many_connections() -> Response<Body> {
    let id = uuid::Uuid::now_v7().to_string();
    let body = serde_json::json!({
        "error": "server_busy",
        "message": "the server has too many open connections; try again shortly",
        "request_id": id,
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert("x-request-id", v);
    }
    response
}

/// Header lines a request may send; past this the connection gets the
/// 431 envelope and is closed (hyper is set to accept a few more, so its
/// own bare refusal never comes first).
pub const MAX_HEADER_LINES: usize = 100;

/// The 431 a head too large for the buffer gets, as the application
/// would have answered it (the envelope, a request id), and the close.
fn head_too_large_answer(limit: usize) -> Vec<u8> {
    let id = uuid::Uuid::now_v7().to_string();
    let body = serde_json::json!({
        "error": "header_too_large",
        "message": format!(
            "the request head is larger than {limit} bytes or has more than {MAX_HEADER_LINES} header lines (http.max_header_bytes)"
        ),
        "request_id": id,
    })
    .to_string();
    format!(
        "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nx-request-id: {id}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Where a connection is, as far as the bytes show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request's headers (or waiting for a new connection's first
    /// request): the header timer runs.
    Head,
    /// Headers read: the body and the handler take their own time.
    Body,
    /// A response was written; waiting for the next request's first byte.
    Idle,
    /// Switched protocols (`GET /v1/watch`'s WebSocket): the bytes are no
    /// longer HTTP, and the socket's own pings time it out.
    Upgraded,
}

/// The start of a response that switches protocols: after it the
/// connection is a WebSocket, not HTTP.
const SWITCHING: &[u8] = b"HTTP/1.1 101 ";

/// A stream that times out reads by phase (see the module's notes).
pub struct TimedIo<S> {
    inner: S,
    phase: Phase,
    /// Bytes of a possible header end seen so far: 1 after `\n`, 2 after
    /// `\n\r`.
    newline: u8,
    header_read: Duration,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    /// Set while no byte of the next request has arrived (shared with the
    /// registry, which may close such a connection to make room).
    waiting: Arc<AtomicBool>,
    /// Bytes and lines of the current request's head so far.
    head_bytes: usize,
    head_lines: usize,
    /// The most head bytes passed on to hyper.
    max_head: usize,
    /// A head too large: this answer is written (from `written` on)
    /// instead of passing the bytes on, then the connection ends.
    refusal: Option<(Vec<u8>, usize)>,
}

impl<S> TimedIo<S> {
    /// Wraps `inner`; the header timer starts now. `waiting` is set while
    /// the connection waits for a request's first byte.
    /// `max_head` is the most head bytes passed on (keep it below hyper's
    /// buffer, so hyper's own bare 431 never comes first).
    pub fn new(
        inner: S,
        header_read: Duration,
        idle: Duration,
        waiting: Arc<AtomicBool>,
        max_head: usize,
    ) -> Self {
        waiting.store(true, Ordering::Relaxed);
        Self {
            inner,
            phase: Phase::Head,
            newline: 0,
            header_read,
            idle,
            deadline: Box::pin(tokio::time::sleep(header_read)),
            waiting,
            head_bytes: 0,
            head_lines: 0,
            max_head,
            refusal: None,
        }
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.newline = 0;
        self.head_bytes = 0;
        self.head_lines = 0;
        let wait = match phase {
            Phase::Head => self.header_read,
            Phase::Idle => self.idle,
            Phase::Body | Phase::Upgraded => return,
        };
        self.deadline.as_mut().reset(Instant::now() + wait);
    }

    /// Enters the idle phase and arms its timer on this task: hyper may
    /// already be waiting on a read registered earlier and poll no read
    /// again until bytes arrive, so the timer must wake it.
    fn start_idle(&mut self, cx: &mut Context<'_>) {
        self.enter(Phase::Idle);
        self.waiting.store(true, Ordering::Relaxed);
        let _ = self.deadline.as_mut().poll(cx);
    }

    /// Follows the phase through bytes just read.
    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || self.phase == Phase::Upgraded {
            return;
        }
        self.waiting.store(false, Ordering::Relaxed);
        if self.phase == Phase::Idle {
            self.enter(Phase::Head);
        }
        if self.phase != Phase::Head {
            return;
        }
        for (at, &b) in bytes.iter().enumerate() {
            if b == b'\n' {
                self.head_lines += 1;
            }
            // The request line and the blank line are not header lines.
            if self.head_bytes + at >= self.max_head || self.head_lines > MAX_HEADER_LINES + 2 {
                self.refusal = Some((head_too_large_answer(self.max_head), 0));
                return;
            }
            self.newline = match (self.newline, b) {
                (1, b'\n') | (2, b'\n') => {
                    // A blank line: the headers are complete. (hyper
                    // accepts bare `\n` line ends, so this does too.)
                    self.enter(Phase::Body);
                    return;
                }
                (_, b'\n') => 1,
                (1, b'\r') => 2,
                _ => 0,
            };
        }
        self.head_bytes += bytes.len();
    }

    /// Writes the refusal; ready with an error once it is out (the
    /// connection then ends), pending while the socket is full.
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>
    where
        S: AsyncWrite + Unpin,
    {
        while let Some((answer, written)) = self.refusal.as_mut() {
            if *written >= answer.len() {
                let _ = Pin::new(&mut self.inner).poll_flush(cx);
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "request head too large",
                )));
            }
            match Pin::new(&mut self.inner).poll_write(cx, &answer[*written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TimedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.refusal.is_some() {
            return self.poll_refusal(cx);
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                self.saw(&buf.filled()[before..]);
                if self.refusal.is_some() {
                    // The head is refused here: hyper never sees it.
                    buf.set_filled(before);
                    return self.poll_refusal(cx);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if !matches!(self.phase, Phase::Body | Phase::Upgraded)
                    && self.deadline.as_mut().poll(cx).is_ready()
                {
                    let what = if self.phase == Phase::Idle {
                        "idle keep-alive timeout"
                    } else {
                        "header read timeout"
                    };
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TimedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.phase == Phase::Body && data.starts_with(SWITCHING) {
            self.phase = Phase::Upgraded;
        }
        let written = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0)
            && !matches!(self.phase, Phase::Idle | Phase::Upgraded)
        {
            // A response is going out: the next read waits for a request.
            self.start_idle(cx);
        }
        written
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
        if self.phase == Phase::Body
            && bufs
                .iter()
                .find(|b| !b.is_empty())
                .is_some_and(|b| b.starts_with(SWITCHING))
        {
            self.phase = Phase::Upgraded;
        }
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0)
            && !matches!(self.phase, Phase::Idle | Phase::Upgraded)
        {
            self.start_idle(cx);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
