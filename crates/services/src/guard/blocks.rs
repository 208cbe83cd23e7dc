//! The block map of a login node: a follower of the compacted `blocked-users` topic, read
//! from the beginning and kept up to date, so logins are refused from local memory without
//! calling another service. A block whose `until_ms` has passed no longer counts.
//!
//! # Records of `blocked-users` (key: the user)
//!
//! - `{"kind": "block", "user", "since_ms", "until_ms", "failures", "last_failure_ms",
//!   "mac"}`: the user is blocked (written by the blocker).
//! - `{"kind": "unblock", "user", "time_ms", "mac"}`: the block was lifted at `time_ms`
//!   (written by the node where an admin lifted it, and by the blocker when it reads the
//!   unblock).
//!
//! The follower applies only records whose MAC ([`super::mac`]) its key reproduces, so a
//! record written by anyone else blocks or unblocks nobody; the others are counted by
//! [`Rejection`]. Records of other kinds or without a MAC (as written before records were
//! signed) count as forged too.
//!
//! Tombstones are ignored: a tombstone has no value to sign, so it cannot say who wrote it,
//! and the guard never writes one (a lift is a signed record). A signed record cannot be
//! altered, but it can be copied: a follower therefore ignores a lift older than the block it
//! holds and a block that started before the newest lift it saw, so a replayed old record
//! changes nothing while that history is in the log. What signatures cannot stop is removal:
//! a tombstone compacts a block away for nodes that start later, and a compacted log can
//! leave a replayed record as a user's only one. Only the broker's ACLs (nobody but the
//! guard writes `blocked-users`) close that.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::mac::{self, Canonical, Rejection};
use super::now_ms;
use super::rules::BlockRecord;
use super::secret::GuardSecret;
use super::stats::RejectionCounts;
use super::GuardError;
use crate::kafka::CreateClient;
use crate::KafkaConfig;

/// Topic of block records: compacted, key = user.
pub const BLOCKED_USERS: &str = "blocked-users";

/// A record of `blocked-users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BlockEntry {
    /// The user is blocked.
    Block {
        #[serde(flatten)]
        record: BlockRecord,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<String>,
    },
    /// The user's block was lifted at `time_ms`.
    Unblock {
        user: String,
        time_ms: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<String>,
    },
}

impl BlockEntry {
    pub fn block(record: BlockRecord) -> BlockEntry {
        BlockEntry::Block { record, mac: None }
    }

    pub fn unblock(user: &str, time_ms: i64) -> BlockEntry {
        BlockEntry::Unblock {
            user: user.to_string(),
            time_ms,
            mac: None,
        }
    }

    /// The entry with its MAC, for a record keyed by its user.
    pub fn signed(mut self, secret: &GuardSecret) -> BlockEntry {
        let signature = mac::sign(secret, &self.canonical(Some(self.user().as_bytes())));
        match &mut self {
            BlockEntry::Block { mac, .. } | BlockEntry::Unblock { mac, .. } => {
                *mac = Some(signature)
            }
        }
        self
    }

    /// Whether the guard wrote this entry under `key` (the record's Kafka key).
    pub fn verify(&self, secret: &GuardSecret, key: Option<&[u8]>) -> Result<(), Rejection> {
        let (BlockEntry::Block { mac, .. } | BlockEntry::Unblock { mac, .. }) = self;
        mac::verify(secret, &self.canonical(key), mac.as_deref())
    }

    pub fn user(&self) -> &str {
        match self {
            BlockEntry::Block { record, .. } => &record.user,
            BlockEntry::Unblock { user, .. } => user,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Strings and numbers only: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Every field but the MAC, in a fixed order (see [`super::mac`]).
    fn canonical(&self, key: Option<&[u8]>) -> Canonical {
        match self {
            BlockEntry::Block { record, .. } => Canonical::new("block.set", key)
                .text(&record.user)
                .int(record.since_ms)
                .optional_int(record.until_ms)
                .uint(record.failures)
                .int(record.last_failure_ms),
            BlockEntry::Unblock { user, time_ms, .. } => {
                Canonical::new("block.lift", key).text(user).int(*time_ms)
            }
        }
    }
}

/// What a follower knows of one user.
#[derive(Debug, Default)]
struct UserBlocks {
    block: Option<BlockRecord>,
    /// Time of the newest lift seen: no block that started before it holds.
    lifted_ms: Option<i64>,
}

impl UserBlocks {
    /// Applies a verified entry; false when it is older than what is known (a copy of an
    /// old record, or the blocker redoing records after a rewind).
    fn apply(&mut self, entry: BlockEntry) -> bool {
        match entry {
            BlockEntry::Block { record, .. } => {
                if self
                    .lifted_ms
                    .is_some_and(|lifted| record.since_ms <= lifted)
                {
                    return false;
                }
                self.block = Some(record);
            }
            BlockEntry::Unblock { time_ms, .. } => {
                if self.block.as_ref().is_some_and(|b| time_ms < b.since_ms) {
                    return false;
                }
                self.block = None;
                self.lifted_ms = self.lifted_ms.max(Some(time_ms));
            }
        }
        true
    }
}

#[derive(Debug, Default)]
struct Shared {
    users: RwLock<HashMap<String, UserBlocks>>,
    rejected: RejectionCounts,
    stopping: AtomicBool,
}

/// Read access to the block map. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct BlockMap {
    shared: Arc<Shared>,
}

impl BlockMap {
    /// The user's block if it holds now.
    pub fn active(&self, user: &str) -> Option<BlockRecord> {
        let users = self.users();
        users
            .get(user)
            .and_then(|u| u.block.as_ref())
            .filter(|b| b.active_at(now_ms()))
            .cloned()
    }

