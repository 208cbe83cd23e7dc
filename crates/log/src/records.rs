//! The records inside a batch: capped, streaming decompression, a streaming record parser, and
//! recompression.
//!
//! A v2 record is: length varint · attributes i8 · timestampDelta varlong · offsetDelta varint ·
//! keyLength varint · key · valueLength varint · value · headerCount varint · headers. Varints
//! are zig-zag encoded like protobuf's `sint32`/`sint64`.
//!
//! # Bounded decompression
//!
//! A compressed batch is at most `max.message.bytes` on the wire but may claim any size once
//! decompressed: 0.5 MB of gzip holds 512 MiB of zeros. So every batch is opened through
//! [`RecordStream`], which decompresses as it parses (the codecs' streaming readers behind a
//! 16 KiB buffer) and stops with [`LogError::UncompressedTooLarge`] once a batch has produced
//! more than `max_uncompressed_batch_bytes`. A bomb therefore costs at most that many bytes of
//! decompression work, and memory grows only with what is kept of each record (its key, or
//! its raw bytes for compaction), never with what a header or length field claims.

use std::io::{self, BufRead, BufReader, Read, Take};

use bytes::{BufMut, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
use kafka_protocol::records::Compression;

use crate::batch::{BatchHeader, BATCH_HEADER_LEN};
use crate::error::LogError;

/// Size of the buffer between a decompressor and the record parser: the parser's whole
/// working memory when it keeps nothing.
const STREAM_BUFFER_BYTES: usize = 16 * 1024;

/// What a [`RecordStream`] keeps of each record besides its offset and timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Nothing: keys and values are skipped as they stream by.
    Nothing,
    /// The key.
    Keys,
    /// The key and the record's raw bytes, length prefix included (compaction copies them).
    KeysAndRaw,
}

/// One record of a batch, as the stream yields it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StreamedRecord {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    /// The key, when the stream keeps keys and the record has one.
    pub key: Option<Vec<u8>>,
    /// A record without a value is a tombstone.
    pub has_value: bool,
}

impl StreamedRecord {
    /// The record's absolute offset within its batch.
    pub fn offset(&self, header: &BatchHeader) -> i64 {
        header
            .base_offset
            .saturating_add(i64::from(self.offset_delta))
    }

    /// The record's timestamp: the broker's append time for log-append-time batches, otherwise
    /// the producer's create time.
    pub fn timestamp(&self, header: &BatchHeader) -> i64 {
        if header.has_log_append_time() {
            header.max_timestamp
        } else {
            header.base_timestamp.saturating_add(self.timestamp_delta)
        }
    }
}

/// The smallest and largest producer (CreateTime) timestamp among a batch's records, found
/// while validating them, so the topic's timestamp window can be checked without opening a
/// compressed batch twice. Records without a timestamp (-1) are left out; a batch of only
/// those has `min > max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordTimes {
    pub min: i64,
    pub max: i64,
}

impl RecordTimes {
    const NONE: RecordTimes = RecordTimes {
        min: i64::MAX,
        max: i64::MIN,
    };

    fn include(&mut self, timestamp: i64) {
        if timestamp != NO_TIMESTAMP {
            self.min = self.min.min(timestamp);
            self.max = self.max.max(timestamp);
        }
    }
}

/// Kafka's `RecordBatch.NO_TIMESTAMP`.
const NO_TIMESTAMP: i64 = -1;

/// Produce-time check of a batch's records, as Kafka's LogValidator does: every record
/// parses, the offset deltas run 0, 1, 2, ... and their number matches the header. A
/// compressed body is decompressed through a fixed-size buffer and refused past
/// `max_uncompressed` bytes; an uncompressed one is bounded by its own size (already checked
/// against `max.message.bytes`). Uncompressed batches are checked too: a record claiming an
/// offset outside its batch would otherwise be stored and answered by ListOffsets. Returns
/// the range of the records' producer timestamps.
pub(crate) fn validate_records(
    header: &BatchHeader,
    batch: &[u8],
    max_uncompressed: usize,
) -> Result<RecordTimes, LogError> {
    let cap = if header.compression()? == Compression::None {
        batch.len()
    } else {
        max_uncompressed
    };
    let mut stream = RecordStream::open(header, batch, cap, Keep::Nothing)?;
    let mut expected_delta: i32 = 0;
    let mut times = RecordTimes::NONE;
    while let Some(record) = stream.next_record()? {
        if record.offset_delta != expected_delta {
            return Err(LogError::invalid(format!(
                "record {expected_delta} of the batch has offset delta {}",
                record.offset_delta
            )));
        }
        expected_delta = expected_delta.saturating_add(1);
        times.include(header.base_timestamp.saturating_add(record.timestamp_delta));
    }
    Ok(times)
}

