//! A node's state: for every input partition, the exact sets of IPs seen and the newest
//! checkpoint, plus the node registry and the global HyperLogLog.
//!
//! All sets only ever grow by union, so applying the same IPs twice (a checkpoint this node
//! wrote itself and reads back, a partition replayed after a crash) never changes a count.
//! Counters (events, rejected) are not idempotent; they come from the newest checkpoint of a
//! partition plus, on its owner, the events processed since.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use freshet_distinct::{DistinctIps, HyperLogLog};

use super::checkpoint::Claim;
use crate::event::{DeviceEvent, MAX_ERROR_CODE};

/// Number of error codes (0..=10).
pub const ERROR_CODES: usize = MAX_ERROR_CODE as usize + 1;
pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;

/// A partition's per-window and per-error-code sets. In a node they sit behind a lock of
/// their own ([`SharedViews`]), so the worker that owns the partition fills them without the
/// node's lock: three of the four inserts of an event.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Views {
    /// Minute window start (Unix ms) → IPs with events in it.
    pub minutes: BTreeMap<i64, DistinctIps>,
    pub hours: BTreeMap<i64, DistinctIps>,
    pub codes: BTreeMap<u8, DistinctIps>,
}

/// A partition's views, shared by the node's threads.
pub type SharedViews = Arc<Mutex<Views>>;

/// All of a partition's sets, or the IPs new to each since a checkpoint: what a checkpoint
/// carries.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sets {
    pub all: DistinctIps,
    pub views: Views,
}

/// Which of the sets a section of a checkpoint belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetKind {
    All,
    Minute(i64),
    Hour(i64),
    Code(u8),
}

impl Views {
    pub fn is_empty(&self) -> bool {
        self.minutes.is_empty() && self.hours.is_empty() && self.codes.is_empty()
    }

    /// Adds the event's IP to its minute, hour and error-code sets and records in `new` where
    /// it was not there before (the delta the next checkpoint carries).
    pub fn insert_event(&mut self, event: &DeviceEvent, new: &mut Views) {
        let ip = event.ip;
        insert_keyed(
            &mut self.minutes,
            &mut new.minutes,
            minute_of(event.time_ms),
            ip,
        );
        insert_keyed(&mut self.hours, &mut new.hours, hour_of(event.time_ms), ip);
        insert_keyed(&mut self.codes, &mut new.codes, event.error_code, ip);
    }

