//! The topic REST API: list, describe, create and delete topics, change their configs, add
//! partitions, purge records, send JSON records and read a partition page by page.
//! Everything goes to the cluster over the Kafka protocol ([`freshet_services::cluster`]), so
//! it works the same against an external cluster.
//!
//! Sending records takes bodies up to [`MAX_RECORDS_BODY_BYTES`], more than the rest of the
//! API (500 records rarely fit in 64 KiB).
//!
//! The services' own topics (the login guard's `login-attempts`, `blocked-users` and
//! `login-attempts.dlq`, and every `freshet.` topic: see
//! [`freshet_services::service_topic_owner`]) can be read but not written to or deleted:
//! 403, whoever asks. A record there is a service's statement (a login attempt, a block, a
//! checkpoint), and a client writing one would be forging it; purging them is refused the
//! same way.
//!
//! Those and the tracker's dead-letter topic (`device-events.dlq`) are *managed*
//! ([`freshet_services::cluster::managed_topic_owner`]): listed with `managed: true`, and a
//! delete or purge of one is a 409 unless the request says `?force=true`. `force` lifts only
//! that 409, never the 403 of a service topic.

use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use freshet_security::acl::ResourceType;
use freshet_services::cluster::view::{
    NewTopic, PartitionCountChange, ProduceRequest, ProducedRecords, PurgeRequest, PurgedTopic,
    RecordPage, TopicConfigChange, TopicConfigs, TopicDescription, TopicList,
};
use serde::Deserialize;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Access;
use crate::error::{ApiError, Json, Path, Query};
use crate::openapi::required_parameter;
use crate::state::{AppState, KafkaCluster};

/// Largest body of `POST /api/v1/topics/{name}/records`: room for 500 records of about 2 KiB.
pub const MAX_RECORDS_BODY_BYTES: usize = 1024 * 1024;

/// The route whose bodies may be up to [`MAX_RECORDS_BODY_BYTES`].
pub const RECORDS_ROUTE: &str = "/api/v1/topics/{name}/records";

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    let produce = OpenApiRouter::new()
        .routes(routes!(produce_records))
        .layer(DefaultBodyLimit::max(MAX_RECORDS_BODY_BYTES));
    OpenApiRouter::new()
        .routes(routes!(list_topics, create_topic))
        .routes(routes!(describe_topic, delete_topic))
        .routes(routes!(alter_topic_configs))
        .routes(routes!(add_partitions))
        .routes(routes!(purge_topic))
        .routes(routes!(read_records))
        .merge(produce)
}

/// A topic named in the path (for the spec; handlers take `Path<String>`).
#[derive(Debug)]
pub struct TopicPath;

impl IntoParams for TopicPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![topic_name_parameter()]
    }
}

/// A partition of a topic named in the path (for the spec; handlers take
/// `Path<(String, i32)>`).
#[derive(Debug)]
pub struct PartitionPath;

impl IntoParams for PartitionPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        let partition = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
            .minimum(Some(0));
        vec![
            topic_name_parameter(),
            required_parameter(
                "partition",
                ParameterIn::Path,
                "Partition number, from 0",
                partition,
            ),
        ]
    }
}

fn topic_name_parameter() -> Parameter {
    let schema = freshet_services::kafka::topic_name_schema();
    required_parameter("name", ParameterIn::Path, "Topic name", schema)
}

/// A topic named in the path that clients may send records to; a service's own topic is
/// refused with 403.
#[derive(Debug)]
pub struct ProducibleTopic(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ProducibleTopic {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(name) = Path::<String>::from_request_parts(parts, state).await?;
        refuse_service_topic(&name, "only it writes records there")?;
        Ok(ProducibleTopic(name))
    }
}

/// A topic named in the path that clients may delete; a service's own topic is refused with
/// 403.
#[derive(Debug)]
pub struct DeletableTopic(pub String);

impl<S: Send + Sync> FromRequestParts<S> for DeletableTopic {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(name) = Path::<String>::from_request_parts(parts, state).await?;
        refuse_service_topic(&name, "it cannot be deleted through the API")?;
        Ok(DeletableTopic(name))
    }
}

/// A topic named in the path whose records clients may purge; a service's own topic is
/// refused with 403.
#[derive(Debug)]
pub struct PurgeableTopic(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PurgeableTopic {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(name) = Path::<String>::from_request_parts(parts, state).await?;
        refuse_service_topic(&name, "its records cannot be deleted through the API")?;
        Ok(PurgeableTopic(name))
    }
}

/// `?force=true`: delete or purge a managed topic anyway.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ForceQuery {
    /// `true` deletes or purges a topic a Freshet service manages (`managed: true`) anyway;
    /// the services' own topics stay refused (403). Default `false`.
    pub force: Option<bool>,
}