/// Streams the records of one batch out of its (maybe compressed) body.
pub(crate) struct RecordStream<'a> {
    input: BufReader<CappedReader<Box<dyn Read + 'a>>>,
    max_uncompressed: usize,
    keep: Keep,
    expected_count: i32,
    count: i32,
    /// Bytes left in the record being parsed: no field may run past them.
    left_in_record: usize,
    /// The raw bytes of the last record, with `Keep::KeysAndRaw`.
    raw: Vec<u8>,
}

impl std::fmt::Debug for RecordStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordStream")
            .field("keep", &self.keep)
            .field("expected_count", &self.expected_count)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl<'a> RecordStream<'a> {
    /// Starts reading the records of `batch` (the whole batch, header included), decompressing
    /// at most `max_uncompressed` bytes.
    pub fn open(
        header: &BatchHeader,
        batch: &'a [u8],
        max_uncompressed: usize,
        keep: Keep,
    ) -> Result<RecordStream<'a>, LogError> {
        let body = batch.get(BATCH_HEADER_LEN..).unwrap_or_default();
        let decoder = decoder(header.compression()?, body, max_uncompressed)
            .map_err(|error| read_error(&error, max_uncompressed))?;
        Ok(RecordStream {
            input: BufReader::with_capacity(
                STREAM_BUFFER_BYTES,
                CappedReader::new(decoder, max_uncompressed),
            ),
            max_uncompressed,
            keep,
            expected_count: header.record_count,
            count: 0,
            left_in_record: 0,
            raw: Vec::new(),
        })
    }

    /// The next record, or `None` after the last one. Fails on a malformed record, a body
    /// holding another number of records than the header announces, a codec error or a body
    /// over the cap.
    pub fn next_record(&mut self) -> Result<Option<StreamedRecord>, LogError> {
        if self.at_end()? {
            if self.count != self.expected_count {
                return Err(self.count_mismatch());
            }
            return Ok(None);
        }
        if self.count >= self.expected_count {
            // Stop here rather than decompress what the header does not account for.
            return Err(LogError::corrupt(format!(
                "batch header announces {} records, body holds more",
                self.expected_count
            )));
        }
        let record = self.record()?;
        self.count += 1;
        Ok(Some(record))
    }

    /// The raw bytes (length prefix included) of the record last returned, with
    /// [`Keep::KeysAndRaw`]; empty otherwise.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    fn count_mismatch(&self) -> LogError {
        LogError::corrupt(format!(
            "batch header announces {} records, body holds {}",
            self.expected_count, self.count
        ))
    }

    /// Whether the body is exhausted. Reading to the end also makes the codec check its
    /// trailer (gzip's CRC-32, zstd's and lz4's frame ends).
    fn at_end(&mut self) -> Result<bool, LogError> {
        let max = self.max_uncompressed;
        let buffered = self
            .input
            .fill_buf()
            .map_err(|error| read_error(&error, max))?;
        Ok(buffered.is_empty())
    }

    fn record(&mut self) -> Result<StreamedRecord, LogError> {
        self.raw.clear();
        self.left_in_record = usize::MAX;
        let length = self.varint()?;
        let length = usize::try_from(length)
            .map_err(|_| LogError::corrupt(format!("negative record length {length}")))?;
        self.left_in_record = length;
        let _attributes = self.byte()?;
        let timestamp_delta = self.varlong()?;
        let offset_delta = self.varint()?;
        let keep_key = self.keep != Keep::Nothing;
        let key = self.nullable_field("key", keep_key)?;
        let has_value = self.nullable_field("value", false)?.is_some();
        let header_count = self.varint()?;
        if header_count < 0 {
            return Err(LogError::corrupt(format!(
                "negative header count {header_count}"
            )));
        }
        for _ in 0..header_count {
            self.nullable_field("header key", false)?;
            self.nullable_field("header value", false)?;
        }
        if self.left_in_record != 0 {
            return Err(LogError::corrupt("record length does not match its fields"));
        }
        Ok(StreamedRecord {
            offset_delta,
            timestamp_delta,
            key: key.flatten(),
            has_value,
        })
    }

    /// A length-prefixed field: `None` for a null one (length -1); `Some(Some(bytes))` when
    /// `keep`, `Some(None)` when it was skipped.
    fn nullable_field(
        &mut self,
        what: &str,
        keep: bool,
    ) -> Result<Option<Option<Vec<u8>>>, LogError> {
        let len = match self.varint()? {
            -1 => return Ok(None),
            n if n < -1 => return Err(LogError::corrupt(format!("negative {what} length {n}"))),
            n => n.unsigned_abs() as usize,
        };
        if keep {
            let mut bytes = Vec::new();
            self.take(len, Some(&mut bytes))?;
            Ok(Some(Some(bytes)))
        } else {
            self.take(len, None)?;
            Ok(Some(None))
        }
    }

    /// Consumes `len` bytes of the current record, copying them to `out` if given (and to the
    /// raw record if kept). Memory grows only as bytes actually arrive.
    fn take(&mut self, len: usize, mut out: Option<&mut Vec<u8>>) -> Result<(), LogError> {
        self.spend(len)?;
        let max = self.max_uncompressed;
        let mut left = len;
        while left > 0 {
            let buffered = self
                .input
                .fill_buf()
                .map_err(|error| read_error(&error, max))?;
            if buffered.is_empty() {
                return Err(LogError::corrupt("record body ends inside a record"));
            }
            let step = left.min(buffered.len());
            if let Some(out) = out.as_deref_mut() {
                out.extend_from_slice(&buffered[..step]);
            }
            if self.keep == Keep::KeysAndRaw {
                self.raw.extend_from_slice(&buffered[..step]);
            }
            self.input.consume(step);
            left -= step;
        }
        Ok(())
    }

    fn byte(&mut self) -> Result<u8, LogError> {
        self.spend(1)?;
        let max = self.max_uncompressed;
        let buffered = self
            .input
            .fill_buf()
            .map_err(|error| read_error(&error, max))?;
        let byte = *buffered
            .first()
            .ok_or_else(|| LogError::corrupt("record body ends inside a record"))?;
        self.input.consume(1);
        if self.keep == Keep::KeysAndRaw {
            self.raw.push(byte);
        }
        Ok(byte)
    }

    /// Accounts for `len` bytes of the current record.
    fn spend(&mut self, len: usize) -> Result<(), LogError> {
        self.left_in_record = self
            .left_in_record
            .checked_sub(len)
            .ok_or_else(|| LogError::corrupt("record field runs past the end of its record"))?;
        Ok(())
    }

    fn varint(&mut self) -> Result<i32, LogError> {
        let value = self.varlong()?;
        i32::try_from(value).map_err(|_| LogError::corrupt("varint does not fit 32 bits"))
    }

    /// Zig-zag LEB128, at most 10 bytes.
    fn varlong(&mut self) -> Result<i64, LogError> {
        if let Some(value) = self.buffered_varlong()? {
            return Ok(value);
        }
        // The varint straddles a refill of the buffer: byte by byte.
        let mut raw: u64 = 0;
        for index in 0..10 {
            let byte = self.byte()?;
            raw |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(unzigzag(raw));
            }
        }
        Err(LogError::corrupt("varint longer than 10 bytes"))
    }

    /// The fast path of [`Self::varlong`] (most of the parser's work is varints): a varint
    /// that lies whole in the buffer is decoded in place. `None` when it does not.
    fn buffered_varlong(&mut self) -> Result<Option<i64>, LogError> {
        let buffered = self.input.buffer();
        let Some(end) = buffered.iter().take(10).position(|byte| byte & 0x80 == 0) else {
            return Ok(None);
        };
        let len = end + 1;
        let raw = buffered[..len]
            .iter()
            .enumerate()
            .fold(0u64, |raw, (index, byte)| {
                raw | u64::from(byte & 0x7f) << (7 * index)
            });
        self.spend(len)?;
        if self.keep == Keep::KeysAndRaw {
            self.raw.extend_from_slice(&self.input.buffer()[..len]);
        }
        self.input.consume(len);
        Ok(Some(unzigzag(raw)))
    }
}

