//! Records of the state topic (`freshet.tracker.<group>.<input topic>`, compacted, one
//! partition so every node reads them in one order).
//!
//! # Snapshots and deltas
//!
//! The owner of an input partition writes, every checkpoint interval, a **delta**: the IPs that
//! became new in each of the partition's sets since its previous checkpoint, and the input
//! offset they cover. Now and then it writes a **snapshot** instead: all of the partition's
//! live sets. Once a snapshot is acknowledged every older record of the partition is
//! superseded, and the owner writes a tombstone for each older key, so after compaction the
//! topic holds about one snapshot per partition plus the deltas since (the worker decides
//! when, see `worker::Written`). Windows dropped from memory are not in the next snapshot and
//! leave the topic with the records the tombstones remove.
//!
//! A checkpoint is one or more chunk records (each below [`MAX_CHUNK_BYTES`], so they fit a
//! stock Kafka's 1 MB record limit); the last carries the `FINAL` flag, and only a final chunk
//! moves a partition's checkpoint offset and counters. A partition's state is the union of all
//! its chunks: applying a chunk twice, chunks of a checkpoint whose final record never arrived,
//! or a superseded record not yet compacted away adds only IPs that really were in the
//! partition, so nothing is ever counted twice.
//!
//! # Keys
//!
//! `p/<partition>/<epoch>/<slot>/<index>/<chunk>`: the owner's epoch (see *Fencing*), the slot
//! (the snapshot generation modulo 2), the index (0 for the snapshot, n for the n-th delta
//! after it) and the chunk number. A new snapshot goes to the slot that does not hold the
//! newest complete one, so a crash half-way through writing it leaves that one whole; keys
//! repeat from generation to generation, so compaction replaces old chunks even before their
//! tombstones arrive.
//!
//! # Fencing
//!
//! A node that gains a partition claims it with an epoch one above the highest it has read for
//! it, and every record carries the writer's claim, `(epoch, node id)`. Readers apply a
//! partition's records only under its highest claim: a node that was paused past its session
//! timeout and still writes (a zombie) is ignored from the new owner's first record on, and
//! the zombie, reading that record, stops counting the partition.
//!
//! # Values
//!
//! Little-endian: magic `FTC1`, kind `3`, partition i32, epoch u64, generation u64, index u32,
//! chunk u32, flags u8 (bit 0: final), covered offset i64, events u64, rejected u64,
//! written-at ms i64, node id (u16 length + UTF-8), section count u32, then per section: kind
//! u8 (0 all, 1 minute, 2 hour, 3 error code), key i64, length u32, a `DistinctIps` encoding.
//! Kind `1` is the delta of earlier versions (no epoch, generation or index; keys unique per
//! run), still read as a delta of epoch 0 so a topic written by them keeps counting.
//!
//! # Heartbeats
//!
//! Key `n/<node id>`, value: magic, kind `2`, written-at ms i64, partition count u32, the owned
//! partitions as i32s. A tombstone (no value) says the node left, or that a node's heartbeat
//! stopped long ago and another node cleared it.

use std::borrow::Borrow;
use std::cmp::Ordering;

use freshet_distinct::DistinctIps;

use super::state::SetKind;
use super::TrackerError;
use crate::binary::{Reader, Truncated};

const MAGIC: &[u8; 4] = b"FTC1";
/// A delta of earlier versions: read, never written.
const KIND_LEGACY_DELTA: u8 = 1;
const KIND_HEARTBEAT: u8 = 2;
const KIND_CHUNK: u8 = 3;
const FLAG_FINAL: u8 = 1;
/// Largest chunk value written; below stock Kafka's default `max.message.bytes` (1 MB).
pub const MAX_CHUNK_BYTES: usize = 512 * 1024;

/// Who writes a partition's records: ordered by epoch, then node id, so two nodes that
/// claimed the same epoch (one that could not read the other's claim in time) still agree on
/// which of them is fenced.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Claim {
    pub epoch: u64,
    pub node: String,
}

