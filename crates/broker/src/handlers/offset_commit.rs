//! OffsetCommit: handled by the group coordinator, which fsyncs before answering. Offsets of
//! partitions that do not exist are refused.
//!
//! Authorization is Kafka's: Read on the group (or every partition answers
//! GROUP_AUTHORIZATION_FAILED) and Read on each topic (or its partitions answer
//! TOPIC_AUTHORIZATION_FAILED while the others are committed).

use freshet_security::acl::Operation;
use kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::ResponseError;

use super::RequestContext;

pub async fn handle(
    ctx: &RequestContext,
    mut request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    if !ctx.may_on_group(Operation::Read, &request.group_id) {
        let denied = refused(&request.topics, ResponseError::GroupAuthorizationFailed);
        return OffsetCommitResponse::default().with_topics(denied);
    }
    let (allowed, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut request.topics)
        .into_iter()
        .partition(|topic| ctx.may_on_topic(Operation::Read, &topic.name));
    request.topics = allowed;
    let topics = &ctx.broker.topics;
    let partition_exists =
        |topic: &str, partition: i32| topics.partition(topic, partition).is_some();
    let mut response = if request.topics.is_empty() {
        OffsetCommitResponse::default()
    } else {
        ctx.broker
            .groups
            .offset_commit(request, ctx.version, &partition_exists)
            .await
    };
    response
        .topics
        .extend(refused(&denied, ResponseError::TopicAuthorizationFailed));
    response
}

/// Every partition of `topics` answered with `error`.
fn refused(
    topics: &[OffsetCommitRequestTopic],
    error: ResponseError,
) -> Vec<OffsetCommitResponseTopic> {
    topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error.code())
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect()
}
