use std::sync::mpsc;
use std::time::Duration;

use super::*;

fn commit(group: &str, topic: &str, partition: i32, offset: i64) -> Record {
    Record::OffsetCommit {
        group: group.into(),
        topic: topic.into(),
        partition,
        offset: CommittedOffset {
            offset,
            leader_epoch: 3,
            metadata: format!("meta-{offset}"),
            commit_timestamp_ms: 1_700_000_000_000 + offset,
        },
    }
}

fn generation(group: &str, generation: i32) -> Record {
    Record::Generation {
        group: group.into(),
        generation,
        protocol_type: "consumer".into(),
    }
}

fn open(dir: &Path) -> Arc<OffsetStore> {
    OffsetStore::open(dir, CompactionPolicy::default(), Handle::current()).expect("open store")
}

async fn append_durably(store: &Arc<OffsetStore>, records: Vec<Record>) {
    let seq = store.append(records).expect("append");
    store.wait_durable(seq).await.expect("durable");
}

fn offset_of(store: &OffsetStore, group: &str, topic: &str, partition: i32) -> Option<i64> {
    store.committed(group, topic, partition).map(|c| c.offset)
}

#[tokio::test]
async fn a_new_directory_gets_an_empty_file_with_the_magic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir.path().join("nested"));
    assert!(store.known_groups().is_empty());
    let bytes = fs::read(dir.path().join("nested").join(FILE_NAME)).expect("file");
    assert_eq!(bytes, FILE_MAGIC);
}

#[tokio::test]
async fn durable_records_are_visible_and_survive_a_reopen_without_flush() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    append_durably(
        &store,
        vec![commit("g", "t", 0, 10), commit("g", "t", 1, 11)],
    )
    .await;
    append_durably(&store, vec![commit("g", "t", 0, 20), generation("g", 4)]).await;
    assert_eq!(offset_of(&store, "g", "t", 0), Some(20));
    drop(store); // no flush: what was acknowledged is already on disk

    let store = open(dir.path());
    assert_eq!(offset_of(&store, "g", "t", 0), Some(20));
    assert_eq!(offset_of(&store, "g", "t", 1), Some(11));
    let committed = store.committed("g", "t", 1).expect("committed");
    assert_eq!(committed.metadata, "meta-11");
    assert_eq!(committed.leader_epoch, 3);
    let groups = store.known_groups();
    let stored = groups["g"].as_ref().expect("generation");
    assert_eq!(stored.generation, 4);
    assert_eq!(stored.protocol_type, "consumer");
}

#[tokio::test]
async fn a_topic_deletion_forgets_that_topic_in_every_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let records = vec![
        commit("a", "gone", 0, 1),
        commit("b", "gone", 1, 2),
        commit("b", "kept", 0, 3),
    ];
    append_durably(&store, records).await;
    let deletion = Record::TopicDeleted {
        topic: "gone".into(),
    };
    append_durably(&store, vec![deletion]).await;
    assert_eq!(offset_of(&store, "a", "gone", 0), None);
    assert_eq!(offset_of(&store, "b", "gone", 1), None);
    assert_eq!(offset_of(&store, "b", "kept", 0), Some(3));
    drop(store);

    let store = open(dir.path());
    assert_eq!(offset_of(&store, "b", "gone", 1), None);
    assert_eq!(offset_of(&store, "b", "kept", 0), Some(3));
    assert!(!store.known_groups().contains_key("a"));
}

#[tokio::test]
async fn a_torn_tail_is_cut_off_and_appends_continue_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    let store = open(dir.path());
    append_durably(&store, vec![commit("g", "t", 0, 1)]).await;
    drop(store);
    let good_len = fs::metadata(&path).expect("metadata").len();

    // A crash halfway through writing the next frame.
    let mut frame = Vec::new();
    commit("g", "t", 0, 2)
        .encode_frame(&mut frame)
        .expect("encode");
    let mut file = OpenOptions::new().append(true).open(&path).expect("open");
    file.write_all(&frame[..frame.len() / 2]).expect("write");
    drop(file);

    let store = open(dir.path());
    assert_eq!(offset_of(&store, "g", "t", 0), Some(1));
    assert_eq!(fs::metadata(&path).expect("metadata").len(), good_len);
    append_durably(&store, vec![commit("g", "t", 0, 3)]).await;
    drop(store);

    let store = open(dir.path());
    assert_eq!(offset_of(&store, "g", "t", 0), Some(3));
}

