//! The transaction coordinator: Kafka's transactions on one node.
//!
//! A transactional producer finds this node as its coordinator (FindCoordinator key type 1),
//! gets its producer id and epoch from InitProducerId (which fences every older producer of
//! the same `transactional.id` and aborts what it left open), registers each partition and
//! consumer group before writing to it (AddPartitionsToTxn, AddOffsetsToTxn), and ends with
//! EndTxn. Ending writes the prepared state to the state log (`store`), completes the
//! group offsets and answers; a task then writes a commit or abort marker into every
//! partition of the transaction (`freshet_log`'s control batches) and writes the completed
//! state, holding the id's lock so the producer's next transaction waits for it. What the
//! states mean and how they change is in [`state`].
//!
//! Crash safety: a state is durable before anything acts on it that a crash could not undo.
//! InitProducerId's epoch, AddOffsetsToTxn and the prepared state are synced before they are
//! answered. AddPartitionsToTxn's state is synced along with the prepared state, since losing
//! it (only a machine crash can: the write has reached the kernel) loses nothing a producer
//! was promised. The markers and the completed state are not synced on their own: the
//! prepared state carries a [`MarkerPlan`] (each partition's log end offset at the prepare),
//! every later state of the id keeps it until the markers are known durable, and the markers
//! become durable with their partition's next fsync (usually the next transaction's data; a
//! timer makes sure) and at the latest before the id's next prepare replaces the plan. So
//! whatever a crash keeps of the state log, the last state of an id names every transaction
//! whose markers may be missing, and [`TxnCoordinator::recover`] writes a planned marker again
//! into each partition still holding that transaction open (one that started below the
//! planned end offset: a later transaction of the producer starts above the marker). A crash
//! before the prepared state leaves an ongoing transaction, which its timeout aborts.
//! Recovery also aborts any transaction a partition still holds open that the state log does
//! not account for, so no partition's last stable offset can stay stuck, and fences its
//! producer, whose state was lost. Requests wait until recovery is done.
//!
//! Each transactional id has an async mutex: its requests are handled one at a time, markers
//! included. File work that waits (fsyncs, segment rolls, a busy partition) runs on blocking
//! threads; the unsynced writes of a transaction's end (markers, completed state) are plain
//! writes to the page cache and happen on the async worker when nothing makes them wait, as
//! produce's appends do: a trip to a blocking thread and back cost more than the writes.
//!
//! Crash points, and why each is safe (a machine crash keeps any subset of unsynced writes
//! that a later fsync of the same file did not cover; a partition's log keeps a prefix):
//! - Before the prepared state is durable: the id is ongoing or earlier on disk, EndTxn was
//!   not answered; nothing was promised. The previous transaction's plan is in that state
//!   (or its markers are durable: the prepare settles them before it is written).
//! - Between the prepare and the markers, or among them: the prepared state with its plan is
//!   on disk; recovery writes the missing markers (`txn-after-first-marker` crash point).
//! - After the markers and the completed state, before they are durable: the prepared or
//!   completed state is on disk with the plan; a lost marker leaves its partition holding the
//!   transaction open from below the planned end, and recovery writes it (`txn-markers-lost`).
//! - After the next transaction started: its acknowledged records are durable, so the marker
//!   before them in their partition is too; recovery writes no marker where the open
//!   transaction starts at or after the planned end, and the hanging-transaction scan aborts
//!   it if no ongoing state claims it (`txn-state-unsynced-lost`).
//! - After the next prepare: the previous markers were durable before it was written.

pub mod state;
mod store;

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use freshet_log::{ControlType, TxnMarker};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::broker::now_ms;
use crate::Broker;
use state::{MarkerPlan, PlannedMarker, TxnError, TxnMetadata, TxnState};
use store::{Sync, TxnStore};

/// Coordinator epoch written into markers: one node, one coordinator, forever.
const COORDINATOR_EPOCH: i32 = 0;
/// Kafka moves a producer id whose epoch would reach `i16::MAX` to a new id.
pub const LAST_USABLE_EPOCH: i16 = i16::MAX - 1;

/// What the produce path needs to know of a transactional producer, kept in step with every
/// state change so it can be read without waiting on the id's lock.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ProducerView {
    epoch: i16,
    ongoing: bool,
    /// Ongoing or prepared: the partitions' transaction is not over.
    open: bool,
    partitions: BTreeSet<(String, i32)>,
}

/// The transaction coordinator of one broker.
#[derive(Debug)]
pub struct TxnCoordinator {
    store: Arc<TxnStore>,
    ids: Mutex<HashMap<String, Arc<AsyncMutex<TxnMetadata>>>>,
    producers: Mutex<HashMap<i64, ProducerView>>,
    max_timeout_ms: i32,
    /// [`TxnCoordinator::recover`]'s one run: the broker starts it, and every transactional
    /// request waits for it (or starts it, where no server runs it, as in the fuzzers), so no
    /// producer acts on a state that recovery is about to finish, abort or fence.
    recovery: tokio::sync::OnceCell<()>,
    /// Planned markers recovery could not write (an I/O error): (producer id, topic,
    /// partition, planned end offset). The transaction a partition holds open below that end
    /// is committed or aborted already, so the hanging-transaction scan must leave it alone.
    unrepaired: Mutex<Vec<(i64, String, i32, i64)>>,
    /// Markers appended and not yet known durable, for [`TxnCoordinator::flush_markers_soon`].
    unflushed: Arc<Mutex<Vec<Written>>>,
    /// A flush of `unflushed` is scheduled.
    flush_scheduled: Arc<std::sync::atomic::AtomicBool>,
}

/// What [`TxnCoordinator::create`] did.
enum Created {
    New(i64),
    Raced(Arc<AsyncMutex<TxnMetadata>>),
}

/// Why a transactional write to a partition is refused before it reaches the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteRefusal {
    /// The partition is not part of the producer's ongoing transaction (or none is ongoing).
    NotInTransaction,
    /// An older epoch of a fenced producer.
    Fenced,
}

