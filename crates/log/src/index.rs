//! The sparse indexes of a segment, kept in memory and written to disk when the segment is
//! sealed (at roll) or the log is closed.
//!
//! * `.index`: entries of (offset − segment base: u32 BE, file position: u32 BE). One entry for
//!   the first batch of the segment and then one whenever at least `index.interval.bytes` of
//!   batches were appended since the previous entry, so a lookup lands less than one interval
//!   (plus one batch) before the batch it wants.
//! * `.timeindex`: entries of (largest timestamp so far: i64 BE, offset − segment base: u32 BE of
//!   the batch holding that timestamp), added at the same moments as `.index` entries when the
//!   largest timestamp grew, plus a final entry when the segment is sealed. An entry (T, O)
//!   promises that no record before it has a timestamp above T.
//!
//! Entries are never updated in place; a segment whose index files are missing or malformed is
//! rescanned on open.

use std::fs;
use std::io;
use std::path::Path;

use crate::fsutil;

/// Bytes per `.index` entry.
pub const OFFSET_ENTRY_LEN: usize = 8;
/// Bytes per `.timeindex` entry.
pub const TIME_ENTRY_LEN: usize = 12;

/// One `.index` entry: a batch starts at `position` with offset `base + relative_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Batch base offset minus the segment's base offset.
    pub relative_offset: u32,
    /// Byte position of the batch in the `.log` file.
    pub position: u32,
}

/// One `.timeindex` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeEntry {
    /// Largest record timestamp of the segment up to this entry.
    pub timestamp: i64,
    /// Base offset (relative) of the batch that holds that timestamp.
    pub relative_offset: u32,
}

/// The offset index of one segment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct OffsetIndex {
    entries: Vec<OffsetEntry>,
}

impl OffsetIndex {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn last(&self) -> Option<OffsetEntry> {
        self.entries.last().copied()
    }

    pub fn push(&mut self, entry: OffsetEntry) {
        self.entries.push(entry);
    }

    /// The last entry at or before `relative_offset`: where a scan for it should start.
    pub fn lookup(&self, relative_offset: u32) -> Option<OffsetEntry> {
        let after = self
            .entries
            .partition_point(|e| e.relative_offset <= relative_offset);
        after.checked_sub(1).map(|i| self.entries[i])
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_LEN);
        for entry in &self.entries {
            out.extend_from_slice(&entry.relative_offset.to_be_bytes());
            out.extend_from_slice(&entry.position.to_be_bytes());
        }
        out
    }

    /// Parses a `.index` file's bytes, accepting them only if they describe a plausible index
    /// of a log file of `log_size` bytes: whole entries, strictly increasing offsets and
    /// positions, the first entry at position 0, every position inside the log.
    pub fn from_bytes(bytes: &[u8], log_size: u64) -> Result<OffsetIndex, String> {
        let entries = decode_offset_entries(bytes)?;
        if let Some(first) = entries.first() {
            if first.position != 0 {
                return Err("first entry does not point at the start of the log".into());
            }
        } else if log_size > 0 {
            return Err("index of a non-empty log has no entry".into());
        }
        for pair in entries.windows(2) {
            if pair[1].relative_offset <= pair[0].relative_offset
                || pair[1].position <= pair[0].position
            {
                return Err("entries are not strictly increasing".into());
            }
        }
        if entries
            .last()
            .is_some_and(|e| u64::from(e.position) >= log_size)
        {
            return Err("an entry points past the end of the log".into());
        }
        Ok(OffsetIndex { entries })
    }
}

/// The time index of one segment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TimeIndex {
    entries: Vec<TimeEntry>,
}

impl TimeIndex {
    pub fn last(&self) -> Option<TimeEntry> {
        self.entries.last().copied()
    }

    /// Adds an entry if it raises the largest timestamp; keeps entries strictly increasing.
    pub fn push_if_newer(&mut self, entry: TimeEntry) {
        if self
            .last()
            .is_none_or(|last| entry.timestamp > last.timestamp)
        {
            self.entries.push(entry);
        }
    }

    /// The last entry whose timestamp is below `timestamp`: every record before its offset is
    /// older than `timestamp`, so a search can start there.
    pub fn last_before(&self, timestamp: i64) -> Option<TimeEntry> {
        let after = self.entries.partition_point(|e| e.timestamp < timestamp);
        after.checked_sub(1).map(|i| self.entries[i])
    }

    /// The last entry whose batch lies at or before `relative_offset` (offsets never decrease
    /// from one entry to the next, so this is a binary search).
    pub fn last_at_or_before(&self, relative_offset: u32) -> Option<TimeEntry> {
        let after = self
            .entries
            .partition_point(|e| e.relative_offset <= relative_offset);
        after.checked_sub(1).map(|i| self.entries[i])
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_ENTRY_LEN);
        for entry in &self.entries {
            out.extend_from_slice(&entry.timestamp.to_be_bytes());
            out.extend_from_slice(&entry.relative_offset.to_be_bytes());
        }
        out
    }

    /// Parses a `.timeindex` file's bytes: whole entries, timestamps strictly increasing,
    /// offsets never decreasing.
    pub fn from_bytes(bytes: &[u8]) -> Result<TimeIndex, String> {
        let entries = decode_time_entries(bytes)?;
        for pair in entries.windows(2) {
            if pair[1].timestamp <= pair[0].timestamp
                || pair[1].relative_offset < pair[0].relative_offset
            {
                return Err("entries are not increasing".into());
            }
        }
        Ok(TimeIndex { entries })
    }
}

