//! Records of the checkpoint topic (`freshet.tracker.<group>.<input topic>`, compacted, one partition
//! so every node reads them in one order).
//!
//! # Deltas
//!
//! The owner of an input partition writes, every checkpoint interval, the IPs that became new
//! in each of the partition's sets since its previous checkpoint, and the input offset they
//! cover. A checkpoint is one or more chunk records (each below [`MAX_CHUNK_BYTES`], so they
//! fit a stock Kafka's 1 MB record limit); the last carries the `FINAL` flag, and only a final
//! chunk moves a partition's checkpoint offset and counters. A partition's state is the union
//! of all its chunks: applying a chunk twice, or chunks of a checkpoint whose final record
//! never arrived, adds only IPs that really were in the partition, so nothing is ever counted
//! twice. Key: `p/<partition>/<writer>/<seq as 16 hex>/<chunk as 4 hex>`, where the writer id
//! is fresh for every run of a node: keys never repeat, so compaction keeps every delta.
//!
//! Value (little-endian): magic `FTC1`, kind `1`, partition i32, seq u64, chunk u32, flags u8
//! (bit 0: final), covered offset i64, events u64, rejected u64, written-at ms i64, node id
//! (u16 length + UTF-8), section count u32, then per section: kind u8 (0 all, 1 minute,
//! 2 hour, 3 error code), key i64, length u32, a `DistinctIps` encoding.
//!
//! # Heartbeats
//!
//! Key `n/<node id>`, value: magic, kind `2`, written-at ms i64, partition count u32, the owned
//! partitions as i32s. A tombstone (no value) says the node left.

use freshet_distinct::DistinctIps;

use super::state::{SetKind, Sets};
use super::TrackerError;

const MAGIC: &[u8; 4] = b"FTC1";
const KIND_DELTA: u8 = 1;
const KIND_HEARTBEAT: u8 = 2;
const FLAG_FINAL: u8 = 1;
/// Largest chunk value written; below stock Kafka's default `max.message.bytes` (1 MB).
pub const MAX_CHUNK_BYTES: usize = 512 * 1024;

/// Header of a delta chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaHeader {
    pub partition: i32,
    pub seq: u64,
    pub chunk: u32,
    pub is_final: bool,
    pub offset: i64,
    pub events: u64,
    pub rejected: u64,
    pub written_at_ms: i64,
    pub node: String,
}

/// A decoded record of the checkpoint topic.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Delta {
        header: DeltaHeader,
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

/// Key of a delta chunk. `writer` is unique to one run of one node, so no two chunks ever
/// share a key and compaction never replaces one delta with another.
pub fn delta_key(partition: i32, writer: &str, seq: u64, chunk: u32) -> String {
    format!("p/{partition}/{writer}/{seq:016x}/{chunk:04x}")
}

pub fn heartbeat_key(node: &str) -> String {
    format!("n/{node}")
}

/// Splits a partition's new IPs into chunk values, all carrying `header` (the last one
/// flagged final). An empty delta still gives one final chunk, so the offset advances.
pub fn encode_delta(header: &DeltaHeader, delta: &Sets) -> Vec<Vec<u8>> {
    let sections = encode_sections(delta);
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
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, sections)| {
            let header = DeltaHeader {
                chunk: i as u32,
                is_final: i + 1 == count,
                ..header.clone()
            };
            encode_chunk(&header, &sections)
        })
        .collect()
}

/// Each set as one or more sections no larger than a chunk.
fn encode_sections(delta: &Sets) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (kind, set) in delta.sections() {
        if set.is_empty() {
            continue;
        }
        for piece in split(set) {
            let mut section = Vec::with_capacity(13 + piece.serialized_size());
            let (tag, key) = match kind {
                SetKind::All => (0u8, 0i64),
                SetKind::Minute(start) => (1, start),
                SetKind::Hour(start) => (2, start),
                SetKind::Code(code) => (3, i64::from(code)),
            };
            section.push(tag);
            section.extend_from_slice(&key.to_le_bytes());
            section.extend_from_slice(&(piece.serialized_size() as u32).to_le_bytes());
            piece.serialize(&mut section);
            out.push(section);
        }
    }
    out
}

/// A set small enough for one chunk is itself; a larger one is cut into pieces of at most
/// [`MAX_CHUNK_BYTES`] / 16 addresses (16 bytes is the largest an address takes).
fn split(set: &DistinctIps) -> Vec<std::borrow::Cow<'_, DistinctIps>> {
    if set.serialized_size() + 64 <= MAX_CHUNK_BYTES {
        return vec![std::borrow::Cow::Borrowed(set)];
    }
    let per_piece = MAX_CHUNK_BYTES / 16 - 64;
    let ips: Vec<std::net::IpAddr> = set.iter().collect();
    ips.chunks(per_piece)
        .map(|piece| std::borrow::Cow::Owned(piece.iter().copied().collect()))
        .collect()
}

