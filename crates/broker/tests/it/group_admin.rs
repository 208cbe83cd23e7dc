//! DeleteGroups (through librdkafka's admin client) and OffsetDelete (over the wire: the Rust
//! rdkafka crate does not wrap it) against a real broker: Kafka's error codes, deletions that
//! survive a restart, and the ACLs each needs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use freshet_broker::listener::SecurityProtocol;
use freshet_security::scram::Mechanism;
use freshet_security::users::UserStore;
use freshet_security::Principal;
use freshet_testkit::raw::RawClient;
use freshet_testkit::TestBroker;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, CreateAclsRequest, CreateAclsResponse, DeleteGroupsRequest, DeleteGroupsResponse,
    GroupId, OffsetDeleteRequest, OffsetDeleteResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::AdminOptions;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(20);
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const GROUP_ID_NOT_FOUND: i16 = 69;
const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;

/// Commits `offset` for partitions 0 and 1 of `topic` as `group` from outside the group
/// (librdkafka's standalone commit), through a client built from `config`.
async fn commit_standalone(config: rdkafka::ClientConfig, group: &str, topic: &str, offset: i64) {
    let (group, topic) = (group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config
            .clone()
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut offsets = TopicPartitionList::new();
        for partition in 0..2 {
            offsets
                .add_partition_offset(&topic, partition, Offset::Offset(offset))
                .expect("offset");
        }
        consumer
            .commit(&offsets, CommitMode::Sync)
            .expect("commit acknowledged");
    })
    .await
    .expect("commit thread");
}

/// The committed offsets of partitions 0 and 1 of `topic` (`None` = no commit), by OffsetFetch.
async fn committed(broker: &TestBroker, group: &str, topic: &str) -> Vec<Option<i64>> {
    let (config, group, topic) = (broker.client_config(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let reader: BaseConsumer = config
            .clone()
            .set("group.id", &group)
            .create()
            .expect("consumer");
        let mut wanted = TopicPartitionList::new();
        wanted.add_partition(&topic, 0);
        wanted.add_partition(&topic, 1);
        let committed = reader
            .committed_offsets(wanted, Timeout::After(TIMEOUT))
            .expect("OffsetFetch");
        committed
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            })
            .collect()
    })
    .await
    .expect("reader thread")
}

