//! Bounded decompression (`docs/SECURITY.md`): decompression bombs are refused at append, a
//! bomb already in the log is read at most once by compaction and never past the cap by
//! ListOffsets, and honest compressed batches of every codec are unaffected.

use crate::common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use freshet_log::batch::compute_crc;
use freshet_log::{BatchHeader, CleanupPolicy, LogConfig, LogError, BATCH_HEADER_LEN};
use kafka_protocol::records::Compression;

/// What the bombs decompress to: four times the default cap.
const BOMB_BYTES: usize = 256 << 20;
const CHUNK: usize = 1 << 20;

/// Zig-zag varint, as record fields are encoded.
fn varint(value: i64, out: &mut Vec<u8>) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// The bytes of one well-formed record up to its value, whose value is `value_len` zeros
/// followed by a header count of 0 (itself a zero byte): so `prefix` + `value_len + 1` zeros
/// is the whole record.
fn record_prefix(value_len: usize) -> Vec<u8> {
    let mut fields = vec![0u8]; // attributes
    varint(0, &mut fields); // timestamp delta
    varint(0, &mut fields); // offset delta
    varint(-1, &mut fields); // null key
    varint(value_len as i64, &mut fields);
    let mut prefix = Vec::new();
    varint((fields.len() + value_len + 1) as i64, &mut prefix);
    prefix.extend(fields);
    prefix
}

/// Feeds `prefix` then `zeros` zero bytes to `writer` in 1 MiB steps (never holding the whole).
fn write_zeros(writer: &mut impl Write, prefix: &[u8], zeros: usize) {
    writer.write_all(prefix).expect("compress");
    let chunk = vec![0u8; CHUNK];
    let mut left = zeros;
    while left > 0 {
        let step = left.min(CHUNK);
        writer.write_all(&chunk[..step]).expect("compress");
        left -= step;
    }
}

fn gzip(prefix: &[u8], zeros: usize) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    write_zeros(&mut encoder, prefix, zeros);
    encoder.finish().expect("compress")
}

fn zstd(prefix: &[u8], zeros: usize) -> Vec<u8> {
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("zstd");
    write_zeros(&mut encoder, prefix, zeros);
    encoder.finish().expect("compress")
}

/// A producer's v2 batch claiming one record, with `codec` attributes, `body` as its
/// (compressed) records and a valid CRC.
fn batch(codec: Compression, body: &[u8]) -> Vec<u8> {
    let mut header = BatchHeader {
        base_offset: 0,
        batch_length: i32::try_from(BATCH_HEADER_LEN - 12 + body.len()).expect("fits"),
        partition_leader_epoch: -1,
        magic: 2,
        crc: 0,
        attributes: codec as i16,
        last_offset_delta: 0,
        base_timestamp: 5_000,
        max_timestamp: 5_000,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: 1,
    };
    let mut bytes = header.to_bytes().to_vec();
    bytes.extend_from_slice(body);
    header.crc = compute_crc(&bytes);
    bytes[..BATCH_HEADER_LEN].copy_from_slice(&header.to_bytes());
    bytes
}

/// The finding's bomb: zeros, no parsable record.
fn zeros_bomb(codec: Compression) -> Vec<u8> {
    let body = match codec {
        Compression::Gzip => gzip(&[], BOMB_BYTES),
        _ => zstd(&[], BOMB_BYTES),
    };
    batch(codec, &body)
}

/// One well-formed record whose value is 256 MiB of zeros: only the size cap stops it.
fn record_bomb(codec: Compression) -> Vec<u8> {
    let prefix = record_prefix(BOMB_BYTES);
    let body = match codec {
        Compression::Gzip => gzip(&prefix, BOMB_BYTES + 1),
        _ => zstd(&prefix, BOMB_BYTES + 1),
    };
    batch(codec, &body)
}

