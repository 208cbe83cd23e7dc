//! The durable half of the coordinator: committed offsets, the pending offsets of open
//! transactions, group generations and the members of classic groups, kept in one append-only
//! file (`<dir>/offsets.log`, format in [`record`]).
//!
//! # Writing
//! [`OffsetStore::append`] writes records to the file (one `write` call, under the store lock,
//! so the file order is the append order) and returns a sequence number. Nothing is visible yet:
//! [`OffsetStore::wait_durable`] waits until a background fsync covers that number. There is at
//! most one fsync round in flight; appends that arrive meanwhile are covered by the next round,
//! so concurrent committers share fsyncs (group commit). After a round the covered records are
//! applied, in file order, to the in-memory [`LiveState`] that readers see, so a reader never
//! sees an offset that a crash could take back.
//!
//! # Recovery and compaction
//! Opening replays the file into [`LiveState`]. A torn tail (an incomplete or CRC-mismatched
//! frame, left by a crash mid-write) is cut off; anything after it was never acknowledged,
//! because acknowledgement waits for the fsync of everything before it. When the file grows to
//! [`CompactionPolicy::max_garbage_ratio`] times its live size, the sync thread rewrites it with
//! one record per live key: temporary file, fsync, rename over the old one, fsync the directory.
//! The temporary file is written and fsynced without the store lock, so commits keep being
//! appended (to the old file) meanwhile and never wait for that fsync; under the lock the frames
//! appended since are copied over before the rename, and the directory fsync comes before the
//! next round can call anything in the new file durable.
//! Commits and pending transactional offsets are rewritten in the order they were applied:
//! whether a transaction's offset replaces a plain commit of the same partition depends on
//! which came first, and replaying the compacted file must decide it the same way.

mod record;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;
use tokio::sync::watch;

use record::{decode_frame, BadFrame, FILE_MAGIC};
pub(crate) use record::{CommittedOffset, Record, StoredMember, StoredMembership};
pub(crate) use record::{ConsumerGroupRecord, MemberRecord, MemberState, Partitions, TopicRecord};

use crate::lock;

const FILE_NAME: &str = "offsets.log";
const COMPACTION_TMP_NAME: &str = "offsets.log.compacting";

/// Failures of the offsets file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading, writing or syncing the file failed.
    #[error("offsets file I/O error: {0}")]
    Io(#[from] io::Error),
    /// The file does not start with the offsets-file magic.
    #[error("{path} is not a Freshet offsets file")]
    NotAnOffsetsFile {
        /// The offending file.
        path: PathBuf,
    },
    /// A CRC-valid record could not be decoded; the file is refused rather than truncated,
    /// since everything after it would be lost.
    #[error("undecodable record at byte {position} of {path}: {reason}")]
    Corrupt {
        /// The offending file.
        path: PathBuf,
        /// Byte position of the record's frame.
        position: u64,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// A string in a record is longer than the format can frame (4 GiB).
    #[error("record too large for the offsets file")]
    RecordTooLarge,
    /// An earlier fsync failed; after that the kernel may have dropped dirty pages, so nothing
    /// more is acknowledged until a restart re-reads the file.
    #[error("the offsets file is unusable after an earlier fsync failure")]
    Failed,
}

/// When to rewrite the file without its dead records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CompactionPolicy {
    /// Files smaller than this are never compacted.
    pub(crate) min_file_bytes: u64,
    /// Compact once the file is this many times larger than its live records.
    pub(crate) max_garbage_ratio: u64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        Self {
            min_file_bytes: 8 << 20,
            max_garbage_ratio: 4,
        }
    }
}

/// A group's persisted generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredGeneration {
    pub(crate) generation: i32,
    /// "" when the group has none.
    pub(crate) protocol_type: String,
}

type TopicPartition = (String, i32);

/// An offset and its place in the order in which offsets were applied: a transaction's
/// offset becomes the committed one only if no later commit of the partition came first
/// (Kafka compares the offsets of the records in `__consumer_offsets` the same way).
#[derive(Debug, Clone)]
struct Ordered {
    offset: CommittedOffset,
    position: u64,
}

