//! A node's state: for every input partition, the exact set of IPs seen with the views each
//! is in, and the newest checkpoint, plus the node registry and the global HyperLogLog.
//!
//! With views on, a partition keeps each address once ([`TaggedIps`]) with a tag naming the
//! minute, hour and error-code views it is in ([`Memberships`], shared by the node's
//! partitions). Without views, a plain [`DistinctIps`].
//!
//! Memberships only ever grow, except when a window is dropped for good, so applying the same
//! IPs twice (a checkpoint this node wrote itself and reads back, a partition replayed after a
//! crash) never changes a count. Counters (events, rejected) are not idempotent; they come
//! from the newest checkpoint of a partition plus, on its owner, the events processed since.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use freshet_distinct::{DistinctIps, EncodedSize, HyperLogLog, TaggedIps};

use super::checkpoint::Claim;
use super::membership::{EventSlots, Memberships};
use crate::event::{DeviceEvent, MAX_ERROR_CODE};

/// Number of error codes (0..=10).
pub const ERROR_CODES: usize = MAX_ERROR_CODE as usize + 1;
pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;

/// Per-window and per-error-code sets, as a checkpoint carries them: the IPs new to each view
/// since the last checkpoint (a delta), or all of them (a snapshot).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Views {
    /// Minute window start (Unix ms) → IPs with events in it.
    pub minutes: BTreeMap<i64, DistinctIps>,
    pub hours: BTreeMap<i64, DistinctIps>,
    pub codes: BTreeMap<u8, DistinctIps>,
}

/// All of a partition's sets, or the IPs new to each since a checkpoint: what a checkpoint
/// carries.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sets {
    pub all: DistinctIps,
    pub views: Views,
}

