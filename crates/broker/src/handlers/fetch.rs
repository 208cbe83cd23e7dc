//! Fetch: read whole batches from each partition's log, long-polling until `min_bytes` are
//! available or `max_wait_ms` has passed.
//!
//! Only durable data is visible (the log's high watermark); read_committed consumers see only
//! what lies below the last stable offset, with the aborted transactions they must skip. Fetch sessions (KIP-227) are not
//! kept: the response's session id is 0, which tells clients to send full fetches. From v13
//! topics are named by id (KIP-516); an unknown id answers UNKNOWN_TOPIC_ID. The fields
//! later versions add for followers (replica state, directory ids, high watermarks) concern
//! replication, which a single node does not do, and are ignored.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use freshet_log::{AbortedTxn, Isolation, LogError};
use freshet_security::acl::Operation;
use kafka_protocol::messages::fetch_request::FetchTopic;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::ResponseError;
use tokio::sync::watch;
use tokio::time::Instant;

use super::RequestContext;
use crate::topics::Partition;

/// Upper bound on a long poll, whatever the client asks.
const MAX_WAIT: Duration = Duration::from_secs(30);

pub async fn handle(ctx: &RequestContext, request: FetchRequest) -> FetchResponse {
    if ctx.version >= 7 && request.session_id != 0 {
        // We never hand out session ids, so an incremental fetch names a session we do not have.
        return FetchResponse::default()
            .with_error_code(ResponseError::FetchSessionIdNotFound.code());
    }
    let wait = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0)).min(MAX_WAIT);
    let deadline = Instant::now() + wait;
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    let max_bytes = match usize::try_from(request.max_bytes) {
        Ok(0) | Err(_) => usize::MAX,
        Ok(n) => n,
    };
    loop {
        // Subscribe before reading so that data arriving between the read and the wait wakes us.
        let mut watchers = Vec::new();
        let isolation = isolation(ctx.version, request.isolation_level);
        let round = read_round(ctx, &request.topics, max_bytes, isolation, &mut watchers);
        // min_bytes = 0 asks for an immediate answer, even an empty one.
        let done = round.bytes >= min_bytes
            || round.has_error
            || Instant::now() >= deadline
            || watchers.is_empty();
        if done {
            count_out(&round.read);
            return FetchResponse::default().with_responses(round.topics);
        }
        wait_for_data(&mut watchers, deadline).await;
    }
}

/// One pass over every requested partition.
struct Round {
    topics: Vec<FetchableTopicResponse>,
    bytes: usize,
    has_error: bool,
    read: Vec<(Arc<Partition>, Bytes)>,
}

/// read_committed (isolation level 1, Fetch v4+) reads only below the last stable offset.
fn isolation(version: i16, level: i8) -> Isolation {
    if version >= 4 && level == 1 {
        Isolation::ReadCommitted
    } else {
        Isolation::ReadUncommitted
    }
}

