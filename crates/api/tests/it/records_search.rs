//! Records across a topic end to end (`GET /api/v1/topics/{name}/records`, `/stream` and
//! `/export`): a real broker holding records with known partitions, timestamps, keys,
//! values and headers, read through the API's cluster client.

use crate::common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::Router;
use common::{assert_error, get, request};
use freshet_api::{app, AppState};
use freshet_services::cluster::Cluster;
use freshet_services::KafkaConfig;
use freshet_testkit::TestBroker;
use futures::StreamExt;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde_json::Value;
use tower::ServiceExt;

const TOPIC: &str = "orders";
/// 2023-11-14T22:13:20.000Z: record `i` is written with timestamp `T0 + i` ms.
const T0: i64 = 1_700_000_000_000;
/// Records `v00` to `v14`; record `i` goes to partition `i % 3`.
const PLAIN: i64 = 15;
/// The 16th record (timestamp `T0 + 15`), the only one with its key, in partition 2.
const NEEDLE_VALUE: &str = "he said \"hi, there\"\r\nand left";

fn api(broker: &TestBroker) -> Router {
    let cluster = Cluster::new(&KafkaConfig::new(broker.bootstrap())).expect("cluster client");
    app(AppState::new().with_cluster(cluster))
}

async fn send(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    timestamp: Option<i64>,
    key: &str,
    value: &str,
    headers: &[(&str, &str)],
) {
    let headers = headers
        .iter()
        .fold(OwnedHeaders::new(), |all, (key, value)| {
            all.insert(Header {
                key,
                value: Some(value.as_bytes()),
            })
        });
    let mut record = FutureRecord::to(topic)
        .partition(partition)
        .key(key)
        .payload(value)
        .headers(headers);
    if let Some(timestamp) = timestamp {
        record = record.timestamp(timestamp);
    }
    producer
        .send(record, Timeout::After(Duration::from_secs(10)))
        .await
        .map_err(|(e, _)| e)
        .expect("acknowledged");
}

/// 16 records over 3 partitions, timestamps `T0 + i` in the order they are listed here.
async fn fill(broker: &TestBroker) {
    broker.create_topic(TOPIC, 3, &[]).await;
    let producer = broker.producer(&[]);
    for i in 0..PLAIN {
        let parity = if i % 2 == 0 { "even" } else { "odd" };
        send(
            &producer,
            TOPIC,
            (i % 3) as i32,
            Some(T0 + i),
            &format!("k{i}"),
            &format!("v{i:02}"),
            &[("parity", parity)],
        )
        .await;
    }
    send(
        &producer,
        TOPIC,
        2,
        Some(T0 + PLAIN),
        "order-4711",
        NEEDLE_VALUE,
        &[("trace", "abc-123-def")],
    )
    .await;
}

/// `(partition, offset)` of record `i` as [`fill`] wrote it.
fn place(i: i64) -> (i64, i64) {
    if i == PLAIN {
        (2, 5)
    } else {
        (i % 3, i / 3)
    }
}

fn uri(query: &str) -> String {
    format!("/api/v1/topics/{TOPIC}/records{query}")
}

/// `(partition, offset)` of each record of a page.
fn places(page: &Value) -> Vec<(i64, i64)> {
    page["records"]
        .as_array()
        .unwrap_or_else(|| panic!("records: {page}"))
        .iter()
        .map(|r| {
            (
                r["partition"].as_i64().expect("partition"),
                r["offset"].as_i64().expect("offset"),
            )
        })
        .collect()
}

async fn page(app: &Router, query: &str) -> Value {
    let answer = get(app, &uri(query)).await;
    assert_eq!(answer.status, StatusCode::OK, "{query}: {answer:?}");
    answer.json
}

