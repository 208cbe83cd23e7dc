//! Transactions as one partition sees them: the commit and abort markers (control batches)
//! the transaction coordinator writes, and the aborted-transaction index that read_committed
//! consumers need to skip aborted records.
//!
//! A transactional producer's batches carry the transactional attribute bit. The first one a
//! producer writes here opens its transaction in this partition (`producer.rs` remembers its
//! offset); the coordinator's marker closes it. The smallest offset of an open transaction is
//! the *first unstable offset*; the *last stable offset* (LSO) is the smaller of it and the
//! high watermark, and read_committed consumers read only below it.
//!
//! An abort leaves an entry `(producer id, first offset, marker offset, LSO)` in the aborted
//! index. A read_committed fetch returns the entries that overlap the records it returns;
//! the consumer drops that producer's transactional records from the entry's first offset up
//! to its marker. The entries are kept per segment in `<base>.txnindex` (Kafka's format: a
//! version and four big-endian 64-bit fields, 34 bytes each), written when the segment rolls
//! and at clean shutdown; entries at or after the producer-state snapshot an open starts
//! from are rebuilt from the markers it replays (see `recovery.rs`).

use std::collections::HashSet;
use std::io;
use std::path::Path;

use crate::batch::{compute_crc, BatchHeader, BATCH_HEADER_LEN, LOG_OVERHEAD, MAGIC_V2};
use crate::error::LogError;
use crate::fsutil;
use crate::records::{Keep, RecordStream};

/// Extension of aborted-transaction index files.
pub(crate) const TXN_INDEX_EXT: &str = "txnindex";

/// Attributes of a marker batch: transactional and control, uncompressed, create time.
const MARKER_ATTRIBUTES: i16 = (1 << 4) | (1 << 5);
/// Version of the control record key and value Kafka writes (`EndTxnMarker` v0).
const MARKER_VERSION: i16 = 0;
/// Bytes of one `.txnindex` entry.
const TXN_ENTRY_LEN: usize = 34;
const TXN_ENTRY_VERSION: i16 = 0;

/// How a transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlType {
    /// Its records are dropped by read_committed consumers.
    Abort,
    /// Its records become visible to read_committed consumers.
    Commit,
}

impl ControlType {
    fn code(self) -> i16 {
        match self {
            ControlType::Abort => 0,
            ControlType::Commit => 1,
        }
    }

    fn from_code(code: i16) -> Option<ControlType> {
        match code {
            0 => Some(ControlType::Abort),
            1 => Some(ControlType::Commit),
            _ => None,
        }
    }
}

/// A transaction marker the coordinator writes into each partition of a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnMarker {
    pub producer_id: i64,
    /// The producer's epoch at the end of the transaction; older epochs are fenced from then on.
    pub producer_epoch: i16,
    /// The coordinator's epoch, stored in the marker's value as Kafka does.
    pub coordinator_epoch: i32,
    pub control: ControlType,
}

/// One aborted transaction of this partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// Offset of the transaction's first record in this partition.
    pub first_offset: i64,
    /// Offset of its abort marker.
    pub last_offset: i64,
    /// The last stable offset once the marker was written.
    pub last_stable_offset: i64,
}

/// Encodes a marker as a whole control batch (base offset 0: the log stamps it), with one
/// record whose key is `(version, type)` and value `(version, coordinator epoch)`.
pub(crate) fn encode_marker(marker: &TxnMarker, timestamp: i64) -> Vec<u8> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&MARKER_VERSION.to_be_bytes());
    key.extend_from_slice(&marker.control.code().to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&MARKER_VERSION.to_be_bytes());
    value.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    let record = control_record(&key, &value);

    let batch_length = BATCH_HEADER_LEN - LOG_OVERHEAD + record.len();
    let mut batch = Vec::with_capacity(LOG_OVERHEAD + batch_length);
    batch.extend_from_slice(&0i64.to_be_bytes());
    // A marker is under a hundred bytes: the length always fits.
    batch.extend_from_slice(
        &i32::try_from(batch_length)
            .unwrap_or(i32::MAX)
            .to_be_bytes(),
    );
    batch.extend_from_slice(&0i32.to_be_bytes());
    batch.push(MAGIC_V2.to_be_bytes()[0]);
    batch.extend_from_slice(&[0; 4]);
    batch.extend_from_slice(&MARKER_ATTRIBUTES.to_be_bytes());
    batch.extend_from_slice(&0i32.to_be_bytes());
    batch.extend_from_slice(&timestamp.to_be_bytes());
    batch.extend_from_slice(&timestamp.to_be_bytes());
    batch.extend_from_slice(&marker.producer_id.to_be_bytes());
    batch.extend_from_slice(&marker.producer_epoch.to_be_bytes());
    batch.extend_from_slice(&(-1i32).to_be_bytes());
    batch.extend_from_slice(&1i32.to_be_bytes());
    batch.extend_from_slice(&record);
    let crc = compute_crc(&batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// One record of offset and timestamp delta 0 with `key`, `value` and no headers.
fn control_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8];
    put_varint(0, &mut body);
    put_varint(0, &mut body);
    put_varint(key.len() as i64, &mut body);
    body.extend_from_slice(key);
    put_varint(value.len() as i64, &mut body);
    body.extend_from_slice(value);
    put_varint(0, &mut body);
    let mut record = Vec::with_capacity(body.len() + 1);
    put_varint(body.len() as i64, &mut record);
    record.extend(body);
    record
}

