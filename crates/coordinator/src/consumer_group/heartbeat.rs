//! The group side of ConsumerGroupHeartbeat, following Kafka's `GroupMetadataManager`
//! (`consumerGroupHeartbeat` and `consumerGroupLeave`): find or create the member, take over
//! what the heartbeat changed, bump the group epoch if the assignment inputs changed, compute
//! the target assignment if it is behind, and reconcile the member towards it.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::time::Instant;
use uuid::Uuid;

use super::assignor::{assign, MemberSpec};
use super::reconcile::{is_subset, Reconciliation};
use super::{
    deadline, millis, new_member, ConsumerGroup, ConsumerMember, Refusal, TopicCatalog,
    LEAVE_STATIC_EPOCH,
};
use crate::store::{MemberRecord, MemberState, Partitions};

/// A ConsumerGroupHeartbeat that is not a leave, validated and normalised. Optional fields
/// are `None` when the member did not send them ("unchanged since the last heartbeat").
#[derive(Debug, Clone)]
pub(crate) struct Heartbeat {
    pub(crate) member_id: String,
    pub(crate) member_epoch: i32,
    pub(crate) instance_id: Option<String>,
    pub(crate) rack_id: Option<String>,
    /// -1 when unchanged.
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) subscribed_topic_names: Option<Vec<String>>,
    pub(crate) subscribed_topic_regex: Option<String>,
    pub(crate) server_assignor: Option<String>,
    /// The partitions the member owns.
    pub(crate) owned: Option<Partitions>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
}

impl Heartbeat {
    /// A full heartbeat (a join, or a member resending everything after an error) is always
    /// answered with the assignment; others only when it changed (Kafka's rule).
    fn is_full(&self) -> bool {
        self.member_epoch == 0
            || (self.rebalance_timeout_ms != -1
                && (self.subscribed_topic_names.is_some() || self.subscribed_topic_regex.is_some())
                && self.owned.is_some())
    }
}

/// A ConsumerGroupHeartbeat with member epoch -1 (leave) or -2 (static member leaving for
/// now).
#[derive(Debug, Clone)]
pub(crate) struct Leave {
    pub(crate) member_id: String,
    pub(crate) member_epoch: i32,
    pub(crate) instance_id: Option<String>,
}

/// What the member is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeartbeatAnswer {
    pub(crate) member_id: String,
    pub(crate) member_epoch: i32,
    /// The partitions it owns now, when it must be told.
    pub(crate) assignment: Option<Partitions>,
}

/// A successful heartbeat or leave, with what the coordinator must persist.
#[derive(Debug)]
pub(crate) struct Applied {
    pub(crate) answer: HeartbeatAnswer,
    /// The group changed: persist it before answering.
    pub(crate) changed: bool,
    /// How often the group epoch went up.
    pub(crate) epoch_bumps: u64,
}

/// The member a heartbeat is about, before the heartbeat changes it.
struct Resolved {
    member: MemberRecord,
    /// Not yet in the group.
    is_new: bool,
    /// The member id of a static member's previous incarnation, which this one replaces.
    replaces: Option<String>,
}