/// Zig-zag decoding: 0, 1, 2, 3, ... stand for 0, -1, 1, -2, ...
fn unzigzag(raw: u64) -> i64 {
    let magnitude = (raw >> 1) as i64;
    if raw & 1 == 0 {
        magnitude
    } else {
        !magnitude
    }
}

/// The streaming decompressor of `codec` over `body`. None of them allocates more than a small
/// fixed state up front, except zstd's window (sized by the frame header, at most 128 MiB of
/// address space that is only touched as data arrives) and a snappy block (checked against
/// what its input can produce and against `max_uncompressed` first).
fn decoder<'a>(
    codec: Compression,
    body: &'a [u8],
    max_uncompressed: usize,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match codec {
        Compression::None => Box::new(body),
        // Kafka's Java clients write one gzip member; GZIPInputStream, which Kafka reads them
        // with, accepts several, and so does this.
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(body)),
        Compression::Snappy => Box::new(SnappyReader::new(body, max_uncompressed)),
        // Kafka's lz4 is the LZ4 frame format (KafkaLZ4BlockOutputStream; magic v2 batches
        // carry a correct header checksum).
        Compression::Lz4 => Box::new(Lz4Reader::new(body)?),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(body)?),
    })
}

/// The error a [`CappedReader`] returns once its source produced more than the cap.
#[derive(Debug)]
struct OverCap;

