//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup through the public API, in paused tokio
//! time so rebalance delays and session timeouts pass deterministically.

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use freshet_coordinator::GroupState;
use kafka_protocol::messages::LeaveGroupRequest;

#[tokio::test(start_paused = true)]
async fn two_members_get_one_leader_with_all_metadata_and_the_same_generation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let a = spawn_join(
        &coordinator,
        join_request("g", "", &[("range", "meta-a")]),
        3,
    );
    let b = spawn_join(
        &coordinator,
        join_request("g", "", &[("range", "meta-b")]),
        3,
    );
    let (a, b) = (a.await.expect("a"), b.await.expect("b"));

    for response in [&a, &b] {
        assert_eq!(response.error_code, NONE);
        assert_eq!(response.generation_id, 1);
        assert_eq!(response.protocol_name.as_deref(), Some("range"));
        assert!(response.member_id.starts_with("test-client-"));
    }
    assert_ne!(a.member_id, b.member_id);
    assert_eq!(a.leader, b.leader);
    let (leader, follower) = if a.member_id == a.leader {
        (a, b)
    } else {
        (b, a)
    };
    assert!(follower.members.is_empty());
    let mut ids: Vec<&str> = leader
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    ids.sort_unstable();
    let mut expected_ids = [leader.member_id.as_str(), follower.member_id.as_str()];
    expected_ids.sort_unstable();
    assert_eq!(ids, expected_ids);
    let mut metadata: Vec<Bytes> = leader.members.iter().map(|m| m.metadata.clone()).collect();
    metadata.sort();
    assert_eq!(metadata, [Bytes::from("meta-a"), Bytes::from("meta-b")]);
    assert_eq!(coordinator.rebalance_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn followers_wait_for_the_leaders_assignment_then_the_group_is_stable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let a = spawn_join(&coordinator, join_request("g", "", &[("range", "m")]), 3);
    let b = spawn_join(&coordinator, join_request("g", "", &[("range", "m")]), 3);
    let (a, b) = (a.await.expect("a"), b.await.expect("b"));
    let (leader, follower) = if a.member_id == a.leader {
        (a, b)
    } else {
        (b, a)
    };
    let (leader, follower) = (leader.member_id.to_string(), follower.member_id.to_string());

    let waiting = spawn_sync(&coordinator, sync_request("g", 1, &follower, &[]), 3);
    settle().await;
    assert!(!waiting.is_finished(), "follower must wait for the leader");
    assert_eq!(state_of(&coordinator, "g"), GroupState::CompletingRebalance);

    let assignments = [
        (leader.as_str(), "for-leader"),
        (follower.as_str(), "for-follower"),
    ];
    let response = spawn_sync(&coordinator, sync_request("g", 1, &leader, &assignments), 3)
        .await
        .expect("leader sync");
    assert_eq!(response.error_code, NONE);
    assert_eq!(response.assignment, Bytes::from("for-leader"));
    let response = waiting.await.expect("follower sync");
    assert_eq!(response.error_code, NONE);
    assert_eq!(response.assignment, Bytes::from("for-follower"));
    assert_eq!(state_of(&coordinator, "g"), GroupState::Stable);

    // A late SyncGroup in Stable gets the stored assignment back.
    let again = spawn_sync(&coordinator, sync_request("g", 1, &follower, &[]), 3)
        .await
        .expect("sync");
    assert_eq!(again.assignment, Bytes::from("for-follower"));
    assert_eq!(heartbeat(&coordinator, "g", 1, &leader).await, NONE);
    assert_eq!(heartbeat(&coordinator, "g", 1, &follower).await, NONE);
}

