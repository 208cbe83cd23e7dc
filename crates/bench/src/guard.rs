//! `freshet bench guard`: how many login attempts per second the blocker processes, and how
//! many logins per second the accounts check at the configured Argon2id parameters.
//!
//! Attempts are produced to a fresh `login-attempts` topic first (a mix of users under attack
//! and ordinary users, with event times spread so blocks, successes and expiring windows all
//! happen), then a blocker is started and timed from its first processed record to the last:
//! consuming, parsing, the rules, block writes and checkpoints, not the group join. Logins
//! run against a real SQLite file with as many concurrent logins as the machine has cores.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use freshet_services::guard::accounts::{Accounts, Argon2Params};
use freshet_services::guard::attempts::Attempt;
use freshet_services::guard::blocker::{Blocker, BlockerConfig};
use freshet_services::guard::rules::Rules;
use freshet_services::guard::secret::GuardSecret;
use freshet_services::guard::store::Store;
use freshet_services::guard::{ensure_topics, GuardConfig};
use freshet_services::KafkaConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use super::child::ChildBroker;

#[derive(Debug, Clone, Args)]
pub struct GuardBenchArgs {
    /// Login attempts the blocker processes.
    #[arg(long, env = "FRESHET_BENCH_ATTEMPTS", default_value_t = 2_000_000)]
    pub attempts: u64,
    /// Distinct users the attempts are spread over.
    #[arg(long, env = "FRESHET_BENCH_USERS", default_value_t = 50_000)]
    pub users: u64,
    /// Partitions of the attempts topic.
    #[arg(long, env = "FRESHET_BENCH_PARTITIONS", default_value_t = 3)]
    pub partitions: i32,
    /// Logins checked for the login rate.
    #[arg(long, env = "FRESHET_BENCH_LOGINS", default_value_t = 200)]
    pub logins: u64,
    /// Argon2id memory per hash in KiB (the default is `freshet guard`'s).
    #[arg(long, env = "FRESHET_BENCH_ARGON2_MEMORY_KIB", default_value_t = Argon2Params::default().memory_kib)]
    pub argon2_memory_kib: u32,
    /// Argon2id passes.
    #[arg(long, env = "FRESHET_BENCH_ARGON2_ITERATIONS", default_value_t = Argon2Params::default().iterations)]
    pub argon2_iterations: u32,
    /// Use this Kafka cluster instead of a fresh `freshet broker` child process.
    #[arg(long, env = "FRESHET_BENCH_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: Option<String>,
    /// Print one JSON object instead of the table.
    #[arg(long, env = "FRESHET_BENCH_JSON")]
    pub json: bool,
}

pub fn run(args: GuardBenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let child = match &args.bootstrap_servers {
        Some(_) => None,
        None => Some(ChildBroker::start(&[])?),
    };
    let bootstrap = match (&args.bootstrap_servers, &child) {
        (Some(servers), _) => servers.clone(),
        (None, Some(child)) => child.addr().to_string(),
        (None, None) => bail!("no broker to run against"),
    };
    let blocker = runtime.block_on(blocker_rate(&args, &bootstrap))?;
    let logins = runtime.block_on(login_rate(&args))?;
    report(&args, &blocker, &logins);
    Ok(())
}

struct BlockerResult {
    records: u64,
    seconds: f64,
    blocks_written: u64,
    checkpoints: u64,
}

struct LoginResult {
    logins: u64,
    seconds: f64,
    concurrency: usize,
}

