//! AddOffsetsToTxn: a consumer group's offsets will be committed with the transaction
//! (TxnOffsetCommit follows), the consume-transform-produce pattern.

use freshet_security::acl::{Operation, ResourceType};
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use kafka_protocol::ResponseError;

use super::transactions::fenced_error;
use super::RequestContext;

pub async fn handle(
    ctx: &RequestContext,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let id = request.transactional_id.to_string();
    let group = request.group_id.to_string();
    let refusal = if !ctx.may(Operation::Write, ResourceType::TransactionalId, &id) {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else if !ctx.may_on_group(Operation::Read, &group) {
        Some(ResponseError::GroupAuthorizationFailed)
    } else {
        ctx.broker
            .transactions
            .add_offsets(
                &ctx.broker,
                &id,
                request.producer_id.0,
                request.producer_epoch,
                &group,
            )
            .await
            .err()
            .map(|error| {
                tracing::debug!(transactional_id = %id, %error, "AddOffsetsToTxn refused");
                error.response_error(fenced_error(ctx.version, 2))
            })
    };
    AddOffsetsToTxnResponse::default().with_error_code(refusal.map_or(0, |e| e.code()))
}