impl ConsumerGroup {
    /// A heartbeat of a joining or joined member.
    pub(crate) fn heartbeat(
        &mut self,
        group_id: &str,
        request: Heartbeat,
        catalog: &dyn TopicCatalog,
        now: Instant,
        session_timeout: Duration,
    ) -> Result<Applied, Refusal> {
        let resolved = self.resolve(group_id, &request)?;
        let full = request.is_full();
        let reported = request.owned.clone();
        let before = resolved.member.clone();
        let updated = updated_member(resolved.member, request);
        let subscription_changed = updated.subscribed_topic_names != before.subscribed_topic_names
            || updated.subscribed_topic_regex != before.subscribed_topic_regex;
        let mut changed = resolved.is_new || resolved.replaces.is_some() || updated != before;
        if let Some(old_id) = &resolved.replaces {
            tracing::info!(group = group_id, member = %updated.member_id, replaces = %old_id,
                "static member rejoins");
            self.members.remove(old_id);
        } else if resolved.is_new {
            tracing::info!(group = group_id, member = %updated.member_id, "member joins");
        }
        let member_id = updated.member_id.clone();
        self.put_member(updated, now, session_timeout);

        let epoch_bumps = self.maybe_bump_epoch(group_id, subscription_changed, catalog);
        changed |= epoch_bumps > 0;
        if self.group_epoch > self.assignment_epoch {
            self.compute_target(group_id);
            changed = true;
        }
        changed |= self.reconcile_member(group_id, &member_id, reported.as_ref(), now);

        let member = &self.members[&member_id].record;
        let assignment_changed = member.assigned != before.assigned;
        Ok(Applied {
            answer: HeartbeatAnswer {
                member_id,
                member_epoch: member.member_epoch,
                assignment: (full || assignment_changed).then(|| member.assigned.clone()),
            },
            changed,
            epoch_bumps,
        })
    }

    /// A member leaving (epoch -1: removed, the group epoch goes up) or a static member
    /// leaving for now (epoch -2: it keeps its partitions until its session lapses or a new
    /// incarnation takes its place).
    pub(crate) fn leave(&mut self, group_id: &str, request: &Leave) -> Result<Applied, Refusal> {
        let member_id = match &request.instance_id {
            None => self
                .members
                .get(&request.member_id)
                .map(|m| m.record.member_id.clone())
                .ok_or_else(|| unknown_member(group_id, &request.member_id))?,
            Some(instance) => {
                let member = self
                    .static_member(instance)
                    .ok_or_else(|| unknown_instance(instance))?;
                check_not_fenced(member, &request.member_id, instance)?;
                member.record.member_id.clone()
            }
        };
        let answer = HeartbeatAnswer {
            member_id: member_id.clone(),
            member_epoch: request.member_epoch,
            assignment: None,
        };
        if request.instance_id.is_some() && request.member_epoch == LEAVE_STATIC_EPOCH {
            if let Some(member) = self.members.get_mut(&member_id) {
                tracing::info!(group = group_id, member = %member_id,
                    "static member left temporarily");
                member.record.member_epoch = LEAVE_STATIC_EPOCH;
                member.record.pending_revocation = Partitions::new();
                member.revocation_deadline = None;
            }
            return Ok(Applied {
                answer,
                changed: true,
                epoch_bumps: 0,
            });
        }
        self.fence(&member_id, "left the group", group_id);
        Ok(Applied {
            answer,
            changed: true,
            epoch_bumps: 1,
        })
    }

    /// Finds the member the heartbeat is about (Kafka's
    /// `getOrMaybeSubscribe{Dynamic,Static}ConsumerGroupMember`): an existing member must be
    /// at a valid epoch; epoch 0 creates a member; a static member replaces its previous
    /// incarnation only if that one left with epoch -2.
    fn resolve(&self, group_id: &str, request: &Heartbeat) -> Result<Resolved, Refusal> {
        let existing = |member: &ConsumerMember| Resolved {
            member: member.record.clone(),
            is_new: false,
            replaces: None,
        };
        let Some(instance) = &request.instance_id else {
            return match self.members.get(&request.member_id) {
                Some(member) => {
                    check_epoch(&member.record, request)?;
                    Ok(existing(member))
                }
                None if request.member_epoch == 0 => Ok(brand_new(&request.member_id)),
                None => Err(unknown_member(group_id, &request.member_id)),
            };
        };
        let previous = self.static_member(instance);
        if request.member_epoch != 0 {
            let member = previous.ok_or_else(|| unknown_instance(instance))?;
            check_not_fenced(member, &request.member_id, instance)?;
            check_epoch(&member.record, request)?;
            return Ok(existing(member));
        }
        match previous {
            None => Ok(self
                .members
                .get(&request.member_id)
                .map_or_else(|| brand_new(&request.member_id), existing)),
            Some(member) if member.record.member_epoch != LEAVE_STATIC_EPOCH => Err(Refusal::new(
                ResponseError::UnreleasedInstanceId,
                format!(
                    "Static member {} with instance id {instance} cannot join the group \
                         because the instance id is owned by {} member.",
                    request.member_id, member.record.member_id
                ),
            )),
            Some(member) => {
                // The new incarnation takes the previous one's place, its partitions and its
                // target, at epoch 0 (it reconciles to the target epoch at once).
                let mut record = member.record.clone();
                record.member_id = request.member_id.clone();
                record.member_epoch = 0;
                record.previous_member_epoch = 0;
                let replaces = (member.record.member_id != request.member_id)
                    .then(|| member.record.member_id.clone());
                Ok(Resolved {
                    member: record,
                    is_new: false,
                    replaces,
                })
            }
        }
    }

