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
    /// A topic a Freshet service keeps: the login guard's topics, every `freshet.` topic and
    /// the tracker's `device-events.dlq`. Deleting or purging it through the API needs
    /// `?force=true`; the services' own topics (all but `device-events.dlq`) are refused
    /// even then.
    pub managed: bool,
    /// Which service keeps the topic (`"the login guard"`, `"the tracker"`, `"a Freshet
    /// service"`), or null when `managed` is false.
    #[schema(required = true)]
    pub managed_by: Option<&'static str>,
    /// Whether the API takes records for the topic: false for the services' own topics,
    /// where only the service writes (a forged record there would be a forged block or count).
    pub accepts_records: bool,
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
    /// A topic a Freshet service keeps: the login guard's topics, every `freshet.` topic and
    /// the tracker's `device-events.dlq`. Deleting or purging it through the API needs
    /// `?force=true`; the services' own topics (all but `device-events.dlq`) are refused
    /// even then.
    pub managed: bool,
    /// Which service keeps the topic (`"the login guard"`, `"the tracker"`, `"a Freshet
    /// service"`), or null when `managed` is false.
    #[schema(required = true)]
    pub managed_by: Option<&'static str>,
    /// Whether the API takes records for the topic: false for the services' own topics,
    /// where only the service writes (a forged record there would be a forged block or count).
    pub accepts_records: bool,
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

/// `GET /api/v1/topics/{name}/records` (and its `/stream` and `/export`): what to read across
/// a topic's partitions, as the query string gives it. The cluster checks it
/// ([`Cluster::search_records`](super::Cluster::search_records)): a bad value is
/// `InvalidParams` naming the parameter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordSearch {
    /// `earliest`, `latest` (the default) or an RFC 3339 timestamp.
    pub from: Option<String>,
    /// Substring of the key's bytes.
    pub key: Option<String>,
    /// Substring of the value's bytes.
    pub value: Option<String>,
    /// `name:value`: a header named exactly `name` whose value contains `value`.
    pub header: Option<String>,
    /// Only this partition.
    pub partition: Option<i32>,
    /// Most records to return.
    pub limit: Option<usize>,
    /// Where an earlier answer stopped (its `cursor`).
    pub cursor: Option<String>,
}

/// The order of the records of a topic-wide read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordOrder {
    /// `from=latest`: each partition read backwards from its end, merged by timestamp,
    /// newest first (ties by partition, then offset, descending within a partition).
    NewestFirst,
    /// `from=earliest` or a timestamp: each partition read forwards, merged by timestamp,
    /// oldest first (ties by partition, then offset).
    OldestFirst,
}

/// Why a topic-wide read stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScanStop {
    /// `limit` records were found; more may follow from `cursor`.
    Limit,
    /// Every partition was read to its end: its earliest offset reading newest first, its
    /// latest offset (when the read started) reading oldest first.
    End,
    /// The read reached its byte bound (64 MiB); go on from `cursor`.
    Bytes,
    /// The read reached its time bound (5 s); go on from `cursor`.
    Time,
}

/// One record of a topic-wide read: the partition's record view, with its partition and its
/// timestamp as text.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TopicRecord {
    pub partition: i32,
    #[serde(flatten)]
    pub record: ConsumedRecord,
    /// The timestamp as RFC 3339 UTC with milliseconds (`2024-09-18T14:14:10.124Z`); null
    /// when the record has none (or it is outside years 0000-9999).
    #[schema(required = true, example = "2024-09-18T14:14:10.124Z")]
    pub timestamp_rfc3339: Option<String>,
}

/// How far a topic-wide read got in one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PartitionScan {
    pub partition: i32,
    /// The partition's first stored offset when the read started.
    pub earliest_offset: i64,
    /// The partition's next offset to be written when the read started.
    pub latest_offset: i64,
    /// Offsets `scanned_from` (inclusive) to `scanned_to` (exclusive) were covered: each
    /// record there was returned or did not match. Reading newest first the read moved down
    /// from `scanned_to`, oldest first up from `scanned_from`; equal when it covered nothing.
    /// The cursor goes on from the far end.
    pub scanned_from: i64,
    pub scanned_to: i64,
    /// Whether the read got to the partition's end (as for `stopped_by: end`) or, oldest
    /// first, to the last record readable now (those of open transactions are not).
    pub reached_end: bool,
    /// Batches in the covered range that cannot be read and were stepped over, as in a
    /// partition page's `skipped`.
    pub skipped: Vec<SkippedBatch>,
}