    /// Adds a batch of events (in address order) to their minute, hour and error-code sets,
    /// recording in `new` where each address was not there before. Each set is filled in
    /// one run, in address order: inserting event by event alternated between up to eleven
    /// code sets and missed the cache at each switch. `scratch` is reused between batches.
    ///
    /// An hour that exists gets only the addresses new to its minutes: every minute's set is
    /// a subset of its hour's (each insert into a minute goes into its hour as well, and
    /// [`retain_windows`](Self::retain_windows) drops a minute no later than its hour), so an
    /// address already in its minute is in its hour. Most events repeat an address within
    /// its minute, so this spares most of the hour inserts.
    pub fn insert_events<'a>(
        &mut self,
        events: impl Iterator<Item = &'a DeviceEvent> + Clone,
        new: &mut Views,
        scratch: &mut InsertScratch,
    ) {
        let InsertScratch {
            pairs,
            ips,
            added,
            new_in_minutes,
            by_code,
        } = scratch;
        pairs.clear();
        pairs.extend(events.clone().map(|e| (minute_of(e.time_ms), e.ip)));
        new_in_minutes.clear();
        insert_pairs(
            pairs,
            &mut self.minutes,
            &mut new.minutes,
            (ips, added),
            Some(new_in_minutes),
        );

        pairs.clear();
        let mut known_hour = None;
        for event in events.clone() {
            let hour = hour_of(event.time_ms);
            // Events of a batch mostly share an hour: ask the map once per run of them.
            let exists = match known_hour {
                Some((key, exists)) if key == hour => exists,
                _ => {
                    let exists = self.hours.contains_key(&hour);
                    known_hour = Some((hour, exists));
                    exists
                }
            };
            if !exists {
                pairs.push((hour, event.ip));
            }
        }
        pairs.extend(
            new_in_minutes
                .iter()
                .map(|&(minute, ip)| (hour_of(minute), ip))
                .filter(|(hour, _)| self.hours.contains_key(hour)),
        );
        insert_pairs(pairs, &mut self.hours, &mut new.hours, (ips, added), None);

        // Codes are few and small: a list per code in one pass, addresses staying in order,
        // instead of sorting the pairs.
        for list in by_code.iter_mut() {
            list.clear();
        }
        for event in events {
            let code = usize::from(event.error_code);
            if by_code.len() <= code {
                by_code.resize_with(code + 1, Vec::new);
            }
            by_code[code].push(event.ip);
        }
        for (code, list) in by_code.iter().enumerate() {
            if list.is_empty() {
                continue;
            }
            let code = u8::try_from(code).unwrap_or(u8::MAX);
            insert_into(&mut self.codes, &mut new.codes, code, list, added);
        }
    }

    /// The set of `kind`, created empty if missing; `None` for [`SetKind::All`], which is not
    /// a view.
    pub fn get_mut(&mut self, kind: SetKind) -> Option<&mut DistinctIps> {
        match kind {
            SetKind::All => None,
            SetKind::Minute(start) => Some(self.minutes.entry(start).or_default()),
            SetKind::Hour(start) => Some(self.hours.entry(start).or_default()),
            SetKind::Code(code) => Some(self.codes.entry(code).or_default()),
        }
    }

    pub fn get(&self, kind: SetKind) -> Option<&DistinctIps> {
        match kind {
            SetKind::All => None,
            SetKind::Minute(start) => self.minutes.get(&start),
            SetKind::Hour(start) => self.hours.get(&start),
            SetKind::Code(code) => self.codes.get(&code),
        }
    }

    /// Every set with its kind: minutes, hours, then codes.
    pub fn sections(&self) -> impl Iterator<Item = (SetKind, &DistinctIps)> {
        self.minutes
            .iter()
            .map(|(k, s)| (SetKind::Minute(*k), s))
            .chain(self.hours.iter().map(|(k, s)| (SetKind::Hour(*k), s)))
            .chain(self.codes.iter().map(|(k, s)| (SetKind::Code(*k), s)))
    }

    /// Drops the oldest windows beyond `limits`, so a long-running node's memory follows the
    /// number of devices, not the running time; true if any was dropped.
    ///
    /// A minute goes no later than its hour: [`insert_events`](Self::insert_events) relies
    /// on every minute's set being a subset of its hour's, which a minute outliving its hour
    /// would break once an event recreated the hour.
    pub fn retain_windows(&mut self, limits: WindowLimits) -> bool {
        let mut dropped = trim_oldest(&mut self.minutes, limits.minutes).is_some();
        if let Some(newest_dropped_hour) = trim_oldest(&mut self.hours, limits.hours) {
            dropped = true;
            let kept_from = newest_dropped_hour + HOUR_MS;
            self.minutes.retain(|&start, _| start >= kept_from);
        }
        dropped
    }

    /// Addresses in all the views together (an address in several sets counts in each).
    pub fn total_len(&self) -> u64 {
        self.sections().map(|(_, set)| set.len()).sum()
    }

    /// Bytes the views take serialised.
    pub fn serialized_size(&self) -> u64 {
        self.sections()
            .map(|(_, set)| set.serialized_size() as u64)
            .sum()
    }

    /// Releases the slack that growing sets keep (Roaring arrays double as they grow).
    pub fn shrink_to_fit(&mut self) {
        for set in self
            .minutes
            .values_mut()
            .chain(self.hours.values_mut())
            .chain(self.codes.values_mut())
        {
            set.shrink_to_fit();
        }
    }
}

impl Sets {
    pub fn is_empty(&self) -> bool {
        self.all.is_empty() && self.views.is_empty()
    }

    pub fn get_mut(&mut self, kind: SetKind) -> &mut DistinctIps {
        match self.views.get_mut(kind) {
            Some(set) => set,
            None => &mut self.all,
        }
    }

    /// Every set with its kind, `all` first.
    pub fn sections(&self) -> impl Iterator<Item = (SetKind, &DistinctIps)> {
        std::iter::once((SetKind::All, &self.all)).chain(self.views.sections())
    }

    pub fn retain_windows(&mut self, limits: WindowLimits) {
        self.views.retain_windows(limits);
    }

