//! ListGroups, DescribeGroups and the overview.

use crate::common;

use bytes::Bytes;
use common::*;
use freshet_coordinator::{AssignedPartitions, GroupState};
use kafka_protocol::messages::{DescribeGroupsRequest, ListGroupsRequest};

#[tokio::test(start_paused = true)]
async fn list_groups_reports_every_group_and_filters_by_state_from_v4() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    form_group(&coordinator, "stable", 1).await;
    simple_commit(&coordinator, "offsets-only", "t", 0, 1).await;

    for version in 0..=4 {
        let response = encodable(
            coordinator
                .list_groups(ListGroupsRequest::default(), version)
                .await,
            version,
        );
        assert_eq!(response.error_code, NONE);
        let listed: Vec<(String, String, String)> = response
            .groups
            .iter()
            .map(|g| {
                (
                    g.group_id.to_string(),
                    g.protocol_type.to_string(),
                    g.group_state.to_string(),
                )
            })
            .collect();
        let state = |name: &str| {
            if version >= 4 {
                name.to_owned()
            } else {
                String::new()
            }
        };
        assert_eq!(
            listed,
            vec![
                ("offsets-only".into(), String::new(), state("Empty")),
                ("stable".into(), "consumer".into(), state("Stable")),
            ]
        );
    }

    let filtered = ListGroupsRequest::default().with_states_filter(vec![s("stable"), s("Dead")]);
    let response = coordinator.list_groups(filtered, 4).await;
    let ids: Vec<&str> = response
        .groups
        .iter()
        .map(|g| g.group_id.as_str())
        .collect();
    assert_eq!(ids, ["stable"]);
}

#[tokio::test(start_paused = true)]
async fn describe_groups_shows_members_with_metadata_and_assignment_once_stable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let group = form_group(&coordinator, "g", 2).await;

    for version in 0..=5 {
        let request = DescribeGroupsRequest::default()
            .with_groups(vec![group_id("g"), group_id("unknown")])
            .with_include_authorized_operations(version >= 3);
        let response = encodable(coordinator.describe_groups(request, version).await, version);
        let [described, unknown] = &response.groups[..] else {
            panic!("expected two groups, got {:?}", response.groups);
        };
        assert_eq!(described.error_code, NONE);
        assert_eq!(described.group_state.as_str(), "Stable");
        assert_eq!(described.protocol_type.as_str(), "consumer");
        assert_eq!(described.protocol_data.as_str(), "range");
        let mut members: Vec<(String, Bytes)> = described
            .members
            .iter()
            .map(|m| (m.member_id.to_string(), m.member_assignment.clone()))
            .collect();
        members.sort();
        let mut expected = vec![
            (group.members[0].clone(), Bytes::from("a-0")),
            (group.members[1].clone(), Bytes::from("a-1")),
        ];
        expected.sort();
        assert_eq!(members, expected);
        assert!(described
            .members
            .iter()
            .all(|m| m.member_metadata.starts_with(b"meta-")));
        assert!(described
            .members
            .iter()
            .all(|m| m.client_host.as_str() == "/127.0.0.1"));
        if version >= 3 {
            assert_eq!(
                described.authorized_operations,
                (1 << 3) | (1 << 6) | (1 << 8)
            );
        }

        // Kafka reports an unknown group as Dead, without an error.
        assert_eq!(unknown.error_code, NONE);
        assert_eq!(unknown.group_state.as_str(), "Dead");
        assert_eq!(unknown.protocol_type.as_str(), "");
        assert!(unknown.members.is_empty());
    }

    // While rebalancing, members are listed without metadata or assignment.
    let _newcomer = spawn_join(&coordinator, join_request("g", "", &[("range", "m")]), 3);
    settle().await;
    let request = DescribeGroupsRequest::default().with_groups(vec![group_id("g")]);
    let response = coordinator.describe_groups(request, 5).await;
    let described = &response.groups[0];
    assert_eq!(described.group_state.as_str(), "PreparingRebalance");
    assert_eq!(described.protocol_data.as_str(), "");
    assert_eq!(described.members.len(), 3);
    assert!(described
        .members
        .iter()
        .all(|m| m.member_assignment.is_empty()));
}

#[tokio::test(start_paused = true)]
async fn the_overview_decodes_consumer_assignments_and_lists_offsets() {
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

    let leader_part = consumer_assignment(&[("t", &[0, 1]), ("u", &[0])]);
    let follower_part = consumer_assignment(&[("t", &[2])]);
    let follower_sync = spawn_sync(&coordinator, sync_request("g", 1, &follower, &[]), 3);
    let mut request = sync_request("g", 1, &leader, &[]);
    request.assignments = [(&leader, &leader_part), (&follower, &follower_part)]
        .into_iter()
        .map(|(member, assignment)| {
            kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(s(member))
                .with_assignment(assignment.clone())
        })
        .collect();
    spawn_sync(&coordinator, request, 3)
        .await
        .expect("leader sync");
    follower_sync.await.expect("follower sync");
    let commit = commit_request("g", 1, &leader, &[("t", 0, 17, Some("m"))]);
    assert_eq!(common::commit(&coordinator, commit, 8).await[0].2, NONE);

    let overview = coordinator.groups_overview();
    assert_eq!(overview.len(), 1);
    let group = &overview[0];
    assert_eq!(group.state, GroupState::Stable);
    assert_eq!(group.generation, 1);
    assert_eq!(group.protocol.as_deref(), Some("range"));
    assert_eq!(group.leader.as_deref(), Some(leader.as_str()));
    let leader_view = group
        .members
        .iter()
        .find(|m| m.member_id == leader)
        .expect("leader listed");
    assert_eq!(leader_view.client_id, "test-client");
    assert_eq!(
        leader_view.assignment,
        vec![
            AssignedPartitions {
                topic: "t".into(),
                partitions: vec![0, 1]
            },
            AssignedPartitions {
                topic: "u".into(),
                partitions: vec![0]
            },
        ]
    );
    assert_eq!(group.offsets.len(), 1);
    assert_eq!(group.offsets[0].offset, 17);
    assert_eq!(group.offsets[0].metadata, "m");
    assert_eq!(group.offsets[0].leader_epoch, 5);
    assert!(group.offsets[0].commit_timestamp_ms > 0);
}

/// The broker spawns handler futures onto a multi-threaded runtime: they must be `Send`, and
/// the coordinator `Send + Sync`.
#[tokio::test]
async fn the_coordinator_and_its_handler_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<freshet_coordinator::GroupCoordinator>();

    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let exists = |_: &str, _: i32| true;
    assert_send(&coordinator.join_group(join_request("g", "", &[]), 5, "c", "h"));
    assert_send(&coordinator.sync_group(sync_request("g", 1, "m", &[]), 4));
    assert_send(&coordinator.heartbeat(Default::default(), 4));
    assert_send(&coordinator.leave_group(Default::default(), 4));
    assert_send(&coordinator.offset_commit(Default::default(), 8, &exists));
    assert_send(&coordinator.offset_fetch(Default::default(), 7));
    assert_send(&coordinator.list_groups(Default::default(), 4));
    assert_send(&coordinator.describe_groups(Default::default(), 5));
    assert_send(&coordinator.delete_topic("t"));
    assert_send(&coordinator.close());
}