/// The offsets of open transactions in one group: producer id → partition → offset.
type PendingByProducer = HashMap<i64, BTreeMap<TopicPartition, Ordered>>;

/// The state the file describes: the latest record per key, and nothing else.
#[derive(Debug, Default)]
struct LiveState {
    offsets: HashMap<String, BTreeMap<TopicPartition, Ordered>>,
    /// Transactional offsets whose transaction has not ended, per group. Never empty maps.
    pending: HashMap<String, PendingByProducer>,
    generations: HashMap<String, StoredGeneration>,
    /// Only for groups whose latest generation completed its rebalance.
    memberships: HashMap<String, StoredMembership>,
    /// KIP-848 consumer groups. A group id is in this map or in the two above, never both:
    /// the latest record of either protocol decides the group's type.
    consumer_groups: HashMap<String, ConsumerGroupRecord>,
    /// The position the next applied offset gets.
    next_position: u64,
}

impl LiveState {
    fn apply(&mut self, record: Record) {
        match record {
            Record::OffsetCommit {
                group,
                topic,
                partition,
                offset,
            } => {
                let ordered = self.ordered(offset);
                self.offsets
                    .entry(group)
                    .or_default()
                    .insert((topic, partition), ordered);
            }
            Record::Generation {
                group,
                generation,
                protocol_type,
            } => {
                // A new join phase completed: the members of the previous generation are
                // history (the new one's are recorded once it is synced).
                if self
                    .memberships
                    .get(&group)
                    .is_some_and(|m| m.generation != generation)
                {
                    self.memberships.remove(&group);
                }
                let stored = StoredGeneration {
                    generation,
                    protocol_type,
                };
                self.consumer_groups.remove(&group);
                self.generations.insert(group, stored);
            }
            Record::TopicDeleted { topic } => self.forget_topic(&topic),
            Record::ClassicGroup(membership) => {
                let stored = StoredGeneration {
                    generation: membership.generation,
                    protocol_type: membership.protocol_type.clone(),
                };
                self.generations.insert(membership.group.clone(), stored);
                self.consumer_groups.remove(&membership.group);
                self.memberships
                    .insert(membership.group.clone(), membership);
            }
            Record::ConsumerGroup(consumer) => {
                self.generations.remove(&consumer.group);
                self.memberships.remove(&consumer.group);
                self.consumer_groups
                    .insert(consumer.group.clone(), consumer);
            }
            Record::GroupDeleted { group } => {
                self.offsets.remove(&group);
                self.pending.remove(&group);
                self.generations.remove(&group);
                self.memberships.remove(&group);
                self.consumer_groups.remove(&group);
            }
            Record::OffsetDeleted {
                group,
                topic,
                partition,
            } => self.forget_partition(&group, &(topic, partition)),
            Record::TxnOffsetCommit {
                producer_id,
                group,
                topic,
                partition,
                offset,
            } => {
                let ordered = self.ordered(offset);
                self.pending
                    .entry(group)
                    .or_default()
                    .entry(producer_id)
                    .or_default()
                    .insert((topic, partition), ordered);
            }
            Record::TxnCompleted {
                producer_id,
                group,
                committed,
            } => self.complete(producer_id, &group, committed),
        }
    }

    fn ordered(&mut self, offset: CommittedOffset) -> Ordered {
        let position = self.next_position;
        self.next_position += 1;
        Ordered { offset, position }
    }

    fn forget_topic(&mut self, topic: &str) {
        for partitions in self.offsets.values_mut() {
            partitions.retain(|(t, _), _| t != topic);
        }
        self.offsets.retain(|_, partitions| !partitions.is_empty());
        for producers in self.pending.values_mut() {
            for partitions in producers.values_mut() {
                partitions.retain(|(t, _), _| t != topic);
            }
            producers.retain(|_, partitions| !partitions.is_empty());
        }
        self.pending.retain(|_, producers| !producers.is_empty());
    }

    /// Forgets the group's commit of the partition and every transaction's pending one.
    fn forget_partition(&mut self, group: &str, key: &TopicPartition) {
        if let Some(partitions) = self.offsets.get_mut(group) {
            partitions.remove(key);
            if partitions.is_empty() {
                self.offsets.remove(group);
            }
        }
        if let Some(producers) = self.pending.get_mut(group) {
            for partitions in producers.values_mut() {
                partitions.remove(key);
            }
            producers.retain(|_, partitions| !partitions.is_empty());
            if producers.is_empty() {
                self.pending.remove(group);
            }
        }
    }

