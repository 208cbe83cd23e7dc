//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup: decoding the versioned request into the
//! group's terms, and encoding the outcome with exactly the fields its version carries.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{error_code, instance_id_for, string};
use crate::coordinator::{GroupUnavailable, IfMissing};
use crate::group::{JoinOutcome, JoinRequest, MemberIdentity, Protocol, Reply, SyncOutcome};
use crate::GroupCoordinator;

impl GroupCoordinator {
    /// JoinGroup v0–5. A long poll: answers when the group's join phase completes.
    pub async fn join_group(
        &self,
        req: JoinGroupRequest,
        version: i16,
        client_id: &str,
        client_host: &str,
    ) -> JoinGroupResponse {
        let outcome = self.join(req, version, client_id, client_host).await;
        join_group_response(outcome, version)
    }

    async fn join(
        &self,
        req: JoinGroupRequest,
        version: i16,
        client_id: &str,
        client_host: &str,
    ) -> JoinOutcome {
        let group_id = req.group_id.to_string();
        let request = match self.join_request(req, version, client_id, client_host) {
            Ok(request) => request,
            Err(outcome) => return outcome,
        };
        let member_id = request.member_id.clone();
        // Only a member without an id may create a group; any other id is unknown there.
        let if_missing = if member_id.is_empty() {
            IfMissing::CreateIfUsed
        } else {
            IfMissing::Fail
        };
        let settings = self.rebalance_settings();
        let reply = self.update_group(&group_id, if_missing, |group, now, fx| {
            group.join(request, now, &settings, fx)
        });
        let outcome = match reply {
            Ok(Reply::Now(outcome)) => outcome,
            Ok(Reply::Later(answer)) => answer.await.unwrap_or_else(|_| {
                JoinOutcome::failed(&member_id, ResponseError::CoordinatorNotAvailable)
            }),
            Err(GroupUnavailable::Closed) => {
                JoinOutcome::failed(member_id, ResponseError::CoordinatorNotAvailable)
            }
            Err(GroupUnavailable::Missing) => {
                JoinOutcome::failed(member_id, ResponseError::UnknownMemberId)
            }
        };
        self.released_when_durable(outcome).await
    }

    /// Validates what needs no group and normalises the request across versions.
    fn join_request(
        &self,
        req: JoinGroupRequest,
        version: i16,
        client_id: &str,
        client_host: &str,
    ) -> Result<JoinRequest, JoinOutcome> {
        let member_id = req.member_id.to_string();
        if req.group_id.is_empty() {
            return Err(JoinOutcome::failed(
                member_id,
                ResponseError::InvalidGroupId,
            ));
        }
        let session_timeout = millis(req.session_timeout_ms);
        let session_bounds = self.config.min_session_timeout..=self.config.max_session_timeout;
        if req.session_timeout_ms < 0 || !session_bounds.contains(&session_timeout) {
            return Err(JoinOutcome::failed(
                member_id,
                ResponseError::InvalidSessionTimeout,
            ));
        }
        // v0 has no rebalance timeout; Kafka uses the session timeout.
        let rebalance_timeout = if version >= 1 {
            millis(req.rebalance_timeout_ms)
        } else {
            session_timeout
        };
        Ok(JoinRequest {
            member_id,
            instance_id: instance_id_for(version, 5, req.group_instance_id),
            client_id: client_id.to_owned(),
            client_host: client_host.to_owned(),
            session_timeout,
            rebalance_timeout,
            protocol_type: req.protocol_type.to_string(),
            protocols: req
                .protocols
                .into_iter()
                .map(|p| Protocol {
                    name: p.name.to_string(),
                    metadata: p.metadata,
                })
                .collect(),
            require_known_member_id: version >= 4,
        })
    }

    /// Holds a successful answer back until the generation it announces is on disk, so a
    /// restart can never hand out the same generation again.
    async fn released_when_durable(&self, outcome: JoinOutcome) -> JoinOutcome {
        if outcome.error.is_some() || outcome.durable_seq == 0 {
            return outcome;
        }
        match self.store.wait_durable(outcome.durable_seq).await {
            Ok(()) => outcome,
            Err(error) => {
                tracing::error!(%error, "generation not durable; failing the JoinGroup");
                JoinOutcome::failed(outcome.member_id, ResponseError::CoordinatorNotAvailable)
            }
        }
    }

    /// SyncGroup v0–4. Followers wait for the leader's assignment.
    pub async fn sync_group(&self, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
        let outcome = self.sync(req, version).await;
        let mut response = SyncGroupResponse::default();
        response.error_code = error_code(outcome.error);
        response.assignment = outcome.assignment;
        response
    }

    async fn sync(&self, req: SyncGroupRequest, version: i16) -> SyncOutcome {
        if req.group_id.is_empty() {
            return SyncOutcome::failed(ResponseError::InvalidGroupId);
        }
        let who = MemberIdentity {
            member_id: req.member_id.to_string(),
            instance_id: instance_id_for(version, 3, req.group_instance_id),
        };
        let assignments: Vec<(String, Bytes)> = req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect();
        let generation = req.generation_id;
        let reply = self.update_group(&req.group_id, IfMissing::Fail, |group, now, fx| {
            group.sync(&who, generation, assignments, now, fx)
        });
        let outcome = match reply {
            Ok(Reply::Now(outcome)) => outcome,
            Ok(Reply::Later(answer)) => answer
                .await
                .unwrap_or_else(|_| SyncOutcome::failed(ResponseError::CoordinatorNotAvailable)),
            Err(unavailable) => SyncOutcome::failed(unavailable_error(unavailable)),
        };
        self.sync_released_when_durable(outcome).await
    }

