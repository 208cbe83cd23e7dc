//! `dump_segment` output.

use crate::common;

use std::fs::OpenOptions;
use std::io::Write;

use common::*;
use freshet_log::dump_segment;
use kafka_protocol::records::Compression;

#[test]
fn dump_lists_batches_indexes_and_damage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_segments(100_000));
    append_durable(&log, &values_batch("a", 3, 1_000, Compression::Gzip));
    append_durable(&log, &producer_batch(5, 2, 0, 2));
    log.close().expect("close");
    let path = active_log_file(&log);
    drop(log);
    OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open")
        .write_all(&[7; 30])
        .expect("garbage");

    let mut out = Vec::new();
    dump_segment(&path, &mut out).expect("dump");
    let text = String::from_utf8(out).expect("utf8");
    assert!(
        text.contains("base_offset: 0 last_offset: 2 count: 3 position: 0"),
        "{text}"
    );
    assert!(text.contains("crc_ok: true compression: gzip"), "{text}");
    assert!(
        text.contains("base_offset: 3 last_offset: 4 count: 2"),
        "{text}"
    );
    assert!(
        text.contains("producer_id: 5 producer_epoch: 2 base_sequence: 0"),
        "{text}"
    );
    assert!(text.contains("INVALID at position"), "{text}");
    assert!(text.contains("2 batches"), "{text}");
    assert!(
        text.contains("Offset index") && text.contains("offset: 0 position: 0"),
        "{text}"
    );
    assert!(
        text.contains("Time index") && text.contains("timestamp: 1000 offset: 0"),
        "{text}"
    );
}

#[test]
fn dump_of_a_missing_file_is_a_storage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = dump_segment(&dir.path().join("nope.log"), &mut Vec::new()).expect_err("missing");
    assert_eq!(err.error_code(), 56);
}
