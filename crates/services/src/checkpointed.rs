//! The checkpointed consumer: the loop every stateful service runs, written once. The
//! tracker's workers and the guard's blocker are each one; a later stateful service implements
//! [`Stateful`] and gets the same guarantees.
//!
//! A stateful service keeps state per partition of its input topic and writes it, with the
//! input offset it covers, as checkpoints to a topic of its own. Two things must never happen:
//! a checkpoint covering records whose consequences (dead letters, block records) were not
//! acknowledged, and a partition's state lost when it moves to another group member. The loop
//! owns exactly that, and the service owns its state and its checkpoint format:
//!
//! - **Polling**: up to [`BATCH`] records per round, each handed to [`Stateful::process`]
//!   in offset order, then [`Stateful::after_batch`].
//! - **Checkpoints**, every interval ([`Checkpointing::checkpoint`]):
//!   [`Stateful::before_checkpoint`] applies and sends what is buffered; the loop waits until
//!   every record sent so far is acknowledged; [`Stateful::send_checkpoints`]; the loop waits
//!   again; then [`Stateful::acknowledged`], and the offsets the checkpoints cover are
//!   committed to the group for lag tools. If any delivery failed, every owned partition
//!   rewinds to its last acknowledged checkpoint ([`Stateful::rewind`]) and its records are
//!   processed again: redone, never skipped.
//! - **Rebalances**, which librdkafka runs inside `poll` on this same thread: assigned
//!   partitions start at the offset their newest checkpoint covers ([`Stateful::assign`]),
//!   not at the group's committed offset, which only serves lag tools; revoked ones are
//!   checkpointed first, then forgotten ([`Stateful::revoke`]).
//! - **Stopping**: closing the consumer revokes its partitions, which writes the last
//!   checkpoint.
//! - **A producer that failed for good** (librdkafka's fatal error: an idempotent producer
//!   whose sequence numbers the cluster refuses, which nothing it sends afterwards will
//!   change) ends the loop's round: its consumer leaves the group without a
//!   checkpoint, and the service is built anew, with new producers, and rejoins. Its
//!   partitions resume from their last acknowledged checkpoints, as after any rebalance.
//!
//! Everything runs on the thread that calls [`run`], the rebalance callbacks included, so a
//! service's state needs a lock only for the `&self` API and for whoever else reads it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::kafka::{wait_delivered, DeliveryCounter};

/// Records polled per round before [`Stateful::after_batch`]. A round ends early when no
/// record is waiting, so this bounds only a backlog's rounds. Large because the tracker's
/// sets take a round's addresses sorted, in one pass per set: the more a round brings, the
/// more land in each chunk of a set at once (per event, the views' inserts took 0.64 of the
/// time at 65,536 that they took at 16,384; docs/BENCHMARKS.md, "Hour inserts from the
/// minutes, and rounds of 65,536 records").
pub const BATCH: usize = 65_536;
/// How long a checkpoint may wait for the cluster to acknowledge what was sent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the first poll of a round waits for a record.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// How long a rewind's seek may take.
const SEEK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`run`] waits before building a service again after a build failed.
const REBUILD_BACKOFF: Duration = Duration::from_secs(1);

/// The consumer a stateful service runs on.
pub type StatefulConsumer<S> = BaseConsumer<Checkpointing<S>>;

/// A partition and the offset of the next record to read in it.
pub type NextOffset = (i32, i64);

/// What a service keeps per input partition, and how it checkpoints it. The loop calls these
/// from its one thread, in the order the module documentation describes.
pub trait Stateful: Send + Sync + Sized + 'static {
    /// Checkpoints sent and not yet known to be acknowledged.
    type Sent;

    /// The topic the service consumes.
    fn input_topic(&self) -> &str;

    /// Every producer the service sends with: a checkpoint waits for all of their deliveries.
    fn producers(&self) -> Vec<&ThreadedProducer<DeliveryCounter>>;

    /// One polled record of an owned partition. After a rewind, records already processed
    /// come again; the service skips those below the partition's next offset.
    fn process(&self, message: &BorrowedMessage<'_>);

    /// After each polled round (it may be empty).
    fn after_batch(&self, consumer: &StatefulConsumer<Self>);

    /// Before a checkpoint: apply and send whatever the records so far buffered.
    fn before_checkpoint(&self);

    /// Sends the checkpoints of the owned partitions that changed. Everything sent before
    /// is acknowledged at this point.
    fn send_checkpoints(&self) -> Self::Sent;

    /// `sent` is acknowledged: the checkpoints count from now on. Returns the offsets they
    /// cover, which the loop commits to the group.
    fn acknowledged(&self, consumer: &StatefulConsumer<Self>, sent: Self::Sent) -> Vec<NextOffset>;

    /// Some of `sent` may not have arrived; [`rewind`](Self::rewind) follows.
    fn not_acknowledged(&self, sent: Self::Sent);

    /// Resets every owned partition to its last acknowledged checkpoint and returns where
    /// each must be read again from.
    fn rewind(&self) -> Vec<NextOffset>;

    /// `partitions` are now this member's: load each one's newest checkpoint and return the
    /// offset to start it at.
    fn assign(&self, consumer: &StatefulConsumer<Self>, partitions: &[i32]) -> Vec<NextOffset>;

    /// Every owned partition leaves, after a checkpoint that succeeded or not (`checkpointed`).
    fn revoke(&self, checkpointed: bool);
}

