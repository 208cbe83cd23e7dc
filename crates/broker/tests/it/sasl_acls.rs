//! SASL authentication and ACL authorization end to end: real rdkafka clients (librdkafka with
//! OpenSSL, so SCRAM works as in production) sign in with PLAIN, SCRAM-SHA-256 and
//! SCRAM-SHA-512 over SASL_PLAINTEXT and SASL_SSL; ACLs are created, listed and deleted over
//! the Kafka protocol by a super user; wrong passwords, denied topics and groups get Kafka's
//! errors; users and ACLs survive a restart.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use freshet_broker::listener::SecurityProtocol;
use freshet_broker::topics::TopicConfigs;
use freshet_security::scram::Mechanism;
use freshet_security::users::UserStore;
use freshet_security::Principal;
use freshet_testkit::certs::TestCa;
use freshet_testkit::raw::RawClient;
use freshet_testkit::TestBroker;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, ApiKey, CreateAclsRequest, CreateAclsResponse,
    DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest, DescribeAclsResponse, GroupId,
    InitProducerIdRequest, InitProducerIdResponse, MetadataRequest, ProducerId, TopicName,
    TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

const TIMEOUT: Duration = Duration::from_secs(20);
const ADMIN: (&str, &str) = ("admin", "admin-secret");
const ALICE: (&str, &str) = ("alice", "alice-secret");

/// Adds users the way `freshet users add` does: through the data directory, while the broker
/// runs (it sees the change without a restart).
fn add_users(broker: &TestBroker, users: &[(&str, &str)]) {
    let store = UserStore::open(broker.data_dir()).expect("user store");
    for (name, password) in users {
        store
            .add(name, password.as_bytes(), &Mechanism::ALL, 4096)
            .expect("add user");
    }
}

fn addr_of(broker: &TestBroker, protocol: SecurityProtocol) -> SocketAddr {
    broker
        .listeners
        .iter()
        .find(|l| l.protocol() == protocol)
        .and_then(|l| l.bound_addr())
        .expect("listener bound")
}

/// An rdkafka config for SASL_PLAINTEXT with `mechanism` as `user`.
fn sasl_config(addr: SocketAddr, mechanism: &str, (user, password): (&str, &str)) -> ClientConfig {
    let mut config = freshet_testkit::client_config(&addr.to_string());
    config
        .set("security.protocol", "sasl_plaintext")
        .set("sasl.mechanism", mechanism)
        .set("sasl.username", user)
        .set("sasl.password", password);
    config
}

/// A super user's raw connection, signed in with PLAIN.
async fn admin_connection(addr: SocketAddr) -> RawClient {
    let mut raw = RawClient::connect(addr).await.expect("connect");
    let (code, message) = raw.sasl_plain(ADMIN.0, ADMIN.1).await.expect("sasl");
    assert_eq!(code, 0, "admin signs in: {message:?}");
    raw
}

fn acl(resource_type: i8, name: &str, pattern: i8, principal: &str, operation: i8) -> AclCreation {
    AclCreation::default()
        .with_resource_type(resource_type)
        .with_resource_name(StrBytes::from_string(name.into()))
        .with_resource_pattern_type(pattern)
        .with_principal(StrBytes::from_string(principal.into()))
        .with_host(StrBytes::from_static_str("*"))
        .with_operation(operation)
        .with_permission_type(3)
}

// Kafka's codes: resource TOPIC 2, GROUP 3; pattern LITERAL 3, PREFIXED 4; operation READ 3,
// WRITE 4, DESCRIBE 8.
const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const READ: i8 = 3;
const WRITE: i8 = 4;

async fn create_acls(raw: &mut RawClient, creations: Vec<AclCreation>) {
    let response: CreateAclsResponse = raw
        .call(
            ApiKey::CreateAcls,
            3,
            &CreateAclsRequest::default().with_creations(creations),
        )
        .await
        .expect("CreateAcls");
    for result in &response.results {
        assert_eq!(result.error_code, 0, "{:?}", result.error_message);
    }
}

async fn produce(producer: &FutureProducer, topic: &str, value: &str) -> Result<(), KafkaError> {
    producer
        .send(
            FutureRecord::<str, str>::to(topic).payload(value),
            Duration::from_secs(10),
        )
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
}

