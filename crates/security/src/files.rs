//! Durable JSON stores shared by several processes (the broker and `freshet users`).
//!
//! Every change goes through [`update_json`]: an exclusive `flock` on a sibling `<name>.lock`
//! file serialises writers, the current file is re-read under the lock so no writer loses
//! another's change, and the new content reaches the disk through a fsynced temporary file
//! renamed over the old one (then the directory fsynced), so a crash leaves either the old or
//! the new file, never a torn one. Readers take no lock: a rename is atomic.

use std::fs::{self, DirBuilder, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::FlockOperation;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a store could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not valid JSON for this store: {message}", path.display())]
    Json { path: PathBuf, message: String },
    /// The request itself is unacceptable (a bad user name, too few iterations...): nothing
    /// was written. The message is meant for the client that asked.
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    fn io(path: &Path, source: io::Error) -> Self {
        StoreError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Identifies one version of a file, so a cache can tell that another process replaced it.
///
/// Every write renames a new file into place, so the inode changes; the modification time and
/// length catch the rare reuse of a freed inode number by the next write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    modified: SystemTime,
    len: u64,
    inode: u64,
    device: u64,
}

/// How long after its last modification a file's stamp is trusted to change with its content.
const SETTLE_TIME: Duration = Duration::from_secs(1);

impl FileStamp {
    fn of(metadata: &Metadata) -> Self {
        FileStamp {
            modified: metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            len: metadata.len(),
            inode: metadata.ino(),
            device: metadata.dev(),
        }
    }

    pub fn modified(&self) -> SystemTime {
        self.modified
    }

    /// Whether a cache filled from this version may rely on the stamp alone, checked when the
    /// content is read. File times advance in coarse ticks: a second write within the tick
    /// of a freshly written file could reuse its inode number and keep its length and time,
    /// the "racy" case git also guards against. A cache of a file this young re-reads it
    /// until it has settled.
    pub fn is_settled(&self) -> bool {
        SystemTime::now()
            .duration_since(self.modified)
            .is_ok_and(|age| age >= SETTLE_TIME)
    }
}

/// The stamp of the file at `path` now, or `None` when it does not exist (or cannot be read).
pub fn stamp(path: &Path) -> Option<FileStamp> {
    fs::metadata(path)
        .ok()
        .map(|metadata| FileStamp::of(&metadata))
}

/// Reads the store at `path`; a missing file is an empty store (`T::default()`, no stamp).
///
/// The stamp describes the very file that was read, not whatever is at `path` afterwards.
pub fn read_json<T: DeserializeOwned + Default>(
    path: &Path,
) -> Result<(T, Option<FileStamp>), StoreError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((T::default(), None)),
        Err(e) => return Err(StoreError::io(path, e)),
    };
    let metadata = file.metadata().map_err(|e| StoreError::io(path, e))?;
    let mut text = Vec::new();
    file.read_to_end(&mut text)
        .map_err(|e| StoreError::io(path, e))?;
    let value = serde_json::from_slice(&text).map_err(|e| StoreError::Json {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    Ok((value, Some(FileStamp::of(&metadata))))
}

/// Changes the store at `path` under its lock and writes the result durably.
///
/// `change` sees the current content (re-read under the lock). When it fails, nothing is
/// written and its error is returned. Blocks while another process holds the lock: callers on
/// an async runtime run this on a blocking thread.
pub fn update_json<T, R>(
    path: &Path,
    change: impl FnOnce(&mut T) -> Result<R, StoreError>,
) -> Result<(R, FileStamp), StoreError>
where
    T: DeserializeOwned + Serialize + Default,
{
    let (dir, name) = split_path(path)?;
    create_private_dir(&dir)?;
    let _lock = lock_exclusive(&dir.join(format!("{name}.lock")))?;
    let (mut value, _) = read_json::<T>(path)?;
    let result = change(&mut value)?;
    let text = serde_json::to_vec_pretty(&value).map_err(|e| StoreError::Json {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let stamp = replace_durably(path, &dir, &name, &text)?;
    Ok((result, stamp))
}

/// The directory (`.` for a bare file name) and the file name of `path`.
fn split_path(path: &Path) -> Result<(PathBuf, String), StoreError> {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| {
            StoreError::io(
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "not a file name"),
            )
        })?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name.to_owned()))
}

/// Credentials live here: only the owner may list or enter a directory this creates.
fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StoreError::io(dir, e))
}

