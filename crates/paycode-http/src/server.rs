//! The one accept loop behind every paycode HTTP listener (merchant API, MPP, customer and
//! operator APIs), plain or over TLS, with bounds on what a client may hold open.
//!
//! Each connection is in one of three phases, each with its bound:
//!
//! | Phase | Starts | Ends | Bound |
//! |---|---|---|---|
//! | reading a head | on connect (TLS handshake included), or at the first byte after idle | the request reaches the service | `header_read_timeout_ms` |
//! | busy | the request reaches the service | the service answers | the body must arrive within `body_read_timeout_ms`; the rest is the service's own timeouts |
//! | idle (keep-alive) | the service answers | the next byte arrives | `idle_timeout_ms` |
//!
//! A connection timed out reading a head or idle is simply closed: nothing of a request has
//! reached the service then, so nothing is lost. A body that does not arrive in time reaches the
//! service as an unreadable body, which the signed APIs answer as they answer an oversized one.
//! hyper's own header timeout is not used because it also runs while a
//! keep-alive connection is idle, which would make the two bounds one.
//!
//! At most `connections_max` connections are open per listener; one accepted over the cap is
//! closed at once, without touching the others. Request heads larger than
//! `header_hard_max_bytes` are refused by the parser (HTTP 431, then closed); below that, a
//! header block larger than `header_max_bytes` still reaches the service, marked with
//! [`OversizedHeaders`], so that signed APIs can answer their usual signed `PARAM_ILLEGAL`
//! (see [`crate::SignedRequest`]).
//!
//! Shutdown: stop accepting, let hyper finish in-flight requests and close idle connections,
//! wait at most the grace period, then drop what is left.

use axum::Router;
use axum::http::{HeaderMap, Request};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::rustls;
use tower::ServiceExt;

pub use tokio_rustls::TlsAcceptor;

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again, so that the
/// loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE_MS: u64 = 100;

/// hyper's smallest allowed read buffer.
const READ_BUFFER_MIN_BYTES: usize = 8 * 1024;

/// Bounds on the connections of one listener. Every field is configuration (`paycode serve`
/// flags, `PAYCODE_HTTP_*` and the `[http]` section of the config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Time a client has to deliver a request's line and headers, counted from connecting (TLS
    /// handshake included) or from the first byte after an idle keep-alive period.
    pub header_read_timeout_ms: u64,
    /// Time a keep-alive connection may stay idle between requests.
    pub idle_timeout_ms: u64,
    /// Time a client has to deliver a request's body, counted from the end of its head; the
    /// service then sees the body as unreadable (a signed `PARAM_ILLEGAL` on the signed APIs).
    pub body_read_timeout_ms: u64,
    /// Connections open at once on this listener; more are closed as soon as accepted.
    pub connections_max: usize,
    /// Largest header block (header fields) answered normally; a larger one gets the API's
    /// own error (a signed `PARAM_ILLEGAL` on the signed APIs).
    pub header_max_bytes: usize,
    /// Largest request head (request line and headers) the parser reads at all; a larger one
    /// is answered with an HTTP 431 and the connection is closed.
    pub header_hard_max_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            body_read_timeout_ms: 10_000,
            connections_max: 4_096,
            header_max_bytes: 16 * 1024,
            header_hard_max_bytes: 32 * 1024,
        }
    }
}

impl ServerLimits {
    /// Headers a signed request cannot do without (a signature, times, ids) fit well below this.
    pub const HEADER_MAX_BYTES_MIN: usize = 1024;
    /// Above this, a few thousand parked connections would hold gigabytes.
    pub const HEADER_HARD_MAX_BYTES_MAX: usize = 1024 * 1024;

