//! InitProducerId: a producer id and epoch.
//!
//! With a `transactional.id` the transaction coordinator answers: the id's producer id with a
//! new epoch, fencing older producers of the same id and aborting what they left open (see
//! `crate::transactions`). Without one, an idempotent producer always gets a new id at epoch
//! 0, also when it sends the id and epoch it has (KIP-360, v3+: librdkafka's "epoch bump"
//! after a sequence error), as Kafka's coordinator answers. The same id with the next epoch,
//! which Freshet answered before, had each partition judge the new epoch's batches against
//! whatever the old epoch left there; a new id starts every partition afresh.

use freshet_security::acl::{Operation, ResourceType};
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};
use kafka_protocol::ResponseError;

use super::transactions::fenced_error;
use super::RequestContext;

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
        None => init_idempotent(ctx).await,
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

async fn init_idempotent(ctx: &RequestContext) -> InitProducerIdResponse {
    // Kafka (KIP-679): IdempotentWrite on the cluster, or Write on any topic.
    let may_write = ctx.may_on_cluster(Operation::IdempotentWrite)
        || ctx.may_on_any(Operation::Write, ResourceType::Topic);
    if !may_write {
        return error(ResponseError::ClusterAuthorizationFailed);
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
