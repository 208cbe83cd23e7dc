//! KIP-848 consumer groups: the consumer group protocol of Kafka 4, beside the classic groups
//! of [`crate::group`]. Members heartbeat (ConsumerGroupHeartbeat) and the coordinator
//! assigns partitions itself; no member ever sees another's subscription.
//!
//! # Epochs
//!
//! * The **group epoch** goes up whenever what the assignment depends on changes: a member
//!   joins, leaves or is removed, a member's subscription changes, or a subscribed topic
//!   appears, disappears or gains partitions.
//! * The **target assignment** is what the group's assignor (`uniform` or `range`) computes for
//!   a group epoch; its **assignment epoch** is that group epoch. It is computed lazily, by the
//!   first heartbeat that finds the assignment epoch behind the group epoch.
//! * Each member has a **member epoch**: the assignment epoch it has caught up with. It moves
//!   towards the target in steps ([`reconcile`]): first it revokes the partitions it must give
//!   up (staying at its epoch until its heartbeat no longer reports them), then it gets the
//!   target's epoch and those of its target partitions that no other member still owns; the
//!   rest follow once their previous owners have revoked them. So a partition is never owned
//!   by two members at once.
//!
//! A member whose session lapses (no heartbeat within the broker's
//! `consumer_session_timeout`), or that does not revoke within its rebalance timeout, is
//! removed and the group epoch goes up, as when a member leaves (epoch -1). A static member
//! (with an instance id) may leave temporarily (epoch -2): it keeps its partitions, and a new
//! incarnation with the same instance id takes its place and its assignment; if none comes
//! within the session timeout it is removed.
//!
//! # Persistence
//!
//! Every change that a member could learn about is written to the offsets file as a snapshot
//! of the group ([`crate::store::ConsumerGroupRecord`]) before the heartbeat that caused it is
//! answered. Sessions are not persisted: after a restart each member's session starts anew,
//! as the classic groups' do.

mod assignor;
mod heartbeat;
mod mixing;
mod reconcile;
mod subscription;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::time::Instant;
use uuid::Uuid;

pub(crate) use assignor::{ASSIGNORS, DEFAULT_ASSIGNOR};
pub(crate) use heartbeat::{Applied, Heartbeat, HeartbeatAnswer, Leave};
pub(crate) use mixing::{not_a_consumer_group, CONSUMER_GROUP_TYPE};
pub(crate) use subscription::validate_regex;

use crate::store::{ConsumerGroupRecord, MemberRecord, MemberState, Partitions, TopicRecord};
use subscription::Regexes;

/// The member epoch of a member leaving the group.
pub(crate) const LEAVE_EPOCH: i32 = -1;
/// The member epoch of a static member leaving temporarily (it will come back).
pub(crate) const LEAVE_STATIC_EPOCH: i32 = -2;

/// The broker's topics, as far as consumer groups need to know them: subscriptions name
/// topics, assignments give their ids and partitions.
pub trait TopicCatalog: Sync {
    /// The topic called `name`, if it exists.
    fn topic(&self, name: &str) -> Option<TopicMetadata>;
    /// The names a regular expression subscription may match (Kafka leaves out internal
    /// topics).
    fn topic_names(&self) -> Vec<String>;
}

/// One topic of a [`TopicCatalog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// The topic's name.
    pub name: String,
    /// The topic's id (what assignments name it by).
    pub id: Uuid,
    /// How many partitions it has.
    pub partitions: i32,
}

/// A consumer group's state as ListGroups and ConsumerGroupDescribe report it (Kafka's
/// `ConsumerGroupState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConsumerGroupState {
    /// No members.
    Empty,
    /// The target assignment is behind the group epoch.
    Assigning,
    /// Some member has not caught up with the target assignment.
    Reconciling,
    /// Every member owns its target.
    Stable,
}

impl ConsumerGroupState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

/// A refused request: Kafka's error code and the message Kafka sends with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) error: ResponseError,
    pub(crate) message: Option<String>,
}

impl Refusal {
    pub(crate) fn new(error: ResponseError, message: impl Into<String>) -> Self {
        Self {
            error,
            message: Some(message.into()),
        }
    }