/// The 409 for deleting or purging a managed topic without `?force=true`.
fn refuse_managed_topic(name: &str, force: Option<bool>, action: &str) -> Result<(), ApiError> {
    match freshet_services::cluster::managed_topic_owner(name) {
        Some(owner) if force != Some(true) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("topic {name} is managed by {owner}; add ?force=true to {action} it anyway"),
        )),
        _ => Ok(()),
    }
}

fn refuse_service_topic(name: &str, consequence: &str) -> Result<(), ApiError> {
    match freshet_services::service_topic_owner(name) {
        Some(owner) => Err(ApiError::forbidden(format!(
            "topic {name} belongs to {owner}; {consequence}"
        ))),
        None => Ok(()),
    }
}

/// Where a topic's description is served.
pub fn topic_url(name: &str) -> String {
    format!("/api/v1/topics/{name}")
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListTopicsQuery {
    /// `false` hides internal topics (`__...` and `freshet....`); by default all are listed.
    pub internal: Option<bool>,
}

/// List topics
///
/// Every topic by name, with its partition count and how many records it holds.
#[utoipa::path(
    get,
    path = "/api/v1/topics",
    tag = "topics",
    params(ListTopicsQuery),
    responses(
        (status = 200, description = "Every topic, by name", body = TopicList),
        (status = 400, description = "An unknown or malformed query parameter", body = ApiError),
        (status = 503, description = "The cluster is unreachable, or no cluster client runs in this process", body = ApiError),
    )
)]
pub async fn list_topics(
    KafkaCluster(cluster): KafkaCluster,
    access: Access,
    Query(query): Query<ListTopicsQuery>,
) -> Result<axum::Json<TopicList>, ApiError> {
    let include_internal = query.internal.unwrap_or(true);
    let mut list = cluster.list_topics(include_internal).await?;
    list.topics
        .retain(|topic| access.may_describe(ResourceType::Topic, &topic.name));
    Ok(axum::Json(list))
}

/// Create a topic
///
/// Creates the topic (1 partition and the cluster's replication factor unless the body says
/// otherwise) and answers with its description. The cluster checks the configs; a refusal
/// carries its reason.
#[utoipa::path(
    post,
    path = "/api/v1/topics",
    tag = "topics",
    request_body = NewTopic,
    responses(
        (status = 201, description = "The topic was created; `Location` is its URL", body = TopicDescription,
         headers(("Location" = String, description = "URL of the topic's description"))),
        (status = 400, description = "Invalid JSON, name, partition count, replication factor or config", body = ApiError),
        (status = 409, description = "The topic exists", body = ApiError),
        (status = 413, description = "The body is larger than 64 KiB", body = ApiError),
        (status = 415, description = "The body is not declared as JSON (`Content-Type: application/json`)", body = ApiError),
        (status = 503, description = "The cluster is unreachable, or no cluster client runs in this process", body = ApiError),
    )
)]
pub async fn create_topic(
    KafkaCluster(cluster): KafkaCluster,
    Json(request): Json<NewTopic>,
) -> Result<
    (
        StatusCode,
        [(header::HeaderName, String); 1],
        axum::Json<TopicDescription>,
    ),
    ApiError,
> {
    let description = cluster.create_topic(request).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, topic_url(&description.name))],
        axum::Json(description),
    ))
}

/// Describe a topic
///
/// Its partitions (leader, offsets, records, size on disk) and effective configs. Sizes are
/// null when a broker does not report them.
#[utoipa::path(
    get,
    path = "/api/v1/topics/{name}",
    tag = "topics",
    params(TopicPath),
    responses(
        (status = 200, description = "The topic", body = TopicDescription),
        (status = 400, description = "Not a valid topic name", body = ApiError),
        (status = 404, description = "No such topic", body = ApiError),
        (status = 503, description = "The cluster is unreachable, or no cluster client runs in this process", body = ApiError),
    )
)]
pub async fn describe_topic(
    KafkaCluster(cluster): KafkaCluster,
    Path(name): Path<String>,
) -> Result<axum::Json<TopicDescription>, ApiError> {
    Ok(axum::Json(cluster.describe_topic(&name).await?))
}