#[tokio::test]
async fn garbage_after_the_last_frame_is_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    let store = open(dir.path());
    append_durably(&store, vec![commit("g", "t", 0, 1)]).await;
    drop(store);
    let good_len = fs::metadata(&path).expect("metadata").len();
    let mut file = OpenOptions::new().append(true).open(&path).expect("open");
    file.write_all(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1, 2, 3, 4])
        .expect("write");
    drop(file);

    let store = open(dir.path());
    assert_eq!(offset_of(&store, "g", "t", 0), Some(1));
    assert_eq!(fs::metadata(&path).expect("metadata").len(), good_len);
}

#[tokio::test]
async fn a_file_cut_inside_the_magic_starts_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join(FILE_NAME), &FILE_MAGIC[..3]).expect("write");
    let store = open(dir.path());
    append_durably(&store, vec![commit("g", "t", 0, 1)]).await;
    drop(store);
    assert_eq!(offset_of(&open(dir.path()), "g", "t", 0), Some(1));
}

#[tokio::test]
async fn a_foreign_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join(FILE_NAME), b"something else entirely").expect("write");
    let result = OffsetStore::open(dir.path(), CompactionPolicy::default(), Handle::current());
    assert!(matches!(result, Err(StoreError::NotAnOffsetsFile { .. })));
}

#[tokio::test]
async fn an_undecodable_record_is_refused_not_truncated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    let body = [42u8, 0, 0];
    let mut bytes = FILE_MAGIC.to_vec();
    bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    bytes.extend_from_slice(&body);
    fs::write(&path, &bytes).expect("write");

    let result = OffsetStore::open(dir.path(), CompactionPolicy::default(), Handle::current());
    assert!(matches!(
        result,
        Err(StoreError::Corrupt { position: 8, .. })
    ));
    assert_eq!(fs::read(&path).expect("read"), bytes);
}

#[tokio::test]
async fn compaction_keeps_only_the_latest_record_per_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    let policy = CompactionPolicy {
        min_file_bytes: 4096,
        max_garbage_ratio: 4,
    };
    let store = OffsetStore::open(dir.path(), policy, Handle::current()).expect("open");
    append_durably(
        &store,
        vec![generation("g", 1), commit("g", "doomed", 0, 1)],
    )
    .await;
    let deletion = Record::TopicDeleted {
        topic: "doomed".into(),
    };
    append_durably(&store, vec![deletion]).await;
    for offset in 0..500 {
        let records = vec![commit("g", "t", 0, offset), commit("g", "t", 1, offset)];
        append_durably(&store, records).await;
    }
    append_durably(&store, vec![generation("g", 2)]).await;
    store.wait_idle().await;

    let live = FILE_MAGIC.len() as u64
        + generation("g", 2).frame_len()
        + commit("g", "t", 0, 499).frame_len()
        + commit("g", "t", 1, 499).frame_len();
    let len = store.file_len();
    assert_eq!(len, fs::metadata(&path).expect("metadata").len());
    assert!(
        len < policy.min_file_bytes.max(live * policy.max_garbage_ratio) + 200,
        "file not compacted: {len} bytes"
    );
    assert!(!dir.path().join(COMPACTION_TMP_NAME).exists());
    drop(store);

    let store = open(dir.path());
    assert_eq!(offset_of(&store, "g", "t", 0), Some(499));
    assert_eq!(offset_of(&store, "g", "t", 1), Some(499));
    assert_eq!(offset_of(&store, "g", "doomed", 0), None);
    let groups = store.known_groups();
    assert_eq!(groups["g"].as_ref().map(|g| g.generation), Some(2));
}

