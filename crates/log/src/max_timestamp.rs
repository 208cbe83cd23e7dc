//! ListOffsets MAX_TIMESTAMP (KIP-734): which record has the largest timestamp.
//!
//! Every segment knows its largest batch timestamp and the first batch holding it (kept on
//! append, restored from the time index at open), so the answer costs one pass over the
//! segment list plus the records of one batch. Only two places need more, both bounded: the
//! segment holding the end of what the reader may see (see
//! [`Segment::max_timestamp_below`]), and the segment holding the log start offset when
//! DeleteRecords put it inside one (its batch headers from there on are read, and the records
//! of the batch it cuts through).

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::batch::BatchHeader;
use crate::error::LogError;
use crate::partition::PartitionLog;
use crate::records::{Keep, RecordStream};
use crate::segment::{ScanStep, Segment, NO_TIMESTAMP};

impl PartitionLog {
    /// The offset and timestamp of the record with the largest timestamp at or after the log
    /// start offset and below `end` (capped at the high watermark); the first such record when
    /// several share that timestamp, as in Kafka. `None` when no record there has a timestamp.
    ///
    /// `end` is the end of what the asking reader may see: the high watermark today, the last
    /// stable offset for read_committed readers once transactions exist. Unlike Kafka, which
    /// finds the maximum over the whole log and answers nothing when it lies beyond that end,
    /// this answers the largest timestamp the reader can actually fetch.
    pub fn offset_of_max_timestamp(&self, end: i64) -> Result<Option<(i64, i64)>, LogError> {
        self.check_not_deleted()?;
        let end = end.min(self.high_watermark());
        let log_start = self.log_start_offset();
        let max_uncompressed = self.config().max_uncompressed_batch_bytes;
        let mut best: Option<(i64, i64, Arc<Segment>)> = None;
        for segment in self.segment_list() {
            if segment.base_offset() >= end {
                break;
            }
            if segment.next_offset() <= log_start {
                continue;
            }
            let found = if segment.base_offset() < log_start {
                max_timestamp_from(&segment, log_start, end, max_uncompressed)?
            } else {
                segment.max_timestamp_below(end)?
            };
            let Some((timestamp, batch_offset)) = found else {
                continue;
            };
            // Strictly larger only: on a tie the earlier segment keeps it.
            if best
                .as_ref()
                .is_none_or(|(best_ts, _, _)| timestamp > *best_ts)
            {
                best = Some((timestamp, batch_offset, segment));
            }
        }
        match best {
            Some((_, batch_offset, segment)) => {
                first_latest_record(&segment, batch_offset, log_start, max_uncompressed)
            }
            None => Ok(None),
        }
    }
}

/// Like [`Segment::max_timestamp_below`] for a segment the log start offset cuts: only records
/// at or after `log_start` count. Reads the batch headers from the log start on, and the
/// records of the batch that holds it (its header's maximum may belong to a deleted record).
fn max_timestamp_from(
    segment: &Segment,
    log_start: i64,
    end: i64,
    max_uncompressed: usize,
) -> Result<Option<(i64, i64)>, LogError> {
    let mut best: Option<(i64, i64)> = None;
    let mut cut_batch = None;
    let mut scanner = segment.scanner_near(log_start, false);
    loop {
        let (header, position) = match scanner.next_batch()? {
            ScanStep::End => break,
            ScanStep::Invalid { position, reason } => {
                return Err(corruption(segment, position, &reason))
            }
            ScanStep::Batch {
                header, position, ..
            } => (header, position),
        };
        if header.next_offset() <= log_start {
            continue;
        }
        if header.next_offset() > end {
            break;
        }
        if header.base_offset < log_start {
            cut_batch = Some((header, position));
            continue;
        }
        let timestamp = header.max_timestamp;
        if timestamp != NO_TIMESTAMP && best.is_none_or(|(best_ts, _)| timestamp > best_ts) {
            best = Some((timestamp, header.base_offset));
        }
    }
    // The cut batch comes first in the log, so it wins ties.
    if let Some((header, position)) = cut_batch {
        let records = read_batch(segment, &header, position)?;
        if let Some((_, timestamp)) = latest_record(&header, &records, log_start, max_uncompressed)?
        {
            if best.is_none_or(|(best_ts, _)| timestamp >= best_ts) {
                best = Some((timestamp, header.base_offset));
            }
        }
    }
    Ok(best)
}

/// The first record at or after `log_start` with the largest timestamp in the batch that
/// starts at `batch_offset`.
fn first_latest_record(
    segment: &Segment,
    batch_offset: i64,
    log_start: i64,
    max_uncompressed: usize,
) -> Result<Option<(i64, i64)>, LogError> {
    let mut scanner = segment.scanner_near(batch_offset, false);
    loop {
        match scanner.next_batch()? {
            ScanStep::Batch {
                header, position, ..
            } if header.base_offset == batch_offset => {
                let bytes = read_batch(segment, &header, position)?;
                return latest_record(&header, &bytes, log_start, max_uncompressed);
            }
            ScanStep::Batch { header, .. } if header.base_offset < batch_offset => {}
            ScanStep::Invalid { position, reason } => {
                return Err(corruption(segment, position, &reason))
            }
            // Compaction replaced the segment since it was measured: the batch is gone.
            ScanStep::Batch { .. } | ScanStep::End => return Ok(None),
        }
    }
}

/// The offset and timestamp of the first record at or after `log_start` whose timestamp is
/// the largest in the batch. The records are streamed rather than trusting the header's
/// maximum: this log stores batches as producers sent them, and a producer's header may claim
/// a maximum no record has.
fn latest_record(
    header: &BatchHeader,
    batch: &[u8],
    log_start: i64,
    max_uncompressed: usize,
) -> Result<Option<(i64, i64)>, LogError> {
    let mut records = RecordStream::open(header, batch, max_uncompressed, Keep::Nothing)?;
    let mut best: Option<(i64, i64)> = None;
    while let Some(record) = records.next_record()? {
        let (offset, timestamp) = (record.offset(header), record.timestamp(header));
        let later = best.is_none_or(|(_, best_ts)| timestamp > best_ts);
        if offset >= log_start && timestamp != NO_TIMESTAMP && later {
            best = Some((offset, timestamp));
        }
    }
    Ok(best)
}

fn read_batch(segment: &Segment, header: &BatchHeader, position: u64) -> Result<Vec<u8>, LogError> {
    let mut bytes = vec![0u8; header.total_size()];
    segment.file().read_exact_at(&mut bytes, position)?;
    Ok(bytes)
}

fn corruption(segment: &Segment, position: u64, reason: &str) -> LogError {
    LogError::corrupt(format!(
        "segment {} at position {position}: {reason}",
        segment.log_path().display()
    ))
}
