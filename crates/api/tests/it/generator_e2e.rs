//! The generator routes end to end: jobs started over HTTP send to a real broker, and their
//! progress is read back over HTTP until they end.

use crate::common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::Router;
use common::{assert_error, get, poll_until, post_json, request, send};
use freshet_api::{app, AppState};
use freshet_services::generator::GeneratorJobs;
use freshet_services::KafkaConfig;
use freshet_testkit::raw::{assert_compressed_with, BatchInfo, RawClient};
use freshet_testkit::TestBroker;
use rdkafka::consumer::Consumer;
use serde_json::Value;

const JOB_TIMEOUT: Duration = Duration::from_secs(30);

fn generator_app(broker: &TestBroker) -> Router {
    let jobs = GeneratorJobs::new(KafkaConfig::new(broker.bootstrap()));
    app(AppState::new().with_generator(jobs))
}

async fn wait_for_state(app: &Router, status_url: &str, state: &str) -> Value {
    poll_until(app, status_url, JOB_TIMEOUT, |job| job["state"] == state).await
}

/// Records stored in `topic` (sum of the partitions' high watermarks), as a consumer sees.
async fn records_in(broker: &TestBroker, topic: &str, partitions: i32) -> i64 {
    let consumer = broker.consumer("api-generator-check", &[]);
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        (0..partitions)
            .map(|p| {
                let (low, high) = consumer
                    .fetch_watermarks(&topic, p, Duration::from_secs(10))
                    .expect("watermarks");
                high - low
            })
            .sum()
    })
    .await
    .expect("watermark lookup")
}

/// The record batches of each of `topic`'s partitions, as the broker stores them.
async fn partition_batches(
    broker: &TestBroker,
    topic: &str,
    partitions: i32,
) -> Vec<Vec<BatchInfo>> {
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    let mut batches = Vec::new();
    for partition in 0..partitions {
        batches.push(client.batches(topic, partition).await.expect("fetch"));
    }
    batches
}

