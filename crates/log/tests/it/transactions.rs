//! Transactions in one partition: markers, the last stable offset, read_committed reads with
//! their aborted-transaction lists, and all of it after restarts, compaction and DeleteRecords.

use crate::common;

use common::*;
use freshet_log::{
    AbortedTxn, CleanupPolicy, ControlType, Isolation, LogConfig, LogError, PartitionLog, TxnMarker,
};
use kafka_protocol::records::Compression;

fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since_epoch.as_millis()).expect("milliseconds fit")
}

fn producer(id: i64, epoch: i16, base_sequence: i32) -> Producer {
    Producer {
        id,
        epoch,
        base_sequence,
    }
}

fn marker(id: i64, epoch: i16, control: ControlType) -> TxnMarker {
    TxnMarker {
        producer_id: id,
        producer_epoch: epoch,
        coordinator_epoch: 0,
        control,
    }
}

fn end_txn(log: &PartitionLog, marker: TxnMarker) -> i64 {
    let outcome = log.append_marker(&marker).expect("marker");
    log.wait_durable(outcome.last_offset + 1).expect("durable");
    outcome.base_offset
}

/// One read_committed read from `offset`: the data records' values (markers left out) and
/// the aborted transactions it lists.
fn committed_from(log: &PartitionLog, offset: i64) -> (Vec<String>, Vec<AbortedTxn>) {
    let read = log
        .read_isolated(offset, 1 << 20, true, Isolation::ReadCommitted)
        .expect("read committed");
    let values = data_records(&read.records)
        .into_iter()
        .map(|record| value_of(&record))
        .collect();
    (values, read.aborted_transactions)
}

fn data_records(bytes: &bytes::Bytes) -> Vec<kafka_protocol::records::Record> {
    let mut bytes = bytes.clone();
    kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes)
        .expect("decode")
        .into_iter()
        .flat_map(|set| set.records)
        .filter(|record| !record.control)
        .collect()
}

fn value_of(record: &kafka_protocol::records::Record) -> String {
    String::from_utf8(record.value.clone().expect("value").to_vec()).expect("utf-8")
}

/// What a read_committed consumer keeps, fetching from the log start to the last stable
/// offset: records of aborted transactions dropped (the client's half of the protocol, as
/// librdkafka and the Java client do it). Each read stops at its segment's end.
fn consumer_view(log: &PartitionLog) -> Vec<String> {
    let mut kept = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.last_stable_offset() {
        let read = log
            .read_isolated(offset, 1 << 20, true, Isolation::ReadCommitted)
            .expect("read committed");
        let mut bytes = read.records.clone();
        let batches =
            kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes).expect("decode");
        let Some(end) = batches
            .iter()
            .flat_map(|set| set.records.iter())
            .map(|record| record.offset + 1)
            .max()
        else {
            break;
        };
        for record in batches.into_iter().flat_map(|set| set.records) {
            let aborted = read.aborted_transactions.iter().any(|a| {
                a.producer_id == record.producer_id
                    && (a.first_offset..a.last_offset).contains(&record.offset)
            });
            if record.offset >= offset && !record.control && !(record.transactional && aborted) {
                kept.push(value_of(&record));
            }
        }
        offset = end;
    }
    kept
}

/// The aborted transactions listed by read_committed reads from the log start to the LSO,
/// each once.
fn all_aborted(log: &PartitionLog) -> Vec<AbortedTxn> {
    let mut all: Vec<AbortedTxn> = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.last_stable_offset() {
        let read = log
            .read_isolated(offset, 1 << 20, true, Isolation::ReadCommitted)
            .expect("read committed");
        for entry in read.aborted_transactions {
            if !all.contains(&entry) {
                all.push(entry);
            }
        }
        match log
            .segments()
            .iter()
            .find(|s| s.base_offset <= offset && offset < s.next_offset)
        {
            Some(segment) => offset = segment.next_offset,
            None => break,
        }
    }
    all
}

