//! The topic routes end to end: a real broker, the API's cluster client talking to it over
//! the Kafka protocol, and real rdkafka clients on the side to check what the API did. Config
//! changes, added partitions, purges and the managed topics' refusals too.

use crate::common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use common::{assert_error, get, post_json, request, send, Answer};
use freshet_api::{app, AppState};
use freshet_services::cluster::Cluster;
use freshet_services::KafkaConfig;
use freshet_testkit::TestBroker;
use rdkafka::admin::AdminOptions;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

const TOPIC: &str = "orders";

fn api(broker: &TestBroker) -> Router {
    let cluster = Cluster::new(&KafkaConfig::new(broker.bootstrap())).expect("cluster client");
    app(AppState::new().with_cluster(cluster))
}

async fn delete(app: &Router, uri: &str) -> Answer {
    send(app, request(Method::DELETE, uri)).await
}

/// `(offset, value)` of each record of a page, and its `next_offset`.
fn page_values(page: &Value) -> (Vec<(i64, Value)>, i64) {
    let records = page["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| (r["offset"].as_i64().expect("offset"), r["value"].clone()))
        .collect();
    (records, page["next_offset"].as_i64().expect("next_offset"))
}

async fn create_orders(app: &Router) {
    let created = post_json(
        app,
        "/api/v1/topics",
        &json!({"name": TOPIC, "partitions": 3, "configs": {"retention.ms": "86400000"}})
            .to_string(),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    assert_eq!(
        created.headers.get("location").map(|v| v.as_bytes()),
        Some(&b"/api/v1/topics/orders"[..])
    );
    let topic = &created.json;
    assert_eq!(topic["name"], TOPIC);
    assert_eq!(topic["internal"], false);
    assert_eq!(topic["managed"], false);
    assert_eq!(topic["records"], 0);
    assert_eq!(topic["configs"]["retention.ms"], "86400000");
    assert_eq!(topic["configs"]["cleanup.policy"], "delete", "defaults too");
    let partitions = topic["partitions"].as_array().expect("partitions");
    let numbers: Vec<i64> = partitions
        .iter()
        .map(|p| p["partition"].as_i64().expect("partition"))
        .collect();
    assert_eq!(numbers, [0, 1, 2]);
    for p in partitions {
        assert_eq!(
            (&p["earliest_offset"], &p["latest_offset"], &p["records"]),
            (&json!(0), &json!(0), &json!(0))
        );
        assert_eq!(p["leader"], 1, "the test broker is node 1");
        assert_eq!(p["size_bytes"], 0, "an empty log takes no bytes");
    }
    assert_eq!(topic["size_bytes"], 0);
}

async fn check_create_refusals(app: &Router) {
    let again = post_json(app, "/api/v1/topics", r#"{"name": "orders"}"#).await;
    assert_error(
        &again,
        StatusCode::CONFLICT,
        "topic \"orders\" already exists",
    );
    // The broker's own reason, not just librdkafka's error code.
    let bad_value = post_json(
        app,
        "/api/v1/topics",
        r#"{"name": "bad-config", "configs": {"retention.ms": "soon"}}"#,
    )
    .await;
    assert_error(&bad_value, StatusCode::BAD_REQUEST, "retention.ms");
    let unknown = post_json(
        app,
        "/api/v1/topics",
        r#"{"name": "bad-config", "configs": {"no.such.config": "1"}}"#,
    )
    .await;
    assert_error(&unknown, StatusCode::BAD_REQUEST, "no.such.config");
    let replicas = post_json(
        app,
        "/api/v1/topics",
        r#"{"name": "bad-config", "replication_factor": 3}"#,
    )
    .await;
    // A valid request the one-node cluster cannot place: a conflict with its state.
    assert_error(
        &replicas,
        StatusCode::CONFLICT,
        "the cluster refused to create topic \"bad-config\": InvalidReplicationFactor",
    );
    let missing = get(app, "/api/v1/topics/bad-config").await;
    assert_error(
        &missing,
        StatusCode::NOT_FOUND,
        "topic \"bad-config\" does not exist",
    );
}

/// Sends every kind of record to partition 1 (and one to wherever the partitioner puts it).
async fn produce_records(app: &Router) -> i64 {
    let body = json!({"records": [
        {"key": "k1", "value": {"temperature": 21.5, "unit": "C"},
         "headers": {"source": "api", "trace": "abc"}, "partition": 1},
        {"key": null, "value": "plain text", "partition": 1},
        {"key": "k1", "value": null, "partition": 1},
        {"value": [1, 2, 3], "partition": 1},
        {"key": "k2", "value": 42}
    ]});
    let produced = post_json(
        app,
        &format!("/api/v1/topics/{TOPIC}/records"),
        &body.to_string(),
    )
    .await;
    assert_eq!(produced.status, StatusCode::OK, "{produced:?}");
    let offsets = produced.json["offsets"].as_array().expect("offsets");
    assert_eq!(offsets.len(), 5);
    for (i, offset) in offsets.iter().take(4).enumerate() {
        assert_eq!(
            offset,
            &json!({"partition": 1, "offset": i}),
            "in request order"
        );
    }
    let last = offsets[4]["partition"].as_i64().expect("partition");
    assert!((0..3).contains(&last), "{produced:?}");
    last
}

/// A record no JSON request could send: bytes that are not UTF-8, in key, value and header.
async fn produce_binary_record(broker: &TestBroker) {
    let producer = broker.producer(&[]);
    let headers = OwnedHeaders::new().insert(Header {
        key: "raw",
        value: Some(&[0xfe, 0x01][..]),
    });
    producer
        .send(
            FutureRecord::to(TOPIC)
                .key(&[0xff, 0x00][..])
                .payload(&[0x80, 0x81, 0x82][..])
                .headers(headers)
                .partition(2),
            Timeout::After(Duration::from_secs(10)),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("the binary record is acknowledged");
}

/// Pages through partition 1, which holds four records, or five when the partitioner put
/// the last one there too (`last_partition`).
async fn check_paging(app: &Router, last_partition: i64) {
    let uri = |query: &str| format!("/api/v1/topics/{TOPIC}/partitions/1/records{query}");
    let latest = 4 + i64::from(last_partition == 1);
    let first = get(app, &uri("?limit=2")).await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    assert_eq!(first.json["topic"], TOPIC);
    assert_eq!(first.json["partition"], 1);
    assert_eq!(first.json["earliest_offset"], 0);
    assert_eq!(first.json["latest_offset"], latest);
    let records = first.json["records"].as_array().expect("records");
    let object = &records[0];
    assert_eq!(object["offset"], 0);
    assert_eq!(object["key"], "k1");
    assert_eq!(object["value"], r#"{"temperature":21.5,"unit":"C"}"#);
    assert_eq!(
        (&object["key_encoding"], &object["value_encoding"]),
        (&json!("utf8"), &json!("utf8"))
    );
    assert_eq!(
        object["headers"],
        json!([
            {"key": "source", "value": "api", "encoding": "utf8"},
            {"key": "trace", "value": "abc", "encoding": "utf8"}
        ])
    );
    let timestamp = object["timestamp"].as_i64().expect("a timestamp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    assert!(
        (now - 60_000..=now).contains(&timestamp),
        "{timestamp} vs {now}"
    );
    assert_eq!(records[1]["key"], Value::Null);
    assert_eq!(records[1]["headers"], json!([]));
    assert_eq!(
        page_values(&first.json),
        (
            vec![
                (0, json!(r#"{"temperature":21.5,"unit":"C"}"#)),
                (1, json!("plain text"))
            ],
            2
        )
    );

    let second = get(app, &uri("?offset=2&limit=2")).await;
    assert_eq!(
        page_values(&second.json),
        (vec![(2, Value::Null), (3, json!("[1,2,3]"))], 4),
        "a tombstone has no value; an array is its JSON text"
    );
    let end = get(app, &uri(&format!("?offset={latest}"))).await;
    assert_eq!(
        page_values(&end.json),
        (vec![], latest),
        "nothing waits at the end"
    );
    let all = get(app, &uri("")).await;
    let (records, next_offset) = page_values(&all.json);
    assert_eq!(
        (records.len() as i64, next_offset),
        (latest, latest),
        "default: from the earliest"
    );

    let past = get(app, &uri(&format!("?offset={}", latest + 1))).await;
    assert_error(
        &past,
        StatusCode::NOT_FOUND,
        &format!("is past the latest offset {latest} of partition 1"),
    );
}

async fn check_binary_record(app: &Router) {
    let page = get(app, &format!("/api/v1/topics/{TOPIC}/partitions/2/records")).await;
    let record = page.json["records"]
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["key_encoding"] == "base64")
        .cloned()
        .unwrap_or_else(|| panic!("the binary record: {page:?}"));
    assert_eq!(record["key"], "/wA=");
    assert_eq!(record["value"], "gIGC");
    assert_eq!(record["value_encoding"], "base64");
    assert_eq!(
        record["headers"],
        json!([{"key": "raw", "value": "/gE=", "encoding": "base64"}])
    );
}

/// Deletes the first record of partition 1, so its earliest offset becomes 1.
async fn trim_partition_1(broker: &TestBroker) {
    let admin = broker.admin();
    let mut before = TopicPartitionList::new();
    before
        .add_partition_offset(TOPIC, 1, Offset::Offset(1))
        .expect("offset");
    admin
        .delete_records(&before, &AdminOptions::new())
        .await
        .expect("DeleteRecords");
    tokio::task::spawn_blocking(move || drop(admin))
        .await
        .expect("admin dropped");
}

async fn check_description(app: &Router, last_partition: i64) {
    let described = get(app, &format!("/api/v1/topics/{TOPIC}")).await;
    assert_eq!(described.status, StatusCode::OK, "{described:?}");
    let topic = &described.json;
    let partitions = topic["partitions"].as_array().expect("partitions");
    let offsets = |p: usize| {
        (
            partitions[p]["earliest_offset"].as_i64().expect("earliest"),
            partitions[p]["latest_offset"].as_i64().expect("latest"),
        )
    };
    assert_eq!(offsets(1).1, if last_partition == 1 { 5 } else { 4 });
    assert_eq!(topic["records"], 6, "five sent through the API, one binary");
    let sizes: Vec<u64> = partitions
        .iter()
        .map(|p| {
            p["size_bytes"]
                .as_u64()
                .expect("sizes are known on this broker")
        })
        .collect();
    assert!(sizes[1] > 100, "partition 1 holds four records: {sizes:?}");
    assert_eq!(
        topic["size_bytes"].as_u64(),
        Some(sizes.iter().sum()),
        "the topic's size is its partitions'"
    );
}

async fn check_list(app: &Router, broker: &TestBroker) {
    broker.create_topic("freshet.state", 1, &[]).await;
    let all = get(app, "/api/v1/topics").await;
    assert_eq!(all.status, StatusCode::OK, "{all:?}");
    let topics = all.json["topics"].as_array().expect("topics");
    let names: Vec<&str> = topics
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["freshet.state", TOPIC], "sorted by name");
    assert_eq!(topics[0]["internal"], true);
    assert_eq!(topics[0]["managed"], true, "service state");
    assert_eq!(
        topics[1],
        json!({"name": TOPIC, "partitions": 3, "internal": false, "managed": false,
               "managed_by": null, "accepts_records": true, "records": 5,
               "latest_offset_sum": 6}),
        "one record of partition 1 was deleted"
    );
    let visible = get(app, "/api/v1/topics?internal=false").await;
    let names: Vec<&str> = visible.json["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, [TOPIC]);
}

async fn check_produce_refusals(app: &Router) {
    let uri = format!("/api/v1/topics/{TOPIC}/records");
    let out_of_range = post_json(
        app,
        &uri,
        r#"{"records": [{"value": "v", "partition": 3}]}"#,
    )
    .await;
    assert_error(
        &out_of_range,
        StatusCode::CONFLICT,
        "partition 3 does not exist: topic \"orders\" has 3 partitions",
    );
    let empty = post_json(app, &uri, r#"{"records": []}"#).await;
    assert_error(&empty, StatusCode::BAD_REQUEST, "records is empty");
    let too_many = json!({"records": vec![json!({"value": 1}); 501]});
    let answer = post_json(app, &uri, &too_many.to_string()).await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "501 records is more than the 500",
    );

    let unknown = post_json(
        app,
        "/api/v1/topics/no-such-topic/records",
        r#"{"records": [{"value": "v"}]}"#,
    )
    .await;
    assert_error(
        &unknown,
        StatusCode::NOT_FOUND,
        "topic \"no-such-topic\" does not exist",
    );
    let described = get(app, "/api/v1/topics/no-such-topic").await;
    assert_error(&described, StatusCode::NOT_FOUND, "does not exist");
}

/// 500 records of 1 KiB: a body far over the API's usual 64 KiB cap, under the route's own.
async fn check_large_produce(app: &Router) {
    let value = "x".repeat(1024);
    let body = json!({"records": vec![json!({"value": value, "partition": 0}); 500]}).to_string();
    assert!(body.len() > 500 * 1024);
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/topics/{TOPIC}/records"))
        .header("content-type", "application/json")
        .header("content-length", body.len().to_string())
        .body(Body::from(body))
        .expect("request");
    let answer = send(app, request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let offsets = answer.json["offsets"].as_array().expect("offsets");
    assert_eq!(offsets.len(), 500);
    let first = offsets[0]["offset"].as_i64().expect("offset");
    for (i, offset) in offsets.iter().enumerate() {
        assert_eq!(offset, &json!({"partition": 0, "offset": first + i as i64}));
    }
    let page = get(
        app,
        &format!("/api/v1/topics/{TOPIC}/partitions/0/records?offset={first}&limit=1000"),
    )
    .await;
    let (records, next_offset) = page_values(&page.json);
    assert_eq!(next_offset, first + 500);
    assert_eq!(records.len(), 500);
    assert!(records.iter().all(|(_, v)| v == &json!(value)));
}

async fn check_read_refusals(app: &Router) {
    let no_partition = get(app, &format!("/api/v1/topics/{TOPIC}/partitions/3/records")).await;
    assert_error(
        &no_partition,
        StatusCode::NOT_FOUND,
        "topic \"orders\" has no partition 3 (it has 3)",
    );
    let no_topic = get(app, "/api/v1/topics/missing/partitions/0/records").await;
    assert_error(
        &no_topic,
        StatusCode::NOT_FOUND,
        "topic \"missing\" does not exist",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_filled_read_described_and_deleted() {
    let broker = TestBroker::start().await;
    let app = api(&broker);

    create_orders(&app).await;
    check_create_refusals(&app).await;
    let last_partition = produce_records(&app).await;
    produce_binary_record(&broker).await;
    check_paging(&app, last_partition).await;
    check_binary_record(&app).await;
    check_description(&app, last_partition).await;

    trim_partition_1(&broker).await;
    let trimmed = get(
        &app,
        &format!("/api/v1/topics/{TOPIC}/partitions/1/records?offset=0&limit=1"),
    )
    .await;
    assert_eq!(trimmed.json["earliest_offset"], 1);
    assert_eq!(
        page_values(&trimmed.json),
        (vec![(1, json!("plain text"))], 2),
        "an offset before the earliest starts at the earliest"
    );
    check_list(&app, &broker).await;
    check_produce_refusals(&app).await;
    check_read_refusals(&app).await;
    check_large_produce(&app).await;

    let deleted = delete(&app, &format!("/api/v1/topics/{TOPIC}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{deleted:?}");
    assert!(deleted.text.is_empty());
    let gone = get(&app, &format!("/api/v1/topics/{TOPIC}")).await;
    assert_error(
        &gone,
        StatusCode::NOT_FOUND,
        "topic \"orders\" does not exist",
    );
    let again = delete(&app, &format!("/api/v1/topics/{TOPIC}")).await;
    assert_error(
        &again,
        StatusCode::NOT_FOUND,
        "topic \"orders\" does not exist",
    );
    let listed = get(&app, "/api/v1/topics?internal=false").await;
    assert_eq!(
        listed.json,
        json!({"topics": []}),
        "no topic was auto-created"
    );
}

/// A topic deleted and created again under the same name takes records through the API
/// again. The API's producer is idempotent and remembers its sequence numbers for the old
/// topic; the new one has no state for it, and answering that with OUT_OF_ORDER_SEQUENCE
/// made the producer fail fatally, so every later produce answered 503 (found by
/// schemathesis, `.ci/schemathesis.sh`). UNKNOWN_PRODUCER_ID lets the client bump its epoch
/// and start over at 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_again_takes_records_again() {
    let broker = TestBroker::start().await;
    let app = api(&broker);
    let uri = "/api/v1/topics/again/records";
    let body = json!({"records": [{"value": "v", "partition": 0}]}).to_string();
    for round in 0..3 {
        let created = post_json(&app, "/api/v1/topics", r#"{"name": "again"}"#).await;
        assert_eq!(
            created.status,
            StatusCode::CREATED,
            "round {round}: {created:?}"
        );
        for _ in 0..3 {
            let produced = post_json(&app, uri, &body).await;
            assert_eq!(
                produced.status,
                StatusCode::OK,
                "round {round}: {produced:?}"
            );
        }
        let deleted = delete(&app, "/api/v1/topics/again").await;
        assert_eq!(
            deleted.status,
            StatusCode::NO_CONTENT,
            "round {round}: {deleted:?}"
        );
    }
}

async fn patch_json(app: &Router, uri: &str, body: &Value) -> Answer {
    let request = Request::builder()
        .method(Method::PATCH)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    send(app, request).await
}

/// `(earliest, latest)` of each partition of a description.
fn partition_offsets(topic: &Value) -> Vec<(i64, i64)> {
    topic["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            (
                p["earliest_offset"].as_i64().expect("earliest"),
                p["latest_offset"].as_i64().expect("latest"),
            )
        })
        .collect()
}

/// Sends `count` records to `partition` of `topic` through the API.
async fn fill(app: &Router, topic: &str, partition: i32, count: usize) {
    let records = vec![json!({"value": "v", "partition": partition}); count];
    let produced = post_json(
        app,
        &format!("/api/v1/topics/{topic}/records"),
        &json!({ "records": records }).to_string(),
    )
    .await;
    assert_eq!(produced.status, StatusCode::OK, "{produced:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_configs_are_changed_and_kept_across_a_restart() {
    let broker = TestBroker::start().await;
    let app = api(&broker);
    broker
        .create_topic("settings", 1, &[("segment.ms", "600000")])
        .await;
    let uri = "/api/v1/topics/settings/configs";

    let changed = patch_json(
        &app,
        uri,
        &json!({"set": {"retention.ms": "3600000", "cleanup.policy": "compact"},
                "delete": ["segment.ms"]}),
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "{changed:?}");
    assert_eq!(changed.json["name"], "settings");
    let configs = &changed.json["configs"];
    assert_eq!(configs["retention.ms"], "3600000");
    assert_eq!(configs["cleanup.policy"], "compact");
    assert_eq!(configs["segment.ms"], "604800000", "back to the default");
    assert_eq!(
        configs["max.message.bytes"], "1048588",
        "untouched: still there"
    );
    let described = get(&app, "/api/v1/topics/settings").await;
    assert_eq!(&described.json["configs"], configs, "GET shows the change");

    // Only what is named changes: an incremental change, not a replacement.
    let again = patch_json(&app, uri, &json!({"set": {"retention.ms": "7200000"}})).await;
    assert_eq!(again.status, StatusCode::OK, "{again:?}");
    assert_eq!(again.json["configs"]["retention.ms"], "7200000");
    assert_eq!(again.json["configs"]["cleanup.policy"], "compact");

    let broker = broker.restart(|_| {}).await;
    let after = get(&app, "/api/v1/topics/settings").await;
    assert_eq!(after.status, StatusCode::OK, "{after:?}");
    assert_eq!(after.json["configs"]["retention.ms"], "7200000", "kept");
    assert_eq!(after.json["configs"]["cleanup.policy"], "compact", "kept");
    assert_eq!(after.json["configs"]["segment.ms"], "604800000");

    let reverted = patch_json(
        &app,
        uri,
        &json!({"delete": ["retention.ms", "cleanup.policy"]}),
    )
    .await;
    assert_eq!(reverted.status, StatusCode::OK, "{reverted:?}");
    assert_eq!(reverted.json["configs"]["retention.ms"], "604800000");
    assert_eq!(reverted.json["configs"]["cleanup.policy"], "delete");

    // The broker's own reason for a value or name it refuses.
    let cases = [
        (json!({"set": {"retention.ms": "soon"}}), "retention.ms"),
        (json!({"set": {"no.such.config": "1"}}), "no.such.config"),
        (
            json!({"delete": ["a", "a"]}),
            "config \"a\" is listed twice in delete",
        ),
        (
            json!({"set": {"retention.ms": 5}}),
            "invalid type: integer `5`",
        ),
        (json!({"replace": {}}), "unknown field `replace`"),
    ];
    for (body, reason) in cases {
        let refused = patch_json(&app, uri, &body).await;
        assert_error(&refused, StatusCode::BAD_REQUEST, reason);
    }
    let both = json!({"set": {"retention.ms": "1"}, "delete": ["retention.ms"]});
    let refused = patch_json(&app, uri, &both).await;
    assert_error(
        &refused,
        StatusCode::CONFLICT,
        "config \"retention.ms\" is both in set and in delete",
    );
    // Nothing to change answers the configs as they are.
    let unchanged = patch_json(&app, uri, &json!({})).await;
    assert_eq!(unchanged.status, StatusCode::OK, "{unchanged:?}");
    assert_eq!(unchanged.json["configs"]["retention.ms"], "604800000");
    let refused = patch_json(&app, uri, &json!({"set": {"retention.ms": "soon"}})).await;
    assert_error(
        &refused,
        StatusCode::BAD_REQUEST,
        "the cluster refused to change the configs of topic \"settings\": InvalidConfig",
    );
    let missing = patch_json(
        &app,
        "/api/v1/topics/missing/configs",
        &json!({"set": {"retention.ms": "1"}}),
    )
    .await;
    assert_error(
        &missing,
        StatusCode::NOT_FOUND,
        "topic \"missing\" does not exist",
    );
    let bad_name = patch_json(
        &app,
        "/api/v1/topics/a%20b/configs",
        &json!({"set": {"retention.ms": "1"}}),
    )
    .await;
    assert_error(&bad_name, StatusCode::BAD_REQUEST, "contains ' '");
    drop(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_are_added_and_records_purged() {
    let broker = TestBroker::start().await;
    let app = api(&broker);
    broker.create_topic(TOPIC, 2, &[]).await;
    fill(&app, TOPIC, 0, 10).await;
    fill(&app, TOPIC, 1, 4).await;
    let uri = format!("/api/v1/topics/{TOPIC}/partitions");

    let grown = post_json(&app, &uri, r#"{"count": 4}"#).await;
    assert_eq!(grown.status, StatusCode::OK, "{grown:?}");
    assert_eq!(
        partition_offsets(&grown.json),
        [(0, 10), (0, 4), (0, 0), (0, 0)]
    );
    let described = get(&app, &format!("/api/v1/topics/{TOPIC}")).await;
    assert_eq!(
        described.json["partitions"].as_array().map(Vec::len),
        Some(4)
    );
    fill(&app, TOPIC, 3, 2).await;
    for (body, reason) in [
        (r#"{"count": 1001}"#, "count 1001 is out of range"),
        (r#"{"count": 0}"#, "count 0 is out of range"),
        (r#"{}"#, "missing field `count`"),
    ] {
        let refused = post_json(&app, &uri, body).await;
        assert_error(&refused, StatusCode::BAD_REQUEST, reason);
    }
    // Fewer partitions than the topic has is a conflict with its state, not a bad request.
    for (body, reason) in [
        (
            r#"{"count": 4}"#,
            "topic \"orders\" has 4 partitions; count 4 must be more than that",
        ),
        (r#"{"count": 2}"#, "count 2 must be more than that"),
    ] {
        let refused = post_json(&app, &uri, body).await;
        assert_error(&refused, StatusCode::CONFLICT, reason);
    }
    let missing = post_json(&app, "/api/v1/topics/missing/partitions", r#"{"count": 2}"#).await;
    assert_error(
        &missing,
        StatusCode::NOT_FOUND,
        "topic \"missing\" does not exist",
    );

    let purge = format!("/api/v1/topics/{TOPIC}/purge");
    let trimmed = post_json(&app, &purge, r#"{"partitions": [0], "before": 4}"#).await;
    assert_eq!(trimmed.status, StatusCode::OK, "{trimmed:?}");
    assert_eq!(
        trimmed.json,
        json!({"topic": TOPIC, "partitions": [
            {"partition": 0, "earliest_offset": 4, "latest_offset": 10}]})
    );
    let page = get(
        &app,
        &format!("/api/v1/topics/{TOPIC}/partitions/0/records?offset=0&limit=1"),
    )
    .await;
    assert_eq!(page.json["records"][0]["offset"], 4, "{page:?}");
    for (body, reason) in [
        (r#"{"before": -1}"#, "before -1 is negative"),
        (r#"{"partitions": null}"#, "invalid type: null"),
        (r#"[null, null]"#, "must be a JSON object"),
        (r#"{"partitions": [1, 1]}"#, "partition 1 is listed twice"),
        (r#"{"partitions": []}"#, "partitions is empty"),
        (r#"{"offset": 3}"#, "unknown field `offset`"),
    ] {
        let refused = post_json(&app, &purge, body).await;
        assert_error(&refused, StatusCode::BAD_REQUEST, reason);
    }
    // Offsets and partitions the topic does not have are not found.
    for (body, reason) in [
        (
            r#"{"before": 11}"#,
            "before 11 is past the latest offset 10 of partition 0",
        ),
        (
            r#"{"partitions": [7]}"#,
            "topic \"orders\" has no partition 7 (it has 4)",
        ),
    ] {
        let refused = post_json(&app, &purge, body).await;
        assert_error(&refused, StatusCode::NOT_FOUND, reason);
    }
    let described = get(&app, &format!("/api/v1/topics/{TOPIC}")).await;
    assert_eq!(
        partition_offsets(&described.json),
        [(4, 10), (0, 4), (0, 0), (0, 2)],
        "refused purges deleted nothing"
    );

    let everything = post_json(&app, &purge, "{}").await;
    assert_eq!(everything.status, StatusCode::OK, "{everything:?}");
    assert_eq!(
        everything.json["partitions"],
        json!([
            {"partition": 0, "earliest_offset": 10, "latest_offset": 10},
            {"partition": 1, "earliest_offset": 4, "latest_offset": 4},
            {"partition": 2, "earliest_offset": 0, "latest_offset": 0},
            {"partition": 3, "earliest_offset": 2, "latest_offset": 2}
        ])
    );
    let described = get(&app, &format!("/api/v1/topics/{TOPIC}")).await;
    assert_eq!(described.json["records"], 0, "{described:?}");
    let missing = post_json(&app, "/api/v1/topics/missing/purge", "{}").await;
    assert_error(
        &missing,
        StatusCode::NOT_FOUND,
        "topic \"missing\" does not exist",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_topics_are_marked_and_deleted_or_purged_only_when_forced() {
    let broker = TestBroker::start().await;
    let app = api(&broker);
    broker.create_topic("device-events.dlq", 1, &[]).await;
    broker.create_topic("blocked-users", 1, &[]).await;
    broker.create_topic(TOPIC, 1, &[]).await;
    fill(&app, "device-events.dlq", 0, 3).await;

    let listed = get(&app, "/api/v1/topics").await;
    let managed: Vec<(&str, bool, Option<&str>, bool)> = listed.json["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().expect("name"),
                t["managed"].as_bool().expect("managed"),
                t["managed_by"].as_str(),
                t["accepts_records"].as_bool().expect("accepts_records"),
            )
        })
        .collect();
    assert_eq!(
        managed,
        [
            ("blocked-users", true, Some("the login guard"), false),
            ("device-events.dlq", true, Some("the tracker"), true),
            (TOPIC, false, None, true)
        ]
    );
    let described = get(&app, "/api/v1/topics/device-events.dlq").await;
    assert_eq!(described.json["managed"], true);
    assert_eq!(described.json["managed_by"], "the tracker");
    assert_eq!(described.json["internal"], false);

    let dlq = "/api/v1/topics/device-events.dlq";
    let not_deleted = delete(&app, dlq).await;
    assert_error(
        &not_deleted,
        StatusCode::CONFLICT,
        "topic device-events.dlq is managed by the tracker; add ?force=true to delete it anyway",
    );
    let not_purged = post_json(&app, &format!("{dlq}/purge"), "{}").await;
    assert_error(
        &not_purged,
        StatusCode::CONFLICT,
        "topic device-events.dlq is managed by the tracker; add ?force=true to purge it anyway",
    );
    let unforced = post_json(&app, &format!("{dlq}/purge?force=false"), "{}").await;
    assert_error(&unforced, StatusCode::CONFLICT, "add ?force=true");
    let malformed = delete(&app, &format!("{dlq}?force=maybe")).await;
    assert_error(&malformed, StatusCode::BAD_REQUEST, "force");
    let described = get(&app, dlq).await;
    assert_eq!(
        partition_offsets(&described.json),
        [(0, 3)],
        "nothing was deleted"
    );

    let purged = post_json(&app, &format!("{dlq}/purge?force=true"), "{}").await;
    assert_eq!(purged.status, StatusCode::OK, "{purged:?}");
    assert_eq!(purged.json["partitions"][0]["earliest_offset"], 3);
    let deleted = delete(&app, &format!("{dlq}?force=true")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{deleted:?}");
    let gone = get(&app, dlq).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "{gone:?}");

    // The services' own topics stay refused, forced or not.
    for uri in [
        "/api/v1/topics/blocked-users",
        "/api/v1/topics/blocked-users?force=true",
    ] {
        let refused = delete(&app, uri).await;
        assert_error(
            &refused,
            StatusCode::FORBIDDEN,
            "belongs to the login guard",
        );
    }
    for uri in [
        "/api/v1/topics/blocked-users/purge",
        "/api/v1/topics/blocked-users/purge?force=true",
    ] {
        let refused = post_json(&app, uri, "{}").await;
        assert_error(
            &refused,
            StatusCode::FORBIDDEN,
            "topic blocked-users belongs to the login guard; its records cannot be deleted \
             through the API",
        );
    }
    let kept = get(&app, "/api/v1/topics/blocked-users").await;
    assert_eq!(kept.status, StatusCode::OK, "{kept:?}");

    // An unmanaged topic needs no force.
    let orders = delete(&app, &format!("/api/v1/topics/{TOPIC}")).await;
    assert_eq!(orders.status, StatusCode::NO_CONTENT, "{orders:?}");
}
