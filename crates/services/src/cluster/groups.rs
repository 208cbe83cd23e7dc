//! Consumer groups: who is in them (ListGroups and DescribeGroups, through rdkafka's group
//! list), what each member is assigned (decoded from the `consumer` protocol bytes), and how
//! far behind their committed offsets are.
//!
//! rdkafka has no ListConsumerGroupOffsets, so committed offsets are read by a consumer
//! configured with the group's id that never subscribes (and so never joins the group or
//! disturbs its members): it asks for the committed offsets (OffsetFetch) of the partitions
//! of every non-internal topic and of every topic a member is assigned, and keeps those that
//! have one.

use std::collections::{BTreeSet, HashMap};

use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::{Decodable, Message};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::groups::{GroupInfo, GroupMemberInfo};
use rdkafka::{Offset, TopicPartitionList};

use super::view::{
    GroupDescription, GroupList, GroupMember, GroupOffset, GroupSummary, MemberAssignment,
};
use super::{is_internal_topic, Cluster, ClusterError, REQUEST_TIMEOUT};
use crate::error::full_message;

/// The state DescribeGroups reports for a group that does not exist.
pub(super) const DEAD: &str = "Dead";

/// The protocol type of Kafka consumers, whose assignments this module can decode.
const CONSUMER_PROTOCOL: &str = "consumer";

/// Latest offsets already asked for, so that groups sharing topics ask once.
type LatestOffsets = HashMap<(String, i32), i64>;

/// Every topic of the cluster with its partitions.
type TopicPartitions = Vec<(String, Vec<i32>)>;

impl Cluster {
    /// Every group the cluster knows, by id, with its members and total lag.
    pub async fn list_groups(&self) -> Result<GroupList, ClusterError> {
        self.blocking(|cluster| {
            let listed = cluster
                .inner
                .metadata
                .fetch_group_list(None, REQUEST_TIMEOUT)?;
            let mut groups: Vec<GroupSummary> = listed
                .groups()
                .iter()
                .filter(|group| group.state() != DEAD)
                .map(summary)
                .collect();
            groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
            let topics = cluster.topic_partitions()?;
            let mut latest = LatestOffsets::new();
            for group in &mut groups {
                // The list is useful without a lag; one group's failure leaves its lag unknown.
                group.lag = match cluster.group_offsets(group, &topics, &mut latest) {
                    Ok(offsets) => total_lag(&offsets),
                    Err(error) => {
                        let error = full_message(&error);
                        tracing::debug!(%error, group = %group.group_id, "no lag for this group");
                        None
                    }
                };
            }
            Ok(GroupList { groups })
        })
        .await
    }

    /// One group with its members and committed offsets; `NotFound` when the cluster does
    /// not know it.
    pub async fn describe_group(&self, group_id: &str) -> Result<GroupDescription, ClusterError> {
        validate_group_id(group_id)?;
        let group_id = group_id.to_string();
        self.blocking(move |cluster| {
            let listed = cluster
                .inner
                .metadata
                .fetch_group_list(Some(&group_id), REQUEST_TIMEOUT)?;
            let mut group = listed
                .groups()
                .iter()
                .find(|group| group.name() == group_id && group.state() != DEAD)
                .map(summary)
                .ok_or_else(|| ClusterError::NotFound(format!("no consumer group {group_id:?}")))?;
            let topics = cluster.topic_partitions()?;
            let offsets = cluster.group_offsets(&group, &topics, &mut LatestOffsets::new())?;
            group.lag = total_lag(&offsets);
            Ok(GroupDescription { group, offsets })
        })
        .await
    }

