//! The group side of each membership request, following Kafka's classic `GroupCoordinator`
//! (`handleJoinGroup`, `handleSyncGroup`, `handleHeartbeat`, `handleLeaveGroup`,
//! `handleCommitOffsets`). Validation that needs no group (group id, session timeout bounds)
//! happens in the coordinator before these are called.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

use super::{
    deadline, Effects, Group, GroupState, JoinOutcome, Member, Protocol, RebalanceSettings, Reply,
    SyncOutcome,
};

/// A JoinGroup, normalised across versions.
#[derive(Debug, Clone)]
pub(crate) struct JoinRequest {
    /// Empty for a member joining for the first time.
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout: Duration,
    pub(crate) rebalance_timeout: Duration,
    pub(crate) protocol_type: String,
    pub(crate) protocols: Vec<Protocol>,
    /// JoinGroup v4+ (KIP-394): a new dynamic member is first handed its id with
    /// MEMBER_ID_REQUIRED and must come back with it.
    pub(crate) require_known_member_id: bool,
}

/// Who sends a SyncGroup, Heartbeat, LeaveGroup or OffsetCommit.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemberIdentity {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
}

impl Group {
    /// JoinGroup. Answers at once on errors and when nothing changes; otherwise the answer
    /// comes when the join phase completes.
    pub(crate) fn join(
        &mut self,
        request: JoinRequest,
        now: Instant,
        settings: &RebalanceSettings,
        fx: &mut Effects,
    ) -> Reply<JoinOutcome> {
        if let Some(error) = self.classic_join_refusal() {
            return Reply::Now(JoinOutcome::failed(request.member_id, error));
        }
        if !self.supports_protocols(&request.protocol_type, &request.protocols) {
            let error = ResponseError::InconsistentGroupProtocol;
            return Reply::Now(JoinOutcome::failed(request.member_id, error));
        }
        let reply = if request.member_id.is_empty() {
            self.join_new_member(request, now, settings, fx)
        } else {
            self.join_known_member(request, now, settings, fx)
        };
        self.try_complete_join(now, fx);
        reply
    }

    fn join_new_member(
        &mut self,
        request: JoinRequest,
        now: Instant,
        settings: &RebalanceSettings,
        fx: &mut Effects,
    ) -> Reply<JoinOutcome> {
        let prefix = request.instance_id.as_deref().unwrap_or(&request.client_id);
        let member_id = format!("{prefix}-{}", Uuid::new_v4());
        let previous_incarnation = request
            .instance_id
            .as_ref()
            .and_then(|instance| self.static_members.get(instance))
            .cloned();
        if let Some(old_member_id) = previous_incarnation {
            return self.rejoin_static_member(old_member_id, member_id, request, now, settings, fx);
        }
        if request.instance_id.is_none() && request.require_known_member_id {
            // The member enters the group only when it comes back with this id, so a client
            // that never receives this answer leaves no ghost member behind. Until then it
            // is pending, and a join phase waits for it (up to its session timeout).
            let expires = deadline(now, request.session_timeout);
            self.pending_members.insert(member_id.clone(), expires);
            return Reply::Now(JoinOutcome::failed(
                member_id,
                ResponseError::MemberIdRequired,
            ));
        }
        self.add_member_and_rebalance(member_id, request, now, settings, fx)
    }

