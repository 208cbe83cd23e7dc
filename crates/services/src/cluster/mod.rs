//! The cluster's topics, records and consumer groups, over the Kafka protocol: what the
//! topic REST API serves. Like every service it uses rdkafka (plus the raw protocol for what
//! rdkafka does not expose or cannot do safely), so it works against any Kafka cluster.
//!
//! # Layout
//!
//! - [`Cluster`] (here): the handle, its clients and the checks every operation makes on its
//!   parameters before it sends anything.
//! - [`ClusterError`]: why an operation failed.
//! - `topics`: list, describe, create and delete topics (Metadata, ListOffsets,
//!   DescribeConfigs, CreateTopics, DeleteTopics).
//! - `topic_admin`: change a topic's configs (IncrementalAlterConfigs, over `wire`), add
//!   partitions (CreatePartitions), purge records (DeleteRecords); which topics the services
//!   keep ([`managed_topic_owner`]).
//! - `records`: send JSON records and read a page of one partition.
//! - `fetch`: reading one partition with raw Fetch requests, stepping past batches that
//!   cannot be read; the tracker also asks it about a partition its consumer is stuck on.
//! - `batches`: Kafka's record batch format, read with a cap on what a batch may decompress
//!   to (librdkafka has none).
//! - `search`: records across a topic: a page of every partition merged by timestamp
//!   (newest or oldest first, filtered, bounded in bytes and time, resumable with a cursor),
//!   and a live tail; it reads through `fetch` as `records` does.
//! - `groups`: list and describe consumer groups, their committed offsets and lag.
//! - `group_admin`: reset a group's offsets (ListOffsets, by time too, and OffsetCommit),
//!   delete a group (DeleteGroups) or its offsets of a topic (OffsetDelete, over `wire`).
//! - `log_dirs`: partition sizes from DescribeLogDirs, which rdkafka does not expose.
//! - `wire`: the minimal Kafka-protocol client `log_dirs`, `fetch`, `topic_admin` and
//!   `group_admin` use, secured by `tls` and `sasl` as the services' rdkafka clients are;
//!   [`kafka::wait_for_broker`](crate::kafka::wait_for_broker) asks it whether a broker
//!   answers at all.
//! - [`view`]: what the operations take and report.
//!
//! Every rdkafka call that blocks runs on tokio's blocking pool; admin requests use
//! rdkafka's futures.

pub(crate) mod batches;
mod error;
pub(crate) mod fetch;
mod group_admin;
mod groups;
mod log_dirs;
mod records;
mod sasl;
mod search;
pub(crate) mod tls;
mod topic_admin;
mod topics;
pub mod view;
pub(crate) mod wire;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::FutureProducer;

pub use self::error::ClusterError;
pub use self::groups::validate_group_id;
pub use self::records::read_limit;
pub use self::search::{
    search_limit, RecordTail, DEFAULT_SEARCH_LIMIT, MAX_SCAN_BYTES, MAX_SEARCH_LIMIT,
    MAX_TAIL_RECORDS_PER_POLL, SCAN_TIME,
};
pub use self::topic_admin::managed_topic_owner;
use self::wire::Connection;
use crate::kafka::{bootstrap_addresses, check_topic_name, ClientError, CreateClient};
use crate::KafkaConfig;

/// Partitions of a created topic when the request names none.
pub const DEFAULT_PARTITIONS: i32 = 1;
/// Most partitions a topic created through the API may have: not a Kafka rule, but each
/// partition is files and a directory on a single node, and 8,000 of them took the embedded
/// broker longer than the request timeout to create (and listing them as long again).
pub const MAX_PARTITIONS: i32 = 1_000;
/// Most replicas a create may ask for: the Kafka client's own limit (it refuses more before
/// sending anything).
pub const MAX_REPLICATION_FACTOR: i16 = 10_000;
/// Most records one produce request may carry.
pub const MAX_RECORDS_PER_PRODUCE: usize = 500;
/// Records in a page when the request names no limit.
pub const DEFAULT_READ_LIMIT: usize = 50;
/// Most records one page may hold.
pub const MAX_READ_LIMIT: usize = 1000;

