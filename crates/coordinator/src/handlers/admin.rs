//! ListGroups, DescribeGroups and the overview for the HTTP API: read-only views of the groups.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DescribeGroupsRequest, DescribeGroupsResponse, GroupId, ListGroupsRequest, ListGroupsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::consumer_group::CONSUMER_GROUP_TYPE;
use crate::group::{Group, GroupState};
use crate::{lock, GroupCoordinator, GroupOverview};

/// Operations a client may perform on a group, as the AclOperation bit set DescribeGroups v3+
/// reports: READ (3), DELETE (6), DESCRIBE (8). There is no authorizer, so all are allowed.
const GROUP_AUTHORIZED_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

impl GroupCoordinator {
    /// ListGroups v0–5 (v4 filters by state, v5 by type, both case-insensitively). Consumer
    /// groups (KIP-848) are listed with their own states and type `consumer`.
    pub async fn list_groups(&self, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
        let mut response = ListGroupsResponse::default();
        if self.is_closed() {
            response.error_code = ResponseError::CoordinatorNotAvailable.code();
            return response;
        }
        let wanted: Vec<String> = if version >= 4 {
            req.states_filter
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect()
        } else {
            Vec::new()
        };
        let wanted_types: Vec<String> = if version >= 5 {
            req.types_filter
                .iter()
                .map(|t| t.to_ascii_lowercase())
                .collect()
        } else {
            Vec::new()
        };
        let groups = lock(&self.groups);
        let mut listed: Vec<ListedGroup> = groups
            .values()
            .filter(|g| wanted.is_empty() || wanted.contains(&g.state_name().to_ascii_lowercase()))
            .filter(|g| wanted_types.is_empty() || wanted_types.iter().any(|t| t == g.group_type()))
            .map(|g| listed_group(g, version))
            .collect();
        drop(groups);
        listed.sort_by(|a, b| a.group_id.as_str().cmp(b.group_id.as_str()));
        response.groups = listed;
        response
    }

    /// DescribeGroups v0–5. An unknown group is reported as Dead with no error, as in Kafka.
    pub async fn describe_groups(
        &self,
        req: DescribeGroupsRequest,
        version: i16,
    ) -> DescribeGroupsResponse {
        let mut response = DescribeGroupsResponse::default();
        let closed = self.is_closed();
        let groups = lock(&self.groups);
        response.groups = req
            .groups
            .into_iter()
            .map(|group_id| {
                let mut described = if closed {
                    let mut d = dead_group(group_id);
                    d.error_code = ResponseError::CoordinatorNotAvailable.code();
                    d
                } else {
                    match groups.get(group_id.as_str()) {
                        Some(group) if group.consumer.is_some() => {
                            not_a_classic_group(group_id, version)
                        }
                        Some(group) => described_group(group, version),
                        None => dead_group(group_id),
                    }
                };
                if version >= 3 && req.include_authorized_operations {
                    described.authorized_operations = GROUP_AUTHORIZED_OPERATIONS;
                }
                described
            })
            .collect();
        response
    }

    /// Snapshot of every group with its members (consumer assignments decoded) and committed
    /// offsets, ordered by group id.
    pub fn groups_overview(&self) -> Vec<GroupOverview> {
        let groups = lock(&self.groups);
        let mut overview: Vec<GroupOverview> = groups
            .values()
            .map(|g| GroupOverview::new(g, self.store.committed_by_group(&g.id)))
            .collect();
        drop(groups);
        overview.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        overview
    }
}

fn listed_group(group: &Group, version: i16) -> ListedGroup {
    let mut listed = ListedGroup::default();
    listed.group_id = GroupId(StrBytes::from_string(group.id.clone()));
    let protocol_type = match &group.consumer {
        Some(_) => CONSUMER_GROUP_TYPE.to_owned(),
        None => group.protocol_type.clone().unwrap_or_default(),
    };
    listed.protocol_type = StrBytes::from_string(protocol_type);
    if version >= 4 {
        listed.group_state = StrBytes::from_static_str(group.state_name());
    }
    if version >= 5 {
        listed.group_type = StrBytes::from_static_str(group.group_type());
    }
    listed
}

/// Kafka's summary: member metadata, assignments and the protocol only once Stable.
fn described_group(group: &Group, version: i16) -> DescribedGroup {
    let stable = group.state == GroupState::Stable;
    let protocol = group.protocol.clone().unwrap_or_default();
    let mut described = DescribedGroup::default();
    described.group_id = GroupId(StrBytes::from_string(group.id.clone()));
    described.group_state = StrBytes::from_static_str(group.state.as_str());
    described.protocol_type =
        StrBytes::from_string(group.protocol_type.clone().unwrap_or_default());
    if stable {
        described.protocol_data = StrBytes::from_string(protocol.clone());
    }
    described.members = group
        .members
        .values()
        .map(|m| {
            let mut member = DescribedGroupMember::default();
            member.member_id = StrBytes::from_string(m.id.clone());
            if version >= 4 {
                member.group_instance_id = m.instance_id.clone().map(StrBytes::from_string);
            }
            member.client_id = StrBytes::from_string(m.client_id.clone());
            member.client_host = StrBytes::from_string(m.client_host.clone());
            if stable {
                member.member_metadata = m.metadata_for(&protocol);
                member.member_assignment = m.assignment.clone();
            }
            member
        })
        .collect();
    described
}

/// A consumer group asked for with the classic DescribeGroups: Kafka 4 says GROUP_ID_NOT_FOUND
/// from v6, and describes it as Dead before (clients describe it with ConsumerGroupDescribe).
fn not_a_classic_group(group_id: GroupId, version: i16) -> DescribedGroup {
    let message = format!("Group {} is not a classic group.", group_id.as_str());
    let mut described = dead_group(group_id);
    if version >= 6 {
        described.error_code = ResponseError::GroupIdNotFound.code();
        described.error_message = Some(StrBytes::from_string(message));
    }
    described
}

fn dead_group(group_id: GroupId) -> DescribedGroup {
    let mut described = DescribedGroup::default();
    described.group_id = group_id;
    described.group_state = StrBytes::from_static_str(GroupState::Dead.as_str());
    described
}
