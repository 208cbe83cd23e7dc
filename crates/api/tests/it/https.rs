//! `serve_tls` over a real socket: HTTPS with a self-signed certificate, HTTP/1.1 only, and a
//! client that never finishes its handshake is closed by the header timeout.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use freshet_api::{app, serve_tls, tls_config, AppState, HttpLimits};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

/// A self-signed certificate for `localhost`, written as PEM files into `dir`.
fn certificate(
    dir: &Path,
) -> (
    CertificateDer<'static>,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.key_pair.serialize_pem()).expect("write key");
    (certified.cert.der().clone(), cert, key)
}

#[allow(deprecated)]
fn client(root: CertificateDer<'static>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

fn limits() -> HttpLimits {
    HttpLimits {
        header_timeout: Duration::from_millis(300),
        ..HttpLimits::default()
    }
}

#[tokio::test]
async fn serves_https_over_http_1_1_and_closes_a_stalled_handshake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (root, cert, key) = certificate(dir.path());
    let tls = tls_config(&cert, &key).expect("TLS config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_tls(
        listener,
        app(AppState::new()),
        limits(),
        tls,
        async {
            let _ = stopped.await;
        },
    ));

    let tcp = TcpStream::connect(addr).await.expect("connect");
    let server_name = ServerName::try_from("localhost").expect("name");
    let mut stream = client(root)
        .connect(server_name, tcp)
        .await
        .expect("handshake");
    assert_eq!(
        stream.get_ref().1.alpn_protocol(),
        Some(&b"http/1.1"[..]),
        "HTTP/2 is not offered"
    );
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    // rustls reports the peer's close without close_notify as an error after the data.
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("{\"status\":\"ok\"}"), "{answer}");

    // A client that connects and never sends its ClientHello.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buffer))
        .await
        .expect("closed before 5 s");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );

    // Plain HTTP on the TLS port is not served.
    let mut plain = TcpStream::connect(addr).await.expect("connect");
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer))
        .await
        .expect("closed");
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));

    stop.send(()).expect("server running");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns after shutdown")
        .expect("task")
        .expect("serve ends cleanly");
}

#[test]
fn unusable_files_are_named_in_the_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, cert, key) = certificate(dir.path());
    let missing = dir.path().join("missing.pem");
    let error = tls_config(&missing, &key).expect_err("no such file");
    assert!(error.to_string().contains("missing.pem"), "{error}");
    let error = tls_config(&cert, &cert).expect_err("a certificate is no key");
    assert!(
        error.to_string().contains("no private key found"),
        "{error}"
    );
    let other = tempfile::tempdir().expect("tempdir");
    let (_, _, other_key) = certificate(other.path());
    let error = tls_config(&cert, &other_key).expect_err("mismatched key");
    assert!(error.to_string().contains("cert.pem"), "{error}");
}
