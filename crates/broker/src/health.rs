//! Degraded states: trouble the broker cannot fix by itself, made visible once.
//!
//! Two conditions, each an *episode* with a start and an end:
//!
//! - **`disk_full`**: a write to the data directory failed with ENOSPC or EDQUOT. Appends
//!   that do not fit answer KAFKA_STORAGE_ERROR (nothing acknowledged is lost: a failed write
//!   is cut off and never acknowledged), and topic creation is refused, because a topic whose
//!   first write cannot land helps nobody. While the disk is full a probe writes and fsyncs
//!   [`PROBE_BYTES`] in the data directory every [`PROBE_INTERVAL`]; the episode ends when one
//!   succeeds. A probe asks the real question (can this process write there now?), so it
//!   also sees quotas, which free-space counts do not.
//! - **`log_poisoned`**: partition logs that are read-only after a failed fsync (see
//!   `freshet_log`: retrying an fsync after an error can silently lose data). This lasts
//!   until the topic is deleted or the broker restarts, which recovers the log from disk.
//!
//! An episode is logged at ERROR when it starts and at INFO when it ends, and counted; the
//! requests it fails in the meantime log at DEBUG only, so a full disk under load is one
//! ERROR line, not one per request. [`Health::conditions`] is what `/healthz` and `/metrics`
//! report.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use freshet_log::LogError;

use crate::broker::now_ms;
use crate::topics::TopicError;

/// How much the disk-full probe writes: one default-sized record batch (`max.message.bytes`
/// is 1 MiB by default), so "room again" means room for a typical produce, not for 4 bytes.
pub const PROBE_BYTES: usize = 1024 * 1024;
/// How often the probe runs while the disk is full.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// The probe's file, in the data directory; removed after every probe.
const PROBE_FILE: &str = ".disk-space-probe";

/// Why the broker is degraded; the label of `freshet_broker_degraded{reason=...}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    DiskFull,
    LogPoisoned,
}

impl Reason {
    pub const ALL: [Reason; 2] = [Reason::DiskFull, Reason::LogPoisoned];

    /// The stable machine-readable name (metric label, `/healthz` reason).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::DiskFull => "disk_full",
            Reason::LogPoisoned => "log_poisoned",
        }
    }
}

/// One condition in effect now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub reason: Reason,
    /// What happened and what it means, for people.
    pub detail: String,
    /// When the episode began, in milliseconds since the Unix epoch.
    pub since_ms: i64,
}

/// Whether an I/O error means the disk (or the user's quota on it) is full.
pub fn is_disk_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// The broker's degraded conditions. Cheap to share: the disk probe holds only a weak
/// reference, so it stops when the broker is dropped.
#[derive(Debug)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    data_dir: PathBuf,
    state: Mutex<State>,
    /// A probe task is running.
    probing: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    disk_full: Option<DiskFull>,
    /// Read-only partitions (`topic`, partition) with the failed fsync's error.
    poisoned: BTreeMap<(String, i32), String>,
    poisoned_since_ms: Option<i64>,
    disk_full_episodes: u64,
    poisoned_episodes: u64,
}

#[derive(Debug)]
struct DiskFull {
    since_ms: i64,
    /// The write that found the disk full, and its error.
    cause: String,
}

impl Health {
    /// Conditions of a broker whose data lives in `data_dir`; none yet.
    pub fn new(data_dir: &Path) -> Health {
        Health {
            inner: Arc::new(Inner {
                data_dir: data_dir.to_path_buf(),
                state: Mutex::new(State::default()),
                probing: AtomicBool::new(false),
            }),
        }
    }

    /// Records a failed storage operation (`what`, e.g. "produce to events-0"). Returns whether
    /// a degraded condition explains it, so the caller can log it at DEBUG instead of ERROR.
    pub fn note_io_error(&self, what: &str, error: &io::Error) -> bool {
        if !is_disk_full(error) {
            return false;
        }
        {
            let mut state = self.inner.lock();
            if state.disk_full.is_some() {
                return true;
            }
            state.disk_full = Some(DiskFull {
                since_ms: now_ms(),
                cause: format!("{what}: {error}"),
            });
            state.disk_full_episodes += 1;
        }
        tracing::error!(
            data_dir = %self.inner.data_dir.display(),
            %error,
            "disk full ({what}): produce requests that need space answer KAFKA_STORAGE_ERROR \
             and topic creation is refused until space is freed; nothing acknowledged is lost"
        );
        self.start_probing();
        true
    }

