//! JoinGroup: handled by the group coordinator (`freshet-coordinator`).

use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::RequestContext;

pub async fn handle(ctx: &RequestContext, request: JoinGroupRequest) -> JoinGroupResponse {
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
