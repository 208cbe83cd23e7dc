//! The tracker's state topic over a long run, compressed in time: snapshots keep it at about
//! two snapshots of the live state, a node that starts reads only that, and records written
//! under a superseded claim (a zombie's) move nothing.

use std::time::{Duration, Instant};

use freshet_services::tracker::checkpoint::{encode_chunks, ChunkHeader};
use freshet_services::tracker::state::{SetKind, Sets};
use freshet_services::tracker::view::Granularity;
use freshet_services::tracker::{Tracker, TrackerConfig, TrackerHandle, WindowLimits};
use freshet_services::KafkaConfig;
use freshet_testkit::{send_all, TestBroker};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::common::tracker::{event_json, eventually, stop};

const TOPIC: &str = "device-events";
/// 2024-09-18T13:00:00Z, the start of an hour.
const BASE_SECOND: i64 = 1_726_664_400;

fn config(node: &str) -> TrackerConfig {
    TrackerConfig {
        checkpoint_interval: Duration::from_millis(200),
        session_timeout: Duration::from_secs(6),
        node_id: Some(node.into()),
        window_limits: WindowLimits {
            minutes: 1,
            hours: 1,
        },
        ..TrackerConfig::default()
    }
}

fn state_topic() -> String {
    config("any").checkpoint_topic()
}

async fn start(broker: &TestBroker, node: &str) -> Tracker {
    Tracker::start(&KafkaConfig::new(broker.bootstrap()), config(node))
        .await
        .expect("tracker starts")
}

/// One event from each of `ips` addresses starting at `first_ip`, all at `second`.
async fn send_round(broker: &TestBroker, first_ip: u32, ips: u32, second: i64) {
    let ips: Vec<String> = (0..ips)
        .map(|i| std::net::Ipv4Addr::from(first_ip + i).to_string())
        .collect();
    let values: Vec<String> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| event_json(second, ip, i as u32 % 11))
        .collect();
    let records = ips
        .iter()
        .zip(&values)
        .map(|(ip, value)| FutureRecord::to(TOPIC).key(ip).payload(value));
    send_all(&broker.producer(&[("linger.ms", "5")]), records).await;
}

/// Bytes (keys and values) of every record the state topic holds now, tombstones included.
async fn state_topic_bytes(broker: &TestBroker) -> u64 {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "state-topic-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let topic = state_topic();
    tokio::task::spawn_blocking(move || {
        let (_, high) = consumer
            .fetch_watermarks(&topic, 0, Duration::from_secs(10))
            .expect("watermarks");
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&topic, 0, Offset::Beginning)
            .expect("partition");
        consumer.assign(&assignment).expect("assign");
        let mut bytes = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "state topic not read to {high}");
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                let message = message.expect("state record");
                bytes += (message.key_len() + message.payload_len()) as u64;
                if message.offset() + 1 >= high {
                    return bytes;
                }
            }
        }
    })
    .await
    .expect("reader")
}

fn snapshot_bytes(handle: &TrackerHandle) -> u64 {
    handle.partitions().iter().map(|p| p.snapshot_bytes).sum()
}

/// 12 rounds over the same 30,000 devices, each in a new minute (and every third in a new
/// hour), with one window of each kept: the history holds 12 minute windows and 4 hours, the
/// live state one of each. Without snapshots the topic keeps every delta (about 4.5 times
/// the live state here); with them it stays within about two snapshots once compacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_state_topic_stays_about_two_snapshots_and_a_new_node_reads_only_that() {
    const DEVICES: u32 = 30_000;
    const ROUNDS: u32 = 12;
    let broker = TestBroker::start().await;
    broker.create_topic(TOPIC, 3, &[]).await;
    // Small segments and an eager cleaner, so compaction runs within the test.
    broker
        .create_topic(
            &state_topic(),
            1,
            &[
                ("cleanup.policy", "compact"),
                ("segment.bytes", "65536"),
                ("min.cleanable.dirty.ratio", "0.01"),
                ("delete.retention.ms", "0"),
            ],
        )
        .await;
    let tracker = start(&broker, "long-runner").await;
    let handle = tracker.handle();
    for round in 0..ROUNDS {
        let second = BASE_SECOND + i64::from(round) * 20 * 60;
        send_round(&broker, 0x0A00_0000, DEVICES, second).await;
        let counted = u64::from((round + 1) * DEVICES);
        eventually(&handle, "round counted and checkpointed", |h| {
            let partitions = h.partitions();
            partitions.iter().map(|p| p.events).sum::<u64>() == counted
                && partitions
                    .iter()
                    .map(|p| p.checkpoint_offset.unwrap_or(0) as u64)
                    .sum::<u64>()
                    == counted
        })
        .await;
    }
    assert_eq!(handle.global_count(), u64::from(DEVICES));
    let one_snapshot = snapshot_bytes(&handle);
    assert!(one_snapshot > 0);
    // Compaction runs every 200 ms on closed segments; a last round of checkpoints (the same
    // devices again, in the live minute) rolls the segment holding the last tombstones.
    let bound = one_snapshot * 5 / 2;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut bytes = state_topic_bytes(&broker).await;
    while bytes > bound {
        assert!(
            Instant::now() < deadline,
            "state topic holds {bytes} B, more than 2.5 snapshots ({one_snapshot} B each)"
        );
        let second = BASE_SECOND + i64::from(ROUNDS - 1) * 20 * 60;
        send_round(&broker, 0x0A00_0000, 1_000, second).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        bytes = state_topic_bytes(&broker).await;
    }
    let events: u64 = handle.partitions().iter().map(|p| p.events).sum();
    stop(tracker).await;

    // A node starting now reads the live state only, and counts exactly from it.
    let fresh = start(&broker, "fresh").await;
    let fresh_handle = fresh.handle();
    eventually(
        &fresh_handle,
        "fresh node has read the last checkpoints",
        |h| {
            let offsets = h
                .partitions()
                .iter()
                .map(|p| p.checkpoint_offset.unwrap_or(0))
                .sum::<i64>();
            offsets as u64 == events
        },
    )
    .await;
    assert_eq!(fresh_handle.global_count(), u64::from(DEVICES));
    let read: u64 = fresh_handle
        .partitions()
        .iter()
        .map(|p| p.state_bytes)
        .sum();
    assert!(
        read <= bound,
        "a new node read {read} B of state records, more than 2.5 snapshots ({one_snapshot} B)"
    );
    let minutes = fresh_handle.windows(Granularity::Minute, 10);
    assert_eq!(
        minutes.len(),
        1,
        "only the newest minute is live: {minutes:?}"
    );
    assert_eq!(minutes[0].distinct_ips, u64::from(DEVICES));
    stop(fresh).await;
}

