//! Kafka's ACL model and the authorizer that applies it.
//!
//! An ACL binding says: *principal* from *host* is *allowed* (or *denied*) *operation* on the
//! resources a *pattern* matches. The rules are Kafka's `StandardAuthorizer`'s, so that
//! `kafka-acls.sh`, `kcat` users and admin clients see what they expect:
//!
//! - super users may do everything;
//! - a DENY that matches wins over any ALLOW;
//! - an ALLOW of `Read`, `Write`, `Delete` or `Alter` implies `Describe`, and an ALLOW of
//!   `AlterConfigs` implies `DescribeConfigs` (implications apply to ALLOW only);
//! - `All` matches every operation, principal `User:*` every principal, host `*` every host,
//!   a LITERAL pattern named `*` every resource of its type, and a PREFIXED pattern every
//!   resource whose name starts with it;
//! - when no ACL allows it, the operation is denied (Kafka's default,
//!   `allow.everyone.if.no.acl.found=false`).
//!
//! The numeric codes of every enum are the ones the Kafka protocol carries (CreateAcls,
//! DescribeAcls, DeleteAcls and the authorized-operations bit fields).
//!
//! Bindings are stored in `<data-dir>/security/acls.json` through [`crate::files`]: every
//! change is fsynced before it is acknowledged.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::files::{self, FileStamp, StoreError};
use crate::Principal;

/// The only cluster resource name Kafka accepts.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// The name of a LITERAL pattern that matches every resource of its type.
pub const WILDCARD: &str = "*";

macro_rules! kafka_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $code:literal => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name { $($variant),+ }

        impl $name {
            /// The code the Kafka protocol uses.
            pub fn code(self) -> i8 {
                match self { $($name::$variant => $code),+ }
            }

            /// The value of a protocol code, `None` for codes Kafka does not define.
            pub fn from_code(code: i8) -> Option<Self> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }

            /// Kafka's name, as `kafka-acls.sh` prints it.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

kafka_enum!(
    /// What kind of thing an ACL protects. `Any` appears only in filters.
    ResourceType {
        Any = 1 => "Any",
        Topic = 2 => "Topic",
        Group = 3 => "Group",
        Cluster = 4 => "Cluster",
        TransactionalId = 5 => "TransactionalId",
        DelegationToken = 6 => "DelegationToken",
        User = 7 => "User",
    }
);

kafka_enum!(
    /// How a binding's resource name matches. `Any` and `Match` appear only in filters.
    PatternType {
        Any = 1 => "Any",
        Match = 2 => "Match",
        Literal = 3 => "Literal",
        Prefixed = 4 => "Prefixed",
    }
);

kafka_enum!(
    /// What a principal does to a resource. `Any` appears only in filters.
    Operation {
        Any = 1 => "Any",
        All = 2 => "All",
        Read = 3 => "Read",
        Write = 4 => "Write",
        Create = 5 => "Create",
        Delete = 6 => "Delete",
        Alter = 7 => "Alter",
        Describe = 8 => "Describe",
        ClusterAction = 9 => "ClusterAction",
        DescribeConfigs = 10 => "DescribeConfigs",
        AlterConfigs = 11 => "AlterConfigs",
        IdempotentWrite = 12 => "IdempotentWrite",
        CreateTokens = 13 => "CreateTokens",
        DescribeTokens = 14 => "DescribeTokens",
    }
);

kafka_enum!(
    /// Whether a binding allows or denies. `Any` appears only in filters.
    Permission {
        Any = 1 => "Any",
        Deny = 2 => "Deny",
        Allow = 3 => "Allow",
    }
);

impl ResourceType {
    /// The operations that mean something on this resource type, for the
    /// authorized-operations bit fields (Kafka's lists).
    pub fn operations(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Delete,
                Alter,
                Describe,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Describe, Delete],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            ResourceType::TransactionalId => &[Describe, Write],
            ResourceType::DelegationToken => &[Describe],
            ResourceType::User => &[CreateTokens, DescribeTokens],
            ResourceType::Any => &[],
        }
    }
}

impl Operation {
    /// Whether an ALLOW of `self` also allows `wanted`.
    fn allows(self, wanted: Operation) -> bool {
        use Operation::*;
        self == All
            || self == wanted
            || (wanted == Describe && matches!(self, Read | Write | Delete | Alter))
            || (wanted == DescribeConfigs && self == AlterConfigs)
    }

