//! OffsetFetch: handled by the group coordinator (`freshet-coordinator`).

use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};

use super::RequestContext;

pub async fn handle(ctx: &RequestContext, request: OffsetFetchRequest) -> OffsetFetchResponse {
    ctx.broker.groups.offset_fetch(request, ctx.version).await
}
