//! ListGroups, DescribeGroups and the overview for the HTTP API: read-only views of the groups.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DescribeGroupsRequest, DescribeGroupsResponse, GroupId, ListGroupsRequest, ListGroupsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::group::{Group, GroupState};
use crate::{lock, GroupCoordinator, GroupOverview};

/// Operations a client may perform on a group, as the AclOperation bit set DescribeGroups v3+
/// reports: READ (3), DELETE (6), DESCRIBE (8). There is no authorizer, so all are allowed.
const GROUP_AUTHORIZED_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

impl GroupCoordinator {
    /// ListGroups v0–4 (v4 filters by state, case-insensitively).
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
        let groups = lock(&self.groups);
        let mut listed: Vec<ListedGroup> = groups
            .values()
            .filter(|g| {
                wanted.is_empty() || wanted.contains(&g.state.as_str().to_ascii_lowercase())
            })
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
    listed.protocol_type = StrBytes::from_string(group.protocol_type.clone().unwrap_or_default());
    if version >= 4 {
        listed.group_state = StrBytes::from_static_str(group.state.as_str());
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

fn dead_group(group_id: GroupId) -> DescribedGroup {
    let mut described = DescribedGroup::default();
    described.group_id = group_id;
    described.group_state = StrBytes::from_static_str(GroupState::Dead.as_str());
    described
}
