//! Record batch v2 headers: parsing, validation of what a producer sent, and the two fields the
//! broker patches.
//!
//! ```text
//! offset  size  field                      covered by CRC
//!      0     8  baseOffset                 no   (set by the log)
//!      8     4  batchLength                no   (bytes after this field)
//!     12     4  partitionLeaderEpoch       no   (set to 0 by the log)
//!     16     1  magic (= 2)                no
//!     17     4  crc (CRC-32C)              no
//!     21     2  attributes                 yes  bits 0-2 compression, 3 log-append-time,
//!                                                4 transactional, 5 control
//!     23     4  lastOffsetDelta            yes
//!     27     8  baseTimestamp              yes
//!     35     8  maxTimestamp               yes
//!     43     8  producerId                 yes
//!     51     2  producerEpoch              yes
//!     53     4  baseSequence               yes
//!     57     4  recordCount                yes
//!     61     -  records (maybe compressed) yes
//! ```

use std::ops::Range;

use kafka_protocol::records::Compression;

use crate::error::LogError;
use crate::records;

/// Length of the fixed part of a v2 record batch, up to and including `recordCount`.
pub const BATCH_HEADER_LEN: usize = 61;

/// `baseOffset` + `batchLength`: the bytes in front of what `batchLength` counts.
pub const LOG_OVERHEAD: usize = 12;

/// The only batch format this log stores.
pub const MAGIC_V2: i8 = 2;

const BATCH_LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;

/// The smallest legal `batchLength`: a header without records.
const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32;

pub(crate) const COMPRESSION_MASK: i16 = 0x07;
pub(crate) const LOG_APPEND_TIME_FLAG: i16 = 1 << 3;
const TRANSACTIONAL_FLAG: i16 = 1 << 4;
const CONTROL_FLAG: i16 = 1 << 5;