fn read_round(
    ctx: &RequestContext,
    topics: &[FetchTopic],
    max_bytes: usize,
    isolation: Isolation,
    watchers: &mut Vec<watch::Receiver<i64>>,
) -> Round {
    let mut round = Round {
        topics: Vec::with_capacity(topics.len()),
        bytes: 0,
        has_error: false,
        read: Vec::new(),
    };
    // Looked up again every round: a topic deleted meanwhile must not be read through its id.
    let by_id = (ctx.version >= 13).then(|| super::topics_by_id(ctx));
    for fetch_topic in topics {
        let (name, topic) = match &by_id {
            Some(by_id) => {
                let topic = by_id.get(&fetch_topic.topic_id).cloned();
                let name = topic.as_ref().map(|t| t.name.clone()).unwrap_or_default();
                (name, topic)
            }
            None => (
                fetch_topic.topic.to_string(),
                ctx.broker.topics.get(&fetch_topic.topic),
            ),
        };
        // As in Kafka, an id is resolved before the name is authorized.
        let unknown_id = by_id.is_some() && topic.is_none();
        let allowed = unknown_id || ctx.may_on_topic(Operation::Read, &name);
        let mut partitions = Vec::with_capacity(fetch_topic.partitions.len());
        for fetch in &fetch_topic.partitions {
            let mut data = PartitionData::default().with_partition_index(fetch.partition);
            if unknown_id {
                data.error_code = ResponseError::UnknownTopicId.code();
                data.high_watermark = -1;
                round.has_error = true;
                partitions.push(data);
                continue;
            }
            if !allowed {
                data.error_code = ResponseError::TopicAuthorizationFailed.code();
                data.high_watermark = -1;
                round.has_error = true;
                partitions.push(data);
                continue;
            }
            let Some(partition) = topic.as_ref().and_then(|t| t.partition(fetch.partition)) else {
                data.error_code = ResponseError::UnknownTopicOrPartition.code();
                data.high_watermark = -1;
                round.has_error = true;
                partitions.push(data);
                continue;
            };
            let mut watcher = partition.log.watch_high_watermark();
            watcher.borrow_and_update();
            let budget = max_bytes.saturating_sub(round.bytes);
            let partition_max = usize::try_from(fetch.partition_max_bytes)
                .unwrap_or(0)
                .min(budget);
            // KIP-74: the first non-empty partition returns at least one whole batch, so a batch
            // larger than the limits never stalls a consumer.
            let min_one_batch = round.bytes == 0;
            match partition.log.read_isolated(
                fetch.fetch_offset,
                partition_max,
                min_one_batch,
                isolation,
            ) {
                Ok(outcome) => {
                    data.high_watermark = outcome.high_watermark;
                    data.last_stable_offset = outcome.last_stable_offset;
                    if isolation == Isolation::ReadCommitted {
                        data.aborted_transactions =
                            Some(aborted_list(&outcome.aborted_transactions));
                    }
                    data.log_start_offset = outcome.log_start_offset;
                    watchers.push(watcher);
                    if !outcome.records.is_empty() {
                        round.bytes += outcome.records.len();
                        round
                            .read
                            .push((partition.clone(), outcome.records.clone()));
                    }
                    data.records = Some(outcome.records);
                }
                Err(e) => {
                    data.error_code = e.error_code();
                    data.high_watermark = partition.log.high_watermark();
                    data.log_start_offset = partition.log.log_start_offset();
                    data.last_stable_offset = partition.log.last_stable_offset();
                    round.has_error = true;
                    if !matches!(e, LogError::OffsetOutOfRange { .. }) {
                        tracing::warn!(topic = %name, partition = fetch.partition, error = %e, "fetch failed");
                    }
                }
            }
            partitions.push(data);
        }
        let response = FetchableTopicResponse::default().with_partitions(partitions);
        round.topics.push(if by_id.is_some() {
            response.with_topic_id(fetch_topic.topic_id)
        } else {
            response.with_topic(fetch_topic.topic.clone())
        });
    }
    round
}

/// Waits until any watched high watermark moves or the deadline passes.
async fn wait_for_data(watchers: &mut [watch::Receiver<i64>], deadline: Instant) {
    let changes = watchers.iter_mut().map(|w| Box::pin(w.changed()));
    tokio::select! {
        _ = futures::future::select_all(changes) => {}
        _ = tokio::time::sleep_until(deadline) => {}
    }
}

/// Counts bytes and records served, per partition.
fn count_out(read: &[(Arc<Partition>, Bytes)]) {
    for (partition, records) in read {
        partition
            .counters
            .record_out(records.len() as u64, count_records(records));
    }
}

/// Records in whole batches read from the log (headers only; the log validated them).
fn count_records(mut batches: &[u8]) -> u64 {
    let mut count = 0;
    while let Ok(header) = freshet_log::BatchHeader::parse(batches) {
        count += u64::try_from(header.record_count).unwrap_or(0);
        match batches.get(header.total_size()..) {
            Some(rest) => batches = rest,
            None => break,
        }
    }
    count
}

/// The aborted transactions a read_committed consumer needs to drop records of.
fn aborted_list(aborted: &[AbortedTxn]) -> Vec<AbortedTransaction> {
    aborted
        .iter()
        .map(|txn| {
            AbortedTransaction::default()
                .with_producer_id(txn.producer_id.into())
                .with_first_offset(txn.first_offset)
        })
        .collect()
}