async fn check_orders(app: &Router) {
    let newest = page(app, "").await;
    assert_eq!(newest["order"], "newest_first");
    assert_eq!(newest["stopped_by"], "end");
    assert_eq!(newest["cursor"], Value::Null, "nothing more can follow");
    let expected: Vec<(i64, i64)> = (0..=PLAIN).rev().map(place).collect();
    assert_eq!(places(&newest), expected, "newest first across partitions");
    let first = &newest["records"][0];
    assert_eq!(first["key"], "order-4711");
    assert_eq!(first["value"], NEEDLE_VALUE);
    assert_eq!(first["timestamp"], T0 + PLAIN);
    assert_eq!(first["timestamp_rfc3339"], "2023-11-14T22:13:20.015Z");
    assert_eq!(
        first["headers"],
        serde_json::json!([{"key": "trace", "value": "abc-123-def", "encoding": "utf8"}])
    );
    let partitions = newest["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 3);
    for (p, scan) in partitions.iter().enumerate() {
        let latest = if p == 2 { 6 } else { 5 };
        assert_eq!(scan["partition"], p);
        assert_eq!(
            (
                &scan["scanned_from"],
                &scan["scanned_to"],
                &scan["latest_offset"]
            ),
            (&0.into(), &latest.into(), &latest.into()),
            "{scan}"
        );
        assert_eq!(scan["reached_end"], true);
        assert_eq!(scan["skipped"], serde_json::json!([]));
    }

    let oldest = page(app, "?from=earliest").await;
    assert_eq!(oldest["order"], "oldest_first");
    assert_eq!(oldest["stopped_by"], "end");
    assert!(oldest["cursor"].is_string(), "later records may follow");
    let expected: Vec<(i64, i64)> = (0..=PLAIN).map(place).collect();
    assert_eq!(places(&oldest), expected, "oldest first across partitions");

    let since = page(app, "?from=2023-11-14T22:13:20.010Z").await;
    assert_eq!(since["order"], "oldest_first");
    let expected: Vec<(i64, i64)> = (10..=PLAIN).map(place).collect();
    assert_eq!(places(&since), expected, "records at or after the time");
    let offset_zone = page(app, "?from=2023-11-14T23:13:20.013%2B01:00").await;
    let expected: Vec<(i64, i64)> = (13..=PLAIN).map(place).collect();
    assert_eq!(places(&offset_zone), expected, "a zone offset is applied");
    let future = page(app, "?from=2030-01-01T00:00:00Z").await;
    assert_eq!(places(&future), [], "nothing that late");
}

async fn check_filters(app: &Router) {
    let needle = page(app, "?key=4711").await;
    assert_eq!(
        places(&needle),
        [(2, 5)],
        "found without naming partition 2"
    );
    let by_value = page(app, "?value=v1&from=earliest").await;
    let expected: Vec<(i64, i64)> = (10..15).map(place).collect();
    assert_eq!(places(&by_value), expected);
    let quoted = page(app, "?value=%22hi%2C%20there%22").await;
    assert_eq!(places(&quoted), [(2, 5)]);
    let odd = page(app, "?header=parity:odd&from=earliest").await;
    let expected: Vec<(i64, i64)> = (0..PLAIN).filter(|i| i % 2 == 1).map(place).collect();
    assert_eq!(places(&odd), expected);
    let substring = page(app, "?header=trace:123").await;
    assert_eq!(places(&substring), [(2, 5)]);
    let present = page(app, "?header=trace:").await;
    assert_eq!(
        places(&present),
        [(2, 5)],
        "an empty value: the header is there"
    );
    let exact_name = page(app, "?header=Trace:").await;
    assert_eq!(places(&exact_name), [], "header names match exactly");
    let one_partition = page(app, "?partition=1").await;
    assert_eq!(
        places(&one_partition),
        [(1, 4), (1, 3), (1, 2), (1, 1), (1, 0)]
    );
    assert_eq!(
        one_partition["partitions"].as_array().map(Vec::len),
        Some(1),
        "only the partition asked for is read"
    );
    let together = page(app, "?key=k1&header=parity:odd&from=earliest").await;
    // k1, k11, k13 (k10, k12, k14 are even).
    assert_eq!(places(&together), [place(1), place(11), place(13)]);
    let nothing = page(app, "?value=no-such-text").await;
    assert_eq!(places(&nothing), []);
    assert_eq!(nothing["stopped_by"], "end");
}

/// Follows cursors from `query` with pages of `limit`, returning every record and the
/// pages' `stopped_by`.
async fn follow(app: &Router, query: &str, limit: u32) -> (Vec<(i64, i64)>, Vec<String>) {
    let mut all = Vec::new();
    let mut stops = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let mut q = format!("?limit={limit}&{query}");
        if let Some(cursor) = &cursor {
            q.push_str(&format!("&cursor={cursor}"));
        }
        let answer = page(app, &q).await;
        let records = places(&answer);
        let stop = answer["stopped_by"]
            .as_str()
            .expect("stopped_by")
            .to_string();
        assert!(records.len() <= limit as usize);
        all.extend(records);
        stops.push(stop.clone());
        match answer["cursor"].as_str() {
            Some(next) if stop != "end" => cursor = Some(next.to_string()),
            _ => return (all, stops),
        }
    }
    panic!("no end after 20 pages: {all:?}");
}

