//! The router without a broker: errors and fallbacks, the timestamp route, services that are
//! absent, parameter validation that happens before any Kafka call, and the spec against
//! what the router serves.

mod common;

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
        (
            "num_devices=0&num_messages=10",
            "num_devices is 0 but num_messages is 10",
        ),
        (
            "num_devices=100000000000",
            "num_devices 100000000000 is more than the 10000000 allowed",
        ),
        (
            "num_messages=99999999999",
            "num_messages 99999999999 is more than the 1000000000 allowed",
        ),
        ("rate=50&pause_ms=10", "both pause_ms (10) and rate (50)"),
        ("num_device=5", "unknown field `num_device`"),
    ];
    for (query, reason) in cases {
        let answer = get(&app, &format!("/start?{query}")).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, reason);
    }
}

#[tokio::test]
async fn job_creation_refuses_bad_bodies_with_the_reason() {
    let app = app_with_unreachable_generator();
    let cases = [
        ("not json", "expected ident"),
        (r#"{"num_device": 5}"#, "unknown field `num_device`"),
        (r#"{"num_messages": -1}"#, "num_messages: invalid value"),
        (
            r#"{"num_devices": 0}"#,
            "num_devices is 0 but num_messages is 1000",
        ),
        (r#"{"topic": "a b"}"#, "contains ' '"),
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
            "partitions 0 is out of range: a topic has 1 to 10000",
        ),
        (
            r#"{"name": "t", "partitions": 10001}"#.to_string(),
            "partitions 10001 is out of range",
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