    /// Adds every set of `other`.
    pub fn union_with(&mut self, other: &Sets) {
        for (kind, set) in other.sections() {
            self.get_mut(kind).union_with(set);
        }
    }
}

/// Inserts each `(window start, address)` of `pairs` into the window's set, one window
/// after the other (ascending), recording in `new` the addresses each set lacked, and in
/// `added_out`, if given, the same as `(window start, address)`.
fn insert_pairs(
    pairs: &mut [(i64, IpAddr)],
    sets: &mut BTreeMap<i64, DistinctIps>,
    new: &mut BTreeMap<i64, DistinctIps>,
    (ips, added): (&mut Vec<IpAddr>, &mut Vec<IpAddr>),
    mut added_out: Option<&mut Vec<(i64, IpAddr)>>,
) {
    // Stable: addresses the caller gave in order stay in order within a window, which the
    // batch insert's own sort then finds sorted.
    pairs.sort_by_key(|(start, _)| *start);
    for group in pairs.chunk_by(|a, b| a.0 == b.0) {
        let start = group[0].0;
        ips.clear();
        ips.extend(group.iter().map(|(_, ip)| *ip));
        insert_into(sets, new, start, ips, added);
        if let Some(out) = added_out.as_deref_mut() {
            out.extend(added.iter().map(|&ip| (start, ip)));
        }
    }
}

/// Inserts `ips` into the set of `key`, leaving in `added` those it lacked; they go to the
/// delta's set of `key` too, created only then (a delta carries only sets with something
/// new).
fn insert_into<K: Ord + Copy>(
    sets: &mut BTreeMap<K, DistinctIps>,
    new: &mut BTreeMap<K, DistinctIps>,
    key: K,
    ips: &[IpAddr],
    added: &mut Vec<IpAddr>,
) {
    added.clear();
    sets.entry(key).or_default().insert_all(ips, added);
    if !added.is_empty() {
        new.entry(key)
            .or_default()
            .insert_all(added, &mut Vec::new());
    }
}

/// Buffers [`Views::insert_events`] reuses from one batch to the next.
#[derive(Debug, Default)]
pub struct InsertScratch {
    pairs: Vec<(i64, IpAddr)>,
    ips: Vec<IpAddr>,
    added: Vec<IpAddr>,
    new_in_minutes: Vec<(i64, IpAddr)>,
    by_code: Vec<Vec<IpAddr>>,
}

fn insert_keyed<K: Ord + Copy>(
    sets: &mut BTreeMap<K, DistinctIps>,
    new: &mut BTreeMap<K, DistinctIps>,
    key: K,
    ip: IpAddr,
) {
    if sets.entry(key).or_default().insert(ip) {
        new.entry(key).or_default().insert(ip);
    }
}

/// Start of the minute window `time_ms` falls in.
fn minute_of(time_ms: i64) -> i64 {
    time_ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

/// Start of the hour window `time_ms` falls in.
fn hour_of(time_ms: i64) -> i64 {
    time_ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// Drops the oldest windows until `keep` are left; the start of the newest it dropped.
fn trim_oldest(windows: &mut BTreeMap<i64, DistinctIps>, keep: usize) -> Option<i64> {
    let mut newest_dropped = None;
    while windows.len() > keep {
        newest_dropped = windows.pop_first().map(|(start, _)| start);
    }
    newest_dropped
}

/// How many event-time windows each partition keeps; at least one of each (the CLI
/// refuses 0), since a minute is dropped with its hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimits {
    pub minutes: usize,
    pub hours: usize,
}

impl Default for WindowLimits {
    fn default() -> Self {
        WindowLimits {
            minutes: 120,
            hours: 48,
        }
    }
}

/// What a complete checkpoint says about a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointMeta {
    /// Input offset the checkpoint covers: events below it are in it.
    pub offset: i64,
    pub events: u64,
    pub rejected: u64,
    /// The writer's claim: a checkpoint under a higher claim replaces this one whatever its
    /// offset (the new owner counts again from where it resumed).
    pub epoch: u64,
    pub node: String,
    pub written_at_ms: i64,
}

/// Counters of a partition this node consumes, live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LiveCounters {
    /// Next input offset to process.
    pub next_offset: i64,
    pub events: u64,
    pub rejected: u64,
}

