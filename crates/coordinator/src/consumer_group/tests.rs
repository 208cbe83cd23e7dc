//! The consumer group state machine driven directly: joins, reconciliation, fencing,
//! leaves, timers and static members, checking after every step that no partition is owned
//! by two members.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::time::Instant;
use uuid::Uuid;

use super::*;
use crate::store::MemberState;

const SESSION: Duration = Duration::from_secs(45);
const REBALANCE_TIMEOUT_MS: i32 = 30_000;

struct Catalog(BTreeMap<String, TopicMetadata>);

impl Catalog {
    fn new(topics: &[(&str, i32)]) -> Self {
        let mut catalog = Catalog(BTreeMap::new());
        for (name, partitions) in topics {
            catalog.set(name, *partitions);
        }
        catalog
    }

    /// Creates the topic, or changes its partition count (its id stays).
    fn set(&mut self, name: &str, partitions: i32) {
        let id = self.0.get(name).map_or_else(Uuid::new_v4, |t| t.id);
        let topic = TopicMetadata {
            name: name.to_owned(),
            id,
            partitions,
        };
        self.0.insert(name.to_owned(), topic);
    }

    fn id(&self, name: &str) -> Uuid {
        self.0[name].id
    }
}

impl TopicCatalog for Catalog {
    fn topic(&self, name: &str) -> Option<TopicMetadata> {
        self.0.get(name).cloned()
    }

    fn topic_names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
}

fn heartbeat(member: &str, epoch: i32) -> Heartbeat {
    Heartbeat {
        member_id: member.to_owned(),
        member_epoch: epoch,
        instance_id: None,
        rack_id: None,
        rebalance_timeout_ms: -1,
        subscribed_topic_names: None,
        subscribed_topic_regex: None,
        server_assignor: None,
        owned: None,
        client_id: "client".to_owned(),
        client_host: "127.0.0.1".to_owned(),
    }
}

fn join(member: &str, topics: &[&str]) -> Heartbeat {
    Heartbeat {
        rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
        subscribed_topic_names: Some(topics.iter().map(|t| (*t).to_owned()).collect()),
        owned: Some(Partitions::new()),
        ..heartbeat(member, 0)
    }
}

/// A heartbeat reporting what the member owns.
fn ack(member: &str, epoch: i32, owned: &Partitions) -> Heartbeat {
    Heartbeat {
        owned: Some(owned.clone()),
        ..heartbeat(member, epoch)
    }
}

struct Fixture {
    group: ConsumerGroup,
    catalog: Catalog,
    now: Instant,
}

impl Fixture {
    fn new(topics: &[(&str, i32)]) -> Self {
        Fixture {
            group: ConsumerGroup::default(),
            catalog: Catalog::new(topics),
            now: Instant::now(),
        }
    }

    fn send(&mut self, request: Heartbeat) -> Result<HeartbeatAnswer, ResponseError> {
        let applied = self
            .group
            .heartbeat("g", request, &self.catalog, self.now, SESSION)
            .map_err(|refusal| refusal.error)?;
        self.assert_no_partition_owned_twice();
        Ok(applied.answer)
    }

    fn ok(&mut self, request: Heartbeat) -> HeartbeatAnswer {
        let member = request.member_id.clone();
        self.send(request)
            .unwrap_or_else(|error| panic!("heartbeat of {member} refused: {error:?}"))
    }

    fn member(&self, id: &str) -> &MemberRecord {
        &self.group.members[id].record
    }

    fn assert_no_partition_owned_twice(&self) {
        let mut seen = BTreeSet::new();
        for member in self.group.members.values() {
            let r = &member.record;
            for (topic, partitions) in r.assigned.iter().chain(&r.pending_revocation) {
                for p in partitions {
                    assert!(seen.insert((*topic, *p)), "{topic}/{p} owned twice");
                }
            }
        }
    }

    /// Every partition of `topic` owned by exactly one member.
    fn assert_all_owned(&self, topic: &str) {
        let id = self.catalog.id(topic);
        let owned: usize = self
            .group
            .members
            .values()
            .map(|m| m.record.assigned.get(&id).map_or(0, BTreeSet::len))
            .sum();
        assert_eq!(owned, self.catalog.0[topic].partitions as usize);
    }
}

