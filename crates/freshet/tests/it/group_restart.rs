//! Consumer group membership survives a broker crash: a real `freshet broker` is killed with
//! SIGKILL while a librdkafka consumer and a second member share a group, and restarted on
//! the same port and data directory. The consumer carries on at the same generation, with the
//! same partitions and no rebalance; the second member, which never comes back, expires after
//! its session timeout, and the consumer then gets every partition.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use freshet_testkit::raw::RawClient;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolSubscription, DescribeGroupsRequest, DescribeGroupsResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, SyncGroupRequest,
    SyncGroupResponse,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::common;
use common::{client_config, BrokerProcess};

const TOPIC: &str = "restart";
const GROUP: &str = "survivors";

/// Counts the partition assignments librdkafka hands the application: one per rebalance.
struct Assignments(AtomicUsize);

impl ClientContext for Assignments {}

impl ConsumerContext for Assignments {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if matches!(rebalance, Rebalance::Assign(_)) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

type Member = BaseConsumer<Assignments>;

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn create_topic(addr: &str) {
    let admin: AdminClient<DefaultClientContext> = client_config(addr).create().expect("admin");
    let topic = NewTopic::new(TOPIC, 2, TopicReplication::Fixed(1));
    let created = futures::executor::block_on(admin.create_topics([&topic], &AdminOptions::new()))
        .expect("create topics");
    assert!(matches!(created.as_slice(), [Ok(_)]), "{created:?}");
}

/// A librdkafka group member, polled by its own thread until `stop`.
fn start_member(addr: &str, stop: Arc<AtomicBool>) -> Arc<Member> {
    let consumer: Member = client_config(addr)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "300")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .create_with_context(Assignments(AtomicUsize::new(0)))
        .expect("consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let consumer = Arc::new(consumer);
    let poller = consumer.clone();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let _ = poller.poll(Duration::from_millis(50));
        }
    });
    consumer
}

fn assigned(member: &Member) -> usize {
    member.assignment().map_or(0, |a| a.count())
}

fn rebalances(member: &Member) -> usize {
    member.context().0.load(Ordering::SeqCst)
}

async fn eventually(what: &str, limit: Duration, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn group_id() -> GroupId {
    GroupId(StrBytes::from_static_str(GROUP))
}

/// A member speaking the protocol itself, so that it can fall silent at a chosen moment.
struct SilentMember {
    raw: RawClient,
    member_id: StrBytes,
    generation: i32,
}

impl SilentMember {
    /// Joins (making the group rebalance; the librdkafka member rejoins as it polls) and syncs.
    async fn join(addr: SocketAddr) -> SilentMember {
        let mut raw = RawClient::connect(addr).await.expect("connect");
        let subscription = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str(TOPIC)]);
        let mut metadata = BytesMut::new();
        metadata.put_i16(0);
        subscription
            .encode(&mut metadata, 0)
            .expect("encode subscription");
        let join = JoinGroupRequest::default()
            .with_group_id(group_id())
            .with_session_timeout_ms(15_000)
            .with_rebalance_timeout_ms(30_000)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(metadata.freeze())]);
        let joined: JoinGroupResponse = raw
            .call(ApiKey::JoinGroup, 3, &join)
            .await
            .expect("JoinGroup");
        assert_eq!(joined.error_code, 0);
        assert_ne!(
            joined.leader, joined.member_id,
            "the librdkafka member leads"
        );
        let sync = SyncGroupRequest::default()
            .with_group_id(group_id())
            .with_generation_id(joined.generation_id)
            .with_member_id(joined.member_id.clone());
        let synced: SyncGroupResponse = raw
            .call(ApiKey::SyncGroup, 3, &sync)
            .await
            .expect("SyncGroup");
        assert_eq!(synced.error_code, 0);
        assert_ne!(synced.assignment, Bytes::new(), "it got a partition");
        SilentMember {
            raw,
            member_id: joined.member_id,
            generation: joined.generation_id,
        }
    }

    async fn heartbeat(&mut self) -> i16 {
        let request = HeartbeatRequest::default()
            .with_group_id(group_id())
            .with_generation_id(self.generation)
            .with_member_id(self.member_id.clone());
        let response: HeartbeatResponse = self
            .raw
            .call(ApiKey::Heartbeat, 3, &request)
            .await
            .expect("Heartbeat");
        response.error_code
    }
}

