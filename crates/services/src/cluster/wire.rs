//! A minimal Kafka-protocol client over one TCP connection, for the requests librdkafka
//! does not expose (DescribeLogDirs, and CreateTopics' error message) and for Fetch, whose
//! batches librdkafka decompresses without a limit (see [`batches`](super::batches)).
//!
//! It speaks to one broker at a time: size-prefixed frames, request header v1 (v2 for
//! flexible versions), one request in flight, the answer matched by correlation id. Versions
//! are negotiated with ApiVersions v0 first, as every Kafka client does, so a broker that
//! lacks an API is told apart from one that fails.
//!
//! It secures its connection as the services' librdkafka clients do, from the same
//! [`KafkaConfig`]: TLS ([`tls`](super::tls)) on SSL and SASL_SSL, then after ApiVersions a
//! SASL sign-in ([`sasl`](super::sasl)) on SASL_PLAINTEXT and SASL_SSL.

use std::fmt::Debug;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::KafkaConfig;

/// Largest answer accepted: far above any DescribeLogDirs or CreateTopics response, small
/// enough that a garbled size prefix cannot make us allocate gigabytes.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Why a call failed; only logged, since every caller degrades without the answer.
pub(crate) type WireError = String;

/// A byte stream to a broker: TCP, or TLS over TCP.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send + Debug {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + Debug> Transport for T {}

/// One connection to one broker, with the API versions it supports.
#[derive(Debug)]
pub(crate) struct Connection {
    stream: Box<dyn Transport>,
    client_id: String,
    next_correlation_id: i32,
    supported: Vec<(i16, i16, i16)>,
}

impl Connection {
    /// Connects to `address` (`host:port`) as `kafka` says (TLS, SASL), with its client id:
    /// asks which API versions the broker supports, then signs in, each within `timeout`.
    pub(crate) async fn open(
        address: &str,
        kafka: &KafkaConfig,
        timeout: Duration,
    ) -> Result<Connection, WireError> {
        let mut connection = Connection::connect(address, kafka, timeout).await?;
        connection.sign_in(address, kafka, timeout).await?;
        Ok(connection)
    }

    /// [`open`](Self::open) up to signing in: TCP, TLS and ApiVersions.
    pub(crate) async fn connect(
        address: &str,
        kafka: &KafkaConfig,
        timeout: Duration,
    ) -> Result<Connection, WireError> {
        let connected = tokio::time::timeout(timeout, async {
            let mut connection = Connection::over(transport(address, kafka).await?, kafka);
            connection.negotiate_versions(address).await?;
            Ok(connection)
        })
        .await;
        connected.unwrap_or_else(|_| Err(format!("{address} did not answer within {timeout:?}")))
    }

    fn over(stream: Box<dyn Transport>, kafka: &KafkaConfig) -> Connection {
        Connection {
            stream,
            client_id: kafka.client_id.clone(),
            next_correlation_id: 1,
            supported: Vec::new(),
        }
    }

    /// Signs in when `kafka` uses SASL, within `timeout`.
    pub(crate) async fn sign_in(
        &mut self,
        address: &str,
        kafka: &KafkaConfig,
        timeout: Duration,
    ) -> Result<(), WireError> {
        let Some(credentials) = kafka.security().sasl() else {
            return Ok(());
        };
        let signing_in = super::sasl::authenticate(self, credentials, timeout);
        match tokio::time::timeout(timeout, signing_in).await {
            Ok(signed_in) => signed_in.map_err(|reason| format!("{address}: {reason}")),
            Err(_) => Err(format!("{address}: signing in took more than {timeout:?}")),
        }
    }

    async fn negotiate_versions(&mut self, address: &str) -> Result<(), WireError> {
        // v0 is the one version every broker answers, with a v0 response header.
        let versions: ApiVersionsResponse = self.call_at(0, &ApiVersionsRequest::default()).await?;
        if versions.error_code != 0 {
            return Err(format!(
                "{address} answered ApiVersions with error {}",
                versions.error_code
            ));
        }
        self.supported = versions
            .api_keys
            .iter()
            .map(|api| (api.api_key, api.min_version, api.max_version))
            .collect();
        Ok(())
    }

    /// The newest version of `R` from `oldest` to `newest` both the broker and the codec
    /// support, if any.
    fn version_of<R: Request>(&self, (oldest, newest): (i16, i16)) -> Option<i16> {
        let (_, min, max) = self.supported.iter().find(|(key, _, _)| *key == R::KEY)?;
        let highest = (*max).min(R::VERSIONS.max).min(newest);
        (highest >= (*min).max(R::VERSIONS.min).max(oldest)).then_some(highest)
    }

    /// Sends `request` at the newest common version and waits up to `timeout` for its
    /// answer. Returns the version used with the answer.
    pub(crate) async fn call<R: Request>(
        &mut self,
        request: &R,
        timeout: Duration,
    ) -> Result<(i16, R::Response), WireError> {
        self.call_up_to(request, R::VERSIONS.max, timeout).await
    }

    /// [`call`](Self::call) at no version newer than `newest`, for a request whose newer
    /// versions need what the caller does not have (Fetch v13 names topics by id).
    pub(crate) async fn call_up_to<R: Request>(
        &mut self,
        request: &R,
        newest: i16,
        timeout: Duration,
    ) -> Result<(i16, R::Response), WireError> {
        self.call_between(request, (R::VERSIONS.min, newest), timeout)
            .await
    }

