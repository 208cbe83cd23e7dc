//! ListOffsets: per partition, the first offset at or after a timestamp, or one of Kafka's
//! special timestamps:
//!
//! | value | name | answer |
//! |---|---|---|
//! | -1 | LATEST | the end of what the reader may see (the high watermark) |
//! | -2 | EARLIEST | the log start offset |
//! | -3 | MAX_TIMESTAMP (KIP-734, v7+) | the first record with the largest timestamp, and that timestamp |
//! | -4 | EARLIEST_LOCAL (KIP-405, v8+) | the local log start: with no remote tier, the log start offset |
//! | -5 | LATEST_TIERED (KIP-1005, v9+) | the last tiered offset: with no tiered storage, offset -1 and no error, as Kafka answers for a topic without it |
//!
//! Like Kafka, the special values are honoured at any version (clients only send them at the
//! version that introduced them); other negative timestamps answer INVALID_REQUEST. A
//! partition named twice in one request answers INVALID_REQUEST, as in Kafka.

use std::collections::HashSet;

use freshet_log::{LogError, PartitionLog};
use freshet_security::acl::Operation;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::RequestContext;

/// ListOffsets' isolation level of read_committed consumers (v2+): LATEST is the last stable
/// offset.
const READ_COMMITTED: i8 = 1;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

/// Kafka's "no timestamp" and "no leader epoch".
const NONE: i64 = -1;
const NO_EPOCH: i32 = -1;

/// An answer for one partition: `(offset, timestamp)`, or `None` when no record qualifies
/// (offset and timestamp -1, no error).
type Found = Option<(i64, i64)>;

pub async fn handle(ctx: &RequestContext, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let isolation_level = request.isolation_level;
    let mut seen = HashSet::new();
    let duplicates: HashSet<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.to_string(), p.partition_index))
        })
        .filter(|key| !seen.insert(key.clone()))
        .collect();
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
                        .with_partition_index(p.partition_index)
                        .with_offset(NONE)
                        .with_timestamp(NONE);
                    let refuse =
                        |error: ResponseError| response.clone().with_error_code(error.code());
                    if duplicates.contains(&(topic.name.to_string(), p.partition_index)) {
                        return refuse(ResponseError::InvalidRequest);
                    }
                    if !allowed {
                        return refuse(ResponseError::TopicAuthorizationFailed);
                    }
                    let Some(partition) =
                        found.as_ref().and_then(|t| t.partition(p.partition_index))
                    else {
                        return refuse(ResponseError::UnknownTopicOrPartition);
                    };
                    let answer = match lookup(&partition.log, p.timestamp, isolation_level) {
                        Ok(answer) => answer,
                        Err(Lookup::Unsupported) => {
                            tracing::debug!(timestamp = p.timestamp, "unknown special timestamp");
                            return refuse(ResponseError::InvalidRequest);
                        }
                        Err(Lookup::Log(e)) => return response.with_error_code(e.error_code()),
                    };
                    let (response, epoch) = match answer {
                        // A single node is the leader of every partition forever: epoch 0.
                        Some((offset, timestamp)) => {
                            (response.with_offset(offset).with_timestamp(timestamp), 0)
                        }
                        None => (response, NO_EPOCH),
                    };
                    if ctx.version >= 4 {
                        response.with_leader_epoch(epoch)
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

/// Why a partition has no answer.
enum Lookup {
    /// A negative timestamp that is none of Kafka's special values.
    Unsupported,
    Log(LogError),
}

fn lookup(log: &PartitionLog, timestamp: i64, isolation_level: i8) -> Result<Found, Lookup> {
    let end = fetchable_end(log, isolation_level);
    let found = match timestamp {
        LATEST => Some((end, NONE)),
        EARLIEST | EARLIEST_LOCAL => Some((log.log_start_offset(), NONE)),
        LATEST_TIERED => None,
        MAX_TIMESTAMP => log.offset_of_max_timestamp(end).map_err(Lookup::Log)?,
        // As in Kafka, a record the reader may not see yet is no answer.
        at_or_after if at_or_after >= 0 => log
            .offset_for_timestamp(at_or_after)
            .map_err(Lookup::Log)?
            .filter(|&(offset, _)| offset < end),
        _ => return Err(Lookup::Unsupported),
    };
    Ok(found)
}

/// The end of what a reader at `isolation_level` may see, which bounds every answer:
/// read_committed gets the last stable offset, as Kafka answers LATEST with it and leaves out
/// every record at or after it.
fn fetchable_end(log: &PartitionLog, isolation_level: i8) -> i64 {
    if isolation_level == READ_COMMITTED {
        log.last_stable_offset()
    } else {
        log.high_watermark()
    }
}
