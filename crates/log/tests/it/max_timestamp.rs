//! ListOffsets MAX_TIMESTAMP (`offset_of_max_timestamp`) against a brute-force model, across
//! segments, reopen, crash recovery, DeleteRecords and unflushed appends; and compacted logs
//! refusing keyless records.

use crate::common;

use common::*;
use freshet_log::{CleanupPolicy, LogConfig, LogError, PartitionLog};
use kafka_protocol::records::Compression;

/// The first record with the largest timestamp among those the log lets readers see: what
/// `offset_of_max_timestamp` must answer, found by reading every record.
fn model(log: &PartitionLog) -> Option<(i64, i64)> {
    let mut best: Option<(i64, i64)> = None;
    for record in read_all(log) {
        if best.is_none_or(|(_, ts)| record.timestamp > ts) {
            best = Some((record.offset, record.timestamp));
        }
    }
    best
}

/// Deterministic, unordered timestamps: a small linear congruential generator.
struct Timestamps(u64);

impl Timestamps {
    fn next(&mut self) -> i64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        1_000_000 + i64::try_from((self.0 >> 33) % 5_000).expect("small")
    }
}

/// Appends `batches` batches of 1-4 records each with unordered timestamps (some repeated, so
/// ties occur), every third one gzip'd. Returns the offset after each batch.
fn fill(log: &PartitionLog, times: &mut Timestamps, batches: usize) -> Vec<i64> {
    let mut ends = Vec::new();
    for b in 0..batches {
        let records: Vec<Rec> = (0..1 + b % 4)
            .map(|i| Rec::new(Some(&format!("k{b}-{i}")), Some("v"), times.next() / 7 * 7))
            .collect();
        let compression = if b % 3 == 0 {
            Compression::Gzip
        } else {
            Compression::None
        };
        ends.push(append_durable(log, &encode(&records, compression, None)).last_offset + 1);
    }
    ends
}

/// The model's answer for readers who may only see offsets below `end`.
fn model_below(log: &PartitionLog, end: i64) -> Option<(i64, i64)> {
    let mut best: Option<(i64, i64)> = None;
    for record in read_all(log).into_iter().filter(|r| r.offset < end) {
        if best.is_none_or(|(_, ts)| record.timestamp > ts) {
            best = Some((record.offset, record.timestamp));
        }
    }
    best
}

#[test]
fn max_timestamp_matches_the_model_across_segments_reopen_and_delete_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_segments(700));
    assert_eq!(log.offset_of_max_timestamp(i64::MAX).expect("empty"), None);
    let mut times = Timestamps(7);
    let ends = fill(&log, &mut times, 60);
    assert!(log.segments().len() >= 4, "several segments");
    let expected = model(&log);
    assert!(expected.is_some());
    assert_eq!(
        log.offset_of_max_timestamp(i64::MAX).expect("max"),
        expected
    );

    // Every batch boundary as the end of what a reader may see (the high watermark and, later,
    // the last stable offset only ever lie there): inside a segment the time index and a few
    // headers must give exactly the model's answer.
    for &end in &ends {
        assert_eq!(
            log.offset_of_max_timestamp(end).expect("max below end"),
            model_below(&log, end),
            "end {end}"
        );
    }

    // A clean reopen trusts the index files; a crash (no clean close) rescans the active
    // segment. Both must give the same answer.
    log.close().expect("close");
    drop(log);
    let log = open(dir.path(), small_segments(700));
    assert_eq!(
        log.offset_of_max_timestamp(i64::MAX).expect("max"),
        expected
    );
    fill(&log, &mut times, 20);
    let expected = model(&log);
    drop(log);
    let log = open(dir.path(), small_segments(700));
    assert_eq!(
        log.offset_of_max_timestamp(i64::MAX).expect("max"),
        expected
    );

    // DeleteRecords to just after the maximum, then into the middle of a batch: the answer
    // never points below the log start offset and stays the model's.
    let (max_offset, _) = expected.expect("records");
    log.delete_records_before(max_offset + 1)
        .expect("delete records");
    assert_eq!(
        log.offset_of_max_timestamp(i64::MAX).expect("max"),
        model(&log)
    );
    let start = log.log_start_offset();
    let inside = read_all(&log)
        .windows(2)
        .find(|pair| pair[0].offset > start + 3 && pair[1].offset == pair[0].offset + 1)
        .map(|pair| pair[1].offset);
    if let Some(offset) = inside {
        log.delete_records_before(offset).expect("delete records");
    }
    let after = log.offset_of_max_timestamp(i64::MAX).expect("max");
    assert_eq!(after, model(&log));
    assert!(after.is_some_and(|(offset, _)| offset >= log.log_start_offset()));
}