/// A record of partition 0 under a lower claim than the owner's (what a node paused past its
/// session timeout writes when it wakes up) is ignored; one under a higher claim takes the
/// partition from the owner, which stops counting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_under_a_superseded_claim_move_nothing_and_a_higher_claim_fences_the_owner() {
    let broker = TestBroker::start().await;
    broker.create_topic(TOPIC, 3, &[]).await;
    send_round(&broker, 0x0B00_0000, 300, BASE_SECOND).await;
    let tracker = start(&broker, "owner").await;
    let handle = tracker.handle();
    let checkpointed = |h: &TrackerHandle, events: i64| {
        let partitions = h.partitions();
        partitions.len() == 3
            && partitions
                .iter()
                .map(|p| p.checkpoint_offset.unwrap_or(0))
                .sum::<i64>()
                == events
            // Claimed: epoch 1, or above where the node's workers rebalanced at the start;
            // the forged records below are under 0 and 100.
            && partitions
                .iter()
                .all(|p| p.checkpoint_epoch.is_some_and(|epoch| (1..100).contains(&epoch)))
    };
    eventually(&handle, "first round checkpointed", |h| {
        checkpointed(h, 300)
    })
    .await;
    // Idle now: no partition changes, so no checkpoint is written, but the node's heartbeat
    // (every 200 ms) keeps saying its partitions are checkpointed as of then.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let age = handle
        .unique_ips()
        .checkpoint_age_ms
        .expect("a checkpoint age");
    assert!(age < 1500, "checkpoint age {age} ms grew while idle");

    let forged_ip = "203.0.113.7";
    forge(&broker, 0, 0, "zombie", 999_999, forged_ip).await;
    send_round(&broker, 0x0C00_0000, 300, BASE_SECOND).await;
    // The owner's own checkpoints of the second round come after the forged record in the
    // state topic, so once they are read back the forged one has been read too.
    eventually(&handle, "second round checkpointed", |h| {
        checkpointed(h, 600)
    })
    .await;
    assert_eq!(
        handle.global_count(),
        600,
        "the zombie's address is not counted"
    );
    let partition0 = handle.partitions().remove(0);
    assert_eq!(partition0.checkpoint_node.as_deref(), Some("owner"));
    assert!(partition0.owned);

    forge(&broker, 0, 100, "usurper", 5, "198.51.100.1").await;
    eventually(&handle, "the owner stops counting partition 0", |h| {
        !h.partitions()[0].owned
    })
    .await;
    assert_eq!(handle.unique_ips().partitions_owned, vec![1, 2]);
    assert_eq!(
        handle.partitions()[0].checkpoint_node.as_deref(),
        Some("usurper")
    );
    stop(tracker).await;
}

/// Writes one final chunk for `partition` as if `node` owned it under `epoch`.
async fn forge(broker: &TestBroker, partition: i32, epoch: u64, node: &str, offset: i64, ip: &str) {
    let header = ChunkHeader {
        partition,
        epoch,
        generation: 0,
        index: 1,
        chunk: 0,
        is_final: true,
        offset,
        events: offset as u64,
        rejected: 0,
        written_at_ms: 1,
        node: node.into(),
    };
    let mut sets = Sets::default();
    sets.get_mut(SetKind::All).insert(ip.parse().expect("ip"));
    let encoded = encode_chunks(&header, sets.sections());
    let producer = broker.producer(&[]);
    for (key, value) in &encoded.records {
        producer
            .send(
                FutureRecord::to(&state_topic())
                    .partition(0)
                    .key(key)
                    .payload(value),
                Duration::from_secs(10),
            )
            .await
            .expect("forged record acknowledged");
    }
}
