//! DeleteTopics: by name (v0-5), and from v6 by name or by id (KIP-516), for principals with
//! Delete on the topic. Committed offsets of the topic are forgotten too.
//!
//! v6 follows Kafka: each entry names a topic by name or by id, not both (INVALID_REQUEST); a
//! name or id named twice answers INVALID_REQUEST for each entry naming it; an unknown id
//! UNKNOWN_TOPIC_ID. A topic named by id whose name the principal may not describe answers
//! TOPIC_AUTHORIZATION_FAILED without its name, so an id never reveals one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use freshet_security::acl::Operation;

use super::{str_bytes, RequestContext};
use crate::topics::{Topic, TopicError};

pub async fn handle(ctx: &RequestContext, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    if ctx.version < 6 {
        let mut responses = Vec::with_capacity(request.topic_names.len());
        for name in request.topic_names {
            responses.push(delete_by_name(ctx, name).await);
        }
        return DeleteTopicsResponse::default().with_responses(responses);
    }
    let names: Vec<&str> = request
        .topics
        .iter()
        .filter_map(|t| t.name.as_deref().map(|n| n.as_str()))
        .collect();
    let ids: Vec<Uuid> = request
        .topics
        .iter()
        .map(|t| t.topic_id)
        .filter(|id| !id.is_nil())
        .collect();
    let duplicate_names = duplicates(&names);
    let duplicate_ids = duplicates(&ids);
    let by_id = (!ids.is_empty()).then(|| super::topics_by_id(ctx));
    let mut responses = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let result = match (&topic.name, topic.topic_id.is_nil()) {
            (Some(_), false) => invalid(topic, "You may not specify both topic name and topic id."),
            (None, true) => invalid(topic, "Neither topic name nor id were specified."),
            (Some(name), true) if duplicate_names.contains(name.as_str()) => {
                invalid(topic, "Duplicate topic name.")
            }
            (None, false) if duplicate_ids.contains(&topic.topic_id) => {
                invalid(topic, "Duplicate topic id.")
            }
            (Some(name), true) => delete_by_name(ctx, name.clone()).await,
            (None, false) => delete_by_id(ctx, by_id.as_ref(), topic.topic_id).await,
        };
        responses.push(result);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

/// The values that occur more than once.
fn duplicates<T: Eq + std::hash::Hash + Copy>(values: &[T]) -> HashSet<T> {
    let mut seen = HashSet::new();
    values
        .iter()
        .copied()
        .filter(|value| !seen.insert(*value))
        .collect()
}

fn invalid(
    topic: &kafka_protocol::messages::delete_topics_request::DeleteTopicState,
    message: &str,
) -> DeletableTopicResult {
    DeletableTopicResult::default()
        .with_name(topic.name.clone())
        .with_topic_id(topic.topic_id)
        .with_error_code(ResponseError::InvalidRequest.code())
        .with_error_message(Some(str_bytes(message)))
}

async fn delete_by_id(
    ctx: &RequestContext,
    by_id: Option<&HashMap<Uuid, Arc<Topic>>>,
    id: Uuid,
) -> DeletableTopicResult {
    let result = DeletableTopicResult::default()
        .with_name(None)
        .with_topic_id(id);
    let Some(topic) = by_id.and_then(|topics| topics.get(&id)) else {
        return result
            .with_error_code(ResponseError::UnknownTopicId.code())
            .with_error_message(Some(str_bytes("This server does not host this topic ID.")));
    };
    if !ctx.may_on_topic(Operation::Describe, &topic.name) {
        return result
            .with_error_code(ResponseError::TopicAuthorizationFailed.code())
            .with_error_message(Some(str_bytes(format!(
                "not authorized to describe topic id {id}"
            ))));
    }
    delete_by_name(ctx, TopicName(str_bytes(topic.name.clone()))).await
}

async fn delete_by_name(ctx: &RequestContext, name: TopicName) -> DeletableTopicResult {
    let result = DeletableTopicResult::default().with_name(Some(name.clone()));
    let deleted = if ctx.may_on_topic(Operation::Delete, &name) {
        ctx.broker.topics.delete(&name)
    } else {
        Err(TopicError::NotAuthorized(name.to_string(), "delete"))
    };
    match deleted {
        Ok(topic) => {
            ctx.broker.groups.delete_topic(&name).await;
            if ctx.version >= 6 {
                result.with_topic_id(topic.id)
            } else {
                result
            }
        }
        Err(e) => {
            let mut result = result.with_error_code(e.error_code());
            if ctx.version >= 5 {
                result.error_message = Some(str_bytes(e.to_string()));
            }
            result
        }
    }
}
