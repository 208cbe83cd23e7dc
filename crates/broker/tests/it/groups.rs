//! Consumer groups through librdkafka: rebalancing and committed offsets.

use std::sync::Arc;
use std::time::Duration;

use freshet_testkit::TestBroker;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

/// Keeps a consumer polling (rebalances only progress while the client polls).
fn keep_polling(consumer: Arc<StreamConsumer>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let _ = consumer.recv().await;
        }
    })
}

fn group_member(mut config: ClientConfig, group: &str) -> BaseConsumer {
    config
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

/// The group's committed offsets of partitions 0 and 1, read with OffsetFetch.
async fn committed_offsets(broker: &TestBroker) -> Vec<i64> {
    let config = broker.client_config();
    tokio::task::spawn_blocking(move || {
        let reader = group_member(config, "committer");
        let mut wanted = TopicPartitionList::new();
        wanted.add_partition("committed", 0);
        wanted.add_partition("committed", 1);
        let committed = reader
            .committed_offsets(wanted, Timeout::After(Duration::from_secs(10)))
            .expect("OffsetFetch");
        committed
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                other => panic!(
                    "partition {} has no committed offset: {other:?}",
                    e.partition()
                ),
            })
            .collect()
    })
    .await
    .expect("reader thread")
}

fn assigned(consumer: &StreamConsumer) -> usize {
    consumer.assignment().map(|a| a.count()).unwrap_or(0)
}

/// Waits until `condition` holds, failing the test after `limit`.
async fn eventually(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_share_partitions_and_one_takes_over_when_the_other_leaves() {
    let broker = TestBroker::start().await;
    broker.create_topic("shared", 6, &[]).await;
    let first = Arc::new(broker.consumer("sharing", &[]));
    let second = Arc::new(broker.consumer("sharing", &[]));
    first.subscribe(&["shared"]).expect("subscribe");
    second.subscribe(&["shared"]).expect("subscribe");
    let first_poller = keep_polling(first.clone());
    let _second_poller = keep_polling(second.clone());

    eventually("6 partitions split 3/3", Duration::from_secs(30), || {
        assigned(&first) == 3 && assigned(&second) == 3
    })
    .await;

    // The first consumer leaves the group (LeaveGroup on close).
    first_poller.abort();
    let _ = first_poller.await;
    first.unsubscribe();
    drop(first);

    eventually(
        "the remaining consumer owns all 6",
        Duration::from_secs(30),
        || assigned(&second) == 6,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_broker_restart() {
    let broker = TestBroker::start().await;
    broker.create_topic("committed", 2, &[]).await;
    let producer = broker.producer(&[]);
    for i in 0..20 {
        producer
            .send(
                FutureRecord::to("committed")
                    .key("k")
                    .payload(&format!("{i}"))
                    .partition(i % 2),
                Timeout::After(Duration::from_secs(10)),
            )
            .await
            .expect("acknowledged");
    }

    // Blocking client calls (commit, committed offsets, close) run off the async workers.
    let config = broker.client_config();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = group_member(config, "committer");
        consumer.subscribe(&["committed"]).expect("subscribe");
        // Read all 20 records but commit only the first 15. Reading everything also leaves
        // nothing queued in the client: librdkafka 2.12's close (rd_kafka_destroy) was seen to
        // hang here while fetched-but-unread messages remained in its queue.
        let mut consumed = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while consumed < 20 {
            assert!(std::time::Instant::now() < deadline, "records arrive");
            let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let message = message.expect("no error");
            consumed += 1;
            if consumed <= 15 {
                consumer
                    .commit_message(&message, CommitMode::Sync)
                    .expect("commit acknowledged");
            }
        }
        drop(consumer);
    })
    .await
    .expect("consumer thread");

    // Read back through a client that is not a group member (OffsetFetch from outside).
    let committed_before = committed_offsets(&broker).await;
    assert_eq!(
        committed_before.iter().sum::<i64>(),
        15,
        "15 records were committed"
    );

    let broker = broker.restart(|_| {}).await;
    assert_eq!(
        committed_offsets(&broker).await,
        committed_before,
        "committed offsets survive the restart"
    );
    let fresh = broker.consumer("committer", &[]);
    // A new member of the group resumes right after the committed records.
    fresh.subscribe(&["committed"]).expect("subscribe");
    let mut rest = Vec::new();
    while rest.len() < 5 {
        let message = tokio::time::timeout(Duration::from_secs(30), fresh.recv())
            .await
            .expect("the remaining records arrive")
            .expect("no error");
        let partition = usize::try_from(message.partition()).expect("partition");
        assert!(
            message.offset() >= committed_before[partition],
            "partition {partition} resumed at {} before its committed offset {}",
            message.offset(),
            committed_before[partition]
        );
        rest.push(message.offset());
    }
}
