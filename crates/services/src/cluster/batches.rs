//! Record batches as a Fetch answer holds them, read without trusting them: Kafka's v2 batch
//! format, decompressed with a cap on the bytes it may decompress to, and every record parsed
//! and checked against what the header claims.
//!
//! librdkafka has no such cap: it decompresses a whole gzip batch into one buffer before it
//! looks at the records, so a 0.5 MB batch holding 512 MiB of zeros costs 512 MiB on every
//! fetch of it, and since the zeros are no record it delivers nothing, reports no error and
//! fetches the batch again, forever. The topic REST API therefore reads records with this
//! module, and the tracker asks it whether a batch its consumer is stuck on can be read.
//!
//! A batch is read whole or not at all: it is unreadable when its CRC does not match, its codec
//! is unknown, its body does not decompress or decompresses to more than the cap, or its records
//! do not parse, are fewer or more than its header says, or leave bytes after the last one.
//! Memory is bounded by the cap (one batch's records) whatever the batch claims.

use std::io::{self, BufRead, BufReader, Cursor, Read};

/// Most bytes the records of one compressed batch may decompress to: Freshet's broker refuses
/// batches above the same default at produce (`max_uncompressed_batch_bytes`).
pub const MAX_UNCOMPRESSED_BATCH_BYTES: usize = 64 << 20;

/// Bytes of a v2 batch header, from `baseOffset` to `recordCount`.
pub(crate) const HEADER_LEN: usize = 61;
/// Bytes before a batch's `batchLength` counts: `baseOffset` and `batchLength` themselves.
const LOG_OVERHEAD: usize = 12;
/// Where the magic byte is, in v2 batches and in the v0/v1 message sets before them.
const MAGIC_AT: usize = 16;
/// The CRC-32C covers everything from `attributes` on.
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;

const CODEC_MASK: i16 = 0x07;
const LOG_APPEND_TIME: i16 = 0x08;
const TRANSACTIONAL: i16 = 0x10;
const CONTROL: i16 = 0x20;

/// The xerial framing Java clients wrap snappy in: magic, version, compatible version.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// One entry of a fetched byte run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry<'a> {
    /// A v2 batch (its records may still turn out unreadable).
    Batch(Batch<'a>),
    /// What this module cannot read at all: a message of the v0/v1 format (Kafka before 0.11),
    /// or a v2 batch too short for its header. `last_offset` is the last offset its framing
    /// tells of.
    Unreadable { last_offset: i64, reason: String },
}

/// A whole v2 batch: its header and all its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Batch<'a> {
    pub(crate) header: BatchHeader,
    pub(crate) bytes: &'a [u8],
}

/// The fields of a v2 batch header this module uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    pub(crate) base_offset: i64,
    pub(crate) crc: u32,
    pub(crate) attributes: i16,
    pub(crate) last_offset_delta: i32,
    pub(crate) base_timestamp: i64,
    pub(crate) max_timestamp: i64,
    pub(crate) producer_id: i64,
    pub(crate) record_count: i32,
}

impl BatchHeader {
    /// The header at the start of `bytes` (at least [`HEADER_LEN`] of them).
    fn parse(bytes: &[u8]) -> Option<BatchHeader> {
        let header = bytes.get(..HEADER_LEN)?;
        Some(BatchHeader {
            base_offset: i64_at(header, 0),
            crc: u32::from_be_bytes(array_at(header, CRC_AT)),
            attributes: i16::from_be_bytes(array_at(header, ATTRIBUTES_AT)),
            last_offset_delta: i32_at(header, 23),
            base_timestamp: i64_at(header, 27),
            max_timestamp: i64_at(header, 35),
            producer_id: i64_at(header, 43),
            record_count: i32_at(header, 57),
        })
    }

    /// Offset of the batch's last record as written: records compaction removed since still
    /// count, so the next batch starts after it.
    pub(crate) fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    pub(crate) fn is_control(&self) -> bool {
        self.attributes & CONTROL != 0
    }

