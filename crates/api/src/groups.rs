//! Consumer groups: their members, what each is assigned, and how far behind the group's
//! committed offsets are; and, for an empty group, moving its offsets or deleting it. Read
//! and changed over the Kafka protocol ([`freshet_services::cluster`]).

use axum::http::StatusCode;
use freshet_security::acl::ResourceType;
use freshet_services::cluster::view::{
    GroupDescription, GroupList, ResetOffsetsAnswer, ResetOffsetsRequest,
};
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Access;
use crate::error::{ApiError, Json, Path};
use crate::openapi::required_parameter;
use crate::state::{AppState, KafkaCluster};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_groups))
        .routes(routes!(describe_group, delete_group))
        .routes(routes!(reset_offsets))
        .routes(routes!(delete_group_offsets))
}

/// A group named in the path (for the spec; handlers take `Path<String>`).
#[derive(Debug)]
pub struct GroupPath;

impl IntoParams for GroupPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![group_id_parameter()]
    }
}

/// A group and a topic named in the path (for the spec; handlers take
/// `Path<(String, String)>`).
#[derive(Debug)]
pub struct GroupTopicPath;

impl IntoParams for GroupTopicPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let topic = freshet_services::kafka::topic_name_schema();
        vec![
            group_id_parameter(),
            required_parameter("topic", ParameterIn::Path, "Topic name", topic),
        ]
    }
}

fn group_id_parameter() -> Parameter {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let schema = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .pattern(Some(r"^[^\x00-\x1f\x7f-\x9f]+$"));
    required_parameter(
        "group_id",
        ParameterIn::Path,
        "Group id: any text without control characters",
        schema,
    )
}

/// List consumer groups
///
/// Every group the cluster knows, by id: state, members with their assigned partitions, and
/// the total lag of its committed offsets (null when it has committed none).
#[utoipa::path(
    get,
    path = "/api/v1/groups",
    tag = "groups",
    responses(
        (status = 200, description = "Every group, by id", body = GroupList),
        (status = 503, description = "The cluster is unreachable, or no cluster client runs in this process", body = ApiError),
    )
)]
pub async fn list_groups(
    KafkaCluster(cluster): KafkaCluster,
    access: Access,
) -> Result<axum::Json<GroupList>, ApiError> {
    let mut list = cluster.list_groups().await?;
    list.groups
        .retain(|group| access.may_describe(ResourceType::Group, &group.group_id));
    Ok(axum::Json(list))
}

/// Describe a consumer group
///
/// The group's state and members, and every partition it has committed an offset for with
/// the partition's latest offset and the lag between them.
#[utoipa::path(
    get,
    path = "/api/v1/groups/{group_id}",
    tag = "groups",
    params(("group_id" = String, Path, description = "Group id: any text without control characters", min_length = 1, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")),
    responses(
        (status = 200, description = "The group", body = GroupDescription),
        (status = 400, description = "Not a usable group id", body = ApiError),
        (status = 404, description = "No such group", body = ApiError),
        (status = 503, description = "The cluster is unreachable, or no cluster client runs in this process", body = ApiError),
    )
)]
pub async fn describe_group(
    KafkaCluster(cluster): KafkaCluster,
    Path(group_id): Path<String>,
) -> Result<axum::Json<GroupDescription>, ApiError> {
    Ok(axum::Json(cluster.describe_group(&group_id).await?))
}

