//! ConsumerGroupHeartbeat and ConsumerGroupDescribe (KIP-848 consumer groups), and the
//! member-epoch check of OffsetFetch v9. The group logic is in [`crate::consumer_group`];
//! this part validates requests as Kafka's `GroupCoordinatorService` does, applies them under
//! the groups lock, persists the group and answers once it is durable.

use std::time::Duration;

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member, TopicPartitions as DescribedTopic,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment, TopicPartitions as AssignedTopic,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, GroupId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::string;
use crate::consumer_group::{
    not_a_consumer_group, validate_regex, Applied, ConsumerGroup, Heartbeat, HeartbeatAnswer,
    Leave, Refusal, TopicCatalog, ASSIGNORS, LEAVE_EPOCH, LEAVE_STATIC_EPOCH,
};
use crate::coordinator::{GroupUnavailable, IfMissing};
use crate::group::{Effects, Group};
use crate::store::{Partitions, Record};
use crate::{lock, GroupCoordinator};

/// ConsumerGroupHeartbeat v1 (KIP-1082) makes clients generate their member ids.
const CONSUMER_GENERATED_MEMBER_ID_VERSION: i16 = 1;

/// `member_type` of a ConsumerGroupDescribe v1 member using the consumer protocol.
const CONSUMER_MEMBER_TYPE: i8 = 1;

impl GroupCoordinator {
    /// ConsumerGroupHeartbeat v0–1: joins (member epoch 0), heartbeats, and leaves (-1, or
    /// -2 for a static member coming back). `topics` resolves subscriptions. Answers once
    /// what the heartbeat changed in the group is durable.
    pub async fn consumer_group_heartbeat(
        &self,
        req: ConsumerGroupHeartbeatRequest,
        version: i16,
        client_id: &str,
        client_host: &str,
        topics: &dyn TopicCatalog,
    ) -> ConsumerGroupHeartbeatResponse {
        let result = match validate(&req, version) {
            Ok(()) if self.is_closed() => {
                Err(Refusal::bare(ResponseError::CoordinatorNotAvailable))
            }
            Ok(()) => {
                self.heartbeat_consumer(req, client_id, client_host, topics)
                    .await
            }
            Err(refusal) => Err(refusal),
        };
        heartbeat_response(result, self.config.consumer_heartbeat_interval)
    }

    async fn heartbeat_consumer(
        &self,
        req: ConsumerGroupHeartbeatRequest,
        client_id: &str,
        client_host: &str,
        topics: &dyn TopicCatalog,
    ) -> Result<HeartbeatAnswer, Refusal> {
        let group_id = req.group_id.to_string();
        let epoch = req.member_epoch;
        let applied = if epoch == LEAVE_EPOCH || epoch == LEAVE_STATIC_EPOCH {
            let leave = Leave {
                member_id: req.member_id.to_string(),
                member_epoch: epoch,
                instance_id: req.instance_id.map(string),
            };
            self.update_group(&group_id, IfMissing::Fail, |group, _, fx| {
                let consumer = group
                    .consumer
                    .as_mut()
                    .ok_or_else(|| not_a_consumer_group(&group_id))?;
                let applied = consumer.leave(&group_id, &leave)?;
                self.persist_consumer(group, applied, fx)
            })
        } else {
            let heartbeat = heartbeat_request(req, client_id, client_host);
            let join = epoch == 0;
            // Only a join creates a group (or takes over an empty classic one).
            let if_missing = if join {
                IfMissing::CreateIfUsed
            } else {
                IfMissing::Fail
            };
            let session = self.config.consumer_session_timeout;
            self.update_group(&group_id, if_missing, |group, now, fx| {
                let existed = group.consumer.is_some();
                let result = group
                    .consumer_group(join)
                    .and_then(|c| c.heartbeat(&group_id, heartbeat, topics, now, session));
                match result {
                    Ok(applied) => {
                        group.forget_classic_past();
                        self.persist_consumer(group, applied, fx)
                    }
                    Err(refusal) => {
                        group.forget_unused_consumer_group(existed);
                        Err(refusal)
                    }
                }
            })
        };
        let (answer, seq) = match applied {
            Ok(result) => result?,
            Err(GroupUnavailable::Closed) => {
                return Err(Refusal::bare(ResponseError::CoordinatorNotAvailable))
            }
            Err(GroupUnavailable::Missing) => return Err(missing_group(&group_id, epoch)),
        };
        if seq > 0 {
            self.store.wait_durable(seq).await.map_err(|error| {
                tracing::error!(%error, group = %group_id, "consumer group not durable");
                Refusal::bare(ResponseError::CoordinatorNotAvailable)
            })?;
        }
        Ok(answer)
    }

