//! AddPartitionsToTxn: partitions join a producer's transaction before it writes to them.
//!
//! v0-3 carry one producer's request (what clients send); v4-5 carry several transactions at
//! once, each maybe `verify_only` (Kafka brokers verify a producer's partitions this way),
//! and are answered per transaction. Every partition is checked first (Write on its topic,
//! the partition exists); if any fails, none is added and the others answer
//! OPERATION_NOT_ATTEMPTED, as in Kafka.

use freshet_security::acl::{Operation, ResourceType};
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use kafka_protocol::ResponseError;

use super::transactions::fenced_error;
use super::RequestContext;

/// The first version that batches transactions.
const BATCHED_VERSION: i16 = 4;

pub async fn handle(
    ctx: &RequestContext,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if ctx.version < BATCHED_VERSION {
        let transaction = AddPartitionsToTxnTransaction::default()
            .with_transactional_id(request.v3_and_below_transactional_id)
            .with_producer_id(request.v3_and_below_producer_id)
            .with_producer_epoch(request.v3_and_below_producer_epoch)
            .with_topics(request.v3_and_below_topics);
        let result = add_one(ctx, transaction).await;
        return AddPartitionsToTxnResponse::default()
            .with_results_by_topic_v3_and_below(result.topic_results);
    }
    if !ctx.may_on_cluster(Operation::ClusterAction) {
        return AddPartitionsToTxnResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let mut results = Vec::with_capacity(request.transactions.len());
    for transaction in request.transactions {
        results.push(add_one(ctx, transaction).await);
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
}

async fn add_one(
    ctx: &RequestContext,
    transaction: AddPartitionsToTxnTransaction,
) -> AddPartitionsToTxnResult {
    let id = transaction.transactional_id.to_string();
    let checks: Vec<(String, i32, Option<ResponseError>)> = transaction
        .topics
        .iter()
        .flat_map(|topic| check_topic(ctx, topic))
        .collect();
    let refused = if !ctx.may(Operation::Write, ResourceType::TransactionalId, &id) {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else if checks.iter().any(|(_, _, error)| error.is_some()) {
        None
    } else {
        let partitions: Vec<(String, i32)> =
            checks.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
        let (producer_id, epoch) = (transaction.producer_id.0, transaction.producer_epoch);
        let outcome = if transaction.verify_only {
            verify(ctx, producer_id, epoch, &partitions)
        } else {
            ctx.broker
                .transactions
                .add_partitions(&ctx.broker, &id, producer_id, epoch, partitions)
                .await
                .map_err(|e| {
                    tracing::debug!(transactional_id = %id, error = %e, "AddPartitionsToTxn refused");
                    e.response_error(fenced_error(ctx.version, 2))
                })
        };
        outcome.err()
    };
    let any_partition_failed = checks.iter().any(|(_, _, e)| e.is_some());
    let partition_error = |own: Option<ResponseError>| match (refused, own) {
        (Some(error), _) => error.code(),
        (None, Some(error)) => error.code(),
        (None, None) if any_partition_failed => ResponseError::OperationNotAttempted.code(),
        (None, None) => 0,
    };
    AddPartitionsToTxnResult::default()
        .with_transactional_id(transaction.transactional_id)
        .with_topic_results(group_by_topic(&checks, partition_error))
}

/// Each partition of `topic` with the error that keeps it out, if any.
fn check_topic(
    ctx: &RequestContext,
    topic: &AddPartitionsToTxnTopic,
) -> Vec<(String, i32, Option<ResponseError>)> {
    let name = topic.name.to_string();
    let may_write = ctx.may_on_topic(Operation::Write, &name);
    let known = ctx.broker.topics.get(&name);
    topic
        .partitions
        .iter()
        .map(|&index| {
            let error = if !may_write {
                Some(ResponseError::TopicAuthorizationFailed)
            } else if known.as_ref().and_then(|t| t.partition(index)).is_none() {
                Some(ResponseError::UnknownTopicOrPartition)
            } else {
                None
            };
            (name.clone(), index, error)
        })
        .collect()
}

/// `verify_only`: the partitions must already be in the producer's ongoing transaction.
fn verify(
    ctx: &RequestContext,
    producer_id: i64,
    epoch: i16,
    partitions: &[(String, i32)],
) -> Result<(), ResponseError> {
    for (topic, partition) in partitions {
        if let Err(refusal) =
            ctx.broker
                .transactions
                .check_write(producer_id, epoch, topic, *partition)
        {
            return Err(super::transactions::write_refusal_error(refusal));
        }
    }
    Ok(())
}

fn group_by_topic(
    checks: &[(String, i32, Option<ResponseError>)],
    error_of: impl Fn(Option<ResponseError>) -> i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut results: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for (topic, partition, own) in checks {
        let result = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(*partition)
            .with_partition_error_code(error_of(*own));
        match results.iter_mut().find(|r| r.name.as_str() == topic) {
            Some(existing) => existing.results_by_partition.push(result),
            None => results.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(TopicName(super::str_bytes(topic.clone())))
                    .with_results_by_partition(vec![result]),
            ),
        }
    }
    results
}
