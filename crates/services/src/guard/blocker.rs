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
//! Rebalances are handled in `BlockerContext::rebalance`, called by librdkafka inside
//! `poll` on the worker thread: revoked partitions are checkpointed first; assigned ones
//! resume from their newest checkpoint's offset and state (the group's committed offsets only
//! serve lag tools).
//!
//! # Checkpoints
//!
//! A partition's state (its JSON, at most [`MAX_CHECKPOINT_BYTES`]) is written as one or more
//! chunk records, each value at most [`MAX_CHUNK_BYTES`] (below 512 KiB, so a topic with a
//! stock Kafka's default `max.message.bytes` of 1 MB takes them). Key
//! `<input topic>/<partition>/<epoch>/<slot>/<chunk>`; value a [`ChunkHeader`] then the
//! chunk's slice of the state; the MAC (header [`MAC_HEADER`]) covers key and value bytes.
//!
//! - **Slots.** The slot is the generation modulo 2. A checkpoint goes to the slot that does
//!   not hold the newest acknowledged one (a failed write is retried two generations on, in
//!   the same slot), so a crash half-way through leaves that one whole. Keys repeat from
//!   generation to generation, so compaction replaces old chunks; once a checkpoint is
//!   acknowledged, every other key known to hold a chunk of the partition (the other slot,
//!   chunks beyond the new count, older epochs, the old single-record format) gets a
//!   tombstone.
//! - **Fencing.** The blocker that gains a partition claims an epoch one above the highest it
//!   read for it (and a random writer id). Readers take the complete checkpoint with the
//!   highest (epoch, generation): a blocker paused past its session timeout (a zombie) that
//!   wakes up and checkpoints under its old epoch, into keys of its own, neither replaces nor
//!   damages the new owner's checkpoints. (Two owners that claimed the same epoch, which
//!   needs a zombie that never wrote in its epoch, share keys: their chunks never combine,
//!   the writer id tells them apart, but one may break the other's, and the partition then
//!   replays.)
//! - **Complete.** A checkpoint counts only when every chunk of its (epoch, writer,
//!   generation) is there, each validly signed, and together they are the announced length
//!   of a readable state. Anything else (a crash mid-write, a forged or altered chunk) is
//!   ignored, and the previous complete one is used.
//! - **Upgrade.** A record of the old single-record format (key `<input topic>/<partition>`,
//!   value the JSON state, same MAC) still counts, as epoch 0 generation 0, and is
//!   tombstoned once a new checkpoint of the partition is acknowledged.
//! - **Bounds.** A state above [`MAX_CHECKPOINT_BYTES`] is not checkpointed (logged; the
//!   partition resumes from its previous checkpoint). Readers keep only signed chunks of the
//!   partitions being assigned that claim at most that total, so memory holds a few
//!   checkpoints of the assigned partitions at most.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

use super::attempts::Attempt;
use super::blocks::BlockEntry;
use super::mac::{self, Canonical, Rejection, MAC_HEADER};
use super::rules::{Change, PartitionState, Rules};
use super::secret::GuardSecret;
use super::stats::RejectionCounts;
use super::GuardError;
use crate::error::full_message;
use crate::event::{ORIGIN_HEADER, REASON_HEADER};
use crate::kafka::{CreateClient, DeliveryCounter};
use crate::KafkaConfig;

/// Messages polled per round before block records are sent.
const BATCH: usize = 16_384;
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest partition state (its JSON) checkpointed, over all its chunks: a partition with tens
/// of thousands of users under attack. It bounds what a blocker reads and keeps in memory
/// when it gains partitions (inside the rebalance, which waits for it), not any record.
pub const MAX_CHECKPOINT_BYTES: usize = 16 << 20;
/// Largest checkpoint chunk value (header and state bytes): below 512 KiB, so two fit a stock
/// Kafka's default record and request limits (1 MB).
pub const MAX_CHUNK_BYTES: usize = 512 * 1024 - 1;
/// State bytes per chunk.
const CHUNK_STATE_BYTES: usize = MAX_CHUNK_BYTES - CHUNK_HEADER_BYTES;
/// Most chunks a checkpoint of at most [`MAX_CHECKPOINT_BYTES`] has.
const MAX_CHUNKS: u32 = MAX_CHECKPOINT_BYTES.div_ceil(CHUNK_STATE_BYTES) as u32;
const _: () = assert!(MAX_CHUNK_BYTES < 512 * 1024 && CHUNK_STATE_BYTES > 0);
const CHUNK_MAGIC: &[u8; 4] = b"FGC1";
/// Magic, epoch, writer, generation, chunk, count, state length.
const CHUNK_HEADER_BYTES: usize = 4 + 8 + 8 + 8 + 4 + 4 + 8;
/// The producer's request limit: dead-lettered copies of `login-attempts` records are as
/// large as that topic allows (an operator may have raised its limit).
const PRODUCER_MAX_MESSAGE_BYTES: usize = (16 << 20) + 4096;
/// The checkpoint reader's fetch size: records of the old single-record format are up to
/// 16 MiB.
const LEGACY_CHECKPOINT_FETCH_BYTES: usize = (16 << 20) + 4096;

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
    /// Checkpoints written.
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

