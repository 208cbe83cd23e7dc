//! Dynamic broker configs over real TCP (a module of the `configs` tests): IncrementalAlterConfigs and AlterConfigs on the
//! BROKER resource (`""` every broker's default, `"1"` this broker) change the defaults of
//! topics that do not override them, at once (the partitions' logs, retention) and after a
//! restart; DescribeConfigs shows each layer's source and synonyms; refusals change nothing.
//!
//! Sent with the raw wire client: librdkafka through rdkafka 0.39 has no
//! IncrementalAlterConfigs and drops AlterConfigs' per-resource errors.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use freshet_testkit::batches::values_batch;
use freshet_testkit::raw::RawClient;
use freshet_testkit::TestBroker;

use super::str;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    alter_configs_request, incremental_alter_configs_request, AlterConfigsRequest,
    AlterConfigsResponse, ApiKey, DescribeConfigsRequest, DescribeConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// The resource of every broker's default.
const CLUSTER: &str = "";
/// The test broker's node id.
const THIS_BROKER: &str = "1";

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// Kafka's config sources.
const DYNAMIC_TOPIC: i8 = 1;
const DYNAMIC_BROKER: i8 = 2;
const DYNAMIC_DEFAULT_BROKER: i8 = 3;
const STATIC_BROKER: i8 = 4;
const DEFAULT: i8 = 5;

const ACCEPTED: (i16, Option<String>) = (0, None);

type Op<'a> = (&'a str, i8, Option<&'a str>);

