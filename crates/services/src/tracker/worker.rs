//! The worker: a consumer-group member on the input topic. It counts events into its
//! partitions' sets, dead-letters invalid ones and checkpoints owned partitions.
//!
//! The loop (polling, checkpoints after the dead letters they cover are acknowledged, rewinds,
//! rebalances) is the services' shared [checkpointed consumer](crate::checkpointed); this
//! module is what a worker does with its partitions' events and how it writes and resumes
//! their checkpoints.
//!
//! A partition stuck on a batch that cannot be read ([`stalls`](super::stalls)) is stepped
//! past: the batch becomes one dead-letter record with the reason, and one rejection.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, ThreadedProducer};
use rdkafka::{Message, Offset};

use super::checkpoint::{
    encode_chunks, encode_heartbeat, heartbeat_key, ChunkHeader, Claim, Encoded,
};
use super::stalls::{self, Progress};
use super::state::{LiveCounters, Sets};
use super::stats::BatchTally;
use super::{node_seen_window, now_ms, Shared, TrackerError};
use crate::checkpointed::{self, Checkpointing, NextOffset, Stateful, StatefulConsumer};
use crate::cluster::view::SkippedBatch;
use crate::event::{
    parse_event, DeviceEvent, InvalidEvent, InvalidKind, ORIGIN_HEADER, ORIGIN_LAST_OFFSET_HEADER,
    REASON_HEADER,
};
use crate::kafka::{CreateClient, DeliveryCounter};
use crate::KafkaConfig;

/// How long a node that gained partitions waits for its follower to read the newest
/// checkpoints. Resuming from an older checkpoint is still exact, only slower.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often owned partitions are checked for a stall.
const STALL_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Below this, a partition's records are not worth a snapshot of their own yet.
const MIN_SNAPSHOT_BYTES: u64 = 64 * 1024;
/// How long a silent node's heartbeat stays, in seen windows, before any node tombstones it: a
/// node that left cleanly tombstones its own, one that crashed never comes back under its id.
const STALE_HEARTBEAT_WINDOWS: u32 = 10;
/// How long a seek past an unreadable batch may take: librdkafka serves it once the fetch it
/// is decompressing (seconds, for a bomb) is done.
const SEEK_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) struct Worker {
    kafka: KafkaConfig,
    shared: Arc<Shared>,
    /// Which of the node's workers this is; worker 0 also writes the node's heartbeat.
    index: usize,
    consumer: StatefulConsumer<WorkerState>,
}

impl Worker {
    pub(super) fn new(
        kafka: &KafkaConfig,
        shared: Arc<Shared>,
        index: usize,
    ) -> Result<Self, TrackerError> {
        Ok(Worker {
            kafka: kafka.clone(),
            consumer: member(kafka, &shared, index)?,
            shared,
            index,
        })
    }

    pub(super) fn index(&self) -> usize {
        self.index
    }

    pub(super) fn run(self) {
        let Worker {
            kafka,
            shared,
            index,
            consumer,
        } = self;
        let interval = shared.config.checkpoint_interval;
        let rebuild = || member(&kafka, &shared, index);
        let context = checkpointed::run(consumer, rebuild, &shared.stopping, interval);
        // The last worker to stop says the node left.
        if shared.workers_running.fetch_sub(1, Ordering::SeqCst) == 1 {
            context.service().say_goodbye();
            context.flush();
            tracing::info!(node = %shared.node_id, "tracker node stopped");
        }
    }
}

/// A worker's group member: its state, its producers and its consumer, subscribed.
fn member(
    kafka: &KafkaConfig,
    shared: &Arc<Shared>,
    index: usize,
) -> Result<StatefulConsumer<WorkerState>, TrackerError> {
    // Checkpoints and heartbeats: the tracker's own state, read back only by tracker
    // nodes (librdkafka, which always has lz4) and the topic API (which reads every
    // codec). lz4 keeps the compacted topic, which keeps every delta, small.
    let producer: ThreadedProducer<DeliveryCounter> = kafka
        .durable_producer_config("tracker")
        .set("compression.type", "lz4")
        .set("linger.ms", "2")
        .create_client_with(DeliveryCounter::new("tracker"))?;
    // Dead letters are for people and their tools, any Kafka client: uncompressed, as
    // Kafka's producers send by default, since kafkajs and kafka-python cannot read lz4
    // without an extra package.
    let dead_letters: ThreadedProducer<DeliveryCounter> = kafka
        .durable_producer_config("tracker")
        .set("compression.type", "none")
        .set("linger.ms", "2")
        .create_client_with(DeliveryCounter::new("tracker dead-letter"))?;
    let probe_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(TrackerError::ProbeRuntime)?;
    let state = WorkerState {
        shared: shared.clone(),
        producer,
        dead_letters,
        leads: index == 0,
        owner: Mutex::new(Owner::default()),
        stalls: Mutex::new(StallWatch::default()),
        probe_runtime,
        probe_kafka: kafka.for_role("tracker-probe"),
    };
    let consumer: StatefulConsumer<WorkerState> = input_consumer_config(
        kafka,
        &shared.config.group,
        shared.config.session_timeout,
        shared.config.workers,
    )
    .create_client_with(Checkpointing::new(state))?;
    let input = &shared.config.input_topic;
    consumer
        .subscribe(&[input])
        .map_err(TrackerError::kafka(format!("subscribing to {input}")))?;
    Ok(consumer)
}