impl std::fmt::Display for OverCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("decompressed data exceeds the cap")
    }
}

impl std::error::Error for OverCap {}

fn over_cap() -> io::Error {
    io::Error::other(OverCap)
}

/// Maps a read error of a batch body to the log's error: over the cap, or corrupt.
fn read_error(error: &io::Error, max_uncompressed: usize) -> LogError {
    let is_over_cap = error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<OverCap>().is_some());
    if is_over_cap {
        LogError::UncompressedTooLarge {
            max: max_uncompressed,
        }
    } else {
        LogError::corrupt(format!("cannot decompress the batch's records: {error}"))
    }
}

/// Passes through at most `cap` bytes of its source and fails once the source produces one
/// more (`Read::take(cap + 1)` with the excess turned into an error): a decompressor behind it
/// does at most `cap + 1` bytes of work.
struct CappedReader<R> {
    inner: Take<R>,
}

impl<R: Read> CappedReader<R> {
    fn new(inner: R, cap: usize) -> CappedReader<R> {
        let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
        CappedReader {
            inner: inner.take(limit),
        }
    }
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        if self.inner.limit() == 0 {
            return Err(over_cap());
        }
        Ok(read)
    }
}

/// Kafka's snappy, block by block: Java producers use snappy-java's xerial framing (a 16-byte
/// header, then blocks each prefixed by its big-endian u32 length); librdkafka sends one raw
/// snappy block. Each block names its decompressed size up front; a size the block cannot
/// produce, or one that would pass the cap, fails before anything is allocated.
struct SnappyReader<'a> {
    /// Compressed input not yet decompressed.
    input: &'a [u8],
    framed: bool,
    /// Decompressed bytes the cap still allows.
    allowance: usize,
    block: Vec<u8>,
    position: usize,
}

/// snappy-java's stream header: magic, version 1, minimum compatible version 1.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;
/// The most a snappy element can expand: a 3-byte copy emits 64 bytes.
const SNAPPY_MAX_EXPANSION: usize = 22;

impl<'a> SnappyReader<'a> {
    fn new(body: &'a [u8], max_uncompressed: usize) -> SnappyReader<'a> {
        let framed = body.starts_with(XERIAL_MAGIC) && body.len() >= XERIAL_HEADER_LEN;
        SnappyReader {
            input: if framed {
                &body[XERIAL_HEADER_LEN..]
            } else {
                body
            },
            framed,
            allowance: max_uncompressed,
            block: Vec::new(),
            position: 0,
        }
    }

    /// The next compressed block, or `None` at the end of the input.
    fn next_compressed_block(&mut self) -> io::Result<Option<&'a [u8]>> {
        if self.input.is_empty() {
            return Ok(None);
        }
        if !self.framed {
            return Ok(Some(std::mem::take(&mut self.input)));
        }
        let (length, rest) = self
            .input
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt_snappy("a block length is cut short"))?;
        let length = u32::from_be_bytes(*length) as usize;
        if length > rest.len() {
            return Err(corrupt_snappy("a block is cut short"));
        }
        let (block, rest) = rest.split_at(length);
        self.input = rest;
        Ok(Some(block))
    }

    /// Decompresses the next block into `self.block`; false at the end of the input.
    fn refill(&mut self) -> io::Result<bool> {
        let Some(compressed) = self.next_compressed_block()? else {
            return Ok(false);
        };
        let claimed = snap::raw::decompress_len(compressed).map_err(io::Error::other)?;
        if claimed > compressed.len().saturating_mul(SNAPPY_MAX_EXPANSION) {
            return Err(corrupt_snappy("a block claims more than it can hold"));
        }
        if claimed > self.allowance {
            return Err(over_cap());
        }
        self.allowance -= claimed;
        self.block = snap::raw::Decoder::new()
            .decompress_vec(compressed)
            .map_err(io::Error::other)?;
        self.position = 0;
        Ok(true)
    }
}

