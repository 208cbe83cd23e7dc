//! [`GroupCoordinator`]: the groups, the offsets store and the timer task, and the plumbing
//! every request handler shares. The handlers themselves live in [`crate::handlers`].

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use kafka_protocol::ResponseError;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::consumer_group::ConsumerGroup;
use crate::group::{Effects, Group, GroupState, JoinOutcome, RebalanceSettings, SyncOutcome};
use crate::lock;
use crate::store::{CompactionPolicy, OffsetStore, Record};
use crate::{CoordinatorConfig, CoordinatorError};

/// Kafka's consumer-group coordinator for a single broker. See the crate docs.
///
/// Shared as `Arc<GroupCoordinator>`; every method takes `&self`. Request handlers never hold
/// a lock across an `.await`: long polls (JoinGroup, a follower's SyncGroup) wait on oneshot
/// channels, so one group's rebalance never blocks another group.
pub struct GroupCoordinator {
    pub(crate) config: CoordinatorConfig,
    pub(crate) groups: Mutex<HashMap<String, Group>>,
    pub(crate) store: Arc<OffsetStore>,
    /// Wakes the timer task when deadlines may have moved earlier.
    timers_changed: Arc<Notify>,
    timer_task: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
    rebalances: AtomicU64,
}

impl std::fmt::Debug for GroupCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCoordinator")
            .field("config", &self.config)
            .field("groups", &lock(&self.groups).len())
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Why a request could not reach its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupUnavailable {
    /// The coordinator is closed.
    Closed,
    /// No such group, and the request does not create one.
    Missing,
}

/// What to do when a request names a group the coordinator does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IfMissing {
    /// Answer [`GroupUnavailable::Missing`].
    Fail,
    /// Start a group, but keep it only if the request left something in it (a JoinGroup that
    /// fails validation leaves nothing behind).
    CreateIfUsed,
    /// Start a group and keep it (a standalone offset commit creates an Empty group that owns
    /// its offsets, as in Kafka).
    Create,
}

impl GroupCoordinator {
    /// Loads committed offsets, group generations and the members of classic groups from
    /// `<dir>/` and starts the timer task (restored members expire unless they heartbeat within
    /// their session timeout). Must be called inside a tokio runtime.
    pub fn open(dir: &Path, config: CoordinatorConfig) -> Result<Arc<Self>, CoordinatorError> {
        Self::open_with_policy(dir, config, CompactionPolicy::default())
    }

    pub(crate) fn open_with_policy(
        dir: &Path,
        config: CoordinatorConfig,
        policy: CompactionPolicy,
    ) -> Result<Arc<Self>, CoordinatorError> {
        config.validate().map_err(CoordinatorError::InvalidConfig)?;
        let runtime = Handle::try_current().map_err(|_| CoordinatorError::NoRuntime)?;
        let store = OffsetStore::open(dir, policy, runtime.clone())?;
        let groups = restore_groups(&store, &config);
        tracing::info!(dir = %dir.display(), groups = groups.len(), "group coordinator open");
        let coordinator = Arc::new(Self {
            config,
            groups: Mutex::new(groups),
            store,
            timers_changed: Arc::new(Notify::new()),
            timer_task: Mutex::new(None),
            closed: AtomicBool::new(false),
            rebalances: AtomicU64::new(0),
        });
        let task = run_timers(
            Arc::downgrade(&coordinator),
            Arc::clone(&coordinator.timers_changed),
        );
        *lock(&coordinator.timer_task) = Some(runtime.spawn(task));
        Ok(coordinator)
    }

    /// Number of completed join phases that produced a generation with members.
    pub fn rebalance_count(&self) -> u64 {
        self.rebalances.load(Ordering::Relaxed)
    }

    /// Completed join phases that produced a generation with members, per group that had
    /// any, since the coordinator opened.
    pub fn rebalances_by_group(&self) -> Vec<(String, u64)> {
        let groups = lock(&self.groups);
        let mut counts: Vec<(String, u64)> = groups
            .values()
            .filter(|group| group.rebalances > 0)
            .map(|group| (group.id.clone(), group.rebalances))
            .collect();
        drop(groups);
        counts.sort_unstable();
        counts
    }