/// When the owned partitions were last checked for a stall, and how each had moved.
struct StallWatch {
    progress: Progress,
    last_check: Instant,
}

impl Default for StallWatch {
    fn default() -> Self {
        StallWatch {
            progress: Progress::default(),
            last_check: Instant::now(),
        }
    }
}

/// One polled event, parsed outside the state lock.
struct Parsed {
    partition: i32,
    offset: i64,
    /// Boxed when invalid: the batch holds thousands of these, and valid ones are the rule.
    outcome: Result<DeviceEvent, Box<Rejected>>,
}

/// An invalid event and what the dead-letter record needs.
struct Rejected {
    invalid: InvalidEvent,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

fn parse(message: &BorrowedMessage<'_>) -> Parsed {
    let outcome = parse_event(message.payload()).map_err(|invalid| {
        Box::new(Rejected {
            invalid,
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
        })
    });
    Parsed {
        partition: message.partition(),
        offset: message.offset(),
        outcome,
    }
}

/// The worker's bookkeeping for the partitions it owns. Only the worker thread touches it
/// (rebalance callbacks run inside its `poll`), the mutex is for the `&self` context API.
#[derive(Default)]
struct Owner {
    batch: Vec<Parsed>,
    /// The batch's valid events, sorted for inserting; empty between batches.
    valid: Vec<(i32, DeviceEvent)>,
    /// IPs new to each set since the partition's last successful checkpoint.
    pending: HashMap<i32, Sets>,
    /// Input offset of the last checkpoint written per owned partition.
    checkpointed: HashMap<i32, i64>,
    /// What this node wrote to the state topic per owned partition.
    written: HashMap<i32, Written>,
}

/// A worker's partitions and outputs, run by the checkpointed-consumer loop.
struct WorkerState {
    shared: Arc<Shared>,
    /// Checkpoints and heartbeats (lz4).
    producer: ThreadedProducer<DeliveryCounter>,
    /// Dead-letter records (uncompressed, for any client to read).
    dead_letters: ThreadedProducer<DeliveryCounter>,
    /// Whether this is the node's first worker, which writes the node's heartbeats, clears
    /// stale ones and shrinks the sets of partitions no worker of this node owns.
    leads: bool,
    owner: Mutex<Owner>,
    stalls: Mutex<StallWatch>,
    /// Runs the raw-protocol probe of a stalled partition from this thread.
    probe_runtime: tokio::runtime::Runtime,
    /// The cluster settings with the probe's own client id.
    probe_kafka: KafkaConfig,
}

impl Stateful for WorkerState {
    type Sent = Vec<Outgoing>;

    fn input_topic(&self) -> &str {
        &self.shared.config.input_topic
    }

    fn producers(&self) -> Vec<&ThreadedProducer<DeliveryCounter>> {
        vec![&self.dead_letters, &self.producer]
    }

    /// Parses the event now, outside any lock; it is counted with its batch.
    fn process(&self, message: &BorrowedMessage<'_>) {
        let parsed = parse(message);
        self.owner().batch.push(parsed);
    }

    fn after_batch(&self, consumer: &StatefulConsumer<Self>) {
        let idle = self.owner().batch.is_empty();
        if idle {
            self.owner().release_buffers();
        }
        self.apply_batch();
        self.shared.work.sample_rate(Instant::now());
        let mut stalls = self.stalls.lock().unwrap_or_else(|e| e.into_inner());
        if stalls.last_check.elapsed() >= STALL_CHECK_EVERY {
            self.step_past_unreadable(consumer, &mut stalls.progress);
            stalls.last_check = Instant::now();
        }
    }

    fn before_checkpoint(&self) {
        self.apply_batch();
    }

    /// A checkpoint (a delta, or a snapshot when one is due) for every owned partition that
    /// changed, and the node's heartbeat after them.
    fn send_checkpoints(&self) -> Vec<Outgoing> {
        let outgoing = self.take_checkpoints();
        for checkpoint in &outgoing {
            for (key, value) in &checkpoint.encoded.records {
                self.send(
                    BaseRecord::to(&self.shared.checkpoint_topic)
                        .partition(0)
                        .key(key.as_bytes())
                        .payload(value.as_slice()),
                );
            }
        }
        if self.leads {
            self.send_heartbeat();
        }
        outgoing
    }

