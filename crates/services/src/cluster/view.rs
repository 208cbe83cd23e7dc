//! What the cluster operations take and report: the request bodies and answers of the topic
//! and group routes. They are plain data; [`Cluster`](super::Cluster) fills them from what
//! the cluster answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /api/v1/topics`: every topic, by name.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TopicList {
    pub topics: Vec<TopicSummary>,
}

/// One topic of the list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TopicSummary {
    pub name: String,
    pub partitions: u32,
    /// Kafka's own topics (`__` prefix) and Freshet's service state (`freshet.` prefix).
    pub internal: bool,
    /// Records the partitions hold now: the sum of `latest - earliest` offsets (a compacted
    /// topic holds fewer, whose offsets have gaps).
    pub records: i64,
    /// Sum of the partitions' latest offsets: records ever written, including those retention
    /// or deletion removed since.
    pub latest_offset_sum: i64,
}

/// `GET /api/v1/topics/{name}` and the answer of a create.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TopicDescription {
    pub name: String,
    pub internal: bool,
    /// In partition order.
    pub partitions: Vec<PartitionDescription>,
    /// Sum over the partitions of `latest_offset - earliest_offset`.
    pub records: i64,
    /// Bytes on disk of all partitions (leader replicas), or null when a broker did not say
    /// (it lacks DescribeLogDirs, or did not answer in time).
    #[schema(required = true)]
    pub size_bytes: Option<u64>,
    /// Effective topic configs (overrides and defaults), by Kafka config name.
    pub configs: BTreeMap<String, String>,
}

/// One partition of a topic.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PartitionDescription {
    pub partition: i32,
    /// Node id of the leader (-1 while there is none).
    pub leader: i32,
    /// Node ids of the replicas.
    pub replicas: Vec<i32>,
    /// Node ids of the replicas in sync with the leader.
    pub in_sync_replicas: Vec<i32>,
    /// Offset of the first record still stored (the log start offset).
    pub earliest_offset: i64,
    /// Offset the next record will get (the high watermark).
    pub latest_offset: i64,
    /// `latest_offset - earliest_offset`.
    pub records: i64,
    /// Bytes on disk of the leader's replica, or null when its broker did not say.
    #[schema(required = true)]
    pub size_bytes: Option<u64>,
}

/// `POST /api/v1/topics`: the topic to create.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTopic {
    /// 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
    #[schema(schema_with = new_topic_name_schema)]
    pub name: String,
    /// Partitions (default 1, at most 1000).
    #[schema(default = 1, minimum = 1, maximum = 1000)]
    pub partitions: Option<i32>,
    /// Replicas of each partition: -1 (the default) for the cluster's default, or 1 to
    /// 10000. More than the cluster has brokers is a 409 (Freshet's embedded broker is one).
    #[schema(schema_with = replication_factor_schema)]
    pub replication_factor: Option<i16>,
    /// Topic config overrides, e.g. `{"cleanup.policy": "compact"}`.
    #[serde(default)]
    #[schema(schema_with = topic_configs_schema)]
    pub configs: BTreeMap<String, String>,
}

/// The common topic configs, each with a pattern of values Freshet's embedded broker takes,
/// for the spec. The broker takes every topic config of Kafka 4.x (`docs/COMPATIBILITY.md`)
/// and another cluster (`--bootstrap-servers`) its own; the API passes every name on and the
/// cluster decides. The patterns are plain decimal forms within the broker's ranges.
pub const TOPIC_CONFIG_VALUES: &[(&str, &str, &str)] = &[
    (
        "cleanup.policy",
        "^(delete|compact|compact,delete|delete,compact)$",
        "What happens to old segments: delete, compact or both",
    ),
    (
        "retention.ms",
        "^(-1|[0-9]{1,18})$",
        "How long records are kept, in ms; -1 forever",
    ),
    (
        "retention.bytes",
        "^(-1|[0-9]{1,18})$",
        "Size a partition is trimmed to, in bytes; -1 no limit",
    ),
    (
        "segment.bytes",
        "^(102[4-9]|10[3-9][0-9]|1[1-9][0-9]{2}|[2-9][0-9]{3}|[1-9][0-9]{4,8})$",
        "Size at which the active segment is rolled, at least 1024",
    ),
    (
        "segment.ms",
        "^[1-9][0-9]{0,17}$",
        "Age at which the active segment is rolled, in ms, at least 1",
    ),
    (
        "delete.retention.ms",
        "^[0-9]{1,18}$",
        "How long compaction keeps tombstones, in ms",
    ),
    (
        "max.message.bytes",
        "^[0-9]{1,9}$",
        "Largest record batch accepted, in bytes",
    ),
];

fn new_topic_name_schema() -> utoipa::openapi::schema::Object {
    crate::kafka::topic_name_schema()
        .examples(["orders"])
        .build()
}

/// -1, or 1 to 10000 (0 and other negatives are refused); null is the default.
fn replication_factor_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .enum_values(Some([-1])),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .maximum(Some(super::MAX_REPLICATION_FACTOR)),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(
            "Replicas of each partition: -1 (the default) for the cluster's default, or 1 \
             to 10000. More than the cluster has brokers is a 409 (Freshet's embedded broker \
             is one).",
        ))
        .default(Some(serde_json::Value::from(-1)))
        .build()
        .into()
}

