//! What a topic's configs do to a validated record set on its way into the log, as Kafka's
//! LogValidator does:
//!
//! - `message.timestamp.type=CreateTime`: every record's producer timestamp must lie within
//!   `[now - message.timestamp.before.max.ms, now + message.timestamp.after.max.ms]`, or the
//!   whole set is refused with `INVALID_TIMESTAMP` (records without a timestamp, -1, pass).
//! - `message.timestamp.type=LogAppendTime`: each batch gets the timestamp-type attribute bit
//!   and `now` as its max timestamp (consumers read that as every record's timestamp), and a
//!   new CRC. The producer's own timestamps stay in the records but are not used.
//! - `compression.type` other than `producer`: a batch whose codec differs is rebuilt with
//!   the topic's codec and level; header fields (producer id, epoch, base sequence, offsets
//!   and timestamps) are kept, so idempotence and ordering are unaffected. The rebuilt batch
//!   must still fit `max.message.bytes`.
//!
//! Batches needing none of this are stored byte for byte, as before.

use std::io::Write;

use kafka_protocol::records::Compression;

use crate::batch::{
    compute_crc, BatchHeader, ValidBatch, BATCH_HEADER_LEN, COMPRESSION_MASK, LOG_APPEND_TIME_FLAG,
    LOG_OVERHEAD,
};
use crate::config::{LogConfig, StoredCompression, TimestampType};
use crate::error::LogError;
use crate::records::{self, Keep, RecordStream};

/// A record set ready for offsets: its bytes and its batches (headers and ranges in `bytes`).
#[derive(Debug)]
pub(crate) struct Prepared {
    pub bytes: Vec<u8>,
    pub batches: Vec<ValidBatch>,
}

/// Applies the topic's timestamp and compression rules (module docs) at broker time `now`.
pub(crate) fn prepare(
    records: &[u8],
    batches: Vec<ValidBatch>,
    config: &LogConfig,
    now: i64,
) -> Result<Prepared, LogError> {
    let append_time = match config.timestamp_type {
        TimestampType::CreateTime => {
            for batch in &batches {
                check_timestamp_window(batch, config, now)?;
            }
            None
        }
        TimestampType::LogAppendTime => Some(now),
    };
    let target = target_codec(config.compression);
    let untouched = append_time.is_none()
        && batches
            .iter()
            .all(|batch| !needs_recompression(&batch.header, target));
    if untouched {
        return Ok(Prepared {
            bytes: records.to_vec(),
            batches,
        });
    }
    let mut bytes = Vec::with_capacity(records.len());
    let mut rebuilt = Vec::with_capacity(batches.len());
    for valid in batches {
        let original = &records[valid.range.clone()];
        let (mut header, mut batch) = match target {
            Some(codec) if needs_recompression(&valid.header, target) => {
                recompress(&valid.header, original, codec, config)?
            }
            _ => (valid.header, original.to_vec()),
        };
        if let Some(now) = append_time {
            header = stamp_log_append_time(header, &mut batch, now);
        }
        let start = bytes.len();
        bytes.extend_from_slice(&batch);
        rebuilt.push(ValidBatch {
            header,
            range: start..bytes.len(),
            times: valid.times,
        });
    }
    Ok(Prepared {
        bytes,
        batches: rebuilt,
    })
}

/// Refuses a batch holding a record timestamp outside the window around `now`.
fn check_timestamp_window(
    batch: &ValidBatch,
    config: &LogConfig,
    now: i64,
) -> Result<(), LogError> {
    let earliest = now.saturating_sub(config.timestamp_before_max_ms);
    let latest = now.saturating_add(config.timestamp_after_max_ms);
    let times = batch.times;
    let outside = if times.min < earliest {
        Some(times.min)
    } else if times.max > latest {
        Some(times.max)
    } else {
        None
    };
    match outside {
        Some(timestamp) => Err(LogError::InvalidTimestamp(format!(
            "timestamp {timestamp} of a record in the batch with sequence {} is out of range: \
             message.timestamp.before.max.ms and message.timestamp.after.max.ms allow \
             [{earliest}, {latest}] at broker time {now}",
            batch.header.base_sequence
        ))),
        None => Ok(()),
    }
}

/// The codec and level batches must be stored with, or `None` to keep the producer's.
fn target_codec(compression: StoredCompression) -> Option<(Compression, i32)> {
    match compression {
        StoredCompression::Producer => None,
        StoredCompression::Uncompressed => Some((Compression::None, 0)),
        StoredCompression::Gzip(level) => Some((Compression::Gzip, level)),
        StoredCompression::Snappy => Some((Compression::Snappy, 0)),
        StoredCompression::Lz4(level) => Some((Compression::Lz4, level)),
        StoredCompression::Zstd(level) => Some((Compression::Zstd, level)),
    }
}

/// Kafka compares codecs only: a gzip batch is kept under `compression.type=gzip` whatever
/// level the producer used.
fn needs_recompression(header: &BatchHeader, target: Option<(Compression, i32)>) -> bool {
    match (target, header.compression()) {
        (Some((codec, _)), Ok(current)) => codec != current,
        _ => false,
    }
}

