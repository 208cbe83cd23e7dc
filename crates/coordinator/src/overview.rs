//! A plain-data snapshot of the groups, for metrics and the HTTP API.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Decodable;

use crate::group::{Group, Member, CONSUMER_PROTOCOL_TYPE};
use crate::store::CommittedOffset;
use crate::GroupState;

/// Highest consumer-protocol assignment version whose layout this crate knows. Later versions
/// only append fields, so their prefix decodes with this layout (as Kafka's clients do).
const MAX_KNOWN_ASSIGNMENT_VERSION: i16 = 3;

/// One group as [`GroupCoordinator::groups_overview`](crate::GroupCoordinator::groups_overview)
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupOverview {
    /// The group id.
    pub group_id: String,
    /// Where the group is in its life cycle.
    pub state: GroupState,
    /// E.g. `"consumer"`; empty for groups that only store offsets.
    pub protocol_type: String,
    /// The assignor chosen for the current generation.
    pub protocol: Option<String>,
    /// The current generation (0 before the first).
    pub generation: i32,
    /// Member id of the leader.
    pub leader: Option<String>,
    /// Current members, by member id.
    pub members: Vec<MemberOverview>,
    /// Committed offsets, by topic and partition.
    pub offsets: Vec<OffsetOverview>,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemberOverview {
    /// Coordinator-assigned member id.
    pub member_id: String,
    /// Static membership id, if the member has one.
    pub group_instance_id: Option<String>,
    /// The client id of its latest JoinGroup.
    pub client_id: String,
    /// The address its latest JoinGroup came from.
    pub client_host: String,
    /// Its partitions, decoded from the leader's assignment when the group speaks the
    /// `consumer` protocol (empty otherwise, or when the assignment does not decode).
    pub assignment: Vec<AssignedPartitions>,
}

/// Partitions of one topic assigned to a member.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AssignedPartitions {
    /// Topic name.
    pub topic: String,
    /// Partition indexes.
    pub partitions: Vec<i32>,
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OffsetOverview {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The next offset the group will consume.
    pub offset: i64,
    /// Leader epoch sent with the commit, -1 if none.
    pub leader_epoch: i32,
    /// The client's metadata string.
    pub metadata: String,
    /// When the coordinator received the commit (ms since the Unix epoch).
    pub commit_timestamp_ms: i64,
}

impl GroupOverview {
    pub(crate) fn new(group: &Group, offsets: Vec<(String, i32, CommittedOffset)>) -> Self {
        let protocol_type = group.protocol_type.clone().unwrap_or_default();
        let is_consumer = protocol_type == CONSUMER_PROTOCOL_TYPE;
        Self {
            group_id: group.id.clone(),
            state: group.state,
            protocol_type,
            protocol: group.protocol.clone(),
            generation: group.generation,
            leader: group.leader.clone(),
            members: group
                .members
                .values()
                .map(|m| MemberOverview::new(m, is_consumer))
                .collect(),
            offsets: offsets
                .into_iter()
                .map(|(topic, partition, c)| OffsetOverview {
                    topic,
                    partition,
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata,
                    commit_timestamp_ms: c.commit_timestamp_ms,
                })
                .collect(),
        }
    }
}

impl MemberOverview {
    fn new(member: &Member, is_consumer: bool) -> Self {
        let assignment = if is_consumer {
            decode_consumer_assignment(&member.assignment).unwrap_or_default()
        } else {
            Vec::new()
        };
        Self {
            member_id: member.id.clone(),
            group_instance_id: member.instance_id.clone(),
            client_id: member.client_id.clone(),
            client_host: member.client_host.clone(),
            assignment,
        }
    }
}

/// Decodes a `consumer` protocol assignment: an int16 version, then the assignment struct.
/// `None` if the bytes are not one; an empty assignment decodes to no partitions.
pub(crate) fn decode_consumer_assignment(bytes: &Bytes) -> Option<Vec<AssignedPartitions>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16();
    if version < 0 {
        return None;
    }
    let decoded =
        ConsumerProtocolAssignment::decode(&mut buf, version.min(MAX_KNOWN_ASSIGNMENT_VERSION))
            .ok()?;
    Some(
        decoded
            .assigned_partitions
            .into_iter()
            .map(|tp| AssignedPartitions {
                topic: tp.topic.to_string(),
                partitions: tp.partitions,
            })
            .collect(),
    )
}
