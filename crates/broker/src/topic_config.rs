//! Topic configs: every name Apache Kafka 4.x accepts for a topic, typed and validated as
//! Kafka's `LogConfig` does, with what each means on this single node.
//!
//! A topic stores only its overrides ([`TopicConfigs`], by name, the values as the client
//! sent them, in `topic.json`). [`TopicConfigs::apply`] validates them and lays them over
//! the broker's defaults to give the partitions' [`LogConfig`]. Configs the log does not
//! use are still validated, stored and described: [`Meaning::OneNode`] says what each
//! amounts to here (see also `docs/COMPATIBILITY.md`, "Topic configs").
//!
//! Validation follows Kafka's `ConfigDef`: values are trimmed; BOOLEAN is `true` or `false`
//! in any case; INT and LONG are decimal integers of that width; DOUBLE is a decimal
//! number; LIST is comma-separated. A bad value or an unknown name is
//! [`TopicError::InvalidConfig`] naming the config (Kafka's INVALID_CONFIG).
//!
//! Freshet's one divergence: `segment.bytes` may be as small as 1024 (Kafka 4.0 requires
//! 1 MiB); small segments let retention and compaction be exercised on little data.

use std::collections::BTreeMap;

use freshet_log::{CleanupPolicy, LogConfig, StoredCompression, TimestampType};
use serde::{Deserialize, Serialize};

use crate::topics::TopicError;

/// Kafka's config types, as DescribeConfigs v3+ reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Long,
    Double,
    List,
}

impl ConfigType {
    /// The `ConfigType` code of DescribeConfigs.
    pub fn code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
        }
    }

    fn kafka_name(self) -> &'static str {
        match self {
            ConfigType::Boolean => "BOOLEAN",
            ConfigType::String => "STRING",
            ConfigType::Int => "INT",
            ConfigType::Long => "LONG",
            ConfigType::Double => "DOUBLE",
            ConfigType::List => "LIST",
        }
    }
}

/// What a config does in Freshet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Meaning {
    /// The log or the produce path acts on it as Kafka does.
    Honoured,
    /// Accepted, validated, stored and described; what it amounts to on one node.
    OneNode(&'static str),
}

/// The values a config may take, beyond its type.
#[derive(Clone, Copy, Debug)]
enum Rule {
    /// An integer within `min..=max` (the type's own bounds otherwise).
    Range(i64, i64),
    /// A number within `0.0..=1.0`.
    Ratio,
    /// Any boolean.
    Boolean,
    /// A boolean that must be false here (the feature does not exist on this broker).
    Unavailable(&'static str),
    /// One of these strings, exactly.
    OneOf(&'static [&'static str]),
    /// `cleanup.policy`: a non-empty list of `compact` and `delete`.
    CleanupPolicy,
    /// Kafka's throttled-replica list: `*`, or `partition:broker` pairs.
    ThrottledReplicas,
    /// `compression.gzip.level`: 1-9, or -1 for zlib's default.
    GzipLevel,
}

/// One topic config.
#[derive(Debug)]
pub struct TopicConfigDef {
    pub name: &'static str,
    pub config_type: ConfigType,
    /// Kafka's default, as DescribeConfigs prints it.
    pub kafka_default: &'static str,
    rule: Rule,
    /// The broker config that sets the default for every topic (Kafka's synonym), if any.
    pub broker_synonym: Option<&'static str>,
    pub documentation: &'static str,
    pub meaning: Meaning,
}

const INT_MAX: i64 = i32::MAX as i64;
const LONG_MIN: i64 = i64::MIN;
const LONG_MAX: i64 = i64::MAX;

const HONOURED: Meaning = Meaning::Honoured;
const REPLICATION_ONLY: Meaning = Meaning::OneNode(
    "no effect: a topic has one replica, on this broker, so there is no replication to throttle \
     and no other replica to elect",
);
const TIERED_STORAGE_ONLY: Meaning = Meaning::OneNode(
    "no effect: this broker has no tiered storage (remote.storage.enable must stay false)",
);

