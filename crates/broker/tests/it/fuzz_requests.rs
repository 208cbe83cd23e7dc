//! Fuzzing request decoding and handling: arbitrary and mutated frames go through the same
//! path as bytes from a socket (`dispatch::start` and the handler's response future) on a real
//! broker in a temp dir. Any panic fails the test.
//!
//! `cargo test` runs a short pass; `.ci/run` runs the ignored long pass
//! (`FRESHET_FUZZ_CASES`, default 200,000).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use freshet_broker::dispatch::{self, Started};
use freshet_broker::listener::Listener;
use freshet_broker::session::Session;
use freshet_broker::{versions, Broker};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// One valid request frame (without size prefix) per supported API and version.
fn seed_frames() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for &(api, min, max) in versions::SUPPORTED {
        for version in min..=max {
            let mut buf = BytesMut::new();
            let header = RequestHeader::default()
                .with_request_api_key(api as i16)
                .with_request_api_version(version)
                .with_correlation_id(7)
                .with_client_id(Some(StrBytes::from_static_str("fuzz")));
            if header
                .encode(&mut buf, api.request_header_version(version))
                .is_err()
            {
                continue;
            }
            if encode_default_request(api, version, &mut buf) {
                seeds.push(buf.to_vec());
            }
        }
    }
    seeds
}

/// Encodes a small but non-trivial request of `api`; false when the codec refuses.
fn encode_default_request(api: ApiKey, version: i16, buf: &mut BytesMut) -> bool {
    let topic = TopicName(StrBytes::from_static_str("fuzz-topic"));
    let result = match api {
        ApiKey::Produce => ProduceRequest::default()
            .with_acks(1)
            .with_topic_data(vec![by_name_or_id(
                produce_request::TopicProduceData::default(),
                version >= 13,
                |t| t.with_name(topic.clone()),
                |t| t.with_topic_id(FUZZ_TOPIC_ID),
            )
            .with_partition_data(vec![produce_request::PartitionProduceData::default()
                .with_records(Some(Bytes::from_static(&[0u8; 70])))])])
            .encode(buf, version),
        ApiKey::Fetch => FetchRequest::default()
            .with_max_wait_ms(1)
            .with_topics(vec![by_name_or_id(
                fetch_request::FetchTopic::default(),
                version >= 13,
                |t| t.with_topic(topic.clone()),
                |t| t.with_topic_id(FUZZ_TOPIC_ID),
            )
            .with_partitions(vec![
                fetch_request::FetchPartition::default().with_partition_max_bytes(1024)
            ])])
            .encode(buf, version),
        ApiKey::Metadata => MetadataRequest::default()
            .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
            )
            .with_name(Some(topic))]))
            .encode(buf, version),
        ApiKey::ApiVersions => ApiVersionsRequest::default().encode(buf, version),
        ApiKey::ListOffsets => ListOffsetsRequest::default()
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic)
                .with_partitions(vec![Default::default()])])
            .encode(buf, version),
        ApiKey::CreateTopics => CreateTopicsRequest::default()
            .with_topics(vec![create_topics_request::CreatableTopic::default()
                .with_name(topic)
                .with_num_partitions(1)
                .with_replication_factor(1)])
            .encode(buf, version),
        ApiKey::JoinGroup => JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_session_timeout_ms(6000)
            .with_rebalance_timeout_ms(10)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .encode(buf, version),
        ApiKey::OffsetCommit => OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .encode(buf, version),
        ApiKey::OffsetFetch => OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .encode(buf, version),
        ApiKey::FindCoordinator => FindCoordinatorRequest::default().encode(buf, version),
        ApiKey::SyncGroup => SyncGroupRequest::default().encode(buf, version),
        ApiKey::Heartbeat => HeartbeatRequest::default().encode(buf, version),
        ApiKey::LeaveGroup => LeaveGroupRequest::default().encode(buf, version),
        ApiKey::DescribeGroups => DescribeGroupsRequest::default().encode(buf, version),
        ApiKey::ListGroups => ListGroupsRequest::default().encode(buf, version),
        ApiKey::DeleteGroups => DeleteGroupsRequest::default()
            .with_groups_names(vec![GroupId(StrBytes::from_static_str("g"))])
            .encode(buf, version),
        ApiKey::OffsetDelete => OffsetDeleteRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_topics(vec![
                offset_delete_request::OffsetDeleteRequestTopic::default()
                    .with_name(topic)
                    .with_partitions(vec![Default::default()]),
            ])
            .encode(buf, version),
        ApiKey::DeleteTopics => DeleteTopicsRequest::default().encode(buf, version),
        ApiKey::DeleteRecords => DeleteRecordsRequest::default().encode(buf, version),
        ApiKey::InitProducerId => InitProducerIdRequest::default().encode(buf, version),
        ApiKey::AddOffsetsToTxn => AddOffsetsToTxnRequest::default().encode(buf, version),
        ApiKey::TxnOffsetCommit => TxnOffsetCommitRequest::default()
            .with_topics(vec![
                txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                    .with_name(topic.clone())
                    .with_partitions(vec![
                        txn_offset_commit_request::TxnOffsetCommitRequestPartition::default(),
                    ]),
            ])
            .encode(buf, version),
        ApiKey::DescribeConfigs => DescribeConfigsRequest::default().encode(buf, version),
        ApiKey::CreatePartitions => CreatePartitionsRequest::default().encode(buf, version),
        ApiKey::DescribeCluster => DescribeClusterRequest::default()
            .with_include_cluster_authorized_operations(true)
            .encode(buf, version),
        ApiKey::ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("fuzz")))
            .with_member_id(StrBytes::from_static_str("fuzz-member"))
            .with_rebalance_timeout_ms(1000)
            .with_subscribed_topic_names(Some(vec![TopicName(StrBytes::from_static_str("t"))]))
            .with_topic_partitions(Some(Vec::new()))
            .encode(buf, version),
        ApiKey::ConsumerGroupDescribe => ConsumerGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(StrBytes::from_static_str("fuzz"))])
            .encode(buf, version),
        _ => return false,
    };
    result.is_ok()
}

