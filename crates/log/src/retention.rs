//! Retention: deleting whole closed segments by age or by total size (`cleanup.policy`
//! `delete`). The active segment is never deleted here, nor a segment at or after the last
//! stable offset: an open transaction's first records stay until it ends, so the log start
//! never passes a transaction that read_committed consumers still wait on.

use std::time::UNIX_EPOCH;

use crate::error::LogError;
use crate::locks::lock;
use crate::partition::PartitionLog;
use crate::segment::{Segment, NO_TIMESTAMP};

impl PartitionLog {
    /// Deletes the oldest closed segments whose largest timestamp is more than `retention.ms`
    /// before `now_ms`, and then as many more as needed to bring the log within
    /// `retention.bytes`. Deletion is a prefix: it stops at the first segment that may stay.
    /// Does nothing unless the cleanup policy includes delete. Returns how many segments went.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        self.check_not_deleted()?;
        let config = self.config();
        if !config.cleanup_policy.deletes() {
            return Ok(0);
        }
        let _maintenance = lock(&self.maintenance);
        // Again under the lock: a topic deletion may have marked the log while this waited.
        self.check_not_deleted()?;
        let segments = self.segment_list();
        let mut remaining_bytes: u64 = segments.iter().map(|segment| segment.size()).sum();
        let closed = &segments[..segments.len().saturating_sub(1)];
        let stable = self.last_stable_offset();
        let mut doomed = 0;
        for segment in closed.iter().take_while(|s| s.next_offset() <= stable) {
            let size = segment.size();
            let too_old = config.retention_ms >= 0
                && now_ms.saturating_sub(retention_timestamp(segment)) > config.retention_ms;
            let too_big = u64::try_from(config.retention_bytes)
                .is_ok_and(|limit| remaining_bytes.saturating_sub(size) >= limit);
            if !(too_old || too_big) {
                break;
            }
            remaining_bytes -= size;
            doomed += 1;
        }
        self.delete_oldest_segments(doomed)
    }
}

/// The time a segment's age is measured from: its largest record timestamp, or, when its
/// records carry none, the file's modification time (as Kafka does).
fn retention_timestamp(segment: &Segment) -> i64 {
    let max_timestamp = segment.max_timestamp();
    if max_timestamp != NO_TIMESTAMP {
        return max_timestamp;
    }
    segment
        .file()
        .metadata()
        .and_then(|metadata| metadata.modified())
        .ok()
        .and_then(|modified| modified.duration_since(UNIX_EPOCH).ok())
        .and_then(|elapsed| i64::try_from(elapsed.as_millis()).ok())
        .unwrap_or(i64::MAX)
}
