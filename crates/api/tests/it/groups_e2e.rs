//! The group routes end to end: real rdkafka consumers join a group on a real broker and
//! commit offsets, and the API reports their membership, assignments, offsets and lag; it
//! resets and deletes offsets and groups, checked by reading the committed offsets back with
//! a client of the test's own.
//!
//! Blocking rdkafka calls (polls, commits, consumer drops) run in `spawn_blocking`.

use crate::common;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use axum::Router;
use common::{assert_error, get, poll_until, post_json, request, send, Answer};
use freshet_api::{app, AppState};
use freshet_services::cluster::Cluster;
use freshet_services::KafkaConfig;
use freshet_testkit::TestBroker;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

const TOPIC: &str = "events";
const GROUP: &str = "reporting";
const CLIENT_ID: &str = "reporting-client";
const WAIT: Duration = Duration::from_secs(30);

fn api(broker: &TestBroker) -> Router {
    let cluster = Cluster::new(&KafkaConfig::new(broker.bootstrap())).expect("cluster client");
    app(AppState::new().with_cluster(cluster))
}

/// Sends `count` records to one partition through the API.
async fn send_records(app: &Router, partition: i32, count: usize) {
    let records = vec![json!({"value": "event", "partition": partition}); count];
    let answer = post_json(
        app,
        &format!("/api/v1/topics/{TOPIC}/records"),
        &json!({ "records": records }).to_string(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
}

/// Commits `offsets` of `TOPIC` with `consumer`.
fn commit(consumer: &BaseConsumer, offsets: &[(i32, i64)]) {
    let mut list = TopicPartitionList::new();
    for &(partition, offset) in offsets {
        list.add_partition_offset(TOPIC, partition, Offset::Offset(offset))
            .expect("offset");
    }
    consumer
        .commit(&list, CommitMode::Sync)
        .expect("the commit is acknowledged");
}

/// A member of `GROUP` that consumed all `records` of `TOPIC` and committed `offsets`.
async fn member(
    broker: &TestBroker,
    records: usize,
    offsets: &'static [(i32, i64)],
) -> BaseConsumer {
    let mut config = broker.client_config();
    config
        .set("group.id", GROUP)
        .set("client.id", CLIENT_ID)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500");
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().expect("consumer");
        consumer.subscribe(&[TOPIC]).expect("subscribe");
        let deadline = Instant::now() + WAIT;
        let mut consumed = 0;
        while consumed < records {
            assert!(
                Instant::now() < deadline,
                "only {consumed} of {records} records arrived"
            );
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                message.expect("no consumer error");
                consumed += 1;
            }
        }
        commit(&consumer, offsets);
        consumer
    })
    .await
    .expect("the member joined and committed")
}

/// Commits without ever joining: a group that holds offsets but has no members.
async fn standalone_commit(
    broker: &TestBroker,
    group: &'static str,
    offsets: &'static [(i32, i64)],
) {
    let mut config = broker.client_config();
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().expect("consumer");
        commit(&consumer, offsets);
    })
    .await
    .expect("committed");
}