struct Worker {
    consumer: BaseConsumer<BlockerContext>,
    stopping: Arc<AtomicBool>,
}

impl Worker {
    fn new(
        kafka: &KafkaConfig,
        config: BlockerConfig,
        stopping: Arc<AtomicBool>,
        stats: Arc<BlockerStats>,
    ) -> Result<Worker, GuardError> {
        let producer: ThreadedProducer<DeliveryCounter> = kafka
            .durable_producer_config("guard-blocker")
            .set("linger.ms", "2")
            .set("message.max.bytes", PRODUCER_MAX_MESSAGE_BYTES.to_string())
            .create_client_with(DeliveryCounter::new("blocker"))?;
        let session_timeout = config.session_timeout;
        let topic = config.attempts_topic.clone();
        let group = config.group.clone();
        let context = BlockerContext {
            kafka: kafka.clone(),
            config,
            producer,
            stats,
            owned: Mutex::new(Owned::default()),
        };
        let consumer: BaseConsumer<BlockerContext> = kafka
            .stateful_group_config("guard-blocker", &group, session_timeout)
            // Attempts are ~150 bytes: large fetches keep the prefetch queue full, so the
            // worker never waits on a round trip between batches.
            .set("max.partition.fetch.bytes", (8 << 20).to_string())
            .create_client_with(context)?;
        consumer
            .subscribe(&[&topic])
            .map_err(GuardError::kafka(format!("subscribing to {topic}")))?;
        Ok(Worker { consumer, stopping })
    }

    fn run(self) {
        let context = self.consumer.context();
        let interval = context.config.checkpoint_interval;
        let mut last_checkpoint = Instant::now();
        while !self.stopping.load(Ordering::SeqCst) {
            self.poll_batch(context);
            context.send_changes();
            if last_checkpoint.elapsed() >= interval {
                context.checkpoint(&self.consumer);
                last_checkpoint = Instant::now();
            }
        }
        // Closing the consumer revokes its partitions, which writes the last checkpoint.
        drop(self.consumer);
        tracing::info!("blocker stopped");
    }

    fn poll_batch(&self, context: &BlockerContext) {
        let mut timeout = Duration::from_millis(100);
        for _ in 0..BATCH {
            match self.consumer.poll(timeout) {
                Some(Ok(message)) => context.process(&message),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consuming login attempts");
                    return;
                }
                None => return,
            }
            timeout = Duration::ZERO;
        }
    }
}

/// The partitions this worker owns. Only the worker thread touches it (rebalance callbacks
/// run inside its `poll`); the mutex is for the `&self` context API.
#[derive(Default)]
struct Owned {
    partitions: HashMap<i32, PartitionState>,
    /// The last checkpoint written per partition: where a failed checkpoint rewinds to.
    committed: HashMap<i32, Vec<u8>>,
    /// This worker's claim on each owned partition's checkpoints.
    claims: HashMap<i32, Claim>,
    /// Block changes not yet sent, the newest per user.
    changes: HashMap<String, Change>,
    failures_seen: u64,
}

struct BlockerContext {
    kafka: KafkaConfig,
    config: BlockerConfig,
    producer: ThreadedProducer<DeliveryCounter>,
    stats: Arc<BlockerStats>,
    owned: Mutex<Owned>,
}

impl ClientContext for BlockerContext {}

impl ConsumerContext for BlockerContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        crate::kafka::rebalance_with(
            consumer,
            err,
            tpl,
            |tpl| self.on_assign(tpl),
            || self.on_revoke(consumer),
        );
    }
}

impl BlockerContext {
    fn owned(&self) -> MutexGuard<'_, Owned> {
        self.owned.lock().unwrap_or_else(|e| e.into_inner())
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

    /// Waits until everything sent is acknowledged; false if anything failed.
    fn flush(&self) -> bool {
        if let Err(e) = self.producer.flush(FLUSH_TIMEOUT) {
            tracing::error!(error = %e, "blocker records not acknowledged in time");
            return false;
        }
        let failures = self.producer.context().failures();
        let mut owned = self.owned();
        let ok = failures == owned.failures_seen;
        owned.failures_seen = failures;
        ok
    }

