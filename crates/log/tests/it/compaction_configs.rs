//! The topic configs that steer compaction: `min.compaction.lag.ms` (young segments wait),
//! `min.cleanable.dirty.ratio` (a pass runs only when enough is new) and
//! `max.compaction.lag.ms` (forces a pass, and rolls a compacted log's active segment).

use crate::common;

use std::time::Duration;

use common::*;
use freshet_log::{CleanupPolicy, LogConfig};
use kafka_protocol::records::Compression;

const NOW: i64 = 1_000_000;

fn compacted(config: LogConfig) -> LogConfig {
    LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..config
    }
}

/// One batch holding one record of `key` at `timestamp`.
fn keyed(key: &str, value: &str, timestamp: i64) -> Vec<u8> {
    encode(
        &[Rec::new(Some(key), Some(value), timestamp)],
        Compression::None,
        None,
    )
}

#[test]
fn min_compaction_lag_keeps_young_segments_uncompacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(
        dir.path(),
        compacted(LogConfig {
            min_compaction_lag_ms: 1_000,
            min_cleanable_dirty_ratio: 0.0,
            ..small_segments(200)
        }),
    );
    for round in 0..6 {
        append_durable(
            &log,
            &keyed("k", &format!("old-{round:0>30}"), NOW - 10_000),
        );
    }
    for round in 0..6 {
        append_durable(&log, &keyed("k", &format!("young-{round:0>30}"), NOW - 10));
    }
    // Something else in the active segment, so every record of k lies in a closed one.
    append_durable(&log, &keyed("other", &format!("{:0>40}", 0), NOW));
    let before = read_all(&log);

    log.compact(NOW).expect("compact");
    let after = read_all(&log);
    let values = |records: &[Decoded], prefix: &str| {
        records
            .iter()
            .filter(|r| {
                r.value
                    .as_deref()
                    .is_some_and(|v| v.starts_with(prefix.as_bytes()))
            })
            .count()
    };
    assert_eq!(values(&after, "old-"), 0, "old superseded records went");
    assert_eq!(
        values(&after, "young-"),
        values(&before, "young-"),
        "records younger than the lag stay, superseded or not"
    );

    // Once old enough, they are compacted too: only k's latest record remains.
    log.compact(NOW + 10_000).expect("compact later");
    assert_eq!(values(&read_all(&log), "young-"), 1);
}

#[test]
fn a_pass_runs_only_when_the_dirty_share_reaches_min_cleanable_dirty_ratio() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), compacted(small_segments(200)));
    assert_eq!(
        log.config().min_cleanable_dirty_ratio,
        0.5,
        "Kafka's default"
    );
    // Distinct keys: compaction removes nothing, so the clean part stays large.
    let mut next_key = 0;
    let mut append_keys = |count: usize| {
        for _ in 0..count {
            append_durable(&log, &keyed(&format!("key-{next_key}"), "value", NOW - 100));
            next_key += 1;
        }
    };
    append_keys(20);
    let first = log.compact(NOW).expect("first pass");
    assert!(
        first.records_read > 0,
        "everything is dirty at first: {first:?}"
    );
    let again = log.compact(NOW).expect("nothing new");
    assert_eq!(
        again.records_read, 0,
        "no pass without dirty bytes: {again:?}"
    );

    append_keys(3);
    let little = log.compact(NOW).expect("a little new");
    assert_eq!(little.records_read, 0, "below the ratio: {little:?}");

    append_keys(30);
    let much = log.compact(NOW).expect("much new");
    assert!(much.records_read > 0, "above the ratio: {much:?}");
}

#[test]
fn max_compaction_lag_forces_a_pass_below_the_dirty_ratio() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), compacted(small_segments(200)));
    for i in 0..20 {
        append_durable(&log, &keyed(&format!("key-{i}"), "value", NOW - 100));
    }
    log.compact(NOW).expect("first pass");
    for i in 0..3 {
        append_durable(&log, &keyed(&format!("late-{i}"), "value", NOW - 100));
    }
    assert_eq!(log.compact(NOW).expect("below the ratio").records_read, 0);
    log.set_config(LogConfig {
        max_compaction_lag_ms: 50,
        ..log.config()
    });
    let forced = log.compact(NOW).expect("overdue");
    assert!(
        forced.records_read > 0,
        "the oldest dirty batch is 100 ms old: {forced:?}"
    );
}

#[test]
fn max_compaction_lag_rolls_the_active_segment_of_compacted_logs_only() {
    for (policy, rolls) in [
        (CleanupPolicy::Compact, true),
        (CleanupPolicy::Delete, false),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open(
            dir.path(),
            LogConfig {
                cleanup_policy: policy,
                max_compaction_lag_ms: 50,
                ..LogConfig::default()
            },
        );
        append_durable(&log, &keyed("k", "first", NOW));
        std::thread::sleep(Duration::from_millis(120));
        append_durable(&log, &keyed("k", "second", NOW));
        assert_eq!(log.segments().len() == 2, rolls, "{policy:?}");
    }
}