/// An object of the configs in [`TOPIC_CONFIG_VALUES`], each a string matching its pattern.
fn topic_configs_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
    TOPIC_CONFIG_VALUES
        .iter()
        .fold(
            ObjectBuilder::new().schema_type(Type::Object),
            |object, (name, pattern, description)| {
                object.property(
                    *name,
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(*pattern))
                        .description(Some(*description)),
                )
            },
        )
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .description(Some(
            "Topic config overrides, e.g. `{\"cleanup.policy\": \"compact\"}`: the configs \
             of Freshet's broker. With `--bootstrap-servers`, any config the cluster takes is \
             passed on.",
        ))
        .build()
}

/// `POST /api/v1/topics/{name}/records`: records to send, in order.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProduceRequest {
    /// 1 to 500 records.
    #[schema(min_items = 1, max_items = 500)]
    pub records: Vec<OutgoingRecord>,
}

/// One record to send. A JSON string is sent as its text (UTF-8); any other JSON value
/// (object, array, number, boolean) as its compact JSON text; null or a missing field as no
/// key / no value (a tombstone).
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutgoingRecord {
    /// Any JSON value, or null (the default) for no key.
    #[serde(default)]
    pub key: serde_json::Value,
    /// Any JSON value, or null (the default) for no value.
    #[serde(default)]
    pub value: serde_json::Value,
    /// Header names and their text values.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Partition to write to; by default the producer's partitioner picks one (by key hash
    /// when there is a key).
    #[schema(minimum = 0)]
    pub partition: Option<i32>,
}

/// The answer of a produce: where each record was stored, in request order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProducedRecords {
    pub offsets: Vec<ProducedOffset>,
}

/// Where one record was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct ProducedOffset {
    pub partition: i32,
    pub offset: i64,
}

/// `GET /api/v1/topics/{name}/partitions/{partition}/records`: one page of a partition.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecordPage {
    pub topic: String,
    pub partition: i32,
    /// The partition's first stored offset when the page was read.
    pub earliest_offset: i64,
    /// The partition's next offset to be written when the page was read.
    pub latest_offset: i64,
    /// Where the next page starts: past everything this page covered (its records, its
    /// skipped batches, and records a consumer never shows: those of aborted transactions and
    /// control records), or the requested start when it covered nothing.
    pub next_offset: i64,
    /// In offset order.
    pub records: Vec<ConsumedRecord>,
    /// Batches the page stepped over because they cannot be read (a decompression bomb, a
    /// corrupt batch, a message format older than Kafka 0.11), in offset order; usually empty.
    /// Their offsets hold no record this API can return, so paging on from `next_offset`
    /// misses nothing else.
    pub skipped: Vec<SkippedBatch>,
}

/// Offsets a page stepped over: the part of one unreadable batch at or after the page's start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SkippedBatch {
    pub from_offset: i64,
    /// Inclusive: the batch's last offset.
    pub to_offset: i64,
    /// Why the batch cannot be read, e.g. `gzip batch of 521542 bytes claiming 1 record: its
    /// records decompress to more than 67108864 bytes`.
    pub reason: String,
}

/// One stored record. Keys, values and header values are shown as text when they are valid
/// UTF-8 and as base64 otherwise; the `*_encoding` fields say which.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ConsumedRecord {
    pub offset: i64,
    /// Record timestamp in Unix milliseconds (null when the record has none).
    #[schema(required = true)]
    pub timestamp: Option<i64>,
    #[schema(required = true)]
    pub key: Option<String>,
    #[schema(required = true)]
    pub value: Option<String>,
    pub key_encoding: Encoding,
    pub value_encoding: Encoding,
    /// In record order.
    pub headers: Vec<RecordHeader>,
}

/// How bytes are shown in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// The bytes are valid UTF-8 and shown as that text.
    Utf8,
    /// Standard base64 with padding.
    Base64,
}

/// One header of a stored record.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RecordHeader {
    pub key: String,
    /// Null for a header without a value.
    #[schema(required = true)]
    pub value: Option<String>,
    pub encoding: Encoding,
}

/// `GET /api/v1/groups`: every consumer group the cluster knows.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GroupList {
    /// By group id.
    pub groups: Vec<GroupSummary>,
}

/// One consumer group.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GroupSummary {
    pub group_id: String,
    /// Kafka's group state: `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty`
    /// or `Dead`.
    pub state: String,
    /// `consumer` for Kafka consumers; empty for a group that only holds offsets.
    pub protocol_type: String,
    /// The chosen assignor (e.g. `range`), set while the group is stable.
    pub protocol: String,
    pub members: Vec<GroupMember>,
    /// Records not yet consumed over every partition with a committed offset, or null when
    /// the group has committed none (or they could not be read).
    #[schema(required = true)]
    pub lag: Option<i64>,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GroupMember {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    /// Partitions assigned to this member, by topic (empty until the group is stable, and
    /// for groups that are not Kafka consumers).
    pub assignments: Vec<MemberAssignment>,
}

/// Partitions of one topic assigned to a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct MemberAssignment {
    pub topic: String,
    /// Ascending.
    pub partitions: Vec<i32>,
}

/// `GET /api/v1/groups/{group_id}`: a group with its committed offsets.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GroupDescription {
    #[serde(flatten)]
    pub group: GroupSummary,
    /// Every partition the group has committed an offset for, by topic and partition.
    pub offsets: Vec<GroupOffset>,
}

/// The committed offset of a group in one partition, and how far behind it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct GroupOffset {
    pub topic: String,
    pub partition: i32,
    pub committed_offset: i64,
    /// The partition's next offset to be written.
    pub latest_offset: i64,
    /// `latest_offset - committed_offset`, at least 0.
    pub lag: i64,
}