/// The batch rebuilt around its records compressed with `codec` at `level`.
fn recompress(
    header: &BatchHeader,
    batch: &[u8],
    (codec, level): (Compression, i32),
    config: &LogConfig,
) -> Result<(BatchHeader, Vec<u8>), LogError> {
    let records = uncompressed_records(header, batch, config.max_uncompressed_batch_bytes)?;
    let body = compress_at_level(codec, level, &records)?;
    let batch_length = i32::try_from(BATCH_HEADER_LEN - LOG_OVERHEAD + body.len())
        .map_err(|_| LogError::invalid("a recompressed batch does not fit a batch length"))?;
    let size = LOG_OVERHEAD + batch_length.unsigned_abs() as usize;
    if size > config.max_message_bytes {
        return Err(LogError::MessageTooLarge {
            size,
            max: config.max_message_bytes,
        });
    }
    let rebuilt = BatchHeader {
        attributes: (header.attributes & !COMPRESSION_MASK) | codec_id(codec),
        batch_length,
        ..*header
    };
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&rebuilt.to_bytes());
    bytes.extend_from_slice(&body);
    Ok((with_crc(rebuilt, &mut bytes), bytes))
}

/// The batch's records back to back, uncompressed, each with its length prefix.
fn uncompressed_records(
    header: &BatchHeader,
    batch: &[u8],
    max_uncompressed: usize,
) -> Result<Vec<u8>, LogError> {
    if header.compression()? == Compression::None {
        return Ok(batch.get(BATCH_HEADER_LEN..).unwrap_or_default().to_vec());
    }
    let mut stream = RecordStream::open(header, batch, max_uncompressed, Keep::KeysAndRaw)?;
    let mut records = Vec::new();
    while stream.next_record()?.is_some() {
        records.extend_from_slice(stream.raw());
    }
    Ok(records)
}

/// Kafka's attribute code of a codec.
fn codec_id(codec: Compression) -> i16 {
    match codec {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    }
}

/// Compresses record bytes as a producer configured with that codec and level would. Snappy
/// has no levels; the others honour `compression.<codec>.level`.
fn compress_at_level(codec: Compression, level: i32, records: &[u8]) -> Result<Vec<u8>, LogError> {
    let failed = |error: std::io::Error| {
        LogError::invalid(format!(
            "cannot recompress the batch with {codec:?}: {error}"
        ))
    };
    match codec {
        Compression::Gzip => {
            // zlib's -1 means its default level, 6.
            let level = u32::try_from(level).unwrap_or(6);
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(records.len() / 2),
                flate2::Compression::new(level),
            );
            encoder.write_all(records).map_err(failed)?;
            encoder.finish().map_err(failed)
        }
        Compression::Lz4 => {
            // Kafka's lz4 batches are LZ4 frames of independent blocks.
            let mut encoder = lz4::EncoderBuilder::new()
                .level(level.unsigned_abs())
                .block_mode(lz4::BlockMode::Independent)
                .build(Vec::with_capacity(records.len() / 2))
                .map_err(failed)?;
            encoder.write_all(records).map_err(failed)?;
            let (out, finished) = encoder.finish();
            finished.map_err(failed)?;
            Ok(out)
        }
        Compression::Zstd => zstd::stream::encode_all(records, level).map_err(failed),
        Compression::None | Compression::Snappy => records::compress(codec, records),
    }
}

/// Marks the batch as LogAppendTime with `now` as its max timestamp, as Kafka's
/// `setMaxTimestamp(LOG_APPEND_TIME, now)` does: attributes and max timestamp change, so the
/// CRC is recomputed; the base timestamp and the records are left alone.
fn stamp_log_append_time(header: BatchHeader, batch: &mut [u8], now: i64) -> BatchHeader {
    let stamped = BatchHeader {
        attributes: header.attributes | LOG_APPEND_TIME_FLAG,
        max_timestamp: now,
        ..header
    };
    batch[..BATCH_HEADER_LEN].copy_from_slice(&stamped.to_bytes());
    with_crc(stamped, batch)
}

