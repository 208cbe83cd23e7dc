//! The newest API versions, over the raw protocol on a real broker: ListOffsets with every
//! special timestamp (MAX_TIMESTAMP, EARLIEST_LOCAL, LATEST_TIERED), compacted topics refusing
//! keyless records, DescribeCluster, topics named by id (Produce v13, Fetch v13+, Metadata
//! v12+, DeleteTopics v6), and the group APIs at their newest versions.

use std::time::Duration;

use bytes::Bytes;
use freshet_broker::listener::SecurityProtocol;
use freshet_security::scram::Mechanism;
use freshet_security::users::UserStore;
use freshet_security::Principal;
use freshet_testkit::raw::RawClient;
use freshet_testkit::TestBroker;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::list_offsets_response::ListOffsetsPartitionResponse;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, TimestampType};
use kafka_protocol::ResponseError;
use uuid::Uuid;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

fn group(id: &str) -> GroupId {
    GroupId(StrBytes::from_string(id.to_owned()))
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// One v2 batch of `(key, timestamp)` records, values "v{i}".
fn batch(records: &[(Option<&str>, i64)], compression: Compression) -> Bytes {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, timestamp))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever offset - sequence changes.
            sequence: i as i32 - 1,
            timestamp: *timestamp,
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::from(format!("v{i}"))),
            headers: Default::default(),
        })
        .collect();
    freshet_testkit::batches::encode_records(&records, compression)
}

async fn connect(broker: &TestBroker) -> RawClient {
    RawClient::connect(broker.addr).await.expect("connect")
}

/// Produces one batch to each `(partition, records)` of `topic` at `version` (by name).
async fn produce(
    client: &mut RawClient,
    version: i16,
    topic: &str,
    partitions: Vec<(i32, Bytes)>,
) -> ProduceResponse {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(
                partitions
                    .into_iter()
                    .map(|(index, records)| {
                        PartitionProduceData::default()
                            .with_index(index)
                            .with_records(Some(records))
                    })
                    .collect(),
            )]);
    client
        .call(ApiKey::Produce, version, &request)
        .await
        .expect("produce answered")
}

async fn produce_ok(client: &mut RawClient, topic: &str, records: Bytes) -> i64 {
    let response = produce(client, 9, topic, vec![(0, records)]).await;
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, 0, "{:?}", partition.error_message);
    partition.base_offset
}

/// ListOffsets for partition 0 of `topic` at `timestamp`, with `isolation_level`.
async fn list_offset(
    client: &mut RawClient,
    version: i16,
    topic: &str,
    timestamp: i64,
    isolation_level: i8,
) -> ListOffsetsPartitionResponse {
    let mut request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(timestamp)])]);
    if version >= 2 {
        request.isolation_level = isolation_level;
    }
    if version >= 10 {
        request.timeout_ms = 5000;
    }
    let mut response: ListOffsetsResponse = client
        .call(ApiKey::ListOffsets, version, &request)
        .await
        .expect("ListOffsets");
    response.topics.remove(0).partitions.remove(0)
}

