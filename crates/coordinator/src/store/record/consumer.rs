//! The body of a [`Record::ConsumerGroup`](super::Record::ConsumerGroup): everything a KIP-848
//! consumer group needs to come back after a restart with its epochs and assignments (Kafka
//! keeps the same in its `ConsumerGroupMetadata`, `ConsumerGroupPartitionMetadata`,
//! `ConsumerGroupMemberMetadata`, `ConsumerGroupTargetAssignment*` and
//! `ConsumerGroupCurrentMemberAssignment` records; here one snapshot of the group replaces the
//! previous one, which keeps replay and compaction "latest record per group wins").
//!
//! ```text
//! body       := layout:u8(=1) group:string group_epoch:i32 assignment_epoch:i32
//!               topic_count:u32 (name:string id:uuid partitions:i32)*
//!               member_count:u32 member*
//! member     := member_id:string instance_id:option rack_id:option client_id:string
//!               client_host:string rebalance_timeout_ms:i32
//!               name_count:u32 (topic:string)* regex:string server_assignor:option
//!               member_epoch:i32 previous_member_epoch:i32 state:u8
//!               assigned:partitions pending_revocation:partitions target:partitions
//! partitions := topic_count:u32 (topic_id:uuid count:u32 (partition:i32)*)*
//! uuid       := 16 bytes
//! state      := 0 stable | 1 unrevoked partitions | 2 unreleased partitions
//! ```

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::{put_len, put_string, BadFrame, Reader, StoreError};

/// The layout of consumer group bodies this version writes and reads.
const CONSUMER_GROUP_LAYOUT: u8 = 1;

/// Partitions by topic id: an assignment, as KIP-848 names topics.
pub(crate) type Partitions = BTreeMap<Uuid, BTreeSet<i32>>;

/// Where a member stands in reconciling its assignment with its target (Kafka's
/// `MemberState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemberState {
    /// Owns exactly what it was given at its epoch.
    Stable,
    /// Must give up partitions (its `pending_revocation`) before it moves on.
    UnrevokedPartitions,
    /// Waits for partitions of its target that other members still own.
    UnreleasedPartitions,
}

impl MemberState {
    fn code(self) -> u8 {
        match self {
            MemberState::Stable => 0,
            MemberState::UnrevokedPartitions => 1,
            MemberState::UnreleasedPartitions => 2,
        }
    }

    fn from_code(code: u8) -> Result<Self, BadFrame> {
        match code {
            0 => Ok(MemberState::Stable),
            1 => Ok(MemberState::UnrevokedPartitions),
            2 => Ok(MemberState::UnreleasedPartitions),
            _ => Err(BadFrame::Undecodable("unknown consumer member state")),
        }
    }
}

/// A topic as the group last saw it: a change of its id or partition count is a rebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicRecord {
    pub(crate) name: String,
    pub(crate) id: Uuid,
    pub(crate) partitions: i32,
}

/// One member of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberRecord {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) rack_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) subscribed_topic_names: BTreeSet<String>,
    /// "" when the member subscribes by names only.
    pub(crate) subscribed_topic_regex: String,
    pub(crate) server_assignor: Option<String>,
    /// -2 for a static member that left temporarily.
    pub(crate) member_epoch: i32,
    pub(crate) previous_member_epoch: i32,
    pub(crate) state: MemberState,
    /// What the member owns (and was told it owns) at `member_epoch`.
    pub(crate) assigned: Partitions,
    /// What it must still give up.
    pub(crate) pending_revocation: Partitions,
    /// Its part of the group's target assignment.
    pub(crate) target: Partitions,
}

/// A consumer group as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerGroupRecord {
    pub(crate) group: String,
    pub(crate) group_epoch: i32,
    pub(crate) assignment_epoch: i32,
    /// The subscribed topics, as of the group epoch.
    pub(crate) topics: Vec<TopicRecord>,
    pub(crate) members: Vec<MemberRecord>,
}

pub(super) fn encode(out: &mut Vec<u8>, group: &ConsumerGroupRecord) -> Result<(), StoreError> {
    out.push(CONSUMER_GROUP_LAYOUT);
    put_string(out, &group.group)?;
    out.extend_from_slice(&group.group_epoch.to_be_bytes());
    out.extend_from_slice(&group.assignment_epoch.to_be_bytes());
    put_len(out, group.topics.len())?;
    for topic in &group.topics {
        put_string(out, &topic.name)?;
        out.extend_from_slice(topic.id.as_bytes());
        out.extend_from_slice(&topic.partitions.to_be_bytes());
    }
    put_len(out, group.members.len())?;
    for member in &group.members {
        encode_member(out, member)?;
    }
    Ok(())
}

fn encode_member(out: &mut Vec<u8>, member: &MemberRecord) -> Result<(), StoreError> {
    put_string(out, &member.member_id)?;
    put_option(out, member.instance_id.as_deref())?;
    put_option(out, member.rack_id.as_deref())?;
    put_string(out, &member.client_id)?;
    put_string(out, &member.client_host)?;
    out.extend_from_slice(&member.rebalance_timeout_ms.to_be_bytes());
    put_len(out, member.subscribed_topic_names.len())?;
    for name in &member.subscribed_topic_names {
        put_string(out, name)?;
    }
    put_string(out, &member.subscribed_topic_regex)?;
    put_option(out, member.server_assignor.as_deref())?;
    out.extend_from_slice(&member.member_epoch.to_be_bytes());
    out.extend_from_slice(&member.previous_member_epoch.to_be_bytes());
    out.push(member.state.code());
    for partitions in [&member.assigned, &member.pending_revocation, &member.target] {
        put_partitions(out, partitions)?;
    }
    Ok(())
}