/// Delete a topic
///
/// Deletes the topic and all its records. The services' own topics (`login-attempts`,
/// `blocked-users`, `login-attempts.dlq` and every `freshet.` topic) cannot be deleted here;
/// another managed topic (`device-events.dlq`) only with `?force=true`.
#[utoipa::path(
    delete,
    path = "/api/v1/topics/{name}",
    tag = "topics",
    params(TopicPath, ForceQuery),
    responses(
        (status = 204, description = "The topic was deleted"),
        (status = 400, description = "Not a valid topic name, or an unknown or malformed query parameter", body = ApiError),
        (status = 403, description = "The topic belongs to a Freshet service", body = ApiError,
         example = json!({"error": "topic blocked-users belongs to the login guard; it cannot be deleted through the API"})),
        (status = 404, description = "No such topic", body = ApiError),
        (status = 409, description = "The topic is managed by a Freshet service and `force` is not `true`", body = ApiError,
         example = json!({"error": "topic device-events.dlq is managed by the tracker; add ?force=true to delete it anyway"})),
        (status = 503, description = "The cluster is unreachable, or no cluster client runs in this process", body = ApiError),
    )
)]
pub async fn delete_topic(
    DeletableTopic(name): DeletableTopic,
    Query(query): Query<ForceQuery>,
    KafkaCluster(cluster): KafkaCluster,
) -> Result<StatusCode, ApiError> {
    refuse_managed_topic(&name, query.force, "delete")?;
    cluster.delete_topic(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change a topic's configs
///
/// Sets the configs in `set` and removes the overrides in `delete` (back to the cluster's
/// default) in one IncrementalAlterConfigs request; configs named in neither keep their
/// value. Answers the topic's effective configs afterwards. The cluster checks names and
/// values; a refusal is a 400 with the broker's own message.
#[utoipa::path(
    patch,
    path = "/api/v1/topics/{name}/configs",
    tag = "topics",
    params(TopicPath),
    request_body(content = TopicConfigChange,
        example = json!({"set": {"retention.ms": "86400000"}, "delete": ["segment.ms"]})),
    responses(
        (status = 200, description = "The topic's effective configs after the change", body = TopicConfigs),
        (status = 400, description = "Invalid JSON or topic name, or the cluster refused a name or value (its message says why)", body = ApiError,
         example = json!({"error": "the cluster refused to change the configs of topic \"orders\": InvalidConfig: ..."})),
        (status = 404, description = "No such topic", body = ApiError),
        (status = 409, description = "A config is both set and deleted", body = ApiError),
        (status = 413, description = "The body is larger than 64 KiB", body = ApiError),
        (status = 415, description = "The body is not declared as JSON (`Content-Type: application/json`)", body = ApiError),
        (status = 503, description = "The cluster is unreachable, or no cluster client runs in this process", body = ApiError),
    )
)]
pub async fn alter_topic_configs(
    KafkaCluster(cluster): KafkaCluster,
    Path(name): Path<String>,
    Json(change): Json<TopicConfigChange>,
) -> Result<axum::Json<TopicConfigs>, ApiError> {
    Ok(axum::Json(
        cluster.alter_topic_configs(&name, change).await?,
    ))
}

/// Add partitions to a topic
///
/// Grows the topic to `count` partitions (CreatePartitions) and answers its description.
/// Partitions are never removed: `count` must be more than the topic has. Records keyed
/// before may then map to other partitions.
#[utoipa::path(
    post,
    path = "/api/v1/topics/{name}/partitions",
    tag = "topics",
    params(TopicPath),
    request_body(content = PartitionCountChange, example = json!({"count": 6})),
    responses(
        (status = 200, description = "The topic with its new partitions", body = TopicDescription),
        (status = 400, description = "Invalid JSON or topic name, a count over 1000, or refused by the cluster", body = ApiError),
        (status = 404, description = "No such topic", body = ApiError),
        (status = 409, description = "The topic already has at least `count` partitions (partitions are added, never removed)", body = ApiError),
        (status = 413, description = "The body is larger than 64 KiB", body = ApiError),
        (status = 415, description = "The body is not declared as JSON (`Content-Type: application/json`)", body = ApiError),
        (status = 503, description = "The cluster is unreachable, or no cluster client runs in this process", body = ApiError),
    )
)]
pub async fn add_partitions(
    KafkaCluster(cluster): KafkaCluster,
    Path(name): Path<String>,
    Json(change): Json<PartitionCountChange>,
) -> Result<axum::Json<TopicDescription>, ApiError> {
    Ok(axum::Json(cluster.add_partitions(&name, change).await?))
}