/// `(error, offset, timestamp, leader epoch)` of a ListOffsets answer.
fn summary(p: &ListOffsetsPartitionResponse) -> (i16, i64, i64, i32) {
    (p.error_code, p.offset, p.timestamp, p.leader_epoch)
}

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_answers_every_special_timestamp() {
    let broker = TestBroker::start().await;
    broker.create_topic("specials", 1, &[]).await;
    let mut client = connect(&broker).await;

    // An empty partition: no record has the largest timestamp; nothing is tiered.
    assert_eq!(
        summary(&list_offset(&mut client, 7, "specials", MAX_TIMESTAMP, 0).await),
        (0, -1, -1, -1)
    );
    assert_eq!(
        summary(&list_offset(&mut client, 9, "specials", LATEST_TIERED, 0).await),
        (0, -1, -1, -1)
    );

    // Timestamps out of order within and across batches; 5000 twice (offsets 1 and 4).
    let none = Compression::None;
    produce_ok(
        &mut client,
        "specials",
        batch(&[(None, 1000), (None, 5000), (None, 3000)], none),
    )
    .await;
    produce_ok(&mut client, "specials", batch(&[(None, 4000)], none)).await;
    produce_ok(
        &mut client,
        "specials",
        batch(&[(None, 5000), (None, 2000)], none),
    )
    .await;
    for version in 7..=10 {
        assert_eq!(
            summary(&list_offset(&mut client, version, "specials", MAX_TIMESTAMP, 0).await),
            (0, 1, 5000, 0),
            "v{version}: the first record with the largest timestamp"
        );
    }
    // A larger timestamp in the middle of a compressed batch.
    let gzip = Compression::Gzip;
    produce_ok(
        &mut client,
        "specials",
        batch(&[(None, 6000), (None, 7000), (None, 10)], gzip),
    )
    .await;

    for version in 7..=10 {
        macro_rules! at {
            ($timestamp:expr) => {
                list_offset(&mut client, version, "specials", $timestamp, 0)
            };
        }
        assert_eq!(
            summary(&at!(MAX_TIMESTAMP).await),
            (0, 7, 7000, 0),
            "v{version}"
        );
        assert_eq!(summary(&at!(LATEST).await), (0, 9, -1, 0), "v{version}");
        assert_eq!(summary(&at!(EARLIEST).await), (0, 0, -1, 0), "v{version}");
        assert_eq!(summary(&at!(2500).await), (0, 1, 5000, 0), "v{version}");
        assert_eq!(summary(&at!(99_999).await), (0, -1, -1, -1), "v{version}");
        if version >= 8 {
            assert_eq!(
                summary(&at!(EARLIEST_LOCAL).await),
                (0, 0, -1, 0),
                "v{version}"
            );
        }
        if version >= 9 {
            assert_eq!(
                summary(&at!(LATEST_TIERED).await),
                (0, -1, -1, -1),
                "v{version}"
            );
        }
        // Not a special value Kafka knows.
        assert_eq!(
            at!(-6).await.error_code,
            ResponseError::InvalidRequest.code(),
            "v{version}"
        );
        // read_committed sees what read_uncommitted sees until there are transactions.
        let committed = list_offset(&mut client, version, "specials", LATEST, 1).await;
        assert_eq!(summary(&committed), (0, 9, -1, 0), "v{version}");
    }

    // A partition named twice: INVALID_REQUEST for both, as in Kafka.
    let twice = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name("specials"))
            .with_partitions(vec![
                ListOffsetsPartition::default().with_timestamp(LATEST),
                ListOffsetsPartition::default().with_timestamp(EARLIEST),
            ])]);
    let response: ListOffsetsResponse = client
        .call(ApiKey::ListOffsets, 10, &twice)
        .await
        .expect("ListOffsets");
    for partition in &response.topics[0].partitions {
        assert_eq!(partition.error_code, ResponseError::InvalidRequest.code());
    }

    // DeleteRecords past the largest timestamp's record: the answer moves to what is left.
    let delete = DeleteRecordsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(name("specials"))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(8)])]);
    let deleted: DeleteRecordsResponse = client
        .call(ApiKey::DeleteRecords, 2, &delete)
        .await
        .expect("DeleteRecords");
    assert_eq!(deleted.topics[0].partitions[0].error_code, 0);
    assert_eq!(
        summary(&list_offset(&mut client, 10, "specials", MAX_TIMESTAMP, 0).await),
        (0, 8, 10, 0)
    );
    assert_eq!(
        summary(&list_offset(&mut client, 10, "specials", EARLIEST_LOCAL, 0).await),
        (0, 8, -1, 0)
    );
    produce_ok(
        &mut client,
        "specials",
        batch(&[(None, 9000), (None, 8000)], none),
    )
    .await;
    assert_eq!(
        summary(&list_offset(&mut client, 10, "specials", MAX_TIMESTAMP, 0).await),
        (0, 9, 9000, 0)
    );

    // A restart keeps the answer: the segments' largest timestamps come from their indexes.
    drop(client);
    let broker = broker.restart(|_| {}).await;
    let mut client = connect(&broker).await;
    assert_eq!(
        summary(&list_offset(&mut client, 10, "specials", MAX_TIMESTAMP, 0).await),
        (0, 9, 9000, 0)
    );
    produce_ok(&mut client, "specials", batch(&[(None, 8500)], none)).await;
    assert_eq!(
        summary(&list_offset(&mut client, 10, "specials", MAX_TIMESTAMP, 0).await),
        (0, 9, 9000, 0),
        "an older record after the restart changes nothing"
    );
    produce_ok(&mut client, "specials", batch(&[(None, 9500)], none)).await;
    assert_eq!(
        summary(&list_offset(&mut client, 10, "specials", MAX_TIMESTAMP, 0).await),
        (0, 12, 9500, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_timestamp_spans_segments_and_survives_a_restart() {
    let broker = TestBroker::start().await;
    // Small segments: the largest timestamp lies in an old, closed segment. Kept forever:
    // the timestamps are from 1970, which retention would otherwise delete at once.
    broker
        .create_topic(
            "segmented",
            1,
            &[("segment.bytes", "1024"), ("retention.ms", "-1")],
        )
        .await;
    let mut client = connect(&broker).await;
    let mut expected = (0, 0);
    for i in 0..80i64 {
        // Wrapping timestamps: the largest (offset 13) comes early, later ones are smaller.
        let timestamp = 1_000 + (i * 37 + 11) % 500;
        let offset = produce_ok(
            &mut client,
            "segmented",
            batch(&[(Some("k"), timestamp)], Compression::None),
        )
        .await;
        if timestamp > expected.1 {
            expected = (offset, timestamp);
        }
    }
    assert!(
        broker
            .broker
            .topics
            .get("segmented")
            .expect("topic")
            .partitions[0]
            .log
            .segments()
            .len()
            > 3
    );
    let (offset, timestamp) = expected;
    assert_eq!(
        summary(&list_offset(&mut client, 7, "segmented", MAX_TIMESTAMP, 0).await),
        (0, offset, timestamp, 0)
    );
    drop(client);
    let broker = broker.restart(|_| {}).await;
    let mut client = connect(&broker).await;
    assert_eq!(
        summary(&list_offset(&mut client, 7, "segmented", MAX_TIMESTAMP, 0).await),
        (0, offset, timestamp, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_topics_refuse_keyless_records_and_nothing_else() {
    let broker = TestBroker::start().await;
    broker
        .create_topic("compacted", 2, &[("cleanup.policy", "compact")])
        .await;
    broker.create_topic("plain", 1, &[]).await;
    let mut client = connect(&broker).await;
    let none = Compression::None;
    let keyless = batch(
        &[
            (Some("a"), 1000),
            (None, 1000),
            (Some("b"), 1000),
            (None, 1000),
        ],
        none,
    );
    let keyed = batch(&[(Some("a"), 1000)], none);

    // One request, two partitions: only the keyless records' partition is refused.
    let response = produce(
        &mut client,
        9,
        "compacted",
        vec![(0, keyless.clone()), (1, keyed.clone())],
    )
    .await;
    let refused = &response.responses[0].partition_responses[0];
    assert_eq!(refused.error_code, ResponseError::InvalidRecord.code());
    assert_eq!(refused.base_offset, -1);
    let per_record: Vec<(i32, String)> = refused
        .record_errors
        .iter()
        .map(|e| {
            let message = e
                .batch_index_error_message
                .as_deref()
                .map(|m| m.to_string());
            (e.batch_index, message.unwrap_or_default())
        })
        .collect();
    let why = "Compacted topic cannot accept message without key in topic partition compacted-0.";
    assert_eq!(per_record, [(1, why.to_owned()), (3, why.to_owned())]);
    let message = refused.error_message.as_deref().map(|m| m.to_string());
    assert_eq!(
        message.as_deref(),
        Some(
            "One or more records have been rejected due to 2 record errors in total, and only \
             showing the first three errors at most: [RecordError(batchIndex=1, message='Compacted \
             topic cannot accept message without key in topic partition compacted-0.'), \
             RecordError(batchIndex=3, message='Compacted topic cannot accept message without \
             key in topic partition compacted-0.')]"
        )
    );
    let accepted = &response.responses[0].partition_responses[1];
    assert_eq!((accepted.error_code, accepted.base_offset), (0, 0));

    // Before v8 there is no per-record list, only the code; a compressed batch is opened too.
    let gzipped = batch(&[(None, 1000)], Compression::Gzip);
    let old = produce(&mut client, 7, "compacted", vec![(0, gzipped)]).await;
    assert_eq!(
        old.responses[0].partition_responses[0].error_code,
        ResponseError::InvalidRecord.code()
    );
    // Nothing of the refused batches was written; keyed records are fine.
    assert_eq!(produce_ok(&mut client, "compacted", keyed).await, 0);
    // A topic that is not compacted takes keyless records.
    assert_eq!(produce_ok(&mut client, "plain", keyless).await, 0);

    // librdkafka reports the refusal as INVALID_RECORD, not retried.
    let producer = broker.producer(&[("retries", "0")]);
    let sent = producer
        .send(
            rdkafka::producer::FutureRecord::<str, str>::to("compacted")
                .partition(1)
                .payload("no key"),
            Duration::from_secs(10),
        )
        .await;
    let (error, _) = sent.expect_err("a keyless record is refused");
    assert_eq!(
        error.rdkafka_error_code(),
        Some(rdkafka::types::RDKafkaErrorCode::InvalidRecord)
    );
    let sent = producer
        .send(
            rdkafka::producer::FutureRecord::to("compacted")
                .partition(1)
                .key("k")
                .payload("keyed"),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(sent.map_err(|(e, _)| e).expect("keyed record").offset, 1);
}

async fn describe_cluster(
    client: &mut RawClient,
    version: i16,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    client
        .call(ApiKey::DescribeCluster, version, &request)
        .await
        .expect("DescribeCluster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_cluster_names_this_broker_at_every_version() {
    let broker = TestBroker::start().await;
    let mut client = connect(&broker).await;
    let metadata: MetadataResponse = client
        .call(
            ApiKey::Metadata,
            13,
            &MetadataRequest::default().with_topics(None),
        )
        .await
        .expect("metadata");
    for version in 0..=2 {
        let asking =
            DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
        let response = describe_cluster(&mut client, version, asking).await;
        assert_eq!(response.error_code, 0, "v{version}");
        assert_eq!(Some(&response.cluster_id), metadata.cluster_id.as_ref());
        assert_eq!(response.controller_id, metadata.controller_id);
        assert_eq!(response.brokers.len(), 1);
        let node = &response.brokers[0];
        assert_eq!(node.broker_id, metadata.brokers[0].node_id);
        assert_eq!(node.host.as_str(), "127.0.0.1");
        assert_eq!(node.port, i32::from(broker.addr.port()));
        assert!(!node.is_fenced);
        // Every operation on the cluster: there is no authorizer.
        assert_eq!(response.cluster_authorized_operations, 8096, "v{version}");
        let not_asking =
            describe_cluster(&mut client, version, DescribeClusterRequest::default()).await;
        assert_eq!(
            not_asking.cluster_authorized_operations,
            i32::MIN,
            "v{version}"
        );
    }
    // v1+ endpoint types: this is a broker endpoint.
    let controllers = DescribeClusterRequest::default().with_endpoint_type(2);
    let response = describe_cluster(&mut client, 1, controllers).await;
    assert_eq!(
        response.error_code,
        ResponseError::MismatchedEndpointType.code()
    );
    assert!(response.error_message.is_some());
    assert!(response.brokers.is_empty());
    let unknown = DescribeClusterRequest::default().with_endpoint_type(9);
    let response = describe_cluster(&mut client, 2, unknown).await;
    assert_eq!(
        response.error_code,
        ResponseError::UnsupportedEndpointType.code()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_cluster_reports_operations_only_to_those_who_may_describe_the_cluster() {
    let broker = TestBroker::start_with_listeners(&["SASL_PLAINTEXT://127.0.0.1:0"], |config| {
        config.acl_authorizer = true;
        config.super_users = vec![Principal::user("admin")];
    })
    .await;
    let store = UserStore::open(broker.data_dir()).expect("user store");
    for (user, password) in [("admin", "admin-secret"), ("alice", "alice-secret")] {
        store
            .add(user, password.as_bytes(), &Mechanism::ALL, 4096)
            .expect("add user");
    }
    let addr = broker
        .listener(SecurityProtocol::SaslPlaintext)
        .bound_addr()
        .expect("bound");
    let asking = DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
    for (user, password, operations) in [
        ("admin", "admin-secret", 8096),
        // No ACL at all: the cluster is still described, its operations are 0.
        ("alice", "alice-secret", 0),
    ] {
        let mut client = RawClient::connect(addr).await.expect("connect");
        let (code, message) = client.sasl_plain(user, password).await.expect("sasl");
        assert_eq!(code, 0, "{user}: {message:?}");
        let response = describe_cluster(&mut client, 2, asking.clone()).await;
        assert_eq!(response.error_code, 0, "{user}");
        assert_eq!(response.brokers.len(), 1, "{user}");
        assert_eq!(response.cluster_authorized_operations, operations, "{user}");
    }
}

/// The id of `topic`, from Metadata v12.
async fn topic_id(client: &mut RawClient, topic: &str) -> Uuid {
    let request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(name(topic))),
    ]));
    let response: MetadataResponse = client
        .call(ApiKey::Metadata, 12, &request)
        .await
        .expect("metadata");
    let id = response.topics[0].topic_id;
    assert!(!id.is_nil());
    id
}

fn fetch_by_id(id: Uuid) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic_id(id)
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_fetch_and_metadata_name_topics_by_id() {
    let broker = TestBroker::start().await;
    broker.create_topic("by-id", 1, &[]).await;
    let mut client = connect(&broker).await;
    let id = topic_id(&mut client, "by-id").await;
    let stranger = Uuid::new_v4();

    // Metadata v12+ by id: the topic with its name; an unknown id without one.
    for version in [12, 13] {
        let request = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default()
                .with_name(None)
                .with_topic_id(id),
            MetadataRequestTopic::default()
                .with_name(None)
                .with_topic_id(stranger),
        ]));
        let response: MetadataResponse = client
            .call(ApiKey::Metadata, version, &request)
            .await
            .expect("metadata");
        assert_eq!(response.error_code, 0);
        let known = &response.topics[0];
        assert_eq!((known.error_code, known.topic_id), (0, id));
        assert_eq!(known.name.as_deref().map(|n| n.as_str()), Some("by-id"));
        assert_eq!(known.partitions.len(), 1);
        let unknown = &response.topics[1];
        assert_eq!(unknown.error_code, ResponseError::UnknownTopicId.code());
        assert_eq!((unknown.topic_id, unknown.name.as_ref()), (stranger, None));
    }

    // Produce v10-12 by name, v13 by id.
    for version in 10..=12 {
        let response = produce(
            &mut client,
            version,
            "by-id",
            vec![(0, batch(&[(None, 1)], Compression::None))],
        )
        .await;
        assert_eq!(
            response.responses[0].partition_responses[0].error_code, 0,
            "v{version}"
        );
    }
    let by_id = |topic_id: Uuid| {
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_topic_id(topic_id)
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(&[(None, 1)], Compression::None)))])])
    };
    let response: ProduceResponse = client
        .call(ApiKey::Produce, 13, &by_id(id))
        .await
        .expect("produce v13");
    assert_eq!(response.responses[0].topic_id, id);
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!((partition.error_code, partition.base_offset), (0, 3));
    let response: ProduceResponse = client
        .call(ApiKey::Produce, 13, &by_id(stranger))
        .await
        .expect("produce v13");
    assert_eq!(
        response.responses[0].partition_responses[0].error_code,
        ResponseError::UnknownTopicId.code()
    );

    // Fetch v13-18 by id: the four records; an unknown id answers UNKNOWN_TOPIC_ID.
    for version in 13..=18 {
        let response: FetchResponse = client
            .call(ApiKey::Fetch, version, &fetch_by_id(id))
            .await
            .expect("fetch");
        let topic = &response.responses[0];
        assert_eq!(topic.topic_id, id, "v{version}");
        let partition = &topic.partitions[0];
        assert_eq!(
            (partition.error_code, partition.high_watermark),
            (0, 4),
            "v{version}"
        );
        let mut records = partition.records.clone().expect("records");
        let batches =
            kafka_protocol::records::RecordBatchDecoder::decode_all(&mut records).expect("decode");
        let count: usize = batches.iter().map(|b| b.records.len()).sum();
        assert_eq!(count, 4, "v{version}");

        let response: FetchResponse = client
            .call(ApiKey::Fetch, version, &fetch_by_id(stranger))
            .await
            .expect("fetch");
        assert_eq!(
            response.responses[0].partitions[0].error_code,
            ResponseError::UnknownTopicId.code(),
            "v{version}"
        );
    }
}