#[tokio::test]
async fn opening_compacts_a_file_that_is_mostly_garbage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    for offset in 0..200 {
        append_durably(&store, vec![commit("g", "t", 0, offset)]).await;
    }
    let before = store.file_len();
    drop(store);

    let policy = CompactionPolicy {
        min_file_bytes: 1024,
        max_garbage_ratio: 4,
    };
    let store = OffsetStore::open(dir.path(), policy, Handle::current()).expect("open");
    let expected = FILE_MAGIC.len() as u64 + commit("g", "t", 0, 199).frame_len();
    assert!(before > expected * 4);
    assert_eq!(store.file_len(), expected);
    assert_eq!(offset_of(&store, "g", "t", 0), Some(199));
}

/// The sync round cannot start while the only blocking thread is taken, so every append made
/// meanwhile must be covered by a single fsync.
#[test]
fn appends_waiting_for_the_same_round_share_one_fsync() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    runtime.block_on(async {
        let store = open(dir.path());
        let (release, gate) = mpsc::channel::<()>();
        let blocker = tokio::task::spawn_blocking(move || gate.recv());

        let seqs: Vec<u64> = (0..50)
            .map(|i| {
                store
                    .append(vec![commit("g", "t", i, i64::from(i))])
                    .expect("append")
            })
            .collect();
        assert_eq!(store.fsync_count(), 0);
        assert_eq!(
            offset_of(&store, "g", "t", 0),
            None,
            "visible before durable"
        );

        release.send(()).expect("release");
        let waits = seqs.iter().map(|&seq| store.wait_durable(seq));
        for wait in waits {
            wait.await.expect("durable");
        }
        blocker.await.expect("blocker").expect("gate");
        assert_eq!(store.fsync_count(), 1);
        assert_eq!(offset_of(&store, "g", "t", 49), Some(49));
    });
}

fn membership(group: &str, generation: i32) -> StoredMembership {
    StoredMembership {
        group: group.into(),
        generation,
        protocol_type: "consumer".into(),
        protocol: "range".into(),
        leader: "m-1".into(),
        members: vec![StoredMember {
            member_id: "m-1".into(),
            instance_id: None,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocols: vec![("range".into(), bytes::Bytes::from_static(b"sub"))],
            assignment: bytes::Bytes::from_static(b"assigned"),
        }],
    }
}

#[tokio::test]
async fn members_live_until_a_later_generation_or_a_deletion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    append_durably(
        &store,
        vec![
            generation("g", 3),
            Record::ClassicGroup(membership("g", 3)),
            generation("h", 1),
            Record::ClassicGroup(membership("h", 1)),
            generation("h", 2),
        ],
    )
    .await;
    drop(store);

    let store = open(dir.path());
    assert_eq!(store.memberships(), vec![membership("g", 3)]);
    assert_eq!(
        store.known_groups()["h"].as_ref().map(|g| g.generation),
        Some(2),
        "h's members belong to generation 1, which generation 2 replaced"
    );
    append_durably(&store, vec![commit("g", "t", 0, 1)]).await;
    append_durably(&store, vec![Record::GroupDeleted { group: "g".into() }]).await;
    assert!(store.memberships().is_empty());
    assert!(!store.known_groups().contains_key("g"));
    assert_eq!(offset_of(&store, "g", "t", 0), None);
    drop(store);
    let store = open(dir.path());
    assert!(!store.known_groups().contains_key("g"));
    assert_eq!(offset_of(&store, "g", "t", 0), None);
}

#[tokio::test]
async fn an_offset_deletion_forgets_one_partition_and_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    append_durably(&store, vec![commit("g", "t", 0, 1), commit("g", "t", 1, 2)]).await;
    let deletion = Record::OffsetDeleted {
        group: "g".into(),
        topic: "t".into(),
        partition: 0,
    };
    append_durably(&store, vec![deletion]).await;
    assert_eq!(offset_of(&store, "g", "t", 0), None);
    drop(store);
    let store = open(dir.path());
    assert_eq!(offset_of(&store, "g", "t", 0), None);
    assert_eq!(offset_of(&store, "g", "t", 1), Some(2));
}

