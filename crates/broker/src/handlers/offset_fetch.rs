//! OffsetFetch: handled by the group coordinator (`freshet-coordinator`).
//!
//! Authorization is Kafka's: Describe on the group (or GROUP_AUTHORIZATION_FAILED), and
//! Describe on each topic: a topic named in the request answers TOPIC_AUTHORIZATION_FAILED
//! per partition, and "every committed topic" leaves out the ones the principal may not see.
//!
//! v8+ (KIP-709) asks for several groups at once: each is answered as a v7 request for it
//! alone would be, authorization included. v9 adds the member id and epoch of the KIP-848
//! consumer protocol: a consumer group answers UNKNOWN_MEMBER_ID or STALE_MEMBER_EPOCH for a
//! member that is not in it at that epoch; classic groups ignore them (as Kafka's do).

use freshet_security::acl::Operation;
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::RequestContext;

pub async fn handle(ctx: &RequestContext, request: OffsetFetchRequest) -> OffsetFetchResponse {
    if ctx.version >= 8 {
        return batched(ctx, request).await;
    }
    one_group(ctx, request, ctx.version).await
}

/// The groups of a v8+ request, each through [`one_group`] as v7.
async fn batched(ctx: &RequestContext, request: OffsetFetchRequest) -> OffsetFetchResponse {
    let mut groups = Vec::with_capacity(request.groups.len());
    for group in request.groups {
        if let Err(error) = member_check(ctx, &group) {
            groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(group.group_id)
                    .with_error_code(error.code()),
            );
            continue;
        }
        let topics = group.topics.map(|topics| {
            topics
                .into_iter()
                .map(|topic| {
                    OffsetFetchRequestTopic::default()
                        .with_name(topic.name)
                        .with_partition_indexes(topic.partition_indexes)
                })
                .collect()
        });
        let single = OffsetFetchRequest::default()
            .with_group_id(group.group_id.clone())
            .with_topics(topics)
            .with_require_stable(request.require_stable);
        let answer = one_group(ctx, single, 7).await;
        let topics = answer
            .topics
            .into_iter()
            .map(|topic| {
                let partitions = topic
                    .partitions
                    .into_iter()
                    .map(|p| {
                        OffsetFetchResponsePartitions::default()
                            .with_partition_index(p.partition_index)
                            .with_committed_offset(p.committed_offset)
                            .with_committed_leader_epoch(p.committed_leader_epoch)
                            .with_metadata(p.metadata)
                            .with_error_code(p.error_code)
                    })
                    .collect();
                OffsetFetchResponseTopics::default()
                    .with_name(topic.name)
                    .with_partitions(partitions)
            })
            .collect();
        groups.push(
            OffsetFetchResponseGroup::default()
                .with_group_id(group.group_id)
                .with_error_code(answer.error_code)
                .with_topics(topics),
        );
    }
    OffsetFetchResponse::default().with_groups(groups)
}

/// The v9 member check of a consumer group, for principals that may see the group (the
/// others learn nothing from it: [`one_group`] refuses them).
fn member_check(
    ctx: &RequestContext,
    group: &OffsetFetchRequestGroup,
) -> Result<(), ResponseError> {
    if ctx.version < 9 || !ctx.may_on_group(Operation::Describe, &group.group_id) {
        return Ok(());
    }
    let member_id = group.member_id.as_ref().map(|id| id.as_str());
    ctx.broker
        .groups
        .validate_offset_fetch(&group.group_id, member_id, group.member_epoch)
}

/// One group's offsets, answered at `version` (1-7).
async fn one_group(
    ctx: &RequestContext,
    mut request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if !ctx.may_on_group(Operation::Describe, &request.group_id) {
        let error = ResponseError::GroupAuthorizationFailed;
        let mut response = OffsetFetchResponse::default();
        if version >= 2 {
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
    let mut response = ctx.broker.groups.offset_fetch(request, version).await;
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
