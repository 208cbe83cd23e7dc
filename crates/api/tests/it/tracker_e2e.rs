//! The tracker routes end to end: a real broker, a real tracker node consuming what a real
//! rdkafka producer sent, and the API answering from that node's state.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::http::StatusCode;
use axum::Router;
use common::{assert_error, get, poll_until};
use freshet_api::{app, AppState};
use freshet_services::tracker::{Tracker, TrackerConfig};
use freshet_services::KafkaConfig;
use freshet_testkit::TestBroker;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde_json::{json, Value};

const NODE_ID: &str = "api-test-node";
const DEVICES: usize = 500;
const EVENTS: usize = 2000;
const PARTITIONS: i32 = 3;
const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const COUNT_TIMEOUT: Duration = Duration::from_secs(30);

/// What was sent, and so what the tracker must report.
#[derive(Debug, Default)]
struct Expected {
    ips: BTreeSet<String>,
    per_minute: BTreeMap<i64, BTreeSet<String>>,
    per_hour: BTreeMap<i64, BTreeSet<String>>,
    per_code: BTreeMap<u8, BTreeSet<String>>,
    rejected: u64,
}

fn device_ip(device: usize) -> String {
    format!("10.0.{}.{}", device / 256, device % 256)
}

/// Event `i` of the run: devices in turn, error codes 0..=10 in turn, event times spread over
/// three minutes on each side of an hour boundary so both window kinds have several windows.
fn event(i: usize) -> (String, String, u8) {
    let ip = device_ip(i % DEVICES);
    let code = (i % 11) as u8;
    let (hour, minute) = [(13, 57), (13, 58), (13, 59), (14, 0), (14, 1), (14, 2)][i % 6];
    let timestamp = format!("2024-09-18T{hour:02}:{minute:02}:02.123456Z");
    (timestamp, ip, code)
}

/// Values the tracker must reject, each for a different reason.
const INVALID_EVENTS: [&str; 5] = [
    "not json at all",
    r#"{"timestamp": "2024-09-18T13:59:02Z", "device_ip": "10.0.999.1", "error_code": 3}"#,
    r#"{"timestamp": "2023-02-30T00:00:00Z", "device_ip": "10.0.0.1", "error_code": 3}"#,
    r#"{"timestamp": "2024-09-18T13:59:02Z", "device_ip": "10.0.0.1", "error_code": 11}"#,
    r#"{"device_ip": "10.0.0.1", "error_code": 3}"#,
];

async fn send_value(producer: &FutureProducer, partition: i32, value: &str) {
    producer
        .send(
            FutureRecord::<(), _>::to("device-events")
                .payload(value)
                .partition(partition),
            Timeout::After(Duration::from_secs(10)),
        )
        .await
        .expect("the broker acknowledged the event");
}

/// Sends every event (valid ones spread over the partitions, invalid ones among them) and
/// records what the tracker should count.
async fn send_events(broker: &TestBroker) -> Expected {
    let producer = broker.producer(&[]);
    let mut expected = Expected::default();
    for i in 0..EVENTS {
        let (timestamp, ip, code) = event(i);
        let value = json!({"timestamp": timestamp, "device_ip": ip, "error_code": code});
        send_value(&producer, i as i32 % PARTITIONS, &value.to_string()).await;
        let time_ms = freshet_timestamp::normalize(timestamp.as_str())
            .expect("a valid timestamp")
            .unix_millis();
        expected.ips.insert(ip.clone());
        expected
            .per_minute
            .entry(time_ms - time_ms.rem_euclid(MINUTE_MS))
            .or_default()
            .insert(ip.clone());
        expected
            .per_hour
            .entry(time_ms - time_ms.rem_euclid(HOUR_MS))
            .or_default()
            .insert(ip.clone());
        expected.per_code.entry(code).or_default().insert(ip);
    }
    for (n, value) in INVALID_EVENTS.iter().enumerate() {
        send_value(&producer, n as i32 % PARTITIONS, value).await;
        expected.rejected += 1;
    }
    expected
}

/// `(start_ms, distinct_ips)` of each window, newest first as the API promises.
fn expected_windows(sets: &BTreeMap<i64, BTreeSet<String>>) -> Vec<(i64, u64)> {
    sets.iter()
        .rev()
        .map(|(start, ips)| (*start, ips.len() as u64))
        .collect()
}

fn served_windows(json: &Value) -> Vec<(i64, u64)> {
    json["windows"]
        .as_array()
        .expect("windows")
        .iter()
        .map(|w| {
            let start_ms = w["start_ms"].as_i64().expect("start_ms");
            let start = freshet_timestamp::NormalizedTs::from_unix_millis(start_ms)
                .expect("a representable start");
            assert_eq!(w["start"], start.as_str(), "start and start_ms agree");
            (start_ms, w["distinct_ips"].as_u64().expect("distinct_ips"))
        })
        .collect()
}

