//! The services' own principals inside `freshet up`, when the embedded broker authenticates or
//! authorizes (`--authorizer acl`, or no PLAINTEXT listener).
//!
//! Each service signs in as itself, over SCRAM-SHA-512 on a loopback SASL_PLAINTEXT listener,
//! so the broker's logs, ACLs and metrics tell the services apart:
//!
//! - `User:freshet-tracker`: reads its input topic, writes its dead-letter and checkpoint
//!   topics, joins its groups.
//! - `User:freshet-guard`: reads and writes the login guard's topics (`login-attempts`,
//!   `blocked-users`, checkpoints, dead letters), joins its groups.
//! - `User:freshet-api`: the HTTP API's Kafka client (topic and group routes, generator
//!   jobs). A super user: REST requests are checked against the ACLs as the signed-in
//!   principal before the API acts, so its client needs every right REST can grant.
//!
//! Their passwords are random, made at every start and kept in memory only; the user store
//! holds salted SCRAM credentials, replaced at the next start. With `--authorizer acl` their
//! ACLs are created at start (creating an existing ACL changes nothing).

use std::path::Path;

use anyhow::Context;
use freshet_security::acl::{
    AclBinding, AclStore, Operation, PatternType, Permission, ResourceType,
};
use freshet_security::scram::{Mechanism, MIN_ITERATIONS};
use freshet_security::users::UserStore;
use freshet_security::Principal;
use freshet_services::guard::GuardConfig;
use freshet_services::kafka::{KafkaSecurity, Password, SaslMechanism, SecurityProtocol};
use freshet_services::tracker::TrackerConfig;
use rand::RngCore;

pub const TRACKER: &str = "freshet-tracker";
pub const GUARD: &str = "freshet-guard";
pub const API: &str = "freshet-api";
/// Every service user: they sign in over Kafka only, never over HTTP.
pub const SERVICE_USERS: [&str; 3] = [TRACKER, GUARD, API];

/// How each service signs in.
#[derive(Debug, Clone)]
pub struct ServicePrincipals {
    pub tracker: KafkaSecurity,
    pub guard: KafkaSecurity,
    pub api: KafkaSecurity,
}

/// The principal the broker must count as a super user.
pub fn api_principal() -> Principal {
    Principal::user(API)
}

/// Creates the three users with fresh passwords and, when `acls` is set, their ACLs; returns
/// how each service signs in. Runs before the broker opens the data directory.
pub fn provision(
    data_dir: &Path,
    tracker: &TrackerConfig,
    guard: &GuardConfig,
    acls: bool,
) -> anyhow::Result<ServicePrincipals> {
    let users = UserStore::open(data_dir).context("opening the user store")?;
    let principals = ServicePrincipals {
        tracker: sign_in_as(&users, TRACKER)?,
        guard: sign_in_as(&users, GUARD)?,
        api: sign_in_as(&users, API)?,
    };
    if acls {
        let mut bindings = tracker_acls(tracker);
        bindings.extend(guard_acls(guard));
        AclStore::open(data_dir)
            .and_then(|store| store.create(&bindings))
            .context("creating the services' ACLs")?;
    }
    Ok(principals)
}

/// Replaces `name`'s credential with one for a new random password. The minimum iteration
/// count keeps start-up fast; the password is random, so it cannot be guessed from a list.
fn sign_in_as(users: &UserStore, name: &str) -> anyhow::Result<KafkaSecurity> {
    let mut secret = [0u8; 24];
    rand::rng().fill_bytes(&mut secret);
    let password: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    users
        .add(
            name,
            password.as_bytes(),
            &[Mechanism::ScramSha512],
            MIN_ITERATIONS,
        )
        .with_context(|| format!("creating the service user {name}"))?;
    Ok(KafkaSecurity {
        security_protocol: SecurityProtocol::SaslPlaintext,
        sasl_mechanism: SaslMechanism::ScramSha512,
        sasl_username: Some(name.to_owned()),
        sasl_password: Some(Password::new(&password)),
        ..KafkaSecurity::default()
    })
}

/// Topic rights a service needs on a topic it creates and uses.
const OWNED_TOPIC: [Operation; 5] = [
    Operation::Read,
    Operation::Write,
    Operation::Create,
    Operation::Describe,
    Operation::DescribeConfigs,
];

fn tracker_acls(config: &TrackerConfig) -> Vec<AclBinding> {
    let mut bindings = allow(
        TRACKER,
        ResourceType::Topic,
        &config.input_topic,
        PatternType::Literal,
        &[
            Operation::Read,
            Operation::Create,
            Operation::Describe,
            Operation::DescribeConfigs,
        ],
    );
    for topic in [config.dlq_topic.clone(), config.checkpoint_topic()] {
        bindings.extend(allow(
            TRACKER,
            ResourceType::Topic,
            &topic,
            PatternType::Literal,
            &OWNED_TOPIC,
        ));
    }
    // The group and its `<group>-follower` id.
    bindings.extend(allow(
        TRACKER,
        ResourceType::Group,
        &config.group,
        PatternType::Prefixed,
        &[Operation::Read],
    ));
    bindings
}

fn guard_acls(config: &GuardConfig) -> Vec<AclBinding> {
    let topics = [
        &config.attempts_topic,
        &config.blocks_topic,
        &config.checkpoint_topic,
        &config.dlq_topic,
    ];
    let mut bindings: Vec<AclBinding> = topics
        .into_iter()
        .flat_map(|topic| {
            allow(
                GUARD,
                ResourceType::Topic,
                topic,
                PatternType::Literal,
                &OWNED_TOPIC,
            )
        })
        .collect();
    // The blocker's group and the blocks followers' `freshet-guard-blocks`.
    for group in [config.group.as_str(), "freshet-guard-blocks"] {
        bindings.extend(allow(
            GUARD,
            ResourceType::Group,
            group,
            PatternType::Prefixed,
            &[Operation::Read],
        ));
    }
    bindings
}

fn allow(
    user: &str,
    resource_type: ResourceType,
    name: &str,
    pattern_type: PatternType,
    operations: &[Operation],
) -> Vec<AclBinding> {
    operations
        .iter()
        .map(|&operation| AclBinding {
            resource_type,
            resource_name: name.to_owned(),
            pattern_type,
            principal: Principal::user(user).to_string(),
            host: freshet_security::acl::WILDCARD.to_owned(),
            operation,
            permission: Permission::Allow,
        })
        .collect()
}
