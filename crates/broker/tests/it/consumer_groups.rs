//! KIP-848 consumer groups (`group.protocol=consumer`) on a real broker: librdkafka consumers
//! sharing a topic, committing, handing partitions over and carrying on across a broker
//! restart; and, over the raw protocol, the error codes of ConsumerGroupHeartbeat, of
//! OffsetCommit/OffsetFetch v9 and of a group id used by both protocols.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use freshet_broker::listener::SecurityProtocol;
use freshet_broker::topics::TopicConfigs;
use freshet_broker::BrokerConfig;
use freshet_security::scram::Mechanism;
use freshet_security::users::UserStore;
use freshet_security::Principal;
use freshet_testkit::raw::RawClient;
use freshet_testkit::TestBroker;
use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

/// Fast heartbeats and sessions, so that rebalances and expiries take fractions of a second.
fn fast_groups(config: &mut BrokerConfig) {
    config.coordinator.consumer_heartbeat_interval = Duration::from_millis(200);
    config.coordinator.consumer_session_timeout = Duration::from_secs(4);
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

fn group(id: &str) -> GroupId {
    GroupId(s(id))
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(s(topic))
}

/// A librdkafka consumer of `group` using the consumer group protocol.
fn consumer(broker: &TestBroker, group: &str) -> Arc<StreamConsumer> {
    let mut config = broker.client_config();
    config
        .set("group.id", group)
        .set("group.protocol", "consumer")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    Arc::new(config.create().expect("consumer"))
}

/// Keeps a consumer polling: librdkafka applies assignments while the application polls.
fn keep_polling(consumer: Arc<StreamConsumer>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let _ = consumer.recv().await;
        }
    })
}

/// The partitions of `topic` the consumer has been assigned.
fn assigned(consumer: &StreamConsumer) -> BTreeSet<i32> {
    consumer
        .assignment()
        .map(|list| list.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

/// Waits until `condition` holds, failing the test after `limit`.
async fn eventually(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn produce(broker: &TestBroker, topic: &str, partitions: i32, per_partition: i32) {
    let producer = broker.producer(&[]);
    for partition in 0..partitions {
        for i in 0..per_partition {
            producer
                .send(
                    FutureRecord::to(topic)
                        .key("k")
                        .payload(&format!("{partition}-{i}"))
                        .partition(partition),
                    Timeout::After(Duration::from_secs(10)),
                )
                .await
                .expect("acknowledged");
        }
    }
}

/// Commits `offset` for each of `partitions` of `topic`, as a group member (OffsetCommit v9
/// with the member's epoch), off the async workers: librdkafka's commit blocks.
async fn commit(
    consumer: &Arc<StreamConsumer>,
    topic: &str,
    partitions: &BTreeSet<i32>,
    offset: i64,
) {
    let mut list = TopicPartitionList::new();
    for partition in partitions {
        list.add_partition_offset(topic, *partition, Offset::Offset(offset))
            .expect("offset");
    }
    let consumer = consumer.clone();
    tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync))
        .await
        .expect("commit thread")
        .expect("commit acknowledged");
}

/// The group's committed offsets of `topic`'s partitions, read by a member (OffsetFetch v9).
async fn committed(consumer: &Arc<StreamConsumer>, topic: &str, partitions: i32) -> Vec<i64> {
    let mut wanted = TopicPartitionList::new();
    for partition in 0..partitions {
        wanted.add_partition(topic, partition);
    }
    let consumer = consumer.clone();
    let list = tokio::task::spawn_blocking(move || {
        consumer.committed_offsets(wanted, Timeout::After(Duration::from_secs(10)))
    })
    .await
    .expect("fetch thread")
    .expect("OffsetFetch");
    list.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => -1,
        })
        .collect()
}

async fn describe(broker: &TestBroker, group_id: &str) -> DescribedGroup {
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![group(group_id)]);
    let response: ConsumerGroupDescribeResponse = client
        .call(ApiKey::ConsumerGroupDescribe, 1, &request)
        .await
        .expect("ConsumerGroupDescribe");
    response.groups.into_iter().next().expect("one group")
}

