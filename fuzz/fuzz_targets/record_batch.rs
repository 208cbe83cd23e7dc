//! Record-batch validation, storage, compaction and recovery: the input is the record set of
//! one Produce partition, appended to a real `PartitionLog` in a fresh directory (on tmpfs when
//! there is one), with compaction on and every append in a new segment.
//!
//! Input: `[mode][record set...]`. With bit 0 of `mode` set, the CRC of every batch whose
//! length field frames it is recomputed first: almost every mutation of a real batch breaks its
//! CRC-32C, and without the repair the fuzzer would never get past that check. The seeds
//! (record sets of real clients' Produce requests) have mode 1.
//!
//! Checks, besides "no panic, no abort":
//! - append is all or nothing: a refused set leaves the log empty, and a refusal is never a
//!   storage error;
//! - an accepted set reads back byte for byte, except the two fields the log owns (each batch's
//!   base offset, assigned from 0 on, and its partition leader epoch, set to 0); CRCs hold;
//! - a retry of an all-idempotent set is answered as a duplicate with the original offsets,
//!   also after a crash and recovery;
//! - compaction succeeds, can open every compressed batch produce accepted, leaves the active
//!   segment untouched and leaves only well-formed batches in offset order;
//! - recovery after a crash (the log dropped without `close`) and after a clean close finds
//!   exactly the batches that were there.

#![no_main]

use std::time::Duration;

use freshet_fuzz::{scratch_dir, split_batches};
use freshet_log::batch::{compute_crc, verify_crc};
use freshet_log::{
    AppendOutcome, BatchHeader, CleanupPolicy, Durability, LogConfig, LogError, PartitionLog,
};
use libfuzzer_sys::fuzz_target;

/// The decompression cap of the log under test: small, so bombs stay cheap to fuzz.
const MAX_UNCOMPRESSED: usize = 1 << 20;

fuzz_target!(|input: &[u8]| {
    let Some((mode, records)) = input.split_first() else {
        return;
    };
    if mode & 1 == 1 {
        check(&with_crcs_repaired(records));
    } else {
        check(records);
    }
});

/// `records` with the CRC of each batch its length fields frame recomputed.
fn with_crcs_repaired(records: &[u8]) -> Vec<u8> {
    let mut out = records.to_vec();
    let mut position = 0;
    while let Some(length) = out.get(position + 8..position + 12) {
        let length = i32::from_be_bytes(length.try_into().expect("4 bytes"));
        let Ok(length) = usize::try_from(length) else {
            break;
        };
        let end = position + 12 + length;
        if length < freshet_log::BATCH_HEADER_LEN - 12 || end > out.len() {
            break;
        }
        let crc = compute_crc(&out[position..end]);
        out[position + 17..position + 21].copy_from_slice(&crc.to_be_bytes());
        position = end;
    }
    out
}

fn config() -> LogConfig {
    LogConfig {
        // Every append to a non-empty segment rolls, so earlier sets are in closed segments,
        // which is what compaction rewrites.
        segment_bytes: 1,
        cleanup_policy: CleanupPolicy::Compact,
        max_uncompressed_batch_bytes: MAX_UNCOMPRESSED,
        // Written data is visible at once; rolls and recovery still fsync.
        durability: Durability::Interval(Duration::from_secs(3600)),
        ..LogConfig::default()
    }
}

fn check(records: &[u8]) {
    let dir = scratch_dir();
    let path = dir.path().join("topic-0");
    let log = PartitionLog::open(&path, config()).expect("a new log opens");

    let first = match log.append(records) {
        Ok(outcome) => outcome,
        Err(error) => {
            assert!(is_client_error(&error), "append failed with {error:?}");
            assert_eq!(log.log_end_offset(), 0, "a refused set writes nothing");
            assert_eq!(log.size_bytes(), 0, "a refused set writes nothing");
            return;
        }
    };
    let batches = split_batches(records).expect("an accepted set is whole batches");
    assert!(
        !first.duplicate,
        "nothing to be a duplicate of in a new log"
    );
    assert_eq!(first.base_offset, 0);
    assert_eq!(first.bytes, records.len() as u64);
    let count: u64 = batches
        .iter()
        .map(|(h, _)| u64::from(h.record_count.unsigned_abs()))
        .sum();
    assert_eq!(first.record_count, count);
    let expected = stamped(records, &batches, 0);
    assert_eq!(log.log_end_offset(), first.last_offset + 1);
    let read = log
        .read(0, records.len(), true)
        .expect("read what was appended");
    assert_eq!(
        read.records.as_ref(),
        expected.as_slice(),
        "read back as appended"
    );
    for (header, range) in split_batches(&expected).expect("stamped batches") {
        verify_crc(&header, &expected[range]).expect("stamping keeps the CRC valid");
        let from = log
            .read(header.base_offset, 1, true)
            .expect("read from a batch");
        assert_eq!(
            BatchHeader::parse(&from.records).ok(),
            Some(header),
            "a read from a batch's base offset starts with that batch"
        );
    }
    check_timestamps(&log);

    // A retry of the same set: a duplicate when every batch is idempotent, appended anew when
    // none is; either way the offsets follow.
    let all_idempotent = batches.iter().all(|(h, _)| h.is_idempotent());
    let retry = log.append(records);
    match &retry {
        Ok(outcome) if all_idempotent => assert_duplicate_of(outcome, &first),
        Ok(outcome) => {
            assert!(!outcome.duplicate);
            assert_eq!(outcome.base_offset, first.last_offset + 1);
        }
        Err(error) => assert!(is_client_error(error), "retry failed with {error:?}"),
    }
    let retried_as_duplicate = matches!(&retry, Ok(outcome) if outcome.duplicate);

    // One more set, so everything before is in closed segments, then compaction.
    let end = log.log_end_offset();
    let sentinel = sentinel_batch();
    let appended = log
        .append(&sentinel)
        .expect("the sentinel batch is accepted");
    assert_eq!(appended.base_offset, end);
    let stats = log.compact(i64::MAX / 2).expect("compaction succeeds");
    let all_compressed = batches
        .iter()
        .all(|(h, _)| h.compression().is_ok_and(|c| c as i16 != 0));
    if all_compressed {
        assert_eq!(
            stats.unreadable_batches_found, 0,
            "compaction reads every compressed batch produce accepted: {stats:?}"
        );
    }
    assert_eq!(
        log.log_end_offset(),
        end + 1,
        "compaction keeps the log end"
    );
    let active = log
        .read(end, sentinel.len(), true)
        .expect("read the sentinel");
    assert_eq!(
        active.records.as_ref(),
        stamped(
            &sentinel,
            &split_batches(&sentinel).expect("one batch"),
            end
        ),
        "compaction leaves the active segment alone"
    );
    let before_crash = read_all(&log);

    // A crash: the log is dropped without a clean close, and recovered.
    drop(log);
    let log = PartitionLog::open(&path, config()).expect("recovery after a crash");
    assert_eq!(log.log_end_offset(), end + 1, "recovery keeps everything");
    assert_eq!(read_all(&log), before_crash, "recovery keeps every batch");
    if retried_as_duplicate {
        let again = log.append(records).expect("a retry after recovery");
        assert_duplicate_of(&again, &first);
    }

    // A clean close and reopen.
    log.close().expect("clean close");
    drop(log);
    let log = PartitionLog::open(&path, config()).expect("reopen after a clean close");
    assert_eq!(
        read_all(&log),
        before_crash,
        "a clean reopen keeps every batch"
    );
}