/// Which of the sets a section of a checkpoint belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// it was not there before.
    pub fn insert_event(&mut self, event: &DeviceEvent, new: &mut Views) {
        for kind in event_views(event) {
            if self.get_mut(kind).is_some_and(|set| set.insert(event.ip)) {
                if let Some(set) = new.get_mut(kind) {
                    set.insert(event.ip);
                }
            }
        }
    }

    /// Adds `ips` to the set of `kind` (nothing for [`SetKind::All`], which is not a view).
    pub fn add_all(&mut self, kind: SetKind, ips: &[IpAddr]) {
        if let Some(set) = self.get_mut(kind) {
            set.insert_all(ips, &mut Vec::new());
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

    /// Drops the oldest windows beyond `limits`, as [`ViewKeys::trim`] does for a partition.
    pub fn retain_windows(&mut self, limits: WindowLimits) {
        let mut keys = ViewKeys::default();
        keys.minutes.extend(self.minutes.keys());
        keys.hours.extend(self.hours.keys());
        for kind in keys.trim(limits) {
            match kind {
                SetKind::Minute(start) => self.minutes.remove(&start),
                SetKind::Hour(start) => self.hours.remove(&start),
                SetKind::All | SetKind::Code(_) => None,
            };
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

/// The views an event puts its address in.
fn event_views(event: &DeviceEvent) -> [SetKind; 3] {
    [
        SetKind::Minute(minute_of(event.time_ms)),
        SetKind::Hour(hour_of(event.time_ms)),
        SetKind::Code(event.error_code),
    ]
}

/// The views a partition has addresses in: what window limits trim, and what the window and
/// code counts list.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ViewKeys {
    pub minutes: BTreeSet<i64>,
    pub hours: BTreeSet<i64>,
    pub codes: BTreeSet<u8>,
}

impl ViewKeys {
    pub fn insert(&mut self, kind: SetKind) {
        match kind {
            SetKind::All => {}
            SetKind::Minute(start) => {
                self.minutes.insert(start);
            }
            SetKind::Hour(start) => {
                self.hours.insert(start);
            }
            SetKind::Code(code) => {
                self.codes.insert(code);
            }
        }
    }

    pub fn contains(&self, kind: SetKind) -> bool {
        match kind {
            SetKind::All => false,
            SetKind::Minute(start) => self.minutes.contains(&start),
            SetKind::Hour(start) => self.hours.contains(&start),
            SetKind::Code(code) => self.codes.contains(&code),
        }
    }

    /// Every view: minutes, hours, then codes, each in order.
    pub fn iter(&self) -> impl Iterator<Item = SetKind> + '_ {
        let minutes = self.minutes.iter().map(|&s| SetKind::Minute(s));
        let hours = self.hours.iter().map(|&s| SetKind::Hour(s));
        minutes
            .chain(hours)
            .chain(self.codes.iter().map(|&c| SetKind::Code(c)))
    }

    /// Adds every view of `other`.
    pub fn extend(&mut self, other: &ViewKeys) {
        self.minutes.extend(&other.minutes);
        self.hours.extend(&other.hours);
        self.codes.extend(&other.codes);
    }

    /// Removes the oldest windows beyond `limits` and returns them, so a long-running node's
    /// memory follows the number of devices, not the running time. A minute goes no later
    /// than its hour: a minute outliving its hour would be a view the hour's counts do not
    /// cover.
    pub fn trim(&mut self, limits: WindowLimits) -> Vec<SetKind> {
        let mut dropped = Vec::new();
        while self.minutes.len() > limits.minutes {
            dropped.extend(self.minutes.pop_first().map(SetKind::Minute));
        }
        let mut newest_dropped_hour = None;
        while self.hours.len() > limits.hours {
            newest_dropped_hour = self.hours.pop_first();
            dropped.extend(newest_dropped_hour.map(SetKind::Hour));
        }
        if let Some(hour) = newest_dropped_hour {
            let kept_from = hour + HOUR_MS;
            while self.minutes.first().is_some_and(|&start| start < kept_from) {
                dropped.extend(self.minutes.pop_first().map(SetKind::Minute));
            }
        }
        dropped
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

/// Every address a partition has seen.
#[derive(Debug, Clone, PartialEq)]
pub enum Addresses {
    /// Without views: the plain set, the smallest form.
    Plain(DistinctIps),
    /// With views: each address once, tagged with the id of its [`Memberships`].
    Tagged(TaggedIps),
}

impl Default for Addresses {
    fn default() -> Self {
        Addresses::Plain(DistinctIps::new())
    }
}

impl Addresses {
    pub fn new(views: bool) -> Self {
        if views {
            Addresses::Tagged(TaggedIps::new())
        } else {
            Addresses::Plain(DistinctIps::new())
        }
    }

    pub fn len(&self) -> u64 {
        match self {
            Addresses::Plain(set) => set.len(),
            Addresses::Tagged(set) => set.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.tag(ip).is_some()
    }

    /// The membership id of `ip` (0, no views, in a plain set), if the partition has it.
    fn tag(&self, ip: IpAddr) -> Option<u32> {
        match self {
            Addresses::Plain(set) => set.contains(ip).then_some(0),
            Addresses::Tagged(set) => set.get(ip),
        }
    }

    /// The addresses as a plain set: borrowed, or built from the tagged one.
    pub fn to_plain(&self) -> Cow<'_, DistinctIps> {
        match self {
            Addresses::Plain(set) => Cow::Borrowed(set),
            Addresses::Tagged(set) => Cow::Owned(set.to_distinct()),
        }
    }

    fn shrink_to_fit(&mut self) {
        match self {
            Addresses::Plain(set) => set.shrink_to_fit(),
            Addresses::Tagged(set) => set.shrink_to_fit(),
        }
    }
}

/// One input partition as this node knows it.
#[derive(Debug, Default)]
pub struct PartitionState {
    /// Every IP seen in the partition, with the views each is in.
    pub addresses: Addresses,
    /// The views the partition has addresses in.
    pub present: ViewKeys,
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
    /// Number of addresses when the set was last shrunk.
    shrunk_len: u64,
    /// Number of addresses at the previous [`maybe_shrink`](Self::maybe_shrink).
    checked_len: u64,
    /// How many times windows were dropped ([`NodeState::retain_windows`]). Otherwise the
    /// sets only grow, so a size measured since the last drop is a floor of their size now.
    window_drops: u64,
}

impl PartitionState {
    pub fn new(views: bool) -> Self {
        PartitionState {
            addresses: Addresses::new(views),
            ..PartitionState::default()
        }
    }

    /// How many times windows were dropped: see [`NodeState::retain_windows`].
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

    /// Shrinks the set once it has grown by a quarter since the last time, or once it stops
    /// growing: growing sets keep spare room (Roaring arrays up to twice what they need, a
    /// tagged set's blocks a quarter), shrinking at every change would rebuild millions of
    /// entries per checkpoint, and a set that settled with its slack would keep it for good.
    pub fn maybe_shrink(&mut self) {
        let len = self.addresses.len();
        let grew_a_quarter = len >= 4096 && len >= self.shrunk_len + self.shrunk_len / 4;
        let settled = len != self.shrunk_len && len == self.checked_len;
        if grew_a_quarter || settled {
            self.addresses.shrink_to_fit();
            self.shrunk_len = len;
        }
        self.checked_len = len;
    }

    /// Bytes a snapshot of the partition's sets takes (before chunk headers): its sections'
    /// encodings, counted in one pass over the addresses without building them.
    pub fn serialized_size(&self, memberships: &Memberships) -> u64 {
        let set = match &self.addresses {
            Addresses::Plain(set) => return set.serialized_size() as u64,
            Addresses::Tagged(set) => set,
        };
        let mut all = EncodedSize::default();
        let mut views = vec![EncodedSize::default(); memberships.slots()];
        let mut slots_of: Vec<Option<Vec<u32>>> = vec![None; memberships.len()];
        for (ip, id) in set.iter() {
            all.add(ip);
            let slots =
                slots_of[id as usize].get_or_insert_with(|| memberships.slots_in(id).collect());
            for &slot in slots.iter() {
                views[slot as usize].add(ip);
            }
        }
        let sections = std::iter::once(&all).chain(views.iter().filter(|v| !v.is_empty()));
        sections.map(|size| size.bytes() as u64).sum()
    }

    /// The partition's sets as a snapshot carries them: every address, then each view's, each
    /// built when the caller gets to it.
    pub fn sections<'a>(
        &'a self,
        memberships: &'a Memberships,
    ) -> impl Iterator<Item = (SetKind, Cow<'a, DistinctIps>)> + 'a {
        let views = match &self.addresses {
            Addresses::Tagged(set) => Some(set),
            Addresses::Plain(_) => None,
        };
        let view_sections = views.into_iter().flat_map(move |set| {
            self.present.iter().map(move |kind| {
                let slot = memberships.slot_of(kind);
                let members = set.select(|id| slot.is_some_and(|s| memberships.has(id, s)));
                (kind, Cow::Owned(members))
            })
        });
        std::iter::once((SetKind::All, self.addresses.to_plain())).chain(view_sections)
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

/// Everything a node knows. Guarded by one mutex: each worker takes it once per batch of
/// events, the checkpoint follower once per record.
#[derive(Debug, Default)]
pub struct NodeState {
    /// Whether partitions keep views (the tracker's `--tracker-views`).
    pub views: bool,
    pub partitions: BTreeMap<i32, PartitionState>,
    /// The views every partition's addresses are tagged with.
    pub memberships: Memberships,
    /// Exact distinct IPs per view (by slot) across all partitions, kept up to date by every
    /// insert like [`global`](Self::global).
    view_counts: Vec<u64>,
    /// Addresses seen in more than one partition. Only their view gains need a look at the
    /// other partitions: an address one partition alone has is new to a view's union exactly
    /// when it is new to that partition's view. Empty for an input topic keyed by device.
    shared: DistinctIps,
    /// Estimate of the global count, fed with every new IP seen live or in a checkpoint.
    pub hll: HyperLogLog,
    pub nodes: HashMap<String, NodeHeartbeat>,
    /// Write time of the newest checkpoint applied, Unix ms.
    pub newest_checkpoint_ms: Option<i64>,
    /// Partitions of the input topic, from metadata.
    pub partitions_total: u32,
    /// Exact distinct IPs in the union of all partitions' addresses, kept up to date by every
    /// insert (see [`NodeState::insert_ips`]).
    pub global: u64,
    /// The same over the partitions this node owns; recomputed when ownership changes.
    pub node: u64,
}

/// What an insert changed for one address in its partition.
struct Gain {
    ip: IpAddr,
    /// Its membership before, `None` if the address is new to the partition.
    before: Option<u32>,
    after: u32,
}

impl NodeState {
    pub fn new(views: bool) -> Self {
        NodeState {
            views,
            ..NodeState::default()
        }
    }

    pub fn partition(&mut self, partition: i32) -> &mut PartitionState {
        let views = self.views;
        self.partitions
            .entry(partition)
            .or_insert_with(|| PartitionState::new(views))
    }

    /// Counts a batch of partition `id`'s valid events into its sets, recording in `pending`
    /// what was new to each (the delta the next checkpoint carries). Fastest with the events in
    /// address order.
    pub fn insert_events<'a>(
        &mut self,
        id: i32,
        events: impl Iterator<Item = &'a DeviceEvent>,
        pending: &mut Sets,
    ) {
        if !self.views {
            let ips: Vec<IpAddr> = events.map(|event| event.ip).collect();
            return self.insert_ips(id, &ips, &mut pending.all);
        }
        let mut gains = Vec::new();
        let mut slots = SlotCache::default();
        self.partition(id);
        let Some(partition) = self.partitions.get_mut(&id) else {
            return;
        };
        let Addresses::Tagged(set) = &mut partition.addresses else {
            return;
        };
        let memberships = &mut self.memberships;
        for event in events {
            let event_slots = slots.of(event, memberships, &mut partition.present);
            let mut change = None;
            let before = set.upsert(event.ip, |before| {
                let (after, added) = memberships.with_event(before.unwrap_or(0), event_slots);
                change = Some((after, added));
                after
            });
            if let Some((after, added)) = change {
                if before.is_none() || added != 0 {
                    gains.push(Gain {
                        ip: event.ip,
                        before,
                        after,
                    });
                }
            }
        }
        self.count_gains(id, &gains, pending);
    }

    /// Adds `ips` to partition `id`'s addresses (recording the new ones in `pending`) and
    /// keeps the global and node counts exact: an IP new to its partition counts globally
    /// only if no other partition has it. Sets never shrink, so the counts never go wrong.
    /// Fastest with the addresses in increasing order (see [`DistinctIps::insert_all`]).
    pub fn insert_ips(&mut self, id: i32, ips: &[IpAddr], pending: &mut DistinctIps) {
        let partition = self.partition(id);
        let owned = partition.live.is_some();
        let added = match &mut partition.addresses {
            Addresses::Plain(set) => {
                let mut added = Vec::new();
                set.insert_all(ips, &mut added);
                added
            }
            Addresses::Tagged(set) => {
                let gains: Vec<Gain> = ips
                    .iter()
                    .filter(|&&ip| set.insert(ip))
                    .map(|&ip| Gain {
                        ip,
                        before: None,
                        after: 0,
                    })
                    .collect();
                let mut delta = Sets::default();
                self.count_gains(id, &gains, &mut delta);
                return pending.union_with(&delta.all);
            }
        };
        pending.insert_all(&added, &mut Vec::new());
        for ip in added {
            self.count_new_ip(id, ip, owned);
        }
    }

    /// Adds a checkpoint section to partition `id`: its addresses, and with views the
    /// memberships of a view's section, counting what is new as a live insert would.
    pub fn apply_section(&mut self, id: i32, kind: SetKind, set: &DistinctIps) {
        if kind == SetKind::All {
            let ips: Vec<IpAddr> = set.iter().collect();
            return self.insert_ips(id, &ips, &mut DistinctIps::new());
        }
        if !self.views {
            return;
        }
        let slot = self.memberships.slot(kind);
        self.partition(id).present.insert(kind);
        let Some(PartitionState {
            addresses: Addresses::Tagged(tagged),
            ..
        }) = self.partitions.get_mut(&id)
        else {
            return;
        };
        let memberships = &mut self.memberships;
        let mut gains = Vec::new();
        for ip in set.iter() {
            let mut after = 0;
            let before = tagged.upsert(ip, |before| {
                after = memberships.with_slot(before.unwrap_or(0), slot);
                after
            });
            if before != Some(after) {
                gains.push(Gain { ip, before, after });
            }
        }
        self.count_gains(id, &gains, &mut Sets::default());
    }

    /// Drops partition `id`'s oldest windows beyond `limits`: their views leave its addresses'
    /// memberships, and their counts are recounted over the partitions that still have them.
    pub fn retain_windows(&mut self, id: i32, limits: WindowLimits) {
        let Some(partition) = self.partitions.get_mut(&id) else {
            return;
        };
        let dropped = partition.present.trim(limits);
        if dropped.is_empty() {
            return;
        }
        partition.window_drops += 1;
        let slots: Vec<u32> = dropped
            .iter()
            .filter_map(|&kind| self.memberships.slot_of(kind))
            .collect();
        if let Addresses::Tagged(set) = &mut partition.addresses {
            let memberships = &mut self.memberships;
            let mut without: HashMap<u32, u32> = HashMap::new();
            set.retag(|id| {
                *without
                    .entry(id)
                    .or_insert_with(|| memberships.without(id, &slots))
            });
        }
        for kind in dropped {
            self.recount_view(kind);
        }
        if self.memberships.compaction_due() {
            self.compact_memberships();
        }
    }

    /// The count of `kind` after a partition dropped it: over those that still have it, or
    /// gone with its slot when none does.
    fn recount_view(&mut self, kind: SetKind) {
        let holders: Vec<&TaggedIps> = self
            .partitions
            .values()
            .filter(|p| p.present.contains(kind))
            .filter_map(|p| match &p.addresses {
                Addresses::Tagged(set) => Some(set),
                Addresses::Plain(_) => None,
            })
            .collect();
        let slot = self.memberships.slot_of(kind);
        let Some(slot) = slot else {
            return;
        };
        let count = if holders.is_empty() {
            self.memberships.release(kind);
            0
        } else {
            let memberships = &self.memberships;
            TaggedIps::union_len(&holders, |id| memberships.has(id, slot))
        };
        *slot_count(&mut self.view_counts, slot) = count;
    }

    /// Forgets the memberships no address has any more and renumbers the rest.
    fn compact_memberships(&mut self) {
        let partitions = &self.partitions;
        let renumbered = self.memberships.compact(|visit| {
            for partition in partitions.values() {
                if let Addresses::Tagged(set) = &partition.addresses {
                    set.iter().for_each(|(_, id)| visit(id));
                }
            }
        });
        for partition in self.partitions.values_mut() {
            if let Addresses::Tagged(set) = &mut partition.addresses {
                set.retag(|id| renumbered[id as usize]);
            }
        }
    }

    /// Counts what partition `id` gained: a new address in the global, node and HyperLogLog
    /// counts unless another partition has it; a view new to an address in the view's count
    /// unless another partition has the address in it. Records the gains in `pending`.
    fn count_gains(&mut self, id: i32, gains: &[Gain], pending: &mut Sets) {
        let owned = self.partitions.get(&id).is_some_and(|p| p.live.is_some());
        let mut new_ips = Vec::new();
        let mut new_views: Vec<(u32, IpAddr)> = Vec::new();
        let mut others = Vec::new();
        for gain in gains {
            let new_address = gain.before.is_none();
            others.clear();
            let mut in_owned_other = false;
            if new_address || self.shared.contains(gain.ip) {
                for (other, p) in &self.partitions {
                    if *other == id {
                        continue;
                    }
                    if let Some(tag) = p.addresses.tag(gain.ip) {
                        others.push(tag);
                        in_owned_other |= p.live.is_some();
                    }
                }
            }
            if new_address {
                new_ips.push(gain.ip);
                self.hll.insert(gain.ip);
                self.global += u64::from(others.is_empty());
                self.node += u64::from(owned && !in_owned_other);
                if !others.is_empty() {
                    self.shared.insert(gain.ip);
                }
            }
            let before = gain.before.unwrap_or(0);
            for slot in self.memberships.slots_in(gain.after) {
                if self.memberships.has(before, slot) {
                    continue;
                }
                new_views.push((slot, gain.ip));
                if !others.iter().any(|&tag| self.memberships.has(tag, slot)) {
                    *slot_count(&mut self.view_counts, slot) += 1;
                }
            }
        }
        pending.all.insert_all(&new_ips, &mut Vec::new());
        // Stable: each view's addresses stay in the order the batch had them.
        new_views.sort_by_key(|(slot, _)| *slot);
        for run in new_views.chunk_by(|a, b| a.0 == b.0) {
            if let Some(view) = self.memberships.view(run[0].0) {
                let ips: Vec<IpAddr> = run.iter().map(|(_, ip)| *ip).collect();
                pending.views.add_all(view, &ips);
            }
        }
    }

    fn count_new_ip(&mut self, id: i32, ip: IpAddr, owned: bool) {
        self.hll.insert(ip);
        let elsewhere = |owned_only: bool| {
            self.partitions.iter().any(|(other, p)| {
                *other != id && (!owned_only || p.live.is_some()) && p.addresses.contains(ip)
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

    /// Exact distinct IPs in the union of the selected partitions' sets of one kind, by a
    /// pass over them (the node keeps the counts over all partitions up to date:
    /// [`global`](Self::global), [`view_count`](Self::view_count)).
    pub fn union_len(&self, select: impl Fn(&i32, &PartitionState) -> bool, kind: SetKind) -> u64 {
        let selected = self.partitions.iter().filter(|(id, p)| select(id, p));
        let mut plain = Vec::new();
        let mut tagged = Vec::new();
        for (_, p) in selected {
            match &p.addresses {
                Addresses::Plain(set) if kind == SetKind::All => plain.push(set),
                Addresses::Plain(_) => {}
                Addresses::Tagged(set) => tagged.push(set),
            }
        }
        let in_view = |id: u32| match kind {
            SetKind::All => true,
            view => self
                .memberships
                .slot_of(view)
                .is_some_and(|slot| self.memberships.has(id, slot)),
        };
        DistinctIps::union_len(&plain) + TaggedIps::union_len(&tagged, in_view)
    }

    /// Exact distinct IPs in view `kind` across all partitions.
    pub fn view_count(&self, kind: SetKind) -> u64 {
        let slot = self.memberships.slot_of(kind);
        slot.and_then(|s| self.view_counts.get(s as usize).copied())
            .unwrap_or(0)
    }

    /// Every view some partition has addresses in.
    pub fn views_present(&self) -> ViewKeys {
        let mut keys = ViewKeys::default();
        for partition in self.partitions.values() {
            keys.extend(&partition.present);
        }
        keys
    }
}

/// The slot `cache` holds for window `start`, else `slot()`'s, cached.
fn cached(cache: &mut Option<(i64, u32)>, start: i64, slot: impl FnOnce() -> u32) -> u32 {
    match *cache {
        Some((cached_start, cached_slot)) if cached_start == start => cached_slot,
        _ => {
            let fresh = slot();
            *cache = Some((start, fresh));
            fresh
        }
    }
}

/// The count of `slot` in `counts`, which grows to have it.
fn slot_count(counts: &mut Vec<u64>, slot: u32) -> &mut u64 {
    let slot = slot as usize;
    if counts.len() <= slot {
        counts.resize(slot + 1, 0);
    }
    &mut counts[slot]
}

/// The slots of a batch's views, looked up once per view: events of a batch mostly share their
/// minute and hour, and there are eleven codes.
#[derive(Default)]
struct SlotCache {
    minute: Option<(i64, u32)>,
    hour: Option<(i64, u32)>,
    codes: Vec<Option<u32>>,
}

impl SlotCache {
    /// The slots of `event`'s views, registering them (and their presence in the partition)
    /// the first time.
    fn of(
        &mut self,
        event: &DeviceEvent,
        memberships: &mut Memberships,
        present: &mut ViewKeys,
    ) -> EventSlots {
        let mut slot = |kind: SetKind| {
            present.insert(kind);
            memberships.slot(kind)
        };
        let minute = minute_of(event.time_ms);
        let minute_slot = cached(&mut self.minute, minute, || slot(SetKind::Minute(minute)));
        let hour = hour_of(event.time_ms);
        let hour_slot = cached(&mut self.hour, hour, || slot(SetKind::Hour(hour)));
        let code = usize::from(event.error_code);
        if self.codes.len() <= code {
            self.codes.resize(code + 1, None);
        }
        let code_slot = match self.codes[code] {
            Some(s) => s,
            None => {
                let s = slot(SetKind::Code(event.error_code));
                self.codes[code] = Some(s);
                s
            }
        };
        [minute_slot, hour_slot, code_slot]
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

    fn insert(state: &mut NodeState, partition: i32, events: &[DeviceEvent], pending: &mut Sets) {
        let mut sorted: Vec<&DeviceEvent> = events.iter().collect();
        sorted.sort_by_key(|e| e.ip);
        state.insert_events(partition, sorted.into_iter(), pending);
    }

    /// Events over three partitions, four hours of minutes and eleven codes; most addresses
    /// are in more than one partition.
    fn mixed_events() -> Vec<(i32, DeviceEvent)> {
        (0..3000u32)
            .map(|i| {
                // 400 addresses, each seen about seven times, in any partition.
                let ip = format!("10.{}.{}.{}", i % 3, (i % 400) / 97, i % 97);
                let time_ms = i64::from(i % 17) * 13 * MINUTE_MS + i64::from(i % 5) * 1000;
                ((i * 7 % 11) as i32 % 3, event(&ip, time_ms, (i % 11) as u8))
            })
            .collect()
    }

    /// The events of `partition`, in order.
    fn events_of(events: &[(i32, DeviceEvent)], partition: i32) -> Vec<DeviceEvent> {
        events
            .iter()
            .filter(|(p, _)| *p == partition)
            .map(|(_, e)| *e)
            .collect()
    }

    /// The model: per partition separate sets, filled event by event.
    fn model(events: &[(i32, DeviceEvent)], limits: WindowLimits) -> BTreeMap<i32, Sets> {
        let mut sets: BTreeMap<i32, Sets> = BTreeMap::new();
        for (partition, event) in events {
            let sets = sets.entry(*partition).or_default();
            sets.all.insert(event.ip);
            sets.views.insert_event(event, &mut Views::default());
        }
        for sets in sets.values_mut() {
            sets.retain_windows(limits);
        }
        sets
    }

    fn model_count(model: &BTreeMap<i32, Sets>, kind: SetKind) -> u64 {
        let sets: Vec<&DistinctIps> = model
            .values()
            .filter_map(|s| match kind {
                SetKind::All => Some(&s.all),
                view => s.views.get(view),
            })
            .collect();
        DistinctIps::union_len(&sets)
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
    fn tagged_views_count_as_separate_sets_would_across_partitions() {
        let events = mixed_events();
        let limits = WindowLimits {
            minutes: 6,
            hours: 2,
        };
        let mut state = NodeState::new(true);
        let mut deltas: BTreeMap<i32, Sets> = BTreeMap::new();
        for batch in events.chunks(250) {
            for partition in 0..3 {
                let run = events_of(batch, partition);
                insert(
                    &mut state,
                    partition,
                    &run,
                    deltas.entry(partition).or_default(),
                );
            }
        }
        let unlimited = WindowLimits {
            minutes: usize::MAX,
            hours: usize::MAX,
        };
        // Before any drop, the deltas hold exactly the model's sets.
        assert_eq!(deltas, model(&events, unlimited));
        for partition in 0..3 {
            state.retain_windows(partition, limits);
        }
        let expected = model(&events, limits);
        assert_eq!(state.global, model_count(&expected, SetKind::All));
        let mut kinds = ViewKeys::default();
        for sets in expected.values() {
            kinds.minutes.extend(sets.views.minutes.keys());
            kinds.hours.extend(sets.views.hours.keys());
            kinds.codes.extend(sets.views.codes.keys());
        }
        assert_eq!(state.views_present(), kinds);
        assert!(kinds.minutes.len() <= 6 && !kinds.minutes.is_empty());
        for kind in kinds.iter() {
            let count = model_count(&expected, kind);
            assert_eq!(state.view_count(kind), count, "{kind:?}");
            assert_eq!(state.union_len(|_, _| true, kind), count, "{kind:?}");
        }
    }

    #[test]
    fn a_snapshot_applied_elsewhere_rebuilds_the_same_sets() {
        let events = mixed_events();
        let mut state = NodeState::new(true);
        for partition in 0..3 {
            let run = events_of(&events, partition);
            insert(&mut state, partition, &run, &mut Sets::default());
        }
        let mut follower = NodeState::new(true);
        for (id, partition) in &state.partitions {
            let mut bytes = 0;
            for (kind, set) in partition.sections(&state.memberships) {
                bytes += set.serialized_size() as u64;
                follower.apply_section(*id, kind, &set);
            }
            assert_eq!(bytes, partition.serialized_size(&state.memberships));
        }
        assert_eq!(follower.global, state.global);
        assert_eq!(follower.views_present(), state.views_present());
        for kind in state.views_present().iter() {
            assert_eq!(
                follower.view_count(kind),
                state.view_count(kind),
                "{kind:?}"
            );
        }
        for (id, partition) in &state.partitions {
            let theirs = &follower.partitions[id];
            assert_eq!(theirs.addresses.to_plain(), partition.addresses.to_plain());
            let mine: Vec<_> = partition.sections(&state.memberships).collect();
            let applied: Vec<_> = theirs.sections(&follower.memberships).collect();
            assert_eq!(applied, mine);
        }
    }

    #[test]
    fn unused_memberships_are_compacted_away_without_changing_a_count() {
        let mut state = NodeState::new(true);
        let limits = WindowLimits {
            minutes: 64,
            hours: 2,
        };
        // Twenty devices, each seen in about half the minutes: nearly every address gets a
        // membership of its own each minute, and rolling windows leave the old ones unused.
        let mut events = Vec::new();
        for minute in 0..600i64 {
            let run: Vec<DeviceEvent> = (0..20u64)
                .filter(|i| {
                    (i.wrapping_mul(0x9E37_79B9) ^ (minute as u64 * 2_654_435_761)) % 3 != 0
                })
                .map(|i| event(&format!("10.0.0.{i}"), minute * MINUTE_MS, 0))
                .collect();
            insert(&mut state, 0, &run, &mut Sets::default());
            state.retain_windows(0, limits);
            events.extend(run.into_iter().map(|e| (0, e)));
            assert!(
                state.memberships.len() < 4096,
                "ids compacted: {}",
                state.memberships.len()
            );
        }
        let expected = model(&events, limits);
        for kind in state.views_present().iter() {
            let count = model_count(&expected, kind);
            assert_eq!(state.view_count(kind), count, "{kind:?}");
            assert_eq!(state.union_len(|_, _| true, kind), count, "{kind:?}");
        }
        assert_eq!(state.views_present().minutes.len(), 64);
    }

    #[test]
    fn global_and_node_counts_follow_every_insert() {
        for views in [false, true] {
            let mut state = NodeState::new(views);
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
    }

    #[test]
    fn a_partition_counts_the_times_it_dropped_windows() {
        let mut state = NodeState::new(true);
        let limits = WindowLimits {
            minutes: 2,
            hours: 1,
        };
        for minute in 0..2 {
            insert(
                &mut state,
                0,
                &[event("1.2.3.4", minute * MINUTE_MS, 0)],
                &mut Sets::default(),
            );
        }
        state.retain_windows(0, limits);
        assert_eq!(
            state.partitions[&0].window_drops(),
            0,
            "nothing beyond the limits"
        );
        insert(
            &mut state,
            0,
            &[event("1.2.3.4", 2 * MINUTE_MS, 0)],
            &mut Sets::default(),
        );
        state.retain_windows(0, limits);
        assert_eq!(state.partitions[&0].window_drops(), 1);
        assert_eq!(state.view_count(SetKind::Minute(0)), 0);
        assert_eq!(
            state.memberships.slot_of(SetKind::Minute(0)),
            None,
            "slot released"
        );
    }

    #[test]
    fn a_minute_goes_with_its_hour_whatever_the_minute_limit() {
        let mut keys = ViewKeys::default();
        // One minute in each of three hours: three minutes span them.
        for hour in 0..3 {
            keys.insert(SetKind::Minute(hour * HOUR_MS));
            keys.insert(SetKind::Hour(hour * HOUR_MS));
        }
        let dropped = keys.trim(WindowLimits {
            minutes: 120,
            hours: 2,
        });
        assert_eq!(dropped, vec![SetKind::Hour(0), SetKind::Minute(0)]);
        assert_eq!(Vec::from_iter(keys.hours), vec![HOUR_MS, 2 * HOUR_MS]);
        assert_eq!(Vec::from_iter(keys.minutes), vec![HOUR_MS, 2 * HOUR_MS]);
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
        let starts: Vec<i64> = views.minutes.keys().copied().collect();
        assert_eq!(starts, vec![3 * MINUTE_MS, 4 * MINUTE_MS]);
    }
}
