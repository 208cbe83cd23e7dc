//! One consumer group's membership state machine, free of I/O and of the wire format.
//!
//! The coordinator holds every [`Group`] under one lock and calls the request methods (in
//! [`requests`]) and [`Group::expire`] (timers) with the current time. Methods never block:
//! a request that must wait (JoinGroup until the join phase completes, a follower's SyncGroup
//! until the leader's arrives) gets a oneshot receiver, and the member keeps the sender until the
//! group answers it. Answers to joins and syncs are handed back in [`Effects`] rather than sent
//! directly, because a new generation (or the membership a SyncGroup completes) must be written
//! to the offsets file before anyone learns about it.

mod requests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;

pub(crate) use requests::{JoinRequest, MemberIdentity};

use crate::consumer_group::ConsumerGroup;
use crate::store::{StoredMember, StoredMembership};

/// The protocol type of Kafka's consumers: members' metadata is a `ConsumerProtocolSubscription`
/// and the leader's assignments are `ConsumerProtocolAssignment`s.
pub(crate) const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// How long a brand-new member may wait in a join phase without completing it before it is
/// dropped (Kafka's `GroupCoordinator.NewMemberJoinTimeoutMs`): a client that disconnects right
/// after its first JoinGroup must not hold up the group until the rebalance timeout.
pub(crate) const NEW_MEMBER_JOIN_TIMEOUT: Duration = Duration::from_secs(300);

/// The life cycle of a group, as Kafka names it (these names are what ListGroups and
/// DescribeGroups report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum GroupState {
    /// No members. May still hold committed offsets and a generation.
    Empty,
    /// A join phase is open: members must (re)send JoinGroup.
    PreparingRebalance,
    /// The join phase is over; waiting for the leader's assignment in SyncGroup.
    CompletingRebalance,
    /// Every member has its assignment; members only heartbeat.
    Stable,
    /// The group does not exist (only ever reported, never held).
    Dead,
}

impl GroupState {
    /// The state's protocol name, e.g. `"PreparingRebalance"`.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

impl std::fmt::Display for GroupState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One of the protocols (assignors) a member supports, with its subscription metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Protocol {
    pub(crate) name: String,
    pub(crate) metadata: Bytes,
}

/// What a JoinGroup caller gets back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinOutcome {
    pub(crate) error: Option<ResponseError>,
    pub(crate) generation: i32,
    pub(crate) protocol: Option<String>,
    pub(crate) leader: String,
    pub(crate) member_id: String,
    /// Filled for the leader only: every member with its metadata for the chosen protocol.
    pub(crate) members: Vec<JoinedMember>,
    /// Store sequence number that must be durable before this answer is released (the append
    /// of the generation record); 0 when there is nothing to wait for.
    pub(crate) durable_seq: u64,
}

impl JoinOutcome {
    pub(crate) fn failed(member_id: impl Into<String>, error: ResponseError) -> Self {
        Self {
            error: Some(error),
            generation: -1,
            protocol: None,
            leader: String::new(),
            member_id: member_id.into(),
            members: Vec::new(),
            durable_seq: 0,
        }
    }
}

/// A member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinedMember {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) metadata: Bytes,
}

/// What a SyncGroup caller gets back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyncOutcome {
    pub(crate) error: Option<ResponseError>,
    pub(crate) assignment: Bytes,
    /// Store sequence number that must be durable before this answer is released (the append
    /// of the membership it completes); 0 when there is nothing to wait for.
    pub(crate) durable_seq: u64,
}

impl SyncOutcome {
    pub(crate) fn failed(error: ResponseError) -> Self {
        Self {
            error: Some(error),
            assignment: Bytes::new(),
            durable_seq: 0,
        }
    }
}

/// A request's answer: now, or once the group gets there.
#[derive(Debug)]
pub(crate) enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

/// A new generation the coordinator must persist before releasing the join answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewGeneration {
    pub(crate) generation: i32,
    pub(crate) protocol_type: String,
    /// False when the join phase ended with no members (the group went Empty).
    pub(crate) has_members: bool,
}