fn assert_duplicate_of(outcome: &AppendOutcome, first: &AppendOutcome) {
    assert!(outcome.duplicate, "an idempotent retry is a duplicate");
    assert_eq!(
        (outcome.base_offset, outcome.last_offset),
        (first.base_offset, first.last_offset),
        "a duplicate answers the original offsets"
    );
}

/// A refusal the producer's bytes caused (corrupt, invalid, too large, out of sequence, ...),
/// not the disk.
fn is_client_error(error: &LogError) -> bool {
    !matches!(error, LogError::Storage(_))
}

/// `records` as the log stores them from `base_offset` on: each batch's base offset assigned in
/// turn and its partition leader epoch zeroed.
fn stamped(
    records: &[u8],
    batches: &[(BatchHeader, std::ops::Range<usize>)],
    base: i64,
) -> Vec<u8> {
    let mut out = records.to_vec();
    let mut next = base;
    for (header, range) in batches {
        out[range.start..range.start + 8].copy_from_slice(&next.to_be_bytes());
        out[range.start + 12..range.start + 16].copy_from_slice(&0i32.to_be_bytes());
        next += i64::from(header.last_offset_delta) + 1;
    }
    out
}

/// Every batch from the log start to the high watermark, checked to be well formed and in
/// offset order.
fn read_all(log: &PartitionLog) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let mut previous_end = offset;
    while offset < log.high_watermark() {
        let read = log.read(offset, 1 << 20, true).expect("read the log");
        if read.records.is_empty() {
            break;
        }
        let batches = split_batches(&read.records).expect("reads return whole batches");
        for (header, range) in &batches {
            verify_crc(header, &read.records[range.clone()]).expect("stored batches keep CRCs");
            assert!(
                header.base_offset >= previous_end,
                "batches in offset order"
            );
            assert_eq!(header.partition_leader_epoch, 0);
            assert!(header.next_offset() <= log.log_end_offset());
            previous_end = header.next_offset();
        }
        offset = previous_end;
        out.extend_from_slice(&read.records);
    }
    out
}

/// ListOffsets by timestamp must answer an offset inside the log, or an error for a batch it
/// cannot open.
fn check_timestamps(log: &PartitionLog) {
    for timestamp in [i64::MIN, -1, 0, 1_700_000_000_000, i64::MAX] {
        if let Ok(Some((offset, _))) = log.offset_for_timestamp(timestamp) {
            assert!(
                (log.log_start_offset()..log.high_watermark()).contains(&offset),
                "offset {offset} for timestamp {timestamp} lies in the log"
            );
        }
    }
}

/// One uncompressed batch of one keyed record.
fn sentinel_batch() -> Vec<u8> {
    let key = b"fuzz-sentinel";
    let value = b"x";
    // attributes, timestamp delta 0, offset delta 0, key, value, no headers (zig-zag varints).
    let mut record = vec![0, 0, 0, key.len() as u8 * 2];
    record.extend_from_slice(key);
    record.push(value.len() as u8 * 2);
    record.extend_from_slice(value);
    record.push(0);
    let mut body = vec![record.len() as u8 * 2];
    body.extend(record);
    let header = BatchHeader {
        base_offset: 0,
        batch_length: (freshet_log::BATCH_HEADER_LEN - 12 + body.len()) as i32,
        partition_leader_epoch: 0,
        magic: 2,
        crc: 0,
        attributes: 0,
        last_offset_delta: 0,
        base_timestamp: 1_700_000_000_000,
        max_timestamp: 1_700_000_000_000,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: 1,
    };
    let mut batch = header.to_bytes().to_vec();
    batch.extend(body);
    let crc = compute_crc(&batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}
