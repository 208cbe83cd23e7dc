//! Compaction (`cleanup.policy` `compact`): keep only the latest record of each key.
//!
//! Which segments, and when: the closed segments below the last stable offset, up to the first
//! one holding a record younger than `min.compaction.lag.ms`, are *cleanable*. A pass runs
//! when the *dirty* share of their bytes (those not covered by an earlier pass of this
//! process; in memory, so all of them after an open) is at least `min.cleanable.dirty.ratio`,
//! or when the first dirty batch is older than `max.compaction.lag.ms` (which also rolls a
//! compacted log's active segment, `LogConfig::roll_ms`). A log whose only dirt is tombstones
//! waiting for `delete.retention.ms` is not cleaned again until new data arrives.
//!
//! 1. Every batch below the high watermark, active segment included, is decoded to learn the
//!    latest offset of each key.
//! 2. Each closed segment is rewritten into `<base>.log.cleaned`: a record stays if it has no
//!    key, or it is its key's latest record and, when it is a tombstone (null value), its
//!    timestamp is within `delete.retention.ms` of `now`. A batch keeping all its records is
//!    copied byte for byte. A batch keeping some is rebuilt with the same header fields (base
//!    offset, last offset delta, base timestamp, producer id/epoch/base sequence, attributes)
//!    and the kept records' original bytes, compressed again with the batch's codec; so
//!    offsets, timestamps and producer sequence ranges are unchanged, only the record count,
//!    max timestamp, length and CRC differ. A batch keeping nothing is dropped.
//!
//!    Batches are streamed, decompressing at most `max_uncompressed_batch_bytes` each. A batch
//!    that cannot be read (over that cap, or corrupt) is kept byte for byte, and its keys
//!    supersede nothing. It is remembered by base offset and CRC (in memory), so later passes
//!    skip it without decompressing it again, and its WARN is logged once per process; without
//!    this, every pass would decompress it anew, since every pass reads the whole log.
//!
//!    Transactions: only what lies below the last stable offset is compacted (an open
//!    transaction's records may still be aborted, so they neither supersede nor go). Records
//!    of aborted transactions are dropped and supersede nothing; markers are kept, so a
//!    read_committed consumer still finds the end of every transaction whose records remain.
//! 3. The cleaned log and its indexes are fsynced, then swapped in: the old index files are
//!    removed (dir fsync, so stale indexes never pair with the new log), the cleaned files are
//!    renamed over the live names (dir fsync), and the in-memory segment is replaced. Readers
//!    that already hold the old segment keep reading its (now unlinked) file. A crash at any
//!    point leaves the old log or the new one, whole; missing indexes are rebuilt and
//!    `.cleaned` leftovers removed on open.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use kafka_protocol::records::Compression;

use crate::batch::{compute_crc, BatchHeader, BATCH_HEADER_LEN, LOG_OVERHEAD};
use crate::config::LogConfig;
use crate::error::LogError;
use crate::fsutil::{self, CLEANED_SUFFIX};
use crate::locks::{lock, read_lock, write_lock};
use crate::partition::PartitionLog;
use crate::records::{compress, Keep, RecordStream, StreamedRecord};
use crate::segment::{BuiltSegment, ScanStep, Segment, SegmentBuilder};
use crate::txn::AbortedTracker;

/// What one [`PartitionLog::compact`] run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Closed segments rewritten.
    pub segments_cleaned: usize,
    /// Records looked at in closed segments.
    pub records_read: u64,
    /// Records dropped (superseded values and expired tombstones).
    pub records_removed: u64,
    /// Of those, tombstones dropped because they outlived `delete.retention.ms`.
    pub tombstones_removed: u64,
    /// Size of the rewritten segments before.
    pub bytes_before: u64,
    /// Size of the rewritten segments after.
    pub bytes_after: u64,
    /// Compressed batches opened (decompressed) by this run, in either of its two scans.
    pub batches_decompressed: u64,
    /// Batches this run found it cannot read (over `max_uncompressed_batch_bytes`, or
    /// corrupt): kept as they are, remembered, and warned about once.
    pub unreadable_batches_found: u64,
    /// Batches not opened because an earlier run (or this run's first scan) found them
    /// unreadable.
    pub unreadable_batches_skipped: u64,
}

