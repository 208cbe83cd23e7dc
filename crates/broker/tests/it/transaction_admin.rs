//! Transactions over the raw protocol on a real broker: each request and its errors as a
//! client sees them, the admin views (DescribeTransactions, ListTransactions,
//! DescribeProducers), writes outside a transaction refused, and recovery of a partition
//! whose transaction the coordinator lost.

use bytes::Bytes;
use freshet_testkit::batches::transactional_batch;
use freshet_testkit::raw::RawClient;
use freshet_testkit::TestBroker;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use kafka_protocol::ResponseError;

const TOPIC: &str = "txn-admin";

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

fn txn_id(id: &str) -> TransactionalId {
    TransactionalId(s(id))
}

async fn produce(client: &mut RawClient, partition: i32, records: Bytes) -> i16 {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_transactional_id(Some(txn_id("admin")))
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    let response: ProduceResponse = client
        .call(ApiKey::Produce, 9, &request)
        .await
        .expect("produce");
    response.responses[0].partition_responses[0].error_code
}

async fn init(client: &mut RawClient, id: &str, timeout_ms: i32) -> InitProducerIdResponse {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(txn_id(id)))
        .with_transaction_timeout_ms(timeout_ms)
        .with_producer_id((-1).into())
        .with_producer_epoch(-1);
    client
        .call(ApiKey::InitProducerId, 4, &request)
        .await
        .expect("init")
}

async fn add_partitions(
    client: &mut RawClient,
    id: &str,
    producer: (i64, i16),
    topics: &[(&str, &[i32])],
) -> Vec<(String, i32, i16)> {
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(txn_id(id))
        .with_v3_and_below_producer_id(producer.0.into())
        .with_v3_and_below_producer_epoch(producer.1)
        .with_v3_and_below_topics(
            topics
                .iter()
                .map(|(topic, partitions)| {
                    AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(s(topic)))
                        .with_partitions(partitions.to_vec())
                })
                .collect(),
        );
    let response: AddPartitionsToTxnResponse = client
        .call(ApiKey::AddPartitionsToTxn, 3, &request)
        .await
        .expect("add partitions");
    response
        .results_by_topic_v3_and_below
        .iter()
        .flat_map(|topic| {
            topic.results_by_partition.iter().map(move |p| {
                (
                    topic.name.to_string(),
                    p.partition_index,
                    p.partition_error_code,
                )
            })
        })
        .collect()
}

async fn end_txn(
    client: &mut RawClient,
    version: i16,
    id: &str,
    producer: (i64, i16),
    commit: bool,
) -> i16 {
    let request = EndTxnRequest::default()
        .with_transactional_id(txn_id(id))
        .with_producer_id(producer.0.into())
        .with_producer_epoch(producer.1)
        .with_committed(commit);
    let response: EndTxnResponse = client
        .call(ApiKey::EndTxn, version, &request)
        .await
        .expect("end txn");
    response.error_code
}

async fn describe(client: &mut RawClient, id: &str) -> (i16, String, Vec<i32>) {
    let request = DescribeTransactionsRequest::default().with_transactional_ids(vec![txn_id(id)]);
    let response: DescribeTransactionsResponse = client
        .call(ApiKey::DescribeTransactions, 0, &request)
        .await
        .expect("describe");
    let state = &response.transaction_states[0];
    let partitions = state
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().copied())
        .collect();
    (
        state.error_code,
        state.transaction_state.to_string(),
        partitions,
    )
}

async fn txn_start_offsets(client: &mut RawClient, partition: i32) -> Vec<(i64, i64)> {
    let producers = client.producers(TOPIC, partition).await;
    producers
        .expect("describe producers")
        .iter()
        .map(|p| (p.producer_id.0, p.current_txn_start_offset))
        .collect()
}

/// Kafka answers every InitProducerId without a transactional id with a new producer id at
/// epoch 0, also when the client sends the id and epoch it has (librdkafka's epoch bump after
/// a sequence error): the bumped producer's batches are then never judged against what its
/// old epoch left in a partition.
#[tokio::test]
async fn an_idempotent_producer_asking_again_gets_a_new_id_at_epoch_0() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    let first: InitProducerIdResponse = client
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_producer_id((-1).into())
                .with_producer_epoch(-1),
        )
        .await
        .expect("init");
    assert_eq!((first.error_code, first.producer_epoch), (0, 0));
    let bump: InitProducerIdResponse = client
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_producer_id(first.producer_id)
                .with_producer_epoch(first.producer_epoch),
        )
        .await
        .expect("bump");
    assert_eq!((bump.error_code, bump.producer_epoch), (0, 0));
    assert_ne!(bump.producer_id, first.producer_id, "a new producer id");
}

