//! TxnOffsetCommit and transaction completion through the public API, on real files: pending
//! offsets are invisible until their transaction commits, survive crashes (dropping the
//! coordinator without close()), and are checked against the group as Kafka checks them.

use crate::common;

use std::sync::Arc;

use common::*;
use freshet_coordinator::{GroupCoordinator, MAX_OFFSET_METADATA_BYTES};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, OffsetDeleteRequest, OffsetFetchRequest, ProducerId, TransactionalId,
    TxnOffsetCommitRequest,
};

const UNSTABLE_OFFSET_COMMIT: i16 = 88;
const PRODUCER: i64 = 7;

/// A TxnOffsetCommit of `PRODUCER`'s transaction; `(topic, partition, offset, metadata)`.
fn txn_request(
    group: &str,
    generation: i32,
    member_id: &str,
    commits: &[Commit],
) -> TxnOffsetCommitRequest {
    let mut topics: Vec<TxnOffsetCommitRequestTopic> = Vec::new();
    for (topic, partition, offset, metadata) in commits {
        let p = TxnOffsetCommitRequestPartition::default()
            .with_partition_index(*partition)
            .with_committed_offset(*offset)
            .with_committed_leader_epoch(4)
            .with_committed_metadata(metadata.map(s));
        match topics.iter_mut().find(|t| t.name.as_str() == *topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                TxnOffsetCommitRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(vec![p]),
            ),
        }
    }
    TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(s("txn")))
        .with_group_id(group_id(group))
        .with_producer_id(ProducerId(PRODUCER))
        .with_producer_epoch(0)
        .with_generation_id(generation)
        .with_member_id(s(member_id))
        .with_topics(topics)
}

/// Sends `request` at `version` (every partition exists); `(topic, partition, error)`.
async fn txn_commit(
    coordinator: &GroupCoordinator,
    request: TxnOffsetCommitRequest,
    version: i16,
) -> Vec<(String, i32, i16)> {
    let response = coordinator
        .txn_offset_commit(request, version, &all_partitions_exist)
        .await;
    encodable(response, version)
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.to_string(), p.partition_index, p.error_code))
        })
        .collect()
}

/// One standalone transactional commit that must succeed.
async fn pending_commit(coordinator: &GroupCoordinator, group: &str, commits: &[Commit<'_>]) {
    let results = txn_commit(coordinator, txn_request(group, -1, "", commits), 3).await;
    assert!(results.iter().all(|r| r.2 == NONE), "{results:?}");
}

/// OffsetFetch v7 with `require_stable`: `(topic, partition, offset, error)`; `topics = None`
/// asks for every committed partition.
async fn fetch_stable(
    coordinator: &GroupCoordinator,
    group: &str,
    topics: Option<&[(&str, &[i32])]>,
) -> Vec<(String, i32, i64, i16)> {
    let request = OffsetFetchRequest::default()
        .with_group_id(group_id(group))
        .with_require_stable(true)
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
    let response = encodable(coordinator.offset_fetch(request, 7).await, 7);
    response
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    t.name.to_string(),
                    p.partition_index,
                    p.committed_offset,
                    p.error_code,
                )
            })
        })
        .collect()
}