    /// Every block that holds now, by user name.
    pub fn list(&self) -> Vec<BlockRecord> {
        let now = now_ms();
        let mut list: Vec<BlockRecord> = self
            .users()
            .values()
            .filter_map(|u| u.block.as_ref())
            .filter(|b| b.active_at(now))
            .cloned()
            .collect();
        list.sort_by(|a, b| a.user.cmp(&b.user));
        list
    }

    /// How many blocks hold now.
    pub fn active_count(&self) -> u64 {
        let now = now_ms();
        let users = self.users();
        let active = users.values().filter_map(|u| u.block.as_ref());
        active.filter(|b| b.active_at(now)).count() as u64
    }

    /// Records of `blocked-users` refused since the follower started, by reason.
    pub fn rejected(&self) -> &RejectionCounts {
        &self.shared.rejected
    }

    /// Waits until `check` holds for the user's current block (tests, and the admin API
    /// waiting for its own unblock to arrive). False on timeout.
    pub async fn wait_for(
        &self,
        user: &str,
        timeout: Duration,
        check: impl Fn(Option<&BlockRecord>) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if check(self.active(user).as_ref()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn users(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, UserBlocks>> {
        self.shared.users.read().unwrap_or_else(|e| e.into_inner())
    }

    fn apply(&self, secret: &GuardSecret, key: Option<&[u8]>, value: Option<&[u8]>) {
        let entry = match read_entry(secret, key, value) {
            Ok(entry) => entry,
            Err(rejection) => {
                self.shared.rejected.count(rejection);
                tracing::debug!(
                    reason = rejection.reason(),
                    "ignoring a blocked-users record"
                );
                return;
            }
        };
        let user = entry.user().to_string();
        let mut users = self.shared.users.write().unwrap_or_else(|e| e.into_inner());
        if !users.entry(user).or_default().apply(entry) {
            tracing::debug!("ignoring a blocked-users record older than what it would replace");
        }
    }
}

/// A verified entry of a record; why not otherwise.
fn read_entry(
    secret: &GuardSecret,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<BlockEntry, Rejection> {
    let value = value.ok_or(Rejection::Tombstone)?;
    let entry: BlockEntry = serde_json::from_slice(value).map_err(|_| Rejection::Unreadable)?;
    entry.verify(secret, key)?;
    Ok(entry)
}

/// The thread that keeps a [`BlockMap`] current.
#[derive(Debug)]
pub struct BlocksFollower {
    map: BlockMap,
    thread: Option<JoinHandle<()>>,
}

impl BlocksFollower {
    /// Starts following `topic` (which must exist) from its beginning, applying the records
    /// signed with `secret`.
    pub fn start(
        kafka: &KafkaConfig,
        topic: &str,
        secret: GuardSecret,
    ) -> Result<BlocksFollower, GuardError> {
        let consumer = assigned_consumer(kafka, topic)?;
        let map = BlockMap::default();
        let follower_map = map.clone();
        let thread = std::thread::Builder::new()
            .name("guard-blocks".into())
            .spawn(move || follow(consumer, follower_map, secret))
            .map_err(|source| GuardError::Thread {
                thread: "guard-blocks",
                source,
            })?;
        Ok(BlocksFollower {
            map,
            thread: Some(thread),
        })
    }

    pub fn map(&self) -> BlockMap {
        self.map.clone()
    }

    /// Stops the thread. Blocking (at most one poll interval).
    pub fn shutdown(mut self) {
        self.map.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the blocked-users follower panicked");
            }
        }
    }
}

/// A consumer assigned every partition of `topic` from the beginning. It never joins or
/// commits: every login node needs every block.
fn assigned_consumer(kafka: &KafkaConfig, topic: &str) -> Result<BaseConsumer, GuardError> {
    let consumer: BaseConsumer = kafka
        .reader_config("guard-blocks", "freshet-guard-blocks")
        .set("fetch.wait.max.ms", "50")
        .create_client()?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(GuardError::kafka(format!(
            "reading the metadata of {topic}"
        )))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    if partitions == 0 {
        return Err(GuardError::NoPartitions {
            topic: topic.into(),
        });
    }
    let mut assignment = TopicPartitionList::new();
    (0..partitions as i32)
        .try_for_each(|partition| {
            assignment.add_partition_offset(topic, partition, Offset::Beginning)
        })
        .and_then(|()| consumer.assign(&assignment))
        .map_err(GuardError::kafka(format!("assigning {topic}")))?;
    Ok(consumer)
}

fn follow(consumer: BaseConsumer, map: BlockMap, secret: GuardSecret) {
    while !map.shared.stopping.load(Ordering::SeqCst) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => map.apply(&secret, message.key(), message.payload()),
            Some(Err(e)) => tracing::warn!(error = %e, "reading blocked-users"),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> GuardSecret {
        GuardSecret::from_bytes(&[byte; 32]).expect("key")
    }

    fn record(user: &str, since_ms: i64) -> BlockRecord {
        BlockRecord {
            user: user.into(),
            since_ms,
            until_ms: None,
            failures: 5,
            last_failure_ms: since_ms,
        }
    }

    fn apply(map: &BlockMap, key: &GuardSecret, entry: BlockEntry) {
        let user = entry.user().to_string();
        let value = entry.signed(key).to_json();
        map.apply(key, Some(user.as_bytes()), Some(&value));
    }

    #[test]
    fn entries_round_trip_as_json_with_their_kind() {
        let key = secret(1);
        let block = BlockEntry::block(record("bob", 10)).signed(&key);
        let json: serde_json::Value = serde_json::from_slice(&block.to_json()).expect("json");
        assert_eq!(json["kind"], "block");
        assert_eq!(json["since_ms"], 10);
        assert_eq!(json["until_ms"], serde_json::Value::Null);
        let parsed: BlockEntry = serde_json::from_slice(&block.to_json()).expect("parses");
        assert_eq!(parsed, block);
        assert_eq!(parsed.verify(&key, Some(b"bob")), Ok(()));
        let lift = BlockEntry::unblock("bob", 20).signed(&key);
        let parsed: BlockEntry = serde_json::from_slice(&lift.to_json()).expect("parses");
        assert_eq!(parsed.verify(&key, Some(b"bob")), Ok(()));
        assert_eq!(
            parsed.verify(&key, Some(b"eve")),
            Err(Rejection::InvalidMac)
        );
    }

    #[test]
    fn only_signed_records_block_or_unblock() {
        let key = secret(1);
        let map = BlockMap::default();
        let unsigned = BlockEntry::block(record("bob", 10)).to_json();
        map.apply(&key, Some(b"bob"), Some(&unsigned));
        let foreign = BlockEntry::block(record("bob", 10))
            .signed(&secret(2))
            .to_json();
        map.apply(&key, Some(b"bob"), Some(&foreign));
        map.apply(&key, Some(b"bob"), Some(b"{\"user\": \"bob\"}"));
        assert_eq!(map.active("bob"), None);

        apply(&map, &key, BlockEntry::block(record("bob", 10)));
        assert!(map.active("bob").is_some());
        map.apply(&key, Some(b"bob"), None);
        let forged_lift = BlockEntry::unblock("bob", 20).to_json();
        map.apply(&key, Some(b"bob"), Some(&forged_lift));
        assert!(
            map.active("bob").is_some(),
            "tombstones and unsigned lifts do nothing"
        );
        apply(&map, &key, BlockEntry::unblock("bob", 20));
        assert_eq!(map.active("bob"), None);

        let rejected = map.rejected();
        let counts = Rejection::ALL.map(|r| rejected.get(r));
        assert_eq!(
            counts,
            [2, 1, 1, 1],
            "missing, invalid, unreadable, tombstone"
        );
    }

    #[test]
    fn copies_of_old_records_change_nothing() {
        let key = secret(1);
        let map = BlockMap::default();
        apply(&map, &key, BlockEntry::block(record("bob", 10)));
        apply(&map, &key, BlockEntry::unblock("bob", 20));
        apply(&map, &key, BlockEntry::block(record("bob", 10)));
        assert_eq!(map.active("bob"), None, "a block from before the lift");
        apply(&map, &key, BlockEntry::block(record("bob", 30)));
        apply(&map, &key, BlockEntry::unblock("bob", 20));
        assert!(map.active("bob").is_some(), "a lift from before the block");
        apply(&map, &key, BlockEntry::unblock("bob", 30));
        assert_eq!(
            map.active("bob"),
            None,
            "a lift at the block's start lifts it"
        );
    }
}