/// Batches compaction could not read, by base offset and CRC: what identifies a batch across
/// the rewrites that move it within its segment (an unreadable batch is always kept as it is).
/// Kept in memory only: after a restart each is opened, and warned about, once more.
#[derive(Debug, Default)]
pub(crate) struct UnreadableBatches(HashSet<(i64, u32)>);

impl UnreadableBatches {
    fn contains(&self, header: &BatchHeader) -> bool {
        self.0.contains(&(header.base_offset, header.crc))
    }

    fn remember(&mut self, header: &BatchHeader) {
        self.0.insert((header.base_offset, header.crc));
    }

    /// Forgets batches below `offset` (the first segment's base offset): they were deleted.
    fn forget_below(&mut self, offset: i64) {
        self.0.retain(|(base_offset, _)| *base_offset >= offset);
    }
}

/// Latest offset of each key seen in the log.
type KeyOffsets = HashMap<Vec<u8>, i64>;

/// What to do with one batch.
enum Cleaned {
    Unchanged,
    Rebuilt { header: BatchHeader, bytes: Vec<u8> },
    Dropped,
}

impl PartitionLog {
    /// Compacts the closed segments (see the module docs) when the cleanup policy includes
    /// compact. Appends and reads continue meanwhile.
    pub fn compact(&self, now_ms: i64) -> Result<CompactionStats, LogError> {
        self.check_not_deleted()?;
        let config = self.config();
        let mut stats = CompactionStats::default();
        if !config.cleanup_policy.compacts() {
            return Ok(stats);
        }
        let _maintenance = lock(&self.maintenance);
        // Again under the lock: a topic deletion may have marked the log while this waited.
        self.check_not_deleted()?;
        let stable = self.last_stable_offset();
        let segments = self.segment_list();
        let closed = &segments[..segments.len().saturating_sub(1)];
        let lag_horizon = now_ms.saturating_sub(config.min_compaction_lag_ms);
        let cleanable: Vec<&Arc<Segment>> = closed
            .iter()
            .take_while(|segment| segment.next_offset() <= stable)
            .take_while(|segment| segment.max_timestamp() <= lag_horizon)
            .collect();
        if !self.worth_compacting(&cleanable, &config, now_ms) {
            return Ok(stats);
        }
        let mut unreadable = lock(&self.unreadable);
        if let Some(first) = segments.first() {
            unreadable.forget_below(first.base_offset());
        }
        let mut opener = Opener {
            max_uncompressed: config.max_uncompressed_batch_bytes,
            unreadable: &mut unreadable,
            dir: &self.dir,
        };
        let aborted = read_lock(&self.aborted).overlapping(0, stable);
        let latest = latest_offsets(
            &segments,
            stable,
            AbortedTracker::new(aborted.clone()),
            &mut opener,
            &mut stats,
        )?;
        let mut aborted = AbortedTracker::new(aborted);
        let cleaner = Cleaner {
            latest: &latest,
            tombstone_horizon: now_ms.saturating_sub(config.delete_retention_ms),
            index_interval: config.index_interval_bytes,
        };
        let cleaned_through = cleanable.last().map(|segment| segment.next_offset());
        for segment in cleanable {
            let before = segment.size();
            let cleaned = cleaner.clean_segment(segment, &mut aborted, &mut opener, &mut stats)?;
            if let Some(built) = cleaned {
                stats.segments_cleaned += 1;
                stats.bytes_before += before;
                stats.bytes_after += built.state.size;
                self.install_cleaned(segment, built)?;
            }
        }
        if let Some(offset) = cleaned_through {
            self.cleaned_through.store(offset, Ordering::Release);
        }
        Ok(stats)
    }

