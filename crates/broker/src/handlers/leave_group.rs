//! LeaveGroup: handled by the group coordinator (`freshet-coordinator`).

use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::RequestContext;

pub async fn handle(ctx: &RequestContext, request: LeaveGroupRequest) -> LeaveGroupResponse {
    ctx.broker.groups.leave_group(request, ctx.version).await
}
