//! LeaveGroup: handled by the group coordinator (`freshet-coordinator`), for principals with
//! Read on the group (GROUP_AUTHORIZATION_FAILED otherwise).

use freshet_security::acl::Operation;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::ResponseError;

use super::RequestContext;

pub async fn handle(ctx: &RequestContext, request: LeaveGroupRequest) -> LeaveGroupResponse {
    if !ctx.may_on_group(Operation::Read, &request.group_id) {
        return LeaveGroupResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    ctx.broker.groups.leave_group(request, ctx.version).await
}
