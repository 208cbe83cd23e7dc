//! ConsumerGroupDescribe (KIP-848): handled by the group coordinator (`freshet-coordinator`).
//!
//! Authorization is Kafka's: Describe on each group (GROUP_AUTHORIZATION_FAILED otherwise,
//! and nothing about the group), and Describe on every topic the group's members subscribe to
//! or are assigned: a group that names a topic the principal may not describe answers
//! TOPIC_AUTHORIZATION_FAILED instead of its members. Authorized operations are the
//! principal's own, when asked for.

use freshet_security::acl::{Operation, ResourceType};
use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
use kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse};
use kafka_protocol::ResponseError;

use super::{str_bytes, RequestContext, OPERATIONS_NOT_REQUESTED};

pub async fn handle(
    ctx: &RequestContext,
    mut request: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let wants_operations = request.include_authorized_operations;
    let (allowed, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut request.group_ids)
        .into_iter()
        .partition(|group| ctx.may_on_group(Operation::Describe, group));
    request.group_ids = allowed;
    let mut response = if request.group_ids.is_empty() {
        ConsumerGroupDescribeResponse::default()
    } else {
        ctx.broker
            .groups
            .consumer_group_describe(request, ctx.version)
            .await
    };
    for group in &mut response.groups {
        if group.error_code == 0 && !may_describe_topics(ctx, group) {
            *group = DescribedGroup::default()
                .with_group_id(group.group_id.clone())
                .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                .with_error_message(Some(str_bytes(
                    "The group has described topic(s) that the client is not authorized to describe.",
                )));
        }
        group.authorized_operations = if wants_operations && group.error_code == 0 {
            ctx.authorized_operations(ResourceType::Group, &group.group_id)
        } else {
            OPERATIONS_NOT_REQUESTED
        };
    }
    response.groups.extend(denied.into_iter().map(|group_id| {
        DescribedGroup::default()
            .with_group_id(group_id)
            .with_error_code(ResponseError::GroupAuthorizationFailed.code())
            .with_authorized_operations(OPERATIONS_NOT_REQUESTED)
    }));
    response
}

/// Whether the principal may describe every topic the group's members name.
fn may_describe_topics(ctx: &RequestContext, group: &DescribedGroup) -> bool {
    group.members.iter().all(|member| {
        let subscribed = member.subscribed_topic_names.iter().map(|t| t.as_str());
        let assigned = member
            .assignment
            .topic_partitions
            .iter()
            .chain(&member.target_assignment.topic_partitions)
            .map(|t| t.topic_name.as_str());
        subscribed
            .chain(assigned)
            .all(|topic| ctx.may_on_topic(Operation::Describe, topic))
    })
}