#[test]
fn read_committed_stops_at_an_open_transaction_and_lists_aborted_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), LogConfig::default());
    append_durable(&log, &values_batch("plain", 2, 1, Compression::None));
    let txn = append_durable(
        &log,
        &transactional_batch(producer(1, 0, 0), &[("k", "t1-a"), ("k", "t1-b")]),
    );
    assert_eq!(txn.base_offset, 2);
    append_durable(&log, &values_batch("later", 1, 1, Compression::None));

    assert_eq!(log.high_watermark(), 5);
    assert_eq!(
        log.last_stable_offset(),
        2,
        "the open transaction bounds the LSO"
    );
    let (values, aborted) = committed_from(&log, 0);
    assert_eq!(values, vec!["plain-0", "plain-1"]);
    assert!(aborted.is_empty());
    let (values, _) = committed_from(&log, 3);
    assert!(
        values.is_empty(),
        "offsets between the LSO and the high watermark read nothing"
    );
    let uncommitted = log.read(0, 1 << 20, true).expect("read");
    assert_eq!(decode(&uncommitted.records).len(), 5);

    let abort_at = end_txn(&log, marker(1, 0, ControlType::Abort));
    assert_eq!(abort_at, 5);
    assert_eq!(log.last_stable_offset(), 6);
    let (_, aborted) = committed_from(&log, 0);
    assert_eq!(
        aborted,
        vec![AbortedTxn {
            producer_id: 1,
            first_offset: 2,
            last_offset: 5,
            last_stable_offset: 6
        }]
    );
    assert_eq!(consumer_view(&log), vec!["plain-0", "plain-1", "later-0"]);

    append_durable(
        &log,
        &transactional_batch(producer(2, 0, 0), &[("k", "t2")]),
    );
    end_txn(&log, marker(2, 0, ControlType::Commit));
    let (values, aborted) = committed_from(&log, 6);
    assert_eq!(values, vec!["t2"]);
    assert!(
        aborted.is_empty(),
        "the aborted transaction ended before offset 6"
    );
    assert_eq!(
        consumer_view(&log),
        vec!["plain-0", "plain-1", "later-0", "t2"]
    );
}

#[test]
fn markers_fence_older_epochs_and_plain_batches_cannot_join_a_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), LogConfig::default());
    append_durable(&log, &transactional_batch(producer(7, 0, 0), &[("k", "v")]));

    let plain = log
        .append(&producer_batch(7, 0, 1, 1))
        .expect_err("plain batch in a transaction");
    assert!(matches!(plain, LogError::InvalidTxnState(_)), "{plain:?}");
    assert_eq!(plain.error_code(), 48);

    // The coordinator aborts a timed-out transaction with a bumped epoch: the old epoch is fenced.
    end_txn(&log, marker(7, 1, ControlType::Abort));
    let zombie = log
        .append(&transactional_batch(producer(7, 0, 1), &[("k", "zombie")]))
        .expect_err("zombie write");
    assert_eq!(zombie.error_code(), 47, "{zombie:?}");
    let stale = log
        .append_marker(&marker(7, 0, ControlType::Commit))
        .expect_err("stale marker");
    assert_eq!(stale.error_code(), 47);
    append_durable(
        &log,
        &transactional_batch(producer(7, 1, 0), &[("k", "new epoch")]),
    );
    let producers = log.producers();
    assert_eq!(producers.len(), 1);
    assert_eq!(producers[0].producer_epoch, 1);
    assert_eq!(producers[0].current_txn_start_offset, 2);
}

/// A log with an aborted and a committed transaction spread over several segments and one
/// transaction still open; returns what a read_committed consumer sees.
fn fill_with_transactions(log: &PartitionLog) -> Vec<String> {
    for round in 0..6i32 {
        let id = i64::from(round % 2) + 10;
        let sequence = round / 2;
        let values: Vec<(String, String)> = (0..20)
            .map(|i| (format!("k{i}"), format!("r{round}-{i}")))
            .collect();
        let records: Vec<(&str, &str)> = values
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        append_durable(
            log,
            &transactional_batch(producer(id, 0, sequence * 20), &records),
        );
        let control = if round % 3 == 1 {
            ControlType::Abort
        } else {
            ControlType::Commit
        };
        end_txn(log, marker(id, 0, control));
    }
    append_durable(
        log,
        &transactional_batch(producer(30, 0, 0), &[("open", "pending")]),
    );
    consumer_view(log)
}

#[test]
fn transaction_state_survives_clean_and_unclean_restarts() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = small_segments(1024);
        let (view, lso, aborted) = {
            let log = open(dir.path(), config.clone());
            let view = fill_with_transactions(&log);
            assert!(log.segments().len() > 2, "the test needs several segments");
            let aborted = all_aborted(&log);
            assert_eq!(aborted.len(), 2);
            if clean {
                log.close().expect("close");
            }
            (view, log.last_stable_offset(), aborted)
        };
        let log = open(dir.path(), config);
        assert_eq!(log.last_stable_offset(), lso, "clean={clean}");
        let after_restart = all_aborted(&log);
        assert_eq!(after_restart.len(), aborted.len(), "clean={clean}");
        for (after, before) in after_restart.iter().zip(&aborted) {
            assert_eq!(
                (after.producer_id, after.first_offset, after.last_offset),
                (before.producer_id, before.first_offset, before.last_offset),
                "clean={clean}"
            );
        }
        assert_eq!(consumer_view(&log), view, "clean={clean}");
        // The open transaction is still open, and its commit makes it visible.
        end_txn(&log, marker(30, 0, ControlType::Commit));
        assert_eq!(
            consumer_view(&log).last().map(String::as_str),
            Some("pending")
        );
    }
}