#[tokio::test]
async fn a_transaction_step_by_step_with_its_errors_and_admin_views() {
    let broker = TestBroker::start().await;
    broker.create_topic(TOPIC, 3, &[]).await;
    let mut client = RawClient::connect(broker.addr).await.expect("connect");

    let request = FindCoordinatorRequest::default()
        .with_key_type(1)
        .with_coordinator_keys(vec![s("admin")]);
    let found: FindCoordinatorResponse = client
        .call(ApiKey::FindCoordinator, 4, &request)
        .await
        .expect("find coordinator");
    assert_eq!(found.coordinators[0].error_code, 0);

    let too_long = init(&mut client, "admin", i32::MAX).await;
    assert_eq!(
        too_long.error_code,
        ResponseError::InvalidTransactionTimeout.code()
    );
    let first = init(&mut client, "admin", 60_000).await;
    assert_eq!(first.error_code, 0);
    let producer = (first.producer_id.0, first.producer_epoch);
    assert_eq!(describe(&mut client, "admin").await.1, "Empty");

    // Writing before the partition is added is refused and opens nothing.
    let early = produce(
        &mut client,
        0,
        transactional_batch(producer.0, producer.1, 0, 2),
    )
    .await;
    assert_eq!(early, ResponseError::InvalidTxnState.code());

    let refused = add_partitions(
        &mut client,
        "admin",
        producer,
        &[(TOPIC, &[0]), ("no-such-topic", &[0])],
    )
    .await;
    assert!(refused.contains(&(
        TOPIC.to_owned(),
        0,
        ResponseError::OperationNotAttempted.code()
    )));
    assert!(refused.contains(&(
        "no-such-topic".to_owned(),
        0,
        ResponseError::UnknownTopicOrPartition.code()
    )));
    assert_eq!(describe(&mut client, "admin").await.1, "Empty");

    let added = add_partitions(&mut client, "admin", producer, &[(TOPIC, &[0, 2])]).await;
    assert!(added.iter().all(|(_, _, error)| *error == 0), "{added:?}");
    let (error, state, partitions) = describe(&mut client, "admin").await;
    assert_eq!(
        (error, state.as_str(), partitions),
        (0, "Ongoing", vec![0, 2])
    );
    assert_eq!(
        produce(
            &mut client,
            0,
            transactional_batch(producer.0, producer.1, 0, 3)
        )
        .await,
        0
    );
    assert_eq!(
        produce(
            &mut client,
            1,
            transactional_batch(producer.0, producer.1, 0, 1)
        )
        .await,
        ResponseError::InvalidTxnState.code(),
        "partition 1 is not part of the transaction"
    );
    assert_eq!(
        txn_start_offsets(&mut client, 0).await,
        vec![(producer.0, 0)]
    );

    let list =
        ListTransactionsRequest::default().with_state_filters(vec![s("Ongoing"), s("Bogus")]);
    let listed: ListTransactionsResponse = client
        .call(ApiKey::ListTransactions, 1, &list)
        .await
        .expect("list");
    assert_eq!(listed.transaction_states.len(), 1);
    assert_eq!(
        listed.transaction_states[0].transactional_id.to_string(),
        "admin"
    );
    assert_eq!(listed.unknown_state_filters, vec![s("Bogus")]);

    let stale = (producer.0, producer.1 - 1);
    assert_eq!(
        end_txn(&mut client, 1, "admin", stale, true).await,
        ResponseError::InvalidProducerEpoch.code()
    );
    assert_eq!(
        end_txn(&mut client, 3, "admin", stale, true).await,
        ResponseError::ProducerFenced.code()
    );
    assert_eq!(end_txn(&mut client, 3, "admin", producer, true).await, 0);
    assert_eq!(
        end_txn(&mut client, 3, "admin", producer, true).await,
        0,
        "a retried commit succeeds"
    );
    assert_eq!(
        end_txn(&mut client, 3, "admin", producer, false).await,
        ResponseError::InvalidTxnState.code()
    );
    assert_eq!(describe(&mut client, "admin").await.1, "CompleteCommit");
    assert_eq!(
        txn_start_offsets(&mut client, 0).await,
        vec![(producer.0, -1)]
    );
    let unknown = describe(&mut client, "nobody").await.0;
    assert_eq!(unknown, ResponseError::TransactionalIdNotFound.code());
}

