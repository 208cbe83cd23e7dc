//! The blocker: a consumer-group member on `login-attempts` that applies the [`Rules`] per
//! partition and writes block records to the compacted `blocked-users` topic.
//!
//! Each owned partition's [`PartitionState`] (failure timestamps and ids, blocks) is
//! checkpointed, with the input offset it covers, to a compacted checkpoint topic (see
//! *Checkpoints*). A checkpoint is written only after the block records before its offset are
//! acknowledged, so a crash at any moment either redoes records (same attempts, same state,
//! same records) or finds them written. Only a partition whose state changed since its last
//! checkpoint is written again.
//!
//! Only attempts the guard signed count ([`super::mac`]): a record without a valid MAC, or
//! that is not an attempt, is counted by [`Rejection`] and copied unchanged to the dead-letter
//! topic (`login-attempts.dlq`) with the reason in the `freshet.reason` header and
//! `<topic>/<partition>/<offset>` in `freshet.origin`, like the tracker's. Block records are
//! signed, and so are checkpoint chunks (their MAC in the [`MAC_HEADER`] header): a chunk
//! without a valid one is ignored, and the partition resumes from the newest complete, signed
//! checkpoint (or replays from the beginning, which is slower, never wrong).
//!
//! The loop (polling, checkpoints after the block records they cover are acknowledged,
//! rewinds, rebalances) is the services' shared [checkpointed consumer](crate::checkpointed);
//! this module is what the blocker keeps per partition and how it writes and resumes it.
//!
//! The checkpoint format, its fencing and its reader are in [`super::checkpoints`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, ThreadedProducer};
use rdkafka::Message;

use super::attempts::Attempt;
use super::blocks::BlockEntry;
use super::checkpoints::{
    encode_checkpoint, read_checkpoints, sign_checkpoint, Claim, MAX_CHECKPOINT_BYTES,
};
use super::mac::{Rejection, MAC_HEADER};
use super::rules::{Change, PartitionState, Rules};
use super::secret::GuardSecret;
use super::stats::RejectionCounts;
use super::GuardError;
use crate::checkpointed::{self, Checkpointing, NextOffset, Stateful, StatefulConsumer};
use crate::error::full_message;
use crate::event::{ORIGIN_HEADER, REASON_HEADER};
use crate::kafka::{CreateClient, DeliveryCounter};
use crate::KafkaConfig;

/// The producer's request limit: dead-lettered copies of `login-attempts` records are as
/// large as that topic allows (an operator may have raised its limit).
const PRODUCER_MAX_MESSAGE_BYTES: usize = (16 << 20) + 4096;
/// How the blocker runs.
#[derive(Debug, Clone)]
pub struct BlockerConfig {
    pub attempts_topic: String,
    pub blocks_topic: String,
    pub checkpoint_topic: String,
    /// Where refused records of the attempts topic go.
    pub dlq_topic: String,
    /// Key that attempts must be signed with, and that block records and checkpoints are.
    pub secret: GuardSecret,
    pub group: String,
    pub rules: Rules,
    pub checkpoint_interval: Duration,
    pub session_timeout: Duration,
}

/// Counters for the API and the benchmark.
#[derive(Debug, Default)]
pub struct BlockerStats {
    /// Records of `login-attempts` processed since start (including repeats after a rewind).
    pub processed: AtomicU64,
    /// Records refused (not counted, dead-lettered), by reason.
    pub rejected: RejectionCounts,
    /// Block and unblock records written.
    pub block_writes: AtomicU64,
    /// Blocks issued: the first record of each block (later ones only update it). A block
    /// redone after a rewind counts again.
    pub blocks_issued: AtomicU64,
    /// Checkpoints acknowledged, counted once the chunks they supersede are tombstoned.
    pub checkpoints: AtomicU64,
    /// Records processed whose block writes the cluster has acknowledged: once this reaches
    /// a count, followers of `blocked-users` can see every consequence of those records.
    pub acknowledged: AtomicU64,
}

