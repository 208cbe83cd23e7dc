//! DescribeGroups: handled by the group coordinator (`freshet-coordinator`). A group the
//! principal may not describe answers GROUP_AUTHORIZATION_FAILED and nothing about it; the
//! others carry the principal's real authorized operations when asked (v3+).
//!
//! A group that does not exist is described as Dead with no error before v6; from v6
//! (KIP-1043) it answers GROUP_ID_NOT_FOUND with Kafka's message.

use freshet_security::acl::{Operation, ResourceType};
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::ResponseError;

use super::{str_bytes, RequestContext, OPERATIONS_NOT_REQUESTED};

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
        // The coordinator describes a group it does not have as Dead: it keeps no dead ones.
        let missing = group.error_code == 0 && group.group_state.as_str() == "Dead";
        if ctx.version >= 6 && missing {
            group.error_code = ResponseError::GroupIdNotFound.code();
            group.error_message = Some(str_bytes(format!(
                "Group {} not found.",
                group.group_id.as_str()
            )));
        }
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