    /// Whether the cleanable segments (closed, stable, older than `min.compaction.lag.ms`)
    /// deserve a pass, as Kafka's cleaner decides: their dirty share (bytes not compacted by
    /// an earlier pass of this process) is at least `min.cleanable.dirty.ratio`, or the first
    /// dirty batch is older than `max.compaction.lag.ms`.
    fn worth_compacting(
        &self,
        cleanable: &[&Arc<Segment>],
        config: &LogConfig,
        now_ms: i64,
    ) -> bool {
        let cleaned_through = self.cleaned_through.load(Ordering::Acquire);
        let (clean, dirty): (Vec<&Arc<Segment>>, Vec<&Arc<Segment>>) = cleanable
            .iter()
            .partition(|segment| segment.next_offset() <= cleaned_through);
        let Some(first_dirty) = dirty.first() else {
            // Nothing new; a ratio of 0 still asks for every pass.
            return !cleanable.is_empty() && config.min_cleanable_dirty_ratio <= 0.0;
        };
        let bytes = |segments: &[&Arc<Segment>]| -> u64 { segments.iter().map(|s| s.size()).sum() };
        let (clean_bytes, dirty_bytes) = (bytes(&clean), bytes(&dirty));
        let total = clean_bytes + dirty_bytes;
        let ratio = if total == 0 {
            0.0
        } else {
            dirty_bytes as f64 / total as f64
        };
        let overdue = first_batch_timestamp(first_dirty).is_some_and(|timestamp| {
            timestamp < now_ms.saturating_sub(config.max_compaction_lag_ms)
        });
        ratio >= config.min_cleanable_dirty_ratio || overdue
    }

    /// Swaps a cleaned segment in for `segment`, crash-safely (module docs, step 3).
    fn install_cleaned(&self, segment: &Segment, built: BuiltSegment) -> Result<(), LogError> {
        let (index_path, time_index_path) = segment.index_paths();
        fsutil::remove_if_exists(index_path)?;
        fsutil::remove_if_exists(time_index_path)?;
        fsutil::sync_dir(&self.dir)?;
        for live in [segment.log_path(), index_path, time_index_path] {
            fs::rename(fsutil::with_suffix(live, CLEANED_SUFFIX), live)?;
        }
        fsutil::sync_dir(&self.dir)?;
        let replacement = Arc::new(segment.replaced_by(&self.dir, built));
        let mut segments = write_lock(&self.segments);
        if let Some(slot) = segments
            .closed
            .iter_mut()
            .find(|slot| slot.base_offset() == segment.base_offset())
        {
            *slot = replacement;
        }
        Ok(())
    }
}

/// Scans every batch below the last stable offset for the latest offset of each key. Batches
/// whose records cannot be read, and aborted ones, are skipped: their keys then do not
/// supersede older records, which errs on the side of keeping data.
fn latest_offsets(
    segments: &[Arc<Segment>],
    stable: i64,
    mut aborted: AbortedTracker,
    opener: &mut Opener<'_>,
    stats: &mut CompactionStats,
) -> Result<KeyOffsets, LogError> {
    let mut latest = KeyOffsets::new();
    for segment in segments {
        let mut scanner = segment.scanner(0, true);
        loop {
            let (header, bytes) = match scanner.next_batch()? {
                ScanStep::Batch { header, bytes, .. } => (header, bytes),
                ScanStep::End => break,
                ScanStep::Invalid { position, reason } => {
                    return Err(corrupt(segment, position, &reason))
                }
            };
            if header.next_offset() > stable {
                return Ok(latest);
            }
            if aborted.is_aborted(&header) || header.is_control() {
                continue;
            }
            let mut keys = Vec::new();
            let readable = opener.read_records(&header, bytes, Keep::Keys, stats, |record, _| {
                let offset = record.offset(&header);
                if let Some(key) = record.key {
                    keys.push((key, offset));
                }
            });
            if readable {
                latest.extend(keys);
            }
        }
    }
    Ok(latest)
}

/// Opens the batches of one compaction run: within the decompression cap, and a batch that
/// cannot be read only once (module docs, step 2).
struct Opener<'a> {
    max_uncompressed: usize,
    unreadable: &'a mut UnreadableBatches,
    dir: &'a std::path::Path,
}

