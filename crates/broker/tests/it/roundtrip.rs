//! Produce and consume through librdkafka (the rdkafka crate) over real TCP.

use std::collections::HashMap;
use std::time::Duration;

use freshet_testkit::TestBroker;
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

const RECORDS: usize = 100_000;
const PARTITIONS: i32 = 3;

/// Sends `RECORDS` keyed records with headers and timestamps, reads them all back from the
/// beginning, and checks every field of every record.
async fn round_trip(codec: &str) {
    let broker = TestBroker::start().await;
    let topic = format!("round-trip-{codec}");
    broker.create_topic(&topic, PARTITIONS, &[]).await;
    let producer = broker.producer(&[("compression.type", codec), ("linger.ms", "20")]);
    let base_ts = 1_700_000_000_000i64;

    let sends = (0..RECORDS).map(|i| {
        let producer = &producer;
        let topic = &topic;
        async move {
            let key = format!("key-{}", i % 1000);
            let value = format!("value-{i}-{}", "x".repeat(i % 50));
            let headers = OwnedHeaders::new().insert(Header {
                key: "seq",
                value: Some(&i.to_string()),
            });
            let record = FutureRecord::to(topic)
                .key(&key)
                .payload(&value)
                .headers(headers)
                .timestamp(base_ts + i as i64);
            producer
                .send(record, Timeout::After(Duration::from_secs(30)))
                .await
                .map_err(|(e, _)| e)
        }
    });
    let results: Vec<_> = futures::stream::iter(sends)
        .buffer_unordered(10_000)
        .collect()
        .await;
    for result in &results {
        result.as_ref().expect("every record acknowledged");
    }

    let consumer: StreamConsumer = broker.consumer("round-trip", &[]);
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment
            .add_partition_offset(&topic, p, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let mut seen = vec![false; RECORDS];
    let mut last_offset: HashMap<i32, i64> = HashMap::new();
    let mut received = 0;
    while received < RECORDS {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("records keep arriving")
            .expect("no consumer error");
        let headers = message.headers().expect("headers kept");
        let seq: usize = std::str::from_utf8(headers.get(0).value.expect("header value"))
            .expect("utf8")
            .parse()
            .expect("number");
        assert!(!seen[seq], "record {seq} delivered twice");
        seen[seq] = true;
        assert_eq!(
            message.key(),
            Some(format!("key-{}", seq % 1000).as_bytes())
        );
        assert_eq!(
            message.payload(),
            Some(format!("value-{seq}-{}", "x".repeat(seq % 50)).as_bytes())
        );
        assert_eq!(message.timestamp().to_millis(), Some(base_ts + seq as i64));
        let previous = last_offset.insert(message.partition(), message.offset());
        if let Some(previous) = previous {
            assert_eq!(
                message.offset(),
                previous + 1,
                "offsets are dense per partition"
            );
        }
        received += 1;
    }
    let total: i64 = last_offset.values().map(|o| o + 1).sum();
    assert_eq!(total as usize, RECORDS, "no offset gaps or extra records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_uncompressed() {
    round_trip("none").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_gzip() {
    round_trip("gzip").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_snappy() {
    round_trip("snappy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_lz4() {
    round_trip("lz4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_zstd() {
    round_trip("zstd").await;
}