/// Every topic config of Kafka 4.x, by name. `message.format.version` and
/// `message.timestamp.difference.max.ms`, removed in Kafka 4.0, are refused as Kafka 4 refuses
/// them (see `removed_in_kafka_4`).
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef {
        name: "cleanup.policy",
        config_type: ConfigType::List,
        kafka_default: "delete",
        rule: Rule::CleanupPolicy,
        broker_synonym: Some("log.cleanup.policy"),
        documentation: "delete, compact or both: whether old segments are deleted by \
                        retention.ms/retention.bytes, compacted to the latest record per key, \
                        or both",
        meaning: HONOURED,
    },
    TopicConfigDef {
        name: "compression.gzip.level",
        config_type: ConfigType::Int,
        kafka_default: "-1",
        rule: Rule::GzipLevel,
        broker_synonym: Some("compression.gzip.level"),
        documentation: "zlib level (1-9, -1 for the default, 6) of batches the broker \
                        recompresses with compression.type=gzip",
        meaning: HONOURED,
    },
    TopicConfigDef {
        name: "compression.lz4.level",
        config_type: ConfigType::Int,
        kafka_default: "9",
        rule: Rule::Range(1, 17),
        broker_synonym: Some("compression.lz4.level"),
        documentation: "LZ4 level of batches the broker recompresses with compression.type=lz4",
        meaning: HONOURED,
    },
    TopicConfigDef {
        name: "compression.type",
        config_type: ConfigType::String,
        kafka_default: "producer",
        rule: Rule::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        broker_synonym: Some("compression.type"),
        documentation: "codec batches are stored with: producer keeps the producer's; any \
                        other makes the broker recompress batches of another codec",
        meaning: HONOURED,
    },
    TopicConfigDef {
        name: "compression.zstd.level",
        config_type: ConfigType::Int,
        kafka_default: "3",
        rule: Rule::Range(-131_072, 22),
        broker_synonym: Some("compression.zstd.level"),
        documentation: "zstd level of batches the broker recompresses with \
                        compression.type=zstd",
        meaning: HONOURED,
    },
    TopicConfigDef {
        name: "delete.retention.ms",
        config_type: ConfigType::Long,
        kafka_default: "86400000",
        rule: Rule::Range(0, LONG_MAX),
        broker_synonym: Some("log.cleaner.delete.retention.ms"),
        documentation: "how long compaction keeps tombstones (records with a null value)",
        meaning: HONOURED,
    },
    TopicConfigDef {
        name: "file.delete.delay.ms",
        config_type: ConfigType::Long,
        kafka_default: "60000",
        rule: Rule::Range(0, LONG_MAX),
        broker_synonym: Some("log.segment.delete.delay.ms"),
        documentation: "Kafka: delay before a deleted segment's files are removed",
        meaning: Meaning::OneNode(
            "no effect: segment files are removed at once; readers that hold a deleted \
             segment keep reading its open file, so no delay is needed",
        ),
    },
    TopicConfigDef {
        name: "flush.messages",
        config_type: ConfigType::Long,
        kafka_default: "9223372036854775807",
        rule: Rule::Range(1, LONG_MAX),
        broker_synonym: Some("log.flush.interval.messages"),
        documentation: "Kafka: records between forced fsyncs",
        meaning: Meaning::OneNode(
            "no effect: every acknowledged write is fsynced first (group commit), which is \
             at least as strict as any value (--flush-interval-ms relaxes it for all topics)",
        ),
    },
    TopicConfigDef {
        name: "flush.ms",
        config_type: ConfigType::Long,
        kafka_default: "9223372036854775807",
        rule: Rule::Range(0, LONG_MAX),
        broker_synonym: Some("log.flush.interval.ms"),
        documentation: "Kafka: time between forced fsyncs",
        meaning: Meaning::OneNode(
            "no effect: every acknowledged write is fsynced first (group commit), which is \
             at least as strict as any value (--flush-interval-ms relaxes it for all topics)",
        ),
    },
    TopicConfigDef {
        name: "follower.replication.throttled.replicas",
        config_type: ConfigType::List,
        kafka_default: "",
        rule: Rule::ThrottledReplicas,
        broker_synonym: None,
        documentation: "Kafka: replicas whose replication to followers is throttled",
        meaning: REPLICATION_ONLY,
    },
    TopicConfigDef {
        name: "index.interval.bytes",
        config_type: ConfigType::Int,
        kafka_default: "4096",
        rule: Rule::Range(0, INT_MAX),
        broker_synonym: Some("log.index.interval.bytes"),
        documentation: "bytes of batches between two entries of the sparse offset and time \
                        indexes",
        meaning: HONOURED,
    },
    TopicConfigDef {
        name: "leader.replication.throttled.replicas",
        config_type: ConfigType::List,
        kafka_default: "",
        rule: Rule::ThrottledReplicas,
        broker_synonym: None,
        documentation: "Kafka: replicas whose replication from the leader is throttled",
        meaning: REPLICATION_ONLY,
    },
    TopicConfigDef {
        name: "local.retention.bytes",
        config_type: ConfigType::Long,
        kafka_default: "-2",
        rule: Rule::Range(-2, LONG_MAX),
        broker_synonym: Some("log.local.retention.bytes"),
        documentation: "Kafka: local size kept when tiered storage holds the rest",
        meaning: TIERED_STORAGE_ONLY,
    },
    TopicConfigDef {
        name: "local.retention.ms",
        config_type: ConfigType::Long,
        kafka_default: "-2",
        rule: Rule::Range(-2, LONG_MAX),
        broker_synonym: Some("log.local.retention.ms"),
        documentation: "Kafka: local age kept when tiered storage holds the rest",
        meaning: TIERED_STORAGE_ONLY,
    },
    TopicConfigDef {
        name: "max.compaction.lag.ms",
        config_type: ConfigType::Long,
        kafka_default: "9223372036854775807",
        rule: Rule::Range(1, LONG_MAX),
        broker_synonym: Some("log.cleaner.max.compaction.lag.ms"),
        documentation: "longest a record stays ineligible for compaction: a compacted log's \
                        active segment rolls at this age, and a log whose oldest uncompacted \
                        batch is older is compacted whatever its dirty ratio",
        meaning: HONOURED,
    },
    TopicConfigDef {
        name: "max.message.bytes",
        config_type: ConfigType::Int,
        kafka_default: "1048588",
        rule: Rule::Range(0, INT_MAX),
        broker_synonym: Some("message.max.bytes"),
        documentation: "largest record batch accepted (after compression), log overhead \
                        included",
        meaning: HONOURED,
    },
    TopicConfigDef {
        name: "message.downconversion.enable",
        config_type: ConfigType::Boolean,
        kafka_default: "true",
        rule: Rule::Boolean,
        broker_synonym: Some("log.message.downconversion.enable"),
        documentation: "Kafka 4.x: deprecated, no effect (down-conversion for old clients \
                        no longer exists)",
        meaning: Meaning::OneNode(
            "no effect, as in Kafka 4.x: only record batch v2 is stored and served",
        ),
    },
    TopicConfigDef {
        name: "message.timestamp.after.max.ms",
        config_type: ConfigType::Long,
        kafka_default: "3600000",
        rule: Rule::Range(0, LONG_MAX),
        broker_synonym: Some("log.message.timestamp.after.max.ms"),
        documentation: "with CreateTime, how far after the broker's clock a record timestamp \
                        may be; later ones are refused with INVALID_TIMESTAMP",
        meaning: HONOURED,
    },
    TopicConfigDef {
        name: "message.timestamp.before.max.ms",
        config_type: ConfigType::Long,
        kafka_default: "9223372036854775807",
        rule: Rule::Range(0, LONG_MAX),
        broker_synonym: Some("log.message.timestamp.before.max.ms"),
        documentation: "with CreateTime, how far before the broker's clock a record timestamp \
                        may be; earlier ones are refused with INVALID_TIMESTAMP",
        meaning: HONOURED,
    },
    TopicConfigDef {
        name: "message.timestamp.type",
        config_type: ConfigType::String,
        kafka_default: "CreateTime",
        rule: Rule::OneOf(&["CreateTime", "LogAppendTime"]),
        broker_synonym: Some("log.message.timestamp.type"),
        documentation: "CreateTime keeps the producer's record timestamps; LogAppendTime \
                        stamps every batch with the broker's clock at append",
        meaning: HONOURED,
    },
    TopicConfigDef {
        name: "min.cleanable.dirty.ratio",
        config_type: ConfigType::Double,
        kafka_default: "0.5",
        rule: Rule::Ratio,
        broker_synonym: Some("log.cleaner.min.cleanable.ratio"),
        documentation: "share of a compacted log's cleanable bytes not yet compacted at which \
                        compaction runs (0: every pass)",
        meaning: HONOURED,
    },
    TopicConfigDef {
        name: "min.compaction.lag.ms",
        config_type: ConfigType::Long,
        kafka_default: "0",
        rule: Rule::Range(0, LONG_MAX),
        broker_synonym: Some("log.cleaner.min.compaction.lag.ms"),
        documentation: "shortest time a record stays uncompacted: compaction stops at the \
                        first segment holding a younger record",
        meaning: HONOURED,
    },
    TopicConfigDef {
        name: "min.insync.replicas",
        config_type: ConfigType::Int,
        kafka_default: "1",
        rule: Rule::Range(1, INT_MAX),
        broker_synonym: Some("min.insync.replicas"),
        documentation: "replicas that must have a write for acks=all to succeed; above 1, \
                        acks=all produce fails with NOT_ENOUGH_REPLICAS on this one-replica \
                        broker",
        meaning: HONOURED,
    },
    TopicConfigDef {
        name: "preallocate",
        config_type: ConfigType::Boolean,
        kafka_default: "false",
        rule: Rule::Boolean,
        broker_synonym: Some("log.preallocate"),
        documentation: "Kafka: preallocate segment files at creation",
        meaning: Meaning::OneNode("no effect: segment files grow as they are written"),
    },
    TopicConfigDef {
        name: "remote.copy.lag.bytes",
        config_type: ConfigType::Long,
        kafka_default: "0",
        rule: Rule::Range(-1, LONG_MAX),
        broker_synonym: None,
        documentation: "Kafka 4.4: bytes a segment waits before its copy to tiered storage",
        meaning: TIERED_STORAGE_ONLY,
    },
    TopicConfigDef {
        name: "remote.copy.lag.ms",
        config_type: ConfigType::Long,
        kafka_default: "0",
        rule: Rule::Range(-1, LONG_MAX),
        broker_synonym: None,
        documentation: "Kafka 4.4: time a segment waits before its copy to tiered storage",
        meaning: TIERED_STORAGE_ONLY,
    },
    TopicConfigDef {
        name: "remote.log.copy.disable",
        config_type: ConfigType::Boolean,
        kafka_default: "false",
        rule: Rule::Boolean,
        broker_synonym: None,
        documentation: "Kafka: stop copying segments to tiered storage",
        meaning: TIERED_STORAGE_ONLY,
    },
    TopicConfigDef {
        name: "remote.log.delete.on.disable",
        config_type: ConfigType::Boolean,
        kafka_default: "false",
        rule: Rule::Boolean,
        broker_synonym: None,
        documentation: "Kafka: delete tiered data when remote storage is turned off",
        meaning: TIERED_STORAGE_ONLY,
    },
    TopicConfigDef {
        name: "remote.storage.enable",
        config_type: ConfigType::Boolean,
        kafka_default: "false",
        rule: Rule::Unavailable(
            "Tiered Storage functionality is disabled in the broker. Topic cannot be \
             configured with remote log storage.",
        ),
        broker_synonym: None,
        documentation: "Kafka: keep old segments in tiered storage; only false is accepted \
                        here, as by a Kafka broker without tiered storage",
        meaning: TIERED_STORAGE_ONLY,
    },
    TopicConfigDef {
        name: "retention.bytes",
        config_type: ConfigType::Long,
        kafka_default: "-1",
        rule: Rule::Range(LONG_MIN, LONG_MAX),
        broker_synonym: Some("log.retention.bytes"),
        documentation: "size above which a partition's oldest closed segments are deleted \
                        (negative: no limit)",
        meaning: HONOURED,
    },
    TopicConfigDef {
        name: "retention.ms",
        config_type: ConfigType::Long,
        kafka_default: "604800000",
        rule: Rule::Range(-1, LONG_MAX),
        broker_synonym: Some("log.retention.ms"),
        documentation: "age after which closed segments are deleted (-1: never)",
        meaning: HONOURED,
    },
    TopicConfigDef {
        name: "segment.bytes",
        config_type: ConfigType::Int,
        kafka_default: "1073741824",
        rule: Rule::Range(1024, INT_MAX),
        broker_synonym: Some("log.segment.bytes"),
        documentation: "size at which the active segment is rolled (at least 1024 here; \
                        Kafka 4 requires 1048576)",
        meaning: HONOURED,
    },
    TopicConfigDef {
        name: "segment.index.bytes",
        config_type: ConfigType::Int,
        kafka_default: "10485760",
        rule: Rule::Range(4, INT_MAX),
        broker_synonym: Some("log.index.size.max.bytes"),
        documentation: "Kafka: preallocated size of a segment's offset index",
        meaning: Meaning::OneNode(
            "no effect: indexes are sparse, held in memory and written at their real size; \
             index.interval.bytes sets their density",
        ),
    },
    TopicConfigDef {
        name: "segment.jitter.ms",
        config_type: ConfigType::Long,
        kafka_default: "0",
        rule: Rule::Range(0, LONG_MAX),
        broker_synonym: Some("log.roll.jitter.ms"),
        documentation: "Kafka: random amount subtracted from segment.ms per segment",
        meaning: Meaning::OneNode(
            "no effect: segments roll exactly at segment.ms; jitter spreads the rolls of \
             many brokers' partitions, which one node does not need",
        ),
    },
    TopicConfigDef {
        name: "segment.ms",
        config_type: ConfigType::Long,
        kafka_default: "604800000",
        rule: Rule::Range(1, LONG_MAX),
        broker_synonym: Some("log.roll.ms"),
        documentation: "age at which the active segment is rolled",
        meaning: HONOURED,
    },
    TopicConfigDef {
        name: "unclean.leader.election.enable",
        config_type: ConfigType::Boolean,
        kafka_default: "false",
        rule: Rule::Boolean,
        broker_synonym: Some("unclean.leader.election.enable"),
        documentation: "Kafka: let an out-of-sync replica become leader",
        meaning: REPLICATION_ONLY,
    },
];

