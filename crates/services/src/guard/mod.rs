//! The login guard: accounts, login attempts as events, and brute-force blocking.
//!
//! # How it fits together
//!
//! - [`accounts`] registers users and checks passwords (Argon2id, hashed off the async
//!   runtime, a dummy hash for unknown users) against the [`store`] (SQLite or PostgreSQL).
//! - Every login attempt is published to `login-attempts` keyed by user ([`attempts`]),
//!   without making the login wait for Kafka.
//! - The [`blocker`] consumes `login-attempts` in a consumer group, applies the [`rules`]
//!   per partition, writes blocks to the compacted `blocked-users` topic and checkpoints its
//!   counters with their offsets, so restarts and rebalances neither forget nor double-count.
//! - Every login node follows `blocked-users` ([`blocks`]) and refuses a blocked user from
//!   memory, before any password check.
//! - An admin unblock publishes an unblock record in the user's partition (so the blocker
//!   resets its count in order with the attempts) and a signed lift record on
//!   `blocked-users` (so logins work at once, even while no blocker runs).
//! - [`stats`]: what a node counts for monitoring (login outcomes, blocks, the blocker's
//!   progress, refused records).
//!
//! # Records nobody else can forge
//!
//! Anyone who can write to a topic could otherwise block any user (six failed attempts
//! naming them) or lift a block (one unblock record). So every record the guard writes
//! carries an HMAC-SHA256 ([`mac`]) made with the guard's secret ([`secret`]:
//! `--guard-secret`, or `<data-dir>/guard.secret` created at first start), and:
//!
//! - the blocker counts only attempts with a valid MAC; the others (no MAC, a wrong one,
//!   not an attempt) go unchanged to `login-attempts.dlq`, the reason in the
//!   `freshet.reason` header, and are counted by reason;
//! - followers apply only signed block and lift records of `blocked-users` and ignore
//!   tombstones (see [`blocks`] for copies of old records, and what only ACLs prevent);
//! - the blocker resumes only from signed checkpoints.
//!
//! Records written before records were signed have no MAC and are refused like forgeries:
//! after an upgrade, earlier blocks no longer hold and earlier attempts no longer count
//! (the blocker replays `login-attempts` once, dead-lettering them).
//!
//! The REST API refuses writes and deletes on the services' topics ([`is_service_topic`](
//! crate::is_service_topic)); signatures are what holds when a client reaches the topics
//! over the Kafka protocol.

pub mod accounts;
pub mod attempts;
pub mod blocker;
pub mod blocks;
pub mod checkpoints;
mod error;
pub mod mac;
pub mod rules;
pub mod secret;
pub mod stats;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use freshet_os::clock::now_ms;
use rdkafka::producer::FutureRecord;

use accounts::{validate_login, Accounts, Argon2Params};
use attempts::{Attempt, AttemptPublisher, LOGIN_ATTEMPTS, LOGIN_ATTEMPTS_DLQ};
use blocker::{Blocker, BlockerConfig, BlockerStats};
use blocks::{BlockEntry, BlockMap, BlocksFollower, BLOCKED_USERS};
use mac::Rejection;
use rules::{BlockRecord, Rules};
use secret::GuardSecret;
use stats::{BlockerMetrics, GuardMetrics, LoginCounters};
use store::Store;

use crate::kafka::TopicSpec;
use crate::KafkaConfig;
pub use error::GuardError;

/// Compacted topic of the blocker's checkpoints.
pub const GUARD_CHECKPOINTS: &str = "freshet.guard.checkpoints";

/// How a guard node runs.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// `sqlite://path` or `postgres://...`.
    pub database_url: String,
    pub argon2: Argon2Params,
    pub attempts_topic: String,
    /// Partitions of `login-attempts` when the guard creates it.
    pub attempts_partitions: i32,
    pub blocks_topic: String,
    /// Compacted topic of the blocker's checkpoints.
    pub checkpoint_topic: String,
    /// Where the blocker puts records of the attempts topic it refuses.
    pub dlq_topic: String,
    /// Key of the records' MACs; every node that shares the topics needs the same one.
    pub secret: GuardSecret,
    /// Consumer group of the blockers.
    pub group: String,
    pub rules: Rules,
    pub checkpoint_interval: Duration,
    pub session_timeout: Duration,
    /// Run a blocker in this node (a node can also only serve logins).
    pub run_blocker: bool,
}

