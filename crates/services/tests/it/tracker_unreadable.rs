//! A tracker node on a partition holding a decompression bomb between valid events
//! (`docs/SECURITY.md`, "Decompression limits"): a gzip batch of 512 MiB of zeros claiming
//! one record, with a valid CRC, written into the log of a stopped broker as an older Freshet
//! (or another cluster) may hold it, and after it a gzip batch whose body is not gzip.
//! librdkafka reports nothing on the bomb and fetches it again forever (on the corrupt one it
//! reports a bare error code, again and again); the node must step past each with one
//! dead-letter record, count every valid event exactly, and not do it again after a restart.
//!
//! One test in its own binary, so the process's memory figures are this scenario's.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use freshet_services::event::{
    InvalidKind, DEVICE_EVENTS_DLQ, ORIGIN_HEADER, ORIGIN_LAST_OFFSET_HEADER, REASON_HEADER,
};
use freshet_services::tracker::{Tracker, TrackerConfig, TrackerHandle};
use freshet_services::KafkaConfig;
use freshet_testkit::batches::{append_to_log, corrupt_gzip_batch, gzip_zeros_batch};
use freshet_testkit::memory::Memory;
use freshet_testkit::{send_all, TestBroker};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::producer::FutureRecord;
use rdkafka::Message;

use crate::common::tracker::{event_json, eventually_within, stop};

const TOPIC: &str = "device-events";
const BOMB_BYTES: usize = 512 << 20;

fn config(node: &str) -> TrackerConfig {
    TrackerConfig {
        checkpoint_interval: Duration::from_millis(200),
        session_timeout: Duration::from_secs(6),
        node_id: Some(node.into()),
        ..TrackerConfig::default()
    }
}

/// `count` valid events from `ips` addresses starting at `first_ip`, then `invalid` raw values,
/// all to partition 0. Returns the IPs sent.
async fn send(
    broker: &TestBroker,
    first_ip: u32,
    ips: u32,
    count: u32,
    invalid: &[&str],
) -> HashSet<String> {
    let mut sent = HashSet::new();
    let mut values = Vec::new();
    for i in 0..count {
        let ip = std::net::Ipv4Addr::from(first_ip + i % ips).to_string();
        values.push(event_json(1_726_667_940 + i64::from(i % 120), &ip, i % 11));
        sent.insert(ip);
    }
    values.extend(invalid.iter().map(|v| v.to_string()));
    let records = values.iter().map(|value| {
        FutureRecord::<str, str>::to(TOPIC)
            .partition(0)
            .payload(value)
    });
    send_all(&broker.producer(&[("compression.type", "gzip")]), records).await;
    sent
}

/// Generous: librdkafka spends seconds of CPU on each inflation of the bomb, more on a loaded
/// machine, before the stall is noticed.
async fn eventually(handle: &TrackerHandle, what: &str, check: impl Fn(&TrackerHandle) -> bool) {
    eventually_within(Duration::from_secs(180), handle, what, check).await;
}

/// A dead-letter record's headers by name, and whether it has a value.
fn dead_letter(message: &BorrowedMessage<'_>) -> (Vec<(String, String)>, bool) {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| {
                    let value = String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned();
                    (h.key.to_string(), value)
                })
                .collect()
        })
        .unwrap_or_default();
    (headers, message.payload().is_some())
}