impl Opener<'_> {
    /// Streams the records of `batch` to `each` (with the record's raw bytes under
    /// `Keep::KeysAndRaw`). Returns whether the whole batch was read; when it was not, `each`
    /// may have seen some of its records, so callers apply what they gathered only on `true`.
    fn read_records(
        &mut self,
        header: &BatchHeader,
        batch: &[u8],
        keep: Keep,
        stats: &mut CompactionStats,
        mut each: impl FnMut(StreamedRecord, &[u8]),
    ) -> bool {
        if self.unreadable.contains(header) {
            stats.unreadable_batches_skipped += 1;
            return false;
        }
        if !matches!(header.compression(), Ok(Compression::None)) {
            stats.batches_decompressed += 1;
        }
        match self.stream(header, batch, keep, &mut each) {
            Ok(()) => true,
            Err(error) => {
                self.unreadable.remember(header);
                stats.unreadable_batches_found += 1;
                tracing::warn!(
                    dir = %self.dir.display(),
                    base_offset = header.base_offset,
                    %error,
                    "compaction keeps a batch it cannot read as is and will not open it again"
                );
                false
            }
        }
    }

    fn stream(
        &self,
        header: &BatchHeader,
        batch: &[u8],
        keep: Keep,
        each: &mut impl FnMut(StreamedRecord, &[u8]),
    ) -> Result<(), LogError> {
        let mut records = RecordStream::open(header, batch, self.max_uncompressed, keep)?;
        while let Some(record) = records.next_record()? {
            each(record, records.raw());
        }
        Ok(())
    }
}

/// The max timestamp of a segment's first batch: Kafka's measure of how long a segment's
/// records have waited for compaction. `None` when it cannot be read now (the next pass
/// tries again).
fn first_batch_timestamp(segment: &Segment) -> Option<i64> {
    match segment.scanner(0, false).next_batch() {
        Ok(ScanStep::Batch { header, .. }) => Some(header.max_timestamp),
        _ => None,
    }
}

fn corrupt(segment: &Segment, position: u64, reason: &str) -> LogError {
    LogError::corrupt(format!(
        "segment {} at position {position}: {reason}",
        segment.log_path().display()
    ))
}

/// The decisions of one compaction run.
struct Cleaner<'a> {
    latest: &'a KeyOffsets,
    /// Tombstones with a timestamp below this are dropped.
    tombstone_horizon: i64,
    index_interval: u32,
}

impl Cleaner<'_> {
    /// Writes the cleaned copy of `segment` to `<base>.log.cleaned` (indexes beside it), or
    /// returns `None`, leaving no file behind, when nothing would be removed.
    fn clean_segment(
        &self,
        segment: &Segment,
        aborted: &mut AbortedTracker,
        opener: &mut Opener<'_>,
        stats: &mut CompactionStats,
    ) -> Result<Option<BuiltSegment>, LogError> {
        let log_path = fsutil::with_suffix(segment.log_path(), CLEANED_SUFFIX);
        let (index_path, time_index_path) = segment.index_paths();
        let index_path = fsutil::with_suffix(index_path, CLEANED_SUFFIX);
        let time_index_path = fsutil::with_suffix(time_index_path, CLEANED_SUFFIX);
        let result = self
            .write_cleaned(segment, aborted, opener, stats, &log_path)
            .and_then(|builder| match builder {
                Some(builder) => Ok(Some(builder.finish(&index_path, &time_index_path)?)),
                None => Ok(None),
            });
        if !matches!(result, Ok(Some(_))) {
            for path in [&log_path, &index_path, &time_index_path] {
                fsutil::remove_if_exists(path)?;
            }
        }
        result
    }

    fn write_cleaned(
        &self,
        segment: &Segment,
        aborted: &mut AbortedTracker,
        opener: &mut Opener<'_>,
        stats: &mut CompactionStats,
        path: &std::path::Path,
    ) -> Result<Option<SegmentBuilder>, LogError> {
        let mut builder = SegmentBuilder::create(path, segment.base_offset(), self.index_interval)?;
        let mut changed = false;
        let mut scanner = segment.scanner(0, true);
        loop {
            let (header, bytes) = match scanner.next_batch()? {
                ScanStep::Batch { header, bytes, .. } => (header, bytes),
                ScanStep::End => break,
                ScanStep::Invalid { position, reason } => {
                    return Err(corrupt(segment, position, &reason))
                }
            };
            if aborted.is_aborted(&header) {
                stats.records_read += u64::from(header.record_count.unsigned_abs());
                stats.records_removed += u64::from(header.record_count.unsigned_abs());
                changed = true;
                continue;
            }
            match self.clean_batch(&header, bytes, opener, stats)? {
                Cleaned::Unchanged => builder.push(&header, bytes)?,
                Cleaned::Rebuilt { header, bytes } => {
                    builder.push(&header, &bytes)?;
                    changed = true;
                }
                Cleaned::Dropped => changed = true,
            }
        }
        Ok(changed.then_some(builder))
    }

    fn clean_batch(
        &self,
        header: &BatchHeader,
        bytes: &[u8],
        opener: &mut Opener<'_>,
        stats: &mut CompactionStats,
    ) -> Result<Cleaned, LogError> {
        if header.is_control() {
            return Ok(Cleaned::Unchanged);
        }
        let mut kept = KeptRecords::default();
        let readable =
            opener.read_records(header, bytes, Keep::KeysAndRaw, stats, |record, raw| {
                let verdict = self.verdict(header, &record);
                kept.add(header, &record, raw, verdict);
            });
        if !readable {
            return Ok(Cleaned::Unchanged);
        }
        stats.records_read += kept.read;
        stats.records_removed += kept.removed;
        stats.tombstones_removed += kept.tombstones_removed;
        if kept.removed == 0 {
            Ok(Cleaned::Unchanged)
        } else if kept.count == 0 {
            Ok(Cleaned::Dropped)
        } else {
            rebuild_batch(header, &kept)
        }
    }

    fn verdict(&self, header: &BatchHeader, record: &StreamedRecord) -> Verdict {
        let Some(key) = &record.key else {
            return Verdict::Keep;
        };
        let offset = record.offset(header);
        // A key missing from the map (its batches could not be read) supersedes nothing.
        if self.latest.get(key).is_some_and(|latest| *latest != offset) {
            return Verdict::Superseded;
        }
        if !record.has_value && record.timestamp(header) < self.tombstone_horizon {
            return Verdict::ExpiredTombstone;
        }
        Verdict::Keep
    }
}

