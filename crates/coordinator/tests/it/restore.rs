//! Classic group membership across restarts: a group whose latest generation was synced comes
//! back Stable with its members, and members that do not come back expire. "Crash" is dropping
//! the coordinator without close(), so only what was durable survives.

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use freshet_coordinator::{GroupCoordinator, GroupState};
use kafka_protocol::messages::HeartbeatRequest;

fn state_of(coordinator: &GroupCoordinator, group: &str) -> GroupState {
    coordinator
        .groups_overview()
        .into_iter()
        .find(|g| g.group_id == group)
        .map_or(GroupState::Dead, |g| g.state)
}

async fn sync_alone(
    coordinator: &std::sync::Arc<GroupCoordinator>,
    generation: i32,
    member: &str,
) -> Bytes {
    let response = spawn_sync(coordinator, sync_request("g", generation, member, &[]), 3)
        .await
        .expect("sync task");
    assert_eq!(response.error_code, NONE);
    response.assignment
}

#[tokio::test(start_paused = true)]
async fn a_synced_group_keeps_its_members_generation_and_assignments_across_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let group = form_group(&coordinator, "g", 2).await;
    drop(coordinator);

    let coordinator = open(dir.path());
    assert_eq!(state_of(&coordinator, "g"), GroupState::Stable);
    let overview = coordinator.groups_overview();
    assert_eq!(overview[0].generation, group.generation);
    assert_eq!(overview[0].leader.as_deref(), Some(group.leader.as_str()));
    assert_eq!(overview[0].protocol.as_deref(), Some("range"));
    assert_eq!(overview[0].members[0].client_id, "test-client");
    for member in &group.members {
        assert_eq!(
            heartbeat(&coordinator, "g", group.generation, member).await,
            NONE
        );
    }
    // A member that asks again gets the assignment it had.
    assert_eq!(
        sync_alone(&coordinator, group.generation, group.follower()).await,
        Bytes::from("a-1")
    );
    let request = commit_request("g", group.generation, &group.leader, &[("t", 0, 3, None)]);
    assert_eq!(commit(&coordinator, request, 8).await[0].2, NONE);
    assert_eq!(
        coordinator.rebalance_count(),
        0,
        "no rebalance since the restart"
    );
}

#[tokio::test(start_paused = true)]
async fn a_restored_member_that_does_not_come_back_expires_and_the_rest_rebalance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let group = form_group(&coordinator, "g", 2).await;
    drop(coordinator);
    // Down for longer than the session timeout: sessions start at the restart, not before.
    tokio::time::advance(Duration::from_secs(60)).await;

    let coordinator = open(dir.path());
    let (back, gone) = (group.leader.clone(), group.follower().to_owned());
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(3)).await;
        settle().await;
        assert_eq!(
            heartbeat(&coordinator, "g", group.generation, &back).await,
            NONE
        );
    }
    tokio::time::advance(Duration::from_secs(3)).await;
    settle().await;
    assert_eq!(
        heartbeat(&coordinator, "g", group.generation, &back).await,
        REBALANCE_IN_PROGRESS,
        "the member that did not come back expired after its 10 s session"
    );
    assert_eq!(
        heartbeat(&coordinator, "g", group.generation, &gone).await,
        UNKNOWN_MEMBER_ID
    );
    let rejoined = join(&coordinator, join_request("g", &back, &[("range", "m")]), 3).await;
    assert_eq!(rejoined.generation_id, group.generation + 1);
    assert_eq!(rejoined.members.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_group_caught_between_join_and_sync_or_emptied_comes_back_without_members() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let group = form_group(&coordinator, "g", 1).await;
    // The leader rejoins: generation 2 is persisted, but never synced.
    let rejoin = join(
        &coordinator,
        join_request("g", &group.leader, &[("range", "m")]),
        3,
    )
    .await;
    assert_eq!(rejoin.generation_id, 2);
    drop(coordinator);

    let coordinator = open(dir.path());
    assert_eq!(state_of(&coordinator, "g"), GroupState::Empty);
    assert_eq!(
        heartbeat(&coordinator, "g", 2, &group.leader).await,
        UNKNOWN_MEMBER_ID
    );

    // Synced again, then left: the empty generation supersedes the members.
    let group = form_group(&coordinator, "g", 1).await;
    assert_eq!(group.generation, 3);
    assert_eq!(leave(&coordinator, "g", &[&group.leader]).await, vec![NONE]);
    settle().await;
    coordinator.close().await;
    drop(coordinator);
    let coordinator = open(dir.path());
    assert_eq!(state_of(&coordinator, "g"), GroupState::Empty);
    assert_eq!(coordinator.groups_overview()[0].generation, 4);
}

#[tokio::test(start_paused = true)]
async fn a_static_members_new_id_is_what_a_restart_restores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let request = |member_id: &str| {
        join_request("g", member_id, &[("range", "m")]).with_group_instance_id(Some(s("pod-1")))
    };
    let first = join(&coordinator, request(""), 5).await;
    let old_id = first.member_id.to_string();
    let sync = spawn_sync(
        &coordinator,
        sync_request("g", 1, &old_id, &[(&old_id, "mine")]),
        3,
    )
    .await
    .expect("sync");
    assert_eq!(sync.error_code, NONE);
    // The client restarts and takes its place without a rebalance; then the broker crashes.
    let restarted = join(&coordinator, request(""), 5).await;
    assert_eq!((restarted.error_code, restarted.generation_id), (NONE, 1));
    let new_id = restarted.member_id.to_string();
    drop(coordinator);

    let coordinator = open(dir.path());
    assert_eq!(heartbeat(&coordinator, "g", 1, &new_id).await, NONE);
    assert_eq!(
        sync_alone(&coordinator, 1, &new_id).await,
        Bytes::from("mine")
    );
    let fenced = HeartbeatRequest::default()
        .with_group_id(group_id("g"))
        .with_generation_id(1)
        .with_member_id(s(&old_id))
        .with_group_instance_id(Some(s("pod-1")));
    assert_eq!(
        coordinator.heartbeat(fenced, 3).await.error_code,
        FENCED_INSTANCE_ID
    );
}