    /// Writes the state of every owned partition that moved, after its block records are
    /// acknowledged, then tombstones the chunks it supersedes. On failure, rewinds the owned
    /// partitions to their last checkpoint.
    fn checkpoint(&self, consumer: &BaseConsumer<Self>) -> bool {
        self.send_changes();
        let processed = self.stats.processed.load(Ordering::SeqCst);
        if !self.flush() {
            self.rewind(consumer);
            return false;
        }
        self.stats.acknowledged.store(processed, Ordering::SeqCst);
        let written = self.write_snapshots();
        if !self.flush() {
            // None of these checkpoints counts: each partition's next one goes to the same
            // slot under a newer generation, and the keys these filled are tombstoned later.
            self.rewind(consumer);
            return false;
        }
        self.stats
            .checkpoints
            .fetch_add(written.len() as u64, Ordering::Relaxed);
        let mut owned = self.owned();
        let mut offsets = TopicPartitionList::new();
        let mut superseded = Vec::new();
        for write in written {
            if let Some(state) = owned.partitions.get(&write.partition) {
                let _ = offsets.add_partition_offset(
                    &self.config.attempts_topic,
                    write.partition,
                    Offset::Offset(state.next_offset),
                );
            }
            if let Some(claim) = owned.claims.get_mut(&write.partition) {
                let keys = claim.acknowledged(write.generation, write.keys);
                superseded.extend(keys.into_iter().map(|key| (write.partition, key)));
            }
            owned.committed.insert(write.partition, write.state);
        }
        drop(owned);
        self.tombstone(superseded);
        if offsets.count() > 0 {
            if let Err(e) = consumer.commit(&offsets, CommitMode::Async) {
                tracing::debug!(error = %e, "committing blocker offsets");
            }
        }
        true
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

    /// Tombstones checkpoint keys that a newer, acknowledged checkpoint superseded. Those not
    /// acknowledged are tried again after the partition's next checkpoint.
    fn tombstone(&self, keys: Vec<(i32, String)>) {
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
        if self.flush() {
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

    /// After a failed delivery: every owned partition restarts from its last checkpoint, so
    /// its block records are written again.
    fn rewind(&self, consumer: &BaseConsumer<Self>) {
        let mut owned = self.owned();
        owned.changes.clear();
        let ids: Vec<i32> = owned.partitions.keys().copied().collect();
        for id in ids {
            let state = owned
                .committed
                .get(&id)
                .and_then(|bytes| serde_json::from_slice::<PartitionState>(bytes).ok())
                .unwrap_or_default();
            let offset = start_offset(state.next_offset);
            owned.partitions.insert(id, state);
            let topic = &self.config.attempts_topic;
            if let Err(e) = consumer.seek(topic, id, offset, Duration::from_secs(5)) {
                tracing::error!(error = %e, partition = id, "rewinding after a failed checkpoint");
            }
        }
        tracing::warn!("blocker checkpoint failed; owned partitions rewound to their last one");
    }

    /// Partitions arrive: each resumes from its newest checkpoint (offset and state), and is
    /// claimed with an epoch above every one read for it.
    fn on_assign(&self, tpl: &mut TopicPartitionList) {
        let ids: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
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
        for id in ids {
            let resumed = loaded.remove(&id).unwrap_or_default();
            let (state, bytes) = match resumed.newest {
                Some((state, bytes)) => (state, Some(bytes)),
                None => (PartitionState::default(), None),
            };
            let topic = &self.config.attempts_topic;
            if let Err(e) = tpl.set_partition_offset(topic, id, start_offset(state.next_offset)) {
                tracing::error!(error = %e, partition = id, "setting the start offset");
            }
            let claim = Claim::new(resumed.epoch, resumed.keys);
            tracing::info!(
                partition = id,
                offset = state.next_offset,
                epoch = claim.epoch,
                "login-attempts partition assigned"
            );
            owned.partitions.insert(id, state);
            owned.claims.insert(id, claim);
            if let Some(bytes) = bytes {
                owned.committed.insert(id, bytes);
            }
        }
    }

    /// Partitions leave: checkpoint them, then forget them.
    fn on_revoke(&self, consumer: &BaseConsumer<Self>) {
        self.checkpoint(consumer);
        let mut owned = self.owned();
        owned.partitions.clear();
        owned.committed.clear();
        owned.claims.clear();
        owned.changes.clear();
        tracing::info!("login-attempts partitions revoked");
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

/// A worker's claim on one partition's checkpoints, from assignment to revocation.
#[derive(Debug)]
struct Claim {
    epoch: u64,
    /// Random: tells apart two owners that claimed the same epoch.
    writer: u64,
    /// The generation after the last one written (or tried).
    next: u64,
    /// The newest acknowledged generation of this claim.
    complete: Option<u64>,
    /// Keys that may hold a value for the partition: read at assignment, or written since.
    live: BTreeSet<String>,
}

impl Claim {
    /// The claim of a worker that read `epoch` as the partition's highest and `live` as its
    /// keys.
    fn new(epoch: u64, live: BTreeSet<String>) -> Claim {
        Claim {
            epoch: epoch.saturating_add(1),
            writer: uuid::Uuid::new_v4().as_u64_pair().0,
            next: 0,
            complete: None,
            live,
        }
    }

    /// The generation of the next checkpoint: never in the slot of the newest acknowledged
    /// one, so that one stays whole whatever happens to this one.
    fn next_generation(&mut self) -> u64 {
        let mut generation = self.next;
        if self.complete.is_some_and(|c| c % 2 == generation % 2) {
            generation += 1;
        }
        self.next = generation + 1;
        generation
    }

    /// `generation`, written to `keys`, is acknowledged: returns every other key that may
    /// hold a value, to tombstone.
    fn acknowledged(&mut self, generation: u64, keys: BTreeSet<String>) -> Vec<String> {
        self.complete = Some(generation);
        let superseded = self.live.difference(&keys).cloned().collect();
        self.live = keys;
        superseded
    }
}

/// What every chunk value starts with (little-endian, 44 bytes): magic `FGC1`,
/// epoch u64, writer u64, generation u64, chunk u32, count u32, state length u64. The chunk's
/// slice of the state's JSON follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    /// The writer's claim on the partition.
    pub epoch: u64,
    /// Random per claim.
    pub writer: u64,
    /// Checkpoints written (or tried) under this claim before this one.
    pub generation: u64,
    /// This chunk's place, from 0.
    pub chunk: u32,
    /// Chunks of the checkpoint.
    pub count: u32,
    /// Bytes of the whole state.
    pub state_len: u64,
}

impl ChunkHeader {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(CHUNK_MAGIC);
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.writer.to_le_bytes());
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.chunk.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.state_len.to_le_bytes());
    }

    /// The header of a chunk value and the state bytes after it; `None` if it is not one.
    pub fn decode(value: &[u8]) -> Option<(ChunkHeader, &[u8])> {
        if value.len() < CHUNK_HEADER_BYTES || !value.starts_with(CHUNK_MAGIC) {
            return None;
        }
        let (header, state) = value.split_at(CHUNK_HEADER_BYTES);
        let u64_at = |at: usize| {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(&header[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        let u32_at = |at: usize| {
            let mut bytes = [0; 4];
            bytes.copy_from_slice(&header[at..at + 4]);
            u32::from_le_bytes(bytes)
        };
        let header = ChunkHeader {
            epoch: u64_at(4),
            writer: u64_at(12),
            generation: u64_at(20),
            chunk: u32_at(28),
            count: u32_at(32),
            state_len: u64_at(36),
        };
        Some((header, state))
    }
}

/// The key of one chunk: `<input topic>/<partition>/<epoch>/<slot>/<chunk>`, the slot being
/// the generation modulo 2.
pub fn chunk_key(topic: &str, partition: i32, epoch: u64, generation: u64, chunk: u32) -> String {
    let slot = generation % 2;
    format!("{topic}/{partition}/{epoch}/{slot}/{chunk}")
}

/// The key of a checkpoint of the old single-record format.
pub fn legacy_checkpoint_key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// The chunk records, (key, value) unsigned, of a checkpoint of `state` (the partition
/// state's JSON): at least one, each value at most [`MAX_CHUNK_BYTES`].
pub fn encode_checkpoint(
    topic: &str,
    partition: i32,
    epoch: u64,
    writer: u64,
    generation: u64,
    state: &[u8],
) -> Vec<(String, Vec<u8>)> {
    let mut slices: Vec<&[u8]> = state.chunks(CHUNK_STATE_BYTES).collect();
    if slices.is_empty() {
        slices.push(&[]);
    }
    let count = u32::try_from(slices.len()).unwrap_or(u32::MAX);
    slices
        .into_iter()
        .zip(0..)
        .map(|(slice, chunk)| {
            let header = ChunkHeader {
                epoch,
                writer,
                generation,
                chunk,
                count,
                state_len: state.len() as u64,
            };
            let mut value = Vec::with_capacity(CHUNK_HEADER_BYTES + slice.len());
            header.encode(&mut value);
            value.extend_from_slice(slice);
            (chunk_key(topic, partition, epoch, generation, chunk), value)
        })
        .collect()
}

/// The MAC (hex, for the [`MAC_HEADER`] header) of a checkpoint record: it covers the key and
/// the value's bytes, which this code alone writes and reads, so its bytes are what is meant.
/// The same for chunks and for the old single-record format.
pub fn sign_checkpoint(secret: &GuardSecret, key: &str, value: &[u8]) -> String {
    mac::sign(secret, &checkpoint_canonical(key, value))
}

fn checkpoint_canonical(key: &str, value: &[u8]) -> Canonical {
    Canonical::new("checkpoint", Some(key.as_bytes())).bytes(value)
}

/// Whether the guard wrote this checkpoint record.
fn checkpoint_is_signed(secret: &GuardSecret, key: &str, message: &BorrowedMessage<'_>) -> bool {
    let signature = message
        .headers()
        .and_then(|headers| headers.iter().find(|h| h.key == MAC_HEADER))
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok());
    let value = message.payload().unwrap_or_default();
    mac::verify(secret, &checkpoint_canonical(key, value), signature).is_ok()
}

/// What a checkpoint key (past `<input topic>/`) names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckpointKey {
    /// `<partition>`: the old single-record format.
    Legacy { partition: i32 },
    /// `<partition>/<epoch>/<slot>/<chunk>`.
    Chunk {
        partition: i32,
        epoch: u64,
        slot: u64,
        chunk: u32,
    },
}

impl CheckpointKey {
    fn parse(rest: &str) -> Option<CheckpointKey> {
        let mut parts = rest.split('/');
        let partition = parts.next()?.parse().ok()?;
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (None, ..) => Some(CheckpointKey::Legacy { partition }),
            (Some(epoch), Some(slot), Some(chunk), None) => Some(CheckpointKey::Chunk {
                partition,
                epoch: epoch.parse().ok()?,
                slot: slot.parse().ok()?,
                chunk: chunk.parse().ok()?,
            }),
            _ => None,
        }
    }

    fn partition(self) -> i32 {
        match self {
            CheckpointKey::Legacy { partition } | CheckpointKey::Chunk { partition, .. } => {
                partition
            }
        }
    }
}

/// A signed checkpoint record, checked against its key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stored {
    /// The state's JSON, in the old single-record format.
    Legacy(Vec<u8>),
    Chunk(ChunkHeader, Vec<u8>),
}