    /// Whether a DENY of `self` denies `wanted`: no implications, only `All`.
    fn denies(self, wanted: Operation) -> bool {
        self == Operation::All || self == wanted
    }
}

/// One ACL: principal from host is allowed or denied an operation on matching resources.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    /// `User:alice`, or `User:*` for every principal.
    pub principal: String,
    /// An IP address, or `*` for every host.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

/// Why a binding cannot be created (Kafka answers INVALID_REQUEST with this message).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct InvalidBinding(pub String);

impl AclBinding {
    /// Checks that the binding names concrete values only (filters may use `Any`, bindings
    /// may not), as Kafka does before storing it.
    pub fn validate(&self) -> Result<(), InvalidBinding> {
        let invalid = |what: String| Err(InvalidBinding(what));
        match self.resource_type {
            ResourceType::Any => {
                return invalid("resource type ANY is only valid in a filter".into())
            }
            ResourceType::Cluster if self.resource_name != CLUSTER_NAME => {
                return invalid(format!(
                    "the cluster resource is named {CLUSTER_NAME}, not {:?}",
                    self.resource_name
                ))
            }
            _ => {}
        }
        if self.resource_name.is_empty() {
            return invalid("the resource name is empty".into());
        }
        if !matches!(
            self.pattern_type,
            PatternType::Literal | PatternType::Prefixed
        ) {
            return invalid(format!(
                "pattern type {} is only valid in a filter; use LITERAL or PREFIXED",
                self.pattern_type
            ));
        }
        if matches!(self.operation, Operation::Any) {
            return invalid("operation ANY is only valid in a filter".into());
        }
        if !matches!(self.permission, Permission::Allow | Permission::Deny) {
            return invalid("permission ANY is only valid in a filter".into());
        }
        match Principal::parse(&self.principal) {
            Ok(principal) if principal.kind == "User" => {}
            Ok(principal) => {
                return invalid(format!(
                    "principal type {:?} is not supported; use User:<name>",
                    principal.kind
                ))
            }
            Err(e) => return invalid(e),
        }
        if self.host != WILDCARD && self.host.parse::<IpAddr>().is_err() {
            return invalid(format!(
                "host {:?} is neither * nor an IP address",
                self.host
            ));
        }
        Ok(())
    }

    /// Whether this binding's pattern covers the resource `name` of `resource_type`.
    fn covers(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                PatternType::Literal => {
                    self.resource_name == name || self.resource_name == WILDCARD
                }
                PatternType::Prefixed => name.starts_with(&self.resource_name),
                PatternType::Any | PatternType::Match => false,
            }
    }

    fn applies_to(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == "User:*")
            && (self.host == WILDCARD || self.host == host)
    }
}

/// Which bindings DescribeAcls lists and DeleteAcls removes. `None` fields match anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: ResourceType,
    pub resource_name: Option<String>,
    pub pattern_type: PatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclFilter {
    /// A filter that matches every binding.
    pub fn any() -> Self {
        AclFilter {
            resource_type: ResourceType::Any,
            resource_name: None,
            pattern_type: PatternType::Any,
            principal: None,
            host: None,
            operation: Operation::Any,
            permission: Permission::Any,
        }
    }

    pub fn matches(&self, binding: &AclBinding) -> bool {
        self.matches_resource(binding)
            && self
                .principal
                .as_ref()
                .is_none_or(|p| *p == binding.principal)
            && self.host.as_ref().is_none_or(|h| *h == binding.host)
            && (self.operation == Operation::Any || self.operation == binding.operation)
            && (self.permission == Permission::Any || self.permission == binding.permission)
    }

    fn matches_resource(&self, binding: &AclBinding) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != binding.resource_type {
            return false;
        }
        match (self.pattern_type, &self.resource_name) {
            // MATCH: every binding that would apply to a resource of this name.
            (PatternType::Match, Some(name)) => binding.covers(binding.resource_type, name),
            (PatternType::Match | PatternType::Any, None) => true,
            (PatternType::Any, Some(name)) => binding.resource_name == *name,
            (exact, name) => {
                binding.pattern_type == exact
                    && name.as_ref().is_none_or(|n| *n == binding.resource_name)
            }
        }
    }
}

/// The file of every binding.
#[derive(Debug, Default, Serialize, Deserialize)]
struct AclFile {
    bindings: Vec<AclBinding>,
}

