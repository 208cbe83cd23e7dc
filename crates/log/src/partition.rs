//! [`PartitionLog`]: the appender, group commit, reader and the bookkeeping around them.
//! Opening (recovery) lives in `recovery.rs`, retention in `retention.rs`, compaction in
//! `compaction.rs`; they are further `impl PartitionLog` blocks over the same fields.

use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, TryLockError};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::watch;

use crate::batch::{self, BatchHeader, ValidBatch};
use crate::commit::GroupCommit;
use crate::compaction::UnreadableBatches;
use crate::config::{Durability, LogConfig};
use crate::error::LogError;
use crate::fsutil::{self, SNAPSHOT_EXT};
use crate::locks::{lock, read_lock, write_lock};
use crate::producer::{ProducerStates, ProducerSummary, SetVerdict};
use crate::segment::Segment;
use crate::stamping;
use crate::stats::{Counters, LogStats};
use crate::txn::{self, AbortedIndex, AbortedTxn, ControlType, TxnMarker, TXN_INDEX_EXT};

/// Name of the clean-shutdown marker file.
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
/// Name of the log-start-offset checkpoint file (DeleteRecords).
pub(crate) const LOG_START_CHECKPOINT_FILE: &str = "log-start-offset.checkpoint";
/// Producer-state snapshots kept on disk; older ones are deleted.
const SNAPSHOTS_KEPT: usize = 2;

/// The result of [`PartitionLog::append`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Offset of the first record of the record set.
    pub base_offset: i64,
    /// Offset of the last record of the record set.
    pub last_offset: i64,
    /// The set was a retry of batches already in the log; the offsets are the original ones
    /// and nothing was written.
    pub duplicate: bool,
    /// Records in the set.
    pub record_count: u64,
    /// Bytes written to the log (0 for a duplicate).
    pub bytes: u64,
}

/// The result of [`PartitionLog::try_append_at`].
#[derive(Debug)]
pub enum TryAppend {
    /// Written (or found to be a duplicate), as [`PartitionLog::append`] would have.
    Appended(AppendOutcome),
    /// Nothing was written: finish with [`PartitionLog::append_prepared`] where blocking is
    /// allowed.
    WouldBlock(PreparedAppend),
}

/// A record set validated and stamped, waiting to be written (see [`TryAppend`]).
#[derive(Debug)]
pub struct PreparedAppend {
    stamped: stamping::Prepared,
    /// The configuration it was validated against.
    config: LogConfig,
    record_count: u64,
}

/// Whether a write may wait for the writer lock and do file work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MayBlock {
    Yes,
    No,
}

/// The result of [`PartitionLog::read`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Whole record batches, byte for byte as stored.
    pub records: Bytes,
    /// The high watermark when the read started.
    pub high_watermark: i64,
    /// The last stable offset when the read started.
    pub last_stable_offset: i64,
    /// The log start offset when the read started.
    pub log_start_offset: i64,
    /// With [`Isolation::ReadCommitted`]: the aborted transactions whose records may be among
    /// `records`, for the consumer to skip. Empty otherwise.
    pub aborted_transactions: Vec<AbortedTxn>,
}

/// Which records a reader may see (Kafka's `isolation_level`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Isolation {
    /// Everything below the high watermark.
    #[default]
    ReadUncommitted,
    /// Only below the last stable offset, with the aborted transactions listed.
    ReadCommitted,
}

/// Describes one segment, for `segments()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Offset the segment starts at (its file name).
    pub base_offset: i64,
    /// Offset after its last batch.
    pub next_offset: i64,
    /// Bytes of its `.log` file.
    pub size_bytes: u64,
    /// Path of its `.log` file.
    pub path: PathBuf,
    /// Largest record timestamp in it, or -1.
    pub max_timestamp: i64,
}

/// What only the appender changes; guarded by the writer mutex.
#[derive(Debug)]
pub(crate) struct WriterState {
    pub producers: ProducerStates,
    /// The clean-shutdown marker is on disk and must be removed before the next write.
    pub clean_marker: bool,
    /// Wall-clock time (ms) of the active segment's first append, for `segment.ms`.
    pub active_since_ms: Option<i64>,
}

