//! Reading one partition over the raw protocol: a Fetch to its leader, its batches read with
//! [`batches`](super::batches) (so a decompression bomb costs at most the cap), and a walk
//! over them that collects records and steps past the batches that cannot be read.
//!
//! What a consumer with librdkafka's defaults sees is kept: only committed records
//! (`read_committed`: the broker answers up to the last stable offset and lists the aborted
//! transactions, whose records are left out), and no control records.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rdkafka::metadata::Metadata;

use super::batches::{self, Entry, Record, MAX_UNCOMPRESSED_BATCH_BYTES};
use super::view::SkippedBatch;
use super::wire::{Connection, WireError};
use crate::KafkaConfig;

/// Fetch v13 and later name topics by id, which the metadata librdkafka exposes lacks.
const NEWEST_FETCH_VERSION: i16 = 12;
/// `isolation_level` of a Fetch that sees committed records only.
const READ_COMMITTED: i8 = 1;
/// Bytes asked for per Fetch: about a page. The broker answers at least one whole batch
/// however large (KIP-74), so a bigger batch is still read.
pub(crate) const FETCH_BYTES: i32 = 1 << 20;

/// A connection to a partition's leader that fetches from it.
#[derive(Debug)]
pub(crate) struct PartitionFetcher {
    connection: Connection,
    topic: String,
    partition: i32,
    timeout: Duration,
}

/// What one Fetch answered for the partition.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fetched {
    /// Whole or partial batches from the one holding the fetch offset on.
    pub(crate) records: Bytes,
    /// `(producer id, first offset)` of the transactions aborted in the range.
    pub(crate) aborted: Vec<(i64, i64)>,
}

impl PartitionFetcher {
    /// Connects to the leader at `address` as `kafka` says; every request then waits at most
    /// `timeout`.
    pub(crate) async fn open(
        address: &str,
        kafka: &KafkaConfig,
        topic: &str,
        partition: i32,
        timeout: Duration,
    ) -> Result<PartitionFetcher, WireError> {
        Ok(PartitionFetcher {
            connection: Connection::open(address, kafka, timeout).await?,
            topic: topic.to_string(),
            partition,
            timeout,
        })
    }

    /// The batches from `offset` on, about `max_bytes` of them, answered at once (the broker
    /// does not wait for more).
    pub(crate) async fn fetch(
        &mut self,
        offset: i64,
        max_bytes: i32,
    ) -> Result<Fetched, WireError> {
        self.fetch_partition(self.partition, offset, max_bytes)
            .await
    }

    /// [`fetch`](Self::fetch) from another partition of the same topic that this connection's
    /// broker leads: one connection per leader serves every partition it leads (the
    /// topic-wide search, `super::search`).
    pub(crate) async fn fetch_partition(
        &mut self,
        partition: i32,
        offset: i64,
        max_bytes: i32,
    ) -> Result<Fetched, WireError> {
        let request = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(max_bytes)
            .with_isolation_level(READ_COMMITTED)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(self.topic.clone())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(max_bytes)])]);
        let (_, response) = self
            .connection
            .call_up_to(&request, NEWEST_FETCH_VERSION, self.timeout)
            .await?;
        check_error(response.error_code, "Fetch")?;
        let answer = response
            .responses
            .into_iter()
            .filter(|topic| topic.topic.as_str() == self.topic)
            .flat_map(|topic| topic.partitions)
            .find(|answer| answer.partition_index == partition)
            .ok_or_else(|| format!("Fetch answered without partition {partition}"))?;
        check_error(answer.error_code, "Fetch")?;
        Ok(Fetched {
            records: answer.records.unwrap_or_default(),
            aborted: answer
                .aborted_transactions
                .unwrap_or_default()
                .iter()
                .map(|aborted| (aborted.producer_id.0, aborted.first_offset))
                .collect(),
        })
    }
}

fn check_error(code: i16, what: &str) -> Result<(), WireError> {
    match code {
        0 => Ok(()),
        code => Err(match ResponseError::try_from_code(code) {
            Some(error) => format!("{what} failed: {error:?} ({code})"),
            None => format!("{what} failed with error {code}"),
        }),
    }
}

