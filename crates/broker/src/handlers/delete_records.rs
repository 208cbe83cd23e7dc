//! DeleteRecords: moves a partition's log start offset up (-1 means the high watermark), for
//! principals with Delete on the topic.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;

use freshet_security::acl::Operation;

use super::RequestContext;

pub async fn handle(ctx: &RequestContext, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let allowed = ctx.may_on_topic(Operation::Delete, &topic.name);
        let found = ctx.broker.topics.get(&topic.name);
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let result = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            if !allowed {
                partitions
                    .push(result.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
                continue;
            }
            let Some(partition) = found
                .as_ref()
                .and_then(|t| t.partition(p.partition_index))
                .cloned()
            else {
                partitions
                    .push(result.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            let log = partition.log.clone();
            let hw = log.high_watermark();
            let target = if p.offset == -1 { hw } else { p.offset };
            if target < 0 || target > hw {
                partitions.push(result.with_error_code(ResponseError::OffsetOutOfRange.code()));
                continue;
            }
            // Deleting segments and fsyncing the checkpoint is blocking I/O.
            let outcome =
                tokio::task::spawn_blocking(move || log.delete_records_before(target)).await;
            partitions.push(match outcome {
                Ok(Ok(low)) => result.with_low_watermark(low),
                Ok(Err(e)) => result.with_error_code(e.error_code()),
                Err(_) => result.with_error_code(ResponseError::KafkaStorageError.code()),
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
