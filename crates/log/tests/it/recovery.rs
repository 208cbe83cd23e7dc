//! Reopening after crashes and clean shutdowns.

use crate::common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use common::*;
use freshet_log::LogConfig;
use kafka_protocol::records::Compression;

fn append_garbage(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open segment");
    file.write_all(bytes).expect("write garbage");
}

fn fill(log: &freshet_log::PartitionLog, batches: usize) -> Vec<Vec<u8>> {
    let mut values = Vec::new();
    for i in 0..batches {
        let compression = ALL_COMPRESSIONS[i % 5];
        append_durable(
            log,
            &values_batch(&format!("r{i}"), 2, 100 + i as i64, compression),
        );
        values.push(format!("r{i}-0").into_bytes());
        values.push(format!("r{i}-1").into_bytes());
    }
    values
}

fn values(log: &freshet_log::PartitionLog) -> Vec<Vec<u8>> {
    read_all(log)
        .into_iter()
        .map(|r| r.value.expect("value"))
        .collect()
}

#[test]
fn torn_tail_is_truncated_and_appends_continue() {
    for clean_close in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = small_segments(1500);
        let log = open(dir.path(), config.clone());
        let expected = fill(&log, 30);
        if clean_close {
            log.close().expect("close");
        }
        let active = active_log_file(&log);
        let good_size = fs::metadata(&active).expect("stat").len();
        drop(log);

        // Half a batch, then garbage, as a crash in the middle of a write would leave.
        let half = values_batch("torn", 3, 1, Compression::None);
        append_garbage(&active, &half[..half.len() / 2]);
        append_garbage(&active, &[0xAB; 100]);

        let log = open(dir.path(), config.clone());
        assert_eq!(
            fs::metadata(&active).expect("stat").len(),
            good_size,
            "clean={clean_close}"
        );
        assert_eq!(log.log_end_offset(), 60);
        assert_eq!(log.high_watermark(), 60);
        assert_eq!(values(&log), expected);
        let next = append_durable(&log, &values_batch("next", 1, 1, Compression::Gzip));
        assert_eq!(next.base_offset, 60);
        drop(log);
        let log = open(dir.path(), config);
        assert_eq!(log.log_end_offset(), 61);
    }
}

#[test]
fn corrupt_batch_in_the_middle_of_the_active_segment_cuts_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), LogConfig::default());
    let batch = values_batch("c", 2, 1, Compression::None);
    for _ in 0..5 {
        append_durable(&log, &batch);
    }
    let path = active_log_file(&log);
    drop(log);
    // Flip a byte inside the third batch's records: its CRC no longer matches.
    let mut bytes = fs::read(&path).expect("read segment");
    let third = 2 * batch.len();
    bytes[third + batch.len() - 2] ^= 0xFF;
    fs::write(&path, &bytes).expect("write segment");

    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(fs::metadata(&path).expect("stat").len(), third as u64);
}

#[test]
fn missing_or_malformed_index_files_are_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_segments(1200);
    let log = open(dir.path(), config.clone());
    let expected = fill(&log, 40);
    log.close().expect("close");
    let segments = log.segments();
    assert!(segments.len() >= 4);
    drop(log);

    let index = |i: usize, ext: &str| segments[i].path.with_extension(ext);
    fs::remove_file(index(0, "index")).expect("remove index");
    fs::remove_file(index(1, "timeindex")).expect("remove time index");
    fs::write(index(2, "index"), [1, 2, 3]).expect("garbage index");
    fs::write(index(3, "index"), [0xFF; 16]).expect("index pointing nowhere");
    let last = segments.len() - 1;
    fs::remove_file(index(last, "index")).expect("remove active index");

    let log = open(dir.path(), config.clone());
    assert_eq!(values(&log), expected);
    for i in 0..last {
        let rebuilt = fs::read(index(i, "index")).expect("closed segment index written again");
        assert!(!rebuilt.is_empty() && rebuilt.len() % 8 == 0);
        assert!(index(i, "timeindex").exists());
    }
    assert_eq!(
        log.offset_for_timestamp(110).expect("lookup"),
        Some((20, 110))
    );
    drop(log);
    let log = open(dir.path(), config);
    assert_eq!(values(&log), expected);
}

#[test]
fn clean_shutdown_marker_is_written_and_removed_by_the_next_append() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), LogConfig::default());
    fill(&log, 3);
    log.close().expect("close");
    let marker = dir.path().join("clean-shutdown");
    assert!(marker.exists());
    drop(log);

    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.log_end_offset(), 6);
    assert!(marker.exists(), "reads and opens leave it");
    append_durable(&log, &values_batch("m", 1, 1, Compression::None));
    assert!(!marker.exists(), "the first append removes it");
    drop(log);
    // Crash after appending: the next open scans the active segment instead of trusting stale
    // indexes, and finds the new batch.
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.log_end_offset(), 7);
}

#[test]
fn leftover_temp_and_orphan_files_are_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_segments(600));
    let expected = fill(&log, 12);
    drop(log);
    let leftovers = [
        "00000000000000000000.log.cleaned",
        "00000000000000000000.index.cleaned",
        "log-start-offset.checkpoint.tmp",
        "00000000000000099999.index",
        "00000000000000099999.timeindex",
    ];
    for name in leftovers {
        fs::write(dir.path().join(name), b"junk").expect("write leftover");
    }
    let log = open(dir.path(), small_segments(600));
    for name in leftovers {
        assert!(!dir.path().join(name).exists(), "{name} removed");
    }
    assert_eq!(values(&log), expected);
}

#[test]
fn opening_creates_the_directory_and_an_empty_segment() {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = parent.path().join("topic-0");
    let log = open(&dir, LogConfig::default());
    assert!(dir.join("00000000000000000000.log").exists());
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.high_watermark()
        ),
        (0, 0, 0)
    );
    assert!(log
        .read(0, 100, true)
        .expect("empty read")
        .records
        .is_empty());
}

#[test]
fn deleting_the_log_wakes_watchers_and_fails_later_calls() {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = parent.path().join("gone-0");
    let log = open(&dir, LogConfig::default());
    let mut watcher = log.watch_high_watermark();
    watcher.borrow_and_update();
    log.delete().expect("delete");
    assert!(watcher.has_changed().expect("sender alive"));
    assert!(!dir.exists());
    assert_eq!(
        log.append(&values_batch("x", 1, 1, Compression::None))
            .expect_err("deleted")
            .error_code(),
        56
    );
    assert!(log.read(0, 10, true).is_err());
}
