//! The bounded server over real sockets: slow and idle connections are closed after their
//! timeouts while normal requests are served, the connection cap holds and frees, oversized
//! heads are marked or refused, and shutdown drains within its grace period.
//!
//! Timeouts are configured short; each is asserted only as "closed within a deadline of several
//! times the timeout", never as a measured speed.

use axum::Router;
use axum::extract::State;
use axum::http::Extensions;
use axum::routing::get;
use paycode_http::server::{OversizedHeaders, ServeOptions, ServerLimits, serve};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

/// Generous deadline for anything that should happen promptly.
const PROMPT: Duration = Duration::from_secs(10);

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: JoinHandle<std::io::Result<()>>,
    park: Arc<Park>,
}

/// Requests to `/park` wait until released.
#[derive(Default)]
struct Park {
    release: Notify,
    n_parked: AtomicUsize,
}

impl Park {
    /// Waits until `n` requests have reached the service.
    async fn wait_parked(&self, n: usize) {
        let until = Instant::now() + PROMPT;
        while self.n_parked.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < until,
                "the request never reached the service"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Running {
    async fn stop(mut self) -> std::io::Result<()> {
        let _ = self.stop.take().expect("stopped once").send(());
        timeout(PROMPT, self.done)
            .await
            .expect("serve returns after shutdown")
            .expect("serve task did not panic")
    }
}

async fn hello() -> &'static str {
    "hello"
}

/// Answers whether the server marked the request's header block as over the limit.
async fn marked(ext: Extensions) -> String {
    match ext.get::<OversizedHeaders>() {
        Some(o) => format!("oversized {} > {}", o.size_bytes, o.max_bytes),
        None => "fine".into(),
    }
}

/// The body's length, or why it could not be read.
async fn echo(body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>) -> String {
    match body {
        Ok(b) => format!("{} bytes", b.len()),
        Err(e) => e.body_text(),
    }
}

async fn parked(State(park): State<Arc<Park>>) -> &'static str {
    park.n_parked.fetch_add(1, Ordering::SeqCst);
    park.release.notified().await;
    "released"
}

async fn start(limits: ServerLimits, grace: Duration) -> Running {
    start_with(limits, grace, None).await
}

