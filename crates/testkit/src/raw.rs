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
