//! The records of the offsets file and their CRC-framed encoding.
//!
//! ```text
//! file   := MAGIC frame*
//! frame  := body_len:u32  crc32c(body):u32  body
//! body   := kind:u8 fields...                      (all integers big-endian)
//! string := len:u32 utf8-bytes
//!
//! bytes  := len:u32 raw-bytes
//! option := 0:u8 | 1:u8 string
//!
//! kind 1  OffsetCommit     group:string topic:string partition:i32 offset:i64
//!                          leader_epoch:i32 commit_timestamp_ms:i64 metadata:string
//! kind 2  Generation       group:string generation:i32 protocol_type:string
//! kind 3  TopicDeleted     topic:string
//! kind 4  ClassicGroup     layout:u8(=1) group:string generation:i32 protocol_type:string
//!                          protocol:string leader:string member_count:u32 member*
//!         member :=        member_id:string instance_id:option client_id:string
//!                          client_host:string session_timeout_ms:i32 rebalance_timeout_ms:i32
//!                          protocol_count:u32 (name:string metadata:bytes)* assignment:bytes
//! kind 5  GroupDeleted     group:string
//! kind 6  OffsetDeleted    group:string topic:string partition:i32
//! kind 7  TxnOffsetCommit  producer_id:i64 group:string topic:string partition:i32 offset:i64
//!                          leader_epoch:i32 commit_timestamp_ms:i64 metadata:string
//! kind 8  TxnCompleted     producer_id:i64 group:string committed:u8(0 = aborted, 1 = committed)
//! kind 16 ConsumerGroup    a KIP-848 consumer group: epochs, subscribed topics, members with
//!                          their assignments (layout in [`consumer`])
//! ```
//!
//! A frame is either whole and CRC-valid or it is the torn tail of an interrupted write: the
//! length and CRC come first so a reader can tell the two apart without trusting the body.
//!
//! # Versions
//! The format grows by new kinds, never by changing an old kind's layout, so every file an
//! earlier version wrote still reads (kinds 4-6 came with DeleteGroups, OffsetDelete and
//! persisted membership, kinds 7-8 with transactional offset commits; files without them open
//! as before). An older binary refuses a file
//! with a kind it does not know ([`BadFrame::Undecodable`]) instead of dropping it. Kind 4
//! carries its own layout byte so that fields can be added to classic groups; a group of
//! another protocol (KIP-848's consumer groups) would get a kind of its own: kind 16, numbered
//! apart from the classic kinds so that both families can grow.

mod consumer;

use bytes::Bytes;

pub(crate) use consumer::{
    ConsumerGroupRecord, MemberRecord, MemberState, Partitions, TopicRecord,
};

use super::StoreError;

/// First bytes of every offsets file; the trailing digit is the format version.
pub(crate) const FILE_MAGIC: &[u8; 8] = b"FRSHOFS1";

/// Length prefix plus CRC.
const FRAME_HEADER_LEN: usize = 8;

const KIND_OFFSET_COMMIT: u8 = 1;
const KIND_GENERATION: u8 = 2;
const KIND_TOPIC_DELETED: u8 = 3;
const KIND_CLASSIC_GROUP: u8 = 4;
const KIND_GROUP_DELETED: u8 = 5;
const KIND_OFFSET_DELETED: u8 = 6;
const KIND_TXN_OFFSET_COMMIT: u8 = 7;
const KIND_TXN_COMPLETED: u8 = 8;
const KIND_CONSUMER_GROUP: u8 = 16;

/// The layout of [`KIND_CLASSIC_GROUP`] bodies this version writes and reads.
const CLASSIC_GROUP_LAYOUT: u8 = 1;

/// What a group committed for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommittedOffset {
    pub(crate) offset: i64,
    /// -1 when the client did not send one (OffsetCommit < v6).
    pub(crate) leader_epoch: i32,
    pub(crate) metadata: String,
    pub(crate) commit_timestamp_ms: i64,
}

/// A classic group as its last completed rebalance left it: what a restarted coordinator needs
/// to keep the members (Kafka's `GroupMetadataValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredMembership {
    pub(crate) group: String,
    pub(crate) generation: i32,
    pub(crate) protocol_type: String,
    /// The protocol (assignor) chosen for `generation`.
    pub(crate) protocol: String,
    pub(crate) leader: String,
    pub(crate) members: Vec<StoredMember>,
}

/// One member of a [`StoredMembership`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredMember {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    /// Every protocol the member supports, in its order of preference, with its metadata.
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) assignment: Bytes,
}