/// Values a read_committed consumer keeps from a fetch of partition 0 from offset 0: markers
/// and the records of the aborted transactions the response lists left out.
async fn read_committed(client: &mut RawClient) -> (Vec<String>, i64) {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(s(TOPIC)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let response: FetchResponse = client
        .call(ApiKey::Fetch, 11, &request)
        .await
        .expect("fetch");
    let data = &response.responses[0].partitions[0];
    let aborted: Vec<(i64, i64)> = data
        .aborted_transactions
        .iter()
        .flatten()
        .map(|a| (a.producer_id.0, a.first_offset))
        .collect();
    let mut records = data.records.clone().unwrap_or_default();
    let values = RecordBatchDecoder::decode_all(&mut records)
        .expect("decode")
        .into_iter()
        .flat_map(|set| set.records)
        .filter(|record| !record.control)
        .filter(|record| {
            !record.transactional
                || !aborted.iter().any(|&(producer, first)| {
                    producer == record.producer_id && first <= record.offset
                })
        })
        .filter_map(|record| {
            record
                .value
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        })
        .collect();
    (values, data.last_stable_offset)
}

#[tokio::test]
async fn a_transaction_the_coordinator_lost_is_aborted_at_start() {
    let broker = TestBroker::start().await;
    broker.create_topic(TOPIC, 3, &[]).await;
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    let producer = init(&mut client, "lost", 60_000).await;
    let producer = (producer.producer_id.0, producer.producer_epoch);
    add_partitions(&mut client, "lost", producer, &[(TOPIC, &[0])]).await;
    assert_eq!(
        produce(
            &mut client,
            0,
            transactional_batch(producer.0, producer.1, 0, 2)
        )
        .await,
        0
    );
    let (values, lso) = read_committed(&mut client).await;
    assert_eq!(
        (values.len(), lso),
        (0, 0),
        "the open transaction holds the LSO"
    );
    drop(client);

    // The state log is lost (say, restored from an older backup): nothing knows the
    // transaction any more, so nothing would ever end it.
    let dir = broker.data_dir().to_path_buf();
    let broker = broker
        .restart(move |_| {
            std::fs::remove_dir_all(dir.join("transactions")).expect("remove state log");
        })
        .await;
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (values, lso) = read_committed(&mut client).await;
        if lso > 0 {
            assert!(
                values.is_empty(),
                "the aborted records stay invisible: {values:?}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the LSO stayed stuck");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_producer_whose_unsynced_transaction_state_was_lost_is_fenced() {
    let broker = TestBroker::start().await;
    broker.create_topic(TOPIC, 3, &[]).await;
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    let init = init(&mut client, "forgotten", 60_000).await;
    let producer = (init.producer_id.0, init.producer_epoch);
    add_partitions(&mut client, "forgotten", producer, &[(TOPIC, &[0])]).await;
    assert_eq!(
        produce(
            &mut client,
            0,
            transactional_batch(producer.0, producer.1, 0, 2)
        )
        .await,
        0
    );
    assert_eq!(
        end_txn(&mut client, 3, "forgotten", producer, true).await,
        0
    );
    // DescribeTransactions waits for the commit's markers and completed state. Neither is
    // fsynced on its own, but another fsync may take them to disk: cutting the state log
    // here is one of the states a machine crash can leave.
    assert_eq!(describe(&mut client, "forgotten").await.1, "CompleteCommit");
    let state_log = broker.data_dir().join("transactions").join("state.log");
    let synced_len = std::fs::metadata(&state_log).expect("state log").len();

    // The next transaction's AddPartitionsToTxn state is written but not synced on its
    // own; its records are durable once acknowledged.
    add_partitions(&mut client, "forgotten", producer, &[(TOPIC, &[0])]).await;
    assert_eq!(
        produce(
            &mut client,
            0,
            transactional_batch(producer.0, producer.1, 2, 3)
        )
        .await,
        0
    );
    drop(client);
    // A machine crash loses the unsynced state; the records survive.
    let broker = broker
        .restart(move |_| {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&state_log)
                .expect("open state log");
            file.set_len(synced_len).expect("cut the unsynced state");
        })
        .await;
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    assert_eq!(
        end_txn(&mut client, 3, "forgotten", producer, true).await,
        ResponseError::ProducerFenced.code(),
        "the producer must not learn that records just aborted were committed"
    );
    let (values, _) = read_committed(&mut client).await;
    assert_eq!(values, vec!["v0", "v1"]);
}

#[tokio::test]
async fn a_transactional_id_idle_past_its_expiration_is_forgotten_for_good() {
    let broker = TestBroker::start_with(|config| {
        config.transaction_abort_interval = std::time::Duration::from_millis(50);
        config.transactional_id_expiration = std::time::Duration::from_millis(300);
    })
    .await;
    broker.create_topic(TOPIC, 1, &[]).await;
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    let busy = init(&mut client, "busy", 60_000).await;
    let busy = (busy.producer_id.0, busy.producer_epoch);
    let idle = init(&mut client, "idle", 60_000).await;
    let idle = (idle.producer_id.0, idle.producer_epoch);
    // A transaction in progress is never expired, however long it stays open (its own
    // timeout handles it).
    add_partitions(&mut client, "busy", busy, &[(TOPIC, &[0])]).await;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while describe(&mut client, "idle").await.0 == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle id never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        describe(&mut client, "idle").await.0,
        ResponseError::TransactionalIdNotFound.code()
    );
    assert_eq!(describe(&mut client, "busy").await.1, "Ongoing");
    assert_eq!(
        add_partitions(&mut client, "idle", idle, &[(TOPIC, &[0])]).await,
        vec![(
            TOPIC.to_owned(),
            0,
            ResponseError::InvalidProducerIdMapping.code()
        )],
        "the forgotten producer must initialise again"
    );
    drop(client);

    let broker = broker.restart(|_| {}).await;
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    assert_eq!(
        describe(&mut client, "idle").await.0,
        ResponseError::TransactionalIdNotFound.code(),
        "the expiry survives a restart"
    );
    let again = init(&mut client, "idle", 60_000).await;
    assert_eq!(again.error_code, 0);
    assert_ne!(
        again.producer_id.0, idle.0,
        "an expired id starts over with a new producer id"
    );
    assert_eq!(again.producer_epoch, 0);
}
