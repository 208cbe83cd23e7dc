//! Kafka 4's rules for a group id used by both protocols: a group is either classic or a
//! consumer group. An empty group of one protocol becomes a group of the other when a member
//! of the other protocol joins it (Kafka writes tombstones for the old group; here the first
//! record of the new protocol supersedes the old one in the offsets file, and its committed
//! offsets stay). A non-empty group refuses members of the other protocol, as Kafka does with
//! `group.consumer.migration.policy=disabled`: online migration of a live group is not
//! implemented.

use kafka_protocol::ResponseError;

use super::{ConsumerGroup, Refusal};
use crate::group::{Group, GroupState};

/// Kafka's protocol type of consumers, which consumer groups report.
pub(crate) const CONSUMER_GROUP_TYPE: &str = "consumer";
/// The group type of classic groups (ListGroups v5).
pub(crate) const CLASSIC_GROUP_TYPE: &str = "classic";

impl Group {
    /// No members of either protocol (DeleteGroups and OffsetDelete may delete it).
    pub(crate) fn is_empty(&self) -> bool {
        self.is_classic_empty() && self.consumer.as_ref().is_none_or(ConsumerGroup::is_empty)
    }

    /// No classic members, nor a classic rebalance under way.
    fn is_classic_empty(&self) -> bool {
        self.state == GroupState::Empty && self.members.is_empty()
    }

    /// `"consumer"` for a consumer group, `"classic"` otherwise (ListGroups v5).
    pub(crate) fn group_type(&self) -> &'static str {
        if self.consumer.is_some() {
            CONSUMER_GROUP_TYPE
        } else {
            CLASSIC_GROUP_TYPE
        }
    }

    /// The state ListGroups reports: the consumer group's, or the classic one.
    pub(crate) fn state_name(&self) -> &'static str {
        match &self.consumer {
            Some(consumer) => consumer.state().as_str(),
            None => self.state.as_str(),
        }
    }

    /// Why a JoinGroup may not join this group, if it may not. An empty consumer group is
    /// turned into a classic one (Kafka's `maybeDeleteEmptyConsumerGroup`).
    pub(crate) fn classic_join_refusal(&mut self) -> Option<ResponseError> {
        match &self.consumer {
            Some(consumer) if !consumer.is_empty() => {
                Some(ResponseError::InconsistentGroupProtocol)
            }
            Some(_) => {
                tracing::info!(group = %self.id, "empty consumer group becomes a classic group");
                self.consumer = None;
                None
            }
            None => None,
        }
    }

    /// The consumer group a ConsumerGroupHeartbeat is for. With `create` (a join, epoch 0), a
    /// group without members becomes a consumer group; a classic group with members answers
    /// GROUP_ID_NOT_FOUND, as Kafka does when it may not upgrade the group.
    pub(crate) fn consumer_group(&mut self, create: bool) -> Result<&mut ConsumerGroup, Refusal> {
        if self.consumer.is_none() {
            if !create {
                return Err(not_a_consumer_group(&self.id));
            }
            if !self.is_classic_empty() {
                return Err(Refusal::new(
                    ResponseError::GroupIdNotFound,
                    format!(
                        "Cannot upgrade classic group {} to consumer group because online \
                         upgrade is disabled.",
                        self.id
                    ),
                ));
            }
            self.consumer = Some(ConsumerGroup::default());
        }
        self.consumer
            .as_mut()
            .ok_or_else(|| not_a_consumer_group(&self.id))
    }

    /// Undoes [`consumer_group`](Self::consumer_group)'s conversion when the heartbeat that
    /// caused it failed: an empty consumer group nothing was written for is no group at all.
    pub(crate) fn forget_unused_consumer_group(&mut self, existed: bool) {
        let unused = self
            .consumer
            .as_ref()
            .is_some_and(|c| c.is_empty() && c.group_epoch == 0);
        if !existed && unused {
            self.consumer = None;
        }
    }

    /// The classic fields of a group that has become a consumer group describe a group that
    /// no longer exists (the consumer group's record supersedes them on disk too).
    pub(crate) fn forget_classic_past(&mut self) {
        if self.consumer.is_some() && self.is_classic_empty() {
            self.generation = 0;
            self.protocol_type = None;
            self.protocol = None;
            self.leader = None;
        }
    }
}

pub(crate) fn not_a_consumer_group(group_id: &str) -> Refusal {
    Refusal::new(
        ResponseError::GroupIdNotFound,
        format!("Group {group_id} is not a consumer group."),
    )
}
