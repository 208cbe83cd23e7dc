//! CreateTopics: validated in full (name, partitions, replication factor, configs) before
//! anything is created; `validate_only` stops there.

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::{str_bytes, RequestContext};
use crate::topics::{TopicConfigs, TopicError};

pub async fn handle(ctx: &RequestContext, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let results = request
        .topics
        .into_iter()
        .map(|topic| create_one(ctx, topic, request.validate_only))
        .collect();
    CreateTopicsResponse::default().with_topics(results)
}

fn create_one(
    ctx: &RequestContext,
    topic: CreatableTopic,
    validate_only: bool,
) -> CreatableTopicResult {
    let name = topic.name.clone();
    let result = CreatableTopicResult::default().with_name(name.clone());
    let outcome = authorize(ctx, &name)
        .and_then(|()| validate(ctx, &topic))
        .and_then(|(partitions, configs)| {
            if validate_only {
                ctx.broker
                    .topics
                    .validate_new_topic(&name, partitions, &configs)?;
                Ok((partitions, configs, None))
            } else {
                let created = ctx
                    .broker
                    .create_topic(&name, partitions, configs.clone())?;
                Ok((partitions, configs, Some(created.id)))
            }
        });
    match outcome {
        Ok((partitions, configs, id)) => {
            let mut result = result;
            if let Some(id) = id {
                result.topic_id = id;
            }
            if ctx.version >= 5 {
                result.num_partitions = partitions;
                result.replication_factor = 1;
                result.configs = Some(describe(ctx, &configs));
            }
            result
        }
        Err(e) => {
            let mut result = result.with_error_code(e.error_code());
            if ctx.version >= 1 {
                result.error_message = Some(str_bytes(e.to_string()));
            }
            if ctx.version >= 5 {
                result.num_partitions = -1;
                result.replication_factor = -1;
            }
            result
        }
    }
}

/// Creating takes Create on the cluster or on the topic, as in Kafka.
fn authorize(ctx: &RequestContext, name: &str) -> Result<(), TopicError> {
    if super::metadata::may_create_topic(ctx, name) {
        Ok(())
    } else {
        Err(TopicError::NotAuthorized(name.to_owned(), "create"))
    }
}

/// Resolves defaults and checks what only this request can say wrong.
fn validate(
    ctx: &RequestContext,
    topic: &CreatableTopic,
) -> Result<(i32, TopicConfigs), TopicError> {
    let partitions = if topic.num_partitions == -1 {
        ctx.broker.config.default_partitions
    } else {
        topic.num_partitions
    };
    if !matches!(topic.replication_factor, -1 | 1) {
        return Err(TopicError::InvalidReplicationFactor(
            topic.replication_factor,
        ));
    }
    if !topic.assignments.is_empty() {
        let node = ctx.broker.config.node_id;
        let only_this_node = topic
            .assignments
            .iter()
            .all(|a| a.broker_ids.len() == 1 && a.broker_ids[0].0 == node);
        if !only_this_node || topic.num_partitions != -1 {
            return Err(TopicError::InvalidPartitions(
                topic.num_partitions,
                "replica assignments may only name this broker, with num_partitions = -1".into(),
            ));
        }
    }
    let partitions = if topic.assignments.is_empty() {
        partitions
    } else {
        topic.assignments.len() as i32
    };
    let mut configs = TopicConfigs::default();
    for config in &topic.configs {
        if let Some(value) = &config.value {
            configs.0.insert(config.name.to_string(), value.to_string());
        }
    }
    Ok((partitions, configs))
}

/// Every topic config of the new topic with its source, as Kafka answers CreateTopics v5+.
fn describe(ctx: &RequestContext, configs: &TopicConfigs) -> Vec<CreatableTopicConfigs> {
    let defaults = ctx.broker.topics.defaults();
    // Validated before: a refused config never gets here.
    let effective = configs
        .apply_over(&defaults)
        .unwrap_or_else(|_| defaults.log_config());
    configs
        .describe(&defaults, &effective)
        .into_iter()
        .map(|config| {
            CreatableTopicConfigs::default()
                .with_name(str_bytes(config.def.name))
                .with_value(Some(str_bytes(config.value)))
                .with_config_source(config.source.code())
        })
        .collect()
}