/// Consequences of a group operation that the coordinator carries out after it.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub(crate) join_answers: Vec<(oneshot::Sender<JoinOutcome>, JoinOutcome)>,
    pub(crate) sync_answers: Vec<(oneshot::Sender<SyncOutcome>, SyncOutcome)>,
    /// The generation to persist (the latest, should one operation complete two join phases:
    /// persisting the higher one is enough).
    pub(crate) new_generation: Option<NewGeneration>,
    /// The members of a Stable group changed (a rebalance completed, or a static member took
    /// its place): persist them so that they survive a restart.
    pub(crate) membership_changed: bool,
    /// The group's KIP-848 consumer group changed (a timer removed members): persist it.
    pub(crate) consumer_changed: bool,
    /// How often the consumer group's epoch went up (counted as rebalances).
    pub(crate) consumer_rebalances: u64,
}

impl Effects {
    fn answer_join(&mut self, waiter: oneshot::Sender<JoinOutcome>, outcome: JoinOutcome) {
        self.join_answers.push((waiter, outcome));
    }

    fn answer_sync(&mut self, waiter: oneshot::Sender<SyncOutcome>, outcome: SyncOutcome) {
        self.sync_answers.push((waiter, outcome));
    }
}

/// Settings that shape rebalances.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RebalanceSettings {
    pub(crate) initial_rebalance_delay: Duration,
}

#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) id: String,
    /// Static membership (KIP-345): a stable identity that survives restarts of the client.
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout: Duration,
    pub(crate) rebalance_timeout: Duration,
    /// In the member's order of preference.
    pub(crate) protocols: Vec<Protocol>,
    pub(crate) assignment: Bytes,
    awaiting_join: Option<oneshot::Sender<JoinOutcome>>,
    awaiting_sync: Option<oneshot::Sender<SyncOutcome>>,
    /// Joined but has not yet been through a completed join phase.
    is_new: bool,
    last_heartbeat: Instant,
}

impl Member {
    pub(crate) fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p.name == protocol)
    }

    /// When the member is removed unless it shows a sign of life first. Members waiting in a
    /// join or sync phase are kept alive by the open request (as in Kafka), except new members,
    /// which get [`NEW_MEMBER_JOIN_TIMEOUT`].
    fn expires_at(&self) -> Option<Instant> {
        if self.awaiting_join.is_some() {
            self.is_new
                .then(|| deadline(self.last_heartbeat, NEW_MEMBER_JOIN_TIMEOUT))
        } else if self.awaiting_sync.is_some() {
            None
        } else {
            Some(deadline(self.last_heartbeat, self.session_timeout))
        }
    }

    pub(crate) fn heartbeat(&mut self, now: Instant) {
        self.last_heartbeat = now;
    }

    fn stored(&self) -> StoredMember {
        StoredMember {
            member_id: self.id.clone(),
            instance_id: self.instance_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            session_timeout_ms: millis_of(self.session_timeout),
            rebalance_timeout_ms: millis_of(self.rebalance_timeout),
            protocols: self
                .protocols
                .iter()
                .map(|p| (p.name.clone(), p.metadata.clone()))
                .collect(),
            assignment: self.assignment.clone(),
        }
    }

    /// A member known from the offsets file. Its session starts now, as if it had just
    /// heartbeated (Kafka does the same when it loads a group): it expires unless it comes back.
    fn restored(stored: StoredMember, now: Instant) -> Self {
        let millis = |ms: i32| Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        Self {
            id: stored.member_id,
            instance_id: stored.instance_id,
            client_id: stored.client_id,
            client_host: stored.client_host,
            session_timeout: millis(stored.session_timeout_ms),
            rebalance_timeout: millis(stored.rebalance_timeout_ms),
            protocols: stored
                .protocols
                .into_iter()
                .map(|(name, metadata)| Protocol { name, metadata })
                .collect(),
            assignment: stored.assignment,
            awaiting_join: None,
            awaiting_sync: None,
            is_new: false,
            last_heartbeat: now,
        }
    }
}

/// The open join phase of a group in PreparingRebalance.
#[derive(Debug, Clone, Copy)]
struct JoinPhase {
    /// When the phase completes even if not every member has rejoined.
    deadline: Instant,
    /// Set while a group that was Empty waits for more members (`initial_rebalance_delay`).
    initial_delay: Option<InitialDelay>,
}