impl Stored {
    /// The record as a checkpoint, if it is one this reader can use.
    fn from_record(key: CheckpointKey, value: &[u8]) -> Option<Stored> {
        match key {
            CheckpointKey::Legacy { .. } => Some(Stored::Legacy(value.to_vec())),
            CheckpointKey::Chunk {
                epoch, slot, chunk, ..
            } => {
                let (header, state) = ChunkHeader::decode(value)?;
                let fits = header.epoch == epoch
                    && header.generation % 2 == slot
                    && header.chunk == chunk
                    && header.chunk < header.count
                    && header.count <= MAX_CHUNKS
                    && header.state_len <= MAX_CHECKPOINT_BYTES as u64
                    && state.len() as u64 <= header.state_len;
                fits.then(|| Stored::Chunk(header, state.to_vec()))
            }
        }
    }
}

/// The latest record of each checkpoint key of one partition, as read (or as compaction
/// leaves them).
#[derive(Debug, Default)]
struct PartitionRecords {
    /// Signed, usable values by key.
    values: HashMap<String, Stored>,
    /// Keys whose latest record has a value, usable or not: what a new checkpoint
    /// supersedes.
    keys: BTreeSet<String>,
}

impl PartitionRecords {
    /// Applies the next record of `key`: `None` for a tombstone; `Some(None)` for a value
    /// without a valid MAC or that is no checkpoint, which changes nothing but the keys.
    fn apply(&mut self, key: &str, value: Option<Option<Stored>>) {
        match value {
            None => {
                self.values.remove(key);
                self.keys.remove(key);
            }
            Some(stored) => {
                self.keys.insert(key.to_string());
                if let Some(stored) = stored {
                    self.values.insert(key.to_string(), stored);
                }
            }
        }
    }

