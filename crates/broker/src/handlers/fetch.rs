//! Fetch: read whole batches from each partition's log, long-polling until `min_bytes` are
//! available or `max_wait_ms` has passed.
//!
//! Only durable data is visible (the log's high watermark). Fetch sessions (KIP-227) are not
//! kept: the response's session id is 0, which tells clients to send full fetches.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use freshet_log::LogError;
use freshet_security::acl::Operation;
use kafka_protocol::messages::fetch_request::FetchTopic;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
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
        let round = read_round(ctx, &request.topics, max_bytes, &mut watchers);
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

fn read_round(
    ctx: &RequestContext,
    topics: &[FetchTopic],
    max_bytes: usize,
    watchers: &mut Vec<watch::Receiver<i64>>,
) -> Round {
    let mut round = Round {
        topics: Vec::with_capacity(topics.len()),
        bytes: 0,
        has_error: false,
        read: Vec::new(),
    };
    for fetch_topic in topics {
        let topic = ctx.broker.topics.get(&fetch_topic.topic);
        let allowed = ctx.may_on_topic(Operation::Read, &fetch_topic.topic);
        let mut partitions = Vec::with_capacity(fetch_topic.partitions.len());
        for fetch in &fetch_topic.partitions {
            let mut data = PartitionData::default().with_partition_index(fetch.partition);
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
            match partition
                .log
                .read(fetch.fetch_offset, partition_max, min_one_batch)
            {
                Ok(outcome) => {
                    data.high_watermark = outcome.high_watermark;
                    data.last_stable_offset = outcome.high_watermark;
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
                    data.last_stable_offset = data.high_watermark;
                    round.has_error = true;
                    if !matches!(e, LogError::OffsetOutOfRange { .. }) {
                        tracing::warn!(topic = %fetch_topic.topic.as_str(), partition = fetch.partition, error = %e, "fetch failed");
                    }
                }
            }
            partitions.push(data);
        }
        round.topics.push(
            FetchableTopicResponse::default()
                .with_topic(fetch_topic.topic.clone())
                .with_partitions(partitions),
        );
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