/// The definition of a topic config name.
pub fn definition(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|def| def.name == name)
}

/// Topic configs Kafka 4.0 removed, with what replaces them.
fn removed_in_kafka_4(name: &str) -> Option<&'static str> {
    match name {
        "message.format.version" => Some("record batch v2 is the only format"),
        "message.timestamp.difference.max.ms" => {
            Some("use message.timestamp.before.max.ms and message.timestamp.after.max.ms")
        }
        _ => None,
    }
}

/// A validated value.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Boolean(bool),
    Integer(i64),
    Double(f64),
    Text(String),
    List(Vec<String>),
}

impl TopicConfigDef {
    /// Checks `raw` as [`TopicConfigDef::parse`] does, for values stored elsewhere than on a
    /// topic (the dynamic broker configs, see `broker_configs.rs`).
    pub(crate) fn check_value(&self, raw: &str) -> Result<(), TopicError> {
        self.parse(raw).map(|_| ())
    }

    /// Parses and checks `raw` as Kafka would, or says why it is refused.
    fn parse(&self, raw: &str) -> Result<Value, TopicError> {
        let value = raw.trim();
        let invalid = |why: String| {
            TopicError::InvalidConfig(
                self.name.to_string(),
                format!("invalid value {raw:?}: {why}"),
            )
        };
        let typed = match self.config_type {
            ConfigType::Boolean => match value.to_ascii_lowercase().as_str() {
                "true" => Value::Boolean(true),
                "false" => Value::Boolean(false),
                _ => return Err(invalid("expected value to be either true or false".into())),
            },
            ConfigType::Int => value
                .parse::<i32>()
                .map(|n| Value::Integer(i64::from(n)))
                .map_err(|_| {
                    invalid(format!(
                        "not a number of type {}",
                        self.config_type.kafka_name()
                    ))
                })?,
            ConfigType::Long => value.parse::<i64>().map(Value::Integer).map_err(|_| {
                invalid(format!(
                    "not a number of type {}",
                    self.config_type.kafka_name()
                ))
            })?,
            ConfigType::Double => match value.parse::<f64>() {
                Ok(n) if n.is_finite() => Value::Double(n),
                _ => return Err(invalid("not a number of type DOUBLE".into())),
            },
            ConfigType::String => Value::Text(value.to_string()),
            ConfigType::List => Value::List(split_list(value)),
        };
        self.check_rule(&typed).map_err(invalid)?;
        Ok(typed)
    }

