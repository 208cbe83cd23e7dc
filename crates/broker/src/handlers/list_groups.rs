//! ListGroups: handled by the group coordinator (`freshet-coordinator`).

use kafka_protocol::messages::{ListGroupsRequest, ListGroupsResponse};

use super::RequestContext;

pub async fn handle(ctx: &RequestContext, request: ListGroupsRequest) -> ListGroupsResponse {
    ctx.broker.groups.list_groups(request, ctx.version).await
}