    /// Holds a successful assignment back until the membership it completes is on disk, so a
    /// restart keeps the members that were told they are in.
    async fn sync_released_when_durable(&self, outcome: SyncOutcome) -> SyncOutcome {
        if outcome.error.is_some() || outcome.durable_seq == 0 {
            return outcome;
        }
        match self.store.wait_durable(outcome.durable_seq).await {
            Ok(()) => outcome,
            Err(error) => {
                tracing::error!(%error, "group members not durable; failing the SyncGroup");
                SyncOutcome::failed(ResponseError::CoordinatorNotAvailable)
            }
        }
    }

    /// Heartbeat v0–4.
    pub async fn heartbeat(&self, req: HeartbeatRequest, version: i16) -> HeartbeatResponse {
        let result = if req.group_id.is_empty() {
            Err(ResponseError::InvalidGroupId)
        } else {
            let who = MemberIdentity {
                member_id: req.member_id.to_string(),
                instance_id: instance_id_for(version, 3, req.group_instance_id),
            };
            let generation = req.generation_id;
            self.update_group(&req.group_id, IfMissing::Fail, |group, now, _| {
                group.heartbeat(&who, generation, now)
            })
            .unwrap_or_else(|unavailable| Err(unavailable_error(unavailable)))
        };
        let mut response = HeartbeatResponse::default();
        response.error_code = error_code(result.err());
        response
    }

    /// LeaveGroup v0–4 (v3+ carries a batch of members, each answered separately).
    pub async fn leave_group(&self, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        let leaving: Vec<MemberIdentity> = if version >= 3 {
            req.members
                .into_iter()
                .map(|m| MemberIdentity {
                    member_id: m.member_id.to_string(),
                    instance_id: m.group_instance_id.map(string),
                })
                .collect()
        } else {
            vec![MemberIdentity {
                member_id: req.member_id.to_string(),
                instance_id: None,
            }]
        };
        let results = self.leave(&req.group_id, &leaving);
        leave_group_response(results, &leaving, version)
    }

    /// Removes each member; the group-level error (if any) comes first.
    fn leave(
        &self,
        group_id: &str,
        leaving: &[MemberIdentity],
    ) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        let settings = self.rebalance_settings();
        let results = self.update_group(group_id, IfMissing::Fail, |group, now, fx| {
            leaving
                .iter()
                .map(|who| group.leave(who, now, &settings, fx))
                .collect()
        });
        match results {
            Ok(results) => Ok(results),
            // Kafka answers members of an unknown group one by one.
            Err(GroupUnavailable::Missing) => Ok(leaving
                .iter()
                .map(|_| Err(ResponseError::UnknownMemberId))
                .collect()),
            Err(GroupUnavailable::Closed) => Err(ResponseError::CoordinatorNotAvailable),
        }
    }
}

fn join_group_response(outcome: JoinOutcome, version: i16) -> JoinGroupResponse {
    let mut response = JoinGroupResponse::default();
    response.error_code = error_code(outcome.error);
    response.generation_id = outcome.generation;
    // Nullable only from v7; before that "no protocol" is the empty string.
    response.protocol_name = Some(StrBytes::from_string(outcome.protocol.unwrap_or_default()));
    response.leader = StrBytes::from_string(outcome.leader);
    response.member_id = StrBytes::from_string(outcome.member_id);
    response.members = outcome
        .members
        .into_iter()
        .map(|m| {
            let mut member = JoinGroupResponseMember::default();
            member.member_id = StrBytes::from_string(m.member_id);
            if version >= 5 {
                member.group_instance_id = m.instance_id.map(StrBytes::from_string);
            }
            member.metadata = m.metadata;
            member
        })
        .collect();
    response
}

/// v0–2 answer for their single member in the top-level error; v3+ per member.
fn leave_group_response(
    results: Result<Vec<Result<(), ResponseError>>, ResponseError>,
    leaving: &[MemberIdentity],
    version: i16,
) -> LeaveGroupResponse {
    let mut response = LeaveGroupResponse::default();
    let results = match results {
        Ok(results) => results,
        Err(error) => {
            response.error_code = error.code();
            return response;
        }
    };
    if version < 3 {
        response.error_code = error_code(results.into_iter().next().and_then(Result::err));
        return response;
    }
    response.members = leaving
        .iter()
        .zip(results)
        .map(|(who, result)| {
            let mut member = MemberResponse::default();
            member.member_id = StrBytes::from_string(who.member_id.clone());
            member.group_instance_id = who.instance_id.clone().map(StrBytes::from_string);
            member.error_code = error_code(result.err());
            member
        })
        .collect();
    response
}

fn unavailable_error(unavailable: GroupUnavailable) -> ResponseError {
    match unavailable {
        GroupUnavailable::Closed => ResponseError::CoordinatorNotAvailable,
        GroupUnavailable::Missing => ResponseError::UnknownMemberId,
    }
}

/// Client-supplied milliseconds; negative values count as zero.
fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