#[tokio::test(start_paused = true)]
async fn a_new_member_makes_everyone_rejoin_into_the_next_generation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let group = form_group(&coordinator, "g", 2).await;

    let newcomer = spawn_join(&coordinator, join_request("g", "", &[("range", "new")]), 3);
    settle().await;
    assert_eq!(state_of(&coordinator, "g"), GroupState::PreparingRebalance);
    for member in &group.members {
        assert_eq!(
            heartbeat(&coordinator, "g", 1, member).await,
            REBALANCE_IN_PROGRESS
        );
    }
    let rejoins: Vec<_> = group
        .members
        .iter()
        .map(|m| spawn_join(&coordinator, join_request("g", m, &[("range", "m")]), 3))
        .collect();
    let mut responses = vec![newcomer.await.expect("newcomer")];
    for rejoin in rejoins {
        responses.push(rejoin.await.expect("rejoin"));
    }
    for response in &responses {
        assert_eq!(response.error_code, NONE);
        assert_eq!(response.generation_id, 2);
        assert_eq!(response.leader.as_str(), group.leader, "the leader is kept");
    }
    let leader = responses
        .iter()
        .find(|r| r.member_id == r.leader)
        .expect("leader answer");
    assert_eq!(leader.members.len(), 3);
    assert_eq!(coordinator.rebalance_count(), 2);
    // The old generation is gone.
    assert_eq!(
        heartbeat(&coordinator, "g", 1, &group.leader).await,
        ILLEGAL_GENERATION
    );
    form_group(&coordinator, "other", 1).await;
    assert_eq!(
        coordinator.rebalances_by_group(),
        [("g".to_string(), 2), ("other".to_string(), 1)],
        "rebalances are counted per group"
    );
}

#[tokio::test(start_paused = true)]
async fn a_waiting_sync_is_failed_when_its_generation_is_superseded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let a = spawn_join(&coordinator, join_request("g", "", &[("range", "m")]), 3);
    let b = spawn_join(&coordinator, join_request("g", "", &[("range", "m")]), 3);
    let (a, b) = (a.await.expect("a"), b.await.expect("b"));
    let follower = if a.member_id == a.leader {
        b.member_id
    } else {
        a.member_id
    };

    let waiting = spawn_sync(&coordinator, sync_request("g", 1, &follower, &[]), 3);
    settle().await;
    let _newcomer = spawn_join(&coordinator, join_request("g", "", &[("range", "m")]), 3);
    let response = waiting.await.expect("sync");
    assert_eq!(response.error_code, REBALANCE_IN_PROGRESS);
    let late = spawn_sync(&coordinator, sync_request("g", 1, &follower, &[]), 3)
        .await
        .expect("sync");
    assert_eq!(late.error_code, REBALANCE_IN_PROGRESS);
}

#[tokio::test(start_paused = true)]
async fn a_silent_member_is_removed_after_its_session_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let group = form_group(&coordinator, "g", 2).await;
    let (alive, silent) = (group.leader.clone(), group.follower().to_owned());

    // 9 s: within the 10 s session timeout.
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(3)).await;
        settle().await;
        assert_eq!(heartbeat(&coordinator, "g", 1, &alive).await, NONE);
    }
    // 12 s: the silent member is gone and the survivor is told to rejoin.
    tokio::time::advance(Duration::from_secs(3)).await;
    settle().await;
    assert_eq!(
        heartbeat(&coordinator, "g", 1, &alive).await,
        REBALANCE_IN_PROGRESS
    );
    assert_eq!(
        heartbeat(&coordinator, "g", 1, &silent).await,
        UNKNOWN_MEMBER_ID
    );

    let rejoined = join(
        &coordinator,
        join_request("g", &alive, &[("range", "m")]),
        3,
    )
    .await;
    assert_eq!(rejoined.error_code, NONE);
    assert_eq!(rejoined.generation_id, 2);
    assert_eq!(rejoined.members.len(), 1);
    assert_eq!(rejoined.members[0].member_id.as_str(), alive);
}

#[tokio::test(start_paused = true)]
async fn a_group_whose_only_member_expires_goes_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let group = form_group(&coordinator, "g", 1).await;
    tokio::time::advance(Duration::from_secs(11)).await;
    settle().await;
    assert_eq!(state_of(&coordinator, "g"), GroupState::Empty);
    assert_eq!(
        heartbeat(&coordinator, "g", 1, &group.leader).await,
        UNKNOWN_MEMBER_ID
    );
    let overview = coordinator.groups_overview();
    assert_eq!(
        overview[0].generation, 2,
        "the join phase that emptied it counts"
    );
}

#[tokio::test(start_paused = true)]
async fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let group = form_group(&coordinator, "g", 2).await;
    let leader = group.leader.clone();
    // The leader rejoins (asking for a rebalance); the follower keeps heartbeating but never
    // rejoins.
    let rejoin = spawn_join(
        &coordinator,
        join_request("g", &leader, &[("range", "m")]),
        3,
    );
    for _ in 0..12 {
        tokio::time::advance(Duration::from_secs(3)).await;
        settle().await;
        let _ = heartbeat(&coordinator, "g", 1, group.follower()).await;
    }
    let response = rejoin.await.expect("rejoin");
    assert_eq!(response.error_code, NONE);
    assert_eq!(response.generation_id, 2);
    assert_eq!(response.members.len(), 1, "follower removed after 30 s");
}

