//! From a raw frame to a started request: header decoding, version checks, routing.
//!
//! Every request is either answered (its response future goes into the connection's ordered
//! queue), not answered (Produce with acks=0), or the connection is closed because the bytes
//! cannot be a request this broker implements — Kafka does the same for garbage, unknown API
//! keys and unsupported versions of anything but ApiVersions.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::handlers::{self, RequestContext};
use crate::session::Session;
use crate::{sasl, versions, Broker};

/// A response that will be ready later: the encoded frame, size prefix included.
pub type PendingResponse = Pin<Box<dyn Future<Output = Bytes> + Send>>;

/// What became of a request once started.
pub enum Started {
    Respond(PendingResponse),
    NoResponse,
    Close(String),
    /// Send this response, then close (a failed SASL authentication).
    RespondAndClose(Bytes, String),
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Started::Respond(_) => f.write_str("Respond(..)"),
            Started::NoResponse => f.write_str("NoResponse"),
            Started::Close(reason) => f.debug_tuple("Close").field(reason).finish(),
            Started::RespondAndClose(_, reason) => {
                f.debug_tuple("RespondAndClose").field(reason).finish()
            }
        }
    }
}

/// A decoded request header plus what is needed to answer.
struct Header {
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: String,
}

/// Decodes the header and starts the request, on behalf of the connection's `session`.
pub async fn start(broker: &Arc<Broker>, mut frame: Bytes, session: &mut Session) -> Started {
    let header = match decode_header(&mut frame) {
        Ok(header) => header,
        Err(reason) => return Started::Close(reason),
    };
    broker.metrics.count_request(header.api);
    if !versions::is_supported(header.api, header.version) {
        if header.api == ApiKey::ApiVersions {
            // Clients probe with their newest ApiVersions; answering v0 with the error and our
            // key list lets them retry with a version we support.
            let body = handlers::api_versions::unsupported_version_response();
            return ready(encode_frame(
                ApiKey::ApiVersions,
                0,
                header.correlation_id,
                &body,
            ));
        }
        return Started::Close(format!(
            "unsupported version {} of {:?} (UNSUPPORTED_VERSION)",
            header.version, header.api
        ));
    }
    match header.api {
        ApiKey::SaslHandshake => return sasl_handshake(session, &header, frame),
        ApiKey::SaslAuthenticate => {
            return sasl_authenticate(broker, session, &header, frame).await
        }
        ApiKey::ApiVersions => {}
        // Kafka closes a connection that skips authentication on a SASL listener.
        api if !session.is_authenticated() => {
            return Started::Close(format!(
                "{api:?} request before SASL authentication on a {} listener",
                session.listener.protocol()
            ))
        }
        _ => {}
    }
    let ctx = RequestContext {
        broker: broker.clone(),
        version: header.version,
        client_id: header.client_id.clone(),
        peer: session.peer,
        principal: session.principal.clone(),
        listener: session.listener.clone(),
    };
    route(ctx, &header, frame).await
}

fn sasl_handshake(session: &mut Session, header: &Header, mut frame: Bytes) -> Started {
    match decode_body::<SaslHandshakeRequest>(&mut frame, header) {
        Ok(request) => {
            let response = sasl::handshake(session, header.version, &request);
            ready(encode_frame(
                header.api,
                header.version,
                header.correlation_id,
                &response,
            ))
        }
        Err(reason) => Started::Close(reason),
    }
}

/// One SASL step, answered at once: the next request depends on its outcome.
async fn sasl_authenticate(
    broker: &Arc<Broker>,
    session: &mut Session,
    header: &Header,
    mut frame: Bytes,
) -> Started {
    match decode_body::<SaslAuthenticateRequest>(&mut frame, header) {
        Ok(request) => {
            let outcome = sasl::authenticate(broker, session, request).await;
            let frame = encode_frame(
                header.api,
                header.version,
                header.correlation_id,
                &outcome.response,
            );
            if outcome.close {
                Started::RespondAndClose(frame, "SASL authentication failed".to_owned())
            } else {
                ready(frame)
            }
        }
        Err(reason) => Started::Close(reason),
    }
}

/// Decodes one request body of type `R`, or says why it could not.
fn decode_body<R: Decodable>(frame: &mut Bytes, header: &Header) -> Result<R, String> {
    R::decode(frame, header.version).map_err(|e| {
        format!(
            "malformed {:?} v{} request body: {e:#}",
            header.api, header.version
        )
    })
}