#[tokio::test]
async fn compaction_keeps_members_and_drops_deleted_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = CompactionPolicy {
        min_file_bytes: 4096,
        max_garbage_ratio: 4,
    };
    let store = OffsetStore::open(dir.path(), policy, Handle::current()).expect("open");
    let doomed = vec![generation("doomed", 1), commit("doomed", "t", 0, 1)];
    append_durably(&store, doomed).await;
    append_durably(
        &store,
        vec![Record::GroupDeleted {
            group: "doomed".into(),
        }],
    )
    .await;
    append_durably(&store, vec![Record::ClassicGroup(membership("g", 1))]).await;
    for offset in 0..500 {
        append_durably(&store, vec![commit("g", "t", 0, offset)]).await;
    }
    store.wait_idle().await;
    let live = FILE_MAGIC.len() as u64
        + Record::ClassicGroup(membership("g", 1)).frame_len()
        + commit("g", "t", 0, 499).frame_len();
    assert!(store.file_len() < policy.min_file_bytes.max(live * 4) + 200);
    drop(store);

    let store = open(dir.path());
    assert_eq!(store.memberships(), vec![membership("g", 1)]);
    assert!(!store.known_groups().contains_key("doomed"));
    assert_eq!(offset_of(&store, "g", "t", 0), Some(499));
}

/// A group's offsets include commits still waiting for their fsync, so a deletion decided
/// meanwhile cannot take an acknowledged commit with it.
#[test]
fn has_offsets_counts_appends_that_are_not_durable_yet() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    runtime.block_on(async {
        let store = open(dir.path());
        append_durably(&store, vec![commit("g", "t", 0, 1)]).await;
        let (release, gate) = mpsc::channel::<()>();
        let blocker = tokio::task::spawn_blocking(move || gate.recv());

        let deletion = Record::OffsetDeleted {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
        };
        store.append(vec![deletion]).expect("append");
        assert!(!store.has_offsets("g"), "its only offset is being deleted");
        let seq = store.append(vec![commit("g", "u", 0, 2)]).expect("append");
        assert!(store.has_offsets("g"), "a commit is on its way to disk");
        assert!(!store.has_offsets("other"));
        let topic_deletion = Record::TopicDeleted { topic: "u".into() };
        store.append(vec![topic_deletion]).expect("append");
        assert!(!store.has_offsets("g"));

        release.send(()).expect("release");
        store.wait_durable(seq + 1).await.expect("durable");
        blocker.await.expect("blocker").expect("gate");
        assert!(!store.has_offsets("g"));
    });
}

/// Bytes laid out by hand as the first version of the format wrote them (kinds 1-3 only), not
/// by today's encoder: a store from before kinds 4-6 must open unchanged.
#[tokio::test]
async fn a_file_from_before_membership_and_deletions_opens() {
    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
        out.extend_from_slice(body);
        out
    }
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let mut generation = vec![2u8];
    string(&mut generation, "old");
    generation.extend_from_slice(&7i32.to_be_bytes());
    string(&mut generation, "consumer");
    let mut commit = vec![1u8];
    string(&mut commit, "old");
    string(&mut commit, "t");
    commit.extend_from_slice(&0i32.to_be_bytes());
    commit.extend_from_slice(&41i64.to_be_bytes());
    commit.extend_from_slice(&(-1i32).to_be_bytes());
    commit.extend_from_slice(&1_600_000_000_000i64.to_be_bytes());
    string(&mut commit, "m");
    let mut bytes = b"FRSHOFS1".to_vec();
    bytes.extend(frame(&generation));
    bytes.extend(frame(&commit));
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join(FILE_NAME), &bytes).expect("write");

    let store = open(dir.path());
    assert_eq!(offset_of(&store, "old", "t", 0), Some(41));
    let generation = store.known_groups()["old"].clone().expect("generation");
    assert_eq!(generation.generation, 7);
    assert!(store.memberships().is_empty());
}

fn txn_commit(producer_id: i64, group: &str, topic: &str, partition: i32, offset: i64) -> Record {
    let Record::OffsetCommit { offset, .. } = commit(group, topic, partition, offset) else {
        panic!("commit() builds an OffsetCommit");
    };
    Record::TxnOffsetCommit {
        producer_id,
        group: group.into(),
        topic: topic.into(),
        partition,
        offset,
    }
}

