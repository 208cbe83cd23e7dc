//! Appending, reading, group commit and timestamps.

use crate::common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::*;
use freshet_log::{
    BatchHeader, Durability, LogConfig, LogError, PartitionLog, TryAppend, BATCH_HEADER_LEN,
};
use kafka_protocol::records::Compression;

#[test]
fn round_trip_across_segment_rolls_and_reads_at_every_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_segments(2048));
    let mut expected = Vec::new();
    let mut batch_ranges = Vec::new();
    for i in 0..120 {
        let compression = ALL_COMPRESSIONS[i % ALL_COMPRESSIONS.len()];
        let count = 1 + i % 4;
        let outcome = append_durable(
            &log,
            &values_batch(&format!("b{i}"), count, 1_000 + i as i64, compression),
        );
        assert_eq!(outcome.record_count, count as u64);
        assert_eq!(outcome.last_offset - outcome.base_offset + 1, count as i64);
        batch_ranges.push((outcome.base_offset, outcome.last_offset));
        expected.extend((0..count).map(|j| format!("b{i}-{j}").into_bytes()));
    }
    assert!(
        log.segments().len() > 3,
        "small segments must roll: {:?}",
        log.segments()
    );
    assert_eq!(log.high_watermark(), expected.len() as i64);
    check_every_offset(&log, &batch_ranges, &expected);

    drop(log);
    let reopened = open(dir.path(), small_segments(2048));
    assert_eq!(reopened.log_end_offset(), expected.len() as i64);
    check_every_offset(&reopened, &batch_ranges, &expected);
}

/// A read at any offset starts with the whole batch holding it, and reading on from there
/// yields every record exactly once.
fn check_every_offset(log: &PartitionLog, batches: &[(i64, i64)], expected: &[Vec<u8>]) {
    for &(base, last) in batches {
        for offset in base..=last {
            let read = log.read(offset, 1 << 20, true).expect("read");
            let header = BatchHeader::parse(&read.records).expect("starts with a batch");
            assert_eq!(
                (header.base_offset, header.last_offset()),
                (base, last),
                "read at {offset}"
            );
            let records = decode(&read.records);
            assert_eq!(records[0].offset, base);
            assert!(records.windows(2).all(|w| w[1].offset == w[0].offset + 1));
        }
    }
    let all = read_all(log);
    let values: Vec<Vec<u8>> = all
        .iter()
        .map(|r| r.value.clone().expect("value"))
        .collect();
    assert_eq!(values, expected);
    assert_eq!(
        all.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (0..expected.len() as i64).collect::<Vec<_>>()
    );
}

#[test]
fn stored_batches_are_byte_for_byte_what_was_produced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), LogConfig::default());
    append_durable(&log, &values_batch("x", 3, 5, Compression::None));
    let sent = values_batch("y", 2, 7, Compression::Gzip);
    append_durable(&log, &sent);
    let read = log.read(3, 1 << 20, true).expect("read");
    // Only baseOffset (0..8) and partitionLeaderEpoch (12..16) differ.
    assert_eq!(read.records.len(), sent.len());
    assert_eq!(&read.records[8..12], &sent[8..12]);
    assert_eq!(&read.records[16..], &sent[16..]);
    assert_eq!(
        i64::from_be_bytes(read.records[..8].try_into().expect("8 bytes")),
        3
    );
    assert_eq!(&read.records[12..16], &[0, 0, 0, 0]);
}

#[test]
fn high_watermark_moves_only_after_wait_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), LogConfig::default());
    let mut watcher = log.watch_high_watermark();
    let outcome = log
        .append(&values_batch("a", 5, 1, Compression::None))
        .expect("append");
    assert_eq!((outcome.base_offset, outcome.last_offset), (0, 4));
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(log.high_watermark(), 0);
    assert!(!watcher.has_changed().expect("sender alive"));
    let empty = log.read(0, 1 << 20, true).expect("read at hw");
    assert!(empty.records.is_empty());
    assert!(matches!(
        log.read(1, 1 << 20, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));

    log.wait_durable(5).expect("durable");
    assert_eq!(log.high_watermark(), 5);
    assert!(watcher.has_changed().expect("sender alive"));
    assert_eq!(*watcher.borrow_and_update(), 5);
    assert_eq!(
        decode(&log.read(0, 1 << 20, true).expect("read").records).len(),
        5
    );
    assert!(log.stats().fsyncs >= 1);

    // Written but not yet durable data is cut from reads.
    log.append(&values_batch("b", 3, 1, Compression::None))
        .expect("append");
    let read = log.read(0, 1 << 20, true).expect("read");
    assert_eq!(decode(&read.records).len(), 5);
    assert_eq!(read.high_watermark, 5);
    log.flush().expect("flush");
    let read = log.read(0, 1 << 20, true).expect("read");
    assert_eq!(decode(&read.records).len(), 8);
}