/// Kafka's zigzag varint.
fn put_varint(value: i64, out: &mut Vec<u8>) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// Whether a control batch is a commit or an abort, from its first record's key. Anything
/// else (a control batch of another kind, or one that does not parse) is `None`: Kafka skips
/// control records it does not know.
pub(crate) fn marker_type(header: &BatchHeader, batch: &[u8]) -> Option<ControlType> {
    let mut stream = RecordStream::open(header, batch, batch.len(), Keep::Keys).ok()?;
    let key = stream.next_record().ok()??.key?;
    let version = i16::from_be_bytes([*key.first()?, *key.get(1)?]);
    let code = i16::from_be_bytes([*key.get(2)?, *key.get(3)?]);
    (version >= 0).then_some(())?;
    ControlType::from_code(code)
}

/// The aborted transactions of a partition, in marker order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AbortedIndex {
    entries: Vec<AbortedTxn>,
}

impl AbortedIndex {
    pub fn push(&mut self, entry: AbortedTxn) {
        if self
            .entries
            .last()
            .is_some_and(|last| last.last_offset >= entry.last_offset)
        {
            // Markers come in offset order; one already known (replayed twice) is skipped.
            return;
        }
        self.entries.push(entry);
    }

    /// Entries whose records may lie in `[from, to)`: the transaction ended at or after
    /// `from` and started before `to`.
    pub fn overlapping(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let start = self.entries.partition_point(|e| e.last_offset < from);
        self.entries[start..]
            .iter()
            .filter(|e| e.first_offset < to)
            .copied()
            .collect()
    }

    /// Entries whose marker lies in `[from, to)` (one segment's).
    pub fn with_marker_in(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.entries
            .iter()
            .filter(|e| (from..to).contains(&e.last_offset))
            .copied()
            .collect()
    }

    /// Drops entries whose marker is below `offset` (deleted by retention or DeleteRecords).
    pub fn forget_below(&mut self, offset: i64) {
        self.entries.retain(|e| e.last_offset >= offset);
    }

    pub fn extend(&mut self, entries: impl IntoIterator<Item = AbortedTxn>) {
        for entry in entries {
            self.push(entry);
        }
    }
}

/// Writes one segment's entries to `<base>.txnindex` (atomically, fsynced), or removes the
/// file when there are none.
pub(crate) fn write_txn_index(path: &Path, entries: &[AbortedTxn]) -> io::Result<()> {
    if entries.is_empty() {
        return fsutil::remove_if_exists(path);
    }
    let mut bytes = Vec::with_capacity(entries.len() * TXN_ENTRY_LEN);
    for entry in entries {
        bytes.extend_from_slice(&TXN_ENTRY_VERSION.to_be_bytes());
        bytes.extend_from_slice(&entry.producer_id.to_be_bytes());
        bytes.extend_from_slice(&entry.first_offset.to_be_bytes());
        bytes.extend_from_slice(&entry.last_offset.to_be_bytes());
        bytes.extend_from_slice(&entry.last_stable_offset.to_be_bytes());
    }
    fsutil::replace_file_atomically(path, &bytes)
}

/// Reads a `.txnindex` file; a missing file holds no entries.
pub(crate) fn read_txn_index(path: &Path) -> Result<Vec<AbortedTxn>, LogError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error.into()),
    };
    if bytes.len() % TXN_ENTRY_LEN != 0 {
        return Err(LogError::corrupt(format!(
            "{}: {} bytes is not a whole number of {TXN_ENTRY_LEN}-byte entries",
            path.display(),
            bytes.len()
        )));
    }
    bytes
        .chunks_exact(TXN_ENTRY_LEN)
        .map(|entry| parse_txn_entry(path, entry))
        .collect()
}

