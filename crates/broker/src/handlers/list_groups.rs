//! ListGroups: handled by the group coordinator (`freshet-coordinator`). As in Kafka, Describe
//! on the cluster lists every group; otherwise only the groups the principal may describe.
//!
//! v5 (KIP-848) lists each group's type (`classic`, or `consumer` for KIP-848 consumer
//! groups) and filters by type, case-insensitively like the state filter; a type with no
//! group (Kafka's `share`, `streams`) lists nothing.

use freshet_security::acl::Operation;
use kafka_protocol::messages::{ListGroupsRequest, ListGroupsResponse};

use super::RequestContext;

pub async fn handle(ctx: &RequestContext, request: ListGroupsRequest) -> ListGroupsResponse {
    let mut response = ctx.broker.groups.list_groups(request, ctx.version).await;
    if !ctx.may_on_cluster(Operation::Describe) {
        response
            .groups
            .retain(|group| ctx.may_on_group(Operation::Describe, &group.group_id));
    }
    response
}