    pub(crate) fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL != 0
    }

    fn codec(&self) -> Codec {
        Codec::from_attributes(self.attributes)
    }

    /// What a reason says the batch is: "gzip batch of 521542 bytes claiming 1 record".
    fn describe(&self, size: usize) -> String {
        let records = self.record_count;
        let plural = if records == 1 { "" } else { "s" };
        format!(
            "{} batch of {size} bytes claiming {records} record{plural}",
            self.codec().name()
        )
    }
}

fn array_at<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

fn i64_at(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(array_at(bytes, at))
}

fn i32_at(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(array_at(bytes, at))
}

/// The whole entries at the start of `records`, in order. A partial entry at the end (a broker
/// may cut the last one at the size limit) ends the list, as does a length that cannot be.
pub(crate) fn entries(records: &[u8]) -> Vec<Entry<'_>> {
    let mut entries = Vec::new();
    let mut rest = records;
    while rest.len() >= LOG_OVERHEAD {
        let length = i32_at(rest, 8);
        let Some(size) = usize::try_from(length)
            .ok()
            .and_then(|length| length.checked_add(LOG_OVERHEAD))
            .filter(|size| *size > MAGIC_AT && *size <= rest.len())
        else {
            break;
        };
        let (bytes, next) = rest.split_at(size);
        entries.push(entry(bytes));
        rest = next;
    }
    entries
}

/// The whole entry `bytes` (its framing checked by the caller).
fn entry(bytes: &[u8]) -> Entry<'_> {
    // A v0/v1 message's offset is its own, or for a compressed wrapper its last inner one.
    let last_offset = i64_at(bytes, 0);
    match (bytes[MAGIC_AT] as i8, BatchHeader::parse(bytes)) {
        (2, Some(header)) => Entry::Batch(Batch { header, bytes }),
        (2, None) => Entry::Unreadable {
            last_offset,
            reason: format!(
                "batch of {} bytes is shorter than a batch header",
                bytes.len()
            ),
        },
        (magic, _) => Entry::Unreadable {
            last_offset,
            reason: format!(
                "message format v{magic} (Kafka before 0.11) is not read by this API; \
                 read it with a Kafka consumer"
            ),
        },
    }
}

/// One record of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) offset: i64,
    /// Unix milliseconds; `None` when the producer set none (-1).
    pub(crate) timestamp: Option<i64>,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Option<Vec<u8>>,
    /// In record order; a key may repeat.
    pub(crate) headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Batch<'_> {
    /// Every record of the batch, or why the batch cannot be read (the reason names the batch).
    /// Decompression stops after `cap` bytes.
    pub(crate) fn records(&self, cap: usize) -> Result<Vec<Record>, String> {
        self.read_records(cap)
            .map_err(|fault| format!("{}: {fault}", self.header.describe(self.bytes.len())))
    }

    fn read_records(&self, cap: usize) -> Result<Vec<Record>, Fault> {
        let computed = crc32c::crc32c(&self.bytes[ATTRIBUTES_AT..]);
        if computed != self.header.crc {
            return Err(Fault::Malformed(format!(
                "its CRC does not match (stored {:#010x}, computed {computed:#010x})",
                self.header.crc
            )));
        }
        let body = &self.bytes[HEADER_LEN..];
        let decompressed = decompressor(self.header.codec(), body, cap)?;
        let mut reader = BufReader::new(Capped::new(decompressed, cap));
        let records = read_all_records(&mut reader, &self.header)?;
        if !reader.fill_buf().map_err(Fault::from)?.is_empty() {
            return Err(Fault::Malformed(format!(
                "bytes follow its last record ({})",
                self.header.record_count
            )));
        }
        Ok(records)
    }
}

/// Why a batch cannot be read.
#[derive(Debug)]
enum Fault {
    /// The body decompresses to more than the cap.
    OverCap(usize),
    /// The compressed body is not valid data of its codec.
    Corrupt(String),
    /// The records do not parse, or disagree with the header.
    Malformed(String),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::OverCap(cap) => write!(f, "its records decompress to more than {cap} bytes"),
            Fault::Corrupt(reason) => write!(f, "it does not decompress: {reason}"),
            Fault::Malformed(reason) => f.write_str(reason),
        }
    }
}

