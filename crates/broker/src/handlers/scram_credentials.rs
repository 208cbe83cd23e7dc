//! DescribeUserScramCredentials and AlterUserScramCredentials: the SASL users of
//! [`freshet_security::users`] over the Kafka protocol, as `kafka-configs.sh --alter
//! --add-config 'SCRAM-SHA-256=[password=...]'` and admin clients manage them.
//!
//! As in Kafka: describing takes Describe on the cluster and altering Alter on it
//! (CLUSTER_AUTHORIZATION_FAILED); an unknown user answers RESOURCE_NOT_FOUND, an unknown
//! mechanism UNSUPPORTED_SASL_MECHANISM, a user named twice in one request
//! DUPLICATE_RESOURCE, and iterations out of range or an empty name UNACCEPTABLE_CREDENTIAL.
//! Upsertions carry a salt and a salted password, never the password.

use std::collections::HashMap;

use freshet_security::acl::Operation;
use freshet_security::scram::{Mechanism, ScramCredential, MAX_ITERATIONS, MIN_ITERATIONS};
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::ResponseError;

use super::{str_bytes, Refusal, RequestContext};

pub async fn describe(
    ctx: &RequestContext,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    if !ctx.may_on_cluster(Operation::Describe) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(str_bytes(
                "not authorized to describe SCRAM credentials (needs Describe on the cluster)",
            )));
    }
    let users = ctx.broker.users.list();
    let results = match request.users {
        // Null or empty: every user.
        None => users.iter().map(described).collect(),
        Some(wanted) if wanted.is_empty() => users.iter().map(described).collect(),
        Some(wanted) => {
            let mut seen = HashMap::new();
            for name in &wanted {
                *seen.entry(name.name.to_string()).or_insert(0) += 1;
            }
            wanted
                .iter()
                .map(|name| {
                    let name = name.name.to_string();
                    let result = DescribeUserScramCredentialsResult::default()
                        .with_user(str_bytes(name.clone()));
                    if seen.get(&name).copied().unwrap_or(0) > 1 {
                        return result
                            .with_error_code(ResponseError::DuplicateResource.code())
                            .with_error_message(Some(str_bytes(format!(
                                "user {name} is named more than once"
                            ))));
                    }
                    match users.iter().find(|u| u.name == name) {
                        Some(user) => described(user),
                        None => result
                            .with_error_code(ResponseError::ResourceNotFound.code())
                            .with_error_message(Some(str_bytes(format!(
                                "attempt to describe a user credential that does not exist: {name}"
                            )))),
                    }
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

fn described(user: &freshet_security::users::UserInfo) -> DescribeUserScramCredentialsResult {
    DescribeUserScramCredentialsResult::default()
        .with_user(str_bytes(user.name.clone()))
        .with_credential_infos(
            user.mechanisms
                .iter()
                .map(|(mechanism, iterations)| {
                    CredentialInfo::default()
                        .with_mechanism(mechanism.kafka_type())
                        .with_iterations(i32::try_from(*iterations).unwrap_or(i32::MAX))
                })
                .collect(),
        )
}

/// One change to apply: a deletion or an upsertion of one user's credential.
enum Change {
    Delete(Mechanism),
    Upsert(ScramCredential),
}

pub async fn alter(
    ctx: &RequestContext,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let mut order = Vec::new();
    let mut changes: HashMap<String, Result<Vec<Change>, Refusal>> = HashMap::new();
    let mut push = |user: String, change: Result<Change, Refusal>| {
        if !changes.contains_key(&user) {
            order.push(user.clone());
        }
        let entry = changes.entry(user).or_insert_with(|| Ok(Vec::new()));
        match (entry.as_mut(), change) {
            (Ok(list), Ok(change)) => list.push(change),
            (Ok(_), Err(refusal)) => *entry = Err(refusal),
            (Err(_), _) => {}
        }
    };
    for deletion in &request.deletions {
        let change = mechanism(deletion.mechanism).map(Change::Delete);
        push(deletion.name.to_string(), change);
    }
    for upsertion in &request.upsertions {
        let change = mechanism(upsertion.mechanism).and_then(|mechanism| {
            let iterations = u32::try_from(upsertion.iterations).unwrap_or(0);
            if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
                return Err(Refusal::new(
                    ResponseError::UnacceptableCredential,
                    format!(
                        "iterations {} out of range {MIN_ITERATIONS}..={MAX_ITERATIONS}",
                        upsertion.iterations
                    ),
                ));
            }
            Ok(Change::Upsert(ScramCredential::from_salted_password(
                mechanism,
                &upsertion.salted_password,
                &upsertion.salt,
                iterations,
            )))
        });
        push(upsertion.name.to_string(), change);
    }
    let allowed = ctx.may_on_cluster(Operation::Alter);
    let mut results = Vec::with_capacity(order.len());
    for user in order {
        let outcome = match changes.remove(&user) {
            _ if !allowed => Err(Refusal::new(
                ResponseError::ClusterAuthorizationFailed,
                "not authorized to alter SCRAM credentials (needs Alter on the cluster)".to_owned(),
            )),
            Some(Ok(list)) if has_duplicate_mechanism(&list) => Err(Refusal::new(
                ResponseError::DuplicateResource,
                format!("a credential of user {user} is changed twice in one request"),
            )),
            Some(Ok(list)) => apply(ctx, user.clone(), list).await,
            Some(Err(refusal)) => Err(refusal),
            None => Ok(()),
        };
        let result = AlterUserScramCredentialsResult::default().with_user(str_bytes(user.clone()));
        results.push(match outcome {
            Ok(()) => {
                tracing::info!(principal = %ctx.principal, %user, "SCRAM credentials altered");
                result
            }
            Err(refusal) => result
                .with_error_code(refusal.code())
                .with_error_message(Some(str_bytes(refusal.message))),
        });
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

fn mechanism(code: i8) -> Result<Mechanism, Refusal> {
    Mechanism::from_kafka_type(code).ok_or_else(|| {
        Refusal::new(
            ResponseError::UnsupportedSaslMechanism,
            format!("unknown SCRAM mechanism {code}"),
        )
    })
}

fn has_duplicate_mechanism(changes: &[Change]) -> bool {
    let mechanisms: Vec<Mechanism> = changes
        .iter()
        .map(|c| match c {
            Change::Delete(m) => *m,
            Change::Upsert(credential) => credential.mechanism,
        })
        .collect();
    mechanisms
        .iter()
        .enumerate()
        .any(|(i, m)| mechanisms[..i].contains(m))
}

/// Writes one user's changes (fsynced) off the async runtime.
async fn apply(ctx: &RequestContext, user: String, changes: Vec<Change>) -> Result<(), Refusal> {
    let broker = ctx.broker.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        for change in changes {
            match change {
                Change::Delete(mechanism) => {
                    if !broker.users.delete_credential(&user, mechanism)? {
                        return Ok(Some(format!(
                            "attempt to delete a user credential that does not exist: {user} {}",
                            mechanism.name()
                        )));
                    }
                }
                Change::Upsert(credential) => broker.users.upsert_credential(&user, credential)?,
            }
        }
        Ok::<_, freshet_security::files::StoreError>(None)
    })
    .await;
    match outcome {
        Ok(Ok(None)) => Ok(()),
        Ok(Ok(Some(missing))) => Err(Refusal::new(ResponseError::ResourceNotFound, missing)),
        Ok(Err(freshet_security::files::StoreError::Invalid(message))) => {
            Err(Refusal::new(ResponseError::UnacceptableCredential, message))
        }
        Ok(Err(e)) => Err(Refusal::new(
            ResponseError::UnknownServerError,
            e.to_string(),
        )),
        Err(e) => Err(Refusal::new(
            ResponseError::UnknownServerError,
            e.to_string(),
        )),
    }
}