/// Header of a snapshot or delta chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkHeader {
    pub partition: i32,
    /// The writer's claim on the partition.
    pub epoch: u64,
    /// Snapshots the writer completed in this epoch before this record.
    pub generation: u64,
    /// 0 for a snapshot, n for the n-th delta after the generation's snapshot.
    pub index: u32,
    pub chunk: u32,
    pub is_final: bool,
    pub offset: i64,
    pub events: u64,
    pub rejected: u64,
    pub written_at_ms: i64,
    pub node: String,
}

impl ChunkHeader {
    pub fn is_snapshot(&self) -> bool {
        self.index == 0
    }

    pub fn claim(&self) -> Claim {
        Claim {
            epoch: self.epoch,
            node: self.node.clone(),
        }
    }

    /// Where this record's claim stands against `other`. Records of earlier versions (epoch 0)
    /// made no claims: they never fence each other, whichever node wrote them.
    pub fn claim_cmp(&self, other: &Claim) -> Ordering {
        if self.epoch == 0 && other.epoch == 0 {
            return Ordering::Equal;
        }
        (self.epoch, self.node.as_str()).cmp(&(other.epoch, other.node.as_str()))
    }
}

/// A decoded record of the state topic.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Chunk {
        header: ChunkHeader,
        sections: Vec<(SetKind, DistinctIps)>,
    },
    Heartbeat {
        node: String,
        written_at_ms: i64,
        partitions: Vec<i32>,
    },
    /// Tombstone of a heartbeat key: the node left the group cleanly.
    NodeLeft { node: String },
}

/// Key of one chunk record; see the module doc.
pub fn chunk_key(partition: i32, epoch: u64, generation: u64, index: u32, chunk: u32) -> String {
    let slot = generation % 2;
    format!("p/{partition}/{epoch}/{slot}/{index}/{chunk}")
}

/// The input partition a chunk key belongs to, for any version's key (`p/<partition>/...`).
pub fn key_partition(key: &[u8]) -> Option<i32> {
    let rest = key.strip_prefix(b"p/")?;
    let end = rest.iter().position(|b| *b == b'/').unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

pub fn heartbeat_key(node: &str) -> String {
    format!("n/{node}")
}

/// A checkpoint ready to send: its chunk records as (key, value), the last one final.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub records: Vec<(String, Vec<u8>)>,
}

impl Encoded {
    /// Bytes of keys and values, as the state topic will hold them before compression.
    pub fn bytes(&self) -> u64 {
        self.records
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }
}

/// Splits a partition's sets (the new IPs of a delta, or all of them for a snapshot), given as
/// [`Sets::sections`](super::state::Sets::sections), into chunk records, all carrying `header` (the last one flagged final).
/// Empty sets still give one final chunk, so the offset advances.
pub fn encode_chunks<S: Borrow<DistinctIps>>(
    header: &ChunkHeader,
    sets: impl IntoIterator<Item = (SetKind, S)>,
) -> Encoded {
    let sections = encode_sections(sets);
    let mut chunks: Vec<Vec<Vec<u8>>> = vec![Vec::new()];
    let mut size = 0;
    for section in sections {
        let full = chunks.last().is_some_and(|c| !c.is_empty());
        if full && size + section.len() > MAX_CHUNK_BYTES {
            chunks.push(Vec::new());
            size = 0;
        }
        size += section.len();
        if let Some(chunk) = chunks.last_mut() {
            chunk.push(section);
        }
    }
    let count = chunks.len();
    let records = chunks
        .into_iter()
        .enumerate()
        .map(|(i, sections)| {
            let header = ChunkHeader {
                chunk: i as u32,
                is_final: i + 1 == count,
                ..header.clone()
            };
            let key = chunk_key(
                header.partition,
                header.epoch,
                header.generation,
                header.index,
                header.chunk,
            );
            (key, encode_chunk(&header, &sections))
        })
        .collect();
    Encoded { records }
}

