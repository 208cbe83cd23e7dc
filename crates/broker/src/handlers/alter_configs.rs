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
//! Brokers (type 4): this broker's configs are its command line, fixed while it runs, so a
//! request to change any is refused with INVALID_REQUEST naming them (a request changing
//! nothing succeeds). Broker loggers (type 8) are refused the same way: logging is set by
//! `RUST_LOG` at start. Both refusals are final; clients do not retry them.

use freshet_security::acl::Operation;
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{str_bytes, RequestContext};
use crate::topic_config::{self, ConfigType};
use crate::topics::{TopicConfigs, TopicError};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_BROKER_LOGGER: i8 = 8;

/// IncrementalAlterConfigs operation codes.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

type Refusal = (i16, String);

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
        RESOURCE_TOPIC => {
            if !ctx.may_on_topic(Operation::AlterConfigs, name) {
                return Err(super::topic_denied(name, "AlterConfigs"));
            }
            let changes = well_formed(changes)?;
            ctx.broker
                .topics
                .alter_configs(name, validate_only, |current| {
                    edited(ctx, current, &changes, mode)
                })
                .map(|_| ())
                .map_err(|e| (e.error_code(), e.to_string()))
        }
        RESOURCE_BROKER => {
            if !ctx.may_on_cluster(Operation::AlterConfigs) {
                return Err((
                    ResponseError::ClusterAuthorizationFailed.code(),
                    "not authorized to AlterConfigs on the cluster".to_owned(),
                ));
            }
            refuse_broker_changes(ctx, name, &well_formed(changes)?)
        }
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

/// The override set the changes make of `current` (validated as a whole by the caller).
fn edited(
    ctx: &RequestContext,
    current: &TopicConfigs,
    changes: &[Change],
    mode: Mode,
) -> Result<TopicConfigs, TopicError> {
    let mut next = match mode {
        Mode::Replace => TopicConfigs::default(),
        Mode::Edit => current.clone(),
    };
    for change in changes {
        let def = topic_config::known(&change.name)?;
        match &change.op {
            Op::Set(value) => {
                next.0.insert(change.name.clone(), value.clone());
            }
            Op::Delete => {
                next.0.remove(&change.name);
            }
            Op::Append(value) | Op::Subtract(value) => {
                if def.config_type != ConfigType::List {
                    return Err(TopicError::InvalidConfig(
                        change.name.clone(),
                        format!(
                            "APPEND and SUBTRACT apply to LIST configs only, and {} is not one",
                            change.name
                        ),
                    ));
                }
                let mut items = next.list_value(def, ctx.broker.topics.log_defaults());
                let given = value.split(',').map(str::trim).filter(|s| !s.is_empty());
                if matches!(change.op, Op::Append(_)) {
                    for item in given {
                        if !items.iter().any(|existing| existing == item) {
                            items.push(item.to_string());
                        }
                    }
                } else {
                    let given: Vec<&str> = given.collect();
                    items.retain(|item| !given.contains(&item.as_str()));
                }
                next.0.insert(change.name.clone(), items.join(","));
            }
        }
    }
    Ok(next)
}

/// This broker's configs cannot change while it runs; say which ones were asked for.
fn refuse_broker_changes(
    ctx: &RequestContext,
    name: &str,
    changes: &[Change],
) -> Result<(), Refusal> {
    let node = ctx.broker.config.node_id;
    if !name.is_empty() && name.parse::<i32>() != Ok(node) {
        return Err(invalid_request(format!(
            "broker {name:?} is not this broker (node id {node})"
        )));
    }
    if changes.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = changes.iter().map(|c| c.name.as_str()).collect();
    Err(invalid_request(format!(
        "broker configs are set on Freshet's command line and cannot be changed at runtime: {}",
        names.join(", ")
    )))
}

fn invalid_request(message: String) -> Refusal {
    (ResponseError::InvalidRequest.code(), message)
}

fn encode_outcome(outcome: Result<(), Refusal>) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (0, None),
        Err((code, message)) => (code, Some(str_bytes(message))),
    }
}
