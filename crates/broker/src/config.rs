//! Broker configuration, filled by the CLI (`freshet broker --help`) or by tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use freshet_coordinator::CoordinatorConfig;
use freshet_log::{Durability, LogConfig};

/// Everything the broker needs to start.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Root of all persistent state: topics, committed offsets, producer ids, cluster id.
    pub data_dir: PathBuf,
    /// The address put in Metadata and FindCoordinator responses. `None` means the address
    /// the listener is bound to (an IP literal, so clients never resolve `localhost` to ::1).
    pub advertised_addr: Option<SocketAddr>,
    /// The broker's node id in Metadata responses.
    pub node_id: i32,
    /// Create unknown topics on Metadata when the client allows it (as Kafka: never on
    /// Produce, never with an invalid name, not while the disk is full).
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic, or of CreateTopics with `num_partitions = -1`.
    pub default_partitions: i32,
    /// Frames larger than this are refused before they are buffered; the connection is closed.
    pub max_request_bytes: usize,
    /// Kafka's `queued.max.request.bytes`: bytes of requests received but not yet answered,
    /// across all connections. Past it, connections stop reading until responses go out.
    pub queued_max_request_bytes: usize,
    /// Kafka's `connections.max.idle.ms`: a connection with no request in flight that sends
    /// nothing for this long is closed.
    pub connections_max_idle: Duration,
    /// A request frame must arrive whole within this time of its first byte, or the
    /// connection is closed (slow or stalled senders).
    pub request_read_timeout: Duration,
    /// Kafka's `max.connections`: connections past it are closed as soon as accepted.
    /// `None` derives it from the open-file limit, keeping descriptors for the log.
    pub max_connections: Option<usize>,
    /// Kafka's `max.connections.per.ip`: connections from one address past it are closed as
    /// soon as accepted.
    pub max_connections_per_ip: usize,
    /// Log settings of a topic that overrides nothing.
    pub log_defaults: LogConfig,
    /// How often retention and compaction run.
    pub log_cleanup_interval: Duration,
    /// Consumer-group coordinator settings.
    pub coordinator: CoordinatorConfig,
}

impl BrokerConfig {
    /// Defaults for a broker keeping its state in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        BrokerConfig {
            data_dir: data_dir.into(),
            advertised_addr: None,
            node_id: 1,
            auto_create_topics: true,
            default_partitions: 3,
            max_request_bytes: 100 * 1024 * 1024,
            queued_max_request_bytes: 256 * 1024 * 1024,
            connections_max_idle: Duration::from_secs(600),
            request_read_timeout: Duration::from_secs(30),
            max_connections: None,
            max_connections_per_ip: usize::MAX,
            log_defaults: LogConfig::default(),
            log_cleanup_interval: Duration::from_secs(30),
            coordinator: CoordinatorConfig::default(),
        }
    }

    /// Trades durability for speed: data is fsynced every `interval` instead of before each
    /// acknowledgement, and consumers may see data that is not yet on disk.
    pub fn with_flush_interval(mut self, interval: Duration) -> Self {
        self.log_defaults.durability = Durability::Interval(interval);
        self
    }
}