fn completed(producer_id: i64, group: &str, committed: bool) -> Record {
    Record::TxnCompleted {
        producer_id,
        group: group.into(),
        committed,
    }
}

fn pending_of(store: &OffsetStore, group: &str) -> Vec<(String, i32)> {
    store.pending_partitions(group).into_iter().collect()
}

#[tokio::test]
async fn pending_offsets_are_invisible_until_their_transaction_commits_and_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    append_durably(&store, vec![commit("g", "t", 0, 5)]).await;
    append_durably(
        &store,
        vec![
            txn_commit(7, "g", "t", 0, 10),
            txn_commit(7, "g", "t", 1, 11),
        ],
    )
    .await;
    assert_eq!(
        offset_of(&store, "g", "t", 0),
        Some(5),
        "still the plain commit"
    );
    assert_eq!(offset_of(&store, "g", "t", 1), None);
    assert!(store.has_pending(7, "g"));
    assert!(!store.has_pending(8, "g"));
    drop(store);

    let store = open(dir.path());
    assert_eq!(
        pending_of(&store, "g"),
        vec![("t".into(), 0), ("t".into(), 1)]
    );
    assert_eq!(offset_of(&store, "g", "t", 0), Some(5));
    append_durably(&store, vec![completed(7, "g", true)]).await;
    assert_eq!(offset_of(&store, "g", "t", 0), Some(10));
    assert_eq!(offset_of(&store, "g", "t", 1), Some(11));
    assert!(pending_of(&store, "g").is_empty());
    // A second completion (recovery finishing it again) changes nothing.
    append_durably(&store, vec![completed(7, "g", true)]).await;
    drop(store);

    let store = open(dir.path());
    assert_eq!(offset_of(&store, "g", "t", 0), Some(10));
    assert_eq!(offset_of(&store, "g", "t", 1), Some(11));
    assert!(!store.has_pending(7, "g"));
}

#[tokio::test]
async fn an_abort_drops_only_that_producers_offsets_in_that_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let records = vec![
        commit("g", "t", 0, 5),
        txn_commit(7, "g", "t", 0, 10),
        txn_commit(7, "other", "t", 0, 20),
        txn_commit(8, "g", "t", 1, 30),
    ];
    append_durably(&store, records).await;
    append_durably(&store, vec![completed(7, "g", false)]).await;
    assert_eq!(offset_of(&store, "g", "t", 0), Some(5));
    assert!(!store.has_pending(7, "g"));
    assert!(
        store.has_pending(7, "other"),
        "another group of the producer"
    );
    assert!(store.has_pending(8, "g"), "another producer in the group");
    // An abort does not turn into a commit when repeated as one (only the end counts).
    append_durably(&store, vec![completed(7, "g", true)]).await;
    assert_eq!(offset_of(&store, "g", "t", 0), Some(5));
    drop(store);

    let store = open(dir.path());
    assert_eq!(offset_of(&store, "g", "t", 0), Some(5));
    assert_eq!(pending_of(&store, "g"), vec![("t".into(), 1)]);
    assert_eq!(pending_of(&store, "other"), vec![("t".into(), 0)]);
}

#[tokio::test]
async fn a_plain_commit_made_after_a_pending_offset_wins_over_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let records = vec![
        txn_commit(7, "g", "t", 0, 10),
        commit("g", "t", 0, 50),
        commit("g", "t", 1, 60),
        txn_commit(7, "g", "t", 1, 11),
    ];
    append_durably(&store, records).await;
    append_durably(&store, vec![completed(7, "g", true)]).await;
    assert_eq!(
        offset_of(&store, "g", "t", 0),
        Some(50),
        "the later plain commit"
    );
    assert_eq!(
        offset_of(&store, "g", "t", 1),
        Some(11),
        "the later pending offset"
    );
}

