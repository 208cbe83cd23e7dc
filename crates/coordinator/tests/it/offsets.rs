//! OffsetCommit, OffsetFetch and durability through the public API, on real files.

use crate::common;

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::*;
use freshet_coordinator::{GroupCoordinator, MAX_OFFSET_METADATA_BYTES};

#[tokio::test]
async fn commits_round_trip_with_metadata_and_leader_epoch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let commits = [
        ("t", 0, 42, Some("checkpoint")),
        ("t", 1, 7, None),
        ("u", 3, 9, Some("")),
    ];
    let results = commit(&coordinator, commit_request("g", -1, "", &commits), 8).await;
    assert!(
        results.iter().all(|(_, _, error)| *error == NONE),
        "{results:?}"
    );

    let partitions: &[i32] = &[0, 1, 2];
    let fetched = fetch(&coordinator, "g", Some(&[("t", partitions)]), 7).await;
    assert_eq!(
        fetched,
        vec![
            ("t".into(), 0, 42, Some("checkpoint".into()), 5, NONE),
            ("t".into(), 1, 7, Some(String::new()), 5, NONE),
            ("t".into(), 2, -1, Some(String::new()), -1, NONE),
        ]
    );
    // Before v5 the leader epoch is not on the wire.
    let fetched = fetch(&coordinator, "g", Some(&[("t", &[0])]), 4).await;
    assert_eq!(fetched[0].4, -1);
    // Null topics: everything the group committed.
    let all = fetch(&coordinator, "g", None, 7).await;
    let keys: Vec<(String, i32, i64)> = all.iter().map(|f| (f.0.clone(), f.1, f.2)).collect();
    assert_eq!(
        keys,
        vec![("t".into(), 0, 42), ("t".into(), 1, 7), ("u".into(), 3, 9)]
    );
    // A topic named without partitions: all of its committed partitions.
    let fetched = fetch(&coordinator, "g", Some(&[("u", &[])]), 7).await;
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].2, 9);
    // An unknown group simply has nothing.
    assert_eq!(
        fetch(&coordinator, "other", Some(&[("t", &[0])]), 1).await[0].2,
        -1
    );
    assert!(fetch(&coordinator, "other", None, 7).await.is_empty());
}

#[tokio::test]
async fn every_offset_version_round_trips_and_encodes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    for version in 2..=8 {
        let request = commit_request("g", -1, "", &[("t", 0, i64::from(version), Some("m"))]);
        assert_eq!(
            commit(&coordinator, request, version).await,
            vec![("t".into(), 0, NONE)]
        );
        for fetch_version in 1..=7 {
            let offset = fetch(&coordinator, "g", Some(&[("t", &[0])]), fetch_version).await[0].2;
            assert_eq!(offset, i64::from(version));
        }
    }
}

#[tokio::test]
async fn oversized_metadata_and_unknown_partitions_fail_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let too_long = "x".repeat(MAX_OFFSET_METADATA_BYTES + 1);
    let just_fits = "y".repeat(MAX_OFFSET_METADATA_BYTES);
    let commits = [
        ("t", 0, 1, Some(too_long.as_str())),
        ("t", 1, 2, Some(just_fits.as_str())),
        ("missing", 0, 3, None),
    ];
    let exists = |topic: &str, partition: i32| topic == "t" && partition < 4;
    let response = coordinator
        .offset_commit(commit_request("g", -1, "", &commits), 8, &exists)
        .await;
    assert_eq!(
        flatten_commit(response),
        vec![
            ("t".into(), 0, OFFSET_METADATA_TOO_LARGE),
            ("t".into(), 1, NONE),
            ("missing".into(), 0, UNKNOWN_TOPIC_OR_PARTITION),
        ]
    );
    assert_eq!(committed_offset(&coordinator, "g", "t", 0).await, -1);
    assert_eq!(committed_offset(&coordinator, "g", "t", 1).await, 2);
    assert_eq!(committed_offset(&coordinator, "g", "missing", 0).await, -1);
}