/// The parsed 61-byte header of a v2 record batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the `batchLength` field (the whole batch is `batch_length + 12`).
    pub batch_length: i32,
    /// Always stored as 0 by this log.
    pub partition_leader_epoch: i32,
    /// Always 2.
    pub magic: i8,
    /// CRC-32C of everything from `attributes` to the end of the batch.
    pub crc: u32,
    /// Compression codec and flags.
    pub attributes: i16,
    /// Offset of the last record minus `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp the record timestamp deltas are relative to.
    pub base_timestamp: i64,
    /// Largest record timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `buf`. Checks the length field and the magic byte, not
    /// the CRC (see [`verify_crc`]) nor the record counts (see `validate_record_set`).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, LogError> {
        let Some(header) = buf.get(..BATCH_HEADER_LEN) else {
            return Err(LogError::corrupt(format!(
                "batch header needs {BATCH_HEADER_LEN} bytes, only {} present",
                buf.len()
            )));
        };
        let parsed = BatchHeader {
            base_offset: i64::from_be_bytes(field(header, 0)),
            batch_length: i32::from_be_bytes(field(header, BATCH_LENGTH_AT)),
            partition_leader_epoch: i32::from_be_bytes(field(header, LEADER_EPOCH_AT)),
            magic: i8::from_be_bytes(field(header, MAGIC_AT)),
            crc: u32::from_be_bytes(field(header, CRC_AT)),
            attributes: i16::from_be_bytes(field(header, ATTRIBUTES_AT)),
            last_offset_delta: i32::from_be_bytes(field(header, LAST_OFFSET_DELTA_AT)),
            base_timestamp: i64::from_be_bytes(field(header, BASE_TIMESTAMP_AT)),
            max_timestamp: i64::from_be_bytes(field(header, MAX_TIMESTAMP_AT)),
            producer_id: i64::from_be_bytes(field(header, PRODUCER_ID_AT)),
            producer_epoch: i16::from_be_bytes(field(header, PRODUCER_EPOCH_AT)),
            base_sequence: i32::from_be_bytes(field(header, BASE_SEQUENCE_AT)),
            record_count: i32::from_be_bytes(field(header, RECORD_COUNT_AT)),
        };
        if parsed.magic != MAGIC_V2 {
            return Err(LogError::corrupt(format!(
                "magic byte {} is not {MAGIC_V2}",
                parsed.magic
            )));
        }
        if parsed.batch_length < MIN_BATCH_LENGTH {
            return Err(LogError::corrupt(format!(
                "batch length {} is shorter than a header",
                parsed.batch_length
            )));
        }
        Ok(parsed)
    }

    /// Serialises the header; the inverse of [`BatchHeader::parse`].
    pub fn to_bytes(&self) -> [u8; BATCH_HEADER_LEN] {
        let mut out = [0u8; BATCH_HEADER_LEN];
        out[..8].copy_from_slice(&self.base_offset.to_be_bytes());
        out[BATCH_LENGTH_AT..LEADER_EPOCH_AT].copy_from_slice(&self.batch_length.to_be_bytes());
        out[LEADER_EPOCH_AT..MAGIC_AT].copy_from_slice(&self.partition_leader_epoch.to_be_bytes());
        out[MAGIC_AT] = self.magic.to_be_bytes()[0];
        out[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&self.crc.to_be_bytes());
        out[ATTRIBUTES_AT..LAST_OFFSET_DELTA_AT].copy_from_slice(&self.attributes.to_be_bytes());
        out[LAST_OFFSET_DELTA_AT..BASE_TIMESTAMP_AT]
            .copy_from_slice(&self.last_offset_delta.to_be_bytes());
        out[BASE_TIMESTAMP_AT..MAX_TIMESTAMP_AT]
            .copy_from_slice(&self.base_timestamp.to_be_bytes());
        out[MAX_TIMESTAMP_AT..PRODUCER_ID_AT].copy_from_slice(&self.max_timestamp.to_be_bytes());
        out[PRODUCER_ID_AT..PRODUCER_EPOCH_AT].copy_from_slice(&self.producer_id.to_be_bytes());
        out[PRODUCER_EPOCH_AT..BASE_SEQUENCE_AT]
            .copy_from_slice(&self.producer_epoch.to_be_bytes());
        out[BASE_SEQUENCE_AT..RECORD_COUNT_AT].copy_from_slice(&self.base_sequence.to_be_bytes());
        out[RECORD_COUNT_AT..].copy_from_slice(&self.record_count.to_be_bytes());
        out
    }

    /// Size of the whole batch on disk: `batchLength` plus the 12 bytes in front of it.
    pub fn total_size(&self) -> usize {
        // `parse` rejects lengths below MIN_BATCH_LENGTH, so the value is positive.
        self.batch_length.unsigned_abs() as usize + LOG_OVERHEAD
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// The offset after this batch: where the next batch starts.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// The compression codec, or an error for the unassigned codes 5-7.
    pub fn compression(&self) -> Result<Compression, LogError> {
        match self.attributes & COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(LogError::corrupt(format!(
                "unknown compression codec {other}"
            ))),
        }
    }

    /// Whether record timestamps are the broker's append time (then every record's timestamp is
    /// `max_timestamp`) rather than the producer's create time.
    pub fn has_log_append_time(&self) -> bool {
        self.attributes & LOG_APPEND_TIME_FLAG != 0
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_FLAG != 0
    }

    /// Whether the batch holds transaction markers rather than data.
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_FLAG != 0
    }

    /// Whether sequence numbers of this batch are checked (an idempotent producer wrote it).
    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0 && self.base_sequence >= 0
    }

    /// Sequence number of the last record, wrapping past `i32::MAX` to 0 as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// Adds `delta` to a non-negative sequence number, wrapping past `i32::MAX` to 0.
pub(crate) fn increment_sequence(sequence: i32, delta: i32) -> i32 {
    let modulus = i64::from(i32::MAX) + 1;
    let wrapped = (i64::from(sequence) + i64::from(delta)).rem_euclid(modulus);
    // rem_euclid by 2^31 yields 0..=i32::MAX, which always fits.
    i32::try_from(wrapped).unwrap_or(0)
}

/// Copies `N` bytes at `at`. Callers pass a slice of exactly BATCH_HEADER_LEN bytes and field
/// positions that lie inside it, so the slicing cannot go out of bounds.
fn field<const N: usize>(header: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&header[at..at + N]);
    out
}

/// The CRC-32C a batch should carry: over everything from `attributes` to the end.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(batch.get(ATTRIBUTES_AT..).unwrap_or_default())
}

