//! DescribeConfigs: every topic config (see `topic_config.rs`) with its source (the topic's
//! override, a dynamic broker config, the broker's command line, or Kafka's default),
//! synonyms on request, type and documentation (v3+); and the broker's own configs. For
//! principals with DescribeConfigs on the topic or the cluster.
//!
//! The broker resource `"<node id>"` lists the broker's static (read-only) settings and every
//! dynamic broker config (see `broker_configs.rs`) with the layer its value comes from; the
//! resource `""` lists only the cluster-wide dynamic defaults that are set, as Kafka does.

use freshet_security::acl::Operation;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{str_bytes, Refusal, RequestContext};
use crate::topic_config::{ConfigSource, DescribedConfig, TopicDefaults, TOPIC_CONFIGS};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_STATIC_BROKER: i8 = 4;

/// One config entry before it is filtered and encoded.
struct Entry {
    name: String,
    value: String,
    source: i8,
    read_only: bool,
    config_type: i8,
    documentation: &'static str,
    /// `(name, value, source)`, most specific first.
    synonyms: Vec<(String, String, i8)>,
}

impl From<DescribedConfig> for Entry {
    fn from(config: DescribedConfig) -> Entry {
        let synonyms = config
            .synonyms()
            .into_iter()
            .map(|(name, value, source)| (name, value, source.code()))
            .collect();
        Entry {
            name: config.def.name.to_string(),
            value: config.value,
            source: config.source.code(),
            // Every topic config can be altered (AlterConfigs, IncrementalAlterConfigs).
            read_only: false,
            config_type: config.def.config_type.code(),
            documentation: config.def.documentation,
            synonyms,
        }
    }
}