impl GuardConfig {
    /// The defaults, with `secret` as the key.
    pub fn with_secret(database_url: impl Into<String>, secret: GuardSecret) -> Self {
        GuardConfig {
            database_url: database_url.into(),
            argon2: Argon2Params::default(),
            attempts_topic: LOGIN_ATTEMPTS.into(),
            attempts_partitions: 3,
            blocks_topic: BLOCKED_USERS.into(),
            checkpoint_topic: GUARD_CHECKPOINTS.into(),
            dlq_topic: LOGIN_ATTEMPTS_DLQ.into(),
            secret,
            group: "freshet-guard".into(),
            rules: Rules::default(),
            checkpoint_interval: Duration::from_secs(1),
            session_timeout: Duration::from_secs(10),
            run_blocker: true,
        }
    }

    /// The defaults with a random key: for a node whose records no other node reads (tests,
    /// benchmarks). Nodes sharing topics are given one key with [`GuardConfig::with_secret`].
    pub fn new(database_url: impl Into<String>) -> Self {
        GuardConfig::with_secret(database_url, GuardSecret::random())
    }

    pub fn blocker_config(&self) -> BlockerConfig {
        BlockerConfig {
            attempts_topic: self.attempts_topic.clone(),
            blocks_topic: self.blocks_topic.clone(),
            checkpoint_topic: self.checkpoint_topic.clone(),
            dlq_topic: self.dlq_topic.clone(),
            secret: self.secret.clone(),
            group: self.group.clone(),
            rules: self.rules,
            checkpoint_interval: self.checkpoint_interval,
            session_timeout: self.session_timeout,
        }
    }
}

/// Creates the guard's topics unless they exist.
pub async fn ensure_topics(kafka: &KafkaConfig, config: &GuardConfig) -> Result<(), GuardError> {
    // Compaction only cleans closed segments: small segments let it reclaim superseded
    // blocks and checkpoints soon, so a restarting node reads little.
    // Checkpoints are chunks below 512 KiB (see `blocker`), so their topic keeps the default
    // `max.message.bytes`, like the others.
    let compacted: &[(&str, &str)] =
        &[("cleanup.policy", "compact"), ("segment.bytes", "16777216")];
    let specs = [
        TopicSpec {
            name: &config.attempts_topic,
            partitions: config.attempts_partitions,
            configs: &[],
        },
        TopicSpec {
            name: &config.blocks_topic,
            partitions: 1,
            configs: compacted,
        },
        TopicSpec {
            name: &config.checkpoint_topic,
            partitions: 1,
            configs: compacted,
        },
        TopicSpec {
            name: &config.dlq_topic,
            partitions: 1,
            configs: &[],
        },
    ];
    Ok(crate::kafka::ensure_topics(kafka, &specs).await?)
}

/// How a login ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    Success,
    /// Unknown user or wrong password: deliberately the same outcome.
    Rejected,
    /// The user is blocked; the password was not checked.
    Blocked,
}

/// What the HTTP API uses. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GuardHandle {
    accounts: Accounts,
    publisher: AttemptPublisher,
    blocks: BlockMap,
    blocks_topic: Arc<str>,
    blocker_stats: Option<Arc<BlockerStats>>,
    logins: Arc<LoginCounters>,
}

impl GuardHandle {
    /// A handle over parts started elsewhere (a guard node, or a test).
    pub fn new(
        accounts: Accounts,
        publisher: AttemptPublisher,
        blocks: BlockMap,
        blocks_topic: &str,
    ) -> GuardHandle {
        GuardHandle {
            accounts,
            publisher,
            blocks,
            blocks_topic: blocks_topic.into(),
            blocker_stats: None,
            logins: Arc::default(),
        }
    }

    pub async fn register(&self, user: &str, pass: &str) -> Result<(), GuardError> {
        self.accounts.register(user, pass).await
    }

    /// Checks a login and publishes the attempt. A blocked user is refused before the
    /// password is looked at.
    pub async fn login(
        &self,
        user: &str,
        pass: &str,
        source: &str,
    ) -> Result<LoginOutcome, GuardError> {
        validate_login(user, pass)?;
        if self.blocks.active(user).is_some() {
            self.publisher.publish(&Attempt {
                blocked: true,
                ..Attempt::login(user, source, false)
            });
            self.logins.count(LoginOutcome::Blocked);
            return Ok(LoginOutcome::Blocked);
        }
        let success = self.accounts.verify(user, pass).await?;
        self.publisher
            .publish(&Attempt::login(user, source, success));
        let outcome = if success {
            LoginOutcome::Success
        } else {
            LoginOutcome::Rejected
        };
        self.logins.count(outcome);
        Ok(outcome)
    }

    /// Blocks that hold now, by user.
    pub fn blocked(&self) -> Vec<BlockRecord> {
        self.blocks.list()
    }

