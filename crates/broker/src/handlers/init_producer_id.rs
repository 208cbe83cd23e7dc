//! InitProducerId: a fresh producer id with epoch 0 for idempotent producers. Transactions are
//! not implemented, so a transactional id is refused.

use freshet_security::acl::{Operation, ResourceType};
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};
use kafka_protocol::ResponseError;

use super::RequestContext;

pub async fn handle(
    ctx: &RequestContext,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    if request
        .transactional_id
        .as_ref()
        .is_some_and(|id| !id.is_empty())
    {
        tracing::warn!(client = %ctx.client_id, "transactional producer refused: transactions are not supported");
        return InitProducerIdResponse::default()
            .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    // Kafka (KIP-679): IdempotentWrite on the cluster, or Write on any topic.
    let may_write = ctx.may_on_cluster(Operation::IdempotentWrite)
        || ctx.may_on_any(Operation::Write, ResourceType::Topic);
    if !may_write {
        return InitProducerIdResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    match ctx.broker.producer_ids.allocate() {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(id.into())
            .with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "could not allocate a producer id");
            InitProducerIdResponse::default()
                .with_error_code(ResponseError::KafkaStorageError.code())
        }
    }
}