    /// Inserts or updates the member and restarts its session.
    fn put_member(&mut self, record: MemberRecord, now: Instant, session_timeout: Duration) {
        let session_deadline = deadline(now, session_timeout);
        match self.members.get_mut(&record.member_id) {
            Some(member) => {
                member.record = record;
                member.session_deadline = session_deadline;
            }
            None => {
                let member = ConsumerMember {
                    record,
                    session_deadline,
                    revocation_deadline: None,
                };
                self.members.insert(member.record.member_id.clone(), member);
            }
        }
    }

    /// Bumps the group epoch if a subscription changed or the subscribed topics did (created,
    /// deleted, or given more partitions). Returns the number of bumps (0 or 1).
    fn maybe_bump_epoch(
        &mut self,
        group_id: &str,
        subscription_changed: bool,
        catalog: &dyn TopicCatalog,
    ) -> u64 {
        let metadata = self.subscription_metadata(catalog);
        let topics_changed = metadata != self.topics;
        if !subscription_changed && !topics_changed {
            return 0;
        }
        self.topics = metadata;
        self.group_epoch = self.group_epoch.saturating_add(1);
        tracing::info!(
            group = group_id,
            epoch = self.group_epoch,
            subscription_changed,
            topics_changed,
            "bumped the group epoch"
        );
        1
    }

    /// Computes the target assignment of every member for the group epoch.
    fn compute_target(&mut self, group_id: &str) {
        let assignor = self.preferred_assignor();
        let records: Vec<MemberRecord> = self.members.values().map(|m| m.record.clone()).collect();
        let subscriptions: Vec<BTreeSet<String>> =
            records.iter().map(|m| self.member_topics(m)).collect();
        let specs: Vec<MemberSpec<'_>> = records
            .iter()
            .zip(subscriptions)
            .map(|(m, topics)| MemberSpec {
                member_id: &m.member_id,
                instance_id: m.instance_id.as_deref(),
                topics,
                previous: &m.target,
            })
            .collect();
        let mut targets = assign(assignor, &specs, &self.topics);
        for member in self.members.values_mut() {
            member.record.target = targets.remove(&member.record.member_id).unwrap_or_default();
        }
        self.assignment_epoch = self.group_epoch;
        tracing::info!(
            group = group_id,
            epoch = self.assignment_epoch,
            assignor,
            "computed a new target assignment"
        );
    }

    /// Moves the member towards its target if it is not there yet. True if it moved.
    fn reconcile_member(
        &mut self,
        group_id: &str,
        member_id: &str,
        reported: Option<&Partitions>,
        now: Instant,
    ) -> bool {
        let owned_by_others = self.owned_by_others(member_id);
        let Some(record) = self.members.get(member_id).map(|m| m.record.clone()) else {
            return false;
        };
        let subscribed: BTreeSet<Uuid> = self
            .member_topics(&record)
            .iter()
            .filter_map(|name| self.topics.get(name).map(|t| t.id))
            .collect();
        let next = Reconciliation {
            target_epoch: self.assignment_epoch,
            owned_by_others: &owned_by_others,
            reported,
            subscribed: &subscribed,
        }
        .next(&record);
        if next == record {
            return false;
        }
        tracing::debug!(group = group_id, member = member_id, epoch = next.member_epoch,
            state = ?next.state, "member reconciled");
        let Some(member) = self.members.get_mut(member_id) else {
            return false;
        };
        member.revocation_deadline = (next.state == MemberState::UnrevokedPartitions)
            .then(|| deadline(now, millis(next.rebalance_timeout_ms)));
        member.record = next;
        true
    }

