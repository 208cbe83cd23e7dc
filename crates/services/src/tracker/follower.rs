//! The follower: reads the checkpoint topic from the beginning and applies every record to the
//! node's state, so each node knows every partition's sets and newest checkpoint. It also
//! asks the cluster for the input topic's partition count and the consumer lag.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::checkpoint::{decode, Record};
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
            .client_config("tracker-follower")
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "100")
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
            || self.shared.worker_running.load(Ordering::SeqCst)
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
        match decode(key, value) {
            Ok(Some(record)) => {
                let mut state = self.shared.state();
                apply_record(&mut state, record, &self.shared);
            }
            Ok(None) => {}
            // A record this node cannot read is skipped, not fatal: its IPs are still counted
            // by the node that wrote it, and the next checkpoint of the partition moves on.
            Err(e) => tracing::error!(
                error = %full_message(&e),
                "skipping an unreadable checkpoint record"
            ),
        }
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

fn apply_record(state: &mut NodeState, record: Record, shared: &Shared) {
    match record {
        Record::Delta { header, sections } => {
            let own_live = header.node == shared.node_id
                && state
                    .partitions
                    .get(&header.partition)
                    .is_some_and(|p| p.live.is_some());
            // This node's own delta for a partition it still owns is already in its sets.
            if !own_live {
                for (kind, set) in &sections {
                    if *kind == SetKind::All || shared.config.views {
                        state.apply_section(header.partition, *kind, set);
                    }
                }
                let partition = state.partition(header.partition);
                // Shrunk by the worker's checkpoint tick, which sees every partition.
                partition.sets.retain_windows(shared.config.window_limits);
            }
            let partition = state.partition(header.partition);
            let newer = partition
                .checkpoint
                .as_ref()
                .is_none_or(|meta| header.offset >= meta.offset);
            if header.is_final && newer {
                partition.checkpoint = Some(CheckpointMeta {
                    offset: header.offset,
                    events: header.events,
                    rejected: header.rejected,
                    seq: header.seq,
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
