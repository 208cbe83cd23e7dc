//! The topic registry: which topics exist, their configs, and one log per partition.
//!
//! On disk, every topic is a directory `<data>/topics/<name>/` holding `topic.json` (id,
//! partition count, config overrides) and one directory per partition (`0/`, `1/`, ...) that
//! belongs to [`freshet_log::PartitionLog`]. `topic.json` is replaced atomically (write, fsync,
//! rename, fsync the directory), so a crash leaves either the old or the new metadata.
//!
//! A [`Topic`] is immutable once published; changes (more partitions, new configs) build a new
//! `Topic` and swap it into the map, so readers never see a half-changed topic.
//!
//! Creating and deleting are crash-safe by one rule: a directory is a topic exactly when it has
//! a valid topic name and holds `topic.json`.
//!
//! - **Create** makes the directory and the partitions first and writes `topic.json` last (its
//!   rename is the commit point). A failed creation is removed again; a crashed one leaves a
//!   directory without `topic.json`, which is skipped at start and cleared by the next
//!   creation of that name.
//! - **Delete** renames the directory to a *tombstone*, `.deleted~<topic id>`, and fsyncs the
//!   parent: that durable rename is the commit point. A crash before it leaves the topic whole
//!   (and the request unanswered); after it, the tombstone, which the next start removes.
//!   `~` cannot occur in a topic name, so a tombstone is never taken for a topic, and its
//!   name is 45 bytes whatever the topic's name (within every file-name limit). The rename
//!   needs no free space, so deleting topics still works on a full disk.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use freshet_log::{LogConfig, LogError, PartitionLog};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::broker_configs::{BrokerLayer, BrokerScope, StoredBrokerConfigs};
use crate::topic_config::TopicDefaults;
pub use crate::topic_config::{TopicConfigs, TOPIC_CONFIGS};

/// Kafka's limit on topic name length.
const MAX_TOPIC_NAME_LEN: usize = 249;
/// Partitions a single topic may have; a guard against absurd requests, not a Kafka rule.
pub const MAX_PARTITIONS: i32 = 10_000;
/// Prefix of a deleted topic's directory until its files are removed (see the module docs).
const TOMBSTONE_PREFIX: &str = ".deleted~";
/// Prefix of the tombstones of earlier versions, `.deleted-<name>-<id>`. Such a name is also
/// a valid topic name, so [`is_legacy_tombstone`] checks the id too.
const LEGACY_TOMBSTONE_PREFIX: &str = ".deleted-";
/// Length of a UUID in its hyphenated form.
const UUID_LEN: usize = 36;

/// Why a topic operation failed; each maps to one Kafka error code.
#[derive(Debug, Error)]
pub enum TopicError {
    #[error("invalid topic name {0:?}: {1}")]
    InvalidName(String, &'static str),
    #[error("topic {0:?} already exists")]
    AlreadyExists(String),
    #[error("topic {0:?} does not exist")]
    Unknown(String),
    #[error("invalid partition count {0}: {1}")]
    InvalidPartitions(i32, String),
    #[error("invalid replication factor {0}: this broker has one node")]
    InvalidReplicationFactor(i16),
    #[error("invalid config {0}: {1}")]
    InvalidConfig(String, String),
    /// A request that cannot mean anything, such as a config named twice (Kafka's
    /// INVALID_REQUEST, which clients do not retry).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("log error: {0}")]
    Log(#[from] LogError),
    #[error("storage error: {0}")]
    Io(#[from] io::Error),
    #[error("not authorized to {1} topic {0}")]
    NotAuthorized(String, &'static str),
}

impl TopicError {
    /// The Kafka error code clients expect for this error.
    pub fn error_code(&self) -> i16 {
        self.response_error().code()
    }

    /// The Kafka error this maps to (named, where [`TopicError::error_code`] gives its number).
    pub fn response_error(&self) -> kafka_protocol::ResponseError {
        use kafka_protocol::ResponseError as E;
        match self {
            TopicError::InvalidName(..) => E::InvalidTopicException,
            TopicError::AlreadyExists(_) => E::TopicAlreadyExists,
            TopicError::Unknown(_) => E::UnknownTopicOrPartition,
            TopicError::InvalidPartitions(..) => E::InvalidPartitions,
            TopicError::InvalidReplicationFactor(_) => E::InvalidReplicationFactor,
            TopicError::InvalidConfig(..) => E::InvalidConfig,
            TopicError::InvalidRequest(_) => E::InvalidRequest,
            TopicError::Log(e) => e.response_error(),
            TopicError::Io(_) => E::KafkaStorageError,
            TopicError::NotAuthorized(..) => E::TopicAuthorizationFailed,
        }
    }
}

/// Checks a topic name against Kafka's rules: 1-249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let invalid = |why| Err(TopicError::InvalidName(name.to_string(), why));
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return invalid("longer than 249 characters");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are reserved");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// Per-partition traffic counters, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct PartitionCounters {
    pub bytes_in: AtomicU64,
    pub records_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub records_out: AtomicU64,
}

impl PartitionCounters {
    pub fn record_in(&self, bytes: u64, records: u64) {
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
        self.records_in.fetch_add(records, Ordering::Relaxed);
    }

    pub fn record_out(&self, bytes: u64, records: u64) {
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
        self.records_out.fetch_add(records, Ordering::Relaxed);
    }
}

/// One partition: its log and its counters.
#[derive(Debug)]
pub struct Partition {
    pub index: i32,
    pub log: Arc<PartitionLog>,
    pub counters: PartitionCounters,
}

/// A topic as published in the registry.
#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub id: Uuid,
    pub configs: TopicConfigs,
    pub partitions: Vec<Arc<Partition>>,
}

impl Topic {
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }

    /// Internal topics, as Metadata flags them: Kafka's own (`__` prefix, such as
    /// `__consumer_offsets`). Freshet's service topics are ordinary topics.
    pub fn is_internal(&self) -> bool {
        self.name.starts_with("__")
    }
}

/// What `topic.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct TopicMeta {
    id: Uuid,
    partitions: i32,
    #[serde(default)]
    configs: TopicConfigs,
}

