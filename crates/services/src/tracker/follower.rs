//! The follower: reads the checkpoint topic from the beginning and applies every record to the
//! node's state, so each node knows every partition's sets and newest checkpoint. It also
//! asks the cluster for the input topic's partition count and the consumer lag.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::checkpoint::{decode_with, key_partition, ChunkHeader, Claim, Record};
use super::state::{CheckpointMeta, NodeHeartbeat, NodeState, SetKind};
use super::{Shared, TrackerError};
use crate::error::full_message;
use crate::kafka::CreateClient;
use crate::KafkaConfig;

/// How often partition count and lag are asked from the cluster.
const STATUS_EVERY: Duration = Duration::from_secs(2);

pub(super) struct Follower {
    shared: Arc<Shared>,
    consumer: BaseConsumer,
}

impl Follower {
    pub(super) fn new(kafka: &KafkaConfig, shared: Arc<Shared>) -> Result<Self, TrackerError> {
        // librdkafka needs a group id even for manual assignment; this one never joins or
        // commits, so it leaves no trace on the cluster.
        let group = format!("{}-follower", shared.config.group);
        let consumer: BaseConsumer = kafka
            .reader_config("tracker-follower", &group)
            .set("fetch.wait.max.ms", "100")
            // State records are at most 1 MB: librdkafka's default 64 MiB of prefetch only
            // held the node's own snapshots in memory a while longer.
            .set("queued.max.messages.kbytes", "8192")
            .set("fetch.max.bytes", (8 << 20).to_string())
            .create_client()?;
        let topic = &shared.checkpoint_topic;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, 0, Offset::Beginning)
            .and_then(|()| consumer.assign(&assignment))
            .map_err(TrackerError::kafka(format!("assigning {topic}")))?;
        Ok(Follower { shared, consumer })
    }

    pub(super) fn run(self) {
        let mut last_status = Instant::now() - STATUS_EVERY;
        while !self.shared.stopping.load(Ordering::SeqCst)
            || self.shared.workers_running.load(Ordering::SeqCst) > 0
        {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    self.apply(message.key().unwrap_or_default(), message.payload());
                    self.shared
                        .follower_position
                        .store(message.offset() + 1, Ordering::SeqCst);
                }
                Some(Err(e)) => tracing::warn!(error = %e, "reading checkpoints"),
                None => {}
            }
            if last_status.elapsed() >= STATUS_EVERY {
                self.refresh_status();
                last_status = Instant::now();
            }
        }
    }

    fn apply(&self, key: &[u8], value: Option<&[u8]>) {
        // A chunk this node wrote for a partition it counts now holds addresses its sets
        // have (`apply_record` skips them): not decoding them spared 3% of a busy node's
        // time. The partition may be revoked before `apply_record` runs; its sets stay.
        let decoded = decode_with(key, value, |header| !self.is_own_live(header));
        let mut state = self.shared.state();
        track_stored(&mut state, key, value);
        match decoded {
            Ok(Some(record)) => apply_record(&mut state, record, &self.shared),
            Ok(None) => {}
            // A record this node cannot read is skipped, not fatal: its IPs are still counted
            // by the node that wrote it, and the next checkpoint of the partition moves on.
            Err(e) => tracing::error!(
                error = %full_message(&e),
                "skipping an unreadable checkpoint record"
            ),
        }
    }

    /// Whether `header` is of a chunk this node wrote for a partition it counts now.
    fn is_own_live(&self, header: &ChunkHeader) -> bool {
        header.node == self.shared.node_id && is_live(&self.shared.state(), header.partition)
    }

    /// Partition count of the input topic and the lag of the owned partitions.
    fn refresh_status(&self) {
        let input = &self.shared.config.input_topic;
        let timeout = Duration::from_secs(1);
        if let Ok(metadata) = self.consumer.fetch_metadata(Some(input), timeout) {
            if let Some(topic) = metadata.topics().iter().find(|t| t.name() == input) {
                self.shared.state().partitions_total = topic.partitions().len() as u32;
            }
        }
        let owned: Vec<(i32, i64)> = {
            let state = self.shared.state();
            state
                .partitions
                .iter()
                .filter_map(|(id, p)| p.live.map(|live| (*id, live.next_offset)))
                .collect()
        };
        let mut lag = 0;
        for (partition, next) in owned {
            match self.consumer.fetch_watermarks(input, partition, timeout) {
                Ok((_, high)) => lag += (high - next).max(0),
                Err(_) => {
                    self.shared.lag.store(-1, Ordering::SeqCst);
                    return;
                }
            }
        }
        self.shared.lag.store(lag, Ordering::SeqCst);
    }
}