    /// The group's committed offsets with their lag, by topic and partition. Blocks.
    fn group_offsets(
        &self,
        group: &GroupSummary,
        topics: &TopicPartitions,
        latest: &mut LatestOffsets,
    ) -> Result<Vec<GroupOffset>, ClusterError> {
        let partitions = offset_candidates(group, topics);
        if partitions.count() == 0 {
            return Ok(Vec::new());
        }
        let committed = self
            .offsets_client(&group.group_id, "group-offsets")?
            .committed_offsets(partitions, REQUEST_TIMEOUT)?;
        let mut offsets = Vec::new();
        for element in committed.elements() {
            let Offset::Offset(committed_offset) = element.offset() else {
                continue;
            };
            let key = (element.topic().to_string(), element.partition());
            let latest_offset = match latest.get(&key) {
                Some(offset) => *offset,
                None => {
                    let (_, offset) = self.watermarks(&key.0, key.1)?;
                    latest.insert(key, offset);
                    offset
                }
            };
            offsets.push(GroupOffset {
                topic: element.topic().to_string(),
                partition: element.partition(),
                committed_offset,
                latest_offset,
                lag: (latest_offset - committed_offset).max(0),
            });
        }
        offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(offsets)
    }

    /// Every topic and its partitions, from one Metadata request. Blocks.
    fn topic_partitions(&self) -> Result<TopicPartitions, ClusterError> {
        let metadata = self.inner.metadata.fetch_metadata(None, REQUEST_TIMEOUT)?;
        Ok(metadata
            .topics()
            .iter()
            .map(|topic| {
                let partitions = topic.partitions().iter().map(|p| p.id()).collect();
                (topic.name().to_string(), partitions)
            })
            .collect())
    }

    /// A consumer of `group` that reads (and, for a reset, commits) its offsets: it never
    /// subscribes, so it never joins the group, and Kafka takes its commits only while the
    /// group is empty. `role` names the client in the broker's logs.
    pub(super) fn offsets_client(
        &self,
        group: &str,
        role: &str,
    ) -> Result<BaseConsumer, ClusterError> {
        let mut config = self.kafka().client_config(role);
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("allow.auto.create.topics", "false");
        Ok(config.create()?)
    }
}

/// Every partition of the non-internal topics and of the topics `group`'s members are
/// assigned: where it may have committed offsets.
fn offset_candidates(group: &GroupSummary, topics: &TopicPartitions) -> TopicPartitionList {
    let assigned: BTreeSet<&str> = group
        .members
        .iter()
        .flat_map(|member| &member.assignments)
        .map(|assignment| assignment.topic.as_str())
        .collect();
    let mut candidates = TopicPartitionList::new();
    for (topic, partitions) in topics {
        if is_internal_topic(topic) && !assigned.contains(topic.as_str()) {
            continue;
        }
        for partition in partitions {
            candidates.add_partition(topic, *partition);
        }
    }
    candidates
}

/// A group id from a request: not empty, and no control characters (which no client uses
/// and which cannot be passed to librdkafka).
pub fn validate_group_id(group_id: &str) -> Result<(), ClusterError> {
    if group_id.is_empty() {
        return Err(ClusterError::Invalid("group_id is empty".into()));
    }
    if group_id.chars().any(char::is_control) {
        return Err(ClusterError::Invalid(format!(
            "group_id {group_id:?} contains control characters"
        )));
    }
    Ok(())
}

/// The total lag, or `None` when the group has no committed offset to measure it from.
fn total_lag(offsets: &[GroupOffset]) -> Option<i64> {
    (!offsets.is_empty()).then(|| offsets.iter().map(|offset| offset.lag).sum())
}

pub(super) fn summary(group: &GroupInfo) -> GroupSummary {
    let consumer = group.protocol_type() == CONSUMER_PROTOCOL;
    GroupSummary {
        group_id: group.name().to_string(),
        state: group.state().to_string(),
        protocol_type: group.protocol_type().to_string(),
        protocol: group.protocol().to_string(),
        members: group
            .members()
            .iter()
            .map(|member| group_member(member, consumer))
            .collect(),
        lag: None,
    }
}

