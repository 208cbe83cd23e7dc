//! `freshet acls add|remove|list`: the ACLs of a data directory, with the flags of Kafka's
//! `kafka-acls.sh` (`--allow-principal`, `--operation`, `--topic`, `--group`, `--cluster`,
//! `--resource-pattern-type`...), so no JVM is needed to set up a broker's rights. Safe while
//! the broker runs: it notices the change within a second. The same ACLs can be managed over
//! the Kafka protocol (CreateAcls, DescribeAcls, DeleteAcls) by a principal with Alter on the
//! cluster.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use freshet_security::acl::{
    AclBinding, AclFilter, AclStore, Operation, PatternType, Permission, ResourceType,
    CLUSTER_NAME, WILDCARD,
};

#[derive(Debug, Subcommand)]
pub enum AclsCommand {
    /// Add ACLs: every combination of the principals, operations and resources given.
    ///
    /// Example: `freshet acls add --allow-principal User:alice --operation Read --operation
    /// Write --topic orders --data-dir DIR`. The broker applies them with `--authorizer acl`.
    Add(BindingArgs),
    /// Remove exactly the ACLs these flags describe (the same flags as `add`).
    Remove(BindingArgs),
    /// List ACLs, all of them or those of a principal or resource.
    List(ListArgs),
}

/// Whether a pattern names one resource or every resource starting with it.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PatternArg {
    Literal,
    Prefixed,
}

#[derive(Debug, Args)]
pub struct DataDirArgs {
    /// Directory holding all persistent state; the ACLs are in `security/acls.json` under it.
    #[arg(long, env = "FRESHET_DATA_DIR", default_value = "./freshet-data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ResourceArgs {
    /// A topic the ACLs apply to (repeatable). With a literal pattern `*` means every topic.
    #[arg(long = "topic")]
    pub topics: Vec<String>,
    /// A consumer group the ACLs apply to (repeatable).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// A transactional id the ACLs apply to (repeatable).
    #[arg(long = "transactional-id")]
    pub transactional_ids: Vec<String>,
    /// The ACLs apply to the cluster (creating topics, managing ACLs and users, idempotent
    /// writes, describing the cluster).
    #[arg(long)]
    pub cluster: bool,
    /// `literal`: the resource named; `prefixed`: every resource whose name starts with it.
    #[arg(long, value_enum, default_value_t = PatternArg::Literal)]
    pub resource_pattern_type: PatternArg,
}

#[derive(Debug, Args)]
pub struct BindingArgs {
    /// A principal allowed the operations, as `User:name` (`User:*` for everyone);
    /// repeatable.
    #[arg(long = "allow-principal")]
    pub allow: Vec<String>,
    /// A principal denied the operations (a deny wins over any allow); repeatable.
    #[arg(long = "deny-principal")]
    pub deny: Vec<String>,
    /// An operation: Read, Write, Create, Delete, Alter, Describe, ClusterAction,
    /// DescribeConfigs, AlterConfigs, IdempotentWrite or All; repeatable.
    #[arg(long = "operation", value_parser = parse_operation, required = true)]
    pub operations: Vec<Operation>,
    /// The client address the ACLs apply to: an IP address, or `*` for every host.
    #[arg(long, default_value = WILDCARD)]
    pub host: String,
    #[command(flatten)]
    pub resources: ResourceArgs,
    #[command(flatten)]
    pub data: DataDirArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only the ACLs of this principal (`User:name`).
    #[arg(long)]
    pub principal: Option<String>,
    #[command(flatten)]
    pub resources: ResourceArgs,
    /// Print a JSON array of bindings instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub data: DataDirArgs,
}

fn parse_operation(text: &str) -> Result<Operation, String> {
    (2..=14)
        .filter_map(Operation::from_code)
        .find(|op| op.name().eq_ignore_ascii_case(text))
        .ok_or_else(|| format!("unknown operation {text:?}"))
}

pub fn run(command: AclsCommand) -> anyhow::Result<()> {
    match command {
        AclsCommand::Add(args) => add(args),
        AclsCommand::Remove(args) => remove(args),
        AclsCommand::List(args) => list(args),
    }
}

fn open(data: &DataDirArgs) -> anyhow::Result<AclStore> {
    AclStore::open(&data.data_dir).context("opening the ACL store")
}

fn add(args: BindingArgs) -> anyhow::Result<()> {
    let bindings = bindings(&args)?;
    open(&args.data)?
        .create(&bindings)
        .context("storing the ACLs")?;
    for binding in &bindings {
        eprintln!("added {}", describe(binding));
    }
    Ok(())
}