    /// Number of fsyncs of the offsets file that made commits durable. Fewer than commits
    /// under concurrency: that is the group commit at work.
    pub fn offsets_fsync_count(&self) -> u64 {
        self.store.fsync_count()
    }

    /// Stops the timers, answers every waiting JoinGroup/SyncGroup with NOT_COORDINATOR and
    /// flushes the offsets file. Requests after this get COORDINATOR_NOT_AVAILABLE.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let task = lock(&self.timer_task).take();
        if let Some(task) = task {
            task.abort();
            // The task was aborted: its JoinError carries nothing of interest.
            let _ = task.await;
        }
        {
            let mut groups = lock(&self.groups);
            for group in groups.values_mut() {
                let mut fx = Effects::default();
                group.fail_all_waiters(ResponseError::NotCoordinator, &mut fx);
                self.carry_out(group, fx);
            }
        }
        if let Err(error) = self.store.flush().await {
            tracing::error!(%error, "flushing the offsets file on close failed");
        }
        tracing::info!("group coordinator closed");
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub(crate) fn rebalance_settings(&self) -> RebalanceSettings {
        RebalanceSettings {
            initial_rebalance_delay: self.config.initial_rebalance_delay,
        }
    }

    /// Runs `op` on the group under the lock, carries out its effects, and lets the timer task
    /// know that deadlines may have changed.
    pub(crate) fn update_group<T>(
        &self,
        group_id: &str,
        if_missing: IfMissing,
        op: impl FnOnce(&mut Group, Instant, &mut Effects) -> T,
    ) -> Result<T, GroupUnavailable> {
        let now = Instant::now();
        let mut fx = Effects::default();
        let mut groups = lock(&self.groups);
        // Checked under the lock, so nothing slips in after close() failed the waiters.
        if self.is_closed() {
            return Err(GroupUnavailable::Closed);
        }
        let result = match (groups.entry(group_id.to_owned()), if_missing) {
            (Entry::Occupied(entry), _) => {
                let group = entry.into_mut();
                let result = op(group, now, &mut fx);
                self.carry_out(group, fx);
                result
            }
            (Entry::Vacant(_), IfMissing::Fail) => return Err(GroupUnavailable::Missing),
            (Entry::Vacant(entry), IfMissing::Create) => {
                let group = entry.insert(Group::new(group_id));
                let result = op(group, now, &mut fx);
                self.carry_out(group, fx);
                result
            }
            (Entry::Vacant(entry), IfMissing::CreateIfUsed) => {
                let mut group = Group::new(group_id);
                let result = op(&mut group, now, &mut fx);
                self.carry_out(&mut group, fx);
                if !group.is_vacant() {
                    entry.insert(group);
                }
                result
            }
        };
        drop(groups);
        self.timers_changed.notify_one();
        Ok(result)
    }

    /// Persists what the operation changed (a new generation, the members of a group that
    /// became Stable) and then releases the JoinGroup and SyncGroup answers, each carrying the
    /// sequence number its caller must see durable before replying.
    fn carry_out(&self, group: &mut Group, fx: Effects) {
        if fx.new_generation.as_ref().is_some_and(|g| g.has_members) {
            self.rebalances.fetch_add(1, Ordering::Relaxed);
            group.rebalances += 1;
        }
        if fx.consumer_rebalances > 0 {
            self.rebalances
                .fetch_add(fx.consumer_rebalances, Ordering::Relaxed);
            group.rebalances += fx.consumer_rebalances;
        }
        let records = records_to_persist(group, &fx);
        let persisted = records.is_empty() || self.persist(group, records);
        let unavailable = ResponseError::CoordinatorNotAvailable;
        for (waiter, mut outcome) in fx.join_answers {
            if outcome.error.is_none() {
                if persisted {
                    outcome.durable_seq = group.persisted_seq;
                } else {
                    outcome = JoinOutcome::failed(outcome.member_id, unavailable);
                }
            }
            // A closed channel means the client went away; nothing to tell it.
            let _ = waiter.send(outcome);
        }
        for (waiter, mut outcome) in fx.sync_answers {
            if persisted {
                outcome.durable_seq = group.persisted_seq;
            } else {
                outcome = SyncOutcome::failed(unavailable);
            }
            let _ = waiter.send(outcome);
        }
    }