/// Decodes `.index` bytes without judging them (used by `dump` too).
pub fn decode_offset_entries(bytes: &[u8]) -> Result<Vec<OffsetEntry>, String> {
    decode_entries(bytes, OFFSET_ENTRY_LEN, |chunk| {
        let (offset, position) = chunk.split_at(4);
        OffsetEntry {
            relative_offset: u32::from_be_bytes(array(offset)),
            position: u32::from_be_bytes(array(position)),
        }
    })
}

/// Decodes `.timeindex` bytes without judging them (used by `dump` too).
pub fn decode_time_entries(bytes: &[u8]) -> Result<Vec<TimeEntry>, String> {
    decode_entries(bytes, TIME_ENTRY_LEN, |chunk| {
        let (timestamp, offset) = chunk.split_at(8);
        TimeEntry {
            timestamp: i64::from_be_bytes(array(timestamp)),
            relative_offset: u32::from_be_bytes(array(offset)),
        }
    })
}

/// Splits index file bytes into fixed-size entries, refusing a partial last entry.
fn decode_entries<T>(
    bytes: &[u8],
    entry_len: usize,
    decode: impl Fn(&[u8]) -> T,
) -> Result<Vec<T>, String> {
    let chunks = bytes.chunks_exact(entry_len);
    if !chunks.remainder().is_empty() {
        return Err(format!(
            "{} bytes is not a whole number of entries",
            bytes.len()
        ));
    }
    Ok(chunks.map(decode).collect())
}

/// Copies a slice whose length the caller fixed (by `chunks_exact` + `split_at`) into an array.
fn array<const N: usize>(slice: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&slice[..N]);
    out
}

/// Reads an index file; `Ok(None)` when it does not exist.
pub(crate) fn read_index_file(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Writes both index files of a segment and fsyncs them.
pub(crate) fn write_index_files(
    offset_path: &Path,
    offsets: &OffsetIndex,
    time_path: &Path,
    times: &TimeIndex,
) -> io::Result<()> {
    fsutil::write_file_synced(offset_path, &offsets.to_bytes())?;
    fsutil::write_file_synced(time_path, &times.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(entries: &[(u32, u32)]) -> OffsetIndex {
        let mut index = OffsetIndex::default();
        for &(relative_offset, position) in entries {
            index.push(OffsetEntry {
                relative_offset,
                position,
            });
        }
        index
    }

    #[test]
    fn offset_lookup_finds_the_entry_at_or_before() {
        let index = offsets(&[(0, 0), (10, 4096), (25, 9000)]);
        assert_eq!(index.lookup(0).map(|e| e.position), Some(0));
        assert_eq!(index.lookup(9).map(|e| e.position), Some(0));
        assert_eq!(index.lookup(10).map(|e| e.position), Some(4096));
        assert_eq!(index.lookup(1000).map(|e| e.position), Some(9000));
        assert_eq!(OffsetIndex::default().lookup(3), None);
    }

    #[test]
    fn offset_index_round_trips_and_rejects_garbage() {
        let index = offsets(&[(0, 0), (10, 4096)]);
        let bytes = index.to_bytes();
        assert_eq!(OffsetIndex::from_bytes(&bytes, 5000), Ok(index));
        assert!(OffsetIndex::from_bytes(&bytes[..7], 5000).is_err());
        assert!(
            OffsetIndex::from_bytes(&bytes, 4096).is_err(),
            "position past the end"
        );
        assert!(
            OffsetIndex::from_bytes(&[], 10).is_err(),
            "non-empty log needs an entry"
        );
        let backwards = offsets(&[(0, 0), (10, 4096), (5, 5000)]).to_bytes();
        assert!(OffsetIndex::from_bytes(&backwards, 9000).is_err());
    }

    #[test]
    fn time_index_keeps_only_growing_timestamps() {
        let mut index = TimeIndex::default();
        index.push_if_newer(TimeEntry {
            timestamp: 100,
            relative_offset: 0,
        });
        index.push_if_newer(TimeEntry {
            timestamp: 90,
            relative_offset: 3,
        });
        index.push_if_newer(TimeEntry {
            timestamp: 200,
            relative_offset: 7,
        });
        assert_eq!(index.entries.len(), 2);
        assert_eq!(index.last_before(100), None);
        assert_eq!(index.last_before(101).map(|e| e.relative_offset), Some(0));
        assert_eq!(
            index.last_before(i64::MAX).map(|e| e.relative_offset),
            Some(7)
        );
        assert_eq!(index.last_at_or_before(6).map(|e| e.timestamp), Some(100));
        assert_eq!(index.last_at_or_before(7).map(|e| e.timestamp), Some(200));
        assert_eq!(TimeIndex::default().last_at_or_before(7), None);
        assert_eq!(TimeIndex::from_bytes(&index.to_bytes()), Ok(index));
        assert!(TimeIndex::from_bytes(&[0; 13]).is_err());
    }
}
