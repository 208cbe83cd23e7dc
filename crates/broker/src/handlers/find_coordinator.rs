//! FindCoordinator: this single node coordinates every group. Transactions are not
//! implemented, so transaction coordinators are reported unavailable.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{str_bytes, RequestContext};

const GROUP_KEY_TYPE: i8 = 0;

pub async fn handle(
    ctx: &RequestContext,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let addr = ctx.broker.advertised_addr();
    let node_id = ctx.broker.config.node_id;
    let supported = request.key_type == GROUP_KEY_TYPE;
    let error = if supported {
        0
    } else {
        ResponseError::CoordinatorNotAvailable.code()
    };
    let message = (!supported).then(|| str_bytes("transactions are not supported"));
    if ctx.version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key: StrBytes| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(node_id.into())
                    .with_host(str_bytes(addr.ip().to_string()))
                    .with_port(i32::from(addr.port()))
                    .with_error_code(error)
                    .with_error_message(message.clone())
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let mut response = FindCoordinatorResponse::default()
        .with_error_code(error)
        .with_node_id(node_id.into())
        .with_host(str_bytes(addr.ip().to_string()))
        .with_port(i32::from(addr.port()));
    if ctx.version >= 1 {
        response.error_message = message;
    }
    response
}
