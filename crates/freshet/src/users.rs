//! `freshet users add|remove|list`: the SASL users of a data directory. Safe while a broker
//! runs on the same directory, which sees the change at its next login.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};
use freshet_security::scram::{Mechanism, DEFAULT_ITERATIONS, MAX_ITERATIONS, MIN_ITERATIONS};
use freshet_security::users::{UserInfo, UserStore};

/// Where `users add` takes the password from, unless `--password-stdin` is given. Not a flag:
/// command lines are visible to every user of the machine.
const PASSWORD_ENV: &str = "FRESHET_USER_PASSWORD";

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user, or replace its credentials for the given mechanisms.
    ///
    /// The password comes from the FRESHET_USER_PASSWORD environment variable or, with
    /// --password-stdin, from the first line of standard input: never from an argument, which
    /// other users of the machine could read. Only salted SCRAM credentials are stored, in
    /// `security/users.json` under the data directory; clients authenticate with them over
    /// SASL SCRAM or PLAIN.
    Add(AddArgs),
    /// Remove a user and all its credentials; fails if there is no such user.
    Remove(RemoveArgs),
    /// List the users and, per SCRAM mechanism, the iteration count.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct DataDirArgs {
    /// Directory holding all persistent state; the users are in `security/users.json` under
    /// it.
    #[arg(long, env = "FRESHET_DATA_DIR", default_value = "./freshet-data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The user's name (1 to 256 characters, no control characters, no surrounding spaces).
    pub name: String,
    /// Read the password from the first line of standard input (the line break is not part of
    /// it) instead of FRESHET_USER_PASSWORD.
    #[arg(long)]
    pub password_stdin: bool,
    /// SCRAM mechanism to store a credential for; repeat it, or separate with commas, for
    /// several.
    #[arg(
        long = "mechanism",
        env = "FRESHET_SCRAM_MECHANISMS",
        value_delimiter = ',',
        value_parser = mechanism_parser(),
        default_values = ["SCRAM-SHA-256", "SCRAM-SHA-512"]
    )]
    pub mechanisms: Vec<Mechanism>,
    /// PBKDF2 iterations of the credentials: more make a stolen users file slower to attack
    /// and every login slower (Kafka accepts 4096 to 16384).
    #[arg(
        long,
        env = "FRESHET_SCRAM_ITERATIONS",
        default_value_t = DEFAULT_ITERATIONS,
        value_parser = clap::value_parser!(u32).range(i64::from(MIN_ITERATIONS)..=i64::from(MAX_ITERATIONS))
    )]
    pub iterations: u32,
    #[command(flatten)]
    pub data: DataDirArgs,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The user to remove.
    pub name: String,
    #[command(flatten)]
    pub data: DataDirArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print one JSON array of `{"name", "mechanisms": [{"mechanism", "iterations"}]}`
    /// instead of a table.
    #[arg(long, env = "FRESHET_USERS_JSON")]
    pub json: bool,
    #[command(flatten)]
    pub data: DataDirArgs,
}

fn mechanism_parser() -> impl TypedValueParser<Value = Mechanism> {
    PossibleValuesParser::new(Mechanism::ALL.map(Mechanism::name)).try_map(|name| {
        Mechanism::from_name(&name).ok_or_else(|| format!("unknown mechanism {name}"))
    })
}

pub fn run(command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Add(args) => add(args),
        UsersCommand::Remove(args) => remove(args),
        UsersCommand::List(args) => list(args),
    }
}

fn open(data: &DataDirArgs) -> anyhow::Result<UserStore> {
    UserStore::open(&data.data_dir).context("opening the user store")
}

fn add(args: AddArgs) -> anyhow::Result<()> {
    let password = read_password(args.password_stdin)?;
    let store = open(&args.data)?;
    let existed = Mechanism::ALL
        .into_iter()
        .any(|mechanism| store.credential(&args.name, mechanism).is_some());
    let mut mechanisms = args.mechanisms;
    mechanisms.sort();
    mechanisms.dedup();
    store
        .add(
            &args.name,
            password.as_bytes(),
            &mechanisms,
            args.iterations,
        )
        .with_context(|| format!("adding user {:?}", args.name))?;
    let names: Vec<&str> = mechanisms.iter().map(|m| m.name()).collect();
    eprintln!(
        "{} user {} ({}, {} iterations)",
        if existed { "updated" } else { "added" },
        args.name,
        names.join(", "),
        args.iterations
    );
    Ok(())
}

/// The password from exactly one of the environment and standard input.
fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let password = match (std::env::var_os(PASSWORD_ENV), from_stdin) {
        (Some(_), true) => {
            bail!("give the password either in {PASSWORD_ENV} or with --password-stdin, not both")
        }
        (Some(value), false) => value
            .into_string()
            .map_err(|_| anyhow!("{PASSWORD_ENV} is not valid UTF-8"))?,
        (None, true) => read_stdin_line()?,
        (None, false) => bail!("no password: set {PASSWORD_ENV} or pass --password-stdin"),
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}

fn read_stdin_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let without_newline = line.strip_suffix('\n').unwrap_or(&line);
    Ok(without_newline
        .strip_suffix('\r')
        .unwrap_or(without_newline)
        .to_owned())
}

fn remove(args: RemoveArgs) -> anyhow::Result<()> {
    let store = open(&args.data)?;
    let removed = store
        .remove(&args.name)
        .with_context(|| format!("removing user {:?}", args.name))?;
    if !removed {
        bail!("no user {:?} in {}", args.name, store.path().display());
    }
    eprintln!("removed user {}", args.name);
    Ok(())
}

fn list(args: ListArgs) -> anyhow::Result<()> {
    let store = open(&args.data)?;
    let users = store.list();
    let text = if args.json {
        format!("{}\n", users_json(&users))
    } else {
        users_table(&users)
    };
    if users.is_empty() && !args.json {
        eprintln!("no users in {}", store.path().display());
    }
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing to standard output")
}

fn users_json(users: &[UserInfo]) -> serde_json::Value {
    users
        .iter()
        .map(|user| {
            let mechanisms: Vec<serde_json::Value> = user
                .mechanisms
                .iter()
                .map(|(mechanism, iterations)| {
                    serde_json::json!({ "mechanism": mechanism.name(), "iterations": iterations })
                })
                .collect();
            serde_json::json!({ "name": user.name, "mechanisms": mechanisms })
        })
        .collect()
}

/// Aligned columns, or nothing at all when there are no users.
fn users_table(users: &[UserInfo]) -> String {
    if users.is_empty() {
        return String::new();
    }
    let width = users
        .iter()
        .map(|user| user.name.chars().count())
        .max()
        .unwrap_or(0)
        .max("NAME".len());
    let mut table = format!("{:<width$}  MECHANISMS\n", "NAME");
    for user in users {
        let mechanisms: Vec<String> = user
            .mechanisms
            .iter()
            .map(|(mechanism, iterations)| format!("{mechanism} ({iterations} iterations)"))
            .collect();
        table.push_str(&format!(
            "{:<width$}  {}\n",
            user.name,
            mechanisms.join(", ")
        ));
    }
    table
}