/// Every dead-letter record written so far (reading until none arrives for a while).
async fn read_dead_letters(broker: &TestBroker, group: &str) -> Vec<(Vec<(String, String)>, bool)> {
    let consumer: StreamConsumer = broker.consumer(group, &[]);
    consumer.subscribe(&[DEVICE_EVENTS_DLQ]).expect("subscribe");
    let mut records = Vec::new();
    while let Ok(message) = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await {
        records.push(dead_letter(&message.expect("consumed")));
    }
    records
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tracker_steps_past_a_decompression_bomb_once_and_counts_the_rest_exactly() {
    let mut broker = TestBroker::start().await;
    broker.create_topic(TOPIC, 1, &[]).await;
    let mut ips = send(&broker, 0x0A00_0000, 300, 2000, &["not json"]).await;
    broker.shutdown().await;
    let bomb = gzip_zeros_batch(BOMB_BYTES);
    let bomb_offset = append_to_log(broker.data_dir(), TOPIC, 0, &bomb);
    assert_eq!(bomb_offset, 2001);
    let corrupt_offset = append_to_log(broker.data_dir(), TOPIC, 0, &corrupt_gzip_batch());
    assert_eq!(corrupt_offset, 2002);
    let broker = broker.restart(|_| {}).await;
    ips.extend(
        send(
            &broker,
            0x0B00_0000,
            200,
            1000,
            &[r#"{"device_ip": "1.2.3.4"}"#],
        )
        .await,
    );

    let before = Memory::now();
    let started = Instant::now();
    let tracker = Tracker::start(&KafkaConfig::new(broker.bootstrap()), config("first"))
        .await
        .expect("tracker starts");
    let handle = tracker.handle();
    eventually(
        &handle,
        "every valid event counted past both bad batches",
        |h| {
            let u = h.unique_ips();
            u.events_counted == 3000 && u.events_rejected == 4
        },
    )
    .await;
    let stepped_past = started.elapsed();
    let summary = handle.unique_ips();
    assert_eq!(summary.global_count, ips.len() as u64, "exact distinct IPs");
    let rejected = handle.metrics().events_rejected;
    assert!(
        rejected.contains(&(InvalidKind::UnreadableBatch, 2)),
        "{rejected:?}"
    );
    assert!(rejected.contains(&(InvalidKind::Json, 1)), "{rejected:?}");
    assert!(
        rejected.contains(&(InvalidKind::Timestamp, 1)),
        "{rejected:?}"
    );

    // Once past the bomb, nothing decompresses it again: memory goes back and stays.
    let after_skip = Memory::now();
    let mut resident_since = Vec::new();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        resident_since.push(Memory::now().resident_mib);
    }
    eprintln!(
        "stepped past after {stepped_past:?}; resident before {} MiB, right after {} MiB, \
         then {resident_since:?} MiB; peak {} MiB (librdkafka inflating the bomb until the step past)",
        before.resident_mib,
        after_skip.resident_mib,
        Memory::now().peak_mib,
    );
    let settled = resident_since.iter().skip(4).max().copied().unwrap_or(0);
    assert!(
        settled < before.resident_mib + 150,
        "memory settles back: {resident_since:?} MiB after the skip, {} MiB before",
        before.resident_mib
    );

    // A second node of the group resumes from the checkpoint, past the bomb.
    stop(tracker).await;
    let tracker = Tracker::start(&KafkaConfig::new(broker.bootstrap()), config("second"))
        .await
        .expect("tracker restarts");
    let handle = tracker.handle();
    eventually(&handle, "the checkpoint resumed", |h| {
        let u = h.unique_ips();
        u.partitions_owned == vec![0] && u.events_counted == 3000
    })
    .await;
    let resumed = handle.partitions();
    assert_eq!(resumed[0].resumed_from, Some(3004), "{resumed:?}");
    assert_eq!(handle.unique_ips().events_rejected, 4);
    assert_eq!(handle.unique_ips().global_count, ips.len() as u64);

    let dead = read_dead_letters(&broker, "dlq-reader").await;
    assert_eq!(
        dead.len(),
        4,
        "two invalid events and each bad batch, once: {dead:?}"
    );
    let batches: Vec<_> = dead
        .iter()
        .filter(|(headers, _)| header(headers, ORIGIN_LAST_OFFSET_HEADER).is_some())
        .collect();
    assert_eq!(batches.len(), 2, "{dead:?}");
    let expected = [
        (2001, "claiming 1 record: record 1 of 1"),
        (2002, "it does not decompress"),
    ];
    for ((headers, has_value), (offset, why)) in batches.into_iter().zip(expected) {
        assert!(!has_value, "a bad batch is not copied");
        let origin = format!("device-events/0/{offset}");
        assert_eq!(header(headers, ORIGIN_HEADER), Some(origin.as_str()));
        let last = offset.to_string();
        assert_eq!(
            header(headers, ORIGIN_LAST_OFFSET_HEADER),
            Some(last.as_str())
        );
        let reason = header(headers, REASON_HEADER).unwrap_or_default();
        assert!(
            reason.starts_with("gzip batch of") && reason.contains(why),
            "{reason}"
        );
    }
    stop(tracker).await;
}
