//! Hostile and unusual bytes on the wire: the broker answers with Kafka error codes or closes
//! the connection, never panics, and keeps serving everyone else.

use bytes::{BufMut, BytesMut};
use freshet_testkit::raw::RawClient;
use freshet_testkit::TestBroker;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use kafka_protocol::ResponseError;

fn batch(values: &[&str]) -> BytesMut {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(bytes::Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode batch");
    buf
}

fn produce(topic: &str, records: BytesMut) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records.freeze()))])])
}

async fn produce_error(broker: &TestBroker, topic: &str, records: BytesMut) -> i16 {
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    let response: ProduceResponse = client
        .call(ApiKey::Produce, 9, &produce(topic, records))
        .await
        .expect("produce answered");
    response.responses[0].partition_responses[0].error_code
}

async fn still_serves(broker: &TestBroker) {
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    let response: ApiVersionsResponse = client
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await
        .expect("broker still answers");
    assert_eq!(response.error_code, 0);
}

#[tokio::test]
async fn unsupported_api_versions_version_gets_a_v0_error_with_the_key_list() {
    let broker = TestBroker::start().await;
    // A version newer than this broker's (and its codec's) v4, as the next clients will probe
    // with: the answer must be a v0 body. The body is encoded as v4's, as a client would.
    use kafka_protocol::protocol::{Decodable, Encodable};
    let mut request = BytesMut::new();
    kafka_protocol::messages::RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(5)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("from-the-future")))
        .encode(&mut request, 2)
        .expect("header");
    ApiVersionsRequest::default()
        .encode(&mut request, 4)
        .expect("body");
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    client.send_frame(&request).await.expect("send");
    let mut frame = client.read_frame().await.expect("answered, not closed");
    kafka_protocol::messages::ResponseHeader::decode(&mut frame, 0).expect("header v0");
    let body = ApiVersionsResponse::decode(&mut frame, 0).expect("v0 body");
    assert_eq!(body.error_code, ResponseError::UnsupportedVersion.code());
    assert!(body
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::Produce as i16));
}

#[tokio::test]
async fn oversize_frame_is_refused_before_it_is_read() {
    let broker = TestBroker::start_with(|c| c.max_request_bytes = 1024).await;
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    // Announce a 1 GiB frame and send only its first bytes: the broker must not wait for the rest.
    let mut frame = BytesMut::new();
    frame.put_i32(1 << 30);
    frame.put_slice(&[0u8; 64]);
    client.send_raw(&frame).await.expect("send");
    assert!(client.is_closed().await, "connection closed");
    still_serves(&broker).await;
}

#[tokio::test]
async fn garbage_frames_close_the_connection_and_nothing_else() {
    let broker = TestBroker::start().await;
    let garbage: [&[u8]; 5] = [
        &[],
        &[0xff, 0xff],
        &[0x7f, 0x00, 0x00, 0x01, 0, 0, 0, 1, 0, 0],
        // Metadata v1 claiming 2^31-1 topics in a 10-byte frame.
        &[0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff],
        // Produce v9 with a bogus compact array length.
        &[
            0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f,
        ],
    ];
    for bytes in garbage {
        let mut client = RawClient::connect(broker.addr).await.expect("connect");
        client.send_frame(bytes).await.expect("send");
        assert!(
            client.is_closed().await,
            "connection closed after {bytes:?}"
        );
    }
    still_serves(&broker).await;
}

