//! Produce: append now, answer once durable.
//!
//! [`start`] runs while the connection reads nothing else, so the appends of pipelined
//! requests reach each partition in request order (idempotent sequences depend on it). An
//! append is written from the connection's task only when that is a plain write; one that
//! would wait (a segment roll's fsyncs, another writer holding the partition) finishes on
//! tokio's blocking pool, so a slow disk never stalls the async workers other connections
//! share.
//! [`Waiting::finish`] then waits for the group-commit fsync that covers every appended
//! partition; all requests waiting at that moment share one fsync per partition.
//!
//! Produce never creates a topic: like Kafka, an unknown topic answers
//! UNKNOWN_TOPIC_OR_PARTITION, and clients then ask Metadata, which creates it if the client
//! and the broker allow auto-creation (see [`super::metadata`]). From v13 topics are named by
//! id (KIP-516); an unknown id answers UNKNOWN_TOPIC_ID.
//!
//! Records the log refuses one by one (keyless records on a compacted topic) answer
//! INVALID_RECORD with Kafka's messages, and from v8 with each record's index in
//! `record_errors`.

use std::collections::HashMap;
use std::sync::Arc;

use freshet_log::{
    AppendOutcome, Durability, LogError, PartitionLog, PreparedAppend, TimestampType, TryAppend,
};
use freshet_security::acl::Operation;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{str_bytes, Refusal, RequestContext};
use crate::topics::{Topic, TopicError};
use crate::Broker;

/// A produce whose appends are done and whose response waits for durability.
#[derive(Debug)]
pub struct Waiting {
    broker: Arc<Broker>,
    version: i16,
    topics: Vec<TopicProduceResponse>,
    /// The name of each topic of `topics` (v13 responses carry only its id).
    names: Vec<String>,
    /// `(topic index, partition index in the response, log, end offset to be durable)`.
    pending_syncs: Vec<(usize, usize, Arc<PartitionLog>, i64)>,
}