fn group_member(member: &GroupMemberInfo, consumer: bool) -> GroupMember {
    let assignments = match member.assignment() {
        Some(bytes) if consumer => decode_assignment(bytes).unwrap_or_else(|| {
            tracing::debug!(member = member.id(), "undecodable consumer assignment");
            Vec::new()
        }),
        _ => Vec::new(),
    };
    GroupMember {
        member_id: member.id().to_string(),
        client_id: member.client_id().to_string(),
        client_host: member.client_host().to_string(),
        assignments,
    }
}

/// Decodes a `consumer` protocol assignment: an int16 version, then the assignment. Newer
/// versions only append fields, so they are read as the newest known one. `None` when the
/// bytes are not an assignment; empty bytes are no partitions.
fn decode_assignment(bytes: &[u8]) -> Option<Vec<MemberAssignment>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let mut buf = Bytes::copy_from_slice(bytes);
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16();
    if version < 0 {
        return None;
    }
    let known = version.min(ConsumerProtocolAssignment::VERSIONS.max);
    let decoded = ConsumerProtocolAssignment::decode(&mut buf, known).ok()?;
    let mut assignments: Vec<MemberAssignment> = decoded
        .assigned_partitions
        .into_iter()
        .map(|assigned| {
            let mut partitions = assigned.partitions;
            partitions.sort_unstable();
            MemberAssignment {
                topic: assigned.topic.to_string(),
                partitions,
            }
        })
        .collect();
    assignments.sort_by(|a, b| a.topic.cmp(&b.topic));
    Some(assignments)
}

#[cfg(test)]
mod tests {
    use bytes::BufMut;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    use super::*;

    fn encoded(version: i16, assignment: &ConsumerProtocolAssignment) -> Vec<u8> {
        let mut buf = bytes::BytesMut::new();
        buf.put_i16(version);
        assignment
            .encode(&mut buf, version.min(3))
            .expect("encodes");
        buf.to_vec()
    }

    fn assignment() -> ConsumerProtocolAssignment {
        let topic = |name: &'static str, partitions: Vec<i32>| {
            TopicPartition::default()
                .with_topic(TopicName(StrBytes::from_static_str(name)))
                .with_partitions(partitions)
        };
        ConsumerProtocolAssignment::default()
            .with_assigned_partitions(vec![topic("b", vec![2, 0]), topic("a", vec![1])])
            .with_user_data(Some(Bytes::from_static(b"user")))
    }

    #[test]
    fn assignments_decode_in_every_known_version_and_newer_ones() {
        let expected = vec![
            MemberAssignment {
                topic: "a".into(),
                partitions: vec![1],
            },
            MemberAssignment {
                topic: "b".into(),
                partitions: vec![0, 2],
            },
        ];
        for version in 0..=4 {
            let bytes = encoded(version, &assignment());
            assert_eq!(
                decode_assignment(&bytes),
                Some(expected.clone()),
                "v{version}"
            );
        }
    }

    #[test]
    fn empty_and_malformed_assignments() {
        assert_eq!(decode_assignment(&[]), Some(Vec::new()));
        assert_eq!(decode_assignment(&[0]), None);
        assert_eq!(decode_assignment(&[0xff, 0xff, 0, 0]), None);
        assert_eq!(decode_assignment(&[0, 0, 0, 0, 0, 5]), None);
    }

    #[test]
    fn lag_is_the_sum_or_unknown_without_commits() {
        let offset = |lag| GroupOffset {
            topic: "t".into(),
            partition: 0,
            committed_offset: 0,
            latest_offset: lag,
            lag,
        };
        assert_eq!(total_lag(&[]), None);
        assert_eq!(total_lag(&[offset(3), offset(0), offset(4)]), Some(7));
    }

    #[test]
    fn group_ids_must_be_usable() {
        assert!(validate_group_id("tracker").is_ok());
        assert!(validate_group_id("").is_err());
        assert!(validate_group_id("a\u{0}b").is_err());
    }
}
