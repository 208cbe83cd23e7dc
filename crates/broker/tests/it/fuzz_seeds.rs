//! Records what a real client sends, as the seed corpora of the fuzz targets in `fuzz/`
//! (see `docs/TESTING.md`, "Fuzzing").
//!
//! A TCP proxy in front of a test broker (which advertises the proxy, so every connection
//! goes through it) copies each request frame librdkafka sends while rdkafka producers (every
//! compression codec, idempotent and acks=0 ones), a consumer in a group and an admin client
//! do everyday work. Then it rewrites, from scratch:
//! - `fuzz/seeds/request_frame/<Api>-v<version>-<n>`: request frames without their size prefix;
//! - `fuzz/seeds/record_batch/<topic>-<n>`: the record sets inside the Produce frames, in the
//!   `record_batch` target's input format (`[mode 1][record set]`);
//! - `fuzz/seeds/decompress/<codec>-<n>`: the compressed batches' bodies, in the `decompress`
//!   target's input format (`[record count][cap selector][body]`).
//!
//! Run: `cargo test -p freshet-broker --test it -- --ignored fuzz_seeds::`. The frames carry
//! timestamps and random ids, so a new capture differs from the committed one in those bytes.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use freshet_testkit::TestBroker;
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader};
use kafka_protocol::protocol::Decodable;
use rdkafka::admin::{
    AdminClient, AdminOptions, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TIMEOUT: Duration = Duration::from_secs(10);

/// `(name, partitions, cleanup.policy)`: the same list as `SEED_TOPICS` in `fuzz/src/lib.rs`,
/// which the `request_frame` target creates before it runs the captured frames.
const SEED_TOPICS: &[(&str, i32, &str)] = &[
    ("seeds-none", 2, "delete"),
    ("seeds-gzip", 2, "delete"),
    ("seeds-snappy", 2, "delete"),
    ("seeds-lz4", 2, "delete"),
    ("seeds-zstd", 2, "delete"),
    ("seeds-idempotent", 2, "delete"),
    ("seeds-compacted", 1, "compact"),
];

/// Frames kept per API and version (Produce: per topic too), the first ones seen.
const FRAMES_PER_KIND: usize = 6;
/// Records each producer sends.
const RECORDS_PER_TOPIC: usize = 40;

/// Every request frame the clients sent, in order, without size prefixes.
type Captured = Arc<Mutex<Vec<Bytes>>>;

/// Accepts client connections and relays each to the broker, copying request frames.
async fn proxy(listener: TcpListener, broker: SocketAddr, captured: Captured) {
    while let Ok((client, _)) = listener.accept().await {
        let captured = captured.clone();
        tokio::spawn(async move {
            let Ok(upstream) = TcpStream::connect(broker).await else {
                return;
            };
            relay(client, upstream, captured).await;
        });
    }
}

async fn relay(client: TcpStream, upstream: TcpStream, captured: Captured) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let responses = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
    });
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match client_read.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if upstream_write.write_all(&chunk[..n]).await.is_err() {
            break;
        }
        pending.extend_from_slice(&chunk[..n]);
        while let Some(size) = pending.get(..4) {
            let size = u32::from_be_bytes(size.try_into().expect("4 bytes")) as usize;
            if pending.len() < 4 + size {
                break;
            }
            let frame = Bytes::copy_from_slice(&pending[4..4 + size]);
            captured.lock().expect("captured frames").push(frame);
            pending.drain(..4 + size);
        }
    }
    let _ = upstream_write.shutdown().await;
    responses.abort();
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking client call panicked")
}

fn options() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(TIMEOUT))
}

/// Sends `RECORDS_PER_TOPIC` records to `topic` with producer settings `extra`: keys from a
/// small set (so compaction has work), headers on some, tombstones on some, values of varied
/// length and compressibility. Returns how many were acknowledged.
async fn produce(config: &ClientConfig, topic: &str, extra: &[(&str, &str)]) -> usize {
    let mut config = config.clone();
    config.set("linger.ms", "20");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    let producer: FutureProducer = config.create().expect("producer");
    let base_ts = 1_700_000_000_000i64;
    let mut acknowledged = 0;
    // Three waves, each awaited, so batches of 1, a few and many records go out.
    for wave in [0..1, 1..10, 10..RECORDS_PER_TOPIC] {
        acknowledged += produce_wave(&producer, topic, base_ts, wave).await;
    }
    blocking(move || drop(producer)).await;
    acknowledged
}