/// Checks the stored CRC of one whole batch (`batch` is exactly `header.total_size()` bytes).
pub fn verify_crc(header: &BatchHeader, batch: &[u8]) -> Result<(), LogError> {
    let actual = compute_crc(batch);
    if actual == header.crc {
        Ok(())
    } else {
        Err(LogError::corrupt(format!(
            "CRC mismatch at batch with base offset {}: stored {:#010x}, computed {actual:#010x}",
            header.base_offset, header.crc
        )))
    }
}

/// Writes the fields the log owns into a batch: its base offset, and a partition leader epoch
/// of 0 (a single node has one leader forever). Both lie outside the CRC.
pub(crate) fn stamp_batch(batch: &mut [u8], base_offset: i64) {
    if let Some(slot) = batch.get_mut(..BATCH_LENGTH_AT) {
        slot.copy_from_slice(&base_offset.to_be_bytes());
    }
    if let Some(slot) = batch.get_mut(LEADER_EPOCH_AT..MAGIC_AT) {
        slot.copy_from_slice(&0i32.to_be_bytes());
    }
}

/// One batch of a producer's record set that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ValidBatch {
    pub header: BatchHeader,
    /// Where the batch lies in the record set.
    pub range: Range<usize>,
    /// The range of its records' producer timestamps.
    pub times: records::RecordTimes,
}

/// Validates every batch of a Produce record set before anything is written, so that a bad
/// batch anywhere rejects the whole set. Every batch's records are parsed, compressed ones
/// within `max_uncompressed` bytes each (see `records::validate_records`).
pub(crate) fn validate_record_set(
    records: &[u8],
    max_message_bytes: usize,
    max_uncompressed: usize,
) -> Result<Vec<ValidBatch>, LogError> {
    if records.is_empty() {
        return Err(LogError::invalid("record set holds no batch"));
    }
    let mut batches = Vec::new();
    let mut position = 0;
    while position < records.len() {
        let (batch, times) =
            validate_batch(&records[position..], max_message_bytes, max_uncompressed)?;
        let end = position + batch.total_size();
        batches.push(ValidBatch {
            header: batch,
            range: position..end,
            times,
        });
        position = end;
    }
    Ok(batches)
}

/// Validates the batch at the start of `buf` as a producer sent it.
fn validate_batch(
    buf: &[u8],
    max_message_bytes: usize,
    max_uncompressed: usize,
) -> Result<(BatchHeader, records::RecordTimes), LogError> {
    let size = framed_size(buf)?;
    if size > max_message_bytes {
        return Err(LogError::MessageTooLarge {
            size,
            max: max_message_bytes,
        });
    }
    let bytes = &buf[..size];
    let header = BatchHeader::parse(bytes)?;
    verify_crc(&header, bytes)?;
    header.compression()?;
    if header.record_count < 1 {
        return Err(LogError::invalid(format!(
            "record count {} is below 1",
            header.record_count
        )));
    }
    if i64::from(header.last_offset_delta) != i64::from(header.record_count) - 1 {
        return Err(LogError::invalid(format!(
            "last offset delta {} does not match record count {}",
            header.last_offset_delta, header.record_count
        )));
    }
    if header.is_control() {
        return Err(LogError::invalid("producers may not write control batches"));
    }
    let times = records::validate_records(&header, bytes, max_uncompressed)?;
    Ok((header, times))
}