/// `GET /api/v1/topics/{name}/records`: one page of records across a topic's partitions.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TopicRecordPage {
    pub topic: String,
    pub order: RecordOrder,
    /// In `order`, at most `limit` of them.
    pub records: Vec<TopicRecord>,
    /// Every partition read, in partition order.
    pub partitions: Vec<PartitionScan>,
    pub stopped_by: ScanStop,
    /// Bytes the read took from the cluster: of each read, the larger of the bytes fetched
    /// and the bytes its records decompressed to.
    pub bytes_read: u64,
    /// Pass it back as `cursor` (with the same filters) to go on where this page stopped,
    /// with no record repeated or missed. Null only when nothing more can follow: newest
    /// first, every partition was read down to its earliest offset. Oldest first it is
    /// always given, since records written later follow.
    #[schema(required = true)]
    pub cursor: Option<String>,
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

/// `PATCH /api/v1/topics/{name}/configs`: topic config overrides to set and to remove, in one
/// IncrementalAlterConfigs request. Configs named in neither keep their value.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicConfigChange {
    /// Overrides to set, by Kafka config name, e.g. `{"retention.ms": "86400000"}`.
    #[serde(default)]
    #[schema(schema_with = topic_configs_schema)]
    pub set: BTreeMap<String, String>,
    /// Overrides to remove: each config goes back to the cluster's default.
    #[serde(default)]
    #[schema(schema_with = config_names_schema)]
    pub delete: Vec<String>,
}

fn config_names_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(TOPIC_CONFIG_VALUES.iter().map(|(name, _, _)| *name)))
                .examples(["retention.ms"]),
        )
        .unique_items(true)
        .description(Some(
            "Overrides to remove: each config goes back to the cluster's default. With \
             `--bootstrap-servers`, any config name the cluster knows is passed on.",
        ))
        .build()
}

/// The answer of a config change: the topic's effective configs afterwards.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TopicConfigs {
    pub name: String,
    /// Effective topic configs (overrides and defaults), by Kafka config name; sensitive
    /// values are left out.
    pub configs: BTreeMap<String, String>,
}

/// `POST /api/v1/topics/{name}/partitions`: the topic's new partition count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartitionCountChange {
    /// More than the topic has now (partitions are added, never removed), at most 1000.
    #[schema(minimum = 1, maximum = 1000)]
    pub count: i32,
}

/// `POST /api/v1/topics/{name}/purge`: which records to delete (DeleteRecords). `{}` deletes
/// every record of every partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// Partitions to purge (default: all of them).
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = partition_list_schema)]
    pub partitions: Option<Vec<i32>>,
    /// Delete the records before this offset in each partition (default: every record, up to
    /// the latest offset). It may not be past a partition's latest offset; one before the
    /// earliest deletes nothing.
    #[schema(minimum = 0, maximum = 9_007_199_254_740_991_i64)]
    pub before: Option<i64>,
}

/// The answer of a purge: where each purged partition starts now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PurgedTopic {
    pub topic: String,
    /// In partition order.
    pub partitions: Vec<PurgedPartition>,
}

/// One purged partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct PurgedPartition {
    pub partition: i32,
    /// The new log start offset: the first offset still stored.
    pub earliest_offset: i64,
    /// The partition's next offset to be written.
    pub latest_offset: i64,
}

/// `POST /api/v1/groups/{group_id}/reset-offsets`: where to move a group's committed offsets
/// of one topic.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetOffsetsRequest {
    /// The topic whose offsets move.
    #[schema(schema_with = new_topic_name_schema)]
    pub topic: String,
    /// Partitions to reset (default: every partition of the topic).
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = partition_list_schema)]
    pub partitions: Option<Vec<i32>>,
    #[schema(schema_with = reset_target_schema)]
    pub to: ResetTarget,
    /// `true`: answer what would be committed, and commit nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// Where a reset moves each partition's committed offset. Every target is clamped to the