/// The consumer's context: the service and the loop's own bookkeeping.
pub struct Checkpointing<S> {
    service: S,
    /// Failed deliveries already answered by a rewind.
    failures_seen: AtomicU64,
}

impl<S> std::fmt::Debug for Checkpointing<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointing")
            .field("failures_seen", &self.failures_seen)
            .finish_non_exhaustive()
    }
}

impl<S: Stateful> Checkpointing<S> {
    /// The context to create the service's consumer with.
    pub fn new(service: S) -> Self {
        Checkpointing {
            service,
            failures_seen: AtomicU64::new(0),
        }
    }

    pub fn service(&self) -> &S {
        &self.service
    }

    /// Waits until every record the service sent so far is acknowledged; false if any
    /// delivery failed since the last call.
    pub fn flush(&self) -> bool {
        let producers = self.service.producers();
        for producer in &producers {
            if !wait_delivered(*producer, FLUSH_TIMEOUT) {
                tracing::error!(timeout = ?FLUSH_TIMEOUT, "records not acknowledged in time");
                return false;
            }
        }
        let failures: u64 = producers.iter().map(|p| p.context().failures()).sum();
        failures == self.failures_seen.swap(failures, Ordering::SeqCst)
    }

    /// Why one of the service's producers failed for good, if one did.
    pub fn failed_producer(&self) -> Option<String> {
        self.service
            .producers()
            .iter()
            .find_map(|producer| producer.client().fatal_error())
            .map(|(code, reason)| format!("{reason} ({code:?})"))
    }

    /// Checkpoints every owned partition that changed, once what its records caused is
    /// acknowledged. False when a delivery failed; the owned partitions were then rewound.
    pub fn checkpoint(&self, consumer: &StatefulConsumer<S>) -> bool {
        let started = Instant::now();
        self.service.before_checkpoint();
        if !self.flush() {
            self.rewind(consumer);
            return false;
        }
        let sent = self.service.send_checkpoints();
        if !self.flush() {
            self.service.not_acknowledged(sent);
            self.rewind(consumer);
            return false;
        }
        let offsets = self.service.acknowledged(consumer, sent);
        self.commit(consumer, &offsets);
        tracing::debug!(
            topic = self.service.input_topic(),
            partitions = offsets.len(),
            took_ms = started.elapsed().as_secs_f64() * 1e3,
            "checkpoint acknowledged"
        );
        true
    }

    /// Every owned partition restarts from its last acknowledged checkpoint.
    fn rewind(&self, consumer: &StatefulConsumer<S>) {
        let topic = self.service.input_topic();
        for (partition, next) in self.service.rewind() {
            if let Err(e) = consumer.seek(topic, partition, start_offset(next), SEEK_TIMEOUT) {
                tracing::error!(error = %e, partition, "rewinding after a failed checkpoint");
            }
        }
        tracing::warn!(
            topic,
            "checkpoint failed; owned partitions rewound to their last one"
        );
    }

    /// Commits checkpointed offsets to the group, so lag tools see the service's progress.
    fn commit(&self, consumer: &StatefulConsumer<S>, offsets: &[NextOffset]) {
        if offsets.is_empty() {
            return;
        }
        let topic = self.service.input_topic();
        let mut list = TopicPartitionList::new();
        for &(partition, next) in offsets {
            if list
                .add_partition_offset(topic, partition, Offset::Offset(next))
                .is_err()
            {
                return;
            }
        }
        if let Err(e) = consumer.commit(&list, CommitMode::Async) {
            tracing::debug!(error = %e, topic, "committing checkpointed offsets");
        }
    }

