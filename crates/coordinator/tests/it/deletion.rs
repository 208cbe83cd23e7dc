//! DeleteGroups and OffsetDelete through the public API, on real files: Kafka's error codes,
//! and deletions that stay deleted after a crash.

use crate::common;

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use freshet_coordinator::{GroupCoordinator, GroupState};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::{
    ConsumerProtocolSubscription, DeleteGroupsRequest, JoinGroupRequest, OffsetDeleteRequest,
};
use kafka_protocol::protocol::Encodable;

const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;

/// DeleteGroups v2; `(group, error)` per group in the response.
async fn delete_groups(coordinator: &GroupCoordinator, names: &[&str]) -> Vec<(String, i16)> {
    let request = DeleteGroupsRequest::default()
        .with_groups_names(names.iter().map(|n| group_id(n)).collect());
    let response = encodable(coordinator.delete_groups(request, 2).await, 2);
    response
        .results
        .iter()
        .map(|r| (r.group_id.to_string(), r.error_code))
        .collect()
}

/// OffsetDelete v0 where only partitions 0-2 of each topic exist; the top-level error and
/// `(topic, partition, error)` per partition.
async fn delete_offsets(
    coordinator: &GroupCoordinator,
    group: &str,
    partitions: &[(&str, &[i32])],
) -> (i16, Vec<(String, i32, i16)>) {
    let topics = partitions
        .iter()
        .map(|(topic, ps)| {
            OffsetDeleteRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    ps.iter()
                        .map(|&p| OffsetDeleteRequestPartition::default().with_partition_index(p))
                        .collect(),
                )
        })
        .collect();
    let request = OffsetDeleteRequest::default()
        .with_group_id(group_id(group))
        .with_topics(topics);
    let exists = |_: &str, partition: i32| (0..3).contains(&partition);
    let response = encodable(coordinator.offset_delete(request, &exists).await, 0);
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

fn state_of(coordinator: &GroupCoordinator, group: &str) -> GroupState {
    coordinator
        .groups_overview()
        .into_iter()
        .find(|g| g.group_id == group)
        .map_or(GroupState::Dead, |g| g.state)
}

/// A `consumer` protocol subscription (version 1) to `topics`.
fn subscription(topics: &[&str]) -> Bytes {
    let subscription =
        ConsumerProtocolSubscription::default().with_topics(topics.iter().map(|t| s(t)).collect());
    let mut buf = BytesMut::new();
    buf.put_i16(1);
    subscription
        .encode(&mut buf, 1)
        .expect("encode subscription");
    buf.freeze()
}

/// A JoinGroup of a new member with `protocol_type` and one protocol carrying `metadata`.
fn join_with(group: &str, protocol_type: &str, metadata: Bytes) -> JoinGroupRequest {
    join_request(group, "", &[])
        .with_protocol_type(s(protocol_type))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(metadata)])
}

/// A Stable group of one member; returns its member id.
async fn stable_member(
    coordinator: &std::sync::Arc<GroupCoordinator>,
    request: JoinGroupRequest,
) -> String {
    let group = request.group_id.to_string();
    let joined = join(coordinator, request, 3).await;
    assert_eq!(joined.error_code, NONE);
    let member = joined.member_id.to_string();
    sync_all(
        coordinator,
        &group,
        joined.generation_id,
        std::slice::from_ref(&member),
    )
    .await;
    member
}

#[tokio::test(start_paused = true)]
async fn only_empty_groups_are_deleted_with_their_offsets_and_stay_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    simple_commit(&coordinator, "idle", "t", 0, 42).await;
    simple_commit(&coordinator, "idle", "t", 1, 43).await;
    simple_commit(&coordinator, "kept", "t", 0, 7).await;
    let active = form_group(&coordinator, "active", 1).await;

    let results = delete_groups(&coordinator, &["idle", "active", "never-was", "idle"]).await;
    assert_eq!(
        results,
        vec![
            ("idle".into(), NONE),
            ("active".into(), NON_EMPTY_GROUP),
            ("never-was".into(), GROUP_ID_NOT_FOUND),
        ],
        "a group named twice is answered once"
    );
    assert_eq!(state_of(&coordinator, "idle"), GroupState::Dead);
    assert!(fetch(&coordinator, "idle", None, 7).await.is_empty());
    assert_eq!(committed_offset(&coordinator, "idle", "t", 0).await, -1);
    assert_eq!(committed_offset(&coordinator, "kept", "t", 0).await, 7);
    assert_eq!(
        heartbeat(&coordinator, "active", active.generation, &active.leader).await,
        NONE
    );
    assert_eq!(
        delete_groups(&coordinator, &["idle"]).await,
        vec![("idle".into(), GROUP_ID_NOT_FOUND)]
    );
    drop(coordinator); // a crash: the deletion was durable before it was answered

    let coordinator = open(dir.path());
    assert_eq!(state_of(&coordinator, "idle"), GroupState::Dead);
    assert!(fetch(&coordinator, "idle", None, 7).await.is_empty());
    assert_eq!(committed_offset(&coordinator, "kept", "t", 0).await, 7);
}

