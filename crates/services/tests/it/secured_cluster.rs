//! The services as clients of a secured cluster: a real broker with SASL_SSL and
//! SASL_PLAINTEXT listeners (certificates made at test time), signed in to with the settings
//! any librdkafka client takes. The generator and the tracker run over SASL_SSL as over
//! PLAINTEXT; the topic API's raw-protocol reader (Fetch) and sizes (DescribeLogDirs) sign
//! in with every mechanism; a wrong password or CA is refused at once with the reason.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use freshet_security::scram::Mechanism;
use freshet_security::users::UserStore;
use freshet_services::cluster::view::{NewTopic, OutgoingRecord, ProduceRequest};
use freshet_services::cluster::{check_sign_in, Cluster};
use freshet_services::generator::{self, GeneratorParams, JobProgress};
use freshet_services::kafka::{
    wait_for_broker, KafkaSecurity, Password, SaslMechanism, SecurityProtocol,
};
use freshet_services::tracker::{Tracker, TrackerConfig};
use freshet_services::{ClientError, KafkaConfig};
use freshet_testkit::certs::TestCa;
use freshet_testkit::TestBroker;

const USER: &str = "tracker";
const PASSWORD: &str = "tracker-secret";
const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(10);

/// A broker whose listeners all require SASL, one of them over TLS, and its CA.
struct Secured {
    broker: TestBroker,
    ca: TestCa,
    _certificates: tempfile::TempDir,
}

impl Secured {
    async fn start() -> Secured {
        let ca = TestCa::new();
        let certificates = tempfile::tempdir().expect("certificate directory");
        let tls = ca.tls_config(certificates.path(), false);
        let broker = TestBroker::start_with_listeners(
            &["SASL_SSL://127.0.0.1:0", "SASL_PLAINTEXT://127.0.0.1:0"],
            |config| config.tls = Some(tls),
        )
        .await;
        add_user(broker.data_dir(), USER, PASSWORD);
        Secured {
            broker,
            ca,
            _certificates: certificates,
        }
    }

    /// SASL_SSL as `freshet --kafka-security-protocol SASL_SSL --ssl-ca-location ...` sets it.
    fn sasl_ssl(&self, mechanism: SaslMechanism, password: &str) -> KafkaConfig {
        let address = listener(&self.broker, "SASL_SSL");
        KafkaConfig::new(address.to_string())
            .with_security(KafkaSecurity {
                ssl_ca_location: Some(self.ca.ca_path()),
                ..sasl(SecurityProtocol::SaslSsl, mechanism, password)
            })
            .expect("valid settings")
    }

    fn sasl_plaintext(&self, mechanism: SaslMechanism, password: &str) -> KafkaConfig {
        let address = listener(&self.broker, "SASL_PLAINTEXT");
        KafkaConfig::new(address.to_string())
            .with_security(sasl(SecurityProtocol::SaslPlaintext, mechanism, password))
            .expect("valid settings")
    }
}

/// Adds a user the way `freshet users add` does, with every SCRAM mechanism.
fn add_user(data_dir: &Path, name: &str, password: &str) {
    UserStore::open(data_dir)
        .expect("user store")
        .add(name, password.as_bytes(), &Mechanism::ALL, 4096)
        .expect("add user");
}

fn sasl(protocol: SecurityProtocol, mechanism: SaslMechanism, password: &str) -> KafkaSecurity {
    KafkaSecurity {
        security_protocol: protocol,
        sasl_mechanism: mechanism,
        sasl_username: Some(USER.into()),
        sasl_password: Some(Password::new(password)),
        ..KafkaSecurity::default()
    }
}