/// `host:port` of the leader of `partition` of `topic` in `metadata`, if it has one.
pub(crate) fn leader_address(metadata: &Metadata, topic: &str, partition: i32) -> Option<String> {
    let leader = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)?
        .partitions()
        .iter()
        .find(|p| p.id() == partition)?
        .leader();
    let broker = metadata.brokers().iter().find(|b| b.id() == leader)?;
    Some(super::topics::broker_address(broker.host(), broker.port()))
}

/// The unreadable batch holding `offset`, if the batch there cannot be read: what a consumer
/// stuck at `offset` should step past. `None` when the batch there reads fine (the consumer is
/// only slow) or there is none.
pub(crate) async fn unreadable_batch_at(
    fetcher: &mut PartitionFetcher,
    offset: i64,
) -> Result<Option<SkippedBatch>, WireError> {
    let fetched = fetcher.fetch(offset, FETCH_BYTES).await?;
    let mut walk = PageWalk::new(offset, i64::MAX, usize::MAX);
    // Only the entry holding `offset` matters: the walk stops at the first.
    walk.take_first(&fetched);
    Ok(walk.skipped.into_iter().next())
}

/// A page being read: records from `position` on, before `end`, at most `limit` of them, and
/// the unreadable batches stepped over on the way.
#[derive(Debug)]
pub(crate) struct PageWalk {
    /// The next offset to read: past every record and batch taken so far.
    pub(crate) position: i64,
    end: i64,
    limit: usize,
    pub(crate) records: Vec<Record>,
    pub(crate) skipped: Vec<SkippedBatch>,
    aborted: AbortedTransactions,
}

impl PageWalk {
    pub(crate) fn new(start: i64, end: i64, limit: usize) -> PageWalk {
        PageWalk {
            position: start,
            end,
            limit,
            records: Vec::new(),
            skipped: Vec::new(),
            aborted: AbortedTransactions::default(),
        }
    }

    /// Whether the page holds all it may, or reached its end.
    pub(crate) fn is_done(&self) -> bool {
        self.records.len() >= self.limit || self.position >= self.end
    }

    /// Takes the entries of one Fetch answer. Returns false when it moved nothing: the answer
    /// held nothing at or after the position (the partition ends there, for now).
    pub(crate) fn take(&mut self, fetched: &Fetched) -> bool {
        let before = self.position;
        self.aborted.add(&fetched.aborted);
        for entry in batches::entries(&fetched.records) {
            if self.is_done() {
                break;
            }
            self.take_entry(entry);
        }
        self.position > before
    }

    /// Takes only the first entry at or after the position.
    fn take_first(&mut self, fetched: &Fetched) {
        self.aborted.add(&fetched.aborted);
        let position = self.position;
        let first = batches::entries(&fetched.records)
            .into_iter()
            .find(|entry| entry_last_offset(entry) >= position);
        if let Some(entry) = first {
            self.take_entry(entry);
        }
    }

    fn take_entry(&mut self, entry: Entry<'_>) {
        let batch = match entry {
            Entry::Unreadable {
                last_offset,
                reason,
            } => return self.skip(last_offset, reason),
            Entry::Batch(batch) => batch,
        };
        let header = batch.header;
        // A batch before the position (the one holding it starts earlier, or the broker sent
        // more) has nothing new; one at or past the end belongs to a later page.
        if header.last_offset() < self.position || header.base_offset >= self.end {
            return;
        }
        if !self.aborted.admits(&header) {
            self.position = header.last_offset().saturating_add(1);
            return;
        }
        let records = match batch.records(MAX_UNCOMPRESSED_BATCH_BYTES) {
            Ok(records) => records,
            Err(reason) => return self.skip(header.last_offset(), reason),
        };
        for record in records {
            if record.offset < self.position {
                continue;
            }
            if record.offset >= self.end || self.records.len() >= self.limit {
                return;
            }
            self.position = record.offset.saturating_add(1);
            self.records.push(record);
        }
        // All of the batch is taken: the next one starts after its last offset, even when
        // compaction removed the records just before it.
        self.position = self.position.max(header.last_offset().saturating_add(1));
    }

