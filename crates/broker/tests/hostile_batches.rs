//! Decompression bombs over the wire (issue 10, finding 1): a produce request of about 0.5 MB
//! whose gzip batch decompresses to 512 MiB, sent twice to a compacted topic on a real broker
//! running in this process. The broker must refuse it and its peak resident memory must stay
//! small, through produce and through the compaction passes that follow.
//!
//! One test in its own binary, so that the process's peak RSS (`VmHWM`) is this scenario's.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use freshet_testkit::batches;
use freshet_testkit::raw::RawClient;
use freshet_testkit::TestBroker;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use kafka_protocol::ResponseError;

const BOMB_BYTES: usize = 512 << 20;
const RSS_LIMIT_BYTES: u64 = 200 << 20;

/// A small, legitimate gzip batch with a key, as a real producer sends it.
fn legit_gzip_batch() -> Bytes {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: Some(Bytes::from_static(b"key")),
        value: Some(Bytes::from_static(b"an ordinary value")),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::Gzip,
    };
    RecordBatchEncoder::encode(&mut buf, [&record], &options).expect("encode");
    buf.freeze()
}

async fn produce(broker: &TestBroker, topic: &str, records: Bytes) -> i16 {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    let response: ProduceResponse = client
        .call(ApiKey::Produce, 9, &request)
        .await
        .expect("produce answered");
    response.responses[0].partition_responses[0].error_code
}

/// A `kB` field of /proc/self/status, in bytes.
fn proc_status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .expect("field present");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|value| value.parse().ok())
        .expect("a number of kB");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bombs_are_refused_and_memory_stays_bounded() {
    let zeros_bomb = Bytes::from(batches::gzip_zeros_batch(BOMB_BYTES));
    let record_bomb = Bytes::from(batches::gzip_record_batch(BOMB_BYTES));
    assert!(zeros_bomb.len() < 1 << 20 && record_bomb.len() < 1 << 20);

    // test_config cleans logs every 200 ms; one-kilobyte segments put every batch in a closed,
    // compactable segment.
    let broker = TestBroker::start().await;
    let topic = "bombed";
    broker
        .create_topic(
            topic,
            1,
            &[("cleanup.policy", "compact"), ("segment.bytes", "1024")],
        )
        .await;
    let rss_before = proc_status_bytes("VmRSS:");

    // The finding's bomb: zeros, which no record parser can read past its first bytes.
    let zeros_codes = [
        produce(&broker, topic, zeros_bomb.clone()).await,
        produce(&broker, topic, zeros_bomb).await,
    ];
    // A well-formed record whose value is 512 MiB of zeros: only the size cap stops it.
    let record_codes = [
        produce(&broker, topic, record_bomb.clone()).await,
        produce(&broker, topic, record_bomb).await,
    ];
    let legit = produce(&broker, topic, legit_gzip_batch()).await;
    // Several compaction passes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let peak = proc_status_bytes("VmHWM:");
    let rss_after = proc_status_bytes("VmRSS:");
    eprintln!(
        "RSS before the bombs {} MB, after {} MB, peak {} MB; codes {zeros_codes:?} {record_codes:?} legit {legit}",
        rss_before >> 20,
        rss_after >> 20,
        peak >> 20
    );

    let corrupt = ResponseError::CorruptMessage.code();
    let too_large = ResponseError::MessageTooLarge.code();
    assert_eq!(zeros_codes, [corrupt, corrupt], "an unparsable body");
    assert_eq!(record_codes, [too_large, too_large], "over the cap");
    assert_eq!(legit, 0, "ordinary compressed batches are still accepted");
    assert!(
        peak < RSS_LIMIT_BYTES,
        "peak RSS {} MB is over {} MB",
        peak >> 20,
        RSS_LIMIT_BYTES >> 20
    );
}
