//! ListGroups: handled by the group coordinator (`freshet-coordinator`). As in Kafka, Describe
//! on the cluster lists every group; otherwise only the groups the principal may describe.
//!
//! v5 (KIP-848) lists each group's type and filters by type (case-insensitively, like the
//! state filter). Every group here is a `classic` one, so a filter without that type lists
//! nothing, as Kafka lists nothing for a type it has no group of.

use freshet_security::acl::Operation;
use kafka_protocol::messages::{ListGroupsRequest, ListGroupsResponse};

use super::{str_bytes, RequestContext};

/// The type of every group this coordinator runs (Kafka's `GroupType.CLASSIC`).
const CLASSIC: &str = "classic";

pub async fn handle(ctx: &RequestContext, request: ListGroupsRequest) -> ListGroupsResponse {
    let classic_wanted = ctx.version < 5
        || request.types_filter.is_empty()
        || request
            .types_filter
            .iter()
            .any(|wanted| wanted.eq_ignore_ascii_case(CLASSIC));
    let mut response = ctx.broker.groups.list_groups(request, ctx.version).await;
    if !classic_wanted {
        response.groups.clear();
    }
    if !ctx.may_on_cluster(Operation::Describe) {
        response
            .groups
            .retain(|group| ctx.may_on_group(Operation::Describe, &group.group_id));
    }
    if ctx.version >= 5 {
        for group in &mut response.groups {
            group.group_type = str_bytes(CLASSIC);
        }
    }
    response
}
