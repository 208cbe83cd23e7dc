//! Topic configs over real TCP: CreateTopics with every topic config of Kafka 4.x; refusals
//! (INVALID_CONFIG naming the config); AlterConfigs through librdkafka's AdminClient taking
//! effect at once (DescribeConfigs, max.message.bytes, LogAppendTime, compression.type) and
//! after a restart; the timestamp window and min.insync.replicas as producers see them.
//!
//! librdkafka through rdkafka 0.39 drops AlterConfigs' per-resource errors and has no
//! IncrementalAlterConfigs, so those are sent with the raw wire client here (and driven by
//! the Python clients in `compat/`). Blocking client calls run in `spawn_blocking`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use freshet_broker::topics::TOPIC_CONFIGS;
use freshet_log::BatchHeader;
use freshet_testkit::raw::RawClient;
use freshet_testkit::TestBroker;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    alter_configs_request, incremental_alter_configs_request, AlterConfigsRequest,
    AlterConfigsResponse, ApiKey, CreateTopicsRequest, CreateTopicsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rdkafka::admin::{
    AdminOptions, AlterConfig, ConfigSource, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

mod broker;

const TIMEOUT: Duration = Duration::from_secs(10);
const HOUR_MS: i64 = 3_600_000;

fn options() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(TIMEOUT))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Every topic config of Kafka 4.x with a valid value other than its default (but for
/// `remote.storage.enable`, which only takes false without tiered storage).
const EVERY_CONFIG: &[(&str, &str)] = &[
    ("cleanup.policy", "compact,delete"),
    ("compression.gzip.level", "5"),
    ("compression.lz4.level", "10"),
    ("compression.type", "zstd"),
    ("compression.zstd.level", "7"),
    ("delete.retention.ms", "1000"),
    ("file.delete.delay.ms", "10"),
    ("flush.messages", "100"),
    ("flush.ms", "2000"),
    ("follower.replication.throttled.replicas", "0:1,1:1"),
    ("index.interval.bytes", "1024"),
    ("leader.replication.throttled.replicas", "*"),
    ("local.retention.bytes", "-1"),
    ("local.retention.ms", "-1"),
    ("max.compaction.lag.ms", "86400000"),
    ("max.message.bytes", "500000"),
    ("message.downconversion.enable", "false"),
    ("message.timestamp.after.max.ms", "60000"),
    ("message.timestamp.before.max.ms", "86400000"),
    ("message.timestamp.type", "LogAppendTime"),
    ("min.cleanable.dirty.ratio", "0.1"),
    ("min.compaction.lag.ms", "1000"),
    ("min.insync.replicas", "2"),
    ("preallocate", "true"),
    ("remote.copy.lag.bytes", "-1"),
    ("remote.copy.lag.ms", "-1"),
    ("remote.log.copy.disable", "true"),
    ("remote.log.delete.on.disable", "true"),
    ("remote.storage.enable", "false"),
    ("retention.bytes", "1073741824"),
    ("retention.ms", "86400000"),
    ("segment.bytes", "1048576"),
    ("segment.index.bytes", "1024"),
    ("segment.jitter.ms", "10"),
    ("segment.ms", "3600000"),
    ("unclean.leader.election.enable", "true"),
];

/// Where a described value comes from (rdkafka's `ConfigSource` is neither `Copy` nor
/// `Clone`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    DynamicTopic,
    Default,
    Other,
}

impl From<&ConfigSource> for Source {
    fn from(source: &ConfigSource) -> Source {
        match source {
            ConfigSource::DynamicTopic => Source::DynamicTopic,
            ConfigSource::Default => Source::Default,
            _ => Source::Other,
        }
    }
}

/// `(value, source)` of every config of a topic, through librdkafka's DescribeConfigs.
async fn described(broker: &TestBroker, topic: &str) -> BTreeMap<String, (String, Source)> {
    let results = broker
        .admin()
        .describe_configs([&ResourceSpecifier::Topic(topic)], &options())
        .await
        .expect("DescribeConfigs");
    let resource = results[0].as_ref().expect("configs described");
    resource
        .entries
        .iter()
        .map(|entry| {
            let value = entry.value.clone().unwrap_or_default();
            (entry.name.clone(), (value, Source::from(&entry.source)))
        })
        .collect()
}