/// A running blocker.
#[derive(Debug)]
pub struct Blocker {
    stopping: Arc<AtomicBool>,
    stats: Arc<BlockerStats>,
    thread: JoinHandle<()>,
}

impl Blocker {
    /// Joins the group and starts consuming. Topics must exist.
    pub fn start(kafka: &KafkaConfig, config: BlockerConfig) -> Result<Blocker, GuardError> {
        let stopping = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(BlockerStats::default());
        let worker = Worker::new(kafka, config, stopping.clone(), stats.clone())?;
        let thread = std::thread::Builder::new()
            .name("guard-blocker".into())
            .spawn(move || worker.run())
            .map_err(|source| GuardError::Thread {
                thread: "guard-blocker",
                source,
            })?;
        Ok(Blocker {
            stopping,
            stats,
            thread,
        })
    }

    pub fn stats(&self) -> Arc<BlockerStats> {
        self.stats.clone()
    }

    /// Checkpoints, leaves the group and waits for the thread. Blocking.
    pub fn shutdown(self) {
        self.stopping.store(true, Ordering::SeqCst);
        if self.thread.join().is_err() {
            tracing::error!("the blocker thread panicked");
        }
    }
}

/// The blocker's thread: the shared checkpointed-consumer loop over [`BlockerState`].
struct Worker {
    kafka: KafkaConfig,
    config: BlockerConfig,
    stats: Arc<BlockerStats>,
    consumer: StatefulConsumer<BlockerState>,
    stopping: Arc<AtomicBool>,
}

impl Worker {
    fn new(
        kafka: &KafkaConfig,
        config: BlockerConfig,
        stopping: Arc<AtomicBool>,
        stats: Arc<BlockerStats>,
    ) -> Result<Worker, GuardError> {
        Ok(Worker {
            kafka: kafka.clone(),
            consumer: member(kafka, config.clone(), stats.clone())?,
            config,
            stats,
            stopping,
        })
    }

    fn run(self) {
        let Worker {
            kafka,
            config,
            stats,
            consumer,
            stopping,
        } = self;
        let interval = config.checkpoint_interval;
        let rebuild = || member(&kafka, config.clone(), stats.clone());
        checkpointed::run(consumer, rebuild, &stopping, interval);
        tracing::info!("blocker stopped");
    }
}

/// The blocker's group member: its state, its producer and its consumer, subscribed.
fn member(
    kafka: &KafkaConfig,
    config: BlockerConfig,
    stats: Arc<BlockerStats>,
) -> Result<StatefulConsumer<BlockerState>, GuardError> {
    let producer: ThreadedProducer<DeliveryCounter> = kafka
        .durable_producer_config("guard-blocker")
        .set("linger.ms", "2")
        .set("message.max.bytes", PRODUCER_MAX_MESSAGE_BYTES.to_string())
        .create_client_with(DeliveryCounter::new("blocker"))?;
    let session_timeout = config.session_timeout;
    let topic = config.attempts_topic.clone();
    let group = config.group.clone();
    let state = BlockerState {
        kafka: kafka.clone(),
        config,
        producer,
        stats,
        owned: Mutex::new(Owned::default()),
    };
    let consumer: StatefulConsumer<BlockerState> = kafka
        .stateful_group_config("guard-blocker", &group, session_timeout)
        // Attempts are ~150 bytes: large fetches keep the prefetch queue full, so the
        // worker never waits on a round trip between batches.
        .set("max.partition.fetch.bytes", (8 << 20).to_string())
        .create_client_with(Checkpointing::new(state))?;
    consumer
        .subscribe(&[&topic])
        .map_err(GuardError::kafka(format!("subscribing to {topic}")))?;
    Ok(consumer)
}

/// The partitions this worker owns. Only the worker thread touches it (rebalance callbacks
/// run inside its `poll`); the mutex is for the `&self` API.
#[derive(Default)]
struct Owned {
    partitions: HashMap<i32, PartitionState>,
    /// The last checkpoint written per partition: where a failed checkpoint rewinds to.
    committed: HashMap<i32, Vec<u8>>,
    /// This worker's claim on each owned partition's checkpoints.
    claims: HashMap<i32, Claim>,
    /// Block changes not yet sent, the newest per user.
    changes: HashMap<String, Change>,
}