    /// Steps past an unreadable entry whose last offset is `last_offset`, with an entry for
    /// the offsets stepped over (at least the position, so the walk always moves).
    fn skip(&mut self, last_offset: i64, reason: String) {
        let to_offset = last_offset.max(self.position);
        // Info, not a warning: the reader's caller reports it (a page's `skipped`, the
        // tracker's dead-letter record), and a page read again logs it again.
        tracing::info!(
            from_offset = self.position,
            to_offset,
            %reason,
            "stepping past a batch that cannot be read"
        );
        self.skipped.push(SkippedBatch {
            from_offset: self.position,
            to_offset,
            reason,
        });
        self.position = to_offset.saturating_add(1);
    }
}

fn entry_last_offset(entry: &Entry<'_>) -> i64 {
    match entry {
        Entry::Batch(batch) => batch.header.last_offset(),
        Entry::Unreadable { last_offset, .. } => *last_offset,
    }
}

/// The aborted transactions a read_committed Fetch lists, applied to the batches in offset
/// order as librdkafka does: a transaction is aborted from its first offset until its
/// producer's next control batch (the abort marker).
#[derive(Debug, Default)]
struct AbortedTransactions {
    /// `(first offset, producer id)` not reached yet, latest first so the next is at the end.
    upcoming: Vec<(i64, i64)>,
    /// Producers whose current transaction is aborted.
    ongoing: HashSet<i64>,
    /// Every entry added, since a later Fetch may list the same transactions again.
    seen: HashSet<(i64, i64)>,
}

impl AbortedTransactions {
    fn add(&mut self, aborted: &[(i64, i64)]) {
        for &(producer_id, first_offset) in aborted {
            if self.seen.insert((producer_id, first_offset)) {
                self.upcoming.push((first_offset, producer_id));
            }
        }
        self.upcoming.sort_unstable_by(|a, b| b.cmp(a));
    }

    /// Whether the records of the batch are shown: not a control batch, and not part of an
    /// aborted transaction.
    fn admits(&mut self, header: &batches::BatchHeader) -> bool {
        while let Some(&(first_offset, producer_id)) = self.upcoming.last() {
            if first_offset > header.last_offset() {
                break;
            }
            self.ongoing.insert(producer_id);
            self.upcoming.pop();
        }
        if header.is_control() {
            self.ongoing.remove(&header.producer_id);
            return false;
        }
        !(header.is_transactional() && self.ongoing.contains(&header.producer_id))
    }
}

#[cfg(test)]
mod tests {
    use super::super::batches::tests::{compress, raw_batch, record_bytes, written_by};
    use super::*;

    const GZIP: i16 = 1;
    const TRANSACTIONAL: i16 = 0x10;
    const CONTROL: i16 = 0x20;

    /// An uncompressed batch of one record per value, from `base_offset`.
    fn good(base_offset: i64, values: &[&str]) -> Vec<u8> {
        let body: Vec<u8> = values
            .iter()
            .enumerate()
            .flat_map(|(delta, value)| record_bytes(delta as i64, value.as_bytes()))
            .collect();
        let last = values.len() as i32 - 1;
        raw_batch(base_offset, 0, last, values.len() as i32, &body)
    }

    /// A gzip batch of zeros at `base_offset` claiming `count` records.
    fn bomb(base_offset: i64, count: i32) -> Vec<u8> {
        raw_batch(
            base_offset,
            GZIP,
            count - 1,
            count,
            &compress(GZIP, &[0; 4096]),
        )
    }

    fn fetched(batches: &[Vec<u8>]) -> Fetched {
        Fetched {
            records: Bytes::from(batches.concat()),
            aborted: Vec::new(),
        }
    }