/// The log of one partition: a directory of segments. Cheap operations take `&self`; share it
/// as `Arc<PartitionLog>`.
///
/// Locks, always taken in this order: `maintenance` (retention, compaction, DeleteRecords) →
/// `writer` (appends, rolls) → `segments` (the list) → a segment's state. The group-commit lock
/// is taken after `writer` or alone, never while waiting on another lock.
#[derive(Debug)]
pub struct PartitionLog {
    pub(crate) dir: PathBuf,
    pub(crate) config: RwLock<LogConfig>,
    pub(crate) writer: Mutex<WriterState>,
    pub(crate) segments: RwLock<SegmentList>,
    pub(crate) maintenance: Mutex<()>,
    /// Batches compaction found it cannot open; taken only under `maintenance`.
    pub(crate) unreadable: Mutex<UnreadableBatches>,
    /// Where the last compaction pass of this process ended: offsets below it are clean, the
    /// rest dirty (`min.cleanable.dirty.ratio`). In memory only, so the first pass after an
    /// open treats the whole log as dirty.
    pub(crate) cleaned_through: AtomicI64,
    pub(crate) commit: GroupCommit,
    pub(crate) high_watermark: watch::Sender<i64>,
    pub(crate) log_end_offset: AtomicI64,
    pub(crate) log_start_offset: AtomicI64,
    /// Smallest offset of an open transaction, `i64::MAX` when none is open; set under the
    /// writer lock.
    pub(crate) first_unstable_offset: AtomicI64,
    /// Aborted transactions of the retained log, in marker order.
    pub(crate) aborted: RwLock<AbortedIndex>,
    counters: Counters,
    deleted: AtomicBool,
}