/// The group once it is Stable (every member at the target assignment's epoch): members
/// learn they are done only at their next heartbeat.
async fn stable(broker: &TestBroker, group_id: &str) -> DescribedGroup {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let described = describe(broker, group_id).await;
        assert_eq!(described.error_code, 0, "{:?}", described.error_message);
        if described.group_state.as_str() == "Stable" {
            return described;
        }
        assert!(Instant::now() < deadline, "not Stable: {described:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_split_a_topic_commit_and_one_takes_over_when_the_other_leaves() {
    let broker = TestBroker::start_with(fast_groups).await;
    broker.create_topic("orders", 6, &[]).await;
    produce(&broker, "orders", 6, 10).await;

    let first = consumer(&broker, "kip848");
    first.subscribe(&["orders"]).expect("subscribe");
    let _first_poller = keep_polling(first.clone());
    eventually(
        "the first consumer owns all 6",
        Duration::from_secs(20),
        || assigned(&first).len() == 6,
    )
    .await;

    let second = consumer(&broker, "kip848");
    second.subscribe(&["orders"]).expect("subscribe");
    let second_poller = keep_polling(second.clone());
    // Partitions move only once their previous owner has revoked them: at no moment do both
    // consumers own the same partition.
    eventually("6 partitions split 3/3", Duration::from_secs(20), || {
        let (a, b) = (assigned(&first), assigned(&second));
        assert!(a.is_disjoint(&b), "both own a partition: {a:?} {b:?}");
        a.len() == 3 && b.len() == 3
    })
    .await;
    let described = stable(&broker, "kip848").await;
    assert_eq!(described.members.len(), 2);
    assert_eq!(described.assignor_name.as_str(), "uniform");

    // Each member commits its own partitions at its member epoch; members read them back.
    let (mine, theirs) = (assigned(&first), assigned(&second));
    commit(&first, "orders", &mine, 4).await;
    commit(&second, "orders", &theirs, 7).await;
    let expected: Vec<i64> = (0..6)
        .map(|p| if mine.contains(&p) { 4 } else { 7 })
        .collect();
    assert_eq!(committed(&first, "orders", 6).await, expected);
    assert_eq!(committed(&second, "orders", 6).await, expected);

    // The second consumer leaves (epoch -1 on unsubscribe): the first gets everything.
    second_poller.abort();
    let _ = second_poller.await;
    second.unsubscribe();
    drop(second);
    eventually(
        "the first consumer owns all 6 again",
        Duration::from_secs(20),
        || assigned(&first).len() == 6,
    )
    .await;
    let described = stable(&broker, "kip848").await;
    assert_eq!(described.members.len(), 1);
    assert_eq!(described.group_epoch, described.assignment_epoch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_keeps_its_epoch_and_partitions_across_a_broker_restart() {
    let broker = TestBroker::start_with(fast_groups).await;
    broker.create_topic("ledger", 4, &[]).await;
    produce(&broker, "ledger", 4, 5).await;
    let member = consumer(&broker, "durable");
    member.subscribe(&["ledger"]).expect("subscribe");
    let poller = keep_polling(member.clone());
    eventually("the consumer owns all 4", Duration::from_secs(20), || {
        assigned(&member).len() == 4
    })
    .await;
    let all: BTreeSet<i32> = (0..4).collect();
    commit(&member, "ledger", &all, 3).await;
    let before = stable(&broker, "durable").await;

    let broker = broker.restart(fast_groups).await;
    // Several heartbeat intervals: the member reconnects and heartbeats at its old epoch.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = describe(&broker, "durable").await;
    let identity = |g: &DescribedGroup| {
        let m = &g.members[0];
        (
            g.members.len(),
            m.member_id.clone(),
            m.member_epoch,
            g.group_epoch,
        )
    };
    assert_eq!(
        identity(&after),
        identity(&before),
        "no rebalance after the restart"
    );
    assert_eq!(after.group_state.as_str(), "Stable");
    assert_eq!(assigned(&member), all);
    assert_eq!(committed(&member, "ledger", 4).await, vec![3; 4]);
    commit(&member, "ledger", &all, 5).await;
    assert_eq!(committed(&member, "ledger", 4).await, vec![5; 4]);
    poller.abort();
}

/// A ConsumerGroupHeartbeat v1 joining `group_id` as `member`, subscribed to `topics`.
fn join(group_id: &str, member: &str, topics: &[&str]) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(group(group_id))
        .with_member_id(s(member))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(topics.iter().map(|t| topic_name(t)).collect()))
        .with_topic_partitions(Some(Vec::new()))
}

async fn heartbeat(
    client: &mut RawClient,
    request: &ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    client
        .call(ApiKey::ConsumerGroupHeartbeat, 1, request)
        .await
        .expect("ConsumerGroupHeartbeat")
}

fn error(code: i16) -> Option<ResponseError> {
    ResponseError::try_from_code(code)
}

fn commit_request(group_id: &str, member: &str, epoch: i32) -> OffsetCommitRequest {
    let partition = OffsetCommitRequestPartition::default()
        .with_partition_index(0)
        .with_committed_offset(1);
    OffsetCommitRequest::default()
        .with_group_id(group(group_id))
        .with_member_id(s(member))
        .with_generation_id_or_member_epoch(epoch)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name("raw"))
            .with_partitions(vec![partition])])
}

