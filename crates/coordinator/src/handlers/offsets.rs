//! OffsetCommit, OffsetFetch and topic deletion: committed offsets in and out of the store.
//! (TxnOffsetCommit, which shares the admission and the commit path, is in `txn_offsets`.)

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::{error_code, instance_id_for};
use crate::coordinator::{GroupUnavailable, IfMissing};
use crate::group::{Group, MemberIdentity};
use crate::store::{CommittedOffset, Record};
use crate::GroupCoordinator;

/// Longest metadata string a commit may carry (Kafka's `offset.metadata.max.bytes` default).
pub const MAX_OFFSET_METADATA_BYTES: usize = 4096;

/// Where a partition of an OffsetCommit or TxnOffsetCommit stands before the group has been
/// consulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    /// Rejected on its own (unknown partition).
    Rejected(ResponseError),
    /// Committed if the group allows.
    Commit,
    /// Rejected for its metadata size, unless the group rejects the whole commit first.
    MetadataTooLarge,
}

impl GroupCoordinator {
    /// OffsetCommit v0–8. Answers once the accepted offsets are fsynced (concurrent commits
    /// share one fsync). `partition_exists(topic, partition)` rejects unknown partitions with
    /// UNKNOWN_TOPIC_OR_PARTITION.
    pub async fn offset_commit(
        &self,
        req: OffsetCommitRequest,
        version: i16,
        partition_exists: &(dyn Fn(&str, i32) -> bool + Sync),
    ) -> OffsetCommitResponse {
        // v0 commits carry no membership: they are standalone commits.
        let (generation, who) = if version >= 1 {
            let who = MemberIdentity {
                member_id: req.member_id.to_string(),
                instance_id: instance_id_for(version, 7, req.group_instance_id),
            };
            (req.generation_id_or_member_epoch, who)
        } else {
            (-1, MemberIdentity::default())
        };
        let commit_timestamp_ms = unix_millis();

        let mut admissions = Vec::new();
        let mut records = Vec::new();
        for topic in &req.topics {
            for partition in &topic.partitions {
                let metadata = partition.committed_metadata.as_ref();
                let admission = admit(
                    &topic.name,
                    partition.partition_index,
                    metadata,
                    partition_exists,
                );
                if admission == Admission::Commit {
                    records.push(commit_record(
                        &req.group_id,
                        &topic.name,
                        partition,
                        version,
                        commit_timestamp_ms,
                    ));
                }
                admissions.push(admission);
            }
        }
        let committed = if needs_group(&admissions) {
            let authorize = |group: &mut Group, now| group.authorize_commit(&who, generation, now);
            self.commit(&req.group_id, generation, authorize, records)
                .await
        } else {
            Ok(())
        };

        let errors = admissions
            .into_iter()
            .map(|admission| admission.outcome(committed));
        commit_response(&req.topics, errors)
    }