/// Size of the batch at the start of `buf` per its length field, checked to lie within `buf`.
fn framed_size(buf: &[u8]) -> Result<usize, LogError> {
    let Some(length_bytes) = buf.get(BATCH_LENGTH_AT..LOG_OVERHEAD) else {
        return Err(LogError::corrupt(format!(
            "{} trailing bytes are too few for a batch",
            buf.len()
        )));
    };
    let length = i32::from_be_bytes(field(length_bytes, 0));
    if length < MIN_BATCH_LENGTH {
        return Err(LogError::corrupt(format!(
            "batch length {length} is shorter than a header"
        )));
    }
    let size = length.unsigned_abs() as usize + LOG_OVERHEAD;
    if size > buf.len() {
        return Err(LogError::corrupt(format!(
            "batch of {size} bytes is cut short: only {} bytes present",
            buf.len()
        )));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal, valid, uncompressed batch with `count` empty records' worth of header.
    fn header_only_batch(count: i32) -> Vec<u8> {
        let header = BatchHeader {
            base_offset: 77,
            batch_length: MIN_BATCH_LENGTH,
            partition_leader_epoch: 9,
            magic: MAGIC_V2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 1_000,
            max_timestamp: 2_000,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count: count,
        };
        let mut bytes = header.to_bytes().to_vec();
        let crc = compute_crc(&bytes);
        bytes[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
        bytes
    }

    /// A valid batch of `count` (< 64) records with neither key nor value.
    fn batch_of_empty_records(count: i32) -> Vec<u8> {
        let mut header = BatchHeader::parse(&header_only_batch(count)).expect("valid");
        let mut records = Vec::new();
        for delta in 0..count {
            // length 6 · attributes · timestamp delta 0 · offset delta · key -1 · value -1 ·
            // no headers, varints zig-zag encoded.
            records.extend([12, 0, 0, (delta * 2) as u8, 1, 1, 0]);
        }
        header.batch_length += records.len() as i32;
        let mut bytes = header.to_bytes().to_vec();
        bytes.extend(records);
        let crc = compute_crc(&bytes);
        bytes[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
        bytes
    }

    #[test]
    fn header_round_trips_through_bytes() {
        let bytes = header_only_batch(3);
        let header = BatchHeader::parse(&bytes).expect("valid header");
        assert_eq!(header.to_bytes().to_vec(), bytes);
        assert_eq!(header.total_size(), BATCH_HEADER_LEN);
        assert_eq!(header.next_offset(), 80);
    }

    #[test]
    fn stamping_keeps_the_crc_valid() {
        let mut bytes = header_only_batch(1);
        stamp_batch(&mut bytes, 1234);
        let header = BatchHeader::parse(&bytes).expect("valid header");
        assert_eq!(header.base_offset, 1234);
        assert_eq!(header.partition_leader_epoch, 0);
        verify_crc(&header, &bytes).expect("crc still valid");
    }

    #[test]
    fn validation_rejects_bad_framing() {
        let good = header_only_batch(1);
        assert!(matches!(
            validate_record_set(&[], 100, 1 << 20),
            Err(LogError::InvalidRecord(_))
        ));
        assert!(matches!(
            validate_record_set(&good[..20], 1000, 1 << 20),
            Err(LogError::CorruptMessage(_))
        ));
        let mut wrong_magic = good.clone();
        wrong_magic[MAGIC_AT] = 1;
        assert!(matches!(
            validate_record_set(&wrong_magic, 1000, 1 << 20),
            Err(LogError::CorruptMessage(_))
        ));
        let mut flipped = good.clone();
        flipped[BASE_TIMESTAMP_AT] ^= 0xff;
        assert!(matches!(
            validate_record_set(&flipped, 1000, 1 << 20),
            Err(LogError::CorruptMessage(_))
        ));
        assert!(matches!(
            validate_record_set(&good, 60, 1 << 20),
            Err(LogError::MessageTooLarge { size: 61, max: 60 })
        ));
    }

    #[test]
    fn validation_rejects_bad_counts() {
        let mut missing_records = batch_of_empty_records(3);
        missing_records.truncate(missing_records.len() - 7);
        let mut header = BatchHeader::parse(&missing_records).expect("valid");
        header.batch_length -= 7;
        missing_records[..BATCH_HEADER_LEN].copy_from_slice(&header.to_bytes());
        let crc = compute_crc(&missing_records);
        missing_records[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate_record_set(&missing_records, 1000, 1 << 20),
            Err(LogError::CorruptMessage(_))
        ));
        assert!(matches!(
            validate_record_set(&header_only_batch(0), 1000, 1 << 20),
            Err(LogError::InvalidRecord(_))
        ));
        let mut header = BatchHeader::parse(&header_only_batch(2)).expect("valid");
        header.last_offset_delta = 5;
        let mut bytes = header.to_bytes().to_vec();
        let crc = compute_crc(&bytes);
        bytes[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate_record_set(&bytes, 1000, 1 << 20),
            Err(LogError::InvalidRecord(_))
        ));
    }

    #[test]
    fn several_batches_are_split() {
        let mut set = batch_of_empty_records(1);
        set.extend(batch_of_empty_records(2));
        let batches = validate_record_set(&set, 1000, 1 << 20).expect("valid set");
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1].range, 68..143);
        set.push(0);
        assert!(validate_record_set(&set, 1000, 1 << 20).is_err());
    }

    #[test]
    fn sequences_wrap_to_zero() {
        assert_eq!(increment_sequence(5, 3), 8);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
    }
}