/// The durable set of ACL bindings.
///
/// Readers get the bindings from memory. At most once per [`RECHECK_EVERY`] a reader looks at
/// the file's stamp and reloads it when another process (`freshet acls`) changed it, so the
/// broker applies such changes within a second without a stat per request.
#[derive(Debug)]
pub struct AclStore {
    path: PathBuf,
    cache: RwLock<Cached>,
}

/// How often readers look for changes made by other processes.
pub const RECHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Cached {
    bindings: Arc<Vec<AclBinding>>,
    stamp: Option<FileStamp>,
    checked: Instant,
}

impl AclStore {
    /// Opens `<data_dir>/security/acls.json` (none yet means no bindings).
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join("security").join("acls.json");
        let (file, stamp) = files::read_json::<AclFile>(&path)?;
        Ok(AclStore {
            path,
            cache: RwLock::new(Cached {
                bindings: Arc::new(file.bindings),
                stamp,
                checked: Instant::now(),
            }),
        })
    }

    /// Every binding, as of the last change by this or (within a second) another process.
    pub fn bindings(&self) -> Arc<Vec<AclBinding>> {
        {
            let cached = self.cache.read().unwrap_or_else(|p| p.into_inner());
            if cached.checked.elapsed() < RECHECK_EVERY {
                return cached.bindings.clone();
            }
        }
        let mut cached = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if cached.checked.elapsed() >= RECHECK_EVERY {
            cached.checked = Instant::now();
            self.reload_if_changed(&mut cached);
        }
        cached.bindings.clone()
    }

    /// Re-reads the file if its stamp moved, or if it is too young for the stamp to be
    /// trusted ([`FileStamp::is_settled`]). A file that cannot be read keeps the bindings
    /// last read: failing open (no ACLs) or closed (denying all) on a torn edit would both
    /// surprise.
    fn reload_if_changed(&self, cached: &mut Cached) {
        let now = files::stamp(&self.path);
        let unchanged = now == cached.stamp && now.is_none_or(|s| s.is_settled());
        if unchanged {
            return;
        }
        match files::read_json::<AclFile>(&self.path) {
            Ok((file, stamp)) => {
                if *cached.bindings != file.bindings {
                    tracing::info!(path = %self.path.display(), bindings = file.bindings.len(), "ACLs reloaded");
                }
                cached.bindings = Arc::new(file.bindings);
                cached.stamp = stamp;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot reload the ACLs; keeping the ones last read")
            }
        }
    }

    /// Adds bindings (already validated), skipping ones that exist; fsynced before it returns.
    pub fn create(&self, new: &[AclBinding]) -> Result<(), StoreError> {
        self.change(|bindings| {
            for binding in new {
                if !bindings.contains(binding) {
                    bindings.push(binding.clone());
                }
            }
            Ok(())
        })
        .map(|((), _)| ())
    }

    /// Removes every binding any of `filters` matches; returns, per filter, what it removed.
    pub fn delete(&self, filters: &[AclFilter]) -> Result<Vec<Vec<AclBinding>>, StoreError> {
        self.change(|bindings| {
            let removed = filters
                .iter()
                .map(|filter| {
                    bindings
                        .iter()
                        .filter(|b| filter.matches(b))
                        .cloned()
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>();
            bindings.retain(|b| !filters.iter().any(|f| f.matches(b)));
            Ok(removed)
        })
        .map(|(removed, _)| removed)
    }

    /// Applies a change under the file lock, then publishes the new set to readers.
    fn change<R>(
        &self,
        change: impl FnOnce(&mut Vec<AclBinding>) -> Result<R, StoreError>,
    ) -> Result<(R, Arc<Vec<AclBinding>>), StoreError> {
        let mut published = None;
        let (result, stamp) = files::update_json::<AclFile, R>(&self.path, |file| {
            let result = change(&mut file.bindings)?;
            file.bindings.sort();
            published = Some(Arc::new(file.bindings.clone()));
            Ok(result)
        })?;
        let bindings = published.unwrap_or_default();
        let mut cached = self.cache.write().unwrap_or_else(|p| p.into_inner());
        cached.bindings = bindings.clone();
        cached.stamp = Some(stamp);
        cached.checked = Instant::now();
        Ok((result, bindings))
    }
}

/// Decides requests against the ACL store and the super users.
#[derive(Debug)]
pub struct Authorizer {
    acls: AclStore,
    super_users: HashSet<String>,
}

impl Authorizer {
    pub fn new(acls: AclStore, super_users: impl IntoIterator<Item = Principal>) -> Self {
        Authorizer {
            acls,
            super_users: super_users.into_iter().map(|p| p.to_string()).collect(),
        }
    }

    pub fn acls(&self) -> &AclStore {
        &self.acls
    }

    pub fn is_super_user(&self, principal: &Principal) -> bool {
        self.super_users.contains(&principal.to_string())
    }

    /// Whether `principal`, connected from `host`, may do `operation` on the resource.
    pub fn authorize(
        &self,
        principal: &Principal,
        host: IpAddr,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        if self.is_super_user(principal) {
            return true;
        }
        let bindings = self.acls.bindings();
        decide(
            &bindings,
            &principal.to_string(),
            &host.to_string(),
            operation,
            resource_type,
            name,
        )
    }

    /// Kafka's authorized-operations bit field: bit `code` set for every operation of the
    /// resource type that `principal` may do on it.
    pub fn authorized_operations(
        &self,
        principal: &Principal,
        host: IpAddr,
        resource_type: ResourceType,
        name: &str,
    ) -> i32 {
        let super_user = self.is_super_user(principal);
        let bindings = self.acls.bindings();
        let (principal, host) = (principal.to_string(), host.to_string());
        resource_type
            .operations()
            .iter()
            .filter(|op| {
                super_user || decide(&bindings, &principal, &host, **op, resource_type, name)
            })
            .fold(0, |bits, op| bits | (1 << op.code()))
    }

    /// Whether `principal` may do `operation` on at least one resource of the type (Kafka's
    /// `authorizeByResourceType`, used for idempotent produce and transactional ids): some
    /// ALLOW applies, and no DENY on the `*` literal or an empty prefix covers the whole type.
    pub fn authorize_any(
        &self,
        principal: &Principal,
        host: IpAddr,
        operation: Operation,
        resource_type: ResourceType,
    ) -> bool {
        if self.is_super_user(principal) {
            return true;
        }
        let bindings = self.acls.bindings();
        let (principal, host) = (principal.to_string(), host.to_string());
        let applicable =
            |b: &&AclBinding| b.resource_type == resource_type && b.applies_to(&principal, &host);
        let denied_everywhere = bindings.iter().filter(applicable).any(|b| {
            b.permission == Permission::Deny
                && b.operation.denies(operation)
                && ((b.pattern_type == PatternType::Literal && b.resource_name == WILDCARD)
                    || (b.pattern_type == PatternType::Prefixed && b.resource_name.is_empty()))
        });
        !denied_everywhere
            && bindings
                .iter()
                .filter(applicable)
                .any(|b| b.permission == Permission::Allow && b.operation.allows(operation))
    }
}

fn decide(
    bindings: &[AclBinding],
    principal: &str,
    host: &str,
    operation: Operation,
    resource_type: ResourceType,
    name: &str,
) -> bool {
    let mut allowed = false;
    for binding in bindings
        .iter()
        .filter(|b| b.covers(resource_type, name) && b.applies_to(principal, host))
    {
        match binding.permission {
            Permission::Deny if binding.operation.denies(operation) => return false,
            Permission::Allow if binding.operation.allows(operation) => allowed = true,
            _ => {}
        }
    }
    allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn binding(
        resource_type: ResourceType,
        name: &str,
        pattern_type: PatternType,
        principal: &str,
        operation: Operation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type,
            resource_name: name.into(),
            pattern_type,
            principal: principal.into(),
            host: WILDCARD.into(),
            operation,
            permission,
        }
    }

    fn allow_topic(name: &str, pattern: PatternType, principal: &str, op: Operation) -> AclBinding {
        binding(
            ResourceType::Topic,
            name,
            pattern,
            principal,
            op,
            Permission::Allow,
        )
    }

    fn authorizer_with(
        bindings: &[AclBinding],
        super_users: &[&str],
    ) -> (tempfile::TempDir, Authorizer) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = AclStore::open(dir.path()).expect("open");
        store.create(bindings).expect("create");
        let supers = super_users
            .iter()
            .map(|s| Principal::parse(s).expect("principal"));
        (dir, Authorizer::new(store, supers))
    }

    fn may(authorizer: &Authorizer, user: &str, op: Operation, topic: &str) -> bool {
        authorizer.authorize(&Principal::user(user), HOST, op, ResourceType::Topic, topic)
    }

    #[test]
    fn nothing_is_allowed_without_an_acl_but_super_users_may_do_anything() {
        let (_dir, authorizer) = authorizer_with(&[], &["User:root"]);
        assert!(!may(&authorizer, "alice", Operation::Read, "t"));
        assert!(may(&authorizer, "root", Operation::Delete, "t"));
    }

    #[test]
    fn literal_wildcard_and_prefixed_patterns_match_as_in_kafka() {
        let (_dir, authorizer) = authorizer_with(
            &[
                allow_topic(
                    "orders",
                    PatternType::Literal,
                    "User:alice",
                    Operation::Read,
                ),
                allow_topic("*", PatternType::Literal, "User:bob", Operation::Write),
                allow_topic(
                    "logs-",
                    PatternType::Prefixed,
                    "User:carol",
                    Operation::Read,
                ),
            ],
            &[],
        );
        assert!(may(&authorizer, "alice", Operation::Read, "orders"));
        assert!(!may(&authorizer, "alice", Operation::Read, "orders2"));
        assert!(may(&authorizer, "bob", Operation::Write, "anything"));
        assert!(may(&authorizer, "carol", Operation::Read, "logs-eu"));
        assert!(!may(&authorizer, "carol", Operation::Read, "log"));
    }

    #[test]
    fn deny_wins_and_implications_apply_to_allow_only() {
        let (_dir, authorizer) = authorizer_with(
            &[
                allow_topic("t", PatternType::Literal, "User:*", Operation::All),
                binding(
                    ResourceType::Topic,
                    "t",
                    PatternType::Literal,
                    "User:mallory",
                    Operation::Write,
                    Permission::Deny,
                ),
                allow_topic("u", PatternType::Literal, "User:alice", Operation::Read),
                binding(
                    ResourceType::Topic,
                    "u",
                    PatternType::Literal,
                    "User:alice",
                    Operation::Read,
                    Permission::Deny,
                ),
                allow_topic(
                    "v",
                    PatternType::Literal,
                    "User:alice",
                    Operation::AlterConfigs,
                ),
            ],
            &[],
        );
        assert!(may(&authorizer, "mallory", Operation::Read, "t"));
        assert!(!may(&authorizer, "mallory", Operation::Write, "t"));
        assert!(!may(&authorizer, "alice", Operation::Read, "u"));
        assert!(
            may(&authorizer, "alice", Operation::Describe, "u"),
            "a DENY of Read does not deny the Describe that the ALLOW of Read implies"
        );
        assert!(may(&authorizer, "alice", Operation::DescribeConfigs, "v"));
        assert!(!may(&authorizer, "alice", Operation::Describe, "v"));
    }

    #[test]
    fn read_write_delete_and_alter_imply_describe() {
        for op in [
            Operation::Read,
            Operation::Write,
            Operation::Delete,
            Operation::Alter,
        ] {
            let (_dir, authorizer) =
                authorizer_with(&[allow_topic("t", PatternType::Literal, "User:a", op)], &[]);
            assert!(may(&authorizer, "a", Operation::Describe, "t"), "{op}");
        }
    }

    #[test]
    fn hosts_must_match() {
        let mut remote = allow_topic("t", PatternType::Literal, "User:a", Operation::Read);
        remote.host = "10.0.0.1".into();
        let (_dir, authorizer) = authorizer_with(&[remote], &[]);
        assert!(!may(&authorizer, "a", Operation::Read, "t"));
        let from_remote = "10.0.0.1".parse().expect("ip");
        assert!(authorizer.authorize(
            &Principal::user("a"),
            from_remote,
            Operation::Read,
            ResourceType::Topic,
            "t"
        ));
    }

    #[test]
    fn authorized_operations_carry_one_bit_per_allowed_operation() {
        let (_dir, authorizer) = authorizer_with(
            &[allow_topic(
                "t",
                PatternType::Literal,
                "User:a",
                Operation::Read,
            )],
            &["User:root"],
        );
        let bits =
            authorizer.authorized_operations(&Principal::user("a"), HOST, ResourceType::Topic, "t");
        assert_eq!(
            bits,
            (1 << 3) | (1 << 8),
            "Read and the Describe it implies"
        );
        let all = authorizer.authorized_operations(
            &Principal::user("root"),
            HOST,
            ResourceType::Topic,
            "t",
        );
        assert_eq!(all.count_ones(), 8);
    }

    #[test]
    fn authorize_any_sees_an_allow_on_any_resource_unless_denied_everywhere() {
        let (_dir, authorizer) = authorizer_with(
            &[
                allow_topic("x", PatternType::Prefixed, "User:a", Operation::Write),
                allow_topic("x", PatternType::Prefixed, "User:b", Operation::Write),
                binding(
                    ResourceType::Topic,
                    "*",
                    PatternType::Literal,
                    "User:b",
                    Operation::Write,
                    Permission::Deny,
                ),
            ],
            &[],
        );
        let any = |user| {
            authorizer.authorize_any(
                &Principal::user(user),
                HOST,
                Operation::Write,
                ResourceType::Topic,
            )
        };
        assert!(any("a"));
        assert!(!any("b"));
        assert!(!any("c"));
    }

    #[test]
    fn bindings_survive_reopening_and_filters_delete_what_they_match() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = AclStore::open(dir.path()).expect("open");
        let read = allow_topic("t", PatternType::Literal, "User:a", Operation::Read);
        let write = allow_topic("t-", PatternType::Prefixed, "User:b", Operation::Write);
        store
            .create(&[read.clone(), write.clone(), read.clone()])
            .expect("create");
        let reopened = AclStore::open(dir.path()).expect("reopen");
        assert_eq!(reopened.bindings().len(), 2, "duplicates are stored once");

        let matching = AclFilter {
            resource_name: Some("t-1".into()),
            pattern_type: PatternType::Match,
            ..AclFilter::any()
        };
        assert!(matching.matches(&write) && !matching.matches(&read));
        let by_principal = AclFilter {
            principal: Some("User:a".into()),
            ..AclFilter::any()
        };
        let removed = reopened.delete(&[by_principal]).expect("delete");
        assert_eq!(removed, vec![vec![read]]);
        assert_eq!(
            *AclStore::open(dir.path()).expect("reopen").bindings(),
            vec![write]
        );
    }

    #[test]
    fn a_change_by_another_process_is_seen_within_the_recheck_interval() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker_side = AclStore::open(dir.path()).expect("open");
        assert!(broker_side.bindings().is_empty());
        let cli_side = AclStore::open(dir.path()).expect("open");
        let read = allow_topic("t", PatternType::Literal, "User:a", Operation::Read);
        cli_side
            .create(std::slice::from_ref(&read))
            .expect("create");
        std::thread::sleep(RECHECK_EVERY + Duration::from_millis(50));
        assert_eq!(*broker_side.bindings(), vec![read]);
    }

    #[test]
    fn bindings_with_filter_only_values_or_bad_names_are_refused() {
        let good = allow_topic("t", PatternType::Literal, "User:a", Operation::Read);
        assert_eq!(good.validate(), Ok(()));
        let cases = [
            AclBinding {
                resource_type: ResourceType::Any,
                ..good.clone()
            },
            AclBinding {
                pattern_type: PatternType::Match,
                ..good.clone()
            },
            AclBinding {
                operation: Operation::Any,
                ..good.clone()
            },
            AclBinding {
                permission: Permission::Any,
                ..good.clone()
            },
            AclBinding {
                principal: "alice".into(),
                ..good.clone()
            },
            AclBinding {
                principal: "Group:x".into(),
                ..good.clone()
            },
            AclBinding {
                host: "example.com".into(),
                ..good.clone()
            },
            AclBinding {
                resource_type: ResourceType::Cluster,
                ..good.clone()
            },
            AclBinding {
                resource_name: String::new(),
                ..good
            },
        ];
        for case in cases {
            assert!(case.validate().is_err(), "{case:?}");
        }
    }

    #[test]
    fn codes_round_trip() {
        for code in 1..=14 {
            let op = Operation::from_code(code).expect("defined");
            assert_eq!(op.code(), code);
        }
        assert_eq!(Operation::from_code(0), None);
        assert_eq!(ResourceType::from_code(2), Some(ResourceType::Topic));
        assert_eq!(PatternType::Prefixed.code(), 4);
        assert_eq!(Permission::Allow.code(), 3);
    }
}