async fn produce_wave(
    producer: &FutureProducer,
    topic: &str,
    base_ts: i64,
    wave: std::ops::Range<usize>,
) -> usize {
    let mut deliveries = Vec::new();
    for i in wave {
        let key = format!("device-{}", i % 7);
        let value = format!(
            r#"{{"device":"{key}","ip":"10.0.{}.{}","seq":{i},"note":"{}"}}"#,
            i % 3,
            i * 37 % 251,
            "abc".repeat(i % 20)
        );
        let headers = OwnedHeaders::new().insert(Header {
            key: "source",
            value: Some("fuzz-seeds"),
        });
        let mut record = FutureRecord::to(topic)
            .key(&key)
            .timestamp(base_ts + i as i64 * 1000);
        if i % 11 != 10 {
            record = record.payload(&value);
        }
        if i % 3 == 0 {
            record = record.headers(headers);
        }
        deliveries.push(producer.send_result(record).expect("queued"));
    }
    let mut acknowledged = 0;
    for delivery in deliveries {
        if let Ok(Ok(_)) = delivery.await {
            acknowledged += 1;
        }
    }
    acknowledged
}

/// A group member that reads everything, commits, looks up offsets and leaves the group.
fn consume_with_group(config: ClientConfig, expected: usize) {
    let consumer: BaseConsumer = config
        .clone()
        .set("group.id", "seeds-group")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .expect("consumer");
    let topics: Vec<&str> = SEED_TOPICS.iter().map(|(name, _, _)| *name).collect();
    consumer.subscribe(&topics).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut received = 0;
    while received < expected && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            message.expect("no consumer error");
            received += 1;
            if received % 50 == 0 {
                consumer
                    .commit_consumer_state(CommitMode::Sync)
                    .expect("commit");
            }
        }
    }
    assert!(
        received >= expected,
        "only {received} of {expected} records"
    );
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit");
    let assignment = consumer.assignment().expect("assignment");
    consumer.committed(TIMEOUT).expect("OffsetFetch");
    let _ = consumer.committed_offsets(assignment, TIMEOUT);
    let mut by_time = TopicPartitionList::new();
    by_time
        .add_partition_offset("seeds-gzip", 0, Offset::Offset(1_700_000_010_000))
        .expect("query");
    consumer
        .offsets_for_times(by_time, TIMEOUT)
        .expect("ListOffsets by time");
    consumer
        .fetch_watermarks("seeds-zstd", 1, TIMEOUT)
        .expect("ListOffsets");
    consumer.fetch_metadata(None, TIMEOUT).expect("Metadata");
    consumer.unsubscribe();
    drop(consumer);
}

/// Admin work: topic creation, partitions, configs, DeleteRecords, groups, deletion.
async fn administer(config: ClientConfig) {
    let admin: AdminClient<DefaultClientContext> = config.create().expect("admin client");
    let topic = NewTopic::new("seeds-admin", 1, TopicReplication::Fixed(1))
        .set("retention.ms", "3600000")
        .set("segment.bytes", "1048576");
    admin
        .create_topics([&topic], &options())
        .await
        .expect("CreateTopics");
    admin
        .create_partitions([&NewPartitions::new("seeds-admin", 3)], &options())
        .await
        .expect("CreatePartitions");
    admin
        .describe_configs(
            [
                &ResourceSpecifier::Topic("seeds-compacted"),
                &ResourceSpecifier::Broker(1),
            ],
            &options(),
        )
        .await
        .expect("DescribeConfigs");
    let mut trim = TopicPartitionList::new();
    trim.add_partition_offset("seeds-none", 0, Offset::Offset(2))
        .expect("offset");
    admin
        .delete_records(&trim, &options())
        .await
        .expect("DeleteRecords");
    let admin = blocking(move || {
        admin
            .inner()
            .fetch_group_list(None, TIMEOUT)
            .expect("ListGroups");
        admin
            .inner()
            .fetch_group_list(Some("seeds-group"), TIMEOUT)
            .expect("DescribeGroups");
        admin
    })
    .await;
    admin
        .delete_topics(&["seeds-admin"], &options())
        .await
        .expect("DeleteTopics");
    blocking(move || drop(admin)).await;
}

fn seeds_dir(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("clear old seeds");
    }
    std::fs::create_dir_all(&dir).expect("seeds directory");
    dir
}

fn codec_name(attributes: i16) -> &'static str {
    match attributes & 7 {
        0 => "none",
        1 => "gzip",
        2 => "snappy",
        3 => "lz4",
        4 => "zstd",
        _ => "unknown",
    }
}

