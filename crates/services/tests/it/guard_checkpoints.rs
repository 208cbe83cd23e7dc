//! The blocker's checkpoint topic against a real broker: states larger than a stock Kafka
//! record are written as signed chunks below 512 KiB and resumed exactly; incomplete,
//! unsigned and fenced (zombie) checkpoints are ignored; checkpoints of the old
//! single-record format still count; and compaction keeps about one checkpoint per partition.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use freshet_services::guard::checkpoints::{
    encode_checkpoint, legacy_checkpoint_key, ChunkHeader, MAX_CHUNK_BYTES,
};
use freshet_services::guard::mac::{self, Canonical, MAC_HEADER};
use freshet_services::guard::rules::{PartitionState, Rules};
use freshet_services::guard::secret::GuardSecret;
use freshet_services::guard::{ensure_topics, GuardConfig};
use freshet_services::KafkaConfig;
use freshet_testkit::TestBroker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::common;
use common::guard::{failures, publish, publisher, wait_blocked, wait_until, Node};

fn secret() -> GuardSecret {
    GuardSecret::from_bytes(&[7; 32]).expect("key")
}

fn guard_config() -> GuardConfig {
    GuardConfig {
        checkpoint_interval: Duration::from_millis(200),
        session_timeout: Duration::from_secs(6),
        ..GuardConfig::with_secret("sqlite::memory:", secret())
    }
}

/// One record of the checkpoint topic.
#[derive(Debug, Clone)]
struct Record {
    key: String,
    value: Option<Vec<u8>>,
}

/// Every record of the checkpoint topic, in order.
async fn read_topic(broker: &TestBroker, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "checkpoint-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let (low, high) = consumer
            .fetch_watermarks(&topic, 0, Duration::from_secs(10))
            .expect("watermarks");
        let mut records = Vec::new();
        if high <= low {
            return records;
        }
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&topic, 0, Offset::Beginning)
            .expect("partition");
        consumer.assign(&assignment).expect("assign");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "checkpoints not read to {high}");
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                let message = message.expect("checkpoint record");
                records.push(Record {
                    key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                    value: message.payload().map(<[u8]>::to_vec),
                });
                if message.offset() + 1 >= high {
                    return records;
                }
            }
        }
    })
    .await
    .expect("reader")
}

/// The latest value of each key that has one (what compaction leaves, tombstones gone).
fn live(records: &[Record]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for record in records {
        match &record.value {
            Some(value) => out.insert(record.key.clone(), value.clone()),
            None => out.remove(&record.key),
        };
    }
    out
}

/// A live chunk: its partition (from the key), header and state bytes.
fn chunks(live: &BTreeMap<String, Vec<u8>>) -> Vec<(i32, ChunkHeader, Vec<u8>)> {
    live.iter()
        .filter_map(|(key, value)| {
            let parts: Vec<&str> = key.split('/').collect();
            if parts.len() != 5 {
                return None;
            }
            let partition = parts[1].parse().expect("partition");
            let (header, state) = ChunkHeader::decode(value).expect("a chunk");
            Some((partition, header, state.to_vec()))
        })
        .collect()
}

/// Chunks of one checkpoint: headers and state bytes.
type Chunks = Vec<(ChunkHeader, Vec<u8>)>;

/// The newest complete checkpoint of each partition, joined, as (header of its first chunk,
/// state).
fn newest(live: &BTreeMap<String, Vec<u8>>) -> BTreeMap<i32, (ChunkHeader, PartitionState)> {
    let mut groups: BTreeMap<(i32, u64, u64, u64), Chunks> = BTreeMap::new();
    for (partition, header, state) in chunks(live) {
        groups
            .entry((partition, header.epoch, header.generation, header.writer))
            .or_default()
            .push((header, state));
    }
    let mut out = BTreeMap::new();
    for ((partition, ..), mut group) in groups {
        group.sort_by_key(|(h, _)| h.chunk);
        if group.len() != group[0].0.count as usize {
            continue;
        }
        let bytes: Vec<u8> = group.iter().flat_map(|(_, s)| s.clone()).collect();
        let state: PartitionState = serde_json::from_slice(&bytes).expect("a state");
        out.insert(partition, (group[0].0, state));
    }
    out
}

/// The partition whose newest checkpoint covers `offset` records (the only one with records).
fn partition_at(
    newest: &BTreeMap<i32, (ChunkHeader, PartitionState)>,
    offset: i64,
) -> (i32, ChunkHeader) {
    let found: Vec<_> = newest
        .iter()
        .filter(|(_, (_, state))| state.next_offset == offset)
        .map(|(p, (h, _))| (*p, *h))
        .collect();
    assert_eq!(found.len(), 1, "one partition at {offset}: {newest:?}");
    found[0]
}