/// The blocker's state and outputs, run by the checkpointed-consumer loop.
struct BlockerState {
    kafka: KafkaConfig,
    config: BlockerConfig,
    producer: ThreadedProducer<DeliveryCounter>,
    stats: Arc<BlockerStats>,
    owned: Mutex<Owned>,
}

impl Stateful for BlockerState {
    type Sent = Vec<Written>;

    fn input_topic(&self) -> &str {
        &self.config.attempts_topic
    }

    fn producers(&self) -> Vec<&ThreadedProducer<DeliveryCounter>> {
        vec![&self.producer]
    }

    /// Applies one record to its partition's state, in offset order.
    fn process(&self, message: &BorrowedMessage<'_>) {
        let mut owned = self.owned();
        let Owned {
            partitions,
            changes,
            ..
        } = &mut *owned;
        let Some(state) = partitions.get_mut(&message.partition()) else {
            return;
        };
        // A seek back (after a failed checkpoint) delivers records already applied.
        if message.offset() < state.next_offset {
            return;
        }
        state.next_offset = message.offset() + 1;
        self.stats.processed.fetch_add(1, Ordering::Relaxed);
        let attempt = match self.admit(message) {
            Ok(attempt) => attempt,
            Err((rejection, reason)) => {
                self.stats.rejected.count(rejection);
                self.dead_letter(message, &reason);
                return;
            }
        };
        if let Some(change) = state.apply(&attempt, &self.config.rules) {
            if matches!(change, Change::Block { started: true, .. }) {
                self.stats.blocks_issued.fetch_add(1, Ordering::Relaxed);
            }
            changes.insert(change.user().to_string(), change);
        }
    }

    fn after_batch(&self, _: &StatefulConsumer<Self>) {
        self.send_changes();
    }

    fn before_checkpoint(&self) {
        self.send_changes();
    }

    /// The block records of every attempt processed so far are acknowledged now; the state
    /// of each owned partition that moved follows, signed.
    fn send_checkpoints(&self) -> Vec<Written> {
        let processed = self.stats.processed.load(Ordering::SeqCst);
        self.stats.acknowledged.store(processed, Ordering::SeqCst);
        self.write_snapshots()
    }

    /// Remembers the acknowledged states (what a failed checkpoint later rewinds to) and
    /// tombstones the chunks they supersede.
    fn acknowledged(
        &self,
        consumer: &StatefulConsumer<Self>,
        written: Vec<Written>,
    ) -> Vec<NextOffset> {
        let checkpoints = written.len() as u64;
        let mut owned = self.owned();
        let mut offsets = Vec::new();
        let mut superseded = Vec::new();
        for write in written {
            if let Some(state) = owned.partitions.get(&write.partition) {
                offsets.push((write.partition, state.next_offset));
            }
            if let Some(claim) = owned.claims.get_mut(&write.partition) {
                let keys = claim.acknowledged(write.generation, write.keys);
                superseded.extend(keys.into_iter().map(|key| (write.partition, key)));
            }
            owned.committed.insert(write.partition, write.state);
        }
        drop(owned);
        self.tombstone(consumer, superseded);
        // Counted once the chunks they supersede are tombstoned too, so whoever sees the
        // count (a test reading the topic after it) sees the topic the checkpoint left.
        self.stats
            .checkpoints
            .fetch_add(checkpoints, Ordering::Relaxed);
        offsets
    }

    /// None of these checkpoints counts: each partition's next one goes to the same slot
    /// under a newer generation, and the keys these filled are tombstoned later.
    fn not_acknowledged(&self, _: Vec<Written>) {}