async fn incremental(
    raw: &mut RawClient,
    resources: &[(i8, &str, &[Op<'_>])],
    validate_only: bool,
) -> Vec<(i16, Option<String>)> {
    let resources = resources
        .iter()
        .map(|(resource_type, name, ops)| {
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(*resource_type)
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
        })
        .collect();
    super::incremental_call(raw, resources, validate_only).await
}

/// Sets `configs` on broker resource `name` with one IncrementalAlterConfigs, which must pass.
async fn set_broker(raw: &mut RawClient, name: &str, configs: &[(&str, &str)]) {
    let ops: Vec<Op> = configs.iter().map(|(k, v)| (*k, SET, Some(*v))).collect();
    let outcome = incremental(raw, &[(BROKER, name, &ops)], false).await;
    assert_eq!(
        outcome,
        [ACCEPTED],
        "setting {configs:?} on broker {name:?}"
    );
}

/// A described config: value, source, read-only, synonyms as `(name, value, source)`.
#[derive(Debug, PartialEq)]
struct Described {
    value: String,
    source: i8,
    read_only: bool,
    synonyms: Vec<(String, String, i8)>,
}

/// Every config of one resource (DescribeConfigs v4 with synonyms), or its error code.
async fn describe(
    raw: &mut RawClient,
    resource_type: i8,
    name: &str,
) -> Result<BTreeMap<String, Described>, i16> {
    let response: DescribeConfigsResponse = raw
        .call(
            ApiKey::DescribeConfigs,
            4,
            &DescribeConfigsRequest::default()
                .with_include_synonyms(true)
                .with_resources(vec![DescribeConfigsResource::default()
                    .with_resource_type(resource_type)
                    .with_resource_name(str(name))]),
        )
        .await
        .expect("DescribeConfigs answered");
    let result = &response.results[0];
    if result.error_code != 0 {
        return Err(result.error_code);
    }
    let text = |v: &Option<StrBytes>| v.as_ref().map(|v| v.to_string()).unwrap_or_default();
    Ok(result
        .configs
        .iter()
        .map(|entry| {
            let described = Described {
                value: text(&entry.value),
                source: entry.config_source,
                read_only: entry.read_only,
                synonyms: entry
                    .synonyms
                    .iter()
                    .map(|s| (s.name.to_string(), text(&s.value), s.source))
                    .collect(),
            };
            (entry.name.to_string(), described)
        })
        .collect())
}

/// `(value, source)` of one config of a topic.
async fn topic_config(raw: &mut RawClient, topic: &str, name: &str) -> (String, i8) {
    let configs = describe(raw, TOPIC, topic).await.expect("topic described");
    let config = &configs[name];
    (config.value.clone(), config.source)
}

fn synonym(name: &str, value: &str, source: i8) -> (String, String, i8) {
    (name.to_string(), value.to_string(), source)
}

fn live_config(broker: &TestBroker, topic: &str) -> freshet_log::LogConfig {
    broker
        .broker
        .topics
        .partition(topic, 0)
        .expect("partition")
        .log
        .config()
}

/// Waits until `done` holds (the log cleaner runs every 200 ms in tests).
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_default_reaches_topics_without_an_override_at_once() {
    // Nothing expires by the command line's default; the records are from 2023.
    let broker = TestBroker::start_with(|config| config.log_defaults.retention_ms = -1).await;
    broker
        .create_topic("plain", 1, &[("segment.bytes", "1024")])
        .await;
    broker
        .create_topic(
            "pinned",
            1,
            &[("segment.bytes", "1024"), ("retention.ms", "-1")],
        )
        .await;
    let mut raw = RawClient::connect(broker.addr).await.expect("connect");
    let value = "v".repeat(700);
    for topic in ["plain", "pinned"] {
        for _ in 0..4 {
            let code = raw
                .produce(topic, 0, values_batch(&[&value]))
                .await
                .expect("produce");
            assert_eq!(code, 0);
        }
    }

    set_broker(&mut raw, CLUSTER, &[("log.retention.ms", "1000")]).await;

    let plain = describe(&mut raw, TOPIC, "plain").await.expect("described");
    assert_eq!(
        plain["retention.ms"],
        Described {
            value: "1000".into(),
            source: DYNAMIC_DEFAULT_BROKER,
            read_only: false,
            synonyms: vec![
                synonym("log.retention.ms", "1000", DYNAMIC_DEFAULT_BROKER),
                synonym("log.retention.ms", "-1", STATIC_BROKER),
            ],
        }
    );
    let pinned = describe(&mut raw, TOPIC, "pinned")
        .await
        .expect("described");
    assert_eq!(
        pinned["retention.ms"].synonyms,
        [
            synonym("retention.ms", "-1", DYNAMIC_TOPIC),
            synonym("log.retention.ms", "1000", DYNAMIC_DEFAULT_BROKER),
            synonym("log.retention.ms", "-1", STATIC_BROKER),
        ],
        "an override hides the dynamic default"
    );
    assert_eq!(live_config(&broker, "plain").retention_ms, 1000);
    assert_eq!(live_config(&broker, "pinned").retention_ms, -1);

    let plain_log = broker.broker.topics.partition("plain", 0).expect("plain");
    eventually("retention deletes the old segments of plain", || {
        plain_log.log.log_start_offset() > 0
    })
    .await;
    let pinned_log = broker.broker.topics.partition("pinned", 0).expect("pinned");
    assert_eq!(
        pinned_log.log.log_start_offset(),
        0,
        "pinned keeps its data"
    );

    // A topic created afterwards starts with the dynamic default too.
    broker.create_topic("later", 1, &[]).await;
    assert_eq!(live_config(&broker, "later").retention_ms, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn this_brokers_config_wins_over_the_cluster_default_and_delete_reverts() {
    let broker = TestBroker::start_with(|config| config.log_defaults.retention_ms = 123_456).await;
    broker.create_topic("layered", 1, &[]).await;
    let mut raw = RawClient::connect(broker.addr).await.expect("connect");

    set_broker(&mut raw, CLUSTER, &[("log.retention.ms", "2000")]).await;
    set_broker(
        &mut raw,
        THIS_BROKER,
        &[("log.retention.ms", "1000"), ("log.roll.ms", "60000")],
    )
    .await;
    let configs = describe(&mut raw, TOPIC, "layered")
        .await
        .expect("described");
    assert_eq!(
        configs["retention.ms"],
        Described {
            value: "1000".into(),
            source: DYNAMIC_BROKER,
            read_only: false,
            synonyms: vec![
                synonym("log.retention.ms", "1000", DYNAMIC_BROKER),
                synonym("log.retention.ms", "2000", DYNAMIC_DEFAULT_BROKER),
                synonym("log.retention.ms", "123456", STATIC_BROKER),
            ],
        }
    );
    assert_eq!(
        (
            configs["segment.ms"].value.as_str(),
            configs["segment.ms"].source
        ),
        ("60000", DYNAMIC_BROKER),
        "log.roll.ms is segment.ms's broker name"
    );
    let live = live_config(&broker, "layered");
    assert_eq!((live.retention_ms, live.segment_ms), (1000, 60000));

    // The broker resources: this broker lists every layer, "" its own values only.
    let this = describe(&mut raw, BROKER, THIS_BROKER)
        .await
        .expect("broker");
    assert_eq!(
        (
            this["log.retention.ms"].value.as_str(),
            this["log.retention.ms"].source
        ),
        ("1000", DYNAMIC_BROKER)
    );
    assert!(
        !this["log.retention.ms"].read_only,
        "dynamic configs can change"
    );
    assert_eq!(
        (
            this["log.segment.bytes"].value.as_str(),
            this["log.segment.bytes"].source
        ),
        ("1073741824", DEFAULT)
    );
    assert!(this["broker.id"].read_only, "static configs cannot");
    let cluster = describe(&mut raw, BROKER, CLUSTER).await.expect("cluster");
    assert_eq!(
        cluster.keys().collect::<Vec<_>>(),
        ["log.retention.ms"],
        "{cluster:?}"
    );
    assert_eq!(cluster["log.retention.ms"].source, DYNAMIC_DEFAULT_BROKER);
    assert_eq!(
        describe(&mut raw, BROKER, "7").await.err(),
        Some(ResponseError::InvalidRequest.code()),
        "another broker"
    );

    // DELETE: back to the next layer, down to the command line's value.
    let outcome = incremental(
        &mut raw,
        &[(BROKER, THIS_BROKER, &[("log.retention.ms", DELETE, None)])],
        false,
    )
    .await;
    assert_eq!(outcome, [ACCEPTED]);
    assert_eq!(
        topic_config(&mut raw, "layered", "retention.ms").await,
        ("2000".into(), DYNAMIC_DEFAULT_BROKER)
    );
    assert_eq!(live_config(&broker, "layered").retention_ms, 2000);
    let outcome = incremental(
        &mut raw,
        &[(BROKER, CLUSTER, &[("log.retention.ms", DELETE, None)])],
        false,
    )
    .await;
    assert_eq!(outcome, [ACCEPTED]);
    assert_eq!(
        topic_config(&mut raw, "layered", "retention.ms").await,
        ("123456".into(), STATIC_BROKER)
    );
    assert_eq!(live_config(&broker, "layered").retention_ms, 123_456);
    assert_eq!(
        live_config(&broker, "layered").segment_ms,
        60000,
        "the other config stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_configs_take_append_and_subtract_and_alter_configs_replaces_the_set() {
    let broker = TestBroker::start().await;
    broker.create_topic("listed", 1, &[]).await;
    let mut raw = RawClient::connect(broker.addr).await.expect("connect");

    let outcome = incremental(
        &mut raw,
        &[(
            BROKER,
            CLUSTER,
            &[("log.cleanup.policy", APPEND, Some("compact"))],
        )],
        false,
    )
    .await;
    assert_eq!(outcome, [ACCEPTED]);
    assert_eq!(
        topic_config(&mut raw, "listed", "cleanup.policy").await,
        ("compact,delete".into(), DYNAMIC_DEFAULT_BROKER)
    );
    assert_eq!(
        live_config(&broker, "listed").cleanup_policy,
        freshet_log::CleanupPolicy::CompactDelete
    );
    let outcome = incremental(
        &mut raw,
        &[(
            BROKER,
            THIS_BROKER,
            &[("log.cleanup.policy", SUBTRACT, Some("delete"))],
        )],
        false,
    )
    .await;
    assert_eq!(
        outcome,
        [ACCEPTED],
        "starts from the inherited compact,delete"
    );
    assert_eq!(
        topic_config(&mut raw, "listed", "cleanup.policy").await,
        ("compact".into(), DYNAMIC_BROKER)
    );

    // AlterConfigs replaces this broker's whole dynamic set, as Kafka's does.
    set_broker(&mut raw, THIS_BROKER, &[("log.retention.ms", "5000")]).await;
    let response: AlterConfigsResponse = raw
        .call(
            ApiKey::AlterConfigs,
            2,
            &AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(BROKER)
                    .with_resource_name(str(THIS_BROKER))
                    .with_configs(vec![alter_configs_request::AlterableConfig::default()
                        .with_name(str("message.max.bytes"))
                        .with_value(Some(str("500000")))]),
            ]),
        )
        .await
        .expect("AlterConfigs answered");
    assert_eq!(response.responses[0].error_code, 0);
    let configs = describe(&mut raw, TOPIC, "listed")
        .await
        .expect("described");
    assert_eq!(
        (
            configs["max.message.bytes"].value.as_str(),
            configs["max.message.bytes"].source
        ),
        ("500000", DYNAMIC_BROKER)
    );
    assert_eq!(configs["retention.ms"].source, DEFAULT, "replaced away");
    assert_eq!(
        (
            configs["cleanup.policy"].value.as_str(),
            configs["cleanup.policy"].source
        ),
        ("compact,delete", DYNAMIC_DEFAULT_BROKER),
        "the cluster default is another resource"
    );
    assert_eq!(live_config(&broker, "listed").max_message_bytes, 500_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_validate_only_change_nothing() {
    let broker = TestBroker::start().await;
    broker.create_topic("steady", 1, &[]).await;
    let mut raw = RawClient::connect(broker.addr).await.expect("connect");

    let outcome = incremental(
        &mut raw,
        &[
            (
                BROKER,
                CLUSTER,
                &[
                    ("log.roll.ms", SET, Some("5000")),
                    ("log.retention.ms", SET, Some("-5")),
                ],
            ),
            (BROKER, CLUSTER, &[("log.retention.ms", SET, Some("soon"))]),
            (
                BROKER,
                THIS_BROKER,
                &[("log.retention.ms", APPEND, Some("5"))],
            ),
            (BROKER, CLUSTER, &[("flux.capacitor", SET, Some("1"))]),
            (
                BROKER,
                THIS_BROKER,
                &[
                    ("num.partitions", SET, Some("5")),
                    ("log.dirs", SET, Some("/x")),
                ],
            ),
            (BROKER, "2", &[("log.retention.ms", SET, Some("5"))]),
            (
                BROKER,
                CLUSTER,
                &[
                    ("log.cleaner.min.compaction.lag.ms", SET, Some("10")),
                    ("log.cleaner.max.compaction.lag.ms", SET, Some("5")),
                ],
            ),
        ],
        false,
    )
    .await;
    let invalid_config = ResponseError::InvalidConfig.code();
    let invalid_request = ResponseError::InvalidRequest.code();
    assert_eq!(
        outcome.iter().map(|(code, _)| *code).collect::<Vec<_>>(),
        [
            invalid_config,
            invalid_config,
            invalid_config,
            invalid_request,
            invalid_request,
            invalid_request,
            invalid_config
        ],
        "{outcome:?}"
    );
    let message = |index: usize| outcome[index].1.clone().unwrap_or_default();
    assert_eq!(
        message(0),
        "invalid config log.retention.ms: invalid value \"-5\": value must be at least -1"
    );
    assert_eq!(
        message(1),
        "invalid config log.retention.ms: invalid value \"soon\": not a number of type LONG"
    );
    assert!(message(2).contains("APPEND and SUBTRACT apply to LIST configs only"));
    assert!(
        message(3).starts_with("Cannot update these configs dynamically: [flux.capacitor]"),
        "{}",
        message(3)
    );
    assert!(
        message(4)
            .starts_with("Cannot update these configs dynamically: [num.partitions, log.dirs]"),
        "{}",
        message(4)
    );
    assert!(message(5).contains("not this broker"), "{}", message(5));
    assert!(
        message(6).contains("min.compaction.lag.ms"),
        "{}",
        message(6)
    );

    // validate_only checks in full and changes nothing.
    let outcome = incremental(
        &mut raw,
        &[
            (BROKER, CLUSTER, &[("log.retention.ms", SET, Some("1000"))]),
            (
                BROKER,
                THIS_BROKER,
                &[("log.retention.ms", SET, Some("-5"))],
            ),
        ],
        true,
    )
    .await;
    assert_eq!(outcome[0], ACCEPTED);
    assert_eq!(outcome[1].0, invalid_config);

    assert_eq!(
        topic_config(&mut raw, "steady", "retention.ms").await,
        ("604800000".into(), DEFAULT)
    );
    assert_eq!(
        topic_config(&mut raw, "steady", "segment.ms").await,
        ("604800000".into(), DEFAULT),
        "the valid half of a refused resource was not applied"
    );
    assert_eq!(live_config(&broker, "steady").retention_ms, 604_800_000);
    let cluster = describe(&mut raw, BROKER, CLUSTER).await.expect("cluster");
    assert!(cluster.is_empty(), "{cluster:?}");
    assert!(
        !broker.data_dir().join("broker-configs.json").exists(),
        "nothing was written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_broker_configs_survive_a_restart() {
    let broker = TestBroker::start().await;
    broker.create_topic("durable", 1, &[]).await;
    let mut raw = RawClient::connect(broker.addr).await.expect("connect");
    set_broker(&mut raw, CLUSTER, &[("log.retention.ms", "2000")]).await;
    set_broker(&mut raw, THIS_BROKER, &[("log.roll.ms", "60000")]).await;
    drop(raw);

    let broker = broker.restart(|_| {}).await;
    let mut raw = RawClient::connect(broker.addr).await.expect("connect");
    assert_eq!(
        topic_config(&mut raw, "durable", "retention.ms").await,
        ("2000".into(), DYNAMIC_DEFAULT_BROKER)
    );
    assert_eq!(
        topic_config(&mut raw, "durable", "segment.ms").await,
        ("60000".into(), DYNAMIC_BROKER)
    );
    let live = live_config(&broker, "durable");
    assert_eq!((live.retention_ms, live.segment_ms), (2000, 60000));

    // Another node id on the same data directory keeps the cluster default only.
    let broker = broker.restart(|config| config.node_id = 2).await;
    let live = live_config(&broker, "durable");
    assert_eq!((live.retention_ms, live.segment_ms), (2000, 604_800_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamic_min_insync_replicas_refuses_acks_all() {
    let broker = TestBroker::start().await;
    broker.create_topic("guarded", 1, &[]).await;
    broker
        .create_topic("relaxed", 1, &[("min.insync.replicas", "1")])
        .await;
    let mut raw = RawClient::connect(broker.addr).await.expect("connect");
    set_broker(&mut raw, CLUSTER, &[("min.insync.replicas", "2")]).await;
    let guarded = raw
        .produce("guarded", 0, values_batch(&["v"]))
        .await
        .expect("produce");
    assert_eq!(guarded, ResponseError::NotEnoughReplicas.code());
    let relaxed = raw
        .produce("relaxed", 0, values_batch(&["v"]))
        .await
        .expect("produce");
    assert_eq!(relaxed, 0, "the topic's override wins");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altering_broker_configs_takes_alter_configs_on_the_cluster() {
    let change: &[Op] = &[("log.retention.ms", SET, Some("5000"))];
    // The anonymous principal of this PLAINTEXT listener has no ACLs.
    let denied = TestBroker::start_with(|config| config.acl_authorizer = true).await;
    let mut raw = RawClient::connect(denied.addr).await.expect("connect");
    let outcome = incremental(&mut raw, &[(BROKER, CLUSTER, change)], false).await;
    assert_eq!(
        outcome[0].0,
        ResponseError::ClusterAuthorizationFailed.code()
    );
    assert!(denied
        .broker
        .topics
        .broker_configs(freshet_broker::broker_configs::BrokerScope::ClusterDefault)
        .is_empty());

    // A super user may.
    let allowed = TestBroker::start_with(|config| {
        config.acl_authorizer = true;
        config.super_users = vec![freshet_security::Principal::user("ANONYMOUS")];
    })
    .await;
    let mut raw = RawClient::connect(allowed.addr).await.expect("connect");
    let outcome = incremental(&mut raw, &[(BROKER, CLUSTER, change)], false).await;
    assert_eq!(outcome, [ACCEPTED]);
}
