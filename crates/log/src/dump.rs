//! `freshet log dump <segment>`: a human-readable listing of a segment file and its indexes.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::batch::BatchHeader;
use crate::error::LogError;
use crate::fsutil::{self, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT};
use crate::index::{self, decode_offset_entries, decode_time_entries};
use crate::segment::{BatchScanner, ScanStep};

/// Prints every batch of `log_file` (offsets, record count, position, size, whether the CRC
/// checks out, compression, timestamps, producer fields), where and why the valid data ends if
/// it does before the end of the file, and then the entries of the `.index` and `.timeindex`
/// files beside it.
pub fn dump_segment(log_file: &Path, out: &mut dyn Write) -> Result<(), LogError> {
    let file = File::open(log_file)?;
    let file_len = file.metadata()?.len();
    let name = log_file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let base_offset = fsutil::parse_offset_file(name, LOG_EXT);
    writeln!(out, "Dumping {} ({file_len} bytes)", log_file.display())?;
    dump_batches(&file, file_len, out)?;
    let Some(base_offset) = base_offset else {
        writeln!(
            out,
            "File name is not <base offset>.log; not looking for indexes"
        )?;
        return Ok(());
    };
    let dir = log_file.parent().unwrap_or(Path::new("."));
    dump_offset_index(
        &fsutil::offset_file(dir, base_offset, INDEX_EXT),
        base_offset,
        out,
    )?;
    dump_time_index(
        &fsutil::offset_file(dir, base_offset, TIME_INDEX_EXT),
        base_offset,
        out,
    )
}

fn dump_batches(file: &File, file_len: u64, out: &mut dyn Write) -> Result<(), LogError> {
    // Read bodies (to check CRCs) but do not stop at a bad CRC: a dump shows damage.
    let mut scanner = BatchScanner::new(file, 0, file_len, i64::MIN, true, false);
    let mut batches = 0u64;
    loop {
        match scanner.next_batch()? {
            ScanStep::Batch {
                header,
                position,
                bytes,
            } => {
                batches += 1;
                writeln!(out, "{}", describe_batch(&header, position, bytes))?;
            }
            ScanStep::End => break,
            ScanStep::Invalid { position, reason } => {
                writeln!(
                    out,
                    "INVALID at position {position}: {reason} ({} bytes not shown)",
                    file_len - position
                )?;
                break;
            }
        }
    }
    writeln!(out, "{batches} batches")?;
    Ok(())
}

fn describe_batch(header: &BatchHeader, position: u64, bytes: &[u8]) -> String {
    let crc_ok = crate::batch::verify_crc(header, bytes).is_ok();
    let compression = header.compression().map_or_else(
        |_| "invalid".to_string(),
        |c| format!("{c:?}").to_lowercase(),
    );
    let timestamp_type = if header.has_log_append_time() {
        "log_append"
    } else {
        "create"
    };
    format!(
        "base_offset: {} last_offset: {} count: {} position: {position} size: {} crc: {:#010x} crc_ok: {crc_ok} \
         compression: {compression} timestamp_type: {timestamp_type} base_timestamp: {} max_timestamp: {} \
         producer_id: {} producer_epoch: {} base_sequence: {} transactional: {} control: {}",
        header.base_offset,
        header.last_offset(),
        header.record_count,
        header.total_size(),
        header.crc,
        header.base_timestamp,
        header.max_timestamp,
        header.producer_id,
        header.producer_epoch,
        header.base_sequence,
        header.is_transactional(),
        header.is_control(),
    )
}

fn dump_offset_index(path: &Path, base_offset: i64, out: &mut dyn Write) -> Result<(), LogError> {
    let Some(bytes) = index::read_index_file(path)? else {
        writeln!(out, "Offset index {}: missing", path.display())?;
        return Ok(());
    };
    match decode_offset_entries(&bytes) {
        Ok(entries) => {
            writeln!(
                out,
                "Offset index {}: {} entries",
                path.display(),
                entries.len()
            )?;
            for entry in entries {
                let offset = base_offset.saturating_add(i64::from(entry.relative_offset));
                writeln!(out, "  offset: {offset} position: {}", entry.position)?;
            }
        }
        Err(reason) => writeln!(out, "Offset index {}: malformed: {reason}", path.display())?,
    }
    Ok(())
}

fn dump_time_index(path: &Path, base_offset: i64, out: &mut dyn Write) -> Result<(), LogError> {
    let Some(bytes) = index::read_index_file(path)? else {
        writeln!(out, "Time index {}: missing", path.display())?;
        return Ok(());
    };
    match decode_time_entries(&bytes) {
        Ok(entries) => {
            writeln!(
                out,
                "Time index {}: {} entries",
                path.display(),
                entries.len()
            )?;
            for entry in entries {
                let offset = base_offset.saturating_add(i64::from(entry.relative_offset));
                writeln!(out, "  timestamp: {} offset: {offset}", entry.timestamp)?;
            }
        }
        Err(reason) => writeln!(out, "Time index {}: malformed: {reason}", path.display())?,
    }
    Ok(())
}
