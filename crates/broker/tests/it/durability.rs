//! Idempotent producers across a restart, retention and compaction, through librdkafka.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use freshet_testkit::TestBroker;
use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// `(offset, key, value)` of a record read back.
type StoredRecord = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// Reads every record of a partition from the beginning.
fn read_all(broker: &TestBroker, topic: &str, partition: i32) -> Vec<StoredRecord> {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let timeout = Duration::from_secs(10);
    let (_, high) = consumer
        .fetch_watermarks(topic, partition, timeout)
        .expect("watermarks");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Beginning)
        .expect("assign");
    consumer.assign(&assignment).expect("assign");
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while records.last().map(|(o, _, _)| o + 1).unwrap_or(0) < high {
        assert!(
            std::time::Instant::now() < deadline,
            "reading {topic} stalled"
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("no consumer error");
            records.push((
                message.offset(),
                message.key().map(<[u8]>::to_vec),
                message.payload().map(<[u8]>::to_vec),
            ));
        }
    }
    records
}

fn low_watermark(broker: &TestBroker, topic: &str, partition: i32) -> i64 {
    let consumer: BaseConsumer = broker.client_config().create().expect("client");
    consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .expect("watermarks")
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_across_restart_has_no_duplicate_and_no_gap() {
    const TOTAL: usize = 20_000;
    let broker = TestBroker::start().await;
    broker.create_topic("exactly-once", 1, &[]).await;
    let producer = broker.producer(&[
        ("enable.idempotence", "true"),
        ("linger.ms", "1"),
        ("batch.num.messages", "100"),
        ("message.timeout.ms", "60000"),
    ]);
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let send = {
        let producer = producer.clone();
        let acknowledged = acknowledged.clone();
        move |i: usize| {
            let producer = producer.clone();
            let acknowledged = acknowledged.clone();
            async move {
                let value = i.to_string();
                let result = producer
                    .send(
                        FutureRecord::to("exactly-once").key("k").payload(&value),
                        Timeout::After(Duration::from_secs(60)),
                    )
                    .await
                    .map(|delivery| delivery.offset)
                    .map_err(|(e, _)| e);
                acknowledged.fetch_add(1, Ordering::Relaxed);
                result
            }
        }
    };
    let first = tokio::spawn(async move {
        futures::stream::iter(0..TOTAL)
            .map(send)
            .buffered(2_000)
            .collect::<Vec<_>>()
            .await
    });
    // Restart while the producer is mid-stream, with requests in flight.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acknowledged.load(Ordering::Relaxed) < TOTAL / 4 {
        assert!(Instant::now() < deadline, "producer made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let broker = broker.restart(|_| {}).await;
    let results = first.await.expect("producer task");
    let offsets: Vec<i64> = results
        .into_iter()
        .map(|r| r.expect("every record acknowledged despite the restart"))
        .collect();
    assert!(
        offsets.windows(2).all(|w| w[1] == w[0] + 1),
        "acknowledged offsets are dense and ordered"
    );

    let records = read_all(&broker, "exactly-once", 0);
    assert_eq!(records.len(), TOTAL, "no duplicate and no missing record");
    for (i, (offset, _, value)) in records.iter().enumerate() {
        assert_eq!(*offset, i as i64);
        assert_eq!(
            value.as_deref(),
            Some(i.to_string().as_bytes()),
            "record {i} in order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_segments_by_time_and_by_size() {
    let broker = TestBroker::start().await;
    broker
        .create_topic(
            "old-news",
            1,
            &[("segment.bytes", "1024"), ("retention.ms", "60000")],
        )
        .await;
    broker
        .create_topic(
            "big-news",
            1,
            &[("segment.bytes", "1024"), ("retention.bytes", "4096")],
        )
        .await;
    let producer = broker.producer(&[("linger.ms", "0")]);
    let an_hour_ago = now_ms() - 3_600_000;
    for i in 0..200 {
        let value = format!("{i:0>100}");
        for (topic, ts) in [("old-news", an_hour_ago), ("big-news", now_ms())] {
            producer
                .send(
                    FutureRecord::to(topic)
                        .key("k")
                        .payload(&value)
                        .timestamp(ts),
                    Timeout::After(Duration::from_secs(10)),
                )
                .await
                .expect("acknowledged");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let old_low = low_watermark(&broker, "old-news", 0);
        let big_low = low_watermark(&broker, "big-news", 0);
        if old_low > 150 && big_low > 100 {
            // The active segment is never deleted, so the newest records are still readable.
            let remaining = read_all(&broker, "big-news", 0);
            assert_eq!(remaining.last().map(|r| r.0), Some(199));
            assert!(remaining.len() < 200);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention did not run: low watermarks {old_low}, {big_low}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_the_latest_value_per_key_at_its_original_offset() {
    let broker = TestBroker::start().await;
    broker
        .create_topic(
            "latest",
            1,
            &[
                ("cleanup.policy", "compact"),
                ("segment.bytes", "1024"),
                ("delete.retention.ms", "0"),
            ],
        )
        .await;
    let producer = broker.producer(&[("linger.ms", "0")]);
    let mut latest: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for round in 0..40 {
        for key in 0..10 {
            let key = format!("key-{key}");
            let value = format!("{key}-round-{round:0>40}");
            let offset = producer
                .send(
                    FutureRecord::to("latest").key(&key).payload(&value),
                    Timeout::After(Duration::from_secs(10)),
                )
                .await
                .expect("acknowledged")
                .offset;
            latest.insert(key, (offset, value));
        }
    }
    // A tombstone for key-0: after compaction neither its values nor the tombstone remain.
    producer
        .send(
            FutureRecord::<str, str>::to("latest").key("key-0"),
            Timeout::After(Duration::from_secs(10)),
        )
        .await
        .expect("tombstone acknowledged");
    // Roll the tombstone out of the active segment so the cleaner may drop it.
    for i in 0..30 {
        producer
            .send(
                FutureRecord::to("latest")
                    .key("filler")
                    .payload(&format!("{i:0>60}")),
                Timeout::After(Duration::from_secs(10)),
            )
            .await
            .expect("acknowledged");
    }

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let records = read_all(&broker, "latest", 0);
        let keys: Vec<_> = records.iter().map(|(_, k, _)| k.clone()).collect();
        let distinct: HashSet<_> = keys.iter().collect();
        let compacted = records.len() < 100 && !keys.contains(&Some(b"key-0".to_vec()));
        if compacted {
            for key in 1..10 {
                let key = format!("key-{key}");
                let (offset, value) = &latest[&key];
                let found: Vec<_> = records
                    .iter()
                    .filter(|(_, k, _)| k.as_deref() == Some(key.as_bytes()))
                    .collect();
                assert_eq!(found.len(), 1, "{key} appears once");
                assert_eq!(found[0].0, *offset, "{key} keeps its offset");
                assert_eq!(found[0].2.as_deref(), Some(value.as_bytes()));
            }
            assert!(distinct.len() >= 10);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "compaction did not happen: {} records",
            records.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
