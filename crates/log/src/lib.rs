//! `freshet-log`: the on-disk log of one Kafka partition.
//!
//! A [`PartitionLog`] owns one directory. Producers' record batches (format v2) are stored
//! byte for byte as they arrived; the log only writes the batch's `baseOffset` and sets its
//! `partitionLeaderEpoch` to 0, both outside the CRC, so consumers receive exactly what the
//! producer sent. The rest of this page is the map a newcomer needs.
//!
//! # On-disk layout
//!
//! ```text
//! <partition dir>/
//!   00000000000000000000.log        segment: record batches back to back, nothing else
//!   00000000000000000000.index      sparse offset index: (offset - base u32, position u32)
//!   00000000000000000000.timeindex  sparse time index: (max timestamp so far i64, offset - base u32)
//!   00000000000000004242.log        next segment; named by its base offset, 20 digits
//!   ...
//!   00000000000000004242.snapshot   idempotent producer state for offsets below 4242 (JSON)
//!   00000000000000000000.txnindex   aborted transactions whose markers are in that segment
//!   log-start-offset.checkpoint     log start offset set by DeleteRecords (JSON)
//!   clean-shutdown                  marker: the last close wrote indexes and a snapshot
//! ```
//!
//! All integers in `.log`, `.index` and `.timeindex` are big-endian, as in Kafka. The last
//! segment is the *active* one; appends go there. Index files are kept in memory and written
//! when a segment is closed (rolled) and at clean shutdown; after a crash the active segment's
//! indexes are rebuilt by scanning it. See [`batch`] for the batch header layout and
//! [`index`] for when index entries are made.
//!
//! # Durability protocol
//!
//! * **Append** ([`PartitionLog::append`]) validates every batch of the record set (framing,
//!   CRC-32C, size, record counts, producer sequence numbers; compressed batches are also
//!   opened and their records parsed, see below), then, holding the writer mutex,
//!   assigns offsets and writes the whole set with one positioned `write`, and updates the
//!   in-memory indexes. Nothing is fsynced yet and readers do not see the data yet.
//! * **Group commit** ([`PartitionLog::wait_durable`]): the first waiter becomes the leader;
//!   it captures the active segment and the end of written data under the writer mutex,
//!   releases it, runs `fdatasync`, then publishes the new durable end as the high watermark
//!   and wakes everyone. Waiters that arrived during that fsync are served by the next one, so
//!   N concurrent producers cost far fewer than N fsyncs. A failed fsync poisons the log:
//!   every later append or wait fails with a storage error (retrying fsync after an error can
//!   silently lose data).
//! * **Readers** ([`PartitionLog::read`]) see only batches below the high watermark, i.e. only
//!   fsynced data. They use positioned reads on a shared file handle and never take the writer
//!   mutex. With [`Durability::Interval`] (explicit opt-in) the high watermark follows written
//!   data and the owner calls [`PartitionLog::flush`] periodically.
//! * **Roll**: before the active segment would outgrow `segment.bytes` (or is older than
//!   `segment.ms`), its index files are written and fsynced, its log is fsynced, the new
//!   segment file is created, a producer-state snapshot is written, and the directory is
//!   fsynced. So every closed segment is durable and complete.
//! * **Recovery** ([`PartitionLog::open`]): leftovers of interrupted compactions and atomic
//!   writes are removed; closed segments are trusted after a cheap consistency check of their
//!   indexes (rescanned if the index files are missing or malformed); the active segment is
//!   scanned batch by batch verifying lengths and CRCs and truncated at the first torn or
//!   corrupt batch, unless the clean-shutdown marker is present. The marker is removed
//!   (durably) before the first append after open.
//! * **Small files** (checkpoint, snapshots) are replaced atomically: write a temp file, fsync
//!   it, rename it over the old one, fsync the directory.
//!
//! # Bounded decompression
//!
//! A compressed batch is small on the wire but may decompress to anything (0.5 MB of gzip
//! holds 512 MiB of zeros). Wherever the log opens a batch (produce validation, compaction,
//! [`PartitionLog::offset_for_timestamp`], [`PartitionLog::offset_of_max_timestamp`]) it
//! streams the records through the codec's streaming decoder and a fixed 16 KiB buffer, and
//! stops once a batch has produced more than
//! [`LogConfig::max_uncompressed_batch_bytes`] (default 64 MiB): a bomb costs at most that
//! much work, and memory grows only with what is kept of a record, never with what a length
//! field claims.
//!
//! * At append, a compressed batch over the cap is refused with
//!   [`LogError::UncompressedTooLarge`] (Kafka `MESSAGE_TOO_LARGE`, 10); one whose records do
//!   not parse, or whose count differs from its header, with `CORRUPT_MESSAGE` (2); offset
//!   deltas other than 0, 1, 2, ... with `INVALID_RECORD` (87), as Kafka's LogValidator does.
//!   Uncompressed batches are parsed the same way, bounded by their own size
//!   (`max.message.bytes`) instead of the cap.
//! * Compaction keeps a batch it cannot read byte for byte, logs one WARN and remembers it
//!   (in memory, by base offset and CRC), so later passes do not decompress it again; see
//!   [`CompactionStats`].
//! * ListOffsets by timestamp answers a batch it cannot read with the same errors.
//! * A compacted log (`cleanup.policy` with `compact`) refuses a record set holding a record
//!   without a key with [`LogError::KeylessRecords`] (`INVALID_RECORD`, 87), as Kafka does.
//!
//! # Concurrency
//!
//! `PartitionLog` is `Send + Sync`; share it as `Arc<PartitionLog>`. Appends are serialised by
//! the writer mutex; reads run in parallel with them and with each other; retention,
//! compaction and DeleteRecords are serialised among themselves and do not block appends
//! while they work (compaction rewrites closed segments only).