/// Every record batch of `topic`, partition after partition.
async fn batches_in(broker: &TestBroker, topic: &str, partitions: i32) -> Vec<BatchInfo> {
    partition_batches(broker, topic, partitions)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Checks that `topic`'s batches hold `events` records in all, compressed with `codec`.
async fn assert_codec(broker: &TestBroker, topic: &str, events: i64, codec: u8) {
    let batches = batches_in(broker, topic, 3).await;
    let records: i64 = batches.iter().map(|batch| i64::from(batch.records)).sum();
    assert_eq!(records, events, "{batches:?}");
    assert_compressed_with(&batches, codec);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_send_uncompressed_unless_asked_and_gzip_when_asked() {
    let broker = TestBroker::start().await;
    let app = generator_app(&broker);

    // Defaults, over both routes: codec 0 in every batch.
    let start = get(&app, "/start?num_devices=10&num_messages=200&pause_ms=0").await;
    assert_eq!(start.status, StatusCode::OK, "{start:?}");
    let start_url = start.json["status_url"].as_str().expect("status_url");
    let done = wait_for_state(&app, start_url, "completed").await;
    assert_eq!(done["params"]["compression"], "none", "{done}");
    let posted = post_json(
        &app,
        "/api/v1/generator/jobs",
        r#"{"num_devices": 10, "num_messages": 150, "pause_ms": 0, "topic": "plain"}"#,
    )
    .await;
    assert_eq!(posted.status, StatusCode::CREATED, "{posted:?}");
    assert_eq!(posted.json["params"]["compression"], "none");
    let url = format!("/api/v1/generator/jobs/{}", posted.json["id"]);
    wait_for_state(&app, &url, "completed").await;
    assert_codec(&broker, "device-events", 200, 0).await;
    assert_codec(&broker, "plain", 150, 0).await;

    // gzip when asked, over both routes: codec 1 in every batch, and echoed in the job.
    let gzip = post_json(
        &app,
        "/api/v1/generator/jobs",
        r#"{"num_devices": 10, "num_messages": 300, "pause_ms": 0, "topic": "zipped", "compression": "gzip"}"#,
    )
    .await;
    assert_eq!(gzip.status, StatusCode::CREATED, "{gzip:?}");
    assert_eq!(gzip.json["params"]["compression"], "gzip");
    let url = format!("/api/v1/generator/jobs/{}", gzip.json["id"]);
    let done = wait_for_state(&app, &url, "completed").await;
    assert_eq!(done["params"]["compression"], "gzip", "{done}");
    assert_codec(&broker, "zipped", 300, 1).await;

    // /start writes to device-events, which already holds the 200 uncompressed records: the
    // new ones start at each partition's end.
    let ends: Vec<i64> = partition_batches(&broker, "device-events", 3)
        .await
        .iter()
        .map(|batches| batches.last().map_or(0, |batch| batch.last_offset + 1))
        .collect();
    let start = get(
        &app,
        "/start?num_devices=10&num_messages=100&pause_ms=0&compression=gzip",
    )
    .await;
    assert_eq!(start.status, StatusCode::OK, "{start:?}");
    let start_url = start.json["status_url"].as_str().expect("status_url");
    wait_for_state(&app, start_url, "completed").await;
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for (batches, end) in partition_batches(&broker, "device-events", 3)
        .await
        .into_iter()
        .zip(ends)
    {
        for batch in batches {
            if batch.base_offset < end {
                first.push(batch);
            } else {
                second.push(batch);
            }
        }
    }
    let records = |batches: &[BatchInfo]| -> i64 {
        batches.iter().map(|batch| i64::from(batch.records)).sum()
    };
    assert_eq!(
        (records(&first), records(&second)),
        (200, 100),
        "{second:?}"
    );
    assert_compressed_with(&first, 0);
    assert_compressed_with(&second, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_sends_every_event_and_reports_the_job() {
    let broker = TestBroker::start().await;
    let app = generator_app(&broker);

    let answer = get(
        &app,
        "/start?num_devices=20&num_messages=300&pause_ms=0&seed=7",
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let job_id = answer.json["job_id"].as_u64().expect("job_id");
    assert_eq!(answer.json["started"], true);
    let status_url = format!("/api/v1/generator/jobs/{job_id}");
    assert_eq!(answer.json["status_url"], status_url.as_str());

    let job = wait_for_state(&app, &status_url, "completed").await;
    assert_eq!(job["id"], job_id);
    assert_eq!(job["sent"], 300, "{job}");
    assert_eq!(job["failed"], 0, "{job}");
    assert_eq!(job["progress"], 1.0, "{job}");
    assert_eq!(job["params"]["seed"], 7);
    assert_eq!(job["params"]["topic"], "device-events");
    let distinct = job["distinct_ips"].as_u64().expect("distinct_ips");
    assert!((1..=20).contains(&distinct), "{job}");
    assert_eq!(records_in(&broker, "device-events", 3).await, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_created_listed_and_cancelled() {
    let broker = TestBroker::start().await;
    let app = generator_app(&broker);

    let quick = post_json(
        &app,
        "/api/v1/generator/jobs",
        r#"{"num_devices": 5, "num_messages": 50, "pause_ms": 0, "topic": "api-jobs"}"#,
    )
    .await;
    assert_eq!(quick.status, StatusCode::CREATED, "{quick:?}");
    let quick_id = quick.json["id"].as_u64().expect("id");
    let location = quick.headers.get("location").expect("Location header");
    let quick_url = format!("/api/v1/generator/jobs/{quick_id}");
    assert_eq!(location, quick_url.as_str());
    let done = wait_for_state(&app, &quick_url, "completed").await;
    assert_eq!(
        (done["sent"].as_u64(), done["failed"].as_u64()),
        (Some(50), Some(0))
    );
    assert_eq!(done["eta_secs"], Value::Null, "{done}");
    assert_eq!(records_in(&broker, "api-jobs", 3).await, 50);

    // Paced to 20 events a second: it is still running when cancelled.
    let slow = post_json(
        &app,
        "/api/v1/generator/jobs",
        r#"{"num_devices": 5, "num_messages": 100000, "rate": 20, "topic": "api-jobs"}"#,
    )
    .await;
    assert_eq!(slow.status, StatusCode::CREATED, "{slow:?}");
    let slow_id = slow.json["id"].as_u64().expect("id");
    assert_eq!(
        slow.json["params"]["pause_ms"], 0,
        "a rate drops the default pause"
    );

    // 20 events a second for 100,000: once some are acknowledged, about 5,000 s are left.
    let slow_url = format!("/api/v1/generator/jobs/{slow_id}");
    let measured = poll_until(&app, &slow_url, JOB_TIMEOUT, |job| {
        job["sent"].as_u64().is_some_and(|sent| sent >= 10) && job["eta_secs"].is_u64()
    })
    .await;
    let eta = measured["eta_secs"].as_u64().expect("eta_secs");
    assert!((2_000..=10_000).contains(&eta), "{measured}");

    let list = get(&app, "/api/v1/generator/jobs").await;
    let ids: Vec<u64> = list.json["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|job| job["id"].as_u64())
        .collect();
    assert_eq!(ids, vec![slow_id, quick_id], "newest first");

    let cancel_url = format!("{slow_url}/cancel");
    let cancelled = send(&app, request(Method::POST, &cancel_url)).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{cancelled:?}");
    assert_eq!(cancelled.json["id"], slow_id);
    let ended = wait_for_state(&app, &slow_url, "cancelled").await;
    let sent = ended["sent"].as_u64().expect("sent");
    assert!(sent < 100_000, "{ended}");
    assert_eq!(
        ended["eta_secs"],
        Value::Null,
        "an ended job has no ETA: {ended}"
    );

    // Deleting forgets the job; its final state is gone with it.
    let deleted = send(&app, request(Method::DELETE, &slow_url)).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{deleted:?}");
    assert_error(
        &get(&app, &slow_url).await,
        StatusCode::NOT_FOUND,
        "no generator job",
    );

    for method in [Method::DELETE, Method::POST] {
        let uri = if method == Method::POST {
            "/api/v1/generator/jobs/99/cancel"
        } else {
            "/api/v1/generator/jobs/99"
        };
        let unknown = send(&app, request(method, uri)).await;
        assert_error(&unknown, StatusCode::NOT_FOUND, "no generator job 99");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_an_ended_job_leaves_it_as_it_was() {
    let broker = TestBroker::start().await;
    let app = generator_app(&broker);
    let job = post_json(
        &app,
        "/api/v1/generator/jobs",
        r#"{"num_devices": 3, "num_messages": 10, "pause_ms": 0, "topic": "api-ended"}"#,
    )
    .await;
    let url = format!("/api/v1/generator/jobs/{}", job.json["id"]);
    wait_for_state(&app, &url, "completed").await;
    let cancelled = send(&app, request(Method::POST, &format!("{url}/cancel"))).await;
    assert_eq!(cancelled.json["state"], "completed", "{cancelled:?}");
    assert_eq!(get(&app, &url).await.json["state"], "completed");
}