fn corrupt_snappy(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("snappy: {what}"))
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.position >= self.block.len() {
            if !self.refill()? {
                return Ok(0);
            }
        }
        let available = &self.block[self.position..];
        let step = available.len().min(buf.len());
        buf[..step].copy_from_slice(&available[..step]);
        self.position += step;
        Ok(step)
    }
}

/// The lz4 crate's frame decoder, which reports a frame cut short as a clean end of data: this
/// turns that into an error.
struct Lz4Reader<'a> {
    decoder: Option<lz4::Decoder<&'a [u8]>>,
}

impl<'a> Lz4Reader<'a> {
    fn new(body: &'a [u8]) -> io::Result<Lz4Reader<'a>> {
        Ok(Lz4Reader {
            decoder: Some(lz4::Decoder::new(body)?),
        })
    }
}

impl Read for Lz4Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(decoder) = self.decoder.as_mut() else {
            return Ok(0);
        };
        let read = decoder.read(buf)?;
        if read == 0 && !buf.is_empty() {
            if let Some(decoder) = self.decoder.take() {
                let (_, finished) = decoder.finish();
                finished.map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, "lz4 frame is cut short")
                })?;
            }
        }
        Ok(read)
    }
}

/// Compresses record bytes with `codec`, as a producer would have.
pub(crate) fn compress(codec: Compression, records: &[u8]) -> Result<Vec<u8>, LogError> {
    let mut out = Vec::with_capacity(records.len());
    let copy_in = |buf: &mut BytesMut| {
        buf.put_slice(records);
        Ok(())
    };
    let result = match codec {
        Compression::None => {
            out.extend_from_slice(records);
            return Ok(out);
        }
        Compression::Gzip => <Gzip as Compressor<Vec<u8>>>::compress(&mut out, copy_in),
        Compression::Snappy => <Snappy as Compressor<Vec<u8>>>::compress(&mut out, copy_in),
        Compression::Lz4 => <Lz4 as Compressor<Vec<u8>>>::compress(&mut out, copy_in),
        Compression::Zstd => <Zstd as Compressor<Vec<u8>>>::compress(&mut out, copy_in),
    };
    result.map_err(|error| LogError::corrupt(format!("cannot compress records: {error:#}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::batch::compute_crc;

    const CAP: usize = 1 << 20;

    fn zigzag(value: i64, out: &mut Vec<u8>) {
        let mut raw = ((value << 1) ^ (value >> 63)) as u64;
        loop {
            let byte = (raw & 0x7f) as u8;
            raw >>= 7;
            if raw == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn record(offset_delta: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> Vec<u8> {
        record_at(7, offset_delta, key, value)
    }

    fn record_at(
        timestamp_delta: i64,
        offset_delta: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut body = vec![0u8];
        zigzag(timestamp_delta, &mut body);
        zigzag(offset_delta, &mut body);
        for field in [key, value] {
            match field {
                Some(bytes) => {
                    zigzag(bytes.len() as i64, &mut body);
                    body.extend_from_slice(bytes);
                }
                None => zigzag(-1, &mut body),
            }
        }
        zigzag(1, &mut body);
        zigzag(1, &mut body);
        body.push(b'h');
        zigzag(-1, &mut body);
        let mut out = Vec::new();
        zigzag(body.len() as i64, &mut out);
        out.extend(body);
        out
    }

    fn header(codec: Compression, count: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 100,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: codec as i16,
            last_offset_delta: count - 1,
            base_timestamp: 1_000,
            max_timestamp: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count: count,
        }
    }

    /// A batch (header and body; the CRC is irrelevant here) of `codec`-compressed `records`.
    fn batch(codec: Compression, count: i32, records: &[u8]) -> (BatchHeader, Vec<u8>) {
        let mut bytes = vec![0u8; BATCH_HEADER_LEN];
        bytes.extend(compress(codec, records).expect("compress"));
        let mut header = header(codec, count);
        header.crc = compute_crc(&bytes);
        (header, bytes)
    }

    fn collect(
        header: &BatchHeader,
        bytes: &[u8],
        cap: usize,
        keep: Keep,
    ) -> Result<Vec<(StreamedRecord, Vec<u8>)>, LogError> {
        let mut stream = RecordStream::open(header, bytes, cap, keep)?;
        let mut out = Vec::new();
        while let Some(record) = stream.next_record()? {
            out.push((record, stream.raw().to_vec()));
        }
        Ok(out)
    }

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn streams_records_with_keys_and_raw_bytes_in_every_codec() {
        let first = record(0, Some(b"k"), Some(b"value"));
        let second = record(1, None, None);
        let body = [first.clone(), second.clone()].concat();
        for codec in CODECS {
            let (header, bytes) = batch(codec, 2, &body);
            let records = collect(&header, &bytes, CAP, Keep::KeysAndRaw).expect("well formed");
            assert_eq!(records.len(), 2, "{codec:?}");
            let (one, raw_one) = &records[0];
            assert_eq!(raw_one, &first);
            assert_eq!(one.key.as_deref(), Some(&b"k"[..]));
            assert!(one.has_value);
            assert_eq!(one.timestamp_delta, 7);
            assert_eq!(one.timestamp(&header), 1_007);
            let (two, raw_two) = &records[1];
            assert_eq!(raw_two, &second);
            assert_eq!(two.offset(&header), 101);
            assert_eq!(two.key, None);
            assert!(!two.has_value);
            validate_records(&header, &bytes, CAP).expect("valid");
        }
    }

    #[test]
    fn varints_split_across_buffer_refills_are_read() {
        // A first record that ends at every position around the end of the stream buffer, so
        // that the second record's 10-byte timestamp delta straddles a refill at some point.
        for pad in 0..24 {
            let first = record(0, None, Some(&vec![b'p'; STREAM_BUFFER_BYTES - 30 + pad]));
            let second = record_at(i64::MIN, 1, Some(b"key"), Some(b"value"));
            let body = [first, second.clone()].concat();
            let (header, bytes) = batch(Compression::None, 2, &body);
            let records = collect(&header, &bytes, CAP, Keep::KeysAndRaw).expect("parses");
            assert_eq!(records[1].1, second, "pad {pad}");
            assert_eq!(records[1].0.timestamp_delta, i64::MIN, "pad {pad}");
            assert_eq!(records[1].0.key.as_deref(), Some(&b"key"[..]));
        }
    }

    #[test]
    fn keeps_nothing_unless_asked() {
        let body = record(0, Some(b"key"), Some(b"value"));
        let (header, bytes) = batch(Compression::Lz4, 1, &body);
        let records = collect(&header, &bytes, CAP, Keep::Nothing).expect("well formed");
        assert_eq!(records[0].0.key, None);
        assert!(records[0].1.is_empty());
    }

    #[test]
    fn rejects_truncated_and_miscounted_records() {
        let body = record(0, Some(b"key"), Some(b"value"));
        let (header, bytes) = batch(Compression::None, 2, &body);
        assert!(collect(&header, &bytes, CAP, Keep::Nothing).is_err());
        for cut in 0..body.len() {
            let (header, bytes) = batch(Compression::None, 1, &body[..cut]);
            assert!(
                collect(&header, &bytes, CAP, Keep::Nothing).is_err(),
                "cut at {cut}"
            );
        }
        let two = [body.clone(), record(1, None, Some(b"v"))].concat();
        let (header, bytes) = batch(Compression::Gzip, 1, &two);
        assert!(matches!(
            collect(&header, &bytes, CAP, Keep::Nothing),
            Err(LogError::CorruptMessage(_))
        ));
        let (header, bytes) = batch(Compression::None, 1, &[0xff; 11]);
        assert!(collect(&header, &bytes, CAP, Keep::Nothing).is_err());
    }

    #[test]
    fn validation_checks_offset_deltas_of_every_batch() {
        let body = [record(0, None, Some(b"a")), record(5, None, Some(b"b"))].concat();
        for codec in [Compression::Zstd, Compression::None] {
            let (header, bytes) = batch(codec, 2, &body);
            assert!(
                matches!(
                    validate_records(&header, &bytes, CAP),
                    Err(LogError::InvalidRecord(_))
                ),
                "{codec:?}"
            );
        }
        let (header, garbage) = batch(Compression::None, 2, &[0xff; 40]);
        assert!(matches!(
            validate_records(&header, &garbage, CAP),
            Err(LogError::CorruptMessage(_))
        ));
    }

    #[test]
    fn corrupt_compressed_bodies_are_corrupt_messages() {
        let body = record(0, Some(b"key"), Some(&[b'v'; 1000]));
        for codec in CODECS.into_iter().skip(1) {
            let (header, bytes) = batch(codec, 1, &body);
            for cut in [BATCH_HEADER_LEN + 1, bytes.len() / 2, bytes.len() - 1] {
                let result = validate_records(&header, &bytes[..cut], CAP);
                assert!(
                    matches!(result, Err(LogError::CorruptMessage(_))),
                    "{codec:?} cut at {cut}: {result:?}"
                );
            }
        }
    }

    #[test]
    fn the_cap_stops_decompression_in_every_codec() {
        // One record whose value is 4 MiB of zeros, against a 1 MiB cap.
        let value = vec![0u8; 4 << 20];
        let body = record(0, None, Some(&value));
        for codec in CODECS {
            let (header, bytes) = batch(codec, 1, &body);
            let result = validate_records(&header, &bytes, CAP);
            if codec == Compression::None {
                assert!(
                    result.is_ok(),
                    "an uncompressed batch is bounded by its own size"
                );
                continue;
            }
            assert!(
                matches!(result, Err(LogError::UncompressedTooLarge { max: CAP })),
                "{codec:?}: {result:?}"
            );
            let reading = collect(&header, &bytes, CAP, Keep::KeysAndRaw);
            assert!(matches!(
                reading,
                Err(LogError::UncompressedTooLarge { .. })
            ));
            collect(&header, &bytes, 5 << 20, Keep::KeysAndRaw).expect("under a larger cap");
        }
    }

    #[test]
    fn the_cap_counts_exactly() {
        let body = record(0, None, Some(b"exactly"));
        let (header, bytes) = batch(Compression::Gzip, 1, &body);
        validate_records(&header, &bytes, body.len()).expect("at the cap");
        assert!(matches!(
            validate_records(&header, &bytes, body.len() - 1),
            Err(LogError::UncompressedTooLarge { .. })
        ));
    }

    #[test]
    fn snappy_reads_raw_blocks_and_refuses_impossible_claims() {
        let body = record(0, Some(b"k"), Some(b"raw snappy as librdkafka sends it"));
        let mut bytes = vec![0u8; BATCH_HEADER_LEN];
        bytes.extend(
            snap::raw::Encoder::new()
                .compress_vec(&body)
                .expect("compress"),
        );
        let header = header(Compression::Snappy, 1);
        validate_records(&header, &bytes, CAP).expect("raw snappy");

        // A 5-byte block claiming 100 MB: refused before anything is allocated.
        let mut claim = vec![0u8; BATCH_HEADER_LEN];
        claim.extend([0x80, 0xc2, 0xd7, 0x2f, 0x00]);
        assert!(matches!(
            validate_records(&header, &claim, usize::MAX),
            Err(LogError::CorruptMessage(_))
        ));
    }

    #[test]
    fn gzip_with_several_members_is_read_whole() {
        let first = record(0, None, Some(b"one"));
        let second = record(1, None, Some(b"two"));
        let mut bytes = vec![0u8; BATCH_HEADER_LEN];
        for part in [&first, &second] {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(part).expect("compress");
            bytes.extend(encoder.finish().expect("compress"));
        }
        let header = header(Compression::Gzip, 2);
        validate_records(&header, &bytes, CAP).expect("two members");
    }

    #[test]
    fn compression_round_trips() {
        let body = record(0, Some(b"words"), Some(&b"the same words ".repeat(50)));
        for codec in CODECS {
            let (header, bytes) = batch(codec, 1, &body);
            let records = collect(&header, &bytes, CAP, Keep::KeysAndRaw).expect("decompress");
            assert_eq!(records[0].1, body, "{codec:?}");
        }
    }
}
