//! ListOffsets: earliest (-2), latest (-1, the high watermark) or the first offset at or after
//! a timestamp.

use freshet_security::acl::Operation;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::RequestContext;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

pub async fn handle(ctx: &RequestContext, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let allowed = ctx.may_on_topic(Operation::Describe, &topic.name);
            let found = ctx.broker.topics.get(&topic.name);
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    if !allowed {
                        return response
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    let Some(partition) =
                        found.as_ref().and_then(|t| t.partition(p.partition_index))
                    else {
                        return response
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    let log = &partition.log;
                    let answer = match p.timestamp {
                        LATEST => Ok(Some((log.high_watermark(), -1))),
                        EARLIEST => Ok(Some((log.log_start_offset(), -1))),
                        ts if ts >= 0 => log.offset_for_timestamp(ts),
                        other => {
                            tracing::debug!(timestamp = other, "unsupported special timestamp");
                            return response
                                .with_error_code(ResponseError::InvalidRequest.code())
                                .with_offset(-1);
                        }
                    };
                    let response = match answer {
                        Ok(Some((offset, timestamp))) => {
                            response.with_offset(offset).with_timestamp(timestamp)
                        }
                        Ok(None) => response.with_offset(-1).with_timestamp(-1),
                        Err(e) => response.with_error_code(e.error_code()),
                    };
                    if ctx.version >= 4 {
                        response.with_leader_epoch(0)
                    } else {
                        response
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
