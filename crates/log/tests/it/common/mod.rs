//! Helpers shared by the integration tests: building record batches the way producers do
//! (with kafka-protocol's encoder) and reading them back.
#![allow(dead_code)]

use std::path::Path;

use bytes::Bytes;
use freshet_log::{AppendOutcome, LogConfig, PartitionLog};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

pub const ALL_COMPRESSIONS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// One record to encode: key, value, timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rec {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: i64,
}

impl Rec {
    pub fn new(key: Option<&str>, value: Option<&str>, timestamp: i64) -> Rec {
        Rec {
            key: key.map(|k| k.as_bytes().to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
            timestamp,
        }
    }
}

/// Idempotent producer fields of a batch.
#[derive(Clone, Copy, Debug)]
pub struct Producer {
    pub id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
}

/// Encodes one v2 batch, as a producer would send it.
pub fn encode(records: &[Rec], compression: Compression, producer: Option<Producer>) -> Vec<u8> {
    encode_batch(records, compression, producer, false)
}

/// A batch of a transactional producer: records `(key, value)` at timestamp 1,000.
pub fn transactional_batch(producer: Producer, records: &[(&str, &str)]) -> Vec<u8> {
    let records: Vec<Rec> = records
        .iter()
        .map(|(key, value)| Rec::new(Some(key), Some(value), 1_000))
        .collect();
    encode_batch(&records, Compression::None, Some(producer), true)
}

fn encode_batch(
    records: &[Rec],
    compression: Compression,
    producer: Option<Producer>,
    transactional: bool,
) -> Vec<u8> {
    let (producer_id, producer_epoch, base_sequence) =
        producer.map_or((-1, -1, -1), |p| (p.id, p.epoch, p.base_sequence));
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, rec)| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch while offset - sequence stays constant.
            sequence: base_sequence.wrapping_add(i as i32),
            timestamp: rec.timestamp,
            key: rec.key.clone().map(Bytes::from),
            value: rec.value.clone().map(Bytes::from),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encode batch");
    buf.to_vec()
}

/// A batch of `count` records with values `"{tag}-{i}"`, all at `timestamp`.
pub fn values_batch(tag: &str, count: usize, timestamp: i64, compression: Compression) -> Vec<u8> {
    let records: Vec<Rec> = (0..count)
        .map(|i| Rec::new(None, Some(&format!("{tag}-{i}")), timestamp))
        .collect();
    encode(&records, compression, None)
}

/// A batch of an idempotent producer with `count` records.
pub fn producer_batch(id: i64, epoch: i16, base_sequence: i32, count: usize) -> Vec<u8> {
    let records: Vec<Rec> = (0..count)
        .map(|i| {
            Rec::new(
                None,
                Some(&format!("p{id}-{}", base_sequence as usize + i)),
                1_000,
            )
        })
        .collect();
    encode(
        &records,
        Compression::None,
        Some(Producer {
            id,
            epoch,
            base_sequence,
        }),
    )
}

/// A decoded record: offset, timestamp, key, value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// Decodes every record of fetched bytes.
pub fn decode(bytes: &Bytes) -> Vec<Decoded> {
    let mut buf = bytes.clone();
    RecordBatchDecoder::decode_all(&mut buf)
        .expect("fetched bytes decode")
        .into_iter()
        .flat_map(|set| set.records)
        .map(|r| Decoded {
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key.map(|k| k.to_vec()),
            value: r.value.map(|v| v.to_vec()),
        })
        .collect()
}

/// Appends and waits until durable.
pub fn append_durable(log: &PartitionLog, batch: &[u8]) -> AppendOutcome {
    let outcome = log.append(batch).expect("append");
    log.wait_durable(outcome.last_offset + 1).expect("durable");
    outcome
}

/// Every record from the log start to the high watermark, read in small steps.
pub fn read_all(log: &PartitionLog) -> Vec<Decoded> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.high_watermark() {
        let read = log.read(offset, 4096, true).expect("read");
        let records = decode(&read.records);
        let next: Vec<Decoded> = records.into_iter().filter(|r| r.offset >= offset).collect();
        match next.last() {
            Some(last) => offset = last.offset + 1,
            None => break,
        }
        out.extend(next);
    }
    out
}

pub fn small_segments(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

pub fn open(dir: &Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(dir, config).expect("open log")
}

/// The active (last) segment's `.log` file.
pub fn active_log_file(log: &PartitionLog) -> std::path::PathBuf {
    log.segments().last().expect("a segment").path.clone()
}
