//! A full disk under `freshet up`, seen from outside (`docs/OPERATIONS.md`): one ERROR line for
//! the episode however many produce requests fail, `/healthz` 503 degraded with the reason,
//! `freshet_broker_degraded{reason="disk_full"} 1` in `/metrics`, topic creation refused; and
//! all of it back to normal, with an INFO line, once space is freed.
//!
//! The data directory is a small tmpfs: mounting needs root, so the test is ignored by
//! default and `.ci/run` runs it as root with `--ignored`. Run by hand without root, it fails
//! and says why.

use crate::common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::daemon::{http, Daemon};
use common::prometheus::parse;
use common::{client_config, freshet};
use freshet_testkit::tmpfs::Tmpfs;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

fn start_up(data_dir: &Path) -> Daemon {
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
        .args(["--argon2-memory-kib", "1024", "--argon2-iterations", "1"])
        .env("FRESHET_LOG", "info");
    Daemon::start(command, "up", "HTTP API on http://")
}

fn healthz(api: &str) -> (u16, serde_json::Value) {
    let answer = http(api, "GET", "/healthz", None).expect("GET /healthz");
    let body = serde_json::from_str(&answer.body).expect("JSON body");
    (answer.status, body)
}

fn degraded_gauge(api: &str, reason: &str) -> f64 {
    let answer = http(api, "GET", "/metrics", None).expect("GET /metrics");
    parse(&answer.body).value("freshet_broker_degraded", &[("reason", reason)])
}

fn episodes(api: &str) -> f64 {
    let answer = http(api, "GET", "/metrics", None).expect("GET /metrics");
    parse(&answer.body).value(
        "freshet_broker_degraded_episodes_total",
        &[("reason", "disk_full")],
    )
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn lines_with(daemon: &Daemon, level: &str, text: &str) -> Vec<String> {
    let lines = daemon.lines.lock().expect("lock");
    lines
        .iter()
        .filter(|line| line.contains(level) && line.contains(text))
        .cloned()
        .collect()
}

/// Sends `count` records of 256 KiB and waits for each to be acknowledged or to fail.
fn produce_large(kafka: &str, topic: &str, count: usize) -> usize {
    let producer: BaseProducer = client_config(kafka)
        .set("acks", "all")
        .set("message.timeout.ms", "3000")
        .set("retry.backoff.ms", "100")
        .create()
        .expect("producer");
    let value = "x".repeat(256 * 1024);
    for _ in 0..count {
        producer
            .send(BaseRecord::<(), str>::to(topic).payload(&value))
            .expect("queued");
    }
    let _ = producer.flush(Duration::from_secs(10));
    producer.in_flight_count().max(0) as usize
}

#[test]
#[ignore = "needs root to mount a tmpfs: .ci/run runs it with --ignored"]
fn a_full_disk_is_logged_once_reported_degraded_and_recovers() {
    let disk = Tmpfs::mount("16m");
    let up = start_up(&disk.path().join("data"));
    let api = up.addr.clone();
    let kafka = up.kafka_addr();
    assert_eq!(healthz(&api), (200, serde_json::json!({"status": "ok"})));
    let created = http(
        &api,
        "POST",
        "/api/v1/topics",
        Some(r#"{"name": "events", "partitions": 1}"#),
    )
    .expect("POST /api/v1/topics");
    assert_eq!(created.status, 201, "{created:?}");

    let filler = disk.fill(128 * 1024);
    produce_large(&kafka, "events", 5);
    wait_until("/healthz to say degraded", || healthz(&api).0 == 503);
    let (_, body) = healthz(&api);
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["problems"][0]["component"], "broker");
    assert_eq!(body["problems"][0]["reason"], "disk_full");
    assert_eq!(degraded_gauge(&api, "disk_full"), 1.0);
    assert_eq!(degraded_gauge(&api, "log_poisoned"), 0.0);

    // More failing writes: still one episode, one ERROR line.
    produce_large(&kafka, "events", 5);
    let refused = http(
        &api,
        "POST",
        "/api/v1/topics",
        Some(r#"{"name": "born-on-a-full-disk", "partitions": 1}"#),
    )
    .expect("POST /api/v1/topics");
    assert_ne!(refused.status, 201, "creation is refused: {refused:?}");
    assert!(!disk.path().join("data/topics/born-on-a-full-disk").exists());
    assert_eq!(episodes(&api), 1.0);
    let errors = lines_with(&up, "ERROR", "disk full");
    assert_eq!(
        errors.len(),
        1,
        "one ERROR line for the episode: {errors:#?}"
    );

    fs::remove_file(filler).expect("free the space");
    wait_until("/healthz to say ok again", || healthz(&api).0 == 200);
    assert_eq!(degraded_gauge(&api, "disk_full"), 0.0);
    assert_eq!(episodes(&api), 1.0);
    wait_until("the recovery to be logged", || {
        lines_with(&up, "INFO", "the disk has room again").len() == 1
    });
    assert_eq!(produce_large(&kafka, "events", 1), 0, "writes resume");
    up.terminate();
}