    /// The newest complete checkpoint: the highest (epoch, generation) whose chunks are all
    /// here and make a state, else one of the old format.
    fn resume(self, partition: i32) -> Resumed {
        let mut epoch = 0;
        let mut legacy = None;
        let mut checkpoints: BTreeMap<(u64, u64, u64), Chunks> = BTreeMap::new();
        for stored in self.values.into_values() {
            match stored {
                Stored::Legacy(state) => legacy = Some(state),
                Stored::Chunk(header, state) => {
                    epoch = epoch.max(header.epoch);
                    checkpoints
                        .entry((header.epoch, header.generation, header.writer))
                        .or_default()
                        .push((header, state));
                }
            }
        }
        let mut newest = None;
        for ((epoch, generation, _), chunks) in checkpoints.into_iter().rev() {
            newest = assemble(chunks);
            if newest.is_some() {
                break;
            }
            tracing::warn!(
                partition,
                epoch,
                generation,
                "ignoring an incomplete blocker checkpoint (missing or unsigned chunks)"
            );
        }
        let newest = newest.or_else(|| {
            let bytes = legacy?;
            let state = serde_json::from_slice::<PartitionState>(&bytes).ok()?;
            Some((state, bytes))
        });
        Resumed {
            newest,
            epoch,
            keys: self.keys,
        }
    }
}