fn assert_refused_and_nothing_written(codec: Compression) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), LogConfig::default());
    let zeros = zeros_bomb(codec);
    let record = record_bomb(codec);
    assert!(
        zeros.len() < 1 << 20 && record.len() < 1 << 20,
        "small on the wire"
    );

    let refused = log.append(&zeros).expect_err("an unparsable body");
    assert!(
        matches!(refused, LogError::CorruptMessage(_)),
        "{codec:?}: {refused}"
    );
    assert_eq!(refused.error_code(), 2);

    let refused = log.append(&record).expect_err("over the cap");
    assert!(
        matches!(refused, LogError::UncompressedTooLarge { max } if max == 64 << 20),
        "{codec:?}: {refused}"
    );
    assert_eq!(refused.error_code(), 10);

    assert_eq!(log.log_end_offset(), 0, "nothing appended");
    assert_eq!(log.size_bytes(), 0, "nothing written");
    assert_eq!(log.stats().bytes_appended, 0);
    let next = append_durable(&log, &values_batch("after", 2, 1, codec));
    assert_eq!(next.base_offset, 0, "the log goes on");
}

#[test]
fn a_gzip_bomb_is_refused_at_append_and_nothing_is_written() {
    assert_refused_and_nothing_written(Compression::Gzip);
}

#[test]
fn a_zstd_bomb_is_refused_at_append_and_nothing_is_written() {
    assert_refused_and_nothing_written(Compression::Zstd);
}

#[test]
fn every_codec_is_accepted_up_to_the_cap_and_refused_past_it() {
    let records: Vec<Rec> = (0..40)
        .map(|i| {
            Rec::new(
                Some(&format!("key-{i}")),
                Some(&"v".repeat(1000)),
                1_000 + i,
            )
        })
        .collect();
    for codec in ALL_COMPRESSIONS {
        let bytes = encode(&records, codec, None);
        let dir = tempfile::tempdir().expect("tempdir");
        let tight = LogConfig {
            max_uncompressed_batch_bytes: 32 * 1024,
            ..LogConfig::default()
        };
        let log = open(dir.path(), tight.clone());
        let result = log.append(&bytes);
        if codec == Compression::None {
            // Uncompressed batches are bounded by max.message.bytes and never opened.
            assert!(result.is_ok());
            continue;
        }
        assert!(
            matches!(result, Err(LogError::UncompressedTooLarge { .. })),
            "{codec:?}: {result:?}"
        );
        log.set_config(LogConfig {
            max_uncompressed_batch_bytes: 64 * 1024,
            ..tight
        });
        append_durable(&log, &bytes);
        let back = read_all(&log);
        assert_eq!(back.len(), 40, "{codec:?}");
        assert_eq!(back[39].key.as_deref(), Some(&b"key-39"[..]));
        assert_eq!(
            log.offset_for_timestamp(1_020).expect("by time"),
            Some((20, 1_020))
        );
    }
}

#[test]
fn a_compressed_batch_with_wrong_offset_deltas_is_invalid() {
    let body = {
        let mut records = Vec::new();
        for delta in [0, 2] {
            let mut fields = vec![0u8];
            varint(0, &mut fields);
            varint(delta, &mut fields);
            varint(-1, &mut fields);
            varint(1, &mut fields);
            fields.push(b'v');
            varint(0, &mut fields);
            varint(fields.len() as i64, &mut records);
            records.extend(fields);
        }
        gzip(&records, 0)
    };
    let mut bytes = batch(Compression::Gzip, &body);
    let mut header = BatchHeader::parse(&bytes).expect("header");
    header.record_count = 2;
    header.last_offset_delta = 1;
    bytes[..BATCH_HEADER_LEN].copy_from_slice(&header.to_bytes());
    header.crc = compute_crc(&bytes);
    bytes[..BATCH_HEADER_LEN].copy_from_slice(&header.to_bytes());
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), LogConfig::default());
    let refused = log.append(&bytes).expect_err("offset deltas 0, 2");
    assert_eq!(refused.error_code(), 87, "{refused}");
}

/// Writes `batches` (each stamped with consecutive offsets) as the first segment of a new log
/// in `dir`, the way a log written before validation existed would hold them.
fn write_raw_segment(dir: &std::path::Path, batches: &[Vec<u8>]) {
    let mut file = Vec::new();
    let mut next = 0i64;
    for batch in batches {
        let mut batch = batch.clone();
        batch[..8].copy_from_slice(&next.to_be_bytes());
        next += i64::from(BatchHeader::parse(&batch).expect("header").record_count);
        file.extend(batch);
    }
    std::fs::write(dir.join(format!("{:020}.log", 0)), file).expect("write segment");
}

