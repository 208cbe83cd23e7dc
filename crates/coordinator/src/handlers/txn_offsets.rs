//! TxnOffsetCommit and the end of transactions: offsets a transaction commits stay pending,
//! invisible to OffsetFetch, until the transaction coordinator completes the transaction
//! ([`GroupCoordinator::complete_transaction`]), as Kafka's group coordinator keeps them
//! until the commit or abort marker reaches `__consumer_offsets`.
//!
//! Checking that the request belongs to an ongoing transaction of its producer is the
//! transaction coordinator's part (the broker asks it first); this part checks the group and
//! the partitions as Kafka does, and writes the offsets durably.

use kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequestTopic;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kafka_protocol::ResponseError;

use super::offsets::{admit, committed_offset, needs_group, unix_millis, Admission};
use super::{error_code, instance_id_for, string};
use crate::group::{Group, MemberIdentity};
use crate::store::Record;
use crate::{GroupCoordinator, StoreError};

impl GroupCoordinator {
    /// TxnOffsetCommit v0–5. The offsets become pending offsets of the request's producer
    /// in the group, answered once they are fsynced. From v3 a request that names a member
    /// is checked against the group like a member's OffsetCommit (ILLEGAL_GENERATION,
    /// UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID); unknown partitions answer
    /// UNKNOWN_TOPIC_OR_PARTITION and oversized metadata OFFSET_METADATA_TOO_LARGE.
    pub async fn txn_offset_commit(
        &self,
        req: TxnOffsetCommitRequest,
        version: i16,
        partition_exists: &(dyn Fn(&str, i32) -> bool + Sync),
    ) -> TxnOffsetCommitResponse {
        // Before v3 the request carries no membership; the codec's defaults say so already,
        // but a decoder that filled them anyway must not make an old request a member's.
        let (generation, who) = if version >= 3 {
            let who = MemberIdentity {
                member_id: string(req.member_id),
                instance_id: instance_id_for(version, 3, req.group_instance_id),
            };
            (req.generation_id, who)
        } else {
            (-1, MemberIdentity::default())
        };
        let producer_id = req.producer_id.0;
        let commit_timestamp_ms = unix_millis();

        let mut admissions = Vec::new();
        let mut records = Vec::new();
        for topic in &req.topics {
            for partition in &topic.partitions {
                let metadata = partition.committed_metadata.as_ref();
                let index = partition.partition_index;
                let admission = admit(&topic.name, index, metadata, partition_exists);
                if admission == Admission::Commit {
                    let leader_epoch = if version >= 2 {
                        partition.committed_leader_epoch
                    } else {
                        -1
                    };
                    records.push(Record::TxnOffsetCommit {
                        producer_id,
                        group: req.group_id.to_string(),
                        topic: topic.name.to_string(),
                        partition: index,
                        offset: committed_offset(
                            partition.committed_offset,
                            leader_epoch,
                            metadata,
                            commit_timestamp_ms,
                        ),
                    });
                }
                admissions.push(admission);
            }
        }
        let committed = if needs_group(&admissions) {
            let authorize = |group: &mut Group, _| group.authorize_txn_commit(&who, generation);
            self.commit(&req.group_id, generation, authorize, records)
                .await
        } else {
            Ok(())
        };
        let errors = admissions.into_iter().map(|a| a.outcome(committed));
        txn_commit_response(&req.topics, errors)
    }

    /// Ends the transaction of `producer_id` in `groups`: its pending offsets become the
    /// groups' committed offsets (`commit`) or are dropped, durably before this returns.
    /// A pending offset is not committed over a plain commit of the same partition made
    /// after it (as in Kafka). Calling it again changes nothing, so the transaction
    /// coordinator's recovery may finish a completion a crash interrupted.
    pub async fn complete_transaction(
        &self,
        producer_id: i64,
        commit: bool,
        groups: &[String],
    ) -> Result<(), StoreError> {
        let records: Vec<Record> = groups
            .iter()
            .filter(|group| self.store.has_pending(producer_id, group))
            .map(|group| Record::TxnCompleted {
                producer_id,
                group: group.clone(),
                committed: commit,
            })
            .collect();
        if records.is_empty() {
            // Nothing left to complete (a retry, or no TxnOffsetCommit came), but an earlier
            // call's completion may still be on its way to disk: wait for it.
            return self.store.flush().await;
        }
        tracing::debug!(
            producer_id,
            commit,
            ?groups,
            "completing transactional offsets"
        );
        let seq = self.store.append(records)?;
        self.store.wait_durable(seq).await
    }
}

/// The response, in request order; `errors` yields one entry per requested partition.
fn txn_commit_response(
    topics: &[TxnOffsetCommitRequestTopic],
    mut errors: impl Iterator<Item = Option<ResponseError>>,
) -> TxnOffsetCommitResponse {
    let topics = topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(error_code(errors.next().flatten()))
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}