/// Each set as one or more sections no larger than a chunk.
fn encode_sections<S: Borrow<DistinctIps>>(
    sets: impl IntoIterator<Item = (SetKind, S)>,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (kind, set) in sets {
        let set = set.borrow();
        if set.is_empty() {
            continue;
        }
        for piece in split(set) {
            let (tag, key) = match kind {
                SetKind::All => (0u8, 0i64),
                SetKind::Minute(start) => (1, start),
                SetKind::Hour(start) => (2, start),
                SetKind::Code(code) => (3, i64::from(code)),
            };
            let mut section = Vec::new();
            section.push(tag);
            section.extend_from_slice(&key.to_le_bytes());
            // The set's length goes first: written once the set is, rather than measured by
            // a walk of its own.
            section.extend_from_slice(&0u32.to_le_bytes());
            piece.serialize(&mut section);
            let length = (section.len() - 13) as u32;
            section[9..13].copy_from_slice(&length.to_le_bytes());
            out.push(section);
        }
    }
    out
}

/// A set small enough for one chunk is itself; a larger one is cut into pieces of at most
/// [`MAX_CHUNK_BYTES`] / 16 addresses (16 bytes is the largest an address takes).
fn split(set: &DistinctIps) -> Vec<std::borrow::Cow<'_, DistinctIps>> {
    // Most sets are far below a chunk: a bound from their length spares the walk that
    // measures them exactly.
    if set.serialized_size_at_most() + 64 <= MAX_CHUNK_BYTES
        || set.serialized_size() + 64 <= MAX_CHUNK_BYTES
    {
        return vec![std::borrow::Cow::Borrowed(set)];
    }
    let per_piece = MAX_CHUNK_BYTES / 16 - 64;
    let ips: Vec<std::net::IpAddr> = set.iter().collect();
    ips.chunks(per_piece)
        .map(|piece| std::borrow::Cow::Owned(piece.iter().copied().collect()))
        .collect()
}

fn encode_chunk(header: &ChunkHeader, sections: &[Vec<u8>]) -> Vec<u8> {
    let body: usize = sections.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(80 + header.node.len() + body);
    out.extend_from_slice(MAGIC);
    out.push(KIND_CHUNK);
    out.extend_from_slice(&header.partition.to_le_bytes());
    out.extend_from_slice(&header.epoch.to_le_bytes());
    out.extend_from_slice(&header.generation.to_le_bytes());
    out.extend_from_slice(&header.index.to_le_bytes());
    out.extend_from_slice(&header.chunk.to_le_bytes());
    out.push(if header.is_final { FLAG_FINAL } else { 0 });
    out.extend_from_slice(&header.offset.to_le_bytes());
    out.extend_from_slice(&header.events.to_le_bytes());
    out.extend_from_slice(&header.rejected.to_le_bytes());
    out.extend_from_slice(&header.written_at_ms.to_le_bytes());
    put_str(&mut out, &header.node);
    out.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    for section in sections {
        out.extend_from_slice(section);
    }
    out
}

pub fn encode_heartbeat(written_at_ms: i64, partitions: &[i32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(17 + 4 * partitions.len());
    out.extend_from_slice(MAGIC);
    out.push(KIND_HEARTBEAT);
    out.extend_from_slice(&written_at_ms.to_le_bytes());
    out.extend_from_slice(&(partitions.len() as u32).to_le_bytes());
    for p in partitions {
        out.extend_from_slice(&p.to_le_bytes());
    }
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = s.len().min(u16::MAX as usize);
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..len]);
}

/// Decodes a record; `None` for a key this version does not know (a newer writer's record
/// type), so old nodes skip it instead of failing.
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Option<Record>, TrackerError> {
    decode_with(key, value, |_| true)
}

/// [`decode`], leaving a chunk's sections out (and unread) when `wants_sections` says no
/// for its header: decoding sets is most of a record's cost, and a node reading back its
/// own checkpoints has their addresses already.
pub fn decode_with(
    key: &[u8],
    value: Option<&[u8]>,
    wants_sections: impl FnOnce(&ChunkHeader) -> bool,
) -> Result<Option<Record>, TrackerError> {
    let key = std::str::from_utf8(key).map_err(|_| bad("key is not UTF-8"))?;
    if let Some(node) = key.strip_prefix("n/") {
        return match value {
            None => Ok(Some(Record::NodeLeft { node: node.into() })),
            Some(value) => decode_heartbeat(node, value).map(Some),
        };
    }
    if !key.starts_with("p/") {
        return Ok(None);
    }
    match value {
        // A compacted-away delta: nothing to apply.
        None => Ok(None),
        Some(value) => {
            let record = decode_chunk(value, wants_sections)?;
            match &record {
                Record::Chunk { header, .. }
                    if key_partition(key.as_bytes()) != Some(header.partition) =>
                {
                    Err(bad("key and value name different partitions"))
                }
                _ => Ok(Some(record)),
            }
        }
    }
}

