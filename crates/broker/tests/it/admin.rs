//! The admin APIs through librdkafka's AdminClient and consumers, over real TCP: CreateTopics
//! (with validation), DescribeConfigs, CreatePartitions, DeleteRecords, DeleteTopics,
//! ListOffsets by timestamp, ListGroups/DescribeGroups, and DescribeLogDirs (which librdkafka
//! does not expose, so it is sent raw).
//!
//! Blocking rdkafka calls (metadata, watermarks, offsets for times, consumer polls, group
//! lists, consumer drops) run in `spawn_blocking`, never on the async workers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use freshet_log::LogConfig;
use freshet_testkit::raw::RawClient;
use freshet_testkit::TestBroker;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::{
    ApiKey, DescribeConfigsRequest, DescribeConfigsResponse, DescribeLogDirsRequest,
    DescribeLogDirsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a blocking client call off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking client call panicked")
}

fn options() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(TIMEOUT))
}

/// Partition count of every topic, from a Metadata request for all topics (which never
/// auto-creates anything).
async fn topic_partitions(config: ClientConfig) -> BTreeMap<String, usize> {
    blocking(move || {
        let client: BaseConsumer = config.create().expect("client");
        let metadata = client.fetch_metadata(None, TIMEOUT).expect("Metadata");
        metadata
            .topics()
            .iter()
            .map(|t| (t.name().to_string(), t.partitions().len()))
            .collect()
    })
    .await
}

/// Low and high watermark of one partition (ListOffsets earliest and latest).
async fn watermarks(config: ClientConfig, topic: &str, partition: i32) -> (i64, i64) {
    let topic = topic.to_string();
    blocking(move || {
        let client: BaseConsumer = config.create().expect("client");
        client
            .fetch_watermarks(&topic, partition, TIMEOUT)
            .expect("ListOffsets")
    })
    .await
}

/// Sends `values` to one partition, each acknowledged before the next is sent, with the given
/// timestamps if any. Returns the offsets.
async fn produce(
    broker: &TestBroker,
    topic: &str,
    partition: i32,
    values: &[(&str, Option<i64>)],
) -> Vec<i64> {
    let producer = broker.producer(&[]);
    let mut offsets = Vec::new();
    for (value, timestamp) in values {
        let mut record = FutureRecord::to(topic)
            .key("k")
            .payload(*value)
            .partition(partition);
        if let Some(ts) = timestamp {
            record = record.timestamp(*ts);
        }
        let delivery = producer
            .send(record, Timeout::After(TIMEOUT))
            .await
            .map_err(|(e, _)| e)
            .expect("record acknowledged");
        assert_eq!(delivery.partition, partition);
        offsets.push(delivery.offset);
    }
    offsets
}

/// Reads `count` records of one partition from `Offset::Beginning`: (offset, value) pairs.
async fn read_from_beginning(
    config: ClientConfig,
    topic: &str,
    partition: i32,
    count: usize,
) -> Vec<(i64, String)> {
    let topic = topic.to_string();
    blocking(move || {
        let consumer: BaseConsumer = config
            .clone()
            .set("group.id", "admin-reader")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&topic, partition, Offset::Beginning)
            .expect("assignment");
        consumer.assign(&assignment).expect("assign");
        let mut records = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while records.len() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} records arrived: {records:?}",
                records.len()
            );
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                let message = message.expect("no consumer error");
                let value =
                    String::from_utf8(message.payload().expect("value").to_vec()).expect("utf8");
                records.push((message.offset(), value));
            }
        }
        records
    })
    .await
}