    /// The partitions that members other than `member_id` own or are still revoking.
    fn owned_by_others(&self, member_id: &str) -> HashSet<(Uuid, i32)> {
        self.members
            .values()
            .filter(|m| m.record.member_id != member_id)
            .flat_map(|m| m.record.assigned.iter().chain(&m.record.pending_revocation))
            .flat_map(|(topic, partitions)| partitions.iter().map(|p| (*topic, *p)))
            .collect()
    }
}

/// A member joining for the first time.
fn brand_new(member_id: &str) -> Resolved {
    Resolved {
        member: new_member(member_id),
        is_new: true,
        replaces: None,
    }
}

/// The member as the heartbeat leaves it: every field the heartbeat sent replaces the
/// member's.
fn updated_member(mut member: MemberRecord, request: Heartbeat) -> MemberRecord {
    if let Some(instance_id) = request.instance_id {
        member.instance_id = Some(instance_id);
    }
    if let Some(rack_id) = request.rack_id {
        member.rack_id = Some(rack_id);
    }
    if request.rebalance_timeout_ms != -1 {
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
    }
    if let Some(assignor) = request.server_assignor {
        member.server_assignor = Some(assignor);
    }
    if let Some(names) = request.subscribed_topic_names {
        member.subscribed_topic_names = names.into_iter().collect();
    }
    if let Some(regex) = request.subscribed_topic_regex {
        member.subscribed_topic_regex = regex;
    }
    member.client_id = request.client_id;
    member.client_host = request.client_host;
    member
}

/// Kafka's `throwIfConsumerGroupMemberEpochIsInvalid`: an epoch ahead of the member's is
/// fenced; one behind is fenced too, unless it is the previous epoch and the member owns
/// nothing it was not given (its answer with the new epoch was lost).
fn check_epoch(member: &MemberRecord, request: &Heartbeat) -> Result<(), Refusal> {
    let (received, known) = (request.member_epoch, member.member_epoch);
    let which = if received > known {
        "greater"
    } else if received < known
        && (received != member.previous_member_epoch
            || !is_subset(request.owned.as_ref(), &member.assigned))
    {
        "smaller"
    } else {
        return Ok(());
    };
    Err(Refusal::new(
        ResponseError::FencedMemberEpoch,
        format!(
            "The consumer group member has a {which} member epoch ({received}) than the one \
             known by the group coordinator ({known}). The member must abandon all its \
             partitions and rejoin."
        ),
    ))
}

/// A static member's previous incarnation is fenced by the current one.
fn check_not_fenced(
    member: &ConsumerMember,
    member_id: &str,
    instance: &str,
) -> Result<(), Refusal> {
    if member.record.member_id == member_id {
        return Ok(());
    }
    Err(Refusal::new(
        ResponseError::FencedInstanceId,
        format!(
            "Static member {member_id} with instance id {instance} was fenced by member {}.",
            member.record.member_id
        ),
    ))
}

fn unknown_member(group_id: &str, member_id: &str) -> Refusal {
    Refusal::new(
        ResponseError::UnknownMemberId,
        format!("Member {member_id} is not a member of group {group_id}."),
    )
}

fn unknown_instance(instance: &str) -> Refusal {
    Refusal::new(
        ResponseError::UnknownMemberId,
        format!("Instance id {instance} is unknown."),
    )
}
