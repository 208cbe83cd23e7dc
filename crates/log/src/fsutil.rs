//! File-system helpers: file names, fsync of directories, and crash-safe file replacement.

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
pub use freshet_os::files::TMP_SUFFIX;

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

pub use freshet_os::files::{
    remove_if_exists, replace_file_atomically, sync_dir, with_suffix, write_file_synced,
};

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
}
