//! The broker's shared state: configuration, topics, groups, producer ids and metrics.

use std::fs;
use std::io;
use std::sync::Arc;

use freshet_coordinator::GroupCoordinator;
use freshet_log::{Durability, LogError, LogStats, PartitionLog};
use freshet_security::acl::{AclStore, Authorizer};
use freshet_security::users::UserStore;
use thiserror::Error;

use crate::health::{Condition, Health};
use crate::metrics::Metrics;
use crate::producer_ids::ProducerIds;
use crate::topics::{
    validate_topic_name, write_atomically, Topic, TopicConfigs, TopicError, TopicRegistry,
};
use crate::transactions::TxnCoordinator;
use crate::BrokerConfig;

#[derive(Debug, Error)]
pub enum StartError {
    #[error("data directory {0}: {1}")]
    DataDir(String, io::Error),
    #[error("opening topics: {0}")]
    Topics(#[from] TopicError),
    #[error("opening consumer groups: {0}")]
    Groups(String),
    #[error("opening the security store: {0}")]
    Security(#[from] freshet_security::files::StoreError),
}

/// Everything a request handler may touch.
#[derive(Debug)]
pub struct Broker {
    pub config: BrokerConfig,
    pub topics: TopicRegistry,
    pub groups: Arc<GroupCoordinator>,
    pub producer_ids: ProducerIds,
    pub metrics: Metrics,
    /// Degraded conditions (disk full, read-only logs) for logs, `/healthz` and `/metrics`.
    pub health: Health,
    /// A random id generated once per data directory, like Kafka's `cluster.id`.
    pub cluster_id: String,
    /// SASL users (SCRAM credentials), shared with `freshet users` through the data dir.
    pub users: Arc<UserStore>,
    /// The ACL authorizer, when `--authorizer acl` is on. Shared with the HTTP API of the
    /// same process, so REST requests are decided by the same ACLs.
    pub authorizer: Option<Arc<Authorizer>>,
    /// The transaction coordinator (FindCoordinator key type 1 names this broker).
    pub transactions: TxnCoordinator,
}

/// Traffic and fsync numbers of one partition.
#[derive(Debug, Clone)]
pub struct PartitionMetrics {
    pub topic: String,
    pub partition: i32,
    pub bytes_in: u64,
    pub records_in: u64,
    pub bytes_out: u64,
    pub records_out: u64,
    pub log: LogStats,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub size_bytes: u64,
}

impl Broker {
    /// Opens (or creates) the data directory, recovering every log. Needs a tokio runtime.
    pub fn open(config: BrokerConfig) -> Result<Arc<Broker>, StartError> {
        let dir = &config.data_dir;
        let data_dir_error = |e| StartError::DataDir(dir.display().to_string(), e);
        fs::create_dir_all(dir).map_err(data_dir_error)?;
        let cluster_id = load_or_create_cluster_id(dir).map_err(data_dir_error)?;
        let topics = TopicRegistry::open(dir, config.log_defaults.clone(), config.node_id)?;
        let groups = GroupCoordinator::open(&dir.join("groups"), config.coordinator.clone())
            .map_err(|e| StartError::Groups(e.to_string()))?;
        let producer_ids = ProducerIds::open(dir).map_err(data_dir_error)?;
        let max_timeout_ms =
            i32::try_from(config.transaction_max_timeout.as_millis()).unwrap_or(i32::MAX);
        let transactions = TxnCoordinator::open(dir, max_timeout_ms).map_err(data_dir_error)?;
        let health = Health::new(dir);
        let users = Arc::new(UserStore::open(dir)?);
        let authorizer = if config.acl_authorizer {
            let acls = AclStore::open(dir)?;
            Some(Arc::new(Authorizer::new(
                acls,
                config.super_users.iter().cloned(),
            )))
        } else {
            None
        };
        Ok(Arc::new(Broker {
            config,
            topics,
            groups,
            producer_ids,
            metrics: Metrics::default(),
            health,
            cluster_id,
            users,
            authorizer,
            transactions,
        }))
    }

    /// Counters of every partition.
    pub fn metrics_snapshot(&self) -> Vec<PartitionMetrics> {
        use std::sync::atomic::Ordering::Relaxed;
        self.topics
            .all()
            .iter()
            .flat_map(|topic| {
                topic.partitions.iter().map(|p| PartitionMetrics {
                    topic: topic.name.clone(),
                    partition: p.index,
                    bytes_in: p.counters.bytes_in.load(Relaxed),
                    records_in: p.counters.records_in.load(Relaxed),
                    bytes_out: p.counters.bytes_out.load(Relaxed),
                    records_out: p.counters.records_out.load(Relaxed),
                    log: p.log.stats(),
                    high_watermark: p.log.high_watermark(),
                    log_start_offset: p.log.log_start_offset(),
                    size_bytes: p.log.size_bytes(),
                })
            })
            .collect()
    }

    /// Runs retention and compaction on every partition once.
    pub fn clean_logs(&self) {
        let now = now_ms();
        for topic in self.topics.all() {
            for partition in &topic.partitions {
                let log = &partition.log;
                if let Err(e) = log.enforce_retention(now) {
                    self.report_log_error("retention", &topic.name, partition.index, log, &e);
                }
                if let Err(e) = log.compact(now) {
                    self.report_log_error("compaction", &topic.name, partition.index, log, &e);
                }
            }
        }
        // A log can turn read-only in a roll whose error no request reported (DeleteRecords):
        // the look at every log here logs it within one cleaning interval, scraped or not.
        self.health_report();
    }

    /// Flushes logs that run with `--flush-interval-ms` (relaxed durability).
    pub fn flush_interval_logs(&self) {
        for topic in self.topics.all() {
            for partition in &topic.partitions {
                if matches!(partition.log.config().durability, Durability::Interval(_)) {
                    if let Err(e) = partition.log.flush() {
                        let (topic, index) = (&topic.name, partition.index);
                        self.report_log_error("flush", topic, index, &partition.log, &e);
                    }
                }
            }
        }
    }

    /// Logs a failed log operation (`what`: "produce", "compaction", ...) and records what it
    /// says about the disk. An error a degraded condition explains (disk full, a read-only
    /// log) was logged once at ERROR when the condition began and goes to DEBUG here, so a
    /// full disk under load is one ERROR line, not one per request or cleaning pass.
    pub fn report_log_error(
        &self,
        what: &str,
        topic: &str,
        partition: i32,
        log: &PartitionLog,
        error: &LogError,
    ) {
        let place = format!("{what} on {topic}-{partition}");
        let poisoned = self.health.note_partition(topic, partition, log.poisoned());
        let explained = self.health.note_log_error(&place, error) || poisoned;
        if explained {
            tracing::debug!(%topic, partition, %error, "{what} failed");
        } else {
            tracing::error!(%topic, partition, %error, "{what} failed");
        }
    }

    /// The degraded conditions in effect now, after a look at every partition's log (a log
    /// can turn read-only in a roll that no request reported).
    pub fn health_report(&self) -> Vec<Condition> {
        let poisoned = self.topics.all().into_iter().flat_map(|topic| {
            topic
                .partitions
                .iter()
                .filter_map(|p| Some(((topic.name.clone(), p.index), p.log.poisoned()?)))
                .collect::<Vec<_>>()
        });
        self.health.refresh_poisoned(poisoned);
        self.health.conditions()
    }

    /// CreateTopics: validated in full first (a bad name or an existing topic is answered as
    /// such whatever the disk), then refused with KAFKA_STORAGE_ERROR while the disk is full.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: TopicConfigs,
    ) -> Result<Arc<Topic>, TopicError> {
        self.topics.validate_new_topic(name, partitions, &configs)?;
        self.health.check_disk_space()?;
        self.topics
            .create(name, partitions, configs)
            .inspect_err(|e| self.report_topic_error("creating topic", name, e))
    }

    /// A topic a client asked for (Metadata with auto-creation allowed): the existing one, or
    /// a new one with the default partition count when the name is valid and the disk has
    /// room.
    pub fn auto_create_topic(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        if let Some(topic) = self.topics.get(name) {
            return Ok(topic);
        }
        validate_topic_name(name)?;
        self.health.check_disk_space()?;
        self.topics
            .get_or_create(name, self.config.default_partitions)
            .inspect_err(|e| self.report_topic_error("auto-creating topic", name, e))
    }

    /// CreatePartitions, refused like creation while the disk is full.
    pub fn add_partitions(&self, name: &str, count: i32) -> Result<Arc<Topic>, TopicError> {
        self.health.check_disk_space()?;
        self.topics
            .add_partitions(name, count)
            .inspect_err(|e| self.report_topic_error("adding partitions to", name, e))
    }

    fn report_topic_error(&self, what: &str, name: &str, error: &TopicError) {
        if matches!(error, TopicError::Io(_) | TopicError::Log(_)) {
            let explained = self
                .health
                .note_topic_error(&format!("{what} {name}"), error);
            if !explained {
                tracing::error!(topic = %name, %error, "{what} failed");
            }
        }
    }

    /// Clean shutdown of groups and logs.
    pub async fn close(&self) {
        self.groups.close().await;
        self.topics.close();
    }
}

pub(crate) use freshet_os::clock::now_ms;

fn load_or_create_cluster_id(dir: &std::path::Path) -> io::Result<String> {
    let path = dir.join("cluster-id");
    match fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        Ok(_) | Err(_) => {
            let id = uuid::Uuid::new_v4().simple().to_string();
            write_atomically(&path, id.as_bytes())?;
            Ok(id)
        }
    }
}
