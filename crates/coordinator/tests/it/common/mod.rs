//! Helpers shared by the integration tests: request builders and short-hands that call the
//! coordinator like the broker does, and check that every response encodes at the version it
//! was built for (fields set outside their version make the codec fail).

#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use freshet_coordinator::{CoordinatorConfig, GroupCoordinator};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use tokio::task::JoinHandle;

pub const NONE: i16 = 0;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const NOT_COORDINATOR: i16 = 16;
pub const ILLEGAL_GENERATION: i16 = 22;
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
pub const INVALID_GROUP_ID: i16 = 24;
pub const UNKNOWN_MEMBER_ID: i16 = 25;
pub const INVALID_SESSION_TIMEOUT: i16 = 26;
pub const REBALANCE_IN_PROGRESS: i16 = 27;
pub const MEMBER_ID_REQUIRED: i16 = 79;
pub const FENCED_INSTANCE_ID: i16 = 82;

pub const SESSION_TIMEOUT_MS: i32 = 10_000;
pub const REBALANCE_TIMEOUT_MS: i32 = 30_000;

pub fn open(dir: &Path) -> Arc<GroupCoordinator> {
    GroupCoordinator::open(dir, CoordinatorConfig::default()).expect("open coordinator")
}

pub fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

pub fn group_id(value: &str) -> GroupId {
    GroupId(s(value))
}

pub fn topic_name(value: &str) -> TopicName {
    TopicName(s(value))
}

/// Asserts that `response` encodes at `version`, and returns it.
pub fn encodable<T: Encodable>(response: T, version: i16) -> T {
    let mut buf = BytesMut::new();
    if let Err(error) = response.encode(&mut buf, version) {
        panic!("response does not encode at v{version}: {error}");
    }
    response
}

pub fn join_request(group: &str, member_id: &str, protocols: &[(&str, &str)]) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(group_id(group))
        .with_session_timeout_ms(SESSION_TIMEOUT_MS)
        .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(
            protocols
                .iter()
                .map(|(name, metadata)| {
                    JoinGroupRequestProtocol::default()
                        .with_name(s(name))
                        .with_metadata(Bytes::from(metadata.to_string()))
                })
                .collect(),
        )
}

/// Sends a JoinGroup from a spawned task (JoinGroup is a long poll).
pub fn spawn_join(
    coordinator: &Arc<GroupCoordinator>,
    request: JoinGroupRequest,
    version: i16,
) -> JoinHandle<JoinGroupResponse> {
    let coordinator = Arc::clone(coordinator);
    tokio::spawn(async move {
        let response = coordinator
            .join_group(request, version, "test-client", "/127.0.0.1")
            .await;
        encodable(response, version)
    })
}

pub async fn join(
    coordinator: &Arc<GroupCoordinator>,
    request: JoinGroupRequest,
    version: i16,
) -> JoinGroupResponse {
    spawn_join(coordinator, request, version)
        .await
        .expect("join task")
}

pub fn sync_request(
    group: &str,
    generation: i32,
    member_id: &str,
    assignments: &[(&str, &str)],
) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id(generation)
        .with_member_id(s(member_id))
        .with_assignments(
            assignments
                .iter()
                .map(|(member, assignment)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(member))
                        .with_assignment(Bytes::from(assignment.to_string()))
                })
                .collect(),
        )
}

pub fn spawn_sync(
    coordinator: &Arc<GroupCoordinator>,
    request: SyncGroupRequest,
    version: i16,
) -> JoinHandle<SyncGroupResponse> {
    let coordinator = Arc::clone(coordinator);
    tokio::spawn(async move { encodable(coordinator.sync_group(request, version).await, version) })
}

pub async fn heartbeat(
    coordinator: &GroupCoordinator,
    group: &str,
    generation: i32,
    member_id: &str,
) -> i16 {
    let request = HeartbeatRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id(generation)
        .with_member_id(s(member_id));
    encodable(coordinator.heartbeat(request, 3).await, 3).error_code
}

pub async fn leave(coordinator: &GroupCoordinator, group: &str, member_ids: &[&str]) -> Vec<i16> {
    let request = LeaveGroupRequest::default()
        .with_group_id(group_id(group))
        .with_members(
            member_ids
                .iter()
                .map(|id| MemberIdentity::default().with_member_id(s(id)))
                .collect(),
        );
    let response = encodable(coordinator.leave_group(request, 3).await, 3);
    assert_eq!(response.error_code, NONE);
    response.members.iter().map(|m| m.error_code).collect()
}

/// A Stable group of members `0..n` (JoinGroup v3, so ids come on the first join).
#[derive(Debug, Clone)]
pub struct FormedGroup {
    pub generation: i32,
    pub leader: String,
    /// Leader first.
    pub members: Vec<String>,
}

impl FormedGroup {
    pub fn follower(&self) -> &str {
        &self.members[1]
    }
}