async fn commit_error(client: &mut RawClient, group_id: &str, member: &str, epoch: i32) -> i16 {
    let response: OffsetCommitResponse = client
        .call(
            ApiKey::OffsetCommit,
            9,
            &commit_request(group_id, member, epoch),
        )
        .await
        .expect("OffsetCommit");
    response.topics[0].partitions[0].error_code
}

async fn fetch_error(client: &mut RawClient, group_id: &str, member: &str, epoch: i32) -> i16 {
    let wanted = OffsetFetchRequestGroup::default()
        .with_group_id(group(group_id))
        .with_member_id(Some(s(member)))
        .with_member_epoch(epoch)
        .with_topics(Some(vec![OffsetFetchRequestTopics::default()
            .with_name(topic_name("raw"))
            .with_partition_indexes(vec![0])]));
    let request = OffsetFetchRequest::default().with_groups(vec![wanted]);
    let response: OffsetFetchResponse = client
        .call(ApiKey::OffsetFetch, 9, &request)
        .await
        .expect("OffsetFetch");
    response.groups[0].error_code
}

#[tokio::test]
async fn heartbeat_errors_member_epochs_and_protocol_mixing_over_the_wire() {
    let broker = TestBroker::start_with(fast_groups).await;
    broker.create_topic("raw", 2, &[]).await;
    let mut client = RawClient::connect(broker.addr).await.expect("connect");

    let joined = heartbeat(&mut client, &join("g", "m1", &["raw"])).await;
    assert_eq!(joined.error_code, 0, "{:?}", joined.error_message);
    assert_eq!(joined.member_epoch, 1);
    assert_eq!(joined.heartbeat_interval_ms, 200);
    let assignment = joined.assignment.expect("a join gets its assignment");
    assert_eq!(assignment.topic_partitions[0].partitions, [0, 1]);

    // Refusals, each with Kafka's error code.
    let refused = [
        (
            join("g", "m2", &["raw"]).with_server_assignor(Some(s("sticky"))),
            ResponseError::UnsupportedAssignor,
        ),
        (
            join("g", "m2", &[]).with_subscribed_topic_regex(Some(s("raw-("))),
            ResponseError::InvalidRegularExpression,
        ),
        (join("g", "", &["raw"]), ResponseError::InvalidRequest),
        (
            join("g", "m2", &["raw"]).with_topic_partitions(None),
            ResponseError::InvalidRequest,
        ),
        (
            join("g", "m1", &["raw"]).with_member_epoch(7),
            ResponseError::FencedMemberEpoch,
        ),
        (
            join("g", "stranger", &["raw"]).with_member_epoch(1),
            ResponseError::UnknownMemberId,
        ),
        (
            join("missing", "m1", &["raw"]).with_member_epoch(1),
            ResponseError::GroupIdNotFound,
        ),
    ];
    for (request, expected) in refused {
        let response = heartbeat(&mut client, &request).await;
        assert_eq!(error(response.error_code), Some(expected), "{request:?}");
        assert!(
            response.error_message.is_some(),
            "{expected:?} comes with a message"
        );
    }

    // OffsetCommit and OffsetFetch v9 check the member epoch.
    assert_eq!(commit_error(&mut client, "g", "m1", 1).await, 0);
    let stale = ResponseError::StaleMemberEpoch.code();
    let unknown = ResponseError::UnknownMemberId.code();
    assert_eq!(commit_error(&mut client, "g", "m1", 0).await, stale);
    assert_eq!(commit_error(&mut client, "g", "nobody", 1).await, unknown);
    assert_eq!(commit_error(&mut client, "g", "", -1).await, unknown);
    assert_eq!(fetch_error(&mut client, "g", "m1", 1).await, 0);
    assert_eq!(fetch_error(&mut client, "g", "m1", 2).await, stale);

    // A classic member may not join the consumer group while it has members.
    let classic_join = JoinGroupRequest::default()
        .with_group_id(group("g"))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"\0\0"))]);
    let joined: JoinGroupResponse = client
        .call(ApiKey::JoinGroup, 5, &classic_join)
        .await
        .expect("JoinGroup");
    assert_eq!(
        error(joined.error_code),
        Some(ResponseError::InconsistentGroupProtocol)
    );

    // The classic views: ListGroups shows its type and state, DescribeGroups v6 says it is
    // not a classic group, and DeleteGroups refuses a group with members.
    let listed: ListGroupsResponse = client
        .call(ApiKey::ListGroups, 5, &ListGroupsRequest::default())
        .await
        .expect("ListGroups");
    let g = listed
        .groups
        .iter()
        .find(|l| l.group_id.as_str() == "g")
        .expect("listed");
    let listed_as = (
        g.group_type.as_str(),
        g.protocol_type.as_str(),
        g.group_state.as_str(),
    );
    assert_eq!(listed_as, ("consumer", "consumer", "Stable"));
    let described: DescribeGroupsResponse = client
        .call(
            ApiKey::DescribeGroups,
            6,
            &DescribeGroupsRequest::default().with_groups(vec![group("g")]),
        )
        .await
        .expect("DescribeGroups");
    assert_eq!(
        described.groups[0].error_message.as_deref(),
        Some("Group g is not a classic group.")
    );
    let deleted: DeleteGroupsResponse = client
        .call(
            ApiKey::DeleteGroups,
            2,
            &DeleteGroupsRequest::default().with_groups_names(vec![group("g")]),
        )
        .await
        .expect("DeleteGroups");
    assert_eq!(
        error(deleted.results[0].error_code),
        Some(ResponseError::NonEmptyGroup)
    );

    // Once its last member left, the group may become a classic group.
    let leave = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(group("g"))
        .with_member_id(s("m1"))
        .with_member_epoch(-1);
    let left = heartbeat(&mut client, &leave).await;
    assert_eq!((left.error_code, left.member_epoch), (0, -1));
    let joined: JoinGroupResponse = client
        .call(ApiKey::JoinGroup, 3, &classic_join)
        .await
        .expect("JoinGroup");
    assert_eq!(joined.error_code, 0);
    // ...and a classic group with members refuses consumer-protocol members.
    let refused = heartbeat(&mut client, &join("g", "m3", &["raw"])).await;
    assert_eq!(
        error(refused.error_code),
        Some(ResponseError::GroupIdNotFound)
    );

    // Before v1 (KIP-1082) a member may join without an id: the broker gives it one.
    let v0: ConsumerGroupHeartbeatResponse = client
        .call(
            ApiKey::ConsumerGroupHeartbeat,
            0,
            &join("v0-group", "", &["raw"]),
        )
        .await
        .expect("ConsumerGroupHeartbeat v0");
    assert_eq!(v0.error_code, 0, "{:?}", v0.error_message);
    assert!(v0.member_id.is_some_and(|id| !id.is_empty()));
    assert_eq!(v0.member_epoch, 1);
}