    pub fn validate(&self) -> Result<(), String> {
        if self.header_read_timeout_ms == 0 {
            return Err("header_read_timeout_ms must be positive".into());
        }
        if self.idle_timeout_ms == 0 {
            return Err("idle_timeout_ms must be positive".into());
        }
        if self.body_read_timeout_ms == 0 {
            return Err("body_read_timeout_ms must be positive".into());
        }
        if self.connections_max == 0 || self.connections_max > Semaphore::MAX_PERMITS {
            return Err(format!(
                "connections_max must be between 1 and {}",
                Semaphore::MAX_PERMITS
            ));
        }
        if self.header_max_bytes < Self::HEADER_MAX_BYTES_MIN {
            return Err(format!(
                "header_max_bytes must be at least {}",
                Self::HEADER_MAX_BYTES_MIN
            ));
        }
        if self.header_hard_max_bytes < self.header_max_bytes
            || self.header_hard_max_bytes > Self::HEADER_HARD_MAX_BYTES_MAX
        {
            return Err(format!(
                "header_hard_max_bytes must be at least header_max_bytes ({}) and at most {}",
                self.header_max_bytes,
                Self::HEADER_HARD_MAX_BYTES_MAX
            ));
        }
        Ok(())
    }
}

/// Put in a request's extensions when its header block is over
/// [`ServerLimits::header_max_bytes`] (but under the parser's hard limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OversizedHeaders {
    pub size_bytes: usize,
    pub max_bytes: usize,
}

/// The size of a header block as sent: `name: value\r\n` per field.
pub fn header_block_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

/// How one listener serves.
#[derive(Clone)]
pub struct ServeOptions {
    /// Names the listener in logs and in the `listener` label of the connection metrics.
    pub name: String,
    pub limits: ServerLimits,
    /// Serve HTTPS with this configuration (see [`load_tls`]).
    pub tls: Option<TlsAcceptor>,
    /// How long in-flight requests may take to finish once shutdown has begun.
    pub shutdown_grace: Duration,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("name", &self.name)
            .field("limits", &self.limits)
            .field("tls", &self.tls.is_some())
            .field("shutdown_grace", &self.shutdown_grace)
            .finish()
    }
}