    /// For each snapshot, tombstones for the records it supersedes.
    fn acknowledged(&self, _: &StatefulConsumer<Self>, outgoing: Vec<Outgoing>) -> Vec<NextOffset> {
        self.shared.work.checkpoints_written(outgoing.len());
        self.supersede(&outgoing);
        if self.leads {
            self.forget_stale_nodes();
            self.shrink_sets();
        }
        outgoing
            .iter()
            .map(|checkpoint| (checkpoint.header.partition, checkpoint.header.offset))
            .collect()
    }

    /// Which chunks arrived is unknown; their IPs go into the next checkpoint again (a
    /// union, so a repeat is harmless).
    fn not_acknowledged(&self, outgoing: Vec<Outgoing>) {
        self.restore_after_failure(outgoing);
    }

    /// Every owned partition goes back to its newest checkpoint, with that checkpoint's
    /// counters, so dead-letter records and counters are redone.
    fn rewind(&self) -> Vec<NextOffset> {
        let mut owner = self.owner();
        owner.batch.clear();
        let own: HashSet<i32> = owner.written.keys().copied().collect();
        let mut state = self.shared.state();
        let mut offsets = Vec::with_capacity(own.len());
        for (id, partition) in state.partitions.iter_mut() {
            if partition.live.is_none() || !own.contains(id) {
                continue;
            }
            let resume = partition.resume_point();
            partition.live = Some(resume);
            owner.checkpointed.remove(id);
            offsets.push((*id, resume.next_offset));
        }
        offsets
    }

    /// Each partition resumes from its newest checkpoint (offset and counters).
    fn assign(&self, consumer: &StatefulConsumer<Self>, partitions: &[i32]) -> Vec<NextOffset> {
        self.wait_for_follower(consumer);
        let mut owner = self.owner();
        let mut state = self.shared.state();
        let mut offsets = Vec::with_capacity(partitions.len());
        for &id in partitions {
            let partition = state.partition(id);
            let resume = partition.resume_point();
            partition.live = Some(resume);
            partition.resumed_from = Some(resume.next_offset);
            // A claim above every one read: from this node's first checkpoint on, readers
            // ignore whoever wrote the partition before (a zombie included). That first
            // checkpoint is due at the next tick, since nothing is marked checkpointed.
            let epoch = partition.claim.as_ref().map_or(0, |c| c.epoch) + 1;
            partition.claim = Some(Claim {
                epoch,
                node: self.shared.node_id.clone(),
            });
            owner.checkpointed.remove(&id);
            owner.written.insert(
                id,
                Written {
                    epoch,
                    generation: 0,
                    next_index: 1,
                    keys: BTreeSet::new(),
                    stored_bytes: partition.stored_bytes(),
                    snapshot_due: false,
                    live_floor: None,
                },
            );
            offsets.push((id, resume.next_offset));
            tracing::info!(
                partition = id,
                offset = resume.next_offset,
                "partition assigned"
            );
        }
        state.recount_node();
        offsets
    }