impl StoredMember {
    fn encoded_len(&self) -> u64 {
        let protocols: u64 = self
            .protocols
            .iter()
            .map(|(name, metadata)| 8 + name.len() as u64 + metadata.len() as u64)
            .sum();
        let instance = 1 + self
            .instance_id
            .as_ref()
            .map_or(0, |id| 4 + id.len() as u64);
        string_lens(&[&self.member_id, &self.client_id, &self.client_host])
            + instance
            + 4
            + 4
            + 4
            + protocols
            + 4
            + self.assignment.len() as u64
    }
}

/// One entry of the offsets file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// `group` committed `offset` for `topic`/`partition`; replaces any earlier commit.
    OffsetCommit {
        group: String,
        topic: String,
        partition: i32,
        offset: CommittedOffset,
    },
    /// `group` completed a join phase and is now at `generation`; persisted so generations never
    /// go backwards across restarts. `protocol_type` is "" when the group has none.
    Generation {
        group: String,
        generation: i32,
        protocol_type: String,
    },
    /// Every group's commits for `topic` are forgotten (the topic was deleted).
    TopicDeleted { topic: String },
    /// A classic group completed a rebalance (or a static member took its place): its members
    /// survive a restart. Superseded by a later `Generation` of the group.
    ClassicGroup(StoredMembership),
    /// The group and everything about it are forgotten (DeleteGroups).
    GroupDeleted { group: String },
    /// `group`'s commit for `topic`/`partition` is forgotten (OffsetDelete), and so is any
    /// transactional offset still pending for it (as Kafka's tombstone drops both).
    OffsetDeleted {
        group: String,
        topic: String,
        partition: i32,
    },
    /// A transaction of `producer_id` committed `offset` for `topic`/`partition` (TxnOffsetCommit):
    /// pending, invisible to OffsetFetch, until a [`Record::TxnCompleted`] of the producer and
    /// group; replaces the producer's earlier pending offset for the partition.
    TxnOffsetCommit {
        producer_id: i64,
        group: String,
        topic: String,
        partition: i32,
        offset: CommittedOffset,
    },
    /// The transaction of `producer_id` ended: its offsets pending in `group` become the
    /// committed ones (`committed`) or are dropped. Applying it twice changes nothing.
    TxnCompleted {
        producer_id: i64,
        group: String,
        committed: bool,
    },
    /// A KIP-848 consumer group as it is now; replaces the group's earlier state, classic or
    /// consumer (and a later classic `Generation` or `ClassicGroup` replaces it).
    ConsumerGroup(ConsumerGroupRecord),
}

