//! Tracker nodes against a real broker over TCP: exact counts, the dead-letter topic, several
//! nodes in one group, and resuming from checkpoints.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use freshet_services::event::{DEVICE_EVENTS_DLQ, REASON_HEADER};
use freshet_services::tracker::view::{ErrorCodeCount, Granularity};
use freshet_services::tracker::{Tracker, TrackerConfig};
use freshet_services::KafkaConfig;
use freshet_testkit::raw::{assert_compressed_with, RawClient};
use freshet_testkit::{send_all, TestBroker};

use crate::common::tracker::{event_json, eventually, stop};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::producer::FutureRecord;
use rdkafka::Message;

const TOPIC: &str = "device-events";

fn config(node: &str) -> TrackerConfig {
    TrackerConfig {
        checkpoint_interval: Duration::from_millis(200),
        session_timeout: Duration::from_secs(6),
        node_id: Some(node.into()),
        ..TrackerConfig::default()
    }
}

/// `count` events from `ips` distinct IPv4 addresses starting at `first_ip`, keyed by IP,
/// spread over two minutes and all error codes. Returns the IPs sent.
async fn send_events(broker: &TestBroker, first_ip: u32, ips: u32, count: u32) -> HashSet<String> {
    send_keyed_events(broker, first_ip, ips, count, |_, ip| ip.to_string()).await
}

/// [`send_events`] with each record's key chosen by `key` from its number and address.
async fn send_keyed_events(
    broker: &TestBroker,
    first_ip: u32,
    ips: u32,
    count: u32,
    key: impl Fn(u32, &str) -> String,
) -> HashSet<String> {
    let ips: Vec<String> = (0..count)
        .map(|i| std::net::Ipv4Addr::from(first_ip + i % ips).to_string())
        .collect();
    let values: Vec<String> = (0..count)
        .map(|i| event_json(1_726_667_940 + i64::from(i % 120), &ips[i as usize], i % 11))
        .collect();
    let keys: Vec<String> = (0..count).map(|i| key(i, &ips[i as usize])).collect();
    let records = keys
        .iter()
        .zip(&values)
        .map(|(key, value)| FutureRecord::to(TOPIC).key(key).payload(value));
    send_all(&broker.producer(&[]), records).await;
    ips.into_iter().collect()
}

async fn send_raw(broker: &TestBroker, values: &[&[u8]]) {
    let producer = broker.producer(&[]);
    for value in values {
        producer
            .send(
                FutureRecord::<[u8], [u8]>::to(TOPIC).payload(*value),
                Duration::from_secs(10),
            )
            .await
            .expect("acknowledged");
    }
}