/// Chunks of one checkpoint: headers and state bytes.
type Chunks = Vec<(ChunkHeader, Vec<u8>)>;

/// One checkpoint's chunks joined, if they are all there and make a state.
fn assemble(mut chunks: Chunks) -> Option<(PartitionState, Vec<u8>)> {
    chunks.sort_by_key(|(header, _)| header.chunk);
    let (first, _) = chunks.first()?;
    let (count, state_len) = (first.count, first.state_len);
    let whole = chunks.len() == count as usize
        && chunks
            .iter()
            .zip(0..)
            .all(|((h, _), i)| h.chunk == i && h.count == count && h.state_len == state_len)
        && chunks.iter().map(|(_, s)| s.len() as u64).sum::<u64>() == state_len;
    if !whole {
        return None;
    }
    let bytes = chunks
        .into_iter()
        .flat_map(|(_, state)| state)
        .collect::<Vec<u8>>();
    let state = serde_json::from_slice::<PartitionState>(&bytes).ok()?;
    Some((state, bytes))
}

/// What a worker gaining a partition starts from.
#[derive(Debug, Default)]
struct Resumed {
    /// The newest complete checkpoint: the state and its JSON.
    newest: Option<(PartitionState, Vec<u8>)>,
    /// The highest epoch of any signed chunk of the partition (0: none).
    epoch: u64,
    /// Keys that hold a value for the partition.
    keys: BTreeSet<String>,
}

fn start_offset(next_offset: i64) -> Offset {
    if next_offset == 0 {
        Offset::Beginning
    } else {
        Offset::Offset(next_offset)
    }
}