async fn consume_one(consumer: &StreamConsumer) -> Result<String, KafkaError> {
    let message = tokio::time::timeout(TIMEOUT, consumer.recv())
        .await
        .expect("a message or an error in time")?;
    Ok(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mechanism_signs_in_and_moves_records_over_sasl_plaintext_and_sasl_ssl() {
    let ca = TestCa::new();
    let certs = tempfile::tempdir().expect("tempdir");
    let tls = ca.tls_config(certs.path(), false);
    let broker = TestBroker::start_with_listeners(
        &["SASL_PLAINTEXT://127.0.0.1:0", "SASL_SSL://127.0.0.1:0"],
        |config| config.tls = Some(tls),
    )
    .await;
    add_users(&broker, &[ALICE]);
    let plain = addr_of(&broker, SecurityProtocol::SaslPlaintext);
    let secure = addr_of(&broker, SecurityProtocol::SaslSsl);

    let cases = [
        (plain, "PLAIN", false),
        (plain, "SCRAM-SHA-256", false),
        (plain, "SCRAM-SHA-512", false),
        (secure, "SCRAM-SHA-256", true),
        (secure, "SCRAM-SHA-512", true),
        (secure, "PLAIN", true),
    ];
    for (i, (addr, mechanism, tls)) in cases.into_iter().enumerate() {
        let topic = format!("sasl-{i}");
        let mut config = sasl_config(addr, mechanism, ALICE);
        if tls {
            ca.configure_client(&mut config, true, None);
        }
        let producer: FutureProducer = config
            .clone()
            .set("acks", "all")
            .create()
            .expect("producer");
        // The first send creates the topic through Metadata (auto-creation is on).
        let mut sent = produce(&producer, &topic, mechanism).await;
        for _ in 0..20 {
            if sent.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            sent = produce(&producer, &topic, mechanism).await;
        }
        sent.unwrap_or_else(|e| panic!("{mechanism} over {addr} (tls {tls}): {e}"));
        let consumer: StreamConsumer = config
            .set("group.id", format!("g-{i}"))
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        consumer.subscribe(&[&topic]).expect("subscribe");
        assert_eq!(consume_one(&consumer).await.expect("consume"), mechanism);
    }
    assert!(
        broker
            .broker
            .metrics
            .authentications_succeeded
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 6
    );
}

/// Errors librdkafka reports through its error callback.
#[derive(Default, Clone)]
struct Errors(Arc<Mutex<Vec<(RDKafkaErrorCode, String)>>>);

impl ClientContext for Errors {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(code) = error.rdkafka_error_code() {
            self.0
                .lock()
                .expect("errors")
                .push((code, reason.to_owned()));
        }
    }

    fn log(&self, _level: RDKafkaLogLevel, _fac: &str, _log_message: &str) {}
}

impl ConsumerContext for Errors {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_at_once_with_an_authentication_error() {
    let broker = TestBroker::start_with_listeners(&["SASL_PLAINTEXT://127.0.0.1:0"], |_| {}).await;
    add_users(&broker, &[ALICE]);
    let addr = addr_of(&broker, SecurityProtocol::SaslPlaintext);

    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let errors = Errors::default();
        let consumer: BaseConsumer<Errors> = sasl_config(addr, mechanism, ("alice", "wrong"))
            .create_with_context(errors.clone())
            .expect("consumer");
        let started = Instant::now();
        // Errors reach the callback while the client is polled.
        let reported = loop {
            consumer.poll(Duration::from_millis(100));
            let reported = errors.0.lock().expect("errors").clone();
            if !reported.is_empty() || started.elapsed() > Duration::from_secs(5) {
                break reported;
            }
        };
        assert!(
            reported
                .iter()
                .any(|(code, reason)| *code == RDKafkaErrorCode::Authentication
                    && reason.contains("Authentication failed")),
            "{mechanism}: {reported:?}"
        );
        assert!(
            consumer
                .fetch_metadata(None, Duration::from_secs(1))
                .is_err(),
            "{mechanism}: no metadata without signing in"
        );
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{mechanism}: no hang"
        );
    }

    // The same over the raw protocol: SASL_AUTHENTICATION_FAILED (58), then the connection
    // closes; an unknown user gets the very same answer.
    for user in ["alice", "nobody"] {
        let mut raw = RawClient::connect(addr).await.expect("connect");
        let (code, message) = raw.sasl_plain(user, "wrong").await.expect("answer");
        assert_eq!(code, 58, "{user}");
        assert!(message.expect("message").contains("invalid credentials"));
        assert!(
            raw.is_closed().await,
            "the connection closes after a failed sign-in"
        );
    }
    // A request before signing in closes the connection.
    let mut raw = RawClient::connect(addr).await.expect("connect");
    raw.send(ApiKey::Metadata, 12, &MetadataRequest::default())
        .await
        .expect("send");
    assert!(
        raw.is_closed().await,
        "Metadata before SASL closes the connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_decide_what_each_principal_may_do_and_survive_a_restart() {
    let broker = TestBroker::start_with_listeners(&["SASL_PLAINTEXT://127.0.0.1:0"], |config| {
        config.acl_authorizer = true;
        config.super_users = vec![Principal::user(ADMIN.0)];
    })
    .await;
    add_users(&broker, &[ADMIN, ALICE]);
    let addr = addr_of(&broker, SecurityProtocol::SaslPlaintext);
    for topic in ["orders", "secret"] {
        broker
            .broker
            .create_topic(topic, 1, TopicConfigs::default())
            .expect("create topic");
    }

    let mut admin = admin_connection(addr).await;
    create_acls(
        &mut admin,
        vec![
            acl(TOPIC, "orders", LITERAL, "User:alice", WRITE),
            acl(TOPIC, "orders", LITERAL, "User:alice", READ),
            acl(GROUP, "alice-", PREFIXED, "User:alice", READ),
        ],
    )
    .await;
    let described: DescribeAclsResponse = admin
        .call(
            ApiKey::DescribeAcls,
            3,
            &DescribeAclsRequest::default()
                .with_resource_name_filter(None)
                .with_principal_filter(None)
                .with_host_filter(None)
                .with_resource_type_filter(1)
                .with_pattern_type_filter(1)
                .with_operation(1)
                .with_permission_type(1),
        )
        .await
        .expect("DescribeAcls");
    assert_eq!(described.error_code, 0);
    let listed: usize = described.resources.iter().map(|r| r.acls.len()).sum();
    assert_eq!(listed, 3);

    check_alice(addr, true).await;

    // Users and ACLs are on disk: a restarted broker enforces the same.
    let broker = broker
        .restart(|config| {
            config.acl_authorizer = true;
            config.super_users = vec![Principal::user(ADMIN.0)];
        })
        .await;
    check_alice(addr, true).await;

    // Deleting alice's ACLs takes her rights away.
    let mut admin = admin_connection(addr).await;
    let deleted: DeleteAclsResponse = admin
        .call(
            ApiKey::DeleteAcls,
            3,
            &DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()
                .with_resource_name_filter(None)
                .with_host_filter(None)
                .with_resource_type_filter(1)
                .with_pattern_type_filter(1)
                .with_principal_filter(Some(StrBytes::from_static_str("User:alice")))
                .with_operation(1)
                .with_permission_type(1)]),
        )
        .await
        .expect("DeleteAcls");
    assert_eq!(deleted.filter_results[0].matching_acls.len(), 3);
    check_alice(addr, false).await;

    // Alice may not manage ACLs herself: CLUSTER_AUTHORIZATION_FAILED (31).
    let mut raw = RawClient::connect(addr).await.expect("connect");
    assert_eq!(raw.sasl_plain(ALICE.0, ALICE.1).await.expect("sasl").0, 0);
    let refused: CreateAclsResponse = raw
        .call(
            ApiKey::CreateAcls,
            3,
            &CreateAclsRequest::default().with_creations(vec![acl(
                TOPIC,
                "*",
                LITERAL,
                "User:alice",
                WRITE,
            )]),
        )
        .await
        .expect("CreateAcls");
    assert_eq!(refused.results[0].error_code, 31);
    drop(broker);
}