/// Produces one keyed record (compacted topics refuse keyless ones); the delivery report, or
/// the error the broker answered.
async fn produce(
    producer: &FutureProducer,
    topic: &str,
    payload: &[u8],
    timestamp: Option<i64>,
) -> Result<rdkafka::producer::future_producer::Delivery, RDKafkaErrorCode> {
    let mut record = FutureRecord::<str, [u8]>::to(topic)
        .key("k")
        .payload(payload);
    if let Some(timestamp) = timestamp {
        record = record.timestamp(timestamp);
    }
    producer
        .send(record, Timeout::After(TIMEOUT))
        .await
        .map_err(|(error, _)| match error {
            KafkaError::MessageProduction(code) => code,
            other => panic!("unexpected producer error: {other}"),
        })
}

/// The record timestamps of one partition from its beginning, `count` of them.
async fn timestamps(broker: &TestBroker, topic: &str, count: usize) -> Vec<Timestamp> {
    let config = broker.client_config();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config
            .clone()
            .set("group.id", "configs-reader")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&topic, 0, Offset::Beginning)
            .expect("assignment");
        consumer.assign(&assignment).expect("assign");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut found = Vec::new();
        while found.len() < count {
            assert!(Instant::now() < deadline, "only {found:?} arrived");
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                found.push(message.expect("no consumer error").timestamp());
            }
        }
        found
    })
    .await
    .expect("consumer thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topics_takes_every_kafka_4_topic_config_and_describes_it() {
    let table: BTreeSet<&str> = EVERY_CONFIG.iter().map(|(name, _)| *name).collect();
    let broker_names: BTreeSet<&str> = TOPIC_CONFIGS.iter().map(|def| def.name).collect();
    assert_eq!(
        table, broker_names,
        "the test covers exactly the broker's configs"
    );

    let broker = TestBroker::start().await;
    broker.create_topic("everything", 1, EVERY_CONFIG).await;
    let configs = described(&broker, "everything").await;
    assert_eq!(configs.len(), EVERY_CONFIG.len(), "{configs:?}");
    for (name, value) in EVERY_CONFIG {
        assert_eq!(
            configs.get(*name),
            Some(&(value.to_string(), Source::DynamicTopic)),
            "{name}"
        );
    }

    // A topic without overrides shows Kafka's defaults, as defaults.
    broker.create_topic("plain", 1, &[]).await;
    let configs = described(&broker, "plain").await;
    for (name, expected) in [
        ("cleanup.policy", "delete"),
        ("compression.type", "producer"),
        ("message.timestamp.type", "CreateTime"),
        ("message.timestamp.after.max.ms", "3600000"),
        ("min.insync.replicas", "1"),
        ("segment.bytes", "1073741824"),
        ("unclean.leader.election.enable", "false"),
    ] {
        assert_eq!(
            configs.get(name),
            Some(&(expected.to_string(), Source::Default)),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_and_bad_values_are_invalid_config_and_create_nothing() {
    let broker = TestBroker::start().await;
    let refused: &[(&str, &[(&str, &str)])] = &[
        ("unknown-name", &[("flux.capacitor", "1")]),
        (
            "removed-in-4",
            &[("message.timestamp.difference.max.ms", "1000")],
        ),
        ("not-a-long", &[("retention.ms", "soon")]),
        ("below-minimum", &[("retention.ms", "-2")]),
        ("not-an-int", &[("max.message.bytes", "4294967296")]),
        ("ratio-above-one", &[("min.cleanable.dirty.ratio", "1.5")]),
        ("not-an-enum", &[("message.timestamp.type", "WallClock")]),
        ("not-a-boolean", &[("preallocate", "maybe")]),
        ("bad-list-item", &[("cleanup.policy", "compact,shred")]),
        ("no-tiered-storage", &[("remote.storage.enable", "true")]),
        (
            "lags-crossed",
            &[
                ("min.compaction.lag.ms", "10"),
                ("max.compaction.lag.ms", "5"),
            ],
        ),
    ];
    let topics: Vec<NewTopic> = refused
        .iter()
        .map(|(name, configs)| {
            configs.iter().fold(
                NewTopic::new(name, 1, TopicReplication::Fixed(1)),
                |topic, (k, v)| topic.set(k, v),
            )
        })
        .collect();
    let results = broker
        .admin()
        .create_topics(topics.iter(), &options())
        .await
        .expect("CreateTopics");
    for (result, (name, _)) in results.iter().zip(refused) {
        assert_eq!(
            result,
            &Err((name.to_string(), RDKafkaErrorCode::InvalidConfig)),
            "{name}"
        );
    }
    assert!(broker.broker.topics.all().is_empty(), "nothing was created");

    // The message names the config and says what is wrong with the value.
    let mut raw = RawClient::connect(broker.addr).await.expect("connect");
    let topic = CreatableTopic::default()
        .with_name(TopicName(str("raw")))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(vec![CreatableTopicConfig::default()
            .with_name(str("segment.ms"))
            .with_value(Some(str("0")))]);
    let response: CreateTopicsResponse = raw
        .call(
            ApiKey::CreateTopics,
            5,
            &CreateTopicsRequest::default()
                .with_topics(vec![topic])
                .with_timeout_ms(10_000),
        )
        .await
        .expect("CreateTopics answered");
    let result = &response.topics[0];
    assert_eq!(result.error_code, ResponseError::InvalidConfig.code());
    assert_eq!(
        result.error_message.as_deref(),
        Some("invalid config segment.ms: invalid value \"0\": value must be at least 1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_configs_replaces_the_overrides_live_and_for_good() {
    let broker = TestBroker::start().await;
    broker
        .create_topic(
            "altered",
            1,
            &[("retention.ms", "1000"), ("cleanup.policy", "compact")],
        )
        .await;
    let producer = broker.producer(&[("linger.ms", "0")]);
    let big = vec![b'x'; 5000];
    produce(&producer, "altered", &big, None)
        .await
        .expect("5000 bytes fit the default max.message.bytes");

    let alter = AlterConfig::new(ResourceSpecifier::Topic("altered"))
        .set("segment.bytes", "2048")
        .set("max.message.bytes", "2000");
    let results = broker
        .admin()
        .alter_configs([&alter], &options())
        .await
        .expect("AlterConfigs");
    assert_eq!(results.len(), 1);
    assert!(results[0].is_ok(), "{results:?}");

    let configs = described(&broker, "altered").await;
    let dynamic = |value: &str| (value.to_string(), Source::DynamicTopic);
    let default = |value: &str| (value.to_string(), Source::Default);
    assert_eq!(configs["segment.bytes"], dynamic("2048"));
    assert_eq!(configs["max.message.bytes"], dynamic("2000"));
    // AlterConfigs replaces the whole set: the earlier overrides are gone.
    assert_eq!(configs["retention.ms"], default("604800000"));
    assert_eq!(configs["cleanup.policy"], default("delete"));

    // Live: the partition's log refuses what no longer fits, at once.
    assert_eq!(
        produce(&producer, "altered", &big, None).await.err(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge)
    );
    produce(&producer, "altered", b"small", None)
        .await
        .expect("a small record still fits");
    drop(producer);

    let broker = broker.restart(|_| {}).await;
    let after = described(&broker, "altered").await;
    assert_eq!(after, configs, "the overrides survive a restart");
    let producer = broker.producer(&[("linger.ms", "0")]);
    assert_eq!(
        produce(&producer, "altered", &big, None).await.err(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge),
        "and so does their effect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_append_time_set_by_alter_configs_restamps_new_batches() {
    let broker = TestBroker::start().await;
    broker.create_topic("stamped", 1, &[]).await;
    let producer = broker.producer(&[("linger.ms", "0")]);
    let created = produce(&producer, "stamped", b"before", Some(1_000))
        .await
        .expect("CreateTime with an old timestamp is accepted by default");
    assert_eq!(created.timestamp, Timestamp::CreateTime(1_000));

    let alter = AlterConfig::new(ResourceSpecifier::Topic("stamped"))
        .set("message.timestamp.type", "LogAppendTime");
    broker
        .admin()
        .alter_configs([&alter], &options())
        .await
        .expect("AlterConfigs");
    let sent_at = now_ms();
    let delivery = produce(&producer, "stamped", b"after", Some(2_000))
        .await
        .expect("LogAppendTime ignores the producer's timestamp");
    let received_at = now_ms();
    let Timestamp::LogAppendTime(stamped) = delivery.timestamp else {
        panic!("the delivery report carries the log append time: {delivery:?}");
    };
    assert!(
        (sent_at..=received_at).contains(&stamped),
        "{sent_at} <= {stamped} <= {received_at}"
    );
    assert_eq!(
        timestamps(&broker, "stamped", 2).await,
        [
            Timestamp::CreateTime(1_000),
            Timestamp::LogAppendTime(stamped)
        ],
        "earlier batches keep their producer timestamps"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_time_records_outside_the_timestamp_window_are_invalid_timestamp() {
    let broker = TestBroker::start().await;
    broker.create_topic("default-window", 1, &[]).await;
    broker
        .create_topic(
            "narrow-window",
            1,
            &[("message.timestamp.before.max.ms", "60000")],
        )
        .await;
    let producer = broker.producer(&[("linger.ms", "0")]);
    let now = now_ms();
    // Kafka 4's default message.timestamp.after.max.ms is one hour.
    assert_eq!(
        produce(
            &producer,
            "default-window",
            b"future",
            Some(now + 2 * HOUR_MS)
        )
        .await
        .err(),
        Some(RDKafkaErrorCode::InvalidTimestamp)
    );
    produce(&producer, "default-window", b"past", Some(1_000))
        .await
        .expect("no lower bound by default");
    assert_eq!(
        produce(&producer, "narrow-window", b"old", Some(now - HOUR_MS))
            .await
            .err(),
        Some(RDKafkaErrorCode::InvalidTimestamp)
    );
    produce(&producer, "narrow-window", b"recent", Some(now_ms()))
        .await
        .expect("within a minute");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_insync_replicas_above_one_refuses_acks_all_only() {
    let broker = TestBroker::start().await;
    broker
        .create_topic("replicated", 1, &[("min.insync.replicas", "2")])
        .await;
    // NOT_ENOUGH_REPLICAS is retriable: without retries the producer reports it at once.
    let all = broker.producer(&[("linger.ms", "0"), ("acks", "all"), ("retries", "0")]);
    assert_eq!(
        produce(&all, "replicated", b"durable", None).await.err(),
        Some(RDKafkaErrorCode::NotEnoughReplicas)
    );
    let leader_only = broker.producer(&[("linger.ms", "0"), ("acks", "1")]);
    let delivery = produce(&leader_only, "replicated", b"leader", None)
        .await
        .expect("acks=1 needs only the leader");
    assert_eq!(delivery.offset, 0, "the refused record was not written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_type_recompresses_batches_of_another_codec() {
    let broker = TestBroker::start().await;
    broker
        .create_topic("gzipped", 1, &[("compression.type", "gzip")])
        .await;
    let producer = broker.producer(&[("linger.ms", "0"), ("compression.type", "lz4")]);
    let payload = b"a value that compresses: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".repeat(20);
    produce(&producer, "gzipped", &payload, None)
        .await
        .expect("acknowledged");

    let log = broker
        .broker
        .topics
        .partition("gzipped", 0)
        .expect("partition")
        .log
        .clone();
    let stored = log.read(0, 1 << 20, true).expect("read").records;
    let header = BatchHeader::parse(&stored).expect("a batch");
    assert_eq!(
        header.compression().expect("codec"),
        kafka_protocol::records::Compression::Gzip,
        "stored with the topic's codec, not the producer's lz4"
    );

    let config = broker.client_config();
    let read = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config
            .clone()
            .set("group.id", "gzip-reader")
            .create()
            .expect("consumer");
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset("gzipped", 0, Offset::Beginning)
            .expect("assignment");
        consumer.assign(&assignment).expect("assign");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "nothing arrived");
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                let message = message.expect("no consumer error");
                return message.payload().expect("value").to_vec();
            }
        }
    })
    .await
    .expect("consumer thread");
    assert_eq!(read, payload, "the consumer reads the record back intact");
}

fn incremental(
    topic: &str,
    ops: &[(&str, i8, Option<&str>)],
) -> incremental_alter_configs_request::AlterConfigsResource {
    resource_of(2, topic, ops)
}

fn resource_of(
    resource_type: i8,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
) -> incremental_alter_configs_request::AlterConfigsResource {
    incremental_alter_configs_request::AlterConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(str(name))
        .with_configs(
            ops.iter()
                .map(|(name, op, value)| {
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(str(name))
                        .with_config_operation(*op)
                        .with_value(value.map(str))
                })
                .collect(),
        )
}

async fn incremental_call(
    raw: &mut RawClient,
    resources: Vec<incremental_alter_configs_request::AlterConfigsResource>,
    validate_only: bool,
) -> Vec<(i16, Option<String>)> {
    let response: IncrementalAlterConfigsResponse = raw
        .call(
            ApiKey::IncrementalAlterConfigs,
            1,
            &IncrementalAlterConfigsRequest::default()
                .with_resources(resources)
                .with_validate_only(validate_only),
        )
        .await
        .expect("IncrementalAlterConfigs answered");
    response
        .responses
        .iter()
        .map(|r| {
            (
                r.error_code,
                r.error_message.as_ref().map(|m| m.to_string()),
            )
        })
        .collect()
}

/// A resource's outcome when it was accepted.
const ACCEPTED: (i16, Option<String>) = (0, None);

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_alter_configs_edits_the_overrides() {
    let broker = TestBroker::start().await;
    broker
        .create_topic("edited", 1, &[("retention.ms", "1000")])
        .await;
    let mut raw = RawClient::connect(broker.addr).await.expect("connect");

    let outcome = incremental_call(
        &mut raw,
        vec![incremental(
            "edited",
            &[
                ("segment.ms", SET, Some("5000")),
                ("retention.ms", DELETE, None),
                ("cleanup.policy", APPEND, Some("compact")),
            ],
        )],
        false,
    )
    .await;
    assert_eq!(outcome, [ACCEPTED]);
    let configs = described(&broker, "edited").await;
    assert_eq!(configs["segment.ms"].0, "5000");
    assert_eq!(
        configs["retention.ms"],
        ("604800000".into(), Source::Default)
    );
    assert_eq!(
        configs["cleanup.policy"],
        ("delete,compact".into(), Source::DynamicTopic),
        "APPEND adds to the default"
    );
    let live = broker
        .broker
        .topics
        .partition("edited", 0)
        .expect("partition");
    assert_eq!(live.log.config().segment_ms, 5000, "applied to the log");

    let outcome = incremental_call(
        &mut raw,
        vec![incremental(
            "edited",
            &[("cleanup.policy", SUBTRACT, Some("delete"))],
        )],
        false,
    )
    .await;
    assert_eq!(outcome, [ACCEPTED]);
    assert_eq!(
        described(&broker, "edited").await["cleanup.policy"].0,
        "compact"
    );

    // Each resource is refused whole, and precisely; nothing of a refused one changes.
    let outcome = incremental_call(
        &mut raw,
        vec![
            incremental(
                "edited",
                &[
                    ("segment.ms", SET, Some("7000")),
                    ("retention.ms", APPEND, Some("5")),
                ],
            ),
            incremental("edited", &[("segment.ms", 9, Some("1"))]),
            incremental(
                "edited",
                &[("segment.ms", SET, Some("1")), ("segment.ms", DELETE, None)],
            ),
            incremental("edited", &[("segment.ms", SET, None)]),
            incremental("missing", &[("segment.ms", SET, Some("1"))]),
            resource_of(4, "1", &[("num.partitions", SET, Some("1"))]),
            resource_of(4, "1", &[]),
            resource_of(8, "1", &[("kafka.server", SET, Some("DEBUG"))]),
        ],
        false,
    )
    .await;
    let codes: Vec<i16> = outcome.iter().map(|(code, _)| *code).collect();
    assert_eq!(
        codes,
        [
            ResponseError::InvalidConfig.code(),
            ResponseError::InvalidRequest.code(),
            ResponseError::InvalidRequest.code(),
            ResponseError::InvalidRequest.code(),
            ResponseError::UnknownTopicOrPartition.code(),
            ResponseError::InvalidRequest.code(),
            0,
            ResponseError::InvalidRequest.code(),
        ],
        "{outcome:?}"
    );
    assert_eq!(
        outcome[0].1.as_deref(),
        Some(
            "invalid config retention.ms: APPEND and SUBTRACT apply to LIST configs only, and \
             retention.ms is not one"
        )
    );
    assert!(
        outcome[5]
            .1
            .as_deref()
            .is_some_and(|m| m.contains("num.partitions")),
        "{outcome:?}"
    );
    assert_eq!(described(&broker, "edited").await["segment.ms"].0, "5000");

    // validate_only checks and changes nothing.
    let outcome = incremental_call(
        &mut raw,
        vec![
            incremental("edited", &[("segment.ms", SET, Some("8000"))]),
            incremental("edited", &[("segment.ms", SET, Some("0"))]),
        ],
        true,
    )
    .await;
    assert_eq!(outcome[0], ACCEPTED);
    assert_eq!(outcome[1].0, ResponseError::InvalidConfig.code());
    assert_eq!(described(&broker, "edited").await["segment.ms"].0, "5000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_configs_refusals_are_precise_and_change_nothing() {
    let broker = TestBroker::start().await;
    broker
        .create_topic("kept", 1, &[("retention.ms", "1000")])
        .await;
    let mut raw = RawClient::connect(broker.addr).await.expect("connect");
    let resource = |name: &str, configs: &[(&str, Option<&str>)]| {
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(str(name))
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        alter_configs_request::AlterableConfig::default()
                            .with_name(str(k))
                            .with_value(v.map(str))
                    })
                    .collect(),
            )
    };
    let response: AlterConfigsResponse = raw
        .call(
            ApiKey::AlterConfigs,
            2,
            &AlterConfigsRequest::default().with_resources(vec![
                resource(
                    "kept",
                    &[("retention.ms", Some("5")), ("segment.bytes", Some("big"))],
                ),
                resource(
                    "kept",
                    &[("retention.ms", Some("5")), ("retention.ms", Some("6"))],
                ),
                resource("kept", &[("retention.ms", None)]),
                resource("missing", &[("retention.ms", Some("5"))]),
            ]),
        )
        .await
        .expect("AlterConfigs answered");
    let outcome: Vec<(i16, Option<String>)> = response
        .responses
        .iter()
        .map(|r| {
            (
                r.error_code,
                r.error_message.as_ref().map(|m| m.to_string()),
            )
        })
        .collect();
    assert_eq!(
        outcome,
        [
            (
                ResponseError::InvalidConfig.code(),
                Some(
                    "invalid config segment.bytes: invalid value \"big\": not a number of type INT"
                        .into()
                )
            ),
            (
                ResponseError::InvalidRequest.code(),
                Some("config retention.ms is named twice in one resource".into())
            ),
            (
                ResponseError::InvalidRequest.code(),
                Some("null value for config retention.ms".into())
            ),
            (
                ResponseError::UnknownTopicOrPartition.code(),
                Some("topic \"missing\" does not exist".into())
            ),
        ]
    );
    assert_eq!(
        described(&broker, "kept").await["retention.ms"],
        ("1000".into(), Source::DynamicTopic),
        "the valid half of a refused resource was not applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altering_a_topic_takes_alter_configs_on_it() {
    let broker = TestBroker::start_with(|config| config.acl_authorizer = true).await;
    broker
        .broker
        .create_topic("guarded", 1, Default::default())
        .expect("create topic");
    // The anonymous principal of this PLAINTEXT listener has no ACLs.
    let mut raw = RawClient::connect(broker.addr).await.expect("connect");
    let outcome = incremental_call(
        &mut raw,
        vec![
            incremental("guarded", &[("retention.ms", SET, Some("5"))]),
            incremental("missing", &[("retention.ms", SET, Some("5"))]),
        ],
        false,
    )
    .await;
    let denied = ResponseError::TopicAuthorizationFailed.code();
    assert_eq!(
        outcome.iter().map(|(code, _)| *code).collect::<Vec<_>>(),
        [denied, denied],
        "denied whether or not the topic exists: {outcome:?}"
    );
    let topic = broker.broker.topics.get("guarded").expect("topic");
    assert!(topic.configs.0.is_empty(), "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_configs_v4_gives_types_documentation_and_synonyms() {
    let broker = TestBroker::start_with(|config| config.log_defaults.segment_bytes = 1 << 20).await;
    broker
        .create_topic("typed", 1, &[("retention.ms", "5000")])
        .await;
    let mut raw = RawClient::connect(broker.addr).await.expect("connect");
    let response: DescribeConfigsResponse = raw
        .call(
            ApiKey::DescribeConfigs,
            4,
            &DescribeConfigsRequest::default()
                .with_include_synonyms(true)
                .with_include_documentation(true)
                .with_resources(vec![DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(str("typed"))
                    .with_configuration_keys(Some(vec![
                        str("retention.ms"),
                        str("segment.bytes"),
                        str("cleanup.policy"),
                        str("min.cleanable.dirty.ratio"),
                    ]))]),
        )
        .await
        .expect("DescribeConfigs answered");
    let result = &response.results[0];
    assert_eq!(result.error_code, 0);
    let entries: BTreeMap<String, _> = result
        .configs
        .iter()
        .map(|entry| {
            let synonyms: Vec<(String, String, i8)> = entry
                .synonyms
                .iter()
                .map(|s| {
                    let value = s.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                    (s.name.to_string(), value, s.source)
                })
                .collect();
            let value = entry.value.as_ref().map(|v| v.to_string());
            let summary = (
                value,
                entry.config_source,
                entry.config_type,
                entry.read_only,
                synonyms,
            );
            assert!(
                entry
                    .documentation
                    .as_ref()
                    .is_some_and(|doc| !doc.is_empty()),
                "{} is documented",
                entry.name.as_str()
            );
            (entry.name.to_string(), summary)
        })
        .collect();
    let pair = |name: &str, value: &str, source: i8| (name.to_string(), value.to_string(), source);
    assert_eq!(
        entries["retention.ms"],
        (
            Some("5000".into()),
            1,
            5,
            false,
            vec![
                pair("retention.ms", "5000", 1),
                pair("log.retention.ms", "604800000", 5)
            ]
        ),
        "an override: DYNAMIC_TOPIC_CONFIG, LONG, then the broker default it hides"
    );
    assert_eq!(
        entries["segment.bytes"],
        (
            Some("1048576".into()),
            4,
            3,
            false,
            vec![pair("log.segment.bytes", "1048576", 4)]
        ),
        "a default the broker's command line changed: STATIC_BROKER_CONFIG, INT"
    );
    assert_eq!(entries["cleanup.policy"].2, 7, "LIST");
    assert_eq!(entries["min.cleanable.dirty.ratio"].2, 6, "DOUBLE");
    assert_eq!(entries.len(), 4, "only the keys asked for");
}