/// Why the bytes at some position are not a whole, valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadFrame {
    /// Incomplete or CRC-mismatched: the remains of an interrupted write. Safe to cut off.
    Torn(&'static str),
    /// CRC-valid but not understood (written by a newer version, or a bug). Never cut off
    /// silently: that would destroy committed offsets.
    Undecodable(&'static str),
}

impl Record {
    /// Appends this record's frame to `out`.
    pub(crate) fn encode_frame(&self, out: &mut Vec<u8>) -> Result<(), StoreError> {
        let header_at = out.len();
        out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
        let body_at = out.len();
        self.encode_body(out)?;
        let body = &out[body_at..];
        let len = u32::try_from(body.len()).map_err(|_| StoreError::RecordTooLarge)?;
        let crc = crc32c::crc32c(body);
        out[header_at..header_at + 4].copy_from_slice(&len.to_be_bytes());
        out[header_at + 4..body_at].copy_from_slice(&crc.to_be_bytes());
        Ok(())
    }

    /// Size of this record's frame on disk (used to estimate the file's live size).
    pub(crate) fn frame_len(&self) -> u64 {
        let strings = string_lens;
        let body = 1 + match self {
            Record::OffsetCommit {
                group,
                topic,
                offset,
                ..
            } => strings(&[group, topic, &offset.metadata]) + 4 + 8 + 4 + 8,
            Record::Generation {
                group,
                protocol_type,
                ..
            } => strings(&[group, protocol_type]) + 4,
            Record::TopicDeleted { topic } => strings(&[topic]),
            Record::ClassicGroup(group) => {
                let members: u64 = group.members.iter().map(StoredMember::encoded_len).sum();
                let names = [
                    group.group.as_str(),
                    &group.protocol_type,
                    &group.protocol,
                    &group.leader,
                ];
                // The layout byte, the strings, the generation and the member count.
                1 + strings(&names) + 4 + 4 + members
            }
            Record::GroupDeleted { group } => strings(&[group]),
            Record::OffsetDeleted { group, topic, .. } => strings(&[group, topic]) + 4,
            Record::TxnOffsetCommit {
                group,
                topic,
                offset,
                ..
            } => 8 + strings(&[group, topic, &offset.metadata]) + 4 + 8 + 4 + 8,
            Record::TxnCompleted { group, .. } => 8 + strings(&[group]) + 1,
            Record::ConsumerGroup(group) => {
                // Variable-length all the way down: measuring is encoding.
                let mut body = Vec::new();
                consumer::encode(&mut body, group).map_or(0, |()| body.len() as u64)
            }
        };
        FRAME_HEADER_LEN as u64 + body
    }

    /// The group the record is about; `None` for records about every group.
    pub(crate) fn group(&self) -> Option<&str> {
        match self {
            Record::OffsetCommit { group, .. }
            | Record::Generation { group, .. }
            | Record::GroupDeleted { group }
            | Record::OffsetDeleted { group, .. }
            | Record::TxnOffsetCommit { group, .. }
            | Record::TxnCompleted { group, .. } => Some(group),
            Record::ClassicGroup(membership) => Some(&membership.group),
            Record::ConsumerGroup(consumer) => Some(&consumer.group),
            Record::TopicDeleted { .. } => None,
        }
    }

    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), StoreError> {
        match self {
            Record::OffsetCommit {
                group,
                topic,
                partition,
                offset,
            } => {
                out.push(KIND_OFFSET_COMMIT);
                encode_offset(out, group, topic, *partition, offset)?;
            }
            Record::Generation {
                group,
                generation,
                protocol_type,
            } => {
                out.push(KIND_GENERATION);
                put_string(out, group)?;
                out.extend_from_slice(&generation.to_be_bytes());
                put_string(out, protocol_type)?;
            }
            Record::TopicDeleted { topic } => {
                out.push(KIND_TOPIC_DELETED);
                put_string(out, topic)?;
            }
            Record::ClassicGroup(group) => {
                out.push(KIND_CLASSIC_GROUP);
                encode_classic_group(out, group)?;
            }
            Record::GroupDeleted { group } => {
                out.push(KIND_GROUP_DELETED);
                put_string(out, group)?;
            }
            Record::OffsetDeleted {
                group,
                topic,
                partition,
            } => {
                out.push(KIND_OFFSET_DELETED);
                put_string(out, group)?;
                put_string(out, topic)?;
                out.extend_from_slice(&partition.to_be_bytes());
            }
            Record::TxnOffsetCommit {
                producer_id,
                group,
                topic,
                partition,
                offset,
            } => {
                out.push(KIND_TXN_OFFSET_COMMIT);
                out.extend_from_slice(&producer_id.to_be_bytes());
                encode_offset(out, group, topic, *partition, offset)?;
            }
            Record::TxnCompleted {
                producer_id,
                group,
                committed,
            } => {
                out.push(KIND_TXN_COMPLETED);
                out.extend_from_slice(&producer_id.to_be_bytes());
                put_string(out, group)?;
                out.push(u8::from(*committed));
            }
            Record::ConsumerGroup(group) => {
                out.push(KIND_CONSUMER_GROUP);
                consumer::encode(out, group)?;
            }
        }
        Ok(())
    }

    fn decode_body(body: &[u8]) -> Result<Record, BadFrame> {
        let mut r = Reader(body);
        let record = match r.u8()? {
            KIND_OFFSET_COMMIT => Record::OffsetCommit {
                group: r.string()?,
                topic: r.string()?,
                partition: r.i32()?,
                offset: decode_offset(&mut r)?,
            },
            KIND_GENERATION => Record::Generation {
                group: r.string()?,
                generation: r.i32()?,
                protocol_type: r.string()?,
            },
            KIND_TOPIC_DELETED => Record::TopicDeleted { topic: r.string()? },
            KIND_CLASSIC_GROUP => Record::ClassicGroup(decode_classic_group(&mut r)?),
            KIND_GROUP_DELETED => Record::GroupDeleted { group: r.string()? },
            KIND_OFFSET_DELETED => Record::OffsetDeleted {
                group: r.string()?,
                topic: r.string()?,
                partition: r.i32()?,
            },
            KIND_TXN_OFFSET_COMMIT => Record::TxnOffsetCommit {
                producer_id: r.i64()?,
                group: r.string()?,
                topic: r.string()?,
                partition: r.i32()?,
                offset: decode_offset(&mut r)?,
            },
            KIND_TXN_COMPLETED => Record::TxnCompleted {
                producer_id: r.i64()?,
                group: r.string()?,
                committed: match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(BadFrame::Undecodable("bad transaction outcome")),
                },
            },
            KIND_CONSUMER_GROUP => Record::ConsumerGroup(consumer::decode(&mut r)?),
            _ => return Err(BadFrame::Undecodable("unknown record kind")),
        };
        if !r.0.is_empty() {
            return Err(BadFrame::Undecodable("trailing bytes after record"));
        }
        Ok(record)
    }
}