/// partition's `[earliest, latest]` offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTarget {
    /// `"earliest"`: the first offset still stored (the log start offset).
    Earliest,
    /// `"latest"`: the next offset to be written (the high watermark).
    Latest,
    /// An RFC 3339 timestamp, here in Unix milliseconds: the first offset whose record
    /// timestamp is at or after it (ListOffsets by time), or the latest offset when none is.
    Timestamp(i64),
    /// `{"offset": N}`: that offset.
    Offset(i64),
    /// `{"shift": N}`: the committed offset plus N (N may be negative). A partition without a
    /// committed offset cannot be shifted: the request is refused (409), as Kafka's
    /// `kafka-consumer-groups --shift-by` refuses it, rather than guessing where its
    /// consumers would start.
    Shift(i64),
}

/// What `to` must be, for error messages.
const RESET_TARGET_FORMS: &str = "\"earliest\", \"latest\", an RFC 3339 timestamp (e.g. \
     \"2024-09-18T13:59:02Z\"), {\"offset\": N} or {\"shift\": N}";

/// The largest `offset` or `shift` (either sign) a reset takes: 2^53 - 1, the largest integer
/// a JSON number carries exactly in every client (and far past any real offset). Bounding it
/// also keeps a number beyond 64 bits, which the JSON reader cannot represent, from passing.
pub const MAX_RESET_NUMBER: i64 = (1 << 53) - 1;

impl ResetTarget {
    /// Reads `to` from its JSON value; the error says what is wrong with it.
    pub fn parse(value: &serde_json::Value) -> Result<ResetTarget, String> {
        use serde_json::Value;
        match value {
            Value::String(text) if text == "earliest" => Ok(ResetTarget::Earliest),
            Value::String(text) if text == "latest" => Ok(ResetTarget::Latest),
            Value::String(text) => parse_reset_time(text).map(ResetTarget::Timestamp),
            Value::Object(fields) => {
                let mut entries = fields.iter();
                let (Some((name, number)), None) = (entries.next(), entries.next()) else {
                    return Err(format!(
                        "an object `to` has exactly one field, offset or shift; got {value}"
                    ));
                };
                let Some(number) = number.as_i64() else {
                    return Err(format!(
                        "{name} must be an integer (a 64-bit signed one); got {number}"
                    ));
                };
                if number.unsigned_abs() > MAX_RESET_NUMBER.unsigned_abs() {
                    return Err(format!(
                        "{name} {number} is out of range: at most {MAX_RESET_NUMBER} either way"
                    ));
                }
                match name.as_str() {
                    "offset" if number < 0 => {
                        Err(format!("offset {number} is negative; offsets start at 0"))
                    }
                    "offset" => Ok(ResetTarget::Offset(number)),
                    "shift" => Ok(ResetTarget::Shift(number)),
                    other => Err(format!(
                        "unknown field {other:?} in `to`: use {{\"offset\": N}} or \
                         {{\"shift\": N}}"
                    )),
                }
            }
            other => Err(format!("to must be {RESET_TARGET_FORMS}; got {other}")),
        }
    }
}

/// Unix milliseconds of an RFC 3339 timestamp (as [`freshet_timestamp`] reads ISO 8601: a
/// missing zone means UTC). Times before 1970 are refused: ListOffsets reads negative times
/// as "earliest" and "latest".
fn parse_reset_time(text: &str) -> Result<i64, String> {
    // What freshet_timestamp reads as ISO 8601; anything else would be an epoch number.
    if text.as_bytes().get(4) != Some(&b'-') {
        return Err(format!("to must be {RESET_TARGET_FORMS}; got {text:?}"));
    }
    let millis = freshet_timestamp::normalize(text)
        .map_err(|e| format!("to {text:?} is not a valid RFC 3339 timestamp: {e}"))?
        .unix_millis();
    if millis < 0 {
        return Err(format!(
            "to {text:?} is before 1970-01-01T00:00:00Z; offsets cannot be looked up by such \
             a time"
        ));
    }
    Ok(millis)
}

impl<'de> Deserialize<'de> for ResetTarget {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        ResetTarget::parse(&value).map_err(serde::de::Error::custom)
    }
}

