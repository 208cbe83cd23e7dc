//! Partitions the worker's consumer is stuck on, and stepping past the batch that holds them.
//!
//! librdkafka gives no sign of a batch it cannot read. On a gzip batch of 512 MiB of zeros
//! (measured with librdkafka 2.12.1) it decompresses the whole body into one buffer, finds no
//! record in it, takes that for a fetch cut short, doubles its fetch size and fetches the same
//! batch again, up to 1 GiB and then on forever: no message, no error event, the position
//! never moves, and 512 MiB come and go every few seconds. No setting bounds that buffer.
//!
//! So the worker watches each owned partition's next offset. One that has records to read
//! (its high watermark is past it) but has not moved for [`STALL_AFTER`] is
//! probed: the batch at its offset is fetched from the leader over the raw protocol and read
//! with a cap ([`crate::cluster::batches`]). Only a batch that cannot be read is stepped past;
//! one that reads fine means the consumer is merely slow, and it is left alone.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;

use crate::cluster::fetch::{leader_address, unreadable_batch_at, PartitionFetcher};
use crate::cluster::view::SkippedBatch;
use crate::KafkaConfig;

/// How long a partition with records to read may go without progress before it is probed.
/// Long enough for librdkafka to fetch and deliver a batch it can read, however large.
pub(super) const STALL_AFTER: Duration = Duration::from_secs(5);
/// How long asking for a partition's high watermark may take.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a probe (metadata, connection and one Fetch) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// When each owned partition's next offset last moved.
#[derive(Debug, Default)]
pub(super) struct Progress {
    last_move: HashMap<i32, (i64, Instant)>,
}

impl Progress {
    /// Notes the partitions' next offsets at `now` and returns those that have not moved for
    /// [`STALL_AFTER`]. A partition is returned at most once per [`STALL_AFTER`]: its timer
    /// restarts, so a probe that finds nothing wrong is not repeated at once.
    pub(super) fn stalled(&mut self, positions: &[(i32, i64)], now: Instant) -> Vec<(i32, i64)> {
        self.last_move
            .retain(|partition, _| positions.iter().any(|(p, _)| p == partition));
        let mut stalled = Vec::new();
        for &(partition, offset) in positions {
            let entry = self.last_move.entry(partition).or_insert((offset, now));
            if entry.0 != offset {
                *entry = (offset, now);
            } else if now.duration_since(entry.1) >= STALL_AFTER {
                entry.1 = now;
                stalled.push((partition, offset));
            }
        }
        stalled
    }
}

/// Whether the partition has records at or after `offset` (ListOffsets: an idle partition is
/// "stalled" too, and this cheap question keeps it from being probed).
pub(super) fn has_records_after<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<bool, KafkaError> {
    let (_, high) = consumer.fetch_watermarks(topic, partition, WATERMARK_TIMEOUT)?;
    Ok(high > offset)
}

/// Asks the partition's leader whether the batch at `offset` can be read; the batch to step
/// past when it cannot.
pub(super) fn probe<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    runtime: &tokio::runtime::Runtime,
    kafka: &KafkaConfig,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<Option<SkippedBatch>, String> {
    let metadata = consumer
        .fetch_metadata(Some(topic), PROBE_TIMEOUT)
        .map_err(|e| format!("metadata: {e}"))?;
    let address = leader_address(&metadata, topic, partition)
        .ok_or_else(|| format!("partition {partition} has no leader"))?;
    runtime.block_on(async {
        let probing = async {
            let mut fetcher =
                PartitionFetcher::open(&address, kafka, topic, partition, PROBE_TIMEOUT).await?;
            unreadable_batch_at(&mut fetcher, offset).await
        };
        tokio::time::timeout(PROBE_TIMEOUT, probing)
            .await
            .unwrap_or_else(|_| Err(format!("no answer from {address} within {PROBE_TIMEOUT:?}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_stalled_once_per_period_while_it_does_not_move() {
        let mut progress = Progress::default();
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        assert!(progress.stalled(&[(0, 10), (1, 5)], at(0)).is_empty());
        assert!(progress.stalled(&[(0, 11), (1, 5)], at(4)).is_empty());
        assert_eq!(progress.stalled(&[(0, 11), (1, 5)], at(5)), [(1, 5)]);
        assert!(
            progress.stalled(&[(0, 11), (1, 5)], at(6)).is_empty(),
            "once"
        );
        assert_eq!(progress.stalled(&[(0, 11), (1, 5)], at(9)), [(0, 11)]);
        assert_eq!(progress.stalled(&[(0, 11), (1, 5)], at(10)), [(1, 5)]);
        // A partition that leaves and comes back starts over.
        assert!(progress.stalled(&[(0, 11)], at(11)).is_empty());
        assert!(progress.stalled(&[(0, 11), (1, 5)], at(12)).is_empty());
    }
}