/// The bound address of the listener named `protocol` (`SASL_SSL`, ...).
fn listener(broker: &TestBroker, protocol: &str) -> SocketAddr {
    broker
        .listeners
        .iter()
        .find(|listener| listener.protocol().to_string() == protocol)
        .and_then(|listener| listener.bound_addr())
        .unwrap_or_else(|| panic!("no {protocol} listener"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_generator_and_the_tracker_count_over_sasl_ssl() {
    let secured = Secured::start().await;
    let kafka = secured.sasl_ssl(SaslMechanism::ScramSha512, PASSWORD);
    let params = GeneratorParams {
        num_devices: 200,
        num_messages: 1000,
        pause_ms: 0,
        seed: Some(11),
        ..GeneratorParams::default()
    };
    let generating = {
        let kafka = kafka.clone();
        move || generator::run(&kafka, &params, &JobProgress::new())
    };
    let summary = tokio::task::spawn_blocking(generating)
        .await
        .expect("the generator thread")
        .expect("the generator runs over SASL_SSL");
    assert_eq!((summary.sent, summary.failed), (1000, 0));

    let config = TrackerConfig {
        checkpoint_interval: Duration::from_millis(200),
        session_timeout: Duration::from_secs(6),
        node_id: Some("secured".into()),
        ..TrackerConfig::default()
    };
    let tracker = Tracker::start(&kafka, config)
        .await
        .expect("the tracker starts over SASL_SSL");
    let handle = tracker.handle();
    let deadline = Instant::now() + Duration::from_secs(60);
    while handle.unique_ips().events_counted < 1000 {
        assert!(
            Instant::now() < deadline,
            "the tracker counted {:?}",
            handle.unique_ips()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counts = handle.unique_ips();
    assert_eq!(counts.events_counted, 1000);
    assert_eq!(counts.global_count, summary.distinct_ips);
    tokio::task::spawn_blocking(move || tracker.shutdown())
        .await
        .expect("tracker shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_topic_api_reads_records_and_sizes_over_every_listener_and_mechanism() {
    let secured = Secured::start().await;
    let settings = [
        (
            "SASL_SSL",
            secured.sasl_ssl(SaslMechanism::ScramSha512, PASSWORD),
        ),
        (
            "SASL_PLAINTEXT",
            secured.sasl_plaintext(SaslMechanism::Plain, PASSWORD),
        ),
        (
            "SASL_PLAINTEXT",
            secured.sasl_plaintext(SaslMechanism::ScramSha256, PASSWORD),
        ),
    ];
    for (i, (listener, kafka)) in settings.iter().enumerate() {
        let what = format!("{listener} {}", kafka.security().sasl_mechanism);
        check_sign_in(kafka, SIGN_IN_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let cluster = Cluster::new(kafka).expect("cluster clients");
        let topic = format!("secured-{i}");
        write_records(&cluster, &topic, &["one", "two", "three"]).await;

        // The page comes from the raw Fetch client, the sizes from raw DescribeLogDirs.
        let page = cluster
            .read_records(&topic, 0, Some(0), Some(10))
            .await
            .unwrap_or_else(|e| panic!("{what}: reading: {e}"));
        let values: Vec<_> = page.records.iter().map(|r| r.value.as_deref()).collect();
        assert_eq!(values, [Some("one"), Some("two"), Some("three")], "{what}");
        let description = cluster
            .describe_topic(&topic)
            .await
            .unwrap_or_else(|e| panic!("{what}: describing: {e}"));
        let size = description.partitions[0].size_bytes;
        assert!(size.is_some_and(|bytes| bytes > 0), "{what}: size {size:?}");
    }
}

async fn write_records(cluster: &Cluster, topic: &str, values: &[&str]) {
    cluster
        .create_topic(NewTopic {
            name: topic.into(),
            partitions: Some(1),
            replication_factor: None,
            configs: BTreeMap::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("creating {topic}: {e}"));
    let records = values
        .iter()
        .map(|value| OutgoingRecord {
            key: serde_json::Value::Null,
            value: serde_json::Value::from(*value),
            headers: BTreeMap::new(),
            partition: Some(0),
        })
        .collect();
    cluster
        .produce(topic, ProduceRequest { records })
        .await
        .unwrap_or_else(|e| panic!("producing to {topic}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_at_once_with_the_brokers_reason() {
    let secured = Secured::start().await;
    let settings = [
        secured.sasl_ssl(SaslMechanism::ScramSha512, "wrong"),
        secured.sasl_plaintext(SaslMechanism::Plain, "wrong"),
        secured.sasl_plaintext(SaslMechanism::ScramSha256, "wrong"),
    ];
    for kafka in &settings {
        let mechanism = kafka.security().sasl_mechanism;
        let started = Instant::now();
        let error = check_sign_in(kafka, SIGN_IN_TIMEOUT)
            .await
            .expect_err("a wrong password is refused");
        let message = error.to_string();
        assert!(
            matches!(error, ClientError::SignInRefused(_)),
            "{mechanism}: {error:?}"
        );
        assert!(
            message.contains("invalid credentials") && message.contains(mechanism.name()),
            "{mechanism}: {message}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{mechanism}: refused after {:?}",
            started.elapsed()
        );
    }
}

/// The check commands make before they start finds the broker behind TLS and SASL without
/// signing in (a wrong password is the clients' to report), and fails in seconds with the
/// reason when the TLS handshake does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_broker_asks_through_tls_without_signing_in() {
    let secured = Secured::start().await;
    for kafka in [
        secured.sasl_ssl(SaslMechanism::ScramSha512, "wrong"),
        secured.sasl_plaintext(SaslMechanism::Plain, PASSWORD),
    ] {
        let started = Instant::now();
        wait_for_broker(&kafka, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e}", kafka.security().security_protocol));
        assert!(started.elapsed() < Duration::from_secs(2), "{kafka:?}");
    }
    let stranger = TestCa::new();
    let untrusted = KafkaConfig::new(listener(&secured.broker, "SASL_SSL").to_string())
        .with_security(KafkaSecurity {
            ssl_ca_location: Some(stranger.ca_path()),
            ..sasl(
                SecurityProtocol::SaslSsl,
                SaslMechanism::ScramSha512,
                PASSWORD,
            )
        })
        .expect("valid settings");
    let error = wait_for_broker(&untrusted, Duration::from_secs(1))
        .await
        .expect_err("the broker's certificate is not trusted");
    let message = error.to_string();
    assert!(message.contains("TLS handshake"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_certificate_from_another_ca_is_refused() {
    let secured = Secured::start().await;
    let stranger = TestCa::new();
    let kafka = KafkaConfig::new(listener(&secured.broker, "SASL_SSL").to_string())
        .with_security(KafkaSecurity {
            ssl_ca_location: Some(stranger.ca_path()),
            ..sasl(
                SecurityProtocol::SaslSsl,
                SaslMechanism::ScramSha512,
                PASSWORD,
            )
        })
        .expect("valid settings");
    let error = check_sign_in(&kafka, SIGN_IN_TIMEOUT)
        .await
        .expect_err("the broker's certificate is not trusted");
    let message = error.to_string();
    assert!(
        message.contains("TLS handshake") && message.contains("invalid peer certificate"),
        "{message}"
    );
}

/// SSL without SASL, the broker requiring client certificates (`--tls-client-ca`): the raw
/// client presents the configured one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_certificates_sign_in_over_ssl() {
    let ca = TestCa::new();
    let certificates = tempfile::tempdir().expect("certificate directory");
    let tls = ca.tls_config(certificates.path(), true);
    let broker =
        TestBroker::start_with_listeners(&["SSL://127.0.0.1:0"], |config| config.tls = Some(tls))
            .await;
    let (cert, key) = ca.client_cert(certificates.path(), "reader");
    let ssl = |client: Option<(&Path, &Path)>| KafkaSecurity {
        security_protocol: SecurityProtocol::Ssl,
        ssl_ca_location: Some(ca.ca_path()),
        ssl_certificate_location: client.map(|(cert, _)| cert.to_path_buf()),
        ssl_key_location: client.map(|(_, key)| key.to_path_buf()),
        ..KafkaSecurity::default()
    };
    let address = listener(&broker, "SSL").to_string();
    let kafka = KafkaConfig::new(&address)
        .with_security(ssl(Some((&cert, &key))))
        .expect("valid settings");
    let cluster = Cluster::new(&kafka).expect("cluster clients");
    write_records(&cluster, "certified", &["signed"]).await;
    let page = cluster
        .read_records("certified", 0, Some(0), Some(10))
        .await
        .expect("read over SSL with a client certificate");
    assert_eq!(page.records[0].value.as_deref(), Some("signed"));

    let anonymous = KafkaConfig::new(&address)
        .with_security(ssl(None))
        .expect("valid settings");
    assert!(
        check_sign_in(&anonymous, SIGN_IN_TIMEOUT).await.is_err(),
        "no client certificate, no connection"
    );
}