impl ServeOptions {
    pub fn new(name: impl Into<String>, limits: ServerLimits) -> ServeOptions {
        ServeOptions {
            name: name.into(),
            limits,
            tls: None,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate chain {path}: {why}")]
    Certificate { path: String, why: String },
    #[error("cannot read the TLS private key {path}: {why}")]
    Key { path: String, why: String },
    #[error("the TLS certificate and key do not make a valid configuration: {0}")]
    Config(String),
}

/// Loads a PEM certificate chain and its PEM private key into a TLS configuration that offers
/// HTTP/1.1 only (the only protocol served).
pub fn load_tls(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cert_error = |why: String| TlsError::Certificate {
        path: cert.display().to_string(),
        why,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| cert_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("it holds no certificate".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        why: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `router` on `listener` until `shutdown` completes, then drains as described in the
/// module documentation. Fails only when the limits are invalid.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    options
        .limits
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let name = options.name.clone();
    let shared = Arc::new(Shared {
        router,
        http: http1_builder(&options.limits),
        limits: options.limits.clone(),
        tls: options.tls.clone(),
        name: name.clone(),
    });
    let permits = Arc::new(Semaphore::new(options.limits.connections_max));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(listener = %name, error = %e, "a connection task failed");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        connections.spawn(serve_connection(
                            stream,
                            shared.clone(),
                            stop_rx.clone(),
                            permit,
                        ));
                    }
                    Err(_) => {
                        // Closing at once costs the client one round trip and us nothing.
                        drop(stream);
                        metrics::counter!("paycode_http_connections_refused_total", "listener" => name.clone())
                            .increment(1);
                        tracing::debug!(listener = %name, "connection refused: connections_max reached");
                    }
                },
                Err(e) if is_per_connection_error(&e) => {}
                Err(e) => {
                    tracing::warn!(listener = %name, error = %e, "accept failed; pausing");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(options.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            listener = %name,
            connections = connections.len(),
            "shutdown grace period over; closing the remaining connections"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Errors of `accept` that concern only the connection being accepted.
fn is_per_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

fn http1_builder(limits: &ServerLimits) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.keep_alive(true)
        // Both timeouts are kept by `serve_connection` (see the module documentation).
        .header_read_timeout(None)
        .max_header_size(limits.header_hard_max_bytes)
        // The read buffer grows by doubling up to this; without a cap a connection parked on
        // an unfinished head of 60 KiB held about 250 KiB. Bodies are read through it in
        // pieces, so this bounds memory, not body sizes.
        .max_buf_size(limits.header_hard_max_bytes.max(READ_BUFFER_MIN_BYTES));
    b
}

struct Shared {
    router: Router,
    http: hyper::server::conn::http1::Builder,
    limits: ServerLimits,
    tls: Option<TlsAcceptor>,
    name: String,
}

async fn serve_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
) {
    let listener = shared.name.clone();
    metrics::gauge!("paycode_http_connections_open", "listener" => listener.clone()).increment(1);
    let activity = Arc::new(Activity::new());
    let io = Watched {
        inner: stream,
        activity: activity.clone(),
    };
    let header_timeout = Duration::from_millis(shared.limits.header_read_timeout_ms);
    match &shared.tls {
        None => drive(io, &shared, activity, stop).await,
        Some(acceptor) => match tokio::time::timeout(header_timeout, acceptor.accept(io)).await {
            Ok(Ok(tls)) => drive(tls, &shared, activity, stop).await,
            Ok(Err(e)) => tracing::debug!(listener = %listener, error = %e, "TLS handshake failed"),
            Err(_) => count_timeout(&listener, "header_read"),
        },
    }
    metrics::gauge!("paycode_http_connections_open", "listener" => listener).decrement(1);
    drop(permit);
}

fn count_timeout(listener: &str, phase: &'static str) {
    metrics::counter!("paycode_http_connections_timed_out_total",
        "listener" => listener.to_string(), "phase" => phase)
    .increment(1);
    tracing::debug!(listener, phase, "connection closed: timed out");
}

/// Runs hyper on one connection, closing it when its current phase outlasts its bound.
async fn drive<I>(io: I, shared: &Shared, activity: Arc<Activity>, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let router = shared.router.clone();
        let activity = activity.clone();
        let header_max_bytes = shared.limits.header_max_bytes;
        let body_read_timeout_ms = shared.limits.body_read_timeout_ms;
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let mut req = req.map(|body| DeadlineBody::new(body, body_read_timeout_ms));
            let size_bytes = header_block_bytes(req.headers());
            if size_bytes > header_max_bytes {
                req.extensions_mut().insert(OversizedHeaders {
                    size_bytes,
                    max_bytes: header_max_bytes,
                });
            }
            let busy = activity.begin_request();
            let router = router.clone();
            async move {
                let response = router.oneshot(req).await;
                drop(busy);
                response
            }
        })
    };
    let conn = shared.http.serve_connection(TokioIo::new(io), service);
    let mut conn = pin!(conn);
    let mut stopping = false;
    let limits = &shared.limits;
    loop {
        let deadline = activity.deadline(limits);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(listener = %shared.name, error = %e, "connection ended with an error");
                }
                return;
            }
            () = activity.changed.notified() => {}
            () = sleep_until(deadline) => {
                // Checked again: the phase may have moved on since the deadline was taken.
                if let Some(phase) = activity.expired(limits) {
                    count_timeout(&shared.name, phase);
                    return;
                }
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    ReadingHead { since: Instant },
    Busy,
    Idle { since: Instant },
}