    /// Every owned partition goes back to its last checkpoint, so its block records are
    /// written again.
    fn rewind(&self) -> Vec<NextOffset> {
        let mut owned = self.owned();
        owned.changes.clear();
        let ids: Vec<i32> = owned.partitions.keys().copied().collect();
        let mut offsets = Vec::with_capacity(ids.len());
        for id in ids {
            let state = owned
                .committed
                .get(&id)
                .and_then(|bytes| serde_json::from_slice::<PartitionState>(bytes).ok())
                .unwrap_or_default();
            offsets.push((id, state.next_offset));
            owned.partitions.insert(id, state);
        }
        offsets
    }

    /// Each partition resumes from its newest checkpoint (offset and state), and is claimed
    /// with an epoch above every one read for it.
    fn assign(&self, _: &StatefulConsumer<Self>, ids: &[i32]) -> Vec<NextOffset> {
        let wanted: HashSet<i32> = ids.iter().copied().collect();
        let mut loaded = match read_checkpoints(&self.kafka, &self.config, &wanted) {
            Ok(loaded) => loaded,
            Err(e) => {
                // Starting from the beginning instead is slower, never wrong: the rules are
                // idempotent per attempt and block records are overwritten with the same.
                // (The claim is then epoch 1: readers may prefer an older owner's checkpoint
                // to this one's, which again only means replaying more.)
                tracing::error!(
                    error = %full_message(&e),
                    "cannot read blocker checkpoints; replaying"
                );
                HashMap::new()
            }
        };
        let mut owned = self.owned();
        let mut offsets = Vec::with_capacity(ids.len());
        for &id in ids {
            let resumed = loaded.remove(&id).unwrap_or_default();
            let (state, bytes) = match resumed.newest {
                Some((state, bytes)) => (state, Some(bytes)),
                None => (PartitionState::default(), None),
            };
            let claim = Claim::new(resumed.epoch, resumed.keys);
            tracing::info!(
                partition = id,
                offset = state.next_offset,
                epoch = claim.epoch,
                "login-attempts partition assigned"
            );
            offsets.push((id, state.next_offset));
            owned.partitions.insert(id, state);
            owned.claims.insert(id, claim);
            if let Some(bytes) = bytes {
                owned.committed.insert(id, bytes);
            }
        }
        offsets
    }

    fn revoke(&self, _: bool) {
        let mut owned = self.owned();
        owned.partitions.clear();
        owned.committed.clear();
        owned.claims.clear();
        owned.changes.clear();
        tracing::info!("login-attempts partitions revoked");
    }
}

impl BlockerState {
    fn owned(&self) -> MutexGuard<'_, Owned> {
        self.owned.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// The record's attempt if the guard wrote it; otherwise why not, as a rejection and the
    /// reason for the dead-letter record.
    fn admit(&self, message: &BorrowedMessage<'_>) -> Result<Attempt, (Rejection, String)> {
        let attempt = Attempt::parse(message.payload()).map_err(|detail| {
            let reason = format!("{}: {detail}", Rejection::Unreadable.reason());
            (Rejection::Unreadable, reason)
        })?;
        attempt
            .verify(&self.config.secret, message.key())
            .map_err(|rejection| (rejection, rejection.reason().to_string()))?;
        Ok(attempt)
    }

