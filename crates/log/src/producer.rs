//! Idempotent producer state: per producer id, its epoch and its last five batches' sequence
//! ranges and offsets, so that a retried batch gets its original offsets back and a gap in
//! sequence numbers is refused.
//!
//! Rebuilding after a restart: this state is snapshotted to `<offset>.snapshot` (JSON, written
//! atomically) whenever a segment rolls and at clean shutdown, covering every batch below
//! `<offset>`. On open the newest usable snapshot is loaded and only the batch headers after
//! it are replayed (header-only positioned reads), which bounds the work to about one segment
//! instead of the whole log. Snapshots also keep the state of batches that compaction removed
//! or retention deleted. Without any snapshot the whole log is replayed.

use std::collections::{BTreeSet, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::batch::{increment_sequence, BatchHeader};
use crate::error::LogError;
use crate::txn::TxnMarker;

/// How many recent batches per producer are remembered for duplicate detection (Kafka's
/// `max.in.flight.requests.per.connection` limit for idempotence).
pub(crate) const CACHED_BATCHES: usize = 5;

const SNAPSHOT_VERSION: u32 = 1;

/// Sequence range and offsets of one appended batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

impl BatchMetadata {
    fn of(header: &BatchHeader) -> BatchMetadata {
        BatchMetadata {
            first_seq: header.base_sequence,
            last_seq: header.last_sequence(),
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
        }
    }
}

/// What the log knows of one producer id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProducerEntry {
    pub producer_id: i64,
    pub epoch: i16,
    /// Oldest first, at most CACHED_BATCHES.
    pub batches: VecDeque<BatchMetadata>,
    /// Offset of the first batch of this producer's open transaction in this partition.
    /// (Snapshots written before transactions existed have none.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn_first_offset: Option<i64>,
    /// Largest timestamp of its last batch, or -1 (DescribeProducers shows it).
    #[serde(default = "no_timestamp")]
    pub last_timestamp: i64,
    /// Coordinator epoch of the last marker written for it, or -1.
    #[serde(default = "no_coordinator_epoch")]
    pub coordinator_epoch: i32,
}

fn no_timestamp() -> i64 {
    -1
}

fn no_coordinator_epoch() -> i32 {
    -1
}

/// What DescribeProducers reports of one producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerSummary {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Sequence number of its last record, or -1.
    pub last_sequence: i32,
    pub last_timestamp: i64,
    pub coordinator_epoch: i32,
    /// First offset of its open transaction here, or -1.
    pub current_txn_start_offset: i64,
}

impl ProducerEntry {
    fn new(producer_id: i64, epoch: i16) -> ProducerEntry {
        ProducerEntry {
            producer_id,
            epoch,
            batches: VecDeque::new(),
            txn_first_offset: None,
            last_timestamp: -1,
            coordinator_epoch: -1,
        }
    }

    /// Judges a batch of this producer against this entry.
    fn check(&self, header: &BatchHeader) -> Result<Verdict, LogError> {
        let sequence = header.base_sequence;
        if header.producer_epoch < self.epoch {
            return Err(LogError::InvalidProducerEpoch {
                producer_id: self.producer_id,
                current: self.epoch,
                received: header.producer_epoch,
            });
        }
        if header.producer_epoch > self.epoch {
            // A new epoch starts its sequence numbers over.
            return expect_sequence(header, 0);
        }
        let last_sequence = header.last_sequence();
        if let Some(original) = self
            .batches
            .iter()
            .find(|b| b.first_seq == sequence && b.last_seq == last_sequence)
        {
            return Ok(Verdict::Duplicate(*original));
        }
        let expected = self
            .batches
            .back()
            .map_or(0, |last| increment_sequence(last.last_seq, 1));
        expect_sequence(header, expected)
    }

    /// Remembers an appended batch (its header carries its final offsets); a transactional
    /// one opens the producer's transaction here if none is open.
    fn record(&mut self, header: &BatchHeader) {
        self.adopt_epoch(header.producer_epoch);
        self.batches.push_back(BatchMetadata::of(header));
        while self.batches.len() > CACHED_BATCHES {
            self.batches.pop_front();
        }
        self.last_timestamp = header.max_timestamp;
        if header.is_transactional() && self.txn_first_offset.is_none() {
            self.txn_first_offset = Some(header.base_offset);
        }
    }