/// What alice can do with her ACLs (`granted`) or without them.
async fn check_alice(addr: SocketAddr, granted: bool) {
    let mut config = sasl_config(addr, "SCRAM-SHA-256", ALICE);
    let producer: FutureProducer = config.clone().create().expect("producer");
    let written = produce(&producer, "orders", "hello").await;
    if granted {
        written.expect("alice may write orders");
    } else {
        assert_authorization_error(written, RDKafkaErrorCode::TopicAuthorizationFailed);
    }
    assert_authorization_error(
        produce(&producer, "secret", "x").await,
        RDKafkaErrorCode::TopicAuthorizationFailed,
    );

    // Metadata shows only the topics she may describe.
    let metadata_client: BaseConsumer = config.clone().create().expect("client");
    let metadata = tokio::task::spawn_blocking(move || {
        metadata_client
            .fetch_metadata(None, TIMEOUT)
            .expect("metadata")
            .topics()
            .iter()
            .map(|t| t.name().to_owned())
            .collect::<Vec<_>>()
    })
    .await
    .expect("metadata task");
    let expected: Vec<String> = if granted {
        vec!["orders".into()]
    } else {
        vec![]
    };
    assert_eq!(metadata, expected);

    // A group she may read (alice-*) works; another gets GROUP_AUTHORIZATION_FAILED.
    if granted {
        let consumer: StreamConsumer = config
            .clone()
            .set("group.id", "alice-reader")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        consumer.subscribe(&["orders"]).expect("subscribe");
        assert_eq!(consume_one(&consumer).await.expect("consume"), "hello");
    }
    let consumer: StreamConsumer = config
        .set("group.id", "someone-elses")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["orders"]).expect("subscribe");
    match consume_one(&consumer).await {
        Err(e) => assert_eq!(
            e.rdkafka_error_code(),
            Some(RDKafkaErrorCode::GroupAuthorizationFailed),
            "{e}"
        ),
        Ok(value) => panic!("read {value:?} through a group without Read"),
    }
}