/// A group member subscribed to `topic`, polled until it owns partitions.
async fn active_member(broker: &TestBroker, group: &str, topic: &str) -> Arc<StreamConsumer> {
    let consumer = Arc::new(broker.consumer(group, &[]));
    consumer.subscribe(&[topic]).expect("subscribe");
    let poller = consumer.clone();
    tokio::spawn(async move {
        loop {
            let _ = poller.recv().await;
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while consumer.assignment().map_or(0, |a| a.count()) == 0 {
        assert!(Instant::now() < deadline, "the member got no partitions");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    consumer
}

fn offset_delete_request(group: &str, partitions: &[(&str, &[i32])]) -> OffsetDeleteRequest {
    let topics = partitions
        .iter()
        .map(|(topic, ps)| {
            OffsetDeleteRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string((*topic).to_owned())))
                .with_partitions(
                    ps.iter()
                        .map(|&p| OffsetDeleteRequestPartition::default().with_partition_index(p))
                        .collect(),
                )
        })
        .collect();
    OffsetDeleteRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_topics(topics)
}

/// OffsetDelete v0: the top-level error and `(topic, partition, error)` per partition.
async fn offset_delete(
    raw: &mut RawClient,
    group: &str,
    partitions: &[(&str, &[i32])],
) -> (i16, Vec<(String, i32, i16)>) {
    let response: OffsetDeleteResponse = raw
        .call(
            ApiKey::OffsetDelete,
            0,
            &offset_delete_request(group, partitions),
        )
        .await
        .expect("OffsetDelete");
    let partitions = response
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.to_string(), p.partition_index, p.error_code))
        })
        .collect();
    (response.error_code, partitions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_groups_deletes_only_empty_groups_with_their_offsets_across_a_restart() {
    let broker = TestBroker::start().await;
    broker.create_topic("orders", 2, &[]).await;
    commit_standalone(broker.client_config(), "idle", "orders", 5).await;
    assert_eq!(
        committed(&broker, "idle", "orders").await,
        [Some(5), Some(5)]
    );
    let busy = active_member(&broker, "busy", "orders").await;

    let admin = broker.admin();
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let results = admin
        .delete_groups(&["idle", "busy", "never-was"], &options)
        .await
        .expect("DeleteGroups");
    assert_eq!(
        results,
        vec![
            Ok("idle".to_owned()),
            Err(("busy".to_owned(), RDKafkaErrorCode::NonEmptyGroup)),
            Err(("never-was".to_owned(), RDKafkaErrorCode::GroupIdNotFound)),
        ]
    );
    assert_eq!(committed(&broker, "idle", "orders").await, [None, None]);
    drop(admin);
    drop(busy);

    let broker = broker.restart(|_| {}).await;
    assert_eq!(
        committed(&broker, "idle", "orders").await,
        [None, None],
        "the deletion survives the restart"
    );
    let groups = broker.broker.groups.groups_overview();
    assert!(groups.iter().all(|g| g.group_id != "idle"), "{groups:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_delete_spares_subscribed_topics_and_survives_a_restart() {
    let broker = TestBroker::start().await;
    broker.create_topic("orders", 2, &[]).await;
    broker.create_topic("audit", 2, &[]).await;
    commit_standalone(broker.client_config(), "g", "orders", 7).await;
    commit_standalone(broker.client_config(), "g", "audit", 9).await;
    let mut raw = RawClient::connect(broker.addr).await.expect("connect");

    let (error, partitions) = offset_delete(&mut raw, "g", &[("orders", &[0, 5])]).await;
    assert_eq!(error, 0);
    assert_eq!(
        partitions,
        vec![
            ("orders".into(), 0, 0),
            ("orders".into(), 5, UNKNOWN_TOPIC_OR_PARTITION),
        ]
    );
    assert_eq!(committed(&broker, "g", "orders").await, [None, Some(7)]);

    // An active member subscribed to `audit` keeps its offsets; `orders` is not in use.
    let member = active_member(&broker, "g", "audit").await;
    let (error, partitions) =
        offset_delete(&mut raw, "g", &[("audit", &[0]), ("orders", &[1])]).await;
    assert_eq!(error, 0);
    assert_eq!(
        partitions,
        vec![
            ("audit".into(), 0, GROUP_SUBSCRIBED_TO_TOPIC),
            ("orders".into(), 1, 0),
        ]
    );
    assert_eq!(
        offset_delete(&mut raw, "nobody", &[("orders", &[0])]).await,
        (GROUP_ID_NOT_FOUND, vec![])
    );
    drop(member);
    drop(raw);

    let broker = broker.restart(|_| {}).await;
    assert_eq!(committed(&broker, "g", "orders").await, [None, None]);
    assert_eq!(committed(&broker, "g", "audit").await, [Some(9), Some(9)]);
}

// Kafka's ACL codes: resource TOPIC 2, GROUP 3; pattern LITERAL 3; operation READ 3,
// DELETE 6; permission ALLOW 3.
const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const READ: i8 = 3;
const DELETE: i8 = 6;

fn allow(resource_type: i8, name: &str, principal: &str, operation: i8) -> AclCreation {
    AclCreation::default()
        .with_resource_type(resource_type)
        .with_resource_name(StrBytes::from_string(name.into()))
        .with_resource_pattern_type(3)
        .with_principal(StrBytes::from_string(principal.into()))
        .with_host(StrBytes::from_static_str("*"))
        .with_operation(operation)
        .with_permission_type(3)
}

async fn signed_in(addr: SocketAddr, (user, password): (&str, &str)) -> RawClient {
    let mut raw = RawClient::connect(addr).await.expect("connect");
    let (code, message) = raw.sasl_plain(user, password).await.expect("sasl");
    assert_eq!(code, 0, "{user} signs in: {message:?}");
    raw
}

async fn delete_groups_raw(raw: &mut RawClient, groups: &[&str]) -> Vec<(String, i16)> {
    let request = DeleteGroupsRequest::default().with_groups_names(
        groups
            .iter()
            .map(|g| GroupId(StrBytes::from_string((*g).to_owned())))
            .collect(),
    );
    let response: DeleteGroupsResponse = raw
        .call(ApiKey::DeleteGroups, 2, &request)
        .await
        .expect("DeleteGroups");
    response
        .results
        .iter()
        .map(|r| (r.group_id.to_string(), r.error_code))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_needs_delete_on_the_group_and_read_on_the_topic() {
    const ADMIN: (&str, &str) = ("admin", "admin-secret");
    const ALICE: (&str, &str) = ("alice", "alice-secret");
    let broker = TestBroker::start_with_listeners(&["SASL_PLAINTEXT://127.0.0.1:0"], |config| {
        config.acl_authorizer = true;
        config.super_users = vec![Principal::user(ADMIN.0)];
    })
    .await;
    let users = UserStore::open(broker.data_dir()).expect("user store");
    for (name, password) in [ADMIN, ALICE] {
        users
            .add(name, password.as_bytes(), &Mechanism::ALL, 4096)
            .expect("add user");
    }
    let addr = broker.listener_addr(SecurityProtocol::SaslPlaintext);
    let mut admin = signed_in(addr, ADMIN).await;
    for topic in ["mine", "theirs"] {
        broker
            .broker
            .create_topic(topic, 2, Default::default())
            .expect("create topic");
    }
    let admin_config = {
        let mut config = freshet_testkit::client_config(&addr.to_string());
        config
            .set("security.protocol", "sasl_plaintext")
            .set("sasl.mechanism", "PLAIN")
            .set("sasl.username", ADMIN.0)
            .set("sasl.password", ADMIN.1);
        config
    };
    for group in ["alices", "others"] {
        commit_standalone(admin_config.clone(), group, "mine", 3).await;
        commit_standalone(admin_config.clone(), group, "theirs", 4).await;
    }
    let response: CreateAclsResponse = admin
        .call(
            ApiKey::CreateAcls,
            3,
            &CreateAclsRequest::default().with_creations(vec![
                allow(GROUP, "alices", "User:alice", DELETE),
                allow(TOPIC, "mine", "User:alice", READ),
            ]),
        )
        .await
        .expect("CreateAcls");
    assert!(response.results.iter().all(|r| r.error_code == 0));

    let mut alice = signed_in(addr, ALICE).await;
    assert_eq!(
        offset_delete(&mut alice, "others", &[("mine", &[0])]).await,
        (GROUP_AUTHORIZATION_FAILED, vec![])
    );
    let (error, partitions) =
        offset_delete(&mut alice, "alices", &[("mine", &[0]), ("theirs", &[0])]).await;
    assert_eq!(error, 0);
    assert_eq!(
        partitions,
        vec![
            ("mine".into(), 0, 0),
            ("theirs".into(), 0, TOPIC_AUTHORIZATION_FAILED),
        ]
    );
    assert_eq!(
        delete_groups_raw(&mut alice, &["others", "alices"]).await,
        vec![
            ("alices".into(), 0),
            ("others".into(), GROUP_AUTHORIZATION_FAILED)
        ]
    );
    // What alice was refused is still there.
    let offsets = |group: &str| {
        broker
            .broker
            .groups
            .groups_overview()
            .into_iter()
            .find(|g| g.group_id == group)
            .map(|g| g.offsets.len())
    };
    assert_eq!(offsets("others"), Some(4));
    assert_eq!(offsets("alices"), None);
}