    /// A newer epoch starts sequence numbers over.
    fn adopt_epoch(&mut self, epoch: i16) {
        if epoch > self.epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
    }

    /// A non-transactional batch while this producer's transaction is open here would be
    /// neither committed nor aborted; Kafka refuses it too.
    fn check_transactional_flag(&self, header: &BatchHeader) -> Result<(), LogError> {
        if !header.is_transactional() && self.txn_first_offset.is_some() {
            return Err(LogError::InvalidTxnState(format!(
                "producer {} sent a non-transactional batch inside its open transaction",
                self.producer_id
            )));
        }
        Ok(())
    }

    fn summary(&self) -> ProducerSummary {
        ProducerSummary {
            producer_id: self.producer_id,
            producer_epoch: self.epoch,
            last_sequence: self.batches.back().map_or(-1, |b| b.last_seq),
            last_timestamp: self.last_timestamp,
            coordinator_epoch: self.coordinator_epoch,
            current_txn_start_offset: self.txn_first_offset.unwrap_or(-1),
        }
    }
}

/// The first batch of a producer this log has no record of must start its sequence at 0.
fn first_of_unknown_producer(header: &BatchHeader) -> Result<Verdict, LogError> {
    if header.base_sequence == 0 {
        Ok(Verdict::Append)
    } else {
        Err(LogError::UnknownProducerId {
            producer_id: header.producer_id,
            received: header.base_sequence,
        })
    }
}

fn expect_sequence(header: &BatchHeader, expected: i32) -> Result<Verdict, LogError> {
    if header.base_sequence == expected {
        Ok(Verdict::Append)
    } else {
        Err(LogError::OutOfOrderSequence {
            producer_id: header.producer_id,
            expected,
            received: header.base_sequence,
        })
    }
}

/// The judgement on one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Append,
    Duplicate(BatchMetadata),
}

/// The judgement on a whole record set.
#[derive(Debug)]
pub(crate) enum SetVerdict {
    /// Every batch was appended before: answer with these original offsets, write nothing.
    Duplicate { base_offset: i64, last_offset: i64 },
    /// Write the set, then [`ProducerStates::apply`] this plan.
    Append(SequencePlan),
}

/// The producer entries a record set changes, applied only once the write succeeded.
#[derive(Debug)]
pub(crate) struct SequencePlan {
    updated: HashMap<i64, ProducerEntry>,
}

/// The idempotent-producer state of one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
    /// `(first offset, producer id)` of every open transaction: the smallest is the first
    /// unstable offset.
    open_transactions: BTreeSet<(i64, i64)>,
}

impl ProducerStates {
    /// Checks the sequence numbers of a record set whose headers already carry the offsets the
    /// batches would get. Batches are judged in order against the state as the earlier ones
    /// would leave it, without changing anything yet.
    pub fn check(&self, headers: &[BatchHeader]) -> Result<SetVerdict, LogError> {
        let mut updated: HashMap<i64, ProducerEntry> = HashMap::new();
        let mut duplicates = Vec::new();
        if headers
            .iter()
            .any(|h| h.is_transactional() && !h.is_idempotent())
        {
            return Err(LogError::invalid(
                "a transactional batch needs a producer id and sequence numbers",
            ));
        }
        for header in headers.iter().filter(|h| h.is_idempotent()) {
            let id = header.producer_id;
            let entry = updated.get(&id).or_else(|| self.producers.get(&id));
            let verdict = match entry {
                Some(entry) => {
                    entry.check_transactional_flag(header)?;
                    entry.check(header)?
                }
                None => first_of_unknown_producer(header)?,
            };
            match verdict {
                Verdict::Duplicate(original) => duplicates.push(original),
                Verdict::Append => {
                    let mut entry = entry
                        .cloned()
                        .unwrap_or_else(|| ProducerEntry::new(id, header.producer_epoch));
                    entry.record(header);
                    updated.insert(id, entry);
                }
            }
        }
        match (duplicates.first(), duplicates.last()) {
            (Some(first), Some(last)) if duplicates.len() == headers.len() => {
                Ok(SetVerdict::Duplicate {
                    base_offset: first.base_offset,
                    last_offset: last.last_offset,
                })
            }
            (Some(_), _) => Err(LogError::invalid(
                "record set mixes retried and new batches",
            )),
            _ => Ok(SetVerdict::Append(SequencePlan { updated })),
        }
    }

