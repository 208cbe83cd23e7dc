//! LeaveGroup: handled by the group coordinator (`freshet-coordinator`), for principals with
//! Read on the group (GROUP_AUTHORIZATION_FAILED otherwise). v5 adds each member's reason for
//! leaving (KIP-800), which is logged.

use freshet_security::acl::Operation;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::ResponseError;

use super::RequestContext;

pub async fn handle(ctx: &RequestContext, request: LeaveGroupRequest) -> LeaveGroupResponse {
    if !ctx.may_on_group(Operation::Read, &request.group_id) {
        return LeaveGroupResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    if ctx.version >= 5 {
        for member in &request.members {
            if let Some(reason) = &member.reason {
                tracing::debug!(group = %request.group_id.as_str(), member = %member.member_id, %reason, "member leaves");
            }
        }
    }
    ctx.broker.groups.leave_group(request, ctx.version).await
}
