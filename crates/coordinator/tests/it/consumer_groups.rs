//! KIP-848 consumer groups through the coordinator's API, across crashes ("crash" is dropping
//! the coordinator without close(), so only what was durable survives) and timer expiries.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use freshet_coordinator::{GroupCoordinator, TopicCatalog, TopicMetadata};
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
};
use uuid::Uuid;

const TOPIC_ID: Uuid = Uuid::from_u128(0x8480_0000_0000_0000_0000_0000_0000_0001);

/// One topic, "t", with three partitions.
struct Topics;

impl TopicCatalog for Topics {
    fn topic(&self, name: &str) -> Option<TopicMetadata> {
        (name == "t").then(|| TopicMetadata {
            name: name.to_owned(),
            id: TOPIC_ID,
            partitions: 3,
        })
    }

    fn topic_names(&self) -> Vec<String> {
        vec!["t".to_owned()]
    }
}

fn join(member: &str) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(group_id("g"))
        .with_member_id(s(member))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(vec![topic_name("t")]))
        .with_topic_partitions(Some(Vec::new()))
}

/// A heartbeat at `epoch` reporting that the member owns `partitions` of "t".
fn owning(member: &str, epoch: i32, partitions: &[i32]) -> ConsumerGroupHeartbeatRequest {
    let owned = TopicPartitions::default()
        .with_topic_id(TOPIC_ID)
        .with_partitions(partitions.to_vec());
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(group_id("g"))
        .with_member_id(s(member))
        .with_member_epoch(epoch)
        .with_topic_partitions(Some(vec![owned]))
}

async fn beat(
    coordinator: &Arc<GroupCoordinator>,
    request: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let response = coordinator
        .consumer_group_heartbeat(request, 1, "client", "127.0.0.1", &Topics)
        .await;
    encodable(response, 1)
}

fn partitions(response: &ConsumerGroupHeartbeatResponse) -> Option<Vec<i32>> {
    let assignment = response.assignment.as_ref()?;
    Some(
        assignment
            .topic_partitions
            .iter()
            .flat_map(|t| t.partitions.iter().copied())
            .collect(),
    )
}

/// `(group state, group epoch, member ids with their epochs)` as ConsumerGroupDescribe says.
async fn described(coordinator: &GroupCoordinator) -> (String, i32, Vec<(String, i32)>) {
    let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![group_id("g")]);
    let response = encodable(coordinator.consumer_group_describe(request, 1).await, 1);
    let group = &response.groups[0];
    assert_eq!(group.error_code, NONE, "{:?}", group.error_message);
    let members = group
        .members
        .iter()
        .map(|m| (m.member_id.to_string(), m.member_epoch))
        .collect();
    (group.group_state.to_string(), group.group_epoch, members)
}

#[tokio::test(start_paused = true)]
async fn an_answered_join_survives_a_crash_with_its_epoch_and_partitions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let joined = beat(&coordinator, join("m1")).await;
    assert_eq!((joined.error_code, joined.member_epoch), (NONE, 1));
    assert_eq!(partitions(&joined), Some(vec![0, 1, 2]));
    drop(coordinator);

    let coordinator = open(dir.path());
    let before = described(&coordinator).await;
    assert_eq!(before, ("Stable".into(), 1, vec![("m1".into(), 1)]));
    let again = beat(&coordinator, owning("m1", 1, &[0, 1, 2])).await;
    assert_eq!((again.error_code, again.member_epoch), (NONE, 1));
    assert_eq!(partitions(&again), None, "nothing changed, nothing to tell");

    // A second member after the crash: m1 revokes before m2 gets anything.
    let second = beat(&coordinator, join("m2")).await;
    assert_eq!(
        (second.member_epoch, partitions(&second)),
        (2, Some(vec![]))
    );
    let revoking = beat(&coordinator, owning("m1", 1, &[0, 1, 2])).await;
    let kept = partitions(&revoking).expect("m1 is told what it keeps");
    assert_eq!((revoking.member_epoch, kept.len()), (1, 2));
    drop(coordinator);

    // The revocation in progress survives a crash too.
    let coordinator = open(dir.path());
    let done = beat(&coordinator, owning("m1", 1, &kept)).await;
    assert_eq!(done.member_epoch, 2);
    let given = beat(&coordinator, owning("m2", 2, &[])).await;
    assert_eq!(partitions(&given).map(|p| p.len()), Some(1));
    assert_eq!(described(&coordinator).await.0, "Stable");
}

#[tokio::test(start_paused = true)]
async fn a_member_whose_session_lapses_is_removed_durably() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    beat(&coordinator, join("m1")).await;
    beat(&coordinator, join("m2")).await;
    // m2 keeps heartbeating; m1 goes silent past the session timeout (45 s by default).
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            beat(&coordinator, owning("m2", 2, &[])).await.error_code,
            NONE
        );
    }
    let (_, epoch, members) = described(&coordinator).await;
    assert_eq!(
        (epoch, members.len()),
        (3, 1),
        "m1 was removed, the epoch bumped"
    );
    let gone = beat(&coordinator, owning("m1", 1, &[0, 1, 2])).await;
    assert_eq!(gone.error_code, UNKNOWN_MEMBER_ID);
    coordinator.close().await;

    let coordinator = open(dir.path());
    let (_, epoch, members) = described(&coordinator).await;
    assert_eq!((epoch, members), (3, vec![("m2".into(), 3)]));
    assert_eq!(coordinator.rebalance_count(), 0, "restored, not rebalanced");
}
