//! DescribeLogDirs: the bytes each partition's log takes on disk (Describe on the cluster).
//!
//! This broker has one log directory (`<data>/topics`), so the answer is one result holding
//! every requested partition that exists; unknown topics and partitions are left out, as
//! Kafka does. Volume totals (v4) are not measured and stay at Kafka's "unknown" (-1).

use freshet_security::acl::Operation;
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::ResponseError;

use super::{str_bytes, RequestContext};
use crate::topics::Topic;

pub async fn handle(
    ctx: &RequestContext,
    request: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    if !ctx.may_on_cluster(Operation::Describe) {
        // v0-2 have no error field: Kafka answers them with no result at all.
        let mut response = DescribeLogDirsResponse::default();
        if ctx.version >= 3 {
            response.error_code = ResponseError::ClusterAuthorizationFailed.code();
        }
        return response;
    }
    let topics = match request.topics {
        // Null asks for every partition of every topic.
        None => ctx
            .broker
            .topics
            .all()
            .iter()
            .map(|topic| described(topic, None))
            .collect(),
        Some(wanted) => wanted
            .iter()
            .filter_map(|wanted| requested(ctx, wanted))
            .collect(),
    };
    let log_dir = ctx.broker.config.data_dir.join("topics");
    let result = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(log_dir.display().to_string()))
        .with_topics(topics);
    DescribeLogDirsResponse::default().with_results(vec![result])
}

/// The requested partitions of one topic that exist, or nothing for an unknown topic.
fn requested(
    ctx: &RequestContext,
    wanted: &DescribableLogDirTopic,
) -> Option<DescribeLogDirsTopic> {
    let topic = ctx.broker.topics.get(&wanted.topic)?;
    Some(described(&topic, Some(&wanted.partitions)))
}

/// `partitions = None` means all of the topic's partitions.
fn described(topic: &Topic, partitions: Option<&[i32]>) -> DescribeLogDirsTopic {
    let sizes = topic
        .partitions
        .iter()
        .filter(|p| partitions.is_none_or(|wanted| wanted.contains(&p.index)))
        .map(|p| {
            DescribeLogDirsPartition::default()
                .with_partition_index(p.index)
                .with_partition_size(i64::try_from(p.log.size_bytes()).unwrap_or(i64::MAX))
        })
        .collect();
    DescribeLogDirsTopic::default()
        .with_name(TopicName(str_bytes(topic.name.clone())))
        .with_partitions(sizes)
}
