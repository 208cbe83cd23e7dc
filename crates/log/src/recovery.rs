//! Opening a partition log: tidy the directory, recover every segment, rebuild producer state.
//!
//! 1. Leftovers of interrupted work are removed: `*.cleaned` (compaction output that was not
//!    renamed into place yet), `*.tmp` (checkpoint or snapshot not renamed yet) and index files
//!    whose `.log` is gone (a deletion that stopped half way).
//! 2. Segments are recovered in base-offset order. Closed segments were fsynced when they
//!    rolled, so their index files are trusted after a cheap check (see
//!    [`Segment::recover`]); the active segment is scanned batch by batch with CRCs and cut at
//!    the first torn or corrupt batch, unless the clean-shutdown marker says the last close
//!    wrote everything out.
//! 3. The active segment is fsynced, so everything recovery kept is durable and the high
//!    watermark can start at the log end offset.
//! 4. Producer state comes from the newest snapshot plus a replay of the batch headers after
//!    it (see `producer.rs`). Aborted transactions whose markers lie below that snapshot come
//!    from the segments' `.txnindex` files; the replay rebuilds the later ones from the
//!    markers it meets (see `txn.rs`).

use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use crate::batch::BatchHeader;
use crate::config::LogConfig;
use crate::error::LogError;
use crate::fsutil::{
    self, CLEANED_SUFFIX, INDEX_EXT, LOG_EXT, SNAPSHOT_EXT, TIME_INDEX_EXT, TMP_SUFFIX,
};
use crate::partition::{
    now_ms, PartitionLog, SegmentList, WriterState, CLEAN_SHUTDOWN_FILE, LOG_START_CHECKPOINT_FILE,
};
use crate::producer::ProducerStates;
use crate::segment::{ScanStep, Segment, NO_TIMESTAMP};
use crate::txn::{self, AbortedIndex, AbortedTxn, ControlType, TxnMarker, TXN_INDEX_EXT};

impl PartitionLog {
    /// Opens the partition directory, creating it if missing, and runs recovery.
    pub fn open(dir: &Path, config: LogConfig) -> Result<PartitionLog, LogError> {
        let created = !dir.is_dir();
        create_partition_dir(dir)?;
        let segment_bases = tidy_directory(dir)?;
        let clean = dir.join(CLEAN_SHUTDOWN_FILE).exists();
        let checkpoint = read_log_start_checkpoint(dir)?;
        let segments =
            recover_segments(dir, &segment_bases, &config, clean, checkpoint.unwrap_or(0))?;
        let active = segments.active.clone();
        // Recovery may have read data that only ever reached the page cache (the process died,
        // not the machine); make it durable before anyone reads it.
        active.sync()?;
        let log_end_offset = active.next_offset();
        let first_base = segments.closed.first().unwrap_or(&active).base_offset();
        let log_start_offset = checkpoint.unwrap_or(0).max(first_base).min(log_end_offset);
        let (producers, mut aborted) = rebuild_producer_state(dir, &segments, log_end_offset)?;
        aborted.forget_below(log_start_offset);
        let active_since_ms = active
            .state()
            .first_batch_timestamp
            .filter(|ts| *ts != NO_TIMESTAMP)
            .map(|ts| ts.min(now_ms()));
        // A new partition has nothing to report; an existing one says what recovery found.
        if created {
            tracing::debug!(dir = %dir.display(), "created partition log");
        } else {
            tracing::info!(
                dir = %dir.display(),
                segments = segments.closed.len() + 1,
                log_start_offset,
                log_end_offset,
                clean,
                "opened partition log"
            );
        }
        let writer = WriterState {
            producers,
            clean_marker: clean,
            active_since_ms,
        };
        Ok(PartitionLog::from_parts(
            dir.to_path_buf(),
            config,
            segments,
            writer,
            aborted,
            log_start_offset,
            log_end_offset,
        ))
    }
}

/// Creates the directory if needed; a new directory entry is made durable in its parent.
fn create_partition_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    fsutil::sync_dir(dir)?;
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => fsutil::sync_dir(parent),
        _ => Ok(()),
    }
}

