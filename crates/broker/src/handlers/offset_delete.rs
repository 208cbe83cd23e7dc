//! OffsetDelete: handled by the group coordinator (`freshet-coordinator`), which refuses the
//! partitions of topics an active consumer group is subscribed to and answers once the
//! deletion is durable. Partitions that do not exist answer UNKNOWN_TOPIC_OR_PARTITION.
//!
//! Authorization is Kafka's: Delete on the group (or the whole request answers
//! GROUP_AUTHORIZATION_FAILED) and Read on each topic (or its partitions answer
//! TOPIC_AUTHORIZATION_FAILED while the others are deleted). A group-level error answers
//! alone, without partitions, as Kafka's does.

use freshet_security::acl::Operation;
use kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestTopic;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use kafka_protocol::ResponseError;

use super::RequestContext;

pub async fn handle(
    ctx: &RequestContext,
    mut request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    if !ctx.may_on_group(Operation::Delete, &request.group_id) {
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let (allowed, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut request.topics)
        .into_iter()
        .partition(|topic| ctx.may_on_topic(Operation::Read, &topic.name));
    request.topics = allowed;
    let topics = &ctx.broker.topics;
    let partition_exists =
        |topic: &str, partition: i32| topics.partition(topic, partition).is_some();
    // Called even when every topic was refused: group errors come first, as in Kafka.
    let mut response = ctx
        .broker
        .groups
        .offset_delete(request, &partition_exists)
        .await;
    if response.error_code == 0 {
        response
            .topics
            .extend(refused(&denied, ResponseError::TopicAuthorizationFailed));
    }
    response
}

/// Every partition of `topics` answered with `error`.
fn refused(
    topics: &[OffsetDeleteRequestTopic],
    error: ResponseError,
) -> Vec<OffsetDeleteResponseTopic> {
    topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error.code())
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect()
}