    fn on_assign(&self, consumer: &StatefulConsumer<S>, tpl: &mut TopicPartitionList) {
        let topic = self.service.input_topic();
        let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        for (partition, next) in self.service.assign(consumer, &partitions) {
            if let Err(e) = tpl.set_partition_offset(topic, partition, start_offset(next)) {
                tracing::error!(error = %e, partition, "setting the start offset");
            }
        }
    }

    fn on_revoke(&self, consumer: &StatefulConsumer<S>) {
        let checkpointed = self.checkpoint(consumer);
        self.service.revoke(checkpointed);
    }
}

impl<S: Stateful> ClientContext for Checkpointing<S> {}

impl<S: Stateful> ConsumerContext for Checkpointing<S> {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.on_assign(consumer, tpl);
                consumer.assign(tpl)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.on_revoke(consumer);
                consumer.unassign()
            }
            other => {
                tracing::error!(error = ?other, "rebalance failed");
                consumer.unassign()
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "applying a rebalance");
        }
    }
}

/// Why a round of the loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ended {
    /// `stopping` was set; the last checkpoint was written on leaving.
    Stopped,
    /// A producer failed for good, for this reason; the consumer left without a checkpoint.
    ProducerFailed(String),
}

/// Runs the loop until `stopping` is set, checkpointing every `interval`, then closes the
/// consumer, which checkpoints and revokes its partitions. Returns the context of the last
/// consumer, for what the service does after it left the group.
///
/// When one of the service's producers failed for good (see the module docs), `rebuild`
/// builds the consumer, its service and their producers anew, and the loop goes on with them;
/// a failed build is tried again every second.
pub fn run<S: Stateful, E: std::fmt::Display>(
    first: StatefulConsumer<S>,
    mut rebuild: impl FnMut() -> Result<StatefulConsumer<S>, E>,
    stopping: &AtomicBool,
    interval: Duration,
) -> Arc<Checkpointing<S>> {
    let mut consumer = first;
    loop {
        let (context, ended) = run_round(consumer, stopping, interval);
        let Ended::ProducerFailed(reason) = ended else {
            return context;
        };
        let topic = context.service.input_topic();
        tracing::error!(
            topic,
            %reason,
            "a producer failed for good; rejoining with new clients from the last checkpoints"
        );
        consumer = loop {
            if stopping.load(Ordering::SeqCst) {
                return context;
            }
            match rebuild() {
                Ok(consumer) => break consumer,
                Err(error) => {
                    tracing::error!(topic, %error, "cannot build the service again; retrying");
                    std::thread::sleep(REBUILD_BACKOFF);
                }
            }
        };
    }
}

/// The loop with one consumer, until `stopping` is set or a producer failed for good.
fn run_round<S: Stateful>(
    consumer: StatefulConsumer<S>,
    stopping: &AtomicBool,
    interval: Duration,
) -> (Arc<Checkpointing<S>>, Ended) {
    let context = consumer.context().clone();
    let mut last_checkpoint = Instant::now();
    while !stopping.load(Ordering::SeqCst) {
        poll_batch(&consumer);
        context.service.after_batch(&consumer);
        if last_checkpoint.elapsed() >= interval {
            let checkpointed = context.checkpoint(&consumer);
            // The checkpoint freed its deltas on this thread; only this thread can give
            // their pages back (see `freshet_os::heap`).
            freshet_os::heap::release_this_threads_free_pages();
            last_checkpoint = Instant::now();
            if let Some(reason) = (!checkpointed).then(|| context.failed_producer()).flatten() {
                // Leaving revokes the partitions; their checkpoint fails at once (the flush
                // sees the fatal error), so they are forgotten, not checkpointed.
                drop(consumer);
                return (context, Ended::ProducerFailed(reason));
            }
        }
    }
    drop(consumer);
    (context, Ended::Stopped)
}

/// Hands up to [`BATCH`] records to the service, waiting at most [`POLL_TIMEOUT`] for the
/// first and not at all for the others.
fn poll_batch<S: Stateful>(consumer: &StatefulConsumer<S>) {
    let service = &consumer.context().service;
    let mut timeout = POLL_TIMEOUT;
    for _ in 0..BATCH {
        match consumer.poll(timeout) {
            Some(Ok(message)) => service.process(&message),
            Some(Err(e)) => {
                tracing::warn!(error = %e, topic = service.input_topic(), "consuming");
                return;
            }
            None => return,
        }
        timeout = Duration::ZERO;
    }
}

/// Where to read from for a partition whose next record is `next`: the beginning (whatever
/// retention left) when nothing was read yet.
pub fn start_offset(next: i64) -> Offset {
    if next == 0 {
        Offset::Beginning
    } else {
        Offset::Offset(next)
    }
}