/// Produces the attempts, then times a blocker reading them.
async fn blocker_rate(args: &GuardBenchArgs, bootstrap: &str) -> anyhow::Result<BlockerResult> {
    let kafka = KafkaConfig::new(bootstrap);
    // Names unique to this run: against a shared cluster, runs never read each other's data.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let config = GuardConfig {
        attempts_topic: format!("bench.login-attempts.{run}"),
        attempts_partitions: args.partitions,
        blocks_topic: format!("bench.blocked-users.{run}"),
        checkpoint_topic: format!("bench.freshet.guard.checkpoints.{run}"),
        dlq_topic: format!("bench.login-attempts.dlq.{run}"),
        group: format!("bench-guard-{run}"),
        ..GuardConfig::new("sqlite::memory:")
    };
    ensure_topics(&kafka, &config)
        .await
        .context("creating topics")?;
    eprintln!("producing {} attempts...", args.attempts);
    let topic = config.attempts_topic.clone();
    let (attempts, users) = (args.attempts, args.users.max(1));
    let kafka_for_producer = kafka.clone();
    let secret = config.secret.clone();
    tokio::task::spawn_blocking(move || {
        produce(&kafka_for_producer, &topic, &secret, attempts, users)
    })
    .await
    .context("producer thread")??;

    eprintln!("blocker consuming...");
    let blocker = Blocker::start(
        &kafka,
        BlockerConfig {
            rules: Rules::default(),
            checkpoint_interval: Duration::from_secs(1),
            session_timeout: Duration::from_secs(10),
            ..config.blocker_config()
        },
    )?;
    let stats = blocker.stats();
    let deadline = Instant::now() + Duration::from_secs(600);
    while stats.processed.load(Ordering::Relaxed) == 0 {
        if Instant::now() > deadline {
            bail!("the blocker processed nothing in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let start = Instant::now();
    while stats.processed.load(Ordering::Relaxed) < args.attempts {
        if Instant::now() > deadline {
            bail!("the blocker did not finish in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let result = BlockerResult {
        records: stats.processed.load(Ordering::Relaxed),
        seconds,
        blocks_written: stats.block_writes.load(Ordering::Relaxed),
        checkpoints: stats.checkpoints.load(Ordering::Relaxed),
    };
    tokio::task::spawn_blocking(move || blocker.shutdown())
        .await
        .context("stopping the blocker")?;
    Ok(result)
}

/// The attempts: one user in 100 is under attack (only failures), the others mostly succeed.
/// Event time advances 1 ms per attempt, so windows slide and old failures expire. Signed, as
/// the blocker counts nothing else.
fn produce(
    kafka: &KafkaConfig,
    topic: &str,
    secret: &GuardSecret,
    attempts: u64,
    users: u64,
) -> anyhow::Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> = kafka
        .client_config("bench-guard")
        .set("acks", "1")
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let start_ms = 1_700_000_000_000_i64;
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    for i in 0..attempts {
        // xorshift: a cheap, reproducible spread over the users.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let user = state % users;
        let attacked = user.is_multiple_of(100);
        let attempt = Attempt {
            time_ms: start_ms + i as i64,
            ..Attempt::login(
                &format!("user{user}"),
                "203.0.113.7",
                !attacked && !state.is_multiple_of(10),
            )
        }
        .signed(secret);
        let value = attempt.to_json();
        let mut record = BaseRecord::<str, [u8]>::to(topic)
            .key(attempt.user.as_str())
            .payload(value.as_slice());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    producer
        .flush(Duration::from_secs(300))
        .context("delivering the attempts")?;
    Ok(())
}

/// Times successful logins at the configured Argon2id parameters.
async fn login_rate(args: &GuardBenchArgs) -> anyhow::Result<LoginResult> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let url = format!("sqlite://{}/guard.db", dir.path().display());
    let store = Store::connect(&url).await?;
    let params = Argon2Params {
        memory_kib: args.argon2_memory_kib,
        iterations: args.argon2_iterations,
        ..Argon2Params::default()
    };
    let accounts = Accounts::new(store, params).await?;
    accounts.register("bench", "bench1password").await?;
    let concurrency = std::thread::available_parallelism().map_or(2, |n| n.get());
    eprintln!("checking {} logins...", args.logins);
    let start = Instant::now();
    let per_task = args.logins.div_ceil(concurrency as u64);
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let accounts = accounts.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    if !accounts.verify("bench", "bench1password").await? {
                        bail!("a correct password was refused");
                    }
                }
                Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await.context("login task")??;
    }
    Ok(LoginResult {
        logins: per_task * concurrency as u64,
        seconds: start.elapsed().as_secs_f64(),
        concurrency,
    })
}

fn report(args: &GuardBenchArgs, blocker: &BlockerResult, logins: &LoginResult) {
    let attempts_per_s = blocker.records as f64 / blocker.seconds;
    let logins_per_s = logins.logins as f64 / logins.seconds;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "bench": "guard",
                "attempts": blocker.records,
                "blocker_seconds": blocker.seconds,
                "attempts_per_s": attempts_per_s,
                "blocks_written": blocker.blocks_written,
                "checkpoints": blocker.checkpoints,
                "logins": logins.logins,
                "login_seconds": logins.seconds,
                "logins_per_s": logins_per_s,
                "login_concurrency": logins.concurrency,
                "argon2_memory_kib": args.argon2_memory_kib,
                "argon2_iterations": args.argon2_iterations,
            })
        );
        return;
    }
    println!("guard benchmark");
    println!(
        "  blocker: {} attempts over {} users in {:.2} s = {:.0} attempts/s ({} block writes, {} checkpoints)",
        blocker.records, args.users, blocker.seconds, attempts_per_s, blocker.blocks_written, blocker.checkpoints
    );
    println!(
        "  logins:  {} in {:.2} s = {:.1} logins/s ({} concurrent; Argon2id m={} KiB, t={}, p=1; {:.1} ms per login)",
        logins.logins,
        logins.seconds,
        logins_per_s,
        logins.concurrency,
        args.argon2_memory_kib,
        args.argon2_iterations,
        1000.0 * logins.seconds * logins.concurrency as f64 / logins.logins as f64
    );
}