    pub(crate) fn bare(error: ResponseError) -> Self {
        Self {
            error,
            message: None,
        }
    }
}

/// A member: what is persisted, plus its timers.
#[derive(Debug)]
pub(crate) struct ConsumerMember {
    pub(crate) record: MemberRecord,
    /// Removed at this instant unless it heartbeats first.
    session_deadline: Instant,
    /// Set while it must revoke partitions: removed at this instant unless it has by then.
    revocation_deadline: Option<Instant>,
}

impl ConsumerMember {
    fn next_deadline(&self) -> Instant {
        match self.revocation_deadline {
            Some(revocation) => revocation.min(self.session_deadline),
            None => self.session_deadline,
        }
    }
}

/// One KIP-848 consumer group. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct ConsumerGroup {
    pub(crate) group_epoch: i32,
    pub(crate) assignment_epoch: i32,
    /// The subscribed topics that exist, by name, as of the group epoch.
    pub(crate) topics: BTreeMap<String, TopicRecord>,
    pub(crate) members: BTreeMap<String, ConsumerMember>,
    /// Compiled subscription regexes (not persisted).
    regexes: Regexes,
}

impl ConsumerGroup {
    /// A group from the offsets file; every member's session starts `now`.
    pub(crate) fn restored(record: ConsumerGroupRecord, now: Instant, session: Duration) -> Self {
        let members = record
            .members
            .into_iter()
            .map(|member| {
                let unrevoked = member.state == MemberState::UnrevokedPartitions;
                let rebalance_timeout = millis(member.rebalance_timeout_ms);
                let member = ConsumerMember {
                    record: member,
                    session_deadline: deadline(now, session),
                    revocation_deadline: unrevoked.then(|| deadline(now, rebalance_timeout)),
                };
                (member.record.member_id.clone(), member)
            })
            .collect();
        Self {
            group_epoch: record.group_epoch,
            assignment_epoch: record.assignment_epoch,
            topics: record
                .topics
                .into_iter()
                .map(|topic| (topic.name.clone(), topic))
                .collect(),
            members,
            regexes: Regexes::default(),
        }
    }