/// The phase of one connection, moved by its reads ([`Watched`]) and by its requests.
struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            phase: Mutex::new(Phase::ReadingHead {
                since: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        // The lock is never held across anything that can panic; a poisoned one is still valid.
        self.phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, phase: Phase) {
        *self.phase() = phase;
        self.changed.notify_one();
    }

    fn on_bytes_read(&self) {
        let mut p = self.phase();
        if let Phase::Idle { .. } = *p {
            *p = Phase::ReadingHead {
                since: Instant::now(),
            };
            drop(p);
            self.changed.notify_one();
        }
    }

    fn begin_request(self: &Arc<Self>) -> BusyGuard {
        self.set(Phase::Busy);
        BusyGuard(self.clone())
    }

    fn deadline(&self, limits: &ServerLimits) -> Option<Instant> {
        match *self.phase() {
            Phase::ReadingHead { since } => {
                Some(since + Duration::from_millis(limits.header_read_timeout_ms))
            }
            Phase::Idle { since } => Some(since + Duration::from_millis(limits.idle_timeout_ms)),
            Phase::Busy => None,
        }
    }

    /// The name of the phase whose bound has passed, if any.
    fn expired(&self, limits: &ServerLimits) -> Option<&'static str> {
        let deadline = self.deadline(limits)?;
        if Instant::now() < deadline {
            return None;
        }
        match *self.phase() {
            Phase::ReadingHead { .. } => Some("header_read"),
            Phase::Idle { .. } => Some("idle"),
            Phase::Busy => None,
        }
    }
}

/// A request body that fails once its deadline has passed, so that a client trickling a body
/// cannot hold a connection (and its place under the cap) without end.
struct DeadlineBody {
    inner: Incoming,
    /// `None` for a request without a body.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    timeout_ms: u64,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout_ms: u64) -> DeadlineBody {
        use hyper::body::Body;
        let deadline = (!inner.is_end_stream())
            .then(|| Box::pin(tokio::time::sleep(Duration::from_millis(timeout_ms))));
        DeadlineBody {
            inner,
            deadline,
            timeout_ms,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the body did not arrive within {timeout_ms} ms")]
struct BodyTimedOut {
    timeout_ms: u64,
}

impl hyper::body::Body for DeadlineBody {
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(axum::BoxError::from)));
        }
        let timeout_ms = self.timeout_ms;
        let expired = match self.deadline.as_mut() {
            Some(d) => d.as_mut().poll(cx).is_ready(),
            None => false,
        };
        if expired {
            return Poll::Ready(Some(Err(BodyTimedOut { timeout_ms }.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Held while the service handles a request; dropping it (answer given, or the request
/// abandoned) makes the connection idle.
struct BusyGuard(Arc<Activity>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.set(Phase::Idle {
            since: Instant::now(),
        });
    }
}

/// The TCP stream, reporting reads to the connection's [`Activity`] (under TLS, so that the
/// handshake and TLS records count too).
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && buf.filled().len() > before
        {
            self.activity.on_bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_are_valid() {
        assert_eq!(ServerLimits::default().validate(), Ok(()));
    }

    #[test]
    fn invalid_limits_are_named() {
        let check = |edit: fn(&mut ServerLimits), field: &str| {
            let mut l = ServerLimits::default();
            edit(&mut l);
            let e = l.validate().unwrap_err();
            assert!(e.contains(field), "{e} should name {field}");
        };
        check(|l| l.header_read_timeout_ms = 0, "header_read_timeout_ms");
        check(|l| l.idle_timeout_ms = 0, "idle_timeout_ms");
        check(|l| l.body_read_timeout_ms = 0, "body_read_timeout_ms");
        check(|l| l.connections_max = 0, "connections_max");
        check(|l| l.header_max_bytes = 100, "header_max_bytes");
        check(
            |l| l.header_hard_max_bytes = l.header_max_bytes - 1,
            "header_hard_max_bytes",
        );
        check(
            |l| l.header_hard_max_bytes = 2 * ServerLimits::HEADER_HARD_MAX_BYTES_MAX,
            "header_hard_max_bytes",
        );
    }

    #[test]
    fn header_block_size_counts_each_field_as_sent() {
        let mut h = HeaderMap::new();
        h.insert("client-id", "abc".parse().unwrap());
        h.append("x-a", "1".parse().unwrap());
        h.append("x-a", "22".parse().unwrap());
        // "client-id: abc\r\n" + "x-a: 1\r\n" + "x-a: 22\r\n"
        assert_eq!(header_block_bytes(&h), 16 + 8 + 9);
    }
}
