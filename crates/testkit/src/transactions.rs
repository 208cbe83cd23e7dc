//! What transaction tests share: librdkafka's transactional producer, records spread over a
//! topic's partitions, and reading a topic to its end as a consumer at an isolation level.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// How long a transactional call or a read may take in tests.
pub const WAIT: Duration = Duration::from_secs(30);

/// A producer with `transactional.id = id`, its transactions initialised.
pub fn transactional_producer(mut config: ClientConfig, id: &str) -> BaseProducer {
    config.set("transactional.id", id);
    let producer: BaseProducer = config.create().expect("producer");
    producer.init_transactions(WAIT).expect("init_transactions");
    producer
}

/// Sends `values` round-robin over `partitions` partitions of `topic` and waits for them.
pub fn send_spread(producer: &BaseProducer, topic: &str, partitions: i32, values: &[String]) {
    for (i, value) in values.iter().enumerate() {
        let record = BaseRecord::<(), String>::to(topic)
            .payload(value)
            .partition(i as i32 % partitions);
        producer.send(record).map_err(|(e, _)| e).expect("send");
    }
    producer.flush(WAIT).expect("flush");
}

/// `count` values `"{tag}-{i}"`.
pub fn numbered(tag: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{tag}-{i}")).collect()
}

/// `values` sorted.
pub fn sorted(mut values: Vec<String>) -> Vec<String> {
    values.sort();
    values
}

/// Every value of `topic`'s `partitions` partitions from the beginning, as a consumer at
/// `isolation` (`read_committed` or `read_uncommitted`) reads it up to each partition's end
/// (the last stable offset for read_committed), sorted.
pub fn read_to_end(
    mut config: ClientConfig,
    topic: &str,
    partitions: i32,
    isolation: &str,
) -> Vec<String> {
    config
        .set("group.id", format!("reader-{isolation}-{topic}"))
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = config.create().expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    consume_to_end(&consumer, partitions)
}

/// Every value `consumer` delivers until each of its `partitions` partitions reports its end
/// (`enable.partition.eof`), sorted.
pub fn consume_to_end(consumer: &BaseConsumer, partitions: i32) -> Vec<String> {
    let mut values = Vec::new();
    let mut ended: HashSet<i32> = HashSet::new();
    let deadline = Instant::now() + WAIT;
    while ended.len() < partitions as usize {
        assert!(
            Instant::now() < deadline,
            "partitions at their end: {ended:?}; read {values:?}"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                ended.remove(&message.partition());
                let payload = message.payload().expect("payload");
                values.push(String::from_utf8(payload.to_vec()).expect("utf-8"));
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                ended.insert(partition);
            }
            Some(Err(error)) => panic!("consumer error: {error}"),
            None => {}
        }
    }
    sorted(values)
}

/// [`read_to_end`] at read_committed once every transaction in `topic` has ended: a commit's
/// markers are written just after the commit is answered (as in Kafka), so a read right
/// after it could stop at a last stable offset the markers are about to move.
pub fn read_committed_once_settled(
    config: ClientConfig,
    topic: &str,
    partitions: i32,
) -> Vec<String> {
    wait_until_no_transaction_is_open(&config, topic, partitions);
    read_to_end(config, topic, partitions, "read_committed")
}

/// Waits until each partition's last stable offset has reached its high watermark.
pub fn wait_until_no_transaction_is_open(config: &ClientConfig, topic: &str, partitions: i32) {
    let consumer_at = |isolation: &str| -> BaseConsumer {
        let mut config = config.clone();
        config.set("isolation.level", isolation);
        config.create().expect("consumer")
    };
    let (committed, uncommitted) = (
        consumer_at("read_committed"),
        consumer_at("read_uncommitted"),
    );
    let deadline = Instant::now() + WAIT;
    for partition in 0..partitions {
        loop {
            let lso = committed
                .fetch_watermarks(topic, partition, WAIT)
                .expect("LSO")
                .1;
            let end = uncommitted
                .fetch_watermarks(topic, partition, WAIT)
                .expect("end")
                .1;
            if lso == end {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a transaction stays open in {topic}-{partition}: LSO {lso}, end {end}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