#[tokio::test(start_paused = true)]
async fn a_group_its_members_left_can_be_deleted_and_its_name_starts_afresh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let group = form_group(&coordinator, "g", 1).await;
    let request = commit_request("g", group.generation, &group.leader, &[("t", 0, 5, None)]);
    assert_eq!(commit(&coordinator, request, 8).await[0].2, NONE);
    assert_eq!(leave(&coordinator, "g", &[&group.leader]).await, vec![NONE]);
    settle().await;
    assert_eq!(state_of(&coordinator, "g"), GroupState::Empty);

    assert_eq!(
        delete_groups(&coordinator, &["g"]).await,
        vec![("g".into(), NONE)]
    );
    drop(coordinator);

    let coordinator = open(dir.path());
    assert_eq!(state_of(&coordinator, "g"), GroupState::Dead);
    assert_eq!(committed_offset(&coordinator, "g", "t", 0).await, -1);
    let fresh = form_group(&coordinator, "g", 1).await;
    assert_eq!(fresh.generation, 1, "the generation went with the group");
}

#[tokio::test(start_paused = true)]
async fn the_empty_group_id_is_a_group_like_any_other_for_delete_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    assert_eq!(
        delete_groups(&coordinator, &[""]).await,
        vec![(String::new(), GROUP_ID_NOT_FOUND)]
    );
    simple_commit(&coordinator, "", "t", 0, 1).await;
    assert_eq!(
        delete_groups(&coordinator, &[""]).await,
        vec![(String::new(), NONE)]
    );
    assert_eq!(committed_offset(&coordinator, "", "t", 0).await, -1);
}

#[tokio::test(start_paused = true)]
async fn offsets_of_an_empty_group_are_deleted_durably_and_the_last_takes_the_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    for partition in 0..3 {
        simple_commit(&coordinator, "g", "t", partition, 10 + i64::from(partition)).await;
    }
    simple_commit(&coordinator, "g", "u", 0, 20).await;

    let (error, partitions) = delete_offsets(&coordinator, "g", &[("t", &[0, 1, 9])]).await;
    assert_eq!(error, NONE);
    assert_eq!(
        partitions,
        vec![
            ("t".into(), 0, NONE),
            ("t".into(), 1, NONE),
            ("t".into(), 9, UNKNOWN_TOPIC_OR_PARTITION),
        ]
    );
    assert_eq!(committed_offset(&coordinator, "g", "t", 0).await, -1);
    assert_eq!(committed_offset(&coordinator, "g", "t", 2).await, 12);
    drop(coordinator);

    let coordinator = open(dir.path());
    assert_eq!(committed_offset(&coordinator, "g", "t", 1).await, -1);
    assert_eq!(committed_offset(&coordinator, "g", "t", 2).await, 12);
    assert_eq!(committed_offset(&coordinator, "g", "u", 0).await, 20);
    assert_eq!(state_of(&coordinator, "g"), GroupState::Empty);

    // Without offsets an Empty group is gone, as Kafka removes it.
    let (error, _) = delete_offsets(&coordinator, "g", &[("t", &[2]), ("u", &[0])]).await;
    assert_eq!(error, NONE);
    assert_eq!(state_of(&coordinator, "g"), GroupState::Dead);
    assert_eq!(
        delete_offsets(&coordinator, "g", &[("t", &[2])]).await,
        (GROUP_ID_NOT_FOUND, vec![])
    );
    drop(coordinator);
    assert_eq!(state_of(&open(dir.path()), "g"), GroupState::Dead);
}

#[tokio::test(start_paused = true)]
async fn offsets_of_topics_an_active_consumer_group_subscribes_to_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let member = stable_member(
        &coordinator,
        join_with("g", "consumer", subscription(&["t"])),
    )
    .await;
    let commits = [("t", 0, 5, None), ("u", 0, 6, None)];
    assert!(
        commit(&coordinator, commit_request("g", 1, &member, &commits), 8)
            .await
            .iter()
            .all(|(_, _, error)| *error == NONE)
    );

    let (error, partitions) = delete_offsets(&coordinator, "g", &[("t", &[0]), ("u", &[0])]).await;
    assert_eq!(error, NONE);
    assert_eq!(
        partitions,
        vec![
            ("t".into(), 0, GROUP_SUBSCRIBED_TO_TOPIC),
            ("u".into(), 0, NONE)
        ]
    );
    assert_eq!(committed_offset(&coordinator, "g", "t", 0).await, 5);
    assert_eq!(committed_offset(&coordinator, "g", "u", 0).await, -1);
    assert_eq!(
        state_of(&coordinator, "g"),
        GroupState::Stable,
        "members keep the group"
    );
}

#[tokio::test(start_paused = true)]
async fn offset_delete_answers_group_errors_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    stable_member(
        &coordinator,
        join_with("connect", "connect", Bytes::from("opaque")),
    )
    .await;
    assert_eq!(
        delete_offsets(&coordinator, "connect", &[("t", &[0])]).await,
        (NON_EMPTY_GROUP, vec![]),
        "another protocol's subscriptions cannot be read"
    );
    assert_eq!(
        delete_offsets(&coordinator, "nobody", &[("t", &[0, 9])]).await,
        (GROUP_ID_NOT_FOUND, vec![])
    );
    assert_eq!(
        delete_offsets(&coordinator, "", &[("t", &[0])]).await,
        (INVALID_GROUP_ID, vec![])
    );
    coordinator.close().await;
    assert_eq!(
        delete_offsets(&coordinator, "connect", &[("t", &[0])]).await,
        (COORDINATOR_NOT_AVAILABLE, vec![])
    );
    assert_eq!(
        delete_groups(&coordinator, &["connect"]).await,
        vec![("connect".into(), COORDINATOR_NOT_AVAILABLE)]
    );
}