fn groups(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[tokio::test]
async fn offsets_commit_with_their_transaction_and_survive_crashes_on_the_way() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    simple_commit(&coordinator, "g", "t", 0, 5).await;
    pending_commit(
        &coordinator,
        "g",
        &[("t", 0, 10, Some("txn")), ("t", 1, 11, None)],
    )
    .await;

    // Without require_stable: the last committed offsets.
    assert_eq!(committed_offset(&coordinator, "g", "t", 0).await, 5);
    assert_eq!(committed_offset(&coordinator, "g", "t", 1).await, -1);
    let old = fetch(&coordinator, "g", Some(&[("t", &[0])]), 6).await;
    assert_eq!((old[0].2, old[0].5), (5, NONE), "v6 has no require_stable");
    // With it: the partitions of the open transaction are unstable.
    let requested = fetch_stable(&coordinator, "g", Some(&[("t", &[0, 1, 2])])).await;
    assert_eq!(
        requested,
        vec![
            ("t".into(), 0, -1, UNSTABLE_OFFSET_COMMIT),
            ("t".into(), 1, -1, UNSTABLE_OFFSET_COMMIT),
            ("t".into(), 2, -1, NONE),
        ]
    );
    let all = fetch_stable(&coordinator, "g", None).await;
    assert_eq!(all, vec![("t".into(), 0, -1, UNSTABLE_OFFSET_COMMIT)]);

    // A crash before the transaction ends: the offsets are still pending afterwards.
    drop(coordinator);
    let coordinator = open(dir.path());
    assert_eq!(committed_offset(&coordinator, "g", "t", 0).await, 5);
    let requested = fetch_stable(&coordinator, "g", Some(&[("t", &[1])])).await;
    assert_eq!(requested[0].3, UNSTABLE_OFFSET_COMMIT);

    coordinator
        .complete_transaction(PRODUCER, true, &groups(&["g", "no-such-group"]))
        .await
        .expect("complete");
    let fetched = fetch(&coordinator, "g", Some(&[("t", &[0, 1])]), 7).await;
    assert_eq!(
        fetched,
        vec![
            ("t".into(), 0, 10, Some("txn".into()), 4, NONE),
            ("t".into(), 1, 11, Some(String::new()), 4, NONE),
        ]
    );
    // Recovery completing it again writes nothing and changes nothing.
    let fsyncs = coordinator.offsets_fsync_count();
    coordinator
        .complete_transaction(PRODUCER, true, &groups(&["g"]))
        .await
        .expect("complete again");
    assert_eq!(coordinator.offsets_fsync_count(), fsyncs);

    drop(coordinator);
    let coordinator = open(dir.path());
    let requested = fetch_stable(&coordinator, "g", Some(&[("t", &[0, 1])])).await;
    assert_eq!(
        requested,
        vec![("t".into(), 0, 10, NONE), ("t".into(), 1, 11, NONE)]
    );
}

#[tokio::test]
async fn an_aborted_transaction_leaves_the_committed_offsets_as_they_were() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    simple_commit(&coordinator, "g", "t", 0, 5).await;
    pending_commit(&coordinator, "g", &[("t", 0, 10, None)]).await;
    coordinator
        .complete_transaction(PRODUCER, false, &groups(&["g"]))
        .await
        .expect("abort");
    let requested = fetch_stable(&coordinator, "g", Some(&[("t", &[0])])).await;
    assert_eq!(requested, vec![("t".into(), 0, 5, NONE)]);
    drop(coordinator);
    assert_eq!(committed_offset(&open(dir.path()), "g", "t", 0).await, 5);
}

#[tokio::test]
async fn a_group_known_only_from_pending_offsets_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    pending_commit(&coordinator, "fresh", &[("t", 0, 3, None)]).await;
    drop(coordinator);
    let coordinator = open(dir.path());
    let listed = coordinator.groups_overview();
    assert!(listed.iter().any(|g| g.group_id == "fresh"), "{listed:?}");
    coordinator
        .complete_transaction(PRODUCER, true, &groups(&["fresh"]))
        .await
        .expect("complete");
    assert_eq!(committed_offset(&coordinator, "fresh", "t", 0).await, 3);
}