    /// Copies a refused record, unchanged, to the dead-letter topic with the reason and its
    /// origin in headers. Never drops it: a full queue is waited out.
    fn dead_letter(&self, message: &BorrowedMessage<'_>, reason: &str) {
        tracing::debug!(
            partition = message.partition(),
            offset = message.offset(),
            reason,
            "dead-lettering a login-attempts record"
        );
        let origin = format!(
            "{}/{}/{}",
            message.topic(),
            message.partition(),
            message.offset()
        );
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: REASON_HEADER,
                value: Some(reason),
            })
            .insert(Header {
                key: ORIGIN_HEADER,
                value: Some(origin.as_str()),
            });
        let mut record = BaseRecord::<[u8], [u8]>::to(&self.config.dlq_topic).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(value) = message.payload() {
            record = record.payload(value);
        }
        self.send(record);
    }

    /// Sends the pending block and unblock records, signed.
    fn send_changes(&self) {
        let changes = std::mem::take(&mut self.owned().changes);
        for (user, change) in changes {
            let entry = match change {
                Change::Block { record, .. } => BlockEntry::block(record),
                Change::Unblock { user, time_ms } => BlockEntry::unblock(&user, time_ms),
            };
            let value = entry.signed(&self.config.secret).to_json();
            self.send(
                BaseRecord::<[u8], [u8]>::to(&self.config.blocks_topic)
                    .key(user.as_bytes())
                    .payload(value.as_slice()),
            );
            self.stats.block_writes.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn send(&self, record: BaseRecord<'_, [u8], [u8]>) {
        crate::kafka::enqueue(&self.producer, record);
    }

    /// Sends, signed, the chunks of a checkpoint of each owned partition that changed since
    /// its last one; returns what was sent.
    fn write_snapshots(&self) -> Vec<Written> {
        let snapshots = self.take_snapshots();
        let mut owned = self.owned();
        let mut out = Vec::with_capacity(snapshots.len());
        for (partition, state) in snapshots {
            let Some(claim) = owned.claims.get_mut(&partition) else {
                continue;
            };
            let generation = claim.next_generation();
            let chunks = encode_checkpoint(
                &self.config.attempts_topic,
                partition,
                claim.epoch,
                claim.writer,
                generation,
                &state,
            );
            let keys: BTreeSet<String> = chunks.iter().map(|(key, _)| key.clone()).collect();
            // Sent, maybe not acknowledged: these keys may hold chunks from now on.
            claim.live.extend(keys.iter().cloned());
            for (key, value) in &chunks {
                let signature = sign_checkpoint(&self.config.secret, key, value);
                let headers = OwnedHeaders::new().insert(Header {
                    key: MAC_HEADER,
                    value: Some(signature.as_str()),
                });
                self.send(
                    BaseRecord::to(&self.config.checkpoint_topic)
                        .partition(0)
                        .key(key.as_bytes())
                        .payload(value.as_slice())
                        .headers(headers),
                );
            }
            out.push(Written {
                partition,
                generation,
                keys,
                state,
            });
        }
        out
    }

    /// The pruned state of each owned partition that changed since its last checkpoint.
    fn take_snapshots(&self) -> Vec<(i32, Vec<u8>)> {
        let mut owned = self.owned();
        let Owned {
            partitions,
            committed,
            ..
        } = &mut *owned;
        let mut out = Vec::new();
        for (id, state) in partitions.iter_mut() {
            state.prune(&self.config.rules);
            let value = serde_json::to_vec(state).unwrap_or_default();
            if committed.get(id) == Some(&value) {
                continue;
            }
            if value.len() > MAX_CHECKPOINT_BYTES {
                tracing::error!(
                    partition = id,
                    bytes = value.len(),
                    "checkpoint too large; the partition is replayed from its last one on restart"
                );
                continue;
            }
            out.push((*id, value));
        }
        out
    }

    /// Tombstones checkpoint keys that a newer, acknowledged checkpoint superseded. Those not
    /// acknowledged are tried again after the partition's next checkpoint.
    fn tombstone(&self, consumer: &StatefulConsumer<Self>, keys: Vec<(i32, String)>) {
        if keys.is_empty() {
            return;
        }
        for (_, key) in &keys {
            // Forgetting a checkpoint only makes the partition replay: tombstones are unsigned.
            self.send(
                BaseRecord::<[u8], [u8]>::to(&self.config.checkpoint_topic)
                    .partition(0)
                    .key(key.as_bytes()),
            );
        }
        if consumer.context().flush() {
            return;
        }
        tracing::warn!(
            keys = keys.len(),
            "superseded blocker checkpoint chunks not tombstoned; retrying after the next checkpoint"
        );
        let mut owned = self.owned();
        for (partition, key) in keys {
            if let Some(claim) = owned.claims.get_mut(&partition) {
                claim.live.insert(key);
            }
        }
    }
}

/// A checkpoint sent and waiting for its acknowledgement.
struct Written {
    partition: i32,
    generation: u64,
    keys: BTreeSet<String>,
    /// The state's JSON, what later checkpoints are compared with.
    state: Vec<u8>,
}