fn group_ids(list: &Value) -> Vec<&str> {
    list["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["group_id"].as_str().expect("group_id"))
        .collect()
}

fn check_member(member: &Value) {
    assert_eq!(member["client_id"], CLIENT_ID);
    assert!(
        !member["member_id"].as_str().unwrap_or_default().is_empty(),
        "{member}"
    );
    assert!(
        !member["client_host"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{member}"
    );
    assert_eq!(
        member["assignments"],
        json!([{"topic": TOPIC, "partitions": [0, 1]}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_show_members_assignments_offsets_and_lag() {
    let broker = TestBroker::start().await;
    let app = api(&broker);
    broker.create_topic(TOPIC, 2, &[]).await;
    send_records(&app, 0, 10).await;
    send_records(&app, 1, 6).await;
    // Reading through the API uses a consumer that must not show up as a group.
    let page = get(
        &app,
        &format!("/api/v1/topics/{TOPIC}/partitions/0/records"),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");

    let consumer = member(&broker, 16, &[(0, 7), (1, 6)]).await;
    standalone_commit(&broker, "offsets-only", &[(0, 2)]).await;

    let described = poll_until(&app, &format!("/api/v1/groups/{GROUP}"), WAIT, |group| {
        group["state"] == "Stable"
    })
    .await;
    assert_eq!(described["group_id"], GROUP);
    assert_eq!(described["protocol_type"], "consumer");
    assert_eq!(
        described["protocol"], "range",
        "librdkafka's first assignor"
    );
    let members = described["members"].as_array().expect("members");
    assert_eq!(members.len(), 1, "{described}");
    check_member(&members[0]);
    assert_eq!(
        described["offsets"],
        json!([
            {"topic": TOPIC, "partition": 0, "committed_offset": 7, "latest_offset": 10, "lag": 3},
            {"topic": TOPIC, "partition": 1, "committed_offset": 6, "latest_offset": 6, "lag": 0}
        ])
    );
    assert_eq!(described["lag"], 3);

    let listed = get(&app, "/api/v1/groups").await;
    assert_eq!(listed.status, StatusCode::OK, "{listed:?}");
    assert_eq!(
        group_ids(&listed.json),
        ["offsets-only", GROUP],
        "by id, and no group for the API's own readers"
    );
    let offsets_only = &listed.json["groups"][0];
    assert_eq!(offsets_only["state"], "Empty");
    assert_eq!(offsets_only["members"], json!([]));
    assert_eq!(offsets_only["lag"], 8);
    let reporting = &listed.json["groups"][1];
    assert_eq!(
        reporting["state"], "Stable",
        "reading offsets did not disturb it"
    );
    assert_eq!(reporting["lag"], 3);
    check_member(&reporting["members"][0]);

    // New records are lag until the group commits past them.
    send_records(&app, 1, 5).await;
    let listed = get(&app, "/api/v1/groups").await;
    assert_eq!(listed.json["groups"][1]["lag"], 8);

    // A member that leaves takes its assignment along; the offsets stay.
    tokio::task::spawn_blocking(move || drop(consumer))
        .await
        .expect("the member left");
    let empty = poll_until(&app, &format!("/api/v1/groups/{GROUP}"), WAIT, |group| {
        group["state"] == "Empty"
    })
    .await;
    assert_eq!(empty["members"], json!([]));
    assert_eq!(empty["lag"], 8);
    assert_eq!(empty["offsets"][1]["latest_offset"], 11);

    let unknown = get(&app, "/api/v1/groups/nobody").await;
    assert_error(
        &unknown,
        StatusCode::NOT_FOUND,
        "no consumer group \"nobody\"",
    );
}

/// Base timestamp of the records [`send_timed_records`] sends: 2023-11-14T22:13:20Z.
const BASE_MS: i64 = 1_700_000_000_000;

/// Creates `TOPIC` (2 partitions, kept forever: its records are from 2023) holding 10
/// records in partition 0 and 6 in partition 1, the i-th of each sent at `BASE_MS` + i s.
async fn timed_topic(broker: &TestBroker) {
    broker
        .create_topic(TOPIC, 2, &[("retention.ms", "-1")])
        .await;
    let producer = broker.producer(&[]);
    for (partition, count) in [(0, 10), (1, 6)] {
        for i in 0..count {
            let record = FutureRecord::<(), str>::to(TOPIC)
                .partition(partition)
                .payload("event")
                .timestamp(BASE_MS + i * 1000);
            producer
                .send(record, Timeout::After(Duration::from_secs(10)))
                .await
                .map_err(|(e, _)| e)
                .expect("the record is acknowledged");
        }
    }
    tokio::task::spawn_blocking(move || drop(producer))
        .await
        .expect("producer dropped");
}

/// The committed offsets of `group` in partitions 0 and 1 of `TOPIC`, read with a client of
/// its own (OffsetFetch), not through the API.
async fn committed(broker: &TestBroker, group: &str) -> [Option<i64>; 2] {
    let mut config = broker.client_config();
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().expect("consumer");
        let mut wanted = TopicPartitionList::new();
        wanted.add_partition(TOPIC, 0);
        wanted.add_partition(TOPIC, 1);
        let found = consumer
            .committed_offsets(wanted, Duration::from_secs(10))
            .expect("OffsetFetch");
        let offset = |partition| match found.find_partition(TOPIC, partition).map(|e| e.offset()) {
            Some(Offset::Offset(offset)) => Some(offset),
            _ => None,
        };
        [offset(0), offset(1)]
    })
    .await
    .expect("read")
}

async fn reset(app: &Router, group: &str, body: Value) -> Answer {
    let uri = format!("/api/v1/groups/{group}/reset-offsets");
    post_json(app, &uri, &body.to_string()).await
}

/// Resets `GROUP` with `to` (and `extra` fields), checks the answer, and checks that the
/// committed offsets are then `expected`.
async fn reset_and_check(
    app: &Router,
    broker: &TestBroker,
    to: Value,
    expected: [Option<i64>; 2],
) -> Answer {
    let answer = reset(app, GROUP, json!({"topic": TOPIC, "to": to})).await;
    assert_eq!(answer.status, StatusCode::OK, "{to}: {answer:?}");
    assert_eq!(answer.json["dry_run"], false);
    let new: Vec<Option<i64>> = answer.json["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["new_offset"].as_i64())
        .collect();
    assert_eq!(new, expected, "{to}: the answer");
    assert_eq!(committed(broker, GROUP).await, expected, "{to}: committed");
    answer
}

async fn delete(app: &Router, uri: &str) -> Answer {
    send(app, request(Method::DELETE, uri)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_reset_to_every_target_and_a_dry_run_commits_nothing() {
    let broker = TestBroker::start().await;
    let app = api(&broker);
    timed_topic(&broker).await;
    standalone_commit(&broker, GROUP, &[(0, 7), (1, 6)]).await;

    let preview = reset(
        &app,
        GROUP,
        json!({"topic": TOPIC, "to": "earliest", "dry_run": true}),
    )
    .await;
    assert_eq!(preview.status, StatusCode::OK, "{preview:?}");
    assert_eq!(
        preview.json,
        json!({"group_id": GROUP, "topic": TOPIC, "dry_run": true, "partitions": [
            {"partition": 0, "previous_offset": 7, "new_offset": 0, "earliest_offset": 0,
             "latest_offset": 10},
            {"partition": 1, "previous_offset": 6, "new_offset": 0, "earliest_offset": 0,
             "latest_offset": 6}
        ]})
    );
    assert_eq!(
        committed(&broker, GROUP).await,
        [Some(7), Some(6)],
        "a dry run commits nothing"
    );

    let earliest = reset_and_check(&app, &broker, json!("earliest"), [Some(0), Some(0)]).await;
    assert_eq!(earliest.json["partitions"][0]["previous_offset"], 7);
    let latest = reset_and_check(&app, &broker, json!("latest"), [Some(10), Some(6)]).await;
    assert_eq!(latest.json["partitions"][1]["previous_offset"], 0);
    reset_and_check(&app, &broker, json!({"offset": 3}), [Some(3), Some(3)]).await;
    // Clamped to each partition's latest offset.
    reset_and_check(&app, &broker, json!({"offset": 8}), [Some(8), Some(6)]).await;
    reset_and_check(&app, &broker, json!({"shift": -2}), [Some(6), Some(4)]).await;
    reset_and_check(&app, &broker, json!({"shift": 100}), [Some(10), Some(6)]).await;
    reset_and_check(&app, &broker, json!({"shift": -100}), [Some(0), Some(0)]).await;
    // The first record at or after the time: the sixth of each partition.
    reset_and_check(
        &app,
        &broker,
        json!("2023-11-14T22:13:25Z"),
        [Some(5), Some(5)],
    )
    .await;
    // Partition 1's records end at +5 s: no record is that recent, so its end.
    reset_and_check(
        &app,
        &broker,
        json!("2023-11-14T23:13:25.500+01:00"),
        [Some(6), Some(6)],
    )
    .await;
    reset_and_check(
        &app,
        &broker,
        json!("2100-01-01T00:00:00Z"),
        [Some(10), Some(6)],
    )
    .await;
    reset_and_check(
        &app,
        &broker,
        json!("2000-01-01T00:00:00Z"),
        [Some(0), Some(0)],
    )
    .await;

    // Only the partitions listed move.
    reset_and_check(&app, &broker, json!("latest"), [Some(10), Some(6)]).await;
    let one = reset(
        &app,
        GROUP,
        json!({"topic": TOPIC, "partitions": [1], "to": {"offset": 2}}),
    )
    .await;
    assert_eq!(one.status, StatusCode::OK, "{one:?}");
    assert_eq!(
        one.json["partitions"],
        json!([{"partition": 1, "previous_offset": 6, "new_offset": 2, "earliest_offset": 0,
                "latest_offset": 6}])
    );
    assert_eq!(committed(&broker, GROUP).await, [Some(10), Some(2)]);

    // What the API shows is what was committed.
    let described = get(&app, &format!("/api/v1/groups/{GROUP}")).await;
    assert_eq!(described.json["state"], "Empty", "{described:?}");
    assert_eq!(described.json["offsets"][1]["committed_offset"], 2);
    assert_eq!(described.json["lag"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shifts_need_committed_offsets_and_unknown_groups_are_created_by_a_reset() {
    let broker = TestBroker::start().await;
    let app = api(&broker);
    timed_topic(&broker).await;
    standalone_commit(&broker, "partly", &[(0, 4)]).await;

    let refused = reset(&app, "partly", json!({"topic": TOPIC, "to": {"shift": 1}})).await;
    assert_error(
        &refused,
        StatusCode::CONFLICT,
        "consumer group \"partly\" has no committed offset in partition 1 of topic \"events\" \
         to shift from",
    );
    let preview = reset(
        &app,
        "partly",
        json!({"topic": TOPIC, "to": {"shift": 1}, "dry_run": true}),
    )
    .await;
    assert_error(&preview, StatusCode::CONFLICT, "no committed offset");
    assert_eq!(committed(&broker, "partly").await, [Some(4), None]);
    let shifted = reset(
        &app,
        "partly",
        json!({"topic": TOPIC, "partitions": [0], "to": {"shift": 1}}),
    )
    .await;
    assert_eq!(shifted.status, StatusCode::OK, "{shifted:?}");
    assert_eq!(committed(&broker, "partly").await, [Some(5), None]);

    // A group the cluster does not know yet: positioned before its consumers start.
    let unknown = get(&app, "/api/v1/groups/newcomer").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{unknown:?}");
    let created = reset(&app, "newcomer", json!({"topic": TOPIC, "to": "latest"})).await;
    assert_eq!(created.status, StatusCode::OK, "{created:?}");
    assert_eq!(
        created.json["partitions"][0]["previous_offset"],
        Value::Null
    );
    assert_eq!(committed(&broker, "newcomer").await, [Some(10), Some(6)]);
    let described = get(&app, "/api/v1/groups/newcomer").await;
    assert_eq!(described.status, StatusCode::OK, "{described:?}");
    assert_eq!(described.json["lag"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_requests_are_checked_with_precise_reasons() {
    let broker = TestBroker::start().await;
    let app = api(&broker);
    timed_topic(&broker).await;
    standalone_commit(&broker, GROUP, &[(0, 7), (1, 6)]).await;
    let with = |fields: Value| {
        let mut body = json!({"topic": TOPIC, "to": "earliest"});
        for (key, value) in fields.as_object().expect("fields") {
            body[key] = value.clone();
        }
        body
    };
    let cases = [
        (with(json!({"topic": "a b"})), "contains ' '"),
        (with(json!({"partitions": []})), "partitions is empty"),
        (
            with(json!({"partitions": [0, 0]})),
            "partition 0 is listed twice",
        ),
        (
            with(json!({"partitions": [-1]})),
            "partition -1 is negative",
        ),
        (
            with(json!({"to": "yesterday"})),
            "to must be \"earliest\", \"latest\", an RFC 3339",
        ),
        (
            with(json!({"to": "2023-02-30T00:00:00Z"})),
            "to \"2023-02-30T00:00:00Z\" is not a valid RFC 3339 timestamp: February 30 does \
             not exist in 2023",
        ),
        (
            with(json!({"to": "1969-12-31T23:59:59Z"})),
            "is before 1970-01-01T00:00:00Z",
        ),
        (with(json!({"to": {"offset": -1}})), "offset -1 is negative"),
        (
            with(json!({"to": {"offset": 1.5}})),
            "offset must be an integer",
        ),
        (
            with(json!({"to": {"offset": 1, "shift": 1}})),
            "exactly one field",
        ),
        (
            with(json!({"to": {"jump": 1}})),
            "unknown field \"jump\" in `to`",
        ),
        (with(json!({"to": 5})), "to must be"),
        (with(json!({"force": true})), "unknown field `force`"),
        (json!({"topic": TOPIC}), "missing field `to`"),
    ];
    for (body, reason) in cases {
        let answer = reset(&app, GROUP, body.clone()).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, reason);
    }
    // A partition the topic does not have is not found, as a missing topic is.
    let missing = reset(&app, GROUP, with(json!({"partitions": [5]}))).await;
    assert_error(
        &missing,
        StatusCode::NOT_FOUND,
        "topic \"events\" has no partition 5 (it has 2)",
    );
    for body in [json!(["events", null, "earliest"]), json!(null)] {
        let answer = reset(&app, GROUP, body).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "must be a JSON object");
    }
    let null_partitions = reset(&app, GROUP, with(json!({"partitions": null}))).await;
    assert_error(
        &null_partitions,
        StatusCode::BAD_REQUEST,
        "invalid type: null",
    );
    let bad_group = reset(&app, "a%01b", with(json!({}))).await;
    assert_error(
        &bad_group,
        StatusCode::BAD_REQUEST,
        "contains control characters",
    );
    let no_topic = reset(&app, GROUP, with(json!({"topic": "missing"}))).await;
    assert_error(
        &no_topic,
        StatusCode::NOT_FOUND,
        "topic \"missing\" does not exist",
    );
    assert_eq!(
        committed(&broker, GROUP).await,
        [Some(7), Some(6)],
        "no refused request committed anything"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_with_members_are_not_reset_or_deleted_and_empty_ones_are() {
    let broker = TestBroker::start().await;
    let app = api(&broker);
    timed_topic(&broker).await;
    let consumer = member(&broker, 16, &[(0, 7), (1, 6)]).await;
    poll_until(&app, &format!("/api/v1/groups/{GROUP}"), WAIT, |group| {
        group["state"] == "Stable"
    })
    .await;

    for body in [
        json!({"topic": TOPIC, "to": "earliest"}),
        json!({"topic": TOPIC, "to": "earliest", "dry_run": true}),
    ] {
        let refused = reset(&app, GROUP, body).await;
        assert_error(
            &refused,
            StatusCode::CONFLICT,
            "consumer group \"reporting\" is active (1 member, state Stable): its offsets can \
             be reset only while it has no members",
        );
    }
    let not_deleted = delete(&app, &format!("/api/v1/groups/{GROUP}")).await;
    assert_error(
        &not_deleted,
        StatusCode::CONFLICT,
        "consumer group \"reporting\" is not empty (1 member, state Stable)",
    );
    let offsets_kept = delete(&app, &format!("/api/v1/groups/{GROUP}/offsets/{TOPIC}")).await;
    assert_error(
        &offsets_kept,
        StatusCode::CONFLICT,
        "consumer group \"reporting\" is active and subscribed to topic \"events\"",
    );
    assert_eq!(committed(&broker, GROUP).await, [Some(7), Some(6)]);

    tokio::task::spawn_blocking(move || drop(consumer))
        .await
        .expect("the member left");
    poll_until(&app, &format!("/api/v1/groups/{GROUP}"), WAIT, |group| {
        group["state"] == "Empty"
    })
    .await;
    let deleted_offsets = delete(&app, &format!("/api/v1/groups/{GROUP}/offsets/{TOPIC}")).await;
    assert_eq!(
        deleted_offsets.status,
        StatusCode::NO_CONTENT,
        "{deleted_offsets:?}"
    );
    assert_eq!(committed(&broker, GROUP).await, [None, None]);

    standalone_commit(&broker, "offsets-only", &[(0, 2)]).await;
    let deleted = delete(&app, "/api/v1/groups/offsets-only").await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{deleted:?}");
    assert!(deleted.text.is_empty());
    assert_eq!(committed(&broker, "offsets-only").await, [None, None]);
    let gone = get(&app, "/api/v1/groups/offsets-only").await;
    assert_error(
        &gone,
        StatusCode::NOT_FOUND,
        "no consumer group \"offsets-only\"",
    );
    let again = delete(&app, "/api/v1/groups/offsets-only").await;
    assert_error(
        &again,
        StatusCode::NOT_FOUND,
        "no consumer group \"offsets-only\"",
    );

    let no_group = delete(&app, &format!("/api/v1/groups/nobody/offsets/{TOPIC}")).await;
    assert_error(
        &no_group,
        StatusCode::NOT_FOUND,
        "no consumer group \"nobody\"",
    );
    standalone_commit(&broker, "offsets-only", &[(0, 2)]).await;
    let no_topic = delete(&app, "/api/v1/groups/offsets-only/offsets/missing").await;
    assert_error(
        &no_topic,
        StatusCode::NOT_FOUND,
        "topic \"missing\" does not exist",
    );
    let bad_group = delete(&app, "/api/v1/groups/a%01b").await;
    assert_error(
        &bad_group,
        StatusCode::BAD_REQUEST,
        "contains control characters",
    );
    let bad_topic = delete(&app, "/api/v1/groups/offsets-only/offsets/a%20b").await;
    assert_error(&bad_topic, StatusCode::BAD_REQUEST, "contains ' '");
    assert_eq!(
        committed(&broker, "offsets-only").await,
        [Some(2), None],
        "refused requests deleted nothing"
    );
}