    /// Appends the group if the heartbeat changed it, and returns the answer with the
    /// sequence number it must wait for: its own append, or the group's latest one (another
    /// member's heartbeat may have computed what this answer tells).
    fn persist_consumer(
        &self,
        group: &mut Group,
        applied: Applied,
        fx: &mut Effects,
    ) -> Result<(HeartbeatAnswer, u64), Refusal> {
        fx.consumer_rebalances += applied.epoch_bumps;
        if applied.changed {
            let record = group.consumer.as_ref().map(|c| c.record(&group.id));
            if let Some(record) = record {
                match self.store.append(vec![Record::ConsumerGroup(record)]) {
                    Ok(seq) => group.persisted_seq = seq,
                    Err(error) => {
                        tracing::error!(%error, group = %group.id, "cannot persist the consumer group");
                        return Err(Refusal::bare(ResponseError::CoordinatorNotAvailable));
                    }
                }
            }
        }
        Ok((applied.answer, group.persisted_seq))
    }

    /// ConsumerGroupDescribe v0–1: each group's epochs, assignor and members with their
    /// current and target assignments. A group that does not exist, or is a classic group,
    /// answers GROUP_ID_NOT_FOUND with Kafka's message.
    pub async fn consumer_group_describe(
        &self,
        req: ConsumerGroupDescribeRequest,
        version: i16,
    ) -> ConsumerGroupDescribeResponse {
        let closed = self.is_closed();
        let groups = lock(&self.groups);
        let described = req
            .group_ids
            .into_iter()
            .map(|group_id| {
                let found = groups.get(group_id.as_str());
                let refusal = match found.map(|g| g.consumer.as_ref()) {
                    _ if closed => Refusal::bare(ResponseError::CoordinatorNotAvailable),
                    Some(Some(consumer)) => return described_group(group_id, consumer, version),
                    Some(None) => not_a_consumer_group(&group_id),
                    None => Refusal::new(
                        ResponseError::GroupIdNotFound,
                        format!("Group {} not found.", group_id.as_str()),
                    ),
                };
                DescribedGroup::default()
                    .with_group_id(group_id)
                    .with_error_code(refusal.error.code())
                    .with_error_message(refusal.message.map(StrBytes::from_string))
            })
            .collect();
        drop(groups);
        ConsumerGroupDescribeResponse::default().with_groups(described)
    }

    /// The member check of OffsetFetch v9 (Kafka's `validateOffsetFetch`): only consumer
    /// groups check it; a request naming no member (null id, negative epoch) is anyone's.
    pub fn validate_offset_fetch(
        &self,
        group_id: &str,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<(), ResponseError> {
        let groups = lock(&self.groups);
        match groups.get(group_id).and_then(|g| g.consumer.as_ref()) {
            Some(consumer) => consumer.validate_fetch(member_id, member_epoch),
            None => Ok(()),
        }
    }
}

/// Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid`, plus its regex check.
fn validate(req: &ConsumerGroupHeartbeatRequest, version: i16) -> Result<(), Refusal> {
    let invalid = |message: &str| Err(Refusal::new(ResponseError::InvalidRequest, message));
    let epoch = req.member_epoch;
    let needs_member_id =
        version >= CONSUMER_GENERATED_MEMBER_ID_VERSION || epoch > 0 || epoch == LEAVE_EPOCH;
    if needs_member_id && req.member_id.is_empty() {
        return invalid("MemberId can't be empty.");
    }
    if req.group_id.is_empty() {
        return invalid("GroupId can't be empty.");
    }
    if req.instance_id.as_ref().is_some_and(|id| id.is_empty()) {
        return invalid("InstanceId can't be empty.");
    }
    if req.rack_id.as_ref().is_some_and(|id| id.is_empty()) {
        return invalid("RackId can't be empty.");
    }
    if epoch == 0 {
        if req.rebalance_timeout_ms == -1 {
            return invalid("RebalanceTimeoutMs must be provided in first request.");
        }
        if req
            .topic_partitions
            .as_ref()
            .is_none_or(|owned| !owned.is_empty())
        {
            return invalid("TopicPartitions must be empty when (re-)joining.");
        }
        if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
            return invalid(
                "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when \
                 (re-)joining.",
            );
        }
    } else if epoch == LEAVE_STATIC_EPOCH {
        if req.instance_id.is_none() {
            return invalid("InstanceId can't be null.");
        }
    } else if epoch < LEAVE_STATIC_EPOCH {
        return invalid("MemberEpoch is invalid.");
    }
    if let Some(assignor) = req.server_assignor.as_deref() {
        if !ASSIGNORS.contains(&assignor) {
            return Err(Refusal::new(
                ResponseError::UnsupportedAssignor,
                format!(
                    "ServerAssignor {assignor} is not supported. Supported assignors: {}.",
                    ASSIGNORS.join(", ")
                ),
            ));
        }
    }
    let regex = req.subscribed_topic_regex.as_deref().unwrap_or_default();
    if let Some(reason) = (!regex.is_empty()).then(|| validate_regex(regex)).flatten() {
        return Err(Refusal::new(
            ResponseError::InvalidRegularExpression,
            format!("SubscribedTopicRegex `{regex}` is not a valid regular expression: {reason}."),
        ));
    }
    Ok(())
}

