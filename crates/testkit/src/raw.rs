//! A minimal Kafka wire client for tests that must send what real clients never would:
//! malformed frames, unsupported versions, corrupt batches.

use std::net::SocketAddr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct RawClient {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<RawClient> {
        Ok(RawClient {
            stream: TcpStream::connect(addr).await?,
            next_correlation_id: 1,
        })
    }

    /// Sends `request` as `api` version `version` and decodes the response as `R`.
    pub async fn call<Q: Encodable, R: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Q,
    ) -> anyhow::Result<R> {
        self.send(api, version, request).await?;
        let mut body = self.read_frame().await?;
        let header_version = if api == ApiKey::ApiVersions {
            0
        } else {
            api.response_header_version(version)
        };
        ResponseHeader::decode(&mut body, header_version)?;
        R::decode(&mut body, version)
    }

    /// Authenticates with SASL PLAIN (SaslHandshake v1, SaslAuthenticate v2) and returns
    /// SaslAuthenticate's error code and message (0 and `None` when signed in).
    pub async fn sasl_plain(
        &mut self,
        user: &str,
        password: &str,
    ) -> anyhow::Result<(i16, Option<String>)> {
        use kafka_protocol::messages::{
            SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
            SaslHandshakeResponse,
        };
        let handshake: SaslHandshakeResponse = self
            .call(
                ApiKey::SaslHandshake,
                1,
                &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
            )
            .await?;
        anyhow::ensure!(
            handshake.error_code == 0,
            "handshake: {}",
            handshake.error_code
        );
        let message = format!("\0{user}\0{password}");
        let response: SaslAuthenticateResponse = self
            .call(
                ApiKey::SaslAuthenticate,
                2,
                &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message)),
            )
            .await?;
        Ok((
            response.error_code,
            response.error_message.map(|m| m.to_string()),
        ))
    }

    /// Produces `records` (a record set) with acks=all to `partition` of `topic` (Produce v9)
    /// and returns that partition's error code.
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: Bytes,
    ) -> anyhow::Result<i16> {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records))])]);
        let response: ProduceResponse = self.call(ApiKey::Produce, 9, &request).await?;
        let code = response
            .responses
            .first()
            .and_then(|topic| topic.partition_responses.first())
            .map(|partition| partition.error_code);
        code.ok_or_else(|| anyhow::anyhow!("the produce response names no partition"))
    }

    /// The idempotent producers DescribeProducers (v0) lists for `partition` of `topic`.
    pub async fn producers(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> anyhow::Result<Vec<kafka_protocol::messages::describe_producers_response::ProducerState>>
    {
        use kafka_protocol::messages::describe_producers_request::TopicRequest;
        use kafka_protocol::messages::{
            DescribeProducersRequest, DescribeProducersResponse, TopicName,
        };
        let request = DescribeProducersRequest::default()
            .with_topics(vec![TopicRequest::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_indexes(vec![partition])]);
        let response: DescribeProducersResponse =
            self.call(ApiKey::DescribeProducers, 0, &request).await?;
        let answer = response
            .topics
            .first()
            .and_then(|topic| topic.partitions.first())
            .ok_or_else(|| anyhow::anyhow!("the response names no partition"))?;
        anyhow::ensure!(answer.error_code == 0, "error {}", answer.error_code);
        Ok(answer.active_producers.clone())
    }

    /// Fetches `partition` of `topic` from `offset` (Fetch v12, not waiting for data, up to
    /// `max_bytes`): the partition's error code, high watermark and record bytes, exactly as
    /// the broker stored them.
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: i32,
    ) -> anyhow::Result<FetchedPartition> {
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
        use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
        let request = FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(max_bytes)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(max_bytes)])]);
        let response: FetchResponse = self.call(ApiKey::Fetch, 12, &request).await?;
        anyhow::ensure!(
            response.error_code == 0,
            "fetch failed: error {}",
            response.error_code
        );
        let answer = response
            .responses
            .into_iter()
            .flat_map(|topic| topic.partitions)
            .find(|answer| answer.partition_index == partition)
            .ok_or_else(|| anyhow::anyhow!("the fetch response names no partition {partition}"))?;
        Ok(FetchedPartition {
            error_code: answer.error_code,
            high_watermark: answer.high_watermark,
            records: answer.records.unwrap_or_default(),
        })
    }

    /// Every record batch of `partition` of `topic`, from its start to its high watermark,
    /// read with [`fetch`](Self::fetch): their headers as the producer wrote them (the broker
    /// stores batches as sent, so `codec` is the producer's compression).
    pub async fn batches(&mut self, topic: &str, partition: i32) -> anyhow::Result<Vec<BatchInfo>> {
        const MAX_BYTES: i32 = 16 << 20;
        let mut batches = Vec::new();
        let mut offset = 0;
        loop {
            let fetched = self.fetch(topic, partition, offset, MAX_BYTES).await?;
            anyhow::ensure!(
                fetched.error_code == 0,
                "fetching {topic}-{partition} at {offset}: error {}",
                fetched.error_code
            );
            if offset >= fetched.high_watermark {
                return Ok(batches);
            }
            let found = batch_headers(&fetched.records)?;
            let Some(last) = found.last() else {
                anyhow::bail!(
                    "{topic}-{partition} holds no whole batch at offset {offset} (high watermark {})",
                    fetched.high_watermark
                );
            };
            offset = last.last_offset + 1;
            batches.extend(found);
        }
    }

    /// Sends a request without reading the response.
    pub async fn send<Q: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Q,
    ) -> anyhow::Result<()> {
        let mut frame = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.next_correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("freshet-raw-test")));
        self.next_correlation_id += 1;
        header.encode(&mut frame, api.request_header_version(version))?;
        request.encode(&mut frame, version)?;
        self.send_frame(&frame).await?;
        Ok(())
    }

    /// Writes `payload` with a correct size prefix.
    pub async fn send_frame(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let mut framed = BytesMut::with_capacity(payload.len() + 4);
        framed.put_i32(payload.len() as i32);
        framed.extend_from_slice(payload);
        self.stream.write_all(&framed).await
    }

    /// Writes raw bytes, size prefix included or not: whatever the test wants.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Reads one response frame (without its size prefix).
    pub async fn read_frame(&mut self) -> std::io::Result<Bytes> {
        let size = self.stream.read_i32().await?;
        let mut body = vec![0u8; usize::try_from(size).unwrap_or(0)];
        self.stream.read_exact(&mut body).await?;
        Ok(Bytes::from(body))
    }

    /// True when the broker has closed the connection (reads hit end of stream).
    pub async fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte).await, Ok(0) | Err(_))
    }

    /// The correlation id of a response frame.
    pub fn correlation_id(frame: &Bytes) -> i32 {
        frame.clone().get_i32()
    }
}

