//! The topic REST API: list, describe, create and delete topics, send JSON records and read
//! a partition page by page. Everything goes to the cluster over the Kafka protocol
//! ([`freshet_services::cluster`]), so it works the same against an external cluster.
//!
//! Sending records takes bodies up to [`MAX_RECORDS_BODY_BYTES`], more than the rest of the
//! API (500 records rarely fit in 64 KiB).
//!
//! The services' own topics (the login guard's `login-attempts`, `blocked-users` and
//! `login-attempts.dlq`, and every `freshet.` topic: see
//! [`freshet_services::service_topic_owner`]) can be read but not written to or deleted:
//! 403, whoever asks. A record there is a service's statement (a login attempt, a block, a
//! checkpoint), and a client writing one would be forging it.

use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use freshet_security::acl::ResourceType;
use freshet_services::cluster::view::{
    NewTopic, ProduceRequest, ProducedRecords, RecordPage, TopicDescription, TopicList,
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
/// `blocked-users`, `login-attempts.dlq` and every `freshet.` topic) cannot be deleted here.
#[utoipa::path(
    delete,
    path = "/api/v1/topics/{name}",
    tag = "topics",
    params(TopicPath),
    responses(
        (status = 204, description = "The topic was deleted"),
        (status = 400, description = "Not a valid topic name", body = ApiError),
        (status = 403, description = "The topic belongs to a Freshet service", body = ApiError,
         example = json!({"error": "topic blocked-users belongs to the login guard; it cannot be deleted through the API"})),
        (status = 404, description = "No such topic", body = ApiError),
        (status = 503, description = "The cluster is unreachable, or no cluster client runs in this process", body = ApiError),
    )
)]
pub async fn delete_topic(
    DeletableTopic(name): DeletableTopic,
    KafkaCluster(cluster): KafkaCluster,
) -> Result<StatusCode, ApiError> {
    cluster.delete_topic(&name).await?;
    Ok(StatusCode::NO_CONTENT)
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
