//! Changing consumer groups: resetting a group's committed offsets of one topic (ListOffsets,
//! by time too, then OffsetCommit), deleting a group (DeleteGroups) and deleting its
//! committed offsets of one topic (OffsetDelete).
//!
//! Offsets are reset as Kafka's `kafka-consumer-groups --reset-offsets` resets them: only
//! while the group has no members (it is `Empty`, or unknown: a reset then creates it), since
//! members would overwrite the new offsets with their own commits. The commit comes from a
//! consumer with the group's id that never subscribes, which the coordinator takes only while
//! the group is empty, so a member joining between the check and the commit makes the commit
//! fail rather than race with it.
//!
//! rdkafka exposes DeleteGroups and, through a consumer, ListOffsets and OffsetCommit, but not
//! OffsetDelete: that one goes over [`wire`](super::wire) to the group's coordinator, found
//! with FindCoordinator.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::{
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, OffsetDeleteRequest,
    OffsetDeleteResponse, TopicName,
};
use kafka_protocol::protocol::{Message, StrBytes};
use kafka_protocol::ResponseError;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::groups::{summary, validate_group_id, DEAD};
use super::topic_admin::{broker_error, select_partitions};
use super::topics::{admin_options, broker_address};
use super::view::{
    GroupSummary, PartitionReset, ResetOffsetsAnswer, ResetOffsetsRequest, ResetTarget,
};
use super::wire::Connection;
use super::{not_found_topic, validate_topic_name, Cluster, ClusterError, REQUEST_TIMEOUT};

/// The state of a group without members.
const EMPTY: &str = "Empty";

/// FindCoordinator's key type of a consumer group.
const GROUP_KEY: i8 = 0;

/// How long OffsetDelete keeps trying while the coordinator moves or loads the group.
const COORDINATOR_WAIT: Duration = Duration::from_secs(10);

/// One partition's offsets, as a reset computes from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PartitionOffsets {
    partition: i32,
    committed: Option<i64>,
    earliest: i64,
    latest: i64,
    /// The first offset at or after the reset's time (a timestamp target only); `None` when
    /// no record is.
    at_time: Option<i64>,
}

impl Cluster {
    /// Computes the group's new committed offsets of one topic and, unless `dry_run`,
    /// commits them. `Conflict` while the group has members, or when a shift meets a
    /// partition without a committed offset.
    pub async fn reset_offsets(
        &self,
        group_id: &str,
        request: ResetOffsetsRequest,
    ) -> Result<ResetOffsetsAnswer, ClusterError> {
        validate_group_id(group_id)?;
        validate_topic_name(&request.topic)?;
        let layout = self.topic_layout(&request.topic).await?;
        let partitions = select_partitions(&layout, request.partitions.as_deref())?;
        let group_id = group_id.to_string();
        self.blocking(move |cluster| cluster.reset_offsets_now(&group_id, &request, &partitions))
            .await
    }

    /// Deletes an empty group with its committed offsets. `NotFound` for a group the cluster
    /// does not know, `Conflict` while it has members.
    pub async fn delete_group(&self, group_id: &str) -> Result<(), ClusterError> {
        validate_group_id(group_id)?;
        let results = self
            .inner
            .admin
            .delete_groups(&[group_id], &admin_options())
            .await?;
        for result in results {
            let Err((_, code)) = result else { continue };
            return Err(match code {
                RDKafkaErrorCode::GroupIdNotFound => no_group(group_id),
                RDKafkaErrorCode::NonEmptyGroup => {
                    let state = self.group_state_text(group_id).await;
                    ClusterError::Conflict(format!(
                        "consumer group {group_id:?} is not empty{state}: stop its consumers \
                         before deleting it"
                    ))
                }
                RDKafkaErrorCode::InvalidGroupId => ClusterError::Invalid(format!(
                    "the cluster refused group id {group_id:?}: {code}"
                )),
                other => ClusterError::Kafka(KafkaError::AdminOp(other)),
            });
        }
        Ok(())
    }