/// Writes the CRC of `batch` (whose header is `header`) into both.
fn with_crc(header: BatchHeader, batch: &mut [u8]) -> BatchHeader {
    let stamped = BatchHeader {
        crc: compute_crc(batch),
        ..header
    };
    batch[..BATCH_HEADER_LEN].copy_from_slice(&stamped.to_bytes());
    stamped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::validate_record_set;

    /// A batch of `values` with no keys, producer timestamps `base + i`, gzip'd or not.
    fn batch(values: &[&str], base: i64, gzip: bool) -> Vec<u8> {
        let mut records = Vec::new();
        for (i, value) in values.iter().enumerate() {
            let mut body = vec![0u8]; // attributes
            zigzag(i as i64, &mut body); // timestamp delta
            zigzag(i as i64, &mut body); // offset delta
            zigzag(-1, &mut body); // null key
            zigzag(value.len() as i64, &mut body);
            body.extend_from_slice(value.as_bytes());
            zigzag(0, &mut body); // no headers
            zigzag(body.len() as i64, &mut records);
            records.extend(body);
        }
        let body = if gzip {
            compress_at_level(Compression::Gzip, 6, &records).expect("gzip")
        } else {
            records
        };
        let count = values.len() as i32;
        let header = BatchHeader {
            base_offset: 0,
            batch_length: (BATCH_HEADER_LEN - LOG_OVERHEAD + body.len()) as i32,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: i16::from(gzip),
            last_offset_delta: count - 1,
            base_timestamp: base,
            max_timestamp: base + i64::from(count) - 1,
            producer_id: 7,
            producer_epoch: 1,
            base_sequence: 3,
            record_count: count,
        };
        let mut bytes = header.to_bytes().to_vec();
        bytes.extend(body);
        with_crc(header, &mut bytes);
        bytes
    }

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

    fn prepared(records: &[u8], config: &LogConfig, now: i64) -> Result<Prepared, LogError> {
        let batches = validate_record_set(records, config.max_message_bytes, 1 << 20)?;
        prepare(records, batches, config, now)
    }

    #[test]
    fn create_time_batches_inside_the_window_are_kept_byte_for_byte() {
        let records = batch(&["a", "b"], 1_000, false);
        let out = prepared(&records, &LogConfig::default(), 2_000).expect("accepted");
        assert_eq!(out.bytes, records);
    }

    #[test]
    fn timestamps_outside_the_window_are_refused() {
        let config = LogConfig {
            timestamp_before_max_ms: 500,
            timestamp_after_max_ms: 100,
            ..LogConfig::default()
        };
        let now = 10_000;
        for base in [9_000, 10_200] {
            let records = batch(&["a", "b"], base, true);
            let refused = prepared(&records, &config, now).expect_err("outside");
            assert_eq!(refused.error_code(), 32, "{refused}");
        }
        let records = batch(&["a", "b"], 9_500, true);
        prepared(&records, &config, now).expect("on the lower edge");
    }

    #[test]
    fn log_append_time_stamps_attributes_max_timestamp_and_crc() {
        let config = LogConfig {
            timestamp_type: TimestampType::LogAppendTime,
            ..LogConfig::default()
        };
        // Far outside any window: LogAppendTime does not check producer timestamps.
        let records = batch(&["a", "b", "c"], 5, false);
        let out = prepared(&records, &config, 77_000).expect("accepted");
        let header = BatchHeader::parse(&out.bytes).expect("header");
        assert!(header.has_log_append_time());
        assert_eq!(header.max_timestamp, 77_000);
        assert_eq!(header.base_timestamp, 5);
        assert_eq!(header, out.batches[0].header);
        crate::batch::verify_crc(&header, &out.bytes).expect("valid CRC");
    }

    #[test]
    fn batches_are_recompressed_to_the_topic_codec_with_their_records_and_producer_fields() {
        let original = batch(&["one", "two", "three"], 1_000, true);
        for compression in [
            StoredCompression::Uncompressed,
            StoredCompression::Snappy,
            StoredCompression::Lz4(9),
            StoredCompression::Zstd(3),
            StoredCompression::Gzip(1),
        ] {
            let config = LogConfig {
                compression,
                ..LogConfig::default()
            };
            let out = prepared(&original, &config, 2_000).expect("recompressed");
            let header = BatchHeader::parse(&out.bytes).expect("header");
            crate::batch::verify_crc(&header, &out.bytes).expect("valid CRC");
            let expected_codec = target_codec(compression).map(|(codec, _)| codec);
            let gzip_kept = compression == StoredCompression::Gzip(1);
            if gzip_kept {
                assert_eq!(out.bytes, original, "same codec: kept as sent");
            } else {
                assert_eq!(Some(header.compression().expect("codec")), expected_codec);
            }
            let source = BatchHeader::parse(&original).expect("header");
            assert_eq!(
                (
                    header.producer_id,
                    header.base_sequence,
                    header.record_count
                ),
                (
                    source.producer_id,
                    source.base_sequence,
                    source.record_count
                )
            );
            let records = uncompressed_records(&header, &out.bytes, 1 << 20).expect("readable");
            let source_records =
                uncompressed_records(&source, &original, 1 << 20).expect("readable");
            assert_eq!(records, source_records, "{compression:?}");
        }
    }

    #[test]
    fn a_recompressed_batch_must_still_fit_max_message_bytes() {
        let values: Vec<String> = (0..50).map(|i| format!("{i:0>40}")).collect();
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let compressed = batch(&values, 1_000, true);
        let config = LogConfig {
            compression: StoredCompression::Uncompressed,
            max_message_bytes: compressed.len() + 10,
            ..LogConfig::default()
        };
        let refused = prepared(&compressed, &config, 2_000).expect_err("too large");
        assert!(
            matches!(refused, LogError::MessageTooLarge { .. }),
            "{refused}"
        );
    }
}