    /// Checks with `authorize` that the group takes the commit, appends the records and waits
    /// until they are durable.
    pub(super) async fn commit(
        &self,
        group_id: &str,
        generation: i32,
        authorize: impl FnOnce(&mut Group, Instant) -> Result<(), ResponseError>,
        records: Vec<Record>,
    ) -> Result<(), ResponseError> {
        // A standalone commit (negative generation) to an unknown group creates it; a member's
        // commit to an unknown group is from a generation that no longer exists.
        let if_missing = if generation < 0 {
            IfMissing::Create
        } else {
            IfMissing::Fail
        };
        // Authorising and appending under the same group lock keeps a commit from landing
        // after a rebalance that made its generation stale.
        let appended = self.update_group(group_id, if_missing, |group, now, _| {
            authorize(group, now)?;
            if records.is_empty() {
                return Ok(None);
            }
            self.store.append(records).map(Some).map_err(|error| {
                tracing::error!(%error, group = group_id, "cannot append offset commit");
                // Kafka maps storage errors of the offsets log to NOT_COORDINATOR.
                ResponseError::NotCoordinator
            })
        });
        let seq = match appended {
            Ok(Ok(Some(seq))) => seq,
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(error)) => return Err(error),
            Err(GroupUnavailable::Closed) => return Err(ResponseError::CoordinatorNotAvailable),
            Err(GroupUnavailable::Missing) => return Err(ResponseError::IllegalGeneration),
        };
        self.store.wait_durable(seq).await.map_err(|error| {
            tracing::error!(%error, group = group_id, "offset commit not durable");
            ResponseError::NotCoordinator
        })
    }

    /// OffsetFetch v1–7 (one group). A partition without a commit gets offset -1 and no error;
    /// `topics = None` means every partition the group committed. A topic listed with no
    /// partitions gets all its committed partitions. With `require_stable` (v7+), a partition
    /// with transactional offsets pending answers UNSTABLE_OFFSET_COMMIT (the client retries
    /// until the transaction ends); without it, the last committed offset.
    pub async fn offset_fetch(&self, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
        let mut response = OffsetFetchResponse::default();
        if self.is_closed() {
            let error = ResponseError::CoordinatorNotAvailable;
            if version >= 2 {
                response.error_code = error.code();
            } else {
                // v0–1 have no top-level error: every requested partition carries it.
                response.topics = fetch_error_topics(req.topics.unwrap_or_default(), error);
            }
            return response;
        }
        let group = req.group_id.as_str();
        // Read before the commits: a transaction that ends in between is then reported
        // unstable (and asked again), never its offsets as missing.
        let unstable = if version >= 7 && req.require_stable {
            self.store.pending_partitions(group)
        } else {
            BTreeSet::new()
        };
        let answers = FetchAnswers { version, unstable };
        response.topics = match req.topics {
            Some(topics) => topics
                .into_iter()
                .map(|topic| self.fetch_topic(group, topic, &answers))
                .collect(),
            None => self.fetch_all(group, &answers),
        };
        response
    }

    fn fetch_topic(
        &self,
        group: &str,
        topic: OffsetFetchRequestTopic,
        answers: &FetchAnswers,
    ) -> OffsetFetchResponseTopic {
        let mut answer = OffsetFetchResponseTopic::default();
        let name = topic.name.as_str();
        answer.partitions = if topic.partition_indexes.is_empty() {
            self.store
                .committed_by_group(group)
                .into_iter()
                .filter(|(t, _, _)| t == name)
                .map(|(_, partition, offset)| answers.partition(name, partition, Some(offset)))
                .collect()
        } else {
            topic
                .partition_indexes
                .iter()
                .map(|&partition| {
                    let offset = self.store.committed(group, name, partition);
                    answers.partition(name, partition, offset)
                })
                .collect()
        };
        answer.name = topic.name;
        answer
    }

    fn fetch_all(&self, group: &str, answers: &FetchAnswers) -> Vec<OffsetFetchResponseTopic> {
        let mut topics: Vec<OffsetFetchResponseTopic> = Vec::new();
        for (topic, partition, offset) in self.store.committed_by_group(group) {
            let partition = answers.partition(&topic, partition, Some(offset));
            // Commits come ordered by topic, so a topic's partitions are adjacent.
            match topics.last_mut() {
                Some(last) if last.name.as_str() == topic => last.partitions.push(partition),
                _ => {
                    let mut answer = OffsetFetchResponseTopic::default();
                    answer.name = TopicName(StrBytes::from_string(topic));
                    answer.partitions.push(partition);
                    topics.push(answer);
                }
            }
        }
        topics
    }

    /// Forgets every group's committed offsets for a deleted topic, durably.
    pub async fn delete_topic(&self, topic: &str) {
        let record = Record::TopicDeleted {
            topic: topic.to_owned(),
        };
        let durable = match self.store.append(vec![record]) {
            Ok(seq) => self.store.wait_durable(seq).await,
            Err(error) => Err(error),
        };
        if let Err(error) = durable {
            tracing::error!(%error, topic, "cannot forget the offsets of a deleted topic");
        }
    }
}

impl Admission {
    /// The partition's error once the group has answered for the whole commit.
    pub(super) fn outcome(self, committed: Result<(), ResponseError>) -> Option<ResponseError> {
        match (self, committed) {
            (Admission::Rejected(error), _) | (_, Err(error)) => Some(error),
            (Admission::MetadataTooLarge, Ok(())) => Some(ResponseError::OffsetMetadataTooLarge),
            (Admission::Commit, Ok(())) => None,
        }
    }
}

/// Whether any partition needs the group's say (the others were rejected on their own).
pub(super) fn needs_group(admissions: &[Admission]) -> bool {
    admissions
        .iter()
        .any(|a| !matches!(a, Admission::Rejected(_)))
}

