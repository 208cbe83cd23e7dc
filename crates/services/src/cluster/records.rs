//! Records: send JSON records to a topic, and read a page of one partition.
//!
//! Reading fetches from the partition's leader over the raw protocol ([`fetch`](super::fetch))
//! rather than with a librdkafka consumer: librdkafka decompresses a batch without any limit
//! and, on a batch it cannot read (a gzip bomb of zeros, say), reports nothing and fetches it
//! again forever, 512 MiB each time. Reading the batches here caps what each may decompress
//! to and turns one that cannot be read into a `skipped` entry the next page starts after.

use std::time::Instant;

use base64::Engine;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde_json::Value;

use super::batches::Record;
use super::fetch::{PageWalk, PartitionFetcher, FETCH_BYTES};
use super::view::{
    ConsumedRecord, Encoding, OutgoingRecord, ProduceRequest, ProducedOffset, ProducedRecords,
    RecordHeader, RecordPage,
};
use super::{
    validate_partition, validate_topic_name, Cluster, ClusterError, DEFAULT_READ_LIMIT,
    MAX_READ_LIMIT, MAX_RECORDS_PER_PRODUCE, READ_DEADLINE, REQUEST_TIMEOUT,
};

impl Cluster {
    /// Sends the records in order and answers once the cluster acknowledged every one
    /// (acks=all), with their offsets in request order. Never creates the topic.
    pub async fn produce(
        &self,
        topic: &str,
        request: ProduceRequest,
    ) -> Result<ProducedRecords, ClusterError> {
        validate_topic_name(topic)?;
        validate_produce_request(&request)?;
        let layout = self.topic_layout(topic).await?;
        let missing = request
            .records
            .iter()
            .filter_map(|record| record.partition)
            .find(|partition| !layout.has_partition(*partition));
        // The topic exists and the request is well formed; it conflicts with the topic's
        // partition count as it is now (partitions can be added).
        if let Some(partition) = missing {
            return Err(ClusterError::Conflict(format!(
                "partition {partition} does not exist: topic {topic:?} has {} partitions",
                layout.partitions.len()
            )));
        }
        // Enqueued in request order, so records of one partition get ascending offsets; the
        // acknowledgements are awaited only once all are on their way.
        let mut deliveries = Vec::with_capacity(request.records.len());
        for record in &request.records {
            let encoded = EncodedRecord::from(record);
            let delivery = self
                .inner
                .producer
                .send_result(encoded.future_record(topic))
                .map_err(|(error, _)| topic_changed(error, topic))?;
            deliveries.push(delivery);
        }
        let mut offsets = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let delivered = delivery
                .await
                .map_err(|_| ClusterError::Kafka(KafkaError::Canceled))?
                .map_err(|(error, _)| topic_changed(error, topic))?;
            offsets.push(ProducedOffset {
                partition: delivered.partition,
                offset: delivered.offset,
            });
        }
        Ok(ProducedRecords { offsets })
    }

    /// Up to `limit` records of one partition from `offset` (default: the earliest). An
    /// offset before the earliest starts there; one past the latest is `NotFound` (there
    /// are no records there yet, as for a partition that does not exist). Returns what
    /// arrived within the read deadline, never waiting for records that do not exist yet.
    /// Batches that cannot be read are stepped over and listed in the page's `skipped`.
    pub async fn read_records(
        &self,
        topic: &str,
        partition: i32,
        offset: Option<i64>,
        limit: Option<usize>,
    ) -> Result<RecordPage, ClusterError> {
        validate_topic_name(topic)?;
        validate_partition(partition)?;
        let limit = read_limit(limit)?;
        if let Some(offset) = offset.filter(|offset| *offset < 0) {
            return Err(ClusterError::Invalid(format!(
                "offset {offset} is negative; offsets start at 0"
            )));
        }
        let layout = self.topic_layout(topic).await?;
        if !layout.has_partition(partition) {
            return Err(ClusterError::NotFound(format!(
                "topic {topic:?} has no partition {partition} (it has {})",
                layout.partitions.len()
            )));
        }
        let leader = layout
            .leader_address(partition)
            .ok_or_else(|| unavailable(topic, partition, "it has no leader"))?
            .to_string();
        let (earliest, latest) = {
            let topic = topic.to_string();
            self.blocking(move |cluster| cluster.watermarks(&topic, partition))
                .await?
        };
        let start = page_start(offset, earliest, latest, partition)?;
        let mut walk = PageWalk::new(start, latest, limit);
        if !walk.is_done() {
            walk = self.read_page(walk, &leader, topic, partition).await?;
        }
        Ok(RecordPage {
            topic: topic.to_string(),
            partition,
            earliest_offset: earliest,
            latest_offset: latest,
            next_offset: walk.position,
            records: walk.records.into_iter().map(consumed).collect(),
            skipped: walk.skipped,
        })
    }

    /// Fetches from the partition's leader until the page is full, reaches its end, or the
    /// read deadline passes. A failure after something was read ends the page early instead.
    async fn read_page(
        &self,
        mut walk: PageWalk,
        leader: &str,
        topic: &str,
        partition: i32,
    ) -> Result<PageWalk, ClusterError> {
        let deadline = Instant::now() + READ_DEADLINE;
        let mut fetcher =
            PartitionFetcher::open(leader, self.kafka(), topic, partition, REQUEST_TIMEOUT)
                .await
                .map_err(|reason| unavailable(topic, partition, &reason))?;
        while !walk.is_done() && Instant::now() < deadline {
            let fetched = match fetcher.fetch(walk.position, FETCH_BYTES).await {
                Ok(fetched) => fetched,
                Err(reason) if walk.records.is_empty() && walk.skipped.is_empty() => {
                    return Err(unavailable(topic, partition, &reason))
                }
                Err(reason) => {
                    tracing::debug!(%reason, topic, partition, "a page ends early");
                    break;
                }
            };
            // Reading a batch is CPU work (up to the decompression cap): off the runtime.
            let (taken, moved) = tokio::task::spawn_blocking(move || {
                let moved = walk.take(&fetched);
                (walk, moved)
            })
            .await
            .map_err(|e| unavailable(topic, partition, &format!("reading batches failed: {e}")))?;
            walk = taken;
            if !moved {
                break;
            }
        }
        Ok(walk)
    }
}

