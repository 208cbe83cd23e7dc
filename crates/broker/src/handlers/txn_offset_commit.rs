//! TxnOffsetCommit: a transactional producer commits a consumer group's offsets with its
//! transaction (`send_offsets_to_transaction`, after AddOffsetsToTxn added the group). The
//! transaction coordinator checks that the request belongs to the producer's ongoing
//! transaction with the group in it; the group coordinator then checks the group and writes
//! the offsets as pending offsets of the producer, fsynced before the answer. EndTxn (or an
//! abort) later commits or drops them.
//!
//! Authorization is Kafka's: Write on the transactional id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
//! and Read on the group (GROUP_AUTHORIZATION_FAILED), each for every partition, and Read on
//! each topic (TOPIC_AUTHORIZATION_FAILED for its partitions while the others are committed).
//!
//! A producer that is not the id's current one gets INVALID_PRODUCER_EPOCH at every version:
//! Kafka's group coordinator refuses such a write by its producer epoch, and TxnOffsetCommit,
//! unlike AddOffsetsToTxn and EndTxn, got no version for PRODUCER_FENCED (KIP-588). Clients
//! treat it as fatal.

use freshet_security::acl::{Operation, ResourceType};
use kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequestTopic;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kafka_protocol::ResponseError;

use super::RequestContext;

pub async fn handle(
    ctx: &RequestContext,
    mut request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let id = request.transactional_id.as_str();
    let refusal = if !ctx.may(Operation::Write, ResourceType::TransactionalId, id) {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else if !ctx.may_on_group(Operation::Read, &request.group_id) {
        Some(ResponseError::GroupAuthorizationFailed)
    } else {
        None
    };
    if let Some(error) = refusal {
        return TxnOffsetCommitResponse::default().with_topics(refused(&request.topics, error));
    }
    let (allowed, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut request.topics)
        .into_iter()
        .partition(|topic| ctx.may_on_topic(Operation::Read, &topic.name));
    request.topics = allowed;
    let mut response = if request.topics.is_empty() {
        TxnOffsetCommitResponse::default()
    } else {
        commit(ctx, request).await
    };
    response
        .topics
        .extend(refused(&denied, ResponseError::TopicAuthorizationFailed));
    response
}

/// The authorized partitions, through both coordinators.
async fn commit(ctx: &RequestContext, request: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    let broker = &ctx.broker;
    let topics = &broker.topics;
    let partition_exists =
        |topic: &str, partition: i32| topics.partition(topic, partition).is_some();
    let id = request.transactional_id.to_string();
    let group = request.group_id.to_string();
    let (producer_id, epoch) = (request.producer_id.0, request.producer_epoch);
    let requested = request.topics.clone();
    let write = broker
        .groups
        .txn_offset_commit(request, ctx.version, &partition_exists);
    let outcome = broker
        .transactions
        .commit_offsets(&ctx.broker, &id, producer_id, epoch, &group, write)
        .await;
    outcome.unwrap_or_else(|error| {
        tracing::debug!(transactional_id = %id, %group, %error, "TxnOffsetCommit refused");
        let error = error.response_error(ResponseError::InvalidProducerEpoch);
        TxnOffsetCommitResponse::default().with_topics(refused(&requested, error))
    })
}

/// Every partition of `topics` answered with `error`.
fn refused(
    topics: &[TxnOffsetCommitRequestTopic],
    error: ResponseError,
) -> Vec<TxnOffsetCommitResponseTopic> {
    topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error.code())
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect()
}