#[test]
fn reads_respect_max_bytes_and_min_one_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), LogConfig::default());
    let batch = values_batch("m", 10, 1, Compression::None);
    for _ in 0..4 {
        append_durable(&log, &batch);
    }
    let size = batch.len();
    let two = log.read(0, 2 * size + size / 2, false).expect("read");
    assert_eq!(two.records.len(), 2 * size, "only whole batches");
    let none = log.read(0, size - 1, false).expect("read");
    assert!(none.records.is_empty());
    let forced = log.read(0, 1, true).expect("read");
    assert_eq!(forced.records.len(), size);
    let tail = log
        .read(35, 1 << 20, false)
        .expect("read inside the last batch");
    assert_eq!(tail.records.len(), size);
    assert_eq!(tail.high_watermark, 40);
    assert!(matches!(
        log.read(41, 100, true),
        Err(LogError::OffsetOutOfRange { offset: 41, .. })
    ));
    assert!(matches!(
        log.read(-1, 100, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.stats().bytes_read, (2 * size + size + size) as u64);
}

#[test]
fn corrupt_batches_are_rejected_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), LogConfig::default());
    append_durable(&log, &values_batch("ok", 2, 1, Compression::None));
    let size_before = log.size_bytes();

    let mut flipped = values_batch("bad", 2, 1, Compression::None);
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    let err = log.append(&flipped).expect_err("crc mismatch");
    assert!(matches!(err, LogError::CorruptMessage(_)), "{err:?}");
    assert_eq!(err.error_code(), 2);

    // A good batch followed by a bad one: all or nothing.
    let mut set = values_batch("good", 2, 1, Compression::None);
    set.extend_from_slice(&flipped);
    assert!(matches!(log.append(&set), Err(LogError::CorruptMessage(_))));
    let mut truncated = values_batch("cut", 2, 1, Compression::None);
    truncated.truncate(truncated.len() - 3);
    assert!(matches!(
        log.append(&truncated),
        Err(LogError::CorruptMessage(_))
    ));
    assert!(matches!(
        log.append(&[1, 2, 3]),
        Err(LogError::CorruptMessage(_))
    ));
    assert!(matches!(log.append(&[]), Err(LogError::InvalidRecord(_))));

    assert_eq!(log.size_bytes(), size_before);
    assert_eq!(log.log_end_offset(), 2);
    let next = append_durable(&log, &values_batch("after", 1, 1, Compression::None));
    assert_eq!(next.base_offset, 2);
}

#[test]
fn several_batches_in_one_set_get_consecutive_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), LogConfig::default());
    let mut set = values_batch("a", 3, 1, Compression::Lz4);
    set.extend(values_batch("b", 2, 2, Compression::Zstd));
    let outcome = append_durable(&log, &set);
    assert_eq!(
        (
            outcome.base_offset,
            outcome.last_offset,
            outcome.record_count
        ),
        (0, 4, 5)
    );
    assert_eq!(log.stats().batches_appended, 2);
    let values: Vec<_> = read_all(&log)
        .into_iter()
        .map(|r| r.value.expect("value"))
        .collect();
    assert_eq!(
        values,
        ["a-0", "a-1", "a-2", "b-0", "b-1"].map(|v| v.as_bytes().to_vec())
    );
}

#[test]
fn oversized_batches_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        max_message_bytes: 200,
        ..LogConfig::default()
    };
    let log = open(dir.path(), config);
    let big = values_batch(&"x".repeat(300), 1, 1, Compression::None);
    let err = log.append(&big).expect_err("too large");
    assert!(
        matches!(err, LogError::MessageTooLarge { max: 200, .. }),
        "{err:?}"
    );
    assert_eq!(err.error_code(), 10);
    assert_eq!(log.size_bytes(), 0);
}