/// The producer's own view of the topic lacks it or the partition it chose: the topic was
/// deleted, recreated or given partitions between the layout check and the send (seen when a
/// topic is recreated under the same name). The request conflicts with the topic's state,
/// which is a client's 409, not the cluster's failure; a retry sees the new state.
fn topic_changed(error: KafkaError, topic: &str) -> ClusterError {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::UnknownPartition | RDKafkaErrorCode::UnknownTopic) => {
            ClusterError::Conflict(format!(
                "topic {topic:?} changed while the records were sent (deleted, recreated or \
                 repartitioned): {error}; records before the first refused one may have been \
                 written"
            ))
        }
        // The records break a rule of the topic's configs as they are now (its
        // max.message.bytes, a compacted topic's key, its timestamp bounds): the request is
        // well formed, the topic's state refuses it.
        Some(
            code @ (RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidTimestamp
            | RDKafkaErrorCode::MessageBatchTooLarge),
        ) => ClusterError::Conflict(format!(
            "topic {topic:?} refused the records under its configs ({code:?}): {error}; records \
             before the first refused one may have been written"
        )),
        _ => ClusterError::Kafka(error),
    }
}

/// Where a page starts: the requested offset, moved up to the earliest; past the latest there
/// is nothing to read yet.
fn page_start(
    requested: Option<i64>,
    earliest: i64,
    latest: i64,
    partition: i32,
) -> Result<i64, ClusterError> {
    match requested {
        Some(offset) if offset > latest => Err(ClusterError::NotFound(format!(
            "offset {offset} is past the latest offset {latest} of partition {partition}"
        ))),
        Some(offset) => Ok(offset.max(earliest)),
        None => Ok(earliest),
    }
}

/// The partition cannot be read now (its leader is unknown or unreachable, or it failed).
pub(super) fn unavailable(topic: &str, partition: i32, reason: &str) -> ClusterError {
    ClusterError::TopicUnavailable {
        topic: topic.to_string(),
        reason: format!("reading partition {partition}: {reason}"),
    }
}

/// A produce request's own limits, checked before anything is sent.
fn validate_produce_request(request: &ProduceRequest) -> Result<(), ClusterError> {
    let count = request.records.len();
    if count == 0 {
        return Err(ClusterError::Invalid(
            "records is empty: send 1 to 500 records".into(),
        ));
    }
    if count > MAX_RECORDS_PER_PRODUCE {
        return Err(ClusterError::Invalid(format!(
            "{count} records is more than the {MAX_RECORDS_PER_PRODUCE} one request may send"
        )));
    }
    request
        .records
        .iter()
        .filter_map(|record| record.partition)
        .try_for_each(validate_partition)
}

/// The page size a request asks for, or the default.
pub fn read_limit(requested: Option<usize>) -> Result<usize, ClusterError> {
    match requested {
        None => Ok(DEFAULT_READ_LIMIT),
        Some(limit @ 1..=MAX_READ_LIMIT) => Ok(limit),
        Some(limit) => Err(ClusterError::Invalid(format!(
            "limit {limit} is out of range: ask for 1 to {MAX_READ_LIMIT} records"
        ))),
    }
}

