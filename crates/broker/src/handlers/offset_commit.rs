//! OffsetCommit: handled by the group coordinator, which fsyncs before answering. Offsets of
//! partitions that do not exist are refused.

use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::RequestContext;

pub async fn handle(ctx: &RequestContext, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let topics = &ctx.broker.topics;
    let partition_exists =
        |topic: &str, partition: i32| topics.partition(topic, partition).is_some();
    ctx.broker
        .groups
        .offset_commit(request, ctx.version, &partition_exists)
        .await
}