    /// Stops owning the partitions. If their checkpoint failed, their pending IPs stay, in
    /// case they come back to this node.
    fn revoke(&self, checkpointed: bool) {
        let mut owner = self.owner();
        let own: HashSet<i32> = owner.written.keys().copied().collect();
        owner.batch.clear();
        owner.checkpointed.clear();
        owner.written.clear();
        if checkpointed {
            owner.pending.clear();
        }
        let mut state = self.shared.state();
        for id in &own {
            if let Some(partition) = state.partitions.get_mut(id) {
                partition.live = None;
            }
        }
        state.recount_node();
        tracing::info!(partitions = ?own, "partitions revoked");
    }
}

impl Owner {
    /// Frees the buffers a round of up to [`BATCH`](crate::checkpointed::BATCH) records
    /// grows (about 10 MB): kept while records flow, so rounds do not allocate them again,
    /// and given back once a round finds none, so an idle node's memory is its sets'.
    fn release_buffers(&mut self) {
        self.batch = Vec::new();
        self.valid = Vec::new();
    }
}

impl WorkerState {
    fn owner(&self) -> MutexGuard<'_, Owner> {
        self.owner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The partitions this worker owns (others of the node's workers own the rest).
    fn own_partitions(&self) -> HashSet<i32> {
        self.owner().written.keys().copied().collect()
    }

    /// Probes the owned partitions that have records to read but stopped moving, and steps
    /// past the batch one is stuck on when that batch cannot be read.
    fn step_past_unreadable(&self, consumer: &StatefulConsumer<Self>, progress: &mut Progress) {
        let topic = &self.shared.config.input_topic;
        let own = self.own_partitions();
        let positions: Vec<(i32, i64)> = self
            .shared
            .state()
            .live_positions()
            .into_iter()
            .filter(|(id, _)| own.contains(id))
            .collect();
        for (partition, offset) in progress.stalled(&positions, Instant::now()) {
            match stalls::has_records_after(consumer, topic, partition, offset) {
                Ok(true) => {}
                Ok(false) => continue,
                // The cluster does not answer: no point asking about the other partitions
                // now (each would wait out the timeout); they come up again.
                Err(e) => {
                    tracing::debug!(error = %e, partition, "no watermarks for a stall check");
                    break;
                }
            }
            let probed = stalls::probe(
                consumer,
                &self.probe_runtime,
                &self.probe_kafka,
                topic,
                partition,
                offset,
            );
            match probed {
                Ok(Some(skipped)) => self.step_past(consumer, partition, skipped),
                Ok(None) => {
                    tracing::info!(
                        partition,
                        offset,
                        "partition is slow, but its next batch reads fine"
                    );
                }
                Err(reason) => {
                    tracing::warn!(partition, offset, %reason, "cannot probe a stalled partition");
                }
            }
        }
    }

    /// Counts the polled events into the sets and dead-letters the invalid ones.
    ///
    /// Offsets and counters advance in arrival order; the sets are then updated in address
    /// order, so consecutive inserts touch neighbouring Roaring containers that are already
    /// in cache (in arrival order, nearly every insert missed the cache several times).
    ///
    /// The batch buffers keep their capacity from batch to batch: a fresh megabyte-sized
    /// vector per batch meant fresh pages, and zeroing them took a sixth of the worker's time.
    fn apply_batch(&self) {
        let mut owner = self.owner();
        if owner.batch.is_empty() {
            return;
        }
        let mut batch = std::mem::take(&mut owner.batch);
        let mut valid = std::mem::take(&mut owner.valid);
        let mut live = {
            let state = self.shared.state();
            // This worker's partitions only: the others' counters are their workers' to move.
            let live: HashMap<i32, LiveCounters> = state
                .partitions
                .iter()
                .filter(|(id, _)| owner.written.contains_key(id))
                .filter_map(|(id, p)| p.live.map(|live| (*id, live)))
                .collect();
            live
        };
        self.admit(&mut live, &mut batch, &mut valid);
        valid.sort_unstable_by_key(|(partition, event)| sort_key(*partition, event.ip));
        // Counters and sets move together, under the node's lock: whoever reads the event
        // count also sees the addresses those events brought.
        let mut state = self.shared.state();
        for (id, counters) in live {
            if let Some(partition_live) =
                state.partitions.get_mut(&id).and_then(|p| p.live.as_mut())
            {
                *partition_live = counters;
            }
        }
        for run in valid.chunk_by(|a, b| a.0 == b.0) {
            let id = run[0].0;
            let pending = owner.pending.entry(id).or_default();
            state.insert_events(id, run.iter().map(|(_, event)| event), pending);
        }
        valid.clear();
        drop(state);
        owner.batch = batch;
        owner.valid = valid;
    }

    /// Advances the owned partitions' offsets and counters (`live`, a copy the caller writes
    /// back) in arrival order, dead-letters invalid events, and moves the valid ones not
    /// counted before into `valid`. Runs without the node's lock: only this thread moves
    /// the counters of the partitions it owns.
    fn admit(
        &self,
        live: &mut HashMap<i32, LiveCounters>,
        batch: &mut Vec<Parsed>,
        valid: &mut Vec<(i32, DeviceEvent)>,
    ) {
        let mut tally = BatchTally::default();
        for event in batch.drain(..) {
            let Some(live) = live.get_mut(&event.partition) else {
                continue;
            };
            // A seek back (after a failed checkpoint) can deliver events counted before.
            if event.offset < live.next_offset {
                continue;
            }
            live.next_offset = event.offset + 1;
            match event.outcome {
                Ok(device) => {
                    live.events += 1;
                    valid.push((event.partition, device));
                }
                Err(rejected) => {
                    live.rejected += 1;
                    tally.reject(rejected.invalid.kind);
                    self.dead_letter(event.partition, event.offset, &rejected);
                }
            }
        }
        tally.counted = valid.len() as u64;
        self.shared.work.add(&tally);
    }

    /// Sends an invalid event to the dead-letter topic, unchanged, with the reason and its
    /// origin in headers. Never drops it: a full queue is waited out.
    fn dead_letter(&self, partition: i32, offset: i64, rejected: &Rejected) {
        let config = &self.shared.config;
        let origin = format!("{}/{partition}/{offset}", config.input_topic);
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: REASON_HEADER,
                value: Some(rejected.invalid.reason.as_str()),
            })
            .insert(Header {
                key: ORIGIN_HEADER,
                value: Some(origin.as_str()),
            });
        let mut record = BaseRecord::<[u8], [u8]>::to(&config.dlq_topic).headers(headers);
        if let Some(key) = &rejected.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &rejected.value {
            record = record.payload(value.as_slice());
        }
        self.send_dead_letter(record);
    }