/// Sends a checkpoint record with `mac` in its MAC header (or none), and waits for it.
async fn produce(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    value: &[u8],
    mac: Option<String>,
) {
    let mut record = FutureRecord::<str, [u8]>::to(topic).key(key).payload(value);
    if let Some(mac) = &mac {
        record = record.headers(OwnedHeaders::new().insert(Header {
            key: MAC_HEADER,
            value: Some(mac.as_str()),
        }));
    }
    producer
        .send(record, Duration::from_secs(10))
        .await
        .expect("the broker takes the checkpoint record");
}

/// The guard's MAC of a checkpoint record, made with the mac API as the guard documents it.
fn sign(key: &str, value: &[u8]) -> String {
    mac::sign(
        &secret(),
        &Canonical::new("checkpoint", Some(key.as_bytes())).bytes(value),
    )
}

/// A state that resumes at `next_offset` knowing no user: erin's failures are not in it.
fn state_without_erin(next_offset: i64) -> Vec<u8> {
    let mut state = PartitionState::default();
    state.next_offset = next_offset;
    serde_json::to_vec(&state).expect("json")
}

/// Erin fails 3 times under a first blocker, which checkpoints and stops; returns her
/// partition and the header of its newest checkpoint.
async fn erin_fails_three_times(
    broker: &TestBroker,
    kafka: &KafkaConfig,
    config: &GuardConfig,
) -> (i32, ChunkHeader) {
    let node = Node::start(kafka, config).await;
    publish(&publisher(kafka, config), &failures("erin", 3)).await;
    let stats = node.stats();
    wait_until("3 attempts processed and checkpointed", || {
        stats.processed.load(Ordering::SeqCst) == 3 && stats.checkpoints.load(Ordering::SeqCst) > 0
    })
    .await;
    node.stop().await;
    let records = read_topic(broker, &config.checkpoint_topic).await;
    partition_at(&newest(&live(&records)), 3)
}