/// The heartbeat in the group's terms. A v0 member joining without an id gets one here
/// (from v1 clients generate their own).
fn heartbeat_request(
    req: ConsumerGroupHeartbeatRequest,
    client_id: &str,
    client_host: &str,
) -> Heartbeat {
    let member_id = if req.member_id.is_empty() {
        Uuid::new_v4().to_string()
    } else {
        string(req.member_id)
    };
    let owned = req.topic_partitions.map(|topics| {
        let mut owned = Partitions::new();
        for topic in topics {
            owned
                .entry(topic.topic_id)
                .or_default()
                .extend(topic.partitions);
        }
        owned
    });
    Heartbeat {
        member_id,
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.map(string),
        rack_id: req.rack_id.map(string),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req
            .subscribed_topic_names
            .map(|names| names.into_iter().map(|name| string(name.0)).collect()),
        subscribed_topic_regex: req.subscribed_topic_regex.map(string),
        server_assignor: req.server_assignor.map(string),
        owned,
        client_id: client_id.to_owned(),
        client_host: client_host.to_owned(),
    }
}

/// What a request for a group the coordinator does not have gets: a heartbeat Kafka's
/// "Consumer group ... not found.", a leave its plain "Group ... not found.".
fn missing_group(group_id: &str, epoch: i32) -> Refusal {
    let message = if epoch < 0 {
        format!("Group {group_id} not found.")
    } else {
        format!("Consumer group {group_id} not found.")
    };
    Refusal::new(ResponseError::GroupIdNotFound, message)
}

fn heartbeat_response(
    result: Result<HeartbeatAnswer, Refusal>,
    interval: Duration,
) -> ConsumerGroupHeartbeatResponse {
    let mut response = ConsumerGroupHeartbeatResponse::default();
    match result {
        Ok(answer) => {
            // A leave's answer carries no interval: there is no next heartbeat.
            if answer.member_epoch >= 0 {
                response.heartbeat_interval_ms =
                    i32::try_from(interval.as_millis()).unwrap_or(i32::MAX);
            }
            response.member_id = Some(StrBytes::from_string(answer.member_id));
            response.member_epoch = answer.member_epoch;
            response.assignment = answer.assignment.map(|partitions| {
                let topics = partitions
                    .into_iter()
                    .map(|(topic_id, indexes)| {
                        AssignedTopic::default()
                            .with_topic_id(topic_id)
                            .with_partitions(indexes.into_iter().collect())
                    })
                    .collect();
                Assignment::default().with_topic_partitions(topics)
            });
        }
        Err(refusal) => {
            response.error_code = refusal.error.code();
            response.error_message = refusal.message.map(StrBytes::from_string);
        }
    }
    response
}

/// Kafka's `ConsumerGroup.asDescribedGroup`.
fn described_group(group_id: GroupId, group: &ConsumerGroup, version: i16) -> DescribedGroup {
    let names = group.topic_names_by_id();
    let assignment = |partitions: &Partitions| {
        let topics = partitions
            .iter()
            .filter_map(|(topic_id, indexes)| {
                let name = names.get(topic_id)?;
                Some(
                    DescribedTopic::default()
                        .with_topic_id(*topic_id)
                        .with_topic_name(TopicName(StrBytes::from_string((*name).to_owned())))
                        .with_partitions(indexes.iter().copied().collect()),
                )
            })
            .collect();
        DescribedAssignment::default().with_topic_partitions(topics)
    };
    let members = group
        .members
        .values()
        .map(|member| {
            let m = &member.record;
            let regex = (!m.subscribed_topic_regex.is_empty())
                .then(|| StrBytes::from_string(m.subscribed_topic_regex.clone()));
            let described = Member::default()
                .with_member_id(StrBytes::from_string(m.member_id.clone()))
                .with_instance_id(m.instance_id.clone().map(StrBytes::from_string))
                .with_rack_id(m.rack_id.clone().map(StrBytes::from_string))
                .with_member_epoch(m.member_epoch)
                .with_client_id(StrBytes::from_string(m.client_id.clone()))
                .with_client_host(StrBytes::from_string(m.client_host.clone()))
                .with_subscribed_topic_names(
                    m.subscribed_topic_names
                        .iter()
                        .map(|name| TopicName(StrBytes::from_string(name.clone())))
                        .collect(),
                )
                .with_subscribed_topic_regex(regex)
                .with_assignment(assignment(&m.assigned))
                .with_target_assignment(assignment(&m.target));
            if version >= 1 {
                described.with_member_type(CONSUMER_MEMBER_TYPE)
            } else {
                described
            }
        })
        .collect();
    DescribedGroup::default()
        .with_group_id(group_id)
        .with_group_state(StrBytes::from_static_str(group.state().as_str()))
        .with_group_epoch(group.group_epoch)
        .with_assignment_epoch(group.assignment_epoch)
        .with_assignor_name(StrBytes::from_static_str(group.preferred_assignor()))
        .with_members(members)
}