/// A record's bytes as they go on the wire.
#[derive(Debug)]
struct EncodedRecord {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, String)>,
    partition: Option<i32>,
}

impl From<&OutgoingRecord> for EncodedRecord {
    fn from(record: &OutgoingRecord) -> Self {
        EncodedRecord {
            key: json_bytes(&record.key),
            value: json_bytes(&record.value),
            headers: record
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            partition: record.partition,
        }
    }
}

impl EncodedRecord {
    fn future_record<'a>(&'a self, topic: &'a str) -> FutureRecord<'a, [u8], [u8]> {
        let mut record = FutureRecord::to(topic);
        if let Some(key) = &self.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &self.value {
            record = record.payload(value.as_slice());
        }
        if let Some(partition) = self.partition {
            record = record.partition(partition);
        }
        if !self.headers.is_empty() {
            let headers = self.headers.iter().fold(
                OwnedHeaders::new_with_capacity(self.headers.len()),
                |headers, (key, value)| {
                    headers.insert(Header {
                        key,
                        value: Some(value.as_bytes()),
                    })
                },
            );
            record = record.headers(headers);
        }
        record
    }
}

/// A JSON string as its text, null as nothing, anything else as its compact JSON text.
fn json_bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone().into_bytes()),
        other => Some(other.to_string().into_bytes()),
    }
}

/// A record as the API shows it: in partition pages and in topic-wide reads (`search`).
pub(super) fn consumed(record: Record) -> ConsumedRecord {
    let (key, key_encoding) = shown(record.key.as_deref());
    let (value, value_encoding) = shown(record.value.as_deref());
    let headers = record
        .headers
        .into_iter()
        .map(|(key, value)| {
            let (value, encoding) = shown(value.as_deref());
            RecordHeader {
                key,
                value,
                encoding,
            }
        })
        .collect();
    ConsumedRecord {
        offset: record.offset,
        timestamp: record.timestamp,
        key,
        value,
        key_encoding,
        value_encoding,
        headers,
    }
}

/// Bytes as text when they are UTF-8, as base64 otherwise; nothing stays null.
fn shown(bytes: Option<&[u8]>) -> (Option<String>, Encoding) {
    match bytes {
        None => (None, Encoding::Utf8),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => (Some(text.to_string()), Encoding::Utf8),
            Err(_) => (
                Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
                Encoding::Base64,
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_strings_are_sent_as_text_and_other_values_as_compact_json() {
        assert_eq!(
            json_bytes(&json!("plain text")),
            Some(b"plain text".to_vec())
        );
        assert_eq!(
            json_bytes(&json!({"a": [1, true, null], "b": "c"})),
            Some(br#"{"a":[1,true,null],"b":"c"}"#.to_vec())
        );
        assert_eq!(json_bytes(&json!(42)), Some(b"42".to_vec()));
        assert_eq!(json_bytes(&json!(false)), Some(b"false".to_vec()));
        assert_eq!(json_bytes(&Value::Null), None);
    }

    #[test]
    fn bytes_are_shown_as_text_or_base64() {
        assert_eq!(shown(None), (None, Encoding::Utf8));
        assert_eq!(
            shown(Some("héllo".as_bytes())),
            (Some("héllo".into()), Encoding::Utf8)
        );
        assert_eq!(
            shown(Some(&[0xff, 0x00, 0x10])),
            (Some("/wAQ".into()), Encoding::Base64)
        );
    }

    #[test]
    fn page_limits_default_and_bounds() {
        assert_eq!(read_limit(None).ok(), Some(DEFAULT_READ_LIMIT));
        assert_eq!(read_limit(Some(MAX_READ_LIMIT)).ok(), Some(MAX_READ_LIMIT));
        for bad in [0, MAX_READ_LIMIT + 1] {
            assert!(read_limit(Some(bad)).is_err(), "{bad}");
        }
    }

    fn records(count: usize, partition: Option<i32>) -> ProduceRequest {
        let record = OutgoingRecord {
            key: Value::Null,
            value: json!("v"),
            headers: Default::default(),
            partition,
        };
        ProduceRequest {
            records: vec![record; count],
        }
    }

    #[test]
    fn produce_requests_carry_1_to_500_records_for_real_partitions() {
        assert!(validate_produce_request(&records(1, Some(0))).is_ok());
        assert!(validate_produce_request(&records(MAX_RECORDS_PER_PRODUCE, None)).is_ok());
        for bad in [
            records(0, None),
            records(MAX_RECORDS_PER_PRODUCE + 1, None),
            records(1, Some(-1)),
            ProduceRequest {
                records: [records(1, Some(0)).records, records(1, Some(-2)).records].concat(),
            },
        ] {
            assert!(validate_produce_request(&bad).is_err(), "{bad:?}");
        }
    }
}