fn encode_chunk(header: &DeltaHeader, sections: &[Vec<u8>]) -> Vec<u8> {
    let body: usize = sections.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(64 + header.node.len() + body);
    out.extend_from_slice(MAGIC);
    out.push(KIND_DELTA);
    out.extend_from_slice(&header.partition.to_le_bytes());
    out.extend_from_slice(&header.seq.to_le_bytes());
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
        Some(value) => decode_delta(value).map(Some),
    }
}

fn decode_heartbeat(node: &str, value: &[u8]) -> Result<Record, TrackerError> {
    let mut r = Reader::new(value);
    r.header(KIND_HEARTBEAT)?;
    let written_at_ms = r.i64()?;
    let count = r.u32()? as usize;
    if count > r.remaining() / 4 {
        return Err(bad("heartbeat partition count exceeds the record"));
    }
    let partitions = (0..count).map(|_| r.i32()).collect::<Result<_, _>>()?;
    r.end()?;
    Ok(Record::Heartbeat {
        node: node.into(),
        written_at_ms,
        partitions,
    })
}

fn decode_delta(value: &[u8]) -> Result<Record, TrackerError> {
    let mut r = Reader::new(value);
    r.header(KIND_DELTA)?;
    let partition = r.i32()?;
    let seq = r.u64()?;
    let chunk = r.u32()?;
    let flags = r.u8()?;
    let header = DeltaHeader {
        partition,
        seq,
        chunk,
        is_final: flags & FLAG_FINAL != 0,
        offset: r.i64()?,
        events: r.u64()?,
        rejected: r.u64()?,
        written_at_ms: r.i64()?,
        node: r.string()?,
    };
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
    r.end()?;
    Ok(Record::Delta { header, sections })
}

fn bad(reason: &'static str) -> TrackerError {
    TrackerError::Checkpoint(reason)
}

/// Bounds-checked little-endian reader.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn remaining(&self) -> usize {
        self.bytes.len()
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], TrackerError> {
        if n > self.bytes.len() {
            return Err(bad("record is truncated"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], TrackerError> {
        let mut out = [0; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    fn header(&mut self, kind: u8) -> Result<(), TrackerError> {
        if self.bytes(4)? != MAGIC {
            return Err(bad("not a tracker checkpoint record (bad magic)"));
        }
        if self.u8()? != kind {
            return Err(bad("record kind does not match its key"));
        }
        Ok(())
    }

    fn u8(&mut self) -> Result<u8, TrackerError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, TrackerError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, TrackerError> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, TrackerError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, TrackerError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, TrackerError> {
        let len = u16::from_le_bytes(self.array()?) as usize;
        let bytes = self.bytes(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| bad("node id is not UTF-8"))
    }

    fn end(&self) -> Result<(), TrackerError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(bad("trailing bytes after the record"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    fn header() -> DeltaHeader {
        DeltaHeader {
            partition: 2,
            seq: 7,
            chunk: 0,
            is_final: true,
            offset: 1234,
            events: 1000,
            rejected: 3,
            written_at_ms: 1_700_000_000_000,
            node: "node-a".into(),
        }
    }

    fn decode_all(chunks: &[Vec<u8>]) -> Vec<(DeltaHeader, Vec<(SetKind, DistinctIps)>)> {
        chunks
            .iter()
            .map(|c| match decode(b"p/2/x", Some(c)) {
                Ok(Some(Record::Delta { header, sections })) => (header, sections),
                other => panic!("not a delta: {other:?}"),
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
        let chunks = encode_delta(&header(), &delta);
        let decoded = decode_all(&chunks);
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].0, header());
        let mut back = Sets::default();
        for (kind, set) in &decoded[0].1 {
            back.get_mut(*kind).union_with(set);
        }
        assert_eq!(back, delta);
    }

    #[test]
    fn a_large_delta_is_cut_into_bounded_chunks_and_only_the_last_is_final() {
        let mut delta = Sets::default();
        for i in 0..400_000u32 {
            delta
                .all
                .insert(IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(2_654_435_761))));
        }
        let chunks = encode_delta(&header(), &delta);
        assert!(chunks.len() > 1);
        assert!(chunks.iter().all(|c| c.len() <= MAX_CHUNK_BYTES + 1024));
        let decoded = decode_all(&chunks);
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
        let decoded = decode_all(&encode_delta(&header(), &Sets::default()));
        assert_eq!(decoded.len(), 1);
        assert!(decoded[0].0.is_final && decoded[0].1.is_empty());
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
        let chunk = encode_delta(&header(), &delta).remove(0);
        for len in 0..chunk.len() {
            assert!(
                decode(b"p/2/x", Some(&chunk[..len])).is_err(),
                "prefix {len}"
            );
        }
        let mut trailing = chunk.clone();
        trailing.push(0);
        assert!(decode(b"p/2/x", Some(&trailing)).is_err());
        let mut huge_count = encode_heartbeat(1, &[]);
        huge_count[13..17].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(b"n/x", Some(&huge_count)).is_err());
    }
}