impl PartitionLog {
    /// Assembles a log from what recovery found.
    pub(crate) fn from_parts(
        dir: PathBuf,
        config: LogConfig,
        segments: SegmentList,
        writer: WriterState,
        aborted: AbortedIndex,
        log_start_offset: i64,
        log_end_offset: i64,
    ) -> PartitionLog {
        let first_unstable = writer.producers.first_unstable_offset();
        PartitionLog {
            dir,
            config: RwLock::new(config),
            writer: Mutex::new(writer),
            segments: RwLock::new(segments),
            maintenance: Mutex::new(()),
            unreadable: Mutex::new(UnreadableBatches::default()),
            cleaned_through: AtomicI64::new(0),
            commit: GroupCommit::new(log_end_offset),
            high_watermark: watch::Sender::new(log_end_offset),
            log_end_offset: AtomicI64::new(log_end_offset),
            log_start_offset: AtomicI64::new(log_start_offset),
            first_unstable_offset: AtomicI64::new(first_unstable.unwrap_or(i64::MAX)),
            aborted: RwLock::new(aborted),
            counters: Counters::default(),
            deleted: AtomicBool::new(false),
        }
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current settings.
    pub fn config(&self) -> LogConfig {
        read_lock(&self.config).clone()
    }

    /// Changes the settings; they apply from the next operation on.
    pub fn set_config(&self, config: LogConfig) {
        let relaxed = matches!(config.durability, Durability::Interval(_));
        *write_lock(&self.config) = config;
        if relaxed {
            // Interval mode exposes written data at once.
            let _writer = lock(&self.writer);
            self.advance_high_watermark(self.log_end_offset());
        }
    }

    /// Appends the record set of one Produce partition: one or more v2 batches back to back.
    ///
    /// Every batch is validated (framing, CRC, size, counts) and sequence-checked before
    /// anything is written, so the set is all-or-nothing. The log assigns offsets (patching
    /// only `baseOffset` and `partitionLeaderEpoch`, outside the CRC) and writes the set with
    /// one positioned write, rolling first if the active segment is full or old. Returns
    /// before the data is durable: call [`PartitionLog::wait_durable`] before acknowledging.
    pub fn append(&self, records: &[u8]) -> Result<AppendOutcome, LogError> {
        self.append_at(records, now_ms())
    }

    /// [`PartitionLog::append`] at broker time `now_ms`: the time the topic's timestamp rules
    /// use (`message.timestamp.*`, see `stamping.rs`), which the caller reports back as the
    /// log append time under LogAppendTime.
    pub fn append_at(&self, records: &[u8], now_ms: i64) -> Result<AppendOutcome, LogError> {
        let prepared = self.prepare(records, now_ms)?;
        match self.write_prepared(prepared, MayBlock::Yes)? {
            TryAppend::Appended(outcome) => Ok(outcome),
            TryAppend::WouldBlock(_) => unreachable!("an append that may block never refuses to"),
        }
    }

    /// [`PartitionLog::append_at`] for a caller on an async worker thread: validates and
    /// stamps the set, then writes it only if that is a plain write. When the write would
    /// wait (another writer holds the partition, the segment must roll, the clean-shutdown
    /// marker must go: each an fsync or a wait for one) it writes nothing and hands the
    /// prepared set back, to be finished by [`PartitionLog::append_prepared`] on a blocking
    /// thread.
    pub fn try_append_at(&self, records: &[u8], now_ms: i64) -> Result<TryAppend, LogError> {
        let prepared = self.prepare(records, now_ms)?;
        self.write_prepared(prepared, MayBlock::No)
    }

    /// Finishes a set [`PartitionLog::try_append_at`] handed back; may block on file work.
    pub fn append_prepared(&self, prepared: PreparedAppend) -> Result<AppendOutcome, LogError> {
        match self.write_prepared(prepared, MayBlock::Yes)? {
            TryAppend::Appended(outcome) => Ok(outcome),
            TryAppend::WouldBlock(_) => unreachable!("an append that may block never refuses to"),
        }
    }

    /// Validation and the topic's timestamp rules: CPU work on the caller's bytes, no lock.
    fn prepare(&self, records: &[u8], now_ms: i64) -> Result<PreparedAppend, LogError> {
        self.check_not_deleted()?;
        let config = self.config();
        let batches = batch::validate_record_set(
            records,
            config.max_message_bytes,
            config.max_uncompressed_batch_bytes,
        )?;
        if config.cleanup_policy.compacts() {
            crate::keys::refuse_keyless(records, &batches, config.max_uncompressed_batch_bytes)?;
        }
        let stamped = stamping::prepare(records, batches, &config, now_ms)?;
        let record_count = stamped
            .batches
            .iter()
            .map(|b| u64::from(b.header.record_count.unsigned_abs()))
            .sum();
        Ok(PreparedAppend {
            stamped,
            config,
            record_count,
        })
    }

    /// Assigns offsets to a prepared set and writes it, or (with [`MayBlock::No`]) hands it
    /// back when writing means waiting.
    fn write_prepared(
        &self,
        mut prepared: PreparedAppend,
        may_block: MayBlock,
    ) -> Result<TryAppend, LogError> {
        let mut writer = match may_block {
            MayBlock::Yes => lock(&self.writer),
            MayBlock::No => match self.writer.try_lock() {
                Ok(writer) => writer,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => return Ok(TryAppend::WouldBlock(prepared)),
            },
        };
        // Again under the lock: a topic deletion may have marked the log while this waited.
        self.check_not_deleted()?;
        self.commit.check_healthy()?;
        let record_count = prepared.record_count;
        let stamping::Prepared { bytes, batches } = &mut prepared.stamped;
        let placed = assign_offsets(bytes, batches, self.log_end_offset());
        let headers: Vec<BatchHeader> = placed.iter().map(|(header, _)| *header).collect();
        let plan = match writer.producers.check(&headers)? {
            SetVerdict::Duplicate {
                base_offset,
                last_offset,
            } => {
                return Ok(TryAppend::Appended(AppendOutcome {
                    base_offset,
                    last_offset,
                    duplicate: true,
                    record_count,
                    bytes: 0,
                }));
            }
            SetVerdict::Append(plan) => plan,
        };
        let (Some(first), Some(last)) = (headers.first(), headers.last()) else {
            return Err(LogError::invalid("record set holds no batch"));
        };
        let now = now_ms();
        let config = &prepared.config;
        let bytes = &prepared.stamped.bytes;
        if may_block == MayBlock::No
            && self.file_work_due(&writer, config, bytes.len() as u64, last.last_offset(), now)
        {
            drop(writer);
            return Ok(TryAppend::WouldBlock(prepared));
        }
        self.write_batches(&mut writer, config, bytes, &placed, last.next_offset(), now)?;
        writer.producers.apply(plan);
        self.publish_first_unstable(&writer);
        self.counters
            .record_append(bytes.len() as u64, record_count, headers.len() as u64);
        Ok(TryAppend::Appended(AppendOutcome {
            base_offset: first.base_offset,
            last_offset: last.last_offset(),
            duplicate: false,
            record_count,
            bytes: bytes.len() as u64,
        }))
    }

    /// Whether the next write must first do file work that waits for the disk: remove the
    /// clean-shutdown marker (a directory fsync) or roll the segment (several fsyncs).
    fn file_work_due(
        &self,
        writer: &WriterState,
        config: &LogConfig,
        incoming: u64,
        last_offset: i64,
        now: i64,
    ) -> bool {
        writer.clean_marker || self.needs_roll(writer, config, incoming, last_offset, now)
    }

    /// Appends a transaction marker (a control batch) for the coordinator: closes the
    /// producer's open transaction here and, for an abort, records it in the aborted index.
    /// Refused with `INVALID_PRODUCER_EPOCH` when the producer has moved to a newer epoch.
    /// Like [`PartitionLog::append`] it returns before the marker is durable.
    pub fn append_marker(&self, marker: &TxnMarker) -> Result<AppendOutcome, LogError> {
        match self.write_marker(marker, MayBlock::Yes)? {
            Some(outcome) => Ok(outcome),
            None => unreachable!("an append that may block never refuses to"),
        }
    }

    /// [`PartitionLog::append_marker`] for a caller on an async worker: writes the marker only
    /// if that is a plain write, and returns `None` (nothing written) when it would wait
    /// (another writer holds the partition, the segment must roll, the clean-shutdown marker
    /// must go); then call [`PartitionLog::append_marker`] where blocking is allowed.
    pub fn try_append_marker(&self, marker: &TxnMarker) -> Result<Option<AppendOutcome>, LogError> {
        self.write_marker(marker, MayBlock::No)
    }

    fn write_marker(
        &self,
        marker: &TxnMarker,
        may_block: MayBlock,
    ) -> Result<Option<AppendOutcome>, LogError> {
        self.check_not_deleted()?;
        let config = self.config();
        let mut bytes = txn::encode_marker(marker, now_ms());
        let mut writer = match may_block {
            MayBlock::Yes => lock(&self.writer),
            MayBlock::No => match self.writer.try_lock() {
                Ok(writer) => writer,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => return Ok(None),
            },
        };
        self.check_not_deleted()?;
        self.commit.check_healthy()?;
        writer.producers.check_marker(marker)?;
        let offset = self.log_end_offset();
        let now = now_ms();
        if may_block == MayBlock::No
            && self.file_work_due(&writer, &config, bytes.len() as u64, offset, now)
        {
            return Ok(None);
        }
        batch::stamp_batch(&mut bytes, offset);
        let header = BatchHeader {
            base_offset: offset,
            ..BatchHeader::parse(&bytes)?
        };
        let placed = [(header, 0..bytes.len())];
        self.write_batches(&mut writer, &config, &bytes, &placed, offset + 1, now)?;
        let first = writer.producers.end_transaction(marker);
        self.publish_first_unstable(&writer);
        if let (Some(first_offset), ControlType::Abort) = (first, marker.control) {
            let entry = AbortedTxn {
                producer_id: marker.producer_id,
                first_offset,
                last_offset: offset,
                last_stable_offset: writer
                    .producers
                    .first_unstable_offset()
                    .unwrap_or(offset + 1),
            };
            write_lock(&self.aborted).push(entry);
        }
        self.counters.record_append(bytes.len() as u64, 1, 1);
        Ok(Some(AppendOutcome {
            base_offset: offset,
            last_offset: offset,
            duplicate: false,
            record_count: 1,
            bytes: bytes.len() as u64,
        }))
    }

    fn publish_first_unstable(&self, writer: &WriterState) {
        let first = writer.producers.first_unstable_offset();
        self.first_unstable_offset
            .store(first.unwrap_or(i64::MAX), Ordering::Release);
    }

    /// Writes offset-stamped batches (ending before `end_offset`) to the active segment,
    /// rolling first when needed (at broker time `now`), and publishes the new log end offset.
    fn write_batches(
        &self,
        writer: &mut WriterState,
        config: &LogConfig,
        bytes: &[u8],
        placed: &[(BatchHeader, Range<usize>)],
        end_offset: i64,
        now: i64,
    ) -> Result<(), LogError> {
        self.remove_clean_marker(writer)?;
        if self.needs_roll(writer, config, bytes.len() as u64, end_offset - 1, now) {
            self.roll(writer)?;
        }
        self.active_segment()
            .append(bytes, placed, config.index_interval_bytes)?;
        writer.active_since_ms.get_or_insert(now);
        self.log_end_offset.store(end_offset, Ordering::Release);
        if matches!(config.durability, Durability::Interval(_)) {
            self.advance_high_watermark(end_offset);
        }
        Ok(())
    }

    /// Blocks until every offset below `end_offset` is fsynced, sharing one fsync among all
    /// writers waiting at that moment, then publishes the new high watermark. Meant for
    /// `spawn_blocking`. Returns at once in [`Durability::Interval`] mode.
    pub fn wait_durable(&self, end_offset: i64) -> Result<(), LogError> {
        self.commit.check_healthy()?;
        if matches!(self.config().durability, Durability::Interval(_)) {
            return Ok(());
        }
        self.sync_through(end_offset)
    }

    /// Forces an fsync of everything written so far and publishes the high watermark (the
    /// Interval mode's timer calls this).
    pub fn flush(&self) -> Result<(), LogError> {
        self.sync_through(self.log_end_offset())
    }

    /// Group commit up to `end_offset` (capped at what was written: waiting for offsets that
    /// nobody wrote would never end).
    fn sync_through(&self, end_offset: i64) -> Result<(), LogError> {
        let target = end_offset.min(self.log_end_offset());
        self.commit.wait_for(
            target,
            || self.sync_written_data(),
            |durable| self.advance_high_watermark(durable),
        )
    }

    /// The leader's part of group commit: capture the active segment and the end of written
    /// data under the writer lock (so no append is half done), then fdatasync with no lock
    /// held. Earlier segments were fsynced when they rolled.
    fn sync_written_data(&self) -> io::Result<i64> {
        let (segment, end_offset) = {
            let _writer = lock(&self.writer);
            (self.active_segment(), self.log_end_offset())
        };
        let started = Instant::now();
        segment.sync()?;
        self.counters.record_fsync(started.elapsed());
        Ok(end_offset)
    }

    /// A receiver of the high watermark. It changes when the high watermark moves and when the
    /// log is deleted.
    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    /// End of the data readers may see: fsynced data (Interval mode: written data).
    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    /// End of written data: the offset the next record gets.
    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset.load(Ordering::Acquire)
    }