/// Decodes the frame at the start of `buf`. Returns the record and the frame's length, or
/// `Ok(None)` when `buf` is empty (a clean end of file).
pub(crate) fn decode_frame(buf: &[u8]) -> Result<Option<(Record, usize)>, BadFrame> {
    if buf.is_empty() {
        return Ok(None);
    }
    let Some((header, rest)) = buf.split_first_chunk::<FRAME_HEADER_LEN>() else {
        return Err(BadFrame::Torn("incomplete frame header"));
    };
    let [l0, l1, l2, l3, c0, c1, c2, c3] = *header;
    let body_len = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
    let crc = u32::from_be_bytes([c0, c1, c2, c3]);
    let Some(body) = rest.get(..body_len) else {
        return Err(BadFrame::Torn("incomplete frame body"));
    };
    if crc32c::crc32c(body) != crc {
        return Err(BadFrame::Torn("CRC mismatch"));
    }
    let record = Record::decode_body(body)?;
    Ok(Some((record, FRAME_HEADER_LEN + body_len)))
}

/// The fields of an offset commit, plain or transactional, from the group on.
fn encode_offset(
    out: &mut Vec<u8>,
    group: &str,
    topic: &str,
    partition: i32,
    offset: &CommittedOffset,
) -> Result<(), StoreError> {
    put_string(out, group)?;
    put_string(out, topic)?;
    out.extend_from_slice(&partition.to_be_bytes());
    out.extend_from_slice(&offset.offset.to_be_bytes());
    out.extend_from_slice(&offset.leader_epoch.to_be_bytes());
    out.extend_from_slice(&offset.commit_timestamp_ms.to_be_bytes());
    put_string(out, &offset.metadata)
}

/// The fields of a commit after its partition (the order [`encode_offset`] writes them).
fn decode_offset(r: &mut Reader<'_>) -> Result<CommittedOffset, BadFrame> {
    Ok(CommittedOffset {
        offset: r.i64()?,
        leader_epoch: r.i32()?,
        commit_timestamp_ms: r.i64()?,
        metadata: r.string()?,
    })
}

fn encode_classic_group(out: &mut Vec<u8>, group: &StoredMembership) -> Result<(), StoreError> {
    out.push(CLASSIC_GROUP_LAYOUT);
    put_string(out, &group.group)?;
    out.extend_from_slice(&group.generation.to_be_bytes());
    put_string(out, &group.protocol_type)?;
    put_string(out, &group.protocol)?;
    put_string(out, &group.leader)?;
    put_len(out, group.members.len())?;
    for member in &group.members {
        put_string(out, &member.member_id)?;
        match &member.instance_id {
            None => out.push(0),
            Some(id) => {
                out.push(1);
                put_string(out, id)?;
            }
        }
        put_string(out, &member.client_id)?;
        put_string(out, &member.client_host)?;
        out.extend_from_slice(&member.session_timeout_ms.to_be_bytes());
        out.extend_from_slice(&member.rebalance_timeout_ms.to_be_bytes());
        put_len(out, member.protocols.len())?;
        for (name, metadata) in &member.protocols {
            put_string(out, name)?;
            put_bytes(out, metadata)?;
        }
        put_bytes(out, &member.assignment)?;
    }
    Ok(())
}

fn decode_classic_group(r: &mut Reader<'_>) -> Result<StoredMembership, BadFrame> {
    if r.u8()? != CLASSIC_GROUP_LAYOUT {
        return Err(BadFrame::Undecodable("unknown classic group layout"));
    }
    let mut group = StoredMembership {
        group: r.string()?,
        generation: r.i32()?,
        protocol_type: r.string()?,
        protocol: r.string()?,
        leader: r.string()?,
        members: Vec::new(),
    };
    // Counts are not trusted for allocation: each element must actually be in the body.
    for _ in 0..r.u32()? {
        group.members.push(decode_member(r)?);
    }
    Ok(group)
}

