//! Retention, DeleteRecords and compaction.

use crate::common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use freshet_log::{CleanupPolicy, LogConfig, LogError};
use kafka_protocol::records::Compression;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

#[test]
fn retention_by_time_deletes_old_closed_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        retention_ms: DAY_MS,
        ..small_segments(600)
    };
    let log = open(dir.path(), config);
    let now = 100 * DAY_MS;
    // Old data first, then fresh data.
    for i in 0..12 {
        let timestamp = if i < 6 { now - 3 * DAY_MS } else { now - 1000 };
        append_durable(&log, &values_batch("t", 3, timestamp, Compression::None));
    }
    let before = log.segments();
    let old_segments = before
        .iter()
        .filter(|s| s.max_timestamp < now - DAY_MS)
        .count();
    assert!(old_segments >= 1 && old_segments < before.len());
    let deleted = log.enforce_retention(now).expect("retention");
    assert_eq!(deleted, old_segments);
    let after = log.segments();
    assert_eq!(after.len(), before.len() - deleted);
    assert!(!before[0].path.exists(), "files removed");
    assert_eq!(log.log_start_offset(), after[0].base_offset);
    assert!(matches!(
        log.read(0, 100, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.enforce_retention(now).expect("idempotent"), 0);
    drop(log);
    let log = open(dir.path(), small_segments(600));
    assert_eq!(log.log_start_offset(), after[0].base_offset);
}

#[test]
fn retention_by_bytes_keeps_the_log_under_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        retention_bytes: 1000,
        retention_ms: -1,
        ..small_segments(400)
    };
    let log = open(dir.path(), config);
    for _ in 0..20 {
        append_durable(&log, &values_batch("b", 2, 1, Compression::None));
    }
    let deleted = log.enforce_retention(i64::MAX).expect("retention");
    assert!(deleted > 0);
    let size = log.size_bytes();
    assert!(
        size >= 1000 || log.segments().len() == 1,
        "deletes only while above the limit"
    );
    let oldest = log.segments()[0].size_bytes;
    assert!(
        size - oldest < 1000,
        "deleting one more would go below the limit"
    );
}

#[test]
fn retention_does_nothing_under_compact_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        retention_ms: 0,
        cleanup_policy: CleanupPolicy::Compact,
        ..small_segments(300)
    };
    let log = open(dir.path(), config);
    for i in 0..10 {
        let records = [
            keyed(&format!("k{i}"), Some("a"), 1),
            keyed("k", Some("b"), 1),
        ];
        append_durable(&log, &encode(&records, Compression::None, None));
    }
    assert_eq!(log.enforce_retention(i64::MAX).expect("retention"), 0);
}

#[test]
fn delete_records_moves_the_start_durably_and_drops_whole_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_segments(500));
    for _ in 0..20 {
        append_durable(&log, &values_batch("d", 3, 1, Compression::None));
    }
    let segments_before = log.segments().len();
    assert_eq!(log.delete_records_before(25).expect("delete records"), 25);
    assert!(log.segments().len() < segments_before);
    assert!(log.segments()[0].base_offset <= 25);
    assert!(matches!(
        log.read(24, 100, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    let read = log.read(25, 1 << 20, true).expect("read at new start");
    assert!(decode(&read.records).iter().any(|r| r.offset == 25));
    assert_eq!(log.delete_records_before(10).expect("lower is a no-op"), 25);
    assert_eq!(log.delete_records_before(1_000).expect("capped at hw"), 60);
    assert_eq!(
        log.segments().len(),
        1,
        "only the (new, empty) active segment is left"
    );
    drop(log);

    let log = open(dir.path(), small_segments(500));
    assert_eq!(log.log_start_offset(), 60);
    assert_eq!(log.log_end_offset(), 60);
    let next = append_durable(&log, &values_batch("d", 1, 1, Compression::None));
    assert_eq!(next.base_offset, 60);
}

#[test]
fn delete_records_inside_a_segment_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), LogConfig::default());
    for _ in 0..5 {
        append_durable(&log, &values_batch("s", 2, 1, Compression::None));
    }
    assert_eq!(log.delete_records_before(3).expect("delete"), 3);
    drop(log);
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.log_start_offset(), 3);
    assert_eq!(
        log.read(3, 1 << 20, true).expect("read").log_start_offset,
        3
    );
    assert!(log.read(2, 10, true).is_err());
}

fn keyed(key: &str, value: Option<&str>, timestamp: i64) -> Rec {
    Rec::new(Some(key), value, timestamp)
}

/// Latest value per key as a map, from decoded records.
fn latest_by_key(records: &[Decoded]) -> BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)> {
    let mut map = BTreeMap::new();
    for record in records {
        if let Some(key) = &record.key {
            map.insert(key.clone(), (record.offset, record.value.clone()));
        }
    }
    map
}