fn count(partitions: &Partitions) -> usize {
    partitions.values().map(BTreeSet::len).sum()
}

#[test]
fn a_first_member_gets_every_partition_at_epoch_one() {
    let mut f = Fixture::new(&[("t", 4)]);
    let answer = f.ok(join("a", &["t"]));
    assert_eq!(answer.member_epoch, 1);
    let assignment = answer
        .assignment
        .expect("a join is answered with its assignment");
    assert_eq!(count(&assignment), 4);
    assert_eq!(f.group.state(), ConsumerGroupState::Stable);
    // A plain heartbeat that changes nothing is answered without an assignment.
    let again = f.ok(ack("a", 1, &assignment));
    assert_eq!((again.member_epoch, again.assignment), (1, None));
}

#[test]
fn a_partition_moves_only_after_its_owner_revoked_it() {
    let mut f = Fixture::new(&[("t", 4)]);
    let owned_by_a = f.ok(join("a", &["t"])).assignment.expect("assignment");

    // b joins: epoch 2. Everything is still a's, so b gets the epoch and nothing yet.
    let b = f.ok(join("b", &["t"]));
    assert_eq!(b.member_epoch, 2);
    assert_eq!(b.assignment.as_ref().map(count), Some(0));
    assert_eq!(f.member("b").state, MemberState::UnreleasedPartitions);
    assert_eq!(f.group.state(), ConsumerGroupState::Reconciling);

    // a is asked to give up half, staying at epoch 1 until it has.
    let a = f.ok(ack("a", 1, &owned_by_a));
    assert_eq!(a.member_epoch, 1);
    let kept = a.assignment.expect("a's shrunk assignment");
    assert_eq!(count(&kept), 2);
    assert_eq!(f.member("a").state, MemberState::UnrevokedPartitions);

    // Before a has revoked, b still gets nothing.
    let b = f.ok(ack("b", 2, &Partitions::new()));
    assert_eq!(b.assignment, None);

    // a reports that it only owns what it kept: it reaches epoch 2.
    let a = f.ok(ack("a", 1, &kept));
    assert_eq!(
        (a.member_epoch, f.member("a").state),
        (2, MemberState::Stable)
    );

    // Now b gets the other half.
    let b = f.ok(ack("b", 2, &Partitions::new()));
    let given = b.assignment.expect("b's partitions");
    assert_eq!(count(&given), 2);
    assert_eq!(f.member("b").state, MemberState::Stable);
    assert_eq!(f.group.state(), ConsumerGroupState::Stable);
    f.assert_all_owned("t");
}

#[test]
fn epochs_ahead_or_behind_are_fenced_except_a_lost_answer() {
    let mut f = Fixture::new(&[("t", 2)]);
    let owned = f.ok(join("a", &["t"])).assignment.expect("assignment");
    assert_eq!(
        f.send(heartbeat("a", 5)),
        Err(ResponseError::FencedMemberEpoch)
    );
    // Epoch 0 again (the member lost everything) is behind epoch 1 but is the previous
    // epoch, with owned partitions (none) a subset: the answer was lost, it is accepted.
    let retry = f.ok(join("a", &["t"]));
    assert_eq!(retry.member_epoch, 1);
    f.ok(join("b", &["t"]));
    // a moves to epoch 2 (previous epoch 1) once it revoked.
    let kept = f.ok(ack("a", 1, &owned)).assignment.expect("kept");
    f.ok(ack("a", 1, &kept));
    assert_eq!(f.member("a").member_epoch, 2);
    // Epoch 1 with a subset of its partitions: its epoch-2 answer was lost.
    assert!(f.send(ack("a", 1, &kept)).is_ok());
    // Epoch 1 claiming a partition it does not own: fenced.
    assert_eq!(
        f.send(ack("a", 1, &owned)),
        Err(ResponseError::FencedMemberEpoch)
    );
    assert_eq!(
        f.send(join("a", &["t"])),
        Err(ResponseError::FencedMemberEpoch)
    );
}

