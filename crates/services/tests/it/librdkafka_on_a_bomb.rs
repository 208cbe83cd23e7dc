//! What librdkafka itself does on a decompression bomb, kept as a measurement to repeat when
//! librdkafka is upgraded (`cargo test -p freshet-services --test it --
//! --ignored --nocapture librdkafka_on_a_bomb::`): it explains why the services read batches themselves
//! (`cluster::batches`) and why the tracker watches for stalled partitions.
//!
//! Measured with librdkafka 2.12.1 (rdkafka 0.39), a plain assigned consumer at offset 0 of a
//! partition holding 5 records, a gzip batch of 512 MiB of zeros claiming one record, and 5
//! more records: the first 5 arrive only after the bomb was decompressed once (it is in the
//! same fetch answer); then the position stays at the bomb for good. No message and no error
//! event, ever (150 s observed): each fetch inflates the whole body twice (once to size it,
//! once into a 512 MiB buffer), finds no record in the zeros, takes that for an answer cut
//! short and doubles its fetch size (up to 1 GiB after about 30 s), then goes on fetching the
//! same batch. Resident memory swings between 16 and 528 MiB every few seconds for as long as
//! the consumer runs. `fetch.max.bytes`, `max.partition.fetch.bytes` and
//! `receive.message.max.bytes` bound only the compressed bytes; nothing bounds the inflation.

use std::time::{Duration, Instant};

use freshet_testkit::batches::{append_to_log, gzip_zeros_batch};
use freshet_testkit::memory::Memory;
use freshet_testkit::TestBroker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset, TopicPartitionList};

const TOPIC: &str = "bomb";
const WATCH_FOR: Duration = Duration::from_secs(20);

async fn send_five(broker: &TestBroker, first: u32) {
    let producer = broker.producer(&[]);
    for i in first..first + 5 {
        let value = format!("good-{i}");
        let record = FutureRecord::<str, str>::to(TOPIC)
            .partition(0)
            .payload(&value);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .expect("acknowledged");
    }
}

/// What a consumer saw while watching the partition.
#[derive(Debug, Default)]
struct Seen {
    offsets: Vec<i64>,
    errors: Vec<String>,
    resident_mib: Vec<u64>,
}

fn watch(bootstrap: &str) -> Seen {
    let consumer: BaseConsumer = freshet_testkit::client_config(bootstrap)
        .set("group.id", "bomb-watcher")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(TOPIC, 0, Offset::Offset(0))
        .expect("assignment");
    consumer.assign(&assignment).expect("assign");
    let mut seen = Seen::default();
    let started = Instant::now();
    while started.elapsed() < WATCH_FOR {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(message)) => seen.offsets.push(message.offset()),
            Some(Err(error)) => seen.errors.push(error.to_string()),
            None => seen.resident_mib.push(Memory::now().resident_mib),
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: 20 s of CPU and half a GiB of memory"]
async fn librdkafka_stalls_silently_on_a_gzip_bomb() {
    let mut broker = TestBroker::start().await;
    broker.create_topic(TOPIC, 1, &[]).await;
    send_five(&broker, 0).await;
    broker.shutdown().await;
    let bomb_offset = append_to_log(broker.data_dir(), TOPIC, 0, &gzip_zeros_batch(512 << 20));
    let broker = broker.restart(|_| {}).await;
    send_five(&broker, 5).await;

    let bootstrap = broker.bootstrap();
    let seen = tokio::task::spawn_blocking(move || watch(&bootstrap))
        .await
        .expect("watched");
    eprintln!(
        "offsets {:?}, errors {:?}, resident MiB while idle {:?}, peak {} MiB",
        seen.offsets,
        seen.errors,
        seen.resident_mib,
        Memory::now().peak_mib
    );
    assert_eq!(
        seen.offsets,
        (0..bomb_offset).collect::<Vec<_>>(),
        "stuck at the bomb"
    );
    assert!(
        seen.errors.is_empty(),
        "and says nothing: {:?}",
        seen.errors
    );
}
