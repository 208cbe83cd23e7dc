//! CreateAcls, DescribeAcls and DeleteAcls: the ACLs of `--authorizer acl`
//! ([`freshet_security::acl`]).
//!
//! As in Kafka: without an authorizer all three answer SECURITY_DISABLED; creating and
//! deleting take Alter on the cluster, describing takes Describe on it
//! (CLUSTER_AUTHORIZATION_FAILED otherwise); a binding with a filter-only value (ANY, MATCH)
//! or a malformed principal or host answers INVALID_REQUEST. Changes are fsynced before the
//! response, off the async runtime.

use std::collections::BTreeMap;
use std::sync::Arc;

use freshet_security::acl::{
    AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType,
};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{str_bytes, Refusal, RequestContext};
use crate::Broker;

/// Whether ACLs are on and the principal may `operation` them.
fn check(ctx: &RequestContext, operation: Operation) -> Result<(), Refusal> {
    if ctx.broker.authorizer.is_none() {
        return Err(Refusal::new(
            ResponseError::SecurityDisabled,
            "no authorizer is configured; start the broker with --authorizer acl".to_owned(),
        ));
    }
    if !ctx.may_on_cluster(operation) {
        return Err(Refusal::new(
            ResponseError::ClusterAuthorizationFailed,
            format!("not authorized to {operation} ACLs (needs {operation} on the cluster)"),
        ));
    }
    Ok(())
}

/// Runs a change of the ACL store on a blocking thread (it fsyncs).
async fn on_store<R: Send + 'static>(
    broker: &Arc<Broker>,
    change: impl FnOnce(&freshet_security::acl::AclStore) -> Result<R, String> + Send + 'static,
) -> Result<R, Refusal> {
    let broker = broker.clone();
    let outcome = tokio::task::spawn_blocking(move || match &broker.authorizer {
        Some(authorizer) => change(authorizer.acls()),
        None => Err("no authorizer".to_owned()),
    })
    .await;
    match outcome {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(message)) => Err(Refusal::new(ResponseError::UnknownServerError, message)),
        Err(e) => Err(Refusal::new(
            ResponseError::UnknownServerError,
            e.to_string(),
        )),
    }
}

pub async fn create(ctx: &RequestContext, request: CreateAclsRequest) -> CreateAclsResponse {
    let count = request.creations.len();
    let results = match check(ctx, Operation::Alter) {
        Err(refusal) => vec![refusal_result(&refusal); count],
        Ok(()) => create_valid(ctx, request.creations).await,
    };
    CreateAclsResponse::default().with_results(results)
}

/// Stores the valid creations in one fsynced change; each invalid one gets its own error.
async fn create_valid(ctx: &RequestContext, creations: Vec<AclCreation>) -> Vec<AclCreationResult> {
    let parsed: Vec<Result<AclBinding, Refusal>> = creations.iter().map(binding).collect();
    let valid: Vec<AclBinding> = parsed
        .iter()
        .filter_map(|b| b.as_ref().ok())
        .cloned()
        .collect();
    let stored = if valid.is_empty() {
        Ok(())
    } else {
        for binding in &valid {
            tracing::info!(principal = %ctx.principal, acl = ?binding, "ACL created");
        }
        on_store(&ctx.broker, move |store| {
            store.create(&valid).map_err(|e| e.to_string())
        })
        .await
    };
    parsed
        .into_iter()
        .map(|binding| match (&binding, &stored) {
            (Err(refusal), _) | (Ok(_), Err(refusal)) => refusal_result(refusal),
            (Ok(_), Ok(())) => AclCreationResult::default(),
        })
        .collect()
}

fn refusal_result(refusal: &Refusal) -> AclCreationResult {
    AclCreationResult::default()
        .with_error_code(refusal.code())
        .with_error_message(Some(str_bytes(refusal.message.clone())))
}

/// A creation as a binding, if every field names a concrete value.
fn binding(creation: &AclCreation) -> Result<AclBinding, Refusal> {
    let invalid = |message: String| Refusal::new(ResponseError::InvalidRequest, message);
    let binding = AclBinding {
        resource_type: code(
            ResourceType::from_code,
            creation.resource_type,
            "resource type",
        )?,
        resource_name: creation.resource_name.to_string(),
        pattern_type: code(
            PatternType::from_code,
            creation.resource_pattern_type,
            "pattern type",
        )?,
        principal: creation.principal.to_string(),
        host: creation.host.to_string(),
        operation: code(Operation::from_code, creation.operation, "operation")?,
        permission: code(
            Permission::from_code,
            creation.permission_type,
            "permission",
        )?,
    };
    binding.validate().map_err(|e| invalid(e.0))?;
    Ok(binding)
}

fn code<T>(parse: fn(i8) -> Option<T>, value: i8, what: &str) -> Result<T, Refusal> {
    parse(value).ok_or_else(|| {
        Refusal::new(
            ResponseError::InvalidRequest,
            format!("unknown {what} code {value}"),
        )
    })
}