/// Any id: the fuzzed broker has no topics, so topics named by id are all unknown.
const FUZZ_TOPIC_ID: uuid::Uuid = uuid::Uuid::from_u128(0x5eed);

/// `message` naming its topic by id (`by_id`, Produce and Fetch v13+) or by name.
fn by_name_or_id<T>(
    message: T,
    by_id: bool,
    name: impl FnOnce(T) -> T,
    id: impl FnOnce(T) -> T,
) -> T {
    if by_id {
        id(message)
    } else {
        name(message)
    }
}

/// Random bytes, or a seed with byte flips, insertions and a truncation.
fn frames(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let count = seeds.len();
    let mutated = (
        0..count,
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        prop::option::weighted(0.1, any::<prop::sample::Index>()),
    )
        .prop_map(move |(which, flips, cut)| {
            let mut frame = seeds[which].clone();
            for (at, byte) in flips {
                let i = at.index(frame.len().max(1));
                if i < frame.len() {
                    frame[i] = byte;
                } else {
                    frame.push(byte);
                }
            }
            if let Some(cut) = cut {
                frame.truncate(cut.index(frame.len() + 1));
            }
            frame
        });
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..256),
        4 => mutated,
    ]
}

fn fuzz(cases: u32) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let broker: Arc<Broker> = runtime.block_on(async {
        let mut config = freshet_testkit::test_config(dir.path());
        config.max_request_bytes = 1 << 20;
        Broker::open(config).expect("broker")
    });
    let peer: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let listener = Arc::new(Listener::plaintext());
    // How the inputs fared, printed at the end so a run that only exercises one path shows.
    let outcomes = std::sync::Mutex::new([0u64; 3]);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&frames(seed_frames()), |frame| {
            runtime.block_on(async {
                let mut session = Session::new(peer, listener.clone(), None);
                let outcome = match dispatch::start(&broker, Bytes::from(frame), &mut session).await
                {
                    Started::Respond(response) => {
                        // Long polls and group barriers may wait; only panics matter here.
                        let _ = tokio::time::timeout(Duration::from_millis(50), response).await;
                        0
                    }
                    Started::NoResponse => 1,
                    Started::Close(_) | Started::RespondAndClose(..) => 2,
                };
                if let Ok(mut counts) = outcomes.lock() {
                    counts[outcome] += 1;
                }
            });
            Ok(())
        })
        .expect("no input panics the broker");
    let [answered, silent, closed] = *outcomes.lock().expect("counts");
    eprintln!("fuzz: {answered} answered, {silent} without response (acks=0), {closed} closed the connection");
    assert!(
        answered > 0 && closed > 0,
        "the inputs reach both handlers and decoding errors"
    );
}

#[test]
fn short_fuzz_of_request_handling() {
    fuzz(300);
}

#[test]
#[ignore = "long run: .ci/run runs it with --ignored"]
fn long_fuzz_of_request_handling() {
    let cases = std::env::var("FRESHET_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(200_000);
    fuzz(cases);
}
