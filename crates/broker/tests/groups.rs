//! Consumer groups through librdkafka: rebalancing and committed offsets.

use std::sync::Arc;
use std::time::Duration;

use freshet_testkit::TestBroker;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
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

    let consumer = broker.consumer("committer", &[]);
    consumer.subscribe(&["committed"]).expect("subscribe");
    let mut consumed = 0;
    while consumed < 15 {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("records arrive")
            .expect("no error");
        consumer
            .commit_message(&message, CommitMode::Sync)
            .expect("commit acknowledged");
        consumed += 1;
    }
    let committed_before = consumer
        .committed(Timeout::After(Duration::from_secs(10)))
        .expect("OffsetFetch");
    drop(consumer);

    let broker = broker.restart(|_| {}).await;
    let fresh = broker.consumer("committer", &[]);
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition("committed", 0);
    wanted.add_partition("committed", 1);
    let committed_after = fresh
        .committed_offsets(wanted, Timeout::After(Duration::from_secs(10)))
        .expect("OffsetFetch after restart");
    let total: i64 = committed_after
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            other => panic!(
                "partition {} has no committed offset: {other:?}",
                e.partition()
            ),
        })
        .sum();
    assert_eq!(total, 15, "15 records were committed before the restart");
    for element in committed_before.elements() {
        let after = committed_after
            .find_partition(element.topic(), element.partition())
            .expect("partition present");
        assert_eq!(after.offset(), element.offset());
    }

    // A new member of the group resumes right after the committed records.
    fresh.subscribe(&["committed"]).expect("subscribe");
    let mut rest = Vec::new();
    while rest.len() < 5 {
        let message = tokio::time::timeout(Duration::from_secs(30), fresh.recv())
            .await
            .expect("the remaining records arrive")
            .expect("no error");
        rest.push(message.offset());
    }
    assert_eq!(rest.len(), 5);
}