/// Writes the three seed directories from the captured frames.
fn write_seeds(frames: &[Bytes]) {
    let requests = seeds_dir("request_frame");
    let record_sets = seeds_dir("record_batch");
    let bodies = seeds_dir("decompress");
    let mut kept: BTreeMap<String, usize> = BTreeMap::new();
    let mut files: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen_sets = HashSet::new();
    let mut seen_bodies = HashSet::new();
    let mut set_count = 0;
    let mut body_counts: BTreeMap<&str, usize> = BTreeMap::new();
    for frame in frames {
        let mut bytes = frame.clone();
        let api = ApiKey::try_from(i16::from_be_bytes([frame[0], frame[1]])).expect("API key");
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        RequestHeader::decode(&mut bytes, api.request_header_version(version))
            .expect("request header");
        let produce = (api == ApiKey::Produce)
            .then(|| ProduceRequest::decode(&mut bytes, version).expect("Produce body"));
        // Produce frames are kept per topic and acks too, so every codec and acks=0 appear.
        let produce_kind = produce
            .as_ref()
            .and_then(|p| Some((p.topic_data.first()?, p.acks)))
            .map(|(t, acks)| format!("-{}-acks{acks}", t.name.0));
        let kind = format!("{api:?}-v{version}{}", produce_kind.unwrap_or_default());
        let per_kind = kept.entry(kind).or_default();
        if *per_kind < FRAMES_PER_KIND {
            *per_kind += 1;
            let n = files.entry(format!("{api:?}-v{version}")).or_default();
            std::fs::write(requests.join(format!("{api:?}-v{version}-{n}")), frame)
                .expect("write seed");
            *n += 1;
        }
        for (topic, set) in produce.iter().flat_map(|p| {
            p.topic_data.iter().flat_map(|t| {
                t.partition_data
                    .iter()
                    .filter_map(move |d| d.records.clone().map(|r| (t.name.0.to_string(), r)))
            })
        }) {
            if !seen_sets.insert(set.clone()) {
                continue;
            }
            // The record_batch target's mode byte: 1 = repair CRCs after mutation.
            let seed = [&[1u8][..], &set].concat();
            std::fs::write(record_sets.join(format!("{topic}-{set_count}")), seed)
                .expect("write seed");
            set_count += 1;
            let mut position = 0;
            while let Ok(header) = freshet_log::BatchHeader::parse(&set[position..]) {
                let Some(batch) = set.get(position..position + header.total_size()) else {
                    break;
                };
                position += header.total_size();
                let codec = codec_name(header.attributes);
                if codec == "none" || header.record_count > 255 {
                    continue;
                }
                let mut seed = vec![header.record_count as u8, 20];
                seed.extend_from_slice(&batch[freshet_log::BATCH_HEADER_LEN..]);
                if seen_bodies.insert(seed.clone()) {
                    let n = body_counts.entry(codec).or_default();
                    std::fs::write(bodies.join(format!("{codec}-{n}")), &seed).expect("write seed");
                    *n += 1;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes fuzz/seeds: run by hand after protocol or client changes"]
async fn capture_real_client_frames_as_fuzz_seeds() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let proxy_addr = listener.local_addr().expect("proxy address");
    let broker = TestBroker::start_with(|config| {
        config.listeners[0].advertised = Some((proxy_addr.ip().to_string(), proxy_addr.port()));
    })
    .await;
    let captured: Captured = Arc::default();
    tokio::spawn(proxy(listener, broker.addr, captured.clone()));
    let mut config = freshet_testkit::client_config(&proxy_addr.to_string());
    config.set("client.id", "fuzz-seeds");

    let admin: AdminClient<DefaultClientContext> = config.create().expect("admin client");
    let topics: Vec<NewTopic> = SEED_TOPICS
        .iter()
        .map(|(name, partitions, policy)| {
            NewTopic::new(name, *partitions, TopicReplication::Fixed(1))
                .set("cleanup.policy", policy)
        })
        .collect();
    for result in admin
        .create_topics(&topics, &options())
        .await
        .expect("CreateTopics")
    {
        result.expect("topic created");
    }
    blocking(move || drop(admin)).await;

    let mut expected = 0;
    for (topic, extra) in [
        ("seeds-none", vec![("compression.type", "none")]),
        ("seeds-gzip", vec![("compression.type", "gzip")]),
        ("seeds-snappy", vec![("compression.type", "snappy")]),
        ("seeds-lz4", vec![("compression.type", "lz4")]),
        ("seeds-zstd", vec![("compression.type", "zstd")]),
        (
            "seeds-idempotent",
            vec![("enable.idempotence", "true"), ("compression.type", "lz4")],
        ),
        ("seeds-compacted", vec![("compression.type", "gzip")]),
    ] {
        let acknowledged = produce(&config, topic, &extra).await;
        assert_eq!(acknowledged, RECORDS_PER_TOPIC, "{topic}");
        expected += acknowledged;
    }
    // acks=0: Produce frames the broker does not answer.
    produce(&config, "seeds-none", &[("acks", "0"), ("linger.ms", "0")]).await;
    expected += RECORDS_PER_TOPIC;

    let consumer_config = config.clone();
    blocking(move || consume_with_group(consumer_config, expected)).await;
    administer(config.clone()).await;

    let frames = captured.lock().expect("captured frames").clone();
    assert!(!frames.is_empty(), "frames went through the proxy");
    write_seeds(&frames);
}