/// Delete a consumer group
///
/// Deletes an empty group and its committed offsets (DeleteGroups). A group with members is
/// refused: stop its consumers first.
#[utoipa::path(
    delete,
    path = "/api/v1/groups/{group_id}",
    tag = "groups",
    params(GroupPath),
    responses(
        (status = 204, description = "The group and its offsets were deleted"),
        (status = 400, description = "Not a usable group id", body = ApiError),
        (status = 404, description = "No such group", body = ApiError,
         example = json!({"error": "no consumer group \"reporting\""})),
        (status = 409, description = "The group has members", body = ApiError,
         example = json!({"error": "consumer group \"reporting\" is not empty (1 member, state Stable): stop its consumers before deleting it"})),
        (status = 503, description = "The cluster is unreachable, or no cluster client runs in this process", body = ApiError),
    )
)]
pub async fn delete_group(
    KafkaCluster(cluster): KafkaCluster,
    Path(group_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    cluster.delete_group(&group_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reset a group's offsets of a topic
///
/// Moves the group's committed offsets of the topic's partitions (all, or those listed) to
/// `earliest`, `latest`, the first offset at or after an RFC 3339 timestamp (the latest when
/// no record is that recent), an offset (`{"offset": N}`) or the committed offset shifted by
/// N (`{"shift": N}`), each clamped to the partition's earliest and latest offsets, and
/// commits them (OffsetCommit). Answers each partition's previous and new offset; with
/// `"dry_run": true` the same answer is a preview and nothing is committed.
///
/// As with Kafka's `kafka-consumer-groups --reset-offsets`, the group must have no members
/// (state `Empty`), preview included: its consumers would overwrite the new offsets. A
/// group the cluster does not know yet is created by the commit, so a new group can be
/// positioned before its consumers start. A shift needs a committed offset in every
/// partition it moves; one without is refused (409) instead of guessing where its consumers
/// would start.
#[utoipa::path(
    post,
    path = "/api/v1/groups/{group_id}/reset-offsets",
    tag = "groups",
    params(GroupPath),
    request_body = ResetOffsetsRequest,
    responses(
        (status = 200, description = "Each partition's previous and new committed offset (committed, or a preview with `dry_run`)", body = ResetOffsetsAnswer,
         example = json!({"group_id": "reporting", "topic": "orders", "dry_run": false, "partitions": [
             {"partition": 0, "previous_offset": 7, "new_offset": 0, "earliest_offset": 0, "latest_offset": 10},
             {"partition": 1, "previous_offset": null, "new_offset": 0, "earliest_offset": 0, "latest_offset": 6}]})),
        (status = 400, description = "Invalid JSON, group id, topic name, partition (negative, repeated or not in the topic) or target (unknown form, malformed timestamp, negative offset)", body = ApiError),
        (status = 404, description = "No such topic", body = ApiError),
        (status = 409, description = "The group has members, or a shift meets a partition without a committed offset", body = ApiError,
         example = json!({"error": "consumer group \"reporting\" is active (1 member, state Stable): its offsets can be reset only while it has no members; stop its consumers first"})),
        (status = 413, description = "The body is larger than 64 KiB", body = ApiError),
        (status = 415, description = "The body is not declared as JSON (`Content-Type: application/json`)", body = ApiError),
        (status = 503, description = "The cluster is unreachable, or no cluster client runs in this process", body = ApiError),
    )
)]
pub async fn reset_offsets(
    KafkaCluster(cluster): KafkaCluster,
    Path(group_id): Path<String>,
    Json(request): Json<ResetOffsetsRequest>,
) -> Result<axum::Json<ResetOffsetsAnswer>, ApiError> {
    Ok(axum::Json(cluster.reset_offsets(&group_id, request).await?))
}

/// Delete a group's offsets of a topic
///
/// Deletes the group's committed offsets of every partition of the topic (OffsetDelete),
/// as `kafka-consumer-groups --delete-offsets` does. Refused while the group's members are
/// subscribed to the topic; an active group's offsets of other topics can be deleted.
#[utoipa::path(
    delete,
    path = "/api/v1/groups/{group_id}/offsets/{topic}",
    tag = "groups",
    params(GroupTopicPath),
    responses(
        (status = 204, description = "The group has no committed offset in the topic any more"),
        (status = 400, description = "Not a usable group id or topic name", body = ApiError),
        (status = 404, description = "No such group or topic", body = ApiError),
        (status = 409, description = "The group is active and subscribed to the topic", body = ApiError,
         example = json!({"error": "consumer group \"reporting\" is active and subscribed to topic \"orders\": stop its consumers (or unsubscribe them from the topic) before deleting its offsets"})),
        (status = 503, description = "The cluster or the group's coordinator is unreachable, or no cluster client runs in this process", body = ApiError),
    )
)]
pub async fn delete_group_offsets(
    KafkaCluster(cluster): KafkaCluster,
    Path((group_id, topic)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    cluster.delete_group_offsets(&group_id, &topic).await?;
    Ok(StatusCode::NO_CONTENT)
}