#[test]
fn compaction_drops_aborted_records_keeps_markers_and_leaves_open_transactions_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..small_segments(200)
    };
    let log = open(dir.path(), config);
    append_durable(
        &log,
        &transactional_batch(producer(1, 0, 0), &[("k", "committed")]),
    );
    end_txn(&log, marker(1, 0, ControlType::Commit));
    append_durable(
        &log,
        &transactional_batch(producer(2, 0, 0), &[("k", "aborted")]),
    );
    end_txn(&log, marker(2, 0, ControlType::Abort));
    append_durable(
        &log,
        &transactional_batch(producer(3, 0, 0), &[("k", "open")]),
    );
    for i in 0..20 {
        append_durable(
            &log,
            &encode(
                &[Rec::new(Some(&format!("filler{i}")), Some("x"), 1)],
                Compression::None,
                None,
            ),
        );
    }
    let stats = log.compact(now_ms()).expect("compact");
    assert!(stats.records_removed >= 1, "{stats:?}");

    let everything: Vec<String> = read_all(&log)
        .into_iter()
        .filter_map(|r| r.value.map(|v| String::from_utf8(v).expect("utf-8")))
        .collect();
    assert!(
        everything.contains(&"committed".to_owned()),
        "an aborted value must not supersede: {everything:?}"
    );
    assert!(
        !everything.contains(&"aborted".to_owned()),
        "{everything:?}"
    );
    assert!(everything.contains(&"open".to_owned()), "{everything:?}");
    assert_eq!(
        log.last_stable_offset(),
        4,
        "the open transaction still bounds the LSO"
    );

    end_txn(&log, marker(3, 0, ControlType::Commit));
    log.compact(now_ms()).expect("compact again");
    let view = consumer_view(&log);
    assert!(
        view.contains(&"open".to_owned()) && !view.contains(&"committed".to_owned()),
        "{view:?}"
    );
}

#[test]
fn delete_records_forgets_aborted_transactions_below_the_new_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_segments(1024));
    fill_with_transactions(&log);
    let before = all_aborted(&log);
    assert_eq!(before.len(), 2);
    let first_abort_end = before[0].last_offset;
    log.delete_records_before(first_abort_end + 1)
        .expect("delete records");
    assert_eq!(all_aborted(&log), before[1..].to_vec());
}

#[test]
fn retention_never_deletes_an_open_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        retention_ms: 0,
        ..small_segments(200)
    };
    let log = open(dir.path(), config);
    append_durable(
        &log,
        &transactional_batch(producer(1, 0, 0), &[("k", "open")]),
    );
    for i in 0..10 {
        append_durable(
            &log,
            &values_batch(&format!("later{i}"), 1, 1, Compression::None),
        );
    }
    assert!(log.segments().len() > 3);
    log.enforce_retention(now_ms() + 1_000).expect("retention");
    assert_eq!(
        log.log_start_offset(),
        0,
        "the open transaction's segment stays"
    );
    end_txn(&log, marker(1, 0, ControlType::Commit));
    log.enforce_retention(now_ms() + 1_000).expect("retention");
    assert!(
        log.log_start_offset() > 0,
        "once it ended, its segments may go"
    );
    assert!(log.last_stable_offset() >= log.log_start_offset());
}

#[test]
fn a_marker_tried_from_an_async_worker_is_written_only_when_nothing_waits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), LogConfig::default());
    append_durable(
        &log,
        &transactional_batch(producer(1, 0, 0), &[("k", "t1")]),
    );
    log.close().expect("close");
    drop(log);
    // After a clean shutdown the first write removes the clean-shutdown marker (a directory
    // fsync): not a plain write.
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(
        log.try_append_marker(&marker(1, 0, ControlType::Commit))
            .expect("try"),
        None
    );
    assert_eq!(log.last_stable_offset(), 0, "nothing was written");
    end_txn(&log, marker(1, 0, ControlType::Commit));
    append_durable(
        &log,
        &transactional_batch(producer(1, 0, 1), &[("k", "t2")]),
    );
    let written = log
        .try_append_marker(&marker(1, 0, ControlType::Abort))
        .expect("try")
        .expect("a plain write");
    assert_eq!(written.base_offset, 3);
    log.wait_durable(written.last_offset + 1).expect("durable");
    assert_eq!(consumer_view(&log), vec!["t1"]);
}
