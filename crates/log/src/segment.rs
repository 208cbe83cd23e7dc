//! One segment: a `.log` file of record batches plus its sparse `.index` and `.timeindex`.
//!
//! The partition log appends only to its last ("active") segment; older segments are immutable
//! until retention deletes them or compaction replaces them wholesale. Readers share the
//! segment's file handle and use positioned reads, so they never wait for the writer's mutex;
//! the in-memory state (size, indexes) sits behind a `RwLock` held only for lookups and updates.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use crate::batch::{verify_crc, BatchHeader, BATCH_HEADER_LEN};
use crate::error::LogError;
use crate::fsutil::{self, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT};
use crate::index::{self, OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};
use crate::locks::{read_lock, write_lock};
use crate::records::{Keep, RecordStream};

/// "No timestamp", as Kafka writes it.
pub(crate) const NO_TIMESTAMP: i64 = -1;

/// How much a scan that needs batch bodies reads per `read_at`.
const SCAN_CHUNK_BYTES: usize = 1 << 20;

/// What a segment knows about its content; changes only under the partition's writer lock
/// (append, compaction install), read by anyone.
#[derive(Clone, Debug)]
pub(crate) struct SegmentState {
    /// Bytes of whole batches in the file: the end readers may read up to.
    pub size: u64,
    /// Offset after the last batch (the segment's base offset when empty).
    pub next_offset: i64,
    /// Largest batch max timestamp, or NO_TIMESTAMP.
    pub max_timestamp: i64,
    /// Base offset of the batch holding `max_timestamp`.
    pub offset_of_max_timestamp: i64,
    /// Max timestamp of the first batch; drives `segment.ms` for a segment found on open.
    pub first_batch_timestamp: Option<i64>,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_index_entry: u64,
}

impl SegmentState {
    fn empty(base_offset: i64) -> SegmentState {
        SegmentState {
            size: 0,
            next_offset: base_offset,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: base_offset,
            first_batch_timestamp: None,
            offset_index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_index_entry: 0,
        }
    }

    /// Accounts for a batch that now lies at `position` (batches arrive in log order), adding
    /// index entries every `index_interval` bytes.
    fn record_batch(
        &mut self,
        base_offset: i64,
        header: &BatchHeader,
        position: u64,
        index_interval: u32,
    ) {
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.base_offset;
        }
        self.first_batch_timestamp
            .get_or_insert(header.max_timestamp);
        let due = self.offset_index.is_empty()
            || self.bytes_since_index_entry >= u64::from(index_interval);
        if due {
            self.add_index_entries(base_offset, header.base_offset, position);
        }
        let size = header.total_size() as u64;
        self.bytes_since_index_entry += size;
        self.size = position + size;
        self.next_offset = header.next_offset();
    }

    fn add_index_entries(&mut self, base_offset: i64, batch_offset: i64, position: u64) {
        // Rolling keeps offsets and positions within u32 (see PartitionLog::needs_roll); a
        // segment that somehow is larger just gets no further entries, and lookups scan longer.
        let (Ok(relative_offset), Ok(position)) = (
            u32::try_from(batch_offset - base_offset),
            u32::try_from(position),
        ) else {
            return;
        };
        self.offset_index.push(OffsetEntry {
            relative_offset,
            position,
        });
        self.bytes_since_index_entry = 0;
        self.push_time_entry(base_offset);
    }

    fn push_time_entry(&mut self, base_offset: i64) {
        if self.max_timestamp == NO_TIMESTAMP {
            return;
        }
        if let Ok(relative_offset) = u32::try_from(self.offset_of_max_timestamp - base_offset) {
            self.time_index.push_if_newer(TimeEntry {
                timestamp: self.max_timestamp,
                relative_offset,
            });
        }
    }

    /// Where a scan for `offset` should start.
    fn position_for(&self, base_offset: i64, offset: i64) -> u64 {
        let relative = u32::try_from((offset - base_offset).max(0)).unwrap_or(u32::MAX);
        self.offset_index
            .lookup(relative)
            .map_or(0, |entry| u64::from(entry.position))
    }
}