/// Kafka's `InitialDelayedJoin`: a group coming out of Empty waits `delay` for more members,
/// and waits another `delay` whenever members did arrive, as long as `remaining` (the
/// rebalance timeout minus the time already waited) allows.
#[derive(Debug, Clone, Copy)]
struct InitialDelay {
    delay: Duration,
    remaining: Duration,
    new_member_added: bool,
}

#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) id: String,
    pub(crate) state: GroupState,
    pub(crate) generation: i32,
    pub(crate) protocol_type: Option<String>,
    /// The protocol chosen for the current generation.
    pub(crate) protocol: Option<String>,
    pub(crate) leader: Option<String>,
    pub(crate) members: BTreeMap<String, Member>,
    /// Instance id → member id of the static members.
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet used to rejoin, with the time
    /// they are forgotten.
    pending_members: HashMap<String, Instant>,
    join_phase: Option<JoinPhase>,
    /// Store sequence number of the latest record that persisted the group's generation or
    /// members (0 = already durable).
    pub(crate) persisted_seq: u64,
    /// Join phases that produced a generation with members since the coordinator opened.
    pub(crate) rebalances: u64,
    /// Set while the group id belongs to a KIP-848 consumer group (ConsumerGroupHeartbeat);
    /// the classic fields above then hold no members (see `consumer_group::mixing`).
    pub(crate) consumer: Option<ConsumerGroup>,
}

