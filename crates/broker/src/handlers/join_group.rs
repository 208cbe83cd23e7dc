//! JoinGroup: handled by the group coordinator (`freshet-coordinator`), for principals with
//! Read on the group (GROUP_AUTHORIZATION_FAILED otherwise).
//!
//! What later versions add is filled in here: v7 answers with the group's protocol type
//! (on success the coordinator has checked it equals the member's) and a null protocol name
//! when there is none; v8 carries the member's reason for joining, logged; v9's
//! `skip_assignment` stays false, since a rejoining leader of a Stable group is answered as a
//! follower (the behaviour KIP-814 describes for clients before v9), so no leader is ever
//! told to skip an assignment it was asked to make.

use freshet_security::acl::Operation;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::RequestContext;

pub async fn handle(ctx: &RequestContext, request: JoinGroupRequest) -> JoinGroupResponse {
    let protocol_type = request.protocol_type.clone();
    let mut response = if !ctx.may_on_group(Operation::Read, &request.group_id) {
        // Nullable only from v7; before that "no protocol" is the empty string.
        JoinGroupResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code())
            .with_generation_id(-1)
            .with_protocol_name(Some(StrBytes::from_static_str("")))
    } else {
        if let Some(reason) = request.reason.as_ref().filter(|_| ctx.version >= 8) {
            tracing::debug!(group = %request.group_id.as_str(), member = %request.member_id, %reason, "member joins");
        }
        ctx.broker
            .groups
            .join_group(
                request,
                ctx.version,
                &ctx.client_id,
                &ctx.peer.ip().to_string(),
            )
            .await
    };
    if ctx.version >= 7 {
        if response.error_code == 0 {
            response.protocol_type = Some(protocol_type);
        } else {
            response.protocol_name = None;
        }
    }
    response
}