    /// Steps past a batch the consumer cannot read: seeks after it, then counts it as one
    /// rejection and dead-letters it. Nothing happens when the partition moved meanwhile, or
    /// when the seek fails (the partition stays stalled and is probed again).
    fn step_past(&self, consumer: &StatefulConsumer<Self>, partition: i32, skipped: SkippedBatch) {
        let topic = &self.shared.config.input_topic;
        let still_there = self
            .shared
            .state()
            .partitions
            .get(&partition)
            .and_then(|p| p.live)
            .is_some_and(|live| live.next_offset == skipped.from_offset);
        if !still_there {
            return;
        }
        let after = skipped.to_offset.saturating_add(1);
        if let Err(e) = consumer.seek(topic, partition, Offset::Offset(after), SEEK_TIMEOUT) {
            tracing::error!(error = %e, partition, "cannot seek past an unreadable batch");
            return;
        }
        tracing::warn!(
            partition,
            from_offset = skipped.from_offset,
            to_offset = skipped.to_offset,
            reason = %skipped.reason,
            "stepped past a batch that cannot be read; it is dead-lettered"
        );
        if let Some(live) = self
            .shared
            .state()
            .partitions
            .get_mut(&partition)
            .and_then(|p| p.live.as_mut())
        {
            live.next_offset = after;
            live.rejected += 1;
        }
        let mut tally = BatchTally::default();
        tally.reject(InvalidKind::UnreadableBatch);
        self.shared.work.add(&tally);
        self.dead_letter_batch(partition, &skipped);
    }

