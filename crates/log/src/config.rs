//! Per-partition log settings, named and defaulted like Kafka's topic configs.

use std::time::Duration;

/// Kafka's `max.message.bytes` default: 1 MiB plus the 12-byte log overhead.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

/// Default of [`LogConfig::max_uncompressed_batch_bytes`]: 64 MiB.
pub const DEFAULT_MAX_UNCOMPRESSED_BATCH_BYTES: usize = 64 << 20;

/// Kafka's `message.timestamp.after.max.ms` default since 4.0 (KIP-1030): one hour.
pub const DEFAULT_TIMESTAMP_AFTER_MAX_MS: i64 = 60 * 60 * 1000;

/// Kafka's `min.cleanable.dirty.ratio` default.
pub const DEFAULT_MIN_CLEANABLE_DIRTY_RATIO: f64 = 0.5;

const ONE_GIB: u64 = 1 << 30;
const SEVEN_DAYS_MS: i64 = 7 * 24 * 60 * 60 * 1000;
const ONE_DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Settings of one partition log. [`PartitionLog::set_config`](crate::PartitionLog::set_config)
/// applies a new value from the next operation on.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll to a new segment before the active one would grow past this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment's first append is at least this old.
    pub segment_ms: i64,
    /// `retention.ms`: delete closed segments whose largest timestamp is older; -1 = forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest closed segments while the log is larger; -1 = no limit.
    pub retention_bytes: i64,
    /// `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long compaction keeps tombstones (records with a null value).
    pub delete_retention_ms: i64,
    /// `max.message.bytes`: the largest record batch (including its 12-byte log overhead) accepted.
    pub max_message_bytes: usize,
    /// The most bytes the records of one compressed batch may decompress to (a Freshet setting,
    /// default 64 MiB). Every place that opens a batch (produce validation, compaction,
    /// ListOffsets by timestamp) stops decompressing there, so a decompression bomb costs at
    /// most this much work; produce refuses such a batch with `MESSAGE_TOO_LARGE`
    /// ([`LogError::UncompressedTooLarge`](crate::LogError::UncompressedTooLarge)).
    ///
    /// Kafka has no equivalent: it bounds only the compressed size (`max.message.bytes`) and
    /// streams records without a limit on their total. The default leaves room for a 64:1
    /// compression ratio on a full default-size (1 MiB) batch; real producers build batches
    /// of at most `batch.size` (librdkafka: 1 MB before compression; Java: 16 KiB after
    /// estimated compression) and text rarely compresses better than 10:1.
    pub max_uncompressed_batch_bytes: usize,
    /// `index.interval.bytes`: bytes of batches between two entries of the sparse indexes.
    pub index_interval_bytes: u32,
    /// When appended data is fsynced, and therefore when it becomes visible to readers.
    pub durability: Durability,
    /// `message.timestamp.type`: whether stored record timestamps are the producer's or the
    /// broker's clock at append.
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: how far a CreateTime record timestamp may lie
    /// before the broker's clock at append.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far a CreateTime record timestamp may lie after
    /// the broker's clock at append.
    pub timestamp_after_max_ms: i64,
    /// `compression.type` and the level of its codec: the codec batches are stored with.
    pub compression: StoredCompression,
    /// `min.compaction.lag.ms`: compaction leaves segments holding records younger than this.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a compacted log's active segment rolls at this age, and a
    /// log whose oldest uncompacted batch is older is compacted whatever its dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: compaction runs once at least this share of the
    /// cleanable bytes has not been compacted yet (or `max.compaction.lag.ms` forces it).
    pub min_cleanable_dirty_ratio: f64,
}

impl LogConfig {
    /// The age at which the active segment rolls: `segment.ms`, capped by
    /// `max.compaction.lag.ms` when the log is compacted (records in the active segment
    /// cannot be compacted, so they must leave it in time), as Kafka does.
    pub fn roll_ms(&self) -> i64 {
        if self.cleanup_policy.compacts() {
            self.segment_ms.min(self.max_compaction_lag_ms)
        } else {
            self.segment_ms
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: ONE_GIB,
            segment_ms: SEVEN_DAYS_MS,
            retention_ms: SEVEN_DAYS_MS,
            retention_bytes: -1,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: ONE_DAY_MS,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_uncompressed_batch_bytes: DEFAULT_MAX_UNCOMPRESSED_BATCH_BYTES,
            index_interval_bytes: 4096,
            durability: Durability::Fsync,
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: DEFAULT_TIMESTAMP_AFTER_MAX_MS,
            compression: StoredCompression::Producer,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: DEFAULT_MIN_CLEANABLE_DIRTY_RATIO,
        }
    }
}

/// Kafka's `cleanup.policy`: what happens to old data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CleanupPolicy {
    /// `delete`: whole segments are removed by retention time or size.
    #[default]
    Delete,
    /// `compact`: only the latest record per key is kept.
    Compact,
    /// `compact,delete`: both.
    CompactDelete,
}

impl CleanupPolicy {
    /// Whether retention deletes old segments under this policy.
    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }

    /// Whether compaction runs under this policy.
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }
}

/// When appended data reaches the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Every acknowledged write is fsynced first (group commit). Readers see only fsynced data.
    #[default]
    Fsync,
    /// Opt-in relaxed mode: data is visible once written; the owner calls
    /// [`PartitionLog::flush`](crate::PartitionLog::flush) every so often (this interval).
    Interval(Duration),
}

/// Kafka's `message.timestamp.type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimestampType {
    /// `CreateTime`: batches keep the producer's timestamps, which must lie within
    /// `message.timestamp.before.max.ms` / `after.max.ms` of the broker's clock.
    #[default]
    CreateTime,
    /// `LogAppendTime`: the broker stamps every batch with its clock at append (the batch's
    /// timestamp-type attribute and max timestamp; consumers read that as every record's
    /// timestamp).
    LogAppendTime,
}

/// Kafka's `compression.type` with the level of the chosen codec
/// (`compression.gzip.level`, `compression.lz4.level`, `compression.zstd.level`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoredCompression {
    /// `producer`: batches are stored with the codec the producer chose.
    #[default]
    Producer,
    /// `uncompressed`.
    Uncompressed,
    /// `gzip` at a zlib level (1-9, or -1 for zlib's default, 6).
    Gzip(i32),
    /// `snappy`.
    Snappy,
    /// `lz4` at an LZ4 frame level (1-17).
    Lz4(i32),
    /// `zstd` at a zstd level.
    Zstd(i32),
}