/// One input partition as this node knows it.
#[derive(Debug, Default)]
pub struct PartitionState {
    /// Every IP seen in the partition: guarded by the node's lock with every other
    /// partition's, since the exact global count needs them all at each new IP.
    pub all: DistinctIps,
    /// The per-window and per-code sets, under their own lock (taken after the node's).
    pub views: SharedViews,
    pub checkpoint: Option<CheckpointMeta>,
    /// Present while this node owns the partition.
    pub live: Option<LiveCounters>,
    /// Offset this node started consuming the partition at, the last time it gained it.
    pub resumed_from: Option<i64>,
    /// The highest claim on the partition read (or made by this node): records of lower
    /// claims are ignored.
    pub claim: Option<Claim>,
    /// Keys of this partition's records in the state topic that no tombstone has removed
    /// yet, with their sizes: what a snapshot makes obsolete.
    pub stored: BTreeMap<String, u64>,
    /// Total size of the sets when they were last shrunk.
    shrunk_len: u64,
    /// Total size of the sets at the previous [`maybe_shrink`](Self::maybe_shrink).
    checked_len: u64,
    /// How many times [`retain_windows`](Self::retain_windows) dropped windows. Otherwise the
    /// sets only grow, so a size measured since the last drop is a floor of their size now.
    window_drops: u64,
}

impl PartitionState {
    /// Drops the oldest windows beyond `limits`, counting the times it dropped any.
    pub fn retain_windows(&mut self, limits: WindowLimits) {
        let dropped = self.views().retain_windows(limits);
        if dropped {
            self.window_drops += 1;
        }
    }

    /// How many times windows were dropped: see [`retain_windows`](Self::retain_windows).
    pub fn window_drops(&self) -> u64 {
        self.window_drops
    }

    pub fn events(&self) -> u64 {
        match (&self.live, &self.checkpoint) {
            (Some(live), _) => live.events,
            (None, Some(meta)) => meta.events,
            (None, None) => 0,
        }
    }

    pub fn rejected(&self) -> u64 {
        match (&self.live, &self.checkpoint) {
            (Some(live), _) => live.rejected,
            (None, Some(meta)) => meta.rejected,
            (None, None) => 0,
        }
    }

    /// Shrinks the sets once they have grown by a quarter since the last time, or once they
    /// stop growing: growing Roaring arrays keep up to twice the memory they need, shrinking
    /// at every change would rebuild millions of entries per checkpoint, and sets that
    /// settled with their slack would keep it for good (a quarter of the settled memory at
    /// 10 M addresses).
    pub fn maybe_shrink(&mut self) {
        let mut views = lock_views(&self.views);
        let len = self.all.len() + views.total_len();
        let grew_a_quarter = len >= 4096 && len >= self.shrunk_len + self.shrunk_len / 4;
        let settled = len != self.shrunk_len && len == self.checked_len;
        if grew_a_quarter || settled {
            self.all.shrink_to_fit();
            views.shrink_to_fit();
            self.shrunk_len = len;
        }
        self.checked_len = len;
    }

    /// The partition's views, locked. Callers holding the node's lock may take it; nobody
    /// holding it takes the node's lock.
    pub fn views(&self) -> MutexGuard<'_, Views> {
        lock_views(&self.views)
    }

    /// Bytes a snapshot of the partition's sets takes (before chunk headers).
    pub fn serialized_size(&self) -> u64 {
        self.all.serialized_size() as u64 + self.views().serialized_size()
    }

    /// Bytes of this partition's records in the state topic, as far as this node has read.
    pub fn stored_bytes(&self) -> u64 {
        self.stored.values().sum()
    }

    /// Where an owner starts and the counters it starts from: the newest checkpoint, or the
    /// beginning of the partition.
    pub fn resume_point(&self) -> LiveCounters {
        match &self.checkpoint {
            Some(meta) => LiveCounters {
                next_offset: meta.offset,
                events: meta.events,
                rejected: meta.rejected,
            },
            None => LiveCounters::default(),
        }
    }
}

/// The last heartbeat of a tracker node.
#[derive(Debug, Clone)]
pub struct NodeHeartbeat {
    pub partitions: Vec<i32>,
    /// When the node wrote it, Unix ms (its clock).
    pub written_at_ms: i64,
}

