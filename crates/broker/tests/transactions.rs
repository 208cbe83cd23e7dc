//! Transactions through librdkafka's transactional producer and read_committed consumer
//! (the rdkafka crate) against a real broker over TCP: commit and abort, fencing of a zombie
//! producer, the broker aborting a transaction past its timeout, and the state surviving a
//! restart. Crashes mid-commit are tested in crates/freshet/tests with a killed process.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use freshet_testkit::TestBroker;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const PARTITIONS: i32 = 3;
const WAIT: Duration = Duration::from_secs(20);

fn transactional_producer(broker: &TestBroker, id: &str, extra: &[(&str, &str)]) -> BaseProducer {
    let mut config: ClientConfig = broker.client_config();
    config.set("transactional.id", id);
    for (key, value) in extra {
        config.set(*key, *value);
    }
    let producer: BaseProducer = config.create().expect("producer");
    producer.init_transactions(WAIT).expect("init_transactions");
    producer
}

/// Sends `values` in one transaction spread over the partitions, then commits or aborts.
fn run_transaction(producer: &BaseProducer, topic: &str, values: &[String], commit: bool) {
    producer.begin_transaction().expect("begin");
    send_all(producer, topic, values);
    if commit {
        producer.commit_transaction(WAIT).expect("commit");
    } else {
        producer.abort_transaction(WAIT).expect("abort");
    }
}

fn send_all(producer: &BaseProducer, topic: &str, values: &[String]) {
    for (i, value) in values.iter().enumerate() {
        let partition = (i as i32) % PARTITIONS;
        let record = BaseRecord::<(), String>::to(topic)
            .payload(value)
            .partition(partition);
        producer.send(record).map_err(|(e, _)| e).expect("send");
    }
    producer.flush(WAIT).expect("flush");
}

fn values(tag: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{tag}-{i}")).collect()
}

/// Every value in `topic` from the beginning, as a consumer with `isolation` reads it, once
/// each partition reports its end.
fn read_everything(broker: &TestBroker, topic: &str, isolation: &str) -> Vec<String> {
    let mut config: ClientConfig = broker.client_config();
    config
        .set("group.id", format!("reader-{isolation}-{topic}"))
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = config.create().expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let mut values = Vec::new();
    let mut ended: HashMap<i32, bool> = HashMap::new();
    let deadline = Instant::now() + WAIT;
    while ended.len() < PARTITIONS as usize {
        assert!(
            Instant::now() < deadline,
            "partitions ended: {ended:?}; read {values:?}"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                ended.remove(&message.partition());
                let payload = message.payload().expect("payload");
                values.push(String::from_utf8(payload.to_vec()).expect("utf-8"));
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                ended.insert(partition, true);
            }
            Some(Err(error)) => panic!("consumer error: {error}"),
            None => {}
        }
    }
    values.sort();
    values
}

fn sorted(mut values: Vec<String>) -> Vec<String> {
    values.sort();
    values
}

#[tokio::test(flavor = "multi_thread")]
async fn read_committed_consumers_see_committed_transactions_only() {
    let broker = TestBroker::start().await;
    broker.create_topic("txn-basic", PARTITIONS, &[]).await;
    let (committed, aborted, later) = (values("c", 30), values("a", 20), values("l", 10));
    tokio::task::block_in_place(|| {
        let producer = transactional_producer(&broker, "txn-basic-producer", &[]);
        run_transaction(&producer, "txn-basic", &committed, true);
        run_transaction(&producer, "txn-basic", &aborted, false);
        run_transaction(&producer, "txn-basic", &later, true);
    });
    let expected = sorted(committed.iter().chain(&later).cloned().collect());
    let read =
        tokio::task::block_in_place(|| read_everything(&broker, "txn-basic", "read_committed"));
    assert_eq!(read, expected);
    let everything =
        tokio::task::block_in_place(|| read_everything(&broker, "txn-basic", "read_uncommitted"));
    assert_eq!(
        everything.len(),
        committed.len() + aborted.len() + later.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_producer_with_the_same_id_fences_the_first() {
    let broker = TestBroker::start().await;
    broker.create_topic("txn-zombie", PARTITIONS, &[]).await;
    let (zombie_values, new_values) = (values("zombie", 10), values("new", 10));
    tokio::task::block_in_place(|| {
        let zombie = transactional_producer(&broker, "txn-zombie-id", &[]);
        zombie.begin_transaction().expect("begin");
        send_all(&zombie, "txn-zombie", &zombie_values);

        let successor = transactional_producer(&broker, "txn-zombie-id", &[]);
        let refused = zombie
            .commit_transaction(WAIT)
            .expect_err("the zombie is fenced");
        let fatal = matches!(&refused, KafkaError::Transaction(e) if e.is_fatal());
        assert!(fatal, "fencing is fatal to the zombie: {refused:?}");
        run_transaction(&successor, "txn-zombie", &new_values, true);
    });
    let read =
        tokio::task::block_in_place(|| read_everything(&broker, "txn-zombie", "read_committed"));
    assert_eq!(read, sorted(new_values));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_broker_aborts_a_transaction_past_its_timeout() {
    let broker = TestBroker::start_with(|config| {
        config.transaction_abort_interval = Duration::from_millis(100);
    })
    .await;
    broker.create_topic("txn-timeout", PARTITIONS, &[]).await;
    let late = values("late", 6);
    tokio::task::block_in_place(|| {
        let producer = transactional_producer(
            &broker,
            "txn-timeout-id",
            &[
                ("transaction.timeout.ms", "1000"),
                ("socket.timeout.ms", "1000"),
                ("message.timeout.ms", "1000"),
            ],
        );
        producer.begin_transaction().expect("begin");
        send_all(&producer, "txn-timeout", &late);
        std::thread::sleep(Duration::from_millis(2500));
        producer
            .commit_transaction(WAIT)
            .expect_err("the transaction was aborted by the broker");
    });
    // The abort moved the last stable offset on: later records are readable.
    let after = values("after", 3);
    tokio::task::block_in_place(|| {
        let plain: BaseProducer = broker.client_config().create().expect("producer");
        send_all(&plain, "txn-timeout", &after);
    });
    let read =
        tokio::task::block_in_place(|| read_everything(&broker, "txn-timeout", "read_committed"));
    assert_eq!(read, sorted(after));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_transaction_survives_a_restart_and_is_aborted_by_the_next_producer() {
    let broker = TestBroker::start().await;
    broker.create_topic("txn-restart", PARTITIONS, &[]).await;
    let (committed, open) = (values("kept", 9), values("open", 9));
    tokio::task::block_in_place(|| {
        let producer = transactional_producer(&broker, "txn-restart-id", &[]);
        run_transaction(&producer, "txn-restart", &committed, true);
        producer.begin_transaction().expect("begin");
        send_all(&producer, "txn-restart", &open);
    });
    let broker = broker.restart(|_| {}).await;
    let read =
        tokio::task::block_in_place(|| read_everything(&broker, "txn-restart", "read_committed"));
    assert_eq!(
        read,
        sorted(committed.clone()),
        "the open transaction is still invisible"
    );
    let next = values("next", 3);
    tokio::task::block_in_place(|| {
        let producer = transactional_producer(&broker, "txn-restart-id", &[]);
        run_transaction(&producer, "txn-restart", &next, true);
    });
    let read =
        tokio::task::block_in_place(|| read_everything(&broker, "txn-restart", "read_committed"));
    assert_eq!(read, sorted(committed.into_iter().chain(next).collect()));
}