#[tokio::test(start_paused = true)]
async fn member_commits_need_the_current_generation_and_a_settled_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let group = form_group(&coordinator, "g", 2).await;
    let one = [("t", 0, 10, None)];
    let try_commit = |generation: i32, member: &str| {
        let request = commit_request("g", generation, member, &one);
        let coordinator = Arc::clone(&coordinator);
        async move { commit(&coordinator, request, 8).await[0].2 }
    };

    assert_eq!(try_commit(1, &group.leader).await, NONE);
    assert_eq!(try_commit(2, &group.leader).await, ILLEGAL_GENERATION);
    assert_eq!(try_commit(1, "stranger").await, UNKNOWN_MEMBER_ID);
    assert_eq!(
        try_commit(-1, "").await,
        UNKNOWN_MEMBER_ID,
        "the group has members"
    );

    // PreparingRebalance: still allowed (the member learns of the rebalance by heartbeat).
    let newcomer = spawn_join(&coordinator, join_request("g", "", &[("range", "m")]), 3);
    settle().await;
    assert_eq!(try_commit(1, group.follower()).await, NONE);
    // CompletingRebalance: the member has a new generation but no assignment yet.
    let rejoins: Vec<_> = group
        .members
        .iter()
        .map(|m| spawn_join(&coordinator, join_request("g", m, &[("range", "m")]), 3))
        .collect();
    for handle in rejoins {
        assert_eq!(handle.await.expect("rejoin").generation_id, 2);
    }
    assert_eq!(newcomer.await.expect("newcomer").generation_id, 2);
    assert_eq!(try_commit(2, &group.leader).await, REBALANCE_IN_PROGRESS);
    assert_eq!(try_commit(1, &group.leader).await, ILLEGAL_GENERATION);
}

#[tokio::test]
async fn standalone_commits_need_an_empty_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    simple_commit(&coordinator, "solo", "t", 0, 5).await;
    let overview = coordinator.groups_overview();
    assert_eq!(
        overview[0].group_id, "solo",
        "a standalone commit creates the group"
    );
    assert_eq!(overview[0].offsets[0].offset, 5);
    // A member commit to a group that does not exist comes from a generation long gone.
    let request = commit_request("ghost", 3, "member", &[("t", 0, 1, None)]);
    assert_eq!(
        commit(&coordinator, request, 8).await[0].2,
        ILLEGAL_GENERATION
    );
    // OffsetCommit v0 carries no membership at all. (The vendored codec cannot encode
    // OffsetCommit below v2, so the response is checked without encoding it.)
    let request = commit_request("v0", 9, "ignored", &[("t", 0, 1, None)]);
    let response = coordinator
        .offset_commit(request, 0, &all_partitions_exist)
        .await;
    assert_eq!(flatten_commit(response)[0].2, NONE);
}

#[tokio::test(start_paused = true)]
async fn a_commit_counts_as_a_heartbeat() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let group = form_group(&coordinator, "g", 1).await;
    for offset in 0..5 {
        tokio::time::advance(Duration::from_secs(4)).await;
        let request = commit_request("g", 1, &group.leader, &[("t", 0, offset, None)]);
        assert_eq!(commit(&coordinator, request, 8).await[0].2, NONE);
    }
    assert_eq!(
        heartbeat(&coordinator, "g", 1, &group.leader).await,
        NONE,
        "20 s, alive"
    );
}

#[tokio::test]
async fn commits_survive_close_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    simple_commit(&coordinator, "g", "t", 0, 100).await;
    simple_commit(&coordinator, "g", "t", 0, 101).await;
    coordinator.close().await;
    drop(coordinator);

    let coordinator = open(dir.path());
    assert_eq!(committed_offset(&coordinator, "g", "t", 0).await, 101);
}

#[tokio::test]
async fn acknowledged_commits_survive_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    simple_commit(&coordinator, "g", "t", 0, 7).await;
    simple_commit(&coordinator, "g", "t", 1, 8).await;
    drop(coordinator); // no close(): nothing is flushed on the way out

    let coordinator = open(dir.path());
    assert_eq!(committed_offset(&coordinator, "g", "t", 0).await, 7);
    assert_eq!(committed_offset(&coordinator, "g", "t", 1).await, 8);
}

