//! Transactions through librdkafka's transactional producer and read_committed consumer
//! (the rdkafka crate) against a real broker over TCP: commit and abort, fencing of a zombie
//! producer, the broker aborting a transaction past its timeout, the state surviving a
//! restart, and consume-transform-produce (a consumer group's offsets committed with the
//! transaction). Crashes mid-commit are tested in crates/freshet/tests with a killed process.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use freshet_broker::listener::SecurityProtocol;
use freshet_testkit::raw::RawClient;
use freshet_testkit::transactions::{self, sorted, WAIT};
use freshet_testkit::TestBroker;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, ApiKey, EndTxnRequest, EndTxnResponse,
    GroupId, InitProducerIdRequest, InitProducerIdResponse, OffsetFetchRequest,
    OffsetFetchResponse, ProducerId, TopicName, TransactionalId, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};

const PARTITIONS: i32 = 3;

fn transactional_producer(broker: &TestBroker, id: &str, extra: &[(&str, &str)]) -> BaseProducer {
    let mut config: ClientConfig = broker.client_config();
    for (key, value) in extra {
        config.set(*key, *value);
    }
    transactions::transactional_producer(config, id)
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
    transactions::send_spread(producer, topic, PARTITIONS, values);
}

fn values(tag: &str, count: usize) -> Vec<String> {
    transactions::numbered(tag, count)
}

/// Every value in `topic` from the beginning, as a consumer with `isolation` reads it, once
/// each partition reports its end.
fn read_everything(broker: &TestBroker, topic: &str, isolation: &str) -> Vec<String> {
    transactions::read_to_end(broker.client_config(), topic, PARTITIONS, isolation)
}

/// [`read_everything`] at read_committed once every transaction in `topic` has ended.
fn read_committed_settled(broker: &TestBroker, topic: &str) -> Vec<String> {
    transactions::read_committed_once_settled(broker.client_config(), topic, PARTITIONS)
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
    let read = tokio::task::block_in_place(|| read_committed_settled(&broker, "txn-basic"));
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
    let read = tokio::task::block_in_place(|| read_committed_settled(&broker, "txn-zombie"));
    assert_eq!(read, sorted(new_values));
}

/// Waits until the coordinator holds `id` in `state` (from a blocking context).
fn wait_for_state(broker: &TestBroker, id: &str, state: &str) {
    let deadline = Instant::now() + WAIT;
    let runtime = tokio::runtime::Handle::current();
    loop {
        let meta = runtime.block_on(broker.broker.transactions.describe(id));
        if meta.as_ref().is_some_and(|m| m.state.name() == state) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never reached {state}: {meta:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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
        wait_for_state(&broker, "txn-timeout-id", "CompleteAbort");
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
    let read = tokio::task::block_in_place(|| read_committed_settled(&broker, "txn-timeout"));
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
    let read = tokio::task::block_in_place(|| read_committed_settled(&broker, "txn-restart"));
    assert_eq!(read, sorted(committed.into_iter().chain(next).collect()));
}

/// A consumer of `group` subscribed to `topic`, reading committed data from the group's
/// committed offsets (or the beginning), reporting each partition's end.
fn group_consumer(broker: &TestBroker, group: &str, topic: &str) -> BaseConsumer {
    let mut config: ClientConfig = broker.client_config();
    config
        .set("group.id", group)
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500");
    let consumer: BaseConsumer = config.create().expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

/// Polls `consumer` until it has delivered `count` records; returns their values and, per
/// partition, the offset after the last one (what a processor commits).
fn consume(consumer: &BaseConsumer, count: usize) -> (Vec<String>, TopicPartitionList) {
    let mut values = Vec::new();
    let mut next: HashMap<(String, i32), i64> = HashMap::new();
    let deadline = Instant::now() + WAIT;
    while values.len() < count {
        assert!(Instant::now() < deadline, "consumed only {values:?}");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let key = (message.topic().to_owned(), message.partition());
                next.insert(key, message.offset() + 1);
                let payload = message.payload().expect("payload");
                values.push(String::from_utf8(payload.to_vec()).expect("utf-8"));
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(error)) => panic!("consumer error: {error}"),
        }
    }
    let mut positions = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        positions
            .add_partition_offset(&topic, partition, Offset::Offset(offset))
            .expect("position");
    }
    (values, positions)
}

/// The offsets `group` has committed for every partition of `topic`, as OffsetFetch answers
/// without `require_stable` (read_uncommitted): the last committed ones, -1 for none.
fn committed_offsets(broker: &TestBroker, group: &str, topic: &str) -> Vec<i64> {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", group)
        .set("isolation.level", "read_uncommitted")
        .create()
        .expect("consumer");
    let mut partitions = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        partitions.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(partitions, WAIT)
        .expect("committed");
    (0..PARTITIONS)
        .map(|partition| {
            let element = committed
                .find_partition(topic, partition)
                .expect("partition");
            match element.offset() {
                Offset::Offset(offset) => offset,
                _ => -1,
            }
        })
        .collect()
}

