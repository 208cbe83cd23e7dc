//! The router without a broker: errors and fallbacks, the timestamp route, services that are
//! absent, parameter validation that happens before any Kafka call, and the spec against
//! what the router serves.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use common::{assert_error, get, post_json, request, send};
use freshet_api::topics::MAX_RECORDS_BODY_BYTES;
use freshet_api::{app, metrics_app, AppState, Metrics, MAX_BODY_BYTES};
use freshet_services::cluster::Cluster;
use freshet_services::generator::GeneratorJobs;
use freshet_services::KafkaConfig;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use serde_json::{json, Value};

fn bare_app() -> Router {
    app(AppState::new())
}

/// Generator jobs pointed at a port nothing listens on: only requests refused before any
/// Kafka call may be sent to it.
fn app_with_unreachable_generator() -> Router {
    let jobs = GeneratorJobs::new(KafkaConfig::new("127.0.0.1:9"));
    app(AppState::new().with_generator(jobs))
}

/// A cluster client pointed at a port nothing listens on: only requests refused before any
/// Kafka call may be sent to it (one that reached Kafka would time out as a 503).
fn app_with_unreachable_cluster() -> Router {
    let cluster = Cluster::new(&KafkaConfig::new("127.0.0.1:9"))
        .expect("clients are created without connecting");
    app(AppState::new().with_cluster(cluster))
}

#[tokio::test]
async fn timestamp_is_normalised_from_text_numbers_and_json_strings() {
    let app = bare_app();
    let cases = [
        (
            "2024-09-18T13:59:02.123456Z",
            "2024-09-18T13:59:02.123456Z",
            "2024-09-18T13:59:02.123Z",
            1_726_667_942_123_i64,
        ),
        (
            "2021-12-03%2016:15:30.2359%2B02:00",
            "2021-12-03 16:15:30.2359+02:00",
            "2021-12-03T14:15:30.235Z",
            1_638_540_930_235,
        ),
        (
            "1726667942",
            "1726667942",
            "2024-09-18T13:59:02.000Z",
            1_726_667_942_000,
        ),
        (
            "%221726668850124%22",
            "\"1726668850124\"",
            "2024-09-18T14:14:10.124Z",
            1_726_668_850_124,
        ),
    ];
    for (encoded, input, normalized, unix_ms) in cases {
        let answer = get(&app, &format!("/api/v1/timestamp?value={encoded}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(
            answer.json,
            json!({"input": input, "normalized": normalized, "unix_ms": unix_ms})
        );
    }
}

#[tokio::test]
async fn invalid_or_missing_timestamp_is_a_400_with_the_reason() {
    let app = bare_app();
    let invalid = get(&app, "/api/v1/timestamp?value=2023-02-30T00:00:00Z").await;
    assert_error(
        &invalid,
        StatusCode::BAD_REQUEST,
        "\"2023-02-30T00:00:00Z\" is not a timestamp: February 30 does not exist in 2023 at byte 8",
    );
    let boolean = get(&app, "/api/v1/timestamp?value=true").await;
    assert_error(
        &boolean,
        StatusCode::BAD_REQUEST,
        "\"true\" is not a timestamp",
    );
    let missing = get(&app, "/api/v1/timestamp").await;
    assert_error(
        &missing,
        StatusCode::BAD_REQUEST,
        "missing query parameter value",
    );
    let unknown = get(&app, "/api/v1/timestamp?value=1&extra=2").await;
    assert_error(&unknown, StatusCode::BAD_REQUEST, "unknown field `extra`");
    let repeated = get(&app, "/api/v1/timestamp?value=1&value=2").await;
    assert_error(
        &repeated,
        StatusCode::BAD_REQUEST,
        "duplicate field `value`",
    );
}

#[tokio::test]
async fn unknown_route_and_wrong_method_answer_json() {
    let app = bare_app();
    let missing = get(&app, "/no/such/route").await;
    assert_error(
        &missing,
        StatusCode::NOT_FOUND,
        "no route for GET /no/such/route",
    );
    let wrong = send(&app, request(Method::DELETE, "/healthz")).await;
    assert_error(
        &wrong,
        StatusCode::METHOD_NOT_ALLOWED,
        "method DELETE is not allowed on /healthz",
    );
    let allow = wrong.headers.get("allow").expect("Allow header");
    assert!(allow.to_str().expect("ascii").contains("GET"), "{allow:?}");
}

#[tokio::test]
async fn declared_oversized_body_is_a_413_on_any_route() {
    let app = bare_app();
    let request = Request::builder()
        .method(Method::GET)
        .uri("/healthz")
        .header("content-length", (MAX_BODY_BYTES + 1).to_string())
        .body(Body::from(vec![b'x'; MAX_BODY_BYTES + 1]))
        .expect("request");
    let answer = send(&app, request).await;
    assert_error(
        &answer,
        StatusCode::PAYLOAD_TOO_LARGE,
        "the request body is 65537 bytes, more than the 65536 allowed",
    );
}

#[tokio::test]
async fn undeclared_oversized_body_is_cut_off_at_the_cap_with_a_json_413() {
    let app = app_with_unreachable_generator();
    // No Content-Length: the body limit applies while the JSON extractor reads it.
    let mut body = b"{\"topic\": \"".to_vec();
    body.extend(std::iter::repeat_n(b'a', MAX_BODY_BYTES));
    body.extend(b"\"}");
    let request = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/generator/jobs")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("request");
    let answer = send(&app, request).await;
    assert_error(
        &answer,
        StatusCode::PAYLOAD_TOO_LARGE,
        "length limit exceeded",
    );
}

#[tokio::test]
async fn tracker_routes_answer_503_without_a_tracker() {
    let app = bare_app();
    for uri in [
        "/api/v1/unique-ips",
        "/api/v1/unique-ips/windows",
        "/api/v1/unique-ips/error-codes",
        "/api/v1/tracker/partitions",
        "/is-node-active",
        "/number-ips",
        "/global-number-ips",
        "/api/v1/unique_ip_count",
        "/unique_ip_count",
    ] {
        let answer = get(&app, uri).await;
        assert_eq!(
            answer.json,
            json!({"error": "the tracker is not running in this process"}),
            "{uri}"
        );
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
    }
}

#[tokio::test]
async fn generator_routes_answer_503_without_a_generator() {
    let app = bare_app();
    let answers = [
        get(&app, "/start").await,
        get(&app, "/api/v1/generator/jobs").await,
        get(&app, "/api/v1/generator/jobs/1").await,
        send(&app, request(Method::DELETE, "/api/v1/generator/jobs/1")).await,
        send(
            &app,
            request(Method::POST, "/api/v1/generator/jobs/1/cancel"),
        )
        .await,
        post_json(&app, "/api/v1/generator/jobs", "{}").await,
    ];
    for answer in answers {
        assert_error(
            &answer,
            StatusCode::SERVICE_UNAVAILABLE,
            "the generator is not running in this process",
        );
    }
}

#[tokio::test]
async fn start_refuses_bad_parameters_with_the_reason() {
    let app = app_with_unreachable_generator();
    let cases = [
        ("num_devices=-1", "num_devices: invalid digit"),
        ("num_messages=lots", "num_messages: invalid digit"),
        ("pause_ms=1.5", "pause_ms: invalid digit"),
        ("rate=fast", "rate: invalid float"),
        ("num_devices=0&num_messages=10", "num_devices is 0"),
        ("num_devices=0&num_messages=0", "num_devices is 0"),
        (
            "rate=0",
            "rate 0.0 must be a number of events per second from 0.01",
        ),
        ("rate=1e-300", "rate 1e-300 must be"),
        ("rate=inf", "rate inf must be"),
        ("rate=NaN", "rate NaN must be"),
        (
            "num_devices=100000000000",
            "num_devices 100000000000 is more than the 10000000 allowed",
        ),
        (
            "num_messages=99999999999",
            "num_messages 99999999999 is more than the 1000000000 allowed",
        ),
        ("num_device=5", "unknown field `num_device`"),
        (
            "compression=lz5",
            "unknown compression \"lz5\": expected none, gzip, snappy, lz4 or zstd",
        ),
        ("compression=LZ4", "unknown compression \"LZ4\""),
        ("compression=", "unknown compression \"\""),
    ];
    for (query, reason) in cases {
        let answer = get(&app, &format!("/start?{query}")).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, reason);
    }
}