/// One segment of a partition log.
#[derive(Debug)]
pub(crate) struct Segment {
    base_offset: i64,
    log_path: PathBuf,
    index_path: PathBuf,
    time_index_path: PathBuf,
    /// Shared so that group commit can fsync it, and readers read it, without any lock.
    file: Arc<File>,
    state: RwLock<SegmentState>,
}

/// A segment found on disk by [`Segment::recover`], and what recovery did to it.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub segment: Segment,
    /// The indexes were rebuilt by scanning (so the files on disk are stale or missing).
    pub rebuilt_indexes: bool,
    /// Bytes cut from a torn or corrupt tail.
    pub truncated_bytes: u64,
}

impl Segment {
    /// Creates the (empty) log file of a new segment at the log end offset. The caller fsyncs
    /// the directory. A file of that name can only be left by an earlier roll that failed
    /// after creating it (every other segment starts below the log end), so it is emptied.
    pub fn create(dir: &Path, base_offset: i64) -> io::Result<Segment> {
        let log_path = fsutil::offset_file(dir, base_offset, LOG_EXT);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)?;
        Ok(Segment::with_state(
            dir,
            base_offset,
            file,
            SegmentState::empty(base_offset),
        ))
    }

    fn with_state(dir: &Path, base_offset: i64, file: File, state: SegmentState) -> Segment {
        Segment {
            base_offset,
            log_path: fsutil::offset_file(dir, base_offset, LOG_EXT),
            index_path: fsutil::offset_file(dir, base_offset, INDEX_EXT),
            time_index_path: fsutil::offset_file(dir, base_offset, TIME_INDEX_EXT),
            file: Arc::new(file),
            state: RwLock::new(state),
        }
    }

    /// Opens an existing segment. With `trust_indexes`, the index files are loaded and only the
    /// batches after the last index entry are looked at (headers only); if the files are
    /// missing, malformed or disagree with the log, or without `trust_indexes`, every batch is
    /// scanned with its CRC, the file is truncated at the first torn or corrupt batch and the
    /// indexes are rebuilt in memory.
    pub fn recover(
        dir: &Path,
        base_offset: i64,
        index_interval: u32,
        trust_indexes: bool,
    ) -> Result<Recovered, LogError> {
        let log_path = fsutil::offset_file(dir, base_offset, LOG_EXT);
        let file = OpenOptions::new().read(true).write(true).open(&log_path)?;
        let file_len = file.metadata()?.len();
        if trust_indexes {
            if let Some(state) =
                load_trusted_state(dir, base_offset, &file, file_len, index_interval)?
            {
                let segment = Segment::with_state(dir, base_offset, file, state);
                return Ok(Recovered {
                    segment,
                    rebuilt_indexes: false,
                    truncated_bytes: 0,
                });
            }
        }
        let (state, invalid) = scan_and_index(&file, base_offset, file_len, index_interval)?;
        let mut truncated_bytes = 0;
        if let Some(reason) = invalid {
            truncated_bytes = file_len - state.size;
            tracing::warn!(
                segment = %log_path.display(),
                truncated_bytes,
                valid_bytes = state.size,
                %reason,
                "truncating torn or corrupt tail of segment"
            );
            file.set_len(state.size)?;
            file.sync_all()?;
        }
        let segment = Segment::with_state(dir, base_offset, file, state);
        Ok(Recovered {
            segment,
            rebuilt_indexes: true,
            truncated_bytes,
        })
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    pub fn state(&self) -> SegmentState {
        read_lock(&self.state).clone()
    }

    pub fn size(&self) -> u64 {
        read_lock(&self.state).size
    }

    pub fn next_offset(&self) -> i64 {
        read_lock(&self.state).next_offset
    }

    pub fn max_timestamp(&self) -> i64 {
        read_lock(&self.state).max_timestamp
    }

    pub fn is_empty(&self) -> bool {
        self.size() == 0
    }

    /// Appends already-validated, offset-stamped batches at the end of the file with one
    /// positioned write, then publishes them to readers. `batches` lists each batch's header
    /// (with its final offsets) and its range in `bytes`.
    pub fn append(
        &self,
        bytes: &[u8],
        batches: &[(BatchHeader, Range<usize>)],
        index_interval: u32,
    ) -> io::Result<()> {
        let position = self.size();
        if let Err(error) = self.file.write_all_at(bytes, position) {
            // A partial write leaves garbage past `size`. Cut it so the next append starts
            // cleanly and recovery does not have to guess; recovery would truncate it anyway.
            if let Err(cut) = self.file.set_len(position) {
                tracing::error!(segment = %self.log_path.display(), %cut, "cannot cut a failed write");
            }
            return Err(error);
        }
        let mut state = write_lock(&self.state);
        for (header, range) in batches {
            state.record_batch(
                self.base_offset,
                header,
                position + range.start as u64,
                index_interval,
            );
        }
        Ok(())
    }

    /// fdatasync of the log file.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Adds the final time index entry and writes both index files, fsynced. Called when the
    /// segment stops being active and at clean shutdown.
    pub fn write_indexes(&self) -> io::Result<()> {
        let (offsets, times) = {
            let mut state = write_lock(&self.state);
            state.push_time_entry(self.base_offset);
            (state.offset_index.clone(), state.time_index.clone())
        };
        index::write_index_files(&self.index_path, &offsets, &self.time_index_path, &times)
    }

    /// Removes the segment's files: the log first, so that a crash in between leaves only
    /// orphaned index files, which the next open removes.
    pub fn delete_files(&self) -> io::Result<()> {
        fsutil::remove_if_exists(&self.log_path)?;
        fsutil::remove_if_exists(&self.index_path)?;
        fsutil::remove_if_exists(&self.time_index_path)?;
        if let Some(dir) = self.log_path.parent() {
            let txn_index = fsutil::offset_file(dir, self.base_offset, crate::txn::TXN_INDEX_EXT);
            fsutil::remove_if_exists(&txn_index)?;
        }
        Ok(())
    }

    /// A scanner over this segment's batches from `position` up to its current size.
    pub fn scanner(&self, position: u64, read_bodies: bool) -> BatchScanner<'_> {
        BatchScanner::new(
            &self.file,
            position,
            self.size(),
            self.base_offset,
            read_bodies,
            false,
        )
    }

    /// A scanner starting at the indexed position at or before `offset`.
    pub fn scanner_near(&self, offset: i64, read_bodies: bool) -> BatchScanner<'_> {
        let (position, size) = {
            let state = read_lock(&self.state);
            (state.position_for(self.base_offset, offset), state.size)
        };
        BatchScanner::new(
            &self.file,
            position,
            size,
            self.base_offset,
            read_bodies,
            false,
        )
    }

    /// Whole batches from the one holding `offset` (or the first after it, past a compacted
    /// gap) on, ending below `high_watermark` and within `max_bytes` (unless `min_one_batch`
    /// and the first batch alone is larger). `None` when no batch of this segment ends past
    /// `offset`, so the caller moves on to the next segment.
    pub fn read(
        &self,
        offset: i64,
        high_watermark: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<Option<Bytes>, LogError> {
        let mut scanner = self.scanner_near(offset, false);
        let (position, first) = loop {
            match scanner.next_batch()? {
                ScanStep::End => return Ok(None),
                ScanStep::Invalid { position, reason } => {
                    return Err(self.corruption(position, &reason))
                }
                ScanStep::Batch {
                    header, position, ..
                } if header.next_offset() > offset => break (position, header),
                ScanStep::Batch { .. } => {}
            }
        };
        if first.next_offset() > high_watermark {
            return Ok(Some(Bytes::new()));
        }
        let first_size = first.total_size();
        if first_size > max_bytes {
            if !min_one_batch {
                return Ok(Some(Bytes::new()));
            }
            return Ok(Some(Bytes::from(self.read_exact(position, first_size)?)));
        }
        let available = usize::try_from(scanner.end() - position).unwrap_or(usize::MAX);
        let mut bytes = self.read_exact(position, max_bytes.min(available))?;
        bytes.truncate(whole_batches_below(&bytes, high_watermark));
        Ok(Some(Bytes::from(bytes)))
    }

    /// Finds the first record at or after `log_start_offset` and below `high_watermark` whose
    /// timestamp is at least `timestamp`, streaming the records of the one batch that has it
    /// (decompressing at most `max_uncompressed` bytes of it).
    pub fn find_timestamp(
        &self,
        timestamp: i64,
        log_start_offset: i64,
        high_watermark: i64,
        max_uncompressed: usize,
    ) -> Result<Option<(i64, i64)>, LogError> {
        let start_offset = {
            let state = read_lock(&self.state);
            state
                .time_index
                .last_before(timestamp)
                .map_or(self.base_offset, |entry| {
                    self.base_offset
                        .saturating_add(i64::from(entry.relative_offset))
                })
        };
        let mut scanner = self.scanner_near(start_offset, false);
        loop {
            let (header, position) = match scanner.next_batch()? {
                ScanStep::End => return Ok(None),
                ScanStep::Invalid { position, reason } => {
                    return Err(self.corruption(position, &reason))
                }
                ScanStep::Batch {
                    header, position, ..
                } => (header, position),
            };
            if header.next_offset() > high_watermark {
                return Ok(None);
            }
            if header.next_offset() <= log_start_offset || header.max_timestamp < timestamp {
                continue;
            }
            let found = self.first_record_at_or_after(
                &header,
                position,
                timestamp,
                log_start_offset,
                max_uncompressed,
            )?;
            if found.is_some() {
                return Ok(found);
            }
        }
    }

    /// The offset and timestamp of the first record of the batch at `position` whose
    /// timestamp is at least `timestamp` and offset at least `log_start_offset`.
    fn first_record_at_or_after(
        &self,
        header: &BatchHeader,
        position: u64,
        timestamp: i64,
        log_start_offset: i64,
        max_uncompressed: usize,
    ) -> Result<Option<(i64, i64)>, LogError> {
        let bytes = self.read_exact(position, header.total_size())?;
        let mut records = RecordStream::open(header, &bytes, max_uncompressed, Keep::Nothing)?;
        while let Some(record) = records.next_record()? {
            let (offset, ts) = (record.offset(header), record.timestamp(header));
            if offset >= log_start_offset && ts >= timestamp {
                return Ok(Some((offset, ts)));
            }
        }
        Ok(None)
    }

    fn read_exact(&self, position: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, position)?;
        Ok(buf)
    }

    fn corruption(&self, position: u64, reason: &str) -> LogError {
        LogError::corrupt(format!(
            "segment {} at position {position}: {reason}",
            self.log_path.display()
        ))
    }
}