/// A restarted blocker resumed from erin's genuine checkpoint (3 failures at offset 3): two
/// more failures block her with 5, and only those two are processed.
async fn restart_resumes_erin_at_three(kafka: &KafkaConfig, config: &GuardConfig) {
    let node = Node::start(kafka, config).await;
    publish(&publisher(kafka, config), &failures("erin", 2)).await;
    wait_blocked(&node.blocks(), "erin", 5).await;
    assert_eq!(
        node.stats().processed.load(Ordering::SeqCst),
        2,
        "resumed from the genuine checkpoint"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_over_a_megabyte_is_written_in_chunks_and_resumed_exactly() {
    const USERS: usize = 5_000;
    let broker = TestBroker::start().await;
    let kafka = KafkaConfig::new(broker.bootstrap());
    let config = GuardConfig {
        attempts_partitions: 1,
        rules: Rules {
            window_ms: 3_600_000,
            ..Rules::default()
        },
        ..guard_config()
    };
    // A stock topic: the default max.message.bytes (1 MiB), which one record of the whole
    // state would exceed.
    broker
        .create_topic(
            &config.checkpoint_topic,
            1,
            &[("cleanup.policy", "compact")],
        )
        .await;
    let node = Node::start(&kafka, &config).await;
    let attempts = publisher(&kafka, &config);
    // Many users under attack, each with 2 failures (blocking takes 5).
    let user = |i: usize| format!("{i:05}-{}", "x".repeat(58));
    for i in 0..USERS {
        for attempt in failures(&user(i), 2) {
            attempts.publish(&attempt);
        }
    }
    let flushing = attempts.clone();
    tokio::task::spawn_blocking(move || flushing.flush(Duration::from_secs(60)))
        .await
        .expect("flushed");
    assert_eq!(attempts.dropped(), 0);
    let total = (USERS * 2) as u64;
    let stats = node.stats();
    wait_until("every attempt processed and acknowledged", || {
        stats.acknowledged.load(Ordering::SeqCst) >= total
    })
    .await;
    node.stop().await;

    let records = read_topic(&broker, &config.checkpoint_topic).await;
    // Every chunk below 512 KiB, so two fit a stock Kafka's 1 MB limits.
    let largest = records
        .iter()
        .filter_map(|r| r.value.as_ref().map(Vec::len))
        .max()
        .unwrap_or(0);
    assert!(largest <= MAX_CHUNK_BYTES, "{largest} B");
    assert!(largest < 512 * 1024, "{largest} B");
    let live = live(&records);
    let checkpoints = newest(&live);
    let (header, state) = &checkpoints[&0];
    assert!(header.state_len > 1 << 20, "{} bytes", header.state_len);
    assert!(header.count >= 3, "{header:?}");
    assert_eq!(state.next_offset, total as i64);
    assert_eq!(state.user_count(), USERS);
    assert_eq!(live.len(), header.count as usize, "one checkpoint is live");

    // Restarted, the blocker resumes exactly there: nothing is replayed, and 3 more failures
    // block a user (2 + 3).
    let node = Node::start(&kafka, &config).await;
    let blocked = [user(0), user(USERS / 2), user(USERS - 1)];
    for name in &blocked {
        publish(&attempts, &failures(name, 3)).await;
    }
    for name in &blocked {
        wait_blocked(&node.blocks(), name, 5).await;
    }
    assert_eq!(node.stats().processed.load(Ordering::SeqCst), 9);
    assert_eq!(node.blocks().list().len(), 3);
    node.stop().await;
}

/// How a hand-written newer checkpoint is damaged.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Its last chunk is never written (a crash mid-write).
    MissingChunk,
    /// One chunk has a MAC that is not the guard's.
    BadMac,
}

/// A newer checkpoint of erin's partition that would forget her failures, written by hand in
/// the other slot, complete but for `damage`; a restart resumes from the genuine one.
async fn a_damaged_newer_checkpoint_is_ignored(damage: Damage) {
    let broker = TestBroker::start().await;
    let kafka = KafkaConfig::new(broker.bootstrap());
    let config = guard_config();
    let (partition, genuine) = erin_fails_three_times(&broker, &kafka, &config).await;

    // Padded with whitespace, which JSON allows: its first chunk alone reads as a state too,
    // so only the completeness check refuses it.
    let mut state = state_without_erin(3);
    state.resize(state.len() + 600_000, b' ');
    let forged = encode_checkpoint(
        &config.attempts_topic,
        partition,
        genuine.epoch,
        genuine.writer,
        genuine.generation + 1,
        &state,
    );
    assert!(
        forged.len() >= 2,
        "the forged checkpoint takes several chunks"
    );
    let producer = broker.producer(&[]);
    let last = forged.len() - 1;
    for (i, (key, value)) in forged.iter().enumerate() {
        let mac = match damage {
            Damage::MissingChunk if i == last => continue,
            Damage::BadMac if i == last => Some(sign(key, b"another value")),
            _ => Some(sign(key, value)),
        };
        produce(&producer, &config.checkpoint_topic, key, value, mac).await;
    }
    restart_resumes_erin_at_three(&kafka, &config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_checkpoint_with_a_missing_chunk_is_ignored() {
    a_damaged_newer_checkpoint_is_ignored(Damage::MissingChunk).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_checkpoint_with_a_badly_signed_chunk_is_ignored() {
    a_damaged_newer_checkpoint_is_ignored(Damage::BadMac).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombies_lower_epoch_checkpoint_does_not_replace_the_owners_newer_one() {
    let broker = TestBroker::start().await;
    let kafka = KafkaConfig::new(broker.bootstrap());
    let config = guard_config();
    let (partition, first) = erin_fails_three_times(&broker, &kafka, &config).await;

    // A second owner gains the partition (a higher epoch) and counts a 4th failure.
    let node = Node::start(&kafka, &config).await;
    publish(&publisher(&kafka, &config), &failures("erin", 1)).await;
    let stats = node.stats();
    wait_until("the 4th failure checkpointed", || {
        stats.processed.load(Ordering::SeqCst) == 1 && stats.checkpoints.load(Ordering::SeqCst) > 0
    })
    .await;
    node.stop().await;
    let records = read_topic(&broker, &config.checkpoint_topic).await;
    let (owned, owner) = partition_at(&newest(&live(&records)), 4);
    assert_eq!(owned, partition);
    assert!(owner.epoch > first.epoch, "{owner:?} after {first:?}");

    // The first owner wakes up (a zombie) and checkpoints under its old epoch, after the
    // owner, with many generations and a state that forgets erin.
    let zombie = encode_checkpoint(
        &config.attempts_topic,
        partition,
        first.epoch,
        first.writer,
        first.generation + 101,
        &state_without_erin(4),
    );
    let producer = broker.producer(&[]);
    for (key, value) in &zombie {
        produce(
            &producer,
            &config.checkpoint_topic,
            key,
            value,
            Some(sign(key, value)),
        )
        .await;
    }

    // Restarted, the blocker resumes from the owner's: one more failure makes 5.
    let node = Node::start(&kafka, &config).await;
    publish(&publisher(&kafka, &config), &failures("erin", 1)).await;
    wait_blocked(&node.blocks(), "erin", 5).await;
    assert_eq!(node.stats().processed.load(Ordering::SeqCst), 1);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_single_record_checkpoint_is_read_after_an_upgrade_then_tombstoned() {
    let broker = TestBroker::start().await;
    let kafka = KafkaConfig::new(broker.bootstrap());
    let config = guard_config();
    ensure_topics(&kafka, &config).await.expect("topics");
    publish(&publisher(&kafka, &config), &failures("erin", 3)).await;

    // What the previous version wrote for erin's partition: one record, the state's JSON
    // (3 failures, resuming after them), signed over key and value.
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "watermarks")
        .create()
        .expect("consumer");
    let partition = (0..config.attempts_partitions)
        .find(|p| {
            let (_, high) = consumer
                .fetch_watermarks(&config.attempts_topic, *p, Duration::from_secs(10))
                .expect("watermarks");
            high == 3
        })
        .expect("erin's partition");
    let mut state = PartitionState::default();
    state.next_offset = 3;
    for attempt in failures("erin", 3) {
        state.apply(&attempt, &Rules::default());
    }
    let value = serde_json::to_vec(&state).expect("json");
    let key = legacy_checkpoint_key(&config.attempts_topic, partition);
    assert_eq!(key, format!("login-attempts/{partition}"));
    let producer = broker.producer(&[]);
    produce(
        &producer,
        &config.checkpoint_topic,
        &key,
        &value,
        Some(sign(&key, &value)),
    )
    .await;

    restart_resumes_erin_at_three(&kafka, &config).await;

    // The new checkpoint of that partition, once acknowledged, superseded the old record.
    let records = read_topic(&broker, &config.checkpoint_topic).await;
    let last = records.iter().rev().find(|r| r.key == key).expect("key");
    assert!(last.value.is_none(), "the old record is tombstoned");
    let (_, header) = partition_at(&newest(&live(&records)), 5);
    assert_eq!(
        header.epoch, 1,
        "the first chunked checkpoint after epoch 0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_many_checkpoints_the_topic_holds_about_one_checkpoint_per_partition() {
    const ROUNDS: usize = 40;
    let broker = TestBroker::start().await;
    let kafka = KafkaConfig::new(broker.bootstrap());
    let config = guard_config();
    // Small segments and an eager cleaner, so compaction runs within the test.
    broker
        .create_topic(
            &config.checkpoint_topic,
            1,
            &[
                ("cleanup.policy", "compact"),
                ("segment.bytes", "4096"),
                ("min.cleanable.dirty.ratio", "0.01"),
                ("delete.retention.ms", "0"),
            ],
        )
        .await;
    let attempts = publisher(&kafka, &config);
    let mut node = Node::start(&kafka, &config).await;
    for round in 0..ROUNDS {
        if round == ROUNDS / 2 {
            // A new owner, a new epoch: its first checkpoints supersede the old epoch's.
            node.stop().await;
            node = Node::start(&kafka, &config).await;
        }
        let stats = node.stats();
        let before = stats.checkpoints.load(Ordering::SeqCst);
        publish(&attempts, &failures(&format!("user-{round}"), 1)).await;
        wait_until("a checkpoint of the round", || {
            stats.checkpoints.load(Ordering::SeqCst) > before
        })
        .await;
    }

    // Superseded chunks are tombstoned at once: one checkpoint per partition is live, of
    // one chunk here, in the newest epoch.
    let records = read_topic(&broker, &config.checkpoint_topic).await;
    let live_keys = live(&records);
    let partitions = config.attempts_partitions as usize;
    assert_eq!(live_keys.len(), partitions, "{:?}", live_keys.keys());
    let checkpoints = newest(&live_keys);
    assert_eq!(checkpoints.len(), partitions);
    let offsets: i64 = checkpoints.values().map(|(_, s)| s.next_offset).sum();
    assert_eq!(offsets, ROUNDS as i64);

    // And compaction leaves about that: the topic's bytes come down to those of two
    // checkpoints per partition and what the uncleaned active segment holds.
    let live_bytes: usize = live_keys.iter().map(|(k, v)| k.len() + v.len()).sum();
    let bound = 2 * live_bytes + 2 * 4096;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut round = ROUNDS;
    loop {
        let records = read_topic(&broker, &config.checkpoint_topic).await;
        let bytes: usize = records
            .iter()
            .map(|r| r.key.len() + r.value.as_ref().map_or(0, Vec::len))
            .sum();
        if bytes <= bound {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} records, {bytes} B in the checkpoint topic; live: {live_bytes} B",
            records.len()
        );
        // More checkpoints roll the segments holding the last tombstones.
        publish(&attempts, &failures(&format!("user-{round}"), 1)).await;
        round += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    node.stop().await;
}
