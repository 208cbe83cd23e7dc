//! The block map of a login node: a follower of the compacted `blocked-users` topic, read
//! from the beginning and kept up to date, so logins are refused from local memory without
//! calling another service. A block whose `until_ms` has passed no longer counts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::now_ms;
use super::rules::BlockRecord;
use crate::{KafkaConfig, ServiceError};

/// Topic of block records: compacted, key = user, tombstone = unblocked.
pub const BLOCKED_USERS: &str = "blocked-users";

#[derive(Debug, Default)]
struct Shared {
    blocks: RwLock<HashMap<String, BlockRecord>>,
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
        let blocks = self.shared.blocks.read().unwrap_or_else(|e| e.into_inner());
        blocks.get(user).filter(|b| b.active_at(now_ms())).cloned()
    }

    /// Every block that holds now, by user name.
    pub fn list(&self) -> Vec<BlockRecord> {
        let now = now_ms();
        let blocks = self.shared.blocks.read().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<BlockRecord> = blocks
            .values()
            .filter(|b| b.active_at(now))
            .cloned()
            .collect();
        list.sort_by(|a, b| a.user.cmp(&b.user));
        list
    }

    /// How many blocks hold now.
    pub fn active_count(&self) -> u64 {
        let now = now_ms();
        let blocks = self.shared.blocks.read().unwrap_or_else(|e| e.into_inner());
        blocks.values().filter(|b| b.active_at(now)).count() as u64
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

    fn apply(&self, key: &[u8], value: Option<&[u8]>) {
        let Ok(user) = std::str::from_utf8(key) else {
            tracing::warn!("skipping a blocked-users record whose key is not UTF-8");
            return;
        };
        let mut blocks = self
            .shared
            .blocks
            .write()
            .unwrap_or_else(|e| e.into_inner());
        match value.map(serde_json::from_slice::<BlockRecord>) {
            None => {
                blocks.remove(user);
            }
            Some(Ok(record)) => {
                blocks.insert(user.to_string(), record);
            }
            Some(Err(e)) => tracing::warn!(user, error = %e, "skipping an unreadable block record"),
        }
    }
}

/// The thread that keeps a [`BlockMap`] current.
#[derive(Debug)]
pub struct BlocksFollower {
    map: BlockMap,
    thread: Option<JoinHandle<()>>,
}

impl BlocksFollower {
    /// Starts following `topic` (which must exist) from its beginning.
    pub fn start(kafka: &KafkaConfig, topic: &str) -> Result<BlocksFollower, ServiceError> {
        let consumer = assigned_consumer(kafka, topic)?;
        let map = BlockMap::default();
        let follower_map = map.clone();
        let thread = std::thread::Builder::new()
            .name("guard-blocks".into())
            .spawn(move || follow(consumer, follower_map))
            .map_err(|e| ServiceError::InvalidParams(format!("cannot start a thread: {e}")))?;
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
fn assigned_consumer(kafka: &KafkaConfig, topic: &str) -> Result<BaseConsumer, ServiceError> {
    let consumer: BaseConsumer = kafka
        .client_config("guard-blocks")
        .set("group.id", "freshet-guard-blocks")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "50")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    if partitions == 0 {
        return Err(ServiceError::Topic {
            topic: topic.into(),
            reason: "has no partitions".into(),
        });
    }
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions as i32 {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}

fn follow(consumer: BaseConsumer, map: BlockMap) {
    while !map.shared.stopping.load(Ordering::SeqCst) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => map.apply(message.key().unwrap_or_default(), message.payload()),
            Some(Err(e)) => tracing::warn!(error = %e, "reading blocked-users"),
            None => {}
        }
    }
}