/// Removes leftovers of interrupted operations and returns the base offsets of the segments,
/// sorted.
fn tidy_directory(dir: &Path) -> io::Result<Vec<i64>> {
    let names: Vec<String> = fs::read_dir(dir)?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    let mut bases: Vec<i64> = names
        .iter()
        .filter_map(|name| fsutil::parse_offset_file(name, LOG_EXT))
        .collect();
    bases.sort_unstable();
    let mut removed_any = false;
    for name in &names {
        let leftover = name.ends_with(CLEANED_SUFFIX) || name.ends_with(TMP_SUFFIX);
        let orphan = [INDEX_EXT, TIME_INDEX_EXT, TXN_INDEX_EXT]
            .iter()
            .filter_map(|ext| fsutil::parse_offset_file(name, ext))
            .any(|base| bases.binary_search(&base).is_err());
        if leftover || orphan {
            tracing::info!(file = %name, dir = %dir.display(), "removing leftover file");
            fsutil::remove_if_exists(&dir.join(name))?;
            removed_any = true;
        }
    }
    if removed_any {
        fsutil::sync_dir(dir)?;
    }
    Ok(bases)
}

/// Reads the DeleteRecords checkpoint, if any. A file that does not parse is reported, not
/// fatal: the log start offset then falls back to the first segment.
fn read_log_start_checkpoint(dir: &Path) -> io::Result<Option<i64>> {
    let path = dir.join(LOG_START_CHECKPOINT_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let offset = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|value| value.get("log_start_offset")?.as_i64());
    if offset.is_none() {
        tracing::warn!(file = %path.display(), "ignoring unreadable log start checkpoint");
    }
    Ok(offset)
}

/// Recovers every segment (see the module docs); creates the first segment of a new log at
/// `empty_base`.
fn recover_segments(
    dir: &Path,
    bases: &[i64],
    config: &LogConfig,
    clean: bool,
    empty_base: i64,
) -> Result<SegmentList, LogError> {
    let mut recovered = Vec::with_capacity(bases.len());
    for (i, &base) in bases.iter().enumerate() {
        let is_active = i + 1 == bases.len();
        let outcome =
            Segment::recover(dir, base, config.index_interval_bytes, clean || !is_active)?;
        if outcome.truncated_bytes > 0 && !is_active {
            tracing::warn!(segment = %outcome.segment.log_path().display(), "a closed segment had a damaged tail");
        }
        if outcome.rebuilt_indexes && !is_active {
            // Closed segments get their rebuilt indexes written so the next open is quick.
            outcome.segment.write_indexes()?;
        }
        recovered.push(Arc::new(outcome.segment));
    }
    let active = match recovered.pop() {
        Some(active) => active,
        None => {
            let segment = Segment::create(dir, empty_base.max(0))?;
            fsutil::sync_dir(dir)?;
            Arc::new(segment)
        }
    };
    warn_about_overlaps(&recovered, &active);
    Ok(SegmentList {
        closed: recovered,
        active,
    })
}

fn warn_about_overlaps(closed: &[Arc<Segment>], active: &Arc<Segment>) {
    let all: Vec<&Arc<Segment>> = closed.iter().chain(std::iter::once(active)).collect();
    for pair in all.windows(2) {
        if pair[0].next_offset() > pair[1].base_offset() {
            tracing::warn!(
                segment = %pair[0].log_path().display(),
                next_offset = pair[0].next_offset(),
                following_base = pair[1].base_offset(),
                "segments overlap; reads use the later segment for the overlapping offsets"
            );
        }
    }
}

/// Offsets of the producer-state snapshots in `dir`.
pub(crate) fn snapshot_offsets(dir: &Path) -> io::Result<Vec<i64>> {
    Ok(fs::read_dir(dir)?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|name| fsutil::parse_offset_file(&name, SNAPSHOT_EXT))
        .collect())
}