const ADMIN: (&str, &str) = ("admin", "admin-secret");
const ALICE: (&str, &str) = ("alice", "alice-secret");
// Kafka's ACL codes: resource TOPIC 2, GROUP 3; operation READ 3 (which implies DESCRIBE).
const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const READ: i8 = 3;

/// A CreateAcls entry allowing `principal` `operation` on the literal resource.
fn allow(resource_type: i8, name: &str, principal: &str, operation: i8) -> AclCreation {
    AclCreation::default()
        .with_resource_type(resource_type)
        .with_resource_name(s(name))
        .with_resource_pattern_type(3)
        .with_principal(s(principal))
        .with_host(s("*"))
        .with_operation(operation)
        .with_permission_type(3)
}

async fn grant(admin: &mut RawClient, creations: Vec<AclCreation>) {
    let request = CreateAclsRequest::default().with_creations(creations);
    let response: CreateAclsResponse = admin
        .call(ApiKey::CreateAcls, 3, &request)
        .await
        .expect("CreateAcls");
    assert!(response.results.iter().all(|r| r.error_code == 0));
}

async fn signed_in(addr: std::net::SocketAddr, (user, password): (&str, &str)) -> RawClient {
    let mut raw = RawClient::connect(addr).await.expect("connect");
    let (code, message) = raw.sasl_plain(user, password).await.expect("sasl");
    assert_eq!(code, 0, "{user} signs in: {message:?}");
    raw
}