    fn check_rule(&self, value: &Value) -> Result<(), String> {
        match (self.rule, value) {
            (Rule::Range(min, _), Value::Integer(n)) if *n < min => {
                Err(format!("value must be at least {min}"))
            }
            (Rule::Range(_, max), Value::Integer(n)) if *n > max => {
                Err(format!("value must be no more than {max}"))
            }
            (Rule::Ratio, Value::Double(n)) if !(0.0..=1.0).contains(n) => {
                Err("value must be between 0 and 1".into())
            }
            (Rule::Unavailable(why), Value::Boolean(true)) => Err(why.into()),
            (Rule::OneOf(allowed), Value::Text(text)) if !allowed.contains(&text.as_str()) => {
                Err(format!("string must be one of: {}", allowed.join(", ")))
            }
            (Rule::CleanupPolicy, Value::List(items)) => check_cleanup_policy(items),
            (Rule::ThrottledReplicas, Value::List(items)) => check_throttled_replicas(items),
            (Rule::GzipLevel, Value::Integer(n)) if *n != -1 && !(1..=9).contains(n) => {
                Err("value must be between 1 and 9, or -1 for the default".into())
            }
            _ => Ok(()),
        }
    }
}

/// Kafka's LIST parsing: comma-separated, each item trimmed, an empty string an empty list.
pub(crate) fn split_list(value: &str) -> Vec<String> {
    if value.is_empty() {
        return Vec::new();
    }
    value
        .split(',')
        .map(|item| item.trim().to_string())
        .collect()
}

fn check_cleanup_policy(items: &[String]) -> Result<(), String> {
    if items.is_empty() {
        return Err(
            "it must name delete, compact or both (a policy without cleanup is not \
                    supported; use delete with retention.ms=-1 and retention.bytes=-1)"
                .into(),
        );
    }
    match items
        .iter()
        .find(|item| !matches!(item.as_str(), "compact" | "delete"))
    {
        Some(other) => Err(format!("{other:?} is not one of: compact, delete")),
        None => Ok(()),
    }
}

