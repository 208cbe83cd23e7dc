//! Moving one member from what it owns towards its target assignment (Kafka's
//! `CurrentAssignmentBuilder`). Pure: the caller supplies who else owns what.
//!
//! The rule that keeps a partition from being consumed twice: a member gives up partitions
//! first (it stays at its epoch, in `UnrevokedPartitions`, until its heartbeat no longer lists
//! them), and only gets partitions that no other member owns or is still revoking (the
//! others wait in `UnreleasedPartitions`, at the target's epoch).

use std::collections::{BTreeSet, HashSet};

use uuid::Uuid;

use crate::store::{MemberRecord, MemberState, Partitions};

/// What the reconciliation of one member needs besides the member.
pub(super) struct Reconciliation<'a> {
    pub(super) target_epoch: i32,
    /// Partitions other members own or are revoking.
    pub(super) owned_by_others: &'a HashSet<(Uuid, i32)>,
    /// What the member's heartbeat says it owns; `None` when the heartbeat did not say.
    pub(super) reported: Option<&'a Partitions>,
    /// The ids of the topics the member subscribes to: partitions of other topics are
    /// revoked even before a new target says so.
    pub(super) subscribed: &'a BTreeSet<Uuid>,
}

impl Reconciliation<'_> {
    /// The member's next state, or the member unchanged if it cannot move yet.
    pub(super) fn next(&self, member: &MemberRecord) -> MemberRecord {
        match member.state {
            MemberState::Stable if member.member_epoch == self.target_epoch => member.clone(),
            MemberState::UnrevokedPartitions if self.still_owns(&member.pending_revocation) => {
                member.clone()
            }
            MemberState::Stable
            | MemberState::UnrevokedPartitions
            | MemberState::UnreleasedPartitions => self.next_assignment(member),
        }
    }

    /// Whether the member may still own any of `revoked`: it does if its heartbeat lists one,
    /// and it might if the heartbeat listed nothing.
    fn still_owns(&self, revoked: &Partitions) -> bool {
        let Some(reported) = self.reported else {
            return true;
        };
        reported.iter().any(|(topic, partitions)| {
            revoked
                .get(topic)
                .is_some_and(|pending| partitions.iter().any(|p| pending.contains(p)))
        })
    }

    /// Kafka's `computeNextAssignment`: keep what is still in the target, revoke the rest,
    /// and add what the target adds as far as the previous owners have let go of it.
    fn next_assignment(&self, member: &MemberRecord) -> MemberRecord {
        let target = |topic: &Uuid| -> BTreeSet<i32> {
            if !self.subscribed.contains(topic) {
                return BTreeSet::new();
            }
            member.target.get(topic).cloned().unwrap_or_default()
        };
        let topics: BTreeSet<Uuid> = member
            .target
            .keys()
            .chain(member.assigned.keys())
            .copied()
            .collect();
        let mut kept = Partitions::new();
        let mut revoked = Partitions::new();
        let mut added = Partitions::new();
        let mut unreleased = false;
        for topic in topics {
            let target = target(&topic);
            let current = member.assigned.get(&topic).cloned().unwrap_or_default();
            let keep: BTreeSet<i32> = current.intersection(&target).copied().collect();
            let revoke: BTreeSet<i32> = current.difference(&keep).copied().collect();
            let mut add: BTreeSet<i32> = target.difference(&keep).copied().collect();
            let before = add.len();
            add.retain(|p| !self.owned_by_others.contains(&(topic, *p)));
            unreleased |= add.len() != before;
            insert_nonempty(&mut kept, topic, keep);
            insert_nonempty(&mut revoked, topic, revoke);
            insert_nonempty(&mut added, topic, add);
        }

        let mut next = member.clone();
        next.previous_member_epoch = member.member_epoch;
        if !revoked.is_empty() && self.still_owns(&revoked) {
            next.state = MemberState::UnrevokedPartitions;
            next.assigned = kept;
            next.pending_revocation = revoked;
            return next;
        }
        for (topic, partitions) in added {
            kept.entry(topic).or_default().extend(partitions);
        }
        next.member_epoch = self.target_epoch;
        next.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
        next.assigned = kept;
        next.pending_revocation = Partitions::new();
        next
    }
}

fn insert_nonempty(partitions: &mut Partitions, topic: Uuid, indexes: BTreeSet<i32>) {
    if !indexes.is_empty() {
        partitions.insert(topic, indexes);
    }
}

/// Whether every partition in `reported` is in `assigned` (a heartbeat that reported nothing
/// proves nothing).
pub(super) fn is_subset(reported: Option<&Partitions>, assigned: &Partitions) -> bool {
    let Some(reported) = reported else {
        return false;
    };
    reported.iter().all(|(topic, partitions)| {
        assigned
            .get(topic)
            .is_some_and(|owned| partitions.is_subset(owned))
    })
}
