//! One module per Kafka API. Each exposes `handle(ctx, request) -> response` (Produce splits
//! into `start` and `finish`, see its docs). Handlers fill only the fields that exist in
//! `ctx.version`; the codec refuses to encode anything else.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use freshet_security::acl::{Operation, ResourceType, CLUSTER_NAME};
use freshet_security::Principal;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::listener::Listener;
use crate::topics::Topic;
use crate::Broker;

pub mod acls;
pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_configs;
pub mod api_versions;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_transactions;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod produce;
pub mod scram_credentials;
pub mod sync_group;
pub mod transactions;
pub mod txn_offset_commit;

/// Runs `work` on tokio's blocking pool with its own copy of the context, for work that waits
/// for the disk: on an async worker it would stall every connection scheduled there.
pub(crate) async fn on_blocking_pool<T, F>(ctx: &RequestContext, work: F) -> T
where
    T: Send + 'static,
    F: FnOnce(RequestContext) -> T + Send + 'static,
{
    let ctx = ctx.clone();
    run_blocking(move || work(ctx)).await
}

/// Runs `work` on tokio's blocking pool and waits for it; a panic in it resumes here, as if
/// it had run inline.
pub(crate) async fn run_blocking<T, F>(work: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(join) => match join.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Only a runtime shutting down cancels a blocking task, and it drops this future
            // with it.
            Err(cancelled) => panic!("a blocking handler task was cancelled: {cancelled}"),
        },
    }
}

/// What every handler gets besides its request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub broker: Arc<Broker>,
    pub version: i16,
    pub client_id: String,
    pub peer: SocketAddr,
    /// Who the request acts as (see [`crate::session::Session`]).
    pub principal: Arc<Principal>,
    /// The listener the request came in on: Metadata and FindCoordinator answer with its
    /// advertised address, as Kafka answers with the endpoint of the client's listener.
    pub listener: Arc<Listener>,
}

impl RequestContext {
    /// Whether the request's principal may do `operation` on the named resource. Without
    /// `--authorizer acl` everything is allowed.
    pub fn may(&self, operation: Operation, resource_type: ResourceType, name: &str) -> bool {
        match &self.broker.authorizer {
            None => true,
            Some(authorizer) => authorizer.authorize(
                &self.principal,
                self.peer.ip(),
                operation,
                resource_type,
                name,
            ),
        }
    }

    pub fn may_on_topic(&self, operation: Operation, topic: &str) -> bool {
        self.may(operation, ResourceType::Topic, topic)
    }

    pub fn may_on_group(&self, operation: Operation, group: &str) -> bool {
        self.may(operation, ResourceType::Group, group)
    }

    pub fn may_on_cluster(&self, operation: Operation) -> bool {
        self.may(operation, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// Whether some resource of the type allows `operation` (idempotent producers may write
    /// if they may write any topic, as in Kafka since KIP-679).
    pub fn may_on_any(&self, operation: Operation, resource_type: ResourceType) -> bool {
        match &self.broker.authorizer {
            None => true,
            Some(authorizer) => {
                authorizer.authorize_any(&self.principal, self.peer.ip(), operation, resource_type)
            }
        }
    }

    /// Kafka's authorized-operations bit field for the resource: every operation of its type
    /// without an authorizer, the allowed ones with.
    pub fn authorized_operations(&self, resource_type: ResourceType, name: &str) -> i32 {
        match &self.broker.authorizer {
            None => resource_type
                .operations()
                .iter()
                .fold(0, |bits, op| bits | (1 << op.code())),
            Some(authorizer) => authorizer.authorized_operations(
                &self.principal,
                self.peer.ip(),
                resource_type,
                name,
            ),
        }
    }
}

/// A request, or one resource or partition of it, refused: the Kafka error clients act on
/// and the message they print.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub error: kafka_protocol::ResponseError,
    pub message: String,
}

impl Refusal {
    pub(crate) fn new(error: kafka_protocol::ResponseError, message: impl Into<String>) -> Refusal {
        Refusal {
            error,
            message: message.into(),
        }
    }

    /// The error's number on the wire.
    pub(crate) fn code(&self) -> i16 {
        self.error.code()
    }
}

impl From<crate::topics::TopicError> for Refusal {
    fn from(error: crate::topics::TopicError) -> Refusal {
        Refusal::new(error.response_error(), error.to_string())
    }
}

/// TOPIC_AUTHORIZATION_FAILED with the message Kafka clients print.
pub(crate) fn topic_denied(topic: &str, operation: &str) -> Refusal {
    Refusal::new(
        kafka_protocol::ResponseError::TopicAuthorizationFailed,
        format!("not authorized to {operation} topic {topic}"),
    )
}

/// The value of an authorized-operations field the client did not ask for (Kafka's
/// `Integer.MIN_VALUE`).
pub const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

/// A `StrBytes` from any string.
pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Every topic by its id, for requests that name topics by id (Produce v13+, Fetch v13+,
/// Metadata v10+, DeleteTopics v6+). Built once per request that needs it: the registry is
/// keyed by name.
pub(crate) fn topics_by_id(ctx: &RequestContext) -> HashMap<Uuid, Arc<Topic>> {
    ctx.broker
        .topics
        .all()
        .into_iter()
        .map(|topic| (topic.id, topic))
        .collect()
}
