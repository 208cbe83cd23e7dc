//! The durable transaction state log: `<data-dir>/transactions/state.log`, what Kafka keeps in
//! its `__transaction_state` topic.
//!
//! Every change of a transactional id appends its whole [`TxnMetadata`] as one frame
//! (`length u32 | crc32c u32 | JSON`, big-endian), synced at once or with the next synced
//! write as the coordinator asks, so the last frame of each id is its state (a `Dead` frame is a
//! tombstone: the id is gone). Opening replays the file and cuts a torn tail
//! (a frame a crash interrupted; it was never acknowledged). When the file holds more than
//! [`REWRITE_FACTOR`] frames per live id (and at least [`REWRITE_MIN_FRAMES`]), it is rewritten
//! with one frame per id: temporary file, fsync, rename, directory fsync.
//!
//! Writes are blocking: callers run them on blocking threads. Writers that want durability
//! at the same moment share one fdatasync (group commit): with several producers committing
//! at once, each waits for about one fsync instead of queueing behind the others'.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::state::{TxnMetadata, TxnState};

const DIR_NAME: &str = "transactions";
const FILE_NAME: &str = "state.log";
const REWRITE_NAME: &str = "state.log.rewrite";
/// Frames per live transactional id past which the file is rewritten.
const REWRITE_FACTOR: usize = 8;
const REWRITE_MIN_FRAMES: usize = 1024;
/// A frame longer than this is corruption, not a state (states are well under a megabyte
/// unless a transaction spans tens of thousands of partitions).
const MAX_FRAME_BYTES: usize = 64 << 20;

/// Crash point (never aborts by itself): frames written without a sync are dropped, as a
/// machine crash may drop them, for a test that then kills the process.
const UNSYNCED_LOST_CRASH_POINT: &str = "txn-state-unsynced-lost";

/// When a write must be durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sync {
    /// Before `write` returns.
    Now,
    /// With the next `Now` write (or never, if the process dies first).
    Later,
}

/// The state log, open for appending.
#[derive(Debug)]
pub struct TxnStore {
    dir: PathBuf,
    file: Mutex<StoreFile>,
    /// Frames known durable, counted as [`StoreFile::appended`] counts them. Held while
    /// syncing, so writers that arrive meanwhile wait and then find their frame covered.
    durable: Mutex<u64>,
}

#[derive(Debug)]
struct StoreFile {
    file: Arc<File>,
    frames: usize,
    /// Frames appended since opening (not reset by a rewrite).
    appended: u64,
    live: BTreeMap<String, TxnMetadata>,
}