fn create_error(
    results: &[Result<String, (String, RDKafkaErrorCode)>],
    name: &str,
) -> Option<RDKafkaErrorCode> {
    results
        .iter()
        .find_map(|r| match r {
            Ok(n) if n == name => Some(None),
            Err((n, code)) if n == name => Some(Some(*code)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no CreateTopics result for {name}: {results:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topics_validates_and_describe_configs_shows_overrides() {
    let broker = TestBroker::start().await;
    let admin = broker.admin();
    let configured = NewTopic::new("configured", 2, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("retention.ms", "1234");
    let results = admin
        .create_topics([&configured], &options())
        .await
        .expect("CreateTopics");
    assert_eq!(results, vec![Ok("configured".to_string())]);

    let described = admin
        .describe_configs([&ResourceSpecifier::Topic("configured")], &options())
        .await
        .expect("DescribeConfigs");
    assert_eq!(described.len(), 1);
    let resource = described[0].as_ref().expect("topic configs described");
    let entries = resource.entry_map();
    let override_entry = |name: &str, value: &str| {
        let entry = entries
            .get(name)
            .unwrap_or_else(|| panic!("{name} described"));
        assert_eq!(entry.value.as_deref(), Some(value), "{name}");
        assert_eq!(entry.source, ConfigSource::DynamicTopic, "{name} source");
        assert!(!entry.is_default, "{name} is an override");
    };
    override_entry("cleanup.policy", "compact");
    override_entry("retention.ms", "1234");
    let defaults = LogConfig::default();
    for (name, value) in [
        ("segment.bytes", defaults.segment_bytes.to_string()),
        ("retention.bytes", defaults.retention_bytes.to_string()),
        ("max.message.bytes", defaults.max_message_bytes.to_string()),
        ("segment.ms", defaults.segment_ms.to_string()),
        (
            "delete.retention.ms",
            defaults.delete_retention_ms.to_string(),
        ),
    ] {
        let entry = entries
            .get(name)
            .unwrap_or_else(|| panic!("{name} described"));
        assert_eq!(entry.value.as_deref(), Some(value.as_str()), "{name}");
        assert_eq!(entry.source, ConfigSource::Default, "{name} source");
        assert!(entry.is_default, "{name} is a default");
    }

    // One request, every failure mode; each topic gets its own error and none is created.
    let bad_value =
        NewTopic::new("bad-value", 1, TopicReplication::Fixed(1)).set("retention.ms", "soon");
    let bad_name_config =
        NewTopic::new("bad-config-name", 1, TopicReplication::Fixed(1)).set("flux.capacitor", "1");
    let bad_policy =
        NewTopic::new("bad-policy", 1, TopicReplication::Fixed(1)).set("cleanup.policy", "shred");
    let replicated = NewTopic::new("replicated", 1, TopicReplication::Fixed(3));
    let again = NewTopic::new("configured", 2, TopicReplication::Fixed(1));
    let bad_name = NewTopic::new("no/slashes", 1, TopicReplication::Fixed(1));
    let fine = NewTopic::new("fine", 1, TopicReplication::Fixed(1));
    let results = admin
        .create_topics(
            [
                &bad_value,
                &bad_name_config,
                &bad_policy,
                &replicated,
                &again,
                &bad_name,
                &fine,
            ],
            &options(),
        )
        .await
        .expect("CreateTopics");
    for (name, expected) in [
        ("bad-value", Some(RDKafkaErrorCode::InvalidConfig)),
        ("bad-config-name", Some(RDKafkaErrorCode::InvalidConfig)),
        ("bad-policy", Some(RDKafkaErrorCode::InvalidConfig)),
        (
            "replicated",
            Some(RDKafkaErrorCode::InvalidReplicationFactor),
        ),
        ("configured", Some(RDKafkaErrorCode::TopicAlreadyExists)),
        ("no/slashes", Some(RDKafkaErrorCode::InvalidTopic)),
        ("fine", None),
    ] {
        assert_eq!(create_error(&results, name), expected, "result of {name}");
    }
    let topics = topic_partitions(broker.client_config()).await;
    assert_eq!(
        topics.keys().map(String::as_str).collect::<Vec<_>>(),
        ["configured", "fine"],
        "only valid topics exist"
    );
    assert_eq!(
        topics["configured"], 2,
        "the failed re-create changed nothing"
    );

    // The failed re-create did not touch the existing topic's configs either.
    let described = admin
        .describe_configs(
            [
                &ResourceSpecifier::Topic("configured"),
                &ResourceSpecifier::Topic("missing"),
            ],
            &options(),
        )
        .await
        .expect("DescribeConfigs");
    let resource = described[0].as_ref().expect("topic configs described");
    assert_eq!(
        resource
            .get("cleanup.policy")
            .and_then(|e| e.value.as_deref()),
        Some("compact")
    );
    // rdkafka 0.39 drops per-resource errors (every resource comes back `Ok`), so the error
    // code is checked on the wire below; here the unknown topic simply has no entries.
    let unknown = described[1].as_ref().expect("a resource result");
    assert!(
        unknown.entries.is_empty(),
        "an unknown topic has no configs: {unknown:?}"
    );
    let mut raw = RawClient::connect(broker.addr).await.expect("connect");
    let response: DescribeConfigsResponse = raw
        .call(
            ApiKey::DescribeConfigs,
            1,
            &DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("missing")),
            ]),
        )
        .await
        .expect("DescribeConfigs answered");
    assert_eq!(
        response.results[0].error_code,
        ResponseError::UnknownTopicOrPartition.code(),
        "an unknown topic is reported as such"
    );

    // The broker resource: static broker settings.
    let described = admin
        .describe_configs([&ResourceSpecifier::Broker(1)], &options())
        .await
        .expect("DescribeConfigs for the broker");
    let resource = described[0].as_ref().expect("broker configs described");
    for (name, value) in [
        ("broker.id", "1"),
        ("num.partitions", "3"),
        ("auto.create.topics.enable", "true"),
    ] {
        let entry = resource
            .get(name)
            .unwrap_or_else(|| panic!("broker config {name} described: {resource:?}"));
        assert_eq!(entry.value.as_deref(), Some(value), "{name}");
        assert_eq!(entry.source, ConfigSource::StaticBroker, "{name} source");
        assert!(entry.is_read_only, "{name} is read-only");
    }
    blocking(move || drop(admin)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_partitions_grows_a_topic_and_never_shrinks_it() {
    let broker = TestBroker::start().await;
    broker.create_topic("growing", 2, &[]).await;
    let admin = broker.admin();
    let results = admin
        .create_partitions([&NewPartitions::new("growing", 5)], &options())
        .await
        .expect("CreatePartitions");
    assert_eq!(results, vec![Ok("growing".to_string())]);
    assert_eq!(
        topic_partitions(broker.client_config())
            .await
            .get("growing"),
        Some(&5),
        "Metadata shows the new partitions"
    );
    assert_eq!(
        produce(&broker, "growing", 4, &[("on-four", None)]).await,
        [0],
        "a new partition takes records from offset 0"
    );
    let read = read_from_beginning(broker.client_config(), "growing", 4, 1).await;
    assert_eq!(read, [(0, "on-four".to_string())]);

    for (count, what) in [(3, "shrinking"), (5, "the same count")] {
        let results = admin
            .create_partitions([&NewPartitions::new("growing", count)], &options())
            .await
            .expect("CreatePartitions");
        assert_eq!(
            results,
            vec![Err((
                "growing".to_string(),
                RDKafkaErrorCode::InvalidPartitions
            ))],
            "{what} is refused"
        );
    }
    let results = admin
        .create_partitions([&NewPartitions::new("absent", 4)], &options())
        .await
        .expect("CreatePartitions");
    assert_eq!(
        results,
        vec![Err((
            "absent".to_string(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))]
    );
    let topics = topic_partitions(broker.client_config()).await;
    assert_eq!(topics.get("growing"), Some(&5), "still 5 partitions");
    assert!(
        !topics.contains_key("absent"),
        "CreatePartitions creates no topic"
    );
    blocking(move || drop(admin)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_moves_the_log_start_offset() {
    let broker = TestBroker::start().await;
    broker.create_topic("trimmed", 1, &[]).await;
    let values: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    let records: Vec<(&str, Option<i64>)> = values.iter().map(|v| (v.as_str(), None)).collect();
    assert_eq!(
        produce(&broker, "trimmed", 0, &records).await,
        (0..10).collect::<Vec<i64>>()
    );
    assert_eq!(
        watermarks(broker.client_config(), "trimmed", 0).await,
        (0, 10)
    );

    let admin = broker.admin();
    let mut before = TopicPartitionList::new();
    before
        .add_partition_offset("trimmed", 0, Offset::Offset(4))
        .expect("offset");
    let result = admin
        .delete_records(&before, &options())
        .await
        .expect("DeleteRecords");
    let element = result
        .find_partition("trimmed", 0)
        .expect("partition result");
    element.error().expect("records deleted");
    assert_eq!(element.offset(), Offset::Offset(4), "the new low watermark");
    assert_eq!(
        watermarks(broker.client_config(), "trimmed", 0).await,
        (4, 10),
        "ListOffsets earliest moved to 4"
    );
    let read = read_from_beginning(broker.client_config(), "trimmed", 0, 6).await;
    assert_eq!(
        read,
        (4..10).map(|i| (i, format!("v{i}"))).collect::<Vec<_>>(),
        "a consumer from the beginning starts at the new log start"
    );

    // Beyond the high watermark is out of range and changes nothing.
    let mut beyond = TopicPartitionList::new();
    beyond
        .add_partition_offset("trimmed", 0, Offset::Offset(11))
        .expect("offset");
    let result = admin
        .delete_records(&beyond, &options())
        .await
        .expect("DeleteRecords");
    let element = result
        .find_partition("trimmed", 0)
        .expect("partition result");
    assert!(
        element.error().is_err(),
        "deleting beyond the high watermark fails: {result:?}"
    );
    assert_eq!(
        watermarks(broker.client_config(), "trimmed", 0).await,
        (4, 10)
    );

    // Offset::End deletes everything; appends continue at the old end.
    let mut all = TopicPartitionList::new();
    all.add_partition_offset("trimmed", 0, Offset::End)
        .expect("offset");
    let result = admin
        .delete_records(&all, &options())
        .await
        .expect("DeleteRecords");
    let element = result
        .find_partition("trimmed", 0)
        .expect("partition result");
    element.error().expect("records deleted");
    assert_eq!(element.offset(), Offset::Offset(10));
    assert_eq!(
        watermarks(broker.client_config(), "trimmed", 0).await,
        (10, 10)
    );
    assert_eq!(produce(&broker, "trimmed", 0, &[("v10", None)]).await, [10]);
    let read = read_from_beginning(broker.client_config(), "trimmed", 0, 1).await;
    assert_eq!(read, [(10, "v10".to_string())]);
    blocking(move || drop(admin)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_topics_disappear_and_come_back_empty() {
    let broker = TestBroker::start().await;
    broker.create_topic("doomed", 2, &[]).await;
    broker.create_topic("survivor", 1, &[]).await;
    produce(
        &broker,
        "doomed",
        0,
        &[("a", None), ("b", None), ("c", None)],
    )
    .await;
    let admin = broker.admin();
    let results = admin
        .delete_topics(&["doomed"], &options())
        .await
        .expect("DeleteTopics");
    assert_eq!(results, vec![Ok("doomed".to_string())]);
    let topics = topic_partitions(broker.client_config()).await;
    assert_eq!(
        topics.keys().map(String::as_str).collect::<Vec<_>>(),
        ["survivor"],
        "the deleted topic is gone from Metadata"
    );

    let results = admin
        .delete_topics(&["doomed"], &options())
        .await
        .expect("DeleteTopics");
    assert_eq!(
        results,
        vec![Err((
            "doomed".to_string(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))],
        "deleting it again fails"
    );

    let recreated = NewTopic::new("doomed", 1, TopicReplication::Fixed(1));
    let results = admin
        .create_topics([&recreated], &options())
        .await
        .expect("CreateTopics");
    assert_eq!(results, vec![Ok("doomed".to_string())]);
    assert_eq!(
        topic_partitions(broker.client_config()).await.get("doomed"),
        Some(&1),
        "re-created with its new partition count"
    );
    assert_eq!(
        watermarks(broker.client_config(), "doomed", 0).await,
        (0, 0),
        "the re-created topic starts empty"
    );
    assert_eq!(produce(&broker, "doomed", 0, &[("fresh", None)]).await, [0]);
    let read = read_from_beginning(broker.client_config(), "doomed", 0, 1).await;
    assert_eq!(read, [(0, "fresh".to_string())], "none of the old records");
    blocking(move || drop(admin)).await;
}

/// A regression: a 249-character name (Kafka's longest) was created, but its delete
/// failed (the old tombstone name exceeded the file-name limit), answered 404 afterwards and
/// came back after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_with_the_longest_name_is_deleted_and_stays_deleted_across_a_restart() {
    let broker = TestBroker::start().await;
    let name = format!("long-{}", "n".repeat(244));
    assert_eq!(name.len(), 249);
    broker.create_topic(&name, 2, &[]).await;
    produce(&broker, &name, 0, &[("a", None), ("b", None)]).await;
    let admin = broker.admin();
    let results = admin
        .delete_topics(&[name.as_str()], &options())
        .await
        .expect("DeleteTopics");
    assert_eq!(results, vec![Ok(name.clone())], "the delete succeeds");
    assert!(!topic_partitions(broker.client_config())
        .await
        .contains_key(&name));
    blocking(move || drop(admin)).await;

    let broker = broker.restart(|_| {}).await;
    assert!(
        !topic_partitions(broker.client_config())
            .await
            .contains_key(&name),
        "the deleted topic does not come back after a restart"
    );
    let left: Vec<String> = std::fs::read_dir(broker.data_dir().join("topics"))
        .expect("topics dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "nothing of it is left on disk: {left:?}");

    broker.create_topic(&name, 1, &[]).await;
    assert_eq!(
        watermarks(broker.client_config(), &name, 0).await,
        (0, 0),
        "created again, it starts empty"
    );
}

/// A broker killed during a delete, after the rename that commits it, while it removed the
/// files: the next start finishes the delete instead of bringing half a topic back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_cut_short_after_its_commit_point_is_finished_at_the_next_start() {
    let mut broker = TestBroker::start().await;
    broker.create_topic("cut-short", 2, &[]).await;
    broker.create_topic("bystander", 1, &[]).await;
    produce(&broker, "cut-short", 1, &[("a", None)]).await;
    produce(&broker, "bystander", 0, &[("b", None)]).await;
    broker.shutdown().await;

    let topics = broker.data_dir().join("topics");
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(topics.join("cut-short").join("topic.json")).expect("topic.json"),
    )
    .expect("json");
    let id = meta["id"].as_str().expect("id");
    let tombstone = topics.join(format!(".deleted~{id}"));
    std::fs::rename(topics.join("cut-short"), &tombstone).expect("rename");
    std::fs::remove_file(tombstone.join("topic.json")).expect("partly removed");

    let broker = TestBroker::start_in(broker.data_dir(), |_| {}).await;
    let listed = topic_partitions(broker.client_config()).await;
    assert_eq!(
        listed.keys().map(String::as_str).collect::<Vec<_>>(),
        ["bystander"]
    );
    assert!(!tombstone.exists(), "the start removed the tombstone");
    assert_eq!(
        read_from_beginning(broker.client_config(), "bystander", 0, 1).await,
        [(0, "b".to_string())]
    );
}

/// ListOffsets with timestamps, as `offsets_for_times` sends it, for partition 0 of `topic`.
async fn offset_for_time(config: ClientConfig, topic: &str, timestamp: i64) -> Offset {
    let topic = topic.to_string();
    blocking(move || {
        let client: BaseConsumer = config.create().expect("client");
        let mut query = TopicPartitionList::new();
        query
            .add_partition_offset(&topic, 0, Offset::Offset(timestamp))
            .expect("query");
        let answer = client
            .offsets_for_times(query, TIMEOUT)
            .expect("ListOffsets");
        let element = answer.find_partition(&topic, 0).expect("partition answer");
        element.error().expect("no partition error");
        element.offset()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_finds_the_first_record_at_or_after_a_timestamp() {
    let broker = TestBroker::start().await;
    broker.create_topic("timed", 1, &[]).await;
    // Three batches of one record each, then two records in one batch (sent together).
    let offsets = produce(
        &broker,
        "timed",
        0,
        &[
            ("t1000", Some(1000)),
            ("t2000", Some(2000)),
            ("t3000", Some(3000)),
        ],
    )
    .await;
    assert_eq!(offsets, [0, 1, 2]);
    let producer = broker.producer(&[("linger.ms", "100")]);
    let (fourth, fifth) = futures::join!(
        producer.send(
            FutureRecord::to("timed")
                .key("k")
                .payload("t4000")
                .partition(0)
                .timestamp(4000),
            Timeout::After(TIMEOUT),
        ),
        producer.send(
            FutureRecord::to("timed")
                .key("k")
                .payload("t5000")
                .partition(0)
                .timestamp(5000),
            Timeout::After(TIMEOUT),
        ),
    );
    assert_eq!(fourth.map_err(|(e, _)| e).expect("acknowledged").offset, 3);
    assert_eq!(fifth.map_err(|(e, _)| e).expect("acknowledged").offset, 4);

    for (timestamp, expected) in [
        (0, Offset::Offset(0)),
        (1000, Offset::Offset(0)),
        (1001, Offset::Offset(1)),
        (2500, Offset::Offset(2)),
        (3000, Offset::Offset(2)),
        (3999, Offset::Offset(3)),
        (4500, Offset::Offset(4)),
        (5000, Offset::Offset(4)),
        (5001, Offset::End),
        (1_700_000_000_000, Offset::End),
    ] {
        assert_eq!(
            offset_for_time(broker.client_config(), "timed", timestamp).await,
            expected,
            "first offset with a timestamp at or after {timestamp}"
        );
    }

    // After DeleteRecords the answer never points below the log start offset.
    let admin = broker.admin();
    let mut before = TopicPartitionList::new();
    before
        .add_partition_offset("timed", 0, Offset::Offset(2))
        .expect("offset");
    admin
        .delete_records(&before, &options())
        .await
        .expect("DeleteRecords");
    assert_eq!(
        offset_for_time(broker.client_config(), "timed", 1000).await,
        Offset::Offset(2),
        "deleted records are not found by timestamp"
    );
    blocking(move || drop(admin)).await;
}

/// One group as `rd_kafka_list_groups` (ListGroups + DescribeGroups) reports it:
/// (state, protocol type, member client ids, whether the full list also has it). The two
/// calls are separate requests, so a group changing state between them (a member leaving) may
/// be seen differently by each: callers wait until both agree.
async fn describe_group(
    config: ClientConfig,
    group: &str,
) -> Option<(String, String, Vec<String>, bool)> {
    let group = group.to_string();
    blocking(move || {
        let admin: AdminClient<DefaultClientContext> = config.create().expect("admin client");
        let all = admin
            .inner()
            .fetch_group_list(None, TIMEOUT)
            .expect("ListGroups");
        let listed = all.groups().iter().any(|g| g.name() == group);
        let one = admin
            .inner()
            .fetch_group_list(Some(&group), TIMEOUT)
            .expect("DescribeGroups");
        one.groups().iter().find(|g| g.name() == group).map(|g| {
            (
                g.state().to_string(),
                g.protocol_type().to_string(),
                g.members()
                    .iter()
                    .map(|m| m.client_id().to_string())
                    .collect::<Vec<_>>(),
                listed,
            )
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_listing_shows_a_stable_group_with_its_member() {
    let broker = TestBroker::start().await;
    broker.create_topic("watched", 2, &[]).await;

    // A group member polling on its own thread until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let mut config = broker.client_config();
    config
        .set("group.id", "watchers")
        .set("client.id", "watcher-one")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500");
    let member = {
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config.create().expect("consumer");
            consumer.subscribe(&["watched"]).expect("subscribe");
            while !stop.load(Ordering::Relaxed) {
                if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
                    panic!("group member error: {e}");
                }
            }
            consumer.unsubscribe();
            drop(consumer);
        })
    };

    let deadline = Instant::now() + Duration::from_secs(30);
    let described = loop {
        let described = describe_group(broker.client_config(), "watchers").await;
        // A real group is also in the full list.
        if matches!(&described, Some((state, _, _, true)) if state == "Stable") {
            break described;
        }
        assert!(
            Instant::now() < deadline,
            "the group never became Stable: {described:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (_, protocol_type, members, _) = described.expect("group described");
    assert_eq!(protocol_type, "consumer");
    assert_eq!(members, ["watcher-one"], "the one member is listed");

    stop.store(true, Ordering::Relaxed);
    member.await.expect("group member thread");
    // The member left (LeaveGroup on close): the group is Empty and has no members.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let described = describe_group(broker.client_config(), "watchers").await;
        if matches!(&described, Some((state, _, members, true)) if state == "Empty" && members.is_empty())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the group never became Empty after its member left: {described:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let unknown = describe_group(broker.client_config(), "nobody-here").await;
    assert!(
        unknown
            .as_ref()
            .is_none_or(|(state, _, members, listed)| state == "Dead"
                && members.is_empty()
                && !listed),
        "an unknown group is absent or Dead, and not listed: {unknown:?}"
    );
}

/// Bytes of the segment files (`*.log`) of one partition on disk.
fn segment_bytes_on_disk(broker: &TestBroker, topic: &str, partition: i32) -> i64 {
    let dir = broker
        .data_dir()
        .join("topics")
        .join(topic)
        .join(partition.to_string());
    std::fs::read_dir(&dir)
        .expect("partition directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .map(|path| std::fs::metadata(&path).expect("segment file").len() as i64)
        .sum()
}

/// `(topic, partition) -> size` over every log dir of a DescribeLogDirs answer.
fn reported_sizes(response: &DescribeLogDirsResponse) -> BTreeMap<(String, i32), i64> {
    assert_eq!(response.error_code, 0, "{response:?}");
    let mut sizes = BTreeMap::new();
    for result in &response.results {
        assert_eq!(result.error_code, 0, "{result:?}");
        assert!(!result.log_dir.is_empty(), "{result:?}");
        for topic in &result.topics {
            for partition in &topic.partitions {
                sizes.insert(
                    (topic.name.to_string(), partition.partition_index),
                    partition.partition_size,
                );
            }
        }
    }
    sizes
}

fn log_dir_topic(name: &'static str, partitions: Vec<i32>) -> DescribableLogDirTopic {
    DescribableLogDirTopic::default()
        .with_topic(TopicName(StrBytes::from_static_str(name)))
        .with_partitions(partitions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_log_dirs_reports_partition_sizes_in_every_version() {
    let broker = TestBroker::start().await;
    broker.create_topic("sized", 2, &[]).await;
    broker.create_topic("other", 1, &[]).await;
    let value = "x".repeat(500);
    produce(&broker, "sized", 1, &[(value.as_str(), None); 3]).await;

    let on_disk = segment_bytes_on_disk(&broker, "sized", 1);
    assert!(
        on_disk > 1500,
        "three 500-byte records are on disk: {on_disk}"
    );
    let mut raw = RawClient::connect(broker.addr).await.expect("connect");
    // v1 is the last non-flexible version, v2 the first flexible one.
    for version in 1..=4 {
        let request = DescribeLogDirsRequest::default().with_topics(Some(vec![
            log_dir_topic("sized", vec![0, 1, 7]),
            log_dir_topic("missing", vec![0]),
        ]));
        let response: DescribeLogDirsResponse = raw
            .call(ApiKey::DescribeLogDirs, version, &request)
            .await
            .unwrap_or_else(|e| panic!("DescribeLogDirs v{version} answered: {e:#}"));
        let sizes = reported_sizes(&response);
        // Unknown topics and partitions are left out, as Kafka does.
        let expected = BTreeMap::from([
            (("sized".to_string(), 0), 0),
            (("sized".to_string(), 1), on_disk),
        ]);
        assert_eq!(sizes, expected, "v{version}");
        if version >= 4 {
            assert_eq!(response.results[0].total_bytes, -1, "volume size unknown");
        }
    }

    // Null topics: every partition of every topic.
    let response: DescribeLogDirsResponse = raw
        .call(
            ApiKey::DescribeLogDirs,
            4,
            &DescribeLogDirsRequest::default().with_topics(None),
        )
        .await
        .expect("DescribeLogDirs for all topics");
    let sizes = reported_sizes(&response);
    assert_eq!(sizes.get(&("sized".to_string(), 1)), Some(&on_disk));
    assert_eq!(sizes.get(&("other".to_string(), 0)), Some(&0));
    assert_eq!(sizes.len(), 3, "{sizes:?}");

    // An empty list asks for nothing.
    let response: DescribeLogDirsResponse = raw
        .call(
            ApiKey::DescribeLogDirs,
            4,
            &DescribeLogDirsRequest::default().with_topics(Some(Vec::new())),
        )
        .await
        .expect("DescribeLogDirs for no topic");
    assert!(reported_sizes(&response).is_empty(), "{response:?}");
}
