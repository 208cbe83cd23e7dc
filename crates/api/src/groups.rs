//! Consumer groups: their members, what each is assigned, and how far behind the group's
//! committed offsets are. Read over the Kafka protocol ([`freshet_services::cluster`]).

use freshet_security::acl::ResourceType;
use freshet_services::cluster::view::{GroupDescription, GroupList};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Access;
use crate::error::{ApiError, Path};
use crate::state::{AppState, KafkaCluster};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_groups))
        .routes(routes!(describe_group))
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