pub async fn form_group(coordinator: &Arc<GroupCoordinator>, group: &str, n: usize) -> FormedGroup {
    let joins: Vec<_> = (0..n)
        .map(|i| {
            let metadata = format!("meta-{i}");
            let request = join_request(group, "", &[("range", metadata.as_str())]);
            spawn_join(coordinator, request, 3)
        })
        .collect();
    let mut responses = Vec::new();
    for handle in joins {
        let response = handle.await.expect("join task");
        assert_eq!(response.error_code, NONE);
        responses.push(response);
    }
    let generation = responses[0].generation_id;
    let leader = responses[0].leader.to_string();
    let mut members: Vec<String> = responses.iter().map(|r| r.member_id.to_string()).collect();
    members.sort_by_key(|m| *m != leader);
    sync_all(coordinator, group, generation, &members).await;
    FormedGroup {
        generation,
        leader,
        members,
    }
}

/// SyncGroup for every member (leader first in `members`); member `i` gets assignment `"a-i"`.
pub async fn sync_all(
    coordinator: &Arc<GroupCoordinator>,
    group: &str,
    generation: i32,
    members: &[String],
) {
    let assignments: Vec<(String, String)> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.clone(), format!("a-{i}")))
        .collect();
    let refs: Vec<(&str, &str)> = assignments
        .iter()
        .map(|(m, a)| (m.as_str(), a.as_str()))
        .collect();
    let followers: Vec<_> = members[1..]
        .iter()
        .map(|m| spawn_sync(coordinator, sync_request(group, generation, m, &[]), 3))
        .collect();
    let leader = spawn_sync(
        coordinator,
        sync_request(group, generation, &members[0], &refs),
        3,
    );
    for (i, handle) in std::iter::once(leader).chain(followers).enumerate() {
        let response = handle.await.expect("sync task");
        assert_eq!(response.error_code, NONE);
        assert_eq!(response.assignment, Bytes::from(format!("a-{i}")));
    }
}

pub fn all_partitions_exist(_topic: &str, _partition: i32) -> bool {
    true
}

/// `(topic, partition, offset, metadata)`
pub type Commit<'a> = (&'a str, i32, i64, Option<&'a str>);

pub fn commit_request(
    group: &str,
    generation: i32,
    member_id: &str,
    commits: &[Commit],
) -> OffsetCommitRequest {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (topic, partition, offset, metadata) in commits {
        let p = OffsetCommitRequestPartition::default()
            .with_partition_index(*partition)
            .with_committed_offset(*offset)
            .with_committed_leader_epoch(5)
            .with_committed_metadata(metadata.map(s));
        match topics.iter_mut().find(|t| t.name.as_str() == *topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(vec![p]),
            ),
        }
    }
    OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member_id))
        .with_topics(topics)
}

/// Commits and returns `(topic, partition, error)` per partition.
pub async fn commit(
    coordinator: &GroupCoordinator,
    request: OffsetCommitRequest,
    version: i16,
) -> Vec<(String, i32, i16)> {
    let response = coordinator
        .offset_commit(request, version, &all_partitions_exist)
        .await;
    flatten_commit(encodable(response, version))
}

pub fn flatten_commit(response: OffsetCommitResponse) -> Vec<(String, i32, i16)> {
    response
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.to_string(), p.partition_index, p.error_code))
        })
        .collect()
}

/// A standalone commit of `offset` to `topic`/`partition`, which must succeed.
pub async fn simple_commit(
    coordinator: &GroupCoordinator,
    group: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) {
    let request = commit_request(group, -1, "", &[(topic, partition, offset, Some("m"))]);
    let results = commit(coordinator, request, 8).await;
    assert_eq!(results, vec![(topic.to_owned(), partition, NONE)]);
}

/// `(topic, partition, offset, metadata, leader epoch, error)`
pub type Fetched = (String, i32, i64, Option<String>, i32, i16);

pub async fn fetch(
    coordinator: &GroupCoordinator,
    group: &str,
    topics: Option<&[(&str, &[i32])]>,
    version: i16,
) -> Vec<Fetched> {
    let request = OffsetFetchRequest::default()
        .with_group_id(group_id(group))
        .with_topics(topics.map(|topics| {
            topics
                .iter()
                .map(|(topic, partitions)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(topic_name(topic))
                        .with_partition_indexes(partitions.to_vec())
                })
                .collect()
        }));
    let response = encodable(coordinator.offset_fetch(request, version).await, version);
    assert_eq!(response.error_code, NONE);
    response
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    t.name.to_string(),
                    p.partition_index,
                    p.committed_offset,
                    p.metadata.as_ref().map(|m| m.to_string()),
                    p.committed_leader_epoch,
                    p.error_code,
                )
            })
        })
        .collect()
}

pub async fn committed_offset(
    coordinator: &GroupCoordinator,
    group: &str,
    topic: &str,
    partition: i32,
) -> i64 {
    let partitions = [partition];
    let fetched = fetch(coordinator, group, Some(&[(topic, &partitions)]), 7).await;
    fetched[0].2
}

/// A `consumer` protocol assignment (version 0) of the given partitions.
pub fn consumer_assignment(partitions: &[(&str, &[i32])]) -> Bytes {
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
        partitions
            .iter()
            .map(|(topic, ps)| {
                TopicPartition::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(ps.to_vec())
            })
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    assignment.encode(&mut buf, 0).expect("encode assignment");
    buf.freeze()
}

/// Lets spawned tasks (and the timer task) run; in paused time this also advances the clock
/// by a millisecond.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}