fn assert_authorization_error(result: Result<(), KafkaError>, expected: RDKafkaErrorCode) {
    match result {
        Err(e) => assert_eq!(e.rdkafka_error_code(), Some(expected), "{e}"),
        Ok(()) => panic!("expected {expected:?}, the write succeeded"),
    }
}

/// Kafka's resource type TRANSACTIONAL_ID.
const TRANSACTIONAL_ID: i8 = 5;

/// A TxnOffsetCommit of `alice-txn`'s producer for `group`, partition 0 of `orders` and
/// `secret`.
fn txn_offsets(group: &str, (producer_id, epoch): (i64, i16)) -> TxnOffsetCommitRequest {
    let topic = |name: &str| {
        TxnOffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.into())))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(1)])
    };
    TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(StrBytes::from_static_str("alice-txn")))
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch)
        .with_topics(vec![topic("orders"), topic("secret")])
}

async fn txn_offset_errors(raw: &mut RawClient, request: &TxnOffsetCommitRequest) -> Vec<i16> {
    let response: TxnOffsetCommitResponse = raw
        .call(ApiKey::TxnOffsetCommit, 3, request)
        .await
        .expect("TxnOffsetCommit");
    response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

/// Committing offsets in a transaction takes what Kafka asks for: Write on the transactional
/// id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED, 53) and Read on the group
/// (GROUP_AUTHORIZATION_FAILED, 30), each for the whole request, and Read on each topic
/// (TOPIC_AUTHORIZATION_FAILED, 29, for that topic's partitions alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_offset_commits_take_kafkas_acls() {
    let broker = TestBroker::start_with_listeners(&["SASL_PLAINTEXT://127.0.0.1:0"], |config| {
        config.acl_authorizer = true;
        config.super_users = vec![Principal::user(ADMIN.0)];
    })
    .await;
    add_users(&broker, &[ADMIN, ALICE]);
    let addr = addr_of(&broker, SecurityProtocol::SaslPlaintext);
    for topic in ["orders", "secret"] {
        broker
            .broker
            .create_topic(topic, 1, TopicConfigs::default())
            .expect("create topic");
    }
    let mut admin = admin_connection(addr).await;
    let mut alice = RawClient::connect(addr).await.expect("connect");
    assert_eq!(alice.sasl_plain(ALICE.0, ALICE.1).await.expect("sasl").0, 0);

    let unknown_producer = (0, 0);
    let request = txn_offsets("alice-group", unknown_producer);
    assert_eq!(txn_offset_errors(&mut alice, &request).await, vec![53, 53]);
    let grant = acl(TRANSACTIONAL_ID, "alice-txn", LITERAL, "User:alice", WRITE);
    create_acls(&mut admin, vec![grant]).await;
    assert_eq!(txn_offset_errors(&mut alice, &request).await, vec![30, 30]);

    let init: InitProducerIdResponse = alice
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str(
                    "alice-txn",
                ))))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .await
        .expect("InitProducerId");
    assert_eq!(init.error_code, 0);
    let producer = (init.producer_id.0, init.producer_epoch);
    let add = AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(StrBytes::from_static_str("alice-txn")))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_group_id(GroupId(StrBytes::from_static_str("alice-group")));
    let added: AddOffsetsToTxnResponse = alice
        .call(ApiKey::AddOffsetsToTxn, 3, &add)
        .await
        .expect("AddOffsetsToTxn");
    assert_eq!(
        added.error_code, 30,
        "AddOffsetsToTxn needs Read on the group too"
    );

    let grants = vec![
        acl(GROUP, "alice-group", LITERAL, "User:alice", READ),
        acl(TOPIC, "orders", LITERAL, "User:alice", READ),
    ];
    create_acls(&mut admin, grants).await;
    let added: AddOffsetsToTxnResponse = alice
        .call(ApiKey::AddOffsetsToTxn, 3, &add)
        .await
        .expect("AddOffsetsToTxn");
    assert_eq!(added.error_code, 0);
    let request = txn_offsets("alice-group", producer);
    assert_eq!(txn_offset_errors(&mut alice, &request).await, vec![0, 29]);
}
