//! Transactions through crashes, tested by crashing a real `freshet broker` process: killed
//! with SIGKILL while a transaction is open, and aborted between the markers of a commit it
//! has already acknowledged (the `txn-after-first-marker` crash point, see
//! `freshet_broker::failpoint`). After a restart a read_committed consumer sees every
//! committed record exactly once and nothing of the rest, and the consumer offsets a cut
//! commit carried are committed too.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::common;
use common::{client_config, BrokerProcess};
use freshet_testkit::transactions::{self, sorted, WAIT};

const PARTITIONS: i32 = 3;

fn transactional_producer(addr: &str, id: &str) -> BaseProducer {
    let mut config = client_config(addr);
    config.set("message.timeout.ms", "30000");
    transactions::transactional_producer(config, id)
}

fn send_all(producer: &BaseProducer, topic: &str, values: &[String]) {
    transactions::send_spread(producer, topic, PARTITIONS, values);
}

fn values(tag: &str, count: usize) -> Vec<String> {
    transactions::numbered(tag, count)
}

/// Every value a read_committed consumer reads from the beginning of every partition, up to
/// each partition's end (its last stable offset), sorted, once no transaction is open.
fn read_committed(addr: &str, topic: &str) -> Vec<String> {
    transactions::read_committed_once_settled(client_config(addr), topic, PARTITIONS)
}

#[test]
fn a_transaction_open_at_sigkill_stays_invisible_and_the_next_producer_aborts_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let (committed, open, next) = (values("kept", 12), values("open", 12), values("next", 6));
    {
        let producer = transactional_producer(&broker.addr, "crash-open");
        producer.begin_transaction().expect("begin");
        send_all(&producer, "txn-crash-open", &committed);
        producer.commit_transaction(WAIT).expect("commit");
        producer.begin_transaction().expect("begin");
        send_all(&producer, "txn-crash-open", &open);
        broker.kill();
    }
    let broker = BrokerProcess::start(dir.path(), &[]);
    // The coordinator still holds the transaction open: the read stops at its first record.
    assert_eq!(
        transactions::read_to_end(
            client_config(&broker.addr),
            "txn-crash-open",
            PARTITIONS,
            "read_committed"
        ),
        sorted(committed.clone())
    );
    let producer = transactional_producer(&broker.addr, "crash-open");
    producer.begin_transaction().expect("begin");
    send_all(&producer, "txn-crash-open", &next);
    producer.commit_transaction(WAIT).expect("commit");
    assert_eq!(
        read_committed(&broker.addr, "txn-crash-open"),
        sorted(committed.into_iter().chain(next).collect())
    );
}

#[test]
fn a_commit_cut_between_its_markers_is_finished_after_the_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let crashing = BrokerProcess::start(
        dir.path(),
        &[("FRESHET_FAILPOINT", "txn-after-first-marker")],
    );
    let addr = crashing.addr.clone();
    let committed = values("whole", 30);
    let producer = transactional_producer(&addr, "crash-markers");
    producer.begin_transaction().expect("begin");
    send_all(&producer, "txn-crash-markers", &committed);
    // The commit is answered once its outcome is durable; the broker then dies while
    // writing the markers.
    producer.commit_transaction(WAIT).expect("commit");
    let status = crashing.wait_for_exit(WAIT);
    assert!(!status.success(), "the broker should have died mid-commit");
    drop(producer);

    let broker = BrokerProcess::start(dir.path(), &[]);
    assert_eq!(
        read_committed(&broker.addr, "txn-crash-markers"),
        sorted(committed)
    );
}

/// Reads every record of `topic` once (from the beginning of each partition, without a
/// group's offsets) and returns, per partition, the offset after the last one: what a
/// processor commits once it has handled them.
fn consume_everything(consumer: &BaseConsumer, topic: &str, count: usize) -> Vec<i64> {
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let mut next = vec![0; PARTITIONS as usize];
    let deadline = Instant::now() + WAIT;
    for _ in 0..count {
        let message = loop {
            assert!(Instant::now() < deadline, "input not consumed: {next:?}");
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => break message,
                Some(Err(error)) => panic!("consumer error: {error}"),
                None => {}
            }
        };
        next[message.partition() as usize] = message.offset() + 1;
    }
    next
}

