//! DeleteTopics: by name (v0-5), for principals with Delete on the topic. Committed offsets of
//! the topic are forgotten too.

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};

use freshet_security::acl::Operation;

use super::{str_bytes, RequestContext};
use crate::topics::TopicError;

pub async fn handle(ctx: &RequestContext, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut responses = Vec::with_capacity(request.topic_names.len());
    for name in request.topic_names {
        responses.push(delete_one(ctx, name).await);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

async fn delete_one(ctx: &RequestContext, name: TopicName) -> DeletableTopicResult {
    let result = DeletableTopicResult::default().with_name(Some(name.clone()));
    let deleted = if ctx.may_on_topic(Operation::Delete, &name) {
        ctx.broker.topics.delete(&name)
    } else {
        Err(TopicError::NotAuthorized(name.to_string(), "delete"))
    };
    match deleted {
        Ok(_) => {
            ctx.broker.groups.delete_topic(&name).await;
            result
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