/// A DescribeAcls or DeleteAcls filter from its protocol fields.
fn filter(
    resource_type: i8,
    resource_name: &Option<StrBytes>,
    pattern_type: i8,
    principal: &Option<StrBytes>,
    host: &Option<StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, Refusal> {
    Ok(AclFilter {
        resource_type: code(ResourceType::from_code, resource_type, "resource type")?,
        resource_name: resource_name.as_ref().map(|s| s.to_string()),
        pattern_type: code(PatternType::from_code, pattern_type, "pattern type")?,
        principal: principal.as_ref().map(|s| s.to_string()),
        host: host.as_ref().map(|s| s.to_string()),
        operation: code(Operation::from_code, operation, "operation")?,
        permission: code(Permission::from_code, permission, "permission")?,
    })
}

pub async fn describe(ctx: &RequestContext, request: DescribeAclsRequest) -> DescribeAclsResponse {
    let filter = check(ctx, Operation::Describe).and_then(|()| {
        filter(
            request.resource_type_filter,
            &request.resource_name_filter,
            request.pattern_type_filter,
            &request.principal_filter,
            &request.host_filter,
            request.operation,
            request.permission_type,
        )
    });
    let filter = match filter {
        Ok(filter) => filter,
        Err(refusal) => {
            return DescribeAclsResponse::default()
                .with_error_code(refusal.code())
                .with_error_message(Some(str_bytes(refusal.message)))
        }
    };
    let bindings = ctx
        .broker
        .authorizer
        .as_ref()
        .map(|a| a.acls().bindings())
        .unwrap_or_default();
    DescribeAclsResponse::default()
        .with_resources(by_resource(bindings.iter().filter(|b| filter.matches(b))))
}

/// Bindings grouped per resource pattern, as DescribeAcls lists them.
fn by_resource<'a>(bindings: impl Iterator<Item = &'a AclBinding>) -> Vec<DescribeAclsResource> {
    let mut resources: BTreeMap<(ResourceType, &str, PatternType), Vec<AclDescription>> =
        BTreeMap::new();
    for b in bindings {
        resources
            .entry((b.resource_type, &b.resource_name, b.pattern_type))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(str_bytes(b.principal.clone()))
                    .with_host(str_bytes(b.host.clone()))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code()),
            );
    }
    resources
        .into_iter()
        .map(|((resource_type, name, pattern_type), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(resource_type.code())
                .with_resource_name(str_bytes(name))
                .with_pattern_type(pattern_type.code())
                .with_acls(acls)
        })
        .collect()
}

pub async fn delete(ctx: &RequestContext, request: DeleteAclsRequest) -> DeleteAclsResponse {
    let parsed: Vec<Result<AclFilter, Refusal>> = request
        .filters
        .iter()
        .map(|f: &DeleteAclsFilter| {
            check(ctx, Operation::Alter).and_then(|()| {
                filter(
                    f.resource_type_filter,
                    &f.resource_name_filter,
                    f.pattern_type_filter,
                    &f.principal_filter,
                    &f.host_filter,
                    f.operation,
                    f.permission_type,
                )
            })
        })
        .collect();
    let valid: Vec<AclFilter> = parsed
        .iter()
        .filter_map(|f| f.as_ref().ok())
        .cloned()
        .collect();
    let removed = if valid.is_empty() {
        Ok(Vec::new())
    } else {
        on_store(&ctx.broker, move |store| {
            store.delete(&valid).map_err(|e| e.to_string())
        })
        .await
    };
    for binding in removed.iter().flatten().flatten() {
        tracing::info!(principal = %ctx.principal, acl = ?binding, "ACL deleted");
    }
    let mut removed_per_filter = match removed {
        Ok(removed) => Ok(removed.into_iter()),
        Err(refusal) => Err(refusal),
    };
    let results = parsed
        .into_iter()
        .map(|parsed| {
            let outcome = parsed.and_then(|_| match &mut removed_per_filter {
                Ok(removed) => Ok(removed.next().unwrap_or_default()),
                Err(refusal) => Err(refusal.clone()),
            });
            match outcome {
                Ok(matching) => DeleteAclsFilterResult::default()
                    .with_matching_acls(matching.iter().map(matching_acl).collect()),
                Err(refusal) => DeleteAclsFilterResult::default()
                    .with_error_code(refusal.code())
                    .with_error_message(Some(str_bytes(refusal.message))),
            }
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}

fn matching_acl(b: &AclBinding) -> DeleteAclsMatchingAcl {
    DeleteAclsMatchingAcl::default()
        .with_resource_type(b.resource_type.code())
        .with_resource_name(str_bytes(b.resource_name.clone()))
        .with_pattern_type(b.pattern_type.code())
        .with_principal(str_bytes(b.principal.clone()))
        .with_host(str_bytes(b.host.clone()))
        .with_operation(b.operation.code())
        .with_permission_type(b.permission.code())
}