#[test]
fn compaction_keeps_the_latest_record_per_key_with_original_offsets() {
    for compression in ALL_COMPRESSIONS {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig {
            cleanup_policy: CleanupPolicy::Compact,
            delete_retention_ms: DAY_MS,
            ..small_segments(700)
        };
        // Written while the topic was not compacted (a compacted log refuses keyless records,
        // but a topic whose cleanup.policy changed keeps the ones it has): compaction keeps
        // them.
        let not_yet_compacted = LogConfig {
            cleanup_policy: CleanupPolicy::Delete,
            ..config.clone()
        };
        let log = open(dir.path(), not_yet_compacted);
        let now = 50 * DAY_MS;
        let old = now - 2 * DAY_MS;
        for round in 0..8 {
            let mut records: Vec<Rec> = (0..5)
                .map(|k| {
                    keyed(
                        &format!("k{k}"),
                        Some(&format!("v{round}-{k}")),
                        old + round,
                    )
                })
                .collect();
            records.push(Rec::new(
                None,
                Some(&format!("unkeyed-{round}")),
                old + round,
            ));
            append_durable(&log, &encode(&records, compression, None));
        }
        // k0 deleted long ago, k1 deleted recently.
        append_durable(
            &log,
            &encode(&[keyed("k0", None, old + 100)], compression, None),
        );
        append_durable(
            &log,
            &encode(&[keyed("k1", None, now - 1000)], compression, None),
        );
        // Fill the active segment with something else so the tombstones are in closed segments.
        for i in 0..6 {
            append_durable(
                &log,
                &values_batch(&format!("tail{i}"), 2, now, compression),
            );
        }
        let before = read_all(&log);
        let expected_latest = latest_by_key(&before);
        let size_before = log.size_bytes();
        log.set_config(config.clone());

        let stats = log.compact(now).expect("compact");
        assert!(stats.segments_cleaned > 0, "{compression:?}: {stats:?}");
        assert!(stats.records_removed > 0);
        assert_eq!(stats.tombstones_removed, 1, "only k0's tombstone expired");
        assert!(log.size_bytes() < size_before);

        let after = read_all(&log);
        let mut latest = expected_latest.clone();
        latest.remove(b"k0".as_slice());
        assert_eq!(latest_by_key(&after), latest, "{compression:?}");
        let keyed_after: Vec<&Decoded> = after.iter().filter(|r| r.key.is_some()).collect();
        assert_eq!(
            keyed_after.len(),
            latest.len(),
            "exactly one record per live key"
        );
        assert_eq!(latest[&b"k1".to_vec()].1, None, "young tombstone kept");
        let unkeyed = after.iter().filter(|r| r.key.is_none()).count();
        assert_eq!(
            unkeyed,
            before.iter().filter(|r| r.key.is_none()).count(),
            "unkeyed records kept"
        );
        for record in &after {
            let original = before
                .iter()
                .find(|r| r.offset == record.offset)
                .expect("offset preserved");
            assert_eq!(
                original, record,
                "offset, timestamp, key and value unchanged"
            );
        }

        // Compacting again changes nothing; reopening sees the compacted log.
        assert_eq!(log.compact(now).expect("again").segments_cleaned, 0);
        drop(log);
        let log = open(dir.path(), config);
        assert_eq!(read_all(&log), after);
        let more = encode(&[keyed("more", Some("v"), now)], compression, None);
        let next = append_durable(&log, &more);
        assert_eq!(next.base_offset, before.last().expect("records").offset + 1);
    }
}

#[test]
fn compaction_runs_alongside_readers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        cleanup_policy: CleanupPolicy::CompactDelete,
        ..small_segments(600)
    };
    let log = Arc::new(open(dir.path(), config));
    for round in 0..30 {
        let records: Vec<Rec> = (0..4)
            .map(|k| keyed(&format!("k{k}"), Some(&format!("{round}")), round))
            .collect();
        append_durable(&log, &encode(&records, Compression::Gzip, None));
    }
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (log, done) = (log.clone(), done.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !done.load(Ordering::Acquire) || reads == 0 {
                for offset in (0..log.high_watermark()).step_by(7) {
                    let read = log.read(offset, 4096, true).expect("reads keep working");
                    assert!(!read.records.is_empty());
                    decode(&read.records);
                    reads += 1;
                }
            }
            reads
        })
    };
    let stats = log.compact(1_000).expect("compact");
    done.store(true, Ordering::Release);
    assert!(reader.join().expect("reader") > 0);
    assert!(stats.segments_cleaned > 0);
    let latest = latest_by_key(&read_all(&log));
    assert!(latest
        .values()
        .all(|(_, value)| value.as_deref() == Some(b"29".as_slice())));
}

#[test]
fn compaction_does_nothing_under_delete_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_segments(300));
    for _ in 0..10 {
        append_durable(
            &log,
            &encode(&[keyed("same", Some("v"), 1)], Compression::None, None),
        );
    }
    assert_eq!(log.compact(10).expect("compact").segments_cleaned, 0);
    assert_eq!(read_all(&log).len(), 10);
}