    /// Ends the producer's transaction in `group`: its pending offsets become the committed
    /// ones (unless a later commit of the partition was applied meanwhile) or are dropped.
    fn complete(&mut self, producer_id: i64, group: &str, committed: bool) {
        let Some(producers) = self.pending.get_mut(group) else {
            return;
        };
        let finished = producers.remove(&producer_id);
        if producers.is_empty() {
            self.pending.remove(group);
        }
        let Some(finished) = finished.filter(|_| committed) else {
            return;
        };
        let offsets = self.offsets.entry(group.to_owned()).or_default();
        for (key, pending) in finished {
            let newer = offsets
                .get(&key)
                .is_none_or(|current| current.position < pending.position);
            if newer {
                offsets.insert(key, pending);
            }
        }
        if offsets.is_empty() {
            self.offsets.remove(group);
        }
    }

    /// One record per live key: the content of a compacted file. Commits and pending
    /// transactional offsets come in the order they were applied, so that replaying the
    /// compacted file decides every later transaction completion as the original would.
    fn records(&self) -> impl Iterator<Item = Record> + '_ {
        let mut offsets = self.offset_records();
        offsets.sort_unstable_by_key(|(position, _)| *position);
        self.group_records()
            .chain(offsets.into_iter().map(|(_, record)| record))
    }

    /// The records of the groups' generations and members.
    fn group_records(&self) -> impl Iterator<Item = Record> + '_ {
        // A group with members is described by its membership alone (it carries the
        // generation); the others by their generation.
        let consumer_groups = self.consumer_groups.values().cloned();
        self.generations
            .iter()
            .map(|(group, g)| match self.memberships.get(group) {
                Some(membership) => Record::ClassicGroup(membership.clone()),
                None => Record::Generation {
                    group: group.clone(),
                    generation: g.generation,
                    protocol_type: g.protocol_type.clone(),
                },
            })
            .chain(consumer_groups.map(Record::ConsumerGroup))
    }

    /// The records of every commit and pending transactional offset, with their positions,
    /// unordered.
    fn offset_records(&self) -> Vec<(u64, Record)> {
        let commits = self.offsets.iter().flat_map(|(group, partitions)| {
            partitions.iter().map(move |((topic, partition), o)| {
                let record = Record::OffsetCommit {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    offset: o.offset.clone(),
                };
                (o.position, record)
            })
        });
        let pending = self.pending.iter().flat_map(|(group, producers)| {
            producers.iter().flat_map(move |(producer_id, partitions)| {
                partitions.iter().map(move |((topic, partition), o)| {
                    let record = Record::TxnOffsetCommit {
                        producer_id: *producer_id,
                        group: group.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                        offset: o.offset.clone(),
                    };
                    (o.position, record)
                })
            })
        });
        commits.chain(pending).collect()
    }

    fn encoded_len(&self) -> u64 {
        let groups: u64 = self.group_records().map(|r| r.frame_len()).sum();
        let offsets: u64 = self
            .offset_records()
            .iter()
            .map(|(_, r)| r.frame_len())
            .sum();
        groups + offsets
    }

    /// The part of the state about `group`, for a view with appends not yet durable applied.
    fn group_view(&self, group: &str) -> LiveState {
        let mut view = LiveState {
            next_position: self.next_position,
            ..LiveState::default()
        };
        if let Some(partitions) = self.offsets.get(group) {
            view.offsets.insert(group.to_owned(), partitions.clone());
        }
        if let Some(producers) = self.pending.get(group) {
            view.pending.insert(group.to_owned(), producers.clone());
        }
        view
    }
}

/// Records written to the file but not yet covered by an fsync.
#[derive(Debug)]
struct PendingAppend {
    seq: u64,
    records: Vec<Record>,
}