    /// The first offset readers may ask for.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }

    /// End of what read_committed consumers may see: the high watermark, or the first offset
    /// of an open transaction if that is smaller.
    pub fn last_stable_offset(&self) -> i64 {
        let first_unstable = self.first_unstable_offset.load(Ordering::Acquire);
        self.high_watermark().min(first_unstable)
    }

    /// The producers this partition knows, with their open transactions (DescribeProducers).
    pub fn producers(&self) -> Vec<ProducerSummary> {
        lock(&self.writer).producers.summaries()
    }

    /// Whole batches from the one holding `offset` on, at most `max_bytes` (unless
    /// `min_one_batch` and the first batch alone is larger: then exactly that batch), never
    /// reaching the high watermark. Empty at the high watermark; `OffsetOutOfRange` below the
    /// log start offset or above the high watermark.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<ReadOutcome, LogError> {
        self.read_isolated(offset, max_bytes, min_one_batch, Isolation::ReadUncommitted)
    }

    /// [`PartitionLog::read`] at an isolation level. Read committed stops at the last stable
    /// offset (an offset between it and the high watermark reads nothing, as in Kafka) and
    /// lists the aborted transactions overlapping what it returns.
    pub fn read_isolated(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        isolation: Isolation,
    ) -> Result<ReadOutcome, LogError> {
        self.check_not_deleted()?;
        let high_watermark = self.high_watermark();
        let first_unstable = self.first_unstable_offset.load(Ordering::Acquire);
        let last_stable_offset = high_watermark.min(first_unstable);
        let log_start_offset = self.log_start_offset();
        if offset < log_start_offset || offset > high_watermark {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset,
                high_watermark,
            });
        }
        let upper = match isolation {
            Isolation::ReadUncommitted => high_watermark,
            Isolation::ReadCommitted => last_stable_offset,
        };
        let records = if offset >= upper {
            Bytes::new()
        } else {
            self.read_batches(offset, upper, max_bytes, min_one_batch)?
        };
        let aborted_transactions = match (isolation, txn::end_of_batches(&records)) {
            (Isolation::ReadCommitted, Some(end)) => {
                read_lock(&self.aborted).overlapping(offset, end)
            }
            _ => Vec::new(),
        };
        self.counters.record_read(records.len() as u64);
        Ok(ReadOutcome {
            records,
            high_watermark,
            last_stable_offset,
            log_start_offset,
            aborted_transactions,
        })
    }

    /// Reads from the segment holding `offset`, moving to the next segment when that one has
    /// nothing at or after `offset` (it ends in a compacted gap).
    fn read_batches(
        &self,
        offset: i64,
        high_watermark: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<Bytes, LogError> {
        let mut next = Some(self.segment_for(offset));
        while let Some(segment) = next {
            if let Some(bytes) = segment.read(offset, high_watermark, max_bytes, min_one_batch)? {
                return Ok(bytes);
            }
            next = self.segment_after(segment.base_offset());
        }
        Ok(Bytes::new())
    }

    /// The earliest offset (at or after the log start, below the high watermark) whose record
    /// timestamp is at least `timestamp`, with that timestamp. The time index finds the batch;
    /// its records are streamed (within `max_uncompressed_batch_bytes`) for the exact one.
    /// Kafka's special values (-1 latest, -2 earliest) are the caller's to resolve.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, LogError> {
        self.check_not_deleted()?;
        let high_watermark = self.high_watermark();
        let log_start_offset = self.log_start_offset();
        let max_uncompressed = self.config().max_uncompressed_batch_bytes;
        for segment in self.segment_list() {
            if segment.base_offset() >= high_watermark {
                break;
            }
            if segment.next_offset() <= log_start_offset || segment.max_timestamp() < timestamp {
                continue;
            }
            if let Some(found) = segment.find_timestamp(
                timestamp,
                log_start_offset,
                high_watermark,
                max_uncompressed,
            )? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// DeleteRecords: raises the log start offset to `offset` (capped at the high watermark),
    /// durably, and deletes the segments that now lie wholly below it. Returns the new log
    /// start offset.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, LogError> {
        self.check_not_deleted()?;
        let _maintenance = lock(&self.maintenance);
        // Again under the lock: a topic deletion may have marked the log while this waited.
        self.check_not_deleted()?;
        let target = offset.min(self.high_watermark());
        if target > self.log_start_offset() {
            self.write_log_start_checkpoint(target)?;
            self.log_start_offset.fetch_max(target, Ordering::AcqRel);
        }
        let log_start = self.log_start_offset();
        {
            // The active segment is never deleted; roll it away if all of it is gone.
            let mut writer = lock(&self.writer);
            let active = self.active_segment();
            if !active.is_empty() && active.next_offset() <= log_start {
                self.roll(&mut writer)?;
            }
        }
        let doomed = read_lock(&self.segments)
            .closed
            .iter()
            .take_while(|segment| segment.next_offset() <= log_start)
            .count();
        self.delete_oldest_segments(doomed)?;
        write_lock(&self.aborted).forget_below(log_start);
        Ok(self.log_start_offset())
    }

    fn write_log_start_checkpoint(&self, offset: i64) -> io::Result<()> {
        let body = serde_json::json!({ "version": 1, "log_start_offset": offset }).to_string();
        fsutil::replace_file_atomically(&self.dir.join(LOG_START_CHECKPOINT_FILE), body.as_bytes())
    }

    /// Clean shutdown: fsync written data, write the active segment's indexes and a producer
    /// state snapshot, then the clean-shutdown marker that lets the next open trust them. The
    /// log stays usable; the next append removes the marker again.
    pub fn close(&self) -> Result<(), LogError> {
        self.check_not_deleted()?;
        self.flush()?;
        let mut writer = lock(&self.writer);
        let active = self.active_segment();
        active.write_indexes()?;
        self.write_txn_index(&active, self.log_end_offset())?;
        self.write_producer_snapshot(&writer.producers, self.log_end_offset())?;
        fsutil::write_file_synced(&self.dir.join(CLEAN_SHUTDOWN_FILE), b"")?;
        fsutil::sync_dir(&self.dir)?;
        writer.clean_marker = true;
        Ok(())
    }

    /// Stops the log for good without touching its files, for a caller that moved the whole
    /// directory away (topic deletion renames the topic's directory): waits for the append,
    /// roll or maintenance in progress, then every later operation fails and high-watermark
    /// watchers are woken. No operation of this log touches its old path afterwards.
    pub fn mark_deleted(&self) {
        let _maintenance = lock(&self.maintenance);
        let _writer = lock(&self.writer);
        self.deleted.store(true, Ordering::Release);
        self.high_watermark.send_modify(|_| {});
    }

    /// Why the log is read-only, or `None` while it is healthy: after a failed fsync every
    /// append and wait fails until the log is reopened (see the crate docs).
    pub fn poisoned(&self) -> Option<String> {
        self.commit.poisoned()
    }

    /// Deletes the partition directory (topic deletion). Every later operation fails;
    /// high-watermark watchers are woken.
    pub fn delete(&self) -> Result<(), LogError> {
        let _maintenance = lock(&self.maintenance);
        let _writer = lock(&self.writer);
        self.deleted.store(true, Ordering::Release);
        self.high_watermark.send_modify(|_| {});
        fs::remove_dir_all(&self.dir)?;
        Ok(())
    }

    /// Bytes of all segment files.
    pub fn size_bytes(&self) -> u64 {
        read_lock(&self.segments)
            .iter()
            .map(|segment| segment.size())
            .sum()
    }

    /// All segments, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.segment_list()
            .iter()
            .map(|segment| {
                let state = segment.state();
                SegmentInfo {
                    base_offset: segment.base_offset(),
                    next_offset: state.next_offset,
                    size_bytes: state.size,
                    path: segment.log_path().to_path_buf(),
                    max_timestamp: state.max_timestamp,
                }
            })
            .collect()
    }

    /// Counters since open.
    pub fn stats(&self) -> LogStats {
        self.counters.snapshot()
    }

    // ---- segment list ----------------------------------------------------------------------

    /// All segments, oldest first, the active one last.
    pub(crate) fn segment_list(&self) -> Vec<Arc<Segment>> {
        read_lock(&self.segments).iter().cloned().collect()
    }

    pub(crate) fn active_segment(&self) -> Arc<Segment> {
        read_lock(&self.segments).active.clone()
    }

    /// The last segment starting at or before `offset` (the first one if none does).
    fn segment_for(&self, offset: i64) -> Arc<Segment> {
        let segments = read_lock(&self.segments);
        let before = segments
            .closed
            .partition_point(|segment| segment.base_offset() <= offset);
        if offset >= segments.active.base_offset() {
            return segments.active.clone();
        }
        let index = before.saturating_sub(1);
        segments
            .closed
            .get(index)
            .unwrap_or(&segments.active)
            .clone()
    }

    fn segment_after(&self, base_offset: i64) -> Option<Arc<Segment>> {
        read_lock(&self.segments)
            .iter()
            .find(|segment| segment.base_offset() > base_offset)
            .cloned()
    }

    /// Removes the `count` oldest segments (never the active one), raises the log start offset
    /// to the new first segment and deletes their files. Readers still holding one keep reading
    /// it: its file is unlinked but stays open.
    pub(crate) fn delete_oldest_segments(&self, count: usize) -> Result<usize, LogError> {
        let removed: Vec<Arc<Segment>> = {
            let mut segments = write_lock(&self.segments);
            let count = count.min(segments.closed.len());
            segments.closed.drain(..count).collect()
        };
        if removed.is_empty() {
            return Ok(0);
        }
        let first_base = self
            .segment_list()
            .first()
            .map_or(0, |segment| segment.base_offset());
        self.log_start_offset
            .fetch_max(first_base, Ordering::AcqRel);
        write_lock(&self.aborted).forget_below(first_base);
        for segment in &removed {
            tracing::info!(segment = %segment.log_path().display(), "deleting segment");
            segment.delete_files()?;
        }
        fsutil::sync_dir(&self.dir)?;
        Ok(removed.len())
    }

    // ---- rolling ---------------------------------------------------------------------------

    /// Whether the active segment must be closed before `incoming` bytes ending at
    /// `last_offset` are appended: it would outgrow `segment.bytes`, it is older than
    /// `segment.ms` (capped by `max.compaction.lag.ms` when compacted, see
    /// [`LogConfig::roll_ms`]), or its index entries (u32 relative offsets and positions) would
    /// overflow.
    fn needs_roll(
        &self,
        writer: &WriterState,
        config: &LogConfig,
        incoming: u64,
        last_offset: i64,
        now: i64,
    ) -> bool {
        let active = self.active_segment();
        let size = active.size();
        if size == 0 {
            return false;
        }
        let too_big = size + incoming > config.segment_bytes;
        let too_old = writer
            .active_since_ms
            .is_some_and(|since| now.saturating_sub(since) >= config.roll_ms());
        let index_overflow = size + incoming > u64::from(u32::MAX)
            || last_offset - active.base_offset() > i64::from(u32::MAX);
        too_big || too_old || index_overflow
    }

    /// Closes the active segment and starts a new one at the log end offset: write the old
    /// segment's indexes and fsync its log, create the new file, snapshot producer state, fsync
    /// the directory. Everything before the roll is then durable.
    pub(crate) fn roll(&self, writer: &mut WriterState) -> Result<(), LogError> {
        let old = self.active_segment();
        let new_base = old.next_offset();
        old.write_indexes()?;
        self.write_txn_index(&old, new_base)?;
        let started = Instant::now();
        if let Err(error) = old.sync() {
            self.commit.poison(&error);
            return Err(LogError::Storage(error));
        }
        self.counters.record_fsync(started.elapsed());
        let segment = Segment::create(&self.dir, new_base)?;
        self.write_producer_snapshot(&writer.producers, new_base)?;
        fsutil::sync_dir(&self.dir)?;
        write_lock(&self.segments).push_active(Arc::new(segment));
        writer.active_since_ms = None;
        tracing::debug!(dir = %self.dir.display(), new_base, "rolled segment");
        self.commit
            .mark_durable(new_base, |durable| self.advance_high_watermark(durable));
        Ok(())
    }

    /// Writes the aborted transactions whose markers lie in `segment` (up to `end`) to its
    /// `.txnindex`, before any producer snapshot that covers them (see `txn.rs`).
    fn write_txn_index(&self, segment: &Segment, end: i64) -> io::Result<()> {
        let entries = read_lock(&self.aborted).with_marker_in(segment.base_offset(), end);
        let path = fsutil::offset_file(&self.dir, segment.base_offset(), TXN_INDEX_EXT);
        txn::write_txn_index(&path, &entries)
    }

    /// Writes `<offset>.snapshot` atomically and deletes all but the newest few snapshots.
    fn write_producer_snapshot(&self, producers: &ProducerStates, offset: i64) -> io::Result<()> {
        let path = fsutil::offset_file(&self.dir, offset, SNAPSHOT_EXT);
        fsutil::replace_file_atomically(&path, &producers.to_snapshot(offset))?;
        let mut offsets = crate::recovery::snapshot_offsets(&self.dir)?;
        offsets.sort_unstable();
        let stale = offsets.len().saturating_sub(SNAPSHOTS_KEPT);
        for old in &offsets[..stale] {
            fsutil::remove_if_exists(&fsutil::offset_file(&self.dir, *old, SNAPSHOT_EXT))?;
        }
        Ok(())
    }

    /// Before the first write after a clean open, the marker must go (durably): a crash later
    /// must not let the next open trust indexes that miss the new data.
    fn remove_clean_marker(&self, writer: &mut WriterState) -> io::Result<()> {
        if writer.clean_marker {
            fsutil::remove_if_exists(&self.dir.join(CLEAN_SHUTDOWN_FILE))?;
            fsutil::sync_dir(&self.dir)?;
            writer.clean_marker = false;
        }
        Ok(())
    }

    /// Raises the published high watermark (never lowers it).
    pub(crate) fn advance_high_watermark(&self, offset: i64) {
        self.high_watermark.send_if_modified(|current| {
            let moved = offset > *current;
            if moved {
                *current = offset;
            }
            moved
        });
    }

    pub(crate) fn check_not_deleted(&self) -> Result<(), LogError> {
        if self.deleted.load(Ordering::Acquire) {
            return Err(LogError::Storage(io::Error::new(
                io::ErrorKind::NotFound,
                "partition log was deleted",
            )));
        }
        Ok(())
    }
}

