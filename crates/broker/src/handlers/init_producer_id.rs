//! InitProducerId: a producer id and epoch.
//!
//! With a `transactional.id` the transaction coordinator answers: the id's producer id with a
//! new epoch, fencing older producers of the same id and aborting what they left open (see
//! `crate::transactions`). Without one, an idempotent producer gets a fresh id at epoch 0, or,
//! when it sends the id and epoch it has (KIP-360, v3+), the same id with the next epoch, which
//! lets it start its sequence numbers over after an error without losing its identity.

use freshet_security::acl::{Operation, ResourceType};
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};
use kafka_protocol::ResponseError;

use super::transactions::fenced_error;
use super::RequestContext;
use crate::transactions::LAST_USABLE_EPOCH;

pub async fn handle(
    ctx: &RequestContext,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let transactional_id = request
        .transactional_id
        .as_ref()
        .map(|id| id.to_string())
        .filter(|id| !id.is_empty());
    let current = (request.producer_id.0 >= 0 && request.producer_epoch >= 0)
        .then_some((request.producer_id.0, request.producer_epoch));
    match transactional_id {
        Some(id) => init_transactional(ctx, &id, request.transaction_timeout_ms, current).await,
        None => init_idempotent(ctx, current).await,
    }
}

async fn init_transactional(
    ctx: &RequestContext,
    id: &str,
    timeout_ms: i32,
    current: Option<(i64, i16)>,
) -> InitProducerIdResponse {
    if !ctx.may(Operation::Write, ResourceType::TransactionalId, id) {
        return error(ResponseError::TransactionalIdAuthorizationFailed);
    }
    match ctx
        .broker
        .transactions
        .init_producer_id(&ctx.broker, id, timeout_ms, current)
        .await
    {
        Ok((producer_id, epoch)) => InitProducerIdResponse::default()
            .with_producer_id(producer_id.into())
            .with_producer_epoch(epoch),
        Err(e) => {
            tracing::debug!(transactional_id = id, error = %e, "InitProducerId refused");
            error(e.response_error(fenced_error(ctx.version, 4)))
        }
    }
}

async fn init_idempotent(
    ctx: &RequestContext,
    current: Option<(i64, i16)>,
) -> InitProducerIdResponse {
    // Kafka (KIP-679): IdempotentWrite on the cluster, or Write on any topic.
    let may_write = ctx.may_on_cluster(Operation::IdempotentWrite)
        || ctx.may_on_any(Operation::Write, ResourceType::Topic);
    if !may_write {
        return error(ResponseError::ClusterAuthorizationFailed);
    }
    if let Some((producer_id, epoch)) = current.filter(|&(_, epoch)| epoch < LAST_USABLE_EPOCH) {
        return InitProducerIdResponse::default()
            .with_producer_id(producer_id.into())
            .with_producer_epoch(epoch + 1);
    }
    let broker = ctx.broker.clone();
    match tokio::task::spawn_blocking(move || broker.producer_ids.allocate()).await {
        Ok(Ok(id)) => InitProducerIdResponse::default()
            .with_producer_id(id.into())
            .with_producer_epoch(0),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "could not allocate a producer id");
            error(ResponseError::KafkaStorageError)
        }
        Err(e) => {
            tracing::error!(error = %e, "producer id allocation failed");
            error(ResponseError::UnknownServerError)
        }
    }
}

fn error(error: ResponseError) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_producer_id((-1).into())
        .with_producer_epoch(-1)
        .with_error_code(error.code())
}