impl TxnStore {
    /// Opens (creating) the log under `data_dir` and returns it with the last state of every
    /// transactional id.
    pub fn open(data_dir: &Path) -> io::Result<(TxnStore, Vec<TxnMetadata>)> {
        let dir = data_dir.join(DIR_NAME);
        if !dir.is_dir() {
            fs::create_dir_all(&dir)?;
            crate::topics::sync_dir(data_dir)?;
        }
        let path = dir.join(FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (frames, good_len) = decode_frames(&bytes);
        if good_len < bytes.len() {
            tracing::warn!(
                file = %path.display(),
                kept = good_len,
                dropped = bytes.len() - good_len,
                "cutting a torn tail off the transaction state log"
            );
            file.set_len(good_len as u64)?;
            file.sync_all()?;
        }
        let mut live = BTreeMap::new();
        for meta in &frames {
            remember(&mut live, meta);
        }
        crate::topics::sync_dir(&dir)?;
        let states = live.values().cloned().collect();
        let store = TxnStore {
            dir,
            file: Mutex::new(StoreFile {
                file: Arc::new(file),
                frames: frames.len(),
                appended: 0,
                live,
            }),
            durable: Mutex::new(0),
        };
        Ok((store, states))
    }

    /// Appends `meta`, durably at once or with the next durable write.
    pub fn write(&self, meta: &TxnMetadata, sync: Sync) -> io::Result<()> {
        if sync == Sync::Later && crate::failpoint::armed(UNSYNCED_LOST_CRASH_POINT) {
            // The crash test's machine crash, which would lose this unsynced frame.
            return Ok(());
        }
        let frame = self.append(meta)?;
        if sync == Sync::Now {
            self.sync_through(frame)?;
        }
        Ok(())
    }

    /// [`TxnStore::write`] of a [`Sync::Later`] frame for a caller on an async worker: appends
    /// only when that is a plain write to the page cache (nobody holds the file, no rewrite
    /// is due) and returns whether it did; otherwise the caller writes on a blocking thread.
    pub fn try_write_later(&self, meta: &TxnMetadata) -> io::Result<bool> {
        if crate::failpoint::armed(UNSYNCED_LOST_CRASH_POINT) {
            return Ok(true);
        }
        let mut store = match self.file.try_lock() {
            Ok(store) => store,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(false),
        };
        if store.frames + 1 >= REWRITE_MIN_FRAMES
            && store.frames + 1 > REWRITE_FACTOR * store.live.len().max(1)
        {
            return Ok(false);
        }
        Self::append_locked(&mut store, meta)?;
        Ok(true)
    }

    /// Appends `meta`'s frame to the file under its lock.
    fn append_locked(store: &mut StoreFile, meta: &TxnMetadata) -> io::Result<u64> {
        (&*store.file).write_all(&encode_frame(meta))?;
        store.frames += 1;
        store.appended += 1;
        remember(&mut store.live, meta);
        Ok(store.appended)
    }

    /// Appends `meta` and returns its frame's number.
    fn append(&self, meta: &TxnMetadata) -> io::Result<u64> {
        let mut store = self.lock_file();
        Self::append_locked(&mut store, meta)?;
        if store.frames >= REWRITE_MIN_FRAMES && store.frames > REWRITE_FACTOR * store.live.len() {
            self.rewrite(&mut store)?;
        }
        Ok(store.appended)
    }

    /// Returns once frame number `frame` is durable, syncing every frame appended so far
    /// unless a sync already covered it.
    fn sync_through(&self, frame: u64) -> io::Result<()> {
        let mut durable = self.durable.lock().unwrap_or_else(|e| e.into_inner());
        if *durable >= frame {
            return Ok(());
        }
        let (file, appended) = {
            let store = self.lock_file();
            (store.file.clone(), store.appended)
        };
        // A rewrite may have replaced the file since: it synced the new one whole, so
        // syncing the old handle is then merely redundant.
        file.sync_data()?;
        *durable = appended;
        Ok(())
    }

    fn lock_file(&self) -> std::sync::MutexGuard<'_, StoreFile> {
        self.file.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the file with one frame per transactional id.
    fn rewrite(&self, store: &mut StoreFile) -> io::Result<()> {
        let tmp = self.dir.join(REWRITE_NAME);
        let mut out = File::create(&tmp)?;
        for meta in store.live.values() {
            out.write_all(&encode_frame(meta))?;
        }
        out.sync_all()?;
        let path = self.dir.join(FILE_NAME);
        fs::rename(&tmp, &path)?;
        crate::topics::sync_dir(&self.dir)?;
        store.file = Arc::new(OpenOptions::new().append(true).open(&path)?);
        store.frames = store.live.len();
        Ok(())
    }
}

/// Makes `meta` its id's state in `live`, or removes the id for a tombstone.
fn remember(live: &mut BTreeMap<String, TxnMetadata>, meta: &TxnMetadata) {
    if meta.state == TxnState::Dead {
        live.remove(&meta.transactional_id);
    } else {
        live.insert(meta.transactional_id.clone(), meta.clone());
    }
}

fn encode_frame(meta: &TxnMetadata) -> Vec<u8> {
    // Serialising plain structs of strings and integers cannot fail.
    let body = serde_json::to_vec(meta).unwrap_or_default();
    let mut frame = Vec::with_capacity(body.len() + 8);
    frame.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    frame.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// The states of every whole, valid frame, and the length of the prefix they fill.
fn decode_frames(bytes: &[u8]) -> (Vec<TxnMetadata>, usize) {
    let mut states = Vec::new();
    let mut position = 0;
    while let Some(head) = bytes.get(position..position + 8) {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_FRAME_BYTES {
            break;
        }
        let Some(body) = bytes.get(position + 8..position + 8 + len) else {
            break;
        };
        if crc32c::crc32c(body) != crc {
            break;
        }
        let Ok(meta) = serde_json::from_slice::<TxnMetadata>(body) else {
            break;
        };
        states.push(meta);
        position += 8 + len;
    }
    (states, position)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: &str, epoch: i16) -> TxnMetadata {
        let mut meta = TxnMetadata::new(id, 7, 60_000, 1);
        meta.producer_epoch = epoch;
        meta
    }

    #[test]
    fn the_last_state_of_each_id_survives_reopening_and_a_torn_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (store, states) = TxnStore::open(dir.path()).expect("open");
            assert!(states.is_empty());
            store.write(&meta("a", 0), Sync::Now).expect("write");
            store.write(&meta("b", 0), Sync::Later).expect("write");
            let mut ongoing = meta("a", 1);
            ongoing.state = TxnState::Ongoing;
            store.write(&ongoing, Sync::Now).expect("write");
        }
        let path = dir.path().join(DIR_NAME).join(FILE_NAME);
        let mut file = OpenOptions::new().append(true).open(&path).expect("file");
        file.write_all(&encode_frame(&meta("a", 9))[..20])
            .expect("torn");
        drop(file);
        let (_, states) = TxnStore::open(dir.path()).expect("reopen");
        let a = states
            .iter()
            .find(|m| m.transactional_id == "a")
            .expect("a");
        assert_eq!((a.producer_epoch, a.state), (1, TxnState::Ongoing));
        assert_eq!(states.len(), 2);
    }

    #[test]
    fn frames_written_on_the_async_path_and_plans_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (store, _) = TxnStore::open(dir.path()).expect("open");
            let mut planned = meta("a", 2);
            planned.state = TxnState::CompleteCommit;
            planned.markers = Some(super::super::state::MarkerPlan {
                producer_id: 7,
                producer_epoch: 2,
                commit: true,
                partitions: vec![super::super::state::PlannedMarker {
                    topic: "t".to_owned(),
                    partition: 1,
                    topic_id: "id".to_owned(),
                    end_offset: 10,
                    marker_end: 11,
                }],
                needs_repair: false,
            });
            assert!(store.try_write_later(&planned).expect("write"));
            store.write(&meta("b", 0), Sync::Now).expect("sync");
        }
        let (_, states) = TxnStore::open(dir.path()).expect("reopen");
        let a = states
            .iter()
            .find(|m| m.transactional_id == "a")
            .expect("a");
        let plan = a.markers.as_ref().expect("the plan");
        assert_eq!((plan.partitions[0].end_offset, plan.commit), (10, true));
    }

    #[test]
    fn a_state_written_before_marker_plans_reads_without_one() {
        let old = br#"{"transactional_id":"a","producer_id":7,"producer_epoch":1,"timeout_ms":60000,"state":"PrepareCommit","partitions":[["t",0]],"groups":[],"txn_start_ms":1,"last_update_ms":2}"#;
        let meta: TxnMetadata = serde_json::from_slice(old).expect("decode");
        assert_eq!((meta.state, meta.markers), (TxnState::PrepareCommit, None));
    }

    #[test]
    fn the_file_is_rewritten_when_it_is_mostly_history() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = TxnStore::open(dir.path()).expect("open");
        for epoch in 0..(REWRITE_MIN_FRAMES as i16 + 10) {
            store.write(&meta("a", epoch), Sync::Now).expect("write");
        }
        let path = dir.path().join(DIR_NAME).join(FILE_NAME);
        let frames = decode_frames(&fs::read(&path).expect("read")).0.len();
        assert!(frames < 20, "{frames} frames after rewriting");
        drop(store);
        let (_, states) = TxnStore::open(dir.path()).expect("reopen");
        assert_eq!(states[0].producer_epoch, REWRITE_MIN_FRAMES as i16 + 9);
    }

    #[test]
    fn concurrent_durable_writes_all_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = TxnStore::open(dir.path()).expect("open");
        std::thread::scope(|scope| {
            for writer in 0..4 {
                let store = &store;
                scope.spawn(move || {
                    for epoch in 0..50 {
                        store
                            .write(&meta(&format!("id-{writer}"), epoch), Sync::Now)
                            .expect("write");
                    }
                });
            }
        });
        drop(store);
        let (_, states) = TxnStore::open(dir.path()).expect("reopen");
        assert_eq!(states.len(), 4);
        assert!(states.iter().all(|m| m.producer_epoch == 49), "{states:?}");
    }

    #[test]
    fn a_tombstone_removes_its_id_on_reopening_and_from_rewrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = TxnStore::open(dir.path()).expect("open");
        store.write(&meta("kept", 0), Sync::Now).expect("write");
        store.write(&meta("gone", 0), Sync::Now).expect("write");
        let mut dead = meta("gone", 0);
        dead.state = TxnState::Dead;
        store.write(&dead, Sync::Now).expect("tombstone");
        drop(store);
        let (store, states) = TxnStore::open(dir.path()).expect("reopen");
        let ids: Vec<&str> = states.iter().map(|m| m.transactional_id.as_str()).collect();
        assert_eq!(ids, vec!["kept"]);
        for epoch in 0..(REWRITE_MIN_FRAMES as i16 + 10) {
            store.write(&meta("kept", epoch), Sync::Now).expect("write");
        }
        let path = dir.path().join(DIR_NAME).join(FILE_NAME);
        let frames = decode_frames(&fs::read(&path).expect("read")).0;
        assert!(
            frames.iter().all(|m| m.transactional_id == "kept"),
            "{frames:?}"
        );
    }
}