/// One of the forms of [`ResetTarget`].
fn reset_target_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    let integer = |minimum: i64| {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(minimum))
            .maximum(Some(MAX_RESET_NUMBER))
    };
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["earliest", "latest"]))
                .description(Some(
                    "The first offset still stored, or the next offset to be written",
                )),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                .pattern(Some(r"^(19[7-9][0-9]|[2-9][0-9]{3})-"))
                .description(Some(
                    "An RFC 3339 timestamp from 1970 on: the first offset whose record is at \
                     or after it, or the latest offset when none is",
                ))
                .examples(["2024-09-18T13:59:02Z"]),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("offset", integer(0))
                .required("offset")
                .additional_properties(Some(
                    utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
                ))
                .description(Some("That offset, clamped to the partition's offsets")),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("shift", integer(-MAX_RESET_NUMBER))
                .required("shift")
                .additional_properties(Some(
                    utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
                ))
                .description(Some(
                    "The committed offset plus `shift` (negative moves back), clamped; a \
                     partition without a committed offset is refused (409)",
                )),
        )
        .description(Some(format!(
            "Where to move each partition's committed offset: {RESET_TARGET_FORMS}. Every \
             target is clamped to the partition's earliest and latest offsets."
        )))
        .build()
        .into()
}

/// A list of distinct partition numbers.
/// An optional field that, when given, must hold a value: `null` is refused as the schema
/// (which does not allow it) says, instead of being read as "not given".
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

fn partition_list_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
                .minimum(Some(0)),
        )
        .min_items(Some(1))
        .unique_items(true)
        .description(Some(
            "Partitions of the topic, each once (default: all of them)",
        ))
        .build()
}

/// The answer of a reset: each partition's committed offset before and after. With
/// `dry_run`, the same answer previews the reset and nothing is committed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResetOffsetsAnswer {
    pub group_id: String,
    pub topic: String,
    /// `true`: nothing was committed; `new_offset` is what the reset would commit.
    pub dry_run: bool,
    /// In partition order.
    pub partitions: Vec<PartitionReset>,
}

/// One partition of a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct PartitionReset {
    pub partition: i32,
    /// The group's committed offset before the reset, or null when it had none.
    #[schema(required = true)]
    pub previous_offset: Option<i64>,
    /// The committed offset after the reset (or, in a dry run, the one it would commit).
    pub new_offset: i64,
    /// The partition's first stored offset when the reset was computed.
    pub earliest_offset: i64,
    /// The partition's next offset to be written when the reset was computed.
    pub latest_offset: i64,
}

#[cfg(test)]
mod reset_target_tests {
    use serde_json::json;

    use super::ResetTarget;

    #[test]
    fn every_form_of_to_is_read() {
        let read = |value: serde_json::Value| ResetTarget::parse(&value);
        assert_eq!(read(json!("earliest")), Ok(ResetTarget::Earliest));
        assert_eq!(read(json!("latest")), Ok(ResetTarget::Latest));
        assert_eq!(
            read(json!("2023-11-14T22:13:20Z")),
            Ok(ResetTarget::Timestamp(1_700_000_000_000))
        );
        assert_eq!(
            read(json!("2023-11-14T23:13:20.5+01:00")),
            Ok(ResetTarget::Timestamp(1_700_000_000_500))
        );
        assert_eq!(
            read(json!("1970-01-01T00:00:00Z")),
            Ok(ResetTarget::Timestamp(0))
        );
        assert_eq!(read(json!({"offset": 0})), Ok(ResetTarget::Offset(0)));
        assert_eq!(read(json!({"shift": -3})), Ok(ResetTarget::Shift(-3)));
    }

    #[test]
    fn malformed_targets_say_what_is_wrong() {
        let refusal = |value: serde_json::Value| ResetTarget::parse(&value).expect_err("refused");
        assert!(refusal(json!("Earliest")).starts_with("to must be \"earliest\""));
        assert!(refusal(json!("1700000000000")).starts_with("to must be"));
        assert!(refusal(json!("2023-13-01T00:00:00Z")).contains("month 13 out of range"));
        assert!(refusal(json!("1969-12-31T23:59:59.999Z")).contains("before 1970"));
        assert!(refusal(json!({"offset": -1})).contains("offset -1 is negative"));
        assert!(refusal(json!({"shift": "1"})).contains("shift must be an integer"));
        assert!(refusal(json!({})).contains("exactly one field"));
        assert!(refusal(json!({"offset": 1, "shift": 1})).contains("exactly one field"));
        assert!(refusal(json!({"to": 1})).contains("unknown field \"to\""));
        assert!(refusal(json!(null)).starts_with("to must be"));
        assert!(refusal(json!(3)).starts_with("to must be"));
    }
}