fn decode_heartbeat(node: &str, value: &[u8]) -> Result<Record, TrackerError> {
    let mut r = Reader::new(value);
    read_header(&mut r, KIND_HEARTBEAT)?;
    let written_at_ms = r.i64()?;
    let count = r.u32()? as usize;
    if count > r.remaining() / 4 {
        return Err(bad("heartbeat partition count exceeds the record"));
    }
    let partitions = (0..count).map(|_| r.i32()).collect::<Result<_, _>>()?;
    expect_end(&r)?;
    Ok(Record::Heartbeat {
        node: node.into(),
        written_at_ms,
        partitions,
    })
}

fn decode_chunk(
    value: &[u8],
    wants_sections: impl FnOnce(&ChunkHeader) -> bool,
) -> Result<Record, TrackerError> {
    let mut r = Reader::new(value);
    let kind = read_kind(&mut r)?;
    let partition = r.i32()?;
    let header = match kind {
        KIND_CHUNK => {
            let epoch = r.u64()?;
            let generation = r.u64()?;
            let index = r.u32()?;
            chunk_header(&mut r, partition, epoch, generation, index)?
        }
        KIND_LEGACY_DELTA => {
            let _seq = r.u64()?;
            chunk_header(&mut r, partition, 0, 0, 1)?
        }
        _ => return Err(bad("record kind does not match its key")),
    };
    if !wants_sections(&header) {
        return Ok(Record::Chunk {
            header,
            sections: Vec::new(),
        });
    }
    let count = r.u32()? as usize;
    if count > r.remaining() / 13 {
        return Err(bad("section count exceeds the record"));
    }
    let mut sections = Vec::with_capacity(count);
    for _ in 0..count {
        let tag = r.u8()?;
        let key = r.i64()?;
        let kind = match tag {
            0 => SetKind::All,
            1 => SetKind::Minute(key),
            2 => SetKind::Hour(key),
            3 => SetKind::Code(
                u8::try_from(key)
                    .ok()
                    .filter(|c| usize::from(*c) < super::state::ERROR_CODES)
                    .ok_or_else(|| bad("error code out of range"))?,
            ),
            _ => return Err(bad("unknown section kind")),
        };
        let len = r.u32()? as usize;
        let set = DistinctIps::deserialize(r.bytes(len)?).map_err(TrackerError::CheckpointSet)?;
        sections.push((kind, set));
    }
    expect_end(&r)?;
    Ok(Record::Chunk { header, sections })
}

/// The fields after the kind-specific ones, the same in both chunk kinds.
fn chunk_header(
    r: &mut Reader<'_>,
    partition: i32,
    epoch: u64,
    generation: u64,
    index: u32,
) -> Result<ChunkHeader, TrackerError> {
    let chunk = r.u32()?;
    let flags = r.u8()?;
    Ok(ChunkHeader {
        partition,
        epoch,
        generation,
        index,
        chunk,
        is_final: flags & FLAG_FINAL != 0,
        offset: r.i64()?,
        events: r.u64()?,
        rejected: r.u64()?,
        written_at_ms: r.i64()?,
        node: read_node(r)?,
    })
}

fn bad(reason: &'static str) -> TrackerError {
    TrackerError::Checkpoint(reason)
}

/// The magic, then the record kind.
fn read_kind(r: &mut Reader<'_>) -> Result<u8, TrackerError> {
    if r.bytes(4)? != MAGIC {
        return Err(bad("not a tracker checkpoint record (bad magic)"));
    }
    Ok(r.u8()?)
}

