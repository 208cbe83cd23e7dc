//! Produce: append now, answer once durable.
//!
//! [`start`] runs while the connection reads nothing else, so the appends of pipelined
//! requests reach each partition in request order (idempotent sequences depend on it).
//! [`Waiting::finish`] then waits for the group-commit fsync that covers every appended
//! partition; all requests waiting at that moment share one fsync per partition.
//!
//! Produce never creates a topic: like Kafka, an unknown topic answers
//! UNKNOWN_TOPIC_OR_PARTITION, and clients then ask Metadata, which creates it if the client
//! and the broker allow auto-creation (see [`super::metadata`]).

use std::sync::Arc;

use freshet_log::{Durability, LogError, PartitionLog};
use freshet_security::acl::Operation;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;

use super::{str_bytes, RequestContext};
use crate::topics::{Topic, TopicError};
use crate::Broker;

/// A produce whose appends are done and whose response waits for durability.
#[derive(Debug)]
pub struct Waiting {
    broker: Arc<Broker>,
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
                    ctx,
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
        for (t, p, log, end) in pending_syncs {
            let broker = ctx.broker.clone();
            let topic = topics[t].name.to_string();
            let partition = topics[t].partition_responses[p].index;
            tokio::task::spawn_blocking(move || {
                if let Err(e) = log.wait_durable(end) {
                    broker.report_log_error("acks=0 produce", &topic, partition, &log, &e);
                }
            });
        }
        return None;
    }
    Some(Waiting {
        broker: ctx.broker.clone(),
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
                let waiting = log.clone();
                let result = tokio::task::spawn_blocking(move || waiting.wait_durable(end)).await;
                (t, p, log, result)
            });
        for (t, p, log, result) in futures::future::join_all(syncs).await {
            let failure = match result {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => {
                    let topic = self.topics[t].name.to_string();
                    let partition = self.topics[t].partition_responses[p].index;
                    // A failed fsync poisons the log: logged once as a degraded condition.
                    self.broker
                        .report_log_error("produce", &topic, partition, &log, &e);
                    e.to_string()
                }
                Err(e) => {
                    tracing::error!(error = %e, "the fsync task of a produce failed");
                    format!("fsync task failed: {e}")
                }
            };
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

/// The topic, which the principal may write and which must exist: Produce never creates one
/// (see the module docs). Authorization comes first, so an unauthorized client cannot tell
/// which topics exist.
fn find_topic(
    ctx: &RequestContext,
    name: &kafka_protocol::messages::TopicName,
) -> Result<Arc<Topic>, Refusal> {
    if !ctx.may_on_topic(Operation::Write, name) {
        return Err(super::topic_denied(name, "Write"));
    }
    ctx.broker.topics.get(name).ok_or_else(|| {
        let unknown = TopicError::Unknown(name.to_string());
        (unknown.error_code(), unknown.to_string())
    })
}

/// Appends to one partition; returns the log, the base offset and the end offset to wait for.
fn append(
    ctx: &RequestContext,
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
    let outcome = partition.log.append(records).map_err(|e| {
        if matches!(e, LogError::Storage(_)) {
            let log = &partition.log;
            ctx.broker
                .report_log_error("produce", &topic.name, partition.index, log, &e);
        }
        (e.error_code(), e.to_string())
    })?;
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