/// The group's state and member ids, by DescribeGroups.
async fn describe(addr: SocketAddr) -> (String, BTreeSet<String>) {
    let mut raw = RawClient::connect(addr).await.expect("connect");
    let response: DescribeGroupsResponse = raw
        .call(
            ApiKey::DescribeGroups,
            3,
            &DescribeGroupsRequest::default().with_groups(vec![group_id()]),
        )
        .await
        .expect("DescribeGroups");
    let group = &response.groups[0];
    let members = group
        .members
        .iter()
        .map(|m| m.member_id.to_string())
        .collect();
    (group.group_state.to_string(), members)
}

/// Commits offset 0 of the member's partitions; the broker refuses a member it does not know.
fn commit_assigned(member: &Member) -> rdkafka::error::KafkaResult<()> {
    let mut offsets = TopicPartitionList::new();
    for element in member.assignment()?.elements() {
        offsets.add_partition_offset(TOPIC, element.partition(), Offset::Offset(0))?;
    }
    member.commit(&offsets, CommitMode::Sync)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_keep_their_place_across_sigkill_and_the_absent_one_expires() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", free_port());
    let addr: SocketAddr = listen.parse().expect("address");
    let env = [("FRESHET_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")];
    let broker = BrokerProcess::start_on(dir.path(), &listen, &env);
    create_topic(&broker.addr);

    let stop = Arc::new(AtomicBool::new(false));
    let member = start_member(&broker.addr, stop.clone());
    eventually(
        "the consumer owns both partitions",
        Duration::from_secs(30),
        || assigned(&member) == 2,
    )
    .await;
    let mut silent = SilentMember::join(addr).await;
    eventually("the partitions are shared", Duration::from_secs(30), || {
        assigned(&member) == 1
    })
    .await;
    assert_eq!(silent.heartbeat().await, 0);
    let (state, before) = describe(addr).await;
    assert_eq!(state, "Stable");
    assert_eq!(before.len(), 2);
    let rebalances_before = rebalances(&member);

    broker.kill();
    let restarted_at = Instant::now();
    let broker = BrokerProcess::start_on(dir.path(), &listen, &env);
    assert_eq!(
        describe(addr).await,
        ("Stable".to_owned(), before.clone()),
        "the group comes back with its members"
    );
    // Well within the silent member's 15 s session: the consumer heartbeats and commits at
    // its generation, and nothing rebalanced.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let member_for_commit = member.clone();
    tokio::task::spawn_blocking(move || commit_assigned(&member_for_commit))
        .await
        .expect("commit thread")
        .expect("the member's commit is accepted after the restart");
    assert!(
        restarted_at.elapsed() < Duration::from_secs(14),
        "too slow to tell"
    );
    assert_eq!(rebalances(&member), rebalances_before, "no rebalance");
    assert_eq!(assigned(&member), 1);

    // The silent member never came back: it expires and the consumer gets everything.
    eventually(
        "the consumer owns both partitions again",
        Duration::from_secs(40),
        || assigned(&member) == 2,
    )
    .await;
    assert!(
        restarted_at.elapsed() >= Duration::from_secs(14),
        "the silent member expired after {:?}, before its 15 s session timeout",
        restarted_at.elapsed()
    );
    let (state, after) = describe(addr).await;
    assert_eq!(state, "Stable");
    assert_eq!(after.len(), 1);
    assert!(before.contains(after.iter().next().expect("one member")));
    assert!(!after.contains(silent.member_id.as_str()));
    stop.store(true, Ordering::Relaxed);
    drop(broker);
}
