//! `GET /metrics` of real `freshet` processes, parsed as Prometheus text: after events are
//! produced and logins made over the real protocols, each component's counters moved by
//! exactly what was sent. `freshet up` reports on the broker, tracker, guard and process;
//! `freshet broker --metrics-listen` on the broker alone.

use crate::common;

use std::time::{Duration, Instant};

use common::daemon::{http, Daemon, HttpAnswer};
use common::prometheus::{parse, Exposition};
use common::{client_config, freshet};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn scrape(addr: &str) -> Exposition {
    let answer = http(addr, "GET", "/metrics", None).expect("GET /metrics");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("content-type"), Some(CONTENT_TYPE));
    parse(&answer.body)
}

/// Scrapes until `done` holds, for at most 60 s; returns that scrape.
fn scrape_until(addr: &str, what: &str, done: impl Fn(&Exposition) -> bool) -> Exposition {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = scrape(addr);
        if done(&metrics) {
            return metrics;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; the last scrape: {:#?}",
            metrics.samples
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Produces `values` with acks=all (so each is fsynced before it is acknowledged) and waits
/// until every one is acknowledged.
fn produce(kafka: &str, topic: &str, values: &[String]) {
    let producer: BaseProducer = client_config(kafka)
        .set("acks", "all")
        .create()
        .expect("producer");
    for value in values {
        producer
            .send(BaseRecord::<(), str>::to(topic).payload(value))
            .expect("queued");
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("every record acknowledged");
}

fn post(addr: &str, path: &str, body: &str) -> HttpAnswer {
    http(addr, "POST", path, Some(body)).expect("POST")
}

fn start_up(data_dir: &std::path::Path) -> Daemon {
    let mut command = freshet();
    command
        .args([
            "up",
            "--kafka-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--group-initial-rebalance-delay-ms", "0"])
        .args(["--checkpoint-interval-ms", "200"])
        .args(["--argon2-memory-kib", "1024", "--argon2-iterations", "1"])
        .args(["--login-rate", "1000", "--login-burst", "1000"])
        .env("FRESHET_LOG", "info");
    Daemon::start(command, "up", "HTTP API on http://")
}

#[test]
fn freshet_up_reports_what_its_broker_tracker_and_guard_did() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = start_up(dir.path());
    let kafka = up.kafka_addr();
    let api = up.addr.clone();

    let ready = scrape_until(&api, "the tracker and the blocker to join", |m| {
        m.value("freshet_tracker_partitions_owned", &[]) == 3.0
            && m.value(
                "freshet_broker_group_rebalances_total",
                &[("group", "freshet-guard")],
            ) >= 1.0
    });
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        ready.get("freshet_build_info", &[("version", version)]),
        Some(1.0)
    );
    assert!(ready.value("freshet_process_uptime_seconds", &[]) > 0.0);
    let events_in = |m: &Exposition| {
        m.value(
            "freshet_broker_records_in_total",
            &[("topic", "device-events")],
        )
    };
    let before = events_in(&ready);

    let valid: Vec<String> = (0..300)
        .map(|i| {
            format!(
                r#"{{"timestamp": "2024-09-18T13:59:02Z", "device_ip": "10.0.{}.{}", "error_code": {}}}"#,
                i / 256,
                i % 256,
                i % 11
            )
        })
        .collect();
    let mut invalid: Vec<String> = vec!["not json".to_string(); 5];
    invalid.extend(
        [r#"{"timestamp": 1, "device_ip": "10.9.9.9", "error_code": 11}"#; 2].map(String::from),
    );
    produce(&kafka, "device-events", &valid);
    produce(&kafka, "device-events", &invalid);

    // The successes are another user's: a success resets the count of the failures at or
    // before its millisecond, and these logins take about one.
    for user in ["alice", "bob"] {
        let body = format!(r#"{{"user": "{user}", "pass": "correct1horse"}}"#);
        let registered = post(&api, "/api/v1/register", &body);
        assert_eq!(registered.status, 201, "{registered:?}");
    }
    for _ in 0..2 {
        let ok = post(
            &api,
            "/api/v1/login",
            r#"{"user": "bob", "pass": "correct1horse"}"#,
        );
        assert_eq!(ok.status, 200, "{ok:?}");
    }
    for _ in 0..5 {
        let wrong = post(
            &api,
            "/api/v1/login",
            r#"{"user": "alice", "pass": "wrong1horse"}"#,
        );
        assert_eq!(wrong.status, 401, "{wrong:?}");
    }

    let counted = scrape_until(&api, "the tracker to count every event", |m| {
        m.value("freshet_tracker_events_total", &[]) >= 300.0
            && m.value(
                "freshet_tracker_events_rejected_total",
                &[("reason", "invalid_json")],
            ) >= 5.0
            && m.value(
                "freshet_tracker_events_rejected_total",
                &[("reason", "error_code")],
            ) >= 2.0
    });
    assert!(
        counted.value("freshet_tracker_events_per_second", &[]) > 0.0,
        "events were consumed in the last seconds"
    );
    let blocked = scrape_until(&api, "the blocker to block alice", |m| {
        m.value("freshet_guard_users_blocked", &[]) == 1.0
    });
    assert_eq!(blocked.value("freshet_guard_blocks_issued_total", &[]), 1.0);
    let refused = post(
        &api,
        "/api/v1/login",
        r#"{"user": "alice", "pass": "correct1horse"}"#,
    );
    assert_eq!(refused.status, 423, "{refused:?}");
    // The node's two workers may still be rebalancing (at a 0 ms initial delay the first
    // forms the group alone and the second joins later); the node count is over the
    // partitions it owns, so wait until it owns all three again.
    let after = scrape_until(&api, "a checkpoint of the counted events", |m| {
        m.value("freshet_tracker_checkpoints_total", &[]) > 0.0
            && m.value("freshet_tracker_partitions_owned", &[]) == 3.0
    });

    // The broker: every record produced, once; the tracker read them all back.
    assert_eq!(events_in(&after) - before, 307.0);
    assert!(
        after.value(
            "freshet_broker_bytes_in_total",
            &[("topic", "device-events")]
        ) > 0.0
    );
    assert!(
        after.value(
            "freshet_broker_log_size_bytes",
            &[("topic", "device-events")]
        ) >= after.value(
            "freshet_broker_bytes_in_total",
            &[("topic", "device-events")]
        )
    );
    assert!(
        after.value(
            "freshet_broker_records_out_total",
            &[("topic", "device-events")]
        ) >= 307.0
    );
    let (_, fsyncs) = after.histogram("freshet_broker_fsync_seconds");
    assert!(fsyncs > 0.0, "acks=all produces were fsynced");
    assert!(after.value("freshet_broker_fsync_seconds_sum", &[]) > 0.0);
    assert!(after.value("freshet_broker_requests_total", &[("api", "Produce")]) >= 2.0);
    assert!(after.value("freshet_broker_requests_total", &[("api", "Fetch")]) > 0.0);
    let open = after.value("freshet_broker_connections_open", &[]);
    assert!(open >= 1.0, "the services are connected");
    assert!(after.value("freshet_broker_connections_accepted_total", &[]) >= open);
    assert!(
        after.value(
            "freshet_broker_group_rebalances_total",
            &[("group", "freshet-tracker")]
        ) >= 1.0
    );

    // The tracker: exactly the events sent, each rejection under its reason.
    assert_eq!(after.value("freshet_tracker_events_total", &[]), 300.0);
    assert_eq!(
        after.value(
            "freshet_tracker_events_rejected_total",
            &[("reason", "invalid_json")]
        ),
        5.0
    );
    assert_eq!(
        after.value(
            "freshet_tracker_events_rejected_total",
            &[("reason", "error_code")]
        ),
        2.0
    );
    assert_eq!(
        after.value(
            "freshet_tracker_events_rejected_total",
            &[("reason", "timestamp")]
        ),
        0.0
    );
    assert_eq!(
        after.get("freshet_tracker_distinct_ips", &[("scope", "global")]),
        Some(300.0)
    );
    assert_eq!(
        after.get("freshet_tracker_distinct_ips", &[("scope", "node")]),
        Some(300.0)
    );
    assert_eq!(after.get("freshet_tracker_running", &[]), Some(1.0));

    // The guard: each login under its outcome, one block.
    let logins = |outcome| {
        after.value(
            "freshet_guard_login_attempts_total",
            &[("outcome", outcome)],
        )
    };
    assert_eq!(
        (logins("success"), logins("failure"), logins("blocked")),
        (2.0, 5.0, 1.0)
    );
    assert_eq!(after.value("freshet_guard_blocks_issued_total", &[]), 1.0);
    assert_eq!(after.value("freshet_guard_users_blocked", &[]), 1.0);
    assert!(after.value("freshet_guard_attempts_processed_total", &[]) >= 7.0);

    // A clean shutdown after real traffic (the tracker counting, the blocker blocking, the
    // API serving) says nothing alarming: no WARN or ERROR line from SIGTERM on.
    let logs = up.lines.clone();
    let before_signal = logs.lock().expect("lock").len();
    up.terminate();
    let after: Vec<String> = logs.lock().expect("lock")[before_signal..].to_vec();
    let complaints: Vec<&String> = after
        .iter()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .collect();
    assert!(
        complaints.is_empty(),
        "freshet up logged warnings or errors while shutting down: {complaints:#?}"
    );
}

#[test]
fn freshet_broker_serves_only_its_metrics_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = freshet();
    command
        .args(["broker", "--kafka-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--metrics-listen", "127.0.0.1:0"])
        .env("FRESHET_LOG", "info");
    let broker = Daemon::start(command, "broker", "Prometheus metrics on http://");
    let kafka = broker.kafka_addr();

    let values: Vec<String> = (0..25).map(|i| format!("record {i}")).collect();
    produce(&kafka, "metered", &values);
    let metrics = scrape(&broker.addr);
    assert_eq!(
        metrics.value("freshet_broker_records_in_total", &[("topic", "metered")]),
        25.0
    );
    let (_, fsyncs) = metrics.histogram("freshet_broker_fsync_seconds");
    assert!(fsyncs > 0.0, "acks=all produces were fsynced");
    for reason in ["disk_full", "log_poisoned"] {
        let labels = [("reason", reason)];
        assert_eq!(metrics.get("freshet_broker_degraded", &labels), Some(0.0));
        assert_eq!(
            metrics.get("freshet_broker_degraded_episodes_total", &labels),
            Some(0.0)
        );
    }
    assert_eq!(
        metrics.get("freshet_broker_partitions_read_only", &[]),
        Some(0.0)
    );
    assert_eq!(
        metrics.get(
            "freshet_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert!(
        !metrics
            .samples
            .iter()
            .any(|s| s.name.starts_with("freshet_tracker_") || s.name.starts_with("freshet_guard_")),
        "no services run in the broker"
    );
    let api = http(&broker.addr, "GET", "/api/openapi.json", None).expect("GET");
    assert_eq!(api.status, 404, "only /metrics is served: {api:?}");

    broker.terminate();
}