/// Length of the prefix of `bytes` made of whole batches that end at or below `high_watermark`.
fn whole_batches_below(bytes: &[u8], high_watermark: i64) -> usize {
    let mut end = 0;
    while let Ok(header) = BatchHeader::parse(&bytes[end..]) {
        let next = end + header.total_size();
        if next > bytes.len() || header.next_offset() > high_watermark {
            break;
        }
        end = next;
    }
    end
}

/// Loads the index files of a segment and checks them against the log: the batches after the
/// last index entry are walked (headers only) to find the segment's end. `None` when the files
/// cannot be trusted.
fn load_trusted_state(
    dir: &Path,
    base_offset: i64,
    file: &File,
    file_len: u64,
    index_interval: u32,
) -> Result<Option<SegmentState>, LogError> {
    let index_path = fsutil::offset_file(dir, base_offset, INDEX_EXT);
    let time_path = fsutil::offset_file(dir, base_offset, TIME_INDEX_EXT);
    let (Some(index_bytes), Some(time_bytes)) = (
        index::read_index_file(&index_path)?,
        index::read_index_file(&time_path)?,
    ) else {
        tracing::info!(segment = %index_path.display(), "index files missing; rebuilding");
        return Ok(None);
    };
    let parsed = OffsetIndex::from_bytes(&index_bytes, file_len)
        .and_then(|offsets| TimeIndex::from_bytes(&time_bytes).map(|times| (offsets, times)));
    let (offset_index, time_index) = match parsed {
        Ok(indexes) => indexes,
        Err(reason) => {
            tracing::warn!(segment = %index_path.display(), %reason, "malformed index; rebuilding");
            return Ok(None);
        }
    };
    let mut state = SegmentState::empty(base_offset);
    let tail_start = offset_index
        .last()
        .map_or(0, |entry| u64::from(entry.position));
    let indexed_offset = offset_index
        .last()
        .map(|entry| base_offset.saturating_add(i64::from(entry.relative_offset)));
    if let Some(last_time) = time_index.last() {
        state.max_timestamp = last_time.timestamp;
        state.offset_of_max_timestamp =
            base_offset.saturating_add(i64::from(last_time.relative_offset));
    }
    state.offset_index = offset_index;
    state.time_index = time_index;
    state.size = tail_start;
    state.first_batch_timestamp = first_batch_timestamp(file, file_len)?;

    let mut scanner = BatchScanner::new(file, tail_start, file_len, base_offset, false, false);
    loop {
        match scanner.next_batch()? {
            ScanStep::Batch {
                header, position, ..
            } => {
                if position == tail_start && indexed_offset.is_some_and(|o| o != header.base_offset)
                {
                    tracing::warn!(segment = %index_path.display(), "index disagrees with log; rebuilding");
                    return Ok(None);
                }
                state.record_batch(base_offset, &header, position, index_interval);
            }
            ScanStep::Invalid { reason, .. } => {
                tracing::warn!(segment = %index_path.display(), %reason, "log tail is not whole; rescanning");
                return Ok(None);
            }
            ScanStep::End => break,
        }
    }
    if state.offset_of_max_timestamp >= state.next_offset.max(base_offset + 1) {
        tracing::warn!(segment = %time_path.display(), "time index points past the log; rebuilding");
        return Ok(None);
    }
    Ok(Some(state))
}