/// Compaction rewrites commits and pending offsets in the order they were applied, so a
/// transaction that commits after the compaction decides as it would have before.
#[tokio::test]
async fn compaction_keeps_pending_offsets_and_their_order_against_plain_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let records = vec![
        txn_commit(7, "g", "t", 0, 10),
        txn_commit(8, "g", "t", 2, 12),
        commit("g", "t", 1, 60),
        txn_commit(7, "g", "t", 1, 11),
        // After 7's pending offset of partition 0: wins when 7 commits.
        commit("g", "t", 0, 50),
        txn_commit(9, "doomed", "t", 0, 1),
        completed(9, "doomed", false),
    ];
    append_durably(&store, records).await;
    for offset in 0..500 {
        append_durably(&store, vec![commit("g", "t", 3, offset)]).await;
    }
    drop(store);

    // Opening compacts the file (it is mostly garbage); nothing is appended after that.
    let policy = CompactionPolicy {
        min_file_bytes: 1024,
        max_garbage_ratio: 4,
    };
    let store = OffsetStore::open(dir.path(), policy, Handle::current()).expect("open");
    let live = FILE_MAGIC.len() as u64
        + commit("g", "t", 0, 50).frame_len()
        + commit("g", "t", 1, 60).frame_len()
        + commit("g", "t", 3, 499).frame_len()
        + txn_commit(7, "g", "t", 0, 10).frame_len()
        + txn_commit(7, "g", "t", 1, 11).frame_len()
        + txn_commit(8, "g", "t", 2, 12).frame_len();
    assert_eq!(store.file_len(), live, "compacted to the live records");
    drop(store);

    let store = open(dir.path());
    assert_eq!(
        pending_of(&store, "g"),
        vec![("t".into(), 0), ("t".into(), 1), ("t".into(), 2)]
    );
    assert!(pending_of(&store, "doomed").is_empty());
    append_durably(&store, vec![completed(7, "g", true)]).await;
    assert_eq!(
        offset_of(&store, "g", "t", 0),
        Some(50),
        "the later plain commit"
    );
    assert_eq!(
        offset_of(&store, "g", "t", 1),
        Some(11),
        "the later pending offset"
    );
    append_durably(&store, vec![completed(8, "g", true)]).await;
    assert_eq!(offset_of(&store, "g", "t", 2), Some(12));
}

#[tokio::test]
async fn deletions_take_pending_offsets_with_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let records = vec![
        txn_commit(7, "g", "t", 0, 10),
        txn_commit(7, "g", "t", 1, 11),
        txn_commit(7, "g", "gone", 0, 12),
        txn_commit(7, "h", "t", 0, 13),
    ];
    append_durably(&store, records).await;
    assert!(
        store.known_groups().contains_key("g"),
        "a group of pending offsets only"
    );
    assert!(store.has_offsets("g"));
    let deletions = vec![
        Record::TopicDeleted {
            topic: "gone".into(),
        },
        Record::OffsetDeleted {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
        },
        Record::GroupDeleted { group: "h".into() },
    ];
    append_durably(&store, deletions).await;
    assert_eq!(pending_of(&store, "g"), vec![("t".into(), 1)]);
    assert!(!store.has_pending(7, "h"));
    assert!(!store.known_groups().contains_key("h"));
    append_durably(
        &store,
        vec![completed(7, "g", true), completed(7, "h", true)],
    )
    .await;
    assert_eq!(offset_of(&store, "g", "t", 0), None);
    assert_eq!(offset_of(&store, "g", "t", 1), Some(11));
    assert_eq!(offset_of(&store, "g", "gone", 0), None);
    assert_eq!(
        offset_of(&store, "h", "t", 0),
        None,
        "the deleted group stays empty"
    );
}

/// Pending offsets on their way to disk count: a group is not deleted for having no offsets
/// while a transaction's offsets for it are being written, and a completion is written while
/// its producer's offsets are.
#[test]
fn appends_not_yet_durable_count_as_pending() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    runtime.block_on(async {
        let store = open(dir.path());
        let (release, gate) = mpsc::channel::<()>();
        let blocker = tokio::task::spawn_blocking(move || gate.recv());
        let seq = store
            .append(vec![txn_commit(7, "g", "t", 0, 1)])
            .expect("append");
        assert!(store.has_offsets("g"));
        assert!(store.has_pending(7, "g"));
        assert!(pending_of(&store, "g").is_empty(), "not acknowledged yet");
        release.send(()).expect("release");
        store.wait_durable(seq).await.expect("durable");
        blocker.await.expect("blocker").expect("gate");
        assert_eq!(pending_of(&store, "g"), vec![("t".into(), 0)]);
    });
}