impl Group {
    pub(crate) fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            join_phase: None,
            persisted_seq: 0,
            rebalances: 0,
            consumer: None,
        }
    }

    /// A group known from the offsets file after a restart: Empty, at its persisted generation.
    pub(crate) fn restored(id: impl Into<String>, generation: i32, protocol_type: String) -> Self {
        let mut group = Self::new(id);
        group.generation = generation;
        group.protocol_type = (!protocol_type.is_empty()).then_some(protocol_type);
        group
    }

    /// A group whose members were persisted by its last completed rebalance: Stable, with
    /// those members and their assignments, each member's session starting `now`.
    pub(crate) fn from_membership(stored: StoredMembership, now: Instant) -> Self {
        let mut group = Self::restored(stored.group, stored.generation, stored.protocol_type);
        for member in stored.members {
            let member = Member::restored(member, now);
            if let Some(instance) = &member.instance_id {
                group
                    .static_members
                    .insert(instance.clone(), member.id.clone());
            }
            group.members.insert(member.id.clone(), member);
        }
        if group.members.is_empty() {
            return group;
        }
        group.protocol = (!stored.protocol.is_empty()).then_some(stored.protocol);
        group.leader = Some(stored.leader)
            .filter(|leader| group.members.contains_key(leader))
            .or_else(|| group.members.keys().next().cloned());
        group.state = GroupState::Stable;
        group
    }

    /// What the offsets file keeps of a Stable group so that a restart keeps its members.
    pub(crate) fn membership(&self) -> StoredMembership {
        StoredMembership {
            group: self.id.clone(),
            generation: self.generation,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: self.protocol.clone().unwrap_or_default(),
            leader: self.leader.clone().unwrap_or_default(),
            members: self.members.values().map(Member::stored).collect(),
        }
    }

    /// Topics whose committed offsets the group is using: none while Empty, the members'
    /// subscriptions while a consumer group has members (Kafka's `isSubscribedToTopic`).
    /// Another protocol's members cannot be looked into: NON_EMPTY_GROUP, as in Kafka.
    pub(crate) fn topics_in_use(&self) -> Result<BTreeSet<String>, ResponseError> {
        if let Some(consumer) = &self.consumer {
            return Ok(consumer.subscribed_topic_names());
        }
        if self.state == GroupState::Empty {
            return Ok(BTreeSet::new());
        }
        if self.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return Err(ResponseError::NonEmptyGroup);
        }
        Ok(self.subscribed_topics().unwrap_or_default())
    }

    /// The union of the members' subscriptions under the current protocol, or `None` when it
    /// cannot be known: no protocol chosen yet, or metadata that is not a consumer
    /// subscription (Kafka then treats no topic as subscribed, and so does this).
    fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        let protocol = self.protocol.as_deref()?;
        let mut topics = BTreeSet::new();
        for member in self.members.values() {
            topics.extend(subscription_topics(&member.metadata_for(protocol))?);
        }
        Some(topics)
    }

    /// True when the group holds nothing worth keeping in memory: created by a request that
    /// then failed. (Groups with commits are kept by the caller, who knows about them.)
    pub(crate) fn is_vacant(&self) -> bool {
        self.state == GroupState::Empty
            && self.generation == 0
            && self.members.is_empty()
            && self.pending_members.is_empty()
            && self.protocol_type.is_none()
            && self.consumer.is_none()
    }

    pub(crate) fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// The earliest instant at which [`expire`](Self::expire) has something to do.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let phase = self.join_phase.map(|p| p.deadline);
        let pending = self.pending_members.values().copied();
        let members = self.members.values().filter_map(Member::expires_at);
        let consumer = self
            .consumer
            .as_ref()
            .and_then(ConsumerGroup::next_deadline);
        phase
            .into_iter()
            .chain(pending)
            .chain(members)
            .chain(consumer)
            .min()
    }

    /// Runs the timers that are due at `now`: forgets unused pending member ids, removes members
    /// whose session expired, and ends a join phase whose deadline passed.
    pub(crate) fn expire(&mut self, now: Instant, settings: &RebalanceSettings, fx: &mut Effects) {
        let before = self.pending_members.len();
        self.pending_members.retain(|_, expires| *expires > now);
        if self.pending_members.len() != before {
            self.try_complete_join(now, fx);
        }

        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.expires_at().is_some_and(|at| at <= now))
            .map(|m| m.id.clone())
            .collect();
        for member_id in expired {
            tracing::info!(group = %self.id, member = %member_id, "member session expired");
            self.remove_member_and_rebalance(&member_id, now, settings, fx);
        }

        if self.join_phase.is_some_and(|p| p.deadline <= now) {
            self.on_join_deadline(now, fx);
        }

        if let Some(consumer) = self.consumer.as_mut() {
            let removed = consumer.expire(now, &self.id);
            fx.consumer_changed |= removed > 0;
            fx.consumer_rebalances += removed;
        }
    }

    /// Whether a member with these protocols may join: same protocol type as the group, and at
    /// least one protocol every member (including this one) supports. An empty group accepts
    /// any non-empty protocol type and protocol list.
    pub(crate) fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|p| self.members.values().all(|m| m.supports(&p.name)))
    }

    /// The protocol for the next generation: among those every member supports, each member
    /// votes for the first in its preference order; most votes wins, ties go to the leader's
    /// preference. (Kafka breaks ties arbitrarily.)
    pub(crate) fn select_protocol(&self) -> Option<String> {
        let reference = self
            .leader
            .as_ref()
            .and_then(|id| self.members.get(id))
            .or_else(|| self.members.values().next())?;
        let candidates: Vec<&str> = reference
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| self.members.values().all(|m| m.supports(name)))
            .collect();
        let mut votes = vec![0usize; candidates.len()];
        for member in self.members.values() {
            let choice = member
                .protocols
                .iter()
                .find_map(|p| candidates.iter().position(|c| *c == p.name));
            if let Some(index) = choice {
                votes[index] += 1;
            }
        }
        // max_by_key returns the last maximum; iterate in reverse so ties keep the leader's
        // earliest preference.
        let (winner, _) = votes
            .iter()
            .enumerate()
            .rev()
            .max_by_key(|(_, count)| **count)?;
        candidates.get(winner).map(|name| (*name).to_owned())
    }

    /// Opens a join phase unless one is open already (Kafka's `maybePrepareRebalance`).
    fn maybe_prepare_rebalance(
        &mut self,
        now: Instant,
        settings: &RebalanceSettings,
        fx: &mut Effects,
    ) {
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(now, settings, fx);
        }
    }

    /// Opens a join phase: every member must rejoin before the rebalance timeout.
    fn prepare_rebalance(&mut self, now: Instant, settings: &RebalanceSettings, fx: &mut Effects) {
        if self.state == GroupState::CompletingRebalance {
            // The assignment being synced is for a generation that will never be Stable.
            self.fail_sync_waiters(ResponseError::RebalanceInProgress);
            for member in self.members.values_mut() {
                member.assignment = Bytes::new();
            }
        }
        let rebalance_timeout = self.rebalance_timeout();
        let delay = settings.initial_rebalance_delay;
        let initial_delay =
            (self.state == GroupState::Empty && !delay.is_zero()).then(|| InitialDelay {
                delay,
                remaining: rebalance_timeout.saturating_sub(delay),
                new_member_added: false,
            });
        let wait = if initial_delay.is_some() {
            delay
        } else {
            rebalance_timeout
        };
        self.join_phase = Some(JoinPhase {
            deadline: deadline(now, wait),
            initial_delay,
        });
        tracing::debug!(group = %self.id, from = %self.state, "preparing rebalance");
        self.state = GroupState::PreparingRebalance;
        self.try_complete_join(now, fx);
    }

    /// Completes the join phase early when every member (and every member id handed out with
    /// MEMBER_ID_REQUIRED) has joined. During an initial delay the phase runs to its deadline.
    fn try_complete_join(&mut self, now: Instant, fx: &mut Effects) {
        let Some(phase) = self.join_phase else {
            return;
        };
        let all_joined = self.members.values().all(|m| m.awaiting_join.is_some())
            && self.pending_members.is_empty();
        if phase.initial_delay.is_none() && all_joined {
            self.complete_join(now, fx);
        }
    }

    /// The join phase's deadline passed.
    fn on_join_deadline(&mut self, now: Instant, fx: &mut Effects) {
        if let Some(phase) = self.join_phase.as_mut() {
            if let Some(initial) = phase.initial_delay.as_mut() {
                if initial.new_member_added && !initial.remaining.is_zero() {
                    let wait = initial.delay.min(initial.remaining);
                    initial.remaining -= wait;
                    initial.new_member_added = false;
                    phase.deadline = deadline(now, wait);
                    return;
                }
            }
        }
        self.complete_join(now, fx);
    }

    /// Ends the join phase: drops the dynamic members that did not rejoin, bumps the
    /// generation, chooses the protocol and answers every waiting JoinGroup (Kafka's
    /// `onCompleteJoin`).
    fn complete_join(&mut self, now: Instant, fx: &mut Effects) {
        let absent: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for member_id in absent {
            tracing::info!(group = %self.id, member = %member_id, "member did not rejoin in time");
            self.remove_member(&member_id);
        }
        if !self.members.is_empty() && !self.elect_joined_leader() {
            // Only absent static members are left. Like Kafka, wait for them another rebalance
            // timeout (their sessions expire meanwhile if they are really gone).
            self.join_phase = Some(JoinPhase {
                deadline: deadline(now, self.rebalance_timeout()),
                initial_delay: None,
            });
            return;
        }

        self.join_phase = None;
        self.generation = self.generation.saturating_add(1);
        let protocol_type = self.protocol_type.clone().unwrap_or_default();
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            fx.new_generation = Some(NewGeneration {
                generation: self.generation,
                protocol_type,
                has_members: false,
            });
            return;
        }

        self.protocol = self.select_protocol();
        self.state = GroupState::CompletingRebalance;
        fx.new_generation = Some(NewGeneration {
            generation: self.generation,
            protocol_type,
            has_members: true,
        });
        tracing::info!(group = %self.id, generation = self.generation,
            members = self.members.len(), protocol = ?self.protocol, "join phase complete");
        let leader = self.leader.clone().unwrap_or_default();
        let member_list = self.member_list();
        let (generation, protocol) = (self.generation, self.protocol.clone());
        for member in self.members.values_mut() {
            let Some(waiter) = member.awaiting_join.take() else {
                continue;
            };
            member.is_new = false;
            member.heartbeat(now);
            let members = if member.id == leader {
                member_list.clone()
            } else {
                Vec::new()
            };
            let outcome = JoinOutcome {
                error: None,
                generation,
                protocol: protocol.clone(),
                leader: leader.clone(),
                member_id: member.id.clone(),
                members,
                durable_seq: 0,
            };
            fx.answer_join(waiter, outcome);
        }
    }

    /// The JoinGroup answer for the current generation, for a member that asks again without
    /// changing anything.
    fn current_join_outcome(&self, member_id: &str) -> JoinOutcome {
        let leader = self.leader.clone().unwrap_or_default();
        JoinOutcome {
            error: None,
            generation: self.generation,
            protocol: self.protocol.clone(),
            members: if leader == member_id {
                self.member_list()
            } else {
                Vec::new()
            },
            leader,
            member_id: member_id.to_owned(),
            durable_seq: self.persisted_seq,
        }
    }

    /// Every member with its metadata for the chosen protocol: what the leader assigns from.
    fn member_list(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol.as_deref().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                metadata: m.metadata_for(protocol),
            })
            .collect()
    }

    /// Keeps the leader if it rejoined, else promotes a member that did. False if none did.
    fn elect_joined_leader(&mut self) -> bool {
        let leader_joined = self
            .leader
            .as_ref()
            .and_then(|id| self.members.get(id))
            .is_some_and(|m| m.awaiting_join.is_some());
        if leader_joined {
            return true;
        }
        let joined = self
            .members
            .values()
            .find(|m| m.awaiting_join.is_some())
            .map(|m| m.id.clone());
        match joined {
            Some(id) => {
                self.leader = Some(id);
                true
            }
            None => false,
        }
    }

    /// The longest rebalance timeout among members: how long a join phase waits.
    fn rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }

    /// Removes a member from the books (no answers, no state change). A new leader, if needed,
    /// is picked arbitrarily; the join phase re-elects one among the members that rejoined.
    fn remove_member(&mut self, member_id: &str) -> Option<Member> {
        let member = self.members.remove(member_id)?;
        if let Some(instance) = &member.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        if self.is_leader(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
        Some(member)
    }

    /// Removes a member (left, or its session expired) and moves the group on: a rebalance
    /// for the rest, or completion of the open join phase if it was the one holding it up.
    fn remove_member_and_rebalance(
        &mut self,
        member_id: &str,
        now: Instant,
        settings: &RebalanceSettings,
        fx: &mut Effects,
    ) {
        let Some(mut member) = self.remove_member(member_id) else {
            return;
        };
        if let Some(waiter) = member.awaiting_join.take() {
            fx.answer_join(
                waiter,
                JoinOutcome::failed(member_id, ResponseError::UnknownMemberId),
            );
        }
        if let Some(waiter) = member.awaiting_sync.take() {
            let _ = waiter.send(SyncOutcome::failed(ResponseError::UnknownMemberId));
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(now, settings, fx)
            }
            GroupState::PreparingRebalance => self.try_complete_join(now, fx),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Answers every waiting SyncGroup with `error`.
    fn fail_sync_waiters(&mut self, error: ResponseError) {
        for member in self.members.values_mut() {
            if let Some(waiter) = member.awaiting_sync.take() {
                // A closed receiver means the client went away; nothing to tell it.
                let _ = waiter.send(SyncOutcome::failed(error));
            }
        }
    }

    /// Answers every waiting request with `error` (the coordinator is shutting down).
    pub(crate) fn fail_all_waiters(&mut self, error: ResponseError, fx: &mut Effects) {
        self.fail_sync_waiters(error);
        for member in self.members.values_mut() {
            if let Some(waiter) = member.awaiting_join.take() {
                fx.answer_join(waiter, JoinOutcome::failed(member.id.clone(), error));
            }
        }
    }
}

/// The topics of a `consumer` protocol subscription: a version, then the subscription, read
/// with the version 0 layout that every later version extends (as Kafka reads it).
fn subscription_topics(metadata: &Bytes) -> Option<Vec<String>> {
    let mut buf = metadata.clone();
    if buf.remaining() < 2 {
        return None;
    }
    let _version = buf.get_i16();
    let subscription = ConsumerProtocolSubscription::decode(&mut buf, 0).ok()?;
    Some(subscription.topics.iter().map(|t| t.to_string()).collect())
}

/// A duration as the int32 milliseconds Kafka stores (client timeouts always fit).
fn millis_of(duration: Duration) -> i32 {
    i32::try_from(duration.as_millis()).unwrap_or(i32::MAX)
}

/// `now + wait`. Waits are capped (client-supplied timeouts are at most ~25 days anyway) so
/// the addition cannot overflow.
fn deadline(now: Instant, wait: Duration) -> Instant {
    const LONGEST_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);
    now.checked_add(wait.min(LONGEST_WAIT)).unwrap_or(now)
}
