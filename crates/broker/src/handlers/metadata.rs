//! Metadata: brokers (just this one), topics and partitions, creating requested topics when
//! the client allows it and the broker has auto-creation on.
//!
//! Auto-creation follows Kafka: only here (Produce never creates a topic; it answers
//! UNKNOWN_TOPIC_OR_PARTITION and clients ask for Metadata), only when the request allows it
//! (v4+ carry `allow_auto_topic_creation`; v0-3 always allow it), only for a valid name (an
//! invalid one answers INVALID_TOPIC_EXCEPTION whether or not creation is allowed), and not
//! while the disk is full (KAFKA_STORAGE_ERROR).

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};

use super::{str_bytes, RequestContext};
use crate::topics::{validate_topic_name, Topic, TopicError};

pub async fn handle(ctx: &RequestContext, request: MetadataRequest) -> MetadataResponse {
    let broker = &ctx.broker;
    let addr = broker.advertised_addr();
    let node_id = broker.config.node_id;
    // v0 has no way to ask for "all topics" but an empty list; v4+ lets the client forbid auto-creation.
    let all_topics = match &request.topics {
        None => true,
        Some(topics) => topics.is_empty() && ctx.version == 0,
    };
    let may_create =
        broker.config.auto_create_topics && (ctx.version < 4 || request.allow_auto_topic_creation);

    let topics = if all_topics {
        broker
            .topics
            .all()
            .iter()
            .map(|topic| describe_topic(topic, node_id))
            .collect()
    } else {
        request
            .topics
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| t.name)
            .map(|name| lookup_topic(ctx, &name, may_create, node_id))
            .collect()
    };

    let mut response = MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(node_id.into())
            .with_host(str_bytes(addr.ip().to_string()))
            .with_port(i32::from(addr.port()))])
        .with_topics(topics);
    if ctx.version >= 2 {
        response.cluster_id = Some(str_bytes(broker.cluster_id.clone()));
    }
    if ctx.version >= 1 {
        response.controller_id = node_id.into();
    }
    // Without an authorizer every operation is allowed; answer what Kafka answers then.
    if (8..=10).contains(&ctx.version) && request.include_cluster_authorized_operations {
        response.cluster_authorized_operations = ALL_CLUSTER_OPERATIONS;
    }
    if ctx.version >= 8 && request.include_topic_authorized_operations {
        for topic in &mut response.topics {
            if topic.error_code == 0 {
                topic.topic_authorized_operations = ALL_TOPIC_OPERATIONS;
            }
        }
    }
    response
}

/// Bits of Kafka's AclOperation codes: READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7,
/// DESCRIBE 8, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11.
const ALL_TOPIC_OPERATIONS: i32 =
    1 << 3 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 7 | 1 << 8 | 1 << 10 | 1 << 11;
/// CREATE 5, ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11,
/// IDEMPOTENT_WRITE 12.
const ALL_CLUSTER_OPERATIONS: i32 = 1 << 5 | 1 << 7 | 1 << 8 | 1 << 9 | 1 << 10 | 1 << 11 | 1 << 12;

fn lookup_topic(
    ctx: &RequestContext,
    name: &TopicName,
    may_create: bool,
    node_id: i32,
) -> MetadataResponseTopic {
    let broker = &ctx.broker;
    let found = match broker.topics.get(name) {
        Some(topic) => Ok(topic),
        None => validate_topic_name(name).and_then(|()| {
            if may_create {
                broker.auto_create_topic(name)
            } else {
                Err(TopicError::Unknown(name.to_string()))
            }
        }),
    };
    match found {
        Ok(topic) => describe_topic(&topic, node_id),
        Err(e) => MetadataResponseTopic::default()
            .with_name(Some(name.clone()))
            .with_error_code(e.error_code()),
    }
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
