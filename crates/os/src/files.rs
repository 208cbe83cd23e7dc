//! Durable files: what survives a crash is exactly what these functions made durable.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Suffix of the temporary file [`replace_file_atomically`] writes before its rename.
pub const TMP_SUFFIX: &str = ".tmp";

/// `path` with `suffix` appended to its file name.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// Makes the directory's entries (created, renamed, removed files) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(feature = "stall")]
    crate::stall::wait_if_stalled(dir);
    File::open(dir)?.sync_all()
}

/// Creates or truncates `path`, writes `bytes` and fsyncs the file (not the directory).
pub fn write_file_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    #[cfg(feature = "stall")]
    crate::stall::wait_if_stalled(path);
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
    fn atomic_replace_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("checkpoint");
        replace_file_atomically(&path, b"one").expect("first write");
        replace_file_atomically(&path, b"two").expect("second write");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        assert!(!with_suffix(&path, TMP_SUFFIX).exists());
    }

    #[test]
    fn removing_a_missing_file_is_fine() {
        let dir = tempfile::tempdir().expect("tempdir");
        remove_if_exists(&dir.path().join("never")).expect("missing is fine");
    }
}