async fn check_cursors(app: &Router) {
    let (newest, stops) = follow(app, "", 4).await;
    let expected: Vec<(i64, i64)> = (0..=PLAIN).rev().map(place).collect();
    assert_eq!(newest, expected, "no repeats, no gaps");
    assert_eq!(stops, ["limit", "limit", "limit", "end"]);

    let (oldest, stops) = follow(app, "from=earliest&header=parity:even", 3).await;
    let expected: Vec<(i64, i64)> = (0..PLAIN).filter(|i| i % 2 == 0).map(place).collect();
    assert_eq!(oldest, expected, "filtered pages resume too");
    assert_eq!(stops.last().map(String::as_str), Some("end"));
    assert!(
        stops[..stops.len() - 1].iter().all(|s| s == "limit"),
        "{stops:?}"
    );

    // An oldest-first cursor at the end picks up what is written later.
    let end = page(app, "?from=earliest").await;
    let cursor = end["cursor"].as_str().expect("cursor").to_string();
    let nothing = page(app, &format!("?cursor={cursor}")).await;
    assert_eq!(places(&nothing), []);
    assert_eq!(
        nothing["order"], "oldest_first",
        "the cursor keeps its order"
    );

    let one = page(app, "?partition=0&limit=2").await;
    let cursor = one["cursor"].as_str().expect("cursor").to_string();
    let rest = page(app, &format!("?partition=0&cursor={cursor}")).await;
    assert_eq!(places(&one), [(0, 4), (0, 3)]);
    assert_eq!(places(&rest), [(0, 2), (0, 1), (0, 0)]);
}

async fn check_refusals(app: &Router) {
    let cases = [
        (
            "?from=yesterday",
            "from \"yesterday\" is not earliest, latest",
        ),
        (
            "?from=1700000000000",
            "is not earliest, latest or an RFC 3339",
        ),
        ("?from=2023-02-30T00:00:00Z", "February 30 does not exist"),
        ("?header=parity", "header \"parity\" is not name:value"),
        ("?header=:odd", "is not name:value"),
        (
            "?limit=501",
            "limit 501 is out of range: ask for 1 to 500 records",
        ),
        ("?limit=0", "limit 0 is out of range"),
        ("?limit=many", "limit"),
        ("?partition=-1", "partition -1 is negative"),
        ("?offset=3", "unknown field `offset`"),
    ];
    for (query, reason) in cases {
        let answer = get(app, &uri(query)).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, reason);
    }
    // A cursor no answer gave out names no page, and a partition the topic lacks is none:
    // not found, as an offset past a partition's end is.
    for (query, reason) in [
        (
            "?cursor=not-a-cursor",
            "cursor is not one this API gave out",
        ),
        ("?cursor=eyJ2IjoxfQ", "cursor is not one this API gave out"),
        (
            "?partition=3",
            "partition 3, which topic \"orders\" does not have (it has 3)",
        ),
    ] {
        let answer = get(app, &uri(query)).await;
        assert_error(&answer, StatusCode::NOT_FOUND, reason);
    }
    // An empty cursor is no cursor.
    let first = get(app, &uri("?cursor=")).await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    // A cursor of another topic.
    let other = page(app, "?limit=1").await;
    let cursor = other["cursor"].as_str().expect("cursor");
    let answer = get(
        app,
        &format!("/api/v1/topics/events/records?cursor={cursor}"),
    )
    .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "it is for topic \"orders\"");
    for route in ["records", "records/stream", "records/export"] {
        let missing = get(app, &format!("/api/v1/topics/missing/{route}")).await;
        assert_error(
            &missing,
            StatusCode::NOT_FOUND,
            "topic \"missing\" does not exist",
        );
        let bad = get(app, &format!("/api/v1/topics/{TOPIC}/{route}?header=x")).await;
        assert_error(&bad, StatusCode::BAD_REQUEST, "is not name:value");
        let partition = get(app, &format!("/api/v1/topics/{TOPIC}/{route}?partition=9")).await;
        assert_error(&partition, StatusCode::NOT_FOUND, "partition 9");
    }
    let format = get(app, &uri("/export?format=xml")).await;
    assert_error(&format, StatusCode::BAD_REQUEST, "format");
    let too_many = get(app, &uri("/export?limit=100001")).await;
    assert_error(
        &too_many,
        StatusCode::BAD_REQUEST,
        "export 1 to 100000 records",
    );
    let newest_cursor = page(app, "?limit=1").await;
    let cursor = newest_cursor["cursor"].as_str().expect("cursor");
    let stream = get(app, &uri(&format!("/stream?cursor={cursor}"))).await;
    assert_error(&stream, StatusCode::BAD_REQUEST, "a stream goes forwards");
}

