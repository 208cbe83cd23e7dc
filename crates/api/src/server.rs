//! The HTTP server's own accept loop: HTTP/1.1 with every wait bounded.
//!
//! `axum::serve` keeps a connection for as long as the client likes: an idle keep-alive
//! connection, a request's headers sent a byte every few seconds or a response nobody reads
//! each hold a socket and a task forever, and enough of them lock everyone else out. Here
//! each connection is watched by a `ConnectionClock` that knows which phase it is in and
//! closes it when that phase outlasts its limit:
//!
//! - waiting for a request's headers, from the connection's start or the first byte after
//!   the previous response: [`HttpLimits::header_timeout`];
//! - idle between two requests of a keep-alive connection: [`HttpLimits::idle_timeout`];
//! - a response the client stopped reading (writes blocked): [`HttpLimits::idle_timeout`].
//!
//! The request body is read within [`HttpLimits::body_timeout`] of the end of the headers,
//! or answered 408 (by the router's body layer, which finds the deadline in the request's
//! [`BodyDeadline`]). At most [`HttpLimits::max_connections`] connections are open at once;
//! more are closed as soon as they are accepted, and refusals and accept errors are logged
//! at most once a second, with a count.
//!
//! With a TLS config ([`serve_tls`], files read by [`tls_config`]) each connection starts with
//! a TLS handshake, which must finish within [`HttpLimits::header_timeout`] of the connection's
//! start (it is part of the wait for the first request's headers); the clock then watches
//! the encrypted bytes, which arrive and are written exactly when the plain ones do.
//!
//! HTTP/2 is not served, over TLS neither (ALPN offers only `http/1.1`): its streams and flow
//! control would need limits of their own, and the console's few requests gain nothing.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use axum::Router;
use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// What a connection may take before it is closed or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// From a connection's start, or the first byte of a request after the previous one,
    /// until the request's headers are complete.
    pub header_timeout: Duration,
    /// From the end of a request's headers until its body is complete; then 408.
    pub body_timeout: Duration,
    /// A keep-alive connection between two requests, and a response the client does not
    /// read.
    pub idle_timeout: Duration,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    /// Generous for any real client, short enough that a slow or silent one cannot hold a
    /// connection for long: 10 s for headers, 30 s for a body (a 1 MiB body at 35 KB/s),
    /// 60 s idle (Kafka's own clients keep connections idle for longer, but browsers reuse
    /// a connection within seconds), 512 connections.
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
        }
    }
}

/// When a request's body must have arrived: [`HttpLimits::body_timeout`] after its headers.
/// Set on every request [`serve`] hands to the router.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline {
    pub at: Instant,
    pub timeout: Duration,
}

/// How long the accept loop waits after an accept error (out of file descriptors, most
/// likely) before trying again, so it does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Refusals and accept errors are logged at most this often, with how many there were.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting, lets the
/// requests in flight finish (idle connections close at once) and returns when every
/// connection has closed. Each request carries its peer address (`ConnectInfo`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, limits, None, shutdown).await
}

/// [`serve`] over TLS: HTTPS with `tls` (see [`tls_config`]).
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    serve_with(listener, router, limits, Some(acceptor), shutdown).await
}

async fn serve_with(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max_connections = limits
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let slots = Arc::new(Semaphore::new(max_connections));
    let (closing, closed) = watch::channel(false);
    let mut refusals = Throttled::new();
    let mut accept_errors = Throttled::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                if let Some(count) = accept_errors.note() {
                    tracing::warn!(%error, count, "accepting an HTTP connection failed");
                }
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            // Closed at once: a refused client learns now, and holds nothing.
            drop(stream);
            if let Some(count) = refusals.note() {
                tracing::warn!(
                    %peer,
                    count,
                    max_connections,
                    "refused HTTP connections: the connection limit is reached"
                );
            }
            continue;
        };
        let connection = Connection {
            peer,
            router: router.clone(),
            limits,
            tls: tls.clone(),
            clock: Arc::new(ConnectionClock::new(Instant::now())),
        };
        tokio::spawn(connection.serve(stream, closed.clone(), slot));
    }
    drop(listener);
    let _ = closing.send(true);
    // Each connection holds a slot until it ends: all slots back means all connections ended.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
    Ok(())
}