#[tokio::test]
async fn produce_errors_carry_kafka_codes_and_write_nothing() {
    let broker = TestBroker::start_with(|c| c.log_defaults.max_message_bytes = 4096).await;
    broker.create_topic("checked", 1, &[]).await;

    let mut corrupt = batch(&["a", "b"]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert_eq!(
        produce_error(&broker, "checked", corrupt).await,
        ResponseError::CorruptMessage.code()
    );

    let big = "x".repeat(10_000);
    assert_eq!(
        produce_error(&broker, "checked", batch(&[&big])).await,
        ResponseError::MessageTooLarge.code()
    );
    // Produce never creates a topic, so a name that cannot exist is simply unknown (as in Kafka).
    assert_eq!(
        produce_error(&broker, "bad/name", batch(&["a"])).await,
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert_eq!(produce_error(&broker, "checked", batch(&["fine"])).await, 0);

    // Only the valid batch was stored.
    let topic = broker_topic_hw(&broker, "checked").await;
    assert_eq!(topic, 1);
}

async fn broker_topic_hw(broker: &TestBroker, topic: &str) -> i64 {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    let request = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partitions(vec![ListOffsetsPartition::default()
            .with_partition_index(0)
            .with_timestamp(-1)])]);
    let response: ListOffsetsResponse = client
        .call(ApiKey::ListOffsets, 6, &request)
        .await
        .expect("ListOffsets");
    response.topics[0].partitions[0].offset
}

#[tokio::test]
async fn metadata_reports_invalid_and_unknown_topics() {
    let broker = TestBroker::start_with(|c| c.auto_create_topics = false).await;
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("no-such-topic")))),
            MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("bad topic")))),
        ]))
        .with_allow_auto_topic_creation(true);
    let response: MetadataResponse = client
        .call(ApiKey::Metadata, 12, &request)
        .await
        .expect("metadata");
    assert_eq!(
        response.topics[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert_eq!(
        response.topics[1].error_code,
        ResponseError::InvalidTopicException.code()
    );
    assert_eq!(response.brokers.len(), 1);
    assert_eq!(response.brokers[0].port, i32::from(broker.addr.port()));
}

#[tokio::test]
async fn metadata_reports_authorized_operations_only_when_asked() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    let asking = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("ops"))))]))
        .with_allow_auto_topic_creation(true)
        .with_include_cluster_authorized_operations(true)
        .with_include_topic_authorized_operations(true);
    let response: MetadataResponse = client
        .call(ApiKey::Metadata, 8, &asking)
        .await
        .expect("metadata");
    // Every ACL operation a topic (3576) and the cluster (8096) support: there is no authorizer.
    assert_eq!(response.topics[0].topic_authorized_operations, 3576);
    assert_eq!(response.cluster_authorized_operations, 8096);

    let not_asking = asking
        .with_include_cluster_authorized_operations(false)
        .with_include_topic_authorized_operations(false);
    let response: MetadataResponse = client
        .call(ApiKey::Metadata, 8, &not_asking)
        .await
        .expect("metadata");
    assert_eq!(response.topics[0].topic_authorized_operations, i32::MIN);
    assert_eq!(response.cluster_authorized_operations, i32::MIN);
}

fn fetch_request(
    topic: &str,
    min_bytes: i32,
    max_wait_ms: i32,
) -> kafka_protocol::messages::FetchRequest {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    kafka_protocol::messages::FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])])
}

#[tokio::test]
async fn fetch_with_min_bytes_zero_answers_at_once_and_a_long_poll_wakes_on_data() {
    use kafka_protocol::messages::FetchResponse;
    use std::time::Duration;
    let broker = TestBroker::start().await;
    broker.create_topic("polled", 1, &[]).await;

    // min_bytes = 0 on an empty partition: an immediate empty answer, not a 30 s wait.
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        client.call::<_, FetchResponse>(ApiKey::Fetch, 12, &fetch_request("polled", 0, 30_000)),
    )
    .await
    .expect("answered without waiting for max_wait_ms")
    .expect("fetch");
    let partition = &answer.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(partition.high_watermark, 0);
    assert!(partition.records.as_ref().is_none_or(|r| r.is_empty()));

    // min_bytes = 1: the fetch waits, and a produce on another connection wakes it.
    let waiting = tokio::spawn({
        let addr = broker.addr;
        async move {
            let mut client = RawClient::connect(addr).await.expect("connect");
            client
                .call::<_, FetchResponse>(ApiKey::Fetch, 12, &fetch_request("polled", 1, 30_000))
                .await
                .expect("fetch")
        }
    });
    assert_eq!(
        produce_error(&broker, "polled", batch(&["wake up"])).await,
        0
    );
    let woken = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the long poll ended when data arrived, well before max_wait_ms")
        .expect("fetch task");
    let partition = &woken.responses[0].partitions[0];
    assert_eq!(partition.high_watermark, 1);
    assert!(partition.records.as_ref().is_some_and(|r| !r.is_empty()));
}