    /// Appends `records`; false (logged) if the store refused them.
    fn persist(&self, group: &mut Group, records: Vec<Record>) -> bool {
        match self.store.append(records) {
            Ok(seq) => {
                group.persisted_seq = seq;
                true
            }
            Err(error) => {
                tracing::error!(%error, group = %group.id, "cannot persist the group's state");
                false
            }
        }
    }

    /// The earliest deadline of any group.
    fn next_deadline(&self) -> Option<Instant> {
        lock(&self.groups)
            .values()
            .filter_map(Group::next_deadline)
            .min()
    }

    /// Runs every group timer that is due.
    fn run_due_timers(&self) {
        let now = Instant::now();
        let settings = self.rebalance_settings();
        let mut groups = lock(&self.groups);
        for group in groups.values_mut() {
            if group.next_deadline().is_some_and(|at| at <= now) {
                let mut fx = Effects::default();
                group.expire(now, &settings, &mut fx);
                self.carry_out(group, fx);
            }
        }
    }
}

impl Drop for GroupCoordinator {
    fn drop(&mut self) {
        // Dropped without close() (e.g. a crash test): stop the timer task. Committed offsets
        // need no flush; they were durable before their commits were answered.
        if let Some(task) = lock(&self.timer_task).take() {
            task.abort();
        }
    }
}

/// The records that make the effects of an operation on `group` durable.
fn records_to_persist(group: &Group, fx: &Effects) -> Vec<Record> {
    let mut records = Vec::new();
    if let Some(change) = &fx.new_generation {
        records.push(Record::Generation {
            group: group.id.clone(),
            generation: change.generation,
            protocol_type: change.protocol_type.clone(),
        });
    }
    if fx.membership_changed && group.state == GroupState::Stable {
        records.push(Record::ClassicGroup(group.membership()));
    }
    if let Some(consumer) = group.consumer.as_ref().filter(|_| fx.consumer_changed) {
        records.push(Record::ConsumerGroup(consumer.record(&group.id)));
    }
    records
}

/// Every group the offsets file knows: Stable with its members if its last generation
/// completed its rebalance, otherwise Empty at its persisted generation; a consumer group with
/// its epochs, members and assignments.
fn restore_groups(store: &OffsetStore, config: &CoordinatorConfig) -> HashMap<String, Group> {
    let mut groups: HashMap<String, Group> = store
        .known_groups()
        .into_iter()
        .map(|(id, generation)| {
            let group = match generation {
                Some(g) => Group::restored(id.clone(), g.generation, g.protocol_type),
                None => Group::new(id.clone()),
            };
            (id, group)
        })
        .collect();
    let now = Instant::now();
    for membership in store.memberships() {
        let group = Group::from_membership(membership, now);
        tracing::info!(group = %group.id, generation = group.generation,
            members = group.members.len(), "restored the group's members");
        groups.insert(group.id.clone(), group);
    }
    for record in store.consumer_groups() {
        let id = record.group.clone();
        let consumer = ConsumerGroup::restored(record, now, config.consumer_session_timeout);
        tracing::info!(group = %id, epoch = consumer.group_epoch,
            members = consumer.members.len(), "restored the consumer group");
        let group = groups.entry(id.clone()).or_insert_with(|| Group::new(id));
        group.consumer = Some(consumer);
    }
    groups
}

/// The timer task: sleeps until the earliest group deadline (or until told that deadlines
/// changed), then runs what is due. Holds only a weak reference so that dropping the
/// coordinator ends it.
async fn run_timers(coordinator: Weak<GroupCoordinator>, changed: Arc<Notify>) {
    loop {
        let next = match coordinator.upgrade() {
            Some(coordinator) => coordinator.next_deadline(),
            None => return,
        };
        match next {
            Some(at) => {
                tokio::select! {
                    () = changed.notified() => {}
                    () = tokio::time::sleep_until(at) => {}
                }
            }
            None => changed.notified().await,
        }
        match coordinator.upgrade() {
            Some(coordinator) => coordinator.run_due_timers(),
            None => return,
        }
    }
}