fn check_throttled_replicas(items: &[String]) -> Result<(), String> {
    let is_pair = |item: &String| {
        item.split_once(':').is_some_and(|(partition, broker)| {
            [partition, broker]
                .iter()
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
    };
    let wildcard = items.len() == 1 && items[0] == "*";
    if wildcard || items.iter().all(is_pair) {
        Ok(())
    } else {
        Err(
            "must be the literal '*' or a list of replicas in the format \
             [partitionId]:[brokerId],[partitionId]:[brokerId],..."
                .into(),
        )
    }
}

/// Topic-level config overrides, by Kafka config name, values as the client sent them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TopicConfigs(pub BTreeMap<String, String>);

impl TopicConfigs {
    /// Validates every override (names, values, and the constraints between them) and lays
    /// them over `defaults`.
    pub fn apply(&self, defaults: &LogConfig) -> Result<LogConfig, TopicError> {
        let values = self.parse_all()?;
        let mut config = defaults.clone();
        for (name, value) in &values {
            set_log_field(&mut config, name, value);
        }
        config.compression = stored_compression(&values, defaults.compression);
        check_compaction_lags(&config)?;
        Ok(config)
    }

    /// [`TopicConfigs::apply`] over every layer of defaults: the overrides laid over the
    /// dynamic broker configs, laid over the command line's. They are validated together, as
    /// Kafka validates a topic's effective config: the compaction lags may conflict across
    /// layers.
    pub fn apply_over(&self, defaults: &TopicDefaults) -> Result<LogConfig, TopicError> {
        defaults.with_overrides(self).apply(&defaults.static_config)
    }

    /// [`TopicConfigs::apply_over`] for what is already stored: an override this version
    /// refuses (written by an earlier one with looser checks, or conflicting with a broker
    /// default changed since) is skipped with a warning rather than keeping the topic from
    /// opening or from following the broker's defaults.
    pub fn apply_leniently(&self, topic: &str, defaults: &TopicDefaults) -> LogConfig {
        if let Ok(config) = self.apply_over(defaults) {
            return config;
        }
        let mut valid = TopicConfigs::default();
        for (name, value) in &self.0 {
            let single = TopicConfigs([(name.clone(), value.clone())].into());
            match single.apply_over(defaults) {
                Ok(_) => {
                    valid.0.insert(name.clone(), value.clone());
                }
                Err(error) => {
                    tracing::warn!(topic, %error, "ignoring a stored topic config this version refuses")
                }
            }
        }
        valid
            .apply_over(defaults)
            .unwrap_or_else(|_| defaults.log_config())
    }

    /// `min.insync.replicas` of the topic: its override, else the dynamic broker config, else 1
    /// (the command line does not set it).
    pub fn min_insync_replicas(&self, defaults: &TopicDefaults) -> i64 {
        let name = "min.insync.replicas";
        match self.parsed(name).or_else(|| defaults.dynamic.parsed(name)) {
            Some(Value::Integer(n)) => n,
            _ => 1,
        }
    }

    /// The effective value of every topic config with where it comes from, as DescribeConfigs
    /// and CreateTopics describe them. `effective` is [`TopicConfigs::apply_over`]'s result.
    pub fn describe(
        &self,
        defaults: &TopicDefaults,
        effective: &LogConfig,
    ) -> Vec<DescribedConfig> {
        TOPIC_CONFIGS
            .iter()
            .map(|def| {
                let broker_synonyms = defaults.broker_synonyms(def);
                match self.0.get(def.name) {
                    Some(value) => DescribedConfig {
                        def,
                        value: value.clone(),
                        source: ConfigSource::DynamicTopic,
                        broker_synonyms,
                    },
                    None => {
                        let inherited = defaults.inherited(def);
                        DescribedConfig {
                            def,
                            value: log_field_value(effective, def.name)
                                .unwrap_or_else(|| inherited.value.trim().to_string()),
                            source: inherited.source,
                            broker_synonyms,
                        }
                    }
                }
            })
            .collect()
    }

    fn parse_all(&self) -> Result<BTreeMap<&str, Value>, TopicError> {
        self.0
            .iter()
            .map(|(name, raw)| Ok((name.as_str(), known(name)?.parse(raw)?)))
            .collect()
    }

    fn parsed(&self, name: &str) -> Option<Value> {
        let raw = self.0.get(name)?;
        definition(name)?.parse(raw).ok()
    }
}

/// The definition of `name`, or INVALID_CONFIG naming it.
pub fn known(name: &str) -> Result<&'static TopicConfigDef, TopicError> {
    if let Some(instead) = removed_in_kafka_4(name) {
        return Err(TopicError::InvalidConfig(
            name.to_string(),
            format!("removed in Kafka 4.0: {instead}"),
        ));
    }
    definition(name).ok_or_else(|| {
        TopicError::InvalidConfig(name.to_string(), "unknown topic config name".to_string())
    })
}

/// Kafka's DescribeConfigs config sources (`ConfigEntry.ConfigSource`) of topic configs and of
/// the broker configs that are their defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// An override on the topic (DYNAMIC_TOPIC_CONFIG).
    DynamicTopic,
    /// A dynamic config of this broker, resource `<node id>` (DYNAMIC_BROKER_CONFIG).
    DynamicBroker,
    /// A dynamic config of every broker, resource `""` (DYNAMIC_DEFAULT_BROKER_CONFIG).
    DynamicDefaultBroker,
    /// The broker's command line changed the default (STATIC_BROKER_CONFIG).
    StaticBroker,
    /// Kafka's default (DEFAULT_CONFIG).
    Default,
}