impl From<io::Error> for Fault {
    fn from(error: io::Error) -> Fault {
        match error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<OverCap>())
        {
            Some(OverCap(cap)) => Fault::OverCap(*cap),
            None => Fault::Corrupt(error.to_string()),
        }
    }
}

/// The compression codecs of a batch's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
    Unknown(i16),
}

impl Codec {
    fn from_attributes(attributes: i16) -> Codec {
        match attributes & CODEC_MASK {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            other => Codec::Unknown(other),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Codec::None => "uncompressed",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
            Codec::Unknown(_) => "unknown-codec",
        }
    }
}

/// A reader of the decompressed records of `body`. Streaming codecs decompress as the records
/// are read; snappy blocks announce their size, which is checked against `cap` before any is
/// decompressed.
fn decompressor<'a>(codec: Codec, body: &'a [u8], cap: usize) -> Result<Box<dyn Read + 'a>, Fault> {
    Ok(match codec {
        Codec::None => Box::new(body),
        Codec::Gzip => Box::new(flate2::read::GzDecoder::new(body)),
        Codec::Snappy => Box::new(Cursor::new(snappy(body, cap)?)),
        Codec::Lz4 => Box::new(lz4::Decoder::new(body)?),
        Codec::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(body)?),
        Codec::Unknown(code) => {
            return Err(Fault::Malformed(format!(
                "its compression codec {code} does not exist"
            )))
        }
    })
}

/// Snappy as Java clients send it (xerial framing: blocks with a 4-byte length) or raw, as
/// librdkafka sends it.
fn snappy(body: &[u8], cap: usize) -> Result<Vec<u8>, Fault> {
    let Some(framed) = body
        .strip_prefix(XERIAL_MAGIC)
        .and_then(|_| body.get(XERIAL_HEADER_LEN..))
    else {
        return snappy_block(body, cap);
    };
    let mut out = Vec::new();
    let mut rest = framed;
    while !rest.is_empty() {
        let (length, after) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| Fault::Corrupt("a snappy block length is cut short".into()))?;
        let length = u32::from_be_bytes(*length) as usize;
        let block = after
            .get(..length)
            .ok_or_else(|| Fault::Corrupt("a snappy block is cut short".into()))?;
        out.extend(snappy_block(block, cap - out.len())?);
        rest = &after[length..];
    }
    Ok(out)
}

/// One raw snappy block, refused before decompression when it announces more than `cap` bytes.
fn snappy_block(block: &[u8], cap: usize) -> Result<Vec<u8>, Fault> {
    let length = snap::raw::decompress_len(block).map_err(|e| Fault::Corrupt(e.to_string()))?;
    if length > cap {
        return Err(Fault::OverCap(cap));
    }
    snap::raw::Decoder::new()
        .decompress_vec(block)
        .map_err(|e| Fault::Corrupt(e.to_string()))
}

/// The error a [`Capped`] reader fails with past its cap.
#[derive(Debug)]
struct OverCap(usize);

impl std::fmt::Display for OverCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "more than {} bytes", self.0)
    }
}

impl std::error::Error for OverCap {}

/// Passes on at most `cap` bytes of its source and fails once the source has one more, so a
/// decompressor behind it does at most `cap` bytes of work, whatever its input claims.
struct Capped<R> {
    inner: R,
    cap: usize,
    left: usize,
}

impl<R: Read> Capped<R> {
    fn new(inner: R, cap: usize) -> Capped<R> {
        Capped {
            inner,
            cap,
            left: cap,
        }
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            // At the cap: only the end of the data is allowed now.
            let mut one = [0u8; 1];
            return match self.inner.read(&mut one)? {
                0 => Ok(0),
                _ => Err(io::Error::other(OverCap(self.cap))),
            };
        }
        let wanted = buf.len().min(self.left);
        let read = self.inner.read(&mut buf[..wanted])?;
        self.left -= read;
        Ok(read)
    }
}

