//! Produce: append now, answer once durable.
//!
//! [`start`] runs while the connection reads nothing else, so the appends of pipelined
//! requests reach each partition in request order (idempotent sequences depend on it).
//! [`Waiting::finish`] then waits for the group-commit fsync that covers every appended
//! partition; all requests waiting at that moment share one fsync per partition.

use std::sync::Arc;

use freshet_log::{Durability, PartitionLog};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;

use super::{str_bytes, RequestContext};
use crate::topics::{Topic, TopicError};

/// A produce whose appends are done and whose response waits for durability.
#[derive(Debug)]
pub struct Waiting {
    version: i16,
    topics: Vec<TopicProduceResponse>,
    /// `(topic index, partition index in the response, log, end offset to be durable)`.
    pending_syncs: Vec<(usize, usize, Arc<PartitionLog>, i64)>,
}

/// Appends every partition's records. Returns `None` for acks=0 (no response is sent).
pub fn start(ctx: &RequestContext, request: ProduceRequest) -> Option<Waiting> {
    let acks = request.acks;
    let valid_acks = matches!(acks, -1..=1);
    let mut topics = Vec::with_capacity(request.topic_data.len());
    let mut pending_syncs = Vec::new();

    for (topic_index, topic_data) in request.topic_data.into_iter().enumerate() {
        let topic = find_topic(ctx, &topic_data.name);
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for (partition_index, data) in topic_data.partition_data.into_iter().enumerate() {
            let mut response = PartitionProduceResponse::default().with_index(data.index);
            let outcome = if !valid_acks {
                Err((
                    ResponseError::InvalidRequiredAcks.code(),
                    format!("acks must be -1, 0 or 1, not {acks}"),
                ))
            } else {
                append(
                    &topic,
                    data.index,
                    data.records.as_deref().unwrap_or_default(),
                )
            };
            match outcome {
                Ok((log, base_offset, end_offset)) => {
                    response.base_offset = base_offset;
                    response.log_start_offset = log.log_start_offset();
                    if needs_sync(&log) {
                        pending_syncs.push((topic_index, partition_index, log, end_offset));
                    }
                }
                Err((code, message)) => {
                    tracing::debug!(topic = %topic_data.name.as_str(), partition = data.index, code, %message, "produce refused");
                    response.error_code = code;
                    response.base_offset = -1;
                    if ctx.version >= 8 {
                        response.error_message = Some(str_bytes(message));
                    }
                }
            }
            partitions.push(response);
        }
        topics.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_partition_responses(partitions),
        );
    }
    if acks == 0 {
        // Nobody waits for an acks=0 produce, but its data only becomes visible to consumers
        // once durable, so it still takes part in the next group commit.
        for (_, _, log, end) in pending_syncs {
            tokio::task::spawn_blocking(move || {
                if let Err(e) = log.wait_durable(end) {
                    tracing::error!(error = %e, "fsync after an acks=0 produce failed");
                }
            });
        }
        return None;
    }
    Some(Waiting {
        version: ctx.version,
        topics,
        pending_syncs,
    })
}

impl Waiting {
    /// Waits until every appended partition is durable, then builds the response.
    pub async fn finish(mut self) -> ProduceResponse {
        let syncs = self
            .pending_syncs
            .drain(..)
            .map(|(t, p, log, end)| async move {
                let result = tokio::task::spawn_blocking(move || log.wait_durable(end)).await;
                (t, p, result)
            });
        for (t, p, result) in futures::future::join_all(syncs).await {
            let failure = match result {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(e) => format!("fsync task failed: {e}"),
            };
            tracing::error!(error = %failure, "produce not durable");
            let response = &mut self.topics[t].partition_responses[p];
            response.error_code = ResponseError::KafkaStorageError.code();
            response.base_offset = -1;
            if self.version >= 8 {
                response.error_message = Some(str_bytes(failure));
            }
        }
        ProduceResponse::default().with_responses(self.topics)
    }
}

type Refusal = (i16, String);

fn find_topic(
    ctx: &RequestContext,
    name: &kafka_protocol::messages::TopicName,
) -> Result<Arc<Topic>, Refusal> {
    let broker = &ctx.broker;
    let found = match broker.topics.get(name) {
        Some(topic) => Ok(topic),
        None if broker.config.auto_create_topics => broker
            .topics
            .get_or_create(name, broker.config.default_partitions),
        None => Err(TopicError::Unknown(name.to_string())),
    };
    found.map_err(|e| (e.error_code(), e.to_string()))
}

/// Appends to one partition; returns the log, the base offset and the end offset to wait for.
fn append(
    topic: &Result<Arc<Topic>, Refusal>,
    partition: i32,
    records: &[u8],
) -> Result<(Arc<PartitionLog>, i64, i64), Refusal> {
    let topic = topic.as_ref().map_err(Clone::clone)?;
    let partition = topic.partition(partition).ok_or_else(|| {
        (
            ResponseError::UnknownTopicOrPartition.code(),
            format!("topic {} has no partition {partition}", topic.name),
        )
    })?;
    if records.is_empty() {
        return Err((
            ResponseError::CorruptMessage.code(),
            "the request carries no record batch".to_string(),
        ));
    }
    let outcome = partition
        .log
        .append(records)
        .map_err(|e| (e.error_code(), e.to_string()))?;
    if !outcome.duplicate {
        partition
            .counters
            .record_in(outcome.bytes, outcome.record_count);
    }
    Ok((
        partition.log.clone(),
        outcome.base_offset,
        outcome.last_offset + 1,
    ))
}

fn needs_sync(log: &PartitionLog) -> bool {
    matches!(log.config().durability, Durability::Fsync)
}