impl ConfigSource {
    pub fn code(self) -> i8 {
        match self {
            ConfigSource::DynamicTopic => 1,
            ConfigSource::DynamicBroker => 2,
            ConfigSource::DynamicDefaultBroker => 3,
            ConfigSource::StaticBroker => 4,
            ConfigSource::Default => 5,
        }
    }
}

/// A config's value when the topic does not override it, and the layer it comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct BrokerDefault {
    /// As set (a dynamic value as the client sent it), or as Kafka prints a static one.
    pub value: String,
    pub source: ConfigSource,
}

/// What a topic without an override of a config gets, layer by layer, most specific first:
/// this broker's dynamic config, the cluster-wide dynamic default, the command line, Kafka's
/// default. The dynamic layers hold topic config names (`retention.ms`) and values already
/// validated (see `broker_configs.rs`, which maps Kafka's broker names onto them).
#[derive(Clone, Debug, Default)]
pub struct TopicDefaults {
    static_config: LogConfig,
    cluster: TopicConfigs,
    per_broker: TopicConfigs,
    /// `cluster` with `per_broker` laid over it.
    dynamic: TopicConfigs,
}

impl TopicDefaults {
    /// The command line's defaults alone (no dynamic broker configs).
    pub fn from_static(static_config: LogConfig) -> TopicDefaults {
        Self::new(
            static_config,
            TopicConfigs::default(),
            TopicConfigs::default(),
        )
    }

    pub fn new(
        static_config: LogConfig,
        cluster: TopicConfigs,
        per_broker: TopicConfigs,
    ) -> TopicDefaults {
        let mut dynamic = cluster.clone();
        dynamic.0.extend(per_broker.0.clone());
        TopicDefaults {
            static_config,
            cluster,
            per_broker,
            dynamic,
        }
    }

    /// The defaults from the command line (what DELETE of a dynamic config reverts to).
    pub fn static_config(&self) -> &LogConfig {
        &self.static_config
    }

    /// Every dynamic default, the per-broker one where both layers set a config.
    pub fn dynamic(&self) -> &TopicConfigs {
        &self.dynamic
    }

    /// The log config of a topic without overrides.
    pub fn log_config(&self) -> LogConfig {
        self.dynamic
            .apply(&self.static_config)
            .unwrap_or_else(|_| self.static_config.clone())
    }

    /// What a topic without an override of `def` inherits: the most specific layer's value.
    pub fn inherited(&self, def: &TopicConfigDef) -> BrokerDefault {
        self.dynamic_layers(def)
            .into_iter()
            .next()
            .unwrap_or_else(|| self.static_default(def))
    }

    /// Kafka's broker synonyms of `def`, most specific first: the per-broker dynamic value,
    /// the cluster-wide one, then the static or default value, each under the broker name.
    pub fn broker_synonyms(&self, def: &TopicConfigDef) -> Vec<(String, String, ConfigSource)> {
        let Some(broker_name) = def.broker_synonym else {
            return Vec::new();
        };
        self.dynamic_layers(def)
            .into_iter()
            .chain([self.static_default(def)])
            .map(|layer| (broker_name.to_string(), layer.value, layer.source))
            .collect()
    }

    /// The dynamic values of `def` that are set, per-broker first.
    fn dynamic_layers(&self, def: &TopicConfigDef) -> Vec<BrokerDefault> {
        [
            (&self.per_broker, ConfigSource::DynamicBroker),
            (&self.cluster, ConfigSource::DynamicDefaultBroker),
        ]
        .into_iter()
        .filter_map(|(layer, source)| {
            layer.0.get(def.name).map(|value| BrokerDefault {
                value: value.clone(),
                source,
            })
        })
        .collect()
    }

    /// The command line's value of `def`, or Kafka's default.
    fn static_default(&self, def: &TopicConfigDef) -> BrokerDefault {
        let value = default_value(def, &self.static_config);
        let source = if value == def.kafka_default {
            ConfigSource::Default
        } else {
            ConfigSource::StaticBroker
        };
        BrokerDefault { value, source }
    }

    /// The dynamic defaults with a topic's overrides laid over them.
    fn with_overrides(&self, overrides: &TopicConfigs) -> TopicConfigs {
        let mut merged = self.dynamic.clone();
        merged.0.extend(overrides.0.clone());
        merged
    }
}

/// One described topic config.
#[derive(Clone, Debug)]
pub struct DescribedConfig {
    pub def: &'static TopicConfigDef,
    pub value: String,
    pub source: ConfigSource,
    /// The broker configs the value falls back to, most specific first (see
    /// [`TopicDefaults::broker_synonyms`]).
    pub broker_synonyms: Vec<(String, String, ConfigSource)>,
}

impl DescribedConfig {
    /// Kafka's synonyms, most specific first: the topic override, then the broker configs the
    /// default comes from (under their broker name when the config has one).
    pub fn synonyms(&self) -> Vec<(String, String, ConfigSource)> {
        let mut synonyms = Vec::new();
        if self.source == ConfigSource::DynamicTopic {
            synonyms.push((self.def.name.to_string(), self.value.clone(), self.source));
        }
        synonyms.extend(self.broker_synonyms.iter().cloned());
        synonyms
    }
}

/// The value a config has on topics that do not override it.
fn default_value(def: &TopicConfigDef, defaults: &LogConfig) -> String {
    log_field_value(defaults, def.name).unwrap_or_else(|| def.kafka_default.to_string())
}