/// The magic and a record kind that must be `kind`.
fn read_header(r: &mut Reader<'_>, kind: u8) -> Result<(), TrackerError> {
    if read_kind(r)? != kind {
        return Err(bad("record kind does not match its key"));
    }
    Ok(())
}

/// A node id: its UTF-8 length as a u16, then the bytes.
fn read_node(r: &mut Reader<'_>) -> Result<String, TrackerError> {
    let len = usize::from(r.u16()?);
    let bytes = r.bytes(len)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| bad("node id is not UTF-8"))
}

fn expect_end(r: &Reader<'_>) -> Result<(), TrackerError> {
    if r.remaining() == 0 {
        Ok(())
    } else {
        Err(bad("trailing bytes after the record"))
    }
}

impl From<Truncated> for TrackerError {
    fn from(_: Truncated) -> Self {
        bad("record is truncated")
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::super::state::Sets;
    use super::*;

    fn header() -> ChunkHeader {
        ChunkHeader {
            partition: 2,
            epoch: 3,
            generation: 5,
            index: 7,
            chunk: 0,
            is_final: true,
            offset: 1234,
            events: 1000,
            rejected: 3,
            written_at_ms: 1_700_000_000_000,
            node: "node-a".into(),
        }
    }

    fn decode_all(encoded: &Encoded) -> Vec<(ChunkHeader, Vec<(SetKind, DistinctIps)>)> {
        encoded
            .records
            .iter()
            .map(|(k, v)| match decode(k.as_bytes(), Some(v)) {
                Ok(Some(Record::Chunk { header, sections })) => (header, sections),
                other => panic!("not a chunk: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_small_delta_is_one_final_chunk_that_round_trips() {
        let mut delta = Sets::default();
        delta.all.insert("10.0.0.1".parse().expect("ip"));
        delta
            .get_mut(SetKind::Minute(60_000))
            .insert("10.0.0.1".parse().expect("ip"));
        delta
            .get_mut(SetKind::Code(4))
            .insert("::2".parse().expect("ip"));
        let encoded = encode_chunks(&header(), delta.sections());
        assert_eq!(encoded.records[0].0, "p/2/3/1/7/0");
        let decoded = decode_all(&encoded);
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].0, header());
        let mut back = Sets::default();
        for (kind, set) in &decoded[0].1 {
            back.get_mut(*kind).union_with(set);
        }
        assert_eq!(back, delta);
    }

    #[test]
    fn snapshots_alternate_between_two_slots_and_keys_repeat() {
        let snapshot = |generation| ChunkHeader {
            index: 0,
            generation,
            ..header()
        };
        let key = |generation| {
            encode_chunks(&snapshot(generation), Sets::default().sections()).records[0]
                .0
                .clone()
        };
        assert_eq!(key(4), "p/2/3/0/0/0");
        assert_eq!(key(5), "p/2/3/1/0/0");
        assert_eq!(key(6), key(4));
        assert!(snapshot(4).is_snapshot() && !header().is_snapshot());
    }

    #[test]
    fn a_large_delta_is_cut_into_bounded_chunks_and_only_the_last_is_final() {
        let mut delta = Sets::default();
        for i in 0..400_000u32 {
            delta
                .all
                .insert(IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(2_654_435_761))));
        }
        let encoded = encode_chunks(&header(), delta.sections());
        assert!(encoded.records.len() > 1);
        assert!(encoded
            .records
            .iter()
            .all(|(_, v)| v.len() <= MAX_CHUNK_BYTES + 1024));
        let keys: std::collections::HashSet<_> = encoded.records.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys.len(),
            encoded.records.len(),
            "every chunk has its own key"
        );
        let decoded = decode_all(&encoded);
        let finals: Vec<bool> = decoded.iter().map(|(h, _)| h.is_final).collect();
        assert_eq!(finals.iter().filter(|f| **f).count(), 1);
        assert_eq!(finals.last(), Some(&true));
        let mut all = DistinctIps::new();
        for (_, sections) in &decoded {
            for (_, set) in sections {
                all.union_with(set);
            }
        }
        assert_eq!(all, delta.all);
    }

    #[test]
    fn an_empty_delta_still_moves_the_offset() {
        let decoded = decode_all(&encode_chunks(&header(), Sets::default().sections()));
        assert_eq!(decoded.len(), 1);
        assert!(decoded[0].0.is_final && decoded[0].1.is_empty());
    }

    #[test]
    fn claims_order_by_epoch_then_node() {
        let claim = |epoch, node: &str| Claim {
            epoch,
            node: node.into(),
        };
        assert_eq!(header().claim_cmp(&claim(3, "node-a")), Ordering::Equal);
        assert_eq!(header().claim_cmp(&claim(2, "node-z")), Ordering::Greater);
        assert_eq!(header().claim_cmp(&claim(3, "node-b")), Ordering::Less);
        assert_eq!(header().claim_cmp(&claim(4, "node-a")), Ordering::Less);
        let legacy = ChunkHeader {
            epoch: 0,
            node: "node-z".into(),
            ..header()
        };
        assert_eq!(legacy.claim_cmp(&claim(0, "node-a")), Ordering::Equal);
        assert_eq!(legacy.claim_cmp(&claim(1, "node-a")), Ordering::Less);
    }

    /// A delta as versions before snapshots wrote it, so topics they filled still count.
    #[test]
    fn deltas_of_earlier_versions_read_as_deltas_of_epoch_zero() {
        let mut value = Vec::new();
        value.extend_from_slice(MAGIC);
        value.push(KIND_LEGACY_DELTA);
        value.extend_from_slice(&2i32.to_le_bytes());
        value.extend_from_slice(&9u64.to_le_bytes()); // seq
        value.extend_from_slice(&0u32.to_le_bytes()); // chunk
        value.push(FLAG_FINAL);
        value.extend_from_slice(&500i64.to_le_bytes());
        value.extend_from_slice(&400u64.to_le_bytes());
        value.extend_from_slice(&1u64.to_le_bytes());
        value.extend_from_slice(&7i64.to_le_bytes());
        put_str(&mut value, "old-node");
        value.extend_from_slice(&0u32.to_le_bytes());
        let key = b"p/2/0123456789abcdef/0000000000000009/0000";
        let Ok(Some(Record::Chunk { header, sections })) = decode(key, Some(&value)) else {
            panic!("a legacy delta decodes");
        };
        assert_eq!((header.epoch, header.index, header.offset), (0, 1, 500));
        assert!(header.is_final && sections.is_empty());
        assert_eq!(key_partition(key), Some(2));
    }

    #[test]
    fn a_key_naming_another_partition_than_its_value_is_refused() {
        let encoded = encode_chunks(&header(), Sets::default().sections());
        assert!(decode(b"p/5/3/1/7/0", Some(&encoded.records[0].1)).is_err());
        assert_eq!(key_partition(b"p/x/1"), None);
        assert_eq!(key_partition(b"n/abc"), None);
    }

    #[test]
    fn heartbeats_and_tombstones_decode() {
        let value = encode_heartbeat(5, &[0, 2]);
        assert_eq!(
            decode(b"n/abc", Some(&value)).expect("decodes"),
            Some(Record::Heartbeat {
                node: "abc".into(),
                written_at_ms: 5,
                partitions: vec![0, 2]
            })
        );
        assert_eq!(
            decode(b"n/abc", None).expect("decodes"),
            Some(Record::NodeLeft { node: "abc".into() })
        );
        assert_eq!(decode(b"future/thing", Some(b"x")).expect("skipped"), None);
    }

    #[test]
    fn every_truncation_and_garbage_is_an_error_not_a_panic() {
        let mut delta = Sets::default();
        delta.all.insert("10.0.0.1".parse().expect("ip"));
        let (key, chunk) = encode_chunks(&header(), delta.sections()).records.remove(0);
        for len in 0..chunk.len() {
            assert!(
                decode(key.as_bytes(), Some(&chunk[..len])).is_err(),
                "prefix {len}"
            );
        }
        let mut trailing = chunk.clone();
        trailing.push(0);
        assert!(decode(key.as_bytes(), Some(&trailing)).is_err());
        let mut huge_count = encode_heartbeat(1, &[]);
        huge_count[13..17].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(b"n/x", Some(&huge_count)).is_err());
    }
}