    /// Makes a checked record set's effect permanent.
    pub fn apply(&mut self, plan: SequencePlan) {
        for (id, entry) in plan.updated {
            self.set_entry(id, entry);
        }
    }

    /// Replaces a producer's entry, keeping the open-transaction set in step.
    fn set_entry(&mut self, id: i64, entry: ProducerEntry) {
        if let Some(first) = self.producers.get(&id).and_then(|e| e.txn_first_offset) {
            self.open_transactions.remove(&(first, id));
        }
        if let Some(first) = entry.txn_first_offset {
            self.open_transactions.insert((first, id));
        }
        self.producers.insert(id, entry);
    }

    /// Replays a batch found in the log while rebuilding state on open.
    pub fn replay(&mut self, header: &BatchHeader) {
        if !header.is_idempotent() {
            return;
        }
        let mut entry = self
            .producers
            .get(&header.producer_id)
            .cloned()
            .unwrap_or_else(|| ProducerEntry::new(header.producer_id, header.producer_epoch));
        if header.producer_epoch >= entry.epoch {
            entry.record(header);
        }
        self.set_entry(header.producer_id, entry);
    }

    /// The smallest offset of an open transaction, if any is open.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.open_transactions.first().map(|&(offset, _)| offset)
    }

    /// Checks that a marker may be written: its epoch is not older than the producer's.
    pub fn check_marker(&self, marker: &TxnMarker) -> Result<(), LogError> {
        match self.producers.get(&marker.producer_id) {
            Some(entry) if marker.producer_epoch < entry.epoch => {
                Err(LogError::InvalidProducerEpoch {
                    producer_id: marker.producer_id,
                    current: entry.epoch,
                    received: marker.producer_epoch,
                })
            }
            _ => Ok(()),
        }
    }

    /// Closes the producer's open transaction here (a marker was written or replayed) and
    /// returns the offset it started at, if one was open. A marker with a newer epoch fences
    /// the older one (Kafka bumps the epoch when it aborts a timed-out transaction).
    pub fn end_transaction(&mut self, marker: &TxnMarker) -> Option<i64> {
        let id = marker.producer_id;
        let mut entry = self
            .producers
            .get(&id)
            .cloned()
            .unwrap_or_else(|| ProducerEntry::new(id, marker.producer_epoch));
        entry.adopt_epoch(marker.producer_epoch);
        entry.coordinator_epoch = marker.coordinator_epoch;
        let first = entry.txn_first_offset.take();
        self.set_entry(id, entry);
        first
    }

    /// Every producer this partition knows, by id.
    pub fn summaries(&self) -> Vec<ProducerSummary> {
        let mut all: Vec<ProducerSummary> = self
            .producers
            .values()
            .map(ProducerEntry::summary)
            .collect();
        all.sort_by_key(|s| s.producer_id);
        all
    }

    /// Serialises the state as a snapshot covering offsets below `offset`.
    pub fn to_snapshot(&self, offset: i64) -> Vec<u8> {
        let mut producers: Vec<&ProducerEntry> = self.producers.values().collect();
        producers.sort_by_key(|entry| entry.producer_id);
        let snapshot = SnapshotRef {
            version: SNAPSHOT_VERSION,
            offset,
            producers,
        };
        // Serialising plain structs of integers into a Vec cannot fail.
        serde_json::to_vec(&snapshot).unwrap_or_default()
    }

    /// Parses a snapshot; returns the offset it covers up to and the state.
    pub fn from_snapshot(bytes: &[u8]) -> Result<(i64, ProducerStates), String> {
        let snapshot: Snapshot = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(format!("unknown snapshot version {}", snapshot.version));
        }
        let mut states = ProducerStates::default();
        for entry in snapshot.producers {
            states.set_entry(entry.producer_id, entry);
        }
        Ok((snapshot.offset, states))
    }
}

#[derive(Serialize)]
struct SnapshotRef<'a> {
    version: u32,
    offset: i64,
    producers: Vec<&'a ProducerEntry>,
}