/// Keeps the partition's list of stored keys up to date, whatever the record holds (one this
/// version cannot read is superseded by the next snapshot all the same).
fn track_stored(state: &mut NodeState, key: &[u8], value: Option<&[u8]>) {
    let Some(id) = key_partition(key) else {
        return;
    };
    let key = String::from_utf8_lossy(key).into_owned();
    let stored = &mut state.partition(id).stored;
    match value {
        Some(value) => {
            stored.insert(key.clone(), (key.len() + value.len()) as u64);
        }
        None => {
            stored.remove(&key);
        }
    }
}

fn apply_record(state: &mut NodeState, record: Record, shared: &Shared) {
    match record {
        Record::Chunk { header, sections } => {
            if !follow_claim(state, &header, shared) {
                return;
            }
            let own_live = header.node == shared.node_id && is_live(state, header.partition);
            // This node's own checkpoint of a partition it still owns is already in its sets.
            if !own_live {
                for (kind, set) in &sections {
                    if *kind == SetKind::All || shared.config.views {
                        state.apply_section(header.partition, *kind, set);
                    }
                }
                // Shrunk by the worker's checkpoint tick, which sees every partition.
                state.retain_windows(header.partition, shared.config.window_limits);
            }
            let partition = state.partition(header.partition);
            let newer = partition.checkpoint.as_ref().is_none_or(|meta| {
                let claim = Claim {
                    epoch: meta.epoch,
                    node: meta.node.clone(),
                };
                match header.claim_cmp(&claim) {
                    std::cmp::Ordering::Greater => true,
                    std::cmp::Ordering::Equal => header.offset >= meta.offset,
                    std::cmp::Ordering::Less => false,
                }
            });
            if header.is_final && newer {
                partition.checkpoint = Some(CheckpointMeta {
                    offset: header.offset,
                    events: header.events,
                    rejected: header.rejected,
                    epoch: header.epoch,
                    node: header.node.clone(),
                    written_at_ms: header.written_at_ms,
                });
            }
            state.newest_checkpoint_ms = state.newest_checkpoint_ms.max(Some(header.written_at_ms));
        }
        Record::Heartbeat {
            node,
            partitions,
            written_at_ms,
        } => {
            // A node writes its heartbeat after its checkpoints, in the same flush: it says
            // every partition it owns is checkpointed as of then, so an idle node's
            // checkpoint age stays at most one interval.
            state.newest_checkpoint_ms = state.newest_checkpoint_ms.max(Some(written_at_ms));
            state.nodes.insert(
                node,
                NodeHeartbeat {
                    partitions,
                    written_at_ms,
                },
            );
        }
        Record::NodeLeft { node } => {
            state.nodes.remove(&node);
        }
    }
}

fn is_live(state: &NodeState, partition: i32) -> bool {
    state
        .partitions
        .get(&partition)
        .is_some_and(|p| p.live.is_some())
}

/// Applies the fencing rule: false for a record written under a lower claim than the
/// partition's highest (a zombie's, or one superseded by a newer owner). A higher claim by
/// another node fences this node if it still owns the partition: it stops counting it.
fn follow_claim(state: &mut NodeState, header: &ChunkHeader, shared: &Shared) -> bool {
    let partition = state.partition(header.partition);
    let ordering = partition
        .claim
        .as_ref()
        .map(|claim| header.claim_cmp(claim));
    match ordering {
        Some(std::cmp::Ordering::Less) => {
            tracing::debug!(
                partition = header.partition,
                writer = %header.node,
                epoch = header.epoch,
                "ignoring a checkpoint written under a superseded claim"
            );
            return false;
        }
        Some(std::cmp::Ordering::Equal) => return true,
        Some(std::cmp::Ordering::Greater) | None => {}
    }
    partition.claim = Some(header.claim());
    if header.node != shared.node_id && partition.live.take().is_some() {
        tracing::warn!(
            partition = header.partition,
            owner = %header.node,
            epoch = header.epoch,
            "another node claimed a partition this node still counted; it stops counting it"
        );
        state.recount_node();
    }
    true
}