    fn join_known_member(
        &mut self,
        request: JoinRequest,
        now: Instant,
        settings: &RebalanceSettings,
        fx: &mut Effects,
    ) -> Reply<JoinOutcome> {
        let member_id = request.member_id.clone();
        if request.instance_id.is_none() && self.pending_members.remove(&member_id).is_some() {
            return self.add_member_and_rebalance(member_id, request, now, settings, fx);
        }
        let who = MemberIdentity {
            member_id: member_id.clone(),
            instance_id: request.instance_id.clone(),
        };
        if let Err(error) = self.validate_member(&who) {
            return Reply::Now(JoinOutcome::failed(member_id, error));
        }
        let unchanged = self
            .members
            .get(&member_id)
            .is_some_and(|m| m.protocols == request.protocols);
        match self.state {
            // A member that missed its JoinGroup answer asks again: repeat it.
            GroupState::CompletingRebalance if unchanged => {
                Reply::Now(self.current_join_outcome(&member_id))
            }
            // A follower rejoining with the same metadata changes nothing. The leader always
            // gets a rebalance: rejoining is how it asks for a new assignment.
            GroupState::Stable if unchanged && !self.is_leader(&member_id) => {
                Reply::Now(self.current_join_outcome(&member_id))
            }
            GroupState::PreparingRebalance
            | GroupState::CompletingRebalance
            | GroupState::Stable => self.update_member_and_rebalance(request, now, settings, fx),
            GroupState::Empty | GroupState::Dead => Reply::Now(JoinOutcome::failed(
                member_id,
                ResponseError::UnknownMemberId,
            )),
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        member_id: String,
        request: JoinRequest,
        now: Instant,
        settings: &RebalanceSettings,
        fx: &mut Effects,
    ) -> Reply<JoinOutcome> {
        let (waiter, reply) = oneshot::channel();
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        if let Some(instance) = &request.instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member_id.clone());
        }
        let member = Member {
            id: member_id.clone(),
            instance_id: request.instance_id,
            client_id: request.client_id,
            client_host: request.client_host,
            session_timeout: request.session_timeout,
            rebalance_timeout: request.rebalance_timeout,
            protocols: request.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(waiter),
            awaiting_sync: None,
            is_new: true,
            last_heartbeat: now,
        };
        self.members.insert(member_id, member);
        let initial_delay = self
            .join_phase
            .as_mut()
            .and_then(|phase| phase.initial_delay.as_mut());
        if let Some(initial) = initial_delay {
            initial.new_member_added = true;
        }
        self.maybe_prepare_rebalance(now, settings, fx);
        Reply::Later(reply)
    }

    fn update_member_and_rebalance(
        &mut self,
        request: JoinRequest,
        now: Instant,
        settings: &RebalanceSettings,
        fx: &mut Effects,
    ) -> Reply<JoinOutcome> {
        let (waiter, reply) = oneshot::channel();
        if let Some(member) = self.members.get_mut(&request.member_id) {
            let superseded = member.awaiting_join.replace(waiter);
            update_member(member, request);
            if let Some(old_waiter) = superseded {
                let error = ResponseError::RebalanceInProgress;
                fx.answer_join(old_waiter, JoinOutcome::failed(member.id.clone(), error));
            }
        }
        self.maybe_prepare_rebalance(now, settings, fx);
        Reply::Later(reply)
    }

    /// A static member came back under a new member id (KIP-345): the new id takes over the
    /// old one's place, the old incarnation is fenced. A Stable group is not rebalanced unless
    /// the member's protocols change the group's protocol choice.
    fn rejoin_static_member(
        &mut self,
        old_member_id: String,
        new_member_id: String,
        request: JoinRequest,
        now: Instant,
        settings: &RebalanceSettings,
        fx: &mut Effects,
    ) -> Reply<JoinOutcome> {
        let previous_leader = self.leader.clone().unwrap_or_default();
        let Some(mut member) = self.members.remove(&old_member_id) else {
            return Reply::Now(JoinOutcome::failed(
                new_member_id,
                ResponseError::UnknownMemberId,
            ));
        };
        let fenced = ResponseError::FencedInstanceId;
        if let Some(waiter) = member.awaiting_join.take() {
            fx.answer_join(waiter, JoinOutcome::failed(old_member_id.clone(), fenced));
        }
        if let Some(waiter) = member.awaiting_sync.take() {
            let _ = waiter.send(SyncOutcome::failed(fenced));
        }
        member.id = new_member_id.clone();
        member.heartbeat(now);
        update_member(&mut member, request);
        if let Some(instance) = &member.instance_id {
            self.static_members
                .insert(instance.clone(), new_member_id.clone());
        }
        if self.is_leader(&old_member_id) {
            self.leader = Some(new_member_id.clone());
        }
        self.members.insert(new_member_id.clone(), member);

        let (waiter, reply) = oneshot::channel();
        if self.state == GroupState::Stable && self.select_protocol() == self.protocol {
            // Answer with the previous leader id: even if this member is the leader it must
            // not compute an assignment, since a Stable group would not distribute it. It
            // syncs as a follower and gets its existing assignment back. The answer waits
            // until the new member id is persisted, so that a restart does not forget it.
            fx.membership_changed = true;
            let outcome = JoinOutcome {
                leader: previous_leader,
                members: Vec::new(),
                ..self.current_join_outcome(&new_member_id)
            };
            fx.answer_join(waiter, outcome);
            return Reply::Later(reply);
        }
        if let Some(member) = self.members.get_mut(&new_member_id) {
            member.awaiting_join = Some(waiter);
        }
        match self.state {
            GroupState::Stable => self.maybe_prepare_rebalance(now, settings, fx),
            GroupState::CompletingRebalance => self.prepare_rebalance(now, settings, fx),
            // Its rejoin counts for the open join phase.
            GroupState::PreparingRebalance | GroupState::Empty | GroupState::Dead => {}
        }
        Reply::Later(reply)
    }

    /// SyncGroup. The leader's call carries the assignment for everyone; followers wait for it.
    pub(crate) fn sync(
        &mut self,
        who: &MemberIdentity,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
        fx: &mut Effects,
    ) -> Reply<SyncOutcome> {
        if let Err(error) = self.check_generation(who, generation) {
            return Reply::Now(SyncOutcome::failed(error));
        }
        match self.state {
            GroupState::Empty => Reply::Now(SyncOutcome::failed(ResponseError::UnknownMemberId)),
            GroupState::Dead => {
                Reply::Now(SyncOutcome::failed(ResponseError::CoordinatorNotAvailable))
            }
            GroupState::PreparingRebalance => {
                Reply::Now(SyncOutcome::failed(ResponseError::RebalanceInProgress))
            }
            GroupState::Stable => {
                let assignment = match self.members.get_mut(&who.member_id) {
                    Some(member) => {
                        member.heartbeat(now);
                        member.assignment.clone()
                    }
                    None => Bytes::new(),
                };
                Reply::Now(SyncOutcome {
                    error: None,
                    assignment,
                    durable_seq: self.persisted_seq,
                })
            }
            GroupState::CompletingRebalance => {
                let (waiter, reply) = oneshot::channel();
                if let Some(member) = self.members.get_mut(&who.member_id) {
                    if let Some(superseded) = member.awaiting_sync.replace(waiter) {
                        let _ = superseded
                            .send(SyncOutcome::failed(ResponseError::RebalanceInProgress));
                    }
                }
                if self.is_leader(&who.member_id) {
                    self.install_assignments(assignments, now, fx);
                }
                Reply::Later(reply)
            }
        }
    }

    /// Stores the leader's assignments (members it left out get an empty one), makes the group
    /// Stable and answers the waiting SyncGroups once the coordinator has persisted the members
    /// (Kafka answers after writing the group metadata, too).
    fn install_assignments(
        &mut self,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
        fx: &mut Effects,
    ) {
        let mut by_member: HashMap<String, Bytes> = assignments.into_iter().collect();
        for member in self.members.values_mut() {
            member.assignment = by_member.remove(&member.id).unwrap_or_default();
            if let Some(waiter) = member.awaiting_sync.take() {
                member.heartbeat(now);
                let outcome = SyncOutcome {
                    error: None,
                    assignment: member.assignment.clone(),
                    durable_seq: 0,
                };
                fx.answer_sync(waiter, outcome);
            }
        }
        tracing::info!(group = %self.id, generation = self.generation, "group is stable");
        self.state = GroupState::Stable;
        fx.membership_changed = true;
    }

    /// Heartbeat: keeps the session alive and tells the member whether it must rejoin.
    pub(crate) fn heartbeat(
        &mut self,
        who: &MemberIdentity,
        generation: i32,
        now: Instant,
    ) -> Result<(), ResponseError> {
        let state = self.state;
        let member = self.member_at_generation(who, generation)?;
        match state {
            GroupState::Empty => Err(ResponseError::UnknownMemberId),
            GroupState::Dead => Err(ResponseError::CoordinatorNotAvailable),
            // Clients may heartbeat between their JoinGroup and SyncGroup answers.
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.heartbeat(now);
                Ok(())
            }
            GroupState::PreparingRebalance => {
                member.heartbeat(now);
                Err(ResponseError::RebalanceInProgress)
            }
        }
    }

    /// LeaveGroup for one member: removed at once, and the rest rebalance. An empty member id
    /// with an instance id removes that static member (administrative removal, KIP-345).
    pub(crate) fn leave(
        &mut self,
        who: &MemberIdentity,
        now: Instant,
        settings: &RebalanceSettings,
        fx: &mut Effects,
    ) -> Result<(), ResponseError> {
        if who.member_id.is_empty() {
            let member_id = who
                .instance_id
                .as_ref()
                .and_then(|instance| self.static_members.get(instance))
                .cloned()
                .ok_or(ResponseError::UnknownMemberId)?;
            self.remove_member_and_rebalance(&member_id, now, settings, fx);
            return Ok(());
        }
        if self.pending_members.remove(&who.member_id).is_some() {
            self.try_complete_join(now, fx);
            return Ok(());
        }
        self.validate_member(who)?;
        tracing::info!(group = %self.id, member = %who.member_id, "member left");
        self.remove_member_and_rebalance(&who.member_id, now, settings, fx);
        Ok(())
    }

    /// Whether `who` may commit offsets at `generation`. A negative generation on a group
    /// without members is a standalone commit (the group only stores offsets). A member's
    /// commit counts as a heartbeat.
    pub(crate) fn authorize_commit(
        &mut self,
        who: &MemberIdentity,
        generation: i32,
        now: Instant,
    ) -> Result<(), ResponseError> {
        // A consumer group's members commit at their member epoch (OffsetCommit v9).
        if let Some(consumer) = &self.consumer {
            return consumer.validate_commit(&who.member_id, generation);
        }
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if self.is_fenced(who) {
            return Err(ResponseError::FencedInstanceId);
        }
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        let state = self.state;
        let member = self.member_at_generation(who, generation)?;
        match state {
            // During PreparingRebalance commits are still allowed: the member learns about the
            // rebalance from its next heartbeat, and committing first avoids duplicates.
            GroupState::Stable | GroupState::PreparingRebalance => {
                member.heartbeat(now);
                Ok(())
            }
            // The member has its JoinGroup answer but not yet its assignment.
            GroupState::CompletingRebalance => Err(ResponseError::RebalanceInProgress),
            GroupState::Empty | GroupState::Dead => Err(ResponseError::UnknownMemberId),
        }
    }

    /// Whether a TxnOffsetCommit may write to the group: Kafka's `validateOffsetCommit` for
    /// transactional commits. Unlike a plain commit, one that names no member (every
    /// TxnOffsetCommit before v3) is accepted while the group has members, one during
    /// CompletingRebalance is not refused, and it does not count as the member's heartbeat.
    pub(crate) fn authorize_txn_commit(
        &self,
        who: &MemberIdentity,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if let Some(consumer) = &self.consumer {
            return consumer.validate_commit(&who.member_id, generation);
        }
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        let names_member =
            generation >= 0 || !who.member_id.is_empty() || who.instance_id.is_some();
        if names_member {
            self.check_generation(who, generation)?;
        }
        Ok(())
    }

    /// The member, if it exists, is not fenced and is at `generation`.
    fn member_at_generation(
        &mut self,
        who: &MemberIdentity,
        generation: i32,
    ) -> Result<&mut Member, ResponseError> {
        self.check_generation(who, generation)?;
        self.members
            .get_mut(&who.member_id)
            .ok_or(ResponseError::UnknownMemberId)
    }

    /// The member exists (and is not a fenced static incarnation) and is at `generation`.
    fn check_generation(&self, who: &MemberIdentity, generation: i32) -> Result<(), ResponseError> {
        self.validate_member(who)?;
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// The member exists, and if it names an instance id, that instance is this member.
    fn validate_member(&self, who: &MemberIdentity) -> Result<(), ResponseError> {
        if self.is_fenced(who) {
            return Err(ResponseError::FencedInstanceId);
        }
        if !self.members.contains_key(&who.member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        Ok(())
    }

    /// An older incarnation of a static member: its instance id now belongs to another member id.
    fn is_fenced(&self, who: &MemberIdentity) -> bool {
        who.instance_id
            .as_ref()
            .and_then(|instance| self.static_members.get(instance))
            .is_some_and(|current| *current != who.member_id)
    }
}

/// Takes over what a (re)joining member sends: protocols, timeouts, client identity.
fn update_member(member: &mut Member, request: JoinRequest) {
    member.protocols = request.protocols;
    member.session_timeout = request.session_timeout;
    member.rebalance_timeout = request.rebalance_timeout;
    member.client_id = request.client_id;
    member.client_host = request.client_host;
}