/// Sets the [`LogConfig`] field a config maps to; configs the log does not hold are left.
fn set_log_field(config: &mut LogConfig, name: &str, value: &Value) {
    match (name, value) {
        ("cleanup.policy", Value::List(items)) => config.cleanup_policy = cleanup_policy(items),
        ("retention.ms", Value::Integer(n)) => config.retention_ms = *n,
        ("retention.bytes", Value::Integer(n)) => config.retention_bytes = *n,
        ("segment.bytes", Value::Integer(n)) => config.segment_bytes = n.unsigned_abs(),
        ("segment.ms", Value::Integer(n)) => config.segment_ms = *n,
        ("delete.retention.ms", Value::Integer(n)) => config.delete_retention_ms = *n,
        ("max.message.bytes", Value::Integer(n)) => {
            config.max_message_bytes = usize::try_from(*n).unwrap_or(usize::MAX)
        }
        ("index.interval.bytes", Value::Integer(n)) => {
            config.index_interval_bytes = u32::try_from(*n).unwrap_or(u32::MAX)
        }
        ("message.timestamp.type", Value::Text(text)) => {
            config.timestamp_type = if text == "LogAppendTime" {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            }
        }
        ("message.timestamp.before.max.ms", Value::Integer(n)) => {
            config.timestamp_before_max_ms = *n
        }
        ("message.timestamp.after.max.ms", Value::Integer(n)) => config.timestamp_after_max_ms = *n,
        ("min.compaction.lag.ms", Value::Integer(n)) => config.min_compaction_lag_ms = *n,
        ("max.compaction.lag.ms", Value::Integer(n)) => config.max_compaction_lag_ms = *n,
        ("min.cleanable.dirty.ratio", Value::Double(n)) => config.min_cleanable_dirty_ratio = *n,
        _ => {}
    }
}

/// The value of a config the log holds, as Kafka prints it; `None` for the others.
fn log_field_value(config: &LogConfig, name: &str) -> Option<String> {
    let value = match name {
        "cleanup.policy" => cleanup_policy_name(config.cleanup_policy).to_string(),
        "retention.ms" => config.retention_ms.to_string(),
        "retention.bytes" => config.retention_bytes.to_string(),
        "segment.bytes" => config.segment_bytes.to_string(),
        "segment.ms" => config.segment_ms.to_string(),
        "delete.retention.ms" => config.delete_retention_ms.to_string(),
        "max.message.bytes" => config.max_message_bytes.to_string(),
        "index.interval.bytes" => config.index_interval_bytes.to_string(),
        "message.timestamp.type" => match config.timestamp_type {
            TimestampType::CreateTime => "CreateTime".to_string(),
            TimestampType::LogAppendTime => "LogAppendTime".to_string(),
        },
        "message.timestamp.before.max.ms" => config.timestamp_before_max_ms.to_string(),
        "message.timestamp.after.max.ms" => config.timestamp_after_max_ms.to_string(),
        "min.compaction.lag.ms" => config.min_compaction_lag_ms.to_string(),
        "max.compaction.lag.ms" => config.max_compaction_lag_ms.to_string(),
        "min.cleanable.dirty.ratio" => config.min_cleanable_dirty_ratio.to_string(),
        "compression.type" => compression_name(config.compression).to_string(),
        _ => return None,
    };
    Some(value)
}

fn cleanup_policy(items: &[String]) -> CleanupPolicy {
    let compact = items.iter().any(|item| item == "compact");
    let delete = items.iter().any(|item| item == "delete");
    match (compact, delete) {
        (true, true) => CleanupPolicy::CompactDelete,
        (true, false) => CleanupPolicy::Compact,
        _ => CleanupPolicy::Delete,
    }
}

fn cleanup_policy_name(policy: CleanupPolicy) -> &'static str {
    match policy {
        CleanupPolicy::Delete => "delete",
        CleanupPolicy::Compact => "compact",
        CleanupPolicy::CompactDelete => "compact,delete",
    }
}

fn compression_name(compression: StoredCompression) -> &'static str {
    match compression {
        StoredCompression::Producer => "producer",
        StoredCompression::Uncompressed => "uncompressed",
        StoredCompression::Gzip(_) => "gzip",
        StoredCompression::Snappy => "snappy",
        StoredCompression::Lz4(_) => "lz4",
        StoredCompression::Zstd(_) => "zstd",
    }
}

/// `compression.type` with the level of its codec: the overrides where present, the
/// default's codec and Kafka's default levels otherwise.
fn stored_compression(
    values: &BTreeMap<&str, Value>,
    default: StoredCompression,
) -> StoredCompression {
    let level = |name: &str, kafka_default: i32| match values.get(name) {
        Some(Value::Integer(n)) => i32::try_from(*n).unwrap_or(kafka_default),
        _ => kafka_default,
    };
    let codec = match values.get("compression.type") {
        Some(Value::Text(name)) => name.as_str(),
        _ => compression_name(default),
    };
    match codec {
        "uncompressed" => StoredCompression::Uncompressed,
        "gzip" => StoredCompression::Gzip(level("compression.gzip.level", -1)),
        "snappy" => StoredCompression::Snappy,
        "lz4" => StoredCompression::Lz4(level("compression.lz4.level", 9)),
        "zstd" => StoredCompression::Zstd(level("compression.zstd.level", 3)),
        _ => StoredCompression::Producer,
    }
}

