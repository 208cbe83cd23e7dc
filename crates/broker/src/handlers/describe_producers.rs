//! DescribeProducers: the producers each partition knows, with the transaction each has open
//! there (`kafka-transactions.sh describe-producers`, used to find hanging transactions).
//! Needs Read on the topic.

use freshet_security::acl::Operation;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse};
use kafka_protocol::ResponseError;

use super::RequestContext;

pub async fn handle(
    ctx: &RequestContext,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.to_string();
            let allowed = ctx.may_on_topic(Operation::Read, &name);
            let known = ctx.broker.topics.get(&name);
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|&index| {
                    let response = PartitionResponse::default().with_partition_index(index);
                    if !allowed {
                        return response
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    match known.as_ref().and_then(|t| t.partition(index)) {
                        None => {
                            response.with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        }
                        Some(partition) => {
                            response.with_active_producers(active_producers(&partition.log))
                        }
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

fn active_producers(log: &freshet_log::PartitionLog) -> Vec<ProducerState> {
    log.producers()
        .into_iter()
        .map(|p| {
            ProducerState::default()
                .with_producer_id(p.producer_id.into())
                .with_producer_epoch(i32::from(p.producer_epoch))
                .with_last_sequence(p.last_sequence)
                .with_last_timestamp(p.last_timestamp)
                .with_coordinator_epoch(p.coordinator_epoch)
                .with_current_txn_start_offset(p.current_txn_start_offset)
        })
        .collect()
}