/// Decodes the body, runs the handler to completion now (its effects are ordered with the
/// connection's other requests) and answers.
macro_rules! inline {
    ($ctx:expr, $header:expr, $frame:expr, $module:ident) => {
        inline!($ctx, $header, $frame, $module::handle)
    };
    ($ctx:expr, $header:expr, $frame:expr, $module:ident :: $function:ident) => {{
        match decode_body(&mut $frame, $header) {
            Ok(request) => {
                let response = handlers::$module::$function(&$ctx, request).await;
                ready(encode_frame(
                    $header.api,
                    $header.version,
                    $header.correlation_id,
                    &response,
                ))
            }
            Err(reason) => Started::Close(reason),
        }
    }};
}

/// [`inline!`] for handlers whose work waits for the disk (topic directories and metadata
/// written and fsynced): the handler runs to completion on tokio's blocking pool, so a slow
/// disk stalls this request and not the other connections sharing the async worker. The
/// connection still waits for it before reading on, as for an inline handler.
macro_rules! on_blocking_pool {
    ($ctx:expr, $header:expr, $frame:expr, $module:ident) => {
        on_blocking_pool!($ctx, $header, $frame, $module::handle)
    };
    ($ctx:expr, $header:expr, $frame:expr, $module:ident :: $function:ident) => {{
        match decode_body(&mut $frame, $header) {
            Ok(request) => {
                let response = handlers::on_blocking_pool(&$ctx, move |ctx| {
                    tokio::runtime::Handle::current()
                        .block_on(handlers::$module::$function(&ctx, request))
                })
                .await;
                ready(encode_frame(
                    $header.api,
                    $header.version,
                    $header.correlation_id,
                    &response,
                ))
            }
            Err(reason) => Started::Close(reason),
        }
    }};
}

/// Decodes the body and runs the whole handler in the response queue, for requests that wait
/// (long polls and group barriers) and must not hold up the connection.
macro_rules! deferred {
    ($ctx:expr, $header:expr, $frame:expr, $module:ident) => {{
        match decode_body(&mut $frame, $header) {
            Ok(request) => {
                let (api, version, correlation_id) =
                    ($header.api, $header.version, $header.correlation_id);
                Started::Respond(Box::pin(async move {
                    let response = handlers::$module::handle(&$ctx, request).await;
                    encode_frame(api, version, correlation_id, &response)
                }))
            }
            Err(reason) => Started::Close(reason),
        }
    }};
}

