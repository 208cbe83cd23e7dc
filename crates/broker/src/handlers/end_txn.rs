//! EndTxn: commits or aborts a producer's transaction; answered once every marker is durable.

use freshet_security::acl::{Operation, ResourceType};
use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};
use kafka_protocol::ResponseError;

use super::transactions::fenced_error;
use super::RequestContext;

pub async fn handle(ctx: &RequestContext, request: EndTxnRequest) -> EndTxnResponse {
    let id = request.transactional_id.to_string();
    if !ctx.may(Operation::Write, ResourceType::TransactionalId, &id) {
        return EndTxnResponse::default()
            .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    let outcome = ctx
        .broker
        .transactions
        .end_txn(
            &ctx.broker,
            &id,
            request.producer_id.0,
            request.producer_epoch,
            request.committed,
        )
        .await;
    match outcome {
        Ok(()) => EndTxnResponse::default(),
        Err(error) => {
            tracing::debug!(transactional_id = %id, %error, "EndTxn refused");
            EndTxnResponse::default()
                .with_error_code(error.response_error(fenced_error(ctx.version, 2)).code())
        }
    }
}