/// Loads the newest usable snapshot at or below the log end offset (deleting newer ones, which
/// describe data lost to truncation) and replays the batch headers after it. Returns the
/// producer state and the aborted transactions: those below the snapshot from the
/// `.txnindex` files, the later ones from the replayed markers.
fn rebuild_producer_state(
    dir: &Path,
    segments: &SegmentList,
    log_end_offset: i64,
) -> Result<(ProducerStates, AbortedIndex), LogError> {
    let mut offsets = snapshot_offsets(dir)?;
    offsets.sort_unstable_by(|a, b| b.cmp(a));
    let mut loaded = None;
    for offset in offsets {
        let path = fsutil::offset_file(dir, offset, SNAPSHOT_EXT);
        if offset > log_end_offset {
            tracing::info!(snapshot = %path.display(), "removing snapshot beyond the log end");
            fsutil::remove_if_exists(&path)?;
            continue;
        }
        match ProducerStates::from_snapshot(&fs::read(&path)?) {
            Ok(snapshot) => {
                loaded = Some(snapshot);
                break;
            }
            Err(reason) => {
                tracing::warn!(snapshot = %path.display(), %reason, "ignoring unreadable snapshot")
            }
        }
    }
    let (replay_from, mut producers) = loaded.unwrap_or_default();
    let mut aborted = read_aborted_below(dir, segments, replay_from)?;
    replay_headers(segments, replay_from, &mut producers, &mut aborted)?;
    Ok((producers, aborted))
}

/// The aborted transactions the segments' `.txnindex` files hold with markers below
/// `offset`; the replay from `offset` on finds the rest (a file may be older or newer than
/// the snapshot the replay starts from).
fn read_aborted_below(
    dir: &Path,
    segments: &SegmentList,
    offset: i64,
) -> Result<AbortedIndex, LogError> {
    let mut aborted = AbortedIndex::default();
    for segment in segments.iter() {
        let path = fsutil::offset_file(dir, segment.base_offset(), TXN_INDEX_EXT);
        let entries = txn::read_txn_index(&path)?;
        aborted.extend(entries.into_iter().filter(|e| e.last_offset < offset));
    }
    Ok(aborted)
}

/// Feeds the headers of every batch at or after `from` to the producer state (header-only
/// positioned reads).
fn replay_headers(
    segments: &SegmentList,
    from: i64,
    producers: &mut ProducerStates,
    aborted: &mut AbortedIndex,
) -> Result<(), LogError> {
    for segment in segments
        .iter()
        .filter(|segment| segment.next_offset() > from)
    {
        let mut scanner = segment.scanner_near(from, false);
        loop {
            match scanner.next_batch()? {
                ScanStep::Batch {
                    header, position, ..
                } if header.base_offset >= from && header.is_control() => {
                    replay_marker(segment, &header, position, producers, aborted)?
                }
                ScanStep::Batch { header, .. } if header.base_offset >= from => {
                    producers.replay(&header)
                }
                ScanStep::Batch { .. } => {}
                ScanStep::End => break,
                ScanStep::Invalid { position, reason } => {
                    return Err(LogError::corrupt(format!(
                        "segment {} at position {position}: {reason}",
                        segment.log_path().display()
                    )))
                }
            }
        }
    }
    Ok(())
}

/// Largest control batch read back during replay; a marker is under a hundred bytes.
const MAX_CONTROL_BATCH_BYTES: usize = 64 * 1024;

/// Replays a control batch: a commit or abort marker closes its producer's transaction, and
/// an abort goes into the aborted index as it did when it was written.
fn replay_marker(
    segment: &Segment,
    header: &BatchHeader,
    position: u64,
    producers: &mut ProducerStates,
    aborted: &mut AbortedIndex,
) -> Result<(), LogError> {
    let size = header.total_size();
    if size > MAX_CONTROL_BATCH_BYTES {
        tracing::warn!(
            offset = header.base_offset,
            size,
            "skipping an oversized control batch"
        );
        return Ok(());
    }
    let mut bytes = vec![0u8; size];
    segment.file().read_exact_at(&mut bytes, position)?;
    let Some(control) = txn::marker_type(header, &bytes) else {
        return Ok(());
    };
    let marker = TxnMarker {
        producer_id: header.producer_id,
        producer_epoch: header.producer_epoch,
        coordinator_epoch: -1,
        control,
    };
    let first = producers.end_transaction(&marker);
    if let (Some(first_offset), ControlType::Abort) = (first, control) {
        aborted.push(AbortedTxn {
            producer_id: header.producer_id,
            first_offset,
            last_offset: header.base_offset,
            last_stable_offset: producers
                .first_unstable_offset()
                .unwrap_or(header.base_offset + 1),
        });
    }
    Ok(())
}