    /// What the offsets file keeps of the group.
    pub(crate) fn record(&self, group_id: &str) -> ConsumerGroupRecord {
        ConsumerGroupRecord {
            group: group_id.to_owned(),
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            topics: self.topics.values().cloned().collect(),
            members: self.members.values().map(|m| m.record.clone()).collect(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub(crate) fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.group_epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self.members.values().all(|m| {
            m.record.state == MemberState::Stable && m.record.member_epoch == self.assignment_epoch
        }) {
            ConsumerGroupState::Stable
        } else {
            ConsumerGroupState::Reconciling
        }
    }

    /// The assignor most members ask for (ties go to the first in [`ASSIGNORS`]), or the
    /// default when none asks (Kafka's `computePreferredServerAssignor`).
    pub(crate) fn preferred_assignor(&self) -> &'static str {
        let votes = |name: &str| {
            self.members
                .values()
                .filter(|m| m.record.server_assignor.as_deref() == Some(name))
                .count()
        };
        let mut preferred: Option<(usize, &'static str)> = None;
        for name in ASSIGNORS {
            let count = votes(name);
            if count > 0 && preferred.is_none_or(|(most, _)| count > most) {
                preferred = Some((count, name));
            }
        }
        preferred.map_or(DEFAULT_ASSIGNOR, |(_, name)| name)
    }

    /// The static member with this instance id.
    pub(crate) fn static_member(&self, instance_id: &str) -> Option<&ConsumerMember> {
        self.members
            .values()
            .find(|m| m.record.instance_id.as_deref() == Some(instance_id))
    }

    /// Topic names some member subscribes to, by name or through its regex (Kafka's
    /// `isSubscribedToTopic`, which OffsetDelete consults).
    pub(crate) fn subscribed_topic_names(&self) -> BTreeSet<String> {
        let known: Vec<String> = self.topics.keys().cloned().collect();
        // Compiled afresh: this serves OffsetDelete and removals, not every heartbeat.
        let mut regexes = Regexes::default();
        let mut names = BTreeSet::new();
        for member in self.members.values() {
            names.extend(member.record.subscribed_topic_names.iter().cloned());
            let regex = &member.record.subscribed_topic_regex;
            names.extend(regexes.matching(regex, &known));
        }
        names
    }

    /// Topic id → name, for the topics the group knows.
    pub(crate) fn topic_names_by_id(&self) -> BTreeMap<Uuid, &str> {
        self.topics
            .values()
            .map(|t| (t.id, t.name.as_str()))
            .collect()
    }

    /// Removes a member and bumps the group epoch, so the others get its partitions (Kafka's
    /// `consumerGroupFenceMember`). Topics nobody subscribes to any more are forgotten, so
    /// that the next heartbeat does not count their disappearance as another change.
    fn fence(&mut self, member_id: &str, why: &str, group_id: &str) {
        if self.members.remove(member_id).is_none() {
            return;
        }
        tracing::info!(group = group_id, member = member_id, why, "member removed");
        let subscribed = self.subscribed_topic_names();
        self.topics.retain(|name, _| subscribed.contains(name));
        self.group_epoch = self.group_epoch.saturating_add(1);
    }

    /// The earliest instant at which [`expire`](Self::expire) has something to do.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.members
            .values()
            .map(ConsumerMember::next_deadline)
            .min()
    }

    /// Removes the members whose session lapsed or that did not revoke in time. Returns how
    /// many were removed (each bumped the group epoch).
    pub(crate) fn expire(&mut self, now: Instant, group_id: &str) -> u64 {
        let due: Vec<(String, &str)> = self
            .members
            .values()
            .filter_map(|m| {
                let id = m.record.member_id.clone();
                if m.session_deadline <= now {
                    Some((id, "session expired"))
                } else if m.revocation_deadline.is_some_and(|at| at <= now) {
                    Some((
                        id,
                        "did not revoke its partitions within its rebalance timeout",
                    ))
                } else {
                    None
                }
            })
            .collect();
        for (member_id, why) in &due {
            self.fence(member_id, why, group_id);
        }
        due.len() as u64
    }

    /// Kafka's `ConsumerGroup.validateOffsetCommit`: a commit without a member (epoch < 0)
    /// only while the group is empty; a member's commit only at its current epoch.
    pub(crate) fn validate_commit(&self, member_id: &str, epoch: i32) -> Result<(), ResponseError> {
        if epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        self.check_member_epoch(member_id, epoch)
    }

    /// Kafka's `ConsumerGroup.validateOffsetFetch`: a fetch naming no member (null id and a
    /// negative epoch) is anyone's; a member's only at its current epoch.
    pub(crate) fn validate_fetch(
        &self,
        member_id: Option<&str>,
        epoch: i32,
    ) -> Result<(), ResponseError> {
        if member_id.is_none() && epoch < 0 {
            return Ok(());
        }
        self.check_member_epoch(member_id.unwrap_or_default(), epoch)
    }

    /// The member exists (UNKNOWN_MEMBER_ID) and is at `epoch` (STALE_MEMBER_EPOCH).
    fn check_member_epoch(&self, member_id: &str, epoch: i32) -> Result<(), ResponseError> {
        let member = self
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if member.record.member_epoch != epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }
}

/// A member that has never been in the group (Kafka's `ConsumerGroupMember.Builder(id)`).
fn new_member(member_id: &str) -> MemberRecord {
    MemberRecord {
        member_id: member_id.to_owned(),
        instance_id: None,
        rack_id: None,
        client_id: String::new(),
        client_host: String::new(),
        rebalance_timeout_ms: 0,
        subscribed_topic_names: BTreeSet::new(),
        subscribed_topic_regex: String::new(),
        server_assignor: None,
        member_epoch: 0,
        previous_member_epoch: 0,
        state: MemberState::Stable,
        assigned: Partitions::new(),
        pending_revocation: Partitions::new(),
        target: Partitions::new(),
    }
}

/// Client-supplied milliseconds; negative values count as zero.
fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// `now + wait`, capped so the addition cannot overflow.
fn deadline(now: Instant, wait: Duration) -> Instant {
    const LONGEST_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);
    now.checked_add(wait.min(LONGEST_WAIT)).unwrap_or(now)
}