/// Everything a node knows. Guarded by one mutex: the consumer thread takes it once per batch
/// of events, the checkpoint follower once per record.
#[derive(Debug, Default)]
pub struct NodeState {
    pub partitions: BTreeMap<i32, PartitionState>,
    /// Estimate of the global count, fed with every new IP seen live or in a checkpoint.
    pub hll: HyperLogLog,
    pub nodes: HashMap<String, NodeHeartbeat>,
    /// Write time of the newest checkpoint applied, Unix ms.
    pub newest_checkpoint_ms: Option<i64>,
    /// Partitions of the input topic, from metadata.
    pub partitions_total: u32,
    /// Exact distinct IPs in the union of all partitions' `all` sets, kept up to date by
    /// every insert (see [`NodeState::insert_ips`]).
    pub global: u64,
    /// The same over the partitions this node owns; recomputed when ownership changes.
    pub node: u64,
}

impl NodeState {
    pub fn partition(&mut self, partition: i32) -> &mut PartitionState {
        self.partitions.entry(partition).or_default()
    }

    /// Adds `ips` to partition `id`'s overall set (recording the new ones in `pending`) and
    /// keeps the global and node counts exact: an IP new to its partition counts globally
    /// only if no other partition has it. Sets never shrink, so the counts never go wrong.
    /// Fastest with the addresses in increasing order (see [`DistinctIps::insert_all`]).
    pub fn insert_ips(&mut self, id: i32, ips: &[IpAddr], pending: &mut DistinctIps) {
        let partition = self.partitions.entry(id).or_default();
        let owned = partition.live.is_some();
        let mut added = Vec::new();
        partition.all.insert_all(ips, &mut added);
        pending.insert_all(&added, &mut Vec::new());
        for ip in added {
            self.count_new_ip(id, ip, owned);
        }
    }

    /// Adds a checkpoint section to partition `id`. The overall set goes address by address
    /// so the counts stay exact; the views are plain unions.
    pub fn apply_section(&mut self, id: i32, kind: SetKind, set: &DistinctIps) {
        if let Some(view) = self.partition(id).views().get_mut(kind) {
            view.union_with(set);
            return;
        }
        let owned = self.partition(id).live.is_some();
        for ip in set.iter() {
            if self.partition(id).all.insert(ip) {
                self.count_new_ip(id, ip, owned);
            }
        }
    }

    fn count_new_ip(&mut self, id: i32, ip: IpAddr, owned: bool) {
        self.hll.insert(ip);
        let elsewhere = |owned_only: bool| {
            self.partitions.iter().any(|(other, p)| {
                *other != id && (!owned_only || p.live.is_some()) && p.all.contains(ip)
            })
        };
        if !elsewhere(false) {
            self.global += 1;
        }
        if owned && !elsewhere(true) {
            self.node += 1;
        }
    }

    /// After a rebalance: the node count over the partitions owned now.
    pub fn recount_node(&mut self) {
        self.node = self.union_len(|_, p| p.live.is_some(), SetKind::All);
    }

    pub fn owned(&self) -> Vec<i32> {
        self.partitions
            .iter()
            .filter(|(_, p)| p.live.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// The owned partitions with the next offset each will count.
    pub fn live_positions(&self) -> Vec<(i32, i64)> {
        self.partitions
            .iter()
            .filter_map(|(id, p)| p.live.map(|live| (*id, live.next_offset)))
            .collect()
    }

    /// Nodes whose last heartbeat was written less than `within` before `now_ms`.
    pub fn live_nodes(&self, now_ms: i64, within: Duration) -> Vec<String> {
        let within_ms = within.as_millis() as i64;
        let mut nodes: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, hb)| now_ms - hb.written_at_ms <= within_ms)
            .map(|(id, _)| id.clone())
            .collect();
        nodes.sort();
        nodes
    }

    /// Exact distinct IPs in the union of the selected partitions' sets of one kind.
    pub fn union_len(&self, select: impl Fn(&i32, &PartitionState) -> bool, kind: SetKind) -> u64 {
        let selected: Vec<&PartitionState> = self
            .partitions
            .iter()
            .filter(|(id, p)| select(id, p))
            .map(|(_, p)| p)
            .collect();
        if kind == SetKind::All {
            let sets: Vec<&DistinctIps> = selected.iter().map(|p| &p.all).collect();
            return DistinctIps::union_len(&sets);
        }
        let views: Vec<MutexGuard<'_, Views>> = selected.iter().map(|p| p.views()).collect();
        let sets: Vec<&DistinctIps> = views.iter().filter_map(|v| v.get(kind)).collect();
        DistinctIps::union_len(&sets)
    }