#[derive(Deserialize)]
struct Snapshot {
    version: u32,
    offset: i64,
    producers: Vec<ProducerEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        count: i32,
        base_offset: i64,
    ) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 49,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence: first_seq,
            record_count: count,
        }
    }

    fn append(states: &mut ProducerStates, header: BatchHeader) -> Result<(), LogError> {
        match states.check(&[header])? {
            SetVerdict::Append(plan) => {
                states.apply(plan);
                Ok(())
            }
            SetVerdict::Duplicate { .. } => panic!("unexpected duplicate"),
        }
    }

    #[test]
    fn accepts_in_order_and_detects_duplicates() {
        let mut states = ProducerStates::default();
        append(&mut states, batch(7, 0, 0, 3, 100)).expect("first");
        append(&mut states, batch(7, 0, 3, 2, 103)).expect("second");
        match states.check(&[batch(7, 0, 0, 3, 999)]).expect("duplicate") {
            SetVerdict::Duplicate {
                base_offset,
                last_offset,
            } => assert_eq!((base_offset, last_offset), (100, 102)),
            SetVerdict::Append(_) => panic!("retry must be a duplicate"),
        }
        assert!(matches!(
            states.check(&[batch(7, 0, 6, 1, 105)]),
            Err(LogError::OutOfOrderSequence {
                expected: 5,
                received: 6,
                ..
            })
        ));
    }

    #[test]
    fn unknown_producers_start_at_zero() {
        let states = ProducerStates::default();
        assert!(matches!(
            states.check(&[batch(1, 0, 4, 1, 0)]),
            Err(LogError::UnknownProducerId {
                producer_id: 1,
                received: 4
            })
        ));
        let plain = batch(-1, -1, -1, 1, 0);
        assert!(matches!(states.check(&[plain]), Ok(SetVerdict::Append(_))));
    }

    #[test]
    fn epochs_fence_and_reset() {
        let mut states = ProducerStates::default();
        append(&mut states, batch(1, 3, 0, 1, 0)).expect("first");
        assert!(matches!(
            states.check(&[batch(1, 2, 1, 1, 1)]),
            Err(LogError::InvalidProducerEpoch { .. })
        ));
        assert!(matches!(
            states.check(&[batch(1, 4, 1, 1, 1)]),
            Err(LogError::OutOfOrderSequence { .. })
        ));
        append(&mut states, batch(1, 4, 0, 1, 1)).expect("new epoch from 0");
    }

    #[test]
    fn only_five_batches_are_remembered() {
        let mut states = ProducerStates::default();
        for i in 0..7 {
            append(&mut states, batch(1, 0, i, 1, i64::from(i))).expect("in order");
        }
        assert!(matches!(
            states.check(&[batch(1, 0, 2, 1, 0)]),
            Ok(SetVerdict::Duplicate { .. })
        ));
        assert!(
            states.check(&[batch(1, 0, 1, 1, 0)]).is_err(),
            "too old to be recognised"
        );
    }

    #[test]
    fn sequences_wrap_after_i32_max() {
        let mut states = ProducerStates::default();
        append(&mut states, batch(1, 0, 0, 1, 0)).expect("first");
        states
            .producers
            .get_mut(&1)
            .expect("entry")
            .batches
            .back_mut()
            .expect("batch")
            .last_seq = i32::MAX;
        append(&mut states, batch(1, 0, 0, 1, 1)).expect("wraps to 0");
    }

    #[test]
    fn multi_batch_sets_are_judged_in_order() {
        let states = ProducerStates::default();
        let set = [batch(1, 0, 0, 2, 0), batch(1, 0, 2, 2, 2)];
        assert!(matches!(states.check(&set), Ok(SetVerdict::Append(_))));
        let gap = [batch(1, 0, 0, 2, 0), batch(1, 0, 3, 2, 2)];
        assert!(states.check(&gap).is_err());
    }

    #[test]
    fn snapshot_round_trips() {
        let mut states = ProducerStates::default();
        append(&mut states, batch(9, 1, 0, 4, 10)).expect("append");
        let bytes = states.to_snapshot(14);
        assert_eq!(ProducerStates::from_snapshot(&bytes), Ok((14, states)));
        assert!(ProducerStates::from_snapshot(b"{").is_err());
    }
}
