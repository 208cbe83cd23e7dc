//! A full disk for real: the broker's data directory on a small tmpfs that a filler file
//! fills up. Writes that do not fit answer KAFKA_STORAGE_ERROR and lose nothing, topic
//! creation is refused, the episode is reported once, and everything resumes when space is
//! freed (`docs/OPERATIONS.md`, "Health and degraded state").
//!
//! Mounting needs root (CAP_SYS_ADMIN), so the test is ignored by default; `.ci/run` runs it
//! as root with `--ignored`. Run by hand without root, it fails and says why.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use freshet_broker::health::Reason;
use freshet_testkit::batches;
use freshet_testkit::raw::RawClient;
use freshet_testkit::tmpfs::Tmpfs;
use freshet_testkit::TestBroker;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// Produces one record with acks=all to partition 0; the partition's error code.
async fn produce(broker: &TestBroker, topic: &str, value: &str) -> i16 {
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    client
        .produce(topic, 0, batches::values_batch(&[value]))
        .await
        .expect("produce answered")
}

/// Metadata v12 for one topic, allowing auto-creation; the topic's error code.
async fn metadata_allowing_creation(broker: &TestBroker, topic: &str) -> i16 {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
        ]))
        .with_allow_auto_topic_creation(true);
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    let response: MetadataResponse = client
        .call(ApiKey::Metadata, 12, &request)
        .await
        .expect("metadata");
    response.topics[0].error_code
}

/// The latest offset of partition 0.
async fn high_watermark(broker: &TestBroker, topic: &str) -> i64 {
    let request = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
        .with_name(topic_name(topic))
        .with_partitions(vec![ListOffsetsPartition::default()
            .with_partition_index(0)
            .with_timestamp(-1)])]);
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    let response: ListOffsetsResponse = client
        .call(ApiKey::ListOffsets, 6, &request)
        .await
        .expect("ListOffsets");
    response.topics[0].partitions[0].offset
}

fn topic_dirs(data_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(data_dir.join("topics"))
        .expect("topics dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn wait_until(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to mount a tmpfs: .ci/run runs it with --ignored"]
async fn a_full_disk_refuses_writes_and_creation_once_reported_and_recovers() {
    let disk = Tmpfs::mount("8m");
    let data_dir = disk.path().join("data");
    let broker = TestBroker::start_in(&data_dir, |_| {}).await;
    broker.create_topic("events", 1, &[]).await;
    for value in ["a", "b", "c"] {
        assert_eq!(produce(&broker, "events", value).await, 0);
    }
    assert!(broker.broker.health_report().is_empty());

    // Room for a topic's small files, not for a 256 KiB record: what made creation succeed
    // on a full disk before.
    let filler = disk.fill(128 * 1024);
    let big = "x".repeat(256 * 1024);
    for _ in 0..20 {
        assert_eq!(
            produce(&broker, "events", &big).await,
            ResponseError::KafkaStorageError.code(),
            "a write that does not fit is refused"
        );
    }
    let health = &broker.broker.health;
    assert_eq!(
        health.episodes(Reason::DiskFull),
        1,
        "one episode, not one per request"
    );
    let conditions = broker.broker.health_report();
    assert_eq!(
        conditions.iter().map(|c| c.reason).collect::<Vec<_>>(),
        [Reason::DiskFull]
    );
    assert!(conditions[0].detail.contains("events-0"), "{conditions:?}");

    // Neither auto-creation nor CreateTopics makes a topic on a full disk.
    assert_eq!(
        metadata_allowing_creation(&broker, "born-on-a-full-disk").await,
        ResponseError::KafkaStorageError.code()
    );
    let admin = broker.admin();
    let created = admin
        .create_topics(
            [&NewTopic::new("another", 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("CreateTopics answered");
    assert_eq!(
        created,
        [Err((
            "another".to_string(),
            RDKafkaErrorCode::KafkaStorageError
        ))]
    );
    assert_eq!(topic_dirs(&data_dir), ["events"]);
    tokio::task::spawn_blocking(move || drop(admin))
        .await
        .expect("admin dropped");

    // The probe keeps finding the disk full...
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(broker.broker.health_report().len(), 1);
    // ...until space is freed.
    fs::remove_file(filler).expect("remove the filler");
    wait_until(
        "the disk-full episode to end",
        Duration::from_secs(10),
        || broker.broker.health_report().is_empty(),
    )
    .await;
    assert_eq!(health.episodes(Reason::DiskFull), 1);
    assert_eq!(produce(&broker, "events", &big).await, 0);
    assert_eq!(
        metadata_allowing_creation(&broker, "born-after-the-disk-full").await,
        0
    );
    assert_eq!(high_watermark(&broker, "events").await, 4);

    // Nothing acknowledged was lost, and the refused writes left nothing behind.
    let broker = broker.restart(|_| {}).await;
    assert_eq!(high_watermark(&broker, "events").await, 4);
    assert_eq!(
        topic_dirs(&data_dir),
        ["born-after-the-disk-full", "events"]
    );
}
