//! Decompression bombs over the wire (`docs/SECURITY.md`): a produce request of about 0.5 MB
//! whose gzip batch decompresses to 512 MiB, sent twice to a compacted topic on a real broker
//! running in this process. The broker must refuse it and its peak resident memory must stay
//! small, through produce and through the compaction passes that follow.
//!
//! One test in its own binary, so that the process's peak RSS (`VmHWM`) is this scenario's.

use std::time::Duration;

use bytes::Bytes;
use freshet_testkit::batches;
use freshet_testkit::memory::Memory;
use freshet_testkit::raw::RawClient;
use freshet_testkit::TestBroker;
use kafka_protocol::records::Compression;
use kafka_protocol::ResponseError;

const BOMB_BYTES: usize = 512 << 20;
const RSS_LIMIT_MIB: u64 = 200;

async fn produce(broker: &TestBroker, topic: &str, records: Bytes) -> i16 {
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    client
        .produce(topic, 0, records)
        .await
        .expect("produce answered")
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
    let rss_before = Memory::now().resident_mib;

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
    let legit = produce(
        &broker,
        topic,
        batches::encoded_batch(&[(Some("key"), "an ordinary value")], Compression::Gzip),
    )
    .await;
    // Several compaction passes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = Memory::now();
    let (peak, rss_after) = (after.peak_mib, after.resident_mib);
    eprintln!(
        "RSS before the bombs {rss_before} MiB, after {rss_after} MiB, peak {peak} MiB; codes {zeros_codes:?} {record_codes:?} legit {legit}"
    );

    let corrupt = ResponseError::CorruptMessage.code();
    let too_large = ResponseError::MessageTooLarge.code();
    assert_eq!(zeros_codes, [corrupt, corrupt], "an unparsable body");
    assert_eq!(record_codes, [too_large, too_large], "over the cap");
    assert_eq!(legit, 0, "ordinary compressed batches are still accepted");
    assert!(
        peak < RSS_LIMIT_MIB,
        "peak RSS {peak} MiB is over {RSS_LIMIT_MIB} MiB"
    );
}
