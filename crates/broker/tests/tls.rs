//! TLS listeners end to end: real rdkafka clients (librdkafka over OpenSSL) against SSL
//! listeners with certificates made at test time, required client certificates, a TLS client
//! on a PLAINTEXT listener, the handshake timeout and certificate reloads.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use freshet_broker::config::TlsConfig;
use freshet_broker::listener::SecurityProtocol;
use freshet_testkit::certs::TestCa;
use freshet_testkit::TestBroker;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(20);

/// Every log line of the broker (all tests of this binary), to check what it says.
fn logs() -> String {
    static CAPTURED: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    let captured = CAPTURED.get_or_init(|| {
        let captured = Arc::new(Mutex::new(Vec::new()));
        let sink = captured.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("freshet_broker=debug"))
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .try_init();
        captured
    });
    let bytes = captured.lock().expect("logs").clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Waits until the broker has logged `text`.
async fn wait_for_log(text: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while !logs().contains(text) {
        assert!(
            Instant::now() < deadline,
            "the broker never logged {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A broker with one SSL listener using `tls`.
async fn ssl_broker(
    tls: TlsConfig,
    adjust: impl FnOnce(&mut freshet_broker::BrokerConfig),
) -> TestBroker {
    logs();
    TestBroker::start_with_listeners(&["SSL://127.0.0.1:0"], |config| {
        config.tls = Some(tls);
        adjust(config);
    })
    .await
}

/// rdkafka settings for the SSL listener of `broker`, trusting `ca`.
fn ssl_client(broker: &TestBroker, ca: &TestCa, client: Option<(&Path, &Path)>) -> ClientConfig {
    let addr = broker.listener_addr(SecurityProtocol::Ssl);
    let mut config = freshet_testkit::client_config(&addr.to_string());
    ca.configure_client(&mut config, false, client);
    config
}

async fn produce_and_consume(config: &ClientConfig, topic: &str) {
    let producer: FutureProducer = config
        .clone()
        .set("acks", "all")
        .create()
        .expect("producer");
    for i in 0..10 {
        let payload = format!("record {i}");
        producer
            .send(FutureRecord::to(topic).key("k").payload(&payload), TIMEOUT)
            .await
            .map_err(|(e, _)| e)
            .expect("produced over TLS");
    }
    let consumer: StreamConsumer = config
        .clone()
        .set("group.id", format!("{topic}-group"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut received = Vec::new();
    while received.len() < 10 {
        let message = tokio::time::timeout(TIMEOUT, consumer.recv())
            .await
            .expect("a record within the timeout")
            .expect("consumed over TLS");
        received.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
    }
    assert_eq!(received[0], "record 0");
    assert_eq!(received[9], "record 9");
}

/// Whether a client with `config` gets metadata from the broker (a real request over TLS).
async fn metadata_works(config: &ClientConfig) -> bool {
    let consumer: BaseConsumer = config.create().expect("client");
    tokio::task::spawn_blocking(move || {
        consumer
            .fetch_metadata(None, Duration::from_secs(5))
            .is_ok()
    })
    .await
    .expect("metadata task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_produces_and_consumes_over_ssl() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = ssl_broker(ca.tls_config(dir.path(), false), |_| {}).await;
    let config = ssl_client(&broker, &ca, None);
    produce_and_consume(&config, "over-ssl").await;
    assert!(broker.listener(SecurityProtocol::Ssl).tls().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_client_certificate_authenticates_its_cn() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = ssl_broker(ca.tls_config(dir.path(), true), |_| {}).await;

    let without = ssl_client(&broker, &ca, None);
    assert!(
        !metadata_works(&without).await,
        "a client without a certificate is refused"
    );
    let other_ca = TestCa::new();
    let (cert, key) = other_ca.client_cert(dir.path(), "mallory-tls");
    let foreign = ssl_client(&broker, &ca, Some((&cert, &key)));
    assert!(
        !metadata_works(&foreign).await,
        "a certificate from another CA is refused"
    );
    let refusals = &broker.broker.metrics.tls_handshake_failures;
    assert!(refusals.load(Ordering::Relaxed) >= 2);

    let (cert, key) = ca.client_cert(dir.path(), "alice-tls");
    let signed = ssl_client(&broker, &ca, Some((&cert, &key)));
    produce_and_consume(&signed, "client-certs").await;
    wait_for_log("principal=User:alice-tls").await;
    assert!(!logs().contains("principal=User:mallory-tls"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_on_a_plaintext_listener_is_told_what_is_wrong() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("tempdir");
    logs();
    let tls = ca.tls_config(dir.path(), false);
    let broker = TestBroker::start_with_listeners(&["127.0.0.1:0", "SSL://127.0.0.1:0"], |c| {
        c.tls = Some(tls);
    })
    .await;

    let plaintext = broker.listener_addr(SecurityProtocol::Plaintext);
    let mut socket = TcpStream::connect(plaintext).await.expect("connect");
    socket
        .write_all(&client_hello())
        .await
        .expect("send ClientHello");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, socket.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0))), "closed at once: {read:?}");
    wait_for_log(
        "TLS handshake received on a PLAINTEXT listener: the client is configured for SSL",
    )
    .await;

    // The SSL listener of the same broker speaks TLS.
    let ssl = broker.listener_addr(SecurityProtocol::Ssl);
    let served = served_certificate(ssl, &ca.ca_path()).await;
    assert_eq!(served, read_certificate(&broker, SecurityProtocol::Ssl));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_closed_after_the_handshake_timeout() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = ssl_broker(ca.tls_config(dir.path(), false), |config| {
        config.tls_handshake_timeout = Duration::from_millis(300);
    })
    .await;
    let started = Instant::now();
    let mut socket = TcpStream::connect(broker.listener_addr(SecurityProtocol::Ssl))
        .await
        .expect("connect");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, socket.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0))), "closed: {read:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    let timeouts = &broker.broker.metrics.tls_handshake_timeouts;
    let deadline = Instant::now() + TIMEOUT;
    while timeouts.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "the timeout was counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_serves_the_new_certificate_to_new_connections() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = ca.tls_config(dir.path(), false);
    let broker = ssl_broker(tls.clone(), |_| {}).await;
    let addr = broker.listener_addr(SecurityProtocol::Ssl);
    let first = served_certificate(addr, &ca.ca_path()).await;
    assert_eq!(first, read_certificate(&broker, SecurityProtocol::Ssl));

    // Rotation: the new files replace the old ones, then the broker is told (SIGHUP).
    let next_dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = ca.server_cert(next_dir.path());
    std::fs::copy(&cert, &tls.cert).expect("replace the certificate");
    std::fs::copy(&key, &tls.key).expect("replace the key");
    let reloadable = broker
        .listener(SecurityProtocol::Ssl)
        .tls()
        .expect("an SSL listener has TLS settings");
    reloadable.reload().expect("reloaded");
    let second = served_certificate(addr, &ca.ca_path()).await;
    assert_ne!(first, second);
    assert_eq!(second, read_certificate(&broker, SecurityProtocol::Ssl));

    // A broken file is refused and the certificate in use stays.
    std::fs::write(&tls.key, "not a key").expect("break the key");
    let error = reloadable.reload().expect_err("refused");
    assert!(
        error.to_string().contains("no private key found in"),
        "{error}"
    );
    assert_eq!(served_certificate(addr, &ca.ca_path()).await, second);
}

/// The first bytes a TLS client sends: a real ClientHello.
fn client_hello() -> Vec<u8> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").expect("name");
    let mut connection =
        rustls::ClientConnection::new(Arc::new(config), name).expect("client connection");
    let mut hello = Vec::new();
    connection.write_tls(&mut hello).expect("ClientHello");
    assert_eq!(&hello[..2], &[0x16, 0x03]);
    hello
}

/// The certificate the TLS listener at `addr` serves, from a handshake with a client
/// trusting `ca` (so the certificate also verifies for `localhost`).
async fn served_certificate(addr: SocketAddr, ca: &Path) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots
            .add(certificate.expect("CA certificate"))
            .expect("trusted");
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let socket = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let stream = tokio::time::timeout(TIMEOUT, connector.connect(name, socket))
        .await
        .expect("handshake in time")
        .expect("handshake");
    let chain = stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("a certificate");
    chain[0].to_vec()
}

/// The certificate file the listener of `protocol` is configured with, as DER.
fn read_certificate(broker: &TestBroker, protocol: SecurityProtocol) -> Vec<u8> {
    let tls = broker.listener(protocol).tls().expect("TLS settings");
    CertificateDer::from_pem_file(&tls.files().cert)
        .expect("certificate file")
        .to_vec()
}

#[allow(deprecated)] // The broker's provider too; see `freshet_broker::tls`.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
