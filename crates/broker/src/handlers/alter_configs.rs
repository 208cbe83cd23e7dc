//! AlterConfigs (v0-2) and IncrementalAlterConfigs (v0-1).
//!
//! Topics (resource type 2): AlterConfigs replaces the topic's whole override set, as in
//! Kafka; IncrementalAlterConfigs edits it: SET, DELETE (back to the default), and APPEND /
//! SUBTRACT for LIST configs (`cleanup.policy`, the throttled-replica lists). Each resource
//! is checked in full (names, values, the constraints between them) before anything of it
//! changes; `validate_only` stops there. A change is written to the topic's `topic.json`
//! (atomically) and applied to every partition's log before the response. Altering needs
//! AlterConfigs on the topic.
//!
//! Brokers (type 4), resource `""` (every broker's default) or `"<node id>"` (this one):
//! the dynamic broker configs, the broker-level defaults of topic configs (see
//! `broker_configs.rs`), edited and replaced the same way, checked in full, stored in
//! `broker-configs.json` and applied to every topic that does not override them before the
//! response. Altering needs AlterConfigs on the cluster. Any other broker config is this
//! broker's command line: naming one refuses the resource with INVALID_REQUEST and Kafka's
//! "Cannot update these configs dynamically" (Kafka's code for a non-dynamic broker config;
//! Kafka would store a name it does not know, Freshet refuses it the same way). A bad value
//! is INVALID_CONFIG naming the config, as for a topic config. Kafka 4 answers
//! INVALID_REQUEST there instead, a code its own comment (KAFKA-13609) calls wrong and keeps
//! only for compatibility; both are final errors to clients.
//!
//! Broker loggers (type 8) are refused with INVALID_REQUEST: logging is set by `RUST_LOG` at
//! start. Refusals are final; clients do not retry them.

use std::collections::BTreeMap;

use freshet_security::acl::Operation;
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{str_bytes, Refusal, RequestContext};
use crate::broker_configs::{self, BrokerLayer, BrokerScope};
use crate::topic_config::{
    self, split_list, ConfigSource, ConfigType, TopicConfigDef, TopicDefaults,
};
use crate::topics::{TopicConfigs, TopicError};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_BROKER_LOGGER: i8 = 8;

/// IncrementalAlterConfigs operation codes.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// One requested change of one config.
#[derive(Debug)]
struct Change {
    name: String,
    op: Op,
}

#[derive(Debug)]
enum Op {
    Set(String),
    Delete,
    Append(String),
    Subtract(String),
}

/// What a resource's changes do to the existing overrides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// AlterConfigs: the changes are the new override set.
    Replace,
    /// IncrementalAlterConfigs: the changes edit the current overrides.
    Edit,
}