/// The max timestamp of the first batch of a log file, if it has one.
fn first_batch_timestamp(file: &File, file_len: u64) -> io::Result<Option<i64>> {
    if file_len < BATCH_HEADER_LEN as u64 {
        return Ok(None);
    }
    let mut header = [0u8; BATCH_HEADER_LEN];
    file.read_exact_at(&mut header, 0)?;
    Ok(BatchHeader::parse(&header).ok().map(|h| h.max_timestamp))
}

/// Scans every batch of a segment file, verifying CRCs, and builds its state and indexes.
/// Returns the reason the scan stopped early, if it did; `state.size` is then the end of the
/// last good batch.
fn scan_and_index(
    file: &File,
    base_offset: i64,
    file_len: u64,
    index_interval: u32,
) -> Result<(SegmentState, Option<String>), LogError> {
    let mut state = SegmentState::empty(base_offset);
    let mut scanner = BatchScanner::new(file, 0, file_len, base_offset, false, true);
    loop {
        match scanner.next_batch()? {
            ScanStep::Batch {
                header, position, ..
            } => {
                state.record_batch(base_offset, &header, position, index_interval);
            }
            ScanStep::Invalid { reason, .. } => return Ok((state, Some(reason))),
            ScanStep::End => return Ok((state, None)),
        }
    }
}

