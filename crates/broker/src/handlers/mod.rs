//! One module per Kafka API. Each exposes `handle(ctx, request) -> response` (Produce splits
//! into `start` and `finish`, see its docs). Handlers fill only the fields that exist in
//! `ctx.version`; the codec refuses to encode anything else.

use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::protocol::StrBytes;

use crate::Broker;

pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_fetch;
pub mod produce;
pub mod sync_group;

/// What every handler gets besides its request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub broker: Arc<Broker>,
    pub version: i16,
    pub client_id: String,
    pub peer: SocketAddr,
}

/// A `StrBytes` from any string.
pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