pub async fn alter(ctx: &RequestContext, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let responses = request
        .resources
        .into_iter()
        .map(|resource| {
            let changes = resource
                .configs
                .into_iter()
                .map(|config| legacy_change(config.name, config.value))
                .collect();
            let outcome = alter_resource(
                ctx,
                resource.resource_type,
                &resource.resource_name,
                changes,
                Mode::Replace,
                request.validate_only,
            );
            let (error_code, error_message) = encode_outcome(outcome);
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(error_code)
                .with_error_message(error_message)
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

pub async fn incremental(
    ctx: &RequestContext,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let responses = request
        .resources
        .into_iter()
        .map(|resource| {
            let changes = resource
                .configs
                .into_iter()
                .map(|config| {
                    incremental_change(config.name, config.config_operation, config.value)
                })
                .collect();
            let outcome = alter_resource(
                ctx,
                resource.resource_type,
                &resource.resource_name,
                changes,
                Mode::Edit,
                request.validate_only,
            );
            let (error_code, error_message) = encode_outcome(outcome);
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(error_code)
                .with_error_message(error_message)
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// An AlterConfigs entry: a SET of the new override set. Kafka refuses a null value there.
fn legacy_change(name: StrBytes, value: Option<StrBytes>) -> Result<Change, Refusal> {
    match value {
        Some(value) => Ok(Change {
            name: name.to_string(),
            op: Op::Set(value.to_string()),
        }),
        None => Err(invalid_request(format!(
            "null value for config {}",
            name.as_str()
        ))),
    }
}

fn incremental_change(name: StrBytes, op: i8, value: Option<StrBytes>) -> Result<Change, Refusal> {
    let name = name.to_string();
    let value = || {
        value
            .as_ref()
            .map(|v| v.to_string())
            .ok_or_else(|| invalid_request(format!("null value for config {name}")))
    };
    let op = match op {
        OP_SET => Op::Set(value()?),
        OP_DELETE => Op::Delete,
        OP_APPEND => Op::Append(value()?),
        OP_SUBTRACT => Op::Subtract(value()?),
        other => {
            return Err(invalid_request(format!(
            "unknown operation {other} for config {name} (0 SET, 1 DELETE, 2 APPEND, 3 SUBTRACT)"
        )))
        }
    };
    Ok(Change { name, op })
}

fn alter_resource(
    ctx: &RequestContext,
    resource_type: i8,
    name: &str,
    changes: Vec<Result<Change, Refusal>>,
    mode: Mode,
    validate_only: bool,
) -> Result<(), Refusal> {
    match resource_type {
        RESOURCE_TOPIC => alter_topic(ctx, name, changes, mode, validate_only),
        RESOURCE_BROKER => alter_broker(ctx, name, changes, mode, validate_only),
        RESOURCE_BROKER_LOGGER => Err(invalid_request(
            "broker loggers cannot be changed at runtime: Freshet's logging is set by RUST_LOG \
             when it starts"
                .to_owned(),
        )),
        other => Err(invalid_request(format!(
            "resource type {other} cannot be altered (2 topic and 4 broker can)"
        ))),
    }
}

/// A topic's overrides, under AlterConfigs on the topic.
fn alter_topic(
    ctx: &RequestContext,
    name: &str,
    changes: Vec<Result<Change, Refusal>>,
    mode: Mode,
    validate_only: bool,
) -> Result<(), Refusal> {
    if !ctx.may_on_topic(Operation::AlterConfigs, name) {
        return Err(super::topic_denied(name, "AlterConfigs"));
    }
    let changes = well_formed(changes)?;
    let defaults = ctx.broker.topics.defaults();
    let inherited = |def: &TopicConfigDef| split_list(defaults.inherited(def).value.trim());
    ctx.broker
        .topics
        .alter_configs(name, validate_only, |current| {
            edited(&current.0, &changes, mode, topic_config::known, inherited).map(TopicConfigs)
        })
        .map(|_| ())
        .map_err(Refusal::from)
}

/// One broker resource's dynamic configs, under AlterConfigs on the cluster.
fn alter_broker(
    ctx: &RequestContext,
    name: &str,
    changes: Vec<Result<Change, Refusal>>,
    mode: Mode,
    validate_only: bool,
) -> Result<(), Refusal> {
    if !ctx.may_on_cluster(Operation::AlterConfigs) {
        return Err(Refusal::new(
            ResponseError::ClusterAuthorizationFailed,
            "not authorized to AlterConfigs on the cluster".to_owned(),
        ));
    }
    let scope = broker_scope(ctx, name)?;
    let changes = well_formed(changes)?;
    check_dynamic(&changes)?;
    ctx.broker
        .topics
        .alter_broker_configs(scope, validate_only, |current, defaults| {
            let inherited = |def: &TopicConfigDef| inherited_by(defaults, scope, def);
            edited(current, &changes, mode, dynamic_definition, inherited)
        })
        .map_err(Refusal::from)
}

/// The broker resource `name` names: `""` every broker's default, or this broker's node id.
fn broker_scope(ctx: &RequestContext, name: &str) -> Result<BrokerScope, Refusal> {
    let node = ctx.broker.config.node_id;
    if name.is_empty() {
        Ok(BrokerScope::ClusterDefault)
    } else if name.parse::<i32>() == Ok(node) {
        Ok(BrokerScope::ThisBroker)
    } else {
        Err(invalid_request(format!(
            "broker {name:?} is not this broker (node id {node})"
        )))
    }
}

/// Every config named must be a dynamic broker config. Kafka refuses a broker config that
/// cannot change at runtime with INVALID_REQUEST and this message
/// (`DynamicBrokerConfig.validateConfigs`), which is followed here; a name Kafka does not know
/// it would store, Freshet refuses the same way (it could not say what the name does).
fn check_dynamic(changes: &[Change]) -> Result<(), Refusal> {
    let refused: Vec<&str> = changes
        .iter()
        .map(|c| c.name.as_str())
        .filter(|name| broker_configs::topic_config_of(name).is_none())
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    Err(invalid_request(format!(
        "Cannot update these configs dynamically: [{}]. Only the broker defaults of topic \
         configs (log.retention.ms, log.roll.ms, message.max.bytes, ...: the entries of \
         DescribeConfigs on this broker that are not read-only) can change at runtime; the \
         others are set on Freshet's command line",
        refused.join(", ")
    )))
}

fn dynamic_definition(name: &str) -> Result<&'static TopicConfigDef, TopicError> {
    broker_configs::topic_config_of(name).ok_or_else(|| {
        TopicError::InvalidConfig(name.to_string(), "not a dynamic broker config".into())
    })
}

/// The list a broker resource that does not set `def` has: the less specific layers' value.
/// (Kafka starts APPEND and SUBTRACT from the config's built-in default there; the value the
/// resource actually inherits is what an operator sees in DescribeConfigs.)
fn inherited_by(defaults: &TopicDefaults, scope: BrokerScope, def: &TopicConfigDef) -> Vec<String> {
    let below = |source: ConfigSource| match scope {
        BrokerScope::ThisBroker => source != ConfigSource::DynamicBroker,
        BrokerScope::ClusterDefault => !matches!(
            source,
            ConfigSource::DynamicBroker | ConfigSource::DynamicDefaultBroker
        ),
    };
    defaults
        .broker_synonyms(def)
        .into_iter()
        .find(|(_, _, source)| below(*source))
        .map(|(_, value, _)| split_list(value.trim()))
        .unwrap_or_default()
}

/// The changes, each well formed and no config named twice (Kafka: INVALID_REQUEST).
fn well_formed(changes: Vec<Result<Change, Refusal>>) -> Result<Vec<Change>, Refusal> {
    let changes = changes.into_iter().collect::<Result<Vec<_>, _>>()?;
    for (index, change) in changes.iter().enumerate() {
        if changes[..index].iter().any(|c| c.name == change.name) {
            return Err(invalid_request(format!(
                "config {} is named twice in one resource",
                change.name
            )));
        }
    }
    Ok(changes)
}

/// The config set the changes make of `current` (a topic's overrides or a broker resource's
/// dynamic configs; validated as a whole by the caller). `definition` looks a name up;
/// `inherited` is a LIST config's value where `current` does not set it (APPEND, SUBTRACT).
fn edited(
    current: &BrokerLayer,
    changes: &[Change],
    mode: Mode,
    definition: impl Fn(&str) -> Result<&'static TopicConfigDef, TopicError>,
    inherited: impl Fn(&TopicConfigDef) -> Vec<String>,
) -> Result<BTreeMap<String, String>, TopicError> {
    let mut next = match mode {
        Mode::Replace => BTreeMap::new(),
        Mode::Edit => current.clone(),
    };
    for change in changes {
        let def = definition(&change.name)?;
        match &change.op {
            Op::Set(value) => {
                next.insert(change.name.clone(), value.clone());
            }
            Op::Delete => {
                next.remove(&change.name);
            }
            Op::Append(value) | Op::Subtract(value) => {
                let items = match next.get(&change.name) {
                    Some(raw) => split_list(raw.trim()),
                    None => inherited(def),
                };
                let items = edited_list(&change.name, def, items, &change.op, value)?;
                next.insert(change.name.clone(), items.join(","));
            }
        }
    }
    Ok(next)
}

/// A LIST config's items after APPEND or SUBTRACT of the comma-separated `value`.
fn edited_list(
    name: &str,
    def: &TopicConfigDef,
    mut items: Vec<String>,
    op: &Op,
    value: &str,
) -> Result<Vec<String>, TopicError> {
    if def.config_type != ConfigType::List {
        return Err(TopicError::InvalidConfig(
            name.to_string(),
            format!("APPEND and SUBTRACT apply to LIST configs only, and {name} is not one"),
        ));
    }
    let given = value.split(',').map(str::trim).filter(|s| !s.is_empty());
    if matches!(op, Op::Append(_)) {
        for item in given {
            if !items.iter().any(|existing| existing == item) {
                items.push(item.to_string());
            }
        }
    } else {
        let given: Vec<&str> = given.collect();
        items.retain(|item| !given.contains(&item.as_str()));
    }
    Ok(items)
}

fn invalid_request(message: String) -> Refusal {
    Refusal::new(ResponseError::InvalidRequest, message)
}

fn encode_outcome(outcome: Result<(), Refusal>) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (0, None),
        Err(refusal) => (refusal.code(), Some(str_bytes(refusal.message))),
    }
}