/// `positions` as one offset per partition of `topic` (-1 for a partition not in it).
fn offsets_of(positions: &TopicPartitionList, topic: &str) -> Vec<i64> {
    (0..PARTITIONS)
        .map(
            |partition| match positions.find_partition(topic, partition) {
                Some(element) => match element.offset() {
                    Offset::Offset(offset) => offset,
                    _ => -1,
                },
                None => -1,
            },
        )
        .collect()
}

fn transformed(values: &[String]) -> Vec<String> {
    values.iter().map(|v| v.to_uppercase()).collect()
}

/// Consume-transform-produce as Kafka Streams and exactly-once processors do it: what a
/// consumer of group `ctp-group` read is transformed, written by a transactional producer,
/// and the consumer's offsets are committed in the same transaction
/// (`send_offsets_to_transaction`, with the consumer's group metadata: TxnOffsetCommit v3
/// with its member id and generation). A committed transaction advances the group's offsets
/// only when it commits, an aborted one leaves them, and a new consumer of the group resumes
/// exactly after the input of the committed transaction.
#[tokio::test(flavor = "multi_thread")]
async fn consume_transform_produce_commits_the_groups_offsets_with_the_transaction() {
    let broker = TestBroker::start().await;
    broker.create_topic("ctp-in", PARTITIONS, &[]).await;
    broker.create_topic("ctp-out", PARTITIONS, &[]).await;
    let input = values("in", 30);
    tokio::task::block_in_place(|| {
        let plain: BaseProducer = broker.client_config().create().expect("producer");
        send_all(&plain, "ctp-in", &input);
    });
    let (first, first_positions) = tokio::task::block_in_place(|| {
        let producer = transactional_producer(&broker, "ctp-producer", &[]);
        let consumer = group_consumer(&broker, "ctp-group", "ctp-in");
        let metadata = consumer.group_metadata().expect("group metadata");

        // Committed: the output and the offsets of the input it came from.
        let (first, positions) = consume(&consumer, 12);
        producer.begin_transaction().expect("begin");
        send_all(&producer, "ctp-out", &transformed(&first));
        producer
            .send_offsets_to_transaction(&positions, &metadata, WAIT)
            .expect("send offsets");
        assert_eq!(
            committed_offsets(&broker, "ctp-group", "ctp-in"),
            vec![-1; PARTITIONS as usize],
            "offsets of an open transaction are not committed yet"
        );
        producer.commit_transaction(WAIT).expect("commit");
        assert_eq!(
            committed_offsets(&broker, "ctp-group", "ctp-in"),
            offsets_of(&positions, "ctp-in")
        );

        // Aborted: neither the output nor the offsets.
        let (second, later_positions) = consume(&consumer, 9);
        producer.begin_transaction().expect("begin");
        send_all(&producer, "ctp-out", &transformed(&second));
        producer
            .send_offsets_to_transaction(&later_positions, &metadata, WAIT)
            .expect("send offsets");
        producer.abort_transaction(WAIT).expect("abort");
        assert_eq!(
            committed_offsets(&broker, "ctp-group", "ctp-in"),
            offsets_of(&positions, "ctp-in"),
            "an aborted transaction commits no offsets"
        );
        (first, positions)
    });
    // The input has no control batches: the committed positions count the records before them.
    let covered: i64 = offsets_of(&first_positions, "ctp-in")
        .iter()
        .map(|&offset| offset.max(0))
        .sum();
    assert_eq!(covered, 12);

    let resumed = tokio::task::block_in_place(|| {
        let consumer = group_consumer(&broker, "ctp-group", "ctp-in");
        transactions::consume_to_end(&consumer, PARTITIONS)
    });
    let rest: Vec<String> = input
        .iter()
        .filter(|v| !first.contains(v))
        .cloned()
        .collect();
    assert_eq!(
        resumed,
        sorted(rest),
        "resumed exactly after the committed input"
    );
    let output = tokio::task::block_in_place(|| read_committed_settled(&broker, "ctp-out"));
    assert_eq!(output, sorted(transformed(&first)));
}

fn str_bytes(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// A TxnOffsetCommit of `id`'s producer for `group`: offset `10 + partition` for each of
/// `partitions` of `topic`.
fn txn_offsets(
    id: &str,
    (producer_id, epoch): (i64, i16),
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> TxnOffsetCommitRequest {
    let partitions = partitions
        .iter()
        .map(|&p| {
            TxnOffsetCommitRequestPartition::default()
                .with_partition_index(p)
                .with_committed_offset(10 + i64::from(p))
        })
        .collect();
    TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(str_bytes(id)))
        .with_group_id(GroupId(str_bytes(group)))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch)
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(TopicName(str_bytes(topic)))
            .with_partitions(partitions)])
}

