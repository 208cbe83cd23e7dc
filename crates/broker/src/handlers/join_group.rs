//! JoinGroup: handled by the group coordinator (`freshet-coordinator`), for principals with
//! Read on the group (GROUP_AUTHORIZATION_FAILED otherwise).

use freshet_security::acl::Operation;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::RequestContext;

pub async fn handle(ctx: &RequestContext, request: JoinGroupRequest) -> JoinGroupResponse {
    if !ctx.may_on_group(Operation::Read, &request.group_id) {
        // Nullable only from v7; before that "no protocol" is the empty string.
        return JoinGroupResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code())
            .with_generation_id(-1)
            .with_protocol_name(Some(StrBytes::from_static_str("")));
    }
    ctx.broker
        .groups
        .join_group(
            request,
            ctx.version,
            &ctx.client_id,
            &ctx.peer.ip().to_string(),
        )
        .await
}