fn remove(args: BindingArgs) -> anyhow::Result<()> {
    let bindings = bindings(&args)?;
    let filters: Vec<AclFilter> = bindings.iter().map(exact_filter).collect();
    let removed = open(&args.data)?
        .delete(&filters)
        .context("removing the ACLs")?;
    let mut missing = 0;
    for (binding, removed) in bindings.iter().zip(removed) {
        if removed.is_empty() {
            missing += 1;
            eprintln!("no such ACL: {}", describe(binding));
        } else {
            eprintln!("removed {}", describe(binding));
        }
    }
    if missing > 0 {
        bail!("{missing} of the ACLs given did not exist");
    }
    Ok(())
}

fn list(args: ListArgs) -> anyhow::Result<()> {
    let store = open(&args.data)?;
    let resources = resources(&args.resources);
    let bindings: Vec<AclBinding> = store
        .bindings()
        .iter()
        .filter(|b| args.principal.as_ref().is_none_or(|p| *p == b.principal))
        .filter(|b| {
            resources.is_empty()
                || resources
                    .iter()
                    .any(|(kind, name)| *kind == b.resource_type && *name == b.resource_name)
        })
        .cloned()
        .collect();
    let text = if args.json {
        format!(
            "{}\n",
            serde_json::to_string_pretty(&bindings).context("encoding the ACLs")?
        )
    } else {
        bindings
            .iter()
            .map(|b| format!("{}\n", describe(b)))
            .collect()
    };
    if bindings.is_empty() && !args.json {
        eprintln!("no matching ACLs in {}", args.data.data_dir.display());
    }
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing to standard output")
}

/// Every (resource type, name) the flags name.
fn resources(args: &ResourceArgs) -> Vec<(ResourceType, String)> {
    let named = |kind: ResourceType, names: &[String]| {
        names
            .iter()
            .map(move |name| (kind, name.clone()))
            .collect::<Vec<_>>()
    };
    let mut resources = named(ResourceType::Topic, &args.topics);
    resources.extend(named(ResourceType::Group, &args.groups));
    resources.extend(named(
        ResourceType::TransactionalId,
        &args.transactional_ids,
    ));
    if args.cluster {
        resources.push((ResourceType::Cluster, CLUSTER_NAME.to_owned()));
    }
    resources
}

/// The bindings `add` creates (and `remove` removes): principals × operations × resources,
/// each validated as the broker validates CreateAcls.
fn bindings(args: &BindingArgs) -> anyhow::Result<Vec<AclBinding>> {
    let resources = resources(&args.resources);
    if resources.is_empty() {
        bail!("name at least one resource: --topic, --group, --transactional-id or --cluster");
    }
    let principals: Vec<(&String, Permission)> = args
        .allow
        .iter()
        .map(|p| (p, Permission::Allow))
        .chain(args.deny.iter().map(|p| (p, Permission::Deny)))
        .collect();
    if principals.is_empty() {
        bail!("name at least one principal with --allow-principal or --deny-principal");
    }
    let pattern_type = match args.resources.resource_pattern_type {
        PatternArg::Literal => PatternType::Literal,
        PatternArg::Prefixed => PatternType::Prefixed,
    };
    let mut bindings = Vec::new();
    for (principal, permission) in &principals {
        for operation in &args.operations {
            for (resource_type, name) in &resources {
                let binding = AclBinding {
                    resource_type: *resource_type,
                    resource_name: name.clone(),
                    // The cluster is one resource; a prefix of its name means nothing.
                    pattern_type: if *resource_type == ResourceType::Cluster {
                        PatternType::Literal
                    } else {
                        pattern_type
                    },
                    principal: (*principal).clone(),
                    host: args.host.clone(),
                    operation: *operation,
                    permission: *permission,
                };
                binding.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
                bindings.push(binding);
            }
        }
    }
    Ok(bindings)
}

fn exact_filter(binding: &AclBinding) -> AclFilter {
    AclFilter {
        resource_type: binding.resource_type,
        resource_name: Some(binding.resource_name.clone()),
        pattern_type: binding.pattern_type,
        principal: Some(binding.principal.clone()),
        host: Some(binding.host.clone()),
        operation: binding.operation,
        permission: binding.permission,
    }
}

/// One line per binding, in the words `kafka-acls.sh --list` uses.
fn describe(b: &AclBinding) -> String {
    format!(
        "{} is {} {} on {} {} ({}) from host {}",
        b.principal,
        match b.permission {
            Permission::Deny => "denied",
            _ => "allowed",
        },
        b.operation,
        b.resource_type,
        b.resource_name,
        b.pattern_type.name().to_lowercase(),
        b.host
    )
}
