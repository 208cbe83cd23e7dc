//! Tracker nodes: count distinct device IPs exactly, per node and globally, across crashes and
//! rebalances.
//!
//! # How a node works
//!
//! - A **worker** thread (`worker`) is a member of one consumer group on the input topic
//!   (`device-events`). It validates each event ([`crate::event::parse_event`]), sends
//!   rejected ones to the dead-letter topic with the reason in a header, and adds valid ones to
//!   its partition's exact set of addresses ([`state::Addresses`]), each tagged with the views
//!   it is in: its minutes and hours of event time, its error codes ([`membership`]).
//! - Every checkpoint interval (and when it loses partitions or stops) the worker writes each
//!   owned partition's **delta** (IPs new to a set since its last checkpoint) together with the
//!   input offset it covers to the compacted state topic ([`checkpoint`]), after the
//!   dead-letter records before that offset are acknowledged. Once a partition's deltas
//!   outweigh its last **snapshot**, it writes a new snapshot (all its sets) instead and then
//!   tombstones every older record of the partition, so the topic stays at about two
//!   snapshots of the live state however long the node runs.
//! - A **follower** thread (`follower`) reads the state topic from the beginning and
//!   keeps applying it, so every node holds every partition's sets: the global count is the
//!   exact union over partitions, and a node that gains a partition in a rebalance resumes
//!   from the newest checkpoint's offset and counters, without re-reading the input. Its
//!   start-up reads the live state, not the history.
//! - A node that gains a partition claims it with a higher epoch; records of lower claims are
//!   ignored, so a node paused past its session timeout that wakes up and writes (a zombie)
//!   cannot move a partition's checkpoint back, and stops counting the partition as soon as
//!   it reads the new owner's claim.
//! - The worker also keeps this process's own tallies for monitoring ([`stats`]): events
//!   counted and rejected, checkpoints written, the recent event rate.
//! - A partition the consumer is stuck on because its next batch cannot be read (librdkafka
//!   reports nothing, see `stalls`) is stepped past after a few seconds: the batch becomes one
//!   dead-letter record with the reason and the offsets it covers.
//!
//! Sets only grow by union, so replaying events or applying a checkpoint twice never counts an
//! IP twice; counters come from the checkpoint that matches the offset resumed from.

pub mod checkpoint;
mod error;
mod follower;
pub mod membership;
mod stalls;
pub mod state;
pub mod stats;
pub mod view;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use freshet_os::clock::now_ms;
use freshet_timestamp::NormalizedTs;

use crate::event::{DEVICE_EVENTS, DEVICE_EVENTS_DLQ};
use crate::kafka::TopicSpec;
use crate::KafkaConfig;
pub use error::TrackerError;
pub use state::WindowLimits;
use state::{NodeState, SetKind};
use stats::{TrackerMetrics, WorkCounters};
use view::{ErrorCodeCount, Granularity, PartitionStatus, UniqueIps, WindowCount};
pub use worker::input_consumer_config;

/// How a tracker node runs.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// Topic of device events.
    pub input_topic: String,
    /// Partitions the input topic is created with when it does not exist.
    pub input_partitions: i32,
    /// Where rejected events go.
    pub dlq_topic: String,
    /// Consumer group shared by the tracker nodes.
    pub group: String,
    /// How often owned partitions are checkpointed.
    pub checkpoint_interval: Duration,
    /// How long the group waits for a silent node before giving its partitions to others.
    pub session_timeout: Duration,
    /// Keep the per-window and per-error-code sets (more memory) or only the overall set.
    pub views: bool,
    pub window_limits: WindowLimits,
    /// This node's id; a random UUID when not given.
    pub node_id: Option<String>,
    /// Worker threads, each a consumer-group member counting the partitions the group gives
    /// it, so a node that owns several partitions counts them on several cores.
    pub workers: usize,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            input_topic: DEVICE_EVENTS.into(),
            input_partitions: 3,
            dlq_topic: DEVICE_EVENTS_DLQ.into(),
            group: "freshet-tracker".into(),
            checkpoint_interval: Duration::from_secs(1),
            session_timeout: Duration::from_secs(10),
            views: true,
            window_limits: WindowLimits::default(),
            node_id: None,
            workers: default_workers(),
        }
    }
}

/// Most worker threads a node runs.
pub const MAX_WORKERS: usize = 64;

/// One worker per core (at most [`MAX_WORKERS`]), so a node that owns several partitions
/// counts them on every core. The node's prefetch stays 32 MiB whatever the count (see
/// [`input_consumer_config`]). Faster still is one worker per partition the node owns: on
/// the 2-core machine of docs/BENCHMARKS.md, three workers on three partitions counted
/// 1.3-1.6 times as fast as one, two workers 1.1-1.3 (the one with two partitions counts
/// alone at the end).
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(MAX_WORKERS)
}

