//! ConsumerGroupHeartbeat (KIP-848): handled by the group coordinator (`freshet-coordinator`),
//! which resolves subscriptions against this broker's topics.
//!
//! Authorization is Kafka's: Read on the group (GROUP_AUTHORIZATION_FAILED otherwise), and
//! Describe on every topic the heartbeat subscribes to by name (TOPIC_AUTHORIZATION_FAILED
//! otherwise, the member is not told which).

use freshet_coordinator::{TopicCatalog, TopicMetadata};
use freshet_security::acl::Operation;
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::ResponseError;

use super::{str_bytes, RequestContext};
use crate::topics::TopicRegistry;

pub async fn handle(
    ctx: &RequestContext,
    request: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    if !ctx.may_on_group(Operation::Read, &request.group_id) {
        return ConsumerGroupHeartbeatResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let names = request
        .subscribed_topic_names
        .as_deref()
        .unwrap_or_default();
    if names
        .iter()
        .any(|t| !ctx.may_on_topic(Operation::Describe, t))
    {
        return ConsumerGroupHeartbeatResponse::default()
            .with_error_code(ResponseError::TopicAuthorizationFailed.code())
            .with_error_message(Some(str_bytes(
                "The consumer is not authorized to describe some subscribed topics.",
            )));
    }
    ctx.broker
        .groups
        .consumer_group_heartbeat(
            request,
            ctx.version,
            &ctx.client_id,
            &ctx.peer.ip().to_string(),
            &BrokerTopics(&ctx.broker.topics),
        )
        .await
}

/// The broker's topics as consumer groups see them.
pub(crate) struct BrokerTopics<'a>(pub(crate) &'a TopicRegistry);

impl TopicCatalog for BrokerTopics<'_> {
    fn topic(&self, name: &str) -> Option<TopicMetadata> {
        let topic = self.0.get(name)?;
        Some(TopicMetadata {
            name: topic.name.clone(),
            id: topic.id,
            partitions: i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX),
        })
    }

    /// Internal topics are left out of regex subscriptions, as Kafka leaves them out.
    fn topic_names(&self) -> Vec<String> {
        self.0
            .all()
            .into_iter()
            .filter(|topic| !topic.is_internal())
            .map(|topic| topic.name.clone())
            .collect()
    }
}