/// Purge a topic's records
///
/// Deletes records (DeleteRecords): of every partition unless `partitions` lists some, and
/// all of them up to the latest offset unless `before` names an offset to stop at. Offsets
/// are not reused: each partition's earliest offset moves up. Answers each purged
/// partition's new earliest and latest offsets. Send `{}` to purge everything. The services'
/// own topics cannot be purged; another managed topic (`device-events.dlq`) only with
/// `?force=true`.
#[utoipa::path(
    post,
    path = "/api/v1/topics/{name}/purge",
    tag = "topics",
    params(TopicPath, ForceQuery),
    request_body(content = PurgeRequest, example = json!({"partitions": [0], "before": 100})),
    responses(
        (status = 200, description = "Where each purged partition starts now", body = PurgedTopic),
        (status = 400, description = "Invalid JSON, topic name or query parameter, a partition negative, repeated or not in the topic, or `before` negative or past a partition's latest offset", body = ApiError),
        (status = 403, description = "The topic belongs to a Freshet service", body = ApiError,
         example = json!({"error": "topic blocked-users belongs to the login guard; its records cannot be deleted through the API"})),
        (status = 404, description = "No such topic", body = ApiError),
        (status = 409, description = "The topic is managed by a Freshet service and `force` is not `true`", body = ApiError,
         example = json!({"error": "topic device-events.dlq is managed by the tracker; add ?force=true to purge it anyway"})),
        (status = 413, description = "The body is larger than 64 KiB", body = ApiError),
        (status = 415, description = "The body is not declared as JSON (`Content-Type: application/json`)", body = ApiError),
        (status = 503, description = "The cluster is unreachable, or no cluster client runs in this process", body = ApiError),
    )
)]
pub async fn purge_topic(
    PurgeableTopic(name): PurgeableTopic,
    Query(query): Query<ForceQuery>,
    KafkaCluster(cluster): KafkaCluster,
    Json(request): Json<PurgeRequest>,
) -> Result<axum::Json<PurgedTopic>, ApiError> {
    refuse_managed_topic(&name, query.force, "purge")?;
    Ok(axum::Json(cluster.purge_topic(&name, request).await?))
}

/// Send records to a topic
///
/// Sends 1 to 500 records in order and answers once the cluster acknowledged all of them
/// (acks=all), with each record's partition and offset in request order. A JSON string
/// value (or key) is sent as its text, any other JSON value as its compact JSON text, null
/// as no value (a tombstone). Never creates the topic. The services' own topics
/// (`login-attempts`, `blocked-users`, `login-attempts.dlq` and every `freshet.` topic) take
/// no records from here.
#[utoipa::path(
    post,
    path = "/api/v1/topics/{name}/records",
    tag = "topics",
    params(TopicPath),
    request_body = ProduceRequest,
    responses(
        (status = 200, description = "Every record was acknowledged", body = ProducedRecords),
        (status = 400, description = "Invalid JSON or topic name, no records or more than 500", body = ApiError),
        (status = 403, description = "The topic belongs to a Freshet service", body = ApiError,
         example = json!({"error": "topic login-attempts belongs to the login guard; only it writes records there"})),
        (status = 404, description = "No such topic", body = ApiError),
        (status = 409, description = "A record names a partition the topic does not have, or the topic was deleted, recreated or repartitioned while the records were sent", body = ApiError),
        (status = 413, description = "The body is larger than 1 MiB", body = ApiError),
        (status = 415, description = "The body is not declared as JSON (`Content-Type: application/json`)", body = ApiError),
        (status = 503, description = "The cluster is unreachable or did not acknowledge, or no cluster client runs in this process", body = ApiError),
    )
)]
pub async fn produce_records(
    ProducibleTopic(name): ProducibleTopic,
    KafkaCluster(cluster): KafkaCluster,
    Json(request): Json<ProduceRequest>,
) -> Result<axum::Json<ProducedRecords>, ApiError> {
    Ok(axum::Json(cluster.produce(&name, request).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReadRecordsQuery {
    /// First offset to read (default: the earliest stored). An offset before the earliest
    /// starts there; one past the latest is a 404.
    #[param(minimum = 0)]
    pub offset: Option<i64>,
    /// Most records to return (default 50, 1 to 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// Read records of a partition
///
/// Up to `limit` records from `offset`, in offset order, as far as the partition's latest
/// offset; `next_offset` is where the next page starts. Returns what the cluster delivered
/// within about two seconds, without waiting for new records. A record batch that cannot be
/// read (a decompression bomb: each batch may decompress to at most 64 MiB; a corrupt batch;
/// the pre-0.11 message format) is stepped over and listed in `skipped` with the offsets it
/// covers and why, so paging on from `next_offset` goes past it.
#[utoipa::path(
    get,
    path = "/api/v1/topics/{name}/partitions/{partition}/records",
    tag = "topics",
    params(
        PartitionPath,
        ReadRecordsQuery,
    ),
    responses(
        (status = 200, description = "One page of records", body = RecordPage),
        (status = 400, description = "Invalid topic name, partition, offset or limit", body = ApiError),
        (status = 404, description = "No such topic or partition, or an offset past the partition's latest (no records are there yet)", body = ApiError),
        (status = 503, description = "The cluster or the partition's leader is unreachable, or no cluster client runs in this process", body = ApiError),
    )
)]
pub async fn read_records(
    KafkaCluster(cluster): KafkaCluster,
    Path((name, partition)): Path<(String, i32)>,
    Query(query): Query<ReadRecordsQuery>,
) -> Result<axum::Json<RecordPage>, ApiError> {
    let page = cluster
        .read_records(&name, partition, query.offset, query.limit)
        .await?;
    Ok(axum::Json(page))
}