/// Every codec is taken by name, and the job reports the one it runs with; without one it
/// is `none`. The generator here reaches no broker: the jobs are only started and read back.
#[tokio::test]
async fn jobs_take_each_compression_and_default_to_none() {
    let app = app_with_unreachable_generator();
    let body = r#"{"num_devices": 1, "num_messages": 1}"#;
    let created = post_json(&app, "/api/v1/generator/jobs", body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    assert_eq!(created.json["params"]["compression"], "none");
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let body = format!(r#"{{"num_devices": 1, "num_messages": 1, "compression": "{codec}"}}"#);
        let created = post_json(&app, "/api/v1/generator/jobs", &body).await;
        assert_eq!(created.status, StatusCode::CREATED, "{codec}: {created:?}");
        assert_eq!(created.json["params"]["compression"], codec);
        let url = created.headers["location"].to_str().expect("location");
        assert_eq!(get(&app, url).await.json["params"]["compression"], codec);
        let started = get(&app, &format!("/start?num_messages=1&compression={codec}")).await;
        assert_eq!(started.status, StatusCode::OK, "{codec}: {started:?}");
        let job = get(&app, started.json["status_url"].as_str().expect("url")).await;
        assert_eq!(job.json["params"]["compression"], codec, "{job:?}");
    }
    let listed = get(&app, "/api/v1/generator/jobs").await;
    for job in listed.json["jobs"].as_array().expect("jobs") {
        assert!(job["params"]["compression"].is_string(), "{job}");
        assert!(
            job.get("eta_secs").is_some(),
            "eta_secs is always present, null when unknown: {job}"
        );
    }
}

#[tokio::test]
async fn job_creation_refuses_bad_bodies_with_the_reason() {
    let app = app_with_unreachable_generator();
    let cases = [
        ("not json", "expected ident"),
        (r#"{"num_device": 5}"#, "unknown field `num_device`"),
        (r#"{"num_messages": -1}"#, "num_messages: invalid value"),
        (r#"{"num_devices": 0}"#, "num_devices is 0"),
        (r#"{"topic": "a b"}"#, "contains ' '"),
        (r#"{"topic": null}"#, "topic: invalid type: null"),
        (
            r#"{"num_messages": null}"#,
            "num_messages: invalid type: null",
        ),
        // Paced this slowly, the next event would be due after 1e300 seconds: refused
        // instead of panicking the job's thread.
        (
            r#"{"num_devices": 1, "num_messages": 3, "rate": 1e-300}"#,
            "rate 1e-300 must be a number of events per second from 0.01 to 10000000",
        ),
        (r#"{"rate": 0}"#, "rate 0.0 must be"),
        (
            r#"{"compression": "lz5"}"#,
            "compression: unknown compression \"lz5\": expected none, gzip, snappy, lz4 or zstd",
        ),
        (r#"{"compression": "GZIP"}"#, "unknown compression \"GZIP\""),
        (r#"{"compression": 1}"#, "expected a compression name"),
        (
            r#"{"compression": null}"#,
            "compression: invalid type: null",
        ),
    ];
    for (body, reason) in cases {
        let answer = post_json(&app, "/api/v1/generator/jobs", body).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, reason);
    }
    let untyped = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/generator/jobs")
        .body(Body::from("{}"))
        .expect("request");
    let answer = send(&app, untyped).await;
    assert_error(
        &answer,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "Content-Type: application/json",
    );
    let bad_id = get(&app, "/api/v1/generator/jobs/first").await;
    assert_error(&bad_id, StatusCode::BAD_REQUEST, "Cannot parse");
    let no_job = get(&app, "/api/v1/generator/jobs/42").await;
    assert_error(&no_job, StatusCode::NOT_FOUND, "no generator job 42");
}

#[tokio::test]
async fn topic_and_group_routes_answer_503_without_a_cluster_client() {
    let app = bare_app();
    let answers = [
        get(&app, "/api/v1/topics").await,
        post_json(&app, "/api/v1/topics", r#"{"name": "t"}"#).await,
        get(&app, "/api/v1/topics/t").await,
        send(&app, request(Method::DELETE, "/api/v1/topics/t")).await,
        post_json(&app, "/api/v1/topics/t/records", r#"{"records": []}"#).await,
        get(&app, "/api/v1/topics/t/partitions/0/records").await,
        get(&app, "/api/v1/groups").await,
        get(&app, "/api/v1/groups/g").await,
    ];
    for answer in answers {
        assert_error(
            &answer,
            StatusCode::SERVICE_UNAVAILABLE,
            "the cluster client is not running in this process",
        );
    }
}

#[tokio::test]
async fn topic_creation_refuses_bad_bodies_before_asking_the_cluster() {
    let app = app_with_unreachable_cluster();
    let long_name = "a".repeat(250);
    let cases = [
        (r#"{"name": "a b"}"#.to_string(), "contains ' '"),
        (r#"{"name": ".."}"#.to_string(), "is not a valid topic name"),
        (r#"{"name": ""}"#.to_string(), "topic must not be empty"),
        (
            format!(r#"{{"name": "{long_name}"}}"#),
            "250 characters long, more than Kafka's 249",
        ),
        (
            r#"{"name": "t", "partitions": 0}"#.to_string(),
            "partitions 0 is out of range: a topic has 1 to 1000",
        ),
        (
            r#"{"name": "t", "partitions": 1001}"#.to_string(),
            "partitions 1001 is out of range",
        ),
        (
            r#"{"name": "t", "replication_factor": 10001}"#.to_string(),
            "replication_factor 10001 is invalid",
        ),
        (
            r#"{"name": "t", "replication_factor": 0}"#.to_string(),
            "replication_factor 0 is invalid",
        ),
        (
            r#"{"name": "t", "configs": {"retention.ms": 5}}"#.to_string(),
            "configs.retention.ms: invalid type: integer `5`, expected a string",
        ),
        (
            r#"{"name": "t", "replicas": 1}"#.to_string(),
            "unknown field `replicas`",
        ),
        (r#"{"partitions": 1}"#.to_string(), "missing field `name`"),
    ];
    for (body, reason) in cases {
        let answer = post_json(&app, "/api/v1/topics", &body).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, reason);
    }
}

#[tokio::test]
async fn topic_and_group_paths_and_queries_are_checked_before_asking_the_cluster() {
    let app = app_with_unreachable_cluster();
    let cases = [
        (
            "/api/v1/topics?internal=maybe",
            "internal: provided string was not `true` or `false`",
        ),
        ("/api/v1/topics?hidden=true", "unknown field `hidden`"),
        ("/api/v1/topics/a%20b", "contains ' '"),
        ("/api/v1/topics/a%20b/partitions/0/records", "contains ' '"),
        (
            "/api/v1/topics/t/partitions/-1/records",
            "partition -1 is negative",
        ),
        ("/api/v1/topics/t/partitions/one/records", "Cannot parse"),
        (
            "/api/v1/topics/t/partitions/0/records?limit=0",
            "limit 0 is out of range: ask for 1 to 1000 records",
        ),
        (
            "/api/v1/topics/t/partitions/0/records?limit=1001",
            "limit 1001 is out of range",
        ),
        (
            "/api/v1/topics/t/partitions/0/records?offset=-3",
            "offset -3 is negative",
        ),
        (
            "/api/v1/topics/t/partitions/0/records?from=3",
            "unknown field `from`",
        ),
        ("/api/v1/groups/a%01b", "contains control characters"),
    ];
    for (uri, reason) in cases {
        let answer = get(&app, uri).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, reason);
    }
    let delete = send(&app, request(Method::DELETE, "/api/v1/topics/a%2Fb")).await;
    assert_error(&delete, StatusCode::BAD_REQUEST, "contains '/'");
}

#[tokio::test]
async fn produce_requests_are_checked_before_asking_the_cluster() {
    let app = app_with_unreachable_cluster();
    let too_many = json!({"records": vec![json!({"value": "v"}); 501]}).to_string();
    let cases = [
        (
            r#"{"records": []}"#.to_string(),
            "records is empty: send 1 to 500 records",
        ),
        (
            too_many,
            "501 records is more than the 500 one request may send",
        ),
        (
            r#"{"records": [{"value": 1}, {"value": 2, "partition": -1}]}"#.to_string(),
            "partition -1 is negative",
        ),
        (
            r#"{"records": [{"value": 1, "timestamp": 5}]}"#.to_string(),
            "unknown field `timestamp`",
        ),
        (
            r#"{"records": [{"key": "k", "headers": {"h": 1}}]}"#.to_string(),
            "invalid type: integer `1`, expected a string",
        ),
        ("{}".to_string(), "missing field `records`"),
    ];
    for (body, reason) in cases {
        let answer = post_json(&app, "/api/v1/topics/t/records", &body).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, reason);
    }
    let bad_topic = post_json(
        &app,
        "/api/v1/topics/a%20b/records",
        r#"{"records": [{"value": 1}]}"#,
    )
    .await;
    assert_error(&bad_topic, StatusCode::BAD_REQUEST, "contains ' '");
}

/// `{"records": []}` padded with spaces to `size` bytes: valid JSON the route refuses (400)
/// once it has read it, so a 400 shows the body got through the size checks.
fn padded_empty_records(size: usize) -> Vec<u8> {
    let mut body = b"{\"records\": []".to_vec();
    body.resize(size - 1, b' ');
    body.push(b'}');
    body
}

fn records_request(body: Vec<u8>, declare_length: bool) -> Request<Body> {
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/topics/t/records")
        .header("content-type", "application/json");
    if declare_length {
        builder = builder.header("content-length", body.len().to_string());
    }
    builder.body(Body::from(body)).expect("request")
}

#[tokio::test]
async fn the_records_route_takes_bodies_up_to_1_mib() {
    let app = app_with_unreachable_cluster();
    for declare_length in [true, false] {
        let within = records_request(padded_empty_records(MAX_RECORDS_BODY_BYTES), declare_length);
        let answer = send(&app, within).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "records is empty");
    }
    let over = MAX_RECORDS_BODY_BYTES + 1;
    let declared = send(&app, records_request(padded_empty_records(over), true)).await;
    assert_error(
        &declared,
        StatusCode::PAYLOAD_TOO_LARGE,
        "the request body is 1048577 bytes, more than the 1048576 allowed",
    );
    let undeclared = send(&app, records_request(padded_empty_records(over), false)).await;
    assert_error(
        &undeclared,
        StatusCode::PAYLOAD_TOO_LARGE,
        "length limit exceeded",
    );
    // Every other route keeps the 64 KiB cap.
    let create = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/topics")
        .header("content-type", "application/json")
        .header("content-length", (MAX_BODY_BYTES + 1).to_string())
        .body(Body::from(vec![b' '; MAX_BODY_BYTES + 1]))
        .expect("request");
    assert_error(
        &send(&app, create).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "more than the 65536 allowed",
    );
}

#[tokio::test]
async fn healthz_is_ok() {
    let answer = get(&bare_app(), "/healthz").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json, json!({"status": "ok"}));
}

#[tokio::test]
async fn metrics_without_services_are_the_process_metrics_in_prometheus_text() {
    let answer = get(&bare_app(), "/metrics").await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(
        answer.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/plain; version=0.0.4; charset=utf-8"[..])
    );
    let version = env!("CARGO_PKG_VERSION");
    let lines: Vec<&str> = answer.text.lines().collect();
    let build_info = format!("freshet_build_info{{version=\"{version}\"}} 1");
    for expected in [
        "# TYPE freshet_build_info gauge",
        build_info.as_str(),
        "# TYPE freshet_process_uptime_seconds gauge",
    ] {
        assert!(lines.contains(&expected), "{expected} in:\n{}", answer.text);
    }
    assert!(
        !answer.text.contains("freshet_tracker_") && !answer.text.contains("freshet_guard_"),
        "no service runs, so none reports: {}",
        answer.text
    );
    assert!(
        !answer.text.contains("# EOF"),
        "OpenMetrics-only lines are left out"
    );
}

/// A component outside the API, reporting through a collector the binary registers.
#[derive(Debug)]
struct Widgets;

impl Collector for Widgets {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        freshet_api::metrics::encode::counters(
            &mut encoder,
            "test_widgets",
            "Widgets made, per kind.",
            "kind",
            [("plain", 3), ("quoted \"odd\" \\ one", 4)],
        )
    }
}

#[tokio::test]
async fn registered_collectors_are_scraped_with_counters_named_like_their_samples() {
    let metrics = Metrics::new();
    metrics.register(Widgets);
    let state = AppState::new().with_metrics(metrics);
    for app in [app(state.clone()), metrics_app(state)] {
        let answer = get(&app, "/metrics").await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        let lines: Vec<&str> = answer.text.lines().collect();
        for expected in [
            "# HELP test_widgets_total Widgets made, per kind.",
            "# TYPE test_widgets_total counter",
            "test_widgets_total{kind=\"plain\"} 3",
            "test_widgets_total{kind=\"quoted \\\"odd\\\" \\\\ one\"} 4",
        ] {
            assert!(lines.contains(&expected), "{expected} in:\n{}", answer.text);
        }
        assert!(
            answer.text.contains("freshet_build_info"),
            "{}",
            answer.text
        );
    }
}

#[tokio::test]
async fn the_metrics_app_serves_nothing_but_metrics() {
    let app = metrics_app(AppState::new());
    assert_eq!(get(&app, "/metrics").await.status, StatusCode::OK);
    let health = get(&app, "/healthz").await;
    assert_error(&health, StatusCode::NOT_FOUND, "no route for GET /healthz");
}

async fn served_spec(app: &Router) -> Value {
    let answer = get(app, "/api/openapi.json").await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(
        answer.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    answer.json
}

/// Every `(method, path)` operation of the spec, methods upper-case.
fn operations(spec: &Value) -> Vec<(Method, String, Value)> {
    let paths = spec["paths"].as_object().expect("paths");
    let mut operations = Vec::new();
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("path item") {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            operations.push((method, path.clone(), operation.clone()));
        }
    }
    operations
}

#[tokio::test]
async fn spec_is_openapi_3_1_titled_freshet_with_this_version() {
    let spec = served_spec(&bare_app()).await;
    assert_eq!(spec["openapi"], "3.1.0");
    assert_eq!(spec["info"]["title"], "Freshet");
    assert_eq!(spec["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        spec,
        serde_json::to_value(freshet_api::openapi::spec()).expect("spec")
    );
    let documented: BTreeSet<String> = operations(&spec)
        .into_iter()
        .map(|(method, path, _)| format!("{method} {path}"))
        .collect();
    for expected in [
        "GET /api/v1/timestamp",
        "GET /api/v1/unique-ips",
        "GET /api/v1/unique-ips/windows",
        "GET /api/v1/unique-ips/error-codes",
        "GET /api/v1/tracker/partitions",
        "GET /is-node-active",
        "GET /number-ips",
        "GET /global-number-ips",
        "GET /api/v1/unique_ip_count",
        "GET /unique_ip_count",
        "GET /start",
        "POST /api/v1/generator/jobs",
        "GET /api/v1/generator/jobs",
        "GET /api/v1/generator/jobs/{id}",
        "DELETE /api/v1/generator/jobs/{id}",
        "POST /api/v1/generator/jobs/{id}/cancel",
        "POST /register",
        "POST /login",
        "GET /blocked",
        "POST /api/v1/register",
        "POST /api/v1/login",
        "GET /api/v1/blocked",
        "DELETE /api/v1/blocked/{user}",
        "GET /api/v1/topics",
        "POST /api/v1/topics",
        "GET /api/v1/topics/{name}",
        "DELETE /api/v1/topics/{name}",
        "POST /api/v1/topics/{name}/records",
        "GET /api/v1/topics/{name}/partitions/{partition}/records",
        "GET /api/v1/groups",
        "GET /api/v1/groups/{group_id}",
        "GET /api/openapi.json",
        "POST /api/v1/auth/token",
        "GET /api/v1/auth/whoami",
        "GET /healthz",
        "GET /metrics",
    ] {
        assert!(
            documented.contains(expected),
            "{expected} is not in {documented:?}"
        );
    }
}

#[tokio::test]
async fn every_operation_has_a_summary_and_resolvable_schemas() {
    let spec = served_spec(&bare_app()).await;
    for (method, path, operation) in operations(&spec) {
        let summary = operation["summary"].as_str().unwrap_or_default();
        assert!(!summary.is_empty(), "{method} {path} has no summary");
        assert!(
            operation["responses"]
                .as_object()
                .is_some_and(|r| !r.is_empty()),
            "{method} {path} documents no response"
        );
    }
    let mut refs = Vec::new();
    collect_refs(&spec, &mut refs);
    assert!(!refs.is_empty(), "the spec uses component schemas");
    for reference in refs {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {reference}"));
        assert!(
            spec["components"]["schemas"].get(name).is_some(),
            "{reference} does not resolve"
        );
    }
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                refs.push(reference.clone());
            }
            map.values().for_each(|v| collect_refs(v, refs));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}

/// Each documented operation is served (not the 404 or 405 fallback), and answers with a
/// status its documentation lists.
#[tokio::test]
async fn every_documented_operation_is_served_with_a_documented_status() {
    let app = bare_app();
    let spec = served_spec(&app).await;
    for (method, path, operation) in operations(&spec) {
        let uri = path.replace("{id}", "1");
        let answer = send(&app, request(method.clone(), &uri)).await;
        let status = answer.status.as_u16().to_string();
        assert!(
            operation["responses"].get(&status).is_some(),
            "{method} {path} answered {status}, which its documentation does not list: {answer:?}"
        );
        let fallback = answer.json["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("no route for") || e.starts_with("method "));
        assert!(
            !fallback,
            "{method} {path} is documented but not served: {answer:?}"
        );
    }
}

/// On every documented path, a method the spec does not list gets the 405 fallback: the
/// router serves nothing the spec leaves out.
#[tokio::test]
async fn undocumented_methods_on_documented_paths_are_not_served() {
    let app = bare_app();
    let spec = served_spec(&app).await;
    let documented: BTreeSet<(String, String)> = operations(&spec)
        .into_iter()
        .map(|(method, path, _)| (method.to_string(), path))
        .collect();
    let paths: BTreeSet<String> = documented.iter().map(|(_, path)| path.clone()).collect();
    for path in paths {
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            if documented.contains(&(method.to_string(), path.clone())) {
                continue;
            }
            let uri = path.replace("{id}", "1");
            let answer = send(&app, request(method.clone(), &uri)).await;
            assert_error(&answer, StatusCode::METHOD_NOT_ALLOWED, "is not allowed on");
        }
    }
}

/// The web console's module: its page and assets are not API routes and stay out of the spec.
const CONSOLE_MODULE: &str = "console.rs";

/// The modules allowed to mount routes with plain axum: they serve web pages (the console,
/// the interactive API docs), not the API, and stay out of the spec.
const PAGE_MODULES: [&str; 2] = [CONSOLE_MODULE, "docs.rs"];

/// Routes are mounted only through utoipa-axum's `routes!` (which documents them); a plain
/// axum `.route(...)` anywhere in the crate would serve a path the spec does not know. The
/// page modules are the documented exception (the console's is checked by the next test,
/// the docs' by tests/docs.rs).
#[test]
fn no_route_is_mounted_around_the_spec() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    for entry in std::fs::read_dir(&src).expect("src directory") {
        let path = entry.expect("entry").path();
        if path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| PAGE_MODULES.contains(&name))
        {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("source file");
        for needle in [
            ".route(",
            ".route_service(",
            ".nest(",
            ".nest_service(",
            ".fallback_service(",
        ] {
            if text.contains(needle) {
                offenders.push(format!("{} uses {needle}", path.display()));
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:?}");
}

/// The exception stays narrow: the console module mounts exactly `/` and `/assets/{*path}`,
/// both only for GET, and neither is in the spec.
#[tokio::test]
async fn the_console_mounts_only_its_page_and_assets_outside_the_spec() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(CONSOLE_MODULE);
    let text = std::fs::read_to_string(source).expect("console module");
    let mounted: Vec<&str> = text
        .split(".route(\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert_eq!(mounted, ["/", "/assets/{*path}"]);
    for needle in [".nest(", ".nest_service(", ".route_service(", ".fallback"] {
        assert!(!text.contains(needle), "the console module uses {needle}");
    }

    let app = bare_app();
    let spec = served_spec(&app).await;
    let documented: BTreeSet<String> = operations(&spec)
        .into_iter()
        .map(|(_, path, _)| path)
        .collect();
    assert!(!documented.contains("/"), "{documented:?}");
    assert!(
        documented.iter().all(|path| !path.starts_with("/assets/")),
        "{documented:?}"
    );
    for path in ["/", "/assets/console.css"] {
        let answer = send(&app, request(Method::POST, path)).await;
        assert_error(&answer, StatusCode::METHOD_NOT_ALLOWED, "is not allowed on");
    }
}

// The spec describes the server exactly (schemathesis `--checks all`, `.ci/schemathesis.sh`):
// each class of mismatch it found has a test here.

/// Every route taking a JSON body answers 415 to a body declared as something else, and
/// documents that answer and the 408 of a body sent too slowly.
#[tokio::test]
async fn every_json_body_route_documents_its_415() {
    let app = app_with_unreachable_cluster();
    let spec = served_spec(&app).await;
    let mut checked = 0;
    for (method, path, operation) in operations(&spec) {
        let takes_json = operation["requestBody"]["content"]
            .get("application/json")
            .is_some();
        if !takes_json {
            continue;
        }
        let uri = path.replace("{name}", "t").replace("{id}", "1");
        let request = Request::builder()
            .method(method.clone())
            .uri(&uri)
            .header("content-type", "text/plain")
            .body(Body::from("{}"))
            .expect("request");
        let answer = send(&app, request).await;
        let status = answer.status.as_u16().to_string();
        assert!(
            operation["responses"].get(&status).is_some(),
            "{method} {path} answered {status} to a text/plain body, which it does not \
             document: {answer:?}"
        );
        if answer.status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            checked += 1;
        }
        // Served over a socket, a body sent too slowly gets a 408 (tests/serve.rs).
        assert!(
            operation["responses"].get("408").is_some(),
            "{method} {path} takes a body but does not document its 408"
        );
    }
    // Topic creation and produce reach their JSON extractor without any service call.
    assert!(checked >= 2, "only {checked} routes answered 415");
}

/// A NUL in a config cannot be handed to the Kafka client: the request is refused as a 400
/// before the cluster is asked (it was a 503 "kafka: FFI nul error").
#[tokio::test]
async fn a_config_with_a_nul_is_a_400_not_a_cluster_error() {
    let app = app_with_unreachable_cluster();
    for configs in [json!({"a\u{0}b": "x"}), json!({"retention.ms": "1\u{0}"})] {
        let body = json!({"name": "t", "configs": configs}).to_string();
        let answer = post_json(&app, "/api/v1/topics", &body).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "contains a NUL character");
    }
}

/// Topic names in paths and bodies carry Kafka's rules in the spec, and every name the
/// pattern refuses the server refuses too, before asking the cluster.
#[tokio::test]
async fn topic_names_the_spec_refuses_are_refused() {
    let app = app_with_unreachable_cluster();
    let spec = served_spec(&app).await;
    let pattern = freshet_services::kafka::TOPIC_NAME_PATTERN;
    let mut named = 0;
    for (method, path, operation) in operations(&spec) {
        let parameters = operation["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for parameter in parameters.iter().filter(|p| p["name"] == "name") {
            assert_eq!(parameter["schema"]["pattern"], pattern, "{method} {path}");
            assert_eq!(parameter["schema"]["maxLength"], 249, "{method} {path}");
            named += 1;
        }
    }
    assert_eq!(
        named, 10,
        "describe, delete, produce, read, configs, partitions, purge, and the topic-wide \
         records, stream and export name a topic"
    );
    let body = &spec["components"]["schemas"]["NewTopic"]["properties"]["name"];
    assert_eq!(body["pattern"], pattern);
    let regex = regex::Regex::new(pattern).expect("pattern");
    for name in ["%C3%A9", "a%20b", "..", "a%00b", &"t".repeat(250)] {
        let decoded = name
            .replace("%C3%A9", "é")
            .replace("%20", " ")
            .replace("%00", "\0");
        assert!(!regex.is_match(&decoded), "{decoded:?}");
        let answer = get(&app, &format!("/api/v1/topics/{name}")).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{name}: {answer:?}");
    }
}

/// The body schemas mark what the server requires and bound what it bounds, so a schema-valid
/// body is not refused for a missing field or an out-of-range number.
#[tokio::test]
async fn body_schemas_require_and_bound_what_the_server_does() {
    let spec = served_spec(&bare_app()).await;
    let schemas = &spec["components"]["schemas"];
    for name in ["Login", "NewAccount"] {
        assert_eq!(schemas[name]["required"], json!(["user", "pass"]), "{name}");
    }
    let new_account = &schemas["NewAccount"]["properties"];
    assert_eq!(
        (
            &new_account["user"]["minLength"],
            &new_account["user"]["maxLength"]
        ),
        (&json!(3), &json!(64))
    );
    assert_eq!(schemas["NewTopic"]["required"], json!(["name"]));
    let params = &schemas["GeneratorParams"];
    assert_eq!(params["additionalProperties"], false);
    assert_eq!(
        (
            &params["properties"]["rate"]["minimum"],
            &params["properties"]["rate"]["maximum"]
        ),
        (&json!(0.01), &json!(10_000_000))
    );
    assert_eq!(params["properties"]["num_devices"]["minimum"], 1);
    // Nullable only where null means "absent": rate and seed.
    assert_eq!(
        params["properties"]["rate"]["type"],
        json!(["number", "null"])
    );
    assert_eq!(params["properties"]["topic"]["type"], "string");
}

/// The enum of codec names a schema names, directly or through `$ref`, `allOf` or `oneOf`.
fn codec_names(spec: &Value, schema: &Value) -> Vec<String> {
    if let Some(names) = schema["enum"].as_array() {
        return names
            .iter()
            .filter_map(|name| name.as_str().map(str::to_string))
            .collect();
    }
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        return codec_names(spec, &spec["components"]["schemas"][name]);
    }
    ["allOf", "oneOf", "anyOf"]
        .iter()
        .filter_map(|key| schema[*key].as_array())
        .flatten()
        .flat_map(|part| codec_names(spec, part))
        .collect()
}

/// The generator's compression, the jobs' ETA and the old tracker nodes' vote fields are in
/// the spec where the routes take or answer them.
#[tokio::test]
async fn spec_documents_compression_eta_and_the_vote_fields() {
    let spec = served_spec(&bare_app()).await;
    let schemas = &spec["components"]["schemas"];
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"]
        .map(String::from)
        .to_vec();

    let compression = &schemas["GeneratorParams"]["properties"]["compression"];
    assert_eq!(codec_names(&spec, compression), codecs, "{compression}");
    assert_eq!(compression["default"], "none", "{compression}");
    let start = spec["paths"]["/start"]["get"]["parameters"]
        .as_array()
        .expect("/start parameters");
    let query = start
        .iter()
        .find(|p| p["name"] == "compression")
        .expect("/start takes compression");
    assert_eq!(query["in"], "query");
    assert_ne!(query["required"], true);
    assert_eq!(codec_names(&spec, &query["schema"]), codecs, "{query}");

    let eta = &schemas["JobStatus"]["properties"]["eta_secs"];
    assert_eq!(eta["type"], json!(["integer", "null"]), "{eta}");
    assert!(
        eta["description"]
            .as_str()
            .is_some_and(|d| d.contains("seconds")),
        "{eta}"
    );
    let list = &spec["paths"]["/api/v1/generator/jobs"]["get"];
    let listed = list["responses"]["200"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(
        listed.contains("memory") && listed.contains("restart"),
        "{list}"
    );
    assert!(
        list["description"]
            .as_str()
            .is_some_and(|d| d.contains("memory only, not persisted")),
        "{list}"
    );

    let global = &schemas["GlobalCount"];
    for field in [
        "number",
        "voted_by",
        "voting_nodes",
        "votes",
        "nodes",
        "exact",
    ] {
        assert!(
            global["properties"][field]["description"].is_string(),
            "{field}: {global}"
        );
        assert!(
            global["required"]
                .as_array()
                .is_some_and(|required| required.contains(&json!(field))),
            "{field} is always answered: {global}"
        );
    }
    assert_eq!(global["properties"]["voted_by"]["type"], "array");
    assert_eq!(global["properties"]["votes"]["type"], "object");
    assert_eq!(
        global["properties"]["votes"]["additionalProperties"]["type"],
        "integer"
    );
}

/// The spec's topic configs are configs of the embedded broker (which takes every topic
/// config of Kafka 4.x; the spec documents the common ones), and every value their patterns
/// allow the broker takes.
#[test]
fn spec_topic_configs_are_the_brokers() {
    use freshet_broker::topics::{TopicConfigs, TOPIC_CONFIGS};
    use freshet_services::cluster::view::TOPIC_CONFIG_VALUES;

    let spec_names: BTreeSet<&str> = TOPIC_CONFIG_VALUES.iter().map(|(n, _, _)| *n).collect();
    let broker_names: BTreeSet<&str> = TOPIC_CONFIGS.iter().map(|def| def.name).collect();
    assert!(
        spec_names.is_subset(&broker_names),
        "{:?} are not broker configs",
        spec_names.difference(&broker_names).collect::<Vec<_>>()
    );
    let defaults = freshet_broker::BrokerConfig::new("unused").log_defaults;
    let samples = [
        "-1",
        "0",
        "1",
        "7",
        "1023",
        "1024",
        "1025",
        "99999",
        "999999999999999999",
        "delete",
        "compact",
        "compact,delete",
        "delete,compact",
        " 5",
        "+5",
        "-2",
        "x",
        "",
    ];
    for (name, pattern, _) in TOPIC_CONFIG_VALUES {
        let regex = regex::Regex::new(pattern).expect("pattern");
        for value in samples.iter().filter(|value| regex.is_match(value)) {
            let configs = TopicConfigs([(name.to_string(), value.to_string())].into());
            assert!(
                configs.apply(&defaults).is_ok(),
                "{name} = {value:?} matches the spec but the broker refuses it"
            );
        }
    }
}

/// The spec's timestamp pattern takes exactly the days that exist (Feb 29 in leap years
/// only), so a schema-valid date is never refused.
#[test]
fn the_timestamp_pattern_takes_exactly_the_days_that_exist() {
    let regex = regex::Regex::new(freshet_api::timestamp::TIMESTAMP_PATTERN).expect("pattern");
    for year in [1, 4, 100, 400, 1900, 1970, 2000, 2023, 2024, 9996, 9998] {
        for month in 1..=12 {
            for day in 1..=31 {
                let value = format!("{year:04}-{month:02}-{day:02}T23:59:59.999-23:59");
                let exists = freshet_timestamp::normalize(value.as_str()).is_ok();
                assert_eq!(regex.is_match(&value), exists, "{value}");
            }
        }
    }
    for value in [
        "1726667942",
        "1726667942.5",
        "2021-12-03 16:15:30.2359+02:00",
    ] {
        assert!(regex.is_match(value), "{value}");
    }
}

/// An offset is bounded below in the spec and an offset past the end is "not found", as a
/// partition that does not exist is: neither is a 400 for a schema-valid request.
#[tokio::test]
async fn record_reads_document_a_404_for_offsets_past_the_end() {
    let spec = served_spec(&bare_app()).await;
    let read = &spec["paths"]["/api/v1/topics/{name}/partitions/{partition}/records"]["get"];
    let not_found = read["responses"]["404"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(not_found.contains("offset past"), "{not_found}");
    let parameters = read["parameters"].as_array().expect("parameters");
    let partition = parameters
        .iter()
        .find(|p| p["name"] == "partition")
        .expect("partition");
    assert_eq!(partition["schema"]["minimum"], 0);
}

/// DELETE forgets a job (afterwards it is 404 and unlisted); cancel stops one and keeps it.
#[tokio::test]
async fn deleted_jobs_are_gone_and_cancelled_ones_stay() {
    let app = app_with_unreachable_generator();
    let body = r#"{"num_devices": 1, "num_messages": 1000, "pause_ms": 1000}"#;
    let mut urls = Vec::new();
    for _ in 0..2 {
        let created = post_json(&app, "/api/v1/generator/jobs", body).await;
        assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
        let location = created.headers["location"].to_str().expect("location");
        urls.push(location.to_string());
    }
    let (deleted, cancelled) = (&urls[0], &urls[1]);

    let answer = send(&app, request(Method::DELETE, deleted)).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{answer:?}");
    assert_error(
        &get(&app, deleted).await,
        StatusCode::NOT_FOUND,
        "no generator job",
    );
    let again = send(&app, request(Method::DELETE, deleted)).await;
    assert_error(&again, StatusCode::NOT_FOUND, "no generator job");

    let cancel = send(&app, request(Method::POST, &format!("{cancelled}/cancel"))).await;
    assert_eq!(cancel.status, StatusCode::OK, "{cancel:?}");
    assert_eq!(get(&app, cancelled).await.status, StatusCode::OK);
    let listed = get(&app, "/api/v1/generator/jobs").await;
    let ids: Vec<&Value> = listed.json["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|job| &job["id"])
        .collect();
    assert_eq!(
        ids,
        [&cancel.json["id"]],
        "only the cancelled job is listed"
    );
}

/// A panicking handler is answered with a JSON 500 (and counted), not a dropped
/// connection.
#[tokio::test]
async fn a_panicking_handler_is_answered_500_in_json() {
    use freshet_services::panics::{count, PanicSite};

    async fn boom() {
        panic!("the handler's own message");
    }
    let panicking: Router = Router::new().route("/boom", axum::routing::get(boom));
    let app = freshet_api::catch_panics(panicking);
    let before = count(PanicSite::HttpRequest);
    let answer = get(&app, "/boom").await;
    assert_error(
        &answer,
        StatusCode::INTERNAL_SERVER_ERROR,
        "the server failed while handling this request",
    );
    assert!(
        !answer.text.contains("the handler's own message"),
        "panic messages stay in the log: {answer:?}"
    );
    assert!(count(PanicSite::HttpRequest) > before);
    let metrics = get(&bare_app(), "/metrics").await;
    assert!(
        metrics
            .text
            .contains("freshet_panics_caught_total{site=\"http_request\"}"),
        "{}",
        metrics.text
    );
}