/// One partition of a Fetch answer.
#[derive(Debug, Clone)]
pub struct FetchedPartition {
    pub error_code: i16,
    pub high_watermark: i64,
    /// The record batches, as stored; the last one may be cut short by the size limit.
    pub records: Bytes,
}

/// The header fields of a v2 record batch a test may want to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    pub base_offset: i64,
    /// Offset of the batch's last record.
    pub last_offset: i64,
    /// Records the header counts.
    pub records: i32,
    /// All the attribute bits.
    pub attributes: i16,
    /// The compression codec, the attributes' lowest three bits: 0 none, 1 gzip, 2 snappy,
    /// 3 lz4, 4 zstd.
    pub codec: u8,
}

/// The headers of the whole v2 batches in `records` (a Fetch answer's bytes); a batch cut
/// short at the end is left out. Anything that is not a v2 batch is an error.
pub fn batch_headers(records: &[u8]) -> anyhow::Result<Vec<BatchInfo>> {
    // baseOffset (8), batchLength (4), partitionLeaderEpoch (4), magic (1), crc (4),
    // attributes (2), lastOffsetDelta (4), timestamps (16), producer id, epoch and base
    // sequence (14), recordCount (4).
    const HEADER_LEN: usize = 61;
    let mut headers = Vec::new();
    let mut at = 0;
    while records.len() >= at + HEADER_LEN {
        let batch = &records[at..];
        let base_offset = i64::from_be_bytes(bytes_at(batch, 0));
        let length = i32::from_be_bytes(bytes_at(batch, 8));
        let magic = batch[16];
        anyhow::ensure!(
            magic == 2,
            "the batch at offset {base_offset} has magic {magic}, not 2"
        );
        let whole = 12 + usize::try_from(length)?;
        if batch.len() < whole {
            break;
        }
        let attributes = i16::from_be_bytes(bytes_at(batch, 21));
        let last_offset_delta = i32::from_be_bytes(bytes_at(batch, 23));
        headers.push(BatchInfo {
            base_offset,
            last_offset: base_offset + i64::from(last_offset_delta),
            records: i32::from_be_bytes(bytes_at(batch, 57)),
            attributes,
            codec: (attributes & 0x07) as u8,
        });
        at += whole;
    }
    Ok(headers)
}

/// Records below which a batch may have been sent uncompressed whatever the producer's codec:
/// librdkafka sends a batch uncompressed when compressing does not make it smaller, which
/// happens only to a batch of a few small records.
pub const MAY_STAY_UNCOMPRESSED_BELOW: i32 = 10;

/// Asserts that `batches` were produced with codec `codec`: at least one batch carries it,
/// and every other one is uncompressed and too small to shrink (fewer than
/// [`MAY_STAY_UNCOMPRESSED_BELOW`] records). With `codec` 0, every batch is uncompressed.
pub fn assert_compressed_with(batches: &[BatchInfo], codec: u8) {
    assert!(
        batches.iter().any(|batch| batch.codec == codec),
        "no batch has codec {codec}: {batches:?}"
    );
    for batch in batches {
        assert!(
            batch.codec == codec
                || (batch.codec == 0 && batch.records < MAY_STAY_UNCOMPRESSED_BELOW),
            "a batch of {} records has codec {}, not {codec}: {batches:?}",
            batch.records,
            batch.codec
        );
    }
}

/// The `N` bytes of `bytes` from `at` (the caller checked they are there).
fn bytes_at<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}