/// Appends every partition's records. Returns `None` for acks=0 (no response is sent).
pub async fn start(ctx: &RequestContext, request: ProduceRequest) -> Option<Waiting> {
    let acks = request.acks;
    let valid_acks = matches!(acks, -1..=1);
    let mut topics = Vec::with_capacity(request.topic_data.len());
    let mut names = Vec::with_capacity(request.topic_data.len());
    let mut pending_syncs = Vec::new();
    let by_id = (ctx.version >= 13).then(|| super::topics_by_id(ctx));

    for (topic_index, topic_data) in request.topic_data.into_iter().enumerate() {
        let (name, topic) = match &by_id {
            Some(by_id) => find_topic_by_id(ctx, by_id, topic_data.topic_id),
            None => (
                topic_data.name.to_string(),
                find_topic(ctx, &topic_data.name),
            ),
        };
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for (partition_index, data) in topic_data.partition_data.into_iter().enumerate() {
            let mut response = PartitionProduceResponse::default().with_index(data.index);
            let outcome = if !valid_acks {
                Err(PartitionRefusal::new(
                    ResponseError::InvalidRequiredAcks,
                    format!("acks must be -1, 0 or 1, not {acks}"),
                ))
            } else {
                append(
                    ctx,
                    &topic,
                    data.index,
                    data.records.as_deref().unwrap_or_default(),
                    acks,
                )
                .await
            };
            match outcome {
                Ok((log, base_offset, end_offset, log_append_time)) => {
                    response.base_offset = base_offset;
                    response.log_append_time_ms = log_append_time;
                    response.log_start_offset = log.log_start_offset();
                    if needs_sync(&log) {
                        pending_syncs.push((topic_index, partition_index, log, end_offset));
                    }
                }
                Err(refusal) => {
                    let PartitionRefusal {
                        refusal,
                        record_errors,
                    } = refusal;
                    tracing::debug!(topic = %name, partition = data.index, error = ?refusal.error, message = %refusal.message, "produce refused");
                    response.error_code = refusal.code();
                    response.base_offset = -1;
                    if ctx.version >= 8 {
                        response.error_message = Some(str_bytes(refusal.message));
                        response.record_errors = record_errors
                            .into_iter()
                            .map(|(index, message)| {
                                BatchIndexAndErrorMessage::default()
                                    .with_batch_index(index)
                                    .with_batch_index_error_message(Some(str_bytes(message)))
                            })
                            .collect();
                    }
                }
            }
            partitions.push(response);
        }
        let response = TopicProduceResponse::default().with_partition_responses(partitions);
        topics.push(if ctx.version >= 13 {
            response.with_topic_id(topic_data.topic_id)
        } else {
            response.with_name(topic_data.name)
        });
        names.push(name);
    }
    if acks == 0 {
        // Nobody waits for an acks=0 produce, but its data only becomes visible to consumers
        // once durable, so it still takes part in the next group commit.
        for (t, p, log, end) in pending_syncs {
            let broker = ctx.broker.clone();
            let topic = names[t].clone();
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
        names,
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
                    let topic = self.names[t].clone();
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

/// Why one partition's records were refused: the error and its message, and from v8 which
/// records of the batch were at fault.
#[derive(Clone, Debug)]
struct PartitionRefusal {
    refusal: Refusal,
    /// Produce v8+ `record_errors`: the index of each refused record in its batch, and why.
    record_errors: Vec<(i32, String)>,
}

impl PartitionRefusal {
    fn new(error: ResponseError, message: impl Into<String>) -> PartitionRefusal {
        Refusal::new(error, message).into()
    }

    /// What Kafka answers for `error` from the log of `topic`-`partition`: records refused
    /// one by one get LogValidator's messages, per record and summed up.
    fn from_log(error: &LogError, topic: &str, partition: i32) -> PartitionRefusal {
        let LogError::KeylessRecords { batch_indexes } = error else {
            return PartitionRefusal::new(error.response_error(), error.to_string());
        };
        let record_errors: Vec<(i32, String)> = batch_indexes
            .iter()
            .map(|&index| {
                let message = format!(
                    "Compacted topic cannot accept message without key in topic partition \
                     {topic}-{partition}."
                );
                (index, message)
            })
            .collect();
        let shown: Vec<String> = record_errors
            .iter()
            .take(3)
            .map(|(index, message)| format!("RecordError(batchIndex={index}, message='{message}')"))
            .collect();
        let message = format!(
            "One or more records have been rejected due to {} record errors in total, and only \
             showing the first three errors at most: [{}]",
            record_errors.len(),
            shown.join(", ")
        );
        PartitionRefusal {
            refusal: Refusal::new(error.response_error(), message),
            record_errors,
        }
    }
}

impl From<Refusal> for PartitionRefusal {
    fn from(refusal: Refusal) -> PartitionRefusal {
        PartitionRefusal {
            refusal,
            record_errors: Vec::new(),
        }
    }
}

/// The topic, which the principal may write and which must exist: Produce never creates one
/// (see the module docs). Authorization comes first, so an unauthorized client cannot tell
/// which topics exist.
fn find_topic(
    ctx: &RequestContext,
    name: &kafka_protocol::messages::TopicName,
) -> Result<Arc<Topic>, PartitionRefusal> {
    if !ctx.may_on_topic(Operation::Write, name) {
        return Err(super::topic_denied(name, "Write").into());
    }
    ctx.broker.topics.get(name).ok_or_else(|| {
        let unknown = TopicError::Unknown(name.to_string());
        PartitionRefusal::from(Refusal::from(unknown))
    })
}

/// The topic named by `id` (v13+) with its name for logs: as in Kafka the id is resolved
/// first (UNKNOWN_TOPIC_ID), then Write on the topic's name is checked.
fn find_topic_by_id(
    ctx: &RequestContext,
    by_id: &HashMap<Uuid, Arc<Topic>>,
    id: Uuid,
) -> (String, Result<Arc<Topic>, PartitionRefusal>) {
    let Some(topic) = by_id.get(&id) else {
        let unknown = PartitionRefusal::new(
            ResponseError::UnknownTopicId,
            format!("this broker has no topic with id {id}"),
        );
        return (id.to_string(), Err(unknown));
    };
    if !ctx.may_on_topic(Operation::Write, &topic.name) {
        let denied = super::topic_denied(&topic.name, "Write").into();
        return (topic.name.clone(), Err(denied));
    }
    (topic.name.clone(), Ok(topic.clone()))
}

/// Appends to one partition; returns the log, the base offset, the end offset to wait for and
/// the log append time (-1 unless the topic has `message.timestamp.type=LogAppendTime`).
async fn append(
    ctx: &RequestContext,
    topic: &Result<Arc<Topic>, PartitionRefusal>,
    partition: i32,
    records: &[u8],
    acks: i16,
) -> Result<(Arc<PartitionLog>, i64, i64, i64), PartitionRefusal> {
    let topic = topic.as_ref().map_err(Clone::clone)?;
    check_in_sync_replicas(ctx, topic, partition, acks)?;
    let partition = topic.partition(partition).ok_or_else(|| {
        PartitionRefusal::new(
            ResponseError::UnknownTopicOrPartition,
            format!("topic {} has no partition {partition}", topic.name),
        )
    })?;
    if records.is_empty() {
        return Err(PartitionRefusal::new(
            ResponseError::CorruptMessage,
            "the request carries no record batch".to_string(),
        ));
    }
    check_transaction(ctx, &topic.name, partition.index, records)?;
    let now = crate::broker::now_ms();
    let log = &partition.log;
    let outcome = match log.try_append_at(records, now) {
        Ok(TryAppend::Appended(outcome)) => Ok(outcome),
        Ok(TryAppend::WouldBlock(prepared)) => append_on_blocking_pool(log, prepared).await,
        Err(e) => Err(e),
    };
    let outcome = outcome.map_err(|e| {
        if matches!(e, LogError::Storage(_)) {
            let log = &partition.log;
            ctx.broker
                .report_log_error("produce", &topic.name, partition.index, log, &e);
        }
        PartitionRefusal::from_log(&e, &topic.name, partition.index)
    })?;
    if !outcome.duplicate {
        partition
            .counters
            .record_in(outcome.bytes, outcome.record_count);
    }
    let log_append_time = match partition.log.config().timestamp_type {
        TimestampType::LogAppendTime if !outcome.duplicate => now,
        _ => -1,
    };
    Ok((
        partition.log.clone(),
        outcome.base_offset,
        outcome.last_offset + 1,
        log_append_time,
    ))
}

/// Finishes an append whose write waits (for the partition's writer, or for the fsyncs of a
/// segment roll) on tokio's blocking pool: on an async worker the wait would stall every
/// connection scheduled there, not only this one. The connection still awaits it before
/// reading its next request, so appends keep their request order.
async fn append_on_blocking_pool(
    log: &Arc<PartitionLog>,
    prepared: PreparedAppend,
) -> Result<AppendOutcome, LogError> {
    let log = Arc::clone(log);
    super::run_blocking(move || log.append_prepared(prepared)).await
}

/// A transactional batch may go only to a partition of its producer's ongoing transaction
/// (AddPartitionsToTxn first), as Kafka verifies since KIP-890: a late or stray write would
/// otherwise open a transaction in the partition that no EndTxn closes.
fn check_transaction(
    ctx: &RequestContext,
    topic: &str,
    partition: i32,
    records: &[u8],
) -> Result<(), PartitionRefusal> {
    let Ok(header) = freshet_log::BatchHeader::parse(records) else {
        // The log's validation names what is wrong with the batch.
        return Ok(());
    };
    if !header.is_transactional() {
        return Ok(());
    }
    ctx.broker
        .transactions
        .check_write(header.producer_id, header.producer_epoch, topic, partition)
        .map_err(|refusal| {
            PartitionRefusal::new(
                super::transactions::write_refusal_error(refusal),
                format!(
                    "producer {} (epoch {}) has no ongoing transaction holding {topic}-{partition}",
                    header.producer_id, header.producer_epoch
                ),
            )
        })
}

/// Kafka refuses acks=all writes while fewer replicas than `min.insync.replicas` are in
/// sync. Here a partition's only replica is this broker: a topic asking for more can take
/// acks=0 and acks=1 writes only. The topic's override wins over the dynamic broker config.
fn check_in_sync_replicas(
    ctx: &RequestContext,
    topic: &Topic,
    partition: i32,
    acks: i16,
) -> Result<(), PartitionRefusal> {
    if acks != -1 {
        return Ok(());
    }
    let required = ctx.broker.topics.min_insync_replicas(topic);
    if required > 1 {
        return Err(PartitionRefusal::new(
            ResponseError::NotEnoughReplicas,
            format!(
                "topic {} requires min.insync.replicas={required} for acks=all, but partition \
                 {partition} has 1 in-sync replica (this broker is its only replica)",
                topic.name
            ),
        ));
    }
    Ok(())
}

fn needs_sync(log: &PartitionLog) -> bool {
    matches!(log.config().durability, Durability::Fsync)
}