#[derive(Debug)]
struct StoreInner {
    /// Opened in append mode; shared with the sync thread, which fsyncs it outside the lock.
    file: Arc<File>,
    file_len: u64,
    /// Sequence number of the latest append (0 = none yet).
    appended_seq: u64,
    /// Every append up to this one is on stable storage and applied to `live`.
    durable_seq: u64,
    pending: VecDeque<PendingAppend>,
    live: LiveState,
    sync_running: bool,
    failed: bool,
    /// File length at which to evaluate compaction next (measuring the live size walks the
    /// whole state, so it is not done on every round).
    next_compaction_check: u64,
}

/// What waiters watch: how far durability has progressed.
#[derive(Debug, Clone, Copy, Default)]
struct SyncProgress {
    durable_seq: u64,
    failed: bool,
}

/// The offsets file and its in-memory view. See the module docs.
#[derive(Debug)]
pub(crate) struct OffsetStore {
    dir: PathBuf,
    path: PathBuf,
    policy: CompactionPolicy,
    inner: Mutex<StoreInner>,
    progress: watch::Sender<SyncProgress>,
    fsyncs: AtomicU64,
    /// Where fsync rounds run (on the blocking pool).
    runtime: Handle,
}

impl OffsetStore {
    /// Opens (or creates) `<dir>/offsets.log` and replays it.
    pub(crate) fn open(
        dir: &Path,
        policy: CompactionPolicy,
        runtime: Handle,
    ) -> Result<Arc<Self>, StoreError> {
        fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        remove_if_exists(&dir.join(COMPACTION_TMP_NAME))?;
        let (live, file_len) = replay(dir, &path)?;
        let file = OpenOptions::new().read(true).append(true).open(&path)?;
        let inner = StoreInner {
            file: Arc::new(file),
            file_len,
            appended_seq: 0,
            durable_seq: 0,
            pending: VecDeque::new(),
            live,
            sync_running: false,
            failed: false,
            next_compaction_check: 0,
        };
        let store = Arc::new(Self {
            dir: dir.to_path_buf(),
            path,
            policy,
            inner: Mutex::new(inner),
            progress: watch::Sender::new(SyncProgress::default()),
            fsyncs: AtomicU64::new(0),
            runtime,
        });
        let due = store.compaction_due(&mut lock(&store.inner));
        if let Some(snapshot) = due {
            store.compact_and_log(snapshot);
        }
        Ok(store)
    }

    /// Writes `records` to the file and returns the sequence number to pass to
    /// [`wait_durable`](Self::wait_durable). The records become visible to readers once durable.
    pub(crate) fn append(self: &Arc<Self>, records: Vec<Record>) -> Result<u64, StoreError> {
        let mut bytes = Vec::new();
        for record in &records {
            record.encode_frame(&mut bytes)?;
        }
        let mut inner = lock(&self.inner);
        if inner.failed {
            return Err(StoreError::Failed);
        }
        if let Err(error) = (&*inner.file).write_all(&bytes) {
            self.undo_partial_write(&mut inner);
            return Err(error.into());
        }
        inner.file_len += bytes.len() as u64;
        inner.appended_seq += 1;
        let seq = inner.appended_seq;
        inner.pending.push_back(PendingAppend { seq, records });
        if !inner.sync_running {
            inner.sync_running = true;
            let store = Arc::clone(self);
            self.runtime.spawn_blocking(move || store.run_sync_rounds());
        }
        Ok(seq)
    }

    /// Waits until the append numbered `seq` is on stable storage (and visible to readers).
    pub(crate) async fn wait_durable(&self, seq: u64) -> Result<(), StoreError> {
        let mut progress = self.progress.subscribe();
        let reached = progress
            .wait_for(|p| p.failed || p.durable_seq >= seq)
            .await
            .map(|p| !p.failed);
        match reached {
            Ok(true) => Ok(()),
            _ => Err(StoreError::Failed),
        }
    }