async fn route(ctx: RequestContext, header: &Header, mut frame: Bytes) -> Started {
    match header.api {
        ApiKey::Produce => match decode_body(&mut frame, header) {
            Ok(request) => {
                let (api, version, correlation_id) =
                    (header.api, header.version, header.correlation_id);
                match handlers::produce::start(&ctx, request).await {
                    Some(waiting) => Started::Respond(Box::pin(async move {
                        let response = waiting.finish().await;
                        encode_frame(api, version, correlation_id, &response)
                    })),
                    None => Started::NoResponse,
                }
            }
            Err(reason) => Started::Close(reason),
        },
        ApiKey::Fetch => deferred!(ctx, header, frame, fetch),
        ApiKey::JoinGroup => deferred!(ctx, header, frame, join_group),
        ApiKey::SyncGroup => deferred!(ctx, header, frame, sync_group),
        ApiKey::ApiVersions => inline!(ctx, header, frame, api_versions),
        ApiKey::Metadata => inline!(ctx, header, frame, metadata),
        ApiKey::ListOffsets => inline!(ctx, header, frame, list_offsets),
        ApiKey::OffsetCommit => inline!(ctx, header, frame, offset_commit),
        ApiKey::OffsetFetch => inline!(ctx, header, frame, offset_fetch),
        ApiKey::FindCoordinator => inline!(ctx, header, frame, find_coordinator),
        ApiKey::Heartbeat => inline!(ctx, header, frame, heartbeat),
        ApiKey::LeaveGroup => inline!(ctx, header, frame, leave_group),
        ApiKey::DescribeGroups => inline!(ctx, header, frame, describe_groups),
        ApiKey::ListGroups => inline!(ctx, header, frame, list_groups),
        ApiKey::DeleteGroups => inline!(ctx, header, frame, delete_groups),
        ApiKey::OffsetDelete => inline!(ctx, header, frame, offset_delete),
        ApiKey::ConsumerGroupHeartbeat => inline!(ctx, header, frame, consumer_group_heartbeat),
        ApiKey::ConsumerGroupDescribe => inline!(ctx, header, frame, consumer_group_describe),
        ApiKey::CreateTopics => on_blocking_pool!(ctx, header, frame, create_topics),
        ApiKey::DeleteTopics => on_blocking_pool!(ctx, header, frame, delete_topics),
        ApiKey::DeleteRecords => inline!(ctx, header, frame, delete_records),
        ApiKey::InitProducerId => inline!(ctx, header, frame, init_producer_id),
        ApiKey::DescribeConfigs => inline!(ctx, header, frame, describe_configs),
        ApiKey::AlterConfigs => on_blocking_pool!(ctx, header, frame, alter_configs::alter),
        ApiKey::IncrementalAlterConfigs => {
            on_blocking_pool!(ctx, header, frame, alter_configs::incremental)
        }
        ApiKey::CreatePartitions => {
            on_blocking_pool!(ctx, header, frame, create_partitions)
        }
        ApiKey::DescribeLogDirs => inline!(ctx, header, frame, describe_log_dirs),
        ApiKey::DescribeCluster => inline!(ctx, header, frame, describe_cluster),
        ApiKey::AddPartitionsToTxn => inline!(ctx, header, frame, add_partitions_to_txn),
        ApiKey::AddOffsetsToTxn => inline!(ctx, header, frame, add_offsets_to_txn),
        ApiKey::EndTxn => inline!(ctx, header, frame, end_txn),
        ApiKey::TxnOffsetCommit => inline!(ctx, header, frame, txn_offset_commit),
        ApiKey::DescribeTransactions => inline!(ctx, header, frame, describe_transactions),
        ApiKey::ListTransactions => inline!(ctx, header, frame, list_transactions),
        ApiKey::DescribeProducers => inline!(ctx, header, frame, describe_producers),
        ApiKey::CreateAcls => inline!(ctx, header, frame, acls::create),
        ApiKey::DescribeAcls => inline!(ctx, header, frame, acls::describe),
        ApiKey::DeleteAcls => inline!(ctx, header, frame, acls::delete),
        ApiKey::DescribeUserScramCredentials => {
            inline!(ctx, header, frame, scram_credentials::describe)
        }
        ApiKey::AlterUserScramCredentials => inline!(ctx, header, frame, scram_credentials::alter),
        other => Started::Close(format!("API {other:?} is not implemented")),
    }
}

fn ready(frame: Bytes) -> Started {
    Started::Respond(Box::pin(std::future::ready(frame)))
}

/// Reads the request header. Never panics on short or hostile input.
fn decode_header(frame: &mut Bytes) -> Result<Header, String> {
    if frame.len() < 8 {
        return Err(format!(
            "frame of {} bytes is too short for a request header",
            frame.len()
        ));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api = ApiKey::try_from(key).map_err(|_| format!("unknown API key {key}"))?;
    let header = RequestHeader::decode(frame, api.request_header_version(version))
        .map_err(|e| format!("malformed request header: {e:#}"))?;
    Ok(Header {
        api,
        version,
        correlation_id: header.correlation_id,
        client_id: header
            .client_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
    })
}

/// Encodes a size-prefixed response frame: header then body.
///
/// Encoding can only fail if a handler set a field the version does not have — a bug in this
/// broker, not in the client. It is logged and answered with an empty frame body so the client
/// times out and reconnects instead of the broker panicking.
pub fn encode_frame<R: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> Bytes {
    // Sizing the buffer up front matters for fetch responses of tens of MB: growing it by
    // doubling would copy every record batch several times.
    let body_size = body.compute_size(version).unwrap_or(0);
    let mut buf = BytesMut::with_capacity(64 + body_size);
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let encoded = header
        .encode(&mut buf, api.response_header_version(version))
        .and_then(|()| body.encode(&mut buf, version));
    if let Err(e) = encoded {
        tracing::error!(?api, version, error = %e, "could not encode response (broker bug)");
        buf.truncate(4);
        let _ = header.encode(&mut buf, api.response_header_version(version));
    }
    let size = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_unknown_headers_are_errors_not_panics() {
        for bytes in [
            &[][..],
            &[0, 18],
            &[0, 18, 0, 3, 0, 0, 0],
            &[0x7f, 0x7f, 0, 0, 0, 0, 0, 1],
        ] {
            assert!(decode_header(&mut Bytes::copy_from_slice(bytes)).is_err());
        }
    }
}