async fn start(broker: &TestBroker, node: &str) -> Tracker {
    Tracker::start(&KafkaConfig::new(broker.bootstrap()), config(node))
        .await
        .expect("tracker starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counts_exactly_and_dead_letters_invalid_events_with_reasons() {
    let broker = TestBroker::start().await;
    broker.create_topic(TOPIC, 3, &[]).await;
    let sent = send_events(&broker, 0x0A00_0000, 500, 3000).await;
    let huge = format!(
        r#"{{"timestamp": 1, "device_ip": "1.2.3.4", "error_code": 1, "pad": "{}"}}"#,
        "x".repeat(100_000)
    );
    let invalid: [&[u8]; 6] = [
        huge.as_bytes(),
        b"not json",
        br#"{"timestamp": 1, "device_ip": "300.1.1.1", "error_code": 1}"#,
        br#"{"timestamp": "2024-02-30T00:00:00", "device_ip": "1.2.3.4", "error_code": 1}"#,
        br#"{"timestamp": 1, "device_ip": "1.2.3.4", "error_code": 99}"#,
        br#"{"device_ip": "1.2.3.4", "error_code": 1}"#,
    ];
    send_raw(&broker, &invalid).await;
    let tracker = start(&broker, "solo").await;
    let handle = tracker.handle();
    eventually(&handle, "all events counted", |h| {
        let u = h.unique_ips();
        u.events_counted == 3000 && u.events_rejected == 6
    })
    .await;
    let summary = handle.unique_ips();
    assert_eq!(summary.global_count, sent.len() as u64);
    assert_eq!(summary.node_count, sent.len() as u64);
    assert_eq!(summary.partitions_owned, vec![0, 1, 2]);
    let estimate_error = summary.estimate_error_percent.abs();
    assert!(estimate_error < 5.0, "HLL off by {estimate_error}%");

    // 3000 events over 120 seconds from minute 1726667940 / 60: every IP appears in each of
    // the (two or three) minute windows its events fall in; per error code, the IPs i % 11.
    let windows = handle.windows(Granularity::Minute, 100);
    let expected_windows = expected_minute_windows(0x0A00_0000, 500, 3000);
    let got: HashMap<i64, u64> = windows
        .iter()
        .map(|w| (w.start_ms, w.distinct_ips))
        .collect();
    assert_eq!(got, expected_windows);
    let codes = handle.error_codes();
    assert_eq!(codes.len(), 11);
    assert_error_codes(&codes, 500, 3000);

    let dead = read_dead_letters(&broker, invalid.len()).await;
    let payloads: HashSet<Vec<u8>> = dead.iter().map(|(_, payload)| payload.clone()).collect();
    let originals: HashSet<Vec<u8>> = invalid.iter().map(|v| v.to_vec()).collect();
    assert_eq!(payloads, originals, "dead letters carry the original bytes");
    // Dead letters are uncompressed (codec 0), for any client to read; the tracker's own
    // checkpoint topic is lz4 (codec 3; a batch of a heartbeat alone does not shrink, and
    // librdkafka sends such a batch uncompressed).
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    let dead_batches = client.batches(DEVICE_EVENTS_DLQ, 0).await.expect("fetch");
    assert_compressed_with(&dead_batches, 0);
    // Counts show before the checkpoint that covers them is acknowledged.
    eventually(&handle, "a checkpoint acknowledged", |h| {
        h.metrics().checkpoints_written > 0
    })
    .await;
    let checkpoint_batches = client
        .batches(&config("n1").checkpoint_topic(), 0)
        .await
        .expect("fetch");
    assert_compressed_with(&checkpoint_batches, 3);
    for expected in [
        "more than the 4096",
        "invalid JSON",
        "not an IPv4 or IPv6 address",
        "timestamp:",
        "error_code 99",
        "missing field timestamp",
    ] {
        let matching = dead
            .iter()
            .filter(|(reason, _)| reason.contains(expected))
            .count();
        assert_eq!(matching, 1, "one reason mentions {expected:?}: {dead:?}");
    }
    stop(tracker).await;
}

/// Event `i` of [`send_keyed_events`] has error code `i % 11` and address number `i % ips`:
/// each code's distinct count is the addresses of its events.
fn assert_error_codes(codes: &[ErrorCodeCount], ips: u32, count: u32) {
    for code in codes {
        let expected = (0..count)
            .filter(|i| i % 11 == u32::from(code.error_code))
            .map(|i| i % ips)
            .collect::<HashSet<_>>()
            .len() as u64;
        assert_eq!(
            code.distinct_ips, expected,
            "error code {}",
            code.error_code
        );
    }
}

fn expected_minute_windows(first_ip: u32, ips: u32, count: u32) -> HashMap<i64, u64> {
    let mut windows: HashMap<i64, HashSet<u32>> = HashMap::new();
    for i in 0..count {
        let second = 1_726_667_940 + i64::from(i % 120);
        windows
            .entry(second / 60 * 60_000)
            .or_default()
            .insert(first_ip + i % ips);
    }
    windows
        .into_iter()
        .map(|(start, ips)| (start, ips.len() as u64))
        .collect()
}

/// `(reason header, payload)` of the first `expected` dead-letter records.
async fn read_dead_letters(broker: &TestBroker, expected: usize) -> Vec<(String, Vec<u8>)> {
    let consumer: StreamConsumer = broker.consumer("dlq-reader", &[]);
    consumer.subscribe(&[DEVICE_EVENTS_DLQ]).expect("subscribe");
    let mut records = Vec::new();
    while records.len() < expected {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("dead letters arrive")
            .expect("consumed");
        let reason = message
            .headers()
            .and_then(|headers| headers.iter().find(|h| h.key == REASON_HEADER))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .expect("a dead letter has a reason header");
        records.push((reason, message.payload().unwrap_or_default().to_vec()));
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_split_partitions_and_both_know_the_global_count() {
    let broker = TestBroker::start().await;
    broker.create_topic(TOPIC, 4, &[]).await;
    let a = start(&broker, "node-a").await;
    let b = start(&broker, "node-b").await;
    let sent = send_events(&broker, 0x0B00_0000, 2000, 6000).await;
    for handle in [a.handle(), b.handle()] {
        eventually(&handle, "global count exact on both nodes", |h| {
            h.global_count() == sent.len() as u64
        })
        .await;
    }
    // An exact count does not mean the group settled: node b may have joined after node a
    // took every partition, and a rebalance moves some of them while both already know
    // every address.
    let b_handle = b.handle();
    eventually(
        &a.handle(),
        "the partitions split between the nodes",
        |a_handle| {
            let (ua, ub) = (a_handle.unique_ips(), b_handle.unique_ips());
            !ua.partitions_owned.is_empty()
            && !ub.partitions_owned.is_empty()
            && ua.partitions_owned.len() + ub.partitions_owned.len() == 4
            // Keyed by IP, so the partitions' sets are disjoint and the node counts add up.
            && ua.node_count + ub.node_count == sent.len() as u64
        },
    )
    .await;
    eventually(&a.handle(), "both nodes seen", |h| {
        h.unique_ips().nodes_seen.len() == 2
    })
    .await;

    // One node leaves: the other takes all partitions and the count stays exact as more
    // events arrive.
    stop(b).await;
    let more = send_events(&broker, 0x0C00_0000, 1000, 2000).await;
    let total = (sent.len() + more.len()) as u64;
    eventually(&a.handle(), "survivor owns all and counts exactly", |h| {
        let u = h.unique_ips();
        u.partitions_owned.len() == 4 && u.global_count == total && u.node_count == total
    })
    .await;
    assert_eq!(a.handle().unique_ips().events_counted, 8000);
    stop(a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_node_resumes_from_its_checkpoints() {
    let broker = TestBroker::start().await;
    broker.create_topic(TOPIC, 3, &[]).await;
    let first = send_events(&broker, 0x0D00_0000, 700, 2100).await;
    let tracker = start(&broker, "restarting").await;
    eventually(&tracker.handle(), "first batch counted", |h| {
        h.unique_ips().events_counted == 2100
    })
    .await;
    stop(tracker).await;

    let second = send_events(&broker, 0x0E00_0000, 300, 900).await;
    let tracker = start(&broker, "restarting").await;
    let handle = tracker.handle();
    let total = (first.len() + second.len()) as u64;
    eventually(&handle, "exact after restart", |h| {
        h.global_count() == total && h.unique_ips().events_counted == 3000
    })
    .await;
    // Every partition resumed where the first run's last checkpoint left it, not at 0.
    let resumed: i64 = handle
        .partitions()
        .iter()
        .map(|p| {
            p.resumed_from
                .expect("owned partitions have a resume offset")
        })
        .sum();
    assert_eq!(resumed, 2100);
    stop(tracker).await;
}

/// Two workers in one node share its state: addresses that arrive in several partitions
/// (records keyed by something else than the address), counted by different workers at the
/// same time, are still counted once in the global count and in every view.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_of_one_node_count_addresses_shared_by_partitions_exactly() {
    const EVENTS: u32 = 6000;
    const IPS: u32 = 700;
    const FIRST_IP: u32 = 0x0F00_0000;
    let broker = TestBroker::start().await;
    broker.create_topic(TOPIC, 3, &[]).await;
    // Keyed by record, not by address: an address lands in several partitions.
    send_keyed_events(&broker, FIRST_IP, IPS, EVENTS, |i, _| format!("record-{i}")).await;
    let tracker = Tracker::start(
        &KafkaConfig::new(broker.bootstrap()),
        TrackerConfig {
            workers: 2,
            ..config("two-workers")
        },
    )
    .await
    .expect("tracker starts");
    let handle = tracker.handle();
    eventually(&handle, "all events counted", |h| {
        h.unique_ips().events_counted == u64::from(EVENTS)
    })
    .await;
    let summary = handle.unique_ips();
    assert_eq!(summary.partitions_owned, vec![0, 1, 2]);
    assert_eq!((summary.global_count, summary.node_count), (700, 700));
    let shared = handle
        .partitions()
        .iter()
        .map(|p| p.distinct_ips)
        .sum::<u64>();
    assert!(
        shared > 700,
        "addresses appear in several partitions ({shared} in all)"
    );
    let got: HashMap<i64, u64> = handle
        .windows(Granularity::Minute, 100)
        .iter()
        .map(|w| (w.start_ms, w.distinct_ips))
        .collect();
    assert_eq!(got, expected_minute_windows(FIRST_IP, IPS, EVENTS));
    assert_error_codes(&handle.error_codes(), IPS, EVENTS);
    stop(tracker).await;
}