/// Collects what `tracing` writes while the test runs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().expect("lock"))
            .matches(needle)
            .count()
    }
}

#[test]
fn compaction_reads_a_bomb_in_the_log_once_and_keeps_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bombs = [
        zeros_bomb(Compression::Gzip),
        record_bomb(Compression::Gzip),
    ];
    write_raw_segment(dir.path(), &bombs);
    let config = LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        // Every pass runs, even with nothing new to compact: the second pass is the point.
        min_cleanable_dirty_ratio: 0.0,
        ..small_segments(1024)
    };
    let log = open(dir.path(), config);
    assert_eq!(
        log.log_end_offset(),
        2,
        "recovery keeps the bombs: their CRCs are valid"
    );
    // Uncompressed keyed records after them; the first append rolls the bombs' segment closed.
    for round in 0..20 {
        let records: Vec<Rec> = (0..3)
            .map(|k| Rec::new(Some(&format!("k{k}")), Some(&format!("v{round}")), 9_000))
            .collect();
        append_durable(&log, &encode(&records, Compression::None, None));
    }
    assert!(log.segments().len() > 2);
    let bomb_bytes: Vec<u8> = log
        .read(0, 4 << 20, true)
        .expect("read the bombs")
        .records
        .to_vec();

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let (first, second) = tracing::subscriber::with_default(subscriber, || {
        let first = log.compact(10_000).expect("first pass");
        let second = log.compact(10_000).expect("second pass");
        (first, second)
    });

    assert_eq!(first.unreadable_batches_found, 2, "{first:?}");
    assert_eq!(
        first.batches_decompressed, 2,
        "each bomb opened once: {first:?}"
    );
    assert_eq!(
        first.unreadable_batches_skipped, 2,
        "the rewrite scan skips what the key scan found: {first:?}"
    );
    assert!(
        first.records_removed > 0,
        "the rest is compacted: {first:?}"
    );
    assert_eq!(second.unreadable_batches_found, 0, "{second:?}");
    assert_eq!(
        second.batches_decompressed, 0,
        "not opened again: {second:?}"
    );
    assert_eq!(second.unreadable_batches_skipped, 4, "{second:?}");
    assert_eq!(
        captured.count("compaction keeps a batch it cannot read"),
        2,
        "one WARN per bomb"
    );

    let after = log.read(0, 4 << 20, true).expect("read").records;
    assert_eq!(
        &after[..bomb_bytes.len()],
        bomb_bytes.as_slice(),
        "the bombs are kept byte for byte"
    );
    let keyed: Vec<Decoded> = read_after_bombs(&log)
        .into_iter()
        .filter(|record| record.key.is_some())
        .collect();
    assert!(keyed.len() < 60, "superseded records removed");
    for k in 0..3 {
        let key = format!("k{k}").into_bytes();
        let last = keyed.iter().rfind(|r| r.key.as_ref() == Some(&key));
        assert_eq!(last.and_then(|r| r.value.clone()), Some(b"v19".to_vec()));
    }
}

/// Every record from offset 2 (past the two bombs, which the test decoder would choke on).
fn read_after_bombs(log: &freshet_log::PartitionLog) -> Vec<Decoded> {
    let mut out = Vec::new();
    let mut offset = 2;
    while offset < log.high_watermark() {
        let records = decode(&log.read(offset, 4096, true).expect("read").records);
        let next: Vec<Decoded> = records.into_iter().filter(|r| r.offset >= offset).collect();
        match next.last() {
            Some(last) => offset = last.offset + 1,
            None => break,
        }
        out.extend(next);
    }
    out
}

#[test]
fn offsets_by_timestamp_stop_at_the_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_raw_segment(dir.path(), &[record_bomb(Compression::Zstd)]);
    let log = open(dir.path(), LogConfig::default());
    let result = log.offset_for_timestamp(0);
    assert!(
        matches!(result, Err(LogError::UncompressedTooLarge { .. })),
        "{result:?}"
    );
}