    /// [`Health::note_io_error`] for a log's error. A poisoned log's errors count as explained
    /// once [`Health::note_partition`] or [`Health::refresh_poisoned`] has seen the log.
    pub fn note_log_error(&self, what: &str, error: &LogError) -> bool {
        match error {
            LogError::Storage(io) => self.note_io_error(what, io),
            _ => false,
        }
    }

    /// [`Health::note_io_error`] for a topic operation's error.
    pub fn note_topic_error(&self, what: &str, error: &TopicError) -> bool {
        match error {
            TopicError::Io(io) => self.note_io_error(what, io),
            TopicError::Log(log) => self.note_log_error(what, log),
            _ => false,
        }
    }

    /// Records whether one partition's log is read-only (`poisoned` is its failed fsync's
    /// error); returns whether it is.
    pub fn note_partition(&self, topic: &str, partition: i32, poisoned: Option<String>) -> bool {
        let Some(cause) = poisoned else {
            return false;
        };
        let mut state = self.inner.lock();
        let key = (topic.to_string(), partition);
        if !state.poisoned.contains_key(&key) {
            state.add_poisoned(key, cause);
        }
        true
    }

    /// Replaces the set of read-only partitions with `poisoned` (every partition of every
    /// topic that exists now, with its failed fsync's error): new ones are logged, and the
    /// episode ends when none is left (their topics were deleted).
    pub fn refresh_poisoned(&self, poisoned: impl IntoIterator<Item = ((String, i32), String)>) {
        let current: BTreeMap<(String, i32), String> = poisoned.into_iter().collect();
        let mut state = self.inner.lock();
        state.poisoned.retain(|key, _| current.contains_key(key));
        for (key, cause) in current {
            if !state.poisoned.contains_key(&key) {
                state.add_poisoned(key, cause);
            }
        }
        if state.poisoned.is_empty() {
            if let Some(since) = state.poisoned_since_ms.take() {
                tracing::info!(
                    after_seconds = seconds_since(since),
                    "no partition is read-only anymore: every topic with one was deleted"
                );
            }
        }
    }

    /// Fails with a disk-full error while the disk is full (creation refuses then).
    pub fn check_disk_space(&self) -> io::Result<()> {
        match &self.inner.lock().disk_full {
            None => Ok(()),
            Some(full) => Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "the data directory's disk is full since {} s ({}); nothing is created \
                     until space is freed",
                    seconds_since(full.since_ms),
                    full.cause
                ),
            )),
        }
    }

    /// The conditions in effect now, by reason.
    pub fn conditions(&self) -> Vec<Condition> {
        let state = self.inner.lock();
        let mut conditions = Vec::new();
        if let Some(full) = &state.disk_full {
            conditions.push(Condition {
                reason: Reason::DiskFull,
                detail: format!(
                    "the data directory's disk is full ({}): produce requests that need space \
                     answer KAFKA_STORAGE_ERROR and topic creation is refused until space is \
                     freed",
                    full.cause
                ),
                since_ms: full.since_ms,
            });
        }
        if let Some(since_ms) = state.poisoned_since_ms {
            conditions.push(Condition {
                reason: Reason::LogPoisoned,
                detail: poisoned_detail(&state.poisoned),
                since_ms,
            });
        }
        conditions
    }

    /// Episodes of `reason` since the broker started (a counter: it also shows the episodes
    /// that began and ended between two scrapes).
    pub fn episodes(&self, reason: Reason) -> u64 {
        let state = self.inner.lock();
        match reason {
            Reason::DiskFull => state.disk_full_episodes,
            Reason::LogPoisoned => state.poisoned_episodes,
        }
    }

    /// Read-only partitions now.
    pub fn poisoned_partitions(&self) -> usize {
        self.inner.lock().poisoned.len()
    }

    /// Runs the disk probe once; ends the disk-full episode if it succeeds. Returns whether
    /// the disk is full afterwards. The probe task calls this; tests may too.
    pub fn probe_disk_now(&self) -> bool {
        self.inner.probe_disk()
    }

    /// Probes every [`PROBE_INTERVAL`] until the disk has room, on the current tokio runtime.
    /// Outside one (unit tests of the registry) nothing probes until [`Health::probe_disk_now`].
    fn start_probing(&self) {
        if self.inner.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(probe_until_room(Arc::downgrade(&self.inner)));
            }
            Err(_) => self.inner.probing.store(false, Ordering::Release),
        }
    }
}