#[tokio::test(start_paused = true)]
async fn leaving_rebalances_the_rest_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let group = form_group(&coordinator, "g", 3).await;
    let leaving = [
        group.members[1].as_str(),
        group.members[2].as_str(),
        "stranger",
    ];
    assert_eq!(
        leave(&coordinator, "g", &leaving).await,
        vec![NONE, NONE, UNKNOWN_MEMBER_ID]
    );
    assert_eq!(state_of(&coordinator, "g"), GroupState::PreparingRebalance);
    assert_eq!(
        heartbeat(&coordinator, "g", 1, &group.leader).await,
        REBALANCE_IN_PROGRESS
    );
    let rejoined = join(
        &coordinator,
        join_request("g", &group.leader, &[("range", "m")]),
        3,
    )
    .await;
    assert_eq!(rejoined.generation_id, 2);
    assert_eq!(rejoined.members.len(), 1);

    // v0–2: one member, answered in the top-level error.
    let request = LeaveGroupRequest::default()
        .with_group_id(group_id("g"))
        .with_member_id(s(&group.leader));
    let response = encodable(coordinator.leave_group(request.clone(), 1).await, 1);
    assert_eq!(response.error_code, NONE);
    let response = encodable(coordinator.leave_group(request, 1).await, 1);
    assert_eq!(response.error_code, UNKNOWN_MEMBER_ID);
    assert_eq!(state_of(&coordinator, "g"), GroupState::Empty);
}

#[tokio::test(start_paused = true)]
async fn join_group_v4_hands_out_the_member_id_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let first = join(&coordinator, join_request("g", "", &[("range", "m")]), 4).await;
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    assert_eq!(first.generation_id, -1);
    let member_id = first.member_id.to_string();
    assert!(member_id.starts_with("test-client-"));

    let second = join(
        &coordinator,
        join_request("g", &member_id, &[("range", "m")]),
        4,
    )
    .await;
    assert_eq!(second.error_code, NONE);
    assert_eq!(second.member_id.as_str(), member_id);
    assert_eq!(second.generation_id, 1);
    assert_eq!(second.leader.as_str(), member_id);

    let stranger = join(
        &coordinator,
        join_request("g", "made-up", &[("range", "m")]),
        4,
    )
    .await;
    assert_eq!(stranger.error_code, UNKNOWN_MEMBER_ID);
}

#[tokio::test(start_paused = true)]
async fn a_handed_out_member_id_holds_the_join_phase_until_used_or_expired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let group = form_group(&coordinator, "g", 1).await;
    // A v4 client gets its id but never comes back; the leader's rejoin must not wait for it
    // beyond its session timeout (10 s), well before the rebalance timeout (30 s).
    let first = join(&coordinator, join_request("g", "", &[("range", "m")]), 4).await;
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    let rejoin = spawn_join(
        &coordinator,
        join_request("g", &group.leader, &[("range", "m")]),
        4,
    );
    tokio::time::advance(Duration::from_secs(9)).await;
    settle().await;
    assert!(!rejoin.is_finished());
    tokio::time::advance(Duration::from_secs(2)).await;
    let response = rejoin.await.expect("rejoin");
    assert_eq!(response.generation_id, 2);
    assert_eq!(response.members.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_static_member_takes_its_place_without_a_rebalance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let request = |member_id: &str| {
        join_request("g", member_id, &[("range", "m")]).with_group_instance_id(Some(s("pod-1")))
    };
    let first = join(&coordinator, request(""), 5).await;
    assert_eq!(
        first.error_code, NONE,
        "static members skip MEMBER_ID_REQUIRED"
    );
    assert_eq!(first.members[0].group_instance_id.as_deref(), Some("pod-1"));
    let old_id = first.member_id.to_string();
    assert!(old_id.starts_with("pod-1-"));
    let sync = spawn_sync(
        &coordinator,
        sync_request("g", 1, &old_id, &[(&old_id, "mine")]),
        3,
    )
    .await
    .expect("sync");
    assert_eq!(sync.assignment, Bytes::from("mine"));

    // The process restarts and joins again without its member id.
    let restarted = join(&coordinator, request(""), 5).await;
    assert_eq!(restarted.error_code, NONE);
    assert_eq!(restarted.generation_id, 1, "no rebalance");
    let new_id = restarted.member_id.to_string();
    assert_ne!(new_id, old_id);
    assert_eq!(
        restarted.leader.as_str(),
        old_id,
        "must not run an assignment"
    );
    assert_eq!(state_of(&coordinator, "g"), GroupState::Stable);
    assert_eq!(coordinator.rebalance_count(), 1);

    let sync = spawn_sync(&coordinator, sync_request("g", 1, &new_id, &[]), 3)
        .await
        .expect("sync");
    assert_eq!(sync.assignment, Bytes::from("mine"));
    let fenced = kafka_protocol::messages::HeartbeatRequest::default()
        .with_group_id(group_id("g"))
        .with_generation_id(1)
        .with_member_id(s(&old_id))
        .with_group_instance_id(Some(s("pod-1")));
    assert_eq!(
        coordinator.heartbeat(fenced, 3).await.error_code,
        FENCED_INSTANCE_ID
    );
    let overview = coordinator.groups_overview();
    assert_eq!(overview[0].leader.as_deref(), Some(new_id.as_str()));
}