/// Kafka's `LogConfig.validateValues`: the minimum lag may not exceed the maximum.
fn check_compaction_lags(config: &LogConfig) -> Result<(), TopicError> {
    if config.min_compaction_lag_ms > config.max_compaction_lag_ms {
        return Err(TopicError::InvalidConfig(
            "min.compaction.lag.ms".to_string(),
            format!(
                "conflicting settings: min.compaction.lag.ms ({}) > max.compaction.lag.ms ({})",
                config.min_compaction_lag_ms, config.max_compaction_lag_ms
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> TopicConfigs {
        TopicConfigs(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn refusal(pairs: &[(&str, &str)]) -> String {
        match configs(pairs).apply(&LogConfig::default()) {
            Err(TopicError::InvalidConfig(name, why)) => format!("{name}: {why}"),
            other => panic!("{pairs:?} accepted: {other:?}"),
        }
    }

    #[test]
    fn every_kafka_default_is_a_valid_value_and_names_are_unique() {
        let defaults = LogConfig::default();
        for def in TOPIC_CONFIGS {
            configs(&[(def.name, def.kafka_default)])
                .apply(&defaults)
                .unwrap_or_else(|e| panic!("{}: {e}", def.name));
            assert_eq!(
                default_value(def, &defaults),
                def.kafka_default,
                "{}: the log's default is Kafka's",
                def.name
            );
        }
        let mut names: Vec<&str> = TOPIC_CONFIGS.iter().map(|def| def.name).collect();
        names.dedup();
        assert_eq!(names.len(), TOPIC_CONFIGS.len(), "sorted and unique");
        assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted");
    }

    #[test]
    fn values_are_typed_and_ranged_like_kafka() {
        for (pairs, expected) in [
            (vec![("retention.ms", "soon")], "retention.ms: invalid value \"soon\": not a number of type LONG"),
            (vec![("retention.ms", "-2")], "retention.ms: invalid value \"-2\": value must be at least -1"),
            (vec![("segment.bytes", "4294967296")], "segment.bytes: invalid value \"4294967296\": not a number of type INT"),
            (vec![("min.cleanable.dirty.ratio", "1.5")], "min.cleanable.dirty.ratio: invalid value \"1.5\": value must be between 0 and 1"),
            (vec![("message.timestamp.type", "createtime")], "message.timestamp.type: invalid value \"createtime\": string must be one of: CreateTime, LogAppendTime"),
            (vec![("preallocate", "yes")], "preallocate: invalid value \"yes\": expected value to be either true or false"),
            (vec![("cleanup.policy", "compact,shred")], "cleanup.policy: invalid value \"compact,shred\": \"shred\" is not one of: compact, delete"),
            (vec![("compression.gzip.level", "0")], "compression.gzip.level: invalid value \"0\": value must be between 1 and 9, or -1 for the default"),
            (vec![("leader.replication.throttled.replicas", "0:1,x")], "leader.replication.throttled.replicas: invalid value \"0:1,x\": must be the literal '*' or a list of replicas in the format [partitionId]:[brokerId],[partitionId]:[brokerId],..."),
            (vec![("flux.capacitor", "1")], "flux.capacitor: unknown topic config name"),
            (vec![("message.timestamp.difference.max.ms", "1")], "message.timestamp.difference.max.ms: removed in Kafka 4.0: use message.timestamp.before.max.ms and message.timestamp.after.max.ms"),
            (vec![("min.compaction.lag.ms", "10"), ("max.compaction.lag.ms", "5")], "min.compaction.lag.ms: conflicting settings: min.compaction.lag.ms (10) > max.compaction.lag.ms (5)"),
        ] {
            assert_eq!(refusal(&pairs), expected);
        }
        assert!(refusal(&[("remote.storage.enable", "true")]).contains("Tiered Storage"));
    }

    #[test]
    fn overrides_reach_the_log_config() {
        let config = configs(&[
            ("cleanup.policy", " delete , compact "),
            ("retention.ms", "1000"),
            ("message.timestamp.type", "LogAppendTime"),
            ("compression.type", "zstd"),
            ("compression.zstd.level", "-5"),
            ("min.cleanable.dirty.ratio", "0.25"),
            ("preallocate", "TRUE"),
            ("follower.replication.throttled.replicas", "*"),
        ])
        .apply(&LogConfig::default())
        .expect("valid");
        assert_eq!(config.cleanup_policy, CleanupPolicy::CompactDelete);
        assert_eq!(config.retention_ms, 1000);
        assert_eq!(config.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(config.compression, StoredCompression::Zstd(-5));
        assert_eq!(config.min_cleanable_dirty_ratio, 0.25);
        let gzip = configs(&[("compression.type", "gzip")])
            .apply(&LogConfig::default())
            .expect("valid");
        assert_eq!(gzip.compression, StoredCompression::Gzip(-1));
    }

    #[test]
    fn described_sources_and_synonyms_follow_kafka() {
        let defaults = LogConfig {
            retention_ms: 1234,
            ..LogConfig::default()
        };
        let overrides = configs(&[("segment.ms", "99")]);
        let effective = overrides.apply(&defaults).expect("valid");
        let described = overrides.describe(&TopicDefaults::from_static(defaults), &effective);
        assert_eq!(described.len(), TOPIC_CONFIGS.len());
        let find = |name: &str| {
            described
                .iter()
                .find(|d| d.def.name == name)
                .expect("described")
        };
        let segment_ms = find("segment.ms");
        assert_eq!(
            (segment_ms.value.as_str(), segment_ms.source),
            ("99", ConfigSource::DynamicTopic)
        );
        assert_eq!(
            segment_ms.synonyms(),
            [
                (
                    "segment.ms".to_string(),
                    "99".to_string(),
                    ConfigSource::DynamicTopic
                ),
                (
                    "log.roll.ms".to_string(),
                    "604800000".to_string(),
                    ConfigSource::Default
                ),
            ]
        );
        let retention = find("retention.ms");
        assert_eq!(
            (retention.value.as_str(), retention.source),
            ("1234", ConfigSource::StaticBroker)
        );
        let flush = find("flush.ms");
        assert_eq!(
            (flush.value.as_str(), flush.source),
            ("9223372036854775807", ConfigSource::Default)
        );
    }

    #[test]
    fn stored_configs_this_version_refuses_are_skipped_at_open() {
        let stored = configs(&[("segment.bytes", "99999999999"), ("retention.ms", "5")]);
        let defaults = TopicDefaults::from_static(LogConfig::default());
        let config = stored.apply_leniently("t", &defaults);
        assert_eq!(config.retention_ms, 5);
        assert_eq!(config.segment_bytes, LogConfig::default().segment_bytes);
    }
}