    /// The dead-letter record of an unreadable batch: no key or value (there is no event to
    /// keep), the reason, and the offsets it covers (the batch itself stays in the input).
    fn dead_letter_batch(&self, partition: i32, skipped: &SkippedBatch) {
        let config = &self.shared.config;
        let origin = format!("{}/{partition}/{}", config.input_topic, skipped.from_offset);
        let last_offset = skipped.to_offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: REASON_HEADER,
                value: Some(skipped.reason.as_str()),
            })
            .insert(Header {
                key: ORIGIN_HEADER,
                value: Some(origin.as_str()),
            })
            .insert(Header {
                key: ORIGIN_LAST_OFFSET_HEADER,
                value: Some(last_offset.as_str()),
            });
        self.send_dead_letter(BaseRecord::<[u8], [u8]>::to(&config.dlq_topic).headers(headers));
    }

    /// A record of the checkpoint topic.
    fn send(&self, record: BaseRecord<'_, [u8], [u8]>) {
        crate::kafka::enqueue(&self.producer, record);
    }

    /// A tombstone for `key` in the state topic.
    fn send_tombstone(&self, key: &str) {
        self.send(
            BaseRecord::<[u8], [u8]>::to(&self.shared.checkpoint_topic)
                .partition(0)
                .key(key.as_bytes()),
        );
    }

    /// A record of the dead-letter topic.
    fn send_dead_letter(&self, record: BaseRecord<'_, [u8], [u8]>) {
        crate::kafka::enqueue(&self.dead_letters, record);
    }

    /// Takes the checkpoint of every owned partition that changed: a snapshot of its sets
    /// when one is due ([`Written::snapshot_due`]), otherwise the pending new IPs. Partitions
    /// another node's claim took from this one (see the follower) are forgotten here.
    fn take_checkpoints(&self) -> Vec<Outgoing> {
        let mut owner = self.owner();
        let owner = &mut *owner;
        let mut state = self.shared.state();
        let owned: HashSet<i32> = state.owned().into_iter().collect();
        owner.written.retain(|id, _| owned.contains(id));
        owner.pending.retain(|id, _| owned.contains(id));
        let window_limits = self.shared.config.window_limits;
        let written_at_ms = now_ms();
        let mut outgoing = Vec::new();
        let mine: Vec<i32> = owner.written.keys().copied().collect();
        for id in mine {
            state.retain_windows(id, window_limits);
        }
        let state = &*state;
        for (id, partition) in &state.partitions {
            let (Some(live), Some(written)) = (partition.live, owner.written.get_mut(id)) else {
                continue;
            };
            let mut delta = owner.pending.remove(id).unwrap_or_default();
            delta.retain_windows(window_limits);
            let unchanged = owner.checkpointed.get(id) == Some(&live.next_offset);
            if delta.is_empty() && unchanged {
                continue;
            }
            owner.checkpointed.insert(*id, live.next_offset);
            let snapshot = written.snapshot_due(partition.window_drops(), || {
                partition.serialized_size(&state.memberships)
            });
            let header = ChunkHeader {
                partition: *id,
                epoch: written.epoch,
                // A snapshot goes to the next generation's slot; it becomes the current
                // generation only once acknowledged.
                generation: written.generation + u64::from(snapshot),
                index: if snapshot { 0 } else { written.next_index },
                chunk: 0,
                is_final: true,
                offset: live.next_offset,
                events: live.events,
                rejected: live.rejected,
                written_at_ms,
                node: self.shared.node_id.clone(),
            };
            let checkpoint = if snapshot {
                Outgoing {
                    encoded: encode_chunks(&header, partition.sections(&state.memberships)),
                    header,
                    delta: None,
                }
            } else {
                written.next_index += 1;
                Outgoing {
                    encoded: encode_chunks(&header, delta.sections()),
                    header,
                    delta: Some(delta),
                }
            };
            // Remembered before the write: chunks of a failed attempt may have arrived, and
            // the next snapshot must tombstone them too.
            written
                .keys
                .extend(checkpoint.encoded.records.iter().map(|(k, _)| k.clone()));
            outgoing.push(checkpoint);
        }
        outgoing
    }

    /// After a failed write: delta IPs go back to pending, and a snapshot is tried again
    /// (into the same slot, so the complete snapshot in the other slot stays whole).
    fn restore_after_failure(&self, outgoing: Vec<Outgoing>) {
        let mut owner = self.owner();
        for checkpoint in outgoing {
            let id = checkpoint.header.partition;
            owner.checkpointed.remove(&id);
            match checkpoint.delta {
                Some(delta) => {
                    owner.pending.entry(id).or_default().union_with(&delta);
                }
                None => {
                    if let Some(written) = owner.written.get_mut(&id) {
                        written.snapshot_due = true;
                    }
                }
            }
        }
    }

    /// Book-keeping after acknowledged checkpoints. An acknowledged snapshot holds everything
    /// the partition's older records held (minus dropped windows), so each of them gets a
    /// tombstone: what this node wrote under its claim and every key the follower has read
    /// for the partition (earlier owners', zombies', earlier versions'). Skipped for a
    /// partition another node has claimed meanwhile: its keys are the new owner's business.
    fn supersede(&self, outgoing: &[Outgoing]) {
        let mut owner = self.owner();
        let state = self.shared.state();
        for checkpoint in outgoing {
            let id = checkpoint.header.partition;
            let Some(written) = owner.written.get_mut(&id) else {
                continue;
            };
            let bytes = checkpoint.encoded.bytes();
            if checkpoint.delta.is_some() {
                written.stored_bytes += bytes;
                continue;
            }
            let Some(partition) = state.partitions.get(&id).filter(|p| p.live.is_some()) else {
                continue;
            };
            let current: HashSet<&str> = checkpoint
                .encoded
                .records
                .iter()
                .map(|(k, _)| k.as_str())
                .collect();
            let superseded: BTreeSet<&String> = partition
                .stored
                .keys()
                .chain(written.keys.iter())
                .filter(|k| !current.contains(k.as_str()))
                .collect();
            for key in &superseded {
                self.send_tombstone(key);
            }
            tracing::debug!(
                partition = id,
                snapshot_bytes = bytes,
                tombstones = superseded.len(),
                "snapshot written"
            );
            written.keys = current.into_iter().map(str::to_string).collect();
            written.generation += 1;
            written.next_index = 1;
            written.stored_bytes = bytes;
            written.snapshot_due = false;
        }
    }

    /// Tombstones the heartbeats of nodes silent for [`STALE_HEARTBEAT_WINDOWS`] seen windows,
    /// so crashed nodes' keys do not stay in the state topic forever. A node that was only
    /// paused writes its heartbeat again at its next checkpoint.
    fn forget_stale_nodes(&self) {
        let stale_after = node_seen_window(&self.shared.config) * STALE_HEARTBEAT_WINDOWS;
        let stale_after_ms = stale_after.as_millis() as i64;
        let now = now_ms();
        let stale: Vec<String> = self
            .shared
            .state()
            .nodes
            .iter()
            .filter(|(id, hb)| {
                **id != self.shared.node_id && now - hb.written_at_ms > stale_after_ms
            })
            .map(|(id, _)| heartbeat_key(id))
            .collect();
        for key in &stale {
            self.send_tombstone(key);
        }
    }

    /// Every partition's, owned or followed: this tick is what tells a set that stopped
    /// growing, whoever feeds it.
    fn shrink_sets(&self) {
        let mut state = self.shared.state();
        for partition in state.partitions.values_mut() {
            partition.maybe_shrink();
        }
    }

    fn send_heartbeat(&self) {
        let owned = self.shared.state().owned();
        let value = encode_heartbeat(now_ms(), &owned);
        let key = heartbeat_key(&self.shared.node_id);
        self.send(
            BaseRecord::to(&self.shared.checkpoint_topic)
                .partition(0)
                .key(key.as_bytes())
                .payload(value.as_slice()),
        );
    }

    /// A tombstone for this node's heartbeat: the others stop listing it at once.
    fn say_goodbye(&self) {
        self.send_tombstone(&heartbeat_key(&self.shared.node_id));
    }

    /// Waits until the follower has applied the checkpoint topic up to its current end, so a
    /// gained partition resumes from the newest checkpoint.
    fn wait_for_follower(&self, consumer: &StatefulConsumer<Self>) {
        let topic = &self.shared.checkpoint_topic;
        let end = match consumer.fetch_watermarks(topic, 0, Duration::from_secs(5)) {
            Ok((_, high)) => high,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the checkpoint topic's end");
                return;
            }
        };
        let deadline = Instant::now() + CATCH_UP_TIMEOUT;
        while self.shared.follower_position.load(Ordering::SeqCst) < end {
            if Instant::now() >= deadline {
                tracing::warn!("checkpoints not caught up; resuming from older ones");
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Records a node's workers prefetch together, KiB: librdkafka's queue bound, divided
/// between the workers.
const NODE_PREFETCH_KIB: usize = 32 << 10;
/// A worker's share at least: two of its 4 MiB partition fetches.
const WORKER_PREFETCH_KIB_AT_LEAST: usize = 8 << 10;

/// The settings of the worker's consumer on the input topic. Public so the pipeline benchmark
/// can compare the tracker with a consumer that does nothing, on the same settings.
/// `workers` is the node's worker count: they share one prefetch budget.
pub fn input_consumer_config(
    kafka: &KafkaConfig,
    group: &str,
    session_timeout: Duration,
    workers: usize,
) -> rdkafka::ClientConfig {
    let mut config = kafka.stateful_group_config("tracker", group, session_timeout);
    // Prefetch trades memory for speed: librdkafka's buffers are C allocations that glibc
    // keeps once freed. Measured over 4M events (1M IPs, no views): its defaults took 8.6 s
    // and left 409 MB resident; a 32 MiB queue with 4 MiB fetches, 13.2 s and 181 MB (the
    // fetcher stopped whenever 100,000 messages were queued, so it ping-ponged with the
    // worker); the same queue kept filling by a high `queued.min.messages`, 7.2 s and 339 MB.
    // That ping-pong was `fetch.queue.backoff.ms` (see `KafkaConfig::reader_config`, which
    // sets it to 10 ms): at 10 ms, one worker counted 10 M events at 856 K/s instead of
    // 554-609 K.
    config
        .set("queued.min.messages", "1000000")
        .set(
            "queued.max.messages.kbytes",
            (NODE_PREFETCH_KIB / workers.max(1))
                .max(WORKER_PREFETCH_KIB_AT_LEAST)
                .to_string(),
        )
        .set("max.partition.fetch.bytes", (4 << 20).to_string())
        .set("fetch.max.bytes", (16 << 20).to_string());
    config
}

/// The order a batch is counted in: by partition, then IPv4 addresses ascending. The order
/// within a partition is for speed only (the sets take addresses in any order, and are
/// fastest in increasing order), so IPv6 addresses sort by their first 32 bits, among the
/// IPv4 ones: one `u64` compares faster than the `(i32, IpAddr)` it stands for, which was
/// 5% of the tracker's time.
fn sort_key(partition: i32, ip: IpAddr) -> u64 {
    let address = match ip {
        IpAddr::V4(v4) => v4.to_bits(),
        IpAddr::V6(v6) => (v6.to_bits() >> 96) as u32,
    };
    (u64::from(partition as u32) << 32) | u64::from(address)
}

/// One partition's checkpoint on its way to the state topic.
struct Outgoing {
    header: ChunkHeader,
    encoded: Encoded,
    /// The delta's IPs, put back into pending if the write fails; `None` for a snapshot (the
    /// next attempt is a snapshot again, of sets that hold them).
    delta: Option<Sets>,
}

/// What this node has written to the state topic for a partition it owns, under its claim.
#[derive(Debug)]
struct Written {
    epoch: u64,
    /// Snapshots acknowledged under this claim; deltas go to this generation's slot.
    generation: u64,
    /// Index of the next delta (a snapshot is index 0).
    next_index: u32,
    /// Keys written under this claim since (and including) the newest acknowledged
    /// snapshot, and those of attempts that failed.
    keys: BTreeSet<String>,
    /// The partition's bytes in the state topic as far as this node knows: what the follower
    /// had read when the partition was gained, or the newest snapshot, plus the deltas since.
    stored_bytes: u64,
    /// The last snapshot attempt failed.
    snapshot_due: bool,
    /// The size of a snapshot of the partition's live sets when last measured, which spares
    /// the measuring at most checkpoints (see [`Written::snapshot_due`]).
    live_floor: Option<LiveFloor>,
}

/// A size a snapshot of a partition's live sets had, and the partition's
/// [`window_drops`](super::state::PartitionState::window_drops) then: until windows are dropped
/// again the sets only grow, so their size stays at least `bytes`.
#[derive(Debug, Clone, Copy)]
struct LiveFloor {
    window_drops: u64,
    bytes: u64,
}

impl Written {
    /// A snapshot once the partition's records in the state topic weigh one and a half times
    /// what a snapshot of its live sets would (`live_bytes`): after compaction the topic holds
    /// at most about one and a half snapshots per partition (two while a new snapshot's
    /// tombstones wait for the cleaner). Measured against the live sets, not the last
    /// snapshot: while the sets only grow, deltas are live data and rewriting them as a
    /// snapshot gains nothing (it cost a whole snapshot at nearly every checkpoint early in a
    /// count); once windows roll, what they held is dead weight and counts towards the next.
    ///
    /// `live_bytes` walks every set of the partition, under the node's lock, so it runs only
    /// when the last measure cannot decide: while no window was dropped since (the partition
    /// is at `window_drops` still) and the topic holds less than one and a half times that
    /// measure, it holds less than one and a half times the live sets too, which only grew.
    fn snapshot_due(&mut self, window_drops: u64, live_bytes: impl FnOnce() -> u64) -> bool {
        if self.snapshot_due {
            return true;
        }
        let floor = match self.live_floor {
            Some(floor) if floor.window_drops == window_drops => floor.bytes,
            _ => 0,
        };
        if !self.outweighs(floor) {
            return false;
        }
        let bytes = live_bytes();
        self.live_floor = Some(LiveFloor {
            window_drops,
            bytes,
        });
        self.outweighs(bytes)
    }

    /// Whether the partition's records in the state topic weigh one and a half times a
    /// snapshot of `live_bytes` (at least [`MIN_SNAPSHOT_BYTES`]).
    fn outweighs(&self, live_bytes: u64) -> bool {
        let live = live_bytes.max(MIN_SNAPSHOT_BYTES);
        self.stored_bytes >= live + live / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(stored_bytes: u64) -> Written {
        Written {
            epoch: 1,
            generation: 0,
            next_index: 1,
            keys: BTreeSet::new(),
            stored_bytes,
            snapshot_due: false,
            live_floor: None,
        }
    }

    /// Whether a snapshot is due with live sets of `live` bytes, measured afresh.
    fn due(stored_bytes: u64, live: u64) -> bool {
        written(stored_bytes).snapshot_due(0, || live)
    }

    #[test]
    fn sets_that_only_grew_are_not_rewritten_as_a_snapshot() {
        // Ten megabytes of deltas holding ten megabytes of live sets: nothing in the topic is
        // dead, so a snapshot would only rewrite it.
        assert!(!due(10 << 20, 10 << 20));
        assert!(!due(15 << 20, 10 << 20 | 1));
    }

    #[test]
    fn a_snapshot_is_due_once_the_topic_holds_half_the_live_state_again_in_dead_weight() {
        assert!(due(15 << 20, 10 << 20));
        // Windows rolled out: the live sets shrank below what the topic holds.
        assert!(due(4 << 20, 2 << 20));
    }

    #[test]
    fn small_partitions_count_as_the_minimum_snapshot() {
        assert!(!due(MIN_SNAPSHOT_BYTES, 1));
        assert!(due(MIN_SNAPSHOT_BYTES * 3 / 2, 1));
    }

    #[test]
    fn a_failed_snapshot_is_tried_again_whatever_the_sizes() {
        let mut written = written(0);
        written.snapshot_due = true;
        assert!(written.snapshot_due(0, || 10 << 20));
    }

    #[test]
    fn the_sets_are_measured_only_when_the_last_measure_cannot_decide() {
        let mut written = written(10 << 20);
        assert!(!written.snapshot_due(0, || 10 << 20));
        // More deltas, still under one and a half times the last measure: no walk, no
        // snapshot.
        written.stored_bytes = 14 << 20;
        assert!(!written.snapshot_due(0, || unreachable!("the last measure decides")));
        // Past it, the sets are measured again: they grew, so still no snapshot.
        written.stored_bytes = 16 << 20;
        assert!(!written.snapshot_due(0, || 12 << 20));
        assert!(!written.snapshot_due(0, || unreachable!("the last measure decides")));
        // Windows were dropped since: the sets may have shrunk, so they are measured, and
        // smaller now, they make the snapshot due.
        assert!(written.snapshot_due(1, || 8 << 20));
    }
}