    /// Every window start (or error code) present in any partition's views.
    pub fn keys(&self, pick: impl Fn(&Views) -> Vec<SetKind>) -> Vec<SetKind> {
        let mut keys: Vec<SetKind> = self
            .partitions
            .values()
            .flat_map(|p| pick(&p.views()))
            .collect();
        keys.sort_by_key(set_kind_order);
        keys.dedup();
        keys
    }
}

/// A poisoned lock still holds sets that only ever grew: still valid.
fn lock_views(views: &SharedViews) -> MutexGuard<'_, Views> {
    views.lock().unwrap_or_else(|e| e.into_inner())
}

fn set_kind_order(kind: &SetKind) -> (u8, i64) {
    match *kind {
        SetKind::All => (0, 0),
        SetKind::Minute(start) => (1, start),
        SetKind::Hour(start) => (2, start),
        SetKind::Code(code) => (3, i64::from(code)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ip: &str, time_ms: i64, error_code: u8) -> DeviceEvent {
        DeviceEvent {
            ip: ip.parse().expect("test ip"),
            time_ms,
            error_code,
        }
    }

    fn starts(windows: &BTreeMap<i64, DistinctIps>) -> Vec<i64> {
        windows.keys().copied().collect()
    }

    #[test]
    fn views_record_only_what_is_new_in_each_set() {
        let mut views = Views::default();
        let mut new = Views::default();
        views.insert_event(&event("10.0.0.1", 0, 1), &mut new);
        views.insert_event(&event("10.0.0.1", 61_000, 1), &mut new);
        // Same IP in a second minute window is new there, not in the hour or code sets.
        assert_eq!(new.minutes.len(), 2);
        assert_eq!(new.hours.len(), 1);
        assert_eq!(new.codes.get(&1).map(DistinctIps::len), Some(1));
    }

    #[test]
    fn a_batch_fills_the_views_as_its_events_one_by_one_would() {
        let events: Vec<DeviceEvent> = (0..500u32)
            .map(|i| {
                let ip = format!("10.0.{}.{}", i % 7, i % 250);
                event(&ip, i64::from(i % 5) * 50_000_000, (i % 11) as u8)
            })
            .collect();
        let mut sorted: Vec<&DeviceEvent> = events.iter().collect();
        sorted.sort_by_key(|e| e.ip);
        let (mut one_by_one, mut new_one) = (Views::default(), Views::default());
        for event in &sorted {
            one_by_one.insert_event(event, &mut new_one);
        }
        let (mut batched, mut new_batched) = (Views::default(), Views::default());
        let mut scratch = InsertScratch::default();
        batched.insert_events(
            sorted[..250].iter().copied(),
            &mut new_batched,
            &mut scratch,
        );
        batched.insert_events(
            sorted[250..].iter().copied(),
            &mut new_batched,
            &mut scratch,
        );
        assert_eq!(batched, one_by_one);
        assert_eq!(new_batched, new_one);
        // A second pass adds nothing, and leaves no empty set in the delta.
        let mut nothing = Views::default();
        batched.insert_events(sorted.iter().copied(), &mut nothing, &mut scratch);
        assert!(nothing.is_empty());
    }

    #[test]
    fn union_len_across_partitions_counts_shared_ips_once() {
        let mut state = NodeState::default();
        let mut scratch = Sets::default();
        for (p, ip) in [(0, "1.1.1.1"), (0, "2.2.2.2"), (1, "2.2.2.2"), (1, "::1")] {
            let event = event(ip, 0, 0);
            state.insert_ips(p, &[event.ip], &mut scratch.all);
            state
                .partition(p)
                .views()
                .insert_event(&event, &mut scratch.views);
        }
        assert_eq!(state.union_len(|_, _| true, SetKind::All), 3);
        assert_eq!(state.union_len(|id, _| *id == 1, SetKind::All), 2);
        assert_eq!(state.union_len(|_, _| true, SetKind::Minute(0)), 3);
        assert_eq!(state.union_len(|_, _| true, SetKind::Minute(60_000)), 0);
    }

    #[test]
    fn global_and_node_counts_follow_every_insert() {
        let mut state = NodeState::default();
        state.partition(0).live = Some(LiveCounters::default());
        let mut pending = DistinctIps::new();
        for (p, ip) in [
            (0, "1.1.1.1"),
            (0, "1.1.1.1"),
            (1, "1.1.1.1"),
            (1, "2.2.2.2"),
        ] {
            state.insert_ips(p, &[ip.parse().expect("ip")], &mut pending);
        }
        assert_eq!((state.global, state.node), (2, 1));
        let mut section = DistinctIps::new();
        section.insert("3.3.3.3".parse().expect("ip"));
        section.insert("2.2.2.2".parse().expect("ip"));
        state.apply_section(0, SetKind::All, &section);
        assert_eq!((state.global, state.node), (3, 3));
        assert_eq!(state.global, state.union_len(|_, _| true, SetKind::All));
        state.partition(0).live = None;
        state.recount_node();
        assert_eq!(state.node, 0);
    }

    #[test]
    fn a_partition_counts_the_times_it_dropped_windows() {
        let mut partition = PartitionState::default();
        let limits = WindowLimits {
            minutes: 2,
            hours: 1,
        };
        let mut new = Views::default();
        for minute in 0..2 {
            let event = event("1.2.3.4", minute * MINUTE_MS, 0);
            partition.views().insert_event(&event, &mut new);
        }
        partition.retain_windows(limits);
        assert_eq!(partition.window_drops(), 0, "nothing beyond the limits");
        let event = event("1.2.3.4", 2 * MINUTE_MS, 0);
        partition.views().insert_event(&event, &mut new);
        partition.retain_windows(limits);
        assert_eq!(partition.window_drops(), 1);
    }

    #[test]
    fn a_minute_goes_with_its_hour_whatever_the_minute_limit() {
        let mut views = Views::default();
        let mut new = Views::default();
        // One minute in each of three hours: three minutes span them.
        for hour in 0..3 {
            views.insert_event(&event("1.2.3.4", hour * HOUR_MS, 0), &mut new);
        }
        views.retain_windows(WindowLimits {
            minutes: 120,
            hours: 2,
        });
        assert_eq!(starts(&views.hours), vec![HOUR_MS, 2 * HOUR_MS]);
        assert_eq!(starts(&views.minutes), vec![HOUR_MS, 2 * HOUR_MS]);
    }

    #[test]
    fn an_hour_recreated_after_its_drop_gets_every_address_of_the_batch() {
        let limits = WindowLimits {
            minutes: 120,
            hours: 1,
        };
        let (mut batched, mut one_by_one) = (Views::default(), Views::default());
        let mut new = Views::default();
        let mut scratch = InsertScratch::default();
        let early = [event("1.1.1.1", 0, 0), event("2.2.2.2", 0, 0)];
        let later = event("3.3.3.3", HOUR_MS, 0);
        for views in [&mut batched, &mut one_by_one] {
            views.insert_events(early.iter().chain([&later]), &mut new, &mut scratch);
            views.retain_windows(limits);
        }
        // Late events for the dropped hour: it comes back holding exactly what they bring.
        let late = [event("1.1.1.1", 1_000, 0), event("2.2.2.2", 2_000, 0)];
        batched.insert_events(late[..1].iter(), &mut new, &mut scratch);
        batched.insert_events(late[1..].iter(), &mut new, &mut scratch);
        for event in &late {
            one_by_one.insert_event(event, &mut new);
        }
        assert_eq!(batched, one_by_one);
        assert_eq!(batched.hours.get(&0).map(DistinctIps::len), Some(2));
    }

    #[test]
    fn windows_beyond_the_limit_are_dropped_oldest_first() {
        let mut views = Views::default();
        let mut new = Views::default();
        for minute in 0..5 {
            views.insert_event(&event("1.2.3.4", minute * MINUTE_MS, 0), &mut new);
        }
        views.retain_windows(WindowLimits {
            minutes: 2,
            hours: 1,
        });
        assert_eq!(starts(&views.minutes), vec![3 * MINUTE_MS, 4 * MINUTE_MS]);
    }
}