/// The offsets `group` has committed for `topic`'s partitions (-1 for none), once they are
/// `expected` or `WAIT` has passed (recovery finishes the cut commit in the background).
/// Asked without `require_stable` (read_uncommitted), so pending offsets read as the last
/// committed ones instead of UNSTABLE_OFFSET_COMMIT retried until librdkafka times out.
fn committed_offsets(addr: &str, group: &str, topic: &str, expected: &[i64]) -> Vec<i64> {
    let consumer: BaseConsumer = client_config(addr)
        .set("group.id", group)
        .set("isolation.level", "read_uncommitted")
        .create()
        .expect("consumer");
    let mut partitions = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        partitions.add_partition(topic, partition);
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let committed = consumer
            .committed_offsets(partitions.clone(), WAIT)
            .expect("committed offsets");
        let offsets: Vec<i64> = (0..PARTITIONS)
            .map(
                |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(offset)) => offset,
                    _ => -1,
                },
            )
            .collect();
        if offsets == expected || Instant::now() >= deadline {
            return offsets;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Consume-transform-produce cut by a crash: the broker dies between the markers of a commit
/// that also carries the consumer group's offsets (TxnOffsetCommit acknowledged, so they are
/// durable but pending). After the restart recovery finishes the commit, offsets included:
/// the group's committed offsets are the ones sent with the transaction, and its output is
/// visible.
#[test]
fn offsets_committed_with_a_transaction_cut_between_its_markers_are_committed_after_the_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let crashing = BrokerProcess::start(
        dir.path(),
        &[("FRESHET_FAILPOINT", "txn-after-first-marker")],
    );
    let addr = crashing.addr.clone();
    let input = values("input", 20);
    let plain: BaseProducer = client_config(&addr).create().expect("producer");
    send_all(&plain, "txn-crash-input", &input);
    drop(plain);

    let consumer: BaseConsumer = client_config(&addr)
        .set("group.id", "crash-processor")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let positions = consume_everything(&consumer, "txn-crash-input", input.len());
    let mut offsets = TopicPartitionList::new();
    for (partition, offset) in positions.iter().enumerate() {
        offsets
            .add_partition_offset("txn-crash-input", partition as i32, Offset::Offset(*offset))
            .expect("offset");
    }
    let output: Vec<String> = input.iter().map(|v| v.replace("input", "output")).collect();
    let producer = transactional_producer(&addr, "crash-offsets");
    producer.begin_transaction().expect("begin");
    send_all(&producer, "txn-crash-output", &output);
    let metadata = consumer.group_metadata().expect("group metadata");
    producer
        .send_offsets_to_transaction(&offsets, &metadata, WAIT)
        .expect("send offsets");
    producer.commit_transaction(WAIT).expect("commit");
    let status = crashing.wait_for_exit(WAIT);
    assert!(!status.success(), "the broker should have died mid-commit");
    drop(producer);
    drop(consumer);

    let broker = BrokerProcess::start(dir.path(), &[]);
    assert_eq!(
        committed_offsets(
            &broker.addr,
            "crash-processor",
            "txn-crash-input",
            &positions
        ),
        positions
    );
    assert_eq!(
        read_committed(&broker.addr, "txn-crash-output"),
        sorted(output)
    );
}

