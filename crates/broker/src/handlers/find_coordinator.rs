//! FindCoordinator: this single node coordinates every group and every transactional id, at
//! the address of the listener the client came in on. Unknown key types get INVALID_REQUEST.
//!
//! Authorization is Kafka's: Describe on the group (GROUP_AUTHORIZATION_FAILED) or on the
//! transactional id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED).

use freshet_security::acl::{Operation, ResourceType};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{str_bytes, Refusal, RequestContext};

const GROUP_KEY_TYPE: i8 = 0;
const TRANSACTION_KEY_TYPE: i8 = 1;

pub async fn handle(
    ctx: &RequestContext,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let (host, port) = ctx.listener.advertised();
    let node_id = ctx.broker.config.node_id;
    let answer = |key: &str| -> (i16, Option<StrBytes>) {
        match lookup(ctx, request.key_type, key) {
            Ok(()) => (0, None),
            Err(refusal) => (refusal.code(), Some(str_bytes(refusal.message))),
        }
    };
    if ctx.version >= 4 {
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key: &StrBytes| {
                let (error, message) = answer(key);
                Coordinator::default()
                    .with_key(key.clone())
                    .with_node_id(node_id.into())
                    .with_host(str_bytes(host.clone()))
                    .with_port(i32::from(port))
                    .with_error_code(error)
                    .with_error_message(message)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let (error, message) = answer(&request.key);
    let mut response = FindCoordinatorResponse::default()
        .with_error_code(error)
        .with_node_id(node_id.into())
        .with_host(str_bytes(host))
        .with_port(i32::from(port));
    if ctx.version >= 1 {
        response.error_message = message;
    }
    response
}

/// Whether this node coordinates `key` for the principal, or the error to answer.
fn lookup(ctx: &RequestContext, key_type: i8, key: &str) -> Result<(), Refusal> {
    if key_type == GROUP_KEY_TYPE {
        if !ctx.may_on_group(Operation::Describe, key) {
            return Err(Refusal::new(
                ResponseError::GroupAuthorizationFailed,
                format!("not authorized to describe group {key}"),
            ));
        }
        return Ok(());
    }
    if key_type != TRANSACTION_KEY_TYPE {
        return Err(Refusal::new(
            ResponseError::InvalidRequest,
            format!("unknown coordinator key type {key_type}"),
        ));
    }
    if !ctx.may(Operation::Describe, ResourceType::TransactionalId, key) {
        return Err(Refusal::new(
            ResponseError::TransactionalIdAuthorizationFailed,
            format!("not authorized to describe transactional id {key}"),
        ));
    }
    Ok(())
}