/// Kinds 7 and 8 laid out by hand as the format describes them, so that a change to their
/// encoding cannot go unnoticed (files written with them must keep opening).
#[tokio::test]
async fn transactional_records_have_the_documented_layout() {
    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
        out.extend_from_slice(body);
        out
    }
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let pending = |partition: i32, offset: i64| {
        let mut body = vec![7u8];
        body.extend_from_slice(&42i64.to_be_bytes());
        string(&mut body, "g");
        string(&mut body, "t");
        body.extend_from_slice(&partition.to_be_bytes());
        body.extend_from_slice(&offset.to_be_bytes());
        body.extend_from_slice(&3i32.to_be_bytes());
        body.extend_from_slice(&1_600_000_000_000i64.to_be_bytes());
        string(&mut body, "m");
        body
    };
    let mut completion = vec![8u8];
    completion.extend_from_slice(&42i64.to_be_bytes());
    string(&mut completion, "g");
    completion.push(1);
    let mut bytes = FILE_MAGIC.to_vec();
    bytes.extend(frame(&pending(0, 17)));
    bytes.extend(frame(&completion));
    bytes.extend(frame(&pending(1, 18)));
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join(FILE_NAME), &bytes).expect("write");

    let store = open(dir.path());
    let committed = store.committed("g", "t", 0).expect("committed");
    assert_eq!((committed.offset, committed.leader_epoch), (17, 3));
    assert_eq!(committed.metadata, "m");
    assert_eq!(pending_of(&store, "g"), vec![("t".into(), 1)]);
    assert!(store.has_pending(42, "g"));
}

/// A compaction writes and fsyncs its new file without the store's lock: commits arriving
/// meanwhile are appended at once (on an async worker, waiting for that fsync would stall
/// every connection sharing it), then copied into the new file and made durable there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_do_not_wait_for_a_compaction_writing_its_new_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = CompactionPolicy {
        min_file_bytes: 4096,
        max_garbage_ratio: 4,
    };
    let store = OffsetStore::open(dir.path(), policy, Handle::current()).expect("open");
    let stall = freshet_os::stall::stall_under(&dir.path().join(COMPACTION_TMP_NAME));
    let mut offset = 0;
    let mut last_seq = 0;
    while !stall.has_held() {
        assert!(offset < 100_000, "the file never needed compacting");
        last_seq = store
            .append(vec![commit("g", "t", 0, offset)])
            .expect("append");
        offset += 1;
        let durable =
            tokio::time::timeout(Duration::from_millis(200), store.wait_durable(last_seq));
        let _ = durable.await;
    }

    // The compaction is held at its new file's fsync: an append must not wait for it.
    let (sent, appended) = mpsc::channel();
    let appender = Arc::clone(&store);
    std::thread::spawn(move || {
        let seq = appender.append(vec![commit("g", "t", 1, 42)]);
        let _ = sent.send(seq);
    });
    let seq = appended
        .recv_timeout(Duration::from_secs(5))
        .expect("the append did not wait for the compaction")
        .expect("append");

    drop(stall);
    store
        .wait_durable(seq)
        .await
        .expect("durable after the compaction");
    store.wait_durable(last_seq).await.expect("durable");
    store.wait_idle().await;
    let len = store.file_len();
    assert_eq!(
        len,
        fs::metadata(dir.path().join(FILE_NAME))
            .expect("file")
            .len()
    );
    assert!(
        len < policy.min_file_bytes,
        "compacted: {len} bytes after {offset} commits"
    );
    drop(store);
    let store = open(dir.path());
    assert_eq!(offset_of(&store, "g", "t", 0), Some(offset - 1));
    assert_eq!(offset_of(&store, "g", "t", 1), Some(42));
}