/// Whether the broker logged a line containing `text`, within `WAIT` (recovery runs in the
/// background once the broker listens).
fn logged(broker: &BrokerProcess, text: &str) -> bool {
    let deadline = Instant::now() + WAIT;
    loop {
        if broker
            .lines
            .lock()
            .expect("lines")
            .iter()
            .any(|line| line.contains(text))
        {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The markers of an EndTxn already answered are not fsynced before the id's next transaction
/// may start; a machine crash can lose them while the completed state reaches the disk. The
/// `txn-markers-lost` crash point plays that crash: no marker is written, the completed
/// state is made durable, the process dies. Recovery must write the markers from the plan the
/// state keeps: the commit is then visible exactly once, and the abort never.
#[test]
fn markers_lost_after_the_answer_are_written_again_after_the_restart() {
    for commit in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let crashing =
            BrokerProcess::start(dir.path(), &[("FRESHET_FAILPOINT", "txn-markers-lost")]);
        let topic = "txn-crash-lost-markers";
        let first = values(if commit { "committed" } else { "aborted" }, 30);
        let producer = transactional_producer(&crashing.addr, "crash-lost-markers");
        producer.begin_transaction().expect("begin");
        send_all(&producer, topic, &first);
        if commit {
            producer.commit_transaction(WAIT).expect("commit");
        } else {
            producer.abort_transaction(WAIT).expect("abort");
        }
        let status = crashing.wait_for_exit(WAIT);
        assert!(
            !status.success(),
            "the broker should have died after EndTxn"
        );
        drop(producer);

        let broker = BrokerProcess::start(dir.path(), &[]);
        assert!(
            logged(&broker, "writing a transaction marker lost in a crash"),
            "recovery should have written the lost markers from the plan"
        );
        let next = values("next", 6);
        let producer = transactional_producer(&broker.addr, "crash-lost-markers");
        producer.begin_transaction().expect("begin");
        send_all(&producer, topic, &next);
        producer.commit_transaction(WAIT).expect("commit");
        let expected = if commit {
            first.into_iter().chain(next).collect()
        } else {
            next
        };
        assert_eq!(read_committed(&broker.addr, topic), sorted(expected));
        assert!(
            !logged_now(&broker, "held open without a coordinator state"),
            "the planned transaction must not be left to the hanging-transaction scan"
        );
    }
}

/// Whether the broker has logged a line containing `text` so far.
fn logged_now(broker: &BrokerProcess, text: &str) -> bool {
    broker
        .lines
        .lock()
        .expect("lines")
        .iter()
        .any(|line| line.contains(text))
}

/// The completed state and the next transaction's AddPartitionsToTxn state are not fsynced
/// either: a machine crash can leave the committed transaction's prepared state as the last
/// one on disk while the partitions hold its markers and, after them, the next transaction's
/// acknowledged records. The `txn-state-unsynced-lost` crash point drops unsynced state
/// frames as that crash would; SIGKILL does the rest. Recovery must not close the next
/// transaction with the committed one's marker: it is aborted (nobody committed it) and its
/// producer fenced.
#[test]
fn the_next_transaction_is_not_committed_with_the_prepared_one_after_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = "txn-crash-next";
    let (committed, cut, after) = (values("kept", 12), values("cut", 12), values("after", 6));
    {
        let crashing = BrokerProcess::start(
            dir.path(),
            &[("FRESHET_FAILPOINT", "txn-state-unsynced-lost")],
        );
        let producer = transactional_producer(&crashing.addr, "crash-next");
        producer.begin_transaction().expect("begin");
        send_all(&producer, topic, &committed);
        producer.commit_transaction(WAIT).expect("commit");
        producer.begin_transaction().expect("begin");
        // Acknowledged, so durable, and after the committed transaction's markers.
        send_all(&producer, topic, &cut);
        crashing.kill();
    }
    let broker = BrokerProcess::start(dir.path(), &[]);
    assert_eq!(
        read_committed(&broker.addr, topic),
        sorted(committed.clone())
    );
    let producer = transactional_producer(&broker.addr, "crash-next");
    producer.begin_transaction().expect("begin");
    send_all(&producer, topic, &after);
    producer.commit_transaction(WAIT).expect("commit");
    assert_eq!(
        read_committed(&broker.addr, topic),
        sorted(committed.into_iter().chain(after).collect())
    );
}
