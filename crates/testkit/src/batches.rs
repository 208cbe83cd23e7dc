//! Record batches for tests: ordinary ones as a producer encodes them ([`encoded_batch`]),
//! ones a current broker refuses at produce, and a way to put those into a log anyway:
//! written straight into the active segment of a stopped broker, as a log written by an older
//! version (or another Kafka implementation) may hold them. Readers must cope with them.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Bytes of a v2 batch header, up to and including `recordCount`.
pub const BATCH_HEADER_LEN: usize = 61;
/// Where the CRC-32C's input starts (`attributes`), and where the CRC itself is.
const ATTRIBUTES_AT: usize = 21;
const CRC_AT: usize = 17;
/// Attributes of a gzip batch.
const GZIP: i16 = 1;

/// One v2 batch of `records` (key, value), offsets 0, 1, 2, ..., encoded and compressed as a
/// producer would.
pub fn encoded_batch(records: &[(Option<&str>, &str)], compression: Compression) -> Bytes {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: 1_700_000_000_000,
            key: key.map(|key| Bytes::copy_from_slice(key.as_bytes())),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    encode_records(&records, compression)
}

/// One uncompressed v2 batch of `count` key-less records (values `v0`, `v1`, ...) as the
/// idempotent producer `producer_id` at `epoch` would send them, sequence numbers from
/// `base_sequence`: for tests of what the broker or a producer does when someone else wrote
/// under that identity.
pub fn idempotent_batch(producer_id: i64, epoch: i16, base_sequence: i32, count: usize) -> Bytes {
    producer_batch(false, producer_id, epoch, base_sequence, count)
}

/// [`idempotent_batch`] inside the producer's transaction.
pub fn transactional_batch(
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    count: usize,
) -> Bytes {
    producer_batch(true, producer_id, epoch, base_sequence, count)
}

fn producer_batch(
    transactional: bool,
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    count: usize,
) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: base_sequence + i as i32,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from(format!("v{i}"))),
            headers: Default::default(),
        })
        .collect();
    encode_records(&records, Compression::None)
}

/// `records` encoded as v2 record batches (a new batch wherever `offset - sequence` changes),
/// compressed with `compression`.
pub fn encode_records(records: &[Record], compression: Compression) -> Bytes {
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, records, &options).expect("encode batch");
    buf.freeze()
}

/// One uncompressed v2 batch of key-less `values`.
pub fn values_batch(values: &[&str]) -> Bytes {
    let records: Vec<(Option<&str>, &str)> = values.iter().map(|value| (None, *value)).collect();
    encoded_batch(&records, Compression::None)
}

/// A decompression bomb: a v2 gzip batch claiming one record whose body is `zeros` zero bytes
/// (512 MiB compress to about 0.5 MB), with a valid CRC, at base offset 0. The zeros are not a
/// record (a record's length varint would be 0), so no reader can return anything from it.
pub fn gzip_zeros_batch(zeros: usize) -> Vec<u8> {
    let body = gzip_of(&[], zeros);
    v2_batch(GZIP, 0, 1, &body)
}

/// A well-formed bomb: a v2 gzip batch holding one valid record with no key, no headers and a
/// value of `value_len` zero bytes; only its decompressed size is wrong.
pub fn gzip_record_batch(value_len: usize) -> Vec<u8> {
    // The zeros after the prefix: the value, then the header count 0.
    let body = gzip_of(&record_prefix(value_len), value_len + 1);
    v2_batch(GZIP, 0, 1, &body)
}

/// A v2 gzip batch claiming one record whose body is not gzip at all, with a valid CRC: corrupt
/// in a way only decompression shows.
pub fn corrupt_gzip_batch() -> Vec<u8> {
    v2_batch(GZIP, 0, 1, b"this body is not gzip data")
}

/// gzip of `prefix` then `zeros` zero bytes, compressed 1 MiB at a time so the uncompressed
/// body is never held.
fn gzip_of(prefix: &[u8], zeros: usize) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(prefix).expect("compress");
    let chunk = vec![0u8; 1 << 20];
    let mut left = zeros;
    while left > 0 {
        let step = left.min(chunk.len());
        encoder.write_all(&chunk[..step]).expect("compress");
        left -= step;
    }
    encoder.finish().expect("compress")
}