#[test]
fn header_fields_that_producers_never_send_are_invalid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), LogConfig::default());
    let mut batch = values_batch("r", 3, 1, Compression::None);
    // recordCount (bytes 57..61) = 2 while lastOffsetDelta says 3 records; fix the CRC.
    batch[57..61].copy_from_slice(&2i32.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    let err = log.append(&batch).expect_err("count mismatch");
    assert_eq!(err.error_code(), 87);
    assert!(batch.len() > BATCH_HEADER_LEN);
}

#[test]
fn concurrent_appenders_share_fsyncs_and_every_ack_is_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(open(dir.path(), LogConfig::default()));
    let threads = 8;
    let per_thread = 60;
    let start = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (log, start) = (log.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let mut acked = Vec::new();
                for i in 0..per_thread {
                    let value = format!("t{t}-{i}");
                    let outcome = log
                        .append(&values_batch(&value, 1, 1, Compression::None))
                        .expect("append");
                    log.wait_durable(outcome.last_offset + 1).expect("durable");
                    assert!(
                        log.high_watermark() > outcome.last_offset,
                        "acked data is visible"
                    );
                    acked.push((outcome.base_offset, format!("{value}-0")));
                }
                acked
            })
        })
        .collect();
    let acked: Vec<(i64, String)> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .collect();
    let appends = (threads * per_thread) as u64;
    let stats = log.stats();
    assert_eq!(stats.batches_appended, appends);
    assert!(
        stats.fsyncs < appends,
        "group commit: {} fsyncs for {appends} appends",
        stats.fsyncs
    );
    assert!(stats.fsync_nanos_total >= stats.fsync_nanos_max);
    assert_eq!(stats.fsync_histogram.count(), stats.fsyncs);
    let records = read_all(&log);
    for (offset, value) in acked {
        let record = &records[usize::try_from(offset).expect("offset")];
        assert_eq!(record.offset, offset);
        assert_eq!(record.value.as_deref(), Some(value.as_bytes()));
    }
}

#[test]
fn interval_durability_exposes_writes_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        durability: Durability::Interval(Duration::from_millis(50)),
        ..LogConfig::default()
    };
    let log = open(dir.path(), config);
    log.append(&values_batch("i", 3, 1, Compression::None))
        .expect("append");
    assert_eq!(log.high_watermark(), 3);
    log.wait_durable(3).expect("returns at once");
    assert_eq!(log.stats().fsyncs, 0);
    log.flush().expect("flush");
    assert_eq!(log.stats().fsyncs, 1);
    log.flush().expect("nothing new to flush");
    assert_eq!(log.stats().fsyncs, 1);
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_segments(1024));
    // Batch i holds records with timestamps 1000*i + 0, 10, 20.
    for i in 0..30i64 {
        let records: Vec<Rec> = (0..3)
            .map(|j| Rec::new(None, Some("v"), 1000 * i + 10 * j))
            .collect();
        let compression = ALL_COMPRESSIONS[(i % 5) as usize];
        append_durable(&log, &encode(&records, compression, None));
    }
    assert!(log.segments().len() > 2);
    assert_eq!(log.offset_for_timestamp(0).expect("lookup"), Some((0, 0)));
    assert_eq!(log.offset_for_timestamp(5).expect("lookup"), Some((1, 10)));
    assert_eq!(
        log.offset_for_timestamp(15_010).expect("lookup"),
        Some((46, 15_010))
    );
    assert_eq!(
        log.offset_for_timestamp(15_011).expect("lookup"),
        Some((47, 15_020))
    );
    assert_eq!(
        log.offset_for_timestamp(15_021).expect("lookup"),
        Some((48, 16_000))
    );
    assert_eq!(
        log.offset_for_timestamp(29_020).expect("lookup"),
        Some((89, 29_020))
    );
    assert_eq!(log.offset_for_timestamp(29_021).expect("lookup"), None);
    // Not yet durable data is not found.
    log.append(&encode(
        &[Rec::new(None, Some("late"), 50_000)],
        Compression::None,
        None,
    ))
    .expect("append");
    assert_eq!(log.offset_for_timestamp(40_000).expect("lookup"), None);
}

#[test]
fn segment_ms_rolls_old_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_ms: 0,
        ..LogConfig::default()
    };
    let log = open(dir.path(), config);
    for _ in 0..3 {
        append_durable(&log, &values_batch("t", 1, 1, Compression::None));
    }
    let bases: Vec<i64> = log.segments().iter().map(|s| s.base_offset).collect();
    assert_eq!(bases, vec![0, 1, 2]);
}