/// Metadata for `names` at `version`, allowing auto-creation or not (v4+ only carry the flag).
async fn metadata(
    broker: &TestBroker,
    version: i16,
    names: &[&str],
    allow_auto_topic_creation: bool,
) -> MetadataResponse {
    let topics = names
        .iter()
        .map(|name| {
            MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
        })
        .collect();
    let mut request = MetadataRequest::default().with_topics(Some(topics));
    if version >= 4 {
        request.allow_auto_topic_creation = allow_auto_topic_creation;
    }
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    client
        .call(ApiKey::Metadata, version, &request)
        .await
        .expect("metadata")
}

/// Every topic, from a Metadata request for all of them (which creates nothing).
async fn all_topics(broker: &TestBroker) -> Vec<String> {
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    let response: MetadataResponse = client
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .await
        .expect("metadata");
    let mut names: Vec<String> = response
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
        .collect();
    names.sort();
    names
}

fn error_codes(response: &MetadataResponse) -> Vec<i16> {
    response.topics.iter().map(|t| t.error_code).collect()
}

#[tokio::test]
async fn metadata_creates_a_topic_only_when_the_request_allows_it() {
    let broker = TestBroker::start().await;
    let refused = metadata(&broker, 12, &["not-allowed"], false).await;
    assert_eq!(
        error_codes(&refused),
        [ResponseError::UnknownTopicOrPartition.code()]
    );
    assert!(all_topics(&broker).await.is_empty(), "nothing was created");

    let allowed = metadata(&broker, 12, &["allowed"], true).await;
    assert_eq!(error_codes(&allowed), [0]);
    assert_eq!(allowed.topics[0].partitions.len(), 3);
    // Before v4 a Metadata request cannot forbid it, and Kafka creates the topic.
    let old_client = metadata(&broker, 3, &["old-client"], false).await;
    assert_eq!(error_codes(&old_client), [0]);
    assert_eq!(all_topics(&broker).await, ["allowed", "old-client"]);
}

#[tokio::test]
async fn metadata_never_creates_a_topic_whose_name_is_invalid() {
    let broker = TestBroker::start().await;
    let too_long = "x".repeat(250);
    let invalid = [
        "bad topic",
        "a/b",
        ".",
        "..",
        "ü",
        "nul\0",
        too_long.as_str(),
    ];
    for version in [3, 12] {
        let response = metadata(&broker, version, &invalid, true).await;
        assert_eq!(
            error_codes(&response),
            vec![ResponseError::InvalidTopicException.code(); invalid.len()],
            "v{version}"
        );
    }
    assert!(all_topics(&broker).await.is_empty());
    let on_disk = std::fs::read_dir(broker.data_dir().join("topics"))
        .expect("topics dir")
        .count();
    assert_eq!(on_disk, 0, "no directory was made for any of them");
}

#[tokio::test]
async fn produce_to_an_unknown_topic_is_refused_and_creates_nothing() {
    let broker = TestBroker::start().await;
    for name in ["ghost", "bad/name"] {
        assert_eq!(
            produce_error(&broker, name, batch(&["boo"])).await,
            ResponseError::UnknownTopicOrPartition.code(),
            "{name}"
        );
    }
    assert!(all_topics(&broker).await.is_empty(), "nothing was created");
    // What clients do next: ask Metadata, which creates the topic, then produce again.
    assert_eq!(
        error_codes(&metadata(&broker, 12, &["ghost"], true).await),
        [0]
    );
    assert_eq!(produce_error(&broker, "ghost", batch(&["boo"])).await, 0);
}