async fn start_with(
    limits: ServerLimits,
    grace: Duration,
    tls: Option<paycode_http::server::TlsAcceptor>,
) -> Running {
    let park = Arc::new(Park::default());
    let router = Router::new()
        .route("/hello", get(hello))
        .route("/marked", get(marked))
        .route("/park", get(parked))
        .route("/echo", axum::routing::post(echo))
        .with_state(park.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = ServeOptions {
        shutdown_grace: grace,
        tls,
        ..ServeOptions::new("test", limits)
    };
    let (tx, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(serve(listener, router, options, async move {
        let _ = rx.await;
    }));
    Running {
        addr,
        stop: Some(tx),
        done,
        park,
    }
}

fn limits() -> ServerLimits {
    ServerLimits {
        header_read_timeout_ms: 30_000,
        idle_timeout_ms: 30_000,
        body_read_timeout_ms: 30_000,
        connections_max: 64,
        header_max_bytes: 4 * 1024,
        header_hard_max_bytes: 16 * 1024,
    }
}

/// Reads one HTTP response (head and `Content-Length` body) from a kept-alive connection;
/// `None` if the connection closed or failed before a whole response arrived.
async fn read_response(s: &mut TcpStream) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                match timeout(PROMPT, s.read(&mut chunk)).await.ok()? {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
            return Some((status, body));
        }
        match timeout(PROMPT, s.read(&mut chunk)).await.ok()? {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// One keep-alive request on `s`.
async fn request(s: &mut TcpStream, path: &str, extra_headers: &str) -> Option<(u16, String)> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{extra_headers}\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    read_response(s).await
}

/// A request on a connection of its own.
async fn fresh_request(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    request(&mut s, path, "").await
}

/// Waits until the peer closes `s` (end of stream or reset), up to `deadline`; true if it did.
/// Anything the server sends first (e.g. an HTTP 431) is skipped.
async fn closed_within(s: &mut TcpStream, deadline: Duration) -> bool {
    let until = Instant::now() + deadline;
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(until, s.read(&mut chunk)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Serves requests on fresh connections until `until` resolves; returns how many succeeded,
/// failing the test on any that did not.
async fn serve_meanwhile<T, F: std::future::Future<Output = T>>(
    addr: SocketAddr,
    until: F,
) -> (T, usize) {
    let mut until = std::pin::pin!(until);
    let mut n_served = 0;
    loop {
        tokio::select! {
            done = &mut until => return (done, n_served),
            r = fresh_request(addr, "/hello") => {
                assert_eq!(r, Some((200, "hello".to_string())), "a normal request failed meanwhile");
                n_served += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test]
async fn a_slowloris_connection_is_closed_after_the_header_read_timeout_while_others_are_served() {
    let timeout_ms = 400;
    let srv = start(
        ServerLimits {
            header_read_timeout_ms: timeout_ms,
            ..limits()
        },
        PROMPT,
    )
    .await;
    let slow = TcpStream::connect(srv.addr).await.unwrap();
    let (mut rd, mut wr) = slow.into_split();
    wr.write_all(b"GET /hello HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        .await
        .unwrap();
    // One header byte at a time, far more often than the timeout: the bound is on the whole
    // head, not on the gaps between bytes.
    let drip = tokio::spawn(async move {
        while wr.write_all(b"a").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let closed = async {
        let mut chunk = [0u8; 64];
        let deadline = Duration::from_millis(10 * timeout_ms);
        match timeout(deadline, rd.read(&mut chunk)).await {
            Err(_) => false,
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(_)) => panic!("the slow request was answered"),
        }
    };
    let (closed, n_served) = serve_meanwhile(srv.addr, closed).await;
    assert!(closed, "the slowloris connection is still open");
    assert!(n_served > 0, "no normal request was served meanwhile");
    drip.abort();
    // A connection that sends nothing at all is bounded the same way.
    let mut silent = TcpStream::connect(srv.addr).await.unwrap();
    assert!(
        closed_within(&mut silent, Duration::from_millis(10 * timeout_ms)).await,
        "a silent connection is still open"
    );
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout_while_others_are_served() {
    let timeout_ms = 400;
    let srv = start(
        ServerLimits {
            idle_timeout_ms: timeout_ms,
            // Far longer, so that only the idle bound can close the connection.
            header_read_timeout_ms: 60_000,
            ..limits()
        },
        PROMPT,
    )
    .await;
    let mut idle = TcpStream::connect(srv.addr).await.unwrap();
    assert_eq!(
        request(&mut idle, "/hello", "").await,
        Some((200, "hello".into()))
    );
    // Kept alive: a second request on the same connection works.
    assert_eq!(
        request(&mut idle, "/hello", "").await,
        Some((200, "hello".into()))
    );
    let closed = closed_within(&mut idle, Duration::from_millis(10 * timeout_ms));
    let (closed, n_served) = serve_meanwhile(srv.addr, closed).await;
    assert!(closed, "the idle keep-alive connection is still open");
    assert!(n_served > 0, "no normal request was served meanwhile");
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn the_connection_cap_holds_and_a_closed_connection_frees_a_place() {
    let cap = 3;
    let srv = start(
        ServerLimits {
            connections_max: cap,
            ..limits()
        },
        PROMPT,
    )
    .await;
    let mut open = Vec::new();
    for _ in 0..cap {
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        assert_eq!(
            request(&mut s, "/hello", "").await,
            Some((200, "hello".into()))
        );
        open.push(s);
    }
    // One over the cap: accepted by the kernel, closed by the server without an answer.
    let mut over = TcpStream::connect(srv.addr).await.unwrap();
    assert_eq!(request(&mut over, "/hello", "").await, None);
    assert!(closed_within(&mut over, PROMPT).await);
    // The ones in flight are untouched.
    for s in &mut open {
        assert_eq!(request(s, "/hello", "").await, Some((200, "hello".into())));
    }
    // Closing one frees its place (once the server has seen it close).
    drop(open.pop());
    let until = Instant::now() + PROMPT;
    let mut admitted = None;
    while Instant::now() < until {
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        if request(&mut s, "/hello", "").await.is_some() {
            admitted = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut admitted = admitted.expect("a new connection was admitted after one closed");
    // And the cap holds again.
    let mut over = TcpStream::connect(srv.addr).await.unwrap();
    assert_eq!(request(&mut over, "/hello", "").await, None);
    assert_eq!(
        request(&mut admitted, "/hello", "").await,
        Some((200, "hello".into()))
    );
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn a_header_block_over_the_limit_reaches_the_service_marked() {
    let srv = start(limits(), PROMPT).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    assert_eq!(
        request(&mut s, "/marked", "X-Small: 1\r\n").await,
        Some((200, "fine".into()))
    );
    let big = format!("X-Big: {}\r\n", "b".repeat(5 * 1024));
    let (status, body) = request(&mut s, "/marked", &big).await.unwrap();
    assert_eq!(status, 200);
    // host (4 + 4 + 4) + x-big (5 + 5120 + 4)
    assert_eq!(body, format!("oversized {} > {}", 12 + 5129, 4 * 1024));
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn a_head_over_the_hard_limit_is_refused_and_nothing_else_is_disturbed() {
    let srv = start(limits(), PROMPT).await;
    let mut bystander = TcpStream::connect(srv.addr).await.unwrap();
    assert_eq!(
        request(&mut bystander, "/hello", "").await,
        Some((200, "hello".into()))
    );
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let huge = format!("X-Huge: {}\r\n", "h".repeat(20 * 1024));
    let answer = request(&mut s, "/hello", &huge).await;
    assert!(
        matches!(answer, None | Some((431, _))),
        "a head over the hard limit got {answer:?}"
    );
    assert!(closed_within(&mut s, PROMPT).await);
    assert_eq!(
        request(&mut bystander, "/hello", "").await,
        Some((200, "hello".into()))
    );
    assert_eq!(
        fresh_request(srv.addr, "/hello").await,
        Some((200, "hello".into()))
    );
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_stops_accepting_and_finishes_the_request_in_flight() {
    let srv = start(limits(), PROMPT).await;
    let mut idle = TcpStream::connect(srv.addr).await.unwrap();
    assert_eq!(
        request(&mut idle, "/hello", "").await,
        Some((200, "hello".into()))
    );
    let mut busy = TcpStream::connect(srv.addr).await.unwrap();
    busy.write_all(b"GET /park HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let park = srv.park.clone();
    park.wait_parked(1).await;
    let addr = srv.addr;
    let stopped = tokio::spawn(srv.stop());
    // The listener is closed: new connections are refused.
    let until = Instant::now() + PROMPT;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < until, "still accepting after shutdown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The idle connection is closed, the busy one gets its answer, then serve returns.
    assert!(closed_within(&mut idle, PROMPT).await);
    park.release.notify_one();
    assert_eq!(
        read_response(&mut busy).await,
        Some((200, "released".into()))
    );
    timeout(PROMPT, stopped).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_gives_up_on_a_request_after_the_grace_period() {
    let srv = start(limits(), Duration::from_millis(300)).await;
    let mut busy = TcpStream::connect(srv.addr).await.unwrap();
    busy.write_all(b"GET /park HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    srv.park.wait_parked(1).await;
    srv.stop().await.unwrap();
    assert_eq!(read_response(&mut busy).await, None);
}

/// `testdata/` holds a throw-away CA and a certificate for 127.0.0.1 it signed (valid for a
/// century; the key is public test material).
fn testdata(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

#[tokio::test]
async fn tls_is_served_and_a_stalled_handshake_is_bounded_by_the_header_read_timeout() {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    let timeout_ms = 400;
    let tls = paycode_http::server::load_tls(&testdata("cert.pem"), &testdata("key.pem")).unwrap();
    let srv = start_with(
        ServerLimits {
            header_read_timeout_ms: timeout_ms,
            ..limits()
        },
        PROMPT,
        Some(tls),
    )
    .await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(testdata("ca.pem")).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(srv.addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut s = connector.connect(name, tcp).await.unwrap();
    // Only HTTP/1.1 is offered, even to a client that would prefer HTTP/2.
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    for _ in 0..2 {
        s.write_all(b"GET /hello HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.ends_with(b"hello") {
            let n = timeout(PROMPT, s.read(&mut chunk)).await.unwrap().unwrap();
            assert!(n > 0, "closed before the answer");
            buf.extend_from_slice(&chunk[..n]);
        }
        assert!(buf.starts_with(b"HTTP/1.1 200 "));
    }
    // A client that connects and never starts the handshake is closed like a slow head.
    let mut stalled = TcpStream::connect(srv.addr).await.unwrap();
    assert!(closed_within(&mut stalled, Duration::from_millis(10 * timeout_ms)).await);
    srv.stop().await.unwrap();
}

#[test]
fn tls_files_that_are_missing_or_wrong_are_named() {
    let missing = testdata("missing.pem");
    let e = paycode_http::server::load_tls(&missing, &testdata("key.pem"))
        .err()
        .unwrap();
    assert!(e.to_string().contains("missing.pem"), "{e}");
    let e = paycode_http::server::load_tls(&testdata("cert.pem"), &testdata("ca.pem"))
        .err()
        .unwrap();
    assert!(e.to_string().contains("ca.pem"), "{e}");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_unreadable_while_others_are_served() {
    let timeout_ms = 400;
    let srv = start(
        ServerLimits {
            body_read_timeout_ms: timeout_ms,
            ..limits()
        },
        PROMPT,
    )
    .await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let answer = timeout(
        Duration::from_millis(10 * timeout_ms),
        serve_meanwhile(srv.addr, read_response(&mut s)),
    )
    .await
    .expect("the trickled body was never given up on");
    let (answer, n_served) = answer;
    let (status, body) = answer.expect("an answer");
    assert_eq!(status, 200);
    assert!(
        body.contains(&format!("the body did not arrive within {timeout_ms} ms")),
        "{body}"
    );
    assert!(n_served > 0, "no normal request was served meanwhile");
    // A body that arrives in time is read whole.
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\n0123456789")
        .await
        .unwrap();
    assert_eq!(read_response(&mut s).await, Some((200, "10 bytes".into())));
    srv.stop().await.unwrap();
}
