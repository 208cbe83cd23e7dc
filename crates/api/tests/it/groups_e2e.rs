//! The group routes end to end: real rdkafka consumers join a group on a real broker and
//! commit offsets, and the API reports their membership, assignments, offsets and lag.
//!
//! Blocking rdkafka calls (polls, commits, consumer drops) run in `spawn_blocking`.

use crate::common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::Router;
use common::{assert_error, get, poll_until, post_json};
use freshet_api::{app, AppState};
use freshet_services::cluster::Cluster;
use freshet_services::KafkaConfig;
use freshet_testkit::TestBroker;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
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