enum Verdict {
    Keep,
    Superseded,
    ExpiredTombstone,
}

/// What one batch keeps, gathered as its records stream by.
#[derive(Default)]
struct KeptRecords {
    /// The kept records' raw bytes, back to back: the new batch's uncompressed body.
    raw: Vec<u8>,
    count: u64,
    max_timestamp: Option<i64>,
    read: u64,
    removed: u64,
    tombstones_removed: u64,
}

impl KeptRecords {
    fn add(&mut self, header: &BatchHeader, record: &StreamedRecord, raw: &[u8], verdict: Verdict) {
        self.read += 1;
        match verdict {
            Verdict::Keep => {
                self.raw.extend_from_slice(raw);
                self.count += 1;
                let timestamp = record.timestamp(header);
                self.max_timestamp =
                    Some(self.max_timestamp.map_or(timestamp, |t| t.max(timestamp)));
            }
            Verdict::Superseded => self.removed += 1,
            Verdict::ExpiredTombstone => {
                self.removed += 1;
                self.tombstones_removed += 1;
            }
        }
    }
}

/// A batch holding only the `kept` records (a non-empty subset of `header`'s batch), with the
/// original header fields and codec (module docs, step 2).
fn rebuild_batch(header: &BatchHeader, kept: &KeptRecords) -> Result<Cleaned, LogError> {
    let body = compress(header.compression()?, &kept.raw)?;
    let max_timestamp = if header.has_log_append_time() {
        header.max_timestamp
    } else {
        kept.max_timestamp.unwrap_or(header.max_timestamp)
    };
    let too_large = || LogError::corrupt("compacted batch does not fit a batch length");
    let mut rebuilt = BatchHeader {
        batch_length: i32::try_from(BATCH_HEADER_LEN - LOG_OVERHEAD + body.len())
            .map_err(|_| too_large())?,
        record_count: i32::try_from(kept.count).map_err(|_| too_large())?,
        max_timestamp,
        crc: 0,
        ..*header
    };
    let mut bytes = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
    bytes.extend_from_slice(&rebuilt.to_bytes());
    bytes.extend_from_slice(&body);
    rebuilt.crc = compute_crc(&bytes);
    bytes[..BATCH_HEADER_LEN].copy_from_slice(&rebuilt.to_bytes());
    Ok(Cleaned::Rebuilt {
        header: rebuilt,
        bytes,
    })
}