/// All topics of the broker.
#[derive(Debug)]
pub struct TopicRegistry {
    root: PathBuf,
    /// The data directory (where `broker-configs.json` lives).
    data_dir: PathBuf,
    /// This broker's node id: which per-broker dynamic configs apply.
    node_id: i32,
    /// The command line's topic defaults.
    log_defaults: LogConfig,
    /// The dynamic broker configs as stored; changed only under `changes`.
    broker_configs: RwLock<StoredBrokerConfigs>,
    /// Every layer of topic defaults (`log_defaults` and the dynamic broker configs), swapped
    /// whole when the dynamic configs change.
    defaults: RwLock<Arc<TopicDefaults>>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Held by every create, delete and partition change, one at a time: a deleted topic's
    /// logs are stopped before a topic of the same name can reuse its directory, and a delete
    /// never races a partition change of the same topic.
    changes: Mutex<()>,
}

impl TopicRegistry {
    /// Opens every topic under `<data_dir>/topics`, running log recovery for each partition,
    /// with the dynamic broker configs of node `node_id` stored in the data directory.
    pub fn open(
        data_dir: &Path,
        log_defaults: LogConfig,
        node_id: i32,
    ) -> Result<Self, TopicError> {
        let root = data_dir.join("topics");
        fs::create_dir_all(&root)?;
        finish_interrupted_deletions(&root);
        let broker_configs = StoredBrokerConfigs::load(data_dir)?;
        let defaults = broker_configs.defaults_leniently(&log_defaults, node_id);
        let mut topics = BTreeMap::new();
        for entry in fs::read_dir(&root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if validate_topic_name(&name).is_err() || !entry.path().join("topic.json").exists() {
                continue;
            }
            let topic = open_topic(&entry.path(), &name, &defaults)?;
            tracing::info!(topic = %name, partitions = topic.partitions.len(), "opened topic");
            topics.insert(name, Arc::new(topic));
        }
        Ok(TopicRegistry {
            root,
            data_dir: data_dir.to_path_buf(),
            node_id,
            log_defaults,
            broker_configs: RwLock::new(broker_configs),
            defaults: RwLock::new(Arc::new(defaults)),
            topics: RwLock::new(topics),
            changes: Mutex::new(()),
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.read().get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Topic>> {
        self.read().values().cloned().collect()
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.get(topic)?.partition(partition).cloned()
    }

    /// The topic defaults of the command line alone.
    pub fn log_defaults(&self) -> &LogConfig {
        &self.log_defaults
    }

    /// Every layer of topic defaults: the dynamic broker configs over the command line's.
    pub fn defaults(&self) -> Arc<TopicDefaults> {
        self.defaults
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The effective log config of a topic.
    pub fn effective_config(&self, topic: &Topic) -> LogConfig {
        topic.configs.apply_leniently(&topic.name, &self.defaults())
    }

    /// `min.insync.replicas` of a topic, its override or the dynamic broker config.
    pub fn min_insync_replicas(&self, topic: &Topic) -> i64 {
        topic.configs.min_insync_replicas(&self.defaults())
    }

    /// The dynamic broker configs of one broker resource, by Kafka broker config name.
    pub fn broker_configs(&self, scope: BrokerScope) -> BrokerLayer {
        self.broker_configs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .layer(scope, self.node_id)
    }

    /// Replaces one broker resource's dynamic configs with what `edit` makes of the current
    /// ones (given with the current defaults), validated in full first; unless
    /// `validate_only`, durably (`broker-configs.json`, atomically) and live: every topic
    /// that does not override a changed config gets its new effective config at once.
    pub fn alter_broker_configs(
        &self,
        scope: BrokerScope,
        validate_only: bool,
        edit: impl FnOnce(&BrokerLayer, &TopicDefaults) -> Result<BrokerLayer, TopicError>,
    ) -> Result<(), TopicError> {
        let _changes = self.lock_changes();
        let stored = self
            .broker_configs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let old_defaults = self.defaults();
        let layer = edit(&stored.layer(scope, self.node_id), &old_defaults)?;
        let next = stored.with_layer(scope, self.node_id, layer);
        let new_defaults = Arc::new(next.defaults(&self.log_defaults, self.node_id)?);
        if validate_only {
            return Ok(());
        }
        next.save(&self.data_dir)?;
        *self
            .broker_configs
            .write()
            .unwrap_or_else(PoisonError::into_inner) = next;
        *self
            .defaults
            .write()
            .unwrap_or_else(PoisonError::into_inner) = new_defaults.clone();
        self.reapply_defaults(&old_defaults, &new_defaults);
        tracing::info!(?scope, configs = ?self.broker_configs(scope), "altered dynamic broker configs");
        Ok(())
    }

    /// Gives every topic that does not override a config whose default changed its new
    /// effective config (the path [`TopicRegistry::alter_configs`] takes for one topic).
    fn reapply_defaults(&self, old: &TopicDefaults, new: &TopicDefaults) {
        let changed: Vec<&str> = TOPIC_CONFIGS
            .iter()
            .map(|def| def.name)
            .filter(|name| old.dynamic().0.get(*name) != new.dynamic().0.get(*name))
            .collect();
        for topic in self.all() {
            if changed
                .iter()
                .all(|name| topic.configs.0.contains_key(*name))
            {
                continue;
            }
            apply_live(&topic, topic.configs.apply_leniently(&topic.name, new));
        }
    }

    /// Replaces a topic's config overrides with what `edit` makes of the current ones,
    /// validated in full first; unless `validate_only`, durably (`topic.json`, atomically)
    /// and live (every partition's log takes the new settings for its next operation).
    /// Changes of one topic are serialised, so an incremental edit never loses another.
    pub fn alter_configs(
        &self,
        name: &str,
        validate_only: bool,
        edit: impl FnOnce(&TopicConfigs) -> Result<TopicConfigs, TopicError>,
    ) -> Result<Arc<Topic>, TopicError> {
        let _changes = self.lock_changes();
        let old = self
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let configs = edit(&old.configs)?;
        let log_config = configs.apply_over(&self.defaults())?;
        if validate_only {
            return Ok(old);
        }
        let meta = TopicMeta {
            id: old.id,
            partitions: old.partitions.len() as i32,
            configs: configs.clone(),
        };
        write_meta(&self.root.join(name), &meta)?;
        let topic = Arc::new(Topic {
            name: old.name.clone(),
            id: old.id,
            configs,
            partitions: old.partitions.clone(),
        });
        self.write().insert(name.to_string(), topic.clone());
        apply_live(&topic, log_config);
        tracing::info!(topic = %name, configs = ?topic.configs.0, "altered topic configs");
        Ok(topic)
    }

    /// Checks a CreateTopics request without creating anything.
    pub fn validate_new_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: &TopicConfigs,
    ) -> Result<(), TopicError> {
        self.validate_topic_settings(name, partitions, configs)?;
        if self.read().contains_key(name) {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        Ok(())
    }

    /// Creates a topic durably and publishes it. On failure nothing of it stays on disk.
    pub fn create(
        &self,
        name: &str,
        partitions: i32,
        configs: TopicConfigs,
    ) -> Result<Arc<Topic>, TopicError> {
        let _changes = self.lock_changes();
        self.validate_new_topic(name, partitions, &configs)?;
        let dir = self.root.join(name);
        self.clear_unfinished_creation(&dir, name)?;
        let meta = TopicMeta {
            id: Uuid::new_v4(),
            partitions,
            configs,
        };
        let topic = match self.write_new_topic(&dir, name, meta) {
            Ok(topic) => Arc::new(topic),
            Err(e) => {
                self.discard_directory(&dir);
                return Err(e);
            }
        };
        self.write().insert(name.to_string(), topic.clone());
        tracing::info!(topic = %name, partitions, "created topic");
        Ok(topic)
    }

    /// The directory and partitions first, `topic.json` last: until that file is renamed into
    /// place the directory is not a topic, whatever a crash leaves of it.
    fn write_new_topic(
        &self,
        dir: &Path,
        name: &str,
        meta: TopicMeta,
    ) -> Result<Topic, TopicError> {
        fs::create_dir_all(dir)?;
        let log_config = meta.configs.apply_over(&self.defaults())?;
        let partitions = open_partitions(dir, 0..meta.partitions, &log_config)?;
        write_meta(dir, &meta)?;
        sync_dir(&self.root)?;
        Ok(Topic {
            name: name.to_string(),
            id: meta.id,
            configs: meta.configs,
            partitions,
        })
    }

    /// A directory of this name without `topic.json` is what a failed or crashed creation
    /// left; it goes before the new topic takes its place.
    fn clear_unfinished_creation(&self, dir: &Path, name: &str) -> Result<(), TopicError> {
        if !dir.exists() {
            return Ok(());
        }
        if dir.join("topic.json").exists() {
            // Not published, yet committed: never overwrite what might be someone's data.
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        tracing::info!(dir = %dir.display(), "removing what an unfinished topic creation left");
        let tombstone = self.root.join(tombstone_name(Uuid::new_v4()));
        fs::rename(dir, &tombstone)?;
        remove_tombstone(&tombstone);
        Ok(())
    }

    /// Removes a failed creation's directory: renamed away first, so that even a crash midway
    /// cannot leave a `topic.json` behind in a directory that looks like a topic.
    fn discard_directory(&self, dir: &Path) {
        let tombstone = self.root.join(tombstone_name(Uuid::new_v4()));
        match fs::rename(dir, &tombstone) {
            Ok(()) => remove_tombstone(&tombstone),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a failed topic creation")
            }
        }
    }

    /// Returns the topic, creating it with the default partition count when it is missing.
    pub fn get_or_create(&self, name: &str, partitions: i32) -> Result<Arc<Topic>, TopicError> {
        if let Some(topic) = self.get(name) {
            return Ok(topic);
        }
        match self.create(name, partitions, TopicConfigs::default()) {
            Err(TopicError::AlreadyExists(_)) => self
                .get(name)
                .ok_or_else(|| TopicError::Unknown(name.to_string())),
            other => other,
        }
    }

    /// Grows a topic to `count` partitions.
    pub fn add_partitions(&self, name: &str, count: i32) -> Result<Arc<Topic>, TopicError> {
        let _changes = self.lock_changes();
        let mut topics = self.write();
        let old = topics
            .get(name)
            .cloned()
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let current = old.partitions.len() as i32;
        if count <= current {
            return Err(TopicError::InvalidPartitions(
                count,
                format!("topic {name} already has {current} partitions"),
            ));
        }
        if count > MAX_PARTITIONS {
            return Err(TopicError::InvalidPartitions(
                count,
                format!("must be at most {MAX_PARTITIONS}"),
            ));
        }
        let dir = self.root.join(name);
        let log_config = old.configs.apply_leniently(name, &self.defaults());
        let mut partitions = old.partitions.clone();
        partitions.extend(open_partitions(&dir, current..count, &log_config)?);
        let meta = TopicMeta {
            id: old.id,
            partitions: count,
            configs: old.configs.clone(),
        };
        write_meta(&dir, &meta)?;
        let topic = Arc::new(Topic {
            name: old.name.clone(),
            id: old.id,
            configs: old.configs.clone(),
            partitions,
        });
        topics.insert(name.to_string(), topic.clone());
        Ok(topic)
    }

    /// Removes a topic: its directory renamed to a tombstone durably (the commit point, see
    /// the module docs) and unpublished together, its logs stopped, its files removed. On error
    /// the topic is still there, unchanged.
    pub fn delete(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        let changes = self.lock_changes();
        let topic = self
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let live = self.root.join(name);
        let tombstone = self.root.join(tombstone_name(topic.id));
        {
            let mut topics = self.write();
            fs::rename(&live, &tombstone)?;
            topics.remove(name);
        }
        if let Err(e) = sync_dir(&self.root) {
            self.undo_delete(&topic, &live, &tombstone);
            return Err(e.into());
        }
        // Requests that found the topic before may still be using its logs: stop them before
        // a new topic of this name can take the directory.
        for partition in &topic.partitions {
            partition.log.mark_deleted();
        }
        drop(changes);
        remove_tombstone(&tombstone);
        tracing::info!(topic = %name, id = %topic.id, "deleted topic");
        Ok(topic)
    }

    /// After a rename whose durability is unknown: put the topic back as it was, so that the
    /// error the client gets is true (the topic is still there) and a retry can delete it.
    fn undo_delete(&self, topic: &Arc<Topic>, live: &Path, tombstone: &Path) {
        let mut topics = self.write();
        match fs::rename(tombstone, live) {
            Ok(()) => {
                topics.insert(topic.name.clone(), topic.clone());
            }
            Err(e) => {
                drop(topics);
                tracing::error!(topic = %topic.name, error = %e, "cannot undo a topic deletion \
                    whose rename was not durable: the topic stays deleted, its files are removed \
                    at the next start");
                for partition in &topic.partitions {
                    partition.log.mark_deleted();
                }
            }
        }
    }

    /// Flushes and closes every log (clean shutdown).
    pub fn close(&self) {
        for topic in self.all() {
            for partition in &topic.partitions {
                if let Err(e) = partition.log.close() {
                    tracing::error!(topic = %topic.name, partition = partition.index, error = %e, "closing log failed");
                }
            }
        }
    }

    /// Name, partition count and configs, without looking at existing topics.
    fn validate_topic_settings(
        &self,
        name: &str,
        partitions: i32,
        configs: &TopicConfigs,
    ) -> Result<(), TopicError> {
        validate_topic_name(name)?;
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(TopicError::InvalidPartitions(
                partitions,
                format!("must be between 1 and {MAX_PARTITIONS}"),
            ));
        }
        configs.apply_over(&self.defaults())?;
        Ok(())
    }

    fn lock_changes(&self) -> MutexGuard<'_, ()> {
        // The mutex guards no data, only the order of changes.
        self.changes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Topic>>> {
        // A poisoned lock only means a panic elsewhere; the map itself is always consistent
        // because every change is a single insert or remove.
        self.topics.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Topic>>> {
        self.topics.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every partition of `topic` takes `config` for its next operation.
fn apply_live(topic: &Topic, config: LogConfig) {
    for partition in &topic.partitions {
        partition.log.set_config(config.clone());
    }
}

fn open_topic(dir: &Path, name: &str, defaults: &TopicDefaults) -> Result<Topic, TopicError> {
    let meta = read_meta(dir)?;
    let log_config = meta.configs.apply_leniently(name, defaults);
    let partitions = open_partitions(dir, 0..meta.partitions, &log_config)?;
    Ok(Topic {
        name: name.to_string(),
        id: meta.id,
        configs: meta.configs,
        partitions,
    })
}

/// How many partitions are opened at once. Opening a new partition is four fsyncs and
/// almost no CPU; on a disk where an fsync takes milliseconds, 500 partitions opened one by
/// one took over 10 s, while concurrent fsyncs share the file system's journal commits.
const OPENING_THREADS: usize = 16;

/// Opens (creating where missing) the partitions `indices` of the topic in `topic_dir`, on
/// up to [`OPENING_THREADS`] threads, in index order. The first error wins; partitions
/// opened before it are dropped, as a sequential loop would drop them.
fn open_partitions(
    topic_dir: &Path,
    indices: std::ops::Range<i32>,
    config: &LogConfig,
) -> Result<Vec<Arc<Partition>>, TopicError> {
    let indices: Vec<i32> = indices.collect();
    if indices.len() <= 1 {
        return indices
            .into_iter()
            .map(|index| open_partition(topic_dir, index, config.clone()))
            .collect();
    }
    let per_thread = indices.len().div_ceil(OPENING_THREADS);
    std::thread::scope(|scope| {
        let opening: Vec<_> = indices
            .chunks(per_thread)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|&index| open_partition(topic_dir, index, config.clone()))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut partitions = Vec::with_capacity(indices.len());
        for thread in opening {
            let opened = thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            partitions.extend(opened);
        }
        Ok(partitions)
    })
}

fn open_partition(
    topic_dir: &Path,
    index: i32,
    config: LogConfig,
) -> Result<Arc<Partition>, TopicError> {
    let log = PartitionLog::open(&topic_dir.join(index.to_string()), config)?;
    Ok(Arc::new(Partition {
        index,
        log: Arc::new(log),
        counters: PartitionCounters::default(),
    }))
}

fn read_meta(dir: &Path) -> Result<TopicMeta, TopicError> {
    let bytes = fs::read(dir.join("topic.json"))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        TopicError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", dir.join("topic.json").display()),
        ))
    })
}

fn write_meta(dir: &Path, meta: &TopicMeta) -> Result<(), TopicError> {
    let json = serde_json::to_vec_pretty(meta)
        .map_err(|e| TopicError::Io(io::Error::other(e.to_string())))?;
    write_atomically(&dir.join("topic.json"), &json)?;
    Ok(())
}

/// The durable-file helpers (`freshet-os`), used for every file the broker keeps: replace a
/// file so that a crash leaves the old or the new one (temp file, fsync, rename, directory
/// fsync), and make a directory's entries durable.
pub use freshet_os::files::{replace_file_atomically as write_atomically, sync_dir};

/// The tombstone of the topic (or failed creation) with id `id`: 45 bytes, never a topic name.
fn tombstone_name(id: Uuid) -> String {
    format!("{TOMBSTONE_PREFIX}{id}")
}

/// Deletes a tombstone's files. A failure leaves them for the next start, which retries: the
/// tombstone can never be opened as a topic.
fn remove_tombstone(tombstone: &Path) {
    // A stray file in place of a topic directory is cleared the same way.
    let removed = match fs::symlink_metadata(tombstone) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(tombstone),
        Ok(_) => fs::remove_file(tombstone),
        Err(e) => Err(e),
    };
    if let Err(e) = removed {
        tracing::warn!(path = %tombstone.display(), error = %e, "cannot remove a deleted topic's files yet; the next start retries");
    }
}