#[tokio::test(start_paused = true)]
async fn members_are_checked_from_v3_as_kafka_checks_transactional_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let group = form_group(&coordinator, "g", 2).await;
    let one = [("t", 0, 10, None)];
    let try_commit = |version: i16, generation: i32, member: &str| {
        let request = txn_request("g", generation, member, &one);
        let coordinator = Arc::clone(&coordinator);
        async move { txn_commit(&coordinator, request, version).await[0].2 }
    };
    let (leader, generation) = (group.leader.as_str(), group.generation);

    assert_eq!(try_commit(3, generation, leader).await, NONE);
    assert_eq!(
        try_commit(3, generation + 1, leader).await,
        ILLEGAL_GENERATION
    );
    assert_eq!(
        try_commit(3, generation, "stranger").await,
        UNKNOWN_MEMBER_ID
    );
    // No member named (what every request before v3 is): accepted while the group has
    // members, unlike a plain OffsetCommit.
    assert_eq!(try_commit(3, -1, "").await, NONE);
    // Before v3 the member fields do not exist, whatever the struct holds.
    assert_eq!(try_commit(2, generation + 1, "stranger").await, NONE);
    // A member's commit to a group that does not exist is from a stale generation.
    let missing = txn_request("missing", 1, "someone", &one);
    assert_eq!(
        txn_commit(&coordinator, missing, 3).await[0].2,
        ILLEGAL_GENERATION
    );
    // A static member's old incarnation is fenced.
    let static_join = |member_id: &str| {
        join_request("s", member_id, &[("range", "m")]).with_group_instance_id(Some(s("pod-1")))
    };
    let first = join(&coordinator, static_join(""), 5).await;
    assert_eq!(first.error_code, NONE);
    let old_id = first.member_id.to_string();
    let sync = sync_request("s", first.generation_id, &old_id, &[(&old_id, "a")]);
    assert_eq!(
        spawn_sync(&coordinator, sync, 3)
            .await
            .expect("sync")
            .error_code,
        NONE
    );
    let restarted = join(&coordinator, static_join(""), 5).await;
    assert_eq!(restarted.error_code, NONE);
    let fenced = txn_request("s", first.generation_id, &old_id, &one)
        .with_group_instance_id(Some(s("pod-1")));
    assert_eq!(
        txn_commit(&coordinator, fenced, 3).await[0].2,
        FENCED_INSTANCE_ID
    );
    let current = txn_request("s", first.generation_id, restarted.member_id.as_str(), &one)
        .with_group_instance_id(Some(s("pod-1")));
    assert_eq!(txn_commit(&coordinator, current, 3).await[0].2, NONE);
}

#[tokio::test]
async fn oversized_metadata_and_unknown_partitions_fail_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let too_long = "x".repeat(MAX_OFFSET_METADATA_BYTES + 1);
    let commits = [
        ("t", 0, 1, Some(too_long.as_str())),
        ("t", 1, 2, None),
        ("missing", 0, 3, None),
    ];
    let exists = |topic: &str, partition: i32| topic == "t" && partition < 4;
    let response = coordinator
        .txn_offset_commit(txn_request("g", -1, "", &commits), 3, &exists)
        .await;
    let errors: Vec<i16> = encodable(response, 3)
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect();
    assert_eq!(
        errors,
        vec![OFFSET_METADATA_TOO_LARGE, NONE, UNKNOWN_TOPIC_OR_PARTITION]
    );
    coordinator
        .complete_transaction(PRODUCER, true, &groups(&["g"]))
        .await
        .expect("complete");
    assert_eq!(committed_offset(&coordinator, "g", "t", 0).await, -1);
    assert_eq!(committed_offset(&coordinator, "g", "t", 1).await, 2);
    assert_eq!(committed_offset(&coordinator, "g", "missing", 0).await, -1);
}

/// As in Kafka, an Empty group can be deleted with a transaction's offsets pending: they go
/// with it, and OffsetDelete deletes a partition's pending offsets with its commit.
#[tokio::test]
async fn deletions_take_pending_offsets_with_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    pending_commit(&coordinator, "doomed", &[("t", 0, 1, None)]).await;
    let request = DeleteGroupsRequest::default().with_groups_names(vec![group_id("doomed")]);
    let response = encodable(coordinator.delete_groups(request, 2).await, 2);
    assert_eq!(response.results[0].error_code, NONE);

    pending_commit(&coordinator, "g", &[("t", 0, 10, None), ("t", 1, 11, None)]).await;
    let request = OffsetDeleteRequest::default()
        .with_group_id(group_id("g"))
        .with_topics(vec![OffsetDeleteRequestTopic::default()
            .with_name(topic_name("t"))
            .with_partitions(vec![
                OffsetDeleteRequestPartition::default().with_partition_index(0)
            ])]);
    let response = encodable(
        coordinator
            .offset_delete(request, &all_partitions_exist)
            .await,
        0,
    );
    assert_eq!(response.topics[0].partitions[0].error_code, NONE);
    assert!(
        coordinator
            .groups_overview()
            .iter()
            .any(|g| g.group_id == "g"),
        "partition 1's pending offset keeps the group"
    );

    coordinator
        .complete_transaction(PRODUCER, true, &groups(&["doomed", "g"]))
        .await
        .expect("complete");
    assert_eq!(committed_offset(&coordinator, "doomed", "t", 0).await, -1);
    assert_eq!(committed_offset(&coordinator, "g", "t", 0).await, -1);
    assert_eq!(committed_offset(&coordinator, "g", "t", 1).await, 11);
}
