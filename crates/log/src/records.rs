//! The records inside a batch: decompression, a borrowing parser that keeps each record's raw
//! bytes (so compaction can copy kept records verbatim), and recompression.
//!
//! A v2 record is: length varint · attributes i8 · timestampDelta varlong · offsetDelta varint ·
//! keyLength varint · key · valueLength varint · value · headerCount varint · headers. Varints
//! are zig-zag encoded like protobuf's `sint32`/`sint64`.

use std::ops::Range;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};
use kafka_protocol::records::Compression;

use crate::batch::{BatchHeader, BATCH_HEADER_LEN};
use crate::error::LogError;

/// One record of a batch, borrowing from the decompressed record bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RawRecord<'a> {
    /// The whole record, length prefix included: what compaction copies when it keeps it.
    pub raw: &'a [u8],
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    /// A record without a value is a tombstone.
    pub has_value: bool,
}

impl RawRecord<'_> {
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

/// Returns the uncompressed record bytes of a whole batch.
pub(crate) fn decompressed_records(header: &BatchHeader, batch: &[u8]) -> Result<Bytes, LogError> {
    let body = batch.get(BATCH_HEADER_LEN..).unwrap_or_default();
    let mut input = Bytes::copy_from_slice(body);
    let take_all = |buf: &mut Bytes| Ok(buf.copy_to_bytes(buf.remaining()));
    let result = match header.compression()? {
        Compression::None => return Ok(input),
        Compression::Gzip => <Gzip as Decompressor<Bytes>>::decompress(&mut input, take_all),
        Compression::Snappy => <Snappy as Decompressor<Bytes>>::decompress(&mut input, take_all),
        Compression::Lz4 => <Lz4 as Decompressor<Bytes>>::decompress(&mut input, take_all),
        Compression::Zstd => <Zstd as Decompressor<Bytes>>::decompress(&mut input, take_all),
    };
    result.map_err(|error| {
        LogError::corrupt(format!(
            "cannot decompress batch at offset {}: {error:#}",
            header.base_offset
        ))
    })
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

/// Splits uncompressed record bytes into records. Fails on any malformed record, or when the
/// bytes hold a different number of records than `expected_count`.
pub(crate) fn parse_records(
    bytes: &[u8],
    expected_count: i32,
) -> Result<Vec<RawRecord<'_>>, LogError> {
    let mut records = Vec::new();
    let mut cursor = Cursor { bytes, position: 0 };
    while cursor.position < bytes.len() {
        records.push(cursor.record()?);
    }
    if i64::try_from(records.len()).ok() != Some(i64::from(expected_count)) {
        return Err(LogError::corrupt(format!(
            "batch header announces {expected_count} records, body holds {}",
            records.len()
        )));
    }
    Ok(records)
}

/// A reading position in record bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    fn record(&mut self) -> Result<RawRecord<'a>, LogError> {
        let start = self.position;
        let length = self.length("record")?.unwrap_or(0);
        let end = start_plus(self.position, length, self.bytes.len())?;
        let mut body = Cursor {
            bytes: &self.bytes[..end],
            position: self.position,
        };
        let _attributes = body.take(1)?;
        let timestamp_delta = body.varlong()?;
        let offset_delta = body.varint()?;
        let key = body.nullable_bytes("key")?;
        let value = body.nullable_bytes("value")?;
        let header_count = body.varint()?;
        for _ in 0..header_count.max(0) {
            body.nullable_bytes("header key")?;
            body.nullable_bytes("header value")?;
        }
        if body.position != end {
            return Err(LogError::corrupt("record length does not match its fields"));
        }
        self.position = end;
        Ok(RawRecord {
            raw: &self.bytes[start..end],
            offset_delta,
            timestamp_delta,
            key,
            has_value: value.is_some(),
        })
    }

    /// A varint length: `None` for -1 (null), an error for anything else below 0.
    fn length(&mut self, what: &str) -> Result<Option<usize>, LogError> {
        match self.varint()? {
            -1 => Ok(None),
            n if n < -1 => Err(LogError::corrupt(format!("negative {what} length {n}"))),
            n => Ok(Some(n.unsigned_abs() as usize)),
        }
    }

    fn nullable_bytes(&mut self, what: &str) -> Result<Option<&'a [u8]>, LogError> {
        match self.length(what)? {
            None => Ok(None),
            Some(len) => Ok(Some(self.take(len)?)),
        }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], LogError> {
        let range: Range<usize> = self.position..start_plus(self.position, len, self.bytes.len())?;
        self.position = range.end;
        Ok(&self.bytes[range])
    }

    fn varint(&mut self) -> Result<i32, LogError> {
        let value = self.varlong()?;
        i32::try_from(value).map_err(|_| LogError::corrupt("varint does not fit 32 bits"))
    }

    /// Zig-zag LEB128, at most 10 bytes.
    fn varlong(&mut self) -> Result<i64, LogError> {
        let mut raw: u64 = 0;
        for index in 0..10 {
            let byte = *self
                .bytes
                .get(self.position)
                .ok_or_else(|| LogError::corrupt("record ends inside a varint"))?;
            self.position += 1;
            raw |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                let magnitude = (raw >> 1) as i64;
                return Ok(if raw & 1 == 0 { magnitude } else { !magnitude });
            }
        }
        Err(LogError::corrupt("varint longer than 10 bytes"))
    }
}

/// `start + len`, checked to stay within `limit`.
fn start_plus(start: usize, len: usize, limit: usize) -> Result<usize, LogError> {
    start
        .checked_add(len)
        .filter(|end| *end <= limit)
        .ok_or_else(|| LogError::corrupt("record field runs past the end of its batch"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut body = vec![0u8];
        zigzag(7, &mut body);
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

    #[test]
    fn parses_records_with_raw_bytes() {
        let first = record(0, Some(b"k"), Some(b"value"));
        let second = record(1, None, None);
        let mut bytes = first.clone();
        bytes.extend(&second);
        let records = parse_records(&bytes, 2).expect("well formed");
        assert_eq!(records[0].raw, first.as_slice());
        assert_eq!(records[0].key, Some(&b"k"[..]));
        assert!(records[0].has_value);
        assert_eq!(records[0].timestamp_delta, 7);
        assert_eq!(records[1].offset_delta, 1);
        assert_eq!(records[1].key, None);
        assert!(!records[1].has_value);
    }

    #[test]
    fn rejects_truncated_and_miscounted_records() {
        let bytes = record(0, Some(b"key"), Some(b"value"));
        assert!(parse_records(&bytes, 2).is_err());
        for cut in 0..bytes.len() {
            assert!(parse_records(&bytes[..cut], 1).is_err(), "cut at {cut}");
        }
        assert!(parse_records(&[0xff; 11], 1).is_err());
    }

    #[test]
    fn compression_round_trips() {
        let data = b"the same words, the same words, the same words".repeat(20);
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let compressed = compress(codec, &data).expect("compress");
            let header = BatchHeader {
                base_offset: 0,
                batch_length: 0,
                partition_leader_epoch: 0,
                magic: 2,
                crc: 0,
                attributes: codec as i16,
                last_offset_delta: 0,
                base_timestamp: 0,
                max_timestamp: 0,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
                record_count: 1,
            };
            let mut batch = vec![0u8; BATCH_HEADER_LEN];
            batch.extend(compressed);
            let back = decompressed_records(&header, &batch).expect("decompress");
            assert_eq!(back.as_ref(), data.as_slice(), "{codec:?}");
        }
    }
}