/// The probe task: one at a time ([`Inner::probing`]), for as long as the disk is full.
async fn probe_until_room(weak: Weak<Inner>) {
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let probing = inner.clone();
        match tokio::task::spawn_blocking(move || probing.probe_disk()).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "the disk probe panicked"),
        }
        inner.probing.store(false, Ordering::Release);
        // An episode that began just before the store saw this task running and started none.
        if inner.lock().disk_full.is_none() || inner.probing.swap(true, Ordering::AcqRel) {
            return;
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change under this lock is a single assignment or insert: a panic elsewhere
        // cannot leave the state half changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// See [`Health::probe_disk_now`].
    fn probe_disk(&self) -> bool {
        if self.lock().disk_full.is_none() {
            return false;
        }
        let path = self.data_dir.join(PROBE_FILE);
        let written = write_probe(&path);
        // Whatever the outcome, the probe must not keep the space it took.
        if let Err(e) = fs::remove_file(&path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove the disk probe");
            }
        }
        match written {
            Ok(()) => {
                if let Some(full) = self.lock().disk_full.take() {
                    tracing::info!(
                        data_dir = %self.data_dir.display(),
                        after_seconds = seconds_since(full.since_ms),
                        "the disk has room again: writes and topic creation resume"
                    );
                }
                false
            }
            Err(e) => {
                tracing::debug!(error = %e, "the disk is still full");
                true
            }
        }
    }
}

impl State {
    fn add_poisoned(&mut self, key: (String, i32), cause: String) {
        let (topic, partition) = &key;
        if self.poisoned_since_ms.is_none() {
            self.poisoned_since_ms = Some(now_ms());
            self.poisoned_episodes += 1;
            tracing::error!(
                %topic, partition, %cause,
                "a partition log is read-only after a failed fsync: produce requests to it \
                 answer KAFKA_STORAGE_ERROR until the broker restarts and recovers the log \
                 from disk; check the disk"
            );
        } else {
            tracing::warn!(%topic, partition, %cause, "another partition log is read-only after a failed fsync");
        }
        self.poisoned.insert(key, cause);
    }
}

fn write_probe(path: &Path) -> io::Result<()> {
    let mut file = fs::File::create(path)?;
    file.write_all(&vec![0; PROBE_BYTES])?;
    // Some filesystems report a full disk only when the data is flushed.
    file.sync_all()
}

/// "3 partitions are read-only after a failed fsync: a-0 (EIO), ..." with at most a few named.
fn poisoned_detail(poisoned: &BTreeMap<(String, i32), String>) -> String {
    const NAMED: usize = 5;
    let named: Vec<String> = poisoned
        .iter()
        .take(NAMED)
        .map(|((topic, partition), cause)| format!("{topic}-{partition} ({cause})"))
        .collect();
    let more = poisoned.len().saturating_sub(NAMED);
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!(
        "{} partition log(s) read-only after a failed fsync: {}{tail}; produce requests to \
         them answer KAFKA_STORAGE_ERROR until the broker restarts",
        poisoned.len(),
        named.join(", ")
    )
}

