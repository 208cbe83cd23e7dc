//! Idempotent producers: duplicates, gaps, epochs, and state that survives restarts.

use crate::common;

use common::*;
use freshet_log::{LogConfig, LogError};
use kafka_protocol::records::Compression;

#[test]
fn retries_get_their_original_offsets_and_gaps_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), LogConfig::default());
    append_durable(&log, &values_batch("other", 2, 1, Compression::None));
    let first = append_durable(&log, &producer_batch(42, 0, 0, 3));
    let second = append_durable(&log, &producer_batch(42, 0, 3, 2));
    assert_eq!((first.base_offset, first.last_offset), (2, 4));
    assert_eq!((second.base_offset, second.last_offset), (5, 6));

    let size = log.size_bytes();
    let retry = log
        .append(&producer_batch(42, 0, 0, 3))
        .expect("duplicate is not an error");
    assert!(retry.duplicate);
    assert_eq!(
        (retry.base_offset, retry.last_offset, retry.bytes),
        (2, 4, 0)
    );
    assert_eq!(log.size_bytes(), size, "a duplicate writes nothing");

    let gap = log.append(&producer_batch(42, 0, 6, 1)).expect_err("gap");
    assert!(
        matches!(
            gap,
            LogError::OutOfOrderSequence {
                expected: 5,
                received: 6,
                ..
            }
        ),
        "{gap:?}"
    );
    assert_eq!(gap.error_code(), 45);
    let unknown = log
        .append(&producer_batch(7, 0, 3, 1))
        .expect_err("unknown producer mid-stream");
    // UNKNOWN_PRODUCER_ID, as Kafka answers: clients recover from it by starting over.
    assert_eq!(unknown.error_code(), 59);
    assert_eq!(log.log_end_offset(), 7);
    append_durable(&log, &producer_batch(42, 0, 5, 1));
}

#[test]
fn epochs_fence_old_producers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), LogConfig::default());
    append_durable(&log, &producer_batch(1, 5, 0, 2));
    let stale = log
        .append(&producer_batch(1, 4, 2, 1))
        .expect_err("old epoch");
    assert_eq!(stale.error_code(), 47);
    let not_from_zero = log
        .append(&producer_batch(1, 6, 2, 1))
        .expect_err("new epoch must restart");
    assert_eq!(not_from_zero.error_code(), 45);
    let bumped = append_durable(&log, &producer_batch(1, 6, 0, 1));
    assert_eq!(bumped.base_offset, 2);
    // The old epoch's batch is no longer a duplicate candidate.
    assert_eq!(
        log.append(&producer_batch(1, 5, 0, 2))
            .expect_err("fenced")
            .error_code(),
        47
    );
}

#[test]
fn producer_state_survives_crashes_clean_restarts_and_rolls() {
    for clean_close in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = small_segments(700);
        let log = open(dir.path(), config.clone());
        let mut outcomes = Vec::new();
        for i in 0..20 {
            outcomes.push(append_durable(&log, &producer_batch(9, 0, i * 2, 2)));
            append_durable(&log, &values_batch("noise", 1, 1, Compression::Snappy));
        }
        assert!(
            log.segments().len() > 3,
            "rolled, so snapshots were written"
        );
        if clean_close {
            log.close().expect("close");
        }
        drop(log);

        let log = open(dir.path(), config.clone());
        for (i, original) in outcomes.iter().enumerate().skip(15) {
            let retry = log
                .append(&producer_batch(9, 0, i as i32 * 2, 2))
                .expect("retry after restart");
            assert!(retry.duplicate, "clean={clean_close} batch {i}");
            assert_eq!(
                (retry.base_offset, retry.last_offset),
                (original.base_offset, original.last_offset)
            );
        }
        let gap = log
            .append(&producer_batch(9, 0, 41, 1))
            .expect_err("gap after restart");
        assert!(
            matches!(gap, LogError::OutOfOrderSequence { expected: 40, .. }),
            "{gap:?}"
        );
        append_durable(&log, &producer_batch(9, 0, 40, 1));
    }
}

#[test]
fn producer_state_is_rebuilt_without_snapshots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_segments(500));
    for i in 0..10 {
        append_durable(&log, &producer_batch(3, 1, i, 1));
    }
    drop(log);
    for entry in std::fs::read_dir(dir.path()).expect("list") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|ext| ext == "snapshot") {
            std::fs::remove_file(path).expect("remove snapshot");
        }
    }
    let log = open(dir.path(), small_segments(500));
    let retry = log.append(&producer_batch(3, 1, 8, 1)).expect("retry");
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, 8);
    assert_eq!(
        log.append(&producer_batch(3, 1, 3, 1))
            .expect_err("too old")
            .error_code(),
        45
    );
}