#[test]
fn partition_log_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PartitionLog>();
}

#[test]
fn switching_to_interval_durability_publishes_written_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), LogConfig::default());
    log.append(&values_batch("s", 4, 1, Compression::None))
        .expect("append");
    assert_eq!(log.high_watermark(), 0);
    let relaxed = LogConfig {
        durability: Durability::Interval(Duration::from_secs(1)),
        ..log.config()
    };
    log.set_config(relaxed.clone());
    assert_eq!(log.config(), relaxed);
    assert_eq!(log.high_watermark(), 4);
}

/// The offsets of every record in the log, in order.
fn offsets(log: &PartitionLog) -> Vec<i64> {
    read_all(log).iter().map(|r| r.offset).collect()
}

#[test]
fn try_append_writes_a_plain_append_and_hands_back_one_that_must_roll() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_segments(2048));
    let first = values_batch("a", 1, 1_000, Compression::None);
    let outcome = match log.try_append_at(&first, 1_000).expect("append") {
        TryAppend::Appended(outcome) => outcome,
        TryAppend::WouldBlock(_) => panic!("a plain append into a new segment was handed back"),
    };
    assert_eq!(outcome.base_offset, 0);

    // Larger than what is left of the segment: writing it means rolling first.
    let big = values_batch(&"b".repeat(2_500), 1, 1_001, Compression::None);
    let prepared = match log.try_append_at(&big, 1_001).expect("append") {
        TryAppend::WouldBlock(prepared) => prepared,
        TryAppend::Appended(_) => panic!("an append that rolls was written on the caller"),
    };
    assert_eq!(log.log_end_offset(), 1, "nothing was written");
    assert_eq!(log.segments().len(), 1, "nothing rolled");

    let finished = log.append_prepared(prepared).expect("finish");
    assert_eq!((finished.base_offset, finished.last_offset), (1, 1));
    assert_eq!(
        log.segments().len(),
        2,
        "the roll happened in append_prepared"
    );
    log.wait_durable(2).expect("durable");
    assert_eq!(offsets(&log), [0, 1]);
}

#[test]
fn try_append_hands_back_the_first_append_after_a_clean_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_segments(1 << 20));
    append_durable(&log, &values_batch("a", 1, 1_000, Compression::None));
    log.close().expect("clean close");
    drop(log);

    let log = open(dir.path(), small_segments(1 << 20));
    let batch = values_batch("b", 1, 1_001, Compression::None);
    // Removing the clean-shutdown marker fsyncs the directory.
    let TryAppend::WouldBlock(prepared) = log.try_append_at(&batch, 1_001).expect("append") else {
        panic!("the marker's removal was done on the caller");
    };
    log.append_prepared(prepared).expect("finish");
    let batch = values_batch("c", 1, 1_002, Compression::None);
    assert!(matches!(
        log.try_append_at(&batch, 1_002).expect("append"),
        TryAppend::Appended(_)
    ));
    log.flush().expect("flush");
    assert_eq!(offsets(&log), [0, 1, 2]);
}

#[test]
fn try_append_hands_back_an_append_while_a_roll_holds_the_partition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(open(dir.path(), small_segments(2048)));
    append_durable(&log, &values_batch("a", 1, 1_000, Compression::None));

    // A roll held at its fsyncs keeps the partition's writer lock.
    let stall = freshet_os::stall::stall_under(dir.path());
    let rolling = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            let big = values_batch(&"b".repeat(2_500), 1, 1_001, Compression::None);
            log.append(&big).expect("append that rolls")
        })
    };
    assert!(
        stall.wait_until_holding(Duration::from_secs(10)),
        "the roll reached the stall"
    );

    let small = values_batch("c", 1, 1_002, Compression::None);
    let TryAppend::WouldBlock(prepared) = log.try_append_at(&small, 1_002).expect("append") else {
        panic!("an append waited for the held roll on the caller");
    };
    drop(stall);
    let rolled = rolling.join().expect("rolling thread");
    let finished = log.append_prepared(prepared).expect("finish");
    assert_eq!(rolled.base_offset, 1);
    assert_eq!(finished.base_offset, 2);
    log.flush().expect("flush");
    assert_eq!(offsets(&log), [0, 1, 2]);
}