#[test]
fn max_timestamp_ignores_appends_not_yet_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One big segment with many index entries, so the active segment's prefix is measured
    // through its time index.
    let log = open(dir.path(), small_segments(1 << 30));
    let mut times = Timestamps(99);
    fill(&log, &mut times, 40);
    let durable = model(&log);
    // Appended but not fsynced: above the high watermark, invisible to readers.
    let future = encode(
        &[Rec::new(Some("late"), Some("v"), 9_000_000)],
        Compression::None,
        None,
    );
    let outcome = log.append(&future).expect("append");
    assert!(log.high_watermark() <= outcome.base_offset);
    assert_eq!(log.offset_of_max_timestamp(i64::MAX).expect("max"), durable);
    log.wait_durable(outcome.last_offset + 1).expect("durable");
    assert_eq!(
        log.offset_of_max_timestamp(i64::MAX).expect("max"),
        Some((outcome.base_offset, 9_000_000))
    );
}

#[test]
fn ties_go_to_the_first_record_and_a_batch_is_searched_record_by_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_segments(1 << 20));
    // The maximum (5000) sits in the middle of the second batch and again in the third.
    let batches = [
        vec![
            Rec::new(Some("a"), Some("v"), 3000),
            Rec::new(Some("b"), Some("v"), 4000),
        ],
        vec![
            Rec::new(Some("c"), Some("v"), 1000),
            Rec::new(Some("d"), Some("v"), 5000),
            Rec::new(Some("e"), Some("v"), 2000),
        ],
        vec![Rec::new(Some("f"), Some("v"), 5000)],
    ];
    for records in &batches {
        append_durable(&log, &encode(records, Compression::Zstd, None));
    }
    assert_eq!(
        log.offset_of_max_timestamp(i64::MAX).expect("max"),
        Some((3, 5000))
    );
}

fn compacted() -> LogConfig {
    LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..LogConfig::default()
    }
}

#[test]
fn compacted_logs_refuse_keyless_records_and_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), compacted());
    let mixed = [
        Rec::new(Some("k"), Some("v"), 1000),
        Rec::new(None, Some("no key"), 1000),
        Rec::new(Some(""), Some("an empty key is a key"), 1000),
        Rec::new(None, None, 1000),
    ];
    for compression in [Compression::None, Compression::Gzip] {
        match log.append(&encode(&mixed, compression, None)) {
            Err(error @ LogError::KeylessRecords { .. }) => {
                assert_eq!(error.error_code(), 87, "INVALID_RECORD");
                let LogError::KeylessRecords { batch_indexes } = error else {
                    unreachable!()
                };
                assert_eq!(batch_indexes, [1, 3]);
            }
            other => panic!("{compression:?}: keyless records accepted: {other:?}"),
        }
    }
    assert_eq!(log.log_end_offset(), 0, "nothing was written");
    let keyed = append_durable(&log, &encode(&mixed[..1], Compression::None, None));
    assert_eq!(keyed.base_offset, 0);

    // The same records are fine where nothing is compacted.
    let plain_dir = tempfile::tempdir().expect("tempdir");
    let plain = open(plain_dir.path(), LogConfig::default());
    assert_eq!(
        append_durable(&plain, &encode(&mixed, Compression::None, None)).last_offset,
        3
    );
}