/// Removes the tombstones of deletions a crash (or an error) left, before topics are opened.
fn finish_interrupted_deletions(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TOMBSTONE_PREFIX) || is_legacy_tombstone(&entry.path(), &name) {
            tracing::info!(path = %entry.path().display(), "finishing an interrupted topic deletion");
            remove_tombstone(&entry.path());
        }
    }
}

/// Whether `dir`, named `name`, is an earlier version's tombstone `.deleted-<name>-<id>`. Such
/// a name is also a valid topic name, so it counts only when its `topic.json` is gone (a
/// deletion interrupted while removing files) or holds that very id: a topic someone named
/// `.deleted-x-<uuid>` has an id of its own.
fn is_legacy_tombstone(dir: &Path, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(LEGACY_TOMBSTONE_PREFIX) else {
        return false;
    };
    let Some(split) = rest.len().checked_sub(UUID_LEN) else {
        return false;
    };
    let Some((head, id)) = rest.split_at_checked(split) else {
        return false;
    };
    let Ok(id) = Uuid::parse_str(id) else {
        return false;
    };
    if !head.ends_with('-') {
        return false;
    }
    match read_meta(dir) {
        Ok(meta) => meta.id == id,
        Err(TopicError::Io(e)) => e.kind() == io::ErrorKind::NotFound,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("device-events.dlq_2").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a/b").is_err());
        assert!(validate_topic_name("ü").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
    }

    use freshet_log::CleanupPolicy;

    #[test]
    fn configs_are_validated_and_applied() {
        let mut overrides = TopicConfigs::default();
        overrides
            .0
            .insert("cleanup.policy".into(), "delete,compact".into());
        overrides.0.insert("retention.ms".into(), "1000".into());
        let config = overrides.apply(&LogConfig::default()).expect("valid");
        assert_eq!(config.cleanup_policy, CleanupPolicy::CompactDelete);
        assert_eq!(config.retention_ms, 1000);

        let mut bad = TopicConfigs::default();
        bad.0.insert("retention.ms".into(), "soon".into());
        assert!(matches!(
            bad.apply(&LogConfig::default()),
            Err(TopicError::InvalidConfig(..))
        ));
        let mut unknown = TopicConfigs::default();
        unknown.0.insert("flux.capacitor".into(), "1".into());
        assert!(unknown.apply(&LogConfig::default()).is_err());
    }

    #[test]
    fn topics_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = TopicRegistry::open(dir.path(), LogConfig::default(), 1).expect("open");
        let mut configs = TopicConfigs::default();
        configs.0.insert("cleanup.policy".into(), "compact".into());
        let created = registry
            .create("state", 2, configs.clone())
            .expect("create");
        registry.add_partitions("state", 4).expect("grow");
        registry.close();
        drop(registry);

        let reopened = TopicRegistry::open(dir.path(), LogConfig::default(), 1).expect("reopen");
        let topic = reopened.get("state").expect("topic survived");
        assert_eq!(topic.id, created.id);
        assert_eq!(topic.partitions.len(), 4);
        assert_eq!(topic.configs, configs);
        reopened.delete("state").expect("delete");
        drop(reopened);
        let again = TopicRegistry::open(dir.path(), LogConfig::default(), 1).expect("reopen");
        assert!(again.get("state").is_none());
    }

    #[test]
    fn many_partitions_open_concurrently_in_index_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = TopicRegistry::open(dir.path(), LogConfig::default(), 1).expect("open");
        registry
            .create("wide", 37, TopicConfigs::default())
            .expect("create");
        let grown = registry.add_partitions("wide", 101).expect("grow");
        let indices: Vec<i32> = grown.partitions.iter().map(|p| p.index).collect();
        assert_eq!(indices, (0..101).collect::<Vec<_>>());
        for partition in &grown.partitions[37..] {
            assert!(partition.log.dir().ends_with(partition.index.to_string()));
        }
        registry.close();
        drop(registry);

        let reopened = TopicRegistry::open(dir.path(), LogConfig::default(), 1).expect("reopen");
        let topic = reopened.get("wide").expect("topic survived");
        let indices: Vec<i32> = topic.partitions.iter().map(|p| p.index).collect();
        assert_eq!(indices, (0..101).collect::<Vec<_>>());
    }

    /// What `<data>/topics` holds, sorted.
    fn entries(data_dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(data_dir.join("topics"))
            .expect("read topics dir")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_topic_with_the_longest_valid_name_is_deleted_for_good() {
        let dir = tempfile::tempdir().expect("tempdir");
        let name = "x".repeat(MAX_TOPIC_NAME_LEN);
        let registry = TopicRegistry::open(dir.path(), LogConfig::default(), 1).expect("open");
        let topic = registry
            .create(&name, 2, TopicConfigs::default())
            .expect("create");
        assert!(topic.partitions[0].log.read(0, 1024, true).is_ok());
        registry.delete(&name).expect("the delete succeeds");
        assert!(registry.get(&name).is_none());
        assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
        assert!(
            topic.partitions[0].log.read(0, 1024, true).is_err(),
            "the deleted topic's logs are stopped"
        );
        drop(registry);
        let reopened = TopicRegistry::open(dir.path(), LogConfig::default(), 1).expect("reopen");
        assert!(reopened.get(&name).is_none(), "it does not come back");
        let again = reopened
            .create(&name, 1, TopicConfigs::default())
            .expect("the name can be used again");
        assert_ne!(again.id, topic.id);
    }

    #[test]
    fn a_delete_whose_rename_fails_leaves_the_topic_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = TopicRegistry::open(dir.path(), LogConfig::default(), 1).expect("open");
        let topic = registry
            .create("kept", 1, TopicConfigs::default())
            .expect("create");
        // The tombstone's place is taken by a non-empty directory: rename(2) refuses.
        let blocker = dir.path().join("topics").join(tombstone_name(topic.id));
        fs::create_dir_all(blocker.join("occupied")).expect("blocker");
        assert!(matches!(registry.delete("kept"), Err(TopicError::Io(_))));
        assert!(registry.get("kept").is_some(), "still published");
        assert!(
            topic.partitions[0].log.read(0, 1024, true).is_ok(),
            "still usable"
        );
        drop(registry);
        let reopened = TopicRegistry::open(dir.path(), LogConfig::default(), 1).expect("reopen");
        assert_eq!(reopened.get("kept").map(|t| t.id), Some(topic.id));
    }

    #[test]
    fn a_crash_after_the_rename_finishes_the_delete_at_the_next_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = TopicRegistry::open(dir.path(), LogConfig::default(), 1).expect("open");
        let topic = registry
            .create("doomed", 2, TopicConfigs::default())
            .expect("create");
        registry
            .create("kept", 1, TopicConfigs::default())
            .expect("create");
        registry.close();
        drop(registry);
        // The state a kill leaves after the commit point, while files are being removed: the
        // directory renamed, `topic.json` and one partition already gone.
        let topics = dir.path().join("topics");
        let tombstone = topics.join(tombstone_name(topic.id));
        fs::rename(topics.join("doomed"), &tombstone).expect("rename");
        fs::remove_file(tombstone.join("topic.json")).expect("remove topic.json");
        fs::remove_dir_all(tombstone.join("0")).expect("remove a partition");

        let reopened = TopicRegistry::open(dir.path(), LogConfig::default(), 1).expect("reopen");
        assert!(reopened.get("doomed").is_none());
        assert!(reopened.get("kept").is_some());
        assert_eq!(entries(dir.path()), ["kept"], "the tombstone is gone");
    }

    #[test]
    fn a_crash_before_the_rename_leaves_the_topic_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = TopicRegistry::open(dir.path(), LogConfig::default(), 1).expect("open");
        let topic = registry
            .create("whole", 3, TopicConfigs::default())
            .expect("create");
        drop(registry);
        let reopened = TopicRegistry::open(dir.path(), LogConfig::default(), 1).expect("reopen");
        let again = reopened.get("whole").expect("still there");
        assert_eq!((again.id, again.partitions.len()), (topic.id, 3));
    }

    #[test]
    fn tombstones_of_earlier_versions_go_but_topics_named_like_them_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = TopicRegistry::open(dir.path(), LogConfig::default(), 1).expect("open");
        let legacy = registry
            .create("old", 1, TopicConfigs::default())
            .expect("create");
        registry
            .create(".deleted-mine", 1, TopicConfigs::default())
            .expect("a valid name");
        let lookalike_name = format!(".deleted-x-{}", Uuid::new_v4());
        registry
            .create(&lookalike_name, 1, TopicConfigs::default())
            .expect("a valid name");
        registry.close();
        drop(registry);
        // What the previous version's delete left after a crash: `.deleted-<name>-<id>`.
        let topics = dir.path().join("topics");
        let legacy_tombstone = topics.join(format!(".deleted-old-{}", legacy.id));
        fs::rename(topics.join("old"), &legacy_tombstone).expect("rename");
        // And one whose removal had already taken `topic.json`.
        let half_removed = topics.join(format!(".deleted-older-{}", Uuid::new_v4()));
        fs::create_dir_all(half_removed.join("0")).expect("half removed");

        let reopened = TopicRegistry::open(dir.path(), LogConfig::default(), 1).expect("reopen");
        assert!(reopened.get(".deleted-mine").is_some());
        assert!(reopened.get(&lookalike_name).is_some(), "its id is its own");
        assert!(reopened
            .get(&format!(".deleted-old-{}", legacy.id))
            .is_none());
        let mut expected = vec![".deleted-mine".to_string(), lookalike_name];
        expected.sort();
        assert_eq!(entries(dir.path()), expected);
    }

    #[test]
    fn what_an_unfinished_creation_left_is_not_a_topic_and_is_cleared_by_the_next() {
        let dir = tempfile::tempdir().expect("tempdir");
        let topics = dir.path().join("topics");
        // A creation killed before `topic.json`: partitions without the file that commits them.
        fs::create_dir_all(topics.join("half").join("7")).expect("leftover");
        fs::write(topics.join("half").join("7").join("junk"), b"junk").expect("junk");
        let registry = TopicRegistry::open(dir.path(), LogConfig::default(), 1).expect("open");
        assert!(registry.get("half").is_none());
        registry
            .create("half", 2, TopicConfigs::default())
            .expect("create");
        let mut left: Vec<String> = fs::read_dir(topics.join("half"))
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["0", "1", "topic.json"],
            "the leftover partition is gone"
        );
    }
}