    fn values(walk: &PageWalk) -> Vec<(i64, String)> {
        walk.records
            .iter()
            .map(|r| {
                let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default());
                (r.offset, value.into_owned())
            })
            .collect()
    }

    #[test]
    fn a_page_steps_past_an_unreadable_batch_and_goes_on() {
        let mut walk = PageWalk::new(0, 8, 50);
        let moved = walk.take(&fetched(&[
            good(0, &["a", "b"]),
            bomb(2, 3),
            good(5, &["f", "g", "h"]),
        ]));
        assert!(moved);
        assert_eq!(
            values(&walk),
            [(0, "a"), (1, "b"), (5, "f"), (6, "g"), (7, "h")].map(|(o, v)| (o, v.to_string()))
        );
        assert_eq!(walk.skipped.len(), 1);
        let skipped = &walk.skipped[0];
        assert_eq!((skipped.from_offset, skipped.to_offset), (2, 4));
        assert!(
            skipped.reason.starts_with("gzip batch of")
                && skipped.reason.contains("claiming 3 records"),
            "{}",
            skipped.reason
        );
        assert_eq!(walk.position, 8);
        assert!(walk.is_done());
    }

    #[test]
    fn a_page_starting_inside_an_unreadable_batch_skips_from_its_start() {
        let mut walk = PageWalk::new(3, 8, 50);
        walk.take(&fetched(&[bomb(2, 3), good(5, &["f"])]));
        assert_eq!(walk.skipped[0].from_offset, 3);
        assert_eq!(walk.skipped[0].to_offset, 4);
        assert_eq!(values(&walk), [(5, "f".to_string())]);
        assert_eq!(walk.position, 6);
    }

    #[test]
    fn a_full_page_ends_after_its_last_record_even_inside_a_batch() {
        let mut walk = PageWalk::new(1, 10, 2);
        walk.take(&fetched(&[good(0, &["a", "b", "c", "d"]), bomb(4, 1)]));
        assert_eq!(values(&walk), [(1, "b".to_string()), (2, "c".to_string())]);
        assert!(walk.skipped.is_empty(), "the bomb is for the next page");
        assert_eq!(walk.position, 3);
    }

    #[test]
    fn a_page_ends_before_the_end_offset_and_after_compacted_gaps() {
        // The batch's last offset (delta 4) is past its last record (delta 1): compaction.
        let body = [record_bytes(0, b"a"), record_bytes(1, b"b")].concat();
        let compacted = raw_batch(0, 0, 4, 2, &body);
        let mut walk = PageWalk::new(0, 6, 50);
        walk.take(&fetched(&[
            compacted,
            good(5, &["f"]),
            good(6, &["past the end"]),
        ]));
        assert_eq!(
            values(&walk),
            [(0, "a"), (1, "b"), (5, "f")].map(|(o, v)| (o, v.to_string()))
        );
        assert_eq!(walk.position, 6);
    }

    #[test]
    fn a_fetch_with_nothing_new_does_not_move_the_page() {
        let mut walk = PageWalk::new(2, 10, 50);
        assert!(!walk.take(&fetched(&[])));
        assert!(!walk.take(&fetched(&[good(0, &["a", "b"])])));
        assert_eq!(walk.position, 2);
    }

    #[test]
    fn aborted_transactions_and_control_batches_are_not_shown() {
        let transactional = |base, values: &[&str], producer| {
            written_by(good(base, values), producer, TRANSACTIONAL)
        };
        let marker =
            |base, producer| written_by(good(base, &["marker"]), producer, TRANSACTIONAL | CONTROL);
        let mut walk = PageWalk::new(0, 7, 50);
        walk.take(&Fetched {
            records: Bytes::from(
                [
                    transactional(0, &["aborted-1", "aborted-2"], 7),
                    transactional(2, &["committed"], 8),
                    marker(3, 7),
                    marker(4, 8),
                    transactional(5, &["later, committed"], 7),
                    good(6, &["plain"]),
                ]
                .concat(),
            ),
            aborted: vec![(7, 0)],
        });
        assert_eq!(
            values(&walk),
            [(2, "committed"), (5, "later, committed"), (6, "plain")]
                .map(|(o, v)| (o, v.to_string()))
        );
        assert!(walk.skipped.is_empty());
        assert_eq!(walk.position, 7);
    }

    #[test]
    fn the_probe_names_only_the_batch_at_the_offset() {
        let mut walk = PageWalk::new(1, i64::MAX, usize::MAX);
        walk.take_first(&fetched(&[good(0, &["a", "b"]), bomb(2, 1)]));
        assert!(
            walk.skipped.is_empty(),
            "the batch holding offset 1 reads fine"
        );
        let mut walk = PageWalk::new(2, i64::MAX, usize::MAX);
        walk.take_first(&fetched(&[good(0, &["a", "b"]), bomb(2, 1), bomb(3, 1)]));
        assert_eq!(walk.skipped.len(), 1);
        assert_eq!(
            (walk.skipped[0].from_offset, walk.skipped[0].to_offset),
            (2, 2)
        );
    }
}