fn decode_member(r: &mut Reader<'_>) -> Result<StoredMember, BadFrame> {
    let member_id = r.string()?;
    let instance_id = match r.u8()? {
        0 => None,
        1 => Some(r.string()?),
        _ => return Err(BadFrame::Undecodable("bad option marker")),
    };
    let mut member = StoredMember {
        member_id,
        instance_id,
        client_id: r.string()?,
        client_host: r.string()?,
        session_timeout_ms: r.i32()?,
        rebalance_timeout_ms: r.i32()?,
        protocols: Vec::new(),
        assignment: Bytes::new(),
    };
    for _ in 0..r.u32()? {
        member.protocols.push((r.string()?, r.bytes()?));
    }
    member.assignment = r.bytes()?;
    Ok(member)
}

/// Encoded size of length-prefixed strings.
fn string_lens(parts: &[&str]) -> u64 {
    parts.iter().map(|s| 4 + s.len() as u64).sum()
}

fn put_len(out: &mut Vec<u8>, len: usize) -> Result<(), StoreError> {
    let len = u32::try_from(len).map_err(|_| StoreError::RecordTooLarge)?;
    out.extend_from_slice(&len.to_be_bytes());
    Ok(())
}

fn put_string(out: &mut Vec<u8>, s: &str) -> Result<(), StoreError> {
    put_bytes(out, s.as_bytes())
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), StoreError> {
    put_len(out, bytes.len())?;
    out.extend_from_slice(bytes);
    Ok(())
}

