//! Metadata: brokers (just this one), topics and partitions, creating requested topics when
//! the client allows it and the broker has auto-creation on.
//!
//! Auto-creation follows Kafka: only here (Produce never creates a topic; it answers
//! UNKNOWN_TOPIC_OR_PARTITION and clients ask for Metadata), only when the request allows it
//! (v4+ carry `allow_auto_topic_creation`; v0-3 always allow it), only for a valid name (an
//! invalid one answers INVALID_TOPIC_EXCEPTION whether or not creation is allowed), and not
//! while the disk is full (KAFKA_STORAGE_ERROR).
//!
//! From v12 a topic may be asked for by id instead of name (KIP-516): an unknown id answers
//! UNKNOWN_TOPIC_ID, one the principal may not describe TOPIC_AUTHORIZATION_FAILED (with the
//! id and no name, as Kafka answers: ids are not secret); ids never create a topic.

use std::collections::HashMap;
use std::sync::Arc;

use freshet_security::acl::{Operation, ResourceType, CLUSTER_NAME};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{str_bytes, RequestContext};
use crate::topics::{validate_topic_name, Topic, TopicError};

pub async fn handle(ctx: &RequestContext, request: MetadataRequest) -> MetadataResponse {
    if may_auto_create_any(ctx, &request) {
        // Creating a topic writes and fsyncs its directories and metadata.
        super::on_blocking_pool(ctx, move |ctx| answer(&ctx, request)).await
    } else {
        answer(ctx, request)
    }
}

/// Whether answering may create a topic: auto-creation is on, the client allows it, and a
/// topic it names is missing.
fn may_auto_create_any(ctx: &RequestContext, request: &MetadataRequest) -> bool {
    let broker = &ctx.broker;
    let allowed =
        broker.config.auto_create_topics && (ctx.version < 4 || request.allow_auto_topic_creation);
    allowed
        && request.topics.iter().flatten().any(|topic| {
            topic
                .name
                .as_ref()
                .is_some_and(|name| broker.topics.get(name).is_none())
        })
}

fn answer(ctx: &RequestContext, request: MetadataRequest) -> MetadataResponse {
    let broker = &ctx.broker;
    let (host, port) = ctx.listener.advertised();
    let node_id = broker.config.node_id;
    // v0 has no way to ask for "all topics" but an empty list; v4+ lets the client forbid auto-creation.
    let all_topics = match &request.topics {
        None => true,
        Some(topics) => topics.is_empty() && ctx.version == 0,
    };
    let may_create =
        broker.config.auto_create_topics && (ctx.version < 4 || request.allow_auto_topic_creation);

    let topics = if all_topics {
        // Topics the principal may not describe are left out, as in Kafka.
        broker
            .topics
            .all()
            .iter()
            .filter(|topic| ctx.may_on_topic(Operation::Describe, &topic.name))
            .map(|topic| describe_topic(topic, node_id))
            .collect()
    } else {
        let requested = request.topics.unwrap_or_default();
        // Names are nullable, and ids meant, only from v12.
        let by_id = (ctx.version >= 12 && requested.iter().any(|t| !t.topic_id.is_nil()))
            .then(|| super::topics_by_id(ctx));
        requested
            .into_iter()
            .filter_map(|t| match (&by_id, t.name) {
                (Some(by_id), _) if !t.topic_id.is_nil() => {
                    Some(lookup_topic_id(ctx, by_id, t.topic_id, node_id))
                }
                (_, Some(name)) => Some(lookup_topic(ctx, &name, may_create, node_id)),
                (_, None) => None,
            })
            .collect()
    };

    let mut response = MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(node_id.into())
            .with_host(str_bytes(host))
            .with_port(i32::from(port))])
        .with_topics(topics);
    if ctx.version >= 2 {
        response.cluster_id = Some(str_bytes(broker.cluster_id.clone()));
    }
    if ctx.version >= 1 {
        response.controller_id = node_id.into();
    }
    if (8..=10).contains(&ctx.version) && request.include_cluster_authorized_operations {
        response.cluster_authorized_operations =
            ctx.authorized_operations(ResourceType::Cluster, CLUSTER_NAME);
    }
    if ctx.version >= 8 && request.include_topic_authorized_operations {
        for topic in &mut response.topics {
            if topic.error_code == 0 {
                let name = topic.name.as_deref().map_or("", |n| n.as_str());
                topic.topic_authorized_operations =
                    ctx.authorized_operations(ResourceType::Topic, name);
            }
        }
    }
    response
}

/// A named topic: TOPIC_AUTHORIZATION_FAILED unless the principal may describe it (so that
/// nobody learns which topics exist), created if missing and allowed (creating takes Create on
/// the cluster or on the topic).
fn lookup_topic(
    ctx: &RequestContext,
    name: &TopicName,
    may_create: bool,
    node_id: i32,
) -> MetadataResponseTopic {
    let broker = &ctx.broker;
    let denied = || {
        MetadataResponseTopic::default()
            .with_name(Some(name.clone()))
            .with_error_code(ResponseError::TopicAuthorizationFailed.code())
    };
    if !ctx.may_on_topic(Operation::Describe, name) {
        return denied();
    }
    let found = match broker.topics.get(name) {
        Some(topic) => Ok(Some(topic)),
        None => validate_topic_name(name).and_then(|()| match may_create {
            false => Err(TopicError::Unknown(name.to_string())),
            true if !may_create_topic(ctx, name) => Ok(None),
            true => broker.auto_create_topic(name).map(Some),
        }),
    };
    match found {
        Ok(Some(topic)) => describe_topic(&topic, node_id),
        Ok(None) => denied(),
        Err(e) => MetadataResponseTopic::default()
            .with_name(Some(name.clone()))
            .with_error_code(e.error_code()),
    }
}

/// A topic asked for by id (v12+).
fn lookup_topic_id(
    ctx: &RequestContext,
    by_id: &HashMap<Uuid, Arc<Topic>>,
    id: Uuid,
    node_id: i32,
) -> MetadataResponseTopic {
    let error = match by_id.get(&id) {
        Some(topic) if ctx.may_on_topic(Operation::Describe, &topic.name) => {
            return describe_topic(topic, node_id)
        }
        Some(_) => ResponseError::TopicAuthorizationFailed,
        None => ResponseError::UnknownTopicId,
    };
    MetadataResponseTopic::default()
        .with_name(None)
        .with_topic_id(id)
        .with_error_code(error.code())
}

/// Kafka's rule for creating a topic: Create on the cluster, or on the topic itself.
pub(crate) fn may_create_topic(ctx: &RequestContext, name: &str) -> bool {
    ctx.may_on_cluster(Operation::Create) || ctx.may_on_topic(Operation::Create, name)
}

fn describe_topic(topic: &Topic, node_id: i32) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p.index)
                .with_leader_id(node_id.into())
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node_id.into()])
                .with_isr_nodes(vec![node_id.into()])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.is_internal())
        .with_partitions(partitions)
}
