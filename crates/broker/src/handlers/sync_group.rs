//! SyncGroup: handled by the group coordinator (`freshet-coordinator`).

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::RequestContext;

pub async fn handle(ctx: &RequestContext, request: SyncGroupRequest) -> SyncGroupResponse {
    ctx.broker.groups.sync_group(request, ctx.version).await
}