/// One accepted connection.
struct Connection {
    peer: SocketAddr,
    router: Router,
    limits: HttpLimits,
    tls: Option<TlsAcceptor>,
    clock: Arc<ConnectionClock>,
}

impl Connection {
    /// Serves requests until the client closes, a limit expires or the server shuts down.
    /// Returning drops the connection, which closes the socket.
    async fn serve(
        mut self,
        stream: TcpStream,
        mut closing: watch::Receiver<bool>,
        _slot: OwnedSemaphorePermit,
    ) {
        // Answers are small and written whole; waiting to coalesce them only adds latency.
        let _ = stream.set_nodelay(true);
        let watched = Watched {
            stream,
            clock: Arc::clone(&self.clock),
        };
        match self.tls.take() {
            None => self.exchange(TokioIo::new(watched), closing).await,
            Some(acceptor) => {
                let handshake =
                    tokio::time::timeout(self.limits.header_timeout, acceptor.accept(watched));
                let peer = self.peer;
                tokio::select! {
                    done = handshake => match done {
                        Ok(Ok(stream)) => self.exchange(TokioIo::new(stream), closing).await,
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                        }
                        Err(_elapsed) => {
                            tracing::debug!(%peer, "closing an HTTP connection: the TLS handshake did not finish in time");
                        }
                    },
                    _ = closing.changed() => {}
                }
            }
        }
    }

    /// The HTTP exchanges of the connection, over `io`.
    async fn exchange<I>(self, io: I, mut closing: watch::Receiver<bool>)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (peer, limits, clock) = (self.peer, self.limits, Arc::clone(&self.clock));
        let router = self.router;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            handle(request, router.clone(), peer, limits, Arc::clone(&clock))
        });
        let connection = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(io, service);
        tokio::pin!(connection);
        let mut shutting_down = *closing.borrow();
        if shutting_down {
            connection.as_mut().graceful_shutdown();
        }
        loop {
            let deadline = self.clock.deadline(&limits);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "HTTP connection ended with an error");
                    }
                    return;
                }
                () = tokio::time::sleep_until(deadline) => {
                    if let Some(reason) = self.clock.expired(&limits, Instant::now()) {
                        tracing::debug!(%peer, reason, "closing an HTTP connection");
                        return;
                    }
                }
                () = self.clock.changed.notified() => {}
                _ = closing.changed(), if !shutting_down => {
                    shutting_down = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// One request: marks the connection busy until its response is sent, and gives the router
/// the peer address and the body's deadline.
async fn handle(
    mut request: hyper::Request<Incoming>,
    router: Router,
    peer: SocketAddr,
    limits: HttpLimits,
    clock: Arc<ConnectionClock>,
) -> Result<Response<TrackedBody>, std::convert::Infallible> {
    let busy = clock.request_started();
    let extensions = request.extensions_mut();
    extensions.insert(ConnectInfo(peer));
    extensions.insert(BodyDeadline {
        at: Instant::now() + limits.body_timeout,
        timeout: limits.body_timeout,
    });
    let request: Request = request.map(Body::new);
    let response = match router.oneshot(request).await {
        Ok(response) => response,
        Err(infallible) => match infallible {},
    };
    Ok(response.map(|body| TrackedBody { body, _busy: busy }))
}

/// A response body that keeps its connection marked busy until it is sent (or dropped).
struct TrackedBody {
    body: Body,
    _busy: Busy,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Which wait a connection is in, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request's headers: since the connection started or the request's first
    /// byte arrived.
    Head(Instant),
    /// Between two requests, since the last response was sent.
    Idle(Instant),
    /// Requests are being handled or answered.
    Busy(usize),
}

/// What a connection's socket and requests tell its watchdog.
#[derive(Debug)]
struct ConnectionClock {
    state: Mutex<ClockState>,
    /// Woken when a deadline moves earlier than the one being waited for.
    changed: Notify,
}

#[derive(Debug)]
struct ClockState {
    phase: Phase,
    /// Since when writing to the client has been blocked, if it is.
    write_blocked_since: Option<Instant>,
}

impl ConnectionClock {
    fn new(now: Instant) -> Self {
        ConnectionClock {
            state: Mutex::new(ClockState {
                phase: Phase::Head(now),
                write_blocked_since: None,
            }),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, ClockState> {
        // Plain data, updated in single assignments: a panic cannot leave it half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes arrived: an idle connection starts receiving a request.
    fn bytes_read(&self, now: Instant) {
        let mut state = self.state();
        if let Phase::Idle(_) = state.phase {
            state.phase = Phase::Head(now);
            drop(state);
            self.phase_changed();
        }
    }

    /// The watchdog waits for the deadline of the phase it last saw; a new phase may end
    /// sooner (a 10 s header wait becomes a shorter idle wait, or the reverse).
    fn phase_changed(&self) {
        self.changed.notify_one();
    }

    fn write_polled(&self, blocked: bool, now: Instant) {
        let mut state = self.state();
        state.write_blocked_since = match (blocked, state.write_blocked_since) {
            (true, Some(since)) => Some(since),
            (true, None) => Some(now),
            (false, _) => None,
        };
    }

    /// A request's headers are complete: busy until the returned guard is dropped.
    fn request_started(self: &Arc<Self>) -> Busy {
        let mut state = self.state();
        state.phase = match state.phase {
            Phase::Busy(requests) => Phase::Busy(requests + 1),
            Phase::Head(_) | Phase::Idle(_) => Phase::Busy(1),
        };
        drop(state);
        self.phase_changed();
        Busy(Arc::clone(self))
    }

    fn request_finished(&self, now: Instant) {
        let mut state = self.state();
        state.phase = match state.phase {
            Phase::Busy(requests) if requests > 1 => Phase::Busy(requests - 1),
            _ => Phase::Idle(now),
        };
        drop(state);
        self.phase_changed();
    }

    /// When the current phase runs out, or when to look again while busy.
    fn deadline(&self, limits: &HttpLimits) -> Instant {
        let state = self.state();
        match (state.phase, state.write_blocked_since) {
            (Phase::Head(since), _) => since + limits.header_timeout,
            (Phase::Idle(since), _) => since + limits.idle_timeout,
            (Phase::Busy(_), Some(since)) => since + limits.idle_timeout,
            // A handler may take long; writes that block start the clock.
            (Phase::Busy(_), None) => Instant::now() + limits.idle_timeout,
        }
    }

    /// Why the connection should close now, if it should.
    fn expired(&self, limits: &HttpLimits, now: Instant) -> Option<&'static str> {
        let state = self.state();
        match (state.phase, state.write_blocked_since) {
            (Phase::Head(since), _) if now >= since + limits.header_timeout => {
                Some("the request's headers did not arrive in time")
            }
            (Phase::Idle(since), _) if now >= since + limits.idle_timeout => {
                Some("idle keep-alive connection")
            }
            (Phase::Busy(_), Some(since)) if now >= since + limits.idle_timeout => {
                Some("the client does not read the response")
            }
            _ => None,
        }
    }
}

/// Marks a connection busy while it lives.
struct Busy(Arc<ConnectionClock>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.request_finished(Instant::now());
    }
}

/// A socket that tells its connection's clock when bytes arrive and when writes block.
struct Watched {
    stream: TcpStream,
    clock: Arc<ConnectionClock>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.bytes_read(Instant::now());
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(cx, data);
        self.clock.write_polled(result.is_pending(), Instant::now());
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, data);
        self.clock.write_polled(result.is_pending(), Instant::now());
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.stream).poll_flush(cx);
        self.clock.write_polled(result.is_pending(), Instant::now());
        result
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Why the certificate or key of HTTPS cannot be used; the message names the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(pub String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// The TLS settings of [`serve_tls`] from PEM files: the certificate chain (server
/// certificate first) and its unencrypted private key (PKCS#8, PKCS#1 or SEC1). TLS 1.2 and
/// 1.3 with rustls' ring provider, as the Kafka listener; ALPN `http/1.1`.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = read_certificates(cert)?;
    let private_key = read_private_key(key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(ring_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError(format!("TLS versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| {
            TlsError(format!(
                "certificate {} with key {}: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Named rather than the process default, which something else could set or leave unset.
/// rustls deprecates ring's provider for its lack of post-quantum key exchange; it is the
/// one the Kafka listener uses, and it needs only a C compiler to build.
#[allow(deprecated)]
fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError(format!("reading {}: {e}", path.display())))
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem(path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("{}: {e}", path.display())))?;
    if chain.is_empty() {
        return Err(TlsError(format!(
            "no certificate found in {} (expected a PEM CERTIFICATE block)",
            path.display()
        )));
    }
    Ok(chain)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_pem(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError(format!(
            "no private key found in {} (expected an unencrypted PEM PRIVATE KEY, RSA PRIVATE \
             KEY or EC PRIVATE KEY block)",
            path.display()
        )),
        other => TlsError(format!("{}: {other}", path.display())),
    })
}

/// Counts events and says when to log them: the first at once, then at most once per
/// [`LOG_EVERY`] with how many happened since the last log line.
#[derive(Debug)]
struct Throttled {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl Throttled {
    fn new() -> Self {
        Throttled {
            last_logged: None,
            unlogged: 0,
        }
    }

    /// Records one event; `Some(count)` when it is time to log `count` of them.
    fn note(&mut self) -> Option<u64> {
        self.note_at(Instant::now())
    }

    fn note_at(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        let due = self
            .last_logged
            .is_none_or(|last| now.duration_since(last) >= LOG_EVERY);
        if !due {
            return None;
        }
        self.last_logged = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4,
        }
    }

    #[test]
    fn a_new_connection_has_the_header_timeout() {
        let start = Instant::now();
        let clock = ConnectionClock::new(start);
        assert_eq!(clock.deadline(&limits()), start + Duration::from_secs(10));
        assert_eq!(
            clock.expired(&limits(), start + Duration::from_secs(9)),
            None
        );
        assert!(clock
            .expired(&limits(), start + Duration::from_secs(10))
            .is_some());
    }

    #[test]
    fn between_requests_the_idle_timeout_then_the_header_timeout_from_the_first_byte() {
        let start = Instant::now();
        let clock = Arc::new(ConnectionClock::new(start));
        let busy = clock.request_started();
        assert_eq!(
            clock.expired(&limits(), start + Duration::from_secs(3600)),
            None
        );
        drop(busy);
        let idle_since = match clock.state().phase {
            Phase::Idle(since) => since,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            clock.deadline(&limits()),
            idle_since + Duration::from_secs(60)
        );
        let first_byte = idle_since + Duration::from_secs(30);
        clock.bytes_read(first_byte);
        assert_eq!(
            clock.deadline(&limits()),
            first_byte + Duration::from_secs(10)
        );
        // More bytes of the same headers do not push the deadline back.
        clock.bytes_read(first_byte + Duration::from_secs(5));
        assert_eq!(
            clock.deadline(&limits()),
            first_byte + Duration::from_secs(10)
        );
    }

    #[test]
    fn a_response_nobody_reads_expires_after_the_idle_timeout() {
        let start = Instant::now();
        let clock = Arc::new(ConnectionClock::new(start));
        let _busy = clock.request_started();
        clock.write_polled(true, start);
        clock.write_polled(true, start + Duration::from_secs(30));
        assert_eq!(clock.deadline(&limits()), start + Duration::from_secs(60));
        assert!(clock
            .expired(&limits(), start + Duration::from_secs(60))
            .is_some());
        clock.write_polled(false, start + Duration::from_secs(61));
        assert_eq!(
            clock.expired(&limits(), start + Duration::from_secs(61)),
            None
        );
    }

    #[test]
    fn repeated_events_are_logged_once_a_second_with_their_count() {
        let start = Instant::now();
        let mut throttled = Throttled::new();
        assert_eq!(throttled.note_at(start), Some(1));
        assert_eq!(throttled.note_at(start + Duration::from_millis(10)), None);
        assert_eq!(throttled.note_at(start + Duration::from_millis(20)), None);
        assert_eq!(throttled.note_at(start + Duration::from_secs(1)), Some(3));
    }
}