pub(super) fn decode(r: &mut Reader<'_>) -> Result<ConsumerGroupRecord, BadFrame> {
    if r.u8()? != CONSUMER_GROUP_LAYOUT {
        return Err(BadFrame::Undecodable("unknown consumer group layout"));
    }
    let mut group = ConsumerGroupRecord {
        group: r.string()?,
        group_epoch: r.i32()?,
        assignment_epoch: r.i32()?,
        topics: Vec::new(),
        members: Vec::new(),
    };
    // Counts are not trusted for allocation: each element must actually be in the body.
    for _ in 0..r.u32()? {
        group.topics.push(TopicRecord {
            name: r.string()?,
            id: uuid(r)?,
            partitions: r.i32()?,
        });
    }
    for _ in 0..r.u32()? {
        group.members.push(decode_member(r)?);
    }
    Ok(group)
}

fn decode_member(r: &mut Reader<'_>) -> Result<MemberRecord, BadFrame> {
    let member_id = r.string()?;
    let instance_id = option(r)?;
    let rack_id = option(r)?;
    let client_id = r.string()?;
    let client_host = r.string()?;
    let rebalance_timeout_ms = r.i32()?;
    let mut subscribed_topic_names = BTreeSet::new();
    for _ in 0..r.u32()? {
        subscribed_topic_names.insert(r.string()?);
    }
    Ok(MemberRecord {
        member_id,
        instance_id,
        rack_id,
        client_id,
        client_host,
        rebalance_timeout_ms,
        subscribed_topic_names,
        subscribed_topic_regex: r.string()?,
        server_assignor: option(r)?,
        member_epoch: r.i32()?,
        previous_member_epoch: r.i32()?,
        state: MemberState::from_code(r.u8()?)?,
        assigned: partitions(r)?,
        pending_revocation: partitions(r)?,
        target: partitions(r)?,
    })
}

fn put_option(out: &mut Vec<u8>, value: Option<&str>) -> Result<(), StoreError> {
    match value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            put_string(out, value)?;
        }
    }
    Ok(())
}

fn put_partitions(out: &mut Vec<u8>, partitions: &Partitions) -> Result<(), StoreError> {
    put_len(out, partitions.len())?;
    for (topic_id, indexes) in partitions {
        out.extend_from_slice(topic_id.as_bytes());
        put_len(out, indexes.len())?;
        for index in indexes {
            out.extend_from_slice(&index.to_be_bytes());
        }
    }
    Ok(())
}

fn option(r: &mut Reader<'_>) -> Result<Option<String>, BadFrame> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(r.string()?)),
        _ => Err(BadFrame::Undecodable("bad option marker")),
    }
}

fn uuid(r: &mut Reader<'_>) -> Result<Uuid, BadFrame> {
    Ok(Uuid::from_bytes(r.take::<16>()?))
}

fn partitions(r: &mut Reader<'_>) -> Result<Partitions, BadFrame> {
    let mut partitions = Partitions::new();
    for _ in 0..r.u32()? {
        let topic_id = uuid(r)?;
        let mut indexes = BTreeSet::new();
        for _ in 0..r.u32()? {
            indexes.insert(r.i32()?);
        }
        partitions.insert(topic_id, indexes);
    }
    Ok(partitions)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::store) fn consumer_group() -> ConsumerGroupRecord {
        let topic = Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
        let partitions = |ps: &[i32]| Partitions::from([(topic, ps.iter().copied().collect())]);
        let member = |id: &str, instance: Option<&str>, state| MemberRecord {
            member_id: id.into(),
            instance_id: instance.map(Into::into),
            rack_id: Some("rack-a".into()),
            client_id: "client".into(),
            client_host: "127.0.0.1".into(),
            rebalance_timeout_ms: 300_000,
            subscribed_topic_names: ["orders".to_owned(), "payments".to_owned()].into(),
            subscribed_topic_regex: "orders-.*".into(),
            server_assignor: Some("range".into()),
            member_epoch: 7,
            previous_member_epoch: 6,
            state,
            assigned: partitions(&[0, 2]),
            pending_revocation: partitions(&[1]),
            target: partitions(&[0, 2, 4]),
        };
        ConsumerGroupRecord {
            group: "g".into(),
            group_epoch: 8,
            assignment_epoch: 7,
            topics: vec![TopicRecord {
                name: "orders".into(),
                id: topic,
                partitions: 6,
            }],
            members: vec![
                member("a", None, MemberState::Stable),
                member("b", Some("static-b"), MemberState::UnrevokedPartitions),
                member("c", None, MemberState::UnreleasedPartitions),
            ],
        }
    }

    #[test]
    fn a_consumer_group_round_trips() {
        let group = consumer_group();
        let mut body = Vec::new();
        encode(&mut body, &group).expect("encodable");
        let mut reader = Reader(&body);
        assert_eq!(decode(&mut reader).expect("decodable"), group);
        assert!(reader.0.is_empty());
    }

    #[test]
    fn every_truncation_is_undecodable() {
        let mut body = Vec::new();
        encode(&mut body, &consumer_group()).expect("encodable");
        for cut in 0..body.len() {
            assert!(decode(&mut Reader(&body[..cut])).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn an_unknown_layout_or_member_state_is_undecodable() {
        let mut body = Vec::new();
        encode(&mut body, &consumer_group()).expect("encodable");
        let mut other_layout = body.clone();
        other_layout[0] = CONSUMER_GROUP_LAYOUT + 1;
        assert_eq!(
            decode(&mut Reader(&other_layout)),
            Err(BadFrame::Undecodable("unknown consumer group layout"))
        );
        assert_eq!(
            MemberState::from_code(3),
            Err(BadFrame::Undecodable("unknown consumer member state"))
        );
    }
}