/// The records the header announces, in order.
fn read_all_records(reader: &mut impl BufRead, header: &BatchHeader) -> Result<Vec<Record>, Fault> {
    let count = usize::try_from(header.record_count).map_err(|_| {
        Fault::Malformed(format!(
            "its record count {} is negative",
            header.record_count
        ))
    })?;
    // The count comes from the batch: reserve no more than a batch can plausibly hold.
    let mut records = Vec::with_capacity(count.min(1024));
    for index in 0..count {
        let record = read_record(reader, header).map_err(|fault| match fault {
            Fault::Malformed(reason) => {
                Fault::Malformed(format!("record {} of {count} {reason}", index + 1))
            }
            other => other,
        })?;
        records.push(record);
    }
    Ok(records)
}

/// One record: its length, then attributes, timestamp and offset deltas, key, value, headers.
fn read_record(reader: &mut impl BufRead, header: &BatchHeader) -> Result<Record, Fault> {
    let length = read_varint(reader)?
        .ok_or_else(|| Fault::Malformed("is missing (the records end early)".into()))?;
    let length = u64::try_from(length)
        .map_err(|_| Fault::Malformed(format!("has a negative length ({length})")))?;
    let mut body = Vec::new();
    // Grows with the bytes that arrive, never with what the length claims.
    reader.by_ref().take(length).read_to_end(&mut body)?;
    if (body.len() as u64) < length {
        return Err(Fault::Malformed(format!(
            "claims {length} bytes but only {} follow",
            body.len()
        )));
    }
    parse_record(&body, header)
        .ok_or_else(|| Fault::Malformed(format!("is not a valid record ({length} bytes)")))
}

/// The fields of one record's bytes; `None` when they do not fill the record exactly.
fn parse_record(body: &[u8], header: &BatchHeader) -> Option<Record> {
    let mut fields = Fields(body);
    let _attributes = fields.byte()?;
    let timestamp_delta = fields.varlong()?;
    let offset_delta = fields.varlong()?;
    let key = fields.bytes()?;
    let value = fields.bytes()?;
    let header_count = usize::try_from(fields.varlong()?).ok()?;
    // Each header takes at least 2 bytes: a count beyond that is a lie.
    if header_count > fields.0.len() / 2 {
        return None;
    }
    let mut headers = Vec::with_capacity(header_count);
    for _ in 0..header_count {
        let name = fields.bytes()??;
        let value = fields.bytes()?;
        headers.push((String::from_utf8_lossy(&name).into_owned(), value));
    }
    if !fields.0.is_empty() {
        return None;
    }
    let timestamp = if header.attributes & LOG_APPEND_TIME != 0 {
        header.max_timestamp
    } else {
        header.base_timestamp.checked_add(timestamp_delta)?
    };
    Some(Record {
        offset: header.base_offset.checked_add(offset_delta)?,
        timestamp: (timestamp != -1).then_some(timestamp),
        key,
        value,
        headers,
    })
}

/// A cursor over one record's bytes.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }

    /// A zig-zag varint of up to 64 bits.
    fn varlong(&mut self) -> Option<i64> {
        let mut raw: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            raw |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(zigzag(raw));
            }
        }
        None
    }

    /// A length-prefixed byte string; -1 is null (`Some(None)`).
    fn bytes(&mut self) -> Option<Option<Vec<u8>>> {
        match self.varlong()? {
            -1 => Some(None),
            length => {
                let length = usize::try_from(length).ok()?;
                if length > self.0.len() {
                    return None;
                }
                let (bytes, rest) = self.0.split_at(length);
                self.0 = rest;
                Some(Some(bytes.to_vec()))
            }
        }
    }
}

fn zigzag(raw: u64) -> i64 {
    ((raw >> 1) as i64) ^ -((raw & 1) as i64)
}

