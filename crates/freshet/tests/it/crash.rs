//! Crash safety, tested by crashing: a real `freshet broker` process is killed with SIGKILL
//! while a producer sends with acks=all; after a restart every acknowledged record is there,
//! exactly once and in order. Garbage appended to a segment's tail is cut at the next start.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::ClientContext;

use crate::common;
use common::{client_config, read_all, BrokerProcess};

/// Collects the values the broker acknowledged.
struct Acks {
    acked: Mutex<Vec<u64>>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, value: Self::DeliveryOpaque) {
        if result.is_ok() {
            self.acked.lock().expect("lock").push(*value);
        }
    }
}

/// Every value of partition 0 of `topic`, in offset order.
fn read_values(addr: &str, topic: &str) -> Vec<u64> {
    read_all(addr, topic)
        .into_iter()
        .map(|(_, value)| value.parse().expect("a number"))
        .collect()
}

#[test]
fn acknowledged_records_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let producer: BaseProducer<Acks> = client_config(&broker.addr)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "5000")
        .create_with_context(Acks {
            acked: Mutex::new(Vec::new()),
        })
        .expect("producer");

    // Produce continuously from another thread; kill the broker once a good number is acked.
    let stop = Arc::new(AtomicBool::new(false));
    let producer = Arc::new(producer);
    let sender = {
        let producer = producer.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut value = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let text = value.to_string();
                let record = BaseRecord::with_opaque_to("crash", Box::new(value))
                    .key("k")
                    .payload(&text)
                    .partition(0);
                match producer.send(record) {
                    Ok(()) => value += 1,
                    Err(_) => {
                        producer.poll(Duration::from_millis(1));
                    }
                }
                producer.poll(Duration::ZERO);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while producer.context().acked.lock().expect("lock").len() < 20_000 {
        assert!(Instant::now() < deadline, "producer made no progress");
        producer.poll(Duration::from_millis(10));
    }
    broker.kill();
    stop.store(true, Ordering::Relaxed);
    sender.join().expect("sender thread");
    // Let librdkafka report the fate of everything in flight, then drop it.
    let _ = producer.flush(Duration::from_secs(6));
    let acked: Vec<u64> = producer.context().acked.lock().expect("lock").clone();
    drop(producer);

    let broker = BrokerProcess::start(dir.path(), &[]);
    let stored = read_values(&broker.addr, "crash");
    let stored_set: BTreeSet<u64> = stored.iter().copied().collect();
    assert_eq!(stored_set.len(), stored.len(), "no record stored twice");
    assert!(
        stored.windows(2).all(|w| w[0] < w[1]),
        "records are in send order"
    );
    let missing: Vec<_> = acked
        .iter()
        .filter(|v| !stored_set.contains(v))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged records lost: {missing:?} (of {})",
        acked.len()
    );
    eprintln!(
        "{} acknowledged, {} stored after SIGKILL",
        acked.len(),
        stored.len()
    );
}

#[test]
fn garbage_at_a_segment_tail_is_truncated_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let producer: BaseProducer = client_config(&broker.addr)
        .set("acks", "all")
        .create()
        .expect("producer");
    for value in 0..100u64 {
        let text = value.to_string();
        producer
            .send(BaseRecord::to("torn").key("k").payload(&text).partition(0))
            .expect("queued");
    }
    producer
        .flush(Duration::from_secs(10))
        .expect("all acknowledged");
    drop(producer);
    broker.kill();

    let segment = dir.path().join("topics/torn/0/00000000000000000000.log");
    let good_len = std::fs::metadata(&segment).expect("segment exists").len();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .expect("open");
    // A plausible-looking batch header claiming 500 bytes, then noise: a torn write.
    file.write_all(&[
        0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 1, 244, 0, 0, 0, 0, 2, 1, 2, 3,
    ])
    .expect("append garbage");
    file.write_all(&[0xab; 37]).expect("append garbage");
    drop(file);

    let broker = BrokerProcess::start(dir.path(), &[]);
    assert_eq!(
        std::fs::metadata(&segment).expect("segment").len(),
        good_len,
        "the torn tail was cut back to the last whole batch"
    );
    let values = read_values(&broker.addr, "torn");
    assert_eq!(values, (0..100).collect::<Vec<u64>>());

    // Appends continue at the right offset after recovery.
    let producer: BaseProducer = client_config(&broker.addr)
        .set("acks", "all")
        .create()
        .expect("producer");
    producer
        .send(BaseRecord::to("torn").key("k").payload("100").partition(0))
        .expect("queued");
    producer
        .flush(Duration::from_secs(10))
        .expect("acknowledged");
    assert_eq!(
        read_values(&broker.addr, "torn"),
        (0..=100).collect::<Vec<u64>>()
    );
}