/// The newest complete checkpoint of each partition of `wanted`, its highest epoch and its
/// keys, read from the compacted checkpoint topic up to its current end.
fn read_checkpoints(
    kafka: &KafkaConfig,
    config: &BlockerConfig,
    wanted: &HashSet<i32>,
) -> Result<HashMap<i32, Resumed>, GuardError> {
    let consumer: BaseConsumer = kafka
        .client_config("guard-checkpoints")
        .set("group.id", format!("{}-checkpoints", config.group))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "fetch.message.max.bytes",
            LEGACY_CHECKPOINT_FETCH_BYTES.to_string(),
        )
        .create_client()?;
    let topic = &config.checkpoint_topic;
    let failed = |what: &str| GuardError::kafka(format!("{what} {topic}"));
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .map_err(failed("reading the offsets of"))?;
    let mut records: HashMap<i32, PartitionRecords> = HashMap::new();
    if high > low {
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, 0, Offset::Beginning)
            .and_then(|()| consumer.assign(&assignment))
            .map_err(failed("assigning"))?;
    }
    let prefix = format!("{}/", config.attempts_topic);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut position = low;
    while position < high {
        if Instant::now() >= deadline {
            return Err(GuardError::CheckpointsTimeout);
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.map_err(failed("reading"))?;
        position = message.offset() + 1;
        let key = message.key().and_then(|k| std::str::from_utf8(k).ok());
        let parsed = key
            .and_then(|k| k.strip_prefix(&prefix))
            .and_then(CheckpointKey::parse);
        let (Some(key), Some(parsed)) = (key, parsed) else {
            continue;
        };
        let partition = parsed.partition();
        if !wanted.contains(&partition) {
            continue;
        }
        let value = match message.payload() {
            // Forgetting a checkpoint only makes the partition replay: no need to sign that.
            None => None,
            Some(value) if checkpoint_is_signed(&config.secret, key, &message) => {
                let stored = Stored::from_record(parsed, value);
                if stored.is_none() {
                    tracing::warn!(
                        partition,
                        offset = message.offset(),
                        "ignoring a signed blocker checkpoint record this version cannot read"
                    );
                }
                Some(stored)
            }
            Some(_) => {
                tracing::warn!(
                    partition,
                    offset = message.offset(),
                    "ignoring a blocker checkpoint record without a valid MAC"
                );
                Some(None)
            }
        };
        records.entry(partition).or_default().apply(key, value);
    }
    Ok(records
        .into_iter()
        .map(|(partition, records)| (partition, records.resume(partition)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "login-attempts";

    fn state_json(next_offset: i64, padding_users: usize) -> Vec<u8> {
        let mut state = PartitionState::default();
        state.next_offset = next_offset;
        let rules = Rules {
            window_ms: i64::MAX / 4,
            ..Rules::default()
        };
        for i in 0..padding_users {
            let attempt = Attempt::login(&format!("user-{i:05}"), "10.0.0.1", false);
            state.apply(&attempt, &rules);
        }
        serde_json::to_vec(&state).expect("json")
    }

    /// The records of a checkpoint, as the reader stores them.
    fn stored(
        partition: i32,
        epoch: u64,
        writer: u64,
        generation: u64,
        state: &[u8],
    ) -> Vec<(String, Stored)> {
        encode_checkpoint(TOPIC, partition, epoch, writer, generation, state)
            .into_iter()
            .map(|(key, value)| {
                let parsed = key
                    .strip_prefix("login-attempts/")
                    .and_then(CheckpointKey::parse)
                    .expect("key");
                (key, Stored::from_record(parsed, &value).expect("chunk"))
            })
            .collect()
    }

    fn apply_all(records: &mut PartitionRecords, chunks: Vec<(String, Stored)>) {
        for (key, value) in chunks {
            records.apply(&key, Some(Some(value)));
        }
    }

    fn resumed_offset(records: PartitionRecords) -> Option<i64> {
        records.resume(0).newest.map(|(state, _)| state.next_offset)
    }

    #[test]
    fn a_large_state_is_cut_into_bounded_chunks_that_join_again() {
        let state = state_json(7, 20_000);
        assert!(state.len() > 1 << 20, "{} bytes", state.len());
        let chunks = encode_checkpoint(TOPIC, 2, 3, 9, 5, &state);
        assert!(chunks.len() >= 3);
        assert!(chunks.iter().all(|(_, v)| v.len() <= MAX_CHUNK_BYTES));
        assert_eq!(chunks[0].0, "login-attempts/2/3/1/0");
        assert_eq!(chunks[1].0, "login-attempts/2/3/1/1");
        let (header, _) = ChunkHeader::decode(&chunks[1].1).expect("header");
        assert_eq!(
            header,
            ChunkHeader {
                epoch: 3,
                writer: 9,
                generation: 5,
                chunk: 1,
                count: chunks.len() as u32,
                state_len: state.len() as u64,
            }
        );
        let mut records = PartitionRecords::default();
        apply_all(&mut records, stored(2, 3, 9, 5, &state));
        let resumed = records.resume(2);
        assert_eq!(resumed.epoch, 3);
        assert_eq!(resumed.newest.map(|(_, bytes)| bytes), Some(state));
        assert_eq!(resumed.keys.len(), chunks.len());
        // Generations alternate between two slots; keys repeat.
        assert_eq!(
            encode_checkpoint(TOPIC, 2, 3, 9, 7, b"{}")[0].0,
            chunks[0].0
        );
        assert_eq!(
            encode_checkpoint(TOPIC, 2, 3, 9, 6, b"{}")[0].0,
            "login-attempts/2/3/0/0"
        );
    }

    #[test]
    fn a_checkpoint_with_a_missing_chunk_gives_way_to_the_previous_complete_one() {
        let old = state_json(100, 8_000);
        let new = state_json(200, 8_000);
        let mut records = PartitionRecords::default();
        apply_all(&mut records, stored(0, 1, 1, 4, &old));
        let mut newer = stored(0, 1, 1, 5, &new);
        assert!(newer.len() >= 2);
        newer.remove(1);
        apply_all(&mut records, newer);
        assert_eq!(resumed_offset(records), Some(100));
    }

    #[test]
    fn the_highest_epoch_wins_whatever_the_generations_and_the_order() {
        let mut records = PartitionRecords::default();
        apply_all(&mut records, stored(0, 2, 1, 0, &state_json(300, 0)));
        // A zombie of epoch 1 checkpoints later, with more generations behind it.
        apply_all(&mut records, stored(0, 1, 2, 41, &state_json(250, 0)));
        records.apply(
            &legacy_checkpoint_key(TOPIC, 0),
            Some(Some(Stored::Legacy(state_json(900, 0)))),
        );
        let resumed = records.resume(0);
        assert_eq!(resumed.epoch, 2);
        assert_eq!(resumed.newest.map(|(s, _)| s.next_offset), Some(300));
        assert_eq!(resumed.keys.len(), 3, "every key is superseded later");
    }

    #[test]
    fn chunks_of_two_writers_never_combine() {
        let a = state_json(10, 8_000);
        let b = state_json(20, 8_000);
        let mut records = PartitionRecords::default();
        let mut first = stored(0, 1, 1, 0, &a);
        let second = stored(0, 1, 2, 0, &b);
        // Writer 2 overwrote chunk 0 only (it crashed after it).
        first[0] = second[0].clone();
        apply_all(&mut records, first);
        assert_eq!(resumed_offset(records), None);
    }

    #[test]
    fn an_old_single_record_checkpoint_is_read_until_a_chunked_one_exists() {
        let mut records = PartitionRecords::default();
        let key = legacy_checkpoint_key(TOPIC, 0);
        assert_eq!(
            CheckpointKey::parse("0"),
            Some(CheckpointKey::Legacy { partition: 0 })
        );
        records.apply(&key, Some(Some(Stored::Legacy(state_json(42, 3)))));
        let resumed = records.resume(0);
        assert_eq!(resumed.epoch, 0);
        assert_eq!(resumed.newest.map(|(s, _)| s.next_offset), Some(42));

        let mut records = PartitionRecords::default();
        records.apply(&key, Some(Some(Stored::Legacy(state_json(42, 3)))));
        apply_all(&mut records, stored(0, 1, 1, 0, &state_json(50, 3)));
        assert_eq!(resumed_offset(records), Some(50));
    }

    #[test]
    fn unsigned_values_change_nothing_and_tombstones_forget() {
        let mut records = PartitionRecords::default();
        let chunks = stored(0, 1, 1, 0, &state_json(5, 0));
        let key = chunks[0].0.clone();
        apply_all(&mut records, chunks);
        records.apply(&key, Some(None));
        assert_eq!(resumed_offset(records), Some(5));

        let mut records = PartitionRecords::default();
        apply_all(&mut records, stored(0, 1, 1, 0, &state_json(5, 0)));
        records.apply(&key, None);
        let resumed = records.resume(0);
        assert!(resumed.newest.is_none() && resumed.keys.is_empty());
    }

    #[test]
    fn chunks_that_do_not_match_their_key_or_the_bounds_are_refused() {
        let (_, value) = encode_checkpoint(TOPIC, 0, 1, 1, 0, b"{}").remove(0);
        let key = |epoch, slot, chunk| CheckpointKey::Chunk {
            partition: 0,
            epoch,
            slot,
            chunk,
        };
        assert!(Stored::from_record(key(1, 0, 0), &value).is_some());
        assert!(Stored::from_record(key(2, 0, 0), &value).is_none());
        assert!(Stored::from_record(key(1, 1, 0), &value).is_none());
        assert!(Stored::from_record(key(1, 0, 1), &value).is_none());
        assert!(Stored::from_record(key(1, 0, 0), &value[..10]).is_none());
        let mut huge = value.clone();
        huge[36..44].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Stored::from_record(key(1, 0, 0), &huge).is_none());
        assert_eq!(CheckpointKey::parse("0/1/0"), None);
        assert_eq!(CheckpointKey::parse("x"), None);
    }

    #[test]
    fn a_new_checkpoint_never_goes_to_the_slot_of_the_newest_acknowledged_one() {
        let mut claim = Claim::new(4, BTreeSet::from(["old".to_string()]));
        assert_eq!(claim.epoch, 5);
        let g0 = claim.next_generation();
        let keys = |g: u64| BTreeSet::from([format!("slot{}", g % 2)]);
        assert_eq!(claim.acknowledged(g0, keys(g0)), ["old"]);
        let g1 = claim.next_generation();
        assert_ne!(g1 % 2, g0 % 2);
        // g1 fails: the retry stays out of g0's slot.
        claim.live.extend(keys(g1));
        let retry = claim.next_generation();
        assert!(retry > g1 && retry % 2 == g1 % 2);
        assert_eq!(claim.acknowledged(retry, keys(retry)), ["slot0"]);
    }
}
