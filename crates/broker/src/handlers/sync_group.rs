//! SyncGroup: handled by the group coordinator (`freshet-coordinator`), for principals with
//! Read on the group (GROUP_AUTHORIZATION_FAILED otherwise).

use freshet_security::acl::Operation;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::ResponseError;

use super::RequestContext;

pub async fn handle(ctx: &RequestContext, request: SyncGroupRequest) -> SyncGroupResponse {
    if !ctx.may_on_group(Operation::Read, &request.group_id) {
        return SyncGroupResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    ctx.broker.groups.sync_group(request, ctx.version).await
}