/// Reads fields off the front of a CRC-checked body. Any shortfall means the body does not
/// match the layout of its kind.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], BadFrame> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(BadFrame::Undecodable("record body too short"))?;
        self.0 = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, BadFrame> {
        Ok(self.take::<1>()?[0])
    }

    fn i32(&mut self) -> Result<i32, BadFrame> {
        Ok(i32::from_be_bytes(self.take()?))
    }

    fn u32(&mut self) -> Result<u32, BadFrame> {
        Ok(u32::from_be_bytes(self.take()?))
    }

    fn i64(&mut self) -> Result<i64, BadFrame> {
        Ok(i64::from_be_bytes(self.take()?))
    }

    fn string(&mut self) -> Result<String, BadFrame> {
        let bytes = self.raw()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| BadFrame::Undecodable("string is not UTF-8"))
    }

    fn bytes(&mut self) -> Result<Bytes, BadFrame> {
        Ok(Bytes::copy_from_slice(self.raw()?))
    }

    /// A length-prefixed run of bytes.
    fn raw(&mut self) -> Result<&[u8], BadFrame> {
        let len = self.u32()? as usize;
        if self.0.len() < len {
            return Err(BadFrame::Undecodable("string runs past the record body"));
        }
        let (bytes, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn commit(group: &str, topic: &str, partition: i32, offset: i64, metadata: &str) -> Record {
        Record::OffsetCommit {
            group: group.into(),
            topic: topic.into(),
            partition,
            offset: CommittedOffset {
                offset,
                leader_epoch: 7,
                metadata: metadata.into(),
                commit_timestamp_ms: 1_700_000_000_000,
            },
        }
    }

    fn txn_commit(
        producer_id: i64,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
        metadata: &str,
    ) -> Record {
        Record::TxnOffsetCommit {
            producer_id,
            group: group.into(),
            topic: topic.into(),
            partition,
            offset: CommittedOffset {
                offset,
                leader_epoch: 4,
                metadata: metadata.into(),
                commit_timestamp_ms: 1_700_000_000_001,
            },
        }
    }

    fn membership() -> StoredMembership {
        let member = |id: &str, instance: Option<&str>| StoredMember {
            member_id: id.into(),
            instance_id: instance.map(Into::into),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 45_000,
            rebalance_timeout_ms: 300_000,
            protocols: vec![
                ("range".into(), Bytes::from_static(b"\0\0sub")),
                ("roundrobin".into(), Bytes::new()),
            ],
            assignment: Bytes::from_static(b"\0\0assigned"),
        };
        StoredMembership {
            group: "g".into(),
            generation: 3,
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            leader: "a".into(),
            members: vec![member("a", None), member("b", Some("static-b"))],
        }
    }

    fn encode(record: &Record) -> Vec<u8> {
        let mut buf = Vec::new();
        record.encode_frame(&mut buf).expect("encodable");
        buf
    }

    #[test]
    fn every_kind_round_trips_and_frame_len_is_exact() {
        let records = [
            commit("g", "t", 3, 42, "meta"),
            Record::Generation {
                group: "g".into(),
                generation: 9,
                protocol_type: "consumer".into(),
            },
            Record::TopicDeleted { topic: "t".into() },
            Record::ClassicGroup(membership()),
            Record::GroupDeleted { group: "g".into() },
            Record::OffsetDeleted {
                group: "g".into(),
                topic: "t".into(),
                partition: 4,
            },
            txn_commit(-3, "g", "t", 5, 77, "txn"),
            Record::TxnCompleted {
                producer_id: 12,
                group: "g".into(),
                committed: true,
            },
            Record::TxnCompleted {
                producer_id: i64::MAX,
                group: String::new(),
                committed: false,
            },
            Record::ConsumerGroup(consumer::tests::consumer_group()),
        ];
        for record in records {
            let buf = encode(&record);
            assert_eq!(buf.len() as u64, record.frame_len());
            let (decoded, used) = decode_frame(&buf).expect("valid").expect("one frame");
            assert_eq!(decoded, record);
            assert_eq!(used, buf.len());
        }
    }

    #[test]
    fn every_truncation_of_a_frame_is_torn() {
        let buf = encode(&commit("group", "topic", 1, 2, "m"));
        for cut in 1..buf.len() {
            assert!(
                matches!(decode_frame(&buf[..cut]), Err(BadFrame::Torn(_))),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_flipped_bit_is_a_crc_mismatch() {
        let mut buf = encode(&commit("group", "topic", 1, 2, "m"));
        let last = buf.len() - 1;
        buf[last] ^= 0x10;
        assert_eq!(decode_frame(&buf), Err(BadFrame::Torn("CRC mismatch")));
    }

    #[test]
    fn an_unknown_kind_with_a_valid_crc_is_undecodable_not_torn() {
        let body = [99u8, 1, 2];
        let mut buf = (body.len() as u32).to_be_bytes().to_vec();
        buf.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        buf.extend_from_slice(&body);
        assert!(matches!(decode_frame(&buf), Err(BadFrame::Undecodable(_))));
    }

    #[test]
    fn every_truncation_of_a_classic_group_body_is_undecodable() {
        let mut body = Vec::new();
        Record::ClassicGroup(membership())
            .encode_body(&mut body)
            .expect("encodable");
        for cut in 0..body.len() {
            assert!(
                Record::decode_body(&body[..cut]).is_err(),
                "a body cut at {cut} decoded"
            );
        }
        assert!(Record::decode_body(&body).is_ok());
    }

    #[test]
    fn a_classic_group_of_an_unknown_layout_is_undecodable() {
        let mut body = Vec::new();
        Record::ClassicGroup(membership())
            .encode_body(&mut body)
            .expect("encodable");
        body[1] = CLASSIC_GROUP_LAYOUT + 1;
        assert_eq!(
            Record::decode_body(&body),
            Err(BadFrame::Undecodable("unknown classic group layout"))
        );
    }

    #[test]
    fn every_truncation_of_a_transactional_body_is_undecodable() {
        let records = [
            txn_commit(9, "group", "topic", 1, 2, "m"),
            Record::TxnCompleted {
                producer_id: 9,
                group: "group".into(),
                committed: true,
            },
        ];
        for record in records {
            let mut body = Vec::new();
            record.encode_body(&mut body).expect("encodable");
            for cut in 0..body.len() {
                assert!(Record::decode_body(&body[..cut]).is_err(), "cut at {cut}");
            }
        }
    }

    #[test]
    fn a_transaction_outcome_other_than_0_or_1_is_undecodable() {
        let mut body = Vec::new();
        Record::TxnCompleted {
            producer_id: 9,
            group: "g".into(),
            committed: false,
        }
        .encode_body(&mut body)
        .expect("encodable");
        let last = body.len() - 1;
        body[last] = 2;
        assert_eq!(
            Record::decode_body(&body),
            Err(BadFrame::Undecodable("bad transaction outcome"))
        );
    }

    proptest! {
        #[test]
        fn commits_round_trip(group in ".{0,40}", topic in ".{0,40}", partition: i32,
                              offset: i64, metadata in ".{0,100}") {
            let record = commit(&group, &topic, partition, offset, &metadata);
            let buf = encode(&record);
            prop_assert_eq!(buf.len() as u64, record.frame_len());
            let decoded = decode_frame(&buf).expect("valid").expect("one frame");
            prop_assert_eq!(decoded.0, record);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_frame(&bytes);
        }
    }
}