impl TrackerConfig {
    /// The compacted topic holding the checkpoints of this group's count of this input
    /// topic: `freshet.tracker.<group>.<input topic>`. State belongs to the group, so a
    /// second group on the same topic counts from scratch. Characters a topic name cannot
    /// have become `_`.
    pub fn checkpoint_topic(&self) -> String {
        let name = format!("freshet.tracker.{}.{}", self.group, self.input_topic);
        let clean: String = name
            .chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => c,
                _ => '_',
            })
            .collect();
        clean.chars().take(249).collect()
    }
}

/// State shared by the worker, the follower and the handles.
#[derive(Debug)]
struct Shared {
    node_id: String,
    config: TrackerConfig,
    checkpoint_topic: String,
    state: Mutex<NodeState>,
    /// Next checkpoint-topic offset the follower will apply.
    follower_position: AtomicI64,
    /// Records not yet consumed in owned partitions; -1 when unknown.
    lag: AtomicI64,
    /// Set to stop the threads.
    stopping: AtomicBool,
    /// Workers still running (none once all stopped, cleanly or not).
    workers_running: AtomicUsize,
    /// This node's own tallies, for monitoring.
    work: WorkCounters,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, NodeState> {
        // A panic while holding the lock leaves sets that only ever grew: still valid.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running tracker node.
#[derive(Debug)]
pub struct Tracker {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Tracker {
    /// Creates the topics the tracker needs (if missing) and starts the worker and follower.
    pub async fn start(
        kafka: &KafkaConfig,
        config: TrackerConfig,
    ) -> Result<Tracker, TrackerError> {
        let checkpoint_topic = config.checkpoint_topic();
        ensure_topics(kafka, &config, &checkpoint_topic).await?;
        let node_id = config
            .node_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let views = config.views;
        let shared = Arc::new(Shared {
            node_id,
            config,
            checkpoint_topic,
            state: Mutex::new(NodeState::new(views)),
            follower_position: AtomicI64::new(0),
            lag: AtomicI64::new(-1),
            stopping: AtomicBool::new(false),
            workers_running: AtomicUsize::new(0),
            work: WorkCounters::default(),
        });
        let follower = follower::Follower::new(kafka, shared.clone())?;
        let workers = (0..shared.config.workers.max(1))
            .map(|index| worker::Worker::new(kafka, shared.clone(), index))
            .collect::<Result<Vec<_>, _>>()?;
        shared
            .workers_running
            .store(workers.len(), Ordering::SeqCst);
        let mut threads = vec![spawn_named("tracker-follower".into(), move || {
            follower.run()
        })?];
        for worker in workers {
            let name = format!("tracker-worker-{}", worker.index());
            threads.push(spawn_named(name, move || worker.run())?);
        }
        tracing::info!(node = %shared.node_id, group = %shared.config.group, "tracker node started");
        Ok(Tracker { shared, threads })
    }

    pub fn handle(&self) -> TrackerHandle {
        TrackerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Writes a last checkpoint, leaves the group and waits for the threads. Blocking.
    pub fn shutdown(self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for thread in self.threads {
            if thread.join().is_err() {
                tracing::error!("a tracker thread panicked");
            }
        }
    }
}

fn spawn_named(
    name: String,
    f: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, TrackerError> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .map_err(|source| TrackerError::Thread {
            thread: name,
            source,
        })
}

/// The state topic is compacted, and its segments stay small enough for compaction to reach
/// them: Kafka never compacts the active segment, so with the default 1 GiB segments a state
/// of a few MB would keep up to 1 GiB of superseded records. Superseded records get
/// tombstones, kept 10 minutes (a node reading the topic meanwhile sees them).
const STATE_TOPIC_CONFIGS: &[(&str, &str)] = &[
    ("cleanup.policy", "compact"),
    ("segment.bytes", "16777216"),
    ("segment.ms", "600000"),
    ("delete.retention.ms", "600000"),
];

async fn ensure_topics(
    kafka: &KafkaConfig,
    config: &TrackerConfig,
    checkpoint_topic: &str,
) -> Result<(), TrackerError> {
    let specs = [
        TopicSpec {
            name: &config.input_topic,
            partitions: config.input_partitions,
            configs: &[],
        },
        TopicSpec {
            name: &config.dlq_topic,
            partitions: 1,
            configs: &[],
        },
        TopicSpec {
            name: checkpoint_topic,
            partitions: 1,
            configs: STATE_TOPIC_CONFIGS,
        },
    ];
    Ok(crate::kafka::ensure_topics(kafka, &specs).await?)
}

/// How long a node counts as seen after its last heartbeat.
fn node_seen_window(config: &TrackerConfig) -> Duration {
    config.checkpoint_interval * 3 + Duration::from_secs(5)
}

/// Read access to a tracker node, for the HTTP API. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TrackerHandle {
    shared: Arc<Shared>,
}

impl TrackerHandle {
    pub fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    pub fn group(&self) -> &str {
        &self.shared.config.group
    }

    /// Whether the node's consumer is running.
    pub fn is_active(&self) -> bool {
        self.shared.workers_running.load(Ordering::SeqCst) > 0
    }

    /// Exact distinct IPs across all partitions, as of the events and checkpoints applied.
    pub fn global_count(&self) -> u64 {
        self.shared.state().global
    }

    /// Exact distinct IPs in the partitions this node owns.
    pub fn node_count(&self) -> u64 {
        self.shared.state().node
    }

    pub fn unique_ips(&self) -> UniqueIps {
        let state = self.shared.state();
        let estimate = state.hll.estimate();
        let covered = state
            .partitions
            .values()
            .filter(|p| p.live.is_some() || p.checkpoint.is_some())
            .count() as u32;
        let lag = self.shared.lag.load(Ordering::SeqCst);
        UniqueIps {
            node_id: self.shared.node_id.clone(),
            group: self.shared.config.group.clone(),
            node_count: state.node,
            global_count: state.global,
            global_estimate: estimate,
            estimate_error_percent: error_percent(estimate, state.global),
            partitions_total: state.partitions_total.max(state.partitions.len() as u32),
            partitions_covered: covered,
            partitions_owned: state.owned(),
            nodes_seen: state.live_nodes(now_ms(), node_seen_window(&self.shared.config)),
            checkpoint_age_ms: state
                .newest_checkpoint_ms
                .map(|ms| (now_ms() - ms).max(0) as u64),
            consumer_lag: (lag >= 0).then_some(lag),
            events_counted: state.partitions.values().map(|p| p.events()).sum(),
            events_rejected: state.partitions.values().map(|p| p.rejected()).sum(),
        }
    }

    /// This node's numbers for monitoring. Cheap: a short hold of the state lock for the
    /// counts it keeps up to date anyway.
    pub fn metrics(&self) -> TrackerMetrics {
        let (distinct_ips_node, distinct_ips_global, partitions_owned) = {
            let state = self.shared.state();
            (state.node, state.global, state.owned().len() as u64)
        };
        let lag = self.shared.lag.load(Ordering::SeqCst);
        let work = &self.shared.work;
        TrackerMetrics {
            node_id: self.shared.node_id.clone(),
            group: self.shared.config.group.clone(),
            running: self.is_active(),
            events_counted: work.counted(),
            events_rejected: work.rejected(),
            events_per_second: work.events_per_second(std::time::Instant::now()),
            checkpoints_written: work.checkpoints(),
            consumer_lag: (lag >= 0).then_some(lag),
            distinct_ips_node,
            distinct_ips_global,
            partitions_owned,
        }
    }

    /// Distinct IPs per event-time window, newest first, at most `limit` windows.
    pub fn windows(&self, granularity: Granularity, limit: usize) -> Vec<WindowCount> {
        let state = self.shared.state();
        let present = state.views_present();
        let (starts, kind): (_, fn(i64) -> SetKind) = match granularity {
            Granularity::Minute => (present.minutes, SetKind::Minute),
            Granularity::Hour => (present.hours, SetKind::Hour),
        };
        starts
            .into_iter()
            .rev()
            .take(limit)
            .map(|start_ms| WindowCount {
                start: format_ms(start_ms),
                start_ms,
                distinct_ips: state.view_count(kind(start_ms)),
            })
            .collect()
    }

    /// Distinct IPs per error code, for the codes seen.
    pub fn error_codes(&self) -> Vec<ErrorCodeCount> {
        let state = self.shared.state();
        state
            .views_present()
            .codes
            .into_iter()
            .map(|code| ErrorCodeCount {
                error_code: code,
                distinct_ips: state.view_count(SetKind::Code(code)),
            })
            .collect()
    }

    pub fn partitions(&self) -> Vec<PartitionStatus> {
        let state = self.shared.state();
        state
            .partitions
            .iter()
            .map(|(id, p)| PartitionStatus {
                partition: *id,
                owned: p.live.is_some(),
                distinct_ips: p.addresses.len(),
                checkpoint_offset: p.checkpoint.as_ref().map(|c| c.offset),
                checkpoint_node: p.checkpoint.as_ref().map(|c| c.node.clone()),
                resumed_from: p.resumed_from,
                events: p.events(),
                rejected: p.rejected(),
                state_bytes: p.stored_bytes(),
                snapshot_bytes: p.serialized_size(&state.memberships),
                checkpoint_epoch: p.checkpoint.as_ref().map(|c| c.epoch),
            })
            .collect()
    }
}

fn error_percent(estimate: u64, exact: u64) -> f64 {
    if exact == 0 {
        return 0.0;
    }
    (estimate as f64 - exact as f64) / exact as f64 * 100.0
}

/// A window start as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn format_ms(ms: i64) -> String {
    NormalizedTs::from_unix_millis(ms)
        .map(|ts| ts.as_str().to_string())
        .unwrap_or_else(|| ms.to_string())
}
