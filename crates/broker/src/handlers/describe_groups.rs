//! DescribeGroups: handled by the group coordinator (`freshet-coordinator`).

use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::RequestContext;

pub async fn handle(
    ctx: &RequestContext,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    ctx.broker
        .groups
        .describe_groups(request, ctx.version)
        .await
}