/// TxnOffsetCommit at `version`: the error of every partition, in request order.
async fn txn_offset_errors(
    client: &mut RawClient,
    request: &TxnOffsetCommitRequest,
    version: i16,
) -> Vec<i16> {
    let response: TxnOffsetCommitResponse = client
        .call(ApiKey::TxnOffsetCommit, version, request)
        .await
        .expect("TxnOffsetCommit");
    response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;
const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
const UNSTABLE_OFFSET_COMMIT: i16 = 88;
const PRODUCER_FENCED: i16 = 90;

/// The transaction side of TxnOffsetCommit over the wire, at every advertised version: only
/// the id's current producer, in an ongoing transaction the group was added to, may commit
/// offsets; the group sees them once EndTxn commits.
#[tokio::test]
async fn txn_offset_commit_belongs_to_the_producers_ongoing_transaction() {
    let broker = TestBroker::start().await;
    broker.create_topic("txn-offsets", 2, &[]).await;
    let addr = broker.listener_addr(SecurityProtocol::Plaintext);
    let mut client = RawClient::connect(addr).await.expect("connect");
    let id = "txn-offsets-id";
    let unknown = txn_offsets(id, (1, 0), "g", "txn-offsets", &[0]);
    assert_eq!(
        txn_offset_errors(&mut client, &unknown, 3).await,
        vec![INVALID_PRODUCER_ID_MAPPING]
    );

    let init: InitProducerIdResponse = client
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(str_bytes(id))))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .await
        .expect("InitProducerId");
    assert_eq!(init.error_code, 0);
    let producer = (init.producer_id.0, init.producer_epoch);
    let request = txn_offsets(id, producer, "g", "txn-offsets", &[0, 1, 7]);
    assert_eq!(
        txn_offset_errors(&mut client, &request, 3).await,
        vec![INVALID_TXN_STATE; 3],
        "the group was not added to a transaction"
    );

    let add = AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(str_bytes(id)))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_group_id(GroupId(str_bytes("g")));
    let added: AddOffsetsToTxnResponse = client
        .call(ApiKey::AddOffsetsToTxn, 3, &add)
        .await
        .expect("AddOffsetsToTxn");
    assert_eq!(added.error_code, 0);
    let stale: AddOffsetsToTxnResponse = client
        .call(
            ApiKey::AddOffsetsToTxn,
            3,
            &add.clone().with_producer_epoch(producer.1 - 1),
        )
        .await
        .expect("AddOffsetsToTxn");
    assert_eq!(stale.error_code, PRODUCER_FENCED);
    let fenced = txn_offsets(id, (producer.0, producer.1 - 1), "g", "txn-offsets", &[0]);
    for version in [0, 3, 4] {
        assert_eq!(
            txn_offset_errors(&mut client, &fenced, version).await,
            vec![INVALID_PRODUCER_EPOCH],
            "v{version}"
        );
    }
    for version in 0..=4 {
        assert_eq!(
            txn_offset_errors(&mut client, &request, version).await,
            vec![0, 0, UNKNOWN_TOPIC_OR_PARTITION],
            "v{version}"
        );
    }
    assert_eq!(
        fetch_committed(&mut client, "g").await,
        vec![(-1, UNSTABLE_OFFSET_COMMIT); 2],
        "pending until the transaction ends"
    );

    let end: EndTxnResponse = client
        .call(
            ApiKey::EndTxn,
            3,
            &EndTxnRequest::default()
                .with_transactional_id(TransactionalId(str_bytes(id)))
                .with_producer_id(ProducerId(producer.0))
                .with_producer_epoch(producer.1)
                .with_committed(true),
        )
        .await
        .expect("EndTxn");
    assert_eq!(end.error_code, 0);
    // The offsets are committed before EndTxn answers (the markers follow it).
    assert_eq!(
        fetch_committed(&mut client, "g").await,
        vec![(10, 0), (11, 0)]
    );
    assert_eq!(
        txn_offset_errors(&mut client, &request, 3).await,
        vec![INVALID_TXN_STATE; 3],
        "the transaction is over"
    );
}

/// Partitions 0 and 1 of `txn-offsets` as OffsetFetch v7 with `require_stable` answers them:
/// `(offset, error)`.
async fn fetch_committed(client: &mut RawClient, group: &str) -> Vec<(i64, i16)> {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_require_stable(true)
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(str_bytes("txn-offsets")))
            .with_partition_indexes(vec![0, 1])]));
    let response: OffsetFetchResponse = client
        .call(ApiKey::OffsetFetch, 7, &request)
        .await
        .expect("OffsetFetch");
    response.topics[0]
        .partitions
        .iter()
        .map(|p| (p.committed_offset, p.error_code))
        .collect()
}
