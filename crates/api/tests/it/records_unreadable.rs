//! Reading records past a decompression bomb over HTTP (`docs/SECURITY.md`): a partition holds good
//! records, a gzip batch of 512 MiB of zeros claiming one record (valid CRC, written into the
//! log of a stopped broker, as an older Freshet or another cluster may hold it), a gzip batch
//! whose body is not gzip, then more good records. Pages must step past both with a `skipped`
//! entry each, return every good record, and never decompress more than the cap.
//!
//! One test in its own binary, so the process's peak memory is this scenario's.

use crate::common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::get;
use freshet_api::{app, AppState};
use freshet_services::cluster::Cluster;
use freshet_services::KafkaConfig;
use freshet_testkit::batches::{append_to_log, corrupt_gzip_batch, gzip_zeros_batch};
use freshet_testkit::memory::Memory;
use freshet_testkit::TestBroker;
use rdkafka::producer::FutureRecord;
use serde_json::{json, Value};

const TOPIC: &str = "device-events";
const BOMB_BYTES: usize = 512 << 20;
/// Well under the 512 MiB the bomb decompresses to, above what reading takes otherwise.
const PEAK_GROWTH_LIMIT_MIB: u64 = 150;

/// Sends `values` to partition 0, gzip-compressed in batches as producers do.
async fn send(broker: &TestBroker, values: &[String]) {
    let producer = broker.producer(&[("compression.type", "gzip")]);
    let mut pending = Vec::new();
    for value in values {
        let record = FutureRecord::<str, str>::to(TOPIC)
            .partition(0)
            .payload(value);
        pending.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        );
    }
    for delivery in pending {
        delivery.await.expect("delivered").expect("acknowledged");
    }
}

fn values(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("good-{i}")).collect()
}

/// Pages through partition 0 from `offset`, `limit` records a page, until `next_offset`
/// reaches the latest offset. Returns every record's `(offset, value)`, every skipped entry,
/// and the pages' count.
async fn read_all(
    app: &axum::Router,
    offset: i64,
    limit: u32,
) -> (Vec<(i64, String)>, Vec<Value>, usize) {
    let (mut records, mut skipped, mut pages) = (Vec::new(), Vec::new(), 0);
    let mut next = offset;
    loop {
        let uri =
            format!("/api/v1/topics/{TOPIC}/partitions/0/records?offset={next}&limit={limit}");
        let started = Instant::now();
        let page = get(app, &uri).await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a page takes {:?}",
            started.elapsed()
        );
        pages += 1;
        for record in page.json["records"].as_array().expect("records") {
            let value = record["value"].as_str().expect("a text value").to_string();
            records.push((record["offset"].as_i64().expect("offset"), value));
        }
        skipped.extend(
            page.json["skipped"]
                .as_array()
                .expect("skipped")
                .iter()
                .cloned(),
        );
        let moved_to = page.json["next_offset"].as_i64().expect("next_offset");
        assert!(moved_to > next, "paging moves on: {}", page.json);
        next = moved_to;
        if next >= page.json["latest_offset"].as_i64().expect("latest_offset") {
            return (records, skipped, pages);
        }
        assert!(pages < 100, "paging ends");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_step_past_a_decompression_bomb_with_a_skipped_entry() {
    let mut broker = TestBroker::start().await;
    broker.create_topic(TOPIC, 1, &[]).await;
    send(&broker, &values(0..120)).await;
    broker.shutdown().await;
    let bomb_offset = append_to_log(broker.data_dir(), TOPIC, 0, &gzip_zeros_batch(BOMB_BYTES));
    assert_eq!(bomb_offset, 120);
    let corrupt_offset = append_to_log(broker.data_dir(), TOPIC, 0, &corrupt_gzip_batch());
    assert_eq!(corrupt_offset, 121);
    let broker = broker.restart(|_| {}).await;
    send(&broker, &values(120..200)).await;
    let app = app(AppState::new().with_cluster(
        Cluster::new(&KafkaConfig::new(broker.bootstrap())).expect("cluster client"),
    ));

    let before = Memory::now();
    let (records, skipped, pages) = read_all(&app, 0, 50).await;
    let expected: Vec<(i64, String)> = (0..200)
        .map(|i| (if i < 120 { i } else { i + 2 }, format!("good-{i}")))
        .collect();
    assert_eq!(records, expected, "every good record, in order");
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert_eq!(
        (&skipped[0]["from_offset"], &skipped[0]["to_offset"]),
        (&json!(120), &json!(120))
    );
    let reason = skipped[0]["reason"].as_str().expect("a reason");
    assert!(
        reason.starts_with("gzip batch of") && reason.contains("claiming 1 record"),
        "{reason}"
    );
    assert_eq!(
        (&skipped[1]["from_offset"], &skipped[1]["to_offset"]),
        (&json!(121), &json!(121))
    );
    let corrupt = skipped[1]["reason"].as_str().expect("a reason");
    assert!(corrupt.contains("it does not decompress"), "{corrupt}");
    assert_eq!(
        pages, 4,
        "200 records, 50 a page: the skipped batch takes no room"
    );

    // A page that starts at the bomb, and one that starts past both bad batches.
    let at_bomb = get(
        &app,
        &format!("/api/v1/topics/{TOPIC}/partitions/0/records?offset=120&limit=2"),
    )
    .await;
    assert_eq!(at_bomb.status, StatusCode::OK, "{at_bomb:?}");
    assert_eq!(at_bomb.json["skipped"], json!(skipped));
    let offsets: Vec<&Value> = at_bomb.json["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| &r["offset"])
        .collect();
    assert_eq!(offsets, [&json!(122), &json!(123)]);
    assert_eq!(at_bomb.json["next_offset"], 124);
    let past = get(
        &app,
        &format!("/api/v1/topics/{TOPIC}/partitions/0/records?offset=122&limit=1"),
    )
    .await;
    assert_eq!(past.json["skipped"], json!([]), "{past:?}");

    let after = Memory::now();
    eprintln!(
        "{pages} pages read past the bomb ({reason}); resident {} -> {} MiB, peak {} -> {} MiB",
        before.resident_mib, after.resident_mib, before.peak_mib, after.peak_mib
    );
    assert!(
        after.peak_mib < before.peak_mib.max(before.resident_mib) + PEAK_GROWTH_LIMIT_MIB,
        "the bomb was not decompressed: peak {} MiB after, {} MiB before",
        after.peak_mib,
        before.peak_mib
    );
}