/// One step of a [`BatchScanner`].
#[derive(Debug)]
pub(crate) enum ScanStep<'a> {
    /// A whole batch at `position`; `bytes` is the batch when the scanner reads bodies (or
    /// checks CRCs), otherwise empty.
    Batch {
        header: BatchHeader,
        position: u64,
        bytes: &'a [u8],
    },
    /// The end of the scanned range, exactly at a batch boundary.
    End,
    /// The bytes at `position` are not a whole, valid batch.
    Invalid { position: u64, reason: String },
}

/// Walks the batches of a log file between two positions with positioned reads. Header-only
/// scans read 61 bytes per batch; scans that need bodies read in 1 MiB chunks.
#[derive(Debug)]
pub(crate) struct BatchScanner<'f> {
    file: &'f File,
    position: u64,
    end: u64,
    /// Offsets only grow within a log; a batch below this one is corruption.
    min_offset: i64,
    read_bodies: bool,
    verify_crcs: bool,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<'f> BatchScanner<'f> {
    pub fn new(
        file: &'f File,
        position: u64,
        end: u64,
        min_offset: i64,
        read_bodies: bool,
        verify_crcs: bool,
    ) -> BatchScanner<'f> {
        BatchScanner {
            file,
            position,
            end,
            min_offset,
            read_bodies,
            verify_crcs,
            buf: Vec::new(),
            buf_start: 0,
        }
    }

    /// The end of the range being scanned.
    pub fn end(&self) -> u64 {
        self.end
    }

    pub fn next_batch(&mut self) -> io::Result<ScanStep<'_>> {
        let position = self.position;
        let remaining = self.end.saturating_sub(position);
        if remaining == 0 {
            return Ok(ScanStep::End);
        }
        if remaining < BATCH_HEADER_LEN as u64 {
            return Ok(invalid(
                position,
                format!("{remaining} trailing bytes are too few for a batch"),
            ));
        }
        let header_range = self.fill(position, BATCH_HEADER_LEN)?;
        let header = match BatchHeader::parse(&self.buf[header_range]) {
            Ok(header) => header,
            Err(error) => return Ok(invalid(position, error.to_string())),
        };
        let size = header.total_size();
        if size as u64 > remaining {
            return Ok(invalid(
                position,
                format!("batch of {size} bytes is cut short: {remaining} bytes left"),
            ));
        }
        if header.last_offset_delta < 0 {
            let reason = format!("negative last offset delta {}", header.last_offset_delta);
            return Ok(invalid(position, reason));
        }
        if header.base_offset < self.min_offset {
            return Ok(invalid(
                position,
                format!(
                    "batch offset {} goes backwards (expected at least {})",
                    header.base_offset, self.min_offset
                ),
            ));
        }
        let body = if self.read_bodies || self.verify_crcs {
            self.fill(position, size)?
        } else {
            0..0
        };
        if self.verify_crcs {
            if let Err(error) = verify_crc(&header, &self.buf[body.clone()]) {
                return Ok(invalid(position, error.to_string()));
            }
        }
        self.position = position + size as u64;
        self.min_offset = header.next_offset();
        Ok(ScanStep::Batch {
            header,
            position,
            bytes: &self.buf[body],
        })
    }

    /// Makes `len` bytes at `position` available in the buffer and returns their range there.
    /// The caller has checked that they lie before `end`.
    fn fill(&mut self, position: u64, len: usize) -> io::Result<Range<usize>> {
        let buffered_end = self.buf_start + self.buf.len() as u64;
        if position < self.buf_start || position + len as u64 > buffered_end {
            let left = usize::try_from(self.end - position).unwrap_or(usize::MAX);
            let want = if self.read_bodies {
                len.max(SCAN_CHUNK_BYTES).min(left)
            } else {
                len
            };
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, position)?;
            self.buf_start = position;
        }
        // position >= buf_start and the distance is below the buffer length (a usize).
        let start = usize::try_from(position - self.buf_start).unwrap_or(0);
        Ok(start..start + len)
    }
}