async fn describe_error(client: &mut RawClient, group_id: &str) -> Option<ResponseError> {
    let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![group(group_id)]);
    let response: ConsumerGroupDescribeResponse = client
        .call(ApiKey::ConsumerGroupDescribe, 1, &request)
        .await
        .expect("ConsumerGroupDescribe");
    error(response.groups[0].error_code)
}

/// Kafka's ACLs: a heartbeat needs Read on the group and Describe on each subscribed topic;
/// a description needs Describe on the group and on every topic its members name.
#[tokio::test]
async fn acls_guard_heartbeats_and_descriptions() {
    let broker = TestBroker::start_with_listeners(&["SASL_PLAINTEXT://127.0.0.1:0"], |config| {
        fast_groups(config);
        config.acl_authorizer = true;
        config.super_users = vec![Principal::user(ADMIN.0)];
    })
    .await;
    let store = UserStore::open(broker.data_dir()).expect("user store");
    for (user, password) in [ADMIN, ALICE] {
        store
            .add(user, password.as_bytes(), &Mechanism::ALL, 4096)
            .expect("add user");
    }
    for topic in ["orders", "secret"] {
        broker
            .broker
            .create_topic(topic, 1, TopicConfigs::default())
            .expect("create topic");
    }
    let addr = broker.listener_addr(SecurityProtocol::SaslPlaintext);
    let mut admin = signed_in(addr, ADMIN).await;
    let mut alice = signed_in(addr, ALICE).await;

    let join_orders = join("alice-group", "a1", &["orders"]);
    let denied = heartbeat(&mut alice, &join_orders).await;
    assert_eq!(
        error(denied.error_code),
        Some(ResponseError::GroupAuthorizationFailed)
    );
    grant(
        &mut admin,
        vec![allow(GROUP, "alice-group", "User:alice", READ)],
    )
    .await;
    let denied = heartbeat(&mut alice, &join_orders).await;
    assert_eq!(
        error(denied.error_code),
        Some(ResponseError::TopicAuthorizationFailed)
    );
    grant(&mut admin, vec![allow(TOPIC, "orders", "User:alice", READ)]).await;
    let joined = heartbeat(&mut alice, &join_orders).await;
    assert_eq!((joined.error_code, joined.member_epoch), (0, 1));
    assert_eq!(describe_error(&mut alice, "alice-group").await, None);

    // Another member names a topic alice may not describe: the group is hidden from her.
    let spy = heartbeat(&mut admin, &join("alice-group", "spy", &["secret"])).await;
    assert_eq!(spy.error_code, 0);
    assert_eq!(
        describe_error(&mut alice, "alice-group").await,
        Some(ResponseError::TopicAuthorizationFailed)
    );
    assert_eq!(
        describe_error(&mut alice, "someone-elses").await,
        Some(ResponseError::GroupAuthorizationFailed)
    );
}
