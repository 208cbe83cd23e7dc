//! Compaction (`cleanup.policy` `compact`): keep only the latest record of each key.
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
//! 3. The cleaned log and its indexes are fsynced, then swapped in: the old index files are
//!    removed (dir fsync, so stale indexes never pair with the new log), the cleaned files are
//!    renamed over the live names (dir fsync), and the in-memory segment is replaced. Readers
//!    that already hold the old segment keep reading its (now unlinked) file. A crash at any
//!    point leaves the old log or the new one, whole; missing indexes are rebuilt and
//!    `.cleaned` leftovers removed on open.

use std::collections::HashMap;
use std::fs;
use std::sync::Arc;

use crate::batch::{compute_crc, BatchHeader, BATCH_HEADER_LEN, LOG_OVERHEAD};
use crate::error::LogError;
use crate::fsutil::{self, CLEANED_SUFFIX};
use crate::locks::{lock, write_lock};
use crate::partition::PartitionLog;
use crate::records::{compress, decompressed_records, parse_records, RawRecord};
use crate::segment::{BuiltSegment, ScanStep, Segment, SegmentBuilder};

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
        let high_watermark = self.high_watermark();
        let segments = self.segment_list();
        let closed = &segments[..segments.len().saturating_sub(1)];
        let cleanable: Vec<&Arc<Segment>> = closed
            .iter()
            .filter(|segment| segment.next_offset() <= high_watermark)
            .collect();
        if cleanable.is_empty() {
            return Ok(stats);
        }
        let latest = latest_offsets(&segments, high_watermark)?;
        let cleaner = Cleaner {
            latest: &latest,
            tombstone_horizon: now_ms.saturating_sub(config.delete_retention_ms),
            index_interval: config.index_interval_bytes,
        };
        for segment in cleanable {
            let before = segment.size();
            if let Some(built) = cleaner.clean_segment(segment, &mut stats)? {
                stats.segments_cleaned += 1;
                stats.bytes_before += before;
                stats.bytes_after += built.state.size;
                self.install_cleaned(segment, built)?;
            }
        }
        Ok(stats)
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

/// Scans every batch below the high watermark for the latest offset of each key. Batches whose
/// records cannot be decoded are skipped: their keys then do not supersede older records,
/// which errs on the side of keeping data.
fn latest_offsets(segments: &[Arc<Segment>], high_watermark: i64) -> Result<KeyOffsets, LogError> {
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
            if header.next_offset() > high_watermark {
                return Ok(latest);
            }
            if header.is_control() {
                continue;
            }
            let Some(body) = decoded_body(&header, bytes) else {
                continue;
            };
            let Ok(records) = parse_records(&body, header.record_count) else {
                continue;
            };
            for record in records {
                if let Some(key) = record.key {
                    latest.insert(key.to_vec(), record.offset(&header));
                }
            }
        }
    }
    Ok(latest)
}

/// Decompressed records of a batch, or `None` (with a warning) if that fails.
fn decoded_body(header: &BatchHeader, bytes: &[u8]) -> Option<bytes::Bytes> {
    match decompressed_records(header, bytes) {
        Ok(body) => Some(body),
        Err(error) => {
            tracing::warn!(base_offset = header.base_offset, %error, "compaction keeps an undecodable batch as is");
            None
        }
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
        stats: &mut CompactionStats,
    ) -> Result<Option<BuiltSegment>, LogError> {
        let log_path = fsutil::with_suffix(segment.log_path(), CLEANED_SUFFIX);
        let (index_path, time_index_path) = segment.index_paths();
        let index_path = fsutil::with_suffix(index_path, CLEANED_SUFFIX);
        let time_index_path = fsutil::with_suffix(time_index_path, CLEANED_SUFFIX);
        let result =
            self.write_cleaned(segment, stats, &log_path)
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
            match self.clean_batch(&header, bytes, stats)? {
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
        stats: &mut CompactionStats,
    ) -> Result<Cleaned, LogError> {
        if header.is_control() {
            return Ok(Cleaned::Unchanged);
        }
        let Some(body) = decoded_body(header, bytes) else {
            return Ok(Cleaned::Unchanged);
        };
        let records = match parse_records(&body, header.record_count) {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!(base_offset = header.base_offset, %error, "compaction keeps an unparsable batch as is");
                return Ok(Cleaned::Unchanged);
            }
        };
        let mut kept = Vec::with_capacity(records.len());
        for record in &records {
            match self.verdict(header, record) {
                Keep::Yes => kept.push(record),
                Keep::Superseded => stats.records_removed += 1,
                Keep::ExpiredTombstone => {
                    stats.records_removed += 1;
                    stats.tombstones_removed += 1;
                }
            }
        }
        stats.records_read += records.len() as u64;
        if kept.len() == records.len() {
            Ok(Cleaned::Unchanged)
        } else if kept.is_empty() {
            Ok(Cleaned::Dropped)
        } else {
            rebuild_batch(header, &kept)
        }
    }

    fn verdict(&self, header: &BatchHeader, record: &RawRecord<'_>) -> Keep {
        let Some(key) = record.key else {
            return Keep::Yes;
        };
        let offset = record.offset(header);
        // A key missing from the map (its batches could not be decoded) supersedes nothing.
        if self.latest.get(key).is_some_and(|latest| *latest != offset) {
            return Keep::Superseded;
        }
        if !record.has_value && record.timestamp(header) < self.tombstone_horizon {
            return Keep::ExpiredTombstone;
        }
        Keep::Yes
    }
}

enum Keep {
    Yes,
    Superseded,
    ExpiredTombstone,
}

/// A batch holding only `kept` records (a non-empty subset of `header`'s batch), with the
/// original header fields and codec (module docs, step 2).
fn rebuild_batch(header: &BatchHeader, kept: &[&RawRecord<'_>]) -> Result<Cleaned, LogError> {
    let raw: Vec<u8> = kept
        .iter()
        .flat_map(|record| record.raw.iter().copied())
        .collect();
    let body = compress(header.compression()?, &raw)?;
    let max_timestamp = if header.has_log_append_time() {
        header.max_timestamp
    } else {
        kept.iter()
            .map(|record| record.timestamp(header))
            .max()
            .unwrap_or(header.max_timestamp)
    };
    let too_large = || LogError::corrupt("compacted batch does not fit a batch length");
    let mut rebuilt = BatchHeader {
        batch_length: i32::try_from(BATCH_HEADER_LEN - LOG_OVERHEAD + body.len())
            .map_err(|_| too_large())?,
        record_count: i32::try_from(kept.len()).map_err(|_| too_large())?,
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