fn invalid(position: u64, reason: String) -> ScanStep<'static> {
    ScanStep::Invalid { position, reason }
}

/// Writes a replacement segment (compaction output) next to the live one, building its
/// indexes as it goes.
#[derive(Debug)]
pub(crate) struct SegmentBuilder {
    base_offset: i64,
    index_interval: u32,
    out: BufWriter<File>,
    state: SegmentState,
}

/// The finished output of a [`SegmentBuilder`]: the file (fsynced) and its state.
#[derive(Debug)]
pub(crate) struct BuiltSegment {
    pub file: File,
    pub state: SegmentState,
}

impl SegmentBuilder {
    pub fn create(
        path: &Path,
        base_offset: i64,
        index_interval: u32,
    ) -> io::Result<SegmentBuilder> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(SegmentBuilder {
            base_offset,
            index_interval,
            out: BufWriter::new(file),
            state: SegmentState::empty(base_offset),
        })
    }

    /// Appends one whole batch (`header` describes `bytes`).
    pub fn push(&mut self, header: &BatchHeader, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        let position = self.state.size;
        self.state
            .record_batch(self.base_offset, header, position, self.index_interval);
        Ok(())
    }

    /// Flushes and fsyncs the log file and writes the index files (fsynced) at the given paths.
    pub fn finish(mut self, index_path: &Path, time_index_path: &Path) -> io::Result<BuiltSegment> {
        self.out.flush()?;
        let file = self.out.into_inner().map_err(|error| error.into_error())?;
        file.sync_all()?;
        self.state.push_time_entry(self.base_offset);
        index::write_index_files(
            index_path,
            &self.state.offset_index,
            time_index_path,
            &self.state.time_index,
        )?;
        Ok(BuiltSegment {
            file,
            state: self.state,
        })
    }
}