pub(super) fn admit(
    topic: &str,
    partition: i32,
    metadata: Option<&StrBytes>,
    partition_exists: &(dyn Fn(&str, i32) -> bool + Sync),
) -> Admission {
    if !partition_exists(topic, partition) {
        return Admission::Rejected(ResponseError::UnknownTopicOrPartition);
    }
    if metadata.map_or(0, |m| m.len()) > MAX_OFFSET_METADATA_BYTES {
        return Admission::MetadataTooLarge;
    }
    Admission::Commit
}

/// The response, in request order; `errors` yields one entry per requested partition.
fn commit_response(
    topics: &[OffsetCommitRequestTopic],
    mut errors: impl Iterator<Item = Option<ResponseError>>,
) -> OffsetCommitResponse {
    let mut response = OffsetCommitResponse::default();
    response.topics = topics
        .iter()
        .map(|topic| {
            let mut answer = OffsetCommitResponseTopic::default();
            answer.name = topic.name.clone();
            answer.partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let mut p = OffsetCommitResponsePartition::default();
                    p.partition_index = partition.partition_index;
                    p.error_code = error_code(errors.next().flatten());
                    p
                })
                .collect();
            answer
        })
        .collect();
    response
}

fn commit_record(
    group: &str,
    topic: &str,
    partition: &OffsetCommitRequestPartition,
    version: i16,
    commit_timestamp_ms: i64,
) -> Record {
    let leader_epoch = if version >= 6 {
        partition.committed_leader_epoch
    } else {
        -1
    };
    Record::OffsetCommit {
        group: group.to_owned(),
        topic: topic.to_owned(),
        partition: partition.partition_index,
        offset: committed_offset(
            partition.committed_offset,
            leader_epoch,
            partition.committed_metadata.as_ref(),
            commit_timestamp_ms,
        ),
    }
}

pub(super) fn committed_offset(
    offset: i64,
    leader_epoch: i32,
    metadata: Option<&StrBytes>,
    commit_timestamp_ms: i64,
) -> CommittedOffset {
    CommittedOffset {
        offset,
        leader_epoch,
        // Kafka stores a null metadata as "".
        metadata: metadata.map(|m| m.to_string()).unwrap_or_default(),
        commit_timestamp_ms,
    }
}

/// How an OffsetFetch answers each partition.
struct FetchAnswers {
    version: i16,
    /// Partitions with transactional offsets pending, when the request requires stable ones.
    unstable: BTreeSet<(String, i32)>,
}

impl FetchAnswers {
    fn partition(
        &self,
        topic: &str,
        partition: i32,
        committed: Option<CommittedOffset>,
    ) -> OffsetFetchResponsePartition {
        if self.unstable.contains(&(topic.to_owned(), partition)) {
            let mut answer = fetched_partition(partition, None, self.version);
            answer.error_code = ResponseError::UnstableOffsetCommit.code();
            return answer;
        }
        fetched_partition(partition, committed, self.version)
    }
}

fn fetched_partition(
    partition: i32,
    committed: Option<CommittedOffset>,
    version: i16,
) -> OffsetFetchResponsePartition {
    let mut answer = OffsetFetchResponsePartition::default();
    answer.partition_index = partition;
    let (offset, leader_epoch, metadata) = match committed {
        Some(c) => (c.offset, c.leader_epoch, c.metadata),
        None => (-1, -1, String::new()),
    };
    answer.committed_offset = offset;
    if version >= 5 {
        answer.committed_leader_epoch = leader_epoch;
    }
    answer.metadata = Some(StrBytes::from_string(metadata));
    answer
}

fn fetch_error_topics(
    topics: Vec<OffsetFetchRequestTopic>,
    error: ResponseError,
) -> Vec<OffsetFetchResponseTopic> {
    topics
        .into_iter()
        .map(|topic| {
            let mut answer = OffsetFetchResponseTopic::default();
            answer.name = topic.name;
            answer.partitions = topic
                .partition_indexes
                .into_iter()
                .map(|partition| {
                    let mut p = fetched_partition(partition, None, 1);
                    p.error_code = error.code();
                    p
                })
                .collect();
            answer
        })
        .collect()
}

pub(super) fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