#![forbid(unsafe_code)]

pub mod batch;
mod commit;
mod compaction;
pub mod config;
mod dump;
pub mod error;
pub mod fsutil;
pub mod index;
mod keys;
mod locks;
mod max_timestamp;
mod partition;
mod producer;
mod records;
mod recovery;
mod retention;
mod segment;
mod stamping;
pub mod stats;
mod txn;

pub use batch::{BatchHeader, BATCH_HEADER_LEN};
pub use compaction::CompactionStats;
pub use config::{
    CleanupPolicy, Durability, LogConfig, StoredCompression, TimestampType,
    DEFAULT_MAX_UNCOMPRESSED_BATCH_BYTES,
};
pub use dump::dump_segment;
pub use error::LogError;
pub use partition::{
    AppendOutcome, Isolation, PartitionLog, PreparedAppend, ReadOutcome, SegmentInfo, TryAppend,
};
pub use producer::ProducerSummary;
pub use stats::{FsyncHistogram, LogStats};
pub use txn::{AbortedTxn, ControlType, TxnMarker};

/// Entry points for the coverage-guided fuzz targets in `fuzz/` (see `docs/TESTING.md`).
/// Not part of the crate's API: names and signatures follow the internals they expose.
#[doc(hidden)]
pub mod fuzzing {
    use crate::batch::BatchHeader;
    use crate::error::LogError;
    use crate::records::{Keep, RecordStream};

    /// Streams every record of `batch` (a whole v2 batch, header included; the CRC is not
    /// checked) the way compaction reads it, decompressing at most `max_uncompressed` bytes,
    /// and returns each record's raw bytes, length prefix included.
    pub fn decompress_records(
        batch: &[u8],
        max_uncompressed: usize,
    ) -> Result<Vec<Vec<u8>>, LogError> {
        let header = BatchHeader::parse(batch)?;
        let mut stream = RecordStream::open(&header, batch, max_uncompressed, Keep::KeysAndRaw)?;
        let mut records = Vec::new();
        while stream.next_record()?.is_some() {
            records.push(stream.raw().to_vec());
        }
        Ok(records)
    }
}
