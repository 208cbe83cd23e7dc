//! DescribeGroups: handled by the group coordinator (`freshet-coordinator`). A group the
//! principal may not describe answers GROUP_AUTHORIZATION_FAILED and nothing about it; the
//! others carry the principal's real authorized operations when asked (v3+).

use freshet_security::acl::{Operation, ResourceType};
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::ResponseError;

use super::{RequestContext, OPERATIONS_NOT_REQUESTED};

pub async fn handle(
    ctx: &RequestContext,
    mut request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let wants_operations = ctx.version >= 3 && request.include_authorized_operations;
    let (allowed, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut request.groups)
        .into_iter()
        .partition(|group| ctx.may_on_group(Operation::Describe, group));
    request.groups = allowed;
    let mut response = if request.groups.is_empty() {
        DescribeGroupsResponse::default()
    } else {
        ctx.broker
            .groups
            .describe_groups(request, ctx.version)
            .await
    };
    for group in &mut response.groups {
        group.authorized_operations = if wants_operations {
            ctx.authorized_operations(ResourceType::Group, &group.group_id)
        } else {
            OPERATIONS_NOT_REQUESTED
        };
    }
    response.groups.extend(denied.into_iter().map(|group_id| {
        DescribedGroup::default()
            .with_group_id(group_id)
            .with_error_code(ResponseError::GroupAuthorizationFailed.code())
            .with_authorized_operations(OPERATIONS_NOT_REQUESTED)
    }));
    response
}