fn seconds_since(since_ms: i64) -> i64 {
    (now_ms() - since_ms).max(0) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enospc() -> io::Error {
        io::Error::from(io::ErrorKind::StorageFull)
    }

    #[test]
    fn disk_full_and_quota_errors_are_disk_full_and_others_are_not() {
        assert!(is_disk_full(&enospc()));
        assert!(is_disk_full(&io::Error::from(io::ErrorKind::QuotaExceeded)));
        // What the kernel returns, through the OS error mapping (ENOSPC 28, EDQUOT 122).
        assert!(is_disk_full(&io::Error::from_raw_os_error(28)));
        assert!(is_disk_full(&io::Error::from_raw_os_error(122)));
        assert!(!is_disk_full(&io::Error::from_raw_os_error(5)));
        assert!(!is_disk_full(&io::Error::other(
            "no space left, in words only"
        )));
    }

    #[test]
    fn a_full_disk_is_one_episode_however_many_writes_fail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let health = Health::new(dir.path());
        assert!(health.conditions().is_empty());
        for _ in 0..100 {
            assert!(health.note_io_error("produce to t-0", &enospc()));
        }
        assert!(!health.note_io_error("produce to t-0", &io::Error::from_raw_os_error(5)));
        assert_eq!(health.episodes(Reason::DiskFull), 1);
        let conditions = health.conditions();
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].reason, Reason::DiskFull);
        assert!(
            conditions[0].detail.contains("produce to t-0"),
            "{conditions:?}"
        );
        let refused = health.check_disk_space().expect_err("creation refused");
        assert!(is_disk_full(&refused));
    }

    #[test]
    fn the_episode_ends_when_the_probe_can_write_and_a_new_one_is_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let health = Health::new(dir.path());
        assert!(!health.probe_disk_now(), "nothing to probe while healthy");
        health.note_io_error("w", &enospc());
        assert!(!health.probe_disk_now(), "a temp dir has room");
        assert!(health.conditions().is_empty());
        health.check_disk_space().expect("creation allowed again");
        assert!(
            !dir.path().join(PROBE_FILE).exists(),
            "the probe leaves nothing behind"
        );
        health.note_io_error("w", &enospc());
        assert_eq!(health.episodes(Reason::DiskFull), 2);
    }

    #[test]
    fn a_probe_that_cannot_write_keeps_the_episode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("gone");
        let health = Health::new(&missing);
        health.note_io_error("w", &enospc());
        assert!(health.probe_disk_now());
        assert_eq!(health.conditions().len(), 1);
    }

    #[test]
    fn read_only_partitions_are_one_episode_until_none_is_left() {
        let health = Health::new(Path::new("/nonexistent"));
        assert!(!health.note_partition("a", 0, None));
        assert!(health.note_partition("a", 0, Some("EIO".into())));
        assert!(health.note_partition("a", 0, Some("EIO".into())));
        assert!(health.note_partition("b", 1, Some("EIO".into())));
        assert_eq!(health.episodes(Reason::LogPoisoned), 1);
        assert_eq!(health.poisoned_partitions(), 2);
        let conditions = health.conditions();
        assert_eq!(conditions[0].reason, Reason::LogPoisoned);
        assert!(conditions[0].detail.contains("a-0 (EIO)"), "{conditions:?}");
        assert!(conditions[0].detail.contains("b-1 (EIO)"), "{conditions:?}");

        // Topic a deleted: b is still read-only.
        health.refresh_poisoned([(("b".to_string(), 1), "EIO".to_string())]);
        assert_eq!(health.poisoned_partitions(), 1);
        assert_eq!(health.conditions().len(), 1);
        // b deleted too: the episode is over.
        health.refresh_poisoned([]);
        assert!(health.conditions().is_empty());
        health.refresh_poisoned([(("c".to_string(), 0), "EIO".to_string())]);
        assert_eq!(health.episodes(Reason::LogPoisoned), 2);
    }

    #[test]
    fn the_detail_names_a_few_partitions_and_counts_the_rest() {
        let poisoned: BTreeMap<(String, i32), String> = (0..8)
            .map(|p| (("t".to_string(), p), "EIO".to_string()))
            .collect();
        let detail = poisoned_detail(&poisoned);
        assert!(detail.starts_with("8 partition log(s)"), "{detail}");
        assert!(detail.contains("t-4 (EIO) and 3 more"), "{detail}");
    }
}
