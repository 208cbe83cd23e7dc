//! CreatePartitions: grows a topic (Alter on it); partitions are never removed.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use freshet_security::acl::Operation;

use super::{str_bytes, RequestContext};
use crate::topics::{TopicError, MAX_PARTITIONS};

pub async fn handle(
    ctx: &RequestContext,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let registry = &ctx.broker.topics;
    let results = request
        .topics
        .into_iter()
        .map(|topic| {
            let outcome = match registry.get(&topic.name) {
                _ if !ctx.may_on_topic(Operation::Alter, &topic.name) => {
                    Err(TopicError::NotAuthorized(topic.name.to_string(), "alter"))
                }
                None => Err(TopicError::Unknown(topic.name.to_string())),
                Some(existing) if request.validate_only => {
                    let current = existing.partitions.len() as i32;
                    if topic.count <= current || topic.count > MAX_PARTITIONS {
                        Err(TopicError::InvalidPartitions(
                            topic.count,
                            format!("topic has {current} partitions; the new count must be larger and at most {MAX_PARTITIONS}"),
                        ))
                    } else {
                        Ok(())
                    }
                }
                Some(_) => ctx
                    .broker
                    .add_partitions(&topic.name, topic.count)
                    .map(|_| ()),
            };
            let result = CreatePartitionsTopicResult::default().with_name(topic.name);
            match outcome {
                Ok(()) => result,
                Err(e) => result
                    .with_error_code(e.error_code())
                    .with_error_message(Some(str_bytes(e.to_string()))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