pub async fn handle(
    ctx: &RequestContext,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let extras = Extras {
        synonyms: request.include_synonyms,
        documentation: request.include_documentation,
    };
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let entries = match resource.resource_type {
                RESOURCE_TOPIC
                    if !ctx.may_on_topic(Operation::DescribeConfigs, &resource.resource_name) =>
                {
                    Err(super::topic_denied(
                        &resource.resource_name,
                        "DescribeConfigs",
                    ))
                }
                RESOURCE_BROKER if !ctx.may_on_cluster(Operation::DescribeConfigs) => {
                    Err(Refusal::new(
                        ResponseError::ClusterAuthorizationFailed,
                        "not authorized to DescribeConfigs on the cluster".to_owned(),
                    ))
                }
                RESOURCE_TOPIC => topic_entries(ctx, &resource.resource_name),
                RESOURCE_BROKER => broker_entries(ctx, &resource.resource_name),
                other => Err(Refusal::new(
                    ResponseError::InvalidRequest,
                    format!("resource type {other} is not supported"),
                )),
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name);
            match entries {
                Ok(entries) => result.with_configs(
                    entries
                        .into_iter()
                        .filter(|e| wanted(&resource.configuration_keys, &e.name))
                        .map(|e| encode(ctx.version, extras, e))
                        .collect(),
                ),
                Err(refusal) => result
                    .with_error_code(refusal.code())
                    .with_error_message(Some(str_bytes(refusal.message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn wanted(keys: &Option<Vec<StrBytes>>, name: &str) -> bool {
    keys.as_ref()
        .is_none_or(|keys| keys.is_empty() || keys.iter().any(|k| k.as_str() == name))
}

fn topic_entries(ctx: &RequestContext, name: &str) -> Result<Vec<Entry>, Refusal> {
    let registry = &ctx.broker.topics;
    let topic = registry.get(name).ok_or_else(|| {
        Refusal::new(
            ResponseError::UnknownTopicOrPartition,
            format!("topic {name} does not exist"),
        )
    })?;
    let effective = registry.effective_config(&topic);
    Ok(topic
        .configs
        .describe(&registry.defaults(), &effective)
        .into_iter()
        .map(Entry::from)
        .collect())
}

/// A count as Kafka shows an unlimited int setting: capped at `i32::MAX`.
fn kafka_int(value: usize) -> String {
    value.min(i32::MAX as usize).to_string()
}

/// The entries of broker resource `name`: `""` (the cluster-wide dynamic defaults) or this
/// broker's node id (everything); another id is INVALID_REQUEST, as in Kafka.
fn broker_entries(ctx: &RequestContext, name: &str) -> Result<Vec<Entry>, Refusal> {
    let defaults = ctx.broker.topics.defaults();
    if name.is_empty() {
        return Ok(dynamic_entries(&defaults, |source| {
            source == ConfigSource::DynamicDefaultBroker
        }));
    }
    let node = ctx.broker.config.node_id;
    if name.parse::<i32>() != Ok(node) {
        return Err(Refusal::new(
            ResponseError::InvalidRequest,
            format!("Unexpected broker id, expected {node} or empty string, but received {name}"),
        ));
    }
    let mut entries = static_entries(ctx);
    entries.extend(dynamic_entries(&defaults, |_| true));
    Ok(entries)
}

/// One entry per dynamic broker config whose layers `keep` keeps any of: the most specific
/// one's value and source, and those layers as synonyms.
fn dynamic_entries(defaults: &TopicDefaults, keep: impl Fn(ConfigSource) -> bool) -> Vec<Entry> {
    TOPIC_CONFIGS
        .iter()
        .filter_map(|def| {
            let name = def.broker_synonym?;
            let synonyms: Vec<(String, String, i8)> = defaults
                .broker_synonyms(def)
                .into_iter()
                .filter(|(_, _, source)| keep(*source))
                .map(|(name, value, source)| (name, value, source.code()))
                .collect();
            let (_, value, source) = synonyms.first()?.clone();
            Some(Entry {
                name: name.to_string(),
                value,
                source,
                // Changed by AlterConfigs and IncrementalAlterConfigs on the broker.
                read_only: false,
                config_type: def.config_type.code(),
                documentation: def.documentation,
                synonyms,
            })
        })
        .collect()
}

/// The settings of this broker's command line that are not topic defaults: read-only.
fn static_entries(ctx: &RequestContext) -> Vec<Entry> {
    let config = &ctx.broker.config;
    let static_entry = |name: &str, value: String, config_type: i8, documentation| Entry {
        name: name.to_string(),
        value,
        source: SOURCE_STATIC_BROKER,
        // Set on the command line; AlterConfigs cannot change them.
        read_only: true,
        config_type,
        documentation,
        synonyms: Vec::new(),
    };
    let mut entries = vec![
        static_entry("broker.id", config.node_id.to_string(), 3, "this node's id"),
        static_entry(
            "auto.create.topics.enable",
            config.auto_create_topics.to_string(),
            1,
            "create unknown topics on Metadata and Produce",
        ),
        static_entry(
            "num.partitions",
            config.default_partitions.to_string(),
            3,
            "partitions of an auto-created topic",
        ),
        static_entry(
            "socket.request.max.bytes",
            config.max_request_bytes.to_string(),
            3,
            "largest request frame accepted",
        ),
        static_entry(
            "queued.max.request.bytes",
            config.queued_max_request_bytes.to_string(),
            5,
            "request bytes in flight across connections before reading pauses",
        ),
        static_entry(
            "connections.max.idle.ms",
            config.connections_max_idle.as_millis().to_string(),
            5,
            "idle connections are closed after this long",
        ),
        static_entry(
            "max.connections.per.ip",
            kafka_int(config.max_connections_per_ip),
            3,
            "connections from one address past this are closed at once",
        ),
    ];
    if let Some(max) = config.max_connections {
        entries.push(static_entry(
            "max.connections",
            kafka_int(max),
            3,
            "connections past this are closed at once",
        ));
    }
    entries
}

/// What the request asked for besides names and values.
#[derive(Clone, Copy)]
struct Extras {
    synonyms: bool,
    documentation: bool,
}

fn encode(version: i16, extras: Extras, entry: Entry) -> DescribeConfigsResourceResult {
    let mut result = DescribeConfigsResourceResult::default()
        .with_name(str_bytes(entry.name))
        .with_value(Some(str_bytes(entry.value)))
        .with_read_only(entry.read_only)
        .with_config_source(entry.source);
    if extras.synonyms {
        result.synonyms = entry
            .synonyms
            .into_iter()
            .map(|(name, value, source)| {
                DescribeConfigsSynonym::default()
                    .with_name(str_bytes(name))
                    .with_value(Some(str_bytes(value)))
                    .with_source(source)
            })
            .collect();
    }
    if version >= 3 {
        result.config_type = entry.config_type;
        if extras.documentation {
            result.documentation = Some(str_bytes(entry.documentation));
        }
    }
    result
}