    pub fn block_map(&self) -> &BlockMap {
        &self.blocks
    }

    /// Lifts a user's block; false when the user is not blocked. Returns once the cluster
    /// has the unblock record and the lift record.
    pub async fn unblock(&self, user: &str) -> Result<bool, GuardError> {
        let Some(block) = self.blocks.active(user) else {
            return Ok(false);
        };
        // Never before the block started, even if this node's clock is behind the one that
        // stamped it: an unblock from before a block is ignored as a replay.
        let time_ms = now_ms().max(block.since_ms);
        let unblock = Attempt {
            time_ms,
            ..Attempt::unblock(user)
        };
        self.publisher.publish_acked(&unblock).await?;
        let lift = BlockEntry::unblock(user, time_ms)
            .signed(self.publisher.secret())
            .to_json();
        let record = FutureRecord::to(&self.blocks_topic)
            .key(user)
            .payload(lift.as_slice());
        self.publisher.send_acked(record).await?;
        tracing::info!(user, "block lifted by an admin");
        // The follower applies the lift within a poll interval; waiting for it means the
        // next login on this node already sees the user unblocked.
        self.blocks
            .wait_for(user, Duration::from_secs(5), |b| b.is_none())
            .await;
        Ok(true)
    }

    pub fn blocker_stats(&self) -> Option<&BlockerStats> {
        self.blocker_stats.as_deref()
    }

    /// Attempts that could not be published.
    pub fn attempts_dropped(&self) -> u64 {
        self.publisher.dropped()
    }

    /// This node's numbers for monitoring.
    pub fn metrics(&self) -> GuardMetrics {
        use std::sync::atomic::Ordering::Relaxed;
        GuardMetrics {
            logins: self.logins.by_outcome(),
            users_blocked: self.blocks.active_count(),
            attempts_dropped: self.attempts_dropped(),
            blocker: self.blocker_stats().map(|stats| BlockerMetrics {
                attempts_processed: stats.processed.load(Relaxed),
                blocks_issued: stats.blocks_issued.load(Relaxed),
                checkpoints: stats.checkpoints.load(Relaxed),
            }),
            forged: self.forged_records(),
        }
    }

    /// Refused records of `blocked-users` (every node) and of `login-attempts` (a node with
    /// a blocker), zeros included.
    fn forged_records(&self) -> Vec<stats::ForgedRecords> {
        let mut forged = self
            .blocks
            .rejected()
            .of(&self.blocks_topic, &Rejection::ALL);
        if let Some(stats) = self.blocker_stats() {
            // A record of the attempts topic always has a value to dead-letter.
            let reasons = [
                Rejection::MissingMac,
                Rejection::InvalidMac,
                Rejection::Unreadable,
            ];
            forged.extend(stats.rejected.of(self.publisher.topic(), &reasons));
        }
        forged
    }
}

/// A running guard node: store, publisher, block follower and (optionally) a blocker.
#[derive(Debug)]
pub struct Guard {
    handle: GuardHandle,
    publisher: AttemptPublisher,
    follower: BlocksFollower,
    blocker: Option<Blocker>,
}

impl Guard {
    /// Connects the store (applying migrations), creates the topics and starts the parts.
    pub async fn start(kafka: &KafkaConfig, config: GuardConfig) -> Result<Guard, GuardError> {
        let store = Store::connect(&config.database_url).await?;
        let accounts = Accounts::new(store, config.argon2).await?;
        ensure_topics(kafka, &config).await?;
        let publisher =
            AttemptPublisher::new(kafka, &config.attempts_topic, config.secret.clone())?;
        let follower = BlocksFollower::start(kafka, &config.blocks_topic, config.secret.clone())?;
        let blocker = if config.run_blocker {
            Some(Blocker::start(kafka, config.blocker_config())?)
        } else {
            None
        };
        let mut handle = GuardHandle::new(
            accounts,
            publisher.clone(),
            follower.map(),
            &config.blocks_topic,
        );
        handle.blocker_stats = blocker.as_ref().map(Blocker::stats);
        tracing::info!(
            store = handle.accounts.store().backend(),
            blocker = config.run_blocker,
            "guard started"
        );
        Ok(Guard {
            handle,
            publisher,
            follower,
            blocker,
        })
    }

    pub fn handle(&self) -> GuardHandle {
        self.handle.clone()
    }

    /// Stops the blocker (last checkpoint), delivers queued attempts, stops the follower.
    /// Blocking.
    pub fn shutdown(self) {
        if let Some(blocker) = self.blocker {
            blocker.shutdown();
        }
        self.publisher.flush(Duration::from_secs(5));
        self.follower.shutdown();
    }
}
