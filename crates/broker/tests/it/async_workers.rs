//! A slow disk stalls only the requests that wait for it. The broker runs on a single async
//! worker thread and the test holds some file work at its fsyncs (`freshet_os::stall`): while
//! it is held, another connection must still be answered. Were the held work on the worker,
//! nothing else could run until it was released.

use std::time::Duration;

use freshet_os::stall::{stall_under, Stall};
use freshet_testkit::raw::RawClient;
use freshet_testkit::TestBroker;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};

/// How long another connection may wait for an answer while file work is held. Generous: it
/// only has to tell "answered" from "never answered while held".
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn produce(topic: &str, value: &str) -> ProduceRequest {
    let records = freshet_testkit::batches::values_batch(&[value]);
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

async fn produce_error_code(client: &mut RawClient, topic: &str, value: &str) -> i16 {
    let response: ProduceResponse = client
        .call(ApiKey::Produce, 9, &produce(topic, value))
        .await
        .expect("produce answered");
    response.responses[0].partition_responses[0].error_code
}

/// Waits (without blocking the test's runtime) until `stall` holds some file work.
async fn until_held(stall: &Stall) {
    for _ in 0..1_000 {
        if stall.has_held() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the file work never reached the stall");
}

/// A new connection's ApiVersions is answered while the stall holds.
async fn another_connection_is_answered(broker: &TestBroker) {
    let answered = tokio::time::timeout(ANSWER_WITHIN, async {
        let mut client = RawClient::connect(broker.addr).await.expect("connect");
        let response: ApiVersionsResponse = client
            .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
            .await
            .expect("ApiVersions answered");
        response.error_code
    })
    .await;
    assert_eq!(
        answered.ok(),
        Some(0),
        "the broker did not answer another connection while file work was held"
    );
}

#[tokio::test]
async fn a_segment_roll_waiting_for_the_disk_does_not_stall_other_connections() {
    let broker = TestBroker::start_on_one_worker(|_| {}).await;
    broker
        .create_topic("rolling", 1, &[("segment.bytes", "1024")])
        .await;
    let mut writer = RawClient::connect(broker.addr).await.expect("connect");
    // The segment holds a record now, so the next append that does not fit rolls it.
    assert_eq!(produce_error_code(&mut writer, "rolling", "first").await, 0);

    let stall = stall_under(&broker.data_dir().join("topics").join("rolling"));
    let big = "x".repeat(2_000);
    let rolling =
        tokio::spawn(async move { produce_error_code(&mut writer, "rolling", &big).await });
    until_held(&stall).await;
    another_connection_is_answered(&broker).await;
    assert!(!rolling.is_finished(), "the roll was held until now");

    drop(stall);
    assert_eq!(
        rolling.await.expect("produce task"),
        0,
        "the held produce succeeds"
    );
    let segments = std::fs::read_dir(broker.data_dir().join("topics/rolling/0"))
        .expect("partition dir")
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "log"))
        .count();
    assert_eq!(segments, 2, "the produce rolled the segment");
}

#[tokio::test]
async fn a_topic_creation_waiting_for_the_disk_does_not_stall_other_connections() {
    let broker = TestBroker::start_on_one_worker(|_| {}).await;
    let stall = stall_under(&broker.data_dir().join("topics").join("created"));
    let admin = broker.admin();
    let creating = tokio::spawn(async move {
        let topic = NewTopic::new("created", 1, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .create_topics([&topic], &options)
            .await
            .expect("CreateTopics answered");
        results.into_iter().all(|result| result.is_ok())
    });
    until_held(&stall).await;
    another_connection_is_answered(&broker).await;

    drop(stall);
    assert!(
        creating.await.expect("create task"),
        "the held creation succeeds"
    );
}

#[tokio::test]
async fn a_topic_auto_created_by_metadata_does_not_stall_other_connections() {
    let broker = TestBroker::start_on_one_worker(|config| config.auto_create_topics = true).await;
    let stall = stall_under(&broker.data_dir().join("topics").join("auto"));
    let mut asker = RawClient::connect(broker.addr).await.expect("connect");
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(true)
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name("auto")))
        ]));
    let asking = tokio::spawn(async move {
        let response: MetadataResponse = asker
            .call(ApiKey::Metadata, 12, &request)
            .await
            .expect("Metadata answered");
        response.topics[0].error_code
    });
    until_held(&stall).await;
    another_connection_is_answered(&broker).await;

    drop(stall);
    assert_eq!(
        asking.await.expect("metadata task"),
        0,
        "the topic was created"
    );
}