impl TxnCoordinator {
    /// Opens the state log under `data_dir`.
    pub fn open(data_dir: &Path, max_timeout_ms: i32) -> io::Result<TxnCoordinator> {
        let (store, states) = TxnStore::open(data_dir)?;
        let coordinator = TxnCoordinator {
            store: Arc::new(store),
            ids: Mutex::new(HashMap::new()),
            producers: Mutex::new(HashMap::new()),
            max_timeout_ms,
            recovery: tokio::sync::OnceCell::new(),
            unrepaired: Mutex::new(Vec::new()),
            unflushed: Arc::new(Mutex::new(Vec::new())),
            flush_scheduled: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        for mut meta in states {
            // Whether these markers reached the disk is unknown until recovery looks.
            if let Some(plan) = &mut meta.markers {
                plan.needs_repair = true;
            }
            coordinator.publish(&meta);
            coordinator.ids_lock().insert(
                meta.transactional_id.clone(),
                Arc::new(AsyncMutex::new(meta)),
            );
        }
        Ok(coordinator)
    }

    /// InitProducerId with a transactional id: the id's producer id with a new epoch (a new
    /// id the first time), after aborting whatever the previous epoch left open.
    /// `expected` is the producer id and epoch the client already has (KIP-360, v3+).
    pub async fn init_producer_id(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), TxnError> {
        if timeout_ms <= 0 || timeout_ms > self.max_timeout_ms {
            return Err(TxnError::InvalidTimeout {
                requested: timeout_ms,
                max: self.max_timeout_ms,
            });
        }
        self.recover(broker).await;
        let mut meta = loop {
            let entry = match self.entry(transactional_id) {
                Some(entry) => entry,
                None => match self.create(broker, transactional_id, timeout_ms).await? {
                    Created::New(producer_id) => return Ok((producer_id, 0)),
                    Created::Raced(entry) => entry,
                },
            };
            let meta = entry.lock_owned().await;
            // Expired while we waited: it is out of the map now, so look again.
            if meta.state != TxnState::Dead {
                break meta;
            }
        };
        if let Some((producer_id, epoch)) = expected {
            if producer_id >= 0 {
                meta.check_producer(producer_id, epoch)?;
            }
        }
        if meta.state.is_prepared() {
            self.finish(broker, &mut meta).await?;
        }
        let aborted = meta.state == TxnState::Ongoing;
        if aborted {
            self.abort_with_new_epoch(broker, &mut meta).await?;
        }
        let mut next = meta.clone();
        if !aborted {
            bump_epoch(broker, &mut next)?;
        }
        next.state = TxnState::Empty;
        next.timeout_ms = timeout_ms;
        next.last_update_ms = now_ms();
        self.commit_state(&mut meta, next).await?;
        Ok((meta.producer_id, meta.producer_epoch))
    }

    /// AddPartitionsToTxn: the partitions join the producer's transaction (starting it). The
    /// new state is not synced on its own: the EndTxn that prepares the transaction syncs it
    /// along, and if a machine crash loses it first, the partitions hold a transaction the
    /// coordinator does not know, which [`TxnCoordinator::recover`] aborts, fencing the
    /// producer so it cannot go on as if nothing happened.
    pub async fn add_partitions(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<(String, i32)>,
    ) -> Result<(), TxnError> {
        self.recover(broker).await;
        let mut meta = self.lock_live(transactional_id).await?;
        meta.check_producer(producer_id, epoch)?;
        if meta.state == TxnState::Ongoing && partitions.iter().all(|p| meta.partitions.contains(p))
        {
            return Ok(());
        }
        let next = meta.with_members(partitions, None, now_ms())?;
        self.set_state(&mut meta, next, Sync::Later).await
    }

    /// AddOffsetsToTxn: the group's offsets will be committed with the transaction. Synced at
    /// once: pending offsets leave no trace in any partition, so recovery could not tell that
    /// a lost state had them.
    pub async fn add_offsets(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
    ) -> Result<(), TxnError> {
        self.recover(broker).await;
        let mut meta = self.lock_live(transactional_id).await?;
        meta.check_producer(producer_id, epoch)?;
        if meta.state == TxnState::Ongoing && meta.groups.contains(group) {
            return Ok(());
        }
        let next = meta.with_members([], Some(group), now_ms())?;
        self.commit_state(&mut meta, next).await
    }

    /// TxnOffsetCommit: runs `commit` (the group coordinator writing the offsets as pending
    /// offsets of the producer) if the request belongs to the producer's ongoing transaction
    /// with `group` added to it. The id's lock is held until `commit` is done, so EndTxn or a
    /// timeout cannot complete the transaction between the check and the write: offsets
    /// written after the completion would stay pending, and the producer's next committed
    /// transaction would commit them.
    pub async fn commit_offsets<T>(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        commit: impl std::future::Future<Output = T>,
    ) -> Result<T, TxnError> {
        self.recover(broker).await;
        let meta = self.lock_live(transactional_id).await?;
        meta.check_producer(producer_id, epoch)?;
        if meta.state != TxnState::Ongoing || !meta.groups.contains(group) {
            return Err(TxnError::InvalidState(
                meta.state.name(),
                "commit offsets of a group not added to it",
            ));
        }
        Ok(commit.await)
    }

    /// EndTxn: commits or aborts the transaction in progress. The answer goes out once the
    /// prepared state is durable, which decides the outcome, and the group offsets are
    /// completed; the markers are written after it by a task that keeps the id locked until
    /// they are done, so the producer's next request waits for them (Kafka answers at the
    /// same point and makes the next AddPartitionsToTxn retry instead). A retry of an EndTxn
    /// that already completed (its answer was lost) succeeds again.
    pub async fn end_txn(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), TxnError> {
        self.recover(broker).await;
        let mut meta = self.lock_live(transactional_id).await?;
        meta.check_producer(producer_id, epoch)?;
        let wanted = if commit {
            [TxnState::PrepareCommit, TxnState::CompleteCommit]
        } else {
            [TxnState::PrepareAbort, TxnState::CompleteAbort]
        };
        match meta.state {
            TxnState::Ongoing => {
                let prepared = self.prepare(broker, &mut meta, commit, false).await?;
                self.commit_state(&mut meta, prepared).await?;
                // Group offsets first, before the answer: a client reading its group's
                // committed offsets right after a commit expects to find them. (Finishing
                // completes them again, which finds nothing left to do.)
                complete_group_offsets(broker, &meta, commit).await?;
                finish_in_background(broker.clone(), meta);
                Ok(())
            }
            // A prepared state left by a completion that failed: try again, answering with
            // its outcome.
            state if state == wanted[0] => self.finish(broker, &mut meta).await,
            state if state == wanted[1] => Ok(()),
            state => Err(TxnError::InvalidState(
                state.name(),
                if commit { "commit" } else { "abort" },
            )),
        }
    }

    /// Whether a transactional batch of `producer_id` at `epoch` may go to this partition:
    /// only while the partition is part of the producer's ongoing transaction (what Kafka
    /// verifies since KIP-890, so a late write cannot open a transaction nobody will end).
    pub fn check_write(
        &self,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), WriteRefusal> {
        let producers = self.producers_lock();
        let Some(view) = producers.get(&producer_id) else {
            return Err(WriteRefusal::NotInTransaction);
        };
        if epoch < view.epoch {
            return Err(WriteRefusal::Fenced);
        }
        let member = view.partitions.contains(&(topic.to_owned(), partition));
        if view.ongoing && epoch == view.epoch && member {
            Ok(())
        } else {
            Err(WriteRefusal::NotInTransaction)
        }
    }

    /// The state of one transactional id.
    pub async fn describe(&self, transactional_id: &str) -> Option<TxnMetadata> {
        let meta = self.lock_live(transactional_id).await.ok()?;
        Some(meta.clone())
    }

    /// Every transactional id's state.
    pub async fn list(&self) -> Vec<TxnMetadata> {
        let entries: Vec<Arc<AsyncMutex<TxnMetadata>>> =
            self.ids_lock().values().cloned().collect();
        let mut all = Vec::with_capacity(entries.len());
        for entry in entries {
            let meta = entry.lock().await;
            if meta.state != TxnState::Dead {
                all.push(meta.clone());
            }
        }
        all
    }

    /// Aborts every ongoing transaction past its timeout, bumping the producer's epoch so the
    /// late producer is fenced (as Kafka does). Also finishes transactions whose completion
    /// after EndTxn failed (a full disk, say), so their partitions' last stable offsets move
    /// on once the cause is gone.
    pub async fn abort_expired(&self, broker: &Arc<Broker>) {
        let now = now_ms();
        let entries: Vec<Arc<AsyncMutex<TxnMetadata>>> =
            self.ids_lock().values().cloned().collect();
        for entry in entries {
            let mut meta = entry.lock().await;
            if meta.state.is_prepared() {
                if let Err(error) = self.finish(broker, &mut meta).await {
                    tracing::warn!(transactional_id = %meta.transactional_id, %error, "could not finish a prepared transaction");
                }
                continue;
            }
            if meta.markers.as_ref().is_some_and(MarkerPlan::needs_repair) {
                if let Err(error) = self.settle_markers(broker, &mut meta).await {
                    tracing::warn!(transactional_id = %meta.transactional_id, %error, "could not write the markers of a transaction completed before the restart");
                }
            }
            if !meta.has_expired(now) {
                continue;
            }
            tracing::info!(
                transactional_id = %meta.transactional_id,
                timeout_ms = meta.timeout_ms,
                "aborting a transaction past its timeout"
            );
            if let Err(error) = self.abort_with_new_epoch(broker, &mut meta).await {
                tracing::warn!(transactional_id = %meta.transactional_id, %error, "could not abort an expired transaction");
            }
        }
    }

    /// Forgets every transactional id idle for longer than `expiration` (Kafka's
    /// `transactional.id.expiration.ms`), so ids used once (a stream processor's per-task
    /// or per-checkpoint ids) do not pile up in memory and in the state log. A producer
    /// still holding a forgotten id gets INVALID_PRODUCER_ID_MAPPING and must initialise
    /// again, as with Kafka; that gives it a new producer id.
    pub async fn expire_abandoned_ids(
        &self,
        broker: &Arc<Broker>,
        expiration: std::time::Duration,
    ) {
        let expiration_ms = i64::try_from(expiration.as_millis()).unwrap_or(i64::MAX);
        let now = now_ms();
        let entries: Vec<Arc<AsyncMutex<TxnMetadata>>> =
            self.ids_lock().values().cloned().collect();
        for entry in entries {
            let mut meta = entry.lock().await;
            if meta.state == TxnState::Dead || !meta.is_abandoned(now, expiration_ms) {
                continue;
            }
            // The tombstone drops the marker plan: its markers must be durable first.
            if let Err(error) = self.settle_markers(broker, &mut meta).await {
                tracing::warn!(transactional_id = %meta.transactional_id, %error, "could not expire a transactional id");
                continue;
            }
            let mut dead = meta.clone();
            dead.state = TxnState::Dead;
            dead.last_update_ms = now;
            // Not synced: a tombstone lost in a crash only brings the id back until the
            // next pass.
            if let Err(error) = self.set_state(&mut meta, dead, Sync::Later).await {
                tracing::warn!(transactional_id = %meta.transactional_id, %error, "could not expire a transactional id");
                continue;
            }
            self.ids_lock().remove(&meta.transactional_id);
            self.producers_lock().remove(&meta.producer_id);
            tracing::info!(transactional_id = %meta.transactional_id, "expired a transactional id idle past --transactional-id-expiration-ms");
        }
    }

    /// At start: finishes transactions a crash left prepared, aborts transactions that
    /// partitions hold open but the state log does not know as open, and fences their
    /// producers. Runs once; later calls wait for that run to end.
    pub async fn recover(&self, broker: &Arc<Broker>) {
        self.recovery
            .get_or_init(|| self.recover_once(broker))
            .await;
    }

    async fn recover_once(&self, broker: &Arc<Broker>) {
        let entries: Vec<Arc<AsyncMutex<TxnMetadata>>> =
            self.ids_lock().values().cloned().collect();
        // Every planned marker first: the scan below must find the transactions they close
        // closed, or (if writing one failed) listed in `unrepaired`, so it aborts only what
        // nothing accounts for.
        for entry in entries {
            let mut meta = entry.lock().await;
            if meta.state.is_prepared() {
                tracing::info!(transactional_id = %meta.transactional_id, state = meta.state.name(), "finishing a transaction prepared before the restart");
                if let Err(error) = self.finish(broker, &mut meta).await {
                    tracing::error!(transactional_id = %meta.transactional_id, %error, "could not finish a prepared transaction");
                }
            } else if meta.markers.is_some() {
                // Completed (and maybe the next one started) before the crash, with markers
                // that may not have reached the disk.
                if let Err(error) = self.settle_markers(broker, &mut meta).await {
                    tracing::error!(transactional_id = %meta.transactional_id, %error, "could not write the markers of a transaction completed before the restart");
                }
            }
        }
        let broker_for_scan = broker.clone();
        let aborted =
            tokio::task::spawn_blocking(move || abort_hanging_transactions(&broker_for_scan))
                .await
                .unwrap_or_default();
        if !aborted.is_empty() {
            tracing::warn!(
                count = aborted.len(),
                "aborted transactions partitions held open without a coordinator state"
            );
        }
        for producer_id in aborted.into_iter().collect::<BTreeSet<i64>>() {
            self.fence_after_lost_state(broker, producer_id).await;
        }
    }

    /// A transaction of `producer_id` was aborted in a partition because the coordinator's
    /// state had lost it (a machine crash took the unsynced AddPartitionsToTxn state). If a
    /// transactional id still has that producer, its epoch is bumped (aborting whatever it
    /// has ongoing), so the producer is fenced: otherwise its EndTxn could answer "committed"
    /// for records that were just aborted.
    async fn fence_after_lost_state(&self, broker: &Arc<Broker>, producer_id: i64) {
        let entries: Vec<Arc<AsyncMutex<TxnMetadata>>> =
            self.ids_lock().values().cloned().collect();
        for entry in entries {
            let mut meta = entry.lock().await;
            if meta.producer_id != producer_id || meta.state == TxnState::Dead {
                continue;
            }
            tracing::warn!(transactional_id = %meta.transactional_id, producer_id, "fencing a producer whose transaction state was lost");
            let fenced = if meta.state == TxnState::Ongoing {
                self.abort_with_new_epoch(broker, &mut meta).await
            } else {
                let mut next = meta.clone();
                match bump_epoch(broker, &mut next) {
                    Ok(()) => self.commit_state(&mut meta, next).await,
                    Err(error) => Err(error),
                }
            };
            if let Err(error) = fenced {
                tracing::error!(transactional_id = %meta.transactional_id, %error, "could not fence a producer whose transaction state was lost");
            }
            return;
        }
    }

    /// Whether the coordinator accounts for `producer_id`'s transaction that this partition
    /// holds open from offset `start`: ongoing, being completed, or completed with a marker
    /// recovery could not write yet. Asked at the moment of each decision: clients may start
    /// new transactions while recovery runs.
    fn holds(&self, producer_id: i64, topic: &str, partition: i32, start: i64) -> bool {
        let planned_end = self
            .unrepaired_lock()
            .iter()
            .find(|(id, t, p, _)| *id == producer_id && t == topic && *p == partition)
            .map(|entry| entry.3);
        let view = |open: fn(&ProducerView) -> bool| {
            self.producers_lock().get(&producer_id).is_some_and(|view| {
                open(view) && view.partitions.contains(&(topic.to_owned(), partition))
            })
        };
        match planned_end {
            // Started before the prepare: the planned transaction, whose outcome is decided.
            Some(end) if start < end => true,
            // Started after it: a later transaction, which only an ongoing state may claim
            // (the prepared one is the planned transaction, which is not this one).
            Some(_) => view(|v| v.ongoing),
            None => view(|v| v.open),
        }
    }

    /// The prepared state of ending `meta`'s transaction (at the next epoch with `bump`),
    /// with its marker plan. The previous plan is settled first: the new state replaces it,
    /// and once that state reaches the disk (any fsync of the state log may take it there)
    /// nothing would tell recovery to write the previous markers again.
    async fn prepare(
        &self,
        broker: &Arc<Broker>,
        meta: &mut TxnMetadata,
        commit: bool,
        bump: bool,
    ) -> Result<TxnMetadata, TxnError> {
        self.settle_markers(broker, meta).await?;
        let mut prepared = meta.prepared(commit, now_ms());
        if bump {
            prepared.producer_epoch += 1;
        }
        prepared.markers = Some(plan_markers(broker, &prepared, commit));
        Ok(prepared)
    }

    /// Makes the markers of `meta`'s plan durable and drops the plan (in memory: the states
    /// on disk may keep it, and recovery then finds nothing left to do). The markers are
    /// nearly always durable already, carried by a later fsync of their partitions, so this
    /// rarely waits. A plan loaded at the start is first repaired: its markers written again
    /// wherever the planned transaction is still open.
    async fn settle_markers(
        &self,
        broker: &Arc<Broker>,
        meta: &mut TxnMetadata,
    ) -> Result<(), TxnError> {
        let Some(plan) = meta.markers.clone() else {
            return Ok(());
        };
        if plan.needs_repair {
            self.repair(broker, &plan).await?;
        } else if !planned_markers_durable(broker, &plan) {
            let broker = broker.clone();
            tokio::task::spawn_blocking(move || wait_planned_markers(&broker, &plan))
                .await
                .map_err(|e| TxnError::Storage(format!("marker sync failed: {e}")))??;
        }
        meta.markers = None;
        Ok(())
    }

    /// Writes `plan`'s markers where its transaction is still open and waits until they are
    /// durable; remembers a failure in `unrepaired` for the hanging-transaction scan.
    async fn repair(&self, broker: &Arc<Broker>, plan: &MarkerPlan) -> Result<(), TxnError> {
        let (broker_for_repair, plan_for_repair) = (broker.clone(), plan.clone());
        let repaired = tokio::task::spawn_blocking(move || {
            repair_markers(&broker_for_repair, &plan_for_repair)
        })
        .await
        .map_err(|e| TxnError::Storage(format!("marker writer failed: {e}")))
        .and_then(|repaired| repaired);
        let mut unrepaired = self.unrepaired_lock();
        unrepaired.retain(|entry| entry.0 != plan.producer_id);
        if repaired.is_err() {
            unrepaired.extend(plan.partitions.iter().map(|marker| {
                (
                    plan.producer_id,
                    marker.topic.clone(),
                    marker.partition,
                    marker.end_offset,
                )
            }));
        }
        repaired
    }

    /// Completes a prepared transaction: markers, group offsets, completed state. Neither the
    /// markers nor the completed state are synced here (see the module's crash safety): the
    /// completed state keeps the plan, so a crash at any point of this leaves a state on disk
    /// (this prepared one, or the completed one) from which recovery writes a lost marker
    /// again, and only where the planned transaction is still open, never into the id's next
    /// transaction.
    async fn finish(&self, broker: &Arc<Broker>, meta: &mut TxnMetadata) -> Result<(), TxnError> {
        let control = match meta.state {
            TxnState::PrepareCommit => ControlType::Commit,
            _ => ControlType::Abort,
        };
        let commit = control == ControlType::Commit;
        let Some(plan) = meta.markers.clone() else {
            return self.finish_unplanned(broker, meta, control).await;
        };
        // The group offsets (for EndTxn done already, before its answer): like the markers
        // they follow from the durable prepared state, and recovery completes both again, so
        // their order does not matter to a crash; only the completed state, which drops the
        // groups, must come after them.
        complete_group_offsets(broker, meta, commit).await?;
        let lose_markers = crate::failpoint::armed(MARKERS_LOST_CRASH_POINT);
        if plan.needs_repair || lose_markers {
            if plan.needs_repair {
                // Prepared before the restart: some markers may be on disk already, and a
                // partition may hold the id's next transaction open after this one's marker.
                self.repair(broker, &plan).await?;
            }
            // Repaired markers are durable; lost ones (the crash test's machine crash, which
            // keeps the plan) never reached the disk.
            let mut completed = meta.completed(now_ms());
            if plan.needs_repair {
                completed.markers = None;
            }
            if !lose_markers {
                return self.set_state(meta, completed, Sync::Later).await;
            }
            // The completed state durable (the worst a machine crash can keep of the state
            // log), the EndTxn answer given time to leave, then the crash.
            self.commit_state(meta, completed).await?;
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            crate::failpoint::hit(MARKERS_LOST_CRASH_POINT);
            return Ok(());
        }
        // Markers and the completed state are plain writes to the page cache, done here
        // unless one would wait (a segment roll, a busy partition): a trip to a blocking
        // thread and back costs more than the writes.
        let marker = marker_of(meta, control);
        let partitions: Vec<(String, i32)> = meta.partitions.iter().cloned().collect();
        let (mut written, blocked) = if crate::failpoint::armed(MARKER_CRASH_POINT) {
            (Vec::new(), partitions)
        } else {
            try_append_markers(broker, &partitions, &marker)?
        };
        if !blocked.is_empty() {
            let broker = broker.clone();
            let more =
                tokio::task::spawn_blocking(move || append_markers(&broker, &blocked, &marker))
                    .await
                    .map_err(|e| TxnError::Storage(format!("marker writer failed: {e}")))??;
            written.extend(more);
        }
        let mut completed = meta.completed(now_ms());
        if let Some(plan) = &mut completed.markers {
            for planned in &mut plan.partitions {
                let key = (planned.topic.clone(), planned.partition);
                if let Some((_, _, end)) = written.iter().find(|(at, _, _)| *at == key) {
                    planned.marker_end = *end;
                }
            }
        }
        self.set_state(meta, completed, Sync::Later).await?;
        self.flush_markers_soon(written);
        Ok(())
    }

    /// Makes markers just appended durable [`MARKER_FLUSH_DELAY`] from now, unless another
    /// fsync of their partition covered them meanwhile (the next produce's group commit,
    /// usually within a millisecond or two). One flush serves every transaction completed
    /// in the meantime. Only liveness depends on it (the high watermark, which consumers see
    /// as the end of the log, passes a marker once it is durable); safety does not: the
    /// marker plan covers a marker until the next prepare of its id has made it durable.
    fn flush_markers_soon(&self, written: Vec<Written>) {
        use std::sync::atomic::Ordering;
        if written.is_empty() {
            return;
        }
        lock_unflushed(&self.unflushed).extend(written);
        if self.flush_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let (unflushed, scheduled) = (self.unflushed.clone(), self.flush_scheduled.clone());
        tokio::spawn(async move {
            tokio::time::sleep(MARKER_FLUSH_DELAY).await;
            // Cleared before taking the list: a marker added after the take schedules the
            // next flush.
            scheduled.store(false, Ordering::Release);
            let mut due: Vec<(Arc<crate::topics::Partition>, i64)> = Vec::new();
            for (_, partition, end) in std::mem::take(&mut *lock_unflushed(&unflushed)) {
                if partition.log.high_watermark() >= end {
                    continue;
                }
                match due.iter_mut().find(|(p, _)| Arc::ptr_eq(p, &partition)) {
                    Some(entry) => entry.1 = entry.1.max(end),
                    None => due.push((partition, end)),
                }
            }
            for (partition, end) in due {
                let synced =
                    tokio::task::spawn_blocking(move || sync_marker(&partition, end)).await;
                if let Ok(Err(error)) = synced {
                    tracing::warn!(%error, "could not sync a transaction marker");
                }
            }
        });
    }

    /// [`TxnCoordinator::finish`] for a state prepared by a version without marker plans: the
    /// rule of that version holds, markers and the completed state durable before the id's
    /// next transaction can start (recovery could not tell this transaction's partitions
    /// from the next one's).
    async fn finish_unplanned(
        &self,
        broker: &Arc<Broker>,
        meta: &mut TxnMetadata,
        control: ControlType,
    ) -> Result<(), TxnError> {
        let written = write_markers(broker, meta, control).await?;
        let syncs = written.into_iter().map(|(_, partition, end)| {
            tokio::task::spawn_blocking(move || sync_marker(&partition, end))
        });
        for synced in futures::future::join_all(syncs).await {
            synced.map_err(|e| TxnError::Storage(format!("marker sync failed: {e}")))??;
        }
        complete_group_offsets(broker, meta, control == ControlType::Commit).await?;
        let completed = meta.completed(now_ms());
        self.commit_state(meta, completed).await
    }

    /// Aborts the ongoing transaction with the epoch bumped: the markers carry the new epoch,
    /// which fences the old producer in every partition it wrote to. An exhausted epoch
    /// aborts at the old one and moves the id to a new producer id instead.
    async fn abort_with_new_epoch(
        &self,
        broker: &Arc<Broker>,
        meta: &mut TxnMetadata,
    ) -> Result<(), TxnError> {
        let exhausted = meta.producer_epoch >= LAST_USABLE_EPOCH;
        let prepared = self.prepare(broker, meta, false, !exhausted).await?;
        self.commit_state(meta, prepared).await?;
        self.finish(broker, meta).await?;
        if exhausted {
            let mut next = meta.clone();
            bump_epoch(broker, &mut next)?;
            self.commit_state(meta, next).await?;
        }
        Ok(())
    }

    /// Makes `next` durable, then the current state of its id.
    async fn commit_state(
        &self,
        meta: &mut TxnMetadata,
        next: TxnMetadata,
    ) -> Result<(), TxnError> {
        self.set_state(meta, next, Sync::Now).await
    }

    /// Writes `next` to the state log, then makes it the current state of its id.
    async fn set_state(
        &self,
        meta: &mut TxnMetadata,
        next: TxnMetadata,
        sync: Sync,
    ) -> Result<(), TxnError> {
        // An unsynced frame is a plain write to the page cache: done here when nothing makes
        // it wait, sparing a hand-off to a blocking thread and back.
        let written_here =
            sync == Sync::Later && self.store.try_write_later(&next).map_err(state_log_error)?;
        if !written_here {
            let store = self.store.clone();
            let to_write = next.clone();
            tokio::task::spawn_blocking(move || store.write(&to_write, sync))
                .await
                .map_err(|e| TxnError::Storage(format!("state log writer failed: {e}")))?
                .map_err(state_log_error)?;
        }
        self.install(meta, next);
        Ok(())
    }

    /// Makes `next`, already written to the state log, the current state of its id.
    fn install(&self, meta: &mut TxnMetadata, next: TxnMetadata) {
        if next.producer_id != meta.producer_id {
            self.producers_lock().remove(&meta.producer_id);
        }
        *meta = next;
        self.publish(meta);
    }

    /// A new transactional id: a fresh producer id at epoch 0, durable before it is used.
    /// When another request created the id meanwhile, that one stays and is returned.
    async fn create(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
        timeout_ms: i32,
    ) -> Result<Created, TxnError> {
        let broker_for_id = broker.clone();
        let producer_id =
            tokio::task::spawn_blocking(move || broker_for_id.producer_ids.allocate())
                .await
                .map_err(|e| TxnError::Storage(e.to_string()))?
                .map_err(|e| TxnError::Storage(format!("allocating a producer id: {e}")))?;
        let meta = TxnMetadata::new(transactional_id, producer_id, timeout_ms, now_ms());
        let entry = Arc::new(AsyncMutex::new(meta.clone()));
        // Locked before it is visible, so nobody uses it before it is durable.
        let mut guard = entry.clone().lock_owned().await;
        {
            let mut ids = self.ids_lock();
            if let Some(existing) = ids.get(transactional_id) {
                return Ok(Created::Raced(existing.clone()));
            }
            ids.insert(transactional_id.to_owned(), entry);
        }
        let durable = self.commit_state(&mut guard, meta).await;
        if let Err(error) = durable {
            self.ids_lock().remove(transactional_id);
            return Err(error);
        }
        Ok(Created::New(producer_id))
    }

    /// The id's state, locked; INVALID_PRODUCER_ID_MAPPING for an id unknown or expired.
    async fn lock_live(
        &self,
        transactional_id: &str,
    ) -> Result<OwnedMutexGuard<TxnMetadata>, TxnError> {
        let entry = self
            .entry(transactional_id)
            .ok_or(TxnError::ProducerIdMapping)?;
        let meta = entry.lock_owned().await;
        if meta.state == TxnState::Dead {
            return Err(TxnError::ProducerIdMapping);
        }
        Ok(meta)
    }

    fn entry(&self, transactional_id: &str) -> Option<Arc<AsyncMutex<TxnMetadata>>> {
        self.ids_lock().get(transactional_id).cloned()
    }

    fn publish(&self, meta: &TxnMetadata) {
        self.producers_lock().insert(
            meta.producer_id,
            ProducerView {
                epoch: meta.producer_epoch,
                ongoing: meta.state == TxnState::Ongoing,
                open: meta.state == TxnState::Ongoing || meta.state.is_prepared(),
                partitions: meta.partitions.clone(),
            },
        );
    }

    fn ids_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<AsyncMutex<TxnMetadata>>>> {
        self.ids.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn producers_lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, ProducerView>> {
        self.producers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unrepaired_lock(&self) -> std::sync::MutexGuard<'_, Vec<(i64, String, i32, i64)>> {
        self.unrepaired.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn state_log_error(error: io::Error) -> TxnError {
    tracing::error!(%error, "could not write the transaction state log");
    TxnError::Storage(format!("writing the transaction state log: {error}"))
}

/// The next epoch of `meta`'s producer, or a new producer id at epoch 0 when the epoch is
/// exhausted.
fn bump_epoch(broker: &Broker, meta: &mut TxnMetadata) -> Result<(), TxnError> {
    if meta.producer_epoch < LAST_USABLE_EPOCH {
        meta.producer_epoch += 1;
        return Ok(());
    }
    meta.producer_id = broker
        .producer_ids
        .allocate()
        .map_err(|e| TxnError::Storage(format!("allocating a producer id: {e}")))?;
    meta.producer_epoch = 0;
    Ok(())
}

/// Completes a prepared transaction on its own task, holding the id's lock until done. A
/// failure leaves the prepared state, which the next EndTxn retry, InitProducerId or the
/// periodic expiry pass finishes.
fn finish_in_background(broker: Arc<Broker>, mut meta: OwnedMutexGuard<TxnMetadata>) {
    tokio::spawn(async move {
        if let Err(error) = broker.transactions.finish(&broker, &mut meta).await {
            tracing::warn!(transactional_id = %meta.transactional_id, %error, "could not complete a transaction after EndTxn; it stays prepared and is retried");
        }
    });
}

/// A partition as (topic, partition index).
type PartitionName = (String, i32);
/// A marker appended: its partition, and the offset after it.
type Written = (PartitionName, Arc<crate::topics::Partition>, i64);

/// Appends `control` markers to every partition of the transaction, without waiting for them
/// to be durable (see [`TxnCoordinator::finish`]). A partition whose topic was deleted is
/// skipped.
async fn write_markers(
    broker: &Arc<Broker>,
    meta: &TxnMetadata,
    control: ControlType,
) -> Result<Vec<Written>, TxnError> {
    let marker = marker_of(meta, control);
    let partitions: Vec<(String, i32)> = meta.partitions.iter().cloned().collect();
    let broker = broker.clone();
    tokio::task::spawn_blocking(move || append_markers(&broker, &partitions, &marker))
        .await
        .map_err(|e| TxnError::Storage(format!("marker writer failed: {e}")))?
}

/// The `control` marker of `meta`'s producer at its epoch.
fn marker_of(meta: &TxnMetadata, control: ControlType) -> TxnMarker {
    TxnMarker {
        producer_id: meta.producer_id,
        producer_epoch: meta.producer_epoch,
        coordinator_epoch: COORDINATOR_EPOCH,
        control,
    }
}

/// The partition a marker goes to; `None` (logged) once the topic or partition is gone.
fn marker_partition(
    broker: &Broker,
    topic: &str,
    index: i32,
) -> Option<std::sync::Arc<crate::topics::Partition>> {
    let partition = broker.topics.partition(topic, index);
    if partition.is_none() {
        tracing::warn!(
            topic,
            partition = index,
            "no marker for a partition that no longer exists"
        );
    }
    partition
}

/// Appends `marker` to each partition; returns each partition written with the end offset
/// that must become durable.
fn append_markers(
    broker: &Broker,
    partitions: &[(String, i32)],
    marker: &TxnMarker,
) -> Result<Vec<Written>, TxnError> {
    let mut written: Vec<Written> = Vec::with_capacity(partitions.len());
    for (topic, index) in partitions {
        let Some(partition) = marker_partition(broker, topic, *index) else {
            continue;
        };
        if let Some(end) = append_marker(&partition, marker, topic)? {
            written.push(((topic.clone(), *index), partition, end));
        }
        if written.len() == 1 && partitions.len() > 1 && crate::failpoint::armed(MARKER_CRASH_POINT)
        {
            sync_marker(&written[0].1, written[0].2)?;
            crate::failpoint::hit(MARKER_CRASH_POINT);
        }
    }
    Ok(written)
}

/// [`append_markers`] on an async worker: appends `marker` where that is a plain write;
/// returns what it wrote and the partitions left for a blocking thread.
fn try_append_markers(
    broker: &Broker,
    partitions: &[(String, i32)],
    marker: &TxnMarker,
) -> Result<(Vec<Written>, Vec<PartitionName>), TxnError> {
    let (mut written, mut blocked) = (Vec::with_capacity(partitions.len()), Vec::new());
    for (topic, index) in partitions {
        let Some(partition) = marker_partition(broker, topic, *index) else {
            continue;
        };
        match partition.log.try_append_marker(marker) {
            Ok(Some(outcome)) => {
                written.push(((topic.clone(), *index), partition, outcome.last_offset + 1))
            }
            Ok(None) => blocked.push((topic.clone(), *index)),
            // Skipped (a newer epoch closed it here) or an error, as on the blocking path.
            Err(error) => {
                append_error(&partition, topic, error)?;
            }
        }
    }
    Ok((written, blocked))
}

/// Appends `marker` to one partition; returns the offset after it, or `None` when a newer
/// epoch of the producer already closed its transaction there.
fn append_marker(
    partition: &crate::topics::Partition,
    marker: &TxnMarker,
    topic: &str,
) -> Result<Option<i64>, TxnError> {
    match partition.log.append_marker(marker) {
        Ok(outcome) => Ok(Some(outcome.last_offset + 1)),
        Err(error) => append_error(partition, topic, error),
    }
}

/// A refused marker: skipped (`Ok(None)`) when a newer epoch of the producer already closed
/// its transaction in the partition, an error otherwise.
fn append_error(
    partition: &crate::topics::Partition,
    topic: &str,
    error: freshet_log::LogError,
) -> Result<Option<i64>, TxnError> {
    match error {
        freshet_log::LogError::InvalidProducerEpoch { current, .. } => {
            tracing::warn!(
                topic,
                partition = partition.index,
                current,
                "marker skipped: the producer moved to a newer epoch"
            );
            Ok(None)
        }
        error => Err(TxnError::Storage(format!(
            "writing a marker to {topic}-{}: {error}",
            partition.index
        ))),
    }
}

/// Crash point between the first marker of a transaction and the others.
const MARKER_CRASH_POINT: &str = "txn-after-first-marker";
/// Crash point of a transaction completed without its markers reaching the disk.
const MARKERS_LOST_CRASH_POINT: &str = "txn-markers-lost";

/// How long appended markers wait for another fsync of their partition (the next produce's
/// group commit, usually within a millisecond or two) before one is forced for them, so the
/// high watermark passes them even when nothing else is written.
const MARKER_FLUSH_DELAY: std::time::Duration = std::time::Duration::from_millis(10);

/// Blocks until `partition` is durable up to `end` (a marker just written).
fn sync_marker(partition: &crate::topics::Partition, end: i64) -> Result<(), TxnError> {
    partition
        .log
        .wait_durable(end)
        .map_err(|e| TxnError::Storage(format!("syncing a marker: {e}")))
}

fn lock_unflushed(unflushed: &Mutex<Vec<Written>>) -> std::sync::MutexGuard<'_, Vec<Written>> {
    unflushed.lock().unwrap_or_else(|e| e.into_inner())
}

/// The marker plan of `prepared`: each partition's topic id and log end offset now, before
/// any of its markers (every record of the transaction was acknowledged before EndTxn).
fn plan_markers(broker: &Broker, prepared: &TxnMetadata, commit: bool) -> MarkerPlan {
    let partitions = prepared
        .partitions
        .iter()
        .filter_map(|(topic, index)| {
            let found = broker.topics.get(topic)?;
            let partition = found.partition(*index)?;
            Some(PlannedMarker {
                topic: topic.clone(),
                partition: *index,
                topic_id: found.id.to_string(),
                end_offset: partition.log.log_end_offset(),
                marker_end: -1,
            })
        })
        .collect();
    MarkerPlan {
        producer_id: prepared.producer_id,
        producer_epoch: prepared.producer_epoch,
        commit,
        partitions,
        needs_repair: false,
    }
}

/// The partition a planned marker is for, unless its topic is gone (or was created again).
fn planned_partition(
    broker: &Broker,
    planned: &PlannedMarker,
) -> Option<Arc<crate::topics::Partition>> {
    let topic = broker.topics.get(&planned.topic)?;
    if topic.id.to_string() != planned.topic_id {
        return None;
    }
    topic.partition(planned.partition).cloned()
}

/// Whether every marker `plan` appended is durable already (the high watermark is the durable
/// end of a partition).
fn planned_markers_durable(broker: &Broker, plan: &MarkerPlan) -> bool {
    plan.partitions
        .iter()
        .filter(|p| p.marker_end >= 0)
        .all(|planned| {
            planned_partition(broker, planned)
                .is_none_or(|partition| partition.log.high_watermark() >= planned.marker_end)
        })
}

/// Blocks until every marker `plan` appended is durable.
fn wait_planned_markers(broker: &Broker, plan: &MarkerPlan) -> Result<(), TxnError> {
    for planned in plan.partitions.iter().filter(|p| p.marker_end >= 0) {
        if let Some(partition) = planned_partition(broker, planned) {
            if partition.log.high_watermark() < planned.marker_end {
                sync_marker(&partition, planned.marker_end)?;
            }
        }
    }
    Ok(())
}

/// Recovery's half of a marker plan: writes the planned marker into each partition where the
/// producer still has a transaction open that started below the planned end offset (the
/// planned transaction, whose marker the crash lost or that was never written), and waits
/// until they are durable. A partition where it is closed gets nothing; so does one where the
/// open transaction started at or after that end: that is the producer's next transaction,
/// whose state the crash lost (the hanging-transaction scan aborts it), and closing it with
/// this outcome would commit records nobody committed.
fn repair_markers(broker: &Broker, plan: &MarkerPlan) -> Result<(), TxnError> {
    let marker = TxnMarker {
        producer_id: plan.producer_id,
        producer_epoch: plan.producer_epoch,
        coordinator_epoch: COORDINATOR_EPOCH,
        control: if plan.commit {
            ControlType::Commit
        } else {
            ControlType::Abort
        },
    };
    for planned in &plan.partitions {
        let Some(partition) = planned_partition(broker, planned) else {
            continue;
        };
        let open_below_end = partition.log.producers().iter().any(|producer| {
            producer.producer_id == plan.producer_id
                && (0..planned.end_offset).contains(&producer.current_txn_start_offset)
        });
        if !open_below_end {
            continue;
        }
        tracing::info!(
            topic = %planned.topic,
            partition = planned.partition,
            producer_id = plan.producer_id,
            commit = plan.commit,
            "writing a transaction marker lost in a crash"
        );
        if let Some(end) = append_marker(&partition, &marker, &planned.topic)? {
            sync_marker(&partition, end)?;
        }
    }
    Ok(())
}

/// Commits or drops the offsets the transaction committed to its groups, durably. Called
/// again by recovery after a crash; the group coordinator then finds nothing left to do.
async fn complete_group_offsets(
    broker: &Arc<Broker>,
    meta: &TxnMetadata,
    commit: bool,
) -> Result<(), TxnError> {
    if meta.groups.is_empty() {
        return Ok(());
    }
    let groups: Vec<String> = meta.groups.iter().cloned().collect();
    broker
        .groups
        .complete_transaction(meta.producer_id, commit, &groups)
        .await
        .map_err(|e| TxnError::Storage(format!("completing the offsets of {groups:?}: {e}")))
}

/// Writes an abort marker for every transaction a partition holds open that the coordinator
/// does not hold; returns the producer id of each.
fn abort_hanging_transactions(broker: &Broker) -> Vec<i64> {
    let mut aborted = Vec::new();
    for topic in broker.topics.all() {
        for partition in &topic.partitions {
            for producer in partition.log.producers() {
                let open = producer.current_txn_start_offset >= 0;
                if !open
                    || broker.transactions.holds(
                        producer.producer_id,
                        &topic.name,
                        partition.index,
                        producer.current_txn_start_offset,
                    )
                {
                    continue;
                }
                let marker = TxnMarker {
                    producer_id: producer.producer_id,
                    producer_epoch: producer.producer_epoch,
                    coordinator_epoch: COORDINATOR_EPOCH,
                    control: ControlType::Abort,
                };
                let written = partition
                    .log
                    .append_marker(&marker)
                    .and_then(|outcome| partition.log.wait_durable(outcome.last_offset + 1));
                match written {
                    Ok(()) => aborted.push(producer.producer_id),
                    Err(error) => {
                        tracing::error!(topic = %topic.name, partition = partition.index, %error, "could not abort a hanging transaction")
                    }
                }
            }
        }
    }
    aborted
}