/// Zig-zag varint, as record fields are encoded.
fn varint(value: i64, out: &mut Vec<u8>) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// The bytes of one record up to its value, for a record whose value is `value_len` bytes and
/// which has no key and no headers (the header count that follows the value is one byte).
fn record_prefix(value_len: usize) -> Vec<u8> {
    let mut fields = vec![0u8]; // attributes
    varint(0, &mut fields); // timestamp delta
    varint(0, &mut fields); // offset delta
    varint(-1, &mut fields); // null key
    varint(value_len as i64, &mut fields);
    let length = fields.len() + value_len + 1;
    let mut prefix = Vec::new();
    varint(length as i64, &mut prefix);
    prefix.extend(fields);
    prefix
}

/// A v2 batch around an already encoded (and maybe compressed) `body`, with its CRC.
fn v2_batch(attributes: i16, last_offset_delta: i32, record_count: i32, body: &[u8]) -> Vec<u8> {
    let batch_length = i32::try_from(BATCH_HEADER_LEN - 12 + body.len()).expect("batch fits");
    let timestamp: i64 = 1_700_000_000_000;
    let mut batch = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
    batch.extend(0i64.to_be_bytes()); // base offset, stamped when appended
    batch.extend(batch_length.to_be_bytes());
    batch.extend((-1i32).to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend(0u32.to_be_bytes()); // crc, below
    batch.extend(attributes.to_be_bytes());
    batch.extend(last_offset_delta.to_be_bytes());
    batch.extend(timestamp.to_be_bytes()); // base timestamp
    batch.extend(timestamp.to_be_bytes()); // max timestamp
    batch.extend((-1i64).to_be_bytes()); // producer id
    batch.extend((-1i16).to_be_bytes()); // producer epoch
    batch.extend((-1i32).to_be_bytes()); // base sequence
    batch.extend(record_count.to_be_bytes());
    batch.extend_from_slice(body);
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// Appends `batch` at the end of partition `partition` of `topic` in the data directory of a
/// stopped broker, stamped with the log end offset as its base offset. Returns that offset.
///
/// The clean-shutdown marker is removed, so the next start scans the active segment (and
/// checks the batch's CRC) instead of trusting what the last close wrote.
pub fn append_to_log(data_dir: &Path, topic: &str, partition: i32, batch: &[u8]) -> i64 {
    let dir = data_dir
        .join("topics")
        .join(topic)
        .join(partition.to_string());
    let segment = active_segment(&dir);
    let base_offset = log_end_offset(&segment);
    let mut stamped = batch.to_vec();
    stamped[..8].copy_from_slice(&base_offset.to_be_bytes());
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .expect("open the active segment");
    file.write_all(&stamped).expect("append the batch");
    file.sync_all().expect("sync the segment");
    let marker = dir.join("clean-shutdown");
    if marker.exists() {
        std::fs::remove_file(marker).expect("remove the clean-shutdown marker");
    }
    base_offset
}

/// The `.log` file with the highest base offset in a partition directory.
fn active_segment(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .expect("the partition directory exists")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .max()
        .expect("the partition has a segment")
}

/// The offset after the last batch of `segment` (its base offset when it is empty), from the
/// batch headers: base offset plus last offset delta, plus one.
fn log_end_offset(segment: &Path) -> i64 {
    let bytes = std::fs::read(segment).expect("read the segment");
    let mut end: i64 = segment
        .file_stem()
        .and_then(|stem| stem.to_str())
        .and_then(|stem| stem.parse().ok())
        .expect("a segment is named by its base offset");
    let mut position = 0;
    while position + BATCH_HEADER_LEN <= bytes.len() {
        let header = &bytes[position..];
        let base = i64::from_be_bytes(header[..8].try_into().expect("8 bytes"));
        let length = i32::from_be_bytes(header[8..12].try_into().expect("4 bytes"));
        let delta = i32::from_be_bytes(header[23..27].try_into().expect("4 bytes"));
        end = base + i64::from(delta) + 1;
        position += 12 + usize::try_from(length).expect("a positive batch length");
    }
    end
}
