//! The records of the offsets file and their CRC-framed encoding.
//!
//! ```text
//! file   := MAGIC frame*
//! frame  := body_len:u32  crc32c(body):u32  body
//! body   := kind:u8 fields...                      (all integers big-endian)
//! string := len:u32 utf8-bytes
//!
//! kind 1  OffsetCommit  group:string topic:string partition:i32 offset:i64
//!                       leader_epoch:i32 commit_timestamp_ms:i64 metadata:string
//! kind 2  Generation    group:string generation:i32 protocol_type:string
//! kind 3  TopicDeleted  topic:string
//! ```
//!
//! A frame is either whole and CRC-valid or it is the torn tail of an interrupted write: the
//! length and CRC come first so a reader can tell the two apart without trusting the body.

use super::StoreError;

/// First bytes of every offsets file; the trailing digit is the format version.
pub(crate) const FILE_MAGIC: &[u8; 8] = b"FRSHOFS1";

/// Length prefix plus CRC.
const FRAME_HEADER_LEN: usize = 8;

const KIND_OFFSET_COMMIT: u8 = 1;
const KIND_GENERATION: u8 = 2;
const KIND_TOPIC_DELETED: u8 = 3;

/// What a group committed for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommittedOffset {
    pub(crate) offset: i64,
    /// -1 when the client did not send one (OffsetCommit < v6).
    pub(crate) leader_epoch: i32,
    pub(crate) metadata: String,
    pub(crate) commit_timestamp_ms: i64,
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
        let strings = |parts: &[&str]| parts.iter().map(|s| 4 + s.len() as u64).sum::<u64>();
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
        };
        FRAME_HEADER_LEN as u64 + body
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
                put_string(out, group)?;
                put_string(out, topic)?;
                out.extend_from_slice(&partition.to_be_bytes());
                out.extend_from_slice(&offset.offset.to_be_bytes());
                out.extend_from_slice(&offset.leader_epoch.to_be_bytes());
                out.extend_from_slice(&offset.commit_timestamp_ms.to_be_bytes());
                put_string(out, &offset.metadata)?;
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
                offset: CommittedOffset {
                    offset: r.i64()?,
                    leader_epoch: r.i32()?,
                    commit_timestamp_ms: r.i64()?,
                    metadata: r.string()?,
                },
            },
            KIND_GENERATION => Record::Generation {
                group: r.string()?,
                generation: r.i32()?,
                protocol_type: r.string()?,
            },
            KIND_TOPIC_DELETED => Record::TopicDeleted { topic: r.string()? },
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

fn put_string(out: &mut Vec<u8>, s: &str) -> Result<(), StoreError> {
    let len = u32::try_from(s.len()).map_err(|_| StoreError::RecordTooLarge)?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
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

    fn i64(&mut self) -> Result<i64, BadFrame> {
        Ok(i64::from_be_bytes(self.take()?))
    }

    fn string(&mut self) -> Result<String, BadFrame> {
        let len = u32::from_be_bytes(self.take()?) as usize;
        if self.0.len() < len {
            return Err(BadFrame::Undecodable("string runs past the record body"));
        }
        let (bytes, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8(bytes.to_vec()).map_err(|_| BadFrame::Undecodable("string is not UTF-8"))
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