/// The fields of an RFC 4180 CSV text: quoted fields may hold commas, doubled quotes and
/// line breaks; records end with CRLF.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => {
                assert!(field.is_empty(), "a quote inside an unquoted field: {text}");
                quoted = true;
            }
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {
                assert_eq!(chars.next(), Some('\n'), "CRLF line ends");
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => {
                assert_ne!(c, '\n', "a bare LF outside quotes");
                field.push(c);
            }
        }
    }
    assert!(
        !quoted && field.is_empty() && row.is_empty(),
        "ends with CRLF"
    );
    rows
}

async fn check_exports(app: &Router) {
    let jsonl = get(app, &uri("/export?format=jsonl&from=earliest")).await;
    assert_eq!(jsonl.status, StatusCode::OK, "{jsonl:?}");
    assert_eq!(
        jsonl.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/x-ndjson"[..])
    );
    assert_eq!(
        jsonl
            .headers
            .get("content-disposition")
            .map(|v| v.as_bytes()),
        Some(&b"attachment; filename=\"orders-records.jsonl\""[..])
    );
    let lines: Vec<Value> = jsonl
        .text
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    let exported: Vec<(i64, i64)> = lines
        .iter()
        .map(|r| {
            (
                r["partition"].as_i64().unwrap_or(-1),
                r["offset"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let expected: Vec<(i64, i64)> = (0..=PLAIN).map(place).collect();
    assert_eq!(exported, expected);
    assert_eq!(lines[PLAIN as usize]["value"], NEEDLE_VALUE);
    let read = page(app, "?from=earliest").await;
    assert_eq!(
        Value::Array(lines),
        read["records"],
        "an export holds what a read returns"
    );

    let limited = get(app, &uri("/export?limit=3")).await;
    assert_eq!(
        limited.text.lines().count(),
        3,
        "default format jsonl, limited"
    );

    let csv = get(app, &uri("/export?format=csv&from=earliest")).await;
    assert_eq!(csv.status, StatusCode::OK, "{csv:?}");
    assert_eq!(
        csv.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/csv; charset=utf-8"[..])
    );
    assert_eq!(
        csv.headers.get("content-disposition").map(|v| v.as_bytes()),
        Some(&b"attachment; filename=\"orders-records.csv\""[..])
    );
    let rows = parse_csv(&csv.text);
    assert_eq!(
        rows[0],
        [
            "partition",
            "offset",
            "timestamp",
            "timestamp_rfc3339",
            "key",
            "key_encoding",
            "value",
            "value_encoding",
            "headers"
        ]
    );
    assert_eq!(rows.len(), 17, "a header row and 16 records");
    let needle = &rows[16];
    assert_eq!(needle[0..2], ["2", "5"]);
    assert_eq!(needle[2], (T0 + PLAIN).to_string());
    assert_eq!(needle[3], "2023-11-14T22:13:20.015Z");
    assert_eq!(needle[4], "order-4711");
    assert_eq!(
        needle[6], NEEDLE_VALUE,
        "commas, quotes and line breaks survive"
    );
    let headers: Value = serde_json::from_str(&needle[8]).expect("headers are JSON");
    assert_eq!(headers[0]["value"], "abc-123-def");
    for (row, i) in rows[1..16].iter().zip(0..) {
        let (partition, offset) = place(i);
        assert_eq!(row[0..2], [partition.to_string(), offset.to_string()]);
        assert_eq!(row[6], format!("v{i:02}"));
    }

    let empty = get(app, &uri("/export?format=csv&value=no-such-text")).await;
    assert_eq!(parse_csv(&empty.text).len(), 1, "only the header row");
}

/// Reads server-sent events from `body` until one whose data holds `needle`; returns that
/// data as JSON. Keep-alive comments and other events are passed over.
async fn next_event_with(
    body: &mut (impl futures::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin),
    buffer: &mut String,
    needle: &str,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let data: String = event
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            if data.contains(needle) {
                return serde_json::from_str(&data).expect("event data is JSON");
            }
        }
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .unwrap_or_else(|_| panic!("no event with {needle:?}; got {buffer:?}"))
            .expect("the stream goes on")
            .expect("a chunk");
        buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
    }
}

async fn check_stream(app: &Router, broker: &TestBroker) {
    let response = app
        .clone()
        .oneshot(request(Method::GET, &uri("/stream?key=live")))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/event-stream"[..])
    );
    let mut body = response.into_body().into_data_stream();
    let mut buffer = String::new();
    let producer = broker.producer(&[]);
    // Written after the stream opened; the first does not match its filter.
    send(&producer, TOPIC, 0, None, "quiet-1", "ignored", &[]).await;
    send(&producer, TOPIC, 1, None, "live-1", "fresh", &[("h", "1")]).await;
    let event = next_event_with(&mut body, &mut buffer, "live-1").await;
    assert_eq!(event["partition"], 1);
    assert_eq!(event["offset"], 5);
    assert_eq!(event["value"], "fresh");
    assert!(event["timestamp_rfc3339"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert!(
        !buffer.contains("quiet-1"),
        "a record the filter refuses is not sent"
    );
    send(&producer, TOPIC, 2, None, "live-2", "fresher", &[]).await;
    let second = next_event_with(&mut body, &mut buffer, "live-2").await;
    assert_eq!(second["partition"], 2);
    // The client goes away: dropping the body ends the stream.
    drop(body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_read_across_partitions_filtered_paged_exported_and_streamed() {
    let broker = TestBroker::start().await;
    let app = api(&broker);
    fill(&broker).await;
    check_orders(&app).await;
    check_filters(&app).await;
    check_cursors(&app).await;
    check_refusals(&app).await;
    check_exports(&app).await;
    check_stream(&app, &broker).await;
}

/// Values of this many bytes compress to almost nothing, so the broker holds little while a
/// read decompresses a lot: the byte bound counts what the records decompress to.
const LARGE_VALUE: usize = 1_100_000;
const LARGE_RECORDS: i64 = 120;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_reports_its_byte_bound_and_its_cursor_goes_on() {
    let broker = TestBroker::start().await;
    let app = api(&broker);
    broker.create_topic("large", 1, &[]).await;
    let producer = broker.producer(&[
        ("compression.type", "gzip"),
        ("message.max.bytes", "2000000"),
    ]);
    let value = "x".repeat(LARGE_VALUE);
    for i in 0..LARGE_RECORDS {
        send(&producer, "large", 0, None, &format!("k{i}"), &value, &[]).await;
    }
    // Nothing matches, so each page reads on until a bound: 132 MB decompressed in all, past
    // the 64 MiB a page may read.
    let mut cursor: Option<String> = None;
    let mut upper = LARGE_RECORDS;
    let mut stops = Vec::new();
    while stops.len() < 10 {
        let mut query = "?value=no-such-text".to_string();
        if let Some(cursor) = &cursor {
            query.push_str(&format!("&cursor={cursor}"));
        }
        let answer = get(&app, &format!("/api/v1/topics/large/records{query}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        let page = answer.json;
        assert_eq!(places(&page), []);
        let scan = &page["partitions"][0];
        assert_eq!(
            scan["scanned_to"], upper,
            "each page goes on where the last stopped"
        );
        let from = scan["scanned_from"].as_i64().expect("scanned_from");
        assert!(from < upper, "every page covers something: {page}");
        upper = from;
        let stop = page["stopped_by"].as_str().expect("stopped_by").to_string();
        stops.push(stop.clone());
        if stop == "bytes" {
            assert!(
                page["bytes_read"].as_u64().unwrap_or(0) >= 64 << 20,
                "{page}"
            );
            assert_eq!(scan["reached_end"], false);
            cursor = Some(
                page["cursor"]
                    .as_str()
                    .expect("a cursor to go on")
                    .to_string(),
            );
        } else {
            assert_eq!(stop, "end", "{page}");
            assert_eq!(scan["reached_end"], true);
            assert_eq!(page["cursor"], Value::Null);
            break;
        }
    }
    assert_eq!(
        stops.first().map(String::as_str),
        Some("bytes"),
        "{stops:?}"
    );
    assert_eq!(stops.last().map(String::as_str), Some("end"), "{stops:?}");
    assert_eq!(upper, 0, "the pages together covered the partition");
}