/// A zig-zag varint from a reader; `None` at the end of the data.
fn read_varint(reader: &mut impl BufRead) -> Result<Option<i64>, Fault> {
    let mut raw: u64 = 0;
    for (index, shift) in (0..64).step_by(7).enumerate() {
        let mut byte = [0u8; 1];
        if reader.read(&mut byte)? == 0 {
            return if index == 0 {
                Ok(None)
            } else {
                Err(Fault::Malformed("ends inside its length".into()))
            };
        }
        raw |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            return Ok(Some(zigzag(raw)));
        }
    }
    Err(Fault::Malformed("has a length longer than 10 bytes".into()))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;

    use bytes::{Bytes, BytesMut};
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record as KafkaRecord, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    use super::*;

    pub(crate) fn kafka_record(offset: i64, key: Option<&str>, value: Option<&str>) -> KafkaRecord {
        KafkaRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            // The encoder starts a new batch where `offset - sequence` changes.
            sequence: offset as i32,
            timestamp_type: TimestampType::Creation,
            offset,
            timestamp: 1_700_000_000_000 + offset,
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: IndexMap::new(),
        }
    }

    /// Batches as a Kafka client writes them (kafka-protocol's encoder).
    pub(crate) fn encode(records: &[KafkaRecord], compression: Compression) -> Vec<u8> {
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, records, &options).expect("encodes");
        buf.to_vec()
    }

    fn varint(value: i64, out: &mut Vec<u8>) {
        let mut raw = ((value << 1) ^ (value >> 63)) as u64;
        while raw >= 0x80 {
            out.push((raw as u8) | 0x80);
            raw >>= 7;
        }
        out.push(raw as u8);
    }

    /// One record with no key and no headers, as its bytes in a batch body.
    pub(crate) fn record_bytes(offset_delta: i64, value: &[u8]) -> Vec<u8> {
        let mut fields = vec![0u8];
        varint(0, &mut fields);
        varint(offset_delta, &mut fields);
        varint(-1, &mut fields);
        varint(value.len() as i64, &mut fields);
        fields.extend_from_slice(value);
        varint(0, &mut fields);
        let mut out = Vec::new();
        varint(fields.len() as i64, &mut out);
        out.extend(fields);
        out
    }

    /// A batch at `base_offset` around `body` (already compressed as `attributes` say), with a
    /// valid CRC: what a broker may hold whatever the body is.
    pub(crate) fn raw_batch(
        base_offset: i64,
        attributes: i16,
        last_offset_delta: i32,
        record_count: i32,
        body: &[u8],
    ) -> Vec<u8> {
        let mut batch = Vec::new();
        batch.extend(base_offset.to_be_bytes());
        batch.extend(((HEADER_LEN - LOG_OVERHEAD + body.len()) as i32).to_be_bytes());
        batch.extend((-1i32).to_be_bytes());
        batch.push(2);
        batch.extend(0u32.to_be_bytes());
        batch.extend(attributes.to_be_bytes());
        batch.extend(last_offset_delta.to_be_bytes());
        batch.extend(1_700_000_000_000i64.to_be_bytes());
        batch.extend(1_700_000_000_999i64.to_be_bytes());
        batch.extend((-1i64).to_be_bytes());
        batch.extend((-1i16).to_be_bytes());
        batch.extend((-1i32).to_be_bytes());
        batch.extend(record_count.to_be_bytes());
        batch.extend_from_slice(body);
        let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    /// `batch` as written by producer `producer_id`, with `attributes` added (and a new CRC).
    pub(crate) fn written_by(mut batch: Vec<u8>, producer_id: i64, attributes: i16) -> Vec<u8> {
        batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
        let added =
            i16::from_be_bytes([batch[ATTRIBUTES_AT], batch[ATTRIBUTES_AT + 1]]) | attributes;
        batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&added.to_be_bytes());
        let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    pub(crate) fn compress(codec: i16, data: &[u8]) -> Vec<u8> {
        match codec {
            0 => data.to_vec(),
            1 => {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder.write_all(data).expect("gzip");
                encoder.finish().expect("gzip")
            }
            2 => snap::raw::Encoder::new()
                .compress_vec(data)
                .expect("snappy"),
            3 => {
                let mut encoder = lz4::EncoderBuilder::new().build(Vec::new()).expect("lz4");
                encoder.write_all(data).expect("lz4");
                let (out, result) = encoder.finish();
                result.expect("lz4");
                out
            }
            4 => zstd::encode_all(data, 1).expect("zstd"),
            other => panic!("no codec {other}"),
        }
    }

    fn only_batch(bytes: &[u8]) -> Batch<'_> {
        match entries(bytes).as_slice() {
            [Entry::Batch(batch)] => *batch,
            other => panic!("one batch expected: {other:?}"),
        }
    }

    fn read(bytes: &[u8], cap: usize) -> Result<Vec<Record>, String> {
        only_batch(bytes).records(cap)
    }

    const COMPRESSIONS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn batches_every_codec_writes_read_back_exactly() {
        let mut with_headers = kafka_record(12, Some("k"), None);
        with_headers.headers.insert(
            StrBytes::from_static_str("source"),
            Some(Bytes::from_static(b"curl")),
        );
        with_headers
            .headers
            .insert(StrBytes::from_static_str("empty"), None);
        let written = vec![
            kafka_record(10, Some("a"), Some("first")),
            kafka_record(11, None, Some("{\"n\": 2}")),
            with_headers,
        ];
        for compression in COMPRESSIONS {
            let bytes = encode(&written, compression);
            let records = read(&bytes, MAX_UNCOMPRESSED_BATCH_BYTES)
                .unwrap_or_else(|e| panic!("{compression:?}: {e}"));
            let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
            assert_eq!(offsets, [10, 11, 12], "{compression:?}");
            assert_eq!(records[0].key.as_deref(), Some(&b"a"[..]));
            assert_eq!(records[0].value.as_deref(), Some(&b"first"[..]));
            assert_eq!(records[1].key, None);
            assert_eq!(records[1].timestamp, Some(1_700_000_000_011));
            assert_eq!(records[2].value, None);
            assert_eq!(
                records[2].headers,
                vec![
                    ("source".to_string(), Some(b"curl".to_vec())),
                    ("empty".to_string(), None)
                ],
                "{compression:?}"
            );
        }
    }

    #[test]
    fn batches_raw_snappy_as_librdkafka_sends_it_is_read() {
        let body = compress(2, &record_bytes(0, b"raw snappy"));
        let records = read(&raw_batch(0, 2, 0, 1, &body), 1 << 20).expect("readable");
        assert_eq!(records[0].value.as_deref(), Some(&b"raw snappy"[..]));
    }

    #[test]
    fn batches_a_body_of_zeros_is_no_record_in_any_codec() {
        for codec in 0..=4 {
            let body = compress(codec, &vec![0u8; 1 << 20]);
            let error =
                read(&raw_batch(0, codec, 0, 1, &body), 4 << 20).expect_err("zeros are no record");
            assert!(
                error.contains("claiming 1 record: record 1 of 1 is not a valid record"),
                "codec {codec}: {error}"
            );
        }
    }

    #[test]
    fn batches_decompression_stops_at_the_cap_in_every_codec() {
        let cap = 1 << 20;
        // One record whose value alone is twice the cap.
        let body = record_bytes(0, &vec![b'x'; 2 * cap]);
        for codec in 1..=4 {
            let error = read(&raw_batch(0, codec, 0, 1, &compress(codec, &body)), cap)
                .expect_err("over the cap");
            assert!(
                error.ends_with("its records decompress to more than 1048576 bytes"),
                "codec {codec}: {error}"
            );
        }
        // Exactly the cap is allowed.
        let exact = record_bytes(0, b"12345");
        for codec in 1..=4 {
            let batch = raw_batch(0, codec, 0, 1, &compress(codec, &exact));
            assert!(read(&batch, exact.len()).is_ok(), "codec {codec}");
            assert!(read(&batch, exact.len() - 1).is_err(), "codec {codec}");
        }
    }

    #[test]
    fn batches_records_must_match_the_header_exactly() {
        let two = [record_bytes(0, b"a"), record_bytes(1, b"b")].concat();
        let claims_three = read(&raw_batch(0, 0, 2, 3, &two), 1 << 20).expect_err("missing");
        assert!(
            claims_three.contains("record 3 of 3 is missing"),
            "{claims_three}"
        );
        let claims_one = read(&raw_batch(0, 0, 0, 1, &two), 1 << 20).expect_err("extra");
        assert!(
            claims_one.contains("bytes follow its last record"),
            "{claims_one}"
        );
        let negative = read(&raw_batch(0, 0, 0, -1, &two), 1 << 20).expect_err("negative");
        assert!(
            negative.contains("record count -1 is negative"),
            "{negative}"
        );
        let mut truncated = record_bytes(0, b"abc");
        truncated.pop();
        let cut = read(&raw_batch(0, 0, 0, 1, &truncated), 1 << 20).expect_err("cut");
        assert!(cut.contains("but only"), "{cut}");
    }

    #[test]
    fn batches_a_bad_crc_or_codec_is_unreadable() {
        let mut bytes = raw_batch(0, 0, 0, 1, &record_bytes(0, b"v"));
        let last = bytes.len() - 2;
        bytes[last] ^= 0xff;
        let crc = read(&bytes, 1 << 20).expect_err("crc");
        assert!(crc.contains("its CRC does not match"), "{crc}");
        let codec =
            read(&raw_batch(0, 5, 0, 1, &record_bytes(0, b"v")), 1 << 20).expect_err("codec 5");
        assert!(
            codec.starts_with("unknown-codec batch of") && codec.contains("codec 5"),
            "{codec}"
        );
        let gzip = read(&raw_batch(0, 1, 0, 1, b"not gzip at all"), 1 << 20).expect_err("gzip");
        assert!(gzip.contains("it does not decompress"), "{gzip}");
    }

    #[test]
    fn batches_log_append_time_shows_the_batch_time() {
        let body = record_bytes(0, b"v");
        let records = read(&raw_batch(7, LOG_APPEND_TIME, 0, 1, &body), 1 << 20).expect("ok");
        assert_eq!(records[0].offset, 7);
        assert_eq!(records[0].timestamp, Some(1_700_000_000_999));
    }

    proptest::proptest! {
        /// Whatever a broker sends, reading it ends in records or a reason, never a panic.
        #[test]
        fn batches_any_bytes_are_read_or_refused(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            flips in proptest::collection::vec((0usize..512, proptest::prelude::any::<u8>()), 0..8),
            codec in 0i16..6,
        ) {
            for entry in entries(&bytes) {
                if let Entry::Batch(batch) = entry {
                    let _ = batch.records(1 << 16);
                }
            }
            // A valid batch with some bytes changed (and its CRC made to match again).
            let body = compress(codec.min(4), &record_bytes(0, b"value"));
            let mut batch = raw_batch(0, codec, 0, 1, &body);
            for (at, value) in flips {
                let at = HEADER_LEN + at % (batch.len() - HEADER_LEN);
                batch[at] = value;
            }
            let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
            batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
            if let [Entry::Batch(batch)] = entries(&batch).as_slice() {
                let _ = batch.records(1 << 16);
            }
        }
    }

    #[test]
    fn batches_entries_stop_at_a_partial_batch_and_name_legacy_messages() {
        let first = encode(&[kafka_record(0, None, Some("a"))], Compression::None);
        let second = encode(&[kafka_record(1, None, Some("b"))], Compression::None);
        let mut run = [first.clone(), second.clone()].concat();
        assert_eq!(entries(&run).len(), 2);
        run.truncate(first.len() + second.len() - 1);
        assert_eq!(entries(&run).len(), 1, "the cut batch is left out");

        // A v1 message: offset, size, crc, magic 1, attributes, timestamp, key, value.
        let mut legacy = Vec::new();
        legacy.extend(41i64.to_be_bytes());
        let message = [
            &[0u8; 4][..],
            &[1, 0],
            &[0; 8],
            &(-1i32).to_be_bytes(),
            &0i32.to_be_bytes(),
        ]
        .concat();
        legacy.extend((message.len() as i32).to_be_bytes());
        legacy.extend(message);
        match entries(&legacy).as_slice() {
            [Entry::Unreadable {
                last_offset,
                reason,
            }] => {
                assert_eq!(*last_offset, 41);
                assert!(reason.contains("message format v1"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}
