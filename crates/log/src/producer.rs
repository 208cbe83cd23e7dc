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

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::batch::{increment_sequence, BatchHeader};
use crate::error::LogError;

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
}

impl ProducerEntry {
    fn new(producer_id: i64, epoch: i16) -> ProducerEntry {
        ProducerEntry {
            producer_id,
            epoch,
            batches: VecDeque::new(),
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

    /// Remembers an appended batch (its header carries its final offsets).
    fn record(&mut self, header: &BatchHeader) {
        if header.producer_epoch > self.epoch {
            self.epoch = header.producer_epoch;
            self.batches.clear();
        }
        self.batches.push_back(BatchMetadata::of(header));
        while self.batches.len() > CACHED_BATCHES {
            self.batches.pop_front();
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
}

impl ProducerStates {
    /// Checks the sequence numbers of a record set whose headers already carry the offsets the
    /// batches would get. Batches are judged in order against the state as the earlier ones
    /// would leave it, without changing anything yet.
    pub fn check(&self, headers: &[BatchHeader]) -> Result<SetVerdict, LogError> {
        let mut updated: HashMap<i64, ProducerEntry> = HashMap::new();
        let mut duplicates = Vec::new();
        for header in headers.iter().filter(|h| h.is_idempotent()) {
            let id = header.producer_id;
            let entry = updated.get(&id).or_else(|| self.producers.get(&id));
            let verdict = match entry {
                Some(entry) => entry.check(header)?,
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
        self.producers.extend(plan.updated);
    }

    /// Replays a batch found in the log while rebuilding state on open.
    pub fn replay(&mut self, header: &BatchHeader) {
        if !header.is_idempotent() {
            return;
        }
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry::new(header.producer_id, header.producer_epoch));
        if header.producer_epoch >= entry.epoch {
            entry.record(header);
        }
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
        let producers = snapshot
            .producers
            .into_iter()
            .map(|entry| (entry.producer_id, entry))
            .collect();
        Ok((snapshot.offset, ProducerStates { producers }))
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