    /// Waits until everything appended so far is durable.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        let seq = lock(&self.inner).appended_seq;
        self.wait_durable(seq).await
    }

    /// How many fsync rounds have covered appends (compaction's own fsyncs are not counted).
    pub(crate) fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    pub(crate) fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Option<CommittedOffset> {
        let inner = lock(&self.inner);
        let partitions = inner.live.offsets.get(group)?;
        let key = (topic.to_owned(), partition);
        partitions.get(&key).map(|o| o.offset.clone())
    }

    /// The partitions of `group` with a transactional offset whose transaction has not
    /// ended (durably: an offset on its way to disk was not acknowledged, so no transaction
    /// can have committed it yet).
    pub(crate) fn pending_partitions(&self, group: &str) -> BTreeSet<(String, i32)> {
        let inner = lock(&self.inner);
        inner
            .live
            .pending
            .get(group)
            .into_iter()
            .flat_map(|producers| producers.values())
            .flat_map(|partitions| partitions.keys().cloned())
            .collect()
    }

    /// Whether `producer_id` has transactional offsets pending in `group`, counting appends
    /// not yet durable.
    pub(crate) fn has_pending(&self, producer_id: i64, group: &str) -> bool {
        let inner = lock(&self.inner);
        let durable = inner
            .live
            .pending
            .get(group)
            .is_some_and(|producers| producers.contains_key(&producer_id));
        let on_the_way = inner.pending.iter().flat_map(|p| &p.records).any(|r| {
            matches!(r, Record::TxnOffsetCommit { producer_id: p, group: g, .. }
                if *p == producer_id && g == group)
        });
        durable || on_the_way
    }

    /// All of `group`'s commits, ordered by topic and partition.
    pub(crate) fn committed_by_group(&self, group: &str) -> Vec<(String, i32, CommittedOffset)> {
        let inner = lock(&self.inner);
        let Some(partitions) = inner.live.offsets.get(group) else {
            return Vec::new();
        };
        partitions
            .iter()
            .map(|((topic, partition), o)| (topic.clone(), *partition, o.offset.clone()))
            .collect()
    }

    /// The persisted members of every classic group whose latest generation completed its
    /// rebalance.
    pub(crate) fn memberships(&self) -> Vec<StoredMembership> {
        lock(&self.inner)
            .live
            .memberships
            .values()
            .cloned()
            .collect()
    }

    /// Every KIP-848 consumer group the file knows.
    pub(crate) fn consumer_groups(&self) -> Vec<ConsumerGroupRecord> {
        lock(&self.inner)
            .live
            .consumer_groups
            .values()
            .cloned()
            .collect()
    }

    /// Whether `group` has committed offsets or transactional offsets pending, counting
    /// appends not yet durable (Kafka's `hasOffsets` counts both kinds of pending commits
    /// too): a group deleted for having none must not take a commit that is on its way to
    /// disk, or a transaction's offsets, with it.
    pub(crate) fn has_offsets(&self, group: &str) -> bool {
        let inner = lock(&self.inner);
        // The group's part of the live state, with the pending appends applied to it.
        let mut view = inner.live.group_view(group);
        let pending = inner.pending.iter().flat_map(|p| &p.records);
        for record in pending.filter(|r| r.group().is_none_or(|g| g == group)) {
            view.apply(record.clone());
        }
        view.offsets.contains_key(group) || view.pending.contains_key(group)
    }

    /// Every group the file knows: its persisted generation, if any.
    pub(crate) fn known_groups(&self) -> HashMap<String, Option<StoredGeneration>> {
        let inner = lock(&self.inner);
        // A group whose only trace is a transaction's offsets exists too (Kafka creates it
        // when it replays the offsets).
        let mut groups: HashMap<_, _> = inner
            .live
            .offsets
            .keys()
            .chain(inner.live.pending.keys())
            .map(|group| (group.clone(), None))
            .collect();
        for (group, generation) in &inner.live.generations {
            groups.insert(group.clone(), Some(generation.clone()));
        }
        groups
    }

    #[cfg(test)]
    pub(crate) fn file_len(&self) -> u64 {
        lock(&self.inner).file_len
    }

    /// Waits until no sync round (nor the compaction one may run) is in progress, so a test
    /// sees the file as the last round left it.
    #[cfg(test)]
    pub(crate) async fn wait_idle(&self) {
        while lock(&self.inner).sync_running {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// A failed `write` may have left part of a frame behind; cut it off so the next append
    /// does not land after garbage (which replay would treat as a torn tail, losing it).
    fn undo_partial_write(&self, inner: &mut StoreInner) {
        if let Err(error) = inner.file.set_len(inner.file_len) {
            tracing::error!(%error, path = %self.path.display(),
                "cannot cut a failed write off the offsets file; refusing further commits");
            inner.failed = true;
            self.progress.send_modify(|p| p.failed = true);
        }
    }

    /// The sync thread: fsync until every append is covered, then exit. Runs on the blocking
    /// pool; at most one at a time (guarded by `sync_running`).
    fn run_sync_rounds(self: Arc<Self>) {
        loop {
            let (file, target) = {
                let mut inner = lock(&self.inner);
                if inner.durable_seq >= inner.appended_seq {
                    inner.sync_running = false;
                    return;
                }
                (Arc::clone(&inner.file), inner.appended_seq)
            };
            // Outside the lock: appends keep flowing and will share the next round.
            let synced = file.sync_data();
            self.fsyncs.fetch_add(1, Ordering::Relaxed);
            let mut inner = lock(&self.inner);
            if let Err(error) = synced {
                tracing::error!(%error, path = %self.path.display(),
                    "fsync of the offsets file failed; refusing further commits");
                inner.failed = true;
                inner.sync_running = false;
                self.progress.send_modify(|p| p.failed = true);
                return;
            }
            inner.make_durable(target);
            let compaction = self.compaction_due(&mut inner);
            let durable_seq = inner.durable_seq;
            drop(inner);
            self.progress.send_modify(|p| p.durable_seq = durable_seq);
            if let Some(snapshot) = compaction {
                // Still the only sync thread: the next round, which may declare appends to
                // the new file durable, starts only after its rename is durable.
                self.compact_and_log(snapshot);
            }
        }
    }

    /// When the file is mostly dead records: what a compaction rewrites (the live records and
    /// the pending ones), taken under the lock. The writing itself happens without it.
    fn compaction_due(&self, inner: &mut StoreInner) -> Option<CompactionSnapshot> {
        if inner.file_len < inner.next_compaction_check {
            return None;
        }
        let pending_len: u64 = inner
            .pending
            .iter()
            .flat_map(|p| &p.records)
            .map(Record::frame_len)
            .sum();
        let live_len = FILE_MAGIC.len() as u64 + inner.live.encoded_len() + pending_len;
        let threshold = live_len.saturating_mul(self.policy.max_garbage_ratio);
        inner.next_compaction_check = threshold.max(self.policy.min_file_bytes);
        if inner.file_len < self.policy.min_file_bytes || inner.file_len <= threshold {
            return None;
        }
        let mut bytes = FILE_MAGIC.to_vec();
        let records = inner
            .live
            .records()
            .chain(inner.pending.iter().flat_map(|p| p.records.iter().cloned()));
        for record in records {
            if let Err(error) = record.encode_frame(&mut bytes) {
                tracing::warn!(%error, "cannot compact the offsets file; keeping it");
                return None;
            }
        }
        Some(CompactionSnapshot {
            bytes,
            covered_len: inner.file_len,
        })
    }

    /// [`compact`](Self::compact), logged. Failure is harmless: the old file is complete.
    fn compact_and_log(&self, snapshot: CompactionSnapshot) {
        match self.compact(snapshot) {
            Ok(bytes) => {
                tracing::info!(path = %self.path.display(), bytes, "compacted the offsets file");
            }
            Err(error) => tracing::warn!(%error, path = %self.path.display(),
                "compacting the offsets file failed; keeping the old one"),
        }
    }

    /// Writes and fsyncs the new file with no lock held, so commits keep being appended to
    /// the old one meanwhile (a commit must never wait for this fsync on an async worker).
    /// Then, under the lock, the frames appended since the snapshot are copied over (they
    /// are pending: the next round fsyncs the new file) and the new file is renamed into
    /// place; the directory is fsynced before the next round can declare anything durable.
    /// Returns the new file's length.
    fn compact(&self, snapshot: CompactionSnapshot) -> Result<u64, StoreError> {
        let tmp = self.dir.join(COMPACTION_TMP_NAME);
        let swapped = write_new_file(&tmp, &snapshot.bytes)
            .map_err(StoreError::from)
            .and_then(|file| self.swap_in(file, &tmp, &snapshot));
        let new_len = match swapped {
            Ok(new_len) => new_len,
            Err(error) => {
                let _ = fs::remove_file(&tmp);
                return Err(error);
            }
        };
        if let Err(error) = sync_dir(&self.dir) {
            // The rename may not survive a crash, so nothing appended to the new file may be
            // called durable: refuse further commits, as after a failed fsync.
            tracing::error!(%error, path = %self.path.display(),
                "fsync of the offsets directory failed; refusing further commits");
            lock(&self.inner).failed = true;
            self.progress.send_modify(|p| p.failed = true);
            return Err(error.into());
        }
        Ok(new_len)
    }

    /// The locked part of [`compact`](Self::compact).
    fn swap_in(
        &self,
        mut file: File,
        tmp: &Path,
        snapshot: &CompactionSnapshot,
    ) -> Result<u64, StoreError> {
        let mut inner = lock(&self.inner);
        if inner.failed {
            return Err(StoreError::Failed);
        }
        let tail_len = inner.file_len - snapshot.covered_len;
        let mut tail = vec![0; usize::try_from(tail_len).unwrap_or(usize::MAX)];
        inner.file.read_exact_at(&mut tail, snapshot.covered_len)?;
        file.write_all(&tail)?;
        fs::rename(tmp, &self.path)?;
        inner.file = Arc::new(file);
        inner.file_len = snapshot.bytes.len() as u64 + tail_len;
        Ok(inner.file_len)
    }
}

/// What a compaction writes, taken under the lock: every live and pending record, covering
/// the file up to `covered_len`.
#[derive(Debug)]
struct CompactionSnapshot {
    bytes: Vec<u8>,
    covered_len: u64,
}

impl StoreInner {
    /// Applies, in file order, every pending append up to `target` (now fsynced).
    fn make_durable(&mut self, target: u64) {
        while self.pending.front().is_some_and(|p| p.seq <= target) {
            if let Some(append) = self.pending.pop_front() {
                for record in append.records {
                    self.live.apply(record);
                }
            }
        }
        self.durable_seq = target;
    }
}

/// Reads the file at `path` into a [`LiveState`], creating the file if needed and cutting off
/// a torn tail. Returns the state and the (possibly truncated) file length.
fn replay(dir: &Path, path: &Path) -> Result<(LiveState, u64), StoreError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(error.into()),
    };
    if bytes.len() < FILE_MAGIC.len() && FILE_MAGIC.starts_with(&bytes) {
        // New, or a crash while creating it: nothing was ever committed.
        drop(write_new_file(path, FILE_MAGIC)?);
        sync_dir(dir)?;
        return Ok((LiveState::default(), FILE_MAGIC.len() as u64));
    }
    let Some(records) = bytes.strip_prefix(FILE_MAGIC.as_slice()) else {
        return Err(StoreError::NotAnOffsetsFile {
            path: path.to_path_buf(),
        });
    };
    let mut live = LiveState::default();
    let mut position = 0;
    loop {
        let file_position = (FILE_MAGIC.len() + position) as u64;
        match decode_frame(&records[position..]) {
            Ok(Some((record, len))) => {
                live.apply(record);
                position += len;
            }
            Ok(None) => return Ok((live, file_position)),
            Err(BadFrame::Torn(reason)) => {
                tracing::warn!(path = %path.display(), position = file_position, reason,
                    dropped_bytes = records.len() - position,
                    "truncating a torn tail of the offsets file");
                let file = OpenOptions::new().write(true).open(path)?;
                file.set_len(file_position)?;
                file.sync_all()?;
                return Ok((live, file_position));
            }
            Err(BadFrame::Undecodable(reason)) => {
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    position: file_position,
                    reason,
                })
            }
        }
    }
}

/// Creates `path` (replacing it) with `bytes`, fsynced, and returns it open for appending.
fn write_new_file(path: &Path, bytes: &[u8]) -> io::Result<File> {
    remove_if_exists(path)?;
    write_file_synced(path, bytes)?;
    OpenOptions::new().read(true).append(true).open(path)
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

use freshet_os::files::{sync_dir, write_file_synced};

#[cfg(test)]
mod tests;