/// Holds the exclusive lock until the returned file is dropped (closing it releases `flock`).
fn lock_exclusive(lock_path: &Path) -> Result<File, StoreError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(lock_path)
        .map_err(|e| StoreError::io(lock_path, e))?;
    loop {
        match rustix::fs::flock(&file, FlockOperation::LockExclusive) {
            Ok(()) => return Ok(file),
            Err(rustix::io::Errno::INTR) => continue,
            Err(errno) => return Err(StoreError::io(lock_path, errno.into())),
        }
    }
}

/// Writes `text` to a fresh 0600 temporary file beside `path`, fsyncs it, renames it over
/// `path` and fsyncs the directory so the rename itself survives a crash.
fn replace_durably(
    path: &Path,
    dir: &Path,
    name: &str,
    text: &[u8],
) -> Result<FileStamp, StoreError> {
    let temp_path = dir.join(format!(".{name}.tmp"));
    // A crash mid-write may have left one; removing it lets `create_new` guarantee the mode.
    match fs::remove_file(&temp_path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io(&temp_path, e)),
    }
    let mut temp = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&temp_path)
        .map_err(|e| StoreError::io(&temp_path, e))?;
    temp.write_all(text)
        .and_then(|()| temp.sync_all())
        .map_err(|e| StoreError::io(&temp_path, e))?;
    let stamp = temp
        .metadata()
        .map(|metadata| FileStamp::of(&metadata))
        .map_err(|e| StoreError::io(&temp_path, e))?;
    fs::rename(&temp_path, path).map_err(|e| StoreError::io(path, e))?;
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| StoreError::io(dir, e))?;
    Ok(stamp)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    use super::*;

    type Counters = BTreeMap<String, u64>;

    #[test]
    fn a_missing_file_reads_as_the_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (value, stamp) = read_json::<Counters>(&dir.path().join("none.json")).expect("read");
        assert!(value.is_empty());
        assert_eq!(stamp, None);
    }

    #[test]
    fn updates_persist_in_a_private_file_and_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/store.json");
        let (previous, written) = update_json(&path, |counters: &mut Counters| {
            Ok(counters.insert("a".to_owned(), 1))
        })
        .expect("update");
        assert_eq!(previous, None);
        let (value, stamp) = read_json::<Counters>(&path).expect("read");
        assert_eq!(value.get("a"), Some(&1));
        assert_eq!(stamp, Some(written));
        assert_eq!(super::stamp(&path), Some(written));
        let mode = |p: &Path| fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("nested")), 0o700);
        assert!(!dir.path().join("nested/.store.json.tmp").exists());
    }

    #[test]
    fn a_failed_change_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.json");
        let result = update_json(&path, |counters: &mut Counters| -> Result<(), _> {
            counters.insert("a".to_owned(), 1);
            Err(StoreError::Invalid("no".to_owned()))
        });
        assert!(matches!(result, Err(StoreError::Invalid(_))));
        assert!(!path.exists());
    }

    #[test]
    fn every_write_changes_the_stamp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.json");
        let mut seen = Vec::new();
        for i in 0..5 {
            let ((), stamp) = update_json(&path, |counters: &mut Counters| {
                counters.insert("a".to_owned(), i);
                Ok(())
            })
            .expect("update");
            assert!(!seen.contains(&stamp));
            seen.push(stamp);
        }
    }

    #[test]
    fn invalid_json_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.json");
        fs::write(&path, b"{not json").expect("write");
        let error = read_json::<Counters>(&path).expect_err("invalid");
        assert!(matches!(error, StoreError::Json { .. }));
        assert!(error.to_string().contains("store.json"), "{error}");
        let update = update_json(&path, |_: &mut Counters| Ok(()));
        assert!(matches!(update, Err(StoreError::Json { .. })));
    }

    #[test]
    fn concurrent_writers_lose_no_update() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = Arc::new(dir.path().join("store.json"));
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let path = Arc::clone(&path);
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        update_json(&path, |counters: &mut Counters| {
                            *counters.entry("n".to_owned()).or_default() += 1;
                            Ok(())
                        })
                        .expect("update");
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().expect("writer");
        }
        let (value, _) = read_json::<Counters>(&path).expect("read");
        assert_eq!(value.get("n"), Some(&40));
    }

    #[test]
    fn a_fresh_file_is_not_settled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.json");
        let ((), stamp) = update_json(&path, |_: &mut Counters| Ok(())).expect("update");
        assert!(!stamp.is_settled());
    }
}
