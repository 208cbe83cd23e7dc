//! The one error type of the crate, with the Kafka error code each variant maps to.

use std::io;

use kafka_protocol::ResponseError;

/// Why a log operation failed. [`LogError::error_code`] gives the Kafka protocol error code the
/// broker puts in its response.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A batch's framing is broken: bad length, magic byte or CRC (Kafka `CORRUPT_MESSAGE`).
    #[error("corrupt record batch: {0}")]
    CorruptMessage(String),
    /// A batch is larger than `max.message.bytes` (Kafka `MESSAGE_TOO_LARGE`).
    #[error("record batch of {size} bytes is larger than max.message.bytes ({max})")]
    MessageTooLarge {
        /// Size of the offending batch, log overhead included.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// A compressed batch whose records decompress to more than
    /// [`LogConfig::max_uncompressed_batch_bytes`](crate::LogConfig::max_uncompressed_batch_bytes)
    /// (Kafka `MESSAGE_TOO_LARGE`, code 10).
    ///
    /// Code 10 rather than `CORRUPT_MESSAGE` (2) or `RECORD_LIST_TOO_LARGE` (18): the Java
    /// client maps 10 to `RecordTooLargeException`, which is not retried, and its producer
    /// answers it by splitting a batch of several records and sending the halves, so an honest
    /// producer whose batch is merely too big recovers by itself; librdkafka fails the
    /// messages without retrying. `CORRUPT_MESSAGE` is retriable in the Java client, so a
    /// batch that can never be accepted would be resent until its delivery timeout, and 18
    /// means a record set larger than a segment.
    #[error(
        "compressed record batch decompresses to more than max_uncompressed_batch_bytes ({max} bytes)"
    )]
    UncompressedTooLarge {
        /// The configured limit.
        max: usize,
    },
    /// A well-framed batch whose content is not acceptable (Kafka `INVALID_RECORD`).
    #[error("invalid record batch: {0}")]
    InvalidRecord(String),
    /// Records without a key for a compacted log (Kafka `INVALID_RECORD`). The indexes are
    /// those of the keyless records within their batch, for Produce's per-record errors.
    #[error("compacted topic cannot accept a record without key (batch index {batch_indexes:?})")]
    KeylessRecords {
        /// Index of each keyless record in its batch.
        batch_indexes: Vec<i32>,
    },
    /// A CreateTime record timestamp outside the window `message.timestamp.before.max.ms`
    /// and `message.timestamp.after.max.ms` allow around the broker's clock (Kafka
    /// `INVALID_TIMESTAMP`).
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
    /// A read outside `[log start offset, high watermark]` (Kafka `OFFSET_OUT_OF_RANGE`).
    #[error("offset {offset} is out of range [{log_start_offset}, {high_watermark}]")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: i64,
        /// The log start offset at the time of the request.
        log_start_offset: i64,
        /// The high watermark at the time of the request.
        high_watermark: i64,
    },
    /// An idempotent producer skipped or reordered sequence numbers
    /// (Kafka `OUT_OF_ORDER_SEQUENCE_NUMBER`).
    #[error("producer {producer_id}: expected sequence {expected}, received {received}")]
    OutOfOrderSequence {
        /// The producer id of the batch.
        producer_id: i64,
        /// The sequence number the log expected next.
        expected: i32,
        /// The batch's base sequence.
        received: i32,
    },
    /// An idempotent producer this log has no record of continued a sequence instead of
    /// starting at 0, as after its topic was deleted and created again (Kafka
    /// `UNKNOWN_PRODUCER_ID`). Clients answer it by bumping their epoch and starting over at
    /// 0; `OUT_OF_ORDER_SEQUENCE_NUMBER` would be fatal to them.
    #[error("producer {producer_id}: no record of it here, and sequence {received} is not 0")]
    UnknownProducerId {
        /// The producer id of the batch.
        producer_id: i64,
        /// The batch's base sequence.
        received: i32,
    },
    /// An idempotent producer wrote with an epoch older than the one the log knows
    /// (Kafka `INVALID_PRODUCER_EPOCH`).
    #[error("producer {producer_id}: epoch {received} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        /// The producer id of the batch.
        producer_id: i64,
        /// The newest epoch the log has seen for this producer.
        current: i16,
        /// The batch's epoch.
        received: i16,
    },
    /// A batch that does not fit the producer's transaction state, such as a plain batch
    /// inside an open transaction (Kafka `INVALID_TXN_STATE`).
    #[error("invalid transaction state: {0}")]
    InvalidTxnState(String),
    /// The disk failed us, or the log is poisoned by an earlier failed fsync
    /// (Kafka `KAFKA_STORAGE_ERROR`).
    #[error("storage error: {0}")]
    Storage(#[from] io::Error),
}

impl LogError {
    /// The Kafka protocol error code for this error.
    pub fn error_code(&self) -> i16 {
        self.response_error().code()
    }

    /// The Kafka error this maps to (named, where [`LogError::error_code`] gives its number).
    pub fn response_error(&self) -> ResponseError {
        match self {
            LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            LogError::CorruptMessage(_) => ResponseError::CorruptMessage,
            LogError::MessageTooLarge { .. } | LogError::UncompressedTooLarge { .. } => {
                ResponseError::MessageTooLarge
            }
            LogError::InvalidTimestamp(_) => ResponseError::InvalidTimestamp,
            LogError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
            LogError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
            LogError::InvalidTxnState(_) => ResponseError::InvalidTxnState,
            LogError::UnknownProducerId { .. } => ResponseError::UnknownProducerId,
            LogError::Storage(_) => ResponseError::KafkaStorageError,
            LogError::InvalidRecord(_) | LogError::KeylessRecords { .. } => {
                ResponseError::InvalidRecord
            }
        }
    }

    pub(crate) fn corrupt(message: impl Into<String>) -> Self {
        LogError::CorruptMessage(message.into())
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        LogError::InvalidRecord(message.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_match_kafka() {
        assert_eq!(LogError::corrupt("x").error_code(), 2);
        assert_eq!(LogError::invalid("x").error_code(), 87);
        assert_eq!(LogError::UncompressedTooLarge { max: 1 }.error_code(), 10);
        assert_eq!(LogError::InvalidTimestamp("x".into()).error_code(), 32);
        assert_eq!(
            LogError::MessageTooLarge { size: 2, max: 1 }.error_code(),
            10
        );
        assert_eq!(
            LogError::OffsetOutOfRange {
                offset: 5,
                log_start_offset: 0,
                high_watermark: 1
            }
            .error_code(),
            1
        );
        assert_eq!(
            LogError::OutOfOrderSequence {
                producer_id: 1,
                expected: 0,
                received: 3
            }
            .error_code(),
            45
        );
        assert_eq!(
            LogError::InvalidProducerEpoch {
                producer_id: 1,
                current: 2,
                received: 1
            }
            .error_code(),
            47
        );
        assert_eq!(LogError::Storage(io::Error::other("disk")).error_code(), 56);
    }
}
