//! File-system helpers: file names, fsync of directories, and crash-safe file replacement.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Extension of segment data files.
pub const LOG_EXT: &str = "log";
/// Extension of offset index files.
pub const INDEX_EXT: &str = "index";
/// Extension of time index files.
pub const TIME_INDEX_EXT: &str = "timeindex";
/// Extension of producer-state snapshots.
pub const SNAPSHOT_EXT: &str = "snapshot";
/// Suffix of files being written by compaction; removed on open.
pub const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix of files being written before an atomic rename; removed on open.
pub const TMP_SUFFIX: &str = ".tmp";

/// `<dir>/<20-digit zero-padded offset>.<ext>`, Kafka's naming.
pub fn offset_file(dir: &Path, offset: i64, ext: &str) -> PathBuf {
    dir.join(format!("{offset:020}.{ext}"))
}

/// The offset a file is named by, if its name is `<digits>.<ext>`.
pub fn parse_offset_file(name: &str, ext: &str) -> Option<i64> {
    let stem = name.strip_suffix(ext)?.strip_suffix('.')?;
    if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// `path` with `suffix` appended to its file name.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Makes the directory's entries (created, renamed, removed files) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates or truncates `path`, writes `bytes` and fsyncs the file (not the directory).
pub fn write_file_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Replaces `path` with `bytes` so that after a crash it holds either the old or the new
/// content: write a temp file, fsync it, rename it over `path`, fsync the directory.
pub fn replace_file_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = with_suffix(path, TMP_SUFFIX);
    write_file_synced(&tmp, bytes)?;
    fs::rename(&tmp, path)?;
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Removes a file; a file that is already gone is fine.
pub fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let path = offset_file(Path::new("/x"), 1234, LOG_EXT);
        assert_eq!(path, Path::new("/x/00000000000000001234.log"));
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert_eq!(parse_offset_file(name, LOG_EXT), Some(1234));
        assert_eq!(parse_offset_file(name, INDEX_EXT), None);
        assert_eq!(parse_offset_file("abc.log", LOG_EXT), None);
        assert_eq!(parse_offset_file(".log", LOG_EXT), None);
        assert_eq!(
            parse_offset_file("00000000000000001234.log.cleaned", LOG_EXT),
            None
        );
    }

    #[test]
    fn atomic_replace_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("checkpoint");
        replace_file_atomically(&path, b"one").expect("first write");
        replace_file_atomically(&path, b"two").expect("second write");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        assert!(!with_suffix(&path, TMP_SUFFIX).exists());
    }
}
