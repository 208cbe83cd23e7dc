//! Partition sizes on disk, from DescribeLogDirs (API key 35) asked of each partition's
//! leader over [`wire`](super::wire).
//!
//! Sizes are extra information: a broker that lacks the API, cannot be reached or fails
//! leaves its partitions without a size, and the caller reports them as unknown.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::task::JoinSet;

use super::wire::{Connection, WireError};
use crate::KafkaConfig;

/// The partitions of one topic a broker leads, and where it listens.
#[derive(Debug, Clone)]
pub(crate) struct LeaderPartitions {
    /// `host:port` from the cluster metadata.
    pub(crate) address: String,
    pub(crate) partitions: Vec<i32>,
}

/// Bytes on disk of each partition of `topic` whose leader answered, asking all leaders at
/// once; the whole exchange with each leader takes at most `timeout`.
pub(crate) async fn partition_sizes(
    topic: &str,
    leaders: Vec<LeaderPartitions>,
    kafka: &KafkaConfig,
    timeout: Duration,
) -> BTreeMap<i32, u64> {
    let mut asking = JoinSet::new();
    for leader in leaders {
        let (topic, kafka) = (topic.to_string(), kafka.clone());
        asking.spawn(async move {
            let asked = leader_sizes(&topic, &leader, &kafka, timeout);
            let sizes = tokio::time::timeout(timeout, asked)
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
            (leader.address, sizes)
        });
    }
    let mut sizes = BTreeMap::new();
    while let Some(answer) = asking.join_next().await {
        match answer {
            Ok((_, Ok(found))) => sizes.extend(found),
            Ok((address, Err(reason))) => {
                tracing::debug!(%address, topic, %reason, "no partition sizes from this broker");
            }
            Err(e) => tracing::warn!(error = %e, "asking for partition sizes failed"),
        }
    }
    sizes
}

async fn leader_sizes(
    topic: &str,
    leader: &LeaderPartitions,
    kafka: &KafkaConfig,
    timeout: Duration,
) -> Result<BTreeMap<i32, u64>, WireError> {
    let mut connection = Connection::open(&leader.address, kafka, timeout).await?;
    let request =
        DescribeLogDirsRequest::default()
            .with_topics(Some(vec![DescribableLogDirTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(leader.partitions.clone())]));
    let (_, response) = connection.call(&request, timeout).await?;
    sizes_in(&response, topic, &leader.partitions)
}

/// The sizes `response` reports for the `wanted` partitions of `topic`, summed over log
/// directories (a partition lives in one; a future replica being moved is not counted).
fn sizes_in(
    response: &DescribeLogDirsResponse,
    topic: &str,
    wanted: &[i32],
) -> Result<BTreeMap<i32, u64>, WireError> {
    if response.error_code != 0 {
        return Err(format!("DescribeLogDirs error {}", response.error_code));
    }
    let mut sizes = BTreeMap::new();
    let reported = response
        .results
        .iter()
        .filter(|dir| dir.error_code == 0)
        .flat_map(|dir| &dir.topics)
        .filter(|t| t.name.as_str() == topic)
        .flat_map(|t| &t.partitions)
        .filter(|p| !p.is_future_key && wanted.contains(&p.partition_index));
    for partition in reported {
        if let Ok(size) = u64::try_from(partition.partition_size) {
            *sizes.entry(partition.partition_index).or_insert(0) += size;
        }
    }
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::describe_log_dirs_response::{
        DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
    };

    use super::*;

    fn partition(index: i32, size: i64, future: bool) -> DescribeLogDirsPartition {
        DescribeLogDirsPartition::default()
            .with_partition_index(index)
            .with_partition_size(size)
            .with_is_future_key(future)
    }

    fn dir(
        error_code: i16,
        topic: &str,
        partitions: Vec<DescribeLogDirsPartition>,
    ) -> DescribeLogDirsResult {
        DescribeLogDirsResult::default()
            .with_error_code(error_code)
            .with_topics(vec![DescribeLogDirsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(partitions)])
    }

    #[test]
    fn sizes_keep_wanted_partitions_of_healthy_dirs_and_skip_future_replicas() {
        let response = DescribeLogDirsResponse::default().with_results(vec![
            dir(
                0,
                "t",
                vec![partition(0, 100, false), partition(1, 7, true)],
            ),
            dir(
                0,
                "t",
                vec![partition(1, 50, false), partition(2, 9, false)],
            ),
            dir(0, "other", vec![partition(0, 1000, false)]),
            // A failed log dir (KAFKA_STORAGE_ERROR) says nothing reliable.
            dir(56, "t", vec![partition(0, 1, false)]),
        ]);
        let sizes = sizes_in(&response, "t", &[0, 1]).expect("no top-level error");
        assert_eq!(sizes, BTreeMap::from([(0, 100), (1, 50)]));
    }

    #[test]
    fn a_top_level_error_is_a_failure() {
        let response = DescribeLogDirsResponse::default().with_error_code(29);
        assert!(sizes_in(&response, "t", &[0]).is_err());
    }
}