fn parse_txn_entry(path: &Path, entry: &[u8]) -> Result<AbortedTxn, LogError> {
    let i64_at = |at: usize| {
        let mut field = [0u8; 8];
        field.copy_from_slice(&entry[at..at + 8]);
        i64::from_be_bytes(field)
    };
    let version = i16::from_be_bytes([entry[0], entry[1]]);
    if version != TXN_ENTRY_VERSION {
        return Err(LogError::corrupt(format!(
            "{}: unknown entry version {version}",
            path.display()
        )));
    }
    Ok(AbortedTxn {
        producer_id: i64_at(2),
        first_offset: i64_at(10),
        last_offset: i64_at(18),
        last_stable_offset: i64_at(26),
    })
}

/// Follows which transactional batches belong to aborted transactions while a reader walks
/// the log in offset order (compaction uses it to drop aborted records).
#[derive(Debug)]
pub(crate) struct AbortedTracker {
    /// Not yet reached, by first offset.
    pending: Vec<AbortedTxn>,
    /// Producers inside an aborted transaction at the current position, with its marker.
    open: HashSet<(i64, i64)>,
}

impl AbortedTracker {
    pub fn new(mut entries: Vec<AbortedTxn>) -> AbortedTracker {
        entries.sort_by_key(|e| std::cmp::Reverse(e.first_offset));
        AbortedTracker {
            pending: entries,
            open: HashSet::new(),
        }
    }

    /// Whether the batch at this position holds aborted data. Call for every batch in order.
    pub fn is_aborted(&mut self, header: &BatchHeader) -> bool {
        while let Some(next) = self.pending.last() {
            if next.first_offset > header.last_offset() {
                break;
            }
            self.open.insert((next.producer_id, next.last_offset));
            self.pending.pop();
        }
        if header.is_control() {
            self.open.retain(|&(pid, marker)| {
                !(pid == header.producer_id && marker <= header.base_offset)
            });
            return false;
        }
        header.is_transactional()
            && self
                .open
                .iter()
                .any(|&(pid, marker)| pid == header.producer_id && marker > header.base_offset)
    }
}

/// The offset after the last batch in `records` (whole batches back to back), if any.
pub(crate) fn end_of_batches(records: &[u8]) -> Option<i64> {
    let mut position = 0;
    let mut end = None;
    while let Some(rest) = records.get(position..) {
        let Ok(header) = BatchHeader::parse(rest) else {
            break;
        };
        end = Some(header.next_offset());
        position += header.total_size();
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::verify_crc;

    #[test]
    fn markers_parse_back_as_what_was_written() {
        for control in [ControlType::Abort, ControlType::Commit] {
            let marker = TxnMarker {
                producer_id: 42,
                producer_epoch: 3,
                coordinator_epoch: 7,
                control,
            };
            let batch = encode_marker(&marker, 1_700_000_000_000);
            let header = BatchHeader::parse(&batch).expect("header");
            verify_crc(&header, &batch).expect("crc");
            assert!(header.is_control() && header.is_transactional());
            assert_eq!(header.total_size(), batch.len());
            assert_eq!((header.producer_id, header.producer_epoch), (42, 3));
            assert_eq!(header.record_count, 1);
            assert_eq!(marker_type(&header, &batch), Some(control));
        }
    }

    #[test]
    fn index_files_round_trip_and_refuse_torn_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.txnindex");
        let entries = vec![
            AbortedTxn {
                producer_id: 1,
                first_offset: 10,
                last_offset: 20,
                last_stable_offset: 21,
            },
            AbortedTxn {
                producer_id: 2,
                first_offset: 15,
                last_offset: 30,
                last_stable_offset: 31,
            },
        ];
        write_txn_index(&path, &entries).expect("write");
        assert_eq!(read_txn_index(&path).expect("read"), entries);
        std::fs::write(&path, [0u8; 35]).expect("tear");
        assert!(read_txn_index(&path).is_err());
        write_txn_index(&path, &[]).expect("empty");
        assert!(!path.exists(), "an empty index leaves no file");
        assert!(read_txn_index(&path).expect("missing").is_empty());
    }

    #[test]
    fn overlapping_entries_are_those_that_end_after_and_start_before() {
        let mut index = AbortedIndex::default();
        for (pid, first, last) in [(1, 0, 5), (2, 3, 12), (3, 20, 25)] {
            index.push(AbortedTxn {
                producer_id: pid,
                first_offset: first,
                last_offset: last,
                last_stable_offset: last + 1,
            });
        }
        let pids = |list: Vec<AbortedTxn>| list.iter().map(|e| e.producer_id).collect::<Vec<_>>();
        assert_eq!(pids(index.overlapping(6, 20)), vec![2]);
        assert_eq!(pids(index.overlapping(0, 100)), vec![1, 2, 3]);
        assert_eq!(pids(index.overlapping(13, 20)), Vec::<i64>::new());
        index.forget_below(6);
        assert_eq!(pids(index.overlapping(0, 100)), vec![2, 3]);
    }
}
