//! Heartbeat: handled by the group coordinator (`freshet-coordinator`).

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::RequestContext;

pub async fn handle(ctx: &RequestContext, request: HeartbeatRequest) -> HeartbeatResponse {
    ctx.broker.groups.heartbeat(request, ctx.version).await
}