#[test]
fn an_unknown_member_must_join_with_epoch_zero() {
    let mut f = Fixture::new(&[("t", 2)]);
    f.ok(join("a", &["t"]));
    assert_eq!(
        f.send(heartbeat("ghost", 1)),
        Err(ResponseError::UnknownMemberId)
    );
    assert!(!f.group.members.contains_key("ghost"));
}

#[test]
fn a_leaving_member_hands_its_partitions_over() {
    let mut f = Fixture::new(&[("t", 3)]);
    let a = f.ok(join("a", &["t"])).assignment.expect("a");
    f.ok(join("b", &["t"]));
    let kept = f.ok(ack("a", 1, &a)).assignment.expect("kept");
    f.ok(ack("a", 1, &kept));
    f.ok(ack("b", 2, &Partitions::new()));

    let left = f
        .group
        .leave(
            "g",
            &Leave {
                member_id: "a".into(),
                member_epoch: LEAVE_EPOCH,
                instance_id: None,
            },
        )
        .expect("leave");
    assert_eq!(
        (left.answer.member_epoch, left.epoch_bumps),
        (LEAVE_EPOCH, 1)
    );
    assert_eq!(f.group.group_epoch, 3);
    assert_eq!(f.group.state(), ConsumerGroupState::Assigning);
    let owned = f.member("b").assigned.clone();
    let b = f.ok(ack("b", 2, &owned));
    assert_eq!(b.member_epoch, 3);
    assert_eq!(b.assignment.as_ref().map(count), Some(3));
    f.assert_all_owned("t");
    let unknown = Leave {
        member_id: "a".into(),
        member_epoch: LEAVE_EPOCH,
        instance_id: None,
    };
    assert_eq!(
        f.group
            .leave("g", &unknown)
            .map(|a| a.answer)
            .map_err(|r| r.error),
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn a_member_that_stops_heartbeating_or_revoking_is_removed() {
    let mut f = Fixture::new(&[("t", 2)]);
    let a = f.ok(join("a", &["t"])).assignment.expect("a");
    f.ok(join("b", &["t"]));
    f.ok(ack("a", 1, &a));
    assert_eq!(f.member("a").state, MemberState::UnrevokedPartitions);

    // a never revokes: it is removed after its rebalance timeout although b's session and its
    // own are still alive.
    let timeout = Duration::from_millis(REBALANCE_TIMEOUT_MS as u64);
    let due = f.group.next_deadline().expect("a deadline");
    assert!(due <= f.now + timeout);
    assert_eq!(f.group.expire(f.now + timeout, "g"), 1);
    assert!(!f.group.members.contains_key("a"));

    // b's session lapses too.
    assert_eq!(f.group.expire(f.now + SESSION, "g"), 1);
    assert!(f.group.is_empty());
    assert_eq!(f.group.state(), ConsumerGroupState::Empty);
}

#[test]
fn a_static_member_keeps_its_partitions_across_a_restart_of_the_client() {
    let mut f = Fixture::new(&[("t", 2)]);
    let static_join = |member: &str| Heartbeat {
        instance_id: Some("instance-1".into()),
        ..join(member, &["t"])
    };
    let first = f.ok(static_join("a1")).assignment.expect("a1");

    // While a1 is active, another incarnation cannot take over the instance id.
    assert_eq!(
        f.send(static_join("a2")),
        Err(ResponseError::UnreleasedInstanceId)
    );
    let leave = Leave {
        member_id: "a1".into(),
        member_epoch: LEAVE_STATIC_EPOCH,
        instance_id: Some("instance-1".into()),
    };
    let left = f.group.leave("g", &leave).expect("temporary leave");
    assert_eq!(
        (left.answer.member_epoch, left.epoch_bumps),
        (LEAVE_STATIC_EPOCH, 0)
    );

    // The next incarnation gets the same partitions without a rebalance.
    let second = f.ok(static_join("a2"));
    assert_eq!(second.assignment, Some(first));
    assert_eq!(second.member_epoch, 1);
    assert!(!f.group.members.contains_key("a1"));
    let stale = Heartbeat {
        instance_id: Some("instance-1".into()),
        ..heartbeat("a1", 1)
    };
    assert_eq!(f.send(stale), Err(ResponseError::FencedInstanceId));
}

#[test]
fn added_partitions_and_subscription_changes_rebalance() {
    let mut f = Fixture::new(&[("t", 2), ("u", 1)]);
    let a = f.ok(join("a", &["t"])).assignment.expect("a");
    f.catalog.set("t", 3);
    let grown = f.ok(ack("a", 1, &a));
    assert_eq!(grown.member_epoch, 2);
    assert_eq!(grown.assignment.as_ref().map(count), Some(3));

    let resubscribed = Heartbeat {
        subscribed_topic_names: Some(vec!["u".into()]),
        ..ack("a", 2, &grown.assignment.clone().unwrap_or_default())
    };
    let moved = f.ok(resubscribed);
    // t's partitions must be revoked before u's is given.
    assert_eq!(moved.member_epoch, 2);
    assert_eq!(moved.assignment.as_ref().map(count), Some(0));
    let done = f.ok(ack("a", 2, &Partitions::new()));
    assert_eq!(done.member_epoch, 3);
    let u = Partitions::from([(f.catalog.id("u"), BTreeSet::from([0]))]);
    assert_eq!(done.assignment, Some(u));
}

#[test]
fn a_regex_subscription_follows_new_topics() {
    let mut f = Fixture::new(&[("orders-eu", 1), ("payments", 1)]);
    let regex_join = Heartbeat {
        subscribed_topic_names: Some(Vec::new()),
        subscribed_topic_regex: Some("orders-.*".into()),
        ..join("a", &[])
    };
    let first = f.ok(regex_join).assignment.expect("a");
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        [&f.catalog.id("orders-eu")]
    );
    f.catalog.set("orders-us", 2);
    let next = f.ok(ack("a", 1, &first));
    assert_eq!(next.assignment.as_ref().map(count), Some(3));
    assert_eq!(
        f.group.subscribed_topic_names(),
        BTreeSet::from(["orders-eu".to_owned(), "orders-us".to_owned()])
    );
}

#[test]
fn the_range_assignor_is_used_when_members_ask_for_it() {
    let mut f = Fixture::new(&[("t", 4)]);
    let ranged = |member: &str| Heartbeat {
        server_assignor: Some("range".into()),
        ..join(member, &["t"])
    };
    f.ok(ranged("a"));
    f.ok(ranged("b"));
    assert_eq!(f.group.preferred_assignor(), "range");
    let t = f.catalog.id("t");
    assert_eq!(
        f.member("a").target,
        Partitions::from([(t, BTreeSet::from([0, 1]))])
    );
    assert_eq!(
        f.member("b").target,
        Partitions::from([(t, BTreeSet::from([2, 3]))])
    );
}

#[test]
fn commits_and_fetches_need_the_current_member_epoch() {
    let mut f = Fixture::new(&[("t", 1)]);
    assert_eq!(f.group.validate_commit("", -1), Ok(()));
    f.ok(join("a", &["t"]));
    assert_eq!(f.group.validate_commit("a", 1), Ok(()));
    assert_eq!(
        f.group.validate_commit("a", 0),
        Err(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(
        f.group.validate_commit("", -1),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(f.group.validate_fetch(None, -1), Ok(()));
    assert_eq!(f.group.validate_fetch(Some("a"), 1), Ok(()));
    assert_eq!(
        f.group.validate_fetch(Some("a"), 2),
        Err(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(
        f.group.validate_fetch(Some("b"), 1),
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn a_restored_group_is_the_group_that_was_persisted() {
    let mut f = Fixture::new(&[("t", 4)]);
    let a = f.ok(join("a", &["t"])).assignment.expect("a");
    f.ok(join("b", &["t"]));
    f.ok(ack("a", 1, &a));
    let record = f.group.record("g");
    let restored = ConsumerGroup::restored(record.clone(), f.now, SESSION);
    assert_eq!(restored.record("g"), record);
    assert_eq!(restored.state(), f.group.state());
    // The member that was revoking gets a new revocation deadline, not none.
    assert!(restored.members["a"].revocation_deadline.is_some());
}