#[tokio::test]
async fn a_torn_tail_is_truncated_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("offsets.log");
    let coordinator = open(dir.path());
    simple_commit(&coordinator, "g", "t", 0, 7).await;
    drop(coordinator);
    let good_len = std::fs::metadata(&path).expect("metadata").len();
    // Half a frame: a length that promises more bytes than follow.
    let mut file = OpenOptions::new().append(true).open(&path).expect("open");
    file.write_all(&[0, 0, 0, 60, 1, 2, 3, 4, 1, 0, 0])
        .expect("write");
    drop(file);

    let coordinator = open(dir.path());
    assert_eq!(std::fs::metadata(&path).expect("metadata").len(), good_len);
    assert_eq!(committed_offset(&coordinator, "g", "t", 0).await, 7);
    simple_commit(&coordinator, "g", "t", 0, 8).await;
    drop(coordinator);
    assert_eq!(committed_offset(&open(dir.path()), "g", "t", 0).await, 8);
}

#[tokio::test]
async fn a_deleted_topics_offsets_are_forgotten_durably() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    simple_commit(&coordinator, "a", "doomed", 0, 1).await;
    simple_commit(&coordinator, "b", "doomed", 2, 1).await;
    simple_commit(&coordinator, "b", "kept", 0, 5).await;
    coordinator.delete_topic("doomed").await;
    assert_eq!(committed_offset(&coordinator, "b", "doomed", 2).await, -1);
    drop(coordinator);

    let coordinator = open(dir.path());
    assert_eq!(committed_offset(&coordinator, "a", "doomed", 0).await, -1);
    assert_eq!(committed_offset(&coordinator, "b", "kept", 0).await, 5);
}

#[tokio::test(start_paused = true)]
async fn generations_never_go_backwards_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coordinator = open(dir.path());
    let group = form_group(&coordinator, "g", 1).await;
    let rejoin = join(
        &coordinator,
        join_request("g", &group.leader, &[("range", "m")]),
        3,
    )
    .await;
    assert_eq!(rejoin.generation_id, 2);
    drop(coordinator); // crash: the JoinGroup answer waited for the generation to be durable

    let coordinator = open(dir.path());
    let overview = coordinator.groups_overview();
    assert_eq!(overview[0].generation, 2);
    assert_eq!(overview[0].protocol_type, "consumer");
    assert_eq!(
        heartbeat(&coordinator, "g", 2, &group.leader).await,
        UNKNOWN_MEMBER_ID
    );
    let fresh = join(&coordinator, join_request("g", "", &[("range", "m")]), 3).await;
    assert_eq!(fresh.generation_id, 3);
    coordinator.close().await;
    drop(coordinator);

    let coordinator = open(dir.path());
    let fresh = join(&coordinator, join_request("g", "", &[("range", "m")]), 3).await;
    assert_eq!(fresh.generation_id, 4);
}

/// The fsync round is held back (the runtime's only blocking thread is busy) while 20
/// commits arrive; all of them must then be made durable together.
#[test]
fn concurrent_commits_share_fsyncs() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    runtime.block_on(async {
        let coordinator = open(dir.path());
        let (release, gate) = mpsc::channel::<()>();
        let blocker = tokio::task::spawn_blocking(move || gate.recv());
        let commits: Vec<_> = (0..20)
            .map(|partition| {
                let coordinator: Arc<GroupCoordinator> = Arc::clone(&coordinator);
                tokio::spawn(async move {
                    let request = commit_request("g", -1, "", &[("t", partition, 1, None)]);
                    commit(&coordinator, request, 8).await
                })
            })
            .collect();
        // Let every commit reach the store (they only wait for the fsync from then on).
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            commits.iter().all(|c| !c.is_finished()),
            "answered before fsync"
        );
        release.send(()).expect("release");
        for handle in commits {
            let results = handle.await.expect("commit task");
            assert_eq!(results[0].2, NONE);
        }
        blocker.await.expect("blocker").expect("gate");
        assert_eq!(coordinator.offsets_fsync_count(), 1);
    });
}