#[tokio::test(start_paused = true)]
async fn join_group_rejects_invalid_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let valid = || join_request("g", "", &[("range", "m")]);
    let error = |response: kafka_protocol::messages::JoinGroupResponse| response.error_code;

    let no_group = join_request("", "", &[("range", "m")]);
    assert_eq!(
        error(join(&coordinator, no_group, 3).await),
        INVALID_GROUP_ID
    );
    let short = valid().with_session_timeout_ms(1_000);
    assert_eq!(
        error(join(&coordinator, short, 3).await),
        INVALID_SESSION_TIMEOUT
    );
    let long = valid().with_session_timeout_ms(31 * 60 * 1000);
    assert_eq!(
        error(join(&coordinator, long, 3).await),
        INVALID_SESSION_TIMEOUT
    );
    let negative = valid().with_session_timeout_ms(-1);
    assert_eq!(
        error(join(&coordinator, negative, 3).await),
        INVALID_SESSION_TIMEOUT
    );
    let no_type = valid().with_protocol_type(s(""));
    assert_eq!(
        error(join(&coordinator, no_type, 3).await),
        INCONSISTENT_GROUP_PROTOCOL
    );
    let no_protocols = join_request("g", "", &[]);
    assert_eq!(
        error(join(&coordinator, no_protocols, 3).await),
        INCONSISTENT_GROUP_PROTOCOL
    );
    assert!(
        coordinator.groups_overview().is_empty(),
        "failed joins leave no group"
    );
    let unknown = join_request("g", "someone", &[("range", "m")]);
    assert_eq!(
        error(join(&coordinator, unknown, 3).await),
        UNKNOWN_MEMBER_ID
    );

    let group = form_group(&coordinator, "g", 1).await;
    let other_type = valid().with_protocol_type(s("connect"));
    assert_eq!(
        error(join(&coordinator, other_type, 3).await),
        INCONSISTENT_GROUP_PROTOCOL
    );
    let other_protocol = join_request("g", "", &[("roundrobin", "m")]);
    assert_eq!(
        error(join(&coordinator, other_protocol, 3).await),
        INCONSISTENT_GROUP_PROTOCOL
    );
    let unknown = join_request("g", "someone", &[("range", "m")]);
    assert_eq!(
        error(join(&coordinator, unknown, 3).await),
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        state_of(&coordinator, "g"),
        GroupState::Stable,
        "errors change nothing"
    );
    assert_eq!(
        heartbeat(&coordinator, "g", group.generation, &group.leader).await,
        NONE
    );
}