    /// Deletes the group's committed offsets of every partition of `topic` (OffsetDelete).
    /// `NotFound` for an unknown group or topic; `Conflict` while the group's members are
    /// subscribed to the topic.
    pub async fn delete_group_offsets(
        &self,
        group_id: &str,
        topic: &str,
    ) -> Result<(), ClusterError> {
        validate_group_id(group_id)?;
        validate_topic_name(topic)?;
        let layout = self.topic_layout(topic).await?;
        let partitions = layout
            .partitions
            .iter()
            .map(|p| OffsetDeleteRequestPartition::default().with_partition_index(p.id))
            .collect();
        let request = OffsetDeleteRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group_id.to_string())))
            .with_topics(vec![OffsetDeleteRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(partitions)]);
        let deadline = Instant::now() + COORDINATOR_WAIT;
        loop {
            let retry = match self.send_offset_delete(group_id, &request).await {
                Ok(response) => match offset_delete_outcome(group_id, topic, &response) {
                    Outcome::Done(result) => return result,
                    Outcome::Retry(reason) => reason,
                },
                Err(Attempt::Final(error)) => return Err(error),
                Err(Attempt::Retry(reason)) => reason,
            };
            if Instant::now() >= deadline {
                return Err(ClusterError::Unavailable(format!(
                    "the coordinator of consumer group {group_id:?} did not take OffsetDelete \
                     within {COORDINATOR_WAIT:?}: {retry}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn reset_offsets_now(
        &self,
        group_id: &str,
        request: &ResetOffsetsRequest,
        partitions: &[i32],
    ) -> Result<ResetOffsetsAnswer, ClusterError> {
        self.refuse_active_group(group_id)?;
        let topic = request.topic.as_str();
        let client = self.offsets_client(group_id, "group-offsets-reset")?;
        let mut wanted = TopicPartitionList::new();
        for partition in partitions {
            wanted.add_partition(topic, *partition);
        }
        let committed = committed_offsets(&client, &wanted)?;
        let at_time = match request.to {
            ResetTarget::Timestamp(millis) => self.first_offsets_at(topic, partitions, millis)?,
            _ => BTreeMap::new(),
        };
        let mut offsets = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let (earliest, latest) = self.watermarks(topic, *partition)?;
            offsets.push(PartitionOffsets {
                partition: *partition,
                committed: committed.get(partition).copied(),
                earliest,
                latest,
                at_time: at_time.get(partition).copied().flatten(),
            });
        }
        let resets = plan(request.to, &offsets).map_err(|unshiftable| {
            ClusterError::Conflict(format!(
                "consumer group {group_id:?} has no committed offset in partition{} {} of \
                 topic {topic:?} to shift from; reset {} to earliest, latest, a timestamp or \
                 an offset instead",
                if unshiftable.len() == 1 { "" } else { "s" },
                list(&unshiftable),
                if unshiftable.len() == 1 { "it" } else { "them" },
            ))
        })?;
        if !request.dry_run {
            self.commit_resets(&client, group_id, topic, &resets)?;
        }
        Ok(ResetOffsetsAnswer {
            group_id: group_id.to_string(),
            topic: topic.to_string(),
            dry_run: request.dry_run,
            partitions: resets,
        })
    }

    /// Commits the new offsets, then reads them back: librdkafka reports a commit refused
    /// for some partitions only as a success.
    fn commit_resets(
        &self,
        client: &BaseConsumer,
        group_id: &str,
        topic: &str,
        resets: &[PartitionReset],
    ) -> Result<(), ClusterError> {
        let mut commit = TopicPartitionList::new();
        let mut wanted = TopicPartitionList::new();
        for reset in resets {
            commit.add_partition_offset(
                topic,
                reset.partition,
                Offset::Offset(reset.new_offset),
            )?;
            wanted.add_partition(topic, reset.partition);
        }
        client
            .commit(&commit, CommitMode::Sync)
            .map_err(|error| refused_commit(group_id, error))?;
        let kept = committed_offsets(client, &wanted)?;
        let lost: Vec<i32> = resets
            .iter()
            .filter(|reset| kept.get(&reset.partition) != Some(&reset.new_offset))
            .map(|reset| reset.partition)
            .collect();
        if !lost.is_empty() {
            return Err(ClusterError::Conflict(format!(
                "the cluster did not keep the new offsets of consumer group {group_id:?} in \
                 partitions {} of topic {topic:?}: a member may have joined or committed \
                 meanwhile; describe the group and try again",
                list(&lost)
            )));
        }
        Ok(())
    }

    /// `Conflict` unless the group is empty or unknown. Blocks.
    fn refuse_active_group(&self, group_id: &str) -> Result<(), ClusterError> {
        let Some(group) = self.group_now(group_id)? else {
            return Ok(());
        };
        if group.state == EMPTY && group.members.is_empty() {
            return Ok(());
        }
        Err(ClusterError::Conflict(format!(
            "consumer group {group_id:?} is active{}: its offsets can be reset only while it \
             has no members; stop its consumers first",
            state_text(&group)
        )))
    }

    /// The group as DescribeGroups reports it; `None` when the cluster does not know it.
    /// Blocks.
    fn group_now(&self, group_id: &str) -> Result<Option<GroupSummary>, ClusterError> {
        let listed = self
            .inner
            .metadata
            .fetch_group_list(Some(group_id), REQUEST_TIMEOUT)?;
        Ok(listed
            .groups()
            .iter()
            .find(|group| group.name() == group_id && group.state() != DEAD)
            .map(summary))
    }

    /// ` (2 members, state Stable)`, or nothing when the group cannot be described.
    async fn group_state_text(&self, group_id: &str) -> String {
        let group_id = group_id.to_string();
        match self
            .blocking(move |cluster| cluster.group_now(&group_id))
            .await
        {
            Ok(Some(group)) => state_text(&group),
            _ => String::new(),
        }
    }

    /// The first offset of each partition whose record timestamp is at or after `millis`
    /// (ListOffsets by time); `None` where no record is. Blocks.
    fn first_offsets_at(
        &self,
        topic: &str,
        partitions: &[i32],
        millis: i64,
    ) -> Result<BTreeMap<i32, Option<i64>>, ClusterError> {
        let mut times = TopicPartitionList::new();
        for partition in partitions {
            times.add_partition_offset(topic, *partition, Offset::Offset(millis))?;
        }
        let found = self
            .inner
            .metadata
            .offsets_for_times(times, REQUEST_TIMEOUT)?;
        let mut offsets = BTreeMap::new();
        for element in found.elements() {
            element.error()?;
            let offset = match element.offset() {
                Offset::Offset(offset) if offset >= 0 => Some(offset),
                _ => None,
            };
            offsets.insert(element.partition(), offset);
        }
        Ok(offsets)
    }

    /// Sends OffsetDelete to the group's coordinator.
    async fn send_offset_delete(
        &self,
        group_id: &str,
        request: &OffsetDeleteRequest,
    ) -> Result<OffsetDeleteResponse, Attempt> {
        let coordinator = self.group_coordinator(group_id).await?;
        let mut connection = Connection::open(&coordinator, self.kafka(), REQUEST_TIMEOUT)
            .await
            .map_err(|reason| Attempt::Retry(format!("{coordinator}: {reason}")))?;
        let (_, response) = connection
            .call(request, REQUEST_TIMEOUT)
            .await
            .map_err(|reason| Attempt::Retry(format!("{coordinator}: {reason}")))?;
        Ok(response)
    }

    /// `host:port` of the group's coordinator, asked of the first broker that answers.
    async fn group_coordinator(&self, group_id: &str) -> Result<String, Attempt> {
        let brokers = self.broker_addresses().await.map_err(Attempt::Final)?;
        let mut failures = Vec::new();
        for address in brokers {
            let mut connection =
                match Connection::open(&address, self.kafka(), REQUEST_TIMEOUT).await {
                    Ok(connection) => connection,
                    Err(reason) => {
                        failures.push(format!("{address}: {reason}"));
                        continue;
                    }
                };
            match find_coordinator(&mut connection, group_id).await {
                Ok(found) => return coordinator_address(group_id, found),
                Err(reason) => failures.push(format!("{address}: {reason}")),
            }
        }
        Err(Attempt::Retry(format!(
            "no broker named the coordinator: {}",
            failures.join("; ")
        )))
    }
}

/// The new offset of each partition, in the order given; the partitions a shift cannot move
/// (no committed offset) as the error.
fn plan(to: ResetTarget, offsets: &[PartitionOffsets]) -> Result<Vec<PartitionReset>, Vec<i32>> {
    let mut resets = Vec::with_capacity(offsets.len());
    let mut unshiftable = Vec::new();
    for offsets in offsets {
        let wanted = match to {
            ResetTarget::Earliest => offsets.earliest,
            ResetTarget::Latest => offsets.latest,
            ResetTarget::Timestamp(_) => offsets.at_time.unwrap_or(offsets.latest),
            ResetTarget::Offset(offset) => offset,
            ResetTarget::Shift(shift) => match offsets.committed {
                Some(committed) => committed.saturating_add(shift),
                None => {
                    unshiftable.push(offsets.partition);
                    continue;
                }
            },
        };
        // `max` then `min`: a partition whose earliest passed its latest (it cannot, but a
        // broker could say so) still gets an offset it has.
        let new_offset = wanted.max(offsets.earliest).min(offsets.latest);
        resets.push(PartitionReset {
            partition: offsets.partition,
            previous_offset: offsets.committed,
            new_offset,
            earliest_offset: offsets.earliest,
            latest_offset: offsets.latest,
        });
    }
    if unshiftable.is_empty() {
        Ok(resets)
    } else {
        Err(unshiftable)
    }
}

/// The committed offset of each partition of `wanted` that has one. Blocks.
fn committed_offsets(
    client: &BaseConsumer,
    wanted: &TopicPartitionList,
) -> Result<BTreeMap<i32, i64>, ClusterError> {
    let committed = client.committed_offsets(wanted.clone(), REQUEST_TIMEOUT)?;
    let mut offsets = BTreeMap::new();
    for element in committed.elements() {
        if let Offset::Offset(offset) = element.offset() {
            offsets.insert(element.partition(), offset);
        }
    }
    Ok(offsets)
}

/// What a failed commit means: the group gained members (the coordinator takes a commit from
/// outside the group only while it is empty), or the cluster failed.
fn refused_commit(group_id: &str, error: KafkaError) -> ClusterError {
    use RDKafkaErrorCode as Code;
    match error.rdkafka_error_code() {
        Some(
            Code::UnknownMemberId
            | Code::IllegalGeneration
            | Code::RebalanceInProgress
            | Code::FencedInstanceId,
        ) => ClusterError::Conflict(format!(
            "consumer group {group_id:?} gained members while its offsets were reset, and the \
             cluster refused the commit ({error}); stop its consumers and try again"
        )),
        _ => ClusterError::Kafka(error),
    }
}

fn no_group(group_id: &str) -> ClusterError {
    ClusterError::NotFound(format!("no consumer group {group_id:?}"))
}

/// ` (2 members, state Stable)`.
fn state_text(group: &GroupSummary) -> String {
    let members = group.members.len();
    let plural = if members == 1 { "" } else { "s" };
    format!(" ({members} member{plural}, state {})", group.state)
}

/// `0, 2 and 5`.
fn list(partitions: &[i32]) -> String {
    let texts: Vec<String> = partitions.iter().map(i32::to_string).collect();
    match texts.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => texts.concat(),
    }
}

/// Why an OffsetDelete attempt ended without an answer.
#[derive(Debug)]
enum Attempt {
    /// The coordinator moved, is loading, or could not be reached: worth another try.
    Retry(String),
    Final(ClusterError),
}

/// What an OffsetDelete answer means.
enum Outcome {
    Done(Result<(), ClusterError>),
    Retry(String),
}

fn retriable_coordinator_error(error: ResponseError) -> bool {
    matches!(
        error,
        ResponseError::CoordinatorNotAvailable
            | ResponseError::NotCoordinator
            | ResponseError::CoordinatorLoadInProgress
    )
}

fn offset_delete_outcome(group_id: &str, topic: &str, response: &OffsetDeleteResponse) -> Outcome {
    if let Some(error) = ResponseError::try_from_code(response.error_code) {
        return match error {
            _ if retriable_coordinator_error(error) => Outcome::Retry(format!("{error:?}")),
            ResponseError::GroupIdNotFound => Outcome::Done(Err(no_group(group_id))),
            // Kafka's answer for an active group of another protocol than `consumer`, whose
            // subscriptions it cannot tell.
            ResponseError::NonEmptyGroup => Outcome::Done(Err(ClusterError::Conflict(format!(
                "consumer group {group_id:?} has members and is not a Kafka consumer group, so \
                 its offsets can be deleted only while it is empty"
            )))),
            ResponseError::InvalidGroupId => Outcome::Done(Err(ClusterError::Invalid(format!(
                "the cluster refused group id {group_id:?}: InvalidGroupId"
            )))),
            other => Outcome::Done(Err(ClusterError::Unavailable(format!(
                "OffsetDelete of consumer group {group_id:?}: {}",
                broker_error(other.code(), None)
            )))),
        };
    }
    let errors = response
        .topics
        .iter()
        .flat_map(|topic| &topic.partitions)
        .filter_map(|partition| ResponseError::try_from_code(partition.error_code));
    let mut subscribed = false;
    for error in errors {
        match error {
            ResponseError::GroupSubscribedToTopic => subscribed = true,
            ResponseError::UnknownTopicOrPartition => {
                return Outcome::Done(Err(not_found_topic(topic)))
            }
            _ if retriable_coordinator_error(error) => return Outcome::Retry(format!("{error:?}")),
            other => {
                return Outcome::Done(Err(ClusterError::Unavailable(format!(
                    "OffsetDelete of consumer group {group_id:?} in topic {topic:?}: {}",
                    broker_error(other.code(), None)
                ))))
            }
        }
    }
    if subscribed {
        return Outcome::Done(Err(ClusterError::Conflict(format!(
            "consumer group {group_id:?} is active and subscribed to topic {topic:?}: stop its \
             consumers (or unsubscribe them from the topic) before deleting its offsets"
        ))));
    }
    Outcome::Done(Ok(()))
}

/// FindCoordinator for a group: v4 and later name keys in a list, older versions one key.
async fn find_coordinator(
    connection: &mut Connection,
    group_id: &str,
) -> Result<FindCoordinatorResponse, String> {
    let key = StrBytes::from_string(group_id.to_string());
    let batched = FindCoordinatorRequest::default()
        .with_key_type(GROUP_KEY)
        .with_coordinator_keys(vec![key.clone()]);
    let newest = <FindCoordinatorRequest as Message>::VERSIONS.max;
    match connection
        .call_between(&batched, (4, newest), REQUEST_TIMEOUT)
        .await
    {
        Ok((_, response)) => Ok(response),
        Err(batched_failure) => {
            let single = FindCoordinatorRequest::default()
                .with_key(key)
                .with_key_type(GROUP_KEY);
            connection
                .call_between(&single, (1, 3), REQUEST_TIMEOUT)
                .await
                .map(|(_, response)| response)
                .map_err(|failure| format!("{batched_failure}; {failure}"))
        }
    }
}

/// The coordinator's address from a FindCoordinator answer of any version.
fn coordinator_address(group_id: &str, found: FindCoordinatorResponse) -> Result<String, Attempt> {
    let (error_code, message, host, port) = match found.coordinators.into_iter().next() {
        Some(one) => (one.error_code, one.error_message, one.host, one.port),
        None => (
            found.error_code,
            found.error_message,
            found.host,
            found.port,
        ),
    };
    match ResponseError::try_from_code(error_code) {
        None => Ok(broker_address(host.as_str(), port)),
        Some(error) if retriable_coordinator_error(error) => Err(Attempt::Retry(broker_error(
            error_code,
            message.as_ref().map(|m| m.as_str()),
        ))),
        Some(ResponseError::InvalidGroupId) => Err(Attempt::Final(ClusterError::Invalid(format!(
            "the cluster refused group id {group_id:?}: InvalidGroupId"
        )))),
        Some(_) => Err(Attempt::Final(ClusterError::Unavailable(format!(
            "FindCoordinator for consumer group {group_id:?}: {}",
            broker_error(error_code, message.as_ref().map(|m| m.as_str()))
        )))),
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::offset_delete_response::{
        OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
    };

    use super::*;

    fn partition(committed: Option<i64>, earliest: i64, latest: i64) -> PartitionOffsets {
        PartitionOffsets {
            partition: 0,
            committed,
            earliest,
            latest,
            at_time: None,
        }
    }

    fn new_offset(to: ResetTarget, offsets: PartitionOffsets) -> i64 {
        plan(to, &[offsets]).expect("planned")[0].new_offset
    }

    #[test]
    fn every_target_is_clamped_to_the_stored_offsets() {
        let p = partition(Some(7), 3, 10);
        assert_eq!(new_offset(ResetTarget::Earliest, p), 3);
        assert_eq!(new_offset(ResetTarget::Latest, p), 10);
        assert_eq!(new_offset(ResetTarget::Offset(5), p), 5);
        assert_eq!(new_offset(ResetTarget::Offset(0), p), 3);
        assert_eq!(new_offset(ResetTarget::Offset(99), p), 10);
        assert_eq!(new_offset(ResetTarget::Shift(-2), p), 5);
        assert_eq!(new_offset(ResetTarget::Shift(-100), p), 3);
        assert_eq!(new_offset(ResetTarget::Shift(100), p), 10);
        assert_eq!(new_offset(ResetTarget::Shift(i64::MAX), p), 10);
        let timed = PartitionOffsets {
            at_time: Some(6),
            ..p
        };
        assert_eq!(new_offset(ResetTarget::Timestamp(1), timed), 6);
        assert_eq!(
            new_offset(ResetTarget::Timestamp(1), p),
            10,
            "no record at or after the time: the end"
        );
        let reset = plan(ResetTarget::Latest, &[p]).expect("planned")[0];
        assert_eq!(
            reset,
            PartitionReset {
                partition: 0,
                previous_offset: Some(7),
                new_offset: 10,
                earliest_offset: 3,
                latest_offset: 10
            }
        );
    }

    #[test]
    fn a_shift_needs_a_committed_offset_in_every_partition() {
        let offsets = [
            PartitionOffsets {
                partition: 0,
                ..partition(Some(4), 0, 9)
            },
            PartitionOffsets {
                partition: 1,
                ..partition(None, 0, 9)
            },
            PartitionOffsets {
                partition: 2,
                ..partition(None, 0, 9)
            },
        ];
        assert_eq!(plan(ResetTarget::Shift(1), &offsets), Err(vec![1, 2]));
        let earliest = plan(ResetTarget::Earliest, &offsets).expect("planned");
        assert_eq!(earliest[1].previous_offset, None);
        assert_eq!(list(&[1, 2]), "1 and 2");
        assert_eq!(list(&[0, 1, 2]), "0, 1 and 2");
        assert_eq!(list(&[3]), "3");
    }

    fn response(top: i16, partitions: &[i16]) -> OffsetDeleteResponse {
        let partitions = partitions
            .iter()
            .enumerate()
            .map(|(i, code)| {
                OffsetDeleteResponsePartition::default()
                    .with_partition_index(i as i32)
                    .with_error_code(*code)
            })
            .collect();
        OffsetDeleteResponse::default()
            .with_error_code(top)
            .with_topics(vec![OffsetDeleteResponseTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(partitions)])
    }

    fn outcome(response: &OffsetDeleteResponse) -> Result<Result<(), ClusterError>, String> {
        match offset_delete_outcome("g", "t", response) {
            Outcome::Done(result) => Ok(result),
            Outcome::Retry(reason) => Err(reason),
        }
    }

    #[test]
    fn offset_delete_answers_become_outcomes() {
        assert!(matches!(outcome(&response(0, &[0, 0])), Ok(Ok(()))));
        assert!(matches!(
            outcome(&response(69, &[])),
            Ok(Err(ClusterError::NotFound(_)))
        ));
        assert!(matches!(
            outcome(&response(68, &[])),
            Ok(Err(ClusterError::Conflict(_)))
        ));
        assert!(matches!(
            outcome(&response(0, &[0, 86])),
            Ok(Err(ClusterError::Conflict(_)))
        ));
        assert!(matches!(
            outcome(&response(0, &[3])),
            Ok(Err(ClusterError::NotFound(_)))
        ));
        assert!(
            outcome(&response(16, &[])).is_err(),
            "NOT_COORDINATOR: again"
        );
        assert!(outcome(&response(15, &[])).is_err(), "not available: again");
        assert!(matches!(
            outcome(&response(30, &[])),
            Ok(Err(ClusterError::Unavailable(_)))
        ));
    }

    #[test]
    fn coordinators_are_read_from_old_and_new_answers() {
        let old = FindCoordinatorResponse::default()
            .with_host(StrBytes::from_static_str("::1"))
            .with_port(9092);
        assert_eq!(
            coordinator_address("g", old).ok().as_deref(),
            Some("[::1]:9092")
        );
        let new = FindCoordinatorResponse::default().with_coordinators(vec![
            kafka_protocol::messages::find_coordinator_response::Coordinator::default()
                .with_key(StrBytes::from_static_str("g"))
                .with_host(StrBytes::from_static_str("kafka-2"))
                .with_port(9093),
        ]);
        assert_eq!(
            coordinator_address("g", new).ok().as_deref(),
            Some("kafka-2:9093")
        );
        let loading = FindCoordinatorResponse::default().with_error_code(14);
        assert!(matches!(
            coordinator_address("g", loading),
            Err(Attempt::Retry(_))
        ));
    }
}
