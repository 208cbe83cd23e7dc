//! DeleteGroups: handled by the group coordinator (`freshet-coordinator`), which deletes a
//! group only while it has no members and answers once the deletion is durable. As in Kafka,
//! each group needs Delete on it (GROUP_AUTHORIZATION_FAILED otherwise).

use std::collections::HashSet;

use freshet_security::acl::Operation;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use kafka_protocol::ResponseError;

use super::RequestContext;

pub async fn handle(
    ctx: &RequestContext,
    mut request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    // Kafka answers a group named twice once.
    let mut seen = HashSet::new();
    let (allowed, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut request.groups_names)
        .into_iter()
        .filter(|group| seen.insert(group.clone()))
        .partition(|group| ctx.may_on_group(Operation::Delete, group));
    request.groups_names = allowed;
    let mut response = if request.groups_names.is_empty() {
        DeleteGroupsResponse::default()
    } else {
        ctx.broker.groups.delete_groups(request, ctx.version).await
    };
    response.results.extend(denied.into_iter().map(|group_id| {
        DeletableGroupResult::default()
            .with_group_id(group_id)
            .with_error_code(ResponseError::GroupAuthorizationFailed.code())
    }));
    response
}