async fn delete_topics(
    client: &mut RawClient,
    topics: Vec<DeleteTopicState>,
) -> Vec<(i16, Option<String>, Uuid)> {
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(topics);
    let response: DeleteTopicsResponse = client
        .call(ApiKey::DeleteTopics, 6, &request)
        .await
        .expect("DeleteTopics");
    response
        .responses
        .into_iter()
        .map(|r| (r.error_code, r.name.map(|n| n.to_string()), r.topic_id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_topics_v6_deletes_by_name_or_by_id() {
    let broker = TestBroker::start().await;
    for topic in ["gone-by-name", "gone-by-id", "kept"] {
        broker.create_topic(topic, 1, &[]).await;
    }
    let mut client = connect(&broker).await;
    let by_name_id = topic_id(&mut client, "gone-by-name").await;
    let by_id = topic_id(&mut client, "gone-by-id").await;
    let kept = topic_id(&mut client, "kept").await;
    let stranger = Uuid::new_v4();
    let invalid = ResponseError::InvalidRequest.code();

    let answers = delete_topics(
        &mut client,
        vec![
            DeleteTopicState::default().with_name(Some(name("gone-by-name"))),
            DeleteTopicState::default()
                .with_name(None)
                .with_topic_id(by_id),
            DeleteTopicState::default()
                .with_name(None)
                .with_topic_id(stranger),
            // Both a name and an id, and an id named twice: refused, nothing deleted.
            DeleteTopicState::default()
                .with_name(Some(name("kept")))
                .with_topic_id(kept),
            DeleteTopicState::default()
                .with_name(None)
                .with_topic_id(kept),
            DeleteTopicState::default()
                .with_name(None)
                .with_topic_id(kept),
        ],
    )
    .await;
    assert_eq!(
        answers,
        [
            (0, Some("gone-by-name".to_owned()), by_name_id),
            (0, Some("gone-by-id".to_owned()), by_id),
            (ResponseError::UnknownTopicId.code(), None, stranger),
            (invalid, Some("kept".to_owned()), kept),
            (invalid, None, kept),
            (invalid, None, kept),
        ]
    );
    let metadata: MetadataResponse = client
        .call(
            ApiKey::Metadata,
            13,
            &MetadataRequest::default().with_topics(None),
        )
        .await
        .expect("metadata");
    let left: Vec<String> = metadata
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
        .collect();
    assert_eq!(left, ["kept"]);
}

fn join(group_id: &str, member_id: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(group(group_id))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(5_000)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"\0\0\0\0\0\0\0\0"))])
        .with_reason(Some(s("a test joins")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_apis_answer_at_their_newest_versions() {
    let broker = TestBroker::start().await;
    broker.create_topic("grouped", 1, &[]).await;
    let mut client = connect(&broker).await;

    // JoinGroup v9: the first join is told its member id, the second joins.
    let first: JoinGroupResponse = client
        .call(ApiKey::JoinGroup, 9, &join("newest", ""))
        .await
        .expect("join");
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
    assert_eq!(first.protocol_name, None, "v7+: no protocol is null");
    assert_eq!(first.protocol_type, None);
    let member = first.member_id.to_string();
    let joined: JoinGroupResponse = client
        .call(ApiKey::JoinGroup, 9, &join("newest", &member))
        .await
        .expect("join");
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    assert_eq!(joined.leader.as_str(), member);
    assert!(!joined.skip_assignment);
    let generation = joined.generation_id;

    let sync = SyncGroupRequest::default()
        .with_group_id(group("newest"))
        .with_generation_id(generation)
        .with_member_id(s(&member))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(s(&member))
            .with_assignment(Bytes::from_static(b"assigned"))]);
    let synced: SyncGroupResponse = client
        .call(ApiKey::SyncGroup, 4, &sync)
        .await
        .expect("sync");
    assert_eq!(synced.error_code, 0);
    assert_eq!(&synced.assignment[..], b"assigned");

    let heartbeat = HeartbeatRequest::default()
        .with_group_id(group("newest"))
        .with_generation_id(generation)
        .with_member_id(s(&member));
    let beat: HeartbeatResponse = client
        .call(ApiKey::Heartbeat, 4, &heartbeat)
        .await
        .expect("heartbeat");
    assert_eq!(beat.error_code, 0);

    // OffsetCommit v9 as the member; OffsetFetch v8 and v9 for two groups at once.
    let commit = OffsetCommitRequest::default()
        .with_group_id(group("newest"))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(&member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(name("grouped"))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(42)
                .with_committed_metadata(Some(s("meta")))])]);
    let committed: OffsetCommitResponse = client
        .call(ApiKey::OffsetCommit, 9, &commit)
        .await
        .expect("commit");
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);
    for version in [8, 9] {
        let fetch = OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(group("newest"))
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(name("grouped"))
                    .with_partition_indexes(vec![0])])),
            OffsetFetchRequestGroup::default()
                .with_group_id(group("never-committed"))
                .with_topics(None),
        ]);
        let fetched: OffsetFetchResponse = client
            .call(ApiKey::OffsetFetch, version, &fetch)
            .await
            .expect("offset fetch");
        assert_eq!(fetched.groups.len(), 2, "v{version}");
        let ours = &fetched.groups[0];
        assert_eq!((ours.group_id.as_str(), ours.error_code), ("newest", 0));
        let partition = &ours.topics[0].partitions[0];
        assert_eq!(partition.committed_offset, 42, "v{version}");
        assert_eq!(partition.metadata.as_deref(), Some("meta"));
        let other = &fetched.groups[1];
        assert_eq!(
            (other.group_id.as_str(), other.error_code),
            ("never-committed", 0)
        );
        assert!(other.topics.is_empty());
    }

    // DescribeGroups v6: an unknown group is an error now, not a Dead group.
    let describe =
        DescribeGroupsRequest::default().with_groups(vec![group("newest"), group("nobody")]);
    let described: DescribeGroupsResponse = client
        .call(ApiKey::DescribeGroups, 6, &describe)
        .await
        .expect("describe");
    assert_eq!(described.groups[0].error_code, 0);
    assert_eq!(described.groups[0].group_state.as_str(), "Stable");
    assert_eq!(
        described.groups[1].error_code,
        ResponseError::GroupIdNotFound.code()
    );
    assert_eq!(
        described.groups[1].error_message.as_deref(),
        Some("Group nobody not found.")
    );
    let described: DescribeGroupsResponse = client
        .call(ApiKey::DescribeGroups, 5, &describe)
        .await
        .expect("describe");
    assert_eq!(described.groups[1].error_code, 0, "v5: Dead, no error");
    assert_eq!(described.groups[1].group_state.as_str(), "Dead");

    // ListGroups v5: every group is classic; a filter for another type lists nothing.
    for (types, listed) in [
        (vec![], true),
        (vec!["Classic"], true),
        (vec!["consumer"], false),
    ] {
        let request =
            ListGroupsRequest::default().with_types_filter(types.iter().map(|t| s(t)).collect());
        let response: ListGroupsResponse = client
            .call(ApiKey::ListGroups, 5, &request)
            .await
            .expect("list groups");
        let found: Vec<(String, String)> = response
            .groups
            .iter()
            .map(|g| (g.group_id.to_string(), g.group_type.to_string()))
            .collect();
        if listed {
            assert!(
                found.contains(&("newest".to_owned(), "classic".to_owned())),
                "{types:?}: {found:?}"
            );
        } else {
            assert!(found.is_empty(), "{types:?}: {found:?}");
        }
    }

    // LeaveGroup v5 with a reason.
    let leave = LeaveGroupRequest::default()
        .with_group_id(group("newest"))
        .with_members(vec![MemberIdentity::default()
            .with_member_id(s(&member))
            .with_reason(Some(s("the test is over")))]);
    let left: LeaveGroupResponse = client
        .call(ApiKey::LeaveGroup, 5, &leave)
        .await
        .expect("leave");
    assert_eq!((left.error_code, left.members[0].error_code), (0, 0));
}

