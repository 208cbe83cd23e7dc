//! DeleteGroups and OffsetDelete: forgetting groups and committed offsets, durably, following
//! Kafka's `handleDeleteGroups` and `handleDeleteOffsets`.
//!
//! Each decision is taken and its record appended under the groups lock, like a commit's, so
//! a deletion and a concurrent commit or join land in the file in the order they happened.

use std::collections::HashSet;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestTopic;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, GroupId, OffsetDeleteRequest, OffsetDeleteResponse,
};
use kafka_protocol::ResponseError;

use super::error_code;
use crate::store::Record;
use crate::{lock, GroupCoordinator, StoreError};

/// Where one partition of an OffsetDelete stands.
type PartitionOutcome = Option<ResponseError>;

impl GroupCoordinator {
    /// DeleteGroups v0–2. A group can be deleted only while it has no members (else
    /// NON_EMPTY_GROUP); its committed offsets go with it, and so do the offsets of
    /// transactions still open in it (Kafka's `deleteAllOffsets` writes tombstones for both;
    /// such a transaction then commits nothing in the group). Answers once the deletions are
    /// durable. As in Kafka, the empty group id is a valid group (standalone commits may use
    /// it), and a group named twice is answered once.
    pub async fn delete_groups(
        &self,
        req: DeleteGroupsRequest,
        _version: i16,
    ) -> DeleteGroupsResponse {
        let mut seen = HashSet::new();
        let names: Vec<GroupId> = req
            .groups_names
            .into_iter()
            .filter(|name| seen.insert(name.clone()))
            .collect();
        let appended: Vec<Result<u64, ResponseError>> = {
            let mut groups = lock(&self.groups);
            names
                .iter()
                .map(|name| {
                    if self.is_closed() {
                        return Err(ResponseError::CoordinatorNotAvailable);
                    }
                    let group = groups
                        .get(name.as_str())
                        .ok_or(ResponseError::GroupIdNotFound)?;
                    if !group.is_empty() {
                        return Err(ResponseError::NonEmptyGroup);
                    }
                    let seq = self.append_or_log(group_deleted(name), name)?;
                    groups.remove(name.as_str());
                    tracing::info!(group = %name.as_str(), "group deleted");
                    Ok(seq)
                })
                .collect()
        };
        let last = appended
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .max()
            .copied();
        let durable = self.wait_durable_or_log(last).await;
        let results = names
            .into_iter()
            .zip(appended)
            .map(|(name, appended)| {
                let error = appended.and(durable).err();
                DeletableGroupResult::default()
                    .with_group_id(name)
                    .with_error_code(error_code(error))
            })
            .collect();
        DeleteGroupsResponse::default().with_results(results)
    }

    /// OffsetDelete v0. Deletes the group's commits of the listed partitions, except those of
    /// topics its members are subscribed to (GROUP_SUBSCRIBED_TO_TOPIC); partitions that do not
    /// exist answer UNKNOWN_TOPIC_OR_PARTITION. Group-level errors (INVALID_GROUP_ID,
    /// GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP for active groups of another protocol than
    /// `consumer`) answer alone, without partitions, as in Kafka. A partition's pending
    /// transactional offsets are deleted with its commit (Kafka's tombstone removes both). An
    /// Empty group left without committed or pending offsets is deleted, as Kafka deletes it.
    /// Answers once the deletions are durable.
    pub async fn offset_delete(
        &self,
        req: OffsetDeleteRequest,
        partition_exists: &(dyn Fn(&str, i32) -> bool + Sync),
    ) -> OffsetDeleteResponse {
        let result = if req.group_id.is_empty() {
            Err(ResponseError::InvalidGroupId)
        } else {
            self.delete_offsets(&req.group_id, &req.topics, partition_exists)
                .await
        };
        match result {
            Ok(outcomes) => offset_delete_response(&req.topics, outcomes),
            Err(error) => OffsetDeleteResponse::default().with_error_code(error.code()),
        }
    }

    /// The outcome of every requested partition, in request order.
    async fn delete_offsets(
        &self,
        group_id: &str,
        topics: &[OffsetDeleteRequestTopic],
        partition_exists: &(dyn Fn(&str, i32) -> bool + Sync),
    ) -> Result<Vec<PartitionOutcome>, ResponseError> {
        let requested = topics.iter().flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(move |p| (topic.name.as_str(), p.partition_index))
        });
        let (outcomes, seq) = {
            let mut groups = lock(&self.groups);
            if self.is_closed() {
                return Err(ResponseError::CoordinatorNotAvailable);
            }
            let group = groups.get(group_id).ok_or(ResponseError::GroupIdNotFound)?;
            let in_use = group.topics_in_use()?;
            let deletes_group = group.is_empty();
            let mut records = Vec::new();
            let outcomes: Vec<PartitionOutcome> = requested
                .map(|(topic, partition)| {
                    if !partition_exists(topic, partition) {
                        Some(ResponseError::UnknownTopicOrPartition)
                    } else if in_use.contains(topic) {
                        Some(ResponseError::GroupSubscribedToTopic)
                    } else {
                        records.push(offset_deleted(group_id, topic, partition));
                        None
                    }
                })
                .collect();
            if records.is_empty() {
                return Ok(outcomes);
            }
            let mut seq = self.append_or_log(records, group_id)?;
            if deletes_group && !self.store.has_offsets(group_id) {
                seq = self.append_or_log(group_deleted(group_id), group_id)?;
                groups.remove(group_id);
                tracing::info!(group = group_id, "group deleted with its last offsets");
            }
            (outcomes, seq)
        };
        self.wait_durable_or_log(Some(seq)).await?;
        Ok(outcomes)
    }

    /// Appends `records`, mapping a store failure to NOT_COORDINATOR as Kafka maps failures
    /// of its offsets log.
    fn append_or_log(&self, records: Vec<Record>, group: &str) -> Result<u64, ResponseError> {
        self.store.append(records).map_err(|error| {
            tracing::error!(%error, group, "cannot append a deletion");
            ResponseError::NotCoordinator
        })
    }

    async fn wait_durable_or_log(&self, seq: Option<u64>) -> Result<(), ResponseError> {
        let Some(seq) = seq else {
            return Ok(());
        };
        self.store
            .wait_durable(seq)
            .await
            .map_err(|error: StoreError| {
                tracing::error!(%error, "a deletion did not become durable");
                ResponseError::NotCoordinator
            })
    }
}

fn group_deleted(group: &str) -> Vec<Record> {
    vec![Record::GroupDeleted {
        group: group.to_owned(),
    }]
}

fn offset_deleted(group: &str, topic: &str, partition: i32) -> Record {
    Record::OffsetDeleted {
        group: group.to_owned(),
        topic: topic.to_owned(),
        partition,
    }
}

/// The response, in request order; `outcomes` has one entry per requested partition.
fn offset_delete_response(
    topics: &[OffsetDeleteRequestTopic],
    outcomes: Vec<PartitionOutcome>,
) -> OffsetDeleteResponse {
    let mut outcomes = outcomes.into_iter();
    let topics = topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error_code(outcomes.next().flatten()))
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
