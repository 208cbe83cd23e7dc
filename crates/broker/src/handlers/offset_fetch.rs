//! OffsetFetch: handled by the group coordinator (`freshet-coordinator`).
//!
//! Authorization is Kafka's: Describe on the group (or GROUP_AUTHORIZATION_FAILED), and
//! Describe on each topic: a topic named in the request answers TOPIC_AUTHORIZATION_FAILED
//! per partition, and "every committed topic" leaves out the ones the principal may not see.

use freshet_security::acl::Operation;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::RequestContext;

pub async fn handle(ctx: &RequestContext, mut request: OffsetFetchRequest) -> OffsetFetchResponse {
    if !ctx.may_on_group(Operation::Describe, &request.group_id) {
        let error = ResponseError::GroupAuthorizationFailed;
        let mut response = OffsetFetchResponse::default();
        if ctx.version >= 2 {
            response.error_code = error.code();
        } else {
            // v0–1 have no top-level error: every requested partition carries it.
            response.topics = refused(request.topics.as_deref().unwrap_or_default(), error);
        }
        return response;
    }
    let mut denied = Vec::new();
    if let Some(topics) = request.topics.take() {
        let (allowed, refused): (Vec<_>, Vec<_>) = topics
            .into_iter()
            .partition(|topic| ctx.may_on_topic(Operation::Describe, &topic.name));
        denied = refused;
        request.topics = Some(allowed);
    }
    let mut response = ctx.broker.groups.offset_fetch(request, ctx.version).await;
    response
        .topics
        .retain(|topic| ctx.may_on_topic(Operation::Describe, &topic.name));
    response
        .topics
        .extend(refused(&denied, ResponseError::TopicAuthorizationFailed));
    response
}

/// Every partition of `topics` answered with `error` and no offset.
fn refused(
    topics: &[OffsetFetchRequestTopic],
    error: ResponseError,
) -> Vec<OffsetFetchResponseTopic> {
    topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|&partition| {
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(partition)
                        .with_committed_offset(-1)
                        .with_metadata(Some(StrBytes::from_static_str("")))
                        .with_error_code(error.code())
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect()
}
