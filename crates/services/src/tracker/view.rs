//! What a tracker node reports: the types the HTTP API serialises. They are plain data,
//! computed by [`TrackerHandle`](super::TrackerHandle) from the node's state.

use serde::Serialize;
use utoipa::ToSchema;

/// `GET /api/v1/unique-ips`: this node's and the global distinct-IP counts and how fresh they
/// are.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UniqueIps {
    /// This node's id (a UUID chosen at start).
    pub node_id: String,
    /// Consumer group the tracker nodes share.
    pub group: String,
    /// Distinct IPs in the partitions this node owns right now.
    pub node_count: u64,
    /// Exact distinct IPs across all partitions (union of every partition's checkpointed and
    /// live set).
    pub global_count: u64,
    /// What a HyperLogLog (p = 14) would have said for the global count.
    pub global_estimate: u64,
    /// `(global_estimate - global_count) / global_count`, in percent.
    pub estimate_error_percent: f64,
    /// Partitions of the input topic.
    pub partitions_total: u32,
    /// Partitions with a checkpoint or owned by this node (those the global count covers).
    pub partitions_covered: u32,
    /// Partitions this node consumes.
    pub partitions_owned: Vec<i32>,
    /// Tracker nodes that wrote a heartbeat recently (including this one).
    pub nodes_seen: Vec<String>,
    /// Milliseconds since the newest checkpoint or node heartbeat this node has read was
    /// written (null before the first). Each node writes its heartbeat after its checkpoints
    /// every checkpoint interval, so while nodes run this stays within about an interval,
    /// events or not; it grows when no node is writing.
    pub checkpoint_age_ms: Option<u64>,
    /// Records not yet consumed in this node's partitions (null when unknown).
    pub consumer_lag: Option<i64>,
    /// Valid events counted over all partitions (as of their checkpoints or live).
    pub events_counted: u64,
    /// Events rejected to the dead-letter topic over all partitions.
    pub events_rejected: u64,
}

/// Width of an event-time window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Minute,
    Hour,
}

/// Distinct IPs whose events fell in one event-time window.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WindowCount {
    /// Window start, `YYYY-MM-DDTHH:MM:00.000Z`.
    pub start: String,
    /// Window start in Unix milliseconds.
    pub start_ms: i64,
    /// Exact distinct IPs in the window, across all partitions.
    pub distinct_ips: u64,
}

/// Distinct IPs that sent events with one error code.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorCodeCount {
    pub error_code: u8,
    /// Exact distinct IPs that reported this code, across all partitions.
    pub distinct_ips: u64,
}

/// One input partition as this node sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PartitionStatus {
    pub partition: i32,
    /// Whether this node consumes the partition now.
    pub owned: bool,
    /// Distinct IPs in this partition.
    pub distinct_ips: u64,
    /// Input offset the newest checkpoint covers (events below it are in the checkpoint).
    pub checkpoint_offset: Option<i64>,
    /// Node that wrote the newest checkpoint.
    pub checkpoint_node: Option<String>,
    /// Input offset this node started from when it last gained the partition (its newest
    /// checkpoint then; 0 if there was none).
    pub resumed_from: Option<i64>,
    /// Valid events counted in this partition.
    pub events: u64,
    /// Events rejected to the dead-letter topic.
    pub rejected: u64,
    /// Bytes of this partition's records in the state topic that no tombstone has removed,
    /// as this node has read them (before compression; compaction may have dropped some
    /// already).
    pub state_bytes: u64,
    /// Bytes a snapshot of this partition's sets takes now.
    pub snapshot_bytes: u64,
    /// The claim (epoch) under which the partition's newest checkpoint was written.
    pub checkpoint_epoch: Option<u64>,
}