async fn check_compatible_endpoints(app: &Router) {
    let active = get(app, "/is-node-active").await;
    assert_eq!(active.json, json!({"status": true, "node_id": NODE_ID}));
    let node = get(app, "/number-ips").await;
    // One node owns every partition, so its own count is the global one.
    assert_eq!(node.json, json!({"counting": DEVICES}));
    let global = get(app, "/global-number-ips").await;
    assert_eq!(
        global.json,
        json!({
            "number": DEVICES,
            "voted_by": [NODE_ID],
            "voting_nodes": 1,
            "votes": {DEVICES.to_string(): 1},
            "nodes": 1,
            "partitions_covered": PARTITIONS,
            "partitions_total": PARTITIONS,
            "exact": true
        })
    );
    let v1 = get(app, "/api/v1/unique_ip_count").await;
    assert_eq!(v1.json, json!({"unique_ip_count": DEVICES}));
    let legacy = get(app, "/unique_ip_count").await;
    assert_eq!(legacy.json, json!({"unique_device_ip_count": DEVICES}));
}

async fn check_unique_ips(app: &Router, expected: &Expected) {
    let ips = get(app, "/api/v1/unique-ips").await.json;
    assert_eq!(ips["node_id"], NODE_ID);
    assert_eq!(ips["global_count"], expected.ips.len());
    assert_eq!(ips["node_count"], expected.ips.len());
    assert_eq!(ips["events_counted"], EVENTS);
    assert_eq!(ips["events_rejected"], expected.rejected);
    assert_eq!(ips["partitions_owned"], json!([0, 1, 2]));
    assert_eq!(ips["nodes_seen"], json!([NODE_ID]));
    let error = ips["estimate_error_percent"].as_f64().expect("a number");
    assert!(error.abs() < 5.0, "HyperLogLog within 5% at 500 IPs: {ips}");
}

async fn check_views(app: &Router, expected: &Expected) {
    let minutes = get(app, "/api/v1/unique-ips/windows").await.json;
    assert_eq!(minutes["granularity"], "minute");
    assert_eq!(
        served_windows(&minutes),
        expected_windows(&expected.per_minute)
    );

    let two = get(app, "/api/v1/unique-ips/windows?granularity=minute&limit=2").await;
    let newest_two: Vec<_> = expected_windows(&expected.per_minute)
        .into_iter()
        .take(2)
        .collect();
    assert_eq!(served_windows(&two.json), newest_two);

    let hours = get(app, "/api/v1/unique-ips/windows?granularity=hour")
        .await
        .json;
    assert_eq!(hours["granularity"], "hour");
    assert_eq!(served_windows(&hours), expected_windows(&expected.per_hour));

    let codes = get(app, "/api/v1/unique-ips/error-codes").await.json;
    let expected_codes: Vec<Value> = expected
        .per_code
        .iter()
        .map(|(code, ips)| json!({"error_code": code, "distinct_ips": ips.len()}))
        .collect();
    assert_eq!(codes, json!({"error_codes": expected_codes}));

    let partitions = get(app, "/api/v1/tracker/partitions").await.json;
    let partitions = partitions["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), PARTITIONS as usize, "{partitions:?}");
    assert!(
        partitions.iter().all(|p| p["owned"] == true),
        "{partitions:?}"
    );
    let events: u64 = partitions
        .iter()
        .map(|p| p["events"].as_u64().unwrap_or(0))
        .sum();
    let rejected: u64 = partitions
        .iter()
        .map(|p| p["rejected"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!((events, rejected), (EVENTS as u64, expected.rejected));
}

async fn check_view_parameters_are_validated(app: &Router) {
    let day = get(app, "/api/v1/unique-ips/windows?granularity=day").await;
    assert_error(&day, StatusCode::BAD_REQUEST, "unknown variant `day`");
    for limit in ["0", "10001"] {
        let answer = get(app, &format!("/api/v1/unique-ips/windows?limit={limit}")).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "out of range");
    }
    let negative = get(app, "/api/v1/unique-ips/windows?limit=-1").await;
    assert_error(&negative, StatusCode::BAD_REQUEST, "limit: invalid digit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracker_routes_report_exactly_what_was_sent() {
    // The testkit's brokers start groups without an initial rebalance delay.
    let broker = TestBroker::start().await;
    let config = TrackerConfig {
        checkpoint_interval: Duration::from_millis(200),
        node_id: Some(NODE_ID.into()),
        input_partitions: PARTITIONS,
        ..TrackerConfig::default()
    };
    let tracker = Tracker::start(&KafkaConfig::new(broker.bootstrap()), config)
        .await
        .expect("the tracker starts");
    let app = app(AppState::new().with_tracker(tracker.handle()));

    let expected = send_events(&broker).await;
    assert_eq!(expected.ips.len(), DEVICES);
    poll_until(&app, "/api/v1/unique-ips", COUNT_TIMEOUT, |ips| {
        ips["global_count"] == DEVICES
            && ips["node_count"] == DEVICES
            && ips["events_counted"] == EVENTS
            && ips["events_rejected"] == expected.rejected
            && ips["partitions_covered"] == PARTITIONS
    })
    .await;

    check_compatible_endpoints(&app).await;
    check_unique_ips(&app, &expected).await;
    check_views(&app, &expected).await;
    check_view_parameters_are_validated(&app).await;

    tokio::task::spawn_blocking(move || tracker.shutdown())
        .await
        .expect("the tracker shuts down");
}