    /// [`call`](Self::call) at a version from `oldest` to `newest`, for a request whose older
    /// versions mean something else (SaslHandshake v0 changes how authentication is framed).
    pub(crate) async fn call_between<R: Request>(
        &mut self,
        request: &R,
        (oldest, newest): (i16, i16),
        timeout: Duration,
    ) -> Result<(i16, R::Response), WireError> {
        let api = api_key::<R>()?;
        let version = self
            .version_of::<R>((oldest, newest))
            .ok_or_else(|| format!("the broker does not support {api:?} v{oldest} to v{newest}"))?;
        match tokio::time::timeout(timeout, self.call_at(version, request)).await {
            Ok(answer) => answer.map(|response| (version, response)),
            Err(_) => Err(format!("{api:?} not answered within {timeout:?}")),
        }
    }

    async fn call_at<R: Request>(
        &mut self,
        version: i16,
        request: &R,
    ) -> Result<R::Response, WireError> {
        let api = api_key::<R>()?;
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = self.encode_request(api, version, correlation_id, request)?;
        // TLS holds written bytes back until flushed.
        let sent = match self.stream.write_all(&frame).await {
            Ok(()) => self.stream.flush().await,
            Err(e) => Err(e),
        };
        sent.map_err(|e| format!("sending {api:?}: {e}"))?;
        let mut body = self.read_frame().await?;
        // ApiVersions answers with header v0 whatever the version, so that a client that
        // asked for a version the broker lacks can still read the answer.
        let header_version = if api == ApiKey::ApiVersions {
            0
        } else {
            api.response_header_version(version)
        };
        let header = ResponseHeader::decode(&mut body, header_version)
            .map_err(|e| format!("{api:?} response header: {e:#}"))?;
        if header.correlation_id != correlation_id {
            return Err(format!(
                "{api:?} answered with correlation id {} instead of {correlation_id}",
                header.correlation_id
            ));
        }
        R::Response::decode(&mut body, version).map_err(|e| format!("{api:?} v{version}: {e:#}"))
    }

    /// A size-prefixed request frame: header, then body.
    fn encode_request<R: Request>(
        &self,
        api: ApiKey,
        version: i16,
        correlation_id: i32,
        request: &R,
    ) -> Result<Bytes, WireError> {
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())));
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        header
            .encode(&mut frame, api.request_header_version(version))
            .and_then(|()| request.encode(&mut frame, version))
            .map_err(|e| format!("encoding {api:?} v{version}: {e:#}"))?;
        let size = i32::try_from(frame.len() - 4).map_err(|_| format!("{api:?} too large"))?;
        frame[0..4].copy_from_slice(&size.to_be_bytes());
        Ok(frame.freeze())
    }

    async fn read_frame(&mut self) -> Result<Bytes, WireError> {
        let size = self
            .stream
            .read_i32()
            .await
            .map_err(|e| format!("reading a response: {e}"))?;
        let size = usize::try_from(size)
            .ok()
            .filter(|size| *size <= MAX_RESPONSE_BYTES)
            .ok_or_else(|| format!("response size {size} is out of range"))?;
        let mut body = vec![0u8; size];
        self.stream
            .read_exact(&mut body)
            .await
            .map_err(|e| format!("reading a response: {e}"))?;
        Ok(Bytes::from(body))
    }
}

/// What one attempt to reach a broker found ([`reach`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reach {
    /// A Kafka broker answered ApiVersions.
    Broker,
    /// The connection is up (TLS included) but nothing answered by the deadline: a broker
    /// that is busy or slow, not one that is missing.
    Silent,
    /// No connection (refused, unreachable, a TLS handshake failing), or an answer that is
    /// not Kafka's; the reason names the address.
    Failed(String),
}

/// Connects to `address` as `kafka` says (TCP, then TLS when it uses TLS) and asks which API
/// versions it supports, giving up at `deadline`. Signs nothing in. Once TCP is connected,
/// running out of time (in the TLS handshake or waiting for the answer) is [`Reach::Silent`].
pub(crate) async fn reach(address: &str, kafka: &KafkaConfig, deadline: Instant) -> Reach {
    let tcp = match tokio::time::timeout_at(deadline, tcp(address)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(reason)) => return Reach::Failed(reason),
        Err(_) => return Reach::Failed(format!("connecting to {address}: no answer")),
    };
    let answered = tokio::time::timeout_at(deadline, async {
        let stream = secure(tcp, address, kafka).await.map_err(Reach::Failed)?;
        let mut connection = Connection::over(stream, kafka);
        connection
            .negotiate_versions(address)
            .await
            .map_err(|reason| {
                Reach::Failed(format!(
                    "{address} answered, but not as a Kafka broker ({reason})"
                ))
            })
    });
    match answered.await {
        Ok(Ok(())) => Reach::Broker,
        Ok(Err(failed)) => failed,
        Err(_) => Reach::Silent,
    }
}

/// A TCP connection to `address`, with TLS on it when `kafka` uses TLS.
async fn transport(address: &str, kafka: &KafkaConfig) -> Result<Box<dyn Transport>, WireError> {
    secure(tcp(address).await?, address, kafka).await
}

async fn tcp(address: &str) -> Result<TcpStream, WireError> {
    let tcp = TcpStream::connect(address)
        .await
        .map_err(|e| format!("connecting to {address}: {e}"))?;
    // Requests are one small frame each, answered before the next: no batching to wait for.
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// `tcp` with TLS on it when `kafka` uses TLS.
async fn secure(
    tcp: TcpStream,
    address: &str,
    kafka: &KafkaConfig,
) -> Result<Box<dyn Transport>, WireError> {
    match kafka.wire_tls() {
        Some(tls) => Ok(Box::new(
            super::tls::connect(tcp, address, tls.clone()).await?,
        )),
        None => Ok(Box::new(tcp)),
    }
}

fn api_key<R: Request>() -> Result<ApiKey, WireError> {
    ApiKey::try_from(R::KEY).map_err(|_| format!("unknown API key {}", R::KEY))
}