#[tokio::test(start_paused = true)]
async fn sync_and_heartbeat_reject_stale_or_unknown_members() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let sync_error = |group: &str, generation: i32, member: &str| {
        let request = sync_request(group, generation, member, &[]);
        let handle = spawn_sync(&coordinator, request, 3);
        async move { handle.await.expect("sync").error_code }
    };
    assert_eq!(sync_error("nope", 1, "m").await, UNKNOWN_MEMBER_ID);
    assert_eq!(sync_error("", 1, "m").await, INVALID_GROUP_ID);
    assert_eq!(
        heartbeat(&coordinator, "nope", 1, "m").await,
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(heartbeat(&coordinator, "", 1, "m").await, INVALID_GROUP_ID);

    let group = form_group(&coordinator, "g", 2).await;
    assert_eq!(sync_error("g", 7, &group.leader).await, ILLEGAL_GENERATION);
    assert_eq!(sync_error("g", 1, "stranger").await, UNKNOWN_MEMBER_ID);
    assert_eq!(
        heartbeat(&coordinator, "g", 7, &group.leader).await,
        ILLEGAL_GENERATION
    );
    assert_eq!(
        heartbeat(&coordinator, "g", 1, "stranger").await,
        UNKNOWN_MEMBER_ID
    );

    let _newcomer = spawn_join(&coordinator, join_request("g", "", &[("range", "m")]), 3);
    settle().await;
    assert_eq!(
        sync_error("g", 1, &group.leader).await,
        REBALANCE_IN_PROGRESS
    );
}

#[tokio::test(start_paused = true)]
async fn the_initial_delay_gathers_a_starting_fleet_into_one_generation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let mut joins = vec![spawn_join(
        &coordinator,
        join_request("g", "", &[("range", "m")]),
        3,
    )];
    // Members trickle in every two seconds; each arrival extends the 3 s delay.
    for _ in 0..4 {
        tokio::time::advance(Duration::from_secs(2)).await;
        joins.push(spawn_join(
            &coordinator,
            join_request("g", "", &[("range", "m")]),
            3,
        ));
        settle().await;
    }
    for handle in joins {
        let response = handle.await.expect("join");
        assert_eq!(response.generation_id, 1);
    }
    assert_eq!(coordinator.rebalance_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn close_answers_waiting_requests_and_refuses_new_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let waiting = spawn_join(&coordinator, join_request("g", "", &[("range", "m")]), 3);
    settle().await;
    coordinator.close().await;
    assert_eq!(waiting.await.expect("join").error_code, NOT_COORDINATOR);
    assert_eq!(
        heartbeat(&coordinator, "g", 0, "x").await,
        COORDINATOR_NOT_AVAILABLE
    );
    let late = join(&coordinator, join_request("g", "", &[("range", "m")]), 3).await;
    assert_eq!(late.error_code, COORDINATOR_NOT_AVAILABLE);
}

#[tokio::test(start_paused = true)]
async fn every_join_group_version_is_answered_with_encodable_responses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    for version in 0..=5 {
        let group = format!("g{version}");
        let mut response = join(
            &coordinator,
            join_request(&group, "", &[("range", "m")]),
            version,
        )
        .await;
        if version >= 4 {
            assert_eq!(response.error_code, MEMBER_ID_REQUIRED);
            let member_id = response.member_id.to_string();
            response = join(
                &coordinator,
                join_request(&group, &member_id, &[("range", "m")]),
                version,
            )
            .await;
        }
        assert_eq!(response.error_code, NONE, "v{version}");
        let member = response.member_id.to_string();
        for sync_version in 0..=4 {
            let request = sync_request(&group, 1, &member, &[(&member, "x")]);
            let sync = spawn_sync(&coordinator, request, sync_version)
                .await
                .expect("sync");
            assert_eq!(sync.error_code, NONE);
        }
        for hb_version in 0..=4 {
            let request = kafka_protocol::messages::HeartbeatRequest::default()
                .with_group_id(group_id(&group))
                .with_generation_id(1)
                .with_member_id(s(&member));
            let hb = encodable(coordinator.heartbeat(request, hb_version).await, hb_version);
            assert_eq!(hb.error_code, NONE);
        }
        for leave_version in 0..=4 {
            let request = LeaveGroupRequest::default()
                .with_group_id(group_id(&group))
                .with_member_id(s(&member))
                .with_members(vec![
                    kafka_protocol::messages::leave_group_request::MemberIdentity::default()
                        .with_member_id(s(&member)),
                ]);
            encodable(
                coordinator.leave_group(request, leave_version).await,
                leave_version,
            );
        }
    }
}

fn state_of(coordinator: &freshet_coordinator::GroupCoordinator, group: &str) -> GroupState {
    coordinator
        .groups_overview()
        .into_iter()
        .find(|g| g.group_id == group)
        .map_or(GroupState::Dead, |g| g.state)
}