/// The segments of a log: closed ones oldest first, then the active one (so there always is
/// one to append to).
#[derive(Clone, Debug)]
pub(crate) struct SegmentList {
    pub closed: Vec<Arc<Segment>>,
    pub active: Arc<Segment>,
}

impl SegmentList {
    /// Oldest first, the active segment last.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Segment>> {
        self.closed.iter().chain(std::iter::once(&self.active))
    }

    /// Closes the active segment and makes `segment` the active one.
    fn push_active(&mut self, segment: Arc<Segment>) {
        let previous = std::mem::replace(&mut self.active, segment);
        self.closed.push(previous);
    }
}

/// Stamps consecutive offsets from `base_offset` into the batches of `bytes` and returns each
/// batch's header (as stored) with its range.
fn assign_offsets(
    bytes: &mut [u8],
    batches: &[ValidBatch],
    base_offset: i64,
) -> Vec<(BatchHeader, Range<usize>)> {
    let mut next = base_offset;
    batches
        .iter()
        .map(|valid| {
            batch::stamp_batch(&mut bytes[valid.range.clone()], next);
            let header = BatchHeader {
                base_offset: next,
                partition_leader_epoch: 0,
                ..valid.header
            };
            next = header.next_offset();
            (header, valid.range.clone())
        })
        .collect()
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) use freshet_os::clock::now_ms;