impl Segment {
    /// Wraps a compacted replacement that was renamed into place at this segment's paths.
    pub fn replaced_by(&self, dir: &Path, built: BuiltSegment) -> Segment {
        Segment::with_state(dir, self.base_offset, built.file, built.state)
    }

    pub fn index_paths(&self) -> (&Path, &Path) {
        (&self.index_path, &self.time_index_path)
    }
}

impl Segment {
    /// The largest batch max timestamp among this segment's batches that end at or below
    /// `end`, with the base offset of the first batch carrying it (ListOffsets
    /// MAX_TIMESTAMP). `None` when no such batch has a timestamp.
    ///
    /// When the whole segment lies below `end` the answer is in memory. Otherwise (the active
    /// segment while appends wait for their fsync) the time index gives the maximum up to the
    /// last offset-index entry below `end`, and only the batch headers after that entry (about
    /// `index.interval.bytes` of batches) are read. That works because every offset-index entry
    /// is made together with a time-index entry for the maximum so far, and time entries only
    /// point at batches already seen: the time entries whose batch lies at or before an indexed
    /// batch are exactly those made up to it, and the last of them is the maximum up to it.
    pub(crate) fn max_timestamp_below(&self, end: i64) -> Result<Option<(i64, i64)>, LogError> {
        let (position, mut best) = {
            let state = read_lock(&self.state);
            if state.next_offset <= end {
                let found = state.max_timestamp != NO_TIMESTAMP;
                return Ok(found.then_some((state.max_timestamp, state.offset_of_max_timestamp)));
            }
            let last_below = end.saturating_sub(1).saturating_sub(self.base_offset);
            if last_below < 0 {
                return Ok(None);
            }
            let last_below = u32::try_from(last_below).unwrap_or(u32::MAX);
            match state.offset_index.lookup(last_below) {
                Some(entry) => {
                    let before = state
                        .time_index
                        .last_at_or_before(entry.relative_offset)
                        .map(|time| {
                            let offset = self
                                .base_offset
                                .saturating_add(i64::from(time.relative_offset));
                            (time.timestamp, offset)
                        });
                    (u64::from(entry.position), before)
                }
                None => (0, None),
            }
        };
        let mut scanner = self.scanner(position, false);
        loop {
            match scanner.next_batch()? {
                ScanStep::End => return Ok(best),
                ScanStep::Invalid { position, reason } => {
                    return Err(self.corruption(position, &reason))
                }
                ScanStep::Batch { header, .. } => {
                    if header.next_offset() > end {
                        return Ok(best);
                    }
                    let raises = best.is_none_or(|(timestamp, _)| header.max_timestamp > timestamp);
                    if header.max_timestamp != NO_TIMESTAMP && raises {
                        best = Some((header.max_timestamp, header.base_offset));
                    }
                }
            }
        }
    }
}
