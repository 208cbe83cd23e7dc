//! `serve` over a real socket: it answers on the listener it is given and returns once the
//! shutdown future completes.

use std::time::Duration;

use freshet_api::{app, serve, AppState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One HTTP/1.1 request with `Connection: close`; the whole answer as text.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    answer
}

#[tokio::test]
async fn serves_on_the_given_listener_until_shutdown() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, app(AppState::new()), async {
        let _ = stopped.await;
    }));

    let health = http_get(addr, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    assert!(health.ends_with("{\"status\":\"ok\"}"), "{health}");
    let missing = http_get(addr, "/nowhere").await;
    assert!(
        missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{missing}"
    );

    stop.send(()).expect("server still running");
    let result = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns after shutdown")
        .expect("server task");
    result.expect("serve ends cleanly");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

// Timeouts and the connection cap over real sockets (`docs/SECURITY.md`, "HTTP limits and
// timeouts"; before them, idle HTTP connections and headers dribbled a byte every 5 s were
// all still open after 100 s). The limits are short
// here; the assertions are about what happens, with generous bounds on when.

use std::time::Instant;

use axum::Router;
use freshet_api::{catch_panics, serve_with_limits, HttpLimits};

/// Far longer than any limit in these tests: a connection still open after it was not
/// closed by a limit.
const GENEROUS: Duration = Duration::from_secs(10);

fn short_limits() -> HttpLimits {
    HttpLimits {
        header_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        max_connections: 64,
    }
}

/// A server with `limits` on a free port; it stops when the sender is dropped.
async fn start(
    router: Router,
    limits: HttpLimits,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_with_limits(listener, router, limits, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// Reads until the server closes the connection; what it sent. Fails if it stays open for
/// [`GENEROUS`].
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(GENEROUS, stream.read_to_end(&mut answer)).await;
    match read {
        Ok(Ok(_)) => {}
        // A reset is a close too.
        Ok(Err(error)) => assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}"),
        Err(_) => panic!("the connection is still open after {GENEROUS:?}"),
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn headers_that_stop_halfway_are_closed_after_the_header_timeout() {
    let (addr, _stop) = start(app(AppState::new()), short_limits()).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .expect("write");
    let started = Instant::now();
    let answer = read_until_closed(&mut stream).await;
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed before the timeout"
    );
}

#[tokio::test]
async fn a_connection_that_never_sends_is_closed_after_the_header_timeout() {
    let (addr, _stop) = start(app(AppState::new()), short_limits()).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(read_until_closed(&mut stream).await, "");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let limits = HttpLimits {
        // Longer than the idle timeout, to show which one closed it.
        header_timeout: Duration::from_secs(30),
        ..short_limits()
    };
    let (addr, _stop) = start(app(AppState::new()), limits).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("write");
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("{\"status\":\"ok\"}"), "{answer}");
}

#[tokio::test]
async fn a_kept_alive_connection_serves_requests_within_the_idle_timeout() {
    let limits = HttpLimits {
        idle_timeout: Duration::from_secs(30),
        ..short_limits()
    };
    let (addr, _stop) = start(app(AppState::new()), limits).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    for round in 0..3 {
        // Each pause after the first answer is longer than the header timeout: between
        // requests the idle timeout applies, not the header one.
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .expect("write");
        let mut buffer = [0_u8; 1024];
        let read = tokio::time::timeout(GENEROUS, stream.read(&mut buffer))
            .await
            .expect("answered")
            .expect("read");
        let answer = String::from_utf8_lossy(&buffer[..read]);
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    }
}

#[tokio::test]
async fn a_body_sent_too_slowly_is_answered_408_and_closed() {
    let (addr, _stop) = start(app(AppState::new()), short_limits()).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            b"POST /api/v1/topics HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"name\":",
        )
        .await
        .expect("write");
    let answer = read_until_closed(&mut stream).await;
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains("\"error\":\"the request body did not arrive within 300 ms"),
        "{answer}"
    );
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once() {
    let limits = HttpLimits {
        header_timeout: Duration::from_secs(30),
        max_connections: 2,
        ..short_limits()
    };
    let (addr, _stop) = start(app(AppState::new()), limits).await;
    let first = TcpStream::connect(addr).await.expect("connect");
    let _second = TcpStream::connect(addr).await.expect("connect");
    // Accepted by the kernel, then closed by the server without an answer.
    let mut third = TcpStream::connect(addr).await.expect("connect");
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await;
    assert_eq!(read_until_closed(&mut third).await, "");
    // A slot comes back when a connection closes.
    drop(first);
    let deadline = Instant::now() + GENEROUS;
    loop {
        // Refused connections may be reset: an error is just "not yet".
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
        let mut answer = String::new();
        if stream.write_all(request).await.is_ok() {
            let _ = stream.read_to_string(&mut answer).await;
        }
        if answer.starts_with("HTTP/1.1 200 OK\r\n") {
            break;
        }
        assert!(Instant::now() < deadline, "no slot came back: {answer:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_panicking_handler_answers_500_over_the_socket() {
    async fn boom() {
        panic!("boom");
    }
    let router = catch_panics(Router::new().route("/boom", axum::routing::get(boom)));
    let (addr, _stop) = start(router, short_limits()).await;
    let answer = http_get(addr, "/boom").await;
    assert!(
        answer.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains("{\"error\":\"the server failed"),
        "{answer}"
    );
}