/// How long a metadata, offsets or admin request may take before the operation fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long partition sizes may take; past it they are reported unknown.
const SIZES_TIMEOUT: Duration = Duration::from_secs(2);
/// How long reading a page may take; a page holds what arrived by then.
const READ_DEADLINE: Duration = Duration::from_secs(2);

/// A handle on the cluster: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Clients>,
}

/// The long-lived clients every operation shares.
struct Clients {
    kafka: KafkaConfig,
    admin: AdminClient<DefaultClientContext>,
    /// Metadata, offsets and group lists; never joins a group or asks for topic creation.
    metadata: BaseConsumer,
    /// acks=all, idempotent.
    producer: FutureProducer,
}

impl std::fmt::Debug for Cluster {
    // rdkafka's clients have no Debug; where they point is what matters.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("bootstrap_servers", &self.inner.kafka.bootstrap_servers)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Creates the clients. Nothing is sent yet: an unreachable cluster shows up as failing
    /// operations, not here.
    pub fn new(kafka: &KafkaConfig) -> Result<Cluster, ClientError> {
        let mut admin = kafka.client_config("cluster-admin");
        admin.set("allow.auto.create.topics", "false");
        let mut metadata = kafka.client_config("cluster-metadata");
        metadata.set("allow.auto.create.topics", "false");
        let mut producer = kafka.durable_producer_config("cluster-producer");
        producer
            // Records of one request go out together; nothing waits for more.
            .set("linger.ms", "1")
            // Producing never creates a topic; the route checks that it exists.
            .set("allow.auto.create.topics", "false")
            // An HTTP client will not wait a minute for an answer.
            .set("message.timeout.ms", "30000");
        Ok(Cluster {
            inner: Arc::new(Clients {
                kafka: kafka.clone(),
                admin: admin.create_client()?,
                metadata: metadata.create_client()?,
                producer: producer.create_client()?,
            }),
        })
    }

    fn kafka(&self) -> &KafkaConfig {
        &self.inner.kafka
    }

    /// Runs a blocking rdkafka call on tokio's blocking pool with this handle.
    async fn blocking<T, F>(&self, call: F) -> Result<T, ClusterError>
    where
        F: FnOnce(&Cluster) -> Result<T, ClusterError> + Send + 'static,
        T: Send + 'static,
    {
        let cluster = self.clone();
        tokio::task::spawn_blocking(move || call(&cluster))
            .await
            .unwrap_or_else(|e| Err(ClusterError::Interrupted(e)))
    }
}

/// Signs in once with `kafka`'s settings at the first bootstrap server that answers. A
/// service calls it at start so that a wrong password shows as the broker's own refusal at
/// once; its rdkafka clients would only retry and log.
///
/// A refused sign-in is [`ClientError::SignInRefused`], with the broker's message: the
/// credentials are wrong, and every broker of the cluster would say so. No server answering
/// (unreachable, a TLS handshake failing) is [`ClientError::SignInUnreachable`], with each
/// server's reason.
pub async fn check_sign_in(kafka: &KafkaConfig, timeout: Duration) -> Result<(), ClientError> {
    let mut unanswered = Vec::new();
    for address in bootstrap_addresses(&kafka.bootstrap_servers) {
        match Connection::connect(&address, kafka, timeout).await {
            Ok(mut connection) => {
                return connection
                    .sign_in(&address, kafka, timeout)
                    .await
                    .map_err(ClientError::SignInRefused)
            }
            Err(reason) => unanswered.push(reason),
        }
    }
    Err(ClientError::SignInUnreachable(unanswered.join("; ")))
}

/// Kafka's own topics (`__consumer_offsets`, ...) and the services' state topics.
pub fn is_internal_topic(name: &str) -> bool {
    name.starts_with("__") || name.starts_with("freshet.")
}

/// A topic name from a request, checked against Kafka's rules.
pub fn validate_topic_name(name: &str) -> Result<(), ClusterError> {
    check_topic_name(name).map_err(ClusterError::Invalid)
}

/// A partition number from a request: not negative.
pub fn validate_partition(partition: i32) -> Result<(), ClusterError> {
    if partition < 0 {
        return Err(ClusterError::Invalid(format!(
            "partition {partition} is negative; partitions are numbered from 0"
        )));
    }
    Ok(())
}

fn not_found_topic(name: &str) -> ClusterError {
    ClusterError::NotFound(format!("topic {name:?} does not exist"))
}