#[tokio::test]
async fn api_versions_v4_lists_the_new_ranges() {
    let broker = TestBroker::start().await;
    let mut client = connect(&broker).await;
    let response: ApiVersionsResponse = client
        .call(
            ApiKey::ApiVersions,
            4,
            &ApiVersionsRequest::default()
                .with_client_software_name(s("freshet-test"))
                .with_client_software_version(s("1")),
        )
        .await
        .expect("ApiVersions v4");
    assert_eq!(response.error_code, 0);
    let range = |api: ApiKey| {
        response
            .api_keys
            .iter()
            .find(|k| k.api_key == api as i16)
            .map(|k| (k.min_version, k.max_version))
    };
    assert_eq!(range(ApiKey::ListOffsets), Some((1, 10)));
    assert_eq!(range(ApiKey::DescribeCluster), Some((0, 2)));
    assert_eq!(range(ApiKey::Fetch), Some((4, 18)));
    assert_eq!(range(ApiKey::Produce), Some((3, 13)));

    // CreateTopics v6 answers like v5.
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(name("v6"))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
    let created: CreateTopicsResponse = client
        .call(ApiKey::CreateTopics, 6, &create)
        .await
        .expect("CreateTopics v6");
    assert_eq!(created.topics[0].error_code, 0);
    assert_eq!(created.topics[0].num_partitions, 1);
}
